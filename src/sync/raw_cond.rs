//! `RawCondition`: the wait queue of Python's `Condition`, in place in shared memory; the
//! lock is the caller's (a `RawRLock`).
//!
//! `seq` (the futex word) moves on every notify. A waiter reads `seq` while it still holds
//! the lock, releases the lock, and sleeps only while `seq` is unchanged; since notifiers hold
//! the lock too, a notify either precedes the read (and the waiter was not yet waiting) or
//! changes `seq` after it (and the futex does not sleep or is woken). Wake-ups may be
//! spurious, as with every condition variable: loop on the predicate (`wait_for`).

use std::time::Instant;

use super::park;
use super::raw_lock::{Acquired, LockFail, RawRLock, ReleaseFail};
use super::wait::{self, Poll, Sleep, Wait};
use crate::loom::{AtomicU32, Ordering};

/// Why a condition wait failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CondFail {
    /// The caller does not hold the lock (Python's `RuntimeError`).
    #[error("the calling thread does not hold the lock")]
    NotOwner,
    /// The lock's state is invalid.
    #[error("the condition's shared memory is corrupted")]
    Corrupted,
}

/// A blocked `wait`: released when `seq` moves past the value read under the lock. The
/// registration (`waiters`) is made by `RawCondition::wait` before it releases the lock, so
/// `poll` only re-checks.
struct CondWait<'a> {
    cond: &'a RawCondition,
    seq: u32,
}

impl Wait for CondWait<'_> {
    type Output = bool;

    fn poll(&mut self) -> Poll<'_, bool> {
        if self.cond.seq.load(Ordering::SeqCst) != self.seq {
            return Poll::Ready(true);
        }
        Poll::Sleep(Sleep::on(&self.cond.seq, self.seq))
    }

    fn timed_out(&mut self) -> bool {
        self.cond.seq.load(Ordering::SeqCst) != self.seq
    }
}

/// A condition variable's wait queue; `#[repr(C)]`.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RawCondition {
    seq: AtomicU32,
    waiters: AtomicU32,
}

impl RawCondition {
    /// A condition with no waiters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Releases `lock` (all levels), waits for a notify or `deadline`, then takes `lock`
    /// back with the same depth. Returns `(notified, how the lock was re-taken)`.
    pub fn wait(&self, lock: &RawRLock, deadline: Option<Instant>) -> Result<(bool, Acquired), CondFail> {
        let s = self.seq.load(Ordering::Relaxed);
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let levels = match lock.unlock_all() {
            Ok(l) => l,
            Err(e) => {
                self.waiters.fetch_sub(1, Ordering::SeqCst);
                return Err(match e {
                    ReleaseFail::NotOwner | ReleaseFail::NotLocked => CondFail::NotOwner,
                    ReleaseFail::Corrupted => CondFail::Corrupted,
                });
            }
        };
        // Registered above (before releasing the lock); a wake-up with `seq` unchanged is
        // spurious (a shared futex may be hashed with others) and the loop sleeps again.
        let notified = wait::block(&mut CondWait { cond: self, seq: s }, deadline);
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        match lock.relock(levels, None) {
            Ok(how) => Ok((notified, how)),
            Err(LockFail::Corrupted) => Err(CondFail::Corrupted),
            Err(_) => Err(CondFail::Corrupted),
        }
    }

    /// Wakes up to `n` waiters. The caller must hold the lock (checked by the handle).
    pub fn notify(&self, n: u32) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        if n > 0 && self.waiters.load(Ordering::SeqCst) > 0 {
            if n == 1 {
                park::wake_one(&self.seq);
            } else {
                park::wake_n(&self.seq, n);
            }
        }
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.notify(u32::MAX);
    }
}
