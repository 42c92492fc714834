//! `SlotRing`: a bounded multi-producer multi-consumer ring of fixed-size slots in shared
//! memory (Vyukov's design: a sequence number per slot), robust against a peer killed in
//! the middle of a push or a pop; [`MpmcRing<T>`] is its typed face for `Pod` items.
//!
//! # Layout
//!
//! A [`SlotRingHeader`] (384 bytes: `tail`, `head`, each on its own 128-byte line, then the
//! control line: the `not_empty` / `not_full` event counts, the `shutdown` word, the
//! capacity and the slot size), then `capacity` slots of `16 + slot_size` bytes: a 64-bit
//! state word, a 64-bit owner record (`park::owner_info` of the last claimer, so a reused
//! thread id is not taken for the claimer) and the payload. Nothing else is stored per slot:
//! the ring does not know how many payload bytes an item used.
//!
//! # The state word
//!
//! `(seq << 32) | tag`. For position `p` (the monotonic 64-bit `tail` / `head` counters),
//! `seq` is `2p` while the slot waits for the item of position `p`, and `2p + 1` once that
//! item is published; a reader releasing it sets `2(p + capacity)`, the next lap's "free".
//! (Counting in twos keeps "published `p`" and "free for `p + 1`" apart even when the
//! capacity is 1.) Only the low 32 bits are kept; comparisons use wrapping differences as
//! `i32`, so the capacity is limited to 2^28 slots. The `tag` is 0 (stable), `BUSY | tid`
//! while a producer writes the slot (even `seq`) or a consumer reads it (odd `seq`), or
//! `SKIP` (odd `seq` only) for a slot whose producer died mid-write or met a shutdown.
//!
//! - push at `pos = tail`: CAS the slot from `(2pos, 0)` to `(2pos, BUSY | me)` (the claim
//!   names its owner atomically, so there is never a claimed slot nobody could blame), help
//!   `tail` from `pos` to `pos + 1`, write the payload, CAS the state to `(2pos + 1, 0)`.
//!   A slot claimed by another producer or already published: help `tail` and retry. The
//!   previous lap's item still there (published, being read, or being written): full.
//! - pop at `pos = head`: CAS `(2pos + 1, 0)` to `(2pos + 1, BUSY | me)`, help `head`, copy
//!   the payload out, CAS the state to `(2(pos + capacity), 0)`. A `SKIP` slot is released
//!   the same way without returning anything, and the pop goes on with the next position.
//!   `(2pos, 0)` is empty; `(2pos, BUSY | x)` is a producer still writing: wait.
//!
//! Every state read from shared memory is checked against the few values a correct peer can
//! leave at that position; anything else is `Corrupted` once a second look
//! shows it is not just a stale view (below). Slot indices are `pos % capacity` computed
//! locally (a mask for powers of two), and the capacity and slot size are validated against
//! the segment's length when a handle is made, so no value read from shared memory can make
//! a call index out of bounds or loop without bound.
//!
//! # Memory ordering
//!
//! Claims are acquire-release compare-exchanges, publishes and releases release (`SeqCst`,
//! see below) ones, so a payload is written before a reader can claim it and read before a
//! producer can claim it again. Helping an index on is a release CAS and indices are read
//! with acquire loads: a thread that sees `tail = pos` also sees at least the slot states
//! that justified each step up to `pos`. A plain load may still return an older value than
//! the latest; a state that looks impossible for `pos` is therefore re-checked against the
//! index's latest value (an RMW) before it is called garbage. The 32-bit `seq` can wrap: a
//! thread stalled across 2^31 positions between reading an index and claiming a slot claims
//! a later position of that slot, which every transition computes consistently; its item
//! then lands later than its place in line, never lost or doubled.
//!
//! # Shutdown
//!
//! A push checks the shutdown word after its claim (a `SeqCst` CAS then a `SeqCst` load); a
//! pop that finds nothing reports `Closed` only after an RMW of the shutdown word, a fence
//! and a second look at the slot. So a push racing `shutdown()` either completes and is
//! drained, or fails with `Closed`: never an item stranded after a pop said `Closed`. A push
//! that meets the shutdown after its claim gives the slot up: freed and `head` moved on if
//! it was next in line, otherwise marked `SKIP` for the draining pops.
//!
//! # Death of a peer
//!
//! A waiter that keeps seeing the same `BUSY | tid` state for a whole liveness slice
//! (`park::LIVENESS_SLICE`, 20 ms) checks that thread (by its `/proc` start time, as the
//! robust locks do) and, if it is gone:
//! - a **producer** that died holding a slot never returned from its push: the slot becomes
//!   `SKIP` and that item never existed;
//! - a **consumer** that died holding a slot is released as if it had finished: that item
//!   is lost (its pop never returned it). Delivery is therefore *at most once* for the one
//!   item a reader held when it died, and *exactly once* for every other item.
//!
//! Nothing hangs on a dead peer: every wait sleeps in slices of at most 20 ms and then looks
//! again. Blocking calls detect a death after about one slice. The try forms
//! (`deadline = Some(now)`) check a claimer only once the same busy state has been seen by
//! calls on this handle a slice apart, so a loop of try calls also gets past a dead peer.
//! A hostile peer can stall the others (a state naming a live thread, like a lock it never
//! releases) but cannot make a call read or write out of bounds.
//!
//! Limit, as for the robust locks: the owner record is written just after the claim, so a
//! claimer stalled for a whole slice between the two, whose thread id was last used on this
//! slot by a thread now dead, can be taken for dead. Its slot is then taken from it and its
//! call returns `Corrupted` (a pop never returns bytes from a slot it lost).
//!
//! # Wake-ups
//!
//! Waiters follow the [`EventCount`] protocol, re-checking the very state word they wait on.
//! A notifier normally needs a `SeqCst` fence before it reads the waiter count; here the
//! publish (and the release) is already a `SeqCst` compare-exchange, a locked instruction on
//! x86, which orders the following load of the waiter count as the fence would: either the
//! waiter's re-check sees the new state, or the notifier sees the waiter and wakes it. Other
//! targets add the fence (see `notify_after_sc_rmw`). The loom suite checks this with the
//! crate's loom shim, which models a `SeqCst` write as the write plus a `SeqCst` fence, and
//! shows that a plain release store there loses wake-ups.
//!
//! # Lengths
//!
//! [`SlotRing::len`] is `tail - head`: exact when no push or pop is in progress. A slot a
//! dead producer claimed, or one a push abandoned behind queued items because it met a
//! shutdown, counts until a pop skips it.

