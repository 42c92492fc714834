//! Per-input logic of the `mpmc_garbage` fuzz target, shared with its stable replay
//! (`tests/fuzz_replay.rs`) through `#[path]`, so both run exactly the same code.
//!
//! A `SlotRing` whose shared memory a hostile or buggy peer overwrote: the input pushes a
//! few valid items, then writes garbage at offsets it chooses (the indices, the event
//! counts, the shutdown word, the stored geometry, slot states, owner records, payloads),
//! and then the usual calls run on a worker thread, each with a short deadline: pops, a
//! push, the queries, a shutdown. Each call must return `Ok` (a pop: with its bytes in the
//! caller's buffer and nothing written past the slot size) or one of `Empty`, `Full`,
//! `Closed`, `Corrupted` — never `TooLarge` for an item that fits — without panicking,
//! touching memory out of bounds (the fuzzer runs under AddressSanitizer) or running much
//! past its deadline. A slot state naming a thread that does not exist is a dead claimer:
//! the long deadline (25 ms) is just past one liveness slice (20 ms), so such claims get
//! recovered on the way.
//!
//! Format: byte 0 picks the capacity (`1 + b % 6`), byte 1 the number of valid items to
//! push first (`% 8`, as many as fit), byte 2 options (bit 0: the calls wait 25 ms instead
//! of not at all; bit 1: they go through a clone of the handle, if the garbage leaves one
//! possible; bit 2: the push comes first); then patches until the input runs out: `u16`
//! offset (bit 15 set: into the 384-byte header, else anywhere in the segment), a length
//! byte (`1 + l % 16`) and that many bytes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use shmproc::raw::{SlotRing, SlotRingHeader};
use shmproc::{RecvTimeoutError, SendTimeoutError, TrySendError};

/// How long a call may run past its deadline before it counts as a hang (generous: a
/// liveness check reads `/proc`, and the fuzzer may run on a loaded machine).
pub const SLACK: Duration = Duration::from_millis(500);
/// The long deadline: just past one liveness slice (20 ms).
const LONG_WAIT: Duration = Duration::from_millis(25);
const HEADER: usize = 384;
const SLOT: usize = 16;
const DIRT: u8 = 0xee;

#[derive(Clone, Copy, Debug)]
enum Call {
    Pop,
    Push,
    Queries,
    Shutdown,
}

/// Runs one input; panics if a call panics, misbehaves or overruns its deadline.
pub fn mpmc_garbage_input(data: &[u8]) {
    assert_eq!(
        std::mem::size_of::<SlotRingHeader>(),
        HEADER,
        "SlotRingHeader layout changed"
    );
    let mut input = data.iter().copied();
    let (Some(b0), Some(b1), Some(opts)) = (input.next(), input.next(), input.next()) else {
        return;
    };
    let cap = 1 + usize::from(b0 % 6);
    let ring = SlotRing::new(cap, SLOT).expect("create a ring");
    for k in 0..usize::from(b1 % 8).min(cap) {
        ring.try_push(&[k as u8; SLOT]).expect("room for a valid item");
    }

    // Garbage.
    let seg_len = ring.segment().len();
    assert_eq!(seg_len, HEADER + cap * (16 + SLOT));
    let base = ring.segment().as_ptr();
    while let (Some(lo), Some(hi), Some(l)) = (input.next(), input.next(), input.next()) {
        let raw = usize::from(u16::from_le_bytes([lo, hi]));
        let off = if raw & 0x8000 != 0 {
            (raw & 0x7fff) % HEADER
        } else {
            raw % seg_len
        };
        for i in 0..1 + usize::from(l % 16) {
            let Some(b) = input.next() else { break };
            if off + i < seg_len {
                // SAFETY: in bounds of the mapping; no other thread uses the ring yet.
                unsafe { base.add(off + i).write_volatile(b) };
            }
        }
    }

    let wait = if opts & 1 != 0 { LONG_WAIT } else { Duration::ZERO };
    let ring = Arc::new(ring);
    let handle = if opts & 2 != 0 {
        // The stored geometry may be garbage now: a new handle is refused, never wrong.
        match ring.reopen() {
            Ok(h) => {
                assert_eq!((h.capacity(), h.slot_size()), (cap, SLOT));
                Arc::new(h)
            }
            Err(_) => ring.clone(),
        }
    } else {
        ring.clone()
    };
    let (first, third) = if opts & 4 != 0 {
        (Call::Push, Call::Pop)
    } else {
        (Call::Pop, Call::Push)
    };
    let plan = [
        first,
        Call::Pop,
        third,
        Call::Pop,
        Call::Queries,
        Call::Shutdown,
        Call::Pop,
        Call::Push,
        Call::Pop,
    ];

    let progress = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel::<()>();
    let worker = {
        let (h, progress) = (handle.clone(), progress.clone());
        std::thread::spawn(move || {
            for (i, &call) in plan.iter().enumerate() {
                progress.store(i, Ordering::SeqCst);
                let deadline = Some(Instant::now() + wait);
                match call {
                    Call::Pop => {
                        let mut out = [DIRT; SLOT + 4];
                        match h.pop(&mut out, deadline) {
                            Ok(()) => {
                                assert!(out[SLOT..].iter().all(|&b| b == DIRT), "pop wrote past the slot")
                            }
                            Err(
                                RecvTimeoutError::Timeout
                                | RecvTimeoutError::Closed
                                | RecvTimeoutError::Corrupted,
                            ) => {}
                            Err(e) => panic!("pop: {e:?}"),
                        }
                    }
                    Call::Push => match h.push(&[0x5a; SLOT], deadline) {
                        Ok(())
                        | Err(
                            SendTimeoutError::Timeout(())
                            | SendTimeoutError::Closed(())
                            | SendTimeoutError::Corrupted(()),
                        ) => {}
                        Err(e) => panic!("push: {e:?}"),
                    },
                    Call::Queries => {
                        assert!(h.len() <= cap, "len {} > capacity {cap}", h.len());
                        let _ = (h.is_empty(), h.is_shutdown());
                        assert_eq!((h.capacity(), h.slot_size()), (cap, SLOT));
                    }
                    Call::Shutdown => {
                        h.shutdown();
                        assert!(h.is_shutdown());
                        assert_eq!(h.try_push(&[1; SLOT]), Err(TrySendError::Closed(())));
                    }
                }
            }
            progress.store(usize::MAX, Ordering::SeqCst);
            let _ = tx.send(());
        })
    };

    // Watchdog: every call gets its wait plus SLACK.
    let mut current = usize::MAX - 1;
    let mut call_deadline = Instant::now();
    loop {
        let now_call = progress.load(Ordering::SeqCst);
        if now_call != current && now_call != usize::MAX {
            current = now_call;
            call_deadline = Instant::now() + wait + SLACK;
        }
        match rx.recv_timeout(Duration::from_millis(5)) {
            Ok(()) => break,
            Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
                Err(p) => std::panic::resume_unwind(p),
                Ok(()) => unreachable!("the worker reports before it ends"),
            },
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if progress.load(Ordering::SeqCst) == current && Instant::now() >= call_deadline {
            panic!(
                "call {current} ({:?}) still running {:?} after its deadline",
                plan[current], SLACK
            );
        }
    }
    worker.join().expect("the worker");
}
