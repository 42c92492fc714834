//! Errors of the sync family: locks, semaphores, events, conditions, barriers.
//!
//! Every blocking operation `op` has three forms and three error types, named after it:
//! `op()` → `OpError`, `op_timeout(d)` → `OpTimeoutError` (adds `Timeout`), `try_op()` →
//! `TryOpError` (adds `WouldBlock`). The blocking error's variants are a subset of its twins',
//! and `From<OpError>` converts into both, so `?` moves a failure from one form to another.
//!
//! # Errors that carry a guard
//!
//! A lock whose holder died is taken over: the caller **holds** it, and the error carries the
//! guard (`OwnerDied`), as std's [`PoisonError`](std::sync::PoisonError) does. Two idioms,
//! neither needing `.map_err(|e| e.to_string())`:
//!
//! - *take the lock anyway* (the protected data is fine, or is repaired here):
//!   `let g = lock.lock().or_else(LockError::recover)?;` — [`recover`](LockError::recover)
//!   turns `OwnerDied` into the guard and every other error into a guard-free one;
//! - *fail*: `let g = lock.lock().map_err(LockError::without_guard)?;` —
//!   [`without_guard`](LockError::without_guard) gives a `LockError<()>`, which is
//!   `Send + Sync + 'static` and goes into `Box<dyn Error + Send + Sync>` or `anyhow` with `?`.
//!   It drops the guard, releasing the lock: the next holder is not told again.
//!
//! ```
//! use shmproc::{Lock, LockError};
//! fn bump(lock: &Lock) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//!     let _g = lock.lock().or_else(LockError::recover)?; // a dead holder is fine here
//!     Ok(())
//! }
//! bump(&Lock::new()?)?;
//! # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! ```

use std::fmt;

/// A lock taken over from a holder that died: the guard (the caller holds the lock), and
/// which thread died.
pub struct OwnerDied<G> {
    pub(crate) guard: G,
    pub(crate) tid: u32,
}

impl<G> OwnerDied<G> {
    /// The guard: the caller holds the lock. Check or repair the protected data first.
    pub fn into_guard(self) -> G {
        self.guard
    }

    /// The thread id of the holder that died.
    pub fn dead_owner_tid(&self) -> u32 {
        self.tid
    }

    fn map<H>(self, f: impl FnOnce(G) -> H) -> OwnerDied<H> {
        OwnerDied {
            guard: f(self.guard),
            tid: self.tid,
        }
    }
}

impl<G> fmt::Debug for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OwnerDied {{ tid: {}, .. }}", self.tid)
    }
}