use std::marker::PhantomData;
use std::ops::ControlFlow;
use std::time::Instant;

use bytemuck::Pod;

use super::eventcount::EventCount;
use super::pad::CachePadded;
use crate::error::{RecvTimeoutError, SegmentError, SendTimeoutError, TryRecvError, TrySendError};
use crate::loom::{fence, AtomicU32, AtomicU64, Ordering};
use crate::shm::Fingerprint;
use crate::sync::park;
use crate::sync::wait::{self, Poll, Wait};
use crate::Segment;

/// Tag bit: a thread (its tid in the low 30 bits) is writing or reading the slot.
const BUSY: u32 = 1 << 31;
/// Tag: the producer of this slot died mid-write or met a shutdown; there is no item.
const SKIP: u32 = 1 << 30;
/// Thread id bits of a `BUSY` tag.
const TID: u32 = SKIP - 1;
/// Largest capacity: `2 * capacity + 1` must stay far inside `i32` for the comparisons.
pub const MAX_CAPACITY: usize = 1 << 28;
/// Largest slot size in bytes.
pub const MAX_SLOT_SIZE: usize = 1 << 30;

#[inline(always)]
const fn state(seq: u32, tag: u32) -> u64 {
    ((seq as u64) << 32) | tag as u64
}

#[inline(always)]
const fn seq_of(s: u64) -> u32 {
    (s >> 32) as u32
}

#[inline(always)]
const fn tag_of(s: u64) -> u32 {
    s as u32
}

/// `seq` of a slot waiting for the item of position `pos`.
#[inline(always)]
const fn free_seq(pos: u64) -> u32 {
    (pos as u32).wrapping_mul(2)
}

#[inline(always)]
const fn is_busy(s: u64) -> bool {
    tag_of(s) & BUSY != 0
}

/// Whether the tag is one a correct peer writes (with the parity its `seq` needs).
#[inline]
fn valid(s: u64) -> bool {
    let t = tag_of(s);
    t == 0 || (t == SKIP && seq_of(s) & 1 == 1) || (t & BUSY != 0 && t & SKIP == 0 && t & TID != 0)
}

/// Shared state of a [`SlotRing`]; `#[repr(C)]`, 384 bytes (see the module docs).
#[repr(C)]
#[derive(Debug, Default)]
pub struct SlotRingHeader {
    tail: CachePadded<AtomicU64>,
    head: CachePadded<AtomicU64>,
    ctl: CachePadded<Control>,
}

/// Wait words, the shutdown flag and the geometry (checked against the segment length by
/// every handle, never trusted on its own).
#[repr(C)]
#[derive(Debug, Default)]
struct Control {
    not_empty: EventCount,
    not_full: EventCount,
    shutdown: AtomicU32,
    _pad: AtomicU32,
    capacity: AtomicU64,
    slot_size: AtomicU64,
}

/// The head of one slot; its payload follows.
#[repr(C)]
struct SlotHead {
    state: AtomicU64,
    /// `park::owner_info` of the last claimer (written just after its claim).
    info: AtomicU64,
    /// Under loom: a stand-in for the payload, so loom reports unordered payload accesses.
    #[cfg(loom)]
    data: crate::loom::UnsafeCell<()>,
}

const HEADER: usize = std::mem::size_of::<SlotRingHeader>();
const SLOT_HEAD: usize = std::mem::size_of::<SlotHead>();
/// `mask` of a ring whose capacity is not a power of two.
const NO_MASK: u64 = u64::MAX;

/// Bytes from one slot to the next.
fn stride(slot_size: usize) -> Option<usize> {
    SLOT_HEAD
        .checked_add(slot_size)?
        .checked_next_multiple_of(std::mem::align_of::<SlotHead>())
}

/// Data length of a ring segment.
fn data_len(capacity: usize, slot_size: usize) -> Option<usize> {
    HEADER.checked_add(capacity.checked_mul(stride(slot_size)?)?)
}

fn slot_fingerprint() -> Fingerprint {
    Fingerprint::new(
        1,
        std::mem::align_of::<SlotRingHeader>() as u64,
        "shmproc::SlotRing",
    )
}

/// A bounded MPMC ring of `capacity` slots of `slot_size` bytes in its own segment. Clone
/// the handle (or send it to a child) for other processes. See the module docs.
///
/// ```
/// use shmproc::raw::SlotRing;
/// use shmproc::TryRecvError;
/// let ring = SlotRing::new(3, 5)?; // slot size rounded up to 8
/// assert_eq!((ring.capacity(), ring.slot_size()), (3, 8));
/// ring.push(b"hello", None)?;
/// let mut out = [0u8; 5];
/// ring.pop(&mut out, None)?;
/// assert_eq!(&out, b"hello");
/// assert_eq!(ring.try_pop(&mut out), Err(TryRecvError::Empty));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SlotRing {
    seg: Segment,
    /// `seg.as_ptr()`, cached.
    base: *mut u8,
    cap: u64,
    /// `cap - 1` when `cap` is a power of two, else [`NO_MASK`].
    mask: u64,
    slot_size: usize,
    stride: usize,
    /// The busy state a try call last saw and when (`monotonic_ns`), so a loop of try
    /// calls can tell a claimer that stopped moving (not shared memory: per handle). Unused
    /// under loom, where every claimer is alive.
    #[cfg_attr(loom, allow(dead_code))]
    suspect: AtomicU64,
    #[cfg_attr(loom, allow(dead_code))]
    suspect_since: AtomicU64,
}

// SAFETY: `base` points into the mapping `seg` owns (valid while `self` lives, whichever
// thread uses it); all access to it goes through atomics or the slot protocol.
unsafe impl Send for SlotRing {}
// SAFETY: as above; `&self` methods are safe to call from several threads at once.
unsafe impl Sync for SlotRing {}

impl std::fmt::Debug for SlotRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotRing")
            .field("capacity", &self.cap)
            .field("slot_size", &self.slot_size)
            .finish()
    }
}

/// Why a pop or a push must wait: the slot it needs and the state it found there.
struct Blocked {
    idx: usize,
    seen: u64,
    /// The position whose claimer holds the slot (if `seen` is busy).
    owner_pos: u64,
    /// A producer is writing the item this pop waits for: not drained, and a shutdown does
    /// not end the wait (always `false` for pushes).
    producing: bool,
}

