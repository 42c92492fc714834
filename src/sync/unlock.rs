//! The one unlock-on-drop idiom of the sync module: [`UnlockOnDrop`] releases what it
//! holds on every path out of a scope, unwinding included.
//!
//! Public guards (`LockGuard`, `ValueGuard`…) keep their own types; this is for the
//! internal critical sections (a `Value`'s copy under its lock, a barrier's bookkeeping).

use super::raw_barrier::RawBarrier;
use super::raw_lock::{RawLock, RawRLock};

/// Something held that one call releases; errors are ignored (the holder knows it holds).
pub(crate) trait Unlock {
    /// Releases one level held by the calling thread.
    fn unlock_one(&self);
}

/// Releases `L` when dropped.
#[must_use = "the lock is released when this is dropped"]
pub(crate) struct UnlockOnDrop<'a, L: Unlock + ?Sized>(pub(crate) &'a L);

impl<L: Unlock + ?Sized> Drop for UnlockOnDrop<'_, L> {
    fn drop(&mut self) {
        self.0.unlock_one();
    }
}

impl Unlock for RawLock {
    fn unlock_one(&self) {
        let _ = self.unlock();
    }
}

impl Unlock for RawRLock {
    fn unlock_one(&self) {
        let _ = self.unlock();
    }
}

impl Unlock for RawBarrier {
    /// The barrier's internal lock, with its after-release duties (see `RawBarrier`).
    fn unlock_one(&self) {
        self.release();
    }
}
