//! `Queue`, `SimpleQueue` and `JoinableQueue`: Python's multiprocessing queues on a
//! shared-memory message channel (see [`ring::Channel`](crate::ring::Channel)).
//!
//! Items are encoded by a [`Codec`]: [`Postcard`] (the default; any `Serialize +
//! DeserializeOwned` type, compact varint encoding), [`Bytes`] (raw `Vec<u8>`) or
//! [`PodCodec`] (any `bytemuck::Pod` type, copied as its bytes — no codec work at all).
//! Pick the Pod path by naming it: `Queue::<u64, PodCodec>::new(0)`.
//!
//! Storage: with a variable-size codec the items travel through a byte
//! [`Channel`](crate::ring::Channel) (any size; larger than the buffer streams through).
//! With `PodCodec` they live in a lock-free MPMC ring of fixed-size slots
//! ([`SlotRing`](crate::ring::SlotRing)): one slot per item, `maxsize` slots (or as many
//! as fit the byte budget when there is no limit), no lock, no framing.
//!
//! A process killed in the middle of a `put` or `get` (even by `SIGKILL`) never blocks
//! the others or corrupts the queue. An item whose `put` never returned is either delivered
//! whole or not at all; the one item a reader was taking when it died is lost (delivery is
//! *at most once* for it, and *exactly once* for every other item). In Python, a consumer
//! killed while it holds the queue's reader lock leaves every other consumer blocked.
//!
//! Unlike Python's, `put` writes the item into shared memory before it returns (there is no
//! feeder thread, so nothing is lost when the process exits right after a `put`, and `join`
//! cannot hang on an undrained pipe), `len` is exact, and a message may be larger than the
//! buffer (it streams through).

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::codec::{Codec, Postcard};
use super::endpoint::{self, ThreadScratch};
use crate::error::{
    JoinTimeoutError, RecvError, RecvTimeoutError, SegmentError, SendError, SendTimeoutError, TaskDoneError,
    TryRecvError, TrySendError,
};
use crate::loom::{AtomicBool, AtomicU64, Ordering};
use crate::ring::{Channel, EventCount, SlotRing};
use crate::sync::deadline_after;
use crate::Shared;

/// Default buffer size of a queue: 1 MiB.
pub const DEFAULT_CAPACITY: usize = 1 << 20;

/// A multi-producer multi-consumer FIFO queue between processes and threads; mirrors
/// Python's `multiprocessing.Queue(maxsize)`.
///
/// Every blocking call has a timeout and a non-blocking form: `put` / `put_timeout` /
/// `try_put` (Python's `put_nowait`), `get` / `get_timeout` / `try_get` (`get_nowait`),
/// with the channel family's errors: a timeout is `Err(Timeout)`, a try form that would
/// wait is `Err(Full(item))` / `Err(Empty)`, and a failed put hands the item back. Each
/// process holds its own handle (`clone`, or pass the queue in a child's arguments).
///
/// ```
/// use shmproc::{Process, Queue};
///
/// fn produce(q: Queue<String>) {
///     for i in 0..3 {
///         q.put(format!("item {i}")).expect("put");
///     }
/// }
///
/// shmproc::init();
/// let q = Queue::<String>::new(0)?; // 0: no item limit, as in Python
/// let mut child = Process::new(produce, q.clone()).start()?;
/// for i in 0..3 {
///     assert_eq!(q.get()?, format!("item {i}"));
/// }
/// child.join()?;
/// assert!(q.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Queue<T, C: Codec<T> = Postcard> {
    chan: Backend,
    maxsize: u64,
    closed: AtomicBool,
    _t: PhantomData<fn(T) -> (T, C)>,
}

impl<T, C: Codec<T>> std::fmt::Debug for Queue<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("maxsize", &self.maxsize)
            .field("len", &self.len())
            .finish()
    }
}

/// Another handle to the same queue (not closed, even if this one is).
impl<T, C: Codec<T>> Clone for Queue<T, C> {
    fn clone(&self) -> Self {
        Self {
            chan: self.chan.clone(),
            maxsize: self.maxsize,
            closed: AtomicBool::new(false),
            _t: PhantomData,
        }
    }
}