enum Step {
    Done,
    Blocked(Blocked),
}

/// Wakes `ec`'s sleepers after a successful `SeqCst` compare-exchange made their condition
/// true. On x86 the locked instruction is a full barrier: the waiter count is read after
/// the new state is visible, so the fence of [`EventCount::notify`] is not needed (see the
/// module docs); elsewhere it is.
#[inline(always)]
fn notify_after_sc_rmw(ec: &EventCount) {
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    if ec.has_waiters() {
        ec.notify();
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "x86")))]
    ec.notify();
}

/// Moves a ring index from `pos` to `pos + 1` if nobody did yet (the claim of `pos` is
/// done). SYNC POINT (index help): release, so a thread that reads the new index (acquire)
/// also sees the slot state that justified it; failure only means someone else helped.
#[inline(always)]
fn advance(index: &AtomicU64, pos: u64) {
    let _ = index.compare_exchange(pos, pos.wrapping_add(1), Ordering::Release, Ordering::Relaxed);
}

/// The latest value of a ring index (an RMW reads the last value in modification order,
/// where a load may return an older one).
#[cold]
fn latest(index: &AtomicU64) -> u64 {
    index.fetch_add(0, Ordering::AcqRel)
}

/// How long the current blocking call has seen one busy state.
#[derive(Default)]
struct Watch {
    seen: u64,
    since: Option<Instant>,
}

impl Watch {
    /// Whether `seen` has been in place for a whole liveness slice; starts the clock when it
    /// is new.
    #[cfg(not(loom))]
    fn overdue(&mut self, seen: u64) -> bool {
        let now = Instant::now();
        match self.since {
            Some(t) if self.seen == seen => now.duration_since(t) >= park::LIVENESS_SLICE,
            _ => {
                self.seen = seen;
                self.since = Some(now);
                false
            }
        }
    }

    /// Under loom every claimer is alive (`park::alive`): never check.
    #[cfg(loom)]
    fn overdue(&mut self, _seen: u64) -> bool {
        let _ = (self.seen, self.since);
        false
    }
}

/// A blocked push or pop as a [`Wait`] of the crate's one wait loop. `attempt` is one
/// whole attempt with its side's shutdown rules: it ends the call (`Break`) or names the
/// slot state to wait for (`Continue`). A claimer that held that slot for a liveness slice
/// and died is recovered (`check_claimer`) before any sleep. The registration is the event
/// count's; the re-check after it is whether the slot left the state seen (or the ring was
/// shut down, for a wait a shutdown ends); sleeps last one liveness slice at most.
struct SlotWait<'a, R, F> {
    ring: &'a SlotRing,
    ec: &'a EventCount,
    deadline: Option<Instant>,
    attempt: F,
    timeout: fn() -> R,
    watch: Watch,
    blocked: Option<Blocked>,
    /// `blocked` was just found: the next `poll` registers without attempting again.
    fresh: bool,
}

impl<'a, R, F: FnMut() -> ControlFlow<R, Blocked>> SlotWait<'a, R, F> {
    fn new(
        ring: &'a SlotRing,
        ec: &'a EventCount,
        deadline: Option<Instant>,
        attempt: F,
        timeout: fn() -> R,
    ) -> Self {
        Self {
            ring,
            ec,
            deadline,
            attempt,
            timeout,
            watch: Watch::default(),
            blocked: None,
            fresh: false,
        }
    }

    /// Settles once without the wait loop (a try form that must wait spins not at all),
    /// then waits.
    #[inline]
    fn run(mut self) -> R {
        if let Some(r) = self.settle() {
            return r;
        }
        self.fresh = true;
        let deadline = self.deadline;
        wait::block(&mut self, deadline)
    }

    /// Attempts until the call ends (`Some`) or must wait (`None`, `blocked` set); a slot
    /// recovered from a dead claimer is attempted again at once.
    fn settle(&mut self) -> Option<R> {
        loop {
            let b = match (self.attempt)() {
                ControlFlow::Break(r) => return Some(r),
                ControlFlow::Continue(b) => b,
            };
            let expired = self.deadline.is_some_and(|d| Instant::now() >= d);
            if self.ring.check_claimer(&b, &mut self.watch, expired) {
                continue;
            }
            if expired {
                return Some((self.timeout)());
            }
            self.blocked = Some(b);
            return None;
        }
    }

    /// Whether the slot left the state the last attempt saw, or a shutdown ends the wait
    /// (not for a pop waiting for an item a producer is writing: that one comes, or its
    /// producer's death is found, shutdown or not).
    fn moved(&self) -> bool {
        let Some(b) = &self.blocked else {
            return true;
        };
        self.ring.slot(b.idx).state.load(Ordering::Acquire) != b.seen
            || (!b.producing && self.ring.header().ctl.shutdown.load(Ordering::Acquire) != 0)
    }
}

impl<R, F: FnMut() -> ControlFlow<R, Blocked>> Wait for SlotWait<'_, R, F> {
    type Output = R;

    const SPIN: bool = true;
    const LIVENESS: bool = true;

    fn busy(&self) -> bool {
        !self.moved()
    }

    fn try_complete(&mut self) -> Option<R> {
        // The slot moved while we spun: attempt again (in `poll`).
        self.fresh = false;
        None
    }

    fn poll(&mut self) -> Poll<'_, R> {
        if !std::mem::take(&mut self.fresh) {
            if let Some(r) = self.settle() {
                return Poll::Ready(r);
            }
            // A new state to wait for, typically a producer's claim of the slot this pop
            // waits for (or a reader's of the item a push waits to replace): its next move
            // follows within nanoseconds. Spin for it afresh, as before the first
            // registration (a spin that went on from the first one would look at the slot
            // only every few hundred ns by then).
            if park::spin_while(|| self.busy()) {
                return Poll::Retry;
            }
        }
        let key = self.ec.prepare_wait();
        if self.moved() {
            self.ec.cancel_wait();
            return Poll::Retry;
        }
        Poll::Sleep(self.ec.sleep(key))
    }

    fn after_sleep(&mut self) {
        self.ec.cancel_wait();
    }

    fn timed_out(&mut self) -> R {
        self.settle().unwrap_or_else(|| (self.timeout)())
    }
}

