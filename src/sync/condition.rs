//! The `Condition` handle: an `RLock` and a wait queue in one segment.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::lock::{deadline_after, release_result, to_result, RLockGuard};
use super::raw_cond::{CondFail, RawCondition};
use super::raw_lock::{Acquired, RawRLock};
use crate::error::{LockError, OwnerDied, ReleaseError, SegmentError};
use crate::{Shared, ShmSafe};

/// The shared part of a `Condition`.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RawConditionCell {
    /// The condition's lock (reentrant, as Python's default).
    pub lock: RawRLock,
    /// Its wait queue.
    pub cond: RawCondition,
}

// SAFETY: repr(C) of atomics only; every bit pattern is either valid or reported as
// `Corrupted` by the algorithms.
unsafe impl ShmSafe for RawConditionCell {}

/// A condition variable shared between processes; mirrors Python's
/// `multiprocessing.Condition()` (with its default `RLock`).
///
/// Wait with the guard of [`lock`](Self::lock): waiting without holding the lock is
/// impossible by construction, and a guard of another condition gives `NotOwner`. Wake-ups
/// may be spurious, as with every condition variable: use [`wait_for`](Self::wait_for)
/// (Python's `wait_for(predicate, timeout)`) or loop.
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use shmproc::{Condition, Process, Shared};
///
/// let cond = Condition::new()?;
/// let ready = Shared::new(AtomicU32::new(0))?;
/// let (c, r) = (cond.clone(), ready.clone());
/// let mut producer = Process::fork(move || {
///     let g = c.lock().expect("lock");
///     r.store(1, Ordering::Relaxed);
///     c.notify_all(&g).expect("held");
/// })
/// .start()?;
/// let mut g = cond.lock().map_err(|e| e.to_string())?;
/// let ok = cond
///     .wait_for(&mut g, || ready.load(Ordering::Relaxed) == 1, Some(std::time::Duration::from_secs(10)))
///     .map_err(|e| e.to_string())?;
/// assert!(ok);
/// drop(g);
/// producer.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Condition {
    cell: Shared<RawConditionCell>,
}

impl Condition {
    /// A condition with its own `RLock`, in its own segment.
    pub fn new() -> Result<Self, SegmentError> {
        Ok(Self {
            cell: Shared::new(RawConditionCell::default())?,
        })
    }

    /// Takes the condition's lock (blocking).
    pub fn lock(&self) -> Result<RLockGuard<'_>, LockError<RLockGuard<'_>>> {
        to_result(self.cell.lock.lock(None), || RLockGuard::new(&self.cell.lock))
    }

    /// Takes the condition's lock, giving up after `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> Result<RLockGuard<'_>, LockError<RLockGuard<'_>>> {
        to_result(self.cell.lock.lock(deadline_after(timeout)), || {
            RLockGuard::new(&self.cell.lock)
        })
    }

    /// Python-style `acquire()` of the condition's lock (release with [`release`](Self::release)).
    pub fn acquire(&self) -> Result<(), LockError<()>> {
        to_result(self.cell.lock.lock(None), || ())
    }

    /// Python-style `release()` of the condition's lock.
    pub fn release(&self) -> Result<(), ReleaseError> {
        release_result(self.cell.lock.unlock())
    }

    /// The guard proves the caller holds *a* reentrant lock; what must hold is that the
    /// calling thread owns *this* condition's lock (a guard from another handle to the same
    /// condition qualifies: each handle maps the segment at its own address).
    fn check_guard(&self, _guard: &RLockGuard<'_>) -> Result<(), LockError<()>> {
        if !self.cell.lock.is_owned_by_me() {
            return Err(LockError::NotOwner);
        }
        Ok(())
    }

    fn wait_until(
        &self,
        guard: &mut RLockGuard<'_>,
        deadline: Option<Instant>,
    ) -> Result<bool, LockError<()>> {
        self.check_guard(guard)?;
        match self.cell.cond.wait(&self.cell.lock, deadline) {
            Ok((notified, Acquired::Normal)) => Ok(notified),
            Ok((_, Acquired::OwnerDied(tid))) => Err(LockError::OwnerDied(OwnerDied { guard: (), tid })),
            Err(CondFail::NotOwner) => Err(LockError::NotOwner),
            Err(CondFail::Corrupted) => Err(LockError::Corrupted),
        }
    }

    /// Releases the lock, waits for a notify, takes the lock back (Python's `wait()`).
    /// `Err(OwnerDied)` means the lock is held again but a holder died meanwhile.
    pub fn wait(&self, guard: &mut RLockGuard<'_>) -> Result<(), LockError<()>> {
        self.wait_until(guard, None).map(drop)
    }

    /// Like [`wait`](Self::wait) with a timeout; `Ok(false)` if it timed out (Python's
    /// `wait(timeout)`).
    ///
    /// The timeout bounds the wait for a notify. As in Python, the lock is then taken back
    /// before the call returns — the caller's guard must hold it again — so that last step
    /// waits for the lock's holder as long as it holds it (a holder that dies is detected:
    /// `Err(OwnerDied)`). This is the one timed form in the crate that can outlast its
    /// timeout, and only by another party's critical section.
    pub fn wait_timeout(&self, guard: &mut RLockGuard<'_>, timeout: Duration) -> Result<bool, LockError<()>> {
        self.wait_until(guard, deadline_after(timeout))
    }

    /// Waits until `predicate()` holds (checked under the lock), or until `timeout`;
    /// returns the predicate's last value (Python's `wait_for`).
    pub fn wait_for(
        &self,
        guard: &mut RLockGuard<'_>,
        mut predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool, LockError<()>> {
        let deadline = timeout.and_then(deadline_after);
        self.check_guard(guard)?;
        loop {
            if predicate() {
                return Ok(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            self.wait_until(guard, deadline)?;
        }
    }

    /// `wait_for` with the predicate inverted, like std's `Condvar::wait_while`.
    pub fn wait_while(
        &self,
        guard: &mut RLockGuard<'_>,
        mut condition: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool, LockError<()>> {
        self.wait_for(guard, || !condition(), timeout)
    }

    /// Wakes up to `n` waiters; the caller must hold the lock (`NotOwner` otherwise).
    pub fn notify(&self, guard: &RLockGuard<'_>, n: u32) -> Result<(), LockError<()>> {
        self.check_guard(guard)?;
        self.cell.cond.notify(n);
        Ok(())
    }

    /// Wakes every waiter; the caller must hold the lock.
    pub fn notify_all(&self, guard: &RLockGuard<'_>) -> Result<(), LockError<()>> {
        self.check_guard(guard)?;
        self.cell.cond.notify_all();
        Ok(())
    }
}