/// Defines one guard-carrying lock error enum: its variants are taken from a fixed list, the
/// guard only travels in `OwnerDied` (and in the variants listed as `guarded`).
macro_rules! guard_error {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$vmeta:meta])* $unit:ident => $msg:literal, )*
        }
        $( guarded { $( $(#[$gmeta:meta])* $gvar:ident => $gmsg:literal, )* } )?
    ) => {
        $(#[$meta])*
        #[non_exhaustive]
        pub enum $name<G> {
            /// The previous holder died while holding the lock; the caller holds it now and
            /// the guard is inside ([`OwnerDied::into_guard`], or
            #[doc = concat!("[`recover`](", stringify!($name), "::recover)).")]
            OwnerDied(OwnerDied<G>),
            $( $( $(#[$gmeta])* $gvar(G), )* )?
            $( $(#[$vmeta])* $unit, )*
        }

        impl<G> $name<G> {
            /// The same error with another guard type (the guard mapped by `f`).
            pub fn map<H>(self, f: impl FnOnce(G) -> H) -> $name<H> {
                match self {
                    Self::OwnerDied(d) => $name::OwnerDied(d.map(f)),
                    $( $( Self::$gvar(g) => $name::$gvar(f(g)), )* )?
                    $( Self::$unit => $name::$unit, )*
                }
            }

            /// The same error without its guard: `Send + Sync + 'static`, ready for `?` into
            /// `Box<dyn Error + Send + Sync>`. Dropping the guard releases the lock.
            pub fn without_guard(self) -> $name<()> {
                self.map(drop)
            }

            /// "Take the lock anyway": the guard if the previous holder died (the caller
            /// holds the lock), else the error without its guard. Use as
            /// `.or_else(Error::recover)?`.
            pub fn recover(self) -> Result<G, $name<()>> {
                match self {
                    Self::OwnerDied(d) => Ok(d.guard),
                    e => Err(e.without_guard()),
                }
            }

            /// The guard this error carries, if any (`OwnerDied`, and the variants that hand
            /// the guard back): then the caller holds the lock.
            pub fn into_guard(self) -> Option<G> {
                match self {
                    Self::OwnerDied(d) => Some(d.guard),
                    $( $( Self::$gvar(g) => Some(g), )* )?
                    _ => None,
                }
            }
        }

        impl<G> fmt::Debug for $name<G> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    Self::OwnerDied(d) => d.fmt(f),
                    $( $( Self::$gvar(_) => f.write_str(concat!(stringify!($gvar), "(..)")), )* )?
                    $( Self::$unit => f.write_str(stringify!($unit)), )*
                }
            }
        }

        impl<G> fmt::Display for $name<G> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    Self::OwnerDied(d) => {
                        write!(f, "the previous holder (thread {}) died holding the lock", d.tid)
                    }
                    $( $( Self::$gvar(_) => f.write_str($gmsg), )* )?
                    $( Self::$unit => f.write_str($msg), )*
                }
            }
        }

        impl<G> std::error::Error for $name<G> {}

        impl<G> PartialEq for $name<G> {
            /// Compares the kind (and the dead owner's tid), never the guards.
            fn eq(&self, other: &Self) -> bool {
                match (self, other) {
                    (Self::OwnerDied(a), Self::OwnerDied(b)) => a.tid == b.tid,
                    _ => std::mem::discriminant(self) == std::mem::discriminant(other),
                }
            }
        }
    };
}

/// Converts the blocking form's error into a twin (`From<LockError<G>> for TryLockError<G>`…).
macro_rules! widen {
    ($from:ident => $to:ident { $($unit:ident),* } $( guarded { $($gvar:ident),* } )?) => {
        impl<G> From<$from<G>> for $to<G> {
            fn from(e: $from<G>) -> Self {
                match e {
                    $from::OwnerDied(d) => $to::OwnerDied(d),
                    $( $( $from::$gvar(g) => $to::$gvar(g), )* )?
                    $( $from::$unit => $to::$unit, )*
                }
            }
        }
    };
}

guard_error! {
    /// Why a blocking `lock()` (or Python-style `acquire()`) failed.
    ///
    /// `G` is what success returns (a guard, or `()` for `acquire`). Only
    /// [`OwnerDied`](Self::OwnerDied) holds the lock: it carries the guard, as std's
    /// `PoisonError` does. Two idioms need no `.map_err(|e| e.to_string())`:
    /// `.or_else(LockError::recover)?` takes the lock anyway after a dead holder, and
    /// `.map_err(LockError::without_guard)?` turns the error into a guard-free
    /// `LockError<()>` (`Send + Sync + 'static`, dropping the guard releases the lock). The
    /// same methods exist on every guard-carrying error ([`TryLockError`],
    /// [`LockTimeoutError`], [`CondWaitError`], [`CondWaitTimeoutError`]).
    ///
    /// ```
    /// use shmproc::{Lock, LockError};
    /// let lock = Lock::new()?;
    /// let g = lock.lock().map_err(LockError::without_guard)?;
    /// drop(g);
    /// let g = lock.lock().or_else(LockError::recover)?; // take it even after a dead holder
    /// # drop(g);
    /// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    /// ```
    LockError {
        /// The calling thread already holds this lock in a way that forbids taking it again
        /// (a `Value`/`Array` data guard is alive): waiting would deadlock.
        WouldDeadlock => "this thread already holds the lock; waiting would deadlock",
        /// An `RLock` was re-entered more than `u32::MAX - 1` times.
        RecursionLimit => "reentrant lock recursion limit reached",
        /// The lock's memory holds values no correct process writes (a buggy or hostile
        /// peer): reported, never undefined behaviour.
        Corrupted => "the lock's shared memory is corrupted",
    }
}

guard_error! {
    /// Why `try_lock()` (or `try_acquire()`) failed: [`LockError`]'s reasons plus
    /// [`WouldBlock`](Self::WouldBlock).
    ///
    /// ```
    /// use shmproc::{Lock, TryLockError};
    /// let lock = Lock::new()?;
    /// let _held = lock.try_lock().map_err(TryLockError::without_guard)?;
    /// assert!(matches!(lock.try_lock(), Err(TryLockError::WouldBlock)));
    /// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    /// ```
    TryLockError {
        /// Held by someone else: taking it would need waiting.
        WouldBlock => "the lock is held by someone else",
        /// See [`LockError::WouldDeadlock`].
        WouldDeadlock => "this thread already holds the lock; waiting would deadlock",
        /// See [`LockError::RecursionLimit`].
        RecursionLimit => "reentrant lock recursion limit reached",
        /// See [`LockError::Corrupted`].
        Corrupted => "the lock's shared memory is corrupted",
    }
}

guard_error! {
    /// Why `lock_timeout(d)` (or `acquire_timeout(d)`) failed: [`LockError`]'s reasons plus
    /// [`Timeout`](Self::Timeout).
    ///
    /// ```
    /// use shmproc::{Lock, LockTimeoutError};
    /// use std::time::Duration;
    /// let lock = Lock::new()?;
    /// lock.acquire()?; // the guard-free form: its error is `'static`
    /// assert_eq!(lock.lock_timeout(Duration::from_millis(5)).unwrap_err(), LockTimeoutError::Timeout);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    LockTimeoutError {
        /// The timeout passed first.
        Timeout => "timed out waiting for the lock",
        /// See [`LockError::WouldDeadlock`].
        WouldDeadlock => "this thread already holds the lock; waiting would deadlock",
        /// See [`LockError::RecursionLimit`].
        RecursionLimit => "reentrant lock recursion limit reached",
        /// See [`LockError::Corrupted`].
        Corrupted => "the lock's shared memory is corrupted",
    }
}

widen!(LockError => TryLockError { WouldDeadlock, RecursionLimit, Corrupted });
widen!(LockError => LockTimeoutError { WouldDeadlock, RecursionLimit, Corrupted });

guard_error! {
    /// Why [`Condition::wait`](crate::Condition::wait) (or `wait_while`/`wait_for`) failed.
    ///
    /// The wait consumes the guard and gives it back: on success, in
    /// [`OwnerDied`](Self::OwnerDied) (the lock was taken back from a holder that died) and
    /// in [`NotOwner`](Self::NotOwner) (the guard is returned untouched).
    ///
    /// ```
    /// use shmproc::{CondWaitError, Condition};
    /// let (a, b) = (Condition::new()?, Condition::new()?);
    /// let g = b.lock().map_err(shmproc::LockError::without_guard)?;
    /// // A guard of another condition's lock is refused and handed back.
    /// assert!(matches!(a.wait(g), Err(CondWaitError::NotOwner(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    CondWaitError {
        /// The condition's shared memory holds values no correct process writes.
        Corrupted => "the condition's shared memory is corrupted",
    }
    guarded {
        /// The guard is not one of this condition's lock (held by the calling thread); it
        /// is handed back unchanged.
        NotOwner => "the calling thread does not hold the condition's lock",
    }
}