/// Copies `n` bytes between non-overlapping regions; one word (a `u64` item) is a plain
/// 8-byte move instead of a call to `memcpy`.
///
/// # Safety
/// As for `std::ptr::copy_nonoverlapping(src, dst, n)`.
#[inline(always)]
unsafe fn copy_small(src: *const u8, dst: *mut u8, n: usize) {
    if n == 8 {
        // SAFETY: the caller guarantees 8 readable bytes at `src` and 8 writable at `dst`;
        // unaligned accesses need no alignment.
        unsafe {
            dst.cast::<u64>()
                .write_unaligned(src.cast::<u64>().read_unaligned())
        };
    } else {
        // SAFETY: the caller's guarantee.
        unsafe { std::ptr::copy_nonoverlapping(src, dst, n) };
    }
}

/// Another handle to the same ring: the segment is shared (reference-counted); the
/// per-handle record of a stalled claimer starts afresh.
impl Clone for SlotRing {
    fn clone(&self) -> Self {
        Self {
            seg: self.seg.clone(),
            base: self.base,
            cap: self.cap,
            mask: self.mask,
            slot_size: self.slot_size,
            stride: self.stride,
            suspect: AtomicU64::new(0),
            suspect_since: AtomicU64::new(0),
        }
    }
}

impl SlotRing {
    /// A ring of `capacity` slots (any number from 1 to [`MAX_CAPACITY`]) of `slot_size`
    /// bytes each (at least 1, rounded up to a multiple of 8).
    pub fn new(capacity: usize, slot_size: usize) -> Result<Self, SegmentError> {
        Self::create(capacity, slot_size, slot_fingerprint())
    }

    fn create(capacity: usize, slot_size: usize, fp: Fingerprint) -> Result<Self, SegmentError> {
        if capacity == 0 {
            return Err(SegmentError::InvalidSize("a ring needs at least one slot"));
        }
        if slot_size == 0 {
            return Err(SegmentError::InvalidSize("zero-sized slots"));
        }
        if capacity > MAX_CAPACITY {
            return Err(SegmentError::TooLarge(capacity as u128));
        }
        let slot_size = slot_size
            .checked_next_multiple_of(8)
            .filter(|&s| s <= MAX_SLOT_SIZE)
            .ok_or(SegmentError::TooLarge(slot_size as u128))?;
        let len = data_len(capacity, slot_size).ok_or(SegmentError::TooLarge(capacity as u128))?;
        let seg = Segment::anonymous(fp, len)?;
        let base = seg.as_ptr();
        let header = SlotRingHeader {
            ctl: CachePadded(Control {
                capacity: AtomicU64::new(capacity as u64),
                slot_size: AtomicU64::new(slot_size as u64),
                ..Control::default()
            }),
            ..SlotRingHeader::default()
        };
        let stride = stride(slot_size).expect("checked by data_len");
        // SAFETY: a new zeroed segment of `len` bytes, aligned for the header (the
        // fingerprint's alignment), not shared yet; slot `i` starts at `HEADER + i * stride`,
        // inside the segment (`i < capacity`) and 8-aligned (`HEADER` and `stride` are).
        unsafe {
            std::ptr::write(base.cast::<SlotRingHeader>(), header);
            for i in 0..capacity {
                let slot = SlotHead {
                    state: AtomicU64::new(state(free_seq(i as u64), 0)),
                    info: AtomicU64::new(0),
                    #[cfg(loom)]
                    data: crate::loom::UnsafeCell::new(()),
                };
                std::ptr::write(base.add(HEADER + i * stride).cast::<SlotHead>(), slot);
            }
        }
        Self::wrap(seg, None)
    }

    /// Builds a handle over a ring segment, validating its geometry: the capacity and slot
    /// size stored in the header are read once and must match the segment's length.
    fn wrap(seg: Segment, want_slot_size: Option<usize>) -> Result<Self, SegmentError> {
        if seg.len() < HEADER {
            return Err(SegmentError::Corrupt("slot ring segment too short"));
        }
        let base = seg.as_ptr();
        if base as usize % std::mem::align_of::<SlotRingHeader>() != 0 {
            return Err(SegmentError::Corrupt("slot ring segment misaligned"));
        }
        // SAFETY: the segment holds at least `HEADER` bytes, aligned for the header, which
        // is made of atomics only (any bytes are a valid value).
        let ctl = unsafe { &(*base.cast::<SlotRingHeader>()).ctl };
        let cap = ctl.capacity.load(Ordering::Relaxed);
        let slot_size = ctl.slot_size.load(Ordering::Relaxed);
        let (Ok(cap_us), Ok(slot_us)) = (usize::try_from(cap), usize::try_from(slot_size)) else {
            return Err(SegmentError::Corrupt("slot ring geometry out of range"));
        };
        if cap_us == 0 || cap_us > MAX_CAPACITY || slot_us < 8 || slot_us % 8 != 0 || slot_us > MAX_SLOT_SIZE
        {
            return Err(SegmentError::Corrupt("slot ring geometry out of range"));
        }
        if data_len(cap_us, slot_us) != Some(seg.len()) {
            return Err(SegmentError::Corrupt(
                "slot ring geometry does not match the segment length",
            ));
        }
        if want_slot_size.is_some_and(|w| w != slot_us) {
            return Err(SegmentError::Corrupt("slot size does not match the item type"));
        }
        Ok(Self {
            seg,
            base,
            cap,
            mask: if cap.is_power_of_two() { cap - 1 } else { NO_MASK },
            slot_size: slot_us,
            stride: stride(slot_us).expect("checked by data_len"),
            suspect: AtomicU64::new(0),
            suspect_since: AtomicU64::new(0),
        })
    }

    /// Validates the shared geometry again, as a child receiving this ring does (tests and
    /// fuzz targets check that a scribbled geometry is refused).
    #[doc(hidden)]
    pub fn reopen(&self) -> Result<Self, SegmentError> {
        let h = Self::wrap(self.seg.clone(), Some(self.slot_size))?;
        if h.cap != self.cap {
            return Err(SegmentError::Corrupt("slot ring geometry changed"));
        }
        Ok(h)
    }

    /// The underlying segment (tests write garbage through it).
    #[doc(hidden)]
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    /// Capacity in items.
    pub fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// Size of a slot in bytes (a multiple of 8).
    pub fn slot_size(&self) -> usize {
        self.slot_size
    }

