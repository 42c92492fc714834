//! `pipe()`, `pipe_simplex()` and [`Connection`]: Python's `multiprocessing.Pipe` on
//! shared-memory message channels.
//!
//! Each direction of a pipe is a [`ring::Channel`](crate::ring::Channel) (whole messages,
//! any size, robust against a writer or reader killed mid-message). Items go through a
//! [`Codec`] like a [`Queue`](crate::Queue)'s; `send_bytes` / `recv_bytes` move raw bytes.
//!
//! # Who is on the other end
//!
//! Python learns that the other end is gone from the kernel (the pipe's last fd closed, so
//! `recv` raises `EOFError`). Here each end keeps a small table in shared memory of the
//! processes holding it: the creator, a spawned child that received it in its arguments,
//! a forked child whose closure captured it (the parent records the child when it drops
//! its copy of the closure), each identified by pid + start time. An end is *disconnected*
//! when no live process holds it, which covers a clean `close`/drop and SIGKILL alike.
//!
//! Unlike fd-based pipes, a forked child does **not** hold the ends it merely inherited
//! with the parent's memory: only what its closure owns. So the classic Python hang — a
//! child that keeps the parent's end open by accident and never sees `EOFError` — does not
//! happen. (An end reached only through an `Arc` shared with the child is not recorded for
//! it: move the `Connection` itself into the child.)
//!
//! A timeout (or the try form) of a send bounds the whole message: a message larger than
//! the room left that cannot finish in time is withdrawn (`Timeout` / `Full`), and the
//! receiver never sees a part of it. A blocking send of a message larger than the buffer
//! streams as long as the receiving end is held; if it goes, the send stops with
//! `Disconnected`.
//!
//! Detection time: a clean close wakes the peer at once; a killed holder is noticed by a
//! waiting `recv`/`poll`/blocked `send` within ≈ 20 ms (one liveness slice), and by a
//! non-blocking `send` within 20 ms of its first call after the death (sends check the
//! table at most every 20 ms, so the fast path pays one coarse clock read). A message sent
//! before the peer died is still delivered: `recv` returns `Disconnected` only once nothing
//! is left to read. Up to 64 processes can hold one end at a time.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::channel::queue::{Codec, Postcard};
use crate::error::{ConnError, SegmentError};
use crate::loom::{AtomicU32, AtomicU64, Ordering};
use crate::ring::{ChanError, Channel};
use crate::shm::transfer;
use crate::sync::{deadline_after, park};
use crate::{Shared, ShmSafe};

/// Processes that may hold one end at a time (a small table under loom, which explores
/// every step of a scan).
const HOLDERS: usize = if cfg!(loom) { 4 } else { 64 };

const FREE: u32 = 0;
const CLAIMING: u32 = 1;
/// Recorded for a child by the process that handed it the end; the child has not used it.
const PROVISIONAL: u32 = 2;
/// The process uses the end (`refs` handles).
const STRONG: u32 = 3;
/// The process held the end and let it go (kept until it dies; not a holder).
const RELEASED: u32 = 4;

/// How often a `send` that does not have to wait re-checks that the peer lives.
const SEND_CHECK_NS: u64 = 20_000_000;

/// Default buffer per direction: 256 KiB.
pub const PIPE_CAPACITY: usize = 256 << 10;

/// One process holding an end.
#[repr(C)]
#[derive(Debug, Default)]
struct Holder {
    state: AtomicU32,
    pid: AtomicU32,
    refs: AtomicU32,
    _pad: AtomicU32,
    info: AtomicU64,
}

/// The holder tables of both ends of a pipe (its own small segment).
#[repr(C)]
#[derive(Debug)]
pub struct LinkState {
    ends: [[Holder; HOLDERS]; 2],
}

impl Default for LinkState {
    fn default() -> Self {
        Self {
            ends: std::array::from_fn(|_| std::array::from_fn(|_| Holder::default())),
        }
    }
}

// SAFETY: `#[repr(C)]` of atomics only: every bit pattern is a valid value, and every value
// read from it is validated before use (a garbage entry is skipped or, at worst, makes an
// end look held or not held).
unsafe impl ShmSafe for LinkState {}

