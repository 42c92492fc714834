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
    sync::atomic::{fence, Ordering},
    thread::yield_now,
};

#[cfg(loom)]
pub(crate) use sc::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize};

/// The shim's atomic types: a newtype over `$m`'s atomics (loom's or `core`'s) whose writes
/// go through the enclosing module's `write`/`write_if_ok` (loom: a trailing `SeqCst` fence,
/// see `sc`; outside loom: nothing). `$attr` goes on every method (`#[track_caller]` for
/// loom's diagnostics, `#[inline]` outside), `$c` makes `new` a `const fn` where it can be.
macro_rules! atomics {
    ($m:path, #[$attr:meta] $(, $c:tt)?) => {
        use $m as imp;

        macro_rules! common {
            ($name:ident, $t:ty) => {
                #[derive(Debug, Default)]
                #[repr(transparent)]
                pub(crate) struct $name(imp::$name);

                impl $name {
                    #[$attr]
                    pub(crate) $($c)? fn new(value: $t) -> Self {
                        Self(imp::$name::new(value))
                    }

                    #[$attr]
                    pub(crate) fn load(&self, order: Ordering) -> $t {
                        self.0.load(order)
                    }

                    #[$attr]
                    pub(crate) fn store(&self, value: $t, order: Ordering) {
                        write(order, || self.0.store(value, order))
                    }

                    #[$attr]
                    pub(crate) fn swap(&self, value: $t, order: Ordering) -> $t {
                        write(order, || self.0.swap(value, order))
                    }

                    #[$attr]
                    pub(crate) fn compare_exchange(
                        &self,
                        current: $t,
                        new: $t,
                        success: Ordering,
                        failure: Ordering,
                    ) -> Result<$t, $t> {
                        write_if_ok(success, || self.0.compare_exchange(current, new, success, failure))
                    }

                    #[$attr]
                    pub(crate) fn compare_exchange_weak(
                        &self,
                        current: $t,
                        new: $t,
                        success: Ordering,
                        failure: Ordering,
                    ) -> Result<$t, $t> {
                        write_if_ok(success, || {
                            self.0.compare_exchange_weak(current, new, success, failure)
                        })
                    }

                    #[$attr]
                    pub(crate) fn fetch_update(
                        &self,
                        set_order: Ordering,
                        fetch_order: Ordering,
                        f: impl FnMut($t) -> Option<$t>,
                    ) -> Result<$t, $t> {
                        write_if_ok(set_order, || self.0.fetch_update(set_order, fetch_order, f))
                    }

                    #[$attr]
                    pub(crate) fn fetch_and(&self, value: $t, order: Ordering) -> $t {
                        write(order, || self.0.fetch_and(value, order))
                    }

                    #[$attr]
                    pub(crate) fn fetch_nand(&self, value: $t, order: Ordering) -> $t {
                        write(order, || self.0.fetch_nand(value, order))
                    }

                    #[$attr]
                    pub(crate) fn fetch_or(&self, value: $t, order: Ordering) -> $t {
                        write(order, || self.0.fetch_or(value, order))
                    }

                    #[$attr]
                    pub(crate) fn fetch_xor(&self, value: $t, order: Ordering) -> $t {
                        write(order, || self.0.fetch_xor(value, order))
                    }

                    pub(crate) fn into_inner(self) -> $t {
                        self.0.into_inner()
                    }
                }
            };
        }

        macro_rules! int {
            ($name:ident, $t:ty) => {
                common!($name, $t);

                impl $name {
                    #[$attr]
                    pub(crate) fn fetch_add(&self, value: $t, order: Ordering) -> $t {
                        write(order, || self.0.fetch_add(value, order))
                    }

                    #[$attr]
                    pub(crate) fn fetch_sub(&self, value: $t, order: Ordering) -> $t {
                        write(order, || self.0.fetch_sub(value, order))
                    }

                    #[$attr]
                    pub(crate) fn fetch_max(&self, value: $t, order: Ordering) -> $t {
                        write(order, || self.0.fetch_max(value, order))
                    }

                    #[$attr]
                    pub(crate) fn fetch_min(&self, value: $t, order: Ordering) -> $t {
                        write(order, || self.0.fetch_min(value, order))
                    }
                }
            };
        }

        common!(AtomicBool, bool);
        int!(AtomicU32, u32);
        int!(AtomicU64, u64);
        int!(AtomicUsize, usize);
    };
}
pub(crate) use atomics;

/// loom's atomics, with every `SeqCst` write (store or read-modify-write) followed by
/// `fence(SeqCst)`: the usual x86 mapping of a sequentially consistent store (`xchg`, or
/// `mov` + `mfence`).
///
/// loom 0.7 models `SeqCst` *accesses* as `AcqRel` (its README says so; only `SeqCst`
/// fences are modelled exactly), so the store-buffering handshakes the sync algorithms rely
/// on — the waiter raises `waiters` then re-reads the value, the waker changes the value
/// then reads `waiters`, all `SeqCst` (`RawSemaphore`, `RawEvent`, `RawCondition`) — would
/// show lost wake-ups that no real execution has: loom lets both reads return the old
/// values, for instance the semaphore's own earlier `Acquire` decrement, which happens-before
/// the releaser's `SeqCst` increment and so is hidden from every `SeqCst` load after it.
/// With the fences, whichever write comes second in loom's order sees the first.
///
/// The price: a fence orders more than a `SeqCst` write does in the C++ model (it also
/// orders the thread's relaxed accesses around it), so the model cannot find a bug that only
/// shows on hardware weaker than x86 *and* hinges on a relaxed access being reordered
/// across a `SeqCst` write. Relaxed, acquire and release accesses are modelled exactly.
#[cfg(loom)]
mod sc {
    use loom::sync::atomic::{fence, Ordering};

