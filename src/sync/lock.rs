//! `Lock` and `RLock`: owning, cloneable handles to robust locks in shared arena slots.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::raw_lock::{Acquired, LockFail, RawLock, RawRLock, ReleaseFail};
use crate::error::{LockError, LockTimeoutError, OwnerDied, ReleaseError, SegmentError, TryLockError};
use crate::Shared;

/// The deadline `d` from now; `None` (no deadline) if that is past what `Instant` holds.
pub(crate) fn deadline_after(d: Duration) -> Option<Instant> {
    Instant::now().checked_add(d)
}

/// A public lock error that a raw acquisition result can become: the one place where
/// [`LockFail`] and [`Acquired::OwnerDied`] turn into [`LockError`], [`TryLockError`] or
/// [`LockTimeoutError`] (each form gets its own error type straight from the raw result).
pub(crate) trait FromRawLock<G>: Sized {
    /// The lock was taken over from a dead holder: the caller holds it.
    fn owner_died(d: OwnerDied<G>) -> Self;
    /// The raw lock refused (`WouldBlock` only from try forms, `Timeout` only from timed ones).
    fn fail(e: LockFail) -> Self;
    /// The calling thread holds the lock in a way that forbids taking it again.
    fn would_deadlock() -> Self;
}

macro_rules! from_raw_lock {
    ($err:ident, $would_block:expr, $timeout:expr) => {
        impl<G> FromRawLock<G> for $err<G> {
            fn owner_died(d: OwnerDied<G>) -> Self {
                Self::OwnerDied(d)
            }
            fn fail(e: LockFail) -> Self {
                match e {
                    LockFail::WouldBlock => $would_block,
                    LockFail::Timeout => $timeout,
                    LockFail::RecursionLimit => Self::RecursionLimit,
                    LockFail::Corrupted => Self::Corrupted,
                }
            }
            fn would_deadlock() -> Self {
                Self::WouldDeadlock
            }
        }
    };
}

// A blocking raw `lock(None)` neither times out nor reports `WouldBlock`, and a try form
// never times out: those arms cannot be reached (`Corrupted` rather than a panic if a
// corrupted word ever made them reachable).
from_raw_lock!(LockError, Self::Corrupted, Self::Corrupted);
from_raw_lock!(TryLockError, Self::WouldBlock, Self::Corrupted);
from_raw_lock!(LockTimeoutError, Self::Corrupted, Self::Timeout);

/// Turns a raw acquisition result into a guard or the public error `E` of the operation.
pub(crate) fn settle<G, E: FromRawLock<G>>(
    r: Result<Acquired, LockFail>,
    guard: impl FnOnce() -> G,
) -> Result<G, E> {
    match r {
        Ok(Acquired::Normal) => Ok(guard()),
        Ok(Acquired::OwnerDied(tid)) => Err(E::owner_died(OwnerDied { guard: guard(), tid })),
        Err(e) => Err(E::fail(e)),
    }
}

pub(crate) fn release_result(r: Result<(), ReleaseFail>) -> Result<(), ReleaseError> {
    r.map_err(|e| match e {
        ReleaseFail::NotLocked => ReleaseError::NotLocked,
        ReleaseFail::NotOwner => ReleaseError::NotOwner,
        ReleaseFail::Corrupted => ReleaseError::Corrupted,
    })
}

macro_rules! lock_handle {
    ($name:ident, $raw:ident, $guard:ident, $thread:ty) => {
        impl $name {
            /// A new, unlocked lock in a 64-byte slot of a shared arena chunk (no fd or
            /// mapping of its own).
            pub fn new() -> Result<Self, SegmentError> {
                Ok(Self {
                    cell: Shared::new($raw::new())?,
                })
            }

            /// Blocks until the lock is held; the guard releases it.
            ///
            /// `Err(OwnerDied)` holds the lock too (see [`LockError::recover`]).
            pub fn lock(&self) -> Result<$guard<'_>, LockError<$guard<'_>>> {
                settle(self.cell.lock(None), || self.guard())
            }

            /// Like [`lock`](Self::lock), giving up after `timeout` with `Timeout`.
            pub fn lock_timeout(
                &self,
                timeout: Duration,
            ) -> Result<$guard<'_>, LockTimeoutError<$guard<'_>>> {
                settle(self.cell.lock(deadline_after(timeout)), || self.guard())
            }

            /// Takes the lock only if that needs no waiting (`WouldBlock` otherwise).
            pub fn try_lock(&self) -> Result<$guard<'_>, TryLockError<$guard<'_>>> {
                settle(self.cell.try_lock(), || self.guard())
            }

            fn guard(&self) -> $guard<'_> {
                $guard {
                    raw: &self.cell,
                    _thread: PhantomData,
                }
            }

            /// Python's `acquire()`: [`lock`](Self::lock) without a guard; release with
            /// `release()`. On `Err(OwnerDied)` the lock **is** held.
            pub fn acquire(&self) -> Result<(), LockError<()>> {
                settle(self.cell.lock(None), || ())
            }

            /// Python's `acquire(timeout=t)`: [`lock_timeout`](Self::lock_timeout) without a
            /// guard; a timeout is `Err(Timeout)` (Python's `False`).
            pub fn acquire_timeout(&self, timeout: Duration) -> Result<(), LockTimeoutError<()>> {
                settle(self.cell.lock(deadline_after(timeout)), || ())
            }

            /// Python's `acquire(block=False)`: [`try_lock`](Self::try_lock) without a guard;
            /// held elsewhere is `Err(WouldBlock)` (Python's `False`).
            pub fn try_acquire(&self) -> Result<(), TryLockError<()>> {
                settle(self.cell.try_lock(), || ())
            }

            /// Whether anyone holds the lock.
            pub fn is_locked(&self) -> bool {
                self.cell.is_locked()
            }

            /// The raw lock, e.g. to build other primitives on it.
            pub fn raw(&self) -> &$raw {
                &self.cell
            }
        }

        /// Holds the lock until dropped.
        #[must_use = "the lock is released when the guard is dropped"]
        pub struct $guard<'a> {
            raw: &'a $raw,
            /// `PhantomData<*const ()>` (`!Send`) when only the owning thread may release.
            _thread: PhantomData<$thread>,
        }

        impl Drop for $guard<'_> {
            fn drop(&mut self) {
                let _ = self.raw.unlock();
            }
        }

        impl std::fmt::Debug for $guard<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(stringify!($guard))
            }
        }
    };
}