    #[inline(always)]
    fn header(&self) -> &SlotRingHeader {
        // SAFETY: the segment starts with a `SlotRingHeader` (checked in `wrap`: long enough,
        // aligned; atomics only).
        unsafe { &*self.base.cast::<SlotRingHeader>() }
    }

    /// Slot index of a position, computed locally.
    #[inline(always)]
    fn index(&self, pos: u64) -> usize {
        (if self.mask != NO_MASK {
            pos & self.mask
        } else {
            pos % self.cap
        }) as usize
    }

    #[inline(always)]
    fn slot(&self, idx: usize) -> &SlotHead {
        debug_assert!((idx as u64) < self.cap);
        // SAFETY: `idx < cap` (from `index`), and `HEADER + cap * stride == seg.len()`
        // (checked in `wrap`), so the slot head is inside the mapping; it is 8-aligned
        // (`HEADER` and `stride` are multiples of its alignment) and made of atomics.
        unsafe { &*self.base.add(HEADER + idx * self.stride).cast::<SlotHead>() }
    }

    #[inline(always)]
    fn payload(&self, idx: usize) -> *mut u8 {
        // SAFETY: as in `slot`: the `slot_size` payload bytes follow the slot head inside
        // the mapping.
        unsafe { self.base.add(HEADER + idx * self.stride + SLOT_HEAD) }
    }

    /// Items in the ring now: exact when no push or pop is in progress (see the module docs).
    pub fn len(&self) -> usize {
        let h = self.header();
        let head = h.head.load(Ordering::Acquire);
        let tail = h.tail.load(Ordering::Acquire);
        let n = tail.wrapping_sub(head);
        if n > u64::MAX / 2 {
            0
        } else {
            n.min(self.cap) as usize
        }
    }

    /// Whether the ring is empty now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Shuts the ring down: pushes (blocked or later) fail with `Closed`; pops drain what is
    /// there, then fail with `Closed`. Blocked callers wake.
    pub fn shutdown(&self) {
        let ctl = &self.header().ctl;
        ctl.shutdown.store(1, Ordering::SeqCst);
        ctl.not_empty.notify();
        ctl.not_full.notify();
    }

    /// Whether the ring was shut down.
    pub fn is_shutdown(&self) -> bool {
        self.header().ctl.shutdown.load(Ordering::Acquire) != 0
    }

    // --- push -----------------------------------------------------------------------------

    /// Copies `item` (at most [`slot_size`](Self::slot_size) bytes; the rest of the slot keeps
    /// whatever it held) into the ring. Waits for room until `deadline` (`None`: as long as
    /// it takes; [`try_push`](Self::try_push) does not wait). `Timeout` if the deadline
    /// passes with no room, `Closed` after a shutdown, `TooLarge` for an item larger than a
    /// slot.
    #[inline]
    pub fn push(&self, item: &[u8], deadline: Option<Instant>) -> Result<(), SendTimeoutError<()>> {
        if item.len() > self.slot_size {
            return Err(SendTimeoutError::TooLarge(()));
        }
        let h = self.header();
        if h.ctl.shutdown.load(Ordering::Relaxed) != 0 {
            return Err(SendTimeoutError::Closed(()));
        }
        let (me, info) = park::me();
        let pos = h.tail.load(Ordering::Acquire);
        let idx = self.index(pos);
        let claimed = state(free_seq(pos), BUSY | me);
        // SYNC POINT (slot claim): acquire pairs with the release of the reader that freed
        // the slot, so its copy-out happens before our write; SeqCst for the shutdown check.
        if self
            .slot(idx)
            .state
            .compare_exchange(
                state(free_seq(pos), 0),
                claimed,
                Ordering::SeqCst,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            return self.fill(pos, idx, claimed, item, info);
        }
        self.push_slow(item, deadline, me, info)
    }

    /// Try form of [`push`](Self::push): `Full` if there is no room now.
    #[inline]
    pub fn try_push(&self, item: &[u8]) -> Result<(), TrySendError<()>> {
        self.push(item, Some(Instant::now()))
            .map_err(SendTimeoutError::into_try)
    }

    /// Completes a push whose claim of `idx` for `pos` (state `claimed`) succeeded.
    #[inline(always)]
    fn fill(
        &self,
        pos: u64,
        idx: usize,
        claimed: u64,
        item: &[u8],
        info: u64,
    ) -> Result<(), SendTimeoutError<()>> {
        let h = self.header();
        let slot = self.slot(idx);
        slot.info.store(info, Ordering::Relaxed);
        // Failure is fine: someone helped (or our `pos` was stale; the claim is still ours).
        advance(&h.tail, pos);
        // SYNC POINT (push vs shutdown): SeqCst after the SeqCst claim. A pop that declares
        // the ring drained re-reads the slot after a SeqCst RMW of `shutdown` and a fence:
        // either it sees our claim (and waits for the item) or we see the shutdown here.
        if h.ctl.shutdown.load(Ordering::SeqCst) != 0 {
            return self.abandon(pos, slot, claimed);
        }
        #[cfg(loom)]
        slot.data.with_mut(|_| ());
        // SAFETY: the slot is ours (claimed), `item.len() <= slot_size`, and the payload
        // lies inside the mapping (see `payload`); `item` is local memory, so no overlap.
        unsafe { copy_small(item.as_ptr(), self.payload(idx), item.len()) };
        // SYNC POINT (publish): release pairs with the consumer's acquire claim; SeqCst so
        // that the waiter count read below comes after it (see `notify_after_sc_rmw`).
        match slot.state.compare_exchange(
            claimed,
            state(seq_of(claimed).wrapping_add(1), 0),
            Ordering::SeqCst,
            Ordering::Relaxed,
        ) {
            Ok(_) => {
                notify_after_sc_rmw(&h.ctl.not_empty);
                Ok(())
            }
            // Someone took the slot from us: only garbage, or a liveness check fooled by a
            // thread id reused within one slice, does that.
            Err(_) => Err(SendTimeoutError::Corrupted(())),
        }
    }

