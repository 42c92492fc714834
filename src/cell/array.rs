use std::os::fd::OwnedFd;

use bytemuck::Pod;

use super::{segment_serde, Place};
use crate::error::{IndexError, SegmentError};
use crate::shm::{Fingerprint, Segment};

/// A fixed-length array of `Pod` values in shared memory, without a lock; mirrors Python's
/// `multiprocessing.RawArray(typecode, size_or_initializer)`.
///
/// Element access is bounds-checked and copies values in and out; a read racing a peer's
/// write of the same element may tear for multi-word `T` (as in Python). Slices are
/// available under the `unsafe` contract described on [`SharedMemory`](crate::SharedMemory).
///
/// An array of up to [`ARENA_MAX_OBJECT`](crate::ARENA_MAX_OBJECT) bytes lives in a slot of
/// a shared arena chunk (no fd or mapping of its own; slots are never reused while their
/// chunk lives); bigger and named arrays get a segment of their own.
///
/// ```
/// let a = shmproc::RawArray::from_slice(&[1.0f64, 2.0, 3.0])?;
/// a.set(1, 20.0)?;
/// assert_eq!(a.get(1), Some(20.0));
/// assert_eq!(a.get(3), None);
/// assert_eq!(a.to_vec(), vec![1.0, 20.0, 3.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RawArray<T: Pod> {
    /// The elements: an arena slot, or a segment of their own.
    place: Place<T>,
    len: usize,
}

// SAFETY: the handle owns a mapping (through its place) and points into it; it only copies
// `T` values in and out (slices need `unsafe` promises), so it moves between threads when
// `T` does.
unsafe impl<T: Pod + Send> Send for RawArray<T> {}
// SAFETY: shared use copies `T` values through raw pointers only.
unsafe impl<T: Pod + Sync> Sync for RawArray<T> {}

/// Another handle to the same array: an in-process reference count, no new fd or mapping.
impl<T: Pod> Clone for RawArray<T> {
    fn clone(&self) -> Self {
        Self {
            place: self.place.clone(),
            len: self.len,
        }
    }
}

impl<T: Pod> std::fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawArray")
            .field("len", &self.len)
            .field("place", &self.place)
            .finish()
    }
}

fn byte_len<T>(len: usize) -> Result<usize, SegmentError> {
    if std::mem::size_of::<T>() == 0 {
        return Err(SegmentError::Unsupported("zero-sized element types"));
    }
    len.checked_mul(std::mem::size_of::<T>())
        .ok_or(SegmentError::TooLarge(
            len as u128 * std::mem::size_of::<T>() as u128,
        ))
}

impl<T: Pod> RawArray<T> {
    /// A new anonymous array of `len` zeroed elements (an arena slot when small).
    pub fn new(len: usize) -> Result<Self, SegmentError> {
        let bytes = byte_len::<T>(len)?;
        Self::from_place(Place::anonymous(
            bytes,
            std::mem::align_of::<T>(),
            &Fingerprint::of::<T>(),
        )?)
    }

    /// A new anonymous array holding a copy of `values`.
    pub fn from_slice(values: &[T]) -> Result<Self, SegmentError> {
        let a = Self::new(values.len())?;
        a.copy_from_slice(values).expect("lengths are equal");
        Ok(a)
    }

    /// A new named array (`"/name"`, exclusive, mode 0600) of `len` zeroed elements.
    pub fn create_named(name: &str, len: usize) -> Result<Self, SegmentError> {
        Self::from_place(Place::create_named(
            name,
            byte_len::<T>(len)?,
            &Fingerprint::of::<T>(),
        )?)
    }

    /// Attaches to a named array, checking that its elements are `T`.
    pub fn open_named(name: &str) -> Result<Self, SegmentError> {
        Self::from_place(Place::open_named(name, &Fingerprint::of::<T>())?)
    }

