//! `Lock` and `RLock`: owning, cloneable handles to robust locks in their own segment.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::raw_lock::{Acquired, LockFail, RawLock, RawRLock, ReleaseFail};
use crate::error::{LockError, OwnerDied, ReleaseError, SegmentError};
use crate::Shared;

/// The deadline `d` from now; `None` (no deadline) if that is past what `Instant` holds.
pub(crate) fn deadline_after(d: Duration) -> Option<Instant> {
    Instant::now().checked_add(d)
}

/// The typed error for a failed raw acquisition.
pub(crate) fn fail<G>(e: LockFail) -> LockError<G> {
    match e {
        LockFail::WouldBlock => LockError::WouldBlock,
        LockFail::Timeout => LockError::Timeout,
        LockFail::Corrupted => LockError::Corrupted,
        LockFail::RecursionLimit => LockError::RecursionLimit,
    }
}

/// Turns a raw acquisition result into a guard or a typed error.
pub(crate) fn to_result<G>(
    r: Result<Acquired, LockFail>,
    guard: impl FnOnce() -> G,
) -> Result<G, LockError<G>> {
    match r.map_err(fail)? {
        Acquired::Normal => Ok(guard()),
        Acquired::OwnerDied(tid) => Err(LockError::OwnerDied(OwnerDied { guard: guard(), tid })),
    }
}

/// Python's `acquire(timeout)` convention: `Ok(false)` on timeout or when held (try form).
pub(crate) fn to_bool(r: Result<Acquired, LockFail>) -> Result<bool, LockError<()>> {
    match to_result(r, || ()) {
        Ok(()) => Ok(true),
        Err(LockError::Timeout | LockError::WouldBlock) => Ok(false),
        Err(e) => Err(e),
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
            /// A new, unlocked lock in its own anonymous segment.
            pub fn new() -> Result<Self, SegmentError> {
                Ok(Self {
                    cell: Shared::new($raw::new())?,
                })
            }

            /// Blocks until the lock is held; the guard releases it.
            pub fn lock(&self) -> Result<$guard<'_>, LockError<$guard<'_>>> {
                to_result(self.cell.lock(None), || $guard {
                    raw: &self.cell,
                    _thread: PhantomData,
                })
            }

            /// Like [`lock`](Self::lock), giving up after `timeout` with `Timeout`.
            pub fn lock_timeout(&self, timeout: Duration) -> Result<$guard<'_>, LockError<$guard<'_>>> {
                to_result(self.cell.lock(deadline_after(timeout)), || $guard {
                    raw: &self.cell,
                    _thread: PhantomData,
                })
            }

            /// Takes the lock only if that needs no waiting (`WouldBlock` otherwise).
            pub fn try_lock(&self) -> Result<$guard<'_>, LockError<$guard<'_>>> {
                to_result(self.cell.try_lock(), || $guard {
                    raw: &self.cell,
                    _thread: PhantomData,
                })
            }

            /// Python's `acquire()`: blocks until held. On `Err(OwnerDied)` the lock **is**
            /// held (release it when done).
            pub fn acquire(&self) -> Result<(), LockError<()>> {
                to_result(self.cell.lock(None), || ())
            }

            /// Python's `acquire(timeout=t)`: `Ok(false)` if it timed out.
            pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool, LockError<()>> {
                to_bool(self.cell.lock(deadline_after(timeout)))
            }

            /// Python's `acquire(block=False)`: `Ok(false)` if held by someone else.
            pub fn try_acquire(&self) -> Result<bool, LockError<()>> {
                to_bool(self.cell.try_lock())
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
/// use shmproc::{Lock, Process, Shared};
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
///     let _g = lock.lock().map_err(|e| e.to_string())?;
///     total.fetch_add(1, Ordering::Relaxed);
/// }
/// child.join()?;
/// assert_eq!(total.load(Ordering::Relaxed), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
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
/// let r = shmproc::RLock::new()?;
/// let outer = r.lock().map_err(|e| e.to_string())?;
/// let inner = r.lock().map_err(|e| e.to_string())?; // same thread: no deadlock
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