impl<T, C: Codec<T>> Queue<T, C> {
    /// A queue holding at most `maxsize` items (`0`: no limit, as in Python) in a 1 MiB
    /// buffer.
    pub fn new(maxsize: usize) -> Result<Self, SegmentError> {
        Self::with_capacity(maxsize, DEFAULT_CAPACITY)
    }

    /// A queue with an item limit (`0`: none) and a buffer of `bytes` bytes (rounded up to
    /// a power of two). Messages larger than a quarter of the buffer are streamed in parts.
    /// A buffer of `0` bytes is [`SegmentError::InvalidSize`].
    pub fn with_capacity(maxsize: usize, bytes: usize) -> Result<Self, SegmentError> {
        if bytes == 0 {
            return Err(SegmentError::InvalidSize(
                "a queue's buffer needs at least one byte",
            ));
        }
        Ok(Self {
            chan: Backend::new::<T, C>(maxsize, bytes)?,
            maxsize: maxsize as u64,
            closed: AtomicBool::new(false),
            _t: PhantomData,
        })
    }

    fn limit(&self) -> Option<u64> {
        (self.maxsize > 0).then_some(self.maxsize)
    }

    /// One put with `deadline` (`None`: as long as it takes), the item handed back on failure.
    #[inline]
    fn put_until(&self, item: T, deadline: Option<Instant>) -> Result<(), SendTimeoutError<T>> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(SendTimeoutError::Closed(item));
        }
        let limit = self.limit();
        endpoint::send_item::<T, C>(&item, &ThreadScratch, |bytes| {
            self.chan.send(bytes, limit, deadline)
        })
        .map_err(|e| e.map(|()| item))
    }

    /// Puts `item`, waiting for room as long as needed (Python's `put(item)`).
    pub fn put(&self, item: T) -> Result<(), SendError<T>> {
        self.put_until(item, None).map_err(endpoint::blocking_send)
    }

    /// Puts `item`, waiting at most `timeout` for room (`Timeout(item)` after that).
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.put_until(item, deadline_after(timeout))
    }

    /// Puts `item` only if there is room now (Python's `put_nowait`; `Full(item)` otherwise).
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, item: T) -> Result<(), TrySendError<T>> {
        self.put_until(item, Some(Instant::now()))
            .map_err(SendTimeoutError::into_try)
    }

    /// One get with `deadline` (`None`: as long as it takes).
    #[inline]
    fn get_until(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        if self.closed.load(Ordering::Relaxed) {
            // Python's `get` on a closed queue raises at once; so does every receiving form.
            return Err(RecvTimeoutError::Closed);
        }
        if let Backend::Slots(ring) = &self.chan {
            // The Pod fast path: the item's bytes come straight out of a slot.
            if let Some(r) = C::fill_fixed(|bytes| ring.pop(bytes, deadline)) {
                return r;
            }
        }
        endpoint::recv_item::<T, C>(&ThreadScratch, |buf| {
            self.chan.recv_into(buf, C::FIXED_SIZE, deadline)
        })
    }

    /// Takes the oldest item, waiting as long as needed (Python's `get()`).
    ///
    /// `Closed` at once on a handle that was [`close`](Self::close)d, and on any handle
    /// once the queue was [`shutdown`](Self::shutdown) and drained.
    pub fn get(&self) -> Result<T, RecvError> {
        self.get_until(None).map_err(endpoint::blocking_recv)
    }

    /// Takes the oldest item, waiting at most `timeout` (`Timeout` after that; `Closed` at
    /// once on a closed handle).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.get_until(deadline_after(timeout))
    }

    /// Takes the oldest item only if one is there now (Python's `get_nowait`; `Empty`
    /// otherwise, `Closed` on a closed handle).
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<T, TryRecvError> {
        self.get_until(Some(Instant::now()))
            .map_err(RecvTimeoutError::into_try)
    }

    /// Number of items in the queue (exact, unlike Python's approximate `qsize`).
    #[doc(alias = "qsize")]
    pub fn len(&self) -> usize {
        self.chan.len() as usize
    }

    /// Python's name for [`len`](Self::len).
    pub fn qsize(&self) -> usize {
        self.len()
    }

    /// Whether the queue is empty now.
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> bool {
        self.chan.is_empty()
    }

    /// Python's name for [`is_empty`](Self::is_empty).
    pub fn empty(&self) -> bool {
        self.is_empty()
    }

    /// Whether the item limit is reached now (never, without a limit, for a byte queue;
    /// a `PodCodec` queue is full when every slot is taken).
    #[doc(alias = "full")]
    pub fn is_full(&self) -> bool {
        match &self.chan {
            Backend::Bytes(chan) => self.maxsize > 0 && chan.len() >= self.maxsize,
            Backend::Slots(ring) => ring.len() >= ring.capacity(),
        }
    }

    /// Python's name for [`is_full`](Self::is_full).
    pub fn full(&self) -> bool {
        self.is_full()
    }

    /// The most items the queue holds: the item limit, or for a `PodCodec` queue without
    /// one the number of slots that fit its buffer; `None` when only the buffer's bytes
    /// limit a byte queue.
    pub fn capacity(&self) -> Option<usize> {
        match &self.chan {
            Backend::Bytes(_) => self.limit().map(|n| n as usize),
            Backend::Slots(ring) => Some(ring.capacity()),
        }
    }

    /// This handle is done (Python's `close()`): from now on its `put`s and `get`s, in
    /// every form, fail at once with `Closed`. Other handles of the same queue, in this
    /// process or another, are unaffected, and so is a clone made after the close. A `get`
    /// already blocked in another thread on this handle is not woken (as in Python); use
    /// [`shutdown`](Self::shutdown) to wake everyone.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    /// Shuts the whole queue down (Python 3.13's `shutdown()`): blocked and later `put`s
    /// fail with `Closed`, `get`s drain what is left and then fail with `Closed`.
    pub fn shutdown(&self) {
        self.chan.shutdown();
    }

    /// The byte channel behind this queue (`None` for the slot ring of a fixed-size codec),
    /// for tests that inspect its shared state.
    #[doc(hidden)]
    pub fn byte_channel(&self) -> Option<&Channel> {
        match &self.chan {
            Backend::Bytes(c) => Some(c),
            Backend::Slots(_) => None,
        }
    }
}