guard_error! {
    /// Why [`Condition::wait_timeout`](crate::Condition::wait_timeout) (or
    /// `wait_timeout_while`/`wait_for_timeout`) failed: [`CondWaitError`]'s reasons plus
    /// [`Timeout`](Self::Timeout), which hands the guard back (the lock is held again).
    ///
    /// ```
    /// use shmproc::{CondWaitTimeoutError, Condition};
    /// use std::time::Duration;
    /// let c = Condition::new()?;
    /// let g = c.lock().map_err(shmproc::LockError::without_guard)?;
    /// let g = match c.wait_timeout(g, Duration::from_millis(5)) {
    ///     Err(CondWaitTimeoutError::Timeout(g)) => g, // nobody notified: the lock is ours again
    ///     other => panic!("{other:?}"),
    /// };
    /// # drop(g);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    CondWaitTimeoutError {
        /// See [`CondWaitError::Corrupted`].
        Corrupted => "the condition's shared memory is corrupted",
    }
    guarded {
        /// The timeout passed before a notify; the lock is held again (the guard).
        Timeout => "timed out waiting for a notify",
        /// See [`CondWaitError::NotOwner`].
        NotOwner => "the calling thread does not hold the condition's lock",
    }
}

widen!(CondWaitError => CondWaitTimeoutError { Corrupted } guarded { NotOwner });

/// Defines a guard-free error enum with `Debug`, `Display` (thiserror), `PartialEq`.
macro_rules! plain_error {
    ($(#[$meta:meta])* $name:ident { $( $(#[$vmeta:meta])* $var:ident => $msg:literal, )* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vmeta])* #[error($msg)] $var, )*
        }
    };
}

/// Converts between guard-free twins.
macro_rules! widen_plain {
    ($from:ident => $to:ident { $($var:ident),* }) => {
        impl From<$from> for $to {
            fn from(e: $from) -> Self {
                match e {
                    $( $from::$var => $to::$var, )*
                }
            }
        }
    };
}

plain_error! {
    /// Why [`Condition::notify`](crate::Condition::notify) / `notify_all` refused.
    ///
    /// ```
    /// use shmproc::{Condition, NotifyError};
    /// let (a, b) = (Condition::new()?, Condition::new()?);
    /// let g = b.lock().map_err(shmproc::LockError::without_guard)?;
    /// assert_eq!(a.notify_all(&g), Err(NotifyError::NotOwner));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    NotifyError {
        /// The calling thread does not hold the condition's lock (Python's `RuntimeError`).
        NotOwner => "the calling thread does not hold the condition's lock",
    }
}

