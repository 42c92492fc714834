//! Arenas: small objects live as 64-byte slots in shared chunks instead of a segment each.
//!
//! The way Python's `multiprocessing.heap` serves `Value`/`RawValue`: one process-wide
//! allocator bump-allocates slots from an anonymous sealed memfd (a *chunk*, a [`Segment`]
//! with the fingerprint "shmproc arena"). A handle to a small object is (a clone of the
//! chunk's `Segment`, an offset), so a million locks cost a handful of fds and mappings.
//!
//! # Reuse rule
//! **A slot is never reused while its chunk lives.** The allocator only moves forward in
//! its current chunk and never hands out a slot twice; a chunk's memory is freed when the
//! last handle to any slot in it is dropped in every process (its last mapping and fd go
//! away). So no process — not even one killed with handles — can make a slot reusable while
//! another process still reaches it, and no reference counts live in shared memory. A
//! create/drop loop recycles whole chunks, not slots. The allocator itself keeps no chunk
//! alive: it only holds a weak reference to the one it is filling.
//!
//! # Sizes
//! Chunks start at 1 MiB ([`FIRST_CHUNK`]) and double while the chunk being filled is still
//! in use when it runs full, up to 1 GiB ([`MAX_CHUNK`]); untouched memfd pages cost
//! nothing. Slots are multiples of 64 bytes ([`SLOT`]) aligned to at least 64 (no false
//! sharing between two hot locks), and to the object's alignment up to
//! [`MAX_ALIGN`](super::MAX_ALIGN). Objects above [`ARENA_MAX_OBJECT`] bytes get a segment of
//! their own.
//!
//! # Fork
//! A forked child inherits the allocator's state, bump offset included; if it went on
//! allocating in the parent's chunk both would hand out the same slots. The allocator
//! records the fork epoch (bumped in every child by an `atfork` handler registered on first
//! use) and starts a fresh chunk in a child. Its lock is a spin word tagged with the epoch,
//! so a child whose parent forked while another thread held it takes it over instead of
//! waiting forever.

use std::cell::UnsafeCell;

use super::header::{Fingerprint, MAX_ALIGN};
use super::segment::{Segment, WeakSegment};
use crate::error::SegmentError;

/// The largest object (in bytes) [`Shared`](crate::Shared), [`RawValue`](crate::RawValue),
/// [`RawArray`](crate::RawArray) and [`Array`](crate::Array) (its lock and elements together)
/// place in an arena slot; bigger ones get a segment of their own. "Some size we chose": one
/// page.
pub const ARENA_MAX_OBJECT: usize = 4096;
/// Slot granularity and minimum alignment in bytes (one cache line).
pub(crate) const SLOT: usize = 64;
/// Size of the first chunk (and of every chunk after all earlier ones were freed).
pub(crate) const FIRST_CHUNK: usize = 1 << 20;
/// The largest chunk.
pub(crate) const MAX_CHUNK: usize = 1 << 30;
/// The type name in an arena chunk's header, and the label of its memfd.
pub(crate) const ARENA_NAME: &str = "shmproc arena";

/// The fingerprint in every arena chunk's header: bytes, page-aligned data.
pub(crate) fn arena_fingerprint() -> Fingerprint {
    Fingerprint::new(1, MAX_ALIGN, ARENA_NAME)
}

/// Whether `seg` is an arena chunk.
pub(crate) fn is_arena(seg: &Segment) -> bool {
    seg.layout().same_layout(&arena_fingerprint())
}

/// The slot a token names, as the sender described it (see `transfer`).
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct SlotToken {
    /// Offset of the object from the chunk's data start.
    pub(crate) offset: u64,
    /// Bytes of the object.
    pub(crate) len: u64,
    /// Element layout of the object (`Fingerprint` size, align, hash).
    pub(crate) size: u64,
    pub(crate) align: u64,
    pub(crate) hash: u64,
}

/// Checks a received slot against the chunk it names and the layout the receiver expects.
/// Returns `(offset, len)` in the chunk's data; every failure is a typed error.
pub(crate) fn check_slot(
    seg: &Segment,
    slot: &SlotToken,
    expected: &Fingerprint,
) -> Result<(usize, usize), SegmentError> {
    if !is_arena(seg) {
        return Err(SegmentError::Corrupt(
            "slot token names a segment that is not an arena",
        ));
    }
    let found = Fingerprint {
        size: slot.size,
        align: slot.align,
        hash: slot.hash,
        name: "(arena slot)".to_owned(),
    };
    expected.expect(&found)?;
    let align = (slot.align.max(SLOT as u64)).min(MAX_ALIGN);
    if slot.offset % SLOT as u64 != 0 || slot.offset % align != 0 {
        return Err(SegmentError::Corrupt("arena slot offset is misaligned"));
    }
    let end = slot
        .offset
        .checked_add(slot.len)
        .ok_or(SegmentError::Corrupt("arena slot range overflows"))?;
    if end > seg.len() as u64 {
        return Err(SegmentError::Corrupt("arena slot runs past the chunk"));
    }
    // Both fit in the chunk's length, a usize.
    Ok((slot.offset as usize, slot.len as usize))
}