/// What crosses to a child: the backend and the item limit.
#[derive(Serialize, Deserialize)]
struct QueueToken {
    chan: Backend,
    maxsize: u64,
}

/// Where a queue keeps its items: a byte channel (any codec; messages of any size stream
/// through), or for fixed-size codecs (`PodCodec`) a ring of slots of that size, whose
/// capacity is the item limit (or as many slots as fit the byte budget when unlimited).
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Backend {
    Bytes(Channel),
    Slots(SlotRing),
}

impl Backend {
    fn new<T, C: Codec<T>>(maxsize: usize, bytes: usize) -> Result<Self, SegmentError> {
        Ok(match C::FIXED_SIZE {
            None => Self::Bytes(Channel::new(bytes)?),
            Some(size) => {
                let slot = size.max(1).next_multiple_of(8) + 16;
                let cap = if maxsize > 0 {
                    maxsize
                } else {
                    (bytes / slot).max(2)
                };
                Self::Slots(SlotRing::new(cap, size.max(1))?)
            }
        })
    }

    /// Sends one encoded item (`limit`: the item limit of a byte channel; a slot ring's is
    /// its capacity).
    #[inline]
    fn send(
        &self,
        bytes: &[u8],
        limit: Option<u64>,
        deadline: Option<Instant>,
    ) -> Result<(), SendTimeoutError<()>> {
        match self {
            Self::Bytes(c) => c.send(bytes, limit, deadline),
            Self::Slots(r) => r.push(bytes, deadline),
        }
    }

    /// Receives one item into `out` (cleared first); a slot ring copies `fixed` bytes.
    #[inline]
    fn recv_into(
        &self,
        out: &mut Vec<u8>,
        fixed: Option<usize>,
        deadline: Option<Instant>,
    ) -> Result<(), RecvTimeoutError> {
        match self {
            Self::Bytes(c) => c.recv_into(out, deadline),
            Self::Slots(r) => {
                out.clear();
                out.resize(fixed.unwrap_or(r.slot_size()).min(r.slot_size()), 0);
                r.pop(out, deadline)
            }
        }
    }