fn valid_pid(pid: u32) -> bool {
    pid != 0 && pid <= park::TID_MASK
}

fn process_info(pid: u32) -> u64 {
    park::owner_info(pid, crate::sys::proc::start_time(pid).unwrap_or(0))
}

impl LinkState {
    /// The state of `h` if it is a record (provisional, strong or released) of process
    /// `pid` started as `info`.
    fn record_of(h: &Holder, pid: u32, info: u64) -> Option<u32> {
        let st = h.state.load(Ordering::SeqCst);
        (matches!(st, PROVISIONAL | STRONG | RELEASED)
            && h.pid.load(Ordering::Relaxed) == pid
            && h.info.load(Ordering::Relaxed) == info)
            .then_some(st)
    }

    /// Claims a free record (freeing those of dead processes if needed) for `pid` in state
    /// `st` with `refs`. `None` if the table is full of live processes.
    fn claim(&self, side: usize, pid: u32, info: u64, st: u32, refs: u32) -> Option<&Holder> {
        for attempt in 0..2 {
            for h in &self.ends[side] {
                if h.state
                    .compare_exchange(FREE, CLAIMING, Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
                {
                    h.pid.store(pid, Ordering::Relaxed);
                    h.info.store(info, Ordering::Relaxed);
                    h.refs.store(refs, Ordering::Relaxed);
                    h.state.store(st, Ordering::SeqCst);
                    return Some(h);
                }
            }
            if attempt == 0 {
                self.any_alive(side, 0);
            }
        }
        None
    }

    /// After claiming `mine` for `pid`, reconciles it with a record another party made for
    /// the same process at the same time (a forked child using or releasing an end while
    /// its parent records it late). Both parties write their own record and then read the
    /// other's (SeqCst), so at least one of them sees both and settles: a provisional record
    /// yields to a strong one, and turns released if the process already let go.
    fn settle(&self, side: usize, pid: u32, info: u64, mine: &Holder) {
        for h in &self.ends[side] {
            if std::ptr::eq(h, mine) {
                continue;
            }
            let Some(other) = Self::record_of(h, pid, info) else {
                continue;
            };
            let my_state = mine.state.load(Ordering::SeqCst);
            match (my_state, other) {
                (PROVISIONAL, STRONG) => Self::free(mine, PROVISIONAL),
                (PROVISIONAL, PROVISIONAL) if (h as *const Holder) < (mine as *const Holder) => {
                    Self::free(mine, PROVISIONAL)
                }
                (PROVISIONAL, RELEASED) => Self::retire(mine),
                (STRONG, PROVISIONAL) => Self::free(h, PROVISIONAL),
                (RELEASED, PROVISIONAL) => Self::retire(h),
                _ => {}
            }
        }
    }

    /// Provisional → released (the process let the end go before its record was made).
    fn retire(h: &Holder) {
        let _ = h
            .state
            .compare_exchange(PROVISIONAL, RELEASED, Ordering::SeqCst, Ordering::Relaxed);
    }

    /// Records `pid` as a holder of end `side`: `strong` for a process that uses it (counted
    /// per handle), else provisional (a child given the end) — unless that process already
    /// has a record, e.g. a forked child that used or released the end before its parent
    /// got to record it. Returns `false` if the table is full.
    fn register(&self, side: usize, pid: u32, info: u64, strong: bool) -> bool {
        let mut released = None;
        for h in &self.ends[side] {
            match Self::record_of(h, pid, info) {
                Some(STRONG) => {
                    if strong {
                        h.refs.fetch_add(1, Ordering::SeqCst);
                    }
                    return true;
                }
                Some(PROVISIONAL) => {
                    if !strong {
                        return true;
                    }
                    h.refs.fetch_add(1, Ordering::SeqCst);
                    if h.state
                        .compare_exchange(PROVISIONAL, STRONG, Ordering::SeqCst, Ordering::Relaxed)
                        .is_ok()
                    {
                        return true;
                    }
                    h.refs.fetch_sub(1, Ordering::SeqCst);
                }
                Some(_) => released = released.or(Some(h)),
                None => {}
            }
        }
        if !strong && released.is_some() {
            // The process already let the end go: a late record must not revive it.
            return true;
        }
        let (st, refs) = if strong { (STRONG, 1) } else { (PROVISIONAL, 0) };
        match self.claim(side, pid, info, st, refs) {
            Some(mine) => {
                self.settle(side, pid, info, mine);
                true
            }
            None => false,
        }
    }

    /// Drops one strong reference of `pid` (`strong`), or its provisional record. A process
    /// that no longer holds the end keeps a `RELEASED` record until it dies, so that a
    /// parent recording it late (see `dropping_for_fork_child`) cannot make it a holder again.
    fn release(&self, side: usize, pid: u32, info: u64, strong: bool) {
        let mut provisional = None;
        for h in &self.ends[side] {
            match Self::record_of(h, pid, info) {
                Some(STRONG) if strong => {
                    let mut refs = h.refs.load(Ordering::SeqCst);
                    loop {
                        let next = refs.saturating_sub(1);
                        match h
                            .refs
                            .compare_exchange(refs, next, Ordering::SeqCst, Ordering::Relaxed)
                        {
                            Ok(_) => break,
                            Err(now) => refs = now,
                        }
                    }
                    if refs <= 1
                        && h.state
                            .compare_exchange(STRONG, RELEASED, Ordering::SeqCst, Ordering::Relaxed)
                            .is_ok()
                    {
                        // Void any provisional record made for us meanwhile.
                        self.settle(side, pid, info, h);
                    }
                    return;
                }
                // Used by this process through another handle: still held.
                Some(STRONG) => return,
                Some(PROVISIONAL) => provisional = provisional.or(Some(h)),
                _ => {}
            }
        }
        match provisional {
            Some(h) => Self::retire(h),
            None => {
                if let Some(mine) = self.claim(side, pid, info, RELEASED, 0) {
                    self.settle(side, pid, info, mine);
                }
            }
        }
    }

    fn free(h: &Holder, seen: u32) {
        if h.state
            .compare_exchange(seen, CLAIMING, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
        {
            h.pid.store(0, Ordering::Relaxed);
            h.state.store(FREE, Ordering::SeqCst);
        }
    }

    /// Whether a live process other than `asker` holds end `side` — or `asker` itself
    /// does, by using it (a provisional record of the asker is its own inheritance, which
    /// it evidently does not use). Records of dead processes are freed on the way.
    fn any_alive(&self, side: usize, asker: u32) -> bool {
        let mut found = false;
        for h in &self.ends[side] {
            let st = h.state.load(Ordering::Acquire);
            if !matches!(st, PROVISIONAL | STRONG | RELEASED) {
                continue;
            }
            let pid = h.pid.load(Ordering::Relaxed);
            if !valid_pid(pid) {
                continue;
            }
            if pid == asker {
                found |= st == STRONG;
                continue;
            }
            if found || (st == RELEASED && asker != 0) {
                continue;
            }
            if park::alive(pid, h.info.load(Ordering::Relaxed)) {
                found |= st != RELEASED;
            } else if h
                .state
                .compare_exchange(st, CLAIMING, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                // Re-check under our claim: the record may have been reused meanwhile.
                if h.pid.load(Ordering::Relaxed) == pid {
                    h.pid.store(0, Ordering::Relaxed);
                    h.state.store(FREE, Ordering::Release);
                } else {
                    h.state.store(st, Ordering::Release);
                }
            }
        }
        found
    }
}

thread_local! {
    /// Set while the parent drops the closure it forked a child with.
    static FORK_CHILD: Cell<u32> = const { Cell::new(0) };
}

/// Runs `drop_body` (the parent dropping a forked child's closure) so that every pipe end
/// dropped inside records `child` as its holder first.
pub(crate) fn dropping_for_fork_child(child: u32, drop_body: impl FnOnce()) {
    let prev = FORK_CHILD.with(|c| c.replace(child));
    drop_body();
    FORK_CHILD.with(|c| c.set(prev));
}

/// One end of a pipe: its side's holder table plus the two channels as seen from it.
struct End {
    link: Shared<LinkState>,
    side: usize,
}

/// One end of a pipe; mirrors Python's `multiprocessing.connection.Connection`.
///
/// Every call has a blocking, a timeout and a non-blocking form: `send` / `send_timeout` /
/// `try_send`, `recv` / `recv_timeout` / `try_recv`, the same for bytes, and
/// `poll(timeout)`. When every process holding the other end has closed it or died, `recv`
/// returns [`ConnError::Disconnected`] (Python's `EOFError`) once it drained what was sent,
/// and `send` returns `Disconnected` (Python's `BrokenPipeError`); see the
/// [module docs](crate::connection) for how the end's holders are tracked.
///
/// A `Connection` is used by one thread at a time (`Send`, not `Sync`), like Python's.
///
/// ```
/// use shmproc::{pipe, Connection, Process};
///
/// fn worker(conn: Connection<String>) {
///     while let Ok(msg) = conn.recv() {
///         conn.send(&msg.to_uppercase()).expect("send");
///     }
///     // `recv` failed with Disconnected: the parent closed its end.
/// }
///
/// shmproc::init();
/// let (parent, child) = pipe::<String>()?;
/// let mut p = Process::new(worker, child).start()?;
/// parent.send(&"hello".to_owned())?;
/// assert_eq!(parent.recv()?, "HELLO");
/// drop(parent);
/// p.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Connection<T, C: Codec<T> = Postcard> {
    tx: Option<Channel>,
    rx: Option<Channel>,
    end: Arc<End>,
    closed: Cell<bool>,
    /// Fork epoch in which this process registered as a strong holder (`u32::MAX`: never).
    reg_epoch: Cell<u32>,
    pid: Cell<u32>,
    /// `pid`'s start time record (tells a reused pid apart).
    info: Cell<u64>,
    /// Peer verdict cache: gone for good once seen gone; otherwise re-checked after this
    /// coarse-clock time (ns).
    peer_gone: Cell<bool>,
    next_check_ns: Cell<u64>,
    scratch: RefCell<Vec<u8>>,
    /// A moment in the past: the deadline of a first attempt that must not sleep.
    created: Instant,
    _t: PhantomData<fn(T) -> (T, C)>,
}

impl<T, C: Codec<T>> fmt::Debug for Connection<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("readable", &self.rx.is_some())
            .field("writable", &self.tx.is_some())
            .field("closed", &self.closed.get())
            .finish()
    }
}