/// Opens `fd` as an arena chunk and checks the slot `(offset, len, layout)` in it against
/// `expected`, as a spawned child does with a received token (the fuzz target's entry).
pub(crate) fn open_slot(
    fd: std::os::fd::OwnedFd,
    offset: u64,
    len: u64,
    layout: &Fingerprint,
    expected: &Fingerprint,
) -> Result<(Segment, usize, usize), SegmentError> {
    let seg = Segment::from_fd(fd, None)?;
    let slot = SlotToken {
        offset,
        len,
        size: layout.size,
        align: layout.align,
        hash: layout.hash,
    };
    let (off, len) = check_slot(&seg, &slot, expected)?;
    Ok((seg, off, len))
}

/// Places `len` bytes aligned to `align`: an arena slot when small enough, else a segment
/// of its own (`fp` in its header) at offset 0. Returns the segment and the offset of the
/// (zeroed, never used before) bytes in its data.
pub(crate) fn place(len: usize, align: usize, fp: &Fingerprint) -> Result<(Segment, usize), SegmentError> {
    if len <= ARENA_MAX_OBJECT && align as u64 <= MAX_ALIGN {
        alloc(len, align)
    } else {
        Ok((Segment::anonymous(fp.clone(), len)?, 0))
    }
}

/// The allocator's state, guarded by [`LOCK`].
struct State {
    /// Fork epoch the state belongs to; another one means we are a forked child.
    epoch: u32,
    /// The chunk being filled (weak: the allocator keeps no chunk alive).
    current: Option<WeakSegment>,
    /// Total size of the current chunk.
    size: usize,
    /// Data bytes of the current chunk.
    len: usize,
    /// Next free data offset in the current chunk.
    next: usize,
}

struct StateCell(UnsafeCell<State>);

// SAFETY: the state is only touched by the holder of `LOCK` (see `Guard`).
unsafe impl Sync for StateCell {}

static STATE: StateCell = StateCell(UnsafeCell::new(State {
    epoch: 0,
    current: None,
    size: 0,
    len: 0,
    next: 0,
}));

/// 0 when free, else 1 + the fork epoch of the process whose thread holds it.
// A process-local static: the loom shim's atomics have no const constructor.
#[allow(clippy::disallowed_types)]
static LOCK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Holds [`LOCK`]; releases it on drop.
struct Guard;

impl Guard {
    fn take(epoch: u32) -> Self {
        use std::sync::atomic::Ordering::{Acquire, Relaxed};
        let me = u64::from(epoch) + 1;
        let mut spins = 0u32;
        loop {
            // SYNC POINT (arena lock): this Acquire pairs with the Release in `drop`.
            match LOCK.compare_exchange_weak(0, me, Acquire, Relaxed) {
                Ok(_) => return Guard,
                // Held by a thread of the process we were forked from: it does not exist in
                // this process and will never release it. Take it over.
                Err(held) if held != 0 && held != me => {
                    if LOCK.compare_exchange(held, me, Acquire, Relaxed).is_ok() {
                        return Guard;
                    }
                }
                // Another thread of this process allocates (a few dozen ns): spin, then
                // let it run if it was preempted.
                Err(_) => {
                    spins += 1;
                    if spins % 64 == 0 {
                        std::thread::yield_now();
                    } else {
                        std::hint::spin_loop();
                    }
                }
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // SYNC POINT (arena lock): pairs with the Acquire in `take`.
        LOCK.store(0, std::sync::atomic::Ordering::Release);
    }
}

fn fork_epoch() -> u32 {
    #[cfg(not(loom))]
    crate::sync::park::prepare_fork();
    crate::sync::park::fork_epoch()
}

/// A new arena chunk of `size` bytes in total (header page included).
fn new_chunk(size: usize) -> Result<Segment, SegmentError> {
    Segment::anonymous_labelled(ARENA_NAME, arena_fingerprint(), size - MAX_ALIGN as usize)
}

/// Bump-allocates `len` bytes aligned to `align` (≤ `MAX_ALIGN`) from the current chunk,
/// starting a new chunk when it is full, gone, or inherited through `fork`.
pub(crate) fn alloc(len: usize, align: usize) -> Result<(Segment, usize), SegmentError> {
    debug_assert!(len <= ARENA_MAX_OBJECT && align as u64 <= MAX_ALIGN);
    let align = align.max(SLOT);
    let len = len.max(1).next_multiple_of(SLOT);
    let epoch = fork_epoch();
    let _guard = Guard::take(epoch);
    // SAFETY: we hold `LOCK`, the only way to reach the state.
    let st = unsafe { &mut *STATE.0.get() };
    if st.epoch != epoch {
        // Forked: the current chunk is the parent's, whose bump offset it keeps using.
        // Forget (not drop) its weak reference: a thread of the parent may have held the
        // lock mid-update at the fork, so the value may be torn; leaking it costs a few
        // bytes of heap, never a mapping (a weak reference keeps none alive).
        std::mem::forget(st.current.take());
        st.epoch = epoch;
        st.size = 0;
        st.len = 0;
        st.next = 0;
    }
    let next_size = match st.current.as_ref().and_then(WeakSegment::upgrade) {
        Some(seg) => {
            let off = st.next.next_multiple_of(align);
            if off.checked_add(len).is_some_and(|end| end <= st.len) {
                st.next = off + len;
                return Ok((seg, off));
            }
            // Full while still in use: the program keeps many objects, so double.
            (st.size * 2).clamp(FIRST_CHUNK, MAX_CHUNK)
        }
        None => FIRST_CHUNK,
    };
    let seg = new_chunk(next_size)?;
    st.current = Some(seg.downgrade());
    st.size = next_size;
    st.len = seg.len();
    // The data starts page-aligned, so offset 0 suits every alignment up to MAX_ALIGN.
    st.next = len;
    Ok((seg, 0))
}
