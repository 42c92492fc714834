//! A one-shot result slot that a pump fills and callers wait on (behind `AsyncResult` and
//! `Future`).

use std::sync::Arc;
use std::time::Instant;

#[cfg(loom)]
use loom::sync::{Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
use std::sync::{Condvar, Mutex, MutexGuard};

use crate::error::PoolError;
use crate::loom::{AtomicBool, AtomicU32, Ordering};

/// Claim states of a cancellable job.
pub(crate) const PENDING: u32 = 0;
pub(crate) const RUNNING: u32 = 1;
pub(crate) const CANCELLED: u32 = 2;

/// A pump takes a job: `PENDING` → `RUNNING`. `false`: it was cancelled first.
pub(crate) fn claim_to_run(claim: &AtomicU32) -> bool {
    claim
        .compare_exchange(PENDING, RUNNING, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
}

type Callback = Box<dyn FnOnce() + Send>;

struct Slot<R> {
    value: Option<Result<R, PoolError>>,
    successful: Option<bool>,
    taken: bool,
    on_done: Vec<Callback>,
    /// Threads asleep on the condvar (no wake-up syscall when there are none).
    sleepers: usize,
}

pub(crate) struct Cell<R> {
    slot: Mutex<Slot<R>>,
    cv: Condvar,
    done: AtomicBool,
    /// `PENDING` → `RUNNING` when a pump takes the job, or → `CANCELLED`.
    pub(crate) claim: Arc<AtomicU32>,
}

impl<R> Cell<R> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            slot: Mutex::new(Slot {
                value: None,
                successful: None,
                taken: false,
                on_done: Vec::new(),
                sleepers: 0,
            }),
            cv: Condvar::new(),
            done: AtomicBool::new(false),
            claim: Arc::new(AtomicU32::new(PENDING)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Slot<R>> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores the outcome (the first one wins), wakes waiters, runs done-callbacks.
    pub(crate) fn set(&self, r: Result<R, PoolError>) {
        let callbacks = {
            let mut s = self.lock();
            if self.done.load(Ordering::Relaxed) {
                return;
            }
            s.successful = Some(r.is_ok());
            s.value = Some(r);
            self.done.store(true, Ordering::Release);
            if s.sleepers > 0 {
                self.cv.notify_all();
            }
            std::mem::take(&mut s.on_done)
        };
        for cb in callbacks {
            cb();
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Waits until the outcome is in or `deadline` passes; whether it is in.
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> bool {
        if self.is_done() || crate::sync::park::spin_while_yielding(|| !self.is_done()) {
            return true;
        }
        let mut s = self.lock();
        while !self.done.load(Ordering::Acquire) {
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return false;
            }
            s.sleepers += 1;
            s = match deadline {
                None => self.cv.wait(s).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    self.cv
                        .wait_timeout(s, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
            s.sleepers -= 1;
        }
        true
    }

    /// Takes the outcome, waiting until `deadline`: a value once (then `AlreadyTaken`), an
    /// error every time.
    pub(crate) fn take(&self, deadline: Option<Instant>) -> Result<R, PoolError> {
        if !self.wait(deadline) {
            return Err(PoolError::Timeout);
        }
        let mut s = self.lock();
        if let Some(Err(e)) = &s.value {
            // An error can be read again (as Python re-raises it); a value is moved out once.
            return Err(e.clone());
        }
        if s.taken {
            return Err(PoolError::AlreadyTaken);
        }
        s.taken = true;
        s.value.take().unwrap_or(Err(PoolError::AlreadyTaken))
    }

    /// `Some(ok)` once done.
    pub(crate) fn successful(&self) -> Option<bool> {
        self.lock().successful
    }

    /// Cancels the job if no pump took it yet (then the outcome is `Cancelled`); whether it
    /// is cancelled.
    pub(crate) fn cancel(&self) -> bool {
        match self
            .claim
            .compare_exchange(PENDING, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                self.set(Err(PoolError::Cancelled));
                true
            }
            Err(state) => state == CANCELLED,
        }
    }

    /// Runs `cb` when the outcome is in (at once if it already is).
    pub(crate) fn on_done(&self, cb: Callback) {
        let mut s = self.lock();
        if self.done.load(Ordering::Acquire) {
            drop(s);
            cb();
        } else {
            s.on_done.push(cb);
        }
    }
}

/// The result cell, exposed to the loom suite.
#[cfg(loom)]
pub mod loom_cell {
    use std::sync::Arc;

    use crate::error::PoolError;

    /// A `Cell<u32>` with the operations the pool's threads and the user's perform.
    #[derive(Clone)]
    pub struct ResultCell(Arc<super::Cell<u32>>);

    impl Default for ResultCell {
        fn default() -> Self {
            Self(super::Cell::new())
        }
    }

    impl ResultCell {
        /// What a pump does when it takes the job (`false`: cancelled, skip it).
        pub fn claim_to_run(&self) -> bool {
            super::claim_to_run(&self.0.claim)
        }
        /// What a pump does with the outcome.
        pub fn set(&self, r: Result<u32, PoolError>) {
            self.0.set(r)
        }
        /// `Future::cancel`.
        pub fn cancel(&self) -> bool {
            self.0.cancel()
        }
        /// `Future::result`.
        pub fn take(&self) -> Result<u32, PoolError> {
            self.0.take(None)
        }
        /// `Future::done`.
        pub fn is_done(&self) -> bool {
            self.0.is_done()
        }
        /// `Future::add_done_callback`.
        pub fn on_done(&self, f: impl FnOnce() + Send + 'static) {
            self.0.on_done(Box::new(f))
        }
    }
}
