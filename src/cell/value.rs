use std::os::fd::OwnedFd;
use std::ptr::NonNull;

use bytemuck::Pod;

use super::segment_serde;
use crate::error::SegmentError;
use crate::shm::arena;
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
    pub(crate) seg: Segment,
    /// The value, inside `seg`'s mapping.
    ptr: NonNull<T>,
}

// SAFETY: the handle owns a mapping (through `seg`) and points into it; it only copies `T`
// values in and out, so it moves between threads when `T` does.
unsafe impl<T: Pod + Send> Send for RawValue<T> {}
// SAFETY: shared use copies `T` values through volatile accesses only; as `&T` would be.
unsafe impl<T: Pod + Sync> Sync for RawValue<T> {}

/// Another handle to the same value: an in-process reference count, no new fd or mapping.
impl<T: Pod> Clone for RawValue<T> {
    fn clone(&self) -> Self {
        Self {
            seg: self.seg.clone(),
            ptr: self.ptr,
        }
    }
}

impl<T: Pod> std::fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawValue")
            .field("segment", &self.seg)
            .field("offset", &self.offset())
            .finish()
    }
}

impl<T: Pod> RawValue<T> {
    /// A new anonymous cell holding `value` (an arena slot when `T` is small).
    pub fn new(value: T) -> Result<Self, SegmentError> {
        let size = std::mem::size_of::<T>();
        let (seg, offset) = arena::place(size, std::mem::align_of::<T>(), &Fingerprint::of::<T>())?;
        let v = Self::wrap_at(seg, offset, size)?;
        v.set(value);
        Ok(v)
    }

    /// A new cell in an anonymous segment of its own (the layout before arenas; kept for
    /// benchmarks and tests that compare both).
    #[doc(hidden)]
    pub fn new_own_segment(value: T) -> Result<Self, SegmentError> {
        let v = Self::wrap(Segment::anonymous(
            Fingerprint::of::<T>(),
            std::mem::size_of::<T>(),
        )?)?;
        v.set(value);
        Ok(v)
    }

    /// A new named cell (`"/name"`, exclusive, mode 0600) holding `value`.
    pub fn create_named(name: &str, value: T) -> Result<Self, SegmentError> {
        let v = Self::wrap(Segment::create_named(
            name,
            Fingerprint::of::<T>(),
            std::mem::size_of::<T>(),
        )?)?;
        v.set(value);
        Ok(v)
    }

    /// Attaches to a named cell, checking that it stores a `T`.
    pub fn open_named(name: &str) -> Result<Self, SegmentError> {
        Self::wrap(Segment::open_named(name, Some(&Fingerprint::of::<T>()))?)
    }

    /// Opens an arena slot as a token would name it (see `Shared::open_slot`).
    #[doc(hidden)]
    pub fn open_slot(fd: OwnedFd, offset: u64, len: u64, layout: &Fingerprint) -> Result<Self, SegmentError> {
        let (seg, off, len) = arena::open_slot(fd, offset, len, layout, &Fingerprint::of::<T>())?;
        Self::wrap_at(seg, off, len)
    }

    pub(crate) fn wrap(seg: Segment) -> Result<Self, SegmentError> {
        let len = seg.len();
        Self::wrap_at(seg, 0, len)
    }

    /// The value at `offset` of `seg`'s data, `len` bytes long.
    pub(crate) fn wrap_at(seg: Segment, offset: usize, len: usize) -> Result<Self, SegmentError> {
        let ptr = super::typed_ptr::<T>(&seg, offset, len)?;
        if len != std::mem::size_of::<T>() {
            return Err(SegmentError::Corrupt("value segment has the wrong data length"));
        }
        Ok(Self { seg, ptr })
    }

    fn place(&self) -> (&Segment, usize, usize) {
        (&self.seg, self.offset(), std::mem::size_of::<T>())
    }

    /// Where the value starts in [`segment`](Self::segment)'s data (0 unless in an arena).
    pub fn offset(&self) -> usize {
        self.ptr.as_ptr() as usize - self.seg.as_ptr() as usize
    }

    /// Reads the value (one volatile copy).
    pub fn get(&self) -> T {
        // SAFETY: `ptr` points at `size_of::<T>()` bytes aligned for `T` inside the live
        // mapping (checked in `wrap_at`); `T: Pod`, so whatever bytes a peer wrote form a
        // valid `T`.
        unsafe { std::ptr::read_volatile(self.ptr.as_ptr()) }
    }

    /// Writes the value (one volatile copy).
    pub fn set(&self, value: T) {
        // SAFETY: as in `get`; the mapping is writable.
        unsafe { std::ptr::write_volatile(self.ptr.as_ptr(), value) }
    }

    /// Raw pointer to the value, for atomics or custom protocols.
    pub fn as_ptr(&self) -> *mut T {
        self.ptr.as_ptr()
    }

    /// The segment holding the value: the arena chunk (shared with other objects; the value
    /// is at [`offset`](Self::offset)) or the value's own segment.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }
}

segment_serde!(RawValue<T: Pod>, Fingerprint::of::<T>(), |seg, off, len| RawValue::<T>::wrap_at(seg, off, len));
