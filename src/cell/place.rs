//! `Place<T>`: where a typed handle's object lives — a segment (an arena chunk, or a segment
//! of the object's own) and a checked pointer into its mapping. `Shared`, `RawValue`,
//! `RawArray` and the locked `Array` are each a `Place` plus their own type checks; the ways
//! to make or open one (arena slot, own segment, named, received slot token) are written
//! once, here.

use std::os::fd::OwnedFd;
use std::ptr::NonNull;

use crate::error::SegmentError;
use crate::shm::arena;
use crate::shm::{Fingerprint, Segment};

/// `bytes` bytes at a `T`-aligned address inside `seg`'s data (see the module docs).
pub(crate) struct Place<T> {
    seg: Segment,
    ptr: NonNull<T>,
    bytes: usize,
}

/// Another handle to the same place: the segment's reference count, the same pointer.
impl<T> Clone for Place<T> {
    fn clone(&self) -> Self {
        Self {
            seg: self.seg.clone(),
            ptr: self.ptr,
            bytes: self.bytes,
        }
    }
}

impl<T> std::fmt::Debug for Place<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Place")
            .field("segment", &self.seg)
            .field("offset", &self.offset())
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl<T> Place<T> {
    /// The `bytes` bytes at `offset` of `seg`'s data, checking that they lie inside the data
    /// and that the address is aligned for `T`. Every other constructor ends here.
    pub(crate) fn at(seg: Segment, offset: usize, bytes: usize) -> Result<Self, SegmentError> {
        let end = offset
            .checked_add(bytes)
            .ok_or(SegmentError::Corrupt("object range overflows"))?;
        if end > seg.len() {
            return Err(SegmentError::Corrupt("object runs past its segment"));
        }
        // SAFETY: `offset <= seg.len()` (checked), so the result stays inside the mapping (or
        // one past its data end, never dereferenced then: `bytes` is 0).
        let p = unsafe { seg.as_ptr().add(offset) };
        if p as usize % std::mem::align_of::<T>() != 0 {
            return Err(SegmentError::Corrupt("object is misaligned for its type"));
        }
        let ptr = NonNull::new(p.cast::<T>()).expect("a mapping is never at address 0");
        Ok(Self { seg, ptr, bytes })
    }

    /// A whole segment's data.
    pub(crate) fn whole(seg: Segment) -> Result<Self, SegmentError> {
        let bytes = seg.len();
        Self::at(seg, 0, bytes)
    }

    /// New zeroed memory: an arena slot when `bytes` is small, else an anonymous segment of
    /// its own (`fp` names the layout for either).
    pub(crate) fn anonymous(bytes: usize, align: usize, fp: &Fingerprint) -> Result<Self, SegmentError> {
        let (seg, offset) = arena::place(bytes, align, fp)?;
        Self::at(seg, offset, bytes)
    }

    /// New zeroed memory in an anonymous segment of its own, whatever its size.
    pub(crate) fn own_segment(bytes: usize, fp: &Fingerprint) -> Result<Self, SegmentError> {
        Self::whole(Segment::anonymous(fp.clone(), bytes)?)
    }

    /// A new named segment (`"/name"`, exclusive, mode 0600) of `bytes` zeroed bytes.
    pub(crate) fn create_named(name: &str, bytes: usize, fp: &Fingerprint) -> Result<Self, SegmentError> {
        Self::whole(Segment::create_named(name, fp.clone(), bytes)?)
    }

    /// An existing named segment, checked to store `fp`.
    pub(crate) fn open_named(name: &str, fp: &Fingerprint) -> Result<Self, SegmentError> {
        Self::whole(Segment::open_named(name, Some(fp))?)
    }

    /// The arena slot a token would name (the spawned child's open path; the fuzz target's
    /// entry): `fd` must be an arena chunk, the slot's `layout` must match `fp`.
    pub(crate) fn open_slot(
        fd: OwnedFd,
        offset: u64,
        len: u64,
        layout: &Fingerprint,
        fp: &Fingerprint,
    ) -> Result<Self, SegmentError> {
        let (seg, offset, bytes) = arena::open_slot(fd, offset, len, layout, fp)?;
        Self::at(seg, offset, bytes)
    }

    /// This place, if it holds exactly one `T` (`what` names the handle in the error).
    pub(crate) fn exactly_one(self, what: &'static str) -> Result<Self, SegmentError> {
        if self.bytes != std::mem::size_of::<T>() {
            return Err(SegmentError::Corrupt(what));
        }
        Ok(self)
    }

    /// The object (valid while `self` lives: the segment keeps the mapping).
    pub(crate) fn ptr(&self) -> NonNull<T> {
        self.ptr
    }

    /// Bytes of the object.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The segment holding the object.
    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }

    /// Where the object starts in the segment's data (0 for a segment of its own).
    pub(crate) fn offset(&self) -> usize {
        self.ptr.as_ptr() as usize - self.seg.as_ptr() as usize
    }
}
