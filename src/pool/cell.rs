//! A one-shot result slot that a pump fills and callers wait on (behind `AsyncResult` and
//! `Future`).

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use super::worker::PENDING;
use crate::error::PoolError;

type Callback = Box<dyn FnOnce() + Send>;

struct Slot<R> {
    value: Option<Result<R, PoolError>>,
    successful: Option<bool>,
    taken: bool,
    on_done: Vec<Callback>,
}

pub(crate) struct Cell<R> {
    slot: Mutex<Slot<R>>,
    cv: Condvar,
    done: AtomicBool,
    /// `PENDING` → `RUNNING` when a pump takes the job, or → `CANCELLED`.
    pub(crate) claim: Arc<AtomicU8>,
}

impl<R> Cell<R> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            slot: Mutex::new(Slot {
                value: None,
                successful: None,
                taken: false,
                on_done: Vec::new(),
            }),
            cv: Condvar::new(),
            done: AtomicBool::new(false),
            claim: Arc::new(AtomicU8::new(PENDING)),
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
            self.cv.notify_all();
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
        if self.is_done() || crate::sync::park::spin_while(|| !self.is_done()) {
            return true;
        }
        let mut s = self.lock();
        while !self.done.load(Ordering::Acquire) {
            match deadline {
                None => s = self.cv.wait(s).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    s = self
                        .cv
                        .wait_timeout(s, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
        true
    }

    /// Takes the outcome, waiting until `deadline`.
    pub(crate) fn take(&self, deadline: Option<Instant>) -> Result<R, PoolError> {
        if !self.wait(deadline) {
            return Err(PoolError::Timeout);
        }
        let mut s = self.lock();
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
