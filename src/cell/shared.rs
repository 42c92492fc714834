use super::{one_value_handle, segment_serde, Place};
use crate::error::SegmentError;
use crate::shm::{Fingerprint, Segment};
use std::ops::Deref;

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
    /// The value: an arena slot, or a segment of its own.
    place: Place<T>,
}

// SAFETY: a `Shared<T>` is a shared reference to a `T: Sync` that lives as long as the
// handle (the place's `Segment` clone keeps the mapping); it moves between threads like an
// `Arc<T>`, which needs `T: Send + Sync`.
unsafe impl<T: ShmSafe + Send> Send for Shared<T> {}
// SAFETY: as above; sharing the handle only shares `&T`, and `T: Sync` (ShmSafe).
unsafe impl<T: ShmSafe> Sync for Shared<T> {}

one_value_handle!(Shared<T: ShmSafe>, "shared struct segment has the wrong data length");

impl<T: ShmSafe> Shared<T> {
    /// Moves the first value into a new place.
    fn write_new(&self, value: T) {
        // SAFETY: the place is new (never handed out before), so no other process or handle
        // uses it yet; it holds `size_of::<T>()` bytes aligned for `T` (checked).
        unsafe { std::ptr::write(self.place.ptr().as_ptr(), value) }
    }
}

impl<T: ShmSafe> Deref for Shared<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the place holds `size_of::<T>()` bytes aligned for `T` (checked when it was
        // made), mapped as long as `self` lives; `T: ShmSafe` is valid for any bytes and
        // `Sync`, and only mutated through interior mutability, so a shared reference is sound.
        unsafe { self.place.ptr().as_ref() }
    }
}

segment_serde!(Shared<T: ShmSafe>, Fingerprint::of::<T>(), Shared::<T>::from_place);
