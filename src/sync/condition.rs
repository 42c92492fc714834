//! The `Condition` handle: an `RLock` and a wait queue in one shared arena slot.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::lock::{deadline_after, release_result, settle, RLockGuard};
use super::raw_cond::{CondFail, RawCondition};
use super::raw_lock::{Acquired, RawRLock};
use crate::error::{
    CondWaitError, CondWaitTimeoutError, LockError, LockTimeoutError, NotifyError, OwnerDied, ReleaseError,
    SegmentError, TryLockError,
};
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
/// Waits take the guard of [`lock`](Self::lock) by value and give it back, as std's
/// `Condvar` does: waiting without holding the lock is impossible by construction, and a
/// guard of another lock is handed back in [`CondWaitError::NotOwner`]. Wake-ups may be
/// spurious, as with every condition variable: use [`wait_while`](Self::wait_while) (or
/// Python's [`wait_for`](Self::wait_for)) or loop.
///
/// | form | returns | a timeout is |
/// |------|---------|--------------|
/// | `wait(g)`, `wait_while(g, cond)`, `wait_for(g, pred)` | `Result<G, CondWaitError<G>>` | — |
/// | `wait_timeout(g, d)`, `wait_timeout_while(g, d, cond)`, `wait_for_timeout(g, pred, d)` | `Result<G, CondWaitTimeoutError<G>>` | `Err(Timeout(g))`, the lock held again |
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::Duration;
/// use shmproc::{CondWaitTimeoutError, Condition, LockError, Process, Shared};
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
/// let g = cond.lock().map_err(LockError::without_guard)?;
/// let g = cond
///     .wait_timeout_while(g, Duration::from_secs(10), || ready.load(Ordering::Relaxed) == 0)
///     .map_err(CondWaitTimeoutError::without_guard)?;
/// drop(g);
/// producer.join()?;
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Condition {
    cell: Shared<RawConditionCell>,
}

impl Condition {
    /// A condition with its own `RLock`, in a shared arena slot (no fd or mapping of its
    /// own).
    pub fn new() -> Result<Self, SegmentError> {
        Ok(Self {
            cell: Shared::new(RawConditionCell::default())?,
        })
    }