/// A duplex pipe (Python's `Pipe()`): two connected ends, each can send and receive.
///
/// ```
/// let (a, b) = shmproc::pipe::<(u32, String)>()?;
/// a.send(&(1, "one".into()))?;
/// assert_eq!(b.recv()?, (1, "one".to_owned()));
/// b.send_bytes(b"raw")?;
/// assert_eq!(a.recv_bytes()?, b"raw");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn pipe<T>() -> Result<(Connection<T>, Connection<T>), SegmentError>
where
    Postcard: Codec<T>,
{
    Connection::pair(true, PIPE_CAPACITY)
}

/// A one-way pipe (Python's `Pipe(duplex=False)`): returns `(receiver, sender)`, in
/// Python's order.
///
/// ```
/// let (rx, tx) = shmproc::pipe_simplex::<u64>()?;
/// tx.send(&7)?;
/// assert_eq!(rx.recv()?, 7);
/// assert_eq!(rx.send(&1), Err(shmproc::ConnError::NotWritable));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn pipe_simplex<T>() -> Result<(Connection<T>, Connection<T>), SegmentError>
where
    Postcard: Codec<T>,
{
    Connection::pair(false, PIPE_CAPACITY)
}

fn coarse_now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    (t.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(t.tv_nsec as u64)
}

