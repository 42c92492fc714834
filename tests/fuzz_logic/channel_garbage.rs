//! Per-input logic of the `channel_garbage` fuzz target, shared with its stable replay
//! (`tests/fuzz_replay.rs`) through `#[path]`, so both run exactly the same code.
//!
//! A channel whose shared memory a hostile or buggy peer overwrote: the input sends a few
//! valid messages, then writes garbage at offsets it chooses anywhere in the segment
//! (indices, frame headers, the robust locks, the event counts, the counters and flags),
//! and then the usual calls run: receives, a send, the queries, a shutdown. Each call must
//! return — `Ok` or an error such as `Corrupted`, `Timeout`, `Full` — without panicking,
//! reading out of bounds or blocking much past its deadline.
//!
//! The robust locks are in the segment too, so garbage can make one look held by another
//! thread: a nonexistent tid counts as a dead owner after a 20 ms liveness slice, so the
//! long deadlines used here (25 ms) are just past one slice. A call still running
//! [`SLACK`] after its deadline is a hang, and fails the input — with one exception, the
//! channel's documented limit (see [`LIMIT`]): a receive that has taken the first frame
//! of a message waits for the rest as long as the write lock's holder looks alive, past its
//! deadline (the deadline bounds the wait for a message to *start*; giving up in the middle
//! would lose the message). The watchdog then frees the lock word, checks that the call
//! returns, and counts the hit ([`LIMIT_HITS`]) instead of failing.
//!
//! Format: byte 0 picks the capacity (`256 << (b % 5)`); byte 1 the number of valid
//! messages to send first (`% 8`), each then given by one length byte (`× 4` bytes; a
//! message that does not fit whole is skipped); byte 2 options (bit 0: receives wait 25 ms
//! instead of not at all; bit 1: the send waits 25 ms; bit 2: the calls go through a clone
//! of the handle; bits 3–5: the length of the message sent, `× 8` bytes; bit 6: send
//! first); then patches until the input runs out, each led by a byte `k`:
//! - `k < 0x80`: a field of the shared header, `ChannelHeader::fields()[k % n]` (offsets
//!   derived from the real struct, so a layout change cannot make an input miss the field
//!   it was written for); then a start byte (`s % size`), a length byte (`1 + l % size`)
//!   and that many bytes, clipped at the field's end;
//! - `k >= 0x80`: the buffer; a `u16` offset from the buffer's start (`% capacity`), a
//!   length byte (`1 + l % 16`) and that many bytes, clipped at the buffer's end.
//!
//! [`Recipe`] writes inputs in this format by field name; the named regression inputs of
//! the corpus are built by [`named_inputs`], and the replay checks that the committed files
//! are exactly what their recipes give today.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use shmproc::raw::RawLock;
use shmproc::raw::{Channel, ChannelHeader, HeaderField};
use shmproc::SendTimeoutError;

/// How long a call may run past its deadline before it counts as a hang.
pub const SLACK: Duration = Duration::from_millis(500);
/// How long a rescued call gets to finish.
const RESCUE: Duration = Duration::from_secs(2);
/// The long deadline: just past one liveness slice (20 ms), so a lock whose owner tid does
/// not exist is taken over.
const LONG_WAIT: Duration = Duration::from_millis(25);

/// The channel's documented limit, the one overrun this target accepts.
pub const LIMIT: &str = "recv past its deadline in the middle of a message while the write lock's \
     holder looks alive (by design: a reader's deadline bounds the wait for a message to \
     start; the rest follows as long as the writer lives)";

/// How many calls so far (in this process) ran into [`LIMIT`].
pub static LIMIT_HITS: AtomicUsize = AtomicUsize::new(0);
static REPORTED: AtomicBool = AtomicBool::new(false);

/// The header's fields, from the crate's own layout.
fn fields() -> Vec<HeaderField> {
    ChannelHeader::fields()
}

/// Byte offset of the header field `name`.
fn field(name: &str) -> usize {
    fields()
        .iter()
        .find(|f| f.0 == name)
        .unwrap_or_else(|| panic!("no header field {name}"))
        .1
}

