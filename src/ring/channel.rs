//! `Channel`: whole messages of bytes over a byte ring, for any number of writers and
//! readers in any processes, serialized per side by robust locks. `Queue` and `Connection`
//! are built on it.
//!
//! Writers take the write lock for a whole message, so the frames of two messages never
//! interleave and a message larger than the ring streams through in parts while the reader
//! drains it. Readers take the read lock for a whole message.
//!
//! Death of a peer in the middle of a message:
//! - a writer that dies after writing part of a message leaves `writer_mid` set; the next
//!   writer takes the lock over (`OwnerDied`) and first writes an `ABORT` frame, and a reader
//!   waiting for the rest notices the dead lock holder and drops the partial message;
//! - a reader that dies after consuming part of a message leaves `reader_mid` set; the next
//!   reader skips the remaining frames of that message. That message is lost (it was never
//!   returned to anyone); every other message is delivered exactly once. A reader killed
//!   after its last frame was consumed but before its call returned loses that message too:
//!   delivery is *at most once* at a reader's death, exactly once otherwise.
//! - the message counts behind `len()` are updated in two steps (target and ring position
//!   first, count after), and the next holder of the lock completes an update a dead holder
//!   left half done, so the counts stay exact.
//!
//! A sender's deadline bounds the whole message: one that runs out of time after part of
//! its message moved gives up, and readers drop the part as for a dead writer. A reader's
//! deadline bounds the wait for a message to *start*: once its first frame has arrived,
//! the rest follows as long as the writer lives and keeps writing. A hostile peer that
//! keeps a lock it never uses can therefore stall the others (it could also just never
//! write); it cannot cause undefined behaviour.
//!
//! Errors are the channel family's, with `()` for the item (the caller still has its bytes):
//! a send returns [`SendTimeoutError`] (`Timeout(())` when its deadline passes), a receive
//! [`RecvTimeoutError`]. After [`shutdown`](Channel::shutdown) both report `Closed` (a
//! receive once drained); after [`disconnect`](Channel::disconnect) (a pipe whose other end
//! no process holds any more) they report `Disconnected`.

use std::time::Instant;

use super::bytes::{ByteRing, ByteRingIndices, ABORT, FIRST, LAST};
use super::eventcount::{Ended, EventCount};
use super::pad::CachePadded;
use crate::error::{RecvTimeoutError, SegmentError, SendTimeoutError};
use crate::loom::{AtomicU32, AtomicU64, Ordering};
use crate::shm::Fingerprint;
use crate::sync::{Acquired, LockFail, RawLock};
use crate::Segment;

/// Shared control block of a channel: the writers' line, the readers' line and the wait
/// words, each on its own cache line so a writer and a reader touch each other's lines only
/// when a cached index runs out (or someone sleeps).
#[repr(C)]
#[derive(Debug, Default)]
pub struct ChannelCtl {
    w: CachePadded<WriterCtl>,
    r: CachePadded<ReaderCtl>,
    wake: CachePadded<WakeCtl>,
}

/// Written by the current writer only.
#[repr(C)]
#[derive(Debug, Default)]
struct WriterCtl {
    write_lock: RawLock,
    /// Messages fully written (minus `consumed`: the exact length).
    committed: AtomicU64,
    /// A count update in flight: `committed` becomes `commit_target` once `tail` reaches
    /// `commit_pos`. The next lock holder finishes an update its dead predecessor started,
    /// so the count never drifts.
    commit_target: AtomicU64,
    commit_pos: AtomicU64,
    writer_mid: AtomicU32,
    _pad: AtomicU32,
    /// The readers' `head` as last seen by a writer (never ahead of the real one).
    cached_head: AtomicU64,
}

/// Written by the current reader only.
#[repr(C)]
#[derive(Debug, Default)]
struct ReaderCtl {
    read_lock: RawLock,
    consumed: AtomicU64,
    consume_target: AtomicU64,
    consume_pos: AtomicU64,
    reader_mid: AtomicU32,
    _pad: AtomicU32,
    /// The writers' `tail` as last seen by a reader (never ahead of the real one).
    cached_tail: AtomicU64,
}

/// Read on every message, written only to sleep, wake or shut down.
#[repr(C)]
#[derive(Debug, Default)]
struct WakeCtl {
    not_empty: EventCount,
    not_full: EventCount,
    /// 0: open; [`DISCONNECTED`]: no process holds the other end; anything else: shut down.
    shutdown: AtomicU32,
    _pad: AtomicU32,
}