plain_error! {
    /// Why a semaphore's blocking `acquire()` failed.
    ///
    /// ```
    /// let s = shmproc::Semaphore::new(1)?;
    /// s.acquire()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    AcquireError {
        /// The semaphore's shared memory holds values no correct process writes.
        Corrupted => "the semaphore's shared memory is corrupted",
    }
}

plain_error! {
    /// Why a semaphore's `acquire_timeout(d)` failed.
    ///
    /// ```
    /// use shmproc::{AcquireTimeoutError, Semaphore};
    /// let s = Semaphore::new(0)?;
    /// let r = s.acquire_timeout(std::time::Duration::from_millis(5));
    /// assert_eq!(r, Err(AcquireTimeoutError::Timeout));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    AcquireTimeoutError {
        /// No unit came free before the timeout.
        Timeout => "timed out waiting for the semaphore",
        /// See [`AcquireError::Corrupted`].
        Corrupted => "the semaphore's shared memory is corrupted",
    }
}

plain_error! {
    /// Why a semaphore's `try_acquire()` failed.
    ///
    /// ```
    /// use shmproc::{Semaphore, TryAcquireError};
    /// let s = Semaphore::new(0)?;
    /// assert_eq!(s.try_acquire(), Err(TryAcquireError::WouldBlock));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    TryAcquireError {
        /// No unit is free now.
        WouldBlock => "no unit of the semaphore is free",
        /// See [`AcquireError::Corrupted`].
        Corrupted => "the semaphore's shared memory is corrupted",
    }
}

widen_plain!(AcquireError => AcquireTimeoutError { Corrupted });
widen_plain!(AcquireError => TryAcquireError { Corrupted });

plain_error! {
    /// Why [`Event::wait_timeout`](crate::Event::wait_timeout) returned without the event
    /// being set (an event's word has no invalid state, so `wait()` cannot fail).
    ///
    /// ```
    /// use shmproc::{Event, WaitTimeoutError};
    /// let ev = Event::new()?;
    /// assert_eq!(ev.wait_timeout(std::time::Duration::from_millis(5)), Err(WaitTimeoutError::Timeout));
    /// ev.set();
    /// ev.wait_timeout(std::time::Duration::from_millis(5))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    WaitTimeoutError {
        /// The timeout passed before the event was set.
        Timeout => "timed out waiting for the event",
    }
}

/// Why a release was refused.
///
/// ```
/// use shmproc::{BoundedSemaphore, ReleaseError};
/// let s = BoundedSemaphore::new(1)?;
/// assert_eq!(s.release(), Err(ReleaseError::TooManyReleases));
/// # Ok::<(), shmproc::SegmentError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    /// The lock was not held (Python's `RuntimeError: release unlocked lock`).
    #[error("release of an unlocked lock")]
    NotLocked,
    /// An `RLock` held by another thread or process.
    #[error("release by a thread that does not own the lock")]
    NotOwner,
    /// A `BoundedSemaphore` released past its initial value (Python's `ValueError`), or a
    /// `Semaphore` past `SEM_VALUE_MAX`.
    #[error("semaphore released too many times")]
    TooManyReleases,
    /// The primitive's shared memory holds values no correct process writes.
    #[error("the primitive's shared memory is corrupted")]
    Corrupted,
}

plain_error! {
    /// Why a barrier's blocking `wait()` (or `abort`/`reset`) failed (Python's
    /// `BrokenBarrierError`).
    ///
    /// ```
    /// let b = shmproc::Barrier::new(2)?;
    /// b.abort()?;
    /// assert_eq!(b.wait(), Err(shmproc::BarrierError::Broken));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    BarrierError {
        /// Aborted, reset while waiting, another party timed out, or a party died inside the
        /// barrier's own bookkeeping.
        Broken => "the barrier is broken",
        /// The barrier's shared memory holds values no correct process writes.
        Corrupted => "the barrier's shared memory is corrupted",
    }
}

plain_error! {
    /// Why a barrier's `wait_timeout(d)` failed: [`BarrierError`]'s reasons plus
    /// [`Timeout`](Self::Timeout).
    ///
    /// ```
    /// use shmproc::{Barrier, BarrierTimeoutError};
    /// let b = Barrier::new(2)?;
    /// assert_eq!(b.wait_timeout(std::time::Duration::from_millis(5)), Err(BarrierTimeoutError::Timeout));
    /// assert!(b.is_broken()); // as in Python, a timed-out wait breaks the barrier
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    BarrierTimeoutError {
        /// This wait timed out; the barrier is now broken for every party.
        Timeout => "timed out waiting at the barrier (the barrier is now broken)",
        /// See [`BarrierError::Broken`].
        Broken => "the barrier is broken",
        /// See [`BarrierError::Corrupted`].
        Corrupted => "the barrier's shared memory is corrupted",
    }
}

widen_plain!(BarrierError => BarrierTimeoutError { Broken, Corrupted });
