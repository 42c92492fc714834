use std::marker::PhantomData;

use bytemuck::Pod;

use super::segment_serde;
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
#[derive(Clone)]
pub struct RawValue<T: Pod> {
    pub(crate) seg: Segment,
    _t: PhantomData<T>,
}

impl<T: Pod> std::fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawValue").field("segment", &self.seg).finish()
    }
}

impl<T: Pod> RawValue<T> {
    /// A new anonymous cell holding `value`.
    pub fn new(value: T) -> Result<Self, SegmentError> {
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

    pub(crate) fn wrap(seg: Segment) -> Result<Self, SegmentError> {
        if seg.len() != std::mem::size_of::<T>() {
            return Err(SegmentError::Corrupt("value segment has the wrong data length"));
        }
        Ok(Self { seg, _t: PhantomData })
    }

    /// Reads the value (one volatile copy).
    pub fn get(&self) -> T {
        // SAFETY: the data region holds `size_of::<T>()` bytes, aligned for `T` (the data
        // offset is a multiple of `align_of::<T>()` on a page-aligned mapping); `T: Pod`, so
        // whatever bytes a peer wrote form a valid `T`.
        unsafe { std::ptr::read_volatile(self.seg.as_ptr().cast::<T>()) }
    }

    /// Writes the value (one volatile copy).
    pub fn set(&self, value: T) {
        // SAFETY: as in `get`; the mapping is writable.
        unsafe { std::ptr::write_volatile(self.seg.as_ptr().cast::<T>(), value) }
    }

    /// Raw pointer to the value, for atomics or custom protocols.
    pub fn as_ptr(&self) -> *mut T {
        self.seg.as_ptr().cast()
    }

    /// The underlying segment.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }
}

segment_serde!(RawValue<T: Pod>, Fingerprint::of::<T>(), RawValue::<T>::wrap);