/// `shutdown` word of a channel shut down with [`Channel::shutdown`].
const SHUT_DOWN: u32 = 1;
/// `shutdown` word of a channel shut down with [`Channel::disconnect`].
const DISCONNECTED: u32 = 2;

/// Why a lock of one side could not be taken.
enum Stuck {
    Timeout,
    Corrupted,
}

impl Stuck {
    fn send(self) -> SendTimeoutError<()> {
        match self {
            Self::Timeout => SendTimeoutError::Timeout(()),
            Self::Corrupted => SendTimeoutError::Corrupted(()),
        }
    }

    fn recv(self) -> RecvTimeoutError {
        match self {
            Self::Timeout => RecvTimeoutError::Timeout,
            Self::Corrupted => RecvTimeoutError::Corrupted,
        }
    }
}

/// The error of a send whose wait for room ended without it.
fn send_stuck(end: Ended) -> SendTimeoutError<()> {
    match end {
        Ended::TimedOut => SendTimeoutError::Timeout(()),
        Ended::PeerGone => SendTimeoutError::Disconnected(()),
    }
}

/// Whether the monotonic index `index` has reached `pos`.
fn reached(index: u64, pos: u64) -> bool {
    index.wrapping_sub(pos) < 1 << 63
}

/// Completes (or drops) a count update a dead lock holder left in flight: if the ring index
/// reached the recorded position, the frame moved and `count` takes the target. Returns
/// whether it did. Call with the side's lock held.
fn finish_pending(target: &AtomicU64, pos: &AtomicU64, index: u64, count: &AtomicU64) -> bool {
    let t = target.load(Ordering::Relaxed);
    if t == 0 {
        return false;
    }
    let moved = reached(index, pos.load(Ordering::Relaxed));
    if moved {
        count.fetch_max(t, Ordering::AcqRel);
    }
    target.store(0, Ordering::Relaxed);
    moved
}

/// The shared part of a channel: ring indices, control block, then the buffer.
#[repr(C)]
#[derive(Debug, Default)]
pub struct ChannelHeader {
    idx: ByteRingIndices,
    ctl: CachePadded<ChannelCtl>,
}

const HEADER: usize = std::mem::size_of::<ChannelHeader>();