/// Runs one input: every call must return by its deadline plus [`SLACK`], except where
/// [`LIMIT`] explains the wait. Returns how many calls ran into the limit.
pub fn channel_garbage_input(data: &[u8]) -> usize {
    run(data)
}

/// Ring bytes that a message of `len` bytes takes: 8-byte frame headers, payloads of at most
/// `max_frame` bytes (a multiple of 8) padded to 8.
fn ring_bytes(len: usize, max_frame: usize) -> usize {
    let (whole, rest) = (len / max_frame, len % max_frame);
    let last = if rest > 0 || len == 0 {
        8 + rest.next_multiple_of(8)
    } else {
        0
    };
    whole * (8 + max_frame) + last
}

fn header_len() -> usize {
    std::mem::size_of::<ChannelHeader>()
}

fn word32(chan: &Channel, off: usize) -> &AtomicU32 {
    assert!(off + 4 <= header_len() && off & 3 == 0);
    // SAFETY: inside the header of the live mapping, 4-aligned (the segment data is aligned
    // to 128); the header is made of atomics, so atomic access matches every other access.
    unsafe { &*chan.segment().as_ptr().add(off).cast::<AtomicU32>() }
}

fn write_lock(chan: &Channel) -> &RawLock {
    // The lock word is the `RawLock`'s first field (checked below).
    let off = field("write_lock.word");
    assert!(off + std::mem::size_of::<RawLock>() <= header_len() && off % 8 == 0);
    // SAFETY: `RawLock` is `#[repr(C)]` of atomics (16 bytes, word first) and the channel's
    // write lock is one, at this offset; in bounds and aligned.
    unsafe { &*chan.segment().as_ptr().add(off).cast::<RawLock>() }
}

/// One call the worker makes, with the deadline it was given.
#[derive(Clone, Copy, Debug)]
enum Call {
    Recv,
    Send,
    Queries,
    Shutdown,
}

/// The worker's progress, for the watchdog.
struct Progress {
    /// Index of the call running now (`usize::MAX`: done).
    call: AtomicUsize,
}

