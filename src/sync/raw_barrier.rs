//! `RawBarrier`: Python's `Barrier(parties)` in place in shared memory.
//!
//! An internal robust lock guards `count`, `broken` and `outcomes`; `generation` is the
//! futex word waiters sleep on. Every round ends by bumping `generation`: normally when its
//! last party arrives, or broken by `abort`, `reset` or a timed-out `wait` (bumping it too
//! means no sleeper can miss the break). Bit `g % 32` of `outcomes` records how round `g`
//! ended, so a waiter that wakes late — even after later rounds ended — still reads its own
//! round's outcome, as long as fewer than 32 rounds ended meanwhile.

use std::time::Instant;

use super::park;
use super::raw_lock::{LockFail, RawLock};
use crate::loom::{AtomicU32, Ordering};

/// Why a barrier wait failed (Python's `BrokenBarrierError`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarrierFail {
    /// The barrier is (or became) broken: aborted, reset while waiting, another party timed
    /// out, or a party died inside the barrier's own lock.
    Broken,
    /// This wait timed out; the barrier is now broken for everyone.
    Timeout,
    /// The barrier's fields hold values no correct process writes.
    Corrupted,
}

/// A cyclic barrier; `#[repr(C)]`.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RawBarrier {
    lock: RawLock,
    generation: AtomicU32,
    count: AtomicU32,
    parties: AtomicU32,
    broken: AtomicU32,
    /// Bit `g % 32` set: round `g` was broken.
    outcomes: AtomicU32,
    _pad: AtomicU32,
}

/// The guard of the internal lock; a dead previous holder breaks the barrier.
struct Inner<'a>(&'a RawBarrier);

impl Drop for Inner<'_> {
    fn drop(&mut self) {
        let _ = self.0.lock.unlock();
    }
}

impl RawBarrier {
    /// A barrier for `parties` (at least 1).
    pub fn new(parties: u32) -> Self {
        let b = Self::default();
        b.parties.store(parties.max(1), Ordering::Relaxed);
        b
    }

    fn enter(&self) -> Result<Inner<'_>, BarrierFail> {
        match self.lock.lock(None) {
            Ok(super::raw_lock::Acquired::Normal) => Ok(Inner(self)),
            Ok(super::raw_lock::Acquired::OwnerDied(_)) => {
                // A party died while updating the fields: they cannot be trusted.
                let g = Inner(self);
                self.break_round();
                Ok(g)
            }
            Err(LockFail::Corrupted) => Err(BarrierFail::Corrupted),
            Err(_) => Err(BarrierFail::Corrupted),
        }
    }

    /// Breaks the current round; call with the internal lock held.
    fn break_round(&self) {
        self.broken.store(1, Ordering::Relaxed);
        self.count.store(0, Ordering::Relaxed);
        let g = self.generation.load(Ordering::Relaxed);
        self.end_round(g, true);
    }

    /// Records how round `g` ended and releases its waiters; internal lock held.
    fn end_round(&self, g: u32, broken: bool) {
        let bit = 1u32 << (g % 32);
        let o = self.outcomes.load(Ordering::Relaxed);
        self.outcomes
            .store(if broken { o | bit } else { o & !bit }, Ordering::Relaxed);
        // SYNC POINT (barrier round): release pairs with the acquire loads in `wait`.
        self.generation.store(g.wrapping_add(1), Ordering::SeqCst);
        park::wake_all(&self.generation);
    }

    /// How round `g` ended (internal lock held, round over).
    fn outcome(&self, g: u32, index: u32) -> Result<u32, BarrierFail> {
        if self.outcomes.load(Ordering::Relaxed) & (1u32 << (g % 32)) != 0 {
            Err(BarrierFail::Broken)
        } else {
            Ok(index)
        }
    }

    /// Waits for all parties; returns this party's arrival index (`0..parties`).
    pub fn wait(&self, deadline: Option<Instant>) -> Result<u32, BarrierFail> {
        let (g, index) = {
            let _inner = self.enter()?;
            if self.broken.load(Ordering::Relaxed) != 0 {
                return Err(BarrierFail::Broken);
            }
            let parties = self.parties.load(Ordering::Relaxed);
            let index = self.count.load(Ordering::Relaxed);
            if parties == 0 || index >= parties {
                self.break_round();
                return Err(BarrierFail::Corrupted);
            }
            let g = self.generation.load(Ordering::Relaxed);
            if index + 1 == parties {
                self.count.store(0, Ordering::Relaxed);
                self.end_round(g, false);
                return Ok(index);
            }
            self.count.store(index + 1, Ordering::Relaxed);
            (g, index)
        };
        loop {
            if self.generation.load(Ordering::SeqCst) != g {
                let _inner = self.enter()?;
                return self.outcome(g, index);
            }
            if !park::wait(&self.generation, g, deadline) && self.generation.load(Ordering::SeqCst) == g {
                let _inner = self.enter()?;
                if self.generation.load(Ordering::Relaxed) != g {
                    // Released (or broken) just as we timed out: report what happened.
                    return self.outcome(g, index);
                }
                self.break_round();
                return Err(BarrierFail::Timeout);
            }
        }
    }

    /// Breaks the barrier: current and future waits fail until [`reset`](Self::reset).
    pub fn abort(&self) -> Result<(), BarrierFail> {
        let _inner = self.enter()?;
        self.break_round();
        Ok(())
    }

    /// Returns the barrier to its empty, unbroken state; current waiters get `Broken`.
    pub fn reset(&self) -> Result<(), BarrierFail> {
        let _inner = self.enter()?;
        if self.count.load(Ordering::Relaxed) > 0 {
            self.break_round();
        }
        self.broken.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// Number of parties.
    pub fn parties(&self) -> u32 {
        self.parties.load(Ordering::Relaxed)
    }

    /// Parties currently waiting (Python's `n_waiting`).
    pub fn n_waiting(&self) -> u32 {
        self.count.load(Ordering::Relaxed)
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        self.broken.load(Ordering::Relaxed) != 0
    }
}
