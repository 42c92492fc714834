//! `RawEvent`: Python's `Event` in place in shared memory.
//!
//! One futex word holds the flag (bit 0) and a generation counter (bits 1..) that every
//! `set` moves, in a single atomic step. A waiter waits for the flag *or* a generation move,
//! so a `set` immediately followed by `clear` still releases everyone who was already
//! waiting, and since flag and generation change together, a waiter that saw one `set` and
//! started a new wait after `clear` can never be released by that same `set`. `waiters` lets
//! `set` skip `futex_wake` when nobody sleeps (the SeqCst handshake of `RawSemaphore`).

use std::time::Instant;

use super::park;
use super::wait::{self, Poll, Sleep, Wait};
use crate::loom::{AtomicU32, Ordering};

/// An event flag and a generation counter in ONE word (bit 0: flag; bits 1..: generation),
/// so `set` (flag up + generation bump) is a single atomic step; `#[repr(C)]`, all-zero is
/// "clear".
#[repr(C)]
#[derive(Debug, Default)]
pub struct RawEvent {
    state: AtomicU32,
    _reserved: AtomicU32,
    waiters: AtomicU32,
    _pad: AtomicU32,
}

impl RawEvent {
    /// A clear event.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the flag and wakes every waiter, in every process.
    pub fn set(&self) {
        // SYNC POINT (event): one RMW raises the flag and moves the generation.
        let mut v = self.state.load(Ordering::Relaxed);
        loop {
            match self.state.compare_exchange_weak(
                v,
                v.wrapping_add(2) | 1,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => v = now,
            }
        }
        if self.waiters.load(Ordering::SeqCst) > 0 {
            park::wake_all(&self.state);
        }
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.state.fetch_and(!1, Ordering::SeqCst);
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.state.load(Ordering::Acquire) & 1 != 0
    }

    /// Waits until the flag is set or a `set` happens, or until `deadline`.
    /// Returns whether the event was set (Python's `wait` result).
    pub fn wait(&self, deadline: Option<Instant>) -> bool {
        let v0 = self.state.load(Ordering::SeqCst);
        if v0 & 1 != 0 {
            return true;
        }
        wait::block(&mut EventWait { ev: self, v0 }, deadline)
    }
}

/// A blocked `wait`: released by the flag or by a generation move past `v0`.
struct EventWait<'a> {
    ev: &'a RawEvent,
    /// The state when the wait began (flag clear).
    v0: u32,
}

impl EventWait<'_> {
    fn moved(&self, v: u32) -> bool {
        v & 1 != 0 || (v & !1) != self.v0
    }
}

impl Wait for EventWait<'_> {
    type Output = bool;
    const SPIN: bool = true;

    fn busy(&self) -> bool {
        !self.moved(self.ev.state.load(Ordering::SeqCst))
    }

    fn try_complete(&mut self) -> Option<bool> {
        // The spin saw the event move: nothing to register for.
        Some(true)
    }

    fn poll(&mut self) -> Poll<'_, bool> {
        // Register, then re-read (the SeqCst handshake with `set`).
        self.ev.waiters.fetch_add(1, Ordering::SeqCst);
        let v = self.ev.state.load(Ordering::SeqCst);
        if self.moved(v) {
            self.ev.waiters.fetch_sub(1, Ordering::SeqCst);
            return Poll::Ready(true);
        }
        Poll::Sleep(Sleep::on(&self.ev.state, v))
    }

    fn after_sleep(&mut self) {
        self.ev.waiters.fetch_sub(1, Ordering::SeqCst);
    }

    fn timed_out(&mut self) -> bool {
        self.moved(self.ev.state.load(Ordering::SeqCst))
    }
}
