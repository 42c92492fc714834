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
//! [`SLACK`] after its deadline is a hang. Known hangs (see [`KNOWN`]) are rescued — the
//! watchdog clears the condition they wait on — and, in the tolerant mode the fuzz target
//! and the corpus replay use, counted instead of failing, so fuzzing goes on to find other
//! bugs; [`channel_garbage_strict`] fails on them.
//!
//! Format: byte 0 picks the capacity (`256 << (b % 5)`); byte 1 the number of valid
//! messages to send first (`% 8`), each then given by one length byte (`× 4` bytes; a
//! message that does not fit whole is skipped); byte 2 options (bit 0: receives wait 25 ms
//! instead of not at all; bit 1: the send waits 25 ms; bit 2: the calls go through a clone
//! of the handle; bits 3–5: the length of the message sent, `× 8` bytes; bit 6: send first); then patches
//! until the input runs out: `u16` offset (bit 15 set: into the 384-byte header, else
//! anywhere in the segment), a length byte (`1 + l % 16`), and that many bytes.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use shmproc::ring::{ChanError, Channel, ChannelHeader, EventCount};
use shmproc::sync::RawLock;

/// How long a call may run past its deadline before it counts as a hang.
pub const SLACK: Duration = Duration::from_millis(500);
/// How long a rescued call gets to finish.
const RESCUE: Duration = Duration::from_secs(2);
/// The long deadline: just past one liveness slice (20 ms), so a lock whose owner tid does
/// not exist is taken over.
const LONG_WAIT: Duration = Duration::from_millis(25);

// Layout of `ChannelHeader` (src/ring/channel.rs): `ByteRingIndices` (tail, head: each a
// 128-byte `CachePadded<AtomicU64>`), then `ChannelCtl`, three 128-byte lines: the writers'
// (write_lock, a 16-byte `RawLock`; committed, commit_target, commit_pos (u64); writer_mid,
// _pad (u32); cached_head (u64)), the readers' (same shape) and the wait words (not_empty,
// not_full: 8-byte event counts; shutdown, _pad). The buffer follows the header.
const HEADER: usize = 640;
const TAIL: usize = 0;
const HEAD: usize = 128;
const WRITE_LOCK: usize = 256;
const NOT_FULL: usize = 512 + 8;
const WRITER_MID: usize = 256 + 40;

/// Hangs found by this target and not fixed yet, by the call that overran.
pub const KNOWN: [&str; 2] = [
    "recv past its deadline in the middle of a message while the write lock looks held by a \
     live or unidentifiable thread (channel.rs recv_into: the mid-message wait ignores the \
     deadline; a lock word with no tid is never 'dead')",
    "send past its deadline waiting for room for an ABORT frame after taking over a dead \
     writer's lock (channel.rs send: wait_for(.., None, ..) in the OwnerDied branch)",
];

/// Known hangs met so far by this process (tolerant mode), per entry of [`KNOWN`].
pub static KNOWN_HITS: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
static REPORTED: [AtomicBool; 2] = [AtomicBool::new(false), AtomicBool::new(false)];

/// Runs one input, tolerating the hangs listed in [`KNOWN`] (rescued and counted).
pub fn channel_garbage_input(data: &[u8]) {
    run(data, false);
}