/// How a call waits: `None` forever, `Some((deadline, try_form))`.
type Wait = Option<(Instant, bool)>;

impl<T, C: Codec<T>> Connection<T, C> {
    /// A connected pair with any codec and a buffer of `capacity` bytes per direction:
    /// duplex, or `(receiver, sender)` when `duplex` is false. A `capacity` of `0` is
    /// [`SegmentError::InvalidSize`].
    pub fn pair(duplex: bool, capacity: usize) -> Result<(Self, Self), SegmentError> {
        let link = Shared::new(LinkState::default())?;
        let ab = Channel::new(capacity)?;
        let (a, b) = if duplex {
            let ba = Channel::new(capacity)?;
            let a = Self::wrap(Some(ab.clone()), Some(ba.clone()), link.clone(), 0);
            let b = Self::wrap(Some(ba), Some(ab), link, 1);
            (a, b)
        } else {
            // Python's order: the first end receives, the second sends.
            let r = Self::wrap(None, Some(ab.clone()), link.clone(), 0);
            let w = Self::wrap(Some(ab), None, link, 1);
            (r, w)
        };
        a.register_here();
        b.register_here();
        Ok((a, b))
    }

    fn wrap(tx: Option<Channel>, rx: Option<Channel>, link: Shared<LinkState>, side: usize) -> Self {
        Self {
            tx,
            rx,
            end: Arc::new(End { link, side }),
            closed: Cell::new(false),
            reg_epoch: Cell::new(u32::MAX),
            pid: Cell::new(0),
            info: Cell::new(0),
            peer_gone: Cell::new(false),
            next_check_ns: Cell::new(0),
            scratch: RefCell::new(Vec::new()),
            created: Instant::now(),
            _t: PhantomData,
        }
    }

