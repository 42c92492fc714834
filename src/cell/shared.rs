use std::ops::Deref;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;

use super::segment_serde;
use crate::error::SegmentError;
use crate::shm::arena;
use crate::shm::{Fingerprint, Segment};

/// Types that may be placed in shared memory and accessed through `&T` by several processes.
///
/// # Safety
/// Implement it only for types that:
/// - are `#[repr(C)]` (or primitives/arrays) with a layout fixed at compile time, and contain
///   no pointers, references, fds or other process-local values;
/// - are valid for **every** bit pattern (a peer may write anything; `bool`, enums, `char`,
///   `NonZero*` and `AtomicBool` are therefore excluded), including all zeroes;
/// - mutate only through atomics (or through a lock protocol the type itself enforces):
///   plain fields are read concurrently by other processes, so treat them as read-only after
///   the value is shared;
/// - need no `Drop` (the value is never dropped; the memory just goes away).
///
/// ```
/// use std::sync::atomic::AtomicU32;
/// #[repr(C)]
/// struct Slots { ready: AtomicU32, values: [u64; 4] }
/// // SAFETY: repr(C), no padding issues for validity, any bits valid, shared mutation only
/// // through `ready`; `values` is written before the struct is shared.
/// unsafe impl shmproc::ShmSafe for Slots {}
/// let s = shmproc::Shared::new(Slots { ready: AtomicU32::new(0), values: [1, 2, 3, 4] })?;
/// assert_eq!(s.values[2], 3);
/// # Ok::<(), shmproc::SegmentError>(())
/// ```
pub unsafe trait ShmSafe: Sync + 'static {}

macro_rules! shm_safe {
    ($($t:ty),* $(,)?) => { $(
        // SAFETY: every bit pattern is valid, no pointers, no Drop; atomics are Sync.
        unsafe impl ShmSafe for $t {}
    )* };
}
shm_safe!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64);
/// The std atomics users put in their shared structs (the loom shim is for the crate's own
/// algorithms, not for users' types).
#[allow(clippy::disallowed_types)]
mod std_atomics {
    use std::sync::atomic::{
        AtomicI16, AtomicI32, AtomicI64, AtomicI8, AtomicIsize, AtomicU16, AtomicU32, AtomicU64, AtomicU8,
        AtomicUsize,
    };

    use super::ShmSafe;

    shm_safe!(AtomicU8, AtomicU16, AtomicU32, AtomicU64, AtomicUsize);
    shm_safe!(AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicIsize);
}
// SAFETY: an array of ShmSafe elements has no padding between elements and inherits every
// property listed above from its element type.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {}

/// A user's `#[repr(C)]` struct living in shared memory, reachable as `&T` in every process
/// that holds a handle. The Rust form of putting a `ctypes.Structure` into Python's shared
/// memory, with atomics instead of a separate lock.
///
/// # Where the value lives
/// [`Shared::new`] places a value of up to [`ARENA_MAX_OBJECT`](crate::ARENA_MAX_OBJECT)
/// bytes in a 64-byte-aligned slot of a shared *arena* chunk, the way Python's
/// `multiprocessing.heap` serves `Value`: no fd and no mapping of its own, so a process can
/// hold millions (every `Lock`, `Event`, `Value`… is a `Shared` inside). Bigger values, and
/// every named one ([`create_named`](Self::create_named)), get a segment of their own.
/// **A slot is never reused while its chunk lives**: the chunk's memory is freed when the
/// last handle to any of its slots is dropped in every process, so a process killed with
/// handles can never make a slot reusable while another process still uses it. A
/// create/drop loop therefore recycles whole chunks (1 MiB and up), not slots.
///
/// A spawned child that receives handles to many slots of one chunk receives that chunk's
/// fd once and maps it once.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use shmproc::{Process, Shared, ShmSafe};
///
/// #[repr(C)]
/// struct Stats { hits: AtomicU64, limit: u64 }
/// // SAFETY: repr(C), any bits valid, mutated only through the atomic.
/// unsafe impl ShmSafe for Stats {}
///
/// let stats = Shared::new(Stats { hits: AtomicU64::new(0), limit: 10 })?;
/// let mut kids = Vec::new();
/// for _ in 0..3 {
///     let s = stats.clone();
///     kids.push(Process::fork(move || { s.hits.fetch_add(1, Ordering::Relaxed); }).start()?);
/// }
/// for k in &mut kids { k.join()?; }
/// assert_eq!(stats.hits.load(Ordering::Relaxed), 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Shared<T: ShmSafe> {
    /// The segment holding the value: an arena chunk, or the value's own segment.
    pub(crate) seg: Segment,
    /// The value, inside `seg`'s mapping (cached so `Deref` is one load).
    ptr: NonNull<T>,
}

// SAFETY: a `Shared<T>` is a shared reference to a `T: Sync` that lives as long as the
// handle (the `Segment` clone keeps the mapping); it moves between threads like an
// `Arc<T>`, which needs `T: Send + Sync`.
unsafe impl<T: ShmSafe + Send> Send for Shared<T> {}
// SAFETY: as above; sharing the handle only shares `&T`, and `T: Sync` (ShmSafe).
unsafe impl<T: ShmSafe> Sync for Shared<T> {}

