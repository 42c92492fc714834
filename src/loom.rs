//! The one place lock-free code gets its atomics from.
//!
//! Under `--cfg loom` this re-exports loom's model-checked atomics, `UnsafeCell` and
//! `yield_now`; otherwise it re-exports `core`'s and wraps `UnsafeCell` so both offer the
//! same `with`/`with_mut` closure API. Algorithms in the crate import from here, never
//! from `core::sync::atomic` directly, so `RUSTFLAGS="--cfg loom" cargo test --test loom`
//! checks the same code that ships.
#![allow(dead_code, unused_imports)]

#[cfg(loom)]
pub(crate) use loom::{
    cell::UnsafeCell,
    hint::spin_loop,
    sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering},
    thread::yield_now,
};

#[cfg(not(loom))]
pub(crate) use core::{
    hint::spin_loop,
    sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering},
};

/// Yield to the scheduler (a loom preemption point under `cfg(loom)`).
#[cfg(not(loom))]
pub(crate) fn yield_now() {
    std::thread::yield_now();
}

/// `core::cell::UnsafeCell` with loom's closure API, so code compiles under both cfgs.
#[cfg(not(loom))]
#[derive(Debug, Default)]
#[repr(transparent)]
pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(core::cell::UnsafeCell::new(value))
    }

    /// Runs `f` with a shared raw pointer to the contents.
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Runs `f` with a mutable raw pointer to the contents.
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}
