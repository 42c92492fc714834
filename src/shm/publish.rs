//! Publishing a segment header: write every field, then release-store the magic; openers
//! acquire-load the magic before reading anything else.
//!
//! Written once, generic over the atomic word, so the loom suite (`tests/loom.rs`) checks
//! this very code with loom's atomics while segments run it on the real word in the mapping.

use core::sync::atomic::Ordering;

/// A 64-bit atomic word: `core`'s in a mapping, loom's under the model checker.
pub trait MagicWord {
    /// `load(Acquire)`.
    fn load_acquire(&self) -> u64;
    /// `store(v, Release)`.
    fn store_release(&self, v: u64);
}

// The real word in a mapping is `core`'s (the shim's loom type cannot overlay mapped memory).
#[allow(clippy::disallowed_types)]
impl MagicWord for core::sync::atomic::AtomicU64 {
    fn load_acquire(&self) -> u64 {
        self.load(Ordering::Acquire)
    }
    fn store_release(&self, v: u64) {
        self.store(v, Ordering::Release)
    }
}

#[cfg(loom)]
impl MagicWord for loom::sync::atomic::AtomicU64 {
    fn load_acquire(&self) -> u64 {
        self.load(Ordering::Acquire)
    }
    fn store_release(&self, v: u64) {
        self.store(v, Ordering::Release)
    }
}

/// Runs `write_body` (which must leave the magic word alone), then publishes `magic`.
/// SYNC POINT (header publish): the release store pairs with the acquire in [`observe`].
pub fn publish<W: MagicWord>(word: &W, magic: u64, write_body: impl FnOnce()) {
    write_body();
    word.store_release(magic);
}

/// Reads the magic (acquire), then the body. If the magic read is the published one, the
/// body read sees everything written before [`publish`] stored it.
/// SYNC POINT (header publish): the acquire load pairs with the release in [`publish`].
pub fn observe<W: MagicWord, T>(word: &W, read_body: impl FnOnce() -> T) -> (u64, T) {
    let magic = word.load_acquire();
    (magic, read_body())
}
