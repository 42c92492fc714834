//! `RawBarrier`: Python's `Barrier(parties)` in place in shared memory.
//!
//! An internal robust lock guards `count`, `broken` and `outcomes`; `generation` is the
//! futex word waiters sleep on. Every round ends by bumping `generation`: normally when its
//! last party arrives, or broken by `abort`, `reset` or a timed-out `wait` (bumping it too
//! means no sleeper can miss the break). Bit `g % 32` of `outcomes` records how round `g`
//! ended, so a waiter that wakes late — even after later rounds ended — still reads its own
//! round's outcome, as long as fewer than 32 rounds ended meanwhile.
//!
//! Timed waits honour their deadline on the internal lock too: a party that cannot take it
//! in time (its holder is stopped, or the word is garbage naming a live thread) returns
//! `Timeout` at its deadline and leaves a *break request* for round `g` in `pending`. Whoever
//! holds the lock carries it out before releasing it (and every locker on entry), and the
//! requester tries the lock once more after posting, so the request cannot fall between a
//! holder's last look and its release (fences on both sides: post, fence, try-lock against
//! release, fence, look). A request for a round that has already ended is dropped.

use std::time::Instant;

use super::park;
use super::raw_lock::Acquired;
use super::raw_lock::{LockFail, RawLock};
use super::unlock::UnlockOnDrop;
use super::wait::{self, Poll, Sleep, Wait};
use crate::loom::{fence, AtomicU32, Ordering};

/// `pending` holds `PENDING | (g & !PENDING)`: break round `g` (0: nothing pending).
const PENDING: u32 = 1 << 31;

/// Why a barrier wait failed (Python's `BrokenBarrierError`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BarrierFail {
    /// The barrier is (or became) broken: aborted, reset while waiting, another party timed
    /// out, or a party died inside the barrier's own lock.
    #[error("the barrier is broken")]
    Broken,
    /// This wait timed out; the barrier is now broken for everyone.
    #[error("timed out waiting at the barrier (the barrier is now broken)")]
    Timeout,
    /// The barrier's fields hold values no correct process writes.
    #[error("the barrier's shared memory is corrupted")]
    Corrupted,
}

/// A registered party waiting for round `g` to end (no registration: `end_round` always
/// wakes every sleeper of `generation`).
struct BarrierWait<'a> {
    barrier: &'a RawBarrier,
    g: u32,
    index: u32,
    deadline: Option<Instant>,
}

impl Wait for BarrierWait<'_> {
    type Output = Result<u32, BarrierFail>;

    fn poll(&mut self) -> Poll<'_, Self::Output> {
        // SYNC POINT (barrier round): acquire pairs with the store in `end_round`.
        if self.barrier.generation.load(Ordering::SeqCst) != self.g {
            return Poll::Ready(self.barrier.outcome(self.g, self.index));
        }
        Poll::Sleep(Sleep::on(&self.barrier.generation, self.g))
    }

    fn timed_out(&mut self) -> Self::Output {
        self.barrier.time_out(self.g, self.index, self.deadline)
    }
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
    /// A break request from a timed-out party that could not take the lock in time.
    pending: AtomicU32,
}

/// The guard of the internal lock; a dead previous holder breaks the barrier.
type Inner<'a> = UnlockOnDrop<'a, RawBarrier>;

impl RawBarrier {
    /// A barrier for `parties`.
    ///
    /// # Panics
    ///
    /// If `parties` is 0 (a programming error; the handle `Barrier::new` refuses it with an
    /// error instead).
    pub fn new(parties: u32) -> Self {
        assert!(parties >= 1, "a barrier needs at least one party");
        let b = Self::default();
        b.parties.store(parties, Ordering::Relaxed);
        b
    }

