//! Pipes: see the docs of `Connection` (moved there so users can read them).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::codec::{Codec, Postcard};
use super::endpoint::{self, Failure, Scratch};
use super::holders::{self, process_info, LinkState};
use crate::error::{
    RecvError, RecvTimeoutError, SegmentError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
use crate::ring::{Channel, Ended};
use crate::shm::transfer;
use crate::sync::{deadline_after, park};
use crate::Shared;

pub(crate) use super::holders::dropping_for_fork_child;

/// How often a `send` that does not have to wait re-checks that the peer lives: once a
/// liveness slice, as a waiting call does.
const SEND_CHECK_NS: u64 = park::LIVENESS_SLICE.as_nanos() as u64;

/// Default buffer per direction: 256 KiB.
pub const PIPE_CAPACITY: usize = 256 << 10;

/// One end of a pipe: its side's holder table plus the two channels as seen from it.
struct End {
    link: Shared<LinkState>,
    side: usize,
}

/// One end of a pipe; mirrors Python's `multiprocessing.connection.Connection`.
///
/// Every call has a blocking, a timeout and a non-blocking form: `send` / `send_timeout` /
/// `try_send`, `recv` / `recv_timeout` / `try_recv`, the same for bytes, and `poll` /
/// `poll_timeout` / `try_poll`, with the channel family's errors (a timeout is
/// `Err(Timeout)`, a try form that would wait `Err(Full(()))` / `Err(Empty)`; `send` takes
/// the item by reference, so its errors carry `()`). When every process holding the other
/// end has closed it or died, `recv` returns [`RecvError::Disconnected`] (Python's
/// `EOFError`) once it drained what was sent, and `send` returns
/// [`SendError::Disconnected`] (Python's `BrokenPipeError`); see the
/// [section below](crate::Connection#how-the-ends-are-tracked) for how the end's holders are tracked.
///
/// A `Connection` is used by one thread at a time (`Send`, not `Sync`), like Python's.
///
/// Unlike every other handle, a `Connection` is **not `Clone`**, as Python's is not
/// shareable either: an end is one side of a conversation. Two clones reading one end would
/// split its messages between them (a reply could reach the wrong caller), and a pipe's
/// `Disconnected` means "every holder of the other end is gone", which stays exact only
/// while each end's holders are the processes it was moved to. Move the end to the thread
/// or child that talks through it; for several readers or writers use a [`Queue`](crate::Queue).
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
///
/// # How the ends are tracked
///
/// `pipe()`, `pipe_simplex()` and [`Connection`]: Python's `multiprocessing.Pipe` on
/// shared-memory message channels.
///
/// Each direction of a pipe is a [`ring::Channel`](crate::ring::Channel) (whole messages,
/// any size, robust against a writer or reader killed mid-message). Items go through a
/// [`Codec`] like a [`Queue`](crate::Queue)'s; `send_bytes` / `recv_bytes` move raw bytes.
///
/// # Who is on the other end
///
/// Python learns that the other end is gone from the kernel (the pipe's last fd closed, so
/// `recv` raises `EOFError`). Here each end keeps a small table in shared memory of the
/// processes holding it: the creator, a spawned child that received it in its arguments,
/// a forked child whose closure captured it (the parent records the child when it drops
/// its copy of the closure), each identified by pid + start time. An end is *disconnected*
/// when no live process holds it, which covers a clean `close`/drop and SIGKILL alike.
///
/// Unlike fd-based pipes, a forked child does **not** hold the ends it merely inherited
/// with the parent's memory: only what its closure owns. So the classic Python hang — a
/// child that keeps the parent's end open by accident and never sees `EOFError` — does not
/// happen. (An end reached only through an `Arc` shared with the child is not recorded for
/// it: move the `Connection` itself into the child.)
///
/// A timeout (or the try form) of a send bounds the whole message: a message larger than
/// the room left that cannot finish in time is withdrawn (`Timeout` / `Full`), and the
/// receiver never sees a part of it. A blocking send of a message larger than the buffer
/// streams as long as the receiving end is held; if it goes, the send stops with
/// `Disconnected`.
///
/// Detection time: a clean close wakes the peer at once; a killed holder is noticed by a
/// waiting `recv`/`poll`/blocked `send` within ≈ 20 ms (one liveness slice), and by a
/// non-blocking `send` within 20 ms of its first call after the death (sends check the
/// table at most every 20 ms, so the fast path pays one coarse clock read). A message sent
/// before the peer died is still delivered: `recv` returns `Disconnected` only once nothing
/// is left to read. Up to 64 processes can hold one end at a time.
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
/// assert_eq!(rx.send(&1), Err(shmproc::SendError::NotWritable(())));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn pipe_simplex<T>() -> Result<(Connection<T>, Connection<T>), SegmentError>
where
    Postcard: Codec<T>,
{
    Connection::pair(false, PIPE_CAPACITY)
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

    /// Whether this handle is still open; registers this process as a holder on its
    /// first use here (after a fork).
    #[inline]
    fn ready(&self) -> bool {
        if self.closed.get() {
            return false;
        }
        if self.reg_epoch.get() != park::fork_epoch() {
            self.register_here();
        }
        true
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
            .set(crate::sys::clock::coarse_monotonic_ns().wrapping_add(SEND_CHECK_NS));
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
        if crate::sys::clock::coarse_monotonic_ns() < self.next_check_ns.get() {
            return false;
        }
        self.check_peer()
    }

    /// Runs `op` (a send or receive with a deadline, watching the peer if told to) until
    /// it succeeds, the peer is gone or the call's time is up (`Timeout`; the try form reads
    /// it as `Full` / `Empty`). Once the peer is gone, a receiver (`drain`) still gets what
    /// it sent before.
    ///
    /// The first attempt gets a deadline already past (it spins briefly but does not sleep,
    /// and reads no clock); if it would wait, the peer is checked (throttled: a call that
    /// finds the pipe empty or full need not read `/proc` each time). A call that may wait
    /// then runs `op` once more with its deadline, watching the peer: the channel's wait
    /// loop checks it in full after every liveness slice slept, so a waiting call notices a
    /// dead peer within one slice.
    fn attempts<E: Failure>(
        &self,
        wait: Wait,
        mut op: impl FnMut(Option<Instant>, bool) -> Result<(), E>,
        drain: bool,
    ) -> Result<(), E> {
        let noted = |r: Result<(), E>| {
            if r.as_ref().is_err_and(E::is_disconnected) {
                // The last holder of the other end is gone: so is every later call.
                self.peer_gone.set(true);
            }
            r
        };
        let e = match op(Some(self.created), false) {
            Err(e) if e.is_timeout() => e,
            r => return noted(r),
        };
        if self.check_peer_throttled() {
            if !drain {
                return Err(E::disconnected());
            }
            return match op(Some(self.created), false) {
                Ok(()) => Ok(()),
                Err(e) if e.is_corrupted() => Err(e),
                Err(_) => Err(E::disconnected()),
            };
        }
        match wait {
            Some((_, true)) => Err(e),
            _ => noted(op(wait.map(|(d, _)| d), true)),
        }
    }

    fn send_raw(&self, bytes: &[u8], wait: Wait) -> Result<(), SendTimeoutError<()>> {
        if !self.ready() {
            return Err(SendTimeoutError::Closed(()));
        }
        let tx = self.tx.as_ref().ok_or(SendTimeoutError::NotWritable(()))?;
        if self.check_peer_throttled() {
            return Err(SendTimeoutError::Disconnected(()));
        }
        let finish_by = wait.map(|(d, _)| d);
        let send =
            |until, watch| tx.send_watching(bytes, None, until, finish_by, &mut || !self.check_peer(), watch);
        self.attempts(wait, send, false)
    }

    fn recv_raw(&self, out: &mut Vec<u8>, wait: Wait) -> Result<(), RecvTimeoutError> {
        if !self.ready() {
            return Err(RecvTimeoutError::Closed);
        }
        let rx = self.rx.as_ref().ok_or(RecvTimeoutError::NotReadable)?;
        let recv =
            |until, watch: bool| rx.recv_watching(out, until, watch.then_some(&mut || !self.check_peer()));
        self.attempts(wait, recv, true)
    }

    #[inline]
    fn send_item(&self, item: &T, wait: Wait) -> Result<(), SendTimeoutError<()>> {
        endpoint::send_item::<T, C>(item, &self.scratch, |bytes| self.send_raw(bytes, wait))
    }

    #[inline]
    fn recv_item(&self, wait: Wait) -> Result<T, RecvTimeoutError> {
        endpoint::recv_item::<T, C>(&self.scratch, |buf| self.recv_raw(buf, wait))
    }

    fn timed(timeout: Duration) -> Wait {
        deadline_after(timeout).map(|d| (d, false))
    }

    fn now() -> Wait {
        Some((Instant::now(), true))
    }

    /// Sends `item`, waiting for room as long as needed (Python's `send(obj)`).
    pub fn send(&self, item: &T) -> Result<(), SendError<()>> {
        self.send_item(item, None).map_err(endpoint::blocking_send)
    }

    /// Sends `item`, waiting at most `timeout` for room (`Timeout(())` after that).
    pub fn send_timeout(&self, item: &T, timeout: Duration) -> Result<(), SendTimeoutError<()>> {
        self.send_item(item, Self::timed(timeout))
    }

    /// Sends `item` only if there is room now (`Full(())` otherwise).
    pub fn try_send(&self, item: &T) -> Result<(), TrySendError<()>> {
        self.send_item(item, Self::now())
            .map_err(SendTimeoutError::into_try)
    }

    /// Receives the next item, waiting as long as needed (Python's `recv()`).
    pub fn recv(&self) -> Result<T, RecvError> {
        self.recv_item(None).map_err(endpoint::blocking_recv)
    }

    /// Receives the next item, waiting at most `timeout` (`Timeout` after that).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_item(Self::timed(timeout))
    }

    /// Receives the next item only if one is there now (`Empty` otherwise).
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.recv_item(Self::now()).map_err(RecvTimeoutError::into_try)
    }

    /// Sends raw bytes as one message (Python's `send_bytes`); any length.
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<(), SendError<()>> {
        self.send_raw(bytes, None).map_err(endpoint::blocking_send)
    }

    /// `send_bytes`, waiting at most `timeout` for room.
    pub fn send_bytes_timeout(&self, bytes: &[u8], timeout: Duration) -> Result<(), SendTimeoutError<()>> {
        self.send_raw(bytes, Self::timed(timeout))
    }

    /// `send_bytes` only if there is room now.
    pub fn try_send_bytes(&self, bytes: &[u8]) -> Result<(), TrySendError<()>> {
        self.send_raw(bytes, Self::now())
            .map_err(SendTimeoutError::into_try)
    }

    fn recv_bytes_wait(&self, wait: Wait) -> Result<Vec<u8>, RecvTimeoutError> {
        let mut v = Vec::new();
        self.recv_raw(&mut v, wait).map(|()| v)
    }

    /// Receives one message as raw bytes (Python's `recv_bytes`).
    pub fn recv_bytes(&self) -> Result<Vec<u8>, RecvError> {
        self.recv_bytes_wait(None).map_err(endpoint::blocking_recv)
    }

    /// `recv_bytes`, waiting at most `timeout`.
    pub fn recv_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>, RecvTimeoutError> {
        self.recv_bytes_wait(Self::timed(timeout))
    }

    /// `recv_bytes` only if a message is there now.
    pub fn try_recv_bytes(&self) -> Result<Vec<u8>, TryRecvError> {
        self.recv_bytes_wait(Self::now())
            .map_err(RecvTimeoutError::into_try)
    }

    /// Receives one message into `buf` and returns its length (Python's
    /// `recv_bytes_into`). A message longer than `buf` is not lost: it comes back inside
    /// [`RecvError::TooLarge`] (Python's `BufferTooShort`).
    ///
    /// ```
    /// let (a, b) = shmproc::pipe::<()>()?;
    /// a.send_bytes(b"hello world")?;
    /// let mut small = [0u8; 4];
    /// match b.recv_bytes_into(&mut small) {
    ///     Err(shmproc::RecvError::TooLarge(msg)) => assert_eq!(msg, b"hello world"),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.recv_bytes_into_wait(buf, None)
            .map_err(endpoint::blocking_recv)
    }

    /// `recv_bytes_into`, waiting at most `timeout`.
    pub fn recv_bytes_into_timeout(
        &self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, RecvTimeoutError> {
        self.recv_bytes_into_wait(buf, Self::timed(timeout))
    }

    /// `recv_bytes_into` only if a message is there now.
    pub fn try_recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize, TryRecvError> {
        self.recv_bytes_into_wait(buf, Self::now())
            .map_err(RecvTimeoutError::into_try)
    }

    fn recv_bytes_into_wait(&self, buf: &mut [u8], wait: Wait) -> Result<usize, RecvTimeoutError> {
        self.scratch.with(|v| {
            self.recv_raw(v, wait)?;
            if v.len() > buf.len() {
                // The message, whole (the scratch buffer starts afresh).
                return Err(RecvTimeoutError::TooLarge(std::mem::take(v)));
            }
            buf[..v.len()].copy_from_slice(v);
            Ok(v.len())
        })
    }

    /// Waits until a `recv` would return at once — a message is waiting, or the other end
    /// is gone (Python's `poll(None)`). `Ok(())` then; errors only for a closed handle
    /// (`Closed`) or a sending-only end (`NotReadable`).
    pub fn poll(&self) -> Result<(), RecvError> {
        self.poll_until(None).map_err(endpoint::blocking_recv)
    }

    /// [`poll`](Self::poll), waiting at most `timeout` (Python's `poll(timeout)`, whose
    /// `False` is `Err(Timeout)` here).
    pub fn poll_timeout(&self, timeout: Duration) -> Result<(), RecvTimeoutError> {
        self.poll_until(deadline_after(timeout))
    }

    /// Whether a `recv` would return at once, without waiting (Python's `poll()`, whose
    /// `False` is `Err(Empty)` here).
    pub fn try_poll(&self) -> Result<(), TryRecvError> {
        self.poll_until(Some(Instant::now()))
            .map_err(RecvTimeoutError::into_try)
    }

    fn poll_until(&self, deadline: Option<Instant>) -> Result<(), RecvTimeoutError> {
        if !self.ready() {
            return Err(RecvTimeoutError::Closed);
        }
        let rx = self.rx.as_ref().ok_or(RecvTimeoutError::NotReadable)?;
        // Readable, or the peer is gone (a `recv` would return `Disconnected` at once);
        // the peer is checked after every liveness slice slept.
        match rx.wait_readable_watching(deadline, Some(&mut || !self.check_peer())) {
            Ok(()) | Err(Ended::PeerGone) => Ok(()),
            Err(Ended::TimedOut) => Err(RecvTimeoutError::Timeout),
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
        let fork_child = holders::fork_child();
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
            // peer whose recv sees the disconnect cannot then send into a channel still open.
            if let Some(c) = &self.rx {
                c.disconnect();
            }
            if let Some(c) = &self.tx {
                c.disconnect();
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