fn run(data: &[u8]) -> usize {
    let header = header_len();
    let fields = fields();
    let mut input = data.iter().copied();
    let (Some(b0), Some(b1), Some(opts)) = (input.next(), input.next(), input.next()) else {
        return 0;
    };
    let cap = 256usize << (b0 % 5);
    let chan = Channel::new(cap).expect("create a channel");
    let max_frame = cap / 4 - 8;

    // Valid messages first, each only if it fits whole (nobody reads yet).
    let mut used = 0;
    for k in 0..(b1 % 8) {
        let Some(l) = input.next() else { break };
        let len = usize::from(l) * 4;
        let need = ring_bytes(len, max_frame);
        if used + need > cap {
            continue;
        }
        let msg: Vec<u8> = (0..len).map(|i| (i as u8) ^ k).collect();
        chan.send(&msg, None, Some(Instant::now()))
            .expect("a message that fits whole");
        used += need;
    }

    // Garbage: into a header field, or into the buffer.
    assert_eq!(chan.segment().len(), header + cap);
    let base = chan.segment().as_ptr();
    while let Some(k) = input.next() {
        let (start, end, len) = if k < 0x80 {
            let (Some(s), Some(l)) = (input.next(), input.next()) else {
                break;
            };
            let (_, off, size) = fields[usize::from(k) % fields.len()];
            let at = off + usize::from(s) % size;
            (at, off + size, 1 + usize::from(l) % size)
        } else {
            let (Some(lo), Some(hi), Some(l)) = (input.next(), input.next(), input.next()) else {
                break;
            };
            let at = header + usize::from(u16::from_le_bytes([lo, hi])) % cap;
            (at, header + cap, 1 + usize::from(l % 16))
        };
        for i in 0..len {
            let Some(b) = input.next() else { break };
            if start + i < end {
                // SAFETY: `end` is within the mapping (a header field, or the buffer's end);
                // no other thread uses the channel yet.
                unsafe { base.add(start + i).write_volatile(b) };
            }
        }
    }

    let recv_wait = if opts & 1 != 0 { LONG_WAIT } else { Duration::ZERO };
    let send_wait = if opts & 2 != 0 { LONG_WAIT } else { Duration::ZERO };
    // At most 56 bytes: one frame even in a 256-byte ring, so the send never streams (a
    // message streamed in parts waits for a reader with no deadline once it has started).
    let send_len = usize::from((opts >> 3) & 7) * 8;
    let chan = Arc::new(chan);
    let handle = if opts & 4 != 0 {
        match chan.reopen() {
            Ok(h) => Arc::new(h),
            Err(_) => chan.clone(),
        }
    } else {
        chan.clone()
    };

    let recv = (Call::Recv, recv_wait);
    let send = (Call::Send, send_wait);
    let (first, third) = if opts & 0x40 != 0 {
        (send, recv)
    } else {
        (recv, send)
    };
    let plan = [
        first,
        recv,
        third,
        recv,
        (Call::Queries, Duration::ZERO),
        (Call::Shutdown, Duration::ZERO),
        recv,
        recv,
    ];
    let progress = Arc::new(Progress {
        call: AtomicUsize::new(0),
    });
    let (tx, rx) = mpsc::channel::<()>();
    let worker = {
        let (h, progress) = (handle.clone(), progress.clone());
        std::thread::spawn(move || {
            let mut out = Vec::new();
            for (i, &(call, wait)) in plan.iter().enumerate() {
                progress.call.store(i, Ordering::SeqCst);
                let deadline = Some(Instant::now() + wait);
                match call {
                    Call::Recv => {
                        let r = h.recv_into(&mut out, deadline);
                        if r.is_ok() {
                            // A whole message is at most what the buffer held plus parts
                            // of at most a quarter of it each: never more than the ring.
                            assert!(
                                out.len() <= cap,
                                "received {} bytes from a {cap}-byte ring",
                                out.len()
                            );
                        }
                    }
                    Call::Send => {
                        let msg = vec![0x5a; send_len];
                        match h.send(&msg, None, deadline) {
                            // A scribbled shutdown word of 2 reads as a disconnected pipe.
                            Ok(())
                            | Err(
                                SendTimeoutError::Timeout(())
                                | SendTimeoutError::Closed(())
                                | SendTimeoutError::Disconnected(())
                                | SendTimeoutError::Corrupted(()),
                            ) => {}
                            Err(e) => panic!("send: {e:?}"),
                        }
                    }
                    Call::Queries => {
                        let _ = (h.len(), h.is_empty(), h.is_shutdown());
                        assert_eq!(h.capacity(), cap);
                    }
                    Call::Shutdown => {
                        h.shutdown();
                        assert!(h.is_shutdown());
                    }
                }
            }
            progress.call.store(usize::MAX, Ordering::SeqCst);
            let _ = tx.send(());
        })
    };

    // Watchdog: every call gets its own wait plus SLACK (a call that ends early leaves the
    // rest of its allowance to the next, which only makes the bound looser).
    let mut current = usize::MAX - 1;
    let mut call_deadline = Instant::now();
    let mut rescues = 0;
    let mut limit_hits = 0;
    loop {
        let now_call = progress.call.load(Ordering::SeqCst);
        if now_call != current && now_call != usize::MAX {
            current = now_call;
            call_deadline = Instant::now() + plan[current].1 + SLACK;
        }
        match rx.recv_timeout(Duration::from_millis(5)) {
            Ok(()) => break,
            Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
                Err(p) => std::panic::resume_unwind(p),
                Ok(()) => unreachable!("the worker reports before it ends"),
            },
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if progress.call.load(Ordering::SeqCst) != current || Instant::now() < call_deadline {
            continue;
        }
        // Call `current` overran: only the documented limit may explain it.
        let (call, _) = plan[current];
        let lock = write_lock(&chan);
        let limit = matches!(call, Call::Recv) && lock.is_locked() && !lock.holder_is_dead();
        assert!(
            limit,
            "call {current} ({call:?}) overran its deadline by {SLACK:?}, and not by the \
             channel's documented limit"
        );
        // The reader waits for the rest of a message from the lock's holder: free the lock
        // word, so that it sees the writer gone and drops the partial message.
        word32(&chan, field("write_lock.word")).store(0, Ordering::SeqCst);
        assert!(
            eventually_changes(&progress, current, RESCUE),
            "call {current} ({call:?}) still blocked {:?} after its deadline, though the write \
             lock was freed: {LIMIT}",
            plan[current].1 + SLACK + RESCUE
        );
        limit_hits += 1;
        LIMIT_HITS.fetch_add(1, Ordering::Relaxed);
        if !REPORTED.swap(true, Ordering::Relaxed) {
            eprintln!("channel_garbage: documented limit met (accepted): {LIMIT}");
        }
        rescues += 1;
        assert!(rescues <= plan.len(), "rescued more calls than were made");
        if progress.call.load(Ordering::SeqCst) == usize::MAX {
            // The worker finished during the rescue; its report follows at once.
            rx.recv_timeout(RESCUE).expect("the worker's report");
            break;
        }
    }
    worker.join().expect("the worker");
    limit_hits
}

