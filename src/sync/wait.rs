//! The one wait loop of the crate: every blocking primitive (`RawLock`, `RawSemaphore`,
//! `RawEvent`, `RawCondition`, `RawBarrier`, the rings' `EventCount`) blocks through
//! [`block`].
//!
//! # Design: *what* to wait on is separate from *how* to sleep
//!
//! A primitive describes one wait as a [`Wait`] value:
//!
//! - [`Wait::try_complete`] finishes without registering when a spin phase saw the wait
//!   end (the cheap path);
//! - [`Wait::poll`] registers the caller as a sleeper (whatever "someone sleeps" state the
//!   primitive keeps: a waiter count, a `WAITERS` bit, an eventcount key), re-checks the
//!   condition, and answers [`Poll::Ready`] (done: success or a final error), [`Poll::Retry`]
//!   (the state moved under us: poll again at once) or [`Poll::Sleep`] with a [`Sleep`]
//!   descriptor — *a futex word and the value it must still hold for sleeping to be right*;
//! - [`Wait::after_sleep`] undoes that registration once the sleep is over (whether woken,
//!   spuriously woken or timed out);
//! - [`Wait::check_owner`] (for waits whose progress depends on a thread that may die,
//!   `Wait::LIVENESS`) looks at that thread after each sleep slice that ended unwoken;
//! - [`Wait::timed_out`] gives the answer when the deadline has passed (it may re-check the
//!   state one last time: a wake-up racing with the deadline is not lost).
//!
//! The loop owns everything else: the spin phase before the first registration
//! ([`park::spin_while`], none under loom), the deadline arithmetic, sleeping in slices of
//! [`LIVENESS_SLICE`](super::park::LIVENESS_SLICE) when the wait has a liveness check,
//! treating every wake-up as possibly spurious (poll again), and the loom hook (under
//! `--cfg loom`, [`park::wait`] is the futex model, so a missed registration or a wrong
//! `expected` value is a deadlock loom reports).
//!
//! This is the seam for the next steps (issue 15), which only change *how to sleep*:
//! - *waiting on many objects*: poll each object's `Wait`, collect the `Sleep` descriptors
//!   and hand them all to one `FUTEX_WAITV`; after it returns, call every `after_sleep` and
//!   poll again. A `Sleep` is plain data (a word and a value), which is all `FUTEX_WAITV`
//!   takes.
//! - *async*: `poll` is exactly what a `Future::poll` needs; instead of sleeping, register
//!   the `Sleep` word with a waiter thread (which sleeps in `FUTEX_WAITV` and wakes the
//!   task's `Waker`), and call `after_sleep` when the task is polled again. Because the
//!   registration lives in `poll`, a notifier sees the same "someone sleeps" state for an
//!   async waiter as for a blocked thread, and does not skip its `FUTEX_WAKE`.
//!
//! # Correctness contract for implementors
//!
//! `poll` must register *before* its re-check, with the orderings the primitive's notifier
//! pairs with (SeqCst handshakes: the waiter's registration then its re-read, against the
//! notifier's change then its read of the registration), and the `Sleep` value must be the
//! one the re-check saw. Then either the notifier sees the registration and wakes the word
//! (after changing it, so the futex does not sleep on the old value), or the re-check sees
//! the change: no lost wake-up.

use std::time::Instant;

use super::park;
use crate::loom::AtomicU32;

/// What a waiter sleeps on: the kernel puts it to sleep only while `word` holds `expected`
/// (checked atomically with respect to wake-ups on `word`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sleep<'a> {
    pub(crate) word: &'a AtomicU32,
    pub(crate) expected: u32,
}

impl<'a> Sleep<'a> {
    pub(crate) fn on(word: &'a AtomicU32, expected: u32) -> Self {
        Self { word, expected }
    }
}

/// One step of a wait (see the module docs).
pub(crate) enum Poll<'a, T> {
    /// The wait is over with this answer.
    Ready(T),
    /// The state moved: poll again at once, without sleeping.
    Retry,
    /// Nothing to do until the word moves; the registration is in place.
    Sleep(Sleep<'a>),
}

/// One wait, described by the primitive (see the module docs).
pub(crate) trait Wait {
    /// What the wait returns.
    type Output;

    /// Whether to spin before the first registration (while [`busy`](Self::busy)).
    const SPIN: bool = false;

    /// Whether to sleep in liveness slices and call [`check_owner`](Self::check_owner).
    const LIVENESS: bool = false;

    /// Spin condition: `true` while spinning is still worth it (the wait is not ready).
    fn busy(&self) -> bool {
        true
    }

    /// Completes without registering if the wait is over (called after a spin phase that
    /// saw `busy` turn false); `None` goes on to [`poll`](Self::poll).
    fn try_complete(&mut self) -> Option<Self::Output> {
        None
    }

    /// Registers as a sleeper, re-checks, and says what to do.
    fn poll(&mut self) -> Poll<'_, Self::Output>;

    /// Undoes the registration made by the `poll` that returned [`Poll::Sleep`].
    fn after_sleep(&mut self) {}

    /// A liveness slice ended without a wake-up: `Some` ends the wait (e.g. a dead owner's
    /// lock taken over).
    fn check_owner(&mut self) -> Option<Self::Output> {
        None
    }

    /// The deadline passed (after the last slice's `check_owner`): the final answer.
    fn timed_out(&mut self) -> Self::Output;
}

/// Runs `w` until it is ready, or until `deadline` (`None`: no deadline).
#[inline]
pub(crate) fn block<W: Wait>(w: &mut W, deadline: Option<Instant>) -> W::Output {
    if W::SPIN && park::spin_while(|| w.busy()) {
        if let Some(r) = w.try_complete() {
            return r;
        }
    }
    loop {
        let sleep = match w.poll() {
            Poll::Ready(r) => return r,
            Poll::Retry => continue,
            Poll::Sleep(s) => s,
        };
        let (until, last) = if W::LIVENESS {
            let (until, last) = park::slice_deadline(deadline);
            (Some(until), last)
        } else {
            (deadline, true)
        };
        let woke = sleep_on(sleep, until);
        w.after_sleep();
        // Woken (or spuriously, or the word had moved): poll again. A futex wait that
        // reports a timeout early is retried too.
        if woke || until.is_some_and(|u| Instant::now() < u) {
            continue;
        }
        if W::LIVENESS {
            if let Some(r) = w.check_owner() {
                return r;
            }
        }
        if last {
            return w.timed_out();
        }
    }
}

/// How to sleep: one futex wait (the loom model under `--cfg loom`). Returns `false` only
/// when `until` passed.
#[inline]
pub(crate) fn sleep_on(s: Sleep<'_>, until: Option<Instant>) -> bool {
    park::wait(s.word, s.expected, until)
}