    /// Gives up a claimed slot (the push met a shutdown). If every earlier position is
    /// consumed (`head == pos`: it cannot pass `pos` while we hold the slot), the slot is
    /// freed for the next lap and `head` moved past it, as a pop would, so `len()` stays
    /// exact; otherwise it becomes `SKIP` for the pops that drain up to it.
    #[cold]
    fn abandon(&self, pos: u64, slot: &SlotHead, claimed: u64) -> Result<(), SendTimeoutError<()>> {
        let h = self.header();
        let at_head = h.head.load(Ordering::Acquire) == pos;
        let next = if at_head {
            state(seq_of(claimed).wrapping_add(2 * self.cap as u32), 0)
        } else {
            state(seq_of(claimed).wrapping_add(1), SKIP)
        };
        if slot
            .state
            .compare_exchange(claimed, next, Ordering::SeqCst, Ordering::Relaxed)
            .is_err()
        {
            return Err(SendTimeoutError::Corrupted(()));
        }
        if at_head {
            advance(&h.head, pos);
            h.ctl.not_full.notify();
        }
        h.ctl.not_empty.notify();
        Err(SendTimeoutError::Closed(()))
    }

    /// Finds the slot for the next push and claims it (then fills it), or says why not.
    fn push_attempt(&self, item: &[u8], me: u32, info: u64) -> Result<Step, SendTimeoutError<()>> {
        let h = self.header();
        let c2 = 2 * self.cap as i32;
        let mut pos = h.tail.load(Ordering::Acquire);
        loop {
            let idx = self.index(pos);
            let slot = self.slot(idx);
            let s = slot.state.load(Ordering::Acquire);
            let d = seq_of(s).wrapping_sub(free_seq(pos)) as i32;
            if valid(s) {
                if d == 0 && tag_of(s) == 0 {
                    let claimed = state(seq_of(s), BUSY | me);
                    // SYNC POINT (slot claim): as in `push`.
                    if slot
                        .state
                        .compare_exchange(s, claimed, Ordering::SeqCst, Ordering::Relaxed)
                        .is_ok()
                    {
                        return self.fill(pos, idx, claimed, item, info).map(|()| Step::Done);
                    }
                    continue;
                }
                if (d == 0 && is_busy(s)) || d == 1 || d == c2 || d == c2 + 1 {
                    // Position `pos` is taken (claimed, published, read or freed again):
                    // `tail` is behind; help it on.
                    advance(&h.tail, pos);
                    pos = h.tail.load(Ordering::Acquire);
                    continue;
                }
                if d == 1 - c2 || (d == -c2 && is_busy(s)) {
                    // The previous lap's item is still there (or still being written).
                    return Ok(Step::Blocked(Blocked {
                        idx,
                        seen: s,
                        owner_pos: pos.wrapping_sub(self.cap),
                        producing: false,
                    }));
                }
            }
            match self.recheck(&h.tail, pos, slot, s) {
                Some(now) => pos = now,
                None => return Err(SendTimeoutError::Corrupted(())),
            }
        }
    }

    #[cold]
    fn push_slow(
        &self,
        item: &[u8],
        deadline: Option<Instant>,
        me: u32,
        info: u64,
    ) -> Result<(), SendTimeoutError<()>> {
        let ctl = &self.header().ctl;
        let attempt = || match self.push_attempt(item, me, info) {
            Ok(Step::Done) => ControlFlow::Break(Ok(())),
            Err(e) => ControlFlow::Break(Err(e)),
            Ok(Step::Blocked(_)) if ctl.shutdown.load(Ordering::Acquire) != 0 => {
                ControlFlow::Break(Err(SendTimeoutError::Closed(())))
            }
            Ok(Step::Blocked(b)) => ControlFlow::Continue(b),
        };
        SlotWait::new(self, &ctl.not_full, deadline, attempt, || {
            Err(SendTimeoutError::Timeout(()))
        })
        .run()
    }

    // --- pop ------------------------------------------------------------------------------

    /// Takes the oldest item, copying `min(out.len(), slot_size)` bytes of its slot into
    /// `out` (so `out` must be at least as long as the item that was pushed; bytes of the
    /// slot past the pushed item are left-overs). Waits until `deadline` as
    /// [`push`](Self::push) does: `Timeout` if it passes with nothing to take, `Closed` once
    /// the ring is shut down and drained.
    #[inline]
    pub fn pop(&self, out: &mut [u8], deadline: Option<Instant>) -> Result<(), RecvTimeoutError> {
        let (me, info) = park::me();
        let h = self.header();
        let pos = h.head.load(Ordering::Acquire);
        let idx = self.index(pos);
        let ready = free_seq(pos) | 1;
        let claimed = state(ready, BUSY | me);
        // SYNC POINT (slot claim): acquire pairs with the producer's publish; release so that
        // a thread seeing our claim also sees the `head` we read (see `recheck`).
        if self
            .slot(idx)
            .state
            .compare_exchange(state(ready, 0), claimed, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            return self.take(pos, idx, claimed, out, info);
        }
        self.pop_slow(out, deadline, me, info)
    }

    /// Try form of [`pop`](Self::pop): `Empty` if there is no item now.
    #[inline]
    pub fn try_pop(&self, out: &mut [u8]) -> Result<(), TryRecvError> {
        self.pop(out, Some(Instant::now()))
            .map_err(RecvTimeoutError::into_try)
    }

    /// Completes a pop whose claim of `idx` for `pos` (state `claimed`) succeeded.
    #[inline(always)]
    fn take(
        &self,
        pos: u64,
        idx: usize,
        claimed: u64,
        out: &mut [u8],
        info: u64,
    ) -> Result<(), RecvTimeoutError> {
        let h = self.header();
        let slot = self.slot(idx);
        slot.info.store(info, Ordering::Relaxed);
        advance(&h.head, pos);
        let n = out.len().min(self.slot_size);
        #[cfg(loom)]
        slot.data.with(|_| ());
        // SAFETY: the slot is ours (claimed) and published; `n <= slot_size` bytes of its
        // payload lie inside the mapping, and `out` is local memory with room for `n`.
        unsafe { copy_small(self.payload(idx), out.as_mut_ptr(), n) };
        // SYNC POINT (release): release pairs with the next producer's acquire claim; SeqCst
        // for the waiter count read below (see `notify_after_sc_rmw`).
        let free = state(seq_of(claimed).wrapping_add(2 * self.cap as u32 - 1), 0);
        match slot
            .state
            .compare_exchange(claimed, free, Ordering::SeqCst, Ordering::Relaxed)
        {
            Ok(_) => {
                notify_after_sc_rmw(&h.ctl.not_full);
                Ok(())
            }
            // The slot was taken from us while we copied: the bytes may be torn.
            Err(_) => Err(RecvTimeoutError::Corrupted),
        }
    }

