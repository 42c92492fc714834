//! The header at the start of every segment, its fingerprint, and its validation.
//!
//! Validation reads the header **once** into a local copy (volatile byte reads, since a peer
//! may be writing), then checks that copy only: no field is read twice from shared memory.

use std::fmt;

use crate::error::SegmentError;

/// `b"SHMPROC\x01"` read as a little-endian `u64`.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMPROC\x01");
/// Format version of the header and of everything this build stores in segments.
pub const VERSION: u32 = 1;
/// Size of the header in bytes; data starts at or after this offset.
pub const HEADER_LEN: usize = 128;
/// Bytes of the type name kept in the header (longer names are truncated; the hash covers
/// the full name).
pub const NAME_LEN: usize = 48;
/// Header flag: a process called `keep()` on this named segment, so `cleanup_stale()` must
/// leave it in place even after its creator is gone.
pub(crate) const FLAG_KEEP: u32 = 1;
/// The largest alignment a stored type may ask for (mappings are page-aligned).
pub const MAX_ALIGN: u64 = 4096;

/// The on-disk header. `#[repr(C)]`, no padding, every bit pattern valid.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Header {
    pub(crate) magic: u64,
    pub(crate) version: u32,
    pub(crate) header_len: u32,
    pub(crate) total_len: u64,
    pub(crate) data_offset: u64,
    pub(crate) data_len: u64,
    pub(crate) fp_size: u64,
    pub(crate) fp_align: u64,
    pub(crate) fp_hash: u64,
    pub(crate) creator_pid: u32,
    pub(crate) flags: u32,
    /// Start time of the creator (clock ticks after boot, `/proc/<pid>/stat` field 22), so a
    /// reused pid is not mistaken for the creator. 0 for anonymous segments.
    pub(crate) creator_start: u64,
    pub(crate) fp_name: [u8; NAME_LEN],
}

const _: () = assert!(core::mem::size_of::<Header>() == HEADER_LEN);

/// What a segment stores: size, alignment and a hash of the type's name.
///
/// Two processes agree on a segment's contents only if their fingerprints are equal. The
/// name is `std::any::type_name`, so it identifies the type within one build; processes
/// built from different sources that name their types alike must keep the layouts alike.
///
/// ```
/// use shmproc::Fingerprint;
/// let f = Fingerprint::of::<u64>();
/// assert_eq!((f.size, f.align, f.name.as_str()), (8, 8, "u64"));
/// assert_ne!(f, Fingerprint::of::<i64>());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    /// `size_of` the element type.
    pub size: u64,
    /// `align_of` the element type.
    pub align: u64,
    /// FNV-1a hash of the full type name.
    pub hash: u64,
    /// The type name (possibly truncated to 48 bytes when read back from a header).
    pub name: String,
}

impl Fingerprint {
    /// The fingerprint of `T`.
    pub fn of<T>() -> Self {
        let name = std::any::type_name::<T>();
        Self::new(
            core::mem::size_of::<T>() as u64,
            core::mem::align_of::<T>() as u64,
            name,
        )
    }

    /// A fingerprint from its parts (for segments whose "type" is not a Rust type).
    pub fn new(size: u64, align: u64, name: &str) -> Self {
        Self {
            size,
            align,
            hash: fnv1a(name.as_bytes()),
            name: name.to_owned(),
        }
    }

    /// The fingerprint of plain bytes (`SharedMemory`).
    pub fn bytes() -> Self {
        Self::new(1, 1, "bytes")
    }

    pub(crate) fn same_layout(&self, other: &Self) -> bool {
        self.size == other.size && self.align == other.align && self.hash == other.hash
    }