impl<T: ShmSafe> std::fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("segment", &self.seg)
            .field("offset", &self.offset())
            .finish()
    }
}

impl<T: ShmSafe> Shared<T> {
    /// Moves `value` into shared memory: an arena slot when `size_of::<T>()` is at most
    /// [`ARENA_MAX_OBJECT`](crate::ARENA_MAX_OBJECT), else an anonymous segment of its own.
    pub fn new(value: T) -> Result<Self, SegmentError> {
        let (seg, offset) = arena::place(
            std::mem::size_of::<T>(),
            std::mem::align_of::<T>(),
            &Fingerprint::of::<T>(),
        )?;
        let s = Self::wrap_at(seg, offset, std::mem::size_of::<T>())?;
        s.init(value);
        Ok(s)
    }

    /// Moves `value` into an anonymous segment of its own, whatever its size (the layout
    /// before arenas; kept for benchmarks and tests that compare both).
    #[doc(hidden)]
    pub fn new_own_segment(value: T) -> Result<Self, SegmentError> {
        let s = Self::wrap(Segment::anonymous(
            Fingerprint::of::<T>(),
            std::mem::size_of::<T>(),
        )?)?;
        s.init(value);
        Ok(s)
    }

    /// Moves `value` into a new named segment (`"/name"`, exclusive, mode 0600).
    pub fn create_named(name: &str, value: T) -> Result<Self, SegmentError> {
        let s = Self::wrap(Segment::create_named(
            name,
            Fingerprint::of::<T>(),
            std::mem::size_of::<T>(),
        )?)?;
        s.init(value);
        Ok(s)
    }

    /// Attaches to a named segment, checking that it stores a `T`.
    pub fn open_named(name: &str) -> Result<Self, SegmentError> {
        Self::wrap(Segment::open_named(name, Some(&Fingerprint::of::<T>()))?)
    }

    /// Opens the arena slot a token would name: `fd` must be an arena chunk (a sealed
    /// memfd with a valid header), `offset`/`len`/`layout` as a sender would describe a
    /// `T`. The open path of a spawned child's handles, exposed for the fuzz target.
    #[doc(hidden)]
    pub fn open_slot(fd: OwnedFd, offset: u64, len: u64, layout: &Fingerprint) -> Result<Self, SegmentError> {
        let (seg, off, len) = arena::open_slot(fd, offset, len, layout, &Fingerprint::of::<T>())?;
        Self::wrap_at(seg, off, len)
    }

    fn init(&self, value: T) {
        // SAFETY: the slot is new (never handed out before), so no other process or handle
        // uses it yet; it holds `size_of::<T>()` bytes aligned for `T`.
        unsafe { std::ptr::write(self.ptr.as_ptr(), value) }
    }

    /// A whole segment holding exactly one `T` (its own segment).
    pub(crate) fn wrap(seg: Segment) -> Result<Self, SegmentError> {
        let len = seg.len();
        Self::wrap_at(seg, 0, len)
    }

    /// The `T` at `offset` of `seg`'s data, `len` bytes long.
    pub(crate) fn wrap_at(seg: Segment, offset: usize, len: usize) -> Result<Self, SegmentError> {
        let ptr = super::typed_ptr::<T>(&seg, offset, len)?;
        if len != std::mem::size_of::<T>() {
            return Err(SegmentError::Corrupt(
                "shared struct segment has the wrong data length",
            ));
        }
        Ok(Self { seg, ptr })
    }

    /// The segment holding the value. For a value in an arena this is the whole arena
    /// chunk, shared with other objects: the value starts at [`offset`](Self::offset) of
    /// its data. For a value with a segment of its own the offset is 0.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    fn place(&self) -> (&Segment, usize, usize) {
        (&self.seg, self.offset(), std::mem::size_of::<T>())
    }

    /// Where the value starts in [`segment`](Self::segment)'s data.
    pub fn offset(&self) -> usize {
        self.ptr.as_ptr() as usize - self.seg.as_ptr() as usize
    }
}

/// Another handle to the same value: an in-process reference count, no new fd or mapping.
impl<T: ShmSafe> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Self {
            seg: self.seg.clone(),
            ptr: self.ptr,
        }
    }
}

impl<T: ShmSafe> Deref for Shared<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: `ptr` points at `size_of::<T>()` bytes aligned for `T` inside `seg`'s
        // mapping (checked in `wrap_at`), mapped as long as `self` lives; `T: ShmSafe` is
        // valid for any bytes and `Sync`, and only mutated through interior mutability, so
        // a shared reference is sound.
        unsafe { self.ptr.as_ref() }
    }
}

segment_serde!(Shared<T: ShmSafe>, Fingerprint::of::<T>(), |seg, off, len| Shared::<T>::wrap_at(seg, off, len));