    /// Records this process as a strong holder of our end (once per process).
    #[cold]
    fn register_here(&self) {
        let pid = std::process::id();
        let info = process_info(pid);
        let e = &self.end;
        e.link.register(e.side, pid, info, true);
        self.pid.set(pid);
        self.info.set(info);
        self.reg_epoch.set(park::fork_epoch());
    }

    #[inline]
    fn ready(&self) -> Result<(), ConnError> {
        if self.closed.get() {
            return Err(ConnError::Closed);
        }
        if self.reg_epoch.get() != park::fork_epoch() {
            self.register_here();
        }
        Ok(())
    }

    /// Whether every holder of the other end is gone (cached once true). Reads `/proc` for
    /// each other holder, so callers throttle it.
    fn check_peer(&self) -> bool {
        if self.peer_gone.get() {
            return true;
        }
        let shut = self.tx.as_ref().is_some_and(Channel::is_shutdown)
            || self.rx.as_ref().is_some_and(Channel::is_shutdown);
        let e = &self.end;
        let gone = shut || !e.link.any_alive(1 - e.side, self.pid.get());
        self.next_check_ns
            .set(coarse_now_ns().wrapping_add(SEND_CHECK_NS));
        if gone {
            self.peer_gone.set(true);
        }
        gone
    }

    /// `check_peer`, at most once per check interval.
    fn check_peer_throttled(&self) -> bool {
        if self.peer_gone.get() {
            return true;
        }
        if coarse_now_ns() < self.next_check_ns.get() {
            return false;
        }
        self.check_peer()
    }

    /// The deadline of one attempt of a call that waits as `wait`, and whether it is the
    /// call's last. The first attempt gets a deadline already past (it spins briefly but
    /// does not sleep, and reads no clock); later ones sleep one liveness slice at most.
    fn attempt(&self, first: bool, wait: Wait) -> (Instant, bool) {
        match wait {
            _ if first => (self.created, matches!(wait, Some((_, true)))),
            Some((d, _)) => park::slice_deadline(Some(d)),
            None => (park::slice_deadline(None).0, false),
        }
    }