    /// Opens an arena slot as a token would name it (see `Shared::open_slot`).
    #[doc(hidden)]
    pub fn open_slot(fd: OwnedFd, offset: u64, len: u64, layout: &Fingerprint) -> Result<Self, SegmentError> {
        Self::from_place(Place::open_slot(
            fd,
            offset,
            len,
            layout,
            &Fingerprint::of::<T>(),
        )?)
    }

    /// A handle on `place`, which must hold a whole number of elements.
    pub(crate) fn from_place(place: Place<T>) -> Result<Self, SegmentError> {
        let size = std::mem::size_of::<T>();
        if size == 0 {
            return Err(SegmentError::Unsupported("zero-sized element types"));
        }
        if place.bytes() % size != 0 {
            return Err(SegmentError::Corrupt(
                "array length is not a whole number of elements",
            ));
        }
        Ok(Self {
            len: place.bytes() / size,
            place,
        })
    }

    fn place(&self) -> &Place<T> {
        &self.place
    }

    /// Where the first element lies in [`segment`](Self::segment)'s data (0 unless in an
    /// arena).
    pub fn offset(&self) -> usize {
        self.place.offset()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn ptr(&self) -> *mut T {
        self.place.ptr().as_ptr()
    }

    /// Element `index`, or `None` past the end.
    pub fn get(&self, index: usize) -> Option<T> {
        if index >= self.len {
            return None;
        }
        // SAFETY: `index < len`, the data is aligned for `T` and `T: Pod` accepts any bytes.
        Some(unsafe { std::ptr::read_volatile(self.ptr().add(index)) })
    }

    /// Sets element `index`.
    pub fn set(&self, index: usize, value: T) -> Result<(), IndexError> {
        IndexError::check(index, 1, self.len)?;
        // SAFETY: bounds checked just above; the mapping is writable and aligned for `T`.
        unsafe { std::ptr::write_volatile(self.ptr().add(index), value) };
        Ok(())
    }

    /// Copies elements `start..start + out.len()` into `out`.
    pub fn read_into(&self, start: usize, out: &mut [T]) -> Result<(), IndexError> {
        IndexError::check(start, out.len(), self.len)?;
        // SAFETY: the range is in bounds; `out` is private memory that cannot overlap the
        // mapping; any bytes are a valid `T`.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr().add(start), out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    /// Copies `values` into elements `start..start + values.len()`.
    pub fn write_from(&self, start: usize, values: &[T]) -> Result<(), IndexError> {
        IndexError::check(start, values.len(), self.len)?;
        // SAFETY: the range is in bounds and writable; `values` cannot overlap the mapping.
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), self.ptr().add(start), values.len()) };
        Ok(())
    }

    /// Overwrites the whole array; `values.len()` must equal `len()`.
    pub fn copy_from_slice(&self, values: &[T]) -> Result<(), IndexError> {
        if values.len() != self.len {
            return Err(IndexError {
                index: 0,
                count: values.len(),
                len: self.len,
            });
        }
        self.write_from(0, values)
    }

    /// A copy of the whole array.
    pub fn to_vec(&self) -> Vec<T> {
        let mut v = vec![T::zeroed(); self.len];
        self.read_into(0, &mut v).expect("whole range is in bounds");
        v
    }

    /// Borrows the elements.
    ///
    /// # Safety
    /// No process may write the array while the slice lives.
    pub unsafe fn as_slice(&self) -> &[T] {
        // SAFETY: pointer, alignment and length describe our mapping; the caller rules out
        // concurrent writers.
        unsafe { std::slice::from_raw_parts(self.ptr(), self.len) }
    }

    /// Borrows the elements mutably.
    ///
    /// # Safety
    /// No other process or handle may access the array while the slice lives.
    pub unsafe fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as in `as_slice`, and the caller rules out every other access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr(), self.len) }
    }

    /// The segment holding the array: the arena chunk (shared with other objects; the
    /// elements start at [`offset`](Self::offset)) or the array's own segment.
    pub fn segment(&self) -> &Segment {
        self.place.segment()
    }
}

segment_serde!(RawArray<T: Pod>, Fingerprint::of::<T>(), RawArray::<T>::from_place);
