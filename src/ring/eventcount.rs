//! `EventCount`: lets a ring's consumer (or producer) sleep until the other side made
//! progress, while the other side pays nothing when nobody sleeps.
//!
//! Waiter: `let key = ec.prepare_wait();` → re-check the condition → `cancel_wait()` if it
//! holds, else `wait(key, deadline)`. Notifier: make the condition true, then `notify()`.
//!
//! `notify` issues a SeqCst fence and reads `waiters`; `prepare_wait` raises `waiters` and
//! issues a SeqCst fence before the caller re-checks. By the fences' total order either the
//! notifier sees the waiter (and bumps `seq`, so the futex wait cannot sleep on the old
//! value, and wakes it), or the waiter's re-check sees the notifier's data: no lost wake-up.
//! A waiter that dies while counted only costs later notifiers a futex call.

use std::time::Instant;

use crate::loom::{fence, AtomicU32, Ordering};
use crate::sync::park;

/// A futex-backed event count; `#[repr(C)]`, all-zero is valid.
#[repr(C)]
#[derive(Debug, Default)]
pub struct EventCount {
    seq: AtomicU32,
    waiters: AtomicU32,
}

impl EventCount {
    /// An event count with no waiters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the caller as a waiter and returns the key to wait on.
    pub fn prepare_wait(&self) -> u32 {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.seq.load(Ordering::SeqCst)
    }

    /// Withdraws a `prepare_wait` whose condition turned out to hold.
    pub fn cancel_wait(&self) {
        self.waiters.fetch_sub(1, Ordering::SeqCst);
    }

    /// Sleeps until notified after `key` was taken, or until `deadline`. Returns `false` on
    /// timeout. Always ends the registration made by `prepare_wait`.
    pub fn wait(&self, key: u32, deadline: Option<Instant>) -> bool {
        let r = self.seq.load(Ordering::SeqCst) != key || park::wait(&self.seq, key, deadline);
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        r
    }

    /// Wakes every waiter, if there is any. Call after making the condition true.
    #[inline]
    pub fn notify(&self) {
        fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::Relaxed) != 0 {
            self.notify_slow();
        }
    }

    #[cold]
    fn notify_slow(&self) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        park::wake_all(&self.seq);
    }

    /// Whether someone is (or was, before dying) registered as a waiter.
    pub fn has_waiters(&self) -> bool {
        self.waiters.load(Ordering::Relaxed) != 0
    }
}
