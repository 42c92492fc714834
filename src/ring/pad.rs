//! `CachePadded`: keeps a value on its own cache-line pair, so two processes writing
//! neighbouring fields do not bounce one line between cores.

/// A value aligned and padded to 128 bytes (two 64-byte lines: x86_64 prefetches pairs).
#[repr(C, align(128))]
#[derive(Debug, Default)]
pub struct CachePadded<T>(pub T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}