/// Waits until the worker leaves call `current` (or finishes); `false` after `limit`.
fn eventually_changes(progress: &Progress, current: usize, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while progress.call.load(Ordering::SeqCst) == current {
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

/// Writes an input in this target's format, naming header fields instead of offsets.
#[allow(dead_code)] // Only the replay builds recipes.
pub struct Recipe(Vec<u8>);

#[allow(dead_code)]
impl Recipe {
    /// A channel of `cap` bytes (256 to 4096, a power of two), the valid messages of these
    /// lengths (multiples of 4, at most 1020), and the option byte.
    pub fn new(cap: usize, msgs: &[usize], opts: u8) -> Self {
        let b0 = (cap / 256).trailing_zeros() as u8;
        assert!(256 << b0 == cap && b0 < 5 && msgs.len() < 8, "unencodable recipe");
        let mut v = vec![b0, msgs.len() as u8, opts];
        for &m in msgs {
            assert!(m % 4 == 0 && m / 4 <= 255, "message length {m}");
            v.push((m / 4) as u8);
        }
        Self(v)
    }

    /// Writes `bytes` over the header field `name`, from its start.
    pub fn field(mut self, name: &str, bytes: &[u8]) -> Self {
        let all = fields();
        let k = all
            .iter()
            .position(|f| f.0 == name)
            .unwrap_or_else(|| panic!("no header field {name}"));
        assert!(
            k < 0x80 && !bytes.is_empty() && bytes.len() <= all[k].2,
            "{name}: {bytes:?}"
        );
        self.0.extend([k as u8, 0, (bytes.len() - 1) as u8]);
        self.0.extend_from_slice(bytes);
        self
    }

    /// Writes `bytes` (1 to 16) into the buffer at `off` from its start.
    pub fn buffer(mut self, off: u16, bytes: &[u8]) -> Self {
        assert!((1..=16).contains(&bytes.len()));
        self.0.push(0x80);
        self.0.extend(off.to_le_bytes());
        self.0.push((bytes.len() - 1) as u8);
        self.0.extend_from_slice(bytes);
        self
    }

    pub fn bytes(self) -> Vec<u8> {
        self.0
    }
}

/// A tid that does not exist (above the kernel's `pid_max` limit of 2^22), as a lock word.
#[allow(dead_code)]
const NO_SUCH_TID: [u8; 4] = 0x3fff_fff0u32.to_le_bytes();

/// The corpus's named inputs: what each is for, as a recipe. Inputs whose name starts with
/// `limit-` run into [`LIMIT`]; every other one must not.
#[allow(dead_code)]
pub fn named_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let one = 1u32.to_le_bytes();
    let ff8 = [0xff; 8];
    let r = Recipe::new;
    vec![
        // Frame headers in the buffer: length (u32) then flags (FIRST 1, LAST 2, ABORT 4).
        (
            "abort-with-len",
            r(256, &[12], 0).buffer(0, &[8, 0, 0, 0, 4, 0, 0, 0]),
        ),
        (
            "buffer-noise",
            r(4096, &[200, 240, 280], 0x04)
                .buffer(100, &(0..16).collect::<Vec<u8>>())
                .buffer(8, &[2, 0, 0, 0, 3, 0, 0, 0]),
        ),
        ("frame-first-only", r(256, &[8], 0).buffer(4, &one)),
        (
            "frame-len-huge",
            r(1024, &[20, 20], 0x01).buffer(0, &[0xff, 0xff, 0, 0]),
        ),
        ("stray-continuation", r(256, &[8, 8], 0x01).buffer(4, &[0; 4])),
        // Indices and counters.
        (
            "head-past-tail",
            r(512, &[40], 0x01).field("head", &0x40u64.to_le_bytes()),
        ),
        (
            "tail-garbage",
            r(512, &[40, 80], 0).field("tail", &0x1234_5678u64.to_le_bytes()),
        ),
        (
            "counters-garbage",
            r(2048, &[4, 8, 12], 0x28)
                .field("committed", &ff8)
                .field("consumed", &ff8)
                .field("commit_target", &ff8)
                .field("consume_pos", &ff8)
                .field("shutdown", &[0; 4]),
        ),
        (
            "cached-indices-garbage",
            r(1024, &[20, 40], 0x03)
                .field("cached_head", &ff8)
                .field("cached_tail", &0x10u64.to_le_bytes()),
        ),
        (
            "eventcount-waiters",
            r(4096, &[400, 800], 0x01)
                .field("not_empty", &ff8)
                .field("not_full", &ff8),
        ),
        (
            "shutdown-flag",
            r(256, &[16], 0).field("shutdown", &7u32.to_le_bytes()),
        ),
        ("no-garbage", r(256, &[8, 12, 16], 0)),
        // The robust locks.
        (
            "lock-word-reserved-bit",
            r(256, &[8], 0x02)
                .field("write_lock.word", &(1u32 << 30).to_le_bytes())
                .field("read_lock.word", &(1u32 << 30).to_le_bytes()),
        ),
        (
            "read-lock-dead-tid-mid",
            r(1024, &[160, 240], 0x05)
                .field("read_lock.word", &NO_SUCH_TID)
                .field("reader_mid", &one),
        ),
        (
            "write-lock-dead-tid",
            r(256, &[4], 0x1a)
                .field("write_lock.word", &NO_SUCH_TID)
                .field("write_lock.owner", &[0; 8])
                .field("writer_mid", &one),
        ),
        (
            "send-first-takeover",
            r(256, &[56, 56], 0x5a)
                .field("write_lock.word", &NO_SUCH_TID)
                .field("writer_mid", &one),
        ),
        // Regressions: bugs this target found, fixed in src/ring/channel.rs.
        // A lock word with the reserved bit and no tid counted as a live holder forever.
        (
            "regress-lock-word-without-tid",
            r(256, &[8], 0)
                .buffer(4, &one)
                .field("write_lock.word", &(1u32 << 30).to_le_bytes()),
        ),
        // After taking over a dead writer's lock mid-message, the send waited for room for
        // its ABORT frame with no deadline (the ring full of four 56-byte messages).
        (
            "regress-send-abort-wait-deadline",
            r(256, &[56, 56, 56, 56], 0x42)
                .field("write_lock.word", &NO_SUCH_TID)
                .field("writer_mid", &one),
        ),
        // The documented limit: a message whose first frame arrived and whose writer (the
        // write lock's holder: tid 1, init, always alive) never sends the rest.
        (
            "limit-recv-mid-message-lock-held-by-pid-1",
            r(256, &[8], 0).buffer(4, &one).field("write_lock.word", &one),
        ),
        // The same reached another way (found by the fuzzer): a 256-byte message streamed in
        // three frames, the tail index cut back so the reader sees only the first ones.
        (
            "limit-recv-mid-message-truncated-tail",
            r(512, &[256, 12], 0x80)
                .field("tail", &[0])
                .field("write_lock.word", &one),
        ),
    ]
    .into_iter()
    .map(|(name, recipe)| (name, recipe.bytes()))
    .collect()
}