    /// Runs `op` (one send or receive attempt with the given deadline) until it succeeds,
    /// the peer is gone or the call's time is up (`Timeout`, or `try_failed` for the try
    /// form). Once the peer is gone, a receiver (`drain`) still gets what it sent before.
    fn attempts(
        &self,
        wait: Wait,
        mut op: impl FnMut(Instant) -> Result<(), ChanError>,
        drain: bool,
        try_failed: ConnError,
    ) -> Result<(), ConnError> {
        let try_form = matches!(wait, Some((_, true)));
        let mut first = true;
        let mut slept = false;
        loop {
            let (until, last) = self.attempt(first, wait);
            first = false;
            match op(until) {
                Ok(()) => return Ok(()),
                Err(ChanError::Closed) => {
                    // The last holder of the other end closed it: so is every later call.
                    self.peer_gone.set(true);
                    return Err(ConnError::Disconnected);
                }
                Err(ChanError::Corrupted) => return Err(ConnError::Corrupted),
                Err(ChanError::Full | ChanError::Timeout) => {
                    // After the first, non-blocking attempt the check is throttled (a call
                    // that finds the pipe empty or full need not read `/proc` each time);
                    // after a sleep slice it is done in full, so a waiting call notices a
                    // dead peer within one slice.
                    let gone = if try_form || !slept {
                        self.check_peer_throttled()
                    } else {
                        self.check_peer()
                    };
                    slept = true;
                    if gone {
                        if !drain {
                            return Err(ConnError::Disconnected);
                        }
                        return match op(self.created) {
                            Ok(()) => Ok(()),
                            Err(ChanError::Corrupted) => Err(ConnError::Corrupted),
                            Err(_) => Err(ConnError::Disconnected),
                        };
                    }
                    if last {
                        return Err(if try_form { try_failed } else { ConnError::Timeout });
                    }
                }
            }
        }
    }

    fn send_raw(&self, bytes: &[u8], wait: Wait) -> Result<(), ConnError> {
        self.ready()?;
        let tx = self.tx.as_ref().ok_or(ConnError::NotWritable)?;
        if self.check_peer_throttled() {
            return Err(ConnError::Disconnected);
        }
        let finish_by = wait.map(|(d, _)| d);
        let send = |until| tx.send_streaming(bytes, None, Some(until), finish_by, &mut || !self.check_peer());
        self.attempts(wait, send, false, ConnError::Full)
    }

    fn recv_raw(&self, out: &mut Vec<u8>, wait: Wait) -> Result<(), ConnError> {
        self.ready()?;
        let rx = self.rx.as_ref().ok_or(ConnError::NotReadable)?;
        self.attempts(
            wait,
            |until| rx.recv_into(out, Some(until)),
            true,
            ConnError::Empty,
        )
    }

    fn send_item(&self, item: &T, wait: Wait) -> Result<(), ConnError> {
        if let Some(bytes) = C::as_bytes(item) {
            // The item's own bytes (Pod, raw bytes): no encoding buffer.
            return self.send_raw(bytes, wait);
        }
        let mut buf = self.scratch.take();
        buf.clear();
        let r = match C::encode(item, &mut buf) {
            Ok(()) => self.send_raw(&buf, wait),
            Err(e) => Err(ConnError::Encode(e)),
        };
        self.scratch.replace(buf);
        r
    }

    fn recv_item(&self, wait: Wait) -> Result<T, ConnError> {
        let mut buf = self.scratch.take();
        let r = self
            .recv_raw(&mut buf, wait)
            .and_then(|()| C::decode(&buf).map_err(ConnError::Decode));
        self.scratch.replace(buf);
        r
    }

    fn timed(timeout: Duration) -> Wait {
        deadline_after(timeout).map(|d| (d, false))
    }

    fn now() -> Wait {
        Some((Instant::now(), true))
    }

    /// Sends `item`, waiting for room as long as needed (Python's `send(obj)`).
    pub fn send(&self, item: &T) -> Result<(), ConnError> {
        self.send_item(item, None)
    }

    /// Sends `item`, waiting at most `timeout` for room (`Timeout` after that).
    pub fn send_timeout(&self, item: &T, timeout: Duration) -> Result<(), ConnError> {
        self.send_item(item, Self::timed(timeout))
    }

