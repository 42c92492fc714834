use crate::error::{IndexError, SegmentError};
use crate::shm::{Fingerprint, Segment};

/// A block of raw bytes shared between processes; mirrors Python's
/// `multiprocessing.shared_memory.SharedMemory(name=None, create=False, size=0)`.
///
/// [`SharedMemory::new`] makes an anonymous block (nothing to clean up),
/// [`create_named`](Self::create_named) a named one in `/dev/shm` that unrelated processes
/// [`open_named`](Self::open_named) by name (the spelling every named shmproc type uses); the creator unlinks the name
/// when its handle drops, unless [`keep`](Self::keep) was called ([`unlink`](Self::unlink)
/// removes it at once, as in Python).
///
/// # Aliasing
/// Other processes may write these bytes at any moment. The safe accessors
/// ([`read_at`](Self::read_at), [`write_at`](Self::write_at), [`to_vec`](Self::to_vec)) copy
/// through raw pointers and are always sound, but a copy that races with a peer's write may
/// see part of each (no atomicity). Borrowing the bytes as a slice
/// ([`as_slice`](Self::as_slice), [`as_mut_slice`](Self::as_mut_slice)) is `unsafe`: the caller
/// promises that nobody writes them (in any process) while a shared slice lives, and that
/// nobody else reads or writes them while the mutable one lives — typically by holding a
/// lock, or by a protocol such as "the child writes, then exits, then the parent reads".
///
/// ```
/// let shm = shmproc::SharedMemory::new(16)?;
/// shm.write_at(0, b"hello")?;
/// let mut buf = [0u8; 5];
/// shm.read_at(0, &mut buf)?;
/// assert_eq!(&buf, b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct SharedMemory {
    pub(crate) seg: Segment,
}

/// A block holds at least one byte (Python: "'size' must be a positive number different
/// from zero").
fn check_size(size: usize) -> Result<(), SegmentError> {
    if size == 0 {
        return Err(SegmentError::InvalidSize(
            "a SharedMemory needs at least one byte",
        ));
    }
    Ok(())
}

impl SharedMemory {
    /// An anonymous block of `size` zero bytes.
    ///
    /// `size` must be at least 1: a zero-sized block is
    /// [`SegmentError::InvalidSize`], as Python's `SharedMemory(create=True, size=0)` is a
    /// `ValueError`.
    pub fn new(size: usize) -> Result<Self, SegmentError> {
        check_size(size)?;
        Ok(Self {
            seg: Segment::anonymous(Fingerprint::bytes(), size)?,
        })
    }

    /// A new named block (`"/name"`), created exclusively with mode `0600`; `size` at
    /// least 1 ([`SegmentError::InvalidSize`] otherwise, and nothing is created).
    pub fn create_named(name: &str, size: usize) -> Result<Self, SegmentError> {
        check_size(size)?;
        Ok(Self {
            seg: Segment::create_named(name, Fingerprint::bytes(), size)?,
        })
    }

    /// Attaches to an existing named block.
    pub fn open_named(name: &str) -> Result<Self, SegmentError> {
        Self::wrap(Segment::open_named(name, Some(&Fingerprint::bytes()))?)
    }

    fn wrap(seg: Segment) -> Result<Self, SegmentError> {
        Ok(Self { seg })
    }

    /// The name (`None` for anonymous blocks).
    pub fn name(&self) -> Option<&str> {
        self.seg.name()
    }

    /// Size in bytes.
    pub fn size(&self) -> usize {
        self.seg.len()
    }

    /// Copies `buf.len()` bytes starting at `offset` out of the block.
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<(), IndexError> {
        IndexError::check(offset, buf.len(), self.size())?;
        // SAFETY: the range was bounds-checked; `buf` is our own memory and cannot overlap
        // the mapping; bytes have no invalid values.
        unsafe { std::ptr::copy_nonoverlapping(self.seg.as_ptr().add(offset), buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copies `data` into the block starting at `offset`.
    pub fn write_at(&self, offset: usize, data: &[u8]) -> Result<(), IndexError> {
        IndexError::check(offset, data.len(), self.size())?;
        // SAFETY: the range was bounds-checked and the mapping is writable; `data` cannot
        // overlap the mapping.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.seg.as_ptr().add(offset), data.len()) };
        Ok(())
    }

    /// A copy of the whole block.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.size()];
        self.read_at(0, &mut v).expect("whole range is in bounds");
        v
    }

    /// Borrows the bytes.
    ///
    /// # Safety
    /// No process may write the block while the returned slice lives (see the type's
    /// aliasing rules).
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: pointer and length describe our live mapping; the caller rules out writers.
        unsafe { std::slice::from_raw_parts(self.seg.as_ptr(), self.size()) }
    }

    /// Borrows the bytes mutably.
    ///
    /// # Safety
    /// No other process or handle may read or write the block while the returned slice
    /// lives (see the type's aliasing rules).
    pub unsafe fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: pointer and length describe our live, writable mapping; `&mut self` rules
        // out other borrows in this handle and the caller rules out everyone else.
        unsafe { std::slice::from_raw_parts_mut(self.seg.as_ptr(), self.size()) }
    }

    /// Removes the name now (other processes keep their mappings). No-op when anonymous.
    pub fn unlink(&self) -> Result<(), SegmentError> {
        self.seg.unlink()
    }

    /// Leaves the name in place when this handle drops.
    pub fn keep(&self) {
        self.seg.keep()
    }

    /// The underlying segment.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }
}

impl serde::Serialize for SharedMemory {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.seg.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for SharedMemory {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let seg = crate::shm::transfer::deserialize_segment(d, Some(&Fingerprint::bytes()))?;
        Self::wrap(seg).map_err(|e| crate::shm::transfer::fail::<D::Error>(e.to_string()))
    }
}
