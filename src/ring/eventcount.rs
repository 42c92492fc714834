//! `EventCount`: lets a ring's consumer (or producer) sleep until the other side made
//! progress, while the other side pays nothing when nobody sleeps.
//!
//! Waiter: `let key = ec.prepare_wait();` → re-check the condition → `cancel_wait()` if it
//! holds, else `wait(key, deadline)`. Notifier: make the condition true, then `notify()`.
//!
//! `seq`'s low bit says "someone sleeps (or is about to) on this value". `prepare_wait`
//! raises `waiters` and sets that bit with a SeqCst RMW before the caller re-checks;
//! `notify` issues a SeqCst fence, reads `waiters`, and only if the bit is set bumps `seq`
//! (clearing the bit) and wakes. By the total order of those SeqCst operations either the
//! notifier sees the waiter's bit (and bumps `seq`, so the futex wait cannot sleep on the
//! old value, and wakes it), or the waiter's re-check sees the notifier's data: no lost
//! wake-up. Because the bump clears the bit, the notifications that follow while the woken
//! threads are still on their way out pay no futex call: one wake per sleep episode, not
//! one per message (a producer filling a ring whose consumer sleeps would otherwise make a
//! syscall per item until the consumer runs again).
//! A waiter that dies while counted only costs a later notifier one futex call.

use std::time::Instant;

use crate::loom::{fence, AtomicU32, Ordering};
use crate::sync::park;
use crate::sync::wait::{self, Poll, Sleep, Wait};

/// Low bit of `seq`: a waiter took the current value as its key.
const SLEEPERS: u32 = 1;

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
        let key = self.seq.fetch_or(SLEEPERS, Ordering::SeqCst) | SLEEPERS;
        fence(Ordering::SeqCst);
        key
    }

    /// Withdraws a `prepare_wait` whose condition turned out to hold.
    pub fn cancel_wait(&self) {
        self.waiters.fetch_sub(1, Ordering::SeqCst);
    }

    /// Sleeps until notified after `key` was taken, or until `deadline`. Returns `false` on
    /// timeout. Always ends the registration made by `prepare_wait`.
    pub fn wait(&self, key: u32, deadline: Option<Instant>) -> bool {
        let r = self.seq.load(Ordering::SeqCst) != key || wait::sleep_on(self.sleep(key), deadline);
        self.cancel_wait();
        r
    }

    /// The `poll` of a wait on this event count: registers, re-checks with `ready`, and
    /// withdraws if that gives the answer, else sleeps on the key.
    fn poll_with<T>(&self, ready: impl FnOnce() -> Option<T>) -> Poll<'_, T> {
        let key = self.prepare_wait();
        if let Some(v) = ready() {
            self.cancel_wait();
            return Poll::Ready(v);
        }
        Poll::Sleep(self.sleep(key))
    }

    /// What a waiter holding `key` sleeps on (the [`wait`](crate::sync::wait) seam).
    pub(crate) fn sleep(&self, key: u32) -> Sleep<'_> {
        Sleep::on(&self.seq, key)
    }

    /// Waits until `ready()` gives a value, or until `deadline` passes (`None` then; `ready`
    /// is asked once more at the deadline). Runs the whole protocol — register, re-check,
    /// sleep, withdraw — in the crate's one wait loop, so a caller cannot get it wrong.
    /// `ready` must read the state the notifier changes before its [`notify`](Self::notify).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::time::{Duration, Instant};
    /// use shmproc::raw::EventCount;
    ///
    /// let (ec, flag) = (EventCount::new(), AtomicU32::new(0));
    /// std::thread::scope(|s| {
    ///     s.spawn(|| {
    ///         flag.store(7, Ordering::Release);
    ///         ec.notify();
    ///     });
    ///     let got = ec.wait_until(None, || Some(flag.load(Ordering::Acquire)).filter(|&v| v != 0));
    ///     assert_eq!(got, Some(7));
    /// });
    /// let soon = Instant::now() + Duration::from_millis(5);
    /// assert_eq!(ec.wait_until(Some(soon), || None::<()>), None); // timed out
    /// ```
    pub fn wait_until<T>(&self, deadline: Option<Instant>, ready: impl FnMut() -> Option<T>) -> Option<T> {
        wait::block(&mut EcWait { ec: self, ready }, deadline)
    }

    /// [`wait_until`](Self::wait_until) that first spins briefly while `ready()` gives
    /// nothing (the channel layer's waits: a hand-over that comes within a few µs never pays
    /// for a futex sleep and wake-up).
    #[inline]
    pub(crate) fn spin_wait_until<T>(
        &self,
        deadline: Option<Instant>,
        ready: impl Fn() -> Option<T>,
    ) -> Option<T> {
        let mut w = SpinWait::<_, _, false> {
            ec: self,
            ready,
            alive: || true,
        };
        wait::block(&mut w, deadline).ok()
    }

    /// [`spin_wait_until`](Self::spin_wait_until) for a condition only a peer that may die
    /// makes true: sleeps in liveness slices, and after each slice that ended without a
    /// wake-up (and with `ready()` still giving nothing) asks `alive()`; `Err(PeerGone)`
    /// once that says no, `Err(TimedOut)` when `deadline` passes.
    pub(crate) fn spin_wait_while_alive<T>(
        &self,
        deadline: Option<Instant>,
        ready: impl Fn() -> Option<T>,
        alive: impl FnMut() -> bool,
    ) -> Result<T, Ended> {
        wait::block(
            &mut SpinWait::<_, _, true> {
                ec: self,
                ready,
                alive,
            },
            deadline,
        )
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
        let mut s = self.seq.load(Ordering::SeqCst);
        while s & SLEEPERS != 0 {
            // Next value, bit cleared: later notifiers skip the wake until someone waits again.
            let next = (s | SLEEPERS).wrapping_add(1);
            match self
                .seq
                .compare_exchange(s, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => {
                    park::wake_all(&self.seq);
                    return;
                }
                Err(now) => s = now,
            }
        }
    }

    /// Whether someone is (or was, before dying) registered as a waiter.
    pub fn has_waiters(&self) -> bool {
        self.waiters.load(Ordering::Relaxed) != 0
    }
}

