//! The byte ring: variable-length frames in a power-of-two byte buffer, one writer and one
//! reader at a time (the `Channel` above it serializes several with robust locks).
//!
//! Frame: `len: u32`, `flags: u32`, then `len` payload bytes, padded to 8. Frames are
//! written whole and published by one release store of `tail`; a payload may wrap around
//! the end of the buffer (copied in two parts); the 8-byte header never does (everything is
//! 8-aligned). A message longer than [`ByteRing::max_frame`] travels as several frames,
//! `FIRST` … `LAST`, so messages have no size cap; `ABORT` tells the reader to drop a
//! partial message whose writer gave up or died.
//!
//! The reader validates every header and index it reads from shared memory, once, before
//! use; anything a correct writer cannot produce is [`Corrupt`].

use super::pad::CachePadded;
use crate::loom::{AtomicU64, Ordering};

/// First frame of a message.
pub const FIRST: u32 = 1;
/// Last frame of a message.
pub const LAST: u32 = 2;
/// Drop the partial message in progress (carries no payload).
pub const ABORT: u32 = 4;
const KNOWN: u32 = FIRST | LAST | ABORT;
const FRAME_HEADER: u64 = 8;

/// Shared indices (monotonic byte counts) of a byte ring; `#[repr(C)]`.
#[repr(C)]
#[derive(Debug, Default)]
pub struct ByteRingIndices {
    tail: CachePadded<AtomicU64>,
    head: CachePadded<AtomicU64>,
}

impl ByteRingIndices {
    /// Byte offsets of `tail` and `head` (each a `u64`) inside the struct.
    pub(crate) fn offsets() -> (usize, usize) {
        let inner = std::mem::offset_of!(CachePadded<AtomicU64>, 0);
        (
            std::mem::offset_of!(ByteRingIndices, tail) + inner,
            std::mem::offset_of!(ByteRingIndices, head) + inner,
        )
    }
}

/// The shared indices or a frame header hold values a correct writer never produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Corrupt;

/// A byte ring: indices in shared memory plus the buffer they index (`cap` bytes, a power
/// of two, at least 64). Built over memory the caller maps; holds raw pointers only.
#[derive(Clone, Copy, Debug)]
pub struct ByteRing<'a> {
    idx: &'a ByteRingIndices,
    buf: *mut u8,
    cap: u64,
    /// Under loom: the buffer's stand-in (see [`Shadow`](crate::loom::Shadow)).
    #[cfg(loom)]
    shadow: Option<&'a crate::loom::Shadow>,
}

// SAFETY: the ring only holds a shared reference to atomics and a pointer into a shared
// mapping that outlives it ('a); all access to the buffer follows the ring protocol.
unsafe impl Send for ByteRing<'_> {}
// SAFETY: as above.
unsafe impl Sync for ByteRing<'_> {}

fn padded(len: u64) -> u64 {
    len.next_multiple_of(8)
}

/// A frame as read from the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameInfo {
    /// Payload length.
    pub len: u32,
    /// `FIRST` / `LAST` / `ABORT` bits.
    pub flags: u32,
}

impl<'a> ByteRing<'a> {
    /// A ring over `idx` and the `cap` bytes at `buf`.
    ///
    /// # Safety
    /// `buf` must point to `cap` bytes that stay mapped for `'a`, aligned to 8, and only
    /// accessed through byte rings over the same `idx`. `cap` must be a power of two ≥ 64.
    pub unsafe fn new(idx: &'a ByteRingIndices, buf: *mut u8, cap: usize) -> Self {
        Self {
            idx,
            buf,
            cap: cap as u64,
            #[cfg(loom)]
            shadow: None,
        }
    }

    /// Under loom: this ring's buffer accesses are recorded in `shadow` (`cap / 8` units),
    /// so loom checks the payload's ordering.
    #[cfg(loom)]
    pub fn with_shadow(mut self, shadow: &'a crate::loom::Shadow) -> Self {
        self.shadow = Some(shadow);
        self
    }

