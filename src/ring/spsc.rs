//! `SpscRing<T>`: a single-producer single-consumer ring of `Pod` items in shared memory.
//!
//! Layout: `tail` (written by the producer), `head` (written by the consumer) and the wait
//! words each on their own 128-byte line, then the slots. Each side keeps a process-local
//! copy of the other side's index and re-reads the shared one only when its copy says the
//! ring is full (producer) or empty (consumer), so the common case touches no line the other
//! side writes.
//!
//! Everything read from shared memory is untrusted: the capacity comes from the segment's
//! validated length, never from a field; an index the other side published is accepted only
//! if it keeps `tail - head` within `0..=capacity`, otherwise the call returns
//! `Corrupted` and nothing is read out of bounds.
//!
//! Errors are the channel family's: a push returns the [`SendError`] family with the item
//! back (`Disconnected(item)` once the consumer closed), a pop the [`RecvError`] family
//! (`Disconnected` once the producer closed and the ring is drained).

use std::marker::PhantomData;
use std::time::Instant;

use bytemuck::Pod;

use super::eventcount::EventCount;
use super::pad::CachePadded;
use crate::error::{
    RecvError, RecvTimeoutError, SegmentError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
use crate::loom::{AtomicU32, AtomicU64, Ordering};
use crate::shm::Fingerprint;
use crate::Segment;

/// Shared indices that contradict each other (a buggy or hostile peer wrote them).
struct Inconsistent;

const TX_CLOSED: u32 = 1;
const RX_CLOSED: u32 = 2;

/// Shared state of one SPSC ring; `#[repr(C)]`, all-zero is an empty open ring.
#[repr(C)]
#[derive(Debug, Default)]
pub struct SpscHeader {
    tail: CachePadded<AtomicU64>,
    head: CachePadded<AtomicU64>,
    ctl: CachePadded<Control>,
}

/// Wait words and close flags.
#[repr(C)]
#[derive(Debug, Default)]
struct Control {
    not_empty: EventCount,
    not_full: EventCount,
    closed: AtomicU32,
}

/// A bounded SPSC ring of `T` in its own segment; clone the handle for the other process.
///
/// ```
/// let ring = shmproc::raw::SpscRing::<u64>::new(1024)?;
/// let mut tx = ring.producer()?;
/// let mut rx = ring.consumer()?;
/// tx.try_push(7).unwrap();
/// assert_eq!(rx.try_pop().unwrap(), 7);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct SpscRing<T: Pod> {
    seg: Segment,
    cap: u64,
    /// Under loom: the slots' stand-in (one unit a slot), shared by cloned handles.
    #[cfg(loom)]
    shadow: std::sync::Arc<crate::loom::Shadow>,
    _t: PhantomData<T>,
}

impl<T: Pod> std::fmt::Debug for SpscRing<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpscRing").field("capacity", &self.cap).finish()
    }
}

fn slots_offset<T>() -> usize {
    std::mem::size_of::<SpscHeader>().next_multiple_of(std::mem::align_of::<T>())
}

fn ring_fingerprint<T>() -> Fingerprint {
    let align = std::mem::align_of::<T>().max(std::mem::align_of::<SpscHeader>());
    Fingerprint::new(
        1,
        align as u64,
        &format!("shmproc::SpscRing<{}>", std::any::type_name::<T>()),
    )
}

impl<T: Pod> SpscRing<T> {
    /// A ring with room for `capacity` items (rounded up to a power of two, at least 2;
    /// `0` is [`SegmentError::InvalidSize`]).
    pub fn new(capacity: usize) -> Result<Self, SegmentError> {
        if capacity == 0 {
            return Err(SegmentError::InvalidSize("a ring needs at least one slot"));
        }
        if std::mem::size_of::<T>() == 0 {
            return Err(SegmentError::Unsupported("zero-sized element types"));
        }
        let cap = capacity
            .max(2)
            .checked_next_power_of_two()
            .ok_or(SegmentError::TooLarge(capacity as u128))?;
        let bytes = cap
            .checked_mul(std::mem::size_of::<T>())
            .and_then(|b| b.checked_add(slots_offset::<T>()))
            .ok_or(SegmentError::TooLarge(cap as u128))?;
        let seg = Segment::anonymous(ring_fingerprint::<T>(), bytes)?;
        // SAFETY: new zeroed segment, aligned for the header, not shared yet.
        unsafe { std::ptr::write(seg.as_ptr().cast::<SpscHeader>(), SpscHeader::default()) };
        Self::wrap(seg)
    }