/// A wait on an [`EventCount`] for a condition `ready` checks: registration is
/// `prepare_wait`, the re-check is `ready`, the sleep is on the key.
struct EcWait<'a, F> {
    ec: &'a EventCount,
    ready: F,
}

impl<T, F: FnMut() -> Option<T>> Wait for EcWait<'_, F> {
    type Output = Option<T>;

    fn poll(&mut self) -> Poll<'_, Option<T>> {
        self.ec.poll_with(|| (self.ready)().map(Some))
    }

    fn after_sleep(&mut self) {
        self.ec.cancel_wait();
    }

    fn timed_out(&mut self) -> Option<T> {
        (self.ready)()
    }
}

/// Why a [`spin_wait_while_alive`](EventCount::spin_wait_while_alive) ended without its
/// condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    TimedOut,
    PeerGone,
}

/// [`EcWait`] with a spin phase (`ready` is `Fn`, so the spin can ask it through `&self`)
/// and, when `LIVE`, liveness slices that ask `alive`.
struct SpinWait<'a, F, A, const LIVE: bool> {
    ec: &'a EventCount,
    ready: F,
    alive: A,
}

impl<T, F: Fn() -> Option<T>, A: FnMut() -> bool, const LIVE: bool> Wait for SpinWait<'_, F, A, LIVE> {
    type Output = Result<T, Ended>;

    const SPIN: bool = true;
    const LIVENESS: bool = LIVE;

    fn busy(&self) -> bool {
        (self.ready)().is_none()
    }

    fn try_complete(&mut self) -> Option<Result<T, Ended>> {
        (self.ready)().map(Ok)
    }

    fn poll(&mut self) -> Poll<'_, Result<T, Ended>> {
        self.ec.poll_with(|| (self.ready)().map(Ok))
    }

    fn after_sleep(&mut self) {
        self.ec.cancel_wait();
    }

    fn check_owner(&mut self) -> Option<Result<T, Ended>> {
        // A wake-up racing with the end of the slice is not taken for a dead peer.
        if let Some(v) = (self.ready)() {
            return Some(Ok(v));
        }
        (!(self.alive)()).then_some(Err(Ended::PeerGone))
    }

    fn timed_out(&mut self) -> Result<T, Ended> {
        (self.ready)().ok_or(Ended::TimedOut)
    }
}