/// One field of a channel's shared header: its name, byte offset and size.
pub type HeaderField = (&'static str, usize, usize);

impl ChannelHeader {
    /// Every field of the shared header (name, byte offset from the header's start, size),
    /// derived from the struct definitions, so tests and fuzz targets that write garbage into
    /// chosen fields keep hitting them when the layout changes. Padding is not listed; the
    /// buffer starts at `size_of::<ChannelHeader>()`.
    #[doc(hidden)]
    pub fn fields() -> Vec<HeaderField> {
        use std::mem::{offset_of, size_of};
        let (tail, head) = ByteRingIndices::offsets();
        let idx = offset_of!(ChannelHeader, idx);
        let ctl = offset_of!(ChannelHeader, ctl) + offset_of!(CachePadded<ChannelCtl>, 0);
        let w = ctl + offset_of!(ChannelCtl, w) + offset_of!(CachePadded<WriterCtl>, 0);
        let r = ctl + offset_of!(ChannelCtl, r) + offset_of!(CachePadded<ReaderCtl>, 0);
        let k = ctl + offset_of!(ChannelCtl, wake) + offset_of!(CachePadded<WakeCtl>, 0);
        let (word, owner) = (RawLock::WORD_OFFSET, RawLock::OWNER_OFFSET);
        let (u32s, u64s, ecs) = (size_of::<u32>(), size_of::<u64>(), size_of::<EventCount>());
        vec![
            ("tail", idx + tail, u64s),
            ("head", idx + head, u64s),
            (
                "write_lock.word",
                w + offset_of!(WriterCtl, write_lock) + word,
                u32s,
            ),
            (
                "write_lock.owner",
                w + offset_of!(WriterCtl, write_lock) + owner,
                u64s,
            ),
            ("committed", w + offset_of!(WriterCtl, committed), u64s),
            ("commit_target", w + offset_of!(WriterCtl, commit_target), u64s),
            ("commit_pos", w + offset_of!(WriterCtl, commit_pos), u64s),
            ("writer_mid", w + offset_of!(WriterCtl, writer_mid), u32s),
            ("cached_head", w + offset_of!(WriterCtl, cached_head), u64s),
            (
                "read_lock.word",
                r + offset_of!(ReaderCtl, read_lock) + word,
                u32s,
            ),
            (
                "read_lock.owner",
                r + offset_of!(ReaderCtl, read_lock) + owner,
                u64s,
            ),
            ("consumed", r + offset_of!(ReaderCtl, consumed), u64s),
            ("consume_target", r + offset_of!(ReaderCtl, consume_target), u64s),
            ("consume_pos", r + offset_of!(ReaderCtl, consume_pos), u64s),
            ("reader_mid", r + offset_of!(ReaderCtl, reader_mid), u32s),
            ("cached_tail", r + offset_of!(ReaderCtl, cached_tail), u64s),
            ("not_empty", k + offset_of!(WakeCtl, not_empty), ecs),
            ("not_full", k + offset_of!(WakeCtl, not_full), ecs),
            ("shutdown", k + offset_of!(WakeCtl, shutdown), u32s),
        ]
    }
}

fn fingerprint() -> Fingerprint {
    Fingerprint::new(
        2,
        std::mem::align_of::<ChannelHeader>() as u64,
        "shmproc::Channel",
    )
}

/// A message channel in its own segment. Cheap to clone a handle of; see the module docs.
#[derive(Clone, Debug)]
pub struct Channel {
    seg: Segment,
    cap: usize,
    /// Under loom: the buffer's stand-in, shared by the handles cloned from this one.
    #[cfg(loom)]
    shadow: std::sync::Arc<crate::loom::Shadow>,
}

impl Channel {
    /// A channel with a buffer of `capacity` bytes (rounded up to a power of two ≥ 256;
    /// `0` is [`SegmentError::InvalidSize`]).
    pub fn new(capacity: usize) -> Result<Self, SegmentError> {
        if capacity == 0 {
            return Err(SegmentError::InvalidSize("a buffer needs at least one byte"));
        }
        let cap = capacity
            .max(256)
            .checked_next_power_of_two()
            .ok_or(SegmentError::TooLarge(capacity as u128))?;
        let len = HEADER
            .checked_add(cap)
            .ok_or(SegmentError::TooLarge(cap as u128))?;
        let seg = Segment::anonymous(fingerprint(), len)?;
        // SAFETY: a new zeroed segment, aligned for the header, not shared yet.
        unsafe { std::ptr::write(seg.as_ptr().cast::<ChannelHeader>(), ChannelHeader::default()) };
        Self::wrap(seg)
    }

    pub(crate) fn wrap(seg: Segment) -> Result<Self, SegmentError> {
        let cap = seg
            .len()
            .checked_sub(HEADER)
            .ok_or(SegmentError::Corrupt("channel segment too short"))?;
        if cap < 256 || !cap.is_power_of_two() {
            return Err(SegmentError::Corrupt("channel buffer is not a power of two"));
        }
        Ok(Self {
            seg,
            cap,
            #[cfg(loom)]
            shadow: std::sync::Arc::new(crate::loom::Shadow::new(cap / 8)),
        })
    }

    /// Validates the shared header again, as a child receiving this channel does (fuzz
    /// targets check that a scribbled header is refused).
    #[doc(hidden)]
    pub fn reopen(&self) -> Result<Self, SegmentError> {
        #[allow(unused_mut)]
        let mut c = Self::wrap(self.seg.clone())?;
        #[cfg(loom)]
        {
            c.shadow = self.shadow.clone();
        }
        Ok(c)
    }

    /// The underlying segment.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    fn header(&self) -> &ChannelHeader {
        // SAFETY: the segment starts with a `ChannelHeader` (aligned; atomics only).
        unsafe { &*self.seg.as_ptr().cast::<ChannelHeader>() }
    }

    fn ctl(&self) -> &ChannelCtl {
        &self.header().ctl
    }

    fn ring(&self) -> ByteRing<'_> {
        // SAFETY: the buffer is the `cap` bytes after the header (checked in `wrap`), 8-aligned
        // (the header size is a multiple of 128), mapped while `self` lives, and used only
        // through byte rings over this header's indices.
        let ring = unsafe { ByteRing::new(&self.header().idx, self.seg.as_ptr().add(HEADER), self.cap) };
        #[cfg(loom)]
        let ring = ring.with_shadow(&self.shadow);
        ring
    }

    /// Buffer size in bytes.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Messages in the channel now (exact when no message is half written or read).
    pub fn len(&self) -> u64 {
        let c = self.ctl();
        c.w.committed
            .load(Ordering::Acquire)
            .saturating_sub(c.r.consumed.load(Ordering::Acquire))
    }

    /// Whether no message is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Shuts the channel down: blocked and later sends fail with `Closed`; receivers drain
    /// what is there, then get `Closed` (Python 3.13's `Queue.shutdown()`).
    pub fn shutdown(&self) {
        self.close_with(SHUT_DOWN);
    }

    /// Shuts the channel down as [`shutdown`](Self::shutdown) does, for a pipe whose other
    /// end is gone: sends and drained receives then fail with `Disconnected` instead of
    /// `Closed`.
    pub fn disconnect(&self) {
        self.close_with(DISCONNECTED);
    }

    fn close_with(&self, word: u32) {
        let c = self.ctl();
        c.wake.shutdown.store(word, Ordering::SeqCst);
        c.wake.not_empty.notify();
        c.wake.not_full.notify();
    }

    /// The error of a send that met the shutdown.
    #[cold]
    fn send_closed(&self) -> SendTimeoutError<()> {
        match self.ctl().wake.shutdown.load(Ordering::Acquire) {
            DISCONNECTED => SendTimeoutError::Disconnected(()),
            _ => SendTimeoutError::Closed(()),
        }
    }

    /// The error of a receive that found the channel shut down and drained.
    #[cold]
    fn recv_closed(&self) -> RecvTimeoutError {
        match self.ctl().wake.shutdown.load(Ordering::Acquire) {
            DISCONNECTED => RecvTimeoutError::Disconnected,
            _ => RecvTimeoutError::Closed,
        }
    }

    /// Whether the channel was shut down.
    pub fn is_shutdown(&self) -> bool {
        self.ctl().wake.shutdown.load(Ordering::Acquire) != 0
    }

    fn lock(lock: &RawLock, deadline: Option<Instant>) -> Result<Acquired, Stuck> {
        lock.lock(deadline).map_err(|e| match e {
            LockFail::Timeout | LockFail::WouldBlock => Stuck::Timeout,
            _ => Stuck::Corrupted,
        })
    }

    /// Spins, then sleeps on `ec` until `ready()` or `deadline` (the crate's one wait
    /// loop); `false` on timeout.
    #[inline]
    fn wait_for(ec: &EventCount, deadline: Option<Instant>, ready: impl Fn() -> bool) -> bool {
        ec.spin_wait_until(deadline, || ready().then_some(())).is_some()
    }

    /// Waits for room to start a message (`fits`), watching the reader if given `alive`.
    fn wait_room(
        c: &ChannelCtl,
        deadline: Option<Instant>,
        fits: impl Fn() -> bool,
        alive: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<(), SendTimeoutError<()>> {
        Self::wait_watching(&c.wake.not_full, deadline, fits, alive).map_err(send_stuck)
    }

    /// [`wait_for`](Self::wait_for) that, given `alive`, also sleeps in liveness slices and
    /// asks it after each: `Err(PeerGone)` once it says no.
    fn wait_watching(
        ec: &EventCount,
        deadline: Option<Instant>,
        ready: impl Fn() -> bool,
        alive: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<(), Ended> {
        let ready = || ready().then_some(());
        match alive {
            None => ec.spin_wait_until(deadline, ready).ok_or(Ended::TimedOut),
            Some(alive) => ec.spin_wait_while_alive(deadline, ready, alive),
        }
    }

    /// Sends one message. `item_limit` (if any) caps the number of queued messages. The
    /// deadline bounds the whole message (see the module docs); `Timeout(())` when it
    /// passes first.
    pub fn send(
        &self,
        msg: &[u8],
        item_limit: Option<u64>,
        deadline: Option<Instant>,
    ) -> Result<(), SendTimeoutError<()>> {
        self.send_streaming(msg, item_limit, deadline, deadline, &mut || true)
    }

    /// `send` with separate bounds: `start_by` for the message to start (the write lock,
    /// room for the first frame, the item limit) and `finish_by` for the rest of it. While
    /// it waits for room mid-message it calls `reader_alive` every liveness slice and gives
    /// up with `Disconnected` once that says no (a pipe whose reader died must not hold its
    /// writer forever). A message given up mid-way is dropped by the readers, as for a dead
    /// writer.
    pub fn send_streaming(
        &self,
        msg: &[u8],
        item_limit: Option<u64>,
        start_by: Option<Instant>,
        finish_by: Option<Instant>,
        reader_alive: &mut dyn FnMut() -> bool,
    ) -> Result<(), SendTimeoutError<()>> {
        self.send_watching(msg, item_limit, start_by, finish_by, reader_alive, false)
    }

    /// [`send_streaming`](Self::send_streaming); with `watch_start`, the waits for room to
    /// start the message (not the item limit's) also ask `reader_alive` every liveness
    /// slice (a pipe's send: `Disconnected` as soon as the reader is found gone).
    pub(crate) fn send_watching(
        &self,
        msg: &[u8],
        item_limit: Option<u64>,
        start_by: Option<Instant>,
        finish_by: Option<Instant>,
        reader_alive: &mut dyn FnMut() -> bool,
        watch_start: bool,
    ) -> Result<(), SendTimeoutError<()>> {
        let deadline = start_by;

        let c = self.ctl();
        Self::lock(&c.w.write_lock, deadline).map_err(Stuck::send)?;
        let _unlock = Unlock(&c.w.write_lock);
        let ring = self.ring();
        let tail = ring.own_tail().map_err(|_| SendTimeoutError::Corrupted(()))?;
        finish_pending(&c.w.commit_target, &c.w.commit_pos, tail, &c.w.committed);
        if c.w.writer_mid.load(Ordering::Relaxed) != 0 {
            // The previous writer died (or gave up) mid-message: tell readers to drop its
            // partial message first.
            let fits = || ring.fits(0).unwrap_or(true);
            Self::wait_room(c, deadline, fits, watch_start.then_some(&mut *reader_alive))?;
            if !ring
                .try_write(&[], ABORT)
                .map_err(|_| SendTimeoutError::Corrupted(()))?
            {
                return Err(SendTimeoutError::Corrupted(()));
            }
            c.w.writer_mid.store(0, Ordering::Relaxed);
            c.wake.not_empty.notify();
        }
        let closed = || c.wake.shutdown.load(Ordering::Acquire) != 0;
        if closed() {
            return Err(self.send_closed());
        }
        if let Some(limit) = item_limit {
            let room = || closed() || self.len() < limit;
            if !Self::wait_for(&c.wake.not_full, deadline, room) {
                return Err(SendTimeoutError::Timeout(()));
            }
            if closed() {
                return Err(self.send_closed());
            }
        }
        let max = ring.max_frame();
        let parts = msg.len().div_ceil(max).max(1);
        for (k, part) in msg
            .chunks(max)
            .chain((msg.is_empty()).then_some(&[][..]))
            .enumerate()
        {
            let mut flags = 0;
            if k == 0 {
                flags |= FIRST;
            }
            if k + 1 == parts {
                flags |= LAST;
            }
            // The deadline only bounds the wait for the message to start: once part of it
            // is out, the rest follows as readers drain it (readers drain after a shutdown
            // too), like a blocking write to a pipe.
            let fast = ring
                .fits_cached(part.len(), &c.w.cached_head)
                .map_err(|_| SendTimeoutError::Corrupted(()))?;
            if fast {
                if k == 0 && closed() {
                    return Err(self.send_closed());
                }
            } else if k == 0 {
                let fits = || closed() || ring.fits(part.len()).unwrap_or(true);
                Self::wait_room(c, deadline, fits, watch_start.then_some(&mut *reader_alive))?;
                if closed() {
                    return Err(self.send_closed());
                }
            } else {
                // Mid-message: wait in liveness slices, asking `reader_alive` after each.
                let fits = || ring.fits(part.len()).unwrap_or(true).then_some(());
                if let Err(end) = c
                    .wake
                    .not_full
                    .spin_wait_while_alive(finish_by, fits, &mut *reader_alive)
                {
                    // Out of time or out of readers mid-message: give up. `writer_mid`
                    // stays set, so the next writer sends ABORT first, and a reader waiting
                    // for the rest sees the write lock free and drops the part, as for a
                    // dead writer.
                    c.wake.not_empty.notify();
                    return Err(send_stuck(end));
                }
            }
            // Mark the message in progress *before* its first frame is visible, so a writer
            // killed right after publishing it still leaves the mark for the next writer.
            let mut target = 0;
            if flags & LAST == 0 {
                c.w.writer_mid.store(1, Ordering::Relaxed);
            } else {
                target = c.w.committed.load(Ordering::Relaxed).wrapping_add(1).max(1);
                let pos = ring
                    .own_tail_after(part.len())
                    .map_err(|_| SendTimeoutError::Corrupted(()))?;
                c.w.commit_pos.store(pos, Ordering::Relaxed);
                c.w.commit_target.store(target, Ordering::Relaxed);
            }
            if !ring
                .write_checked(part, flags, &c.w.cached_head)
                .map_err(|_| SendTimeoutError::Corrupted(()))?
            {
                return Err(SendTimeoutError::Corrupted(()));
            }
            if flags & LAST != 0 {
                c.w.committed.store(target, Ordering::Release);
                c.w.commit_target.store(0, Ordering::Relaxed);
                c.w.writer_mid.store(0, Ordering::Relaxed);
            }
            c.wake.not_empty.notify();
        }
        Ok(())
    }

    /// Receives one whole message, appending it to `out` (cleared first). `Timeout` if no
    /// message starts before `deadline`.
    pub fn recv_into(&self, out: &mut Vec<u8>, deadline: Option<Instant>) -> Result<(), RecvTimeoutError> {
        self.recv_watching(out, deadline, None)
    }

    /// [`recv_into`](Self::recv_into); given `writer_alive`, the wait for a message to
    /// start also asks it every liveness slice (a pipe's receive: `Disconnected` once the
    /// writer is found gone and nothing is left to read).
    pub(crate) fn recv_watching(
        &self,
        out: &mut Vec<u8>,
        deadline: Option<Instant>,
        mut writer_alive: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<(), RecvTimeoutError> {
        out.clear();
        let c = self.ctl();
        let how = Self::lock(&c.r.read_lock, deadline).map_err(Stuck::recv)?;
        let _unlock = Unlock(&c.r.read_lock);
        let ring = self.ring();
        let head = ring.own_head().map_err(|_| RecvTimeoutError::Corrupted)?;
        if finish_pending(&c.r.consume_target, &c.r.consume_pos, head, &c.r.consumed) {
            // That reader had taken its message's last frame: nothing left to skip.
            c.r.reader_mid.store(0, Ordering::Relaxed);
        }
        // Frames left over from a reader that died mid-message are skipped up to its LAST.
        let mut skipping =
            matches!(how, Acquired::OwnerDied(_)) && c.r.reader_mid.load(Ordering::Relaxed) != 0;
        let mut mid = false;
        loop {
            let frame = ring
                .peek_cached(&c.r.cached_tail)
                .map_err(|_| RecvTimeoutError::Corrupted)?;
            let Some(info) = frame else {
                if mid || skipping {
                    // The rest of this message must come from a live writer. It holds the
                    // write lock for the whole message: if nobody holds it, or its holder
                    // died, the rest will never come. Checked every liveness slice.
                    let more = || (!matches!(ring.peek(), Ok(None))).then_some(());
                    let writer = &c.w.write_lock;
                    let writer_alive = || writer.is_locked() && !writer.holder_is_dead();
                    let ended = c.wake.not_empty.spin_wait_while_alive(None, more, writer_alive);
                    // Looked at again after the lock: the writer may have finished and
                    // unlocked since the last look at the ring.
                    if ended.is_err() && matches!(ring.peek(), Ok(None)) {
                        // Its writer died: the next writer will send ABORT; drop the part.
                        out.clear();
                        mid = false;
                        skipping = false;
                        c.r.reader_mid.store(0, Ordering::Relaxed);
                    }
                    continue;
                }
                let drained_closed = || c.wake.shutdown.load(Ordering::Acquire) != 0;
                if drained_closed() {
                    return Err(self.recv_closed());
                }
                let ready = || !matches!(ring.peek(), Ok(None)) || drained_closed();
                match Self::wait_watching(
                    &c.wake.not_empty,
                    deadline,
                    ready,
                    writer_alive.as_mut().map(|a| &mut **a as _),
                ) {
                    Ok(()) => continue,
                    Err(Ended::TimedOut) => return Err(RecvTimeoutError::Timeout),
                    // Nothing left to read (looked at after the last `alive`).
                    Err(Ended::PeerGone) => return Err(RecvTimeoutError::Disconnected),
                }
            };
            if info.flags & ABORT != 0 {
                ring.skip_cached(info).map_err(|_| RecvTimeoutError::Corrupted)?;
                out.clear();
                mid = false;
                skipping = false;
                c.r.reader_mid.store(0, Ordering::Relaxed);
                c.wake.not_full.notify();
                continue;
            }
            if skipping && info.flags & FIRST != 0 {
                // The dead reader had finished its message after all: this one is new.
                skipping = false;
                c.r.reader_mid.store(0, Ordering::Relaxed);
            }
            if skipping || (!mid && info.flags & FIRST == 0) {
                // A stray continuation: the rest of a message whose reader died.
                ring.skip_cached(info).map_err(|_| RecvTimeoutError::Corrupted)?;
                if info.flags & LAST != 0 {
                    skipping = false;
                    c.r.reader_mid.store(0, Ordering::Relaxed);
                    c.r.consumed.fetch_add(1, Ordering::AcqRel);
                }
                c.wake.not_full.notify();
                continue;
            }
            if mid && info.flags & FIRST != 0 {
                // A new message while ours is unfinished: its writer died without an ABORT
                // reaching us. Drop the partial one and take the new one.
                out.clear();
            }
            let mut target = 0;
            if info.flags & LAST != 0 {
                target = c.r.consumed.load(Ordering::Relaxed).wrapping_add(1).max(1);
                let pos = ring
                    .own_head()
                    .map_err(|_| RecvTimeoutError::Corrupted)?
                    .wrapping_add(ByteRing::frame_size(info.len as usize));
                c.r.consume_pos.store(pos, Ordering::Relaxed);
                c.r.consume_target.store(target, Ordering::Relaxed);
            }
            ring.take_cached(info, out)
                .map_err(|_| RecvTimeoutError::Corrupted)?;
            if info.flags & LAST != 0 {
                c.r.consumed.store(target, Ordering::Release);
                c.r.consume_target.store(0, Ordering::Relaxed);
                c.r.reader_mid.store(0, Ordering::Relaxed);
                c.wake.not_full.notify();
                return Ok(());
            }
            c.wake.not_full.notify();
            mid = true;
            c.r.reader_mid.store(1, Ordering::Relaxed);
        }
    }

    /// Waits until a message (or part of one) is in the ring or the channel is shut down,
    /// so that a receive would not wait; `Timeout` if `deadline` passed first. Consumes
    /// nothing.
    pub fn wait_readable(&self, deadline: Option<Instant>) -> Result<(), RecvTimeoutError> {
        self.wait_readable_watching(deadline, None)
            .map_err(|_| RecvTimeoutError::Timeout)
    }

    /// [`wait_readable`](Self::wait_readable); given `writer_alive`, also asks it every
    /// liveness slice (`Err(PeerGone)` once it says no).
    pub(crate) fn wait_readable_watching(
        &self,
        deadline: Option<Instant>,
        writer_alive: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<(), Ended> {
        let c = self.ctl();
        let ring = self.ring();
        let ready = || !matches!(ring.peek(), Ok(None)) || c.wake.shutdown.load(Ordering::Acquire) != 0;
        Self::wait_watching(&c.wake.not_empty, deadline, ready, writer_alive)
    }

    /// Receives one whole message.
    pub fn recv(&self, deadline: Option<Instant>) -> Result<Vec<u8>, RecvTimeoutError> {
        let mut v = Vec::new();
        self.recv_into(&mut v, deadline).map(|()| v)
    }
}

/// Releases a lock when dropped (also when unwinding).
struct Unlock<'a>(&'a RawLock);

impl Drop for Unlock<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl serde::Serialize for Channel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.seg.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Channel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let seg = crate::shm::transfer::deserialize_segment(d, Some(&fingerprint()))?;
        Self::wrap(seg).map_err(|e| crate::shm::transfer::fail::<D::Error>(e.to_string()))
    }
}