    fn len(&self) -> u64 {
        match self {
            Self::Bytes(c) => c.len(),
            Self::Slots(r) => r.len() as u64,
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shutdown(&self) {
        match self {
            Self::Bytes(c) => c.shutdown(),
            Self::Slots(r) => r.shutdown(),
        }
    }

    /// Whether this backend is the one codec `C` needs (a handle from another process could
    /// claim anything).
    fn suits<T, C: Codec<T>>(&self) -> bool {
        match (self, C::FIXED_SIZE) {
            (Self::Bytes(_), None) => true,
            (Self::Slots(r), Some(size)) => r.slot_size() >= size,
            _ => false,
        }
    }
}

impl<T, C: Codec<T>> Serialize for Queue<T, C> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (&self.chan, self.maxsize).serialize(s)
    }
}

impl<'de, T, C: Codec<T>> Deserialize<'de> for Queue<T, C> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let t = QueueToken::deserialize(d)?;
        if !t.chan.suits::<T, C>() {
            return Err(crate::shm::transfer::fail(
                "the queue handle's storage does not match its codec".to_owned(),
            ));
        }
        Ok(Self {
            chan: t.chan,
            maxsize: t.maxsize,
            closed: AtomicBool::new(false),
            _t: PhantomData,
        })
    }
}

/// A queue with only `put`, `get`, `is_empty` and `close`; mirrors Python's
/// `multiprocessing.SimpleQueue`. No item limit.
///
/// ```
/// let q = shmproc::SimpleQueue::<(u8, String)>::new()?;
/// q.put((1, "one".into()))?;
/// assert_eq!(q.get()?, (1, "one".to_owned()));
/// assert!(q.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct SimpleQueue<T, C: Codec<T> = Postcard> {
    q: Queue<T, C>,
}

/// Another handle to the same queue (not closed, even if this one is).
impl<T, C: Codec<T>> Clone for SimpleQueue<T, C> {
    fn clone(&self) -> Self {
        Self { q: self.q.clone() }
    }
}

impl<T, C: Codec<T>> SimpleQueue<T, C> {
    /// A new queue with a 1 MiB buffer.
    pub fn new() -> Result<Self, SegmentError> {
        Ok(Self { q: Queue::new(0)? })
    }

    /// Puts an item (waits while the buffer is full).
    pub fn put(&self, item: T) -> Result<(), SendError<T>> {
        self.q.put(item)
    }

    /// Takes the oldest item (waits while empty).
    pub fn get(&self) -> Result<T, RecvError> {
        self.q.get()
    }

    /// Whether the queue is empty now.
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    /// Python's name for [`is_empty`](Self::is_empty).
    pub fn empty(&self) -> bool {
        self.is_empty()
    }

    /// This handle will put and get no more (`Closed`); other handles are unaffected.
    pub fn close(&self) {
        self.q.close()
    }
}

/// Count of unfinished tasks of a `JoinableQueue`, and the word `join` sleeps on.
#[repr(C)]
#[derive(Debug, Default)]
pub struct JoinState {
    unfinished: AtomicU64,
    done: EventCount,
}

// SAFETY: repr(C) of atomics; a corrupted count is at worst a wrong count.
unsafe impl crate::ShmSafe for JoinState {}

/// A `Queue` whose consumers confirm each item with `task_done`, so producers can `join`
/// until all are processed; mirrors Python's `multiprocessing.JoinableQueue`.
///
/// ```
/// use shmproc::{JoinableQueue, Process, TaskDoneError};
/// let q = JoinableQueue::<u32>::new(0)?;
/// let worker = q.clone();
/// let mut child = Process::fork(move || {
///     for _ in 0..3 {
///         worker.get().expect("get");
///         worker.task_done().expect("task_done");
///     }
/// })
/// .start()?;
/// for i in 0..3 { q.put(i)?; }
/// q.join();
/// child.join()?;
/// assert_eq!(q.task_done(), Err(TaskDoneError)); // more than items: Python's ValueError
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct JoinableQueue<T, C: Codec<T> = Postcard> {
    q: Queue<T, C>,
    state: Shared<JoinState>,
}