    /// Largest payload of one frame (a quarter of the buffer, so frames always fit with room
    /// to spare and a streaming writer and reader overlap).
    pub fn max_frame(&self) -> usize {
        (self.cap / 4 - FRAME_HEADER) as usize
    }

    /// Buffer size in bytes.
    pub fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// `(head, tail)` as published, checked for consistency.
    pub fn indices(&self) -> Result<(u64, u64), Corrupt> {
        let head = self.idx.head.load(Ordering::Acquire);
        let tail = self.idx.tail.load(Ordering::Acquire);
        if tail.wrapping_sub(head) > self.cap || tail % 8 != 0 || head % 8 != 0 {
            return Err(Corrupt);
        }
        Ok((head, tail))
    }

    /// Bytes of frames waiting to be read.
    pub fn used(&self) -> Result<u64, Corrupt> {
        self.indices().map(|(h, t)| t.wrapping_sub(h))
    }

    /// Whether a frame with `len` payload bytes fits now.
    pub fn fits(&self, len: usize) -> Result<bool, Corrupt> {
        Ok(self.cap - self.used()? >= FRAME_HEADER + padded(len as u64))
    }

    fn copy_in(&self, at: u64, data: &[u8]) {
        let off = (at & (self.cap - 1)) as usize;
        #[cfg(loom)]
        if let Some(s) = self.shadow {
            s.write_bytes(off, data.len());
        }
        if data.len() == 8 && off % 8 == 0 {
            // One word (a frame header, or a u64 payload): 8-aligned offsets never wrap
            // (`cap` is a multiple of 8), and a plain store beats a call to memcpy.
            let word = u64::from_ne_bytes(data.try_into().unwrap_or([0; 8]));
            // SAFETY: `off + 8 <= cap` (off is a multiple of 8 below cap) and the buffer is
            // 8-aligned, so the word is in bounds and aligned; the region is free (as below).
            unsafe { self.buf.add(off).cast::<u64>().write(word) };
            return;
        }
        let first = data.len().min(self.cap as usize - off);
        // SAFETY: `off < cap` and `first <= cap - off`; the rest wraps to the start and is
        // at most `cap` bytes in total (frames are smaller than the buffer). The region is
        // free: the caller checked the room against the reader's published head.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.buf.add(off), first);
            std::ptr::copy_nonoverlapping(data.as_ptr().add(first), self.buf, data.len() - first);
        }
    }

    fn copy_out(&self, at: u64, out: &mut [u8]) {
        let off = (at & (self.cap - 1)) as usize;
        #[cfg(loom)]
        if let Some(s) = self.shadow {
            s.read_bytes(off, out.len());
        }
        if out.len() == 8 && off % 8 == 0 {
            // SAFETY: as in `copy_in`'s one-word case; the word was published by the writer.
            let word = unsafe { self.buf.add(off).cast::<u64>().read() };
            out.copy_from_slice(&word.to_ne_bytes());
            return;
        }
        let first = out.len().min(self.cap as usize - off);
        // SAFETY: as in `copy_in`; the region was published by the writer (below `tail`).
        unsafe {
            std::ptr::copy_nonoverlapping(self.buf.add(off), out.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(self.buf, out.as_mut_ptr().add(first), out.len() - first);
        }
    }

    /// Where `tail` will be once a frame with `len` payload bytes is written now.
    pub fn tail_after(&self, len: usize) -> Result<u64, Corrupt> {
        let (_, tail) = self.indices()?;
        Ok(tail.wrapping_add(FRAME_HEADER + padded(len as u64)))
    }

    /// Where `head` will be once the frame `peek` returned is taken.
    pub fn head_after(&self, info: FrameInfo) -> Result<u64, Corrupt> {
        let (head, _) = self.indices()?;
        Ok(head.wrapping_add(FRAME_HEADER + padded(u64::from(info.len))))
    }

    /// Writes one frame if it fits and publishes it. Only the current writer may call it.
    /// `Ok(false)`: no room now.
    pub fn try_write(&self, payload: &[u8], flags: u32) -> Result<bool, Corrupt> {
        debug_assert!(payload.len() <= self.max_frame() && flags & !KNOWN == 0);
        let (head, tail) = self.indices()?;
        let need = FRAME_HEADER + padded(payload.len() as u64);
        if self.cap - tail.wrapping_sub(head) < need {
            return Ok(false);
        }
        let mut hdr = [0u8; 8];
        hdr[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        hdr[4..].copy_from_slice(&flags.to_le_bytes());
        self.copy_in(tail, &hdr);
        self.copy_in(tail.wrapping_add(FRAME_HEADER), payload);
        // SYNC POINT (frame publish): release pairs with the reader's acquire in `indices`.
        self.idx.tail.store(tail.wrapping_add(need), Ordering::Release);
        Ok(true)
    }

    /// Ring bytes a frame with `len` payload bytes takes.
    pub(crate) fn frame_size(len: usize) -> u64 {
        FRAME_HEADER + padded(len as u64)
    }

    /// The writer's own index (only the current writer may call this; the lock that made it
    /// the writer orders it after the previous writer's stores).
    pub(crate) fn own_tail(&self) -> Result<u64, Corrupt> {
        let tail = self.idx.tail.load(Ordering::Relaxed);
        if tail % 8 != 0 {
            return Err(Corrupt);
        }
        Ok(tail)
    }

    /// The reader's own index (only the current reader may call this).
    pub(crate) fn own_head(&self) -> Result<u64, Corrupt> {
        let head = self.idx.head.load(Ordering::Relaxed);
        if head % 8 != 0 {
            return Err(Corrupt);
        }
        Ok(head)
    }

    /// Where the writer's `tail` will be after a frame of `len` payload bytes.
    pub(crate) fn own_tail_after(&self, len: usize) -> Result<u64, Corrupt> {
        Ok(self.own_tail()?.wrapping_add(Self::frame_size(len)))
    }

    /// Room for a frame of `len` payload bytes, judged by the writer from `cached_head` (a
    /// copy of the reader's index that can only lag behind it, so it never overstates the
    /// room) and refreshed from the real index only when the copy says "no room". The copy
    /// lives on the writers' own cache line, so the common case reads no line the reader
    /// writes. Only the current writer may call this.
    pub(crate) fn fits_cached(&self, len: usize, cached_head: &AtomicU64) -> Result<bool, Corrupt> {
        let tail = self.own_tail()?;
        let need = Self::frame_size(len);
        let head = cached_head.load(Ordering::Relaxed);
        let used = tail.wrapping_sub(head);
        if used <= self.cap && head % 8 == 0 && self.cap - used >= need {
            return Ok(true);
        }
        // SYNC POINT (room): acquire pairs with the reader's release of `head` in `take`.
        let head = self.idx.head.load(Ordering::Acquire);
        let used = tail.wrapping_sub(head);
        if used > self.cap || head % 8 != 0 {
            return Err(Corrupt);
        }
        cached_head.store(head, Ordering::Relaxed);
        Ok(self.cap - used >= need)
    }

    /// Writes one frame for which [`fits_cached`](Self::fits_cached) just said yes, and
    /// publishes it. Only the current writer may call this.
    pub(crate) fn write_checked(
        &self,
        payload: &[u8],
        flags: u32,
        cached_head: &AtomicU64,
    ) -> Result<bool, Corrupt> {
        debug_assert!(payload.len() <= self.max_frame() && flags & !KNOWN == 0);
        if !self.fits_cached(payload.len(), cached_head)? {
            return Ok(false);
        }
        let tail = self.own_tail()?;
        let mut hdr = [0u8; 8];
        hdr[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        hdr[4..].copy_from_slice(&flags.to_le_bytes());
        self.copy_in(tail, &hdr);
        self.copy_in(tail.wrapping_add(FRAME_HEADER), payload);
        // SYNC POINT (frame publish): release pairs with the reader's acquire of `tail`.
        self.idx.tail.store(
            tail.wrapping_add(Self::frame_size(payload.len())),
            Ordering::Release,
        );
        Ok(true)
    }

    /// `peek` for the current reader, judging what is published from `cached_tail` (a copy
    /// of the writer's index that can only lag behind it) and refreshing it from the real
    /// index only when the copy says "empty".
    pub(crate) fn peek_cached(&self, cached_tail: &AtomicU64) -> Result<Option<FrameInfo>, Corrupt> {
        let head = self.own_head()?;
        let mut tail = cached_tail.load(Ordering::Relaxed);
        let avail = tail.wrapping_sub(head);
        if avail == 0 || avail > self.cap || tail % 8 != 0 {
            // SYNC POINT (frame publish): acquire pairs with the writer's release of `tail`.
            tail = self.idx.tail.load(Ordering::Acquire);
            if tail.wrapping_sub(head) > self.cap || tail % 8 != 0 {
                return Err(Corrupt);
            }
            cached_tail.store(tail, Ordering::Relaxed);
        }
        self.frame_at(head, tail)
    }

    /// The validated header of the frame at `head`, given a published `tail`.
    fn frame_at(&self, head: u64, tail: u64) -> Result<Option<FrameInfo>, Corrupt> {
        let avail = tail.wrapping_sub(head);
        if avail == 0 {
            return Ok(None);
        }
        if avail < FRAME_HEADER {
            return Err(Corrupt);
        }
        let mut hdr = [0u8; 8];
        self.copy_out(head, &mut hdr);
        let len = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let flags = u32::from_le_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
        let whole = FRAME_HEADER + padded(u64::from(len));
        // flags 0 is a middle part of a long message.
        if flags & !KNOWN != 0
            || len as usize > self.max_frame()
            || whole > avail
            || (flags & ABORT != 0 && (len != 0 || flags != ABORT))
        {
            return Err(Corrupt);
        }
        Ok(Some(FrameInfo { len, flags }))
    }

    /// `take` for the current reader after `peek_cached` returned `info`.
    pub(crate) fn take_cached(&self, info: FrameInfo, out: &mut Vec<u8>) -> Result<(), Corrupt> {
        let head = self.own_head()?;
        let start = out.len();
        out.resize(start + info.len as usize, 0);
        self.copy_out(head.wrapping_add(FRAME_HEADER), &mut out[start..]);
        let whole = Self::frame_size(info.len as usize);
        // SYNC POINT (frame release): release pairs with the writer's acquire of `head`.
        self.idx.head.store(head.wrapping_add(whole), Ordering::Release);
        Ok(())
    }

    /// `skip` for the current reader after `peek_cached` returned `info`.
    pub(crate) fn skip_cached(&self, info: FrameInfo) -> Result<(), Corrupt> {
        let head = self.own_head()?;
        let whole = Self::frame_size(info.len as usize);
        self.idx.head.store(head.wrapping_add(whole), Ordering::Release);
        Ok(())
    }

    /// The next frame's header, if a whole frame is published; validated.
    pub fn peek(&self) -> Result<Option<FrameInfo>, Corrupt> {
        let (head, tail) = self.indices()?;
        self.frame_at(head, tail)
    }

    /// Appends the payload of the frame `peek` returned to `out` and releases the frame.
    /// Only the current reader may call it, with the `info` from its own `peek`.
    pub fn take(&self, info: FrameInfo, out: &mut Vec<u8>) -> Result<(), Corrupt> {
        let (head, tail) = self.indices()?;
        let whole = FRAME_HEADER + padded(u64::from(info.len));
        if whole > tail.wrapping_sub(head) {
            return Err(Corrupt);
        }
        let start = out.len();
        out.resize(start + info.len as usize, 0);
        self.copy_out(head.wrapping_add(FRAME_HEADER), &mut out[start..]);
        // SYNC POINT (frame release): release pairs with the writer's acquire in `indices`.
        self.idx.head.store(head.wrapping_add(whole), Ordering::Release);
        Ok(())
    }

    /// Releases the frame `peek` returned without copying it.
    pub fn skip(&self, info: FrameInfo) -> Result<(), Corrupt> {
        let (head, tail) = self.indices()?;
        let whole = FRAME_HEADER + padded(u64::from(info.len));
        if whole > tail.wrapping_sub(head) {
            return Err(Corrupt);
        }
        self.idx.head.store(head.wrapping_add(whole), Ordering::Release);
        Ok(())
    }
}