    /// Takes the internal lock by `deadline` (`Timeout` after it).
    fn enter(&self, deadline: Option<Instant>) -> Result<Inner<'_>, BarrierFail> {
        match self.lock.lock(deadline) {
            Ok(how) => {
                self.entered(how);
                Ok(UnlockOnDrop(self))
            }
            Err(LockFail::Timeout | LockFail::WouldBlock) => Err(BarrierFail::Timeout),
            Err(_) => Err(BarrierFail::Corrupted),
        }
    }

    /// Just took the internal lock: repairs after a dead holder, carries out a request.
    fn entered(&self, how: Acquired) {
        if let Acquired::OwnerDied(_) = how {
            // A party died while updating the fields: they cannot be trusted.
            self.break_round();
        }
        self.settle();
    }

    /// Internal lock held: carries out a pending break request for the current round.
    fn settle(&self) {
        // (A request posted after this look is caught by `release`'s look after unlocking.)
        if self.pending.load(Ordering::Relaxed) == 0 {
            return;
        }
        let p = self.pending.swap(0, Ordering::Relaxed);
        let g = self.generation.load(Ordering::Relaxed);
        if p & PENDING != 0 && (p ^ g) & !PENDING == 0 {
            self.break_round();
        }
    }

    /// Releases the internal lock, then makes sure no break request posted meanwhile is
    /// left behind (see the module docs).
    pub(super) fn release(&self) {
        self.settle();
        let _ = self.lock.unlock();
        // SYNC POINT (break request): pairs with the fence in `request_break`.
        fence(Ordering::SeqCst);
        self.serve_requests();
    }

    /// While a request is pending and the lock is free, takes it and carries it out.
    fn serve_requests(&self) {
        while self.pending.load(Ordering::SeqCst) != 0 {
            if self.lock.is_locked_sc() {
                // Held: its holder settles before it releases, and looks again after.
                return;
            }
            match self.lock.try_lock() {
                Ok(how) => {
                    self.entered(how);
                    let _ = self.lock.unlock();
                    fence(Ordering::SeqCst);
                }
                // Taken meanwhile: its holder settles before it releases.
                Err(_) => return,
            }
        }
    }

    /// A timed-out party that could not take the lock asks for round `g` to be broken.
    fn request_break(&self, g: u32) {
        // A swap, not a store: as a read-modify-write it lands after every settle's swap
        // that came before it in the word's modification order, never beneath one.
        self.pending.swap(PENDING | (g & !PENDING), Ordering::Relaxed);
        // SYNC POINT (break request): pairs with the fence in `release`.
        fence(Ordering::SeqCst);
        self.serve_requests();
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

    /// How round `g` ended (round over: `generation` was seen past `g` with an acquiring
    /// load, which orders this read after the ending party's write of `outcomes`).
    fn outcome(&self, g: u32, index: u32) -> Result<u32, BarrierFail> {
        if self.outcomes.load(Ordering::Relaxed) & (1u32 << (g % 32)) != 0 {
            Err(BarrierFail::Broken)
        } else {
            Ok(index)
        }
    }

    /// Loom hook: what a party whose deadline passed does about the internal lock — break
    /// the round itself if the lock is free, else post a request for its holder.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn loom_time_out(&self) {
        let g = self.generation.load(Ordering::SeqCst);
        match self.lock.try_lock() {
            Ok(how) => {
                let _inner = UnlockOnDrop(self);
                self.entered(how);
                if self.generation.load(Ordering::Relaxed) == g {
                    self.break_round();
                }
            }
            Err(_) => self.request_break(g),
        }
    }

    /// Loom hook: `(generation, pending)`.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn loom_state(&self) -> (u32, u32) {
        (
            self.generation.load(Ordering::SeqCst),
            self.pending.load(Ordering::SeqCst),
        )
    }

    /// Waits for all parties; returns this party's arrival index (`0..parties`).
    ///
    /// `deadline` bounds the whole call, the internal lock included; a wait that times out
    /// breaks the barrier for everyone (at once, or — if the lock's holder is stopped — as
    /// soon as that holder releases it).
    pub fn wait(&self, deadline: Option<Instant>) -> Result<u32, BarrierFail> {
        let (g, index) = {
            let _inner = match self.enter(deadline) {
                Err(BarrierFail::Timeout) => {
                    self.request_break(self.generation.load(Ordering::SeqCst));
                    return Err(BarrierFail::Timeout);
                }
                r => r?,
            };
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
        wait::block(
            &mut BarrierWait {
                barrier: self,
                g,
                index,
                deadline,
            },
            deadline,
        )
    }

    /// The deadline of a registered party passed with round `g` still open.
    fn time_out(&self, g: u32, index: u32, deadline: Option<Instant>) -> Result<u32, BarrierFail> {
        if self.generation.load(Ordering::SeqCst) != g {
            return self.outcome(g, index);
        }
        let _inner = match self.enter(deadline) {
            Err(BarrierFail::Timeout) => {
                self.request_break(g);
                // The lock's holder may have been ending this very round (the last
                // party arriving): a round that completed counts, as in Python.
                if self.generation.load(Ordering::SeqCst) != g {
                    if let Ok(i) = self.outcome(g, index) {
                        return Ok(i);
                    }
                }
                return Err(BarrierFail::Timeout);
            }
            r => r?,
        };
        if self.generation.load(Ordering::Relaxed) != g {
            // Released (or broken) just as we timed out: report what happened.
            return self.outcome(g, index);
        }
        self.break_round();
        Err(BarrierFail::Timeout)
    }

    /// Breaks the barrier: current and future waits fail until [`reset`](Self::reset).
    pub fn abort(&self) -> Result<(), BarrierFail> {
        let _inner = self.enter(None)?;
        self.break_round();
        Ok(())
    }

    /// Returns the barrier to its empty, unbroken state; current waiters get `Broken`.
    pub fn reset(&self) -> Result<(), BarrierFail> {
        let _inner = self.enter(None)?;
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
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Relaxed) != 0
    }
}