/// Another handle to the same queue (not closed, even if this one is).
impl<T, C: Codec<T>> Clone for JoinableQueue<T, C> {
    fn clone(&self) -> Self {
        Self {
            q: self.q.clone(),
            state: self.state.clone(),
        }
    }
}

impl<T, C: Codec<T>> JoinableQueue<T, C> {
    /// A queue with an item limit (0: none).
    pub fn new(maxsize: usize) -> Result<Self, SegmentError> {
        Ok(Self {
            q: Queue::new(maxsize)?,
            state: Shared::new(JoinState::default())?,
        })
    }

    /// The queue itself (`len`, `is_empty`, `shutdown`, …).
    pub fn queue(&self) -> &Queue<T, C> {
        &self.q
    }

    fn put_with<E>(&self, item: T, put: impl FnOnce(&Queue<T, C>, T) -> Result<(), E>) -> Result<(), E> {
        self.state.unfinished.fetch_add(1, Ordering::SeqCst);
        let r = put(&self.q, item);
        if r.is_err() {
            self.finish_one().ok();
        }
        r
    }

    /// Puts an item and counts it as an unfinished task.
    pub fn put(&self, item: T) -> Result<(), SendError<T>> {
        self.put_with(item, |q, i| q.put(i))
    }

    /// `put` with a timeout (`Timeout(item)` after it).
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.put_with(item, |q, i| q.put_timeout(i, timeout))
    }

    /// `put` only if there is room now (`Full(item)` otherwise).
    pub fn try_put(&self, item: T) -> Result<(), TrySendError<T>> {
        self.put_with(item, |q, i| q.try_put(i))
    }

    /// Takes the oldest item.
    pub fn get(&self) -> Result<T, RecvError> {
        self.q.get()
    }

    /// Takes the oldest item, waiting at most `timeout` (`Timeout` after it).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.q.get_timeout(timeout)
    }

    /// Takes the oldest item only if one is there now (`Empty` otherwise).
    pub fn try_get(&self) -> Result<T, TryRecvError> {
        self.q.try_get()
    }

    fn finish_one(&self) -> Result<(), TaskDoneError> {
        let s = &self.state;
        let mut n = s.unfinished.load(Ordering::SeqCst);
        loop {
            if n == 0 {
                return Err(TaskDoneError);
            }
            match s
                .unfinished
                .compare_exchange(n, n - 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => break,
                Err(now) => n = now,
            }
        }
        if n == 1 {
            s.done.notify();
        }
        Ok(())
    }

    /// This handle will put and get no more (`Closed`; Python's `close()`); other handles
    /// are unaffected.
    pub fn close(&self) {
        self.q.close()
    }

    /// Marks one item taken with `get` as processed.
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        self.finish_one()
    }

    fn join_deadline(&self, deadline: Option<Instant>) -> bool {
        let s = &self.state;
        loop {
            if s.unfinished.load(Ordering::SeqCst) == 0 {
                return true;
            }
            let key = s.done.prepare_wait();
            if s.unfinished.load(Ordering::SeqCst) == 0 {
                s.done.cancel_wait();
                return true;
            }
            if !s.done.wait(key, deadline) && deadline.is_some_and(|d| Instant::now() >= d) {
                return s.unfinished.load(Ordering::SeqCst) == 0;
            }
        }
    }

    /// Blocks until every item put has been marked done.
    pub fn join(&self) {
        self.join_deadline(None);
    }

    /// `join` with a timeout: `Err(Timeout)` if tasks are still unfinished after it.
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), JoinTimeoutError> {
        if self.join_deadline(deadline_after(timeout)) {
            Ok(())
        } else {
            Err(JoinTimeoutError::Timeout)
        }
    }

    /// Unfinished tasks now.
    pub fn unfinished_tasks(&self) -> u64 {
        self.state.unfinished.load(Ordering::SeqCst)
    }
}