    fn wrap(seg: Segment) -> Result<Self, SegmentError> {
        let size = std::mem::size_of::<T>();
        let room = seg
            .len()
            .checked_sub(slots_offset::<T>())
            .ok_or(SegmentError::Corrupt("ring segment too short"))?;
        let cap = (room / size) as u64;
        if cap < 2 || !cap.is_power_of_two() || room % size != 0 {
            return Err(SegmentError::Corrupt("ring capacity is not a power of two"));
        }
        Ok(Self {
            seg,
            cap,
            #[cfg(loom)]
            shadow: std::sync::Arc::new(crate::loom::Shadow::new(cap as usize)),
            _t: PhantomData,
        })
    }

    /// Capacity in items.
    pub fn capacity(&self) -> usize {
        self.cap as usize
    }

    fn header(&self) -> &SpscHeader {
        // SAFETY: the segment starts with a `SpscHeader` (aligned, atomics only: any bytes
        // are a valid value).
        unsafe { &*self.seg.as_ptr().cast::<SpscHeader>() }
    }

    fn slots(&self) -> *mut T {
        // SAFETY: `slots_offset + cap * size_of::<T>() == seg.len()` (checked in `wrap`).
        unsafe { self.seg.as_ptr().add(slots_offset::<T>()).cast() }
    }

    /// The producing side (one per ring, in one process at a time). Shared indices that
    /// contradict each other are [`SegmentError::Corrupt`].
    pub fn producer(&self) -> Result<Producer<'_, T>, SegmentError> {
        let h = self.header();
        let tail = h.tail.load(Ordering::Relaxed);
        let head = h.head.load(Ordering::Acquire);
        if tail.wrapping_sub(head) > self.cap {
            return Err(SegmentError::Corrupt("ring indices are inconsistent"));
        }
        Ok(Producer {
            ring: self,
            tail,
            cached_head: head,
        })
    }

    /// The consuming side (one per ring, in one process at a time). Shared indices that
    /// contradict each other are [`SegmentError::Corrupt`].
    pub fn consumer(&self) -> Result<Consumer<'_, T>, SegmentError> {
        let h = self.header();
        let head = h.head.load(Ordering::Relaxed);
        let tail = h.tail.load(Ordering::Acquire);
        if tail.wrapping_sub(head) > self.cap {
            return Err(SegmentError::Corrupt("ring indices are inconsistent"));
        }
        Ok(Consumer {
            ring: self,
            head,
            cached_tail: tail,
        })
    }

    /// Items in the ring now (a snapshot; 0 if the indices are inconsistent).
    pub fn len(&self) -> usize {
        let h = self.header();
        let n = h
            .tail
            .load(Ordering::Acquire)
            .wrapping_sub(h.head.load(Ordering::Acquire));
        if n > self.cap {
            0
        } else {
            n as usize
        }
    }

    /// Whether the ring is empty now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The producing end of an [`SpscRing`], with its cached copy of the consumer's index.
pub struct Producer<'a, T: Pod> {
    ring: &'a SpscRing<T>,
    tail: u64,
    cached_head: u64,
}