/// Runs one input; any call that overruns its deadline fails, known or not.
#[allow(dead_code)] // Only the replay's known-hangs test calls it.
pub fn channel_garbage_strict(data: &[u8]) {
    run(data, true);
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

fn word32(chan: &Channel, off: usize) -> &AtomicU32 {
    assert!(off + 4 <= HEADER && off & 3 == 0);
    // SAFETY: inside the header of the live mapping, 4-aligned (the segment data is aligned
    // to 128); the header is made of atomics, so atomic access matches every other access.
    unsafe { &*chan.segment().as_ptr().add(off).cast::<AtomicU32>() }
}

fn word64(chan: &Channel, off: usize) -> &AtomicU64 {
    assert!(off + 8 <= HEADER && off & 7 == 0);
    // SAFETY: as in `word32`, 8-aligned.
    unsafe { &*chan.segment().as_ptr().add(off).cast::<AtomicU64>() }
}

fn write_lock(chan: &Channel) -> &RawLock {
    // SAFETY: `RawLock` is `#[repr(C)]` of atomics (16 bytes) and the channel's write lock
    // is one, at this offset; in bounds and aligned.
    unsafe { &*chan.segment().as_ptr().add(WRITE_LOCK).cast::<RawLock>() }
}

fn not_full(chan: &Channel) -> &EventCount {
    // SAFETY: `EventCount` is `#[repr(C)]` of two `AtomicU32` (8 bytes) and the channel's
    // `not_full` is one, at this offset; in bounds and aligned.
    unsafe { &*chan.segment().as_ptr().add(NOT_FULL).cast::<EventCount>() }
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

fn run(data: &[u8], strict: bool) {
    assert_eq!(
        std::mem::size_of::<ChannelHeader>(),
        HEADER,
        "ChannelHeader layout changed"
    );
    let mut input = data.iter().copied();
    let (Some(b0), Some(b1), Some(opts)) = (input.next(), input.next(), input.next()) else {
        return;
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

    // Garbage.
    let seg_len = chan.segment().len();
    assert_eq!(seg_len, HEADER + cap);
    let base = chan.segment().as_ptr();
    while let (Some(lo), Some(hi), Some(l)) = (input.next(), input.next(), input.next()) {
        let raw = usize::from(u16::from_le_bytes([lo, hi]));
        let off = if raw & 0x8000 != 0 {
            (raw & 0x7fff) % HEADER
        } else {
            raw % seg_len
        };
        let len = 1 + usize::from(l % 16);
        for i in 0..len {
            let Some(b) = input.next() else { break };
            if off + i < seg_len {
                // SAFETY: in bounds of the mapping; no other thread uses the channel yet.
                unsafe { base.add(off + i).write_volatile(b) };
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
        match chan.clone_handle() {
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
                            Ok(())
                            | Err(
                                ChanError::Full
                                | ChanError::Timeout
                                | ChanError::Closed
                                | ChanError::Corrupted,
                            ) => {}
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
        // Call `current` overran: find out which known hang it is, and get it unstuck.
        let (call, _) = plan[current];
        let known = match call {
            Call::Recv if write_lock(&chan).is_locked() && !write_lock(&chan).holder_is_dead() => {
                // The reader waits for the rest of a message from the lock holder: free the
                // lock word, so that it sees the writer gone and drops the partial message.
                word32(&chan, WRITE_LOCK).store(0, Ordering::SeqCst);
                Some(0)
            }
            Call::Send if word32(&chan, WRITER_MID).load(Ordering::SeqCst) != 0 => {
                // The sender sleeps until there is room for its ABORT frame: empty the ring
                // and wake it.
                let tail = word64(&chan, TAIL).load(Ordering::SeqCst);
                word64(&chan, HEAD).store(tail, Ordering::SeqCst);
                not_full(&chan).notify();
                Some(1)
            }
            _ => None,
        };
        let unstuck = eventually_changes(&progress, current, RESCUE);
        let what = match known {
            Some(k) => KNOWN[k],
            None => "an unknown hang",
        };
        assert!(
            unstuck,
            "call {current} ({call:?}) still blocked {:?} after its deadline and a rescue: {what}",
            plan[current].1 + SLACK + RESCUE
        );
        match known {
            Some(k) if !strict => {
                KNOWN_HITS[k].fetch_add(1, Ordering::Relaxed);
                if !REPORTED[k].swap(true, Ordering::Relaxed) {
                    eprintln!("channel_garbage: known bug (tolerated): {}", KNOWN[k]);
                }
            }
            _ => panic!("call {current} ({call:?}) overran its deadline by {SLACK:?}: {what}"),
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