    fn guard(&self) -> RLockGuard<'_> {
        RLockGuard::new(&self.cell.lock)
    }

    /// Takes the condition's lock (blocking).
    pub fn lock(&self) -> Result<RLockGuard<'_>, LockError<RLockGuard<'_>>> {
        settle(self.cell.lock.lock(None), || self.guard())
    }

    /// Takes the condition's lock, giving up after `timeout`.
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<RLockGuard<'_>, LockTimeoutError<RLockGuard<'_>>> {
        settle(self.cell.lock.lock(deadline_after(timeout)), || self.guard())
    }

    /// Takes the condition's lock only if that needs no waiting.
    pub fn try_lock(&self) -> Result<RLockGuard<'_>, TryLockError<RLockGuard<'_>>> {
        settle(self.cell.lock.try_lock(), || self.guard())
    }

    /// Python-style `acquire()` of the condition's lock (release with [`release`](Self::release)).
    pub fn acquire(&self) -> Result<(), LockError<()>> {
        settle(self.cell.lock.lock(None), || ())
    }

    /// Python-style `release()` of the condition's lock.
    pub fn release(&self) -> Result<(), ReleaseError> {
        release_result(self.cell.lock.unlock())
    }

    /// The guard proves the caller holds *a* reentrant lock; what must hold is that the
    /// calling thread owns *this* condition's lock (a guard from another handle to the same
    /// condition qualifies: each process maps the arena chunk at its own address).
    fn owns(&self) -> bool {
        self.cell.lock.is_owned_by_me()
    }

    /// One wait: `Ok((guard, notified))`, or the error (the guard inside where it travels).
    fn wait_until<'a>(
        &self,
        guard: RLockGuard<'a>,
        deadline: Option<Instant>,
    ) -> Result<(RLockGuard<'a>, bool), CondWaitError<RLockGuard<'a>>> {
        if !self.owns() {
            return Err(CondWaitError::NotOwner(guard));
        }
        match self.cell.cond.wait(&self.cell.lock, deadline) {
            Ok((notified, Acquired::Normal)) => Ok((guard, notified)),
            Ok((_, Acquired::OwnerDied(tid))) => Err(CondWaitError::OwnerDied(OwnerDied { guard, tid })),
            // Checked above; a lock that changed hands under us counts as corruption.
            Err(CondFail::NotOwner | CondFail::Corrupted) => {
                // The lock is not (validly) held: the guard must not release it.
                std::mem::forget(guard);
                Err(CondWaitError::Corrupted)
            }
        }
    }

    /// Releases the lock, waits for a notify, takes the lock back (Python's `wait()`).
    /// `Err(OwnerDied)` means the lock is held again but a holder died meanwhile.
    pub fn wait<'a>(&self, guard: RLockGuard<'a>) -> Result<RLockGuard<'a>, CondWaitError<RLockGuard<'a>>> {
        self.wait_until(guard, None).map(|(g, _)| g)
    }

    /// Like [`wait`](Self::wait), giving up after `timeout` with `Err(Timeout(guard))`
    /// (Python's `wait(timeout)` returning `False`).
    ///
    /// The timeout bounds the wait for a notify. As in Python, the lock is then taken back
    /// before the call returns — the guard must hold it again — so that last step waits
    /// for the lock's holder as long as it holds it (a holder that dies is detected:
    /// `Err(OwnerDied)`). This is the one timed form in the crate that can outlast its
    /// timeout, and only by another party's critical section.
    pub fn wait_timeout<'a>(
        &self,
        guard: RLockGuard<'a>,
        timeout: Duration,
    ) -> Result<RLockGuard<'a>, CondWaitTimeoutError<RLockGuard<'a>>> {
        match self.wait_until(guard, deadline_after(timeout))? {
            (g, true) => Ok(g),
            (g, false) => Err(CondWaitTimeoutError::Timeout(g)),
        }
    }

    /// Waits while `condition()` holds (checked under the lock, first before any wait), as
    /// std's `Condvar::wait_while`.
    pub fn wait_while<'a>(
        &self,
        mut guard: RLockGuard<'a>,
        mut condition: impl FnMut() -> bool,
    ) -> Result<RLockGuard<'a>, CondWaitError<RLockGuard<'a>>> {
        if !self.owns() {
            return Err(CondWaitError::NotOwner(guard));
        }
        while condition() {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// [`wait_while`](Self::wait_while) bounded by `timeout`: `Err(Timeout(guard))` if
    /// `condition()` still holds at the deadline (as std's `Condvar::wait_timeout_while`).
    pub fn wait_timeout_while<'a>(
        &self,
        mut guard: RLockGuard<'a>,
        timeout: Duration,
        mut condition: impl FnMut() -> bool,
    ) -> Result<RLockGuard<'a>, CondWaitTimeoutError<RLockGuard<'a>>> {
        let deadline = deadline_after(timeout);
        if !self.owns() {
            return Err(CondWaitTimeoutError::NotOwner(guard));
        }
        while condition() {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(CondWaitTimeoutError::Timeout(guard));
            }
            guard = self.wait_until(guard, deadline)?.0;
        }
        Ok(guard)
    }

    /// Python's `wait_for(predicate)`: waits until `predicate()` holds
    /// ([`wait_while`](Self::wait_while) with the test inverted).
    pub fn wait_for<'a>(
        &self,
        guard: RLockGuard<'a>,
        mut predicate: impl FnMut() -> bool,
    ) -> Result<RLockGuard<'a>, CondWaitError<RLockGuard<'a>>> {
        self.wait_while(guard, || !predicate())
    }

    /// Python's `wait_for(predicate, timeout)`: `Err(Timeout(guard))` if `predicate()` is
    /// still false at the deadline (Python returns the predicate's last value, `False`).
    pub fn wait_for_timeout<'a>(
        &self,
        guard: RLockGuard<'a>,
        mut predicate: impl FnMut() -> bool,
        timeout: Duration,
    ) -> Result<RLockGuard<'a>, CondWaitTimeoutError<RLockGuard<'a>>> {
        self.wait_timeout_while(guard, timeout, || !predicate())
    }

    /// Wakes up to `n` waiters; the caller must hold the lock (`NotOwner` otherwise).
    pub fn notify(&self, _guard: &RLockGuard<'_>, n: u32) -> Result<(), NotifyError> {
        if !self.owns() {
            return Err(NotifyError::NotOwner);
        }
        self.cell.cond.notify(n);
        Ok(())
    }

    /// Wakes every waiter; the caller must hold the lock.
    pub fn notify_all(&self, _guard: &RLockGuard<'_>) -> Result<(), NotifyError> {
        if !self.owns() {
            return Err(NotifyError::NotOwner);
        }
        self.cell.cond.notify_all();
        Ok(())
    }
}