    /// Whether a write with this ordering gets the trailing fence.
    #[inline]
    fn sc(order: Ordering) -> bool {
        order == Ordering::SeqCst
    }

    /// Runs a write, then the fence if it was `SeqCst`.
    #[inline]
    fn write<R>(order: Ordering, op: impl FnOnce() -> R) -> R {
        let r = op();
        if sc(order) {
            fence(Ordering::SeqCst);
        }
        r
    }

    /// Runs a conditional write (an exchange or update), then the fence if it succeeded
    /// with `SeqCst`; a failed one is only a load, so no fence.
    #[inline]
    fn write_if_ok<T>(order: Ordering, op: impl FnOnce() -> Result<T, T>) -> Result<T, T> {
        let r = op();
        if r.is_ok() && sc(order) {
            fence(Ordering::SeqCst);
        }
        r
    }

    crate::loom::atomics!(loom::sync::atomic, #[track_caller]);

    macro_rules! with_mut {
        ($($name:ident($t:ty)),*) => { $(
            impl $name {
                pub(crate) fn with_mut<R>(&mut self, f: impl FnOnce(&mut $t) -> R) -> R {
                    self.0.with_mut(f)
                }
            }
        )* };
    }
    with_mut!(AtomicU32(u32), AtomicU64(u64), AtomicUsize(usize));
}
/// Under loom: a stand-in for a buffer of raw shared memory (a byte ring's bytes, a ring's
/// slots) that loom cannot see, one `loom::cell::UnsafeCell<()>` per unit (an 8-byte word,
/// a slot). The code that copies payload in or out touches the units it covers, so a read
/// that is not ordered after the write it copies (or a write over bytes still being read)
/// is a causality violation loom reports — the payload's ordering is checked, not only the
/// indices'.
#[cfg(loom)]
#[derive(Debug)]
pub struct Shadow(Vec<UnsafeCell<()>>);

// SAFETY: the cells hold no data (`()`); they exist so loom can see which thread touches
// which unit, and loom's own checks report every unordered access.
#[cfg(loom)]
unsafe impl Sync for Shadow {}
// SAFETY: as above.
#[cfg(loom)]
unsafe impl Send for Shadow {}

#[cfg(loom)]
impl Shadow {
    /// A shadow of `units` units.
    pub fn new(units: usize) -> Self {
        Self((0..units.max(1)).map(|_| UnsafeCell::new(())).collect())
    }

    /// Units `first..first + n`, wrapping around the end.
    fn each(&self, first: usize, n: usize, f: impl Fn(&UnsafeCell<()>)) {
        for k in 0..n.min(self.0.len()) {
            f(&self.0[(first + k) % self.0.len()]);
        }
    }

    /// Records a write of units `first..first + n`.
    pub(crate) fn write(&self, first: usize, n: usize) {
        self.each(first, n, |c| c.with_mut(|_| ()));
    }

    /// Records a read of units `first..first + n`.
    pub(crate) fn read(&self, first: usize, n: usize) {
        self.each(first, n, |c| c.with(|_| ()));
    }

    /// Records a write of bytes `off..off + len` of a buffer of 8-byte units.
    pub(crate) fn write_bytes(&self, off: usize, len: usize) {
        if len > 0 {
            self.write(off / 8, (off + len - 1) / 8 - off / 8 + 1);
        }
    }

    /// Records a read of bytes `off..off + len` of a buffer of 8-byte units.
    pub(crate) fn read_bytes(&self, off: usize, len: usize) {
        if len > 0 {
            self.read(off / 8, (off + len - 1) / 8 - off / 8 + 1);
        }
    }
}

#[cfg(not(loom))]
pub(crate) use core::{
    hint::spin_loop,
    sync::atomic::{fence, Ordering},
};

#[cfg(not(loom))]
pub(crate) use plain::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize};

/// Outside loom: `core`'s atomics behind types of the shim's own, `#[repr(transparent)]`
/// and `#[inline]`, so they cost nothing and have `core`'s layout (they are placed in shared
/// memory and cast from raw pointers exactly as `core`'s are). Being distinct types is what
/// lets `clippy.toml` forbid `core`'s atomics everywhere else: an algorithm that bypassed
/// the shim would not be checked by the loom suite.
#[cfg(not(loom))]
#[allow(clippy::disallowed_types)]
mod plain {
    use core::sync::atomic::Ordering;

    /// A write needs nothing around it outside loom.
    #[inline(always)]
    fn write<R>(_order: Ordering, op: impl FnOnce() -> R) -> R {
        op()
    }

    /// As `write`.
    #[inline(always)]
    fn write_if_ok<T>(_order: Ordering, op: impl FnOnce() -> Result<T, T>) -> Result<T, T> {
        op()
    }

    crate::loom::atomics!(core::sync::atomic, #[inline], const);

    macro_rules! extras {
        ($($name:ident($t:ty)),*) => { $(
            impl $name {
                /// The `core` atomic itself, for the kernel interface (`sys::futex`).
                #[inline]
                pub(crate) fn as_core(&self) -> &core::sync::atomic::$name {
                    &self.0
                }

                #[inline]
                pub(crate) fn with_mut<R>(&mut self, f: impl FnOnce(&mut $t) -> R) -> R {
                    f(self.0.get_mut())
                }
            }
        )* };
    }
    extras!(AtomicU32(u32), AtomicU64(u64), AtomicUsize(usize));

    // SAFETY: `#[repr(transparent)]` over `core`'s integer atomics, which are `ShmSafe`:
    // any bit pattern is a valid value, no pointers, no `Drop`.
    unsafe impl crate::ShmSafe for AtomicU32 {}
    // SAFETY: as for `AtomicU32`.
    unsafe impl crate::ShmSafe for AtomicU64 {}
}

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