    /// Sends `item` only if there is room now (`Full` otherwise).
    pub fn try_send(&self, item: &T) -> Result<(), ConnError> {
        self.send_item(item, Self::now())
    }

    /// Receives the next item, waiting as long as needed (Python's `recv()`).
    pub fn recv(&self) -> Result<T, ConnError> {
        self.recv_item(None)
    }

    /// Receives the next item, waiting at most `timeout` (`Timeout` after that).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, ConnError> {
        self.recv_item(Self::timed(timeout))
    }

    /// Receives the next item only if one is there now (`Empty` otherwise).
    pub fn try_recv(&self) -> Result<T, ConnError> {
        self.recv_item(Self::now())
    }

    /// Sends raw bytes as one message (Python's `send_bytes`); any length.
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<(), ConnError> {
        self.send_raw(bytes, None)
    }

    /// `send_bytes`, waiting at most `timeout` for room.
    pub fn send_bytes_timeout(&self, bytes: &[u8], timeout: Duration) -> Result<(), ConnError> {
        self.send_raw(bytes, Self::timed(timeout))
    }

    /// `send_bytes` only if there is room now.
    pub fn try_send_bytes(&self, bytes: &[u8]) -> Result<(), ConnError> {
        self.send_raw(bytes, Self::now())
    }

    /// Receives one message as raw bytes (Python's `recv_bytes`).
    pub fn recv_bytes(&self) -> Result<Vec<u8>, ConnError> {
        let mut v = Vec::new();
        self.recv_raw(&mut v, None).map(|()| v)
    }

    /// `recv_bytes`, waiting at most `timeout`.
    pub fn recv_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>, ConnError> {
        let mut v = Vec::new();
        self.recv_raw(&mut v, Self::timed(timeout)).map(|()| v)
    }

    /// `recv_bytes` only if a message is there now.
    pub fn try_recv_bytes(&self) -> Result<Vec<u8>, ConnError> {
        let mut v = Vec::new();
        self.recv_raw(&mut v, Self::now()).map(|()| v)
    }

    /// Receives one message into `buf` and returns its length (Python's
    /// `recv_bytes_into`). A message longer than `buf` is not lost: it comes back inside
    /// [`ConnError::BufferTooShort`].
    ///
    /// ```
    /// let (a, b) = shmproc::pipe::<()>()?;
    /// a.send_bytes(b"hello world")?;
    /// let mut small = [0u8; 4];
    /// match b.recv_bytes_into(&mut small) {
    ///     Err(shmproc::ConnError::BufferTooShort(msg)) => assert_eq!(msg, b"hello world"),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize, ConnError> {
        self.recv_bytes_into_wait(buf, None)
    }

    /// `recv_bytes_into`, waiting at most `timeout`.
    pub fn recv_bytes_into_timeout(&self, buf: &mut [u8], timeout: Duration) -> Result<usize, ConnError> {
        self.recv_bytes_into_wait(buf, Self::timed(timeout))
    }

    fn recv_bytes_into_wait(&self, buf: &mut [u8], wait: Wait) -> Result<usize, ConnError> {
        let mut v = self.scratch.take();
        let r = self.recv_raw(&mut v, wait).and_then(|()| {
            if v.len() > buf.len() {
                Err(ConnError::BufferTooShort(std::mem::take(&mut v)))
            } else {
                buf[..v.len()].copy_from_slice(&v);
                Ok(v.len())
            }
        });
        self.scratch.replace(v);
        r
    }

    /// Whether a `recv` would return at once — a message is waiting, or the other end is
    /// gone (Python's `poll(timeout)`): `Some(Duration::ZERO)` just looks, `None` waits as
    /// long as needed.
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool, ConnError> {
        self.ready()?;
        let rx = self.rx.as_ref().ok_or(ConnError::NotReadable)?;
        let far = || Instant::now() + Duration::from_secs(1 << 30);
        let deadline = timeout.map(|t| deadline_after(t).unwrap_or_else(far));
        loop {
            let (slice, last) = park::slice_deadline(deadline);
            if rx.wait_readable(Some(slice)) {
                return Ok(true);
            }
            if self.check_peer_throttled() || (last && self.check_peer()) {
                return Ok(true);
            }
            if last {
                return Ok(false);
            }
        }
    }

    /// Whether this end can receive / send.
    pub fn readable(&self) -> bool {
        self.rx.is_some()
    }

    /// Whether this end can send.
    pub fn writable(&self) -> bool {
        self.tx.is_some()
    }

    /// The channel this end receives from (`None` for a sending-only end), for tests that
    /// inspect its shared state.
    #[doc(hidden)]
    pub fn inbound_channel(&self) -> Option<&Channel> {
        self.rx.as_ref()
    }

    /// Closes this handle (Python's `close()`): later calls on it fail with `Closed`. When no
    /// other live process holds this end, the other end sees `Disconnected` at once.
    pub fn close(&self) {
        if self.closed.replace(true) {
            return;
        }
        self.release();
    }

    fn release(&self) {
        let e = &self.end;
        let fork_child = FORK_CHILD.with(Cell::get);
        if fork_child != 0 {
            // The parent drops the closure of a child it just forked: the child holds us now.
            e.link
                .register(e.side, fork_child, process_info(fork_child), false);
        }
        if self.reg_epoch.get() == park::fork_epoch() {
            e.link.release(e.side, self.pid.get(), self.info.get(), true);
        } else {
            // Inherited through a fork and never used here: drop the provisional record.
            let pid = std::process::id();
            e.link.release(e.side, pid, process_info(pid), false);
        }
        if !e.link.any_alive(e.side, 0) {
            // Nobody holds this end any more: wake the peer now. Its send side first, so a
            // peer whose recv sees the shutdown cannot then send into a channel still open.
            if let Some(c) = &self.rx {
                c.shutdown();
            }
            if let Some(c) = &self.tx {
                c.shutdown();
            }
        }
    }
}