    /// Finds the next item and claims it (then takes it), skipping `SKIP` slots, or says
    /// why not.
    fn pop_attempt(&self, out: &mut [u8], me: u32, info: u64) -> Result<Step, RecvTimeoutError> {
        let h = self.header();
        let c2 = 2 * self.cap as i32;
        let mut pos = h.head.load(Ordering::Acquire);
        loop {
            let idx = self.index(pos);
            let slot = self.slot(idx);
            let s = slot.state.load(Ordering::Acquire);
            let ready = free_seq(pos) | 1;
            let d = seq_of(s).wrapping_sub(ready) as i32;
            if valid(s) {
                if d == 0 && tag_of(s) == 0 {
                    let claimed = state(ready, BUSY | me);
                    // SYNC POINT (slot claim): as in `pop`.
                    if slot
                        .state
                        .compare_exchange(s, claimed, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                    {
                        return self.take(pos, idx, claimed, out, info).map(|()| Step::Done);
                    }
                    continue;
                }
                if d == 0 && tag_of(s) == SKIP {
                    // No item at this position: free the slot for the next lap and go on.
                    let free = state(ready.wrapping_add(2 * self.cap as u32 - 1), 0);
                    if slot
                        .state
                        .compare_exchange(s, free, Ordering::SeqCst, Ordering::Relaxed)
                        .is_ok()
                    {
                        advance(&h.head, pos);
                        h.ctl.not_full.notify();
                        pos = h.head.load(Ordering::Acquire);
                    }
                    continue;
                }
                if (d == 0 && is_busy(s)) || d == c2 - 1 || d == c2 {
                    // Position `pos` was taken by another reader (or is done with): `head`
                    // is behind; help it on.
                    advance(&h.head, pos);
                    pos = h.head.load(Ordering::Acquire);
                    continue;
                }
                if d == -1 {
                    // Nothing published yet: empty, or a producer is writing it.
                    return Ok(Step::Blocked(Blocked {
                        idx,
                        seen: s,
                        owner_pos: pos,
                        producing: is_busy(s),
                    }));
                }
                if d == -c2 && is_busy(s) {
                    // The previous lap's reader still holds the slot: nothing here yet.
                    return Ok(Step::Blocked(Blocked {
                        idx,
                        seen: s,
                        owner_pos: pos.wrapping_sub(self.cap),
                        producing: false,
                    }));
                }
            }
            match self.recheck(&h.head, pos, slot, s) {
                Some(now) => pos = now,
                None => return Err(RecvTimeoutError::Corrupted),
            }
        }
    }

    #[cold]
    fn pop_slow(
        &self,
        out: &mut [u8],
        deadline: Option<Instant>,
        me: u32,
        info: u64,
    ) -> Result<(), RecvTimeoutError> {
        let ctl = &self.header().ctl;
        let mut attempt = || -> Result<Step, RecvTimeoutError> {
            let b = match self.pop_attempt(out, me, info)? {
                Step::Done => return Ok(Step::Done),
                Step::Blocked(b) => b,
            };
            if b.producing || ctl.shutdown.load(Ordering::Relaxed) == 0 {
                return Ok(Step::Blocked(b));
            }
            // Shut down, and nothing in sight: make sure no push slipped in before the
            // shutdown. SYNC POINT (drained): the SeqCst RMW and fence order our next look
            // at the slot after the shutdown in S; a push that claimed after that look sees
            // the shutdown (see `fill`).
            ctl.shutdown.fetch_or(0, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            match self.pop_attempt(out, me, info)? {
                Step::Blocked(b) if !b.producing => Err(RecvTimeoutError::Closed),
                step => Ok(step),
            }
        };
        let attempt = move || match attempt() {
            Ok(Step::Done) => ControlFlow::Break(Ok(())),
            Ok(Step::Blocked(b)) => ControlFlow::Continue(b),
            Err(e) => ControlFlow::Break(Err(e)),
        };
        SlotWait::new(self, &ctl.not_empty, deadline, attempt, || {
            Err(RecvTimeoutError::Timeout)
        })
        .run()
    }

    /// After `s`, a state position `pos` cannot have, was read from `slot`: tells garbage
    /// from a stale view (our `pos` or `s` may lag behind the other threads, which the
    /// memory model allows for plain loads). Reads the index's latest value with an RMW,
    /// the slot again, then the index again: only an index still at `pos` around the same
    /// state is garbage (`None`); otherwise the position to go on from.
    #[cold]
    fn recheck(&self, index: &AtomicU64, pos: u64, slot: &SlotHead, s: u64) -> Option<u64> {
        let now = latest(index);
        if now != pos || slot.state.load(Ordering::Acquire) != s {
            return Some(now);
        }
        let now = latest(index);
        (now != pos).then_some(now)
    }

    // --- waiting and recovery -------------------------------------------------------------

    /// If `b.seen` names a claimer that has held the slot for a liveness slice (seen by this
    /// call, or by try calls on this handle) and is dead, frees the slot. Returns whether it
    /// did (or the slot moved on meanwhile): the caller then tries again at once.
    #[cfg_attr(loom, allow(unused_variables))]
    fn check_claimer(&self, b: &Blocked, watch: &mut Watch, expired: bool) -> bool {
        if !is_busy(b.seen) {
            return false;
        }
        let overdue = watch.overdue(b.seen);
        #[cfg(not(loom))]
        let overdue = overdue || (expired && self.suspect_overdue(b.seen));
        overdue && self.recover(b)
    }

    /// The per-handle record behind the try forms: whether `seen` was already seen busy a
    /// liveness slice ago; records it if it is new.
    #[cfg(not(loom))]
    fn suspect_overdue(&self, seen: u64) -> bool {
        use Ordering::Relaxed;
        let now = crate::sys::clock::monotonic_ns();
        if self.suspect.load(Relaxed) != seen {
            self.suspect.store(seen, Relaxed);
            self.suspect_since.store(now, Relaxed);
            return false;
        }
        now.saturating_sub(self.suspect_since.load(Relaxed)) >= park::LIVENESS_SLICE.as_nanos() as u64
    }

    /// Frees a slot whose claimer (named in `b.seen`) is dead: a producer's slot becomes
    /// `SKIP` (its item never existed), a reader's is released (its item is lost). Returns
    /// whether the slot no longer holds `b.seen`.
    #[cold]
    fn recover(&self, b: &Blocked) -> bool {
        let slot = self.slot(b.idx);
        if slot.state.load(Ordering::Acquire) != b.seen {
            return true;
        }
        let tid = tag_of(b.seen) & TID;
        if park::alive(tid, slot.info.load(Ordering::Relaxed)) {
            return false;
        }
        let h = self.header();
        let seq = seq_of(b.seen);
        if seq & 1 == 0 {
            let skip = state(seq.wrapping_add(1), SKIP);
            if slot
                .state
                .compare_exchange(b.seen, skip, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
            {
                // It may have died before moving `tail` past its position.
                advance(&h.tail, b.owner_pos);
                h.ctl.not_empty.notify();
            }
        } else {
            let free = state(seq.wrapping_add(2 * self.cap as u32 - 1), 0);
            if slot
                .state
                .compare_exchange(b.seen, free, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
            {
                advance(&h.head, b.owner_pos);
                h.ctl.not_full.notify();
            }
        }
        true
    }
}

impl serde::Serialize for SlotRing {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.seg.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for SlotRing {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let seg = crate::shm::transfer::deserialize_segment(d, Some(&slot_fingerprint()))?;
        Self::wrap(seg, None).map_err(|e| crate::shm::transfer::fail::<D::Error>(e.to_string()))
    }
}

// --- MpmcRing<T> ---------------------------------------------------------------------------

/// A bounded MPMC ring of `T` in shared memory: a [`SlotRing`] with one `T` per slot. Any
/// number of processes and threads may push and pop; see the module docs for what happens
/// when one of them dies mid-call.
///
/// ```
/// use shmproc::raw::MpmcRing;
/// use shmproc::{TryRecvError, TrySendError};
/// use shmproc::Process;
///
/// let ring = MpmcRing::<u64>::new(3)?;
/// let producer = ring.clone();
/// let mut child = Process::fork(move || {
///     for i in 0..100 {
///         producer.push(i, None).unwrap(); // blocks while the ring is full
///     }
/// })
/// .start()?;
/// for i in 0..100 {
///     assert_eq!(ring.pop(None)?, i);
/// }
/// child.join()?;
/// assert_eq!(ring.try_pop(), Err(TryRecvError::Empty));
/// ring.shutdown();
/// assert_eq!(ring.try_push(7), Err(TrySendError::Closed(7)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct MpmcRing<T: Pod> {
    ring: SlotRing,
    _t: PhantomData<T>,
}

impl<T: Pod> std::fmt::Debug for MpmcRing<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpmcRing")
            .field("capacity", &self.ring.cap)
            .finish()
    }
}

fn mpmc_fingerprint<T>() -> Fingerprint {
    Fingerprint::new(
        1,
        std::mem::align_of::<SlotRingHeader>() as u64,
        &format!("shmproc::MpmcRing<{}>", std::any::type_name::<T>()),
    )
}

fn item_slot_size<T>() -> usize {
    std::mem::size_of::<T>().next_multiple_of(8)
}

impl<T: Pod> MpmcRing<T> {
    /// A ring with room for exactly `capacity` items (1 to [`MAX_CAPACITY`]).
    pub fn new(capacity: usize) -> Result<Self, SegmentError> {
        if std::mem::size_of::<T>() == 0 {
            return Err(SegmentError::Unsupported("zero-sized element types"));
        }
        let ring = SlotRing::create(capacity, std::mem::size_of::<T>(), mpmc_fingerprint::<T>())?;
        Ok(Self {
            ring,
            _t: PhantomData,
        })
    }

