use bytemuck::Pod;

use super::{one_value_handle, segment_serde, Place};
use crate::error::SegmentError;
use crate::shm::{Fingerprint, Segment};

/// One `Pod` value in shared memory, without a lock; mirrors Python's
/// `multiprocessing.RawValue(typecode, value)`.
///
/// [`get`](Self::get) and [`set`](Self::set) are single volatile copies: fine for values that
/// one process writes and others read, or for word-sized values, but a read racing a write of
/// a multi-word `T` may see parts of both. For read-modify-write from several processes use
/// an atomic inside a [`Shared`](crate::Shared), or the locked `Value` (sync issue).
///
/// Like [`Shared`](crate::Shared), a value of up to
/// [`ARENA_MAX_OBJECT`](crate::ARENA_MAX_OBJECT) bytes lives in a slot of a shared arena
/// chunk (no fd or mapping of its own; slots are never reused while their chunk lives),
/// a named one in a segment of its own.
///
/// ```
/// use shmproc::{Process, RawValue, StartMethod};
/// let v = RawValue::new(0u64)?;
/// let mut child = Process::fork({
///     let v = v.clone();
///     move || v.set(42)
/// })
/// .start()?;
/// child.join()?;
/// assert_eq!(v.get(), 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RawValue<T: Pod> {
    /// The value: an arena slot, or a segment of its own.
    place: Place<T>,
}

// SAFETY: the handle owns a mapping (through its place) and points into it; it only copies
// `T` values in and out, so it moves between threads when `T` does.
unsafe impl<T: Pod + Send> Send for RawValue<T> {}
// SAFETY: shared use copies `T` values through volatile accesses only; as `&T` would be.
unsafe impl<T: Pod + Sync> Sync for RawValue<T> {}

one_value_handle!(RawValue<T: Pod>, "value segment has the wrong data length");

impl<T: Pod> RawValue<T> {
    fn write_new(&self, value: T) {
        self.set(value);
    }

    /// Reads the value (one volatile copy).
    pub fn get(&self) -> T {
        // SAFETY: the place holds `size_of::<T>()` bytes aligned for `T` inside the live
        // mapping (checked when it was made); `T: Pod`, so whatever bytes a peer wrote form a
        // valid `T`.
        unsafe { std::ptr::read_volatile(self.place.ptr().as_ptr()) }
    }

    /// Writes the value (one volatile copy).
    pub fn set(&self, value: T) {
        // SAFETY: as in `get`; the mapping is writable.
        unsafe { std::ptr::write_volatile(self.place.ptr().as_ptr(), value) }
    }

    /// Raw pointer to the value, for atomics or custom protocols.
    pub fn as_ptr(&self) -> *mut T {
        self.place.ptr().as_ptr()
    }
}

segment_serde!(RawValue<T: Pod>, Fingerprint::of::<T>(), RawValue::<T>::from_place);