impl<T, C: Codec<T>> Drop for Connection<T, C> {
    fn drop(&mut self) {
        if !self.closed.get() {
            self.release();
        }
    }
}

/// What crosses to a spawned child.
#[derive(Deserialize)]
struct ConnToken {
    tx: Option<Channel>,
    rx: Option<Channel>,
    link: Shared<LinkState>,
    side: u8,
}

impl<T, C: Codec<T>> Serialize for Connection<T, C> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        if self.closed.get() {
            return Err(S::Error::custom("cannot pass a closed Connection"));
        }
        let side = self.end.side;
        let end = Arc::clone(&self.end);
        // The child holds our end from the moment it starts (before we drop our copy).
        transfer::on_child_started(Box::new(move |pid| {
            end.link.register(end.side, pid, process_info(pid), false);
        }));
        (&self.tx, &self.rx, &self.end.link, side as u8).serialize(s)
    }
}

impl<'de, T, C: Codec<T>> Deserialize<'de> for Connection<T, C> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let t = ConnToken::deserialize(d)?;
        if t.side > 1 || (t.tx.is_none() && t.rx.is_none()) {
            return Err(transfer::fail("malformed Connection token".to_owned()));
        }
        let c = Self::wrap(t.tx, t.rx, t.link, usize::from(t.side));
        c.register_here();
        Ok(c)
    }
}

/// The holder table's operations, for the loom suite (`--cfg loom`): one end, one `info`.
#[cfg(loom)]
#[doc(hidden)]
pub mod loom_link {
    /// A holder table on the heap.
    #[derive(Default)]
    pub struct Table(super::LinkState);

    impl Table {
        /// Records `pid` (strong: it uses the end; else provisional).
        pub fn register(&self, pid: u32, strong: bool) -> bool {
            self.0.register(0, pid, 7, strong)
        }

        /// Releases one strong reference of `pid`, or its provisional record.
        pub fn release(&self, pid: u32, strong: bool) {
            self.0.release(0, pid, 7, strong)
        }

        /// Whether anyone holds the end (every process counts as alive under loom).
        pub fn held(&self) -> bool {
            self.0.any_alive(0, 0)
        }
    }
}