/// A lock shared between processes; mirrors Python's `multiprocessing.Lock`.
///
/// Like Python's, it is a binary semaphore: [`release`](Self::release) may be called by any
/// thread or process, and re-acquiring it from the holding thread blocks. Unlike Python's,
/// a holder that dies (even by `SIGKILL`) does not hang everyone: the next acquirer gets
/// [`LockError::OwnerDied`] — holding the lock — within about 20 ms of the death (a waiter
/// checks the holder every 20 ms; `cargo bench --bench detect` measures it).
/// A lock whose holding *thread* exited counts as abandoned the same way.
///
/// ```
/// use shmproc::{Lock, LockError, Process, Shared};
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// let lock = Lock::new()?;
/// let total = Shared::new(AtomicU64::new(0))?;
/// let (l, t) = (lock.clone(), total.clone());
/// let mut child = Process::fork(move || {
///     let _g = l.lock().expect("lock");
///     t.fetch_add(1, Ordering::Relaxed);
/// })
/// .start()?;
/// {
///     // A guard borrows the lock, so an error carrying it is not `'static`:
///     // `without_guard` (or `recover`, below) makes it one for `?`.
///     let _g = lock.lock().map_err(LockError::without_guard)?;
///     total.fetch_add(1, Ordering::Relaxed);
/// }
/// child.join()?;
/// assert_eq!(total.load(Ordering::Relaxed), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors, and a holder that died
///
/// [`lock`](Self::lock) fails with [`LockError`], [`lock_timeout`](Self::lock_timeout) with
/// [`LockTimeoutError`] (adds `Timeout`), [`try_lock`](Self::try_lock) with [`TryLockError`]
/// (adds `WouldBlock`). `OwnerDied` is the one error that **holds the lock**: it carries the
/// guard. Pick one of two idioms, both usable with `?` into
/// `Box<dyn Error + Send + Sync>` (or `anyhow`):
///
/// ```
/// use shmproc::{Lock, LockError, LockTimeoutError};
/// use std::time::Duration;
/// let lock = Lock::new()?;
/// // 1. Take the lock anyway (the protected data is checked or repaired here):
/// let g = lock.lock().or_else(LockError::recover)?;
/// drop(g);
/// // 2. Treat a dead holder as a failure: the error without its guard (which releases the
/// //    lock) is `Send + Sync + 'static`.
/// let g = lock.lock_timeout(Duration::from_secs(1)).map_err(LockTimeoutError::without_guard)?;
/// drop(g);
/// // Or look at the dead holder yourself:
/// match lock.lock() {
///     Ok(_g) => {}
///     Err(LockError::OwnerDied(d)) => {
///         println!("thread {} died holding the lock", d.dead_owner_tid());
///         let _g = d.into_guard();
///     }
///     Err(e) => return Err(e.without_guard().into()), // the other variants carry no guard
/// }
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Lock {
    cell: Shared<RawLock>,
}

lock_handle!(Lock, RawLock, LockGuard, ());

impl Lock {
    /// Python's `release()`: any thread or process may release; `NotLocked` if free.
    pub fn release(&self) -> Result<(), ReleaseError> {
        release_result(self.cell.unlock())
    }
}

/// A reentrant lock shared between processes; mirrors Python's `multiprocessing.RLock`.
///
/// The owning thread (of the owning process) may take it again; it is free after as many
/// releases as acquisitions (up to `u32::MAX - 1` levels, then `RecursionLimit`). Only the
/// owner may release it (`NotOwner`). A dead owner is detected as with [`Lock`].
///
/// ```
/// use shmproc::{LockError, RLock};
/// let r = RLock::new()?;
/// let outer = r.lock().map_err(LockError::without_guard)?;
/// let inner = r.lock().or_else(LockError::recover)?; // same thread: no deadlock
/// assert_eq!(r.depth(), 2);
/// drop(inner);
/// drop(outer);
/// assert!(!r.is_locked());
/// assert_eq!(r.release(), Err(shmproc::ReleaseError::NotLocked));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RLock {
    cell: Shared<RawRLock>,
}

lock_handle!(RLock, RawRLock, RLockGuard, *const ());

impl RLock {
    /// Python's `release()`: releases one level; `NotOwner` from another thread.
    pub fn release(&self) -> Result<(), ReleaseError> {
        release_result(self.cell.unlock())
    }

    /// Levels the calling thread holds (0 when it does not own the lock).
    pub fn depth(&self) -> u32 {
        self.cell.depth()
    }
}

impl<'a> RLockGuard<'a> {
    pub(crate) fn new(raw: &'a RawRLock) -> Self {
        Self {
            raw,
            _thread: PhantomData,
        }
    }
}
