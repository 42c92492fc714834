use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::atomic::{
    AtomicI16, AtomicI32, AtomicI64, AtomicI8, AtomicIsize, AtomicU16, AtomicU32, AtomicU64, AtomicU8,
    AtomicUsize,
};

use super::segment_serde;
use crate::error::SegmentError;
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
shm_safe!(AtomicU8, AtomicU16, AtomicU32, AtomicU64, AtomicUsize);
shm_safe!(AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicIsize);
// SAFETY: an array of ShmSafe elements has no padding between elements and inherits every
// property listed above from its element type.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {}

/// A user's `#[repr(C)]` struct living in shared memory, reachable as `&T` in every process
/// that holds a handle. The Rust form of putting a `ctypes.Structure` into Python's shared
/// memory, with atomics instead of a separate lock.
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
    pub(crate) seg: Segment,
    _t: PhantomData<T>,
}

impl<T: ShmSafe> std::fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("segment", &self.seg).finish()
    }
}

impl<T: ShmSafe> Shared<T> {
    /// Moves `value` into a new anonymous segment.
    pub fn new(value: T) -> Result<Self, SegmentError> {
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

    fn init(&self, value: T) {
        // SAFETY: the segment is new, so no other process has it yet; the data region is
        // `size_of::<T>()` bytes aligned for `T`.
        unsafe { std::ptr::write(self.seg.as_ptr().cast::<T>(), value) }
    }

    pub(crate) fn wrap(seg: Segment) -> Result<Self, SegmentError> {
        if seg.len() != std::mem::size_of::<T>() {
            return Err(SegmentError::Corrupt(
                "shared struct segment has the wrong data length",
            ));
        }
        Ok(Self { seg, _t: PhantomData })
    }

    /// The underlying segment.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }
}

/// Another handle to the same value: an in-process reference count, no new fd or mapping.
impl<T: ShmSafe> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Self {
            seg: self.seg.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: ShmSafe> Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the data region holds `size_of::<T>()` bytes aligned for `T`, mapped as long
        // as `self` lives; `T: ShmSafe` is valid for any bytes and `Sync`, and only mutated
        // through interior mutability, so a shared reference is sound.
        unsafe { &*self.seg.as_ptr().cast::<T>() }
    }
}

segment_serde!(Shared<T: ShmSafe>, Fingerprint::of::<T>(), Shared::<T>::wrap);