impl<T: Pod> Producer<'_, T> {
    /// Re-reads the consumer's index; `Err` if it is inconsistent with ours.
    fn refresh(&mut self) -> Result<(), Inconsistent> {
        let head = self.ring.header().head.load(Ordering::Acquire);
        if self.tail.wrapping_sub(head) > self.ring.cap {
            return Err(Inconsistent);
        }
        self.cached_head = head;
        Ok(())
    }

    /// Room left, refreshing the cached index only when it says the ring is full.
    #[inline]
    fn room(&mut self) -> Result<u64, Inconsistent> {
        let mut used = self.tail.wrapping_sub(self.cached_head);
        if used == self.ring.cap {
            self.refresh()?;
            used = self.tail.wrapping_sub(self.cached_head);
        }
        Ok(self.ring.cap - used)
    }

    /// Writes `value` if there is room and publishes it (no wake-up: see [`notify`](Self::notify)).
    /// `Full(value)` if there is no room, `Disconnected(value)` once the consumer closed.
    #[inline]
    pub fn try_push(&mut self, value: T) -> Result<(), TrySendError<T>> {
        if self.ring.header().ctl.closed.load(Ordering::Relaxed) & RX_CLOSED != 0 {
            return Err(TrySendError::Disconnected(value));
        }
        match self.room() {
            Ok(0) => return Err(TrySendError::Full(value)),
            Ok(_) => {}
            Err(Inconsistent) => return Err(TrySendError::Corrupted(value)),
        }
        let i = (self.tail & (self.ring.cap - 1)) as usize;
        #[cfg(loom)]
        self.ring.shadow.write(i, 1);
        // SAFETY: `i < cap`; the slot is free (the consumer is `cap` behind at most, checked
        // through `room`); only this producer writes free slots. A plain (not volatile) copy:
        // the release store below orders it, and volatile copies of large `T` compile to
        // byte-by-byte moves.
        unsafe { self.ring.slots().add(i).write(value) };
        self.tail = self.tail.wrapping_add(1);
        // SYNC POINT (slot publish): release pairs with the consumer's acquire of `tail`.
        self.ring.header().tail.store(self.tail, Ordering::Release);
        Ok(())
    }

    /// Writes as many of `values` as fit with one publish; returns how many.
    pub fn push_slice(&mut self, values: &[T]) -> Result<usize, SendError<()>> {
        let room = self.room().map_err(|Inconsistent| SendError::Corrupted(()))?;
        let n = (values.len() as u64).min(room) as usize;
        for (k, v) in values[..n].iter().enumerate() {
            let i = (self.tail.wrapping_add(k as u64) & (self.ring.cap - 1)) as usize;
            #[cfg(loom)]
            self.ring.shadow.write(i, 1);
            // SAFETY: as in `try_push`, for each of the `n <= room` free slots.
            unsafe { self.ring.slots().add(i).write(*v) };
        }
        self.tail = self.tail.wrapping_add(n as u64);
        // SYNC POINT (slot publish).
        self.ring.header().tail.store(self.tail, Ordering::Release);
        Ok(n)
    }

    /// Wakes the consumer if it sleeps (call after publishing, or use [`push`](Self::push)).
    #[inline]
    pub fn notify(&self) {
        self.ring.header().ctl.not_empty.notify();
    }

    /// Writes `value`, spinning briefly and then sleeping while the ring is full, until
    /// `deadline` (`None`: as long as it takes; `Timeout(value)` when it passes); wakes a
    /// sleeping consumer.
    pub fn push(&mut self, mut value: T, deadline: Option<Instant>) -> Result<(), SendTimeoutError<T>> {
        loop {
            match self.try_push(value) {
                Ok(()) => {
                    self.notify();
                    return Ok(());
                }
                Err(TrySendError::Full(v)) => value = v,
                Err(e) => return Err(e.into_timeout()),
            }
            let h = self.ring.header();
            let (tail, cap) = (self.tail, self.ring.cap);
            // Room (or indices gone inconsistent: `try_push` reports that), or the consumer
            // closed. The same acquire load of `head` as `room` makes.
            let ready = || {
                let room = tail.wrapping_sub(h.head.load(Ordering::Acquire)) != cap;
                (room || h.ctl.closed.load(Ordering::SeqCst) & RX_CLOSED != 0).then_some(())
            };
            if h.ctl.not_full.spin_wait_until(deadline, ready).is_none() {
                return match self.try_push(value) {
                    Ok(()) => {
                        self.notify();
                        Ok(())
                    }
                    Err(e) => Err(e.into_timeout()),
                };
            }
        }
    }

    /// Marks the producing side closed: the consumer drains, then gets `Closed`.
    pub fn close(&self) {
        let ctl = &self.ring.header().ctl;
        ctl.closed.fetch_or(TX_CLOSED, Ordering::SeqCst);
        ctl.not_empty.notify();
    }
}

/// The consuming end of an [`SpscRing`], with its cached copy of the producer's index.
pub struct Consumer<'a, T: Pod> {
    ring: &'a SpscRing<T>,
    head: u64,
    cached_tail: u64,
}