    /// Validates the shared geometry again (see [`SlotRing::reopen`]).
    #[doc(hidden)]
    pub fn reopen(&self) -> Result<Self, SegmentError> {
        Ok(Self {
            ring: self.ring.reopen()?,
            _t: PhantomData,
        })
    }

    /// The untyped ring underneath.
    pub fn slots(&self) -> &SlotRing {
        &self.ring
    }

    /// Capacity in items.
    pub fn capacity(&self) -> usize {
        self.ring.capacity()
    }

    /// Items in the ring now (exact when no push or pop is in progress).
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether the ring is empty now.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Pushes `value`, waiting for room until `deadline` (`None`: as long as it takes).
    /// A failed push hands `value` back in its error (`Timeout(value)` when the deadline
    /// passed).
    #[inline]
    pub fn push(&self, value: T, deadline: Option<Instant>) -> Result<(), SendTimeoutError<T>> {
        self.ring
            .push(bytemuck::bytes_of(&value), deadline)
            .map_err(|e| e.map(|()| value))
    }

    /// Pushes `value` if there is room now (`Full(value)` otherwise).
    #[inline]
    pub fn try_push(&self, value: T) -> Result<(), TrySendError<T>> {
        self.push(value, Some(Instant::now()))
            .map_err(SendTimeoutError::into_try)
    }

    /// Takes the oldest item, waiting until `deadline` (`None`: as long as it takes;
    /// `Timeout` when it passes).
    #[inline]
    pub fn pop(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        let mut v = T::zeroed();
        self.ring.pop(bytemuck::bytes_of_mut(&mut v), deadline)?;
        Ok(v)
    }

    /// Takes the oldest item if there is one now (`Empty` otherwise).
    #[inline]
    pub fn try_pop(&self) -> Result<T, TryRecvError> {
        self.pop(Some(Instant::now())).map_err(RecvTimeoutError::into_try)
    }

    /// See [`SlotRing::shutdown`].
    pub fn shutdown(&self) {
        self.ring.shutdown();
    }

    /// Whether the ring was shut down.
    pub fn is_shutdown(&self) -> bool {
        self.ring.is_shutdown()
    }
}

impl<T: Pod> serde::Serialize for MpmcRing<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.ring.seg.serialize(s)
    }
}

impl<'de, T: Pod> serde::Deserialize<'de> for MpmcRing<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let seg = crate::shm::transfer::deserialize_segment(d, Some(&mpmc_fingerprint::<T>()))?;
        let ring = SlotRing::wrap(seg, Some(item_slot_size::<T>()))
            .map_err(|e| crate::shm::transfer::fail::<D::Error>(e.to_string()))?;
        Ok(Self {
            ring,
            _t: PhantomData,
        })
    }
}
