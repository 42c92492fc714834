//! `RawEvent`: Python's `Event` in place in shared memory.
//!
//! `flag` is what `is_set` reports; `generation` (the futex word) counts `set` calls, so a
//! `set` immediately followed by `clear` still releases everyone who was already waiting:
//! they wait for the generation to move, not for the flag to stay up. `waiters` lets `set`
//! skip `futex_wake` when nobody sleeps (the same SeqCst handshake as `RawSemaphore`).

use std::time::Instant;

use super::park;
use crate::loom::{AtomicU32, Ordering};

/// An event flag with a generation counter; `#[repr(C)]`, all-zero is "clear".
#[repr(C)]
#[derive(Debug, Default)]
pub struct RawEvent {
    flag: AtomicU32,
    generation: AtomicU32,
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
        // SYNC POINT (event): release (SeqCst) pairs with the acquire loads in `wait`.
        self.flag.store(1, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            park::wake_all(&self.generation);
        }
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.flag.store(0, Ordering::SeqCst);
    }

    /// Whether the flag is set (any non-zero value written by a peer counts as set).
    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::Acquire) != 0
    }

    /// Waits until the flag is set or a `set` happens, or until `deadline`.
    /// Returns whether the event was set (Python's `wait` result).
    pub fn wait(&self, deadline: Option<Instant>) -> bool {
        if self.is_set() {
            return true;
        }
        let g = self.generation.load(Ordering::SeqCst);
        let moved = || self.flag.load(Ordering::SeqCst) != 0 || self.generation.load(Ordering::SeqCst) != g;
        if moved() || park::spin_while(|| !moved()) {
            return true;
        }
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let result = loop {
            if moved() {
                break true;
            }
            if !park::wait(&self.generation, g, deadline) {
                break moved();
            }
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        result
    }
}