impl<T: Pod> Consumer<'_, T> {
    #[inline]
    fn available(&mut self) -> Result<u64, Inconsistent> {
        let mut n = self.cached_tail.wrapping_sub(self.head);
        if n == 0 {
            let tail = self.ring.header().tail.load(Ordering::Acquire);
            n = tail.wrapping_sub(self.head);
            if n > self.ring.cap {
                return Err(Inconsistent);
            }
            self.cached_tail = tail;
        }
        Ok(n)
    }

    /// Takes the oldest item if there is one (`Empty` otherwise; `Disconnected` once the
    /// producer closed and the ring is drained).
    #[inline]
    pub fn try_pop(&mut self) -> Result<T, TryRecvError> {
        let corrupted = |Inconsistent| TryRecvError::Corrupted;
        if self.available().map_err(corrupted)? == 0 {
            return Err(
                if self.ring.header().ctl.closed.load(Ordering::Acquire) & TX_CLOSED != 0
                    && self.available().map_err(corrupted)? == 0
                {
                    TryRecvError::Disconnected
                } else {
                    TryRecvError::Empty
                },
            );
        }
        let i = (self.head & (self.ring.cap - 1)) as usize;
        #[cfg(loom)]
        self.ring.shadow.read(i, 1);
        // SAFETY: `i < cap`; the slot was published (head < tail, checked against cap);
        // `T: Pod` accepts whatever bytes are there. One plain copy into a local (ordered by
        // the acquire of `tail`); see `try_push` on volatile.
        let v = unsafe { self.ring.slots().add(i).read() };
        self.head = self.head.wrapping_add(1);
        // SYNC POINT (slot release): release pairs with the producer's acquire of `head`.
        self.ring.header().head.store(self.head, Ordering::Release);
        Ok(v)
    }

    /// Takes up to `out.len()` items with one index update; returns how many.
    pub fn pop_slice(&mut self, out: &mut [T]) -> Result<usize, RecvError> {
        let n =
            (self.available().map_err(|Inconsistent| RecvError::Corrupted)?).min(out.len() as u64) as usize;
        for (k, o) in out[..n].iter_mut().enumerate() {
            let i = (self.head.wrapping_add(k as u64) & (self.ring.cap - 1)) as usize;
            #[cfg(loom)]
            self.ring.shadow.read(i, 1);
            // SAFETY: as in `try_pop`, for each of the `n` published slots.
            *o = unsafe { self.ring.slots().add(i).read() };
        }
        self.head = self.head.wrapping_add(n as u64);
        // SYNC POINT (slot release).
        self.ring.header().head.store(self.head, Ordering::Release);
        if n > 0 {
            self.ring.header().ctl.not_full.notify();
        }
        Ok(n)
    }

    /// Takes the oldest item, spinning briefly and then sleeping while the ring is empty,
    /// until `deadline` (`None`: as long as it takes; `Timeout` when it passes); wakes a
    /// producer waiting for room.
    pub fn pop(&mut self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        loop {
            match self.try_pop() {
                Ok(v) => {
                    self.ring.header().ctl.not_full.notify();
                    return Ok(v);
                }
                Err(TryRecvError::Empty) => {}
                Err(e) => return Err(e.into_timeout()),
            }
            let h = self.ring.header();
            let head = self.head;
            // An item (or indices gone inconsistent: `try_pop` reports that), or the producer
            // closed (`try_pop` then drains, and reports `Disconnected` once drained). The
            // same acquire load of `tail` as `available` makes.
            let ready = || {
                let item = h.tail.load(Ordering::Acquire) != head;
                (item || h.ctl.closed.load(Ordering::SeqCst) & TX_CLOSED != 0).then_some(())
            };
            if h.ctl.not_empty.spin_wait_until(deadline, ready).is_none() {
                return self.try_pop().map_err(TryRecvError::into_timeout);
            }
        }
    }

    /// Marks the consuming side closed: the producer's pushes fail with `Closed`.
    pub fn close(&self) {
        let ctl = &self.ring.header().ctl;
        ctl.closed.fetch_or(RX_CLOSED, Ordering::SeqCst);
        ctl.not_full.notify();
    }
}

impl<T: Pod> serde::Serialize for SpscRing<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.seg.serialize(s)
    }
}

impl<'de, T: Pod> serde::Deserialize<'de> for SpscRing<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let seg = crate::shm::transfer::deserialize_segment(d, Some(&ring_fingerprint::<T>()))?;
        Self::wrap(seg).map_err(|e| crate::shm::transfer::fail::<D::Error>(e.to_string()))
    }
}