    /// `Ok` if `found` has this (expected) layout, else [`SegmentError::LayoutMismatch`].
    pub(crate) fn expect(&self, found: &Self) -> Result<(), SegmentError> {
        if self.same_layout(found) {
            return Ok(());
        }
        Err(SegmentError::LayoutMismatch {
            expected: self.clone().into(),
            found: found.clone().into(),
        })
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` (size {}, align {}, hash {:#x})",
            self.name, self.size, self.align, self.hash
        )
    }
}

/// FNV-1a, 64 bit: tiny, stable across builds and platforms.
pub(crate) const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    h
}

/// Where the data lies in a validated segment (see [`check_image`]).
///
/// ```
/// let seg = shmproc::Segment::anonymous(shmproc::Fingerprint::of::<u32>(), 40)?;
/// assert_eq!(seg.len(), 40);
/// # Ok::<(), shmproc::SegmentError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataRange {
    /// Offset of the data from the start of the segment.
    pub offset: usize,
    /// Length of the data in bytes.
    pub len: usize,
}

/// Computes the total length and data offset for `data_len` bytes of `fp`.
pub(crate) fn plan(fp: &Fingerprint, data_len: usize) -> Result<(u64, DataRange), SegmentError> {
    if fp.align == 0 || !fp.align.is_power_of_two() || fp.align > MAX_ALIGN {
        return Err(SegmentError::Unsupported(
            "alignment must be a power of two <= 4096",
        ));
    }
    let offset = (HEADER_LEN as u64).next_multiple_of(fp.align);
    let total = offset
        .checked_add(data_len as u64)
        .filter(|t| *t <= isize::MAX as u64)
        .ok_or(SegmentError::TooLarge(offset as u128 + data_len as u128))?;
    Ok((
        total,
        DataRange {
            offset: offset as usize,
            len: data_len,
        },
    ))
}

/// Builds the header for a new segment (magic included; the caller publishes it last).
pub(crate) fn build(fp: &Fingerprint, total: u64, range: DataRange, creator_start: u64) -> Header {
    let mut name = [0u8; NAME_LEN];
    let src = truncate_utf8(&fp.name, NAME_LEN);
    name[..src.len()].copy_from_slice(src.as_bytes());
    Header {
        magic: MAGIC,
        version: VERSION,
        header_len: HEADER_LEN as u32,
        total_len: total,
        data_offset: range.offset as u64,
        data_len: range.len as u64,
        fp_size: fp.size,
        fp_align: fp.align,
        fp_hash: fp.hash,
        creator_pid: std::process::id(),
        flags: 0,
        creator_start,
        fp_name: name,
    }
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl Header {
    /// Whether the magic and version say this is a segment of this format.
    pub(crate) fn is_ours(&self) -> bool {
        self.magic == MAGIC && self.version == VERSION
    }

    fn fingerprint(&self) -> Fingerprint {
        let end = self.fp_name.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
        Fingerprint {
            size: self.fp_size,
            align: self.fp_align,
            hash: self.fp_hash,
            name: String::from_utf8_lossy(&self.fp_name[..end]).into_owned(),
        }
    }
}

/// Validates a header copy against the file length and, if given, the expected layout.
///
/// `file_len` is the length of the object as the kernel reports it. Returns where the data
/// is and what layout the segment records. Every field is checked before it is used.
pub(crate) fn validate(
    h: &Header,
    file_len: u64,
    expected: Option<&Fingerprint>,
) -> Result<(DataRange, Fingerprint), SegmentError> {
    if h.magic == 0 {
        // Either an empty object or one whose creator has not published the header yet
        // (the magic is written last): worth retrying, unlike a foreign magic.
        return Err(SegmentError::Uninitialized);
    }
    if h.magic != MAGIC {
        return Err(SegmentError::BadMagic { found: h.magic });
    }
    if h.version != VERSION {
        return Err(SegmentError::VersionMismatch {
            expected: VERSION,
            found: h.version,
        });
    }
    if h.header_len as usize != HEADER_LEN {
        return Err(SegmentError::Corrupt("header length field is wrong"));
    }
    if h.total_len != file_len {
        return Err(if file_len < h.total_len {
            SegmentError::TooSmall {
                len: file_len,
                needed: h.total_len,
            }
        } else {
            SegmentError::Corrupt("total length differs from the object's size")
        });
    }
    if h.fp_align == 0 || !h.fp_align.is_power_of_two() || h.fp_align > MAX_ALIGN {
        return Err(SegmentError::Corrupt("alignment is not a power of two <= 4096"));
    }
    if h.data_offset < HEADER_LEN as u64 || h.data_offset % h.fp_align != 0 {
        return Err(SegmentError::Corrupt("data offset is misplaced"));
    }
    let end = h
        .data_offset
        .checked_add(h.data_len)
        .ok_or(SegmentError::Corrupt("data range overflows"))?;
    if end > h.total_len {
        return Err(SegmentError::Corrupt("data range runs past the end"));
    }
    if h.fp_size != 0 && h.data_len % h.fp_size != 0 {
        return Err(SegmentError::Corrupt(
            "data length is not a whole number of elements",
        ));
    }
    let found = h.fingerprint();
    if let Some(exp) = expected {
        exp.expect(&found)?;
    }
    let offset = usize::try_from(h.data_offset).map_err(|_| SegmentError::TooLarge(h.data_offset.into()))?;
    let len = usize::try_from(h.data_len).map_err(|_| SegmentError::TooLarge(h.data_len.into()))?;
    Ok((DataRange { offset, len }, found))
}

/// Validates a segment image held in a byte slice (the whole object, header first).
///
/// This is the pure core of opening a segment, used by the fuzz target and its stable
/// replay; it never panics whatever the bytes are.
///
/// ```
/// use shmproc::{check_image, SegmentError};
/// assert!(matches!(check_image(&[0u8; 16], None), Err(SegmentError::TooSmall { .. })));
/// assert!(matches!(check_image(&[0xffu8; 256], None), Err(SegmentError::BadMagic { .. })));
/// ```
pub fn check_image(bytes: &[u8], expected: Option<&Fingerprint>) -> Result<DataRange, SegmentError> {
    if bytes.len() < HEADER_LEN {
        return Err(SegmentError::TooSmall {
            len: bytes.len() as u64,
            needed: HEADER_LEN as u64,
        });
    }
    let h: Header = bytemuck::pod_read_unaligned(&bytes[..HEADER_LEN]);
    validate(&h, bytes.len() as u64, expected).map(|(r, _)| r)
}

impl From<Fingerprint> for crate::error::LayoutInfo {
    fn from(f: Fingerprint) -> Self {
        Self {
            size: f.size,
            align: f.align,
            hash: f.hash,
            name: f.name,
        }
    }
}

impl PartialEq<Fingerprint> for crate::error::LayoutInfo {
    fn eq(&self, f: &Fingerprint) -> bool {
        (self.size, self.align, self.hash, self.name.as_str()) == (f.size, f.align, f.hash, f.name.as_str())
    }
}
