//! `RawSemaphore`: a counting semaphore in place in shared memory (Python's `Semaphore` and
//! `BoundedSemaphore`).
//!
//! `value` is the futex word; `waiters` counts sleepers so a release only calls
//! `futex_wake` when someone may sleep. Waiter: `waiters += 1` then re-read `value`;
//! releaser: raise `value` then read `waiters` — both `SeqCst`, so at least one of them sees
//! the other (and the futex's own value check covers the rest): no lost wake-up.

use std::time::Instant;

use super::park;
use super::wait::{self, Poll, Sleep, Wait};
use crate::loom::{AtomicU32, Ordering};

/// Why a semaphore operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SemFail {
    /// No unit available (try form).
    #[error("no unit is available")]
    WouldBlock,
    /// The deadline passed.
    #[error("timed out")]
    Timeout,
    /// A bounded semaphore would exceed its initial value (Python's `ValueError`), or an
    /// unbounded one would overflow.
    #[error("semaphore released too many times")]
    TooManyReleases,
    /// `value` exceeds the bound: written by a buggy or hostile peer.
    #[error("the semaphore's shared memory is corrupted")]
    Corrupted,
}

/// A blocked `acquire`: what it waits on, for [`wait::block`].
struct SemWait<'a>(&'a RawSemaphore);

impl Wait for SemWait<'_> {
    type Output = Result<(), SemFail>;
    const SPIN: bool = true;

    fn busy(&self) -> bool {
        self.0.value.load(Ordering::Relaxed) == 0
    }

    fn poll(&mut self) -> Poll<'_, Self::Output> {
        let sem = self.0;
        match sem.try_acquire() {
            Err(SemFail::WouldBlock) => {}
            r => return Poll::Ready(r),
        }
        // Register, then re-read (the SeqCst handshake of the module docs).
        sem.waiters.fetch_add(1, Ordering::SeqCst);
        if sem.value.load(Ordering::SeqCst) != 0 {
            sem.waiters.fetch_sub(1, Ordering::SeqCst);
            return Poll::Retry;
        }
        Poll::Sleep(Sleep::on(&sem.value, 0))
    }

    fn after_sleep(&mut self) {
        self.0.waiters.fetch_sub(1, Ordering::SeqCst);
    }

    fn timed_out(&mut self) -> Self::Output {
        self.0.try_acquire().map_err(|e| match e {
            SemFail::WouldBlock => SemFail::Timeout,
            e => e,
        })
    }
}

/// A counting semaphore; `#[repr(C)]`.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RawSemaphore {
    value: AtomicU32,
    waiters: AtomicU32,
    /// The largest value `release` may reach, when `bounded` is non-zero.
    bound: AtomicU32,
    bounded: AtomicU32,
}

/// The largest value of an unbounded semaphore.
pub const SEM_VALUE_MAX: u32 = i32::MAX as u32;

impl RawSemaphore {
    /// A semaphore holding `value` units; `bounded` makes `value` also the maximum.
    ///
    /// # Panics
    ///
    /// If `value` exceeds [`SEM_VALUE_MAX`] (a programming error; the handles
    /// `Semaphore::new`/`BoundedSemaphore::new` refuse it with an error instead).
    pub fn new(value: u32, bounded: bool) -> Self {
        assert!(
            value <= SEM_VALUE_MAX,
            "semaphore value {value} exceeds SEM_VALUE_MAX"
        );
        Self {
            value: AtomicU32::new(value),
            waiters: AtomicU32::new(0),
            bound: AtomicU32::new(value),
            bounded: AtomicU32::new(u32::from(bounded)),
        }
    }

    fn limit(&self) -> u32 {
        if self.bounded.load(Ordering::Relaxed) != 0 {
            self.bound.load(Ordering::Relaxed).min(SEM_VALUE_MAX)
        } else {
            SEM_VALUE_MAX
        }
    }

    /// Takes one unit if one is free.
    pub fn try_acquire(&self) -> Result<(), SemFail> {
        let mut v = self.value.load(Ordering::Relaxed);
        loop {
            if v == 0 {
                return Err(SemFail::WouldBlock);
            }
            if v > self.limit() {
                return Err(SemFail::Corrupted);
            }
            // SYNC POINT (semaphore unit): acquire pairs with the release in `release`.
            match self
                .value
                .compare_exchange_weak(v, v - 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(now) => v = now,
            }
        }
    }

    /// Takes one unit, waiting until `deadline` (`None`: forever).
    #[inline]
    pub fn acquire(&self, deadline: Option<Instant>) -> Result<(), SemFail> {
        match self.try_acquire() {
            Err(SemFail::WouldBlock) => self.acquire_slow(deadline),
            r => r,
        }
    }

    #[cold]
    fn acquire_slow(&self, deadline: Option<Instant>) -> Result<(), SemFail> {
        wait::block(&mut SemWait(self), deadline)
    }

    /// Returns one unit, waking a waiter if any.
    pub fn release(&self) -> Result<(), SemFail> {
        let limit = self.limit();
        let mut v = self.value.load(Ordering::Relaxed);
        loop {
            if v > limit {
                return Err(SemFail::Corrupted);
            }
            if v == limit {
                return Err(SemFail::TooManyReleases);
            }
            // SYNC POINT (semaphore unit): release pairs with the acquire in `try_acquire`;
            // SeqCst also orders it before the `waiters` load below (see module docs).
            match self
                .value
                .compare_exchange_weak(v, v + 1, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => v = now,
            }
        }
        if self.waiters.load(Ordering::SeqCst) > 0 {
            park::wake_one(&self.value);
        }
        Ok(())
    }

    /// The current value (Python's `get_value()`).
    pub fn value(&self) -> u32 {
        self.value.load(Ordering::Relaxed)
    }

    /// The bound of a bounded semaphore.
    pub fn bound(&self) -> Option<u32> {
        (self.bounded.load(Ordering::Relaxed) != 0).then(|| self.bound.load(Ordering::Relaxed))
    }
}
