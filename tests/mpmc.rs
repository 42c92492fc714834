//! `SlotRing` / `MpmcRing` across real processes, with both start methods: producers and
//! consumers in separate processes (no loss, no duplicate, per-producer order), a capacity
//! that is not a power of two (full / empty / try forms / timeouts that never end early),
//! shutdown waking blocked callers, producers and consumers killed by `SIGKILL` in the
//! middle of their calls, claims left by dead threads, and garbage in the shared words.
//!
//! Every blocking call is bounded (a deadline, `join_timeout`, or the `bounded` watchdog),
//! so a bug fails a test instead of hanging the suite.
// std atomics here are user code (e.g. inside a `Shared<T>`); the shim rule is for the library.
#![allow(clippy::disallowed_types)]

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bounded, eventually, join, kill_and_reap, ms, proc_state, start, LONG, METHODS};
use shmproc::raw::{MpmcRing, SlotRing, SlotRingHeader};
use shmproc::{RawArray, RawValue, SegmentError};
use shmproc::{RecvTimeoutError, SendTimeoutError, TryRecvError, TrySendError};

// ------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------

// Layout (src/ring/mpmc.rs): `tail` at 0, `head` at 128, the control line at 256
// (not_empty, not_full: 8 bytes each; shutdown u32; pad; capacity u64; slot size u64), then
// slots of `16 + slot_size` bytes: state word, owner record, payload.
const HEADER: usize = 384;
const TAIL: usize = 0;
const HEAD: usize = 128;
const CAPACITY: usize = 256 + 24;
const BUSY: u64 = 1 << 31;
const SKIP: u64 = 1 << 30;
/// A thread id above Linux's `PID_MAX_LIMIT` (2^22): no thread can ever have it, so a claim
/// naming it is a claim by a dead thread.
const NO_SUCH_TID: u64 = (1 << 30) - 7;

fn word(ring: &SlotRing, off: usize) -> &AtomicU64 {
    assert_eq!(
        std::mem::size_of::<SlotRingHeader>(),
        HEADER,
        "SlotRingHeader layout changed"
    );
    assert!(off + 8 <= ring.segment().len() && off % 8 == 0);
    // SAFETY: in bounds of the live mapping and 8-aligned (the data is 128-aligned); the
    // ring only touches these words atomically.
    unsafe { &*ring.segment().as_ptr().add(off).cast::<AtomicU64>() }
}

fn slot_state(ring: &SlotRing, i: usize) -> &AtomicU64 {
    word(ring, HEADER + i * (16 + ring.slot_size()))
}

fn state(seq: u64, tag: u64) -> u64 {
    ((seq & 0xffff_ffff) << 32) | tag
}

/// Small deterministic generator for kill delays (no dependency needed).
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("seed {t:#x}");
    t | 1
}

/// Waits until the child `pid` sleeps (state `S`): it has reached its blocking call.
fn wait_until_asleep(pid: u32) {
    std::thread::sleep(ms(100));
    assert!(
        eventually(LONG, || proc_state(pid) == Some('S')),
        "child {pid} never went to sleep"
    );
}

// ------------------------------------------------------------------------------------------
// 2 producers x 2 consumers
// ------------------------------------------------------------------------------------------

const PER_PRODUCER: u64 = 20_000;

fn item(producer: u64, seq: u64) -> u64 {
    (producer << 32) | seq
}

fn produce((ring, id): (MpmcRing<u64>, u64)) {
    for seq in 0..PER_PRODUCER {
        ring.push(item(id, seq), Some(Instant::now() + LONG))
            .expect("push");
    }
}

/// Pops until the ring is shut down and drained; returns the items in arrival order.
fn consume(ring: MpmcRing<u64>) -> Vec<u64> {
    let mut got = Vec::new();
    loop {
        match ring.pop(Some(Instant::now() + LONG)) {
            Ok(v) => got.push(v),
            Err(RecvTimeoutError::Closed) => return got,
            Err(e) => panic!("pop: {e}"),
        }
    }
}

#[test]
fn two_producers_two_consumers_no_loss_no_duplicate_per_producer_order() {
    let _g = common::shared();
    for m in METHODS {
        for cap in [3, 64] {
            let ring = MpmcRing::<u64>::new(cap).unwrap();
            let mut consumers: Vec<_> = (0..2).map(|_| start(m, consume, ring.clone())).collect();
            let mut producers: Vec<_> = (0..2).map(|id| start(m, produce, (ring.clone(), id))).collect();
            for p in &mut producers {
                join(p);
            }
            ring.shutdown();
            let mut all = HashSet::new();
            for c in &mut consumers {
                let got = join(c);
                let mut last = [None::<u64>; 2];
                for v in got {
                    let (id, seq) = (v >> 32, v & 0xffff_ffff);
                    assert!(
                        id < 2 && seq < PER_PRODUCER,
                        "{m:?} cap {cap}: item {v:#x} never pushed"
                    );
                    if let Some(prev) = last[id as usize].replace(seq) {
                        assert!(prev < seq, "{m:?} cap {cap}: producer {id}: {prev} then {seq}");
                    }
                    assert!(all.insert(v), "{m:?} cap {cap}: item {v:#x} delivered twice");
                }
            }
            assert_eq!(all.len() as u64, 2 * PER_PRODUCER, "{m:?} cap {cap}: items lost");
            assert_eq!(ring.len(), 0);
        }
    }
}

// ------------------------------------------------------------------------------------------
// Capacity 3: full, empty, try forms, timeouts
// ------------------------------------------------------------------------------------------

#[test]
fn capacity_three_holds_exactly_three_with_try_forms_and_timeouts() {
    let _g = common::shared();
    let ring = SlotRing::new(3, 5).unwrap();
    assert_eq!((ring.capacity(), ring.slot_size()), (3, 8));
    assert_eq!(ring.try_push(&[0; 9]), Err(TrySendError::TooLarge(())));
    let mut out = [0u8; 8];
    // Several laps, so every slot index and the wrap of `pos % 3` are used.
    for lap in 0u8..5 {
        assert!(ring.is_empty());
        for k in 0..3 {
            ring.try_push(&[lap, k, 1, 2, 3, 4, 5, 6]).unwrap();
            assert_eq!(ring.len(), k as usize + 1);
        }
        assert_eq!(ring.try_push(&[9; 8]), Err(TrySendError::Full(())));
        let t = Instant::now();
        assert_eq!(
            ring.push(&[9; 8], Some(t + ms(50))),
            Err(SendTimeoutError::Timeout(()))
        );
        assert!(t.elapsed() >= ms(50), "push timed out early: {:?}", t.elapsed());
        assert_eq!(ring.len(), 3);
        for k in 0..3 {
            ring.try_pop(&mut out).unwrap();
            assert_eq!(out, [lap, k, 1, 2, 3, 4, 5, 6]);
        }
        assert_eq!(ring.try_pop(&mut out), Err(TryRecvError::Empty));
        let t = Instant::now();
        assert_eq!(
            ring.pop(&mut out, Some(t + ms(50))),
            Err(RecvTimeoutError::Timeout)
        );
        assert!(t.elapsed() >= ms(50), "pop timed out early: {:?}", t.elapsed());
    }
    // A short item and a short output buffer: the bytes asked for, no more.
    ring.try_push(b"abc").unwrap();
    let mut three = [0u8; 3];
    ring.try_pop(&mut three).unwrap();
    assert_eq!(&three, b"abc");
}

fn pop_within((ring, wait_ms): (MpmcRing<u64>, u64)) -> (Result<u64, RecvTimeoutError>, u128) {
    let t = Instant::now();
    let r = ring.pop(Some(t + ms(wait_ms)));
    (r, t.elapsed().as_millis())
}

fn push_within((ring, v, wait_ms): (MpmcRing<u64>, u64, u64)) -> (Result<(), SendTimeoutError<u64>>, u128) {
    let t = Instant::now();
    let r = ring.push(v, Some(t + ms(wait_ms)));
    (r, t.elapsed().as_millis())
}

#[test]
fn timed_calls_across_processes_wait_for_the_other_side_and_never_end_early() {
    let _g = common::shared();
    for m in METHODS {
        let ring = MpmcRing::<u64>::new(3).unwrap();
        // Nothing comes: Empty, after the whole wait.
        let (r, took) = join(&mut start(m, pop_within, (ring.clone(), 80)));
        assert_eq!(r, Err(RecvTimeoutError::Timeout));
        assert!(took >= 80, "{m:?}: pop gave up after {took} ms");
        // An item pushed while the child waits reaches it.
        let mut child = start(m, pop_within, (ring.clone(), 20_000));
        wait_until_asleep(child.pid());
        ring.push(42, None).unwrap();
        assert_eq!(join(&mut child).0, Ok(42));
        // Full ring: the child's push times out after the whole wait...
        for v in 0..3 {
            ring.try_push(v).unwrap();
        }
        let (r, took) = join(&mut start(m, push_within, (ring.clone(), 7, 80)));
        assert_eq!(r, Err(SendTimeoutError::Timeout(7)));
        assert!(took >= 80, "{m:?}: push gave up after {took} ms");
        // ... or completes once we pop.
        let mut child = start(m, push_within, (ring.clone(), 7, 20_000));
        wait_until_asleep(child.pid());
        assert_eq!(ring.try_pop(), Ok(0));
        assert_eq!(join(&mut child).0, Ok(()));
        let rest: Vec<u64> = (0..3).map(|_| ring.try_pop().unwrap()).collect();
        assert_eq!(rest, [1, 2, 7], "{m:?}");
        assert_eq!(ring.try_pop(), Err(TryRecvError::Empty));
    }
}

// ------------------------------------------------------------------------------------------
// Shutdown
// ------------------------------------------------------------------------------------------

fn pop_forever((ring, waiting): (MpmcRing<u64>, RawValue<u32>)) -> Result<u64, RecvTimeoutError> {
    waiting.set(1);
    ring.pop(None)
}

fn push_forever((ring, waiting): (MpmcRing<u64>, RawValue<u32>)) -> Result<(), SendTimeoutError<u64>> {
    waiting.set(1);
    ring.push(99, None)
}

#[test]
fn shutdown_wakes_blocked_pops_and_pushes_and_pops_drain_first() {
    let _g = common::shared();
    for m in METHODS {
        // A pop asleep on an empty ring.
        let ring = MpmcRing::<u64>::new(2).unwrap();
        let waiting = RawValue::new(0u32).unwrap();
        let mut child = start(m, pop_forever, (ring.clone(), waiting.clone()));
        assert!(eventually(LONG, || waiting.get() == 1));
        wait_until_asleep(child.pid());
        ring.shutdown();
        assert_eq!(join(&mut child), Err(RecvTimeoutError::Closed), "{m:?}");

        // A push asleep on a full ring.
        let ring = MpmcRing::<u64>::new(2).unwrap();
        ring.try_push(1).unwrap();
        ring.try_push(2).unwrap();
        let waiting = RawValue::new(0u32).unwrap();
        let mut child = start(m, push_forever, (ring.clone(), waiting.clone()));
        assert!(eventually(LONG, || waiting.get() == 1));
        wait_until_asleep(child.pid());
        ring.shutdown();
        assert_eq!(join(&mut child), Err(SendTimeoutError::Closed(99)), "{m:?}");
        // Pops drain what is there, then report Closed; pushes are refused.
        assert!(ring.is_shutdown());
        assert_eq!(ring.try_push(3), Err(TrySendError::Closed(3)));
        assert_eq!(ring.pop(None), Ok(1));
        assert_eq!(ring.pop(None), Ok(2));
        assert_eq!(ring.pop(None), Err(RecvTimeoutError::Closed));
        assert_eq!(ring.try_pop(), Err(TryRecvError::Closed));
        assert_eq!(ring.len(), 0);
    }
}

// ------------------------------------------------------------------------------------------
// Claims left by dead threads (deterministic: the claim is written into the slot)
// ------------------------------------------------------------------------------------------

#[test]
fn a_producer_claim_left_by_a_dead_thread_is_skipped() {
    let _g = common::shared();
    let ring = SlotRing::new(3, 8).unwrap();
    ring.try_push(&1u64.to_le_bytes()).unwrap();
    ring.try_push(&2u64.to_le_bytes()).unwrap();
    // Position 2: claimed by a thread that is gone, which even moved `tail` on.
    slot_state(&ring, 2).store(state(4, BUSY | NO_SUCH_TID), SeqCst);
    word(&ring, TAIL).store(3, SeqCst);
    assert_eq!(ring.len(), 3);
    let mut out = [0u8; 8];
    ring.try_pop(&mut out).unwrap();
    assert_eq!(u64::from_le_bytes(out), 1);
    ring.try_pop(&mut out).unwrap();
    assert_eq!(u64::from_le_bytes(out), 2);
    // A blocking pop waits one liveness slice, finds the claimer dead, skips the slot (its
    // item never existed) and then finds nothing more.
    let t = Instant::now();
    assert_eq!(
        ring.pop(&mut out, Some(t + ms(300))),
        Err(RecvTimeoutError::Timeout)
    );
    assert!(t.elapsed() >= ms(300));
    assert_eq!(ring.len(), 0);
    // The ring goes on normally, through the skipped slot's next lap too.
    for v in 10..16u64 {
        ring.push(&v.to_le_bytes(), Some(Instant::now() + LONG)).unwrap();
        ring.pop(&mut out, Some(Instant::now() + LONG)).unwrap();
        assert_eq!(u64::from_le_bytes(out), v);
    }
    assert_eq!(ring.len(), 0);
}

#[test]
fn a_dead_producer_claim_is_skipped_by_a_loop_of_try_pops() {
    let _g = common::shared();
    let ring = SlotRing::new(4, 8).unwrap();
    // Position 0 claimed by a dead thread (which never moved `tail`); position 1 pushed.
    slot_state(&ring, 0).store(state(0, BUSY | NO_SUCH_TID), SeqCst);
    word(&ring, TAIL).store(0, SeqCst);
    ring.try_push(&7u64.to_le_bytes()).unwrap(); // helps `tail` past the claim first
    let mut out = [0u8; 8];
    let t = Instant::now();
    let got = loop {
        match ring.try_pop(&mut out) {
            Ok(()) => break u64::from_le_bytes(out),
            Err(TryRecvError::Empty) => {
                assert!(t.elapsed() < LONG, "try_pop never got past the dead claim");
                std::thread::sleep(ms(1));
            }
            Err(e) => panic!("try_pop: {e}"),
        }
    };
    assert_eq!(got, 7);
    assert!(
        t.elapsed() >= ms(20),
        "the claim was skipped before a liveness slice"
    );
    assert_eq!(ring.len(), 0);
}

#[test]
fn a_reader_claim_left_by_a_dead_thread_frees_its_slot() {
    let _g = common::shared();
    let ring = SlotRing::new(2, 8).unwrap();
    ring.try_push(&1u64.to_le_bytes()).unwrap();
    ring.try_push(&2u64.to_le_bytes()).unwrap();
    // Position 0 taken by a reader that died holding it (after moving `head`).
    slot_state(&ring, 0).store(state(1, BUSY | NO_SUCH_TID), SeqCst);
    word(&ring, HEAD).store(1, SeqCst);
    let mut out = [0u8; 8];
    ring.try_pop(&mut out).unwrap();
    assert_eq!(u64::from_le_bytes(out), 2);
    // Position 2 needs slot 0: the push waits a slice, finds the reader dead and goes on
    // (item 1 is lost: at most once at a reader's death).
    assert_eq!(ring.try_push(&3u64.to_le_bytes()), Err(TrySendError::Full(())));
    let t = Instant::now();
    ring.push(&3u64.to_le_bytes(), Some(t + LONG)).unwrap();
    assert!(t.elapsed() >= ms(20));
    ring.push(&4u64.to_le_bytes(), Some(Instant::now() + LONG))
        .unwrap();
    for v in [3u64, 4] {
        ring.try_pop(&mut out).unwrap();
        assert_eq!(u64::from_le_bytes(out), v);
    }
    assert_eq!(ring.len(), 0);
}

#[test]
fn a_claim_naming_a_live_thread_only_costs_the_deadline() {
    let _g = common::shared();
    // A hostile peer can stall the ring (like a lock it never releases) but a deadline
    // still ends the wait.
    let ring = SlotRing::new(2, 8).unwrap();
    slot_state(&ring, 0).store(state(0, BUSY | 1), SeqCst); // pid 1 is alive
    word(&ring, TAIL).store(1, SeqCst);
    let mut out = [0u8; 8];
    let t = Instant::now();
    assert_eq!(
        ring.pop(&mut out, Some(t + ms(100))),
        Err(RecvTimeoutError::Timeout)
    );
    assert!(t.elapsed() >= ms(100) && t.elapsed() < ms(5000));
    ring.shutdown();
    // Still waiting for that "producer": a shutdown does not make the item vanish.
    assert_eq!(
        ring.pop(&mut out, Some(Instant::now() + ms(50))),
        Err(RecvTimeoutError::Timeout)
    );
}

// ------------------------------------------------------------------------------------------
// Processes killed in the middle of a push or a pop
// ------------------------------------------------------------------------------------------

/// Large slots: the side to be killed copies a whole slot per call (much of its time goes
/// between its claim and its publish or release), the other side only a 16-byte item.
/// Odd trials kill the child at a random moment; even trials freeze it (SIGSTOP) at a moment
/// it holds a claimed slot and kill it there, so the dead-claimer recovery runs on a real
/// killed process in half the trials for sure (the tests assert it).
const BIG_SLOT: usize = 1024 * 1024;
const KILL_TRIALS: usize = 12;

/// Marks an item: its sequence number and its complement.
fn fill(buf: &mut [u8], seq: u64) {
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    buf[8..16].copy_from_slice(&(!seq).to_le_bytes());
}

/// The item's sequence number, after checking its mark.
fn check(buf: &[u8]) -> u64 {
    let seq = u64::from_le_bytes(buf[..8].try_into().unwrap());
    assert_eq!(
        u64::from_le_bytes(buf[8..16].try_into().unwrap()),
        !seq,
        "torn item {seq}"
    );
    seq
}

fn push_until_killed(ring: SlotRing) {
    let mut buf = vec![0u8; ring.slot_size()];
    for seq in 0.. {
        fill(&mut buf, seq);
        ring.push(&buf, None).expect("push");
    }
}

/// Whether some slot is claimed (a `BUSY` tag) right now.
fn busy_slots(ring: &SlotRing) -> usize {
    (0..ring.capacity())
        .filter(|&i| slot_state(ring, i).load(SeqCst) & BUSY != 0)
        .count()
}

/// Slots claimed (a `BUSY` tag) by thread `tid` right now; a child's only thread that
/// touches the ring is its main thread, whose tid is its pid.
fn claims_by(ring: &SlotRing, tid: u32) -> usize {
    (0..ring.capacity())
        .map(|i| slot_state(ring, i).load(SeqCst))
        .filter(|&st| st & BUSY != 0 && st & (SKIP - 1) == u64::from(tid))
        .count()
}

#[test]
fn producers_killed_mid_push_lose_only_their_unfinished_item() {
    let _g = common::shared();
    let mut rng = XorShift(seed());
    let mut mid_claim = 0;
    for trial in 0..KILL_TRIALS {
        let m = METHODS[trial % 2];
        let ring = SlotRing::new(4, BIG_SLOT).unwrap();
        let mut child = start(m, push_until_killed, ring.clone());
        let dead = Arc::new(AtomicBool::new(false));
        let consumer = {
            let (ring, dead) = (ring.clone(), dead.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 16];
                let mut got = Vec::new();
                loop {
                    // Once the producer is dead, the first timeout ends the drain (a dead
                    // claim takes a liveness slice to be skipped).
                    match ring.pop(&mut buf, Some(Instant::now() + ms(300))) {
                        Ok(()) => got.push(check(&buf)),
                        Err(RecvTimeoutError::Timeout) if dead.load(SeqCst) => return got,
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(e) => panic!("pop: {e}"),
                    }
                }
            })
        };
        // Let it run 5-40 ms after it started pushing, then kill it wherever it is (odd
        // trials) or once it is caught holding a claimed slot (even trials).
        assert!(eventually(LONG, || !ring.is_empty() || busy_slots(&ring) > 0));
        std::thread::sleep(Duration::from_micros(5_000 + rng.below(35_000)));
        let pid = child.pid();
        if trial % 2 == 0 {
            assert!(
                common::stop_when(pid, 2000, || claims_by(&ring, pid) > 0),
                "{m:?} trial {trial}: never caught the producer holding a slot"
            );
        }
        kill_and_reap(&mut child);
        // Whether it died holding a slot (the others need a liveness slice to see that).
        if claims_by(&ring, pid) > 0 {
            mid_claim += 1;
        }
        dead.store(true, SeqCst);
        let got = bounded("drain after the kill", move || consumer.join().unwrap());
        // Items 0..n in order: nothing lost but (at most) the push that never returned,
        // which is simply the next number that did not come.
        for (k, &seq) in got.iter().enumerate() {
            assert_eq!(seq, k as u64, "{m:?} trial {trial}: item {k} is {seq}");
        }
        // (Possibly none: a loaded machine can kill it inside its first push.)
        assert_eq!(ring.len(), 0, "{m:?} trial {trial}: len after the drain");
        assert_eq!(busy_slots(&ring), 0, "{m:?} trial {trial}: a claim survived");
        // The ring goes on: a full lap and more.
        let mut buf = [0u8; 16];
        for seq in 100..110 {
            fill(&mut buf, seq);
            ring.push(&buf, Some(Instant::now() + LONG)).unwrap();
            buf.fill(0);
            ring.pop(&mut buf, Some(Instant::now() + LONG)).unwrap();
            assert_eq!(check(&buf), seq);
        }
    }
    eprintln!("producers killed while holding a claimed slot: {mid_claim} of {KILL_TRIALS}");
    assert!(
        mid_claim >= KILL_TRIALS / 2,
        "the forced trials must kill mid-claim"
    );
}

fn pop_until_killed((ring, log, count): (SlotRing, RawArray<u64>, RawValue<u64>)) {
    let mut buf = vec![0u8; ring.slot_size()];
    for n in 0.. {
        ring.pop(&mut buf, None).expect("pop");
        log.set(n, check(&buf)).expect("log full");
        count.set(n as u64 + 1);
    }
}

#[test]
fn consumers_killed_mid_pop_lose_at_most_their_one_item() {
    let _g = common::shared();
    let mut rng = XorShift(seed());
    let mut mid_claim = 0;
    for trial in 0..KILL_TRIALS {
        let m = METHODS[trial % 2];
        let ring = SlotRing::new(3, BIG_SLOT).unwrap();
        let log = RawArray::<u64>::new(1 << 20).unwrap();
        let count = RawValue::new(0u64).unwrap();
        let mut child = start(m, pop_until_killed, (ring.clone(), log.clone(), count.clone()));
        let stop = Arc::new(AtomicBool::new(false));
        let pushed = Arc::new(AtomicU64::new(0));
        let producer = {
            let (ring, stop, pushed) = (ring.clone(), stop.clone(), pushed.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 16];
                let mut seq = 0;
                while !stop.load(SeqCst) {
                    fill(&mut buf, seq);
                    // A dead reader's slot costs one liveness slice, never a hang.
                    ring.push(&buf, Some(Instant::now() + LONG)).expect("push");
                    seq += 1;
                    pushed.store(seq, SeqCst);
                }
            })
        };
        assert!(eventually(LONG, || count.get() > 0));
        std::thread::sleep(Duration::from_micros(5_000 + rng.below(35_000)));
        let pid = child.pid();
        if trial % 2 == 0 {
            assert!(
                common::stop_when(pid, 2000, || claims_by(&ring, pid) > 0),
                "{m:?} trial {trial}: never caught the consumer holding a slot"
            );
        }
        kill_and_reap(&mut child);
        // Whether it died holding a slot (the others need a liveness slice to see that).
        if claims_by(&ring, pid) > 0 {
            mid_claim += 1;
        }
        stop.store(true, SeqCst);
        // Drain while the producer finishes its last push (a push that needs the dead
        // reader's slot gets it after a liveness slice: its `expect` is the hang check).
        let mut drained = Vec::new();
        let mut buf = [0u8; 16];
        loop {
            match ring.pop(&mut buf, Some(Instant::now() + ms(300))) {
                Ok(()) => drained.push(check(&buf)),
                Err(RecvTimeoutError::Timeout) if producer.is_finished() => break,
                Err(RecvTimeoutError::Timeout) => {}
                Err(e) => panic!("{m:?} trial {trial}: drain: {e}"),
            }
        }
        producer.join().unwrap();
        let total = pushed.load(SeqCst);
        let logged: Vec<u64> = (0..count.get() as usize).map(|i| log.get(i).unwrap()).collect();
        let mut seen = HashSet::new();
        for &s in logged.iter().chain(&drained) {
            assert!(s < total, "{m:?} trial {trial}: item {s} was never pushed");
            assert!(seen.insert(s), "{m:?} trial {trial}: item {s} delivered twice");
        }
        let lost = total - seen.len() as u64;
        assert!(
            lost <= 1,
            "{m:?} trial {trial}: {lost} items lost, at most 1 allowed"
        );
        // The child took items in order, and the drain goes on where it stopped.
        assert!(
            logged.windows(2).all(|w| w[0] < w[1]),
            "{m:?} trial {trial}: child order"
        );
        assert!(
            drained.windows(2).all(|w| w[0] < w[1]),
            "{m:?} trial {trial}: drain order"
        );
        assert_eq!(ring.len(), 0, "{m:?} trial {trial}: len after the drain");
        // A dead reader's claim behind `head` is recovered when a push needs its slot: one
        // more lap frees every slot.
        let mut buf = [0u8; 16];
        for seq in 1000..1000 + 2 * ring.capacity() as u64 {
            fill(&mut buf, seq);
            ring.push(&buf, Some(Instant::now() + LONG)).unwrap();
            ring.pop(&mut buf, Some(Instant::now() + LONG)).unwrap();
            assert_eq!(check(&buf), seq);
        }
        assert_eq!(
            busy_slots(&ring),
            0,
            "{m:?} trial {trial}: a claim survived a lap"
        );
        assert_eq!(ring.len(), 0);
    }
    eprintln!("consumers killed while holding a claimed slot: {mid_claim} of {KILL_TRIALS}");
    assert!(
        mid_claim >= KILL_TRIALS / 2,
        "the forced trials must kill mid-claim"
    );
}

// ------------------------------------------------------------------------------------------
// Garbage in the shared words
// ------------------------------------------------------------------------------------------

#[test]
fn garbage_in_the_shared_words_is_corrupted_not_a_hang() {
    let _g = common::shared();
    // `push` / `pop`: whether those calls must report `Corrupted`.
    let check_calls = |ring: &SlotRing, what: &str, push: bool, pop: bool| {
        let mut out = [0u8; 8];
        let t = Instant::now();
        if push {
            assert_eq!(
                ring.try_push(&[1; 8]),
                Err(TrySendError::Corrupted(())),
                "{what}: try_push"
            );
            assert_eq!(
                ring.push(&[1; 8], Some(Instant::now() + ms(50))),
                Err(SendTimeoutError::Corrupted(())),
                "{what}: push"
            );
        }
        if pop {
            assert_eq!(
                ring.try_pop(&mut out),
                Err(TryRecvError::Corrupted),
                "{what}: try_pop"
            );
            assert_eq!(
                ring.pop(&mut out, Some(Instant::now() + ms(50))),
                Err(RecvTimeoutError::Corrupted),
                "{what}: pop"
            );
        }
        assert!(t.elapsed() < ms(2000), "{what}: took {:?}", t.elapsed());
    };

    // A tag no correct peer writes (SKIP on a slot waiting for its item).
    let ring = SlotRing::new(3, 8).unwrap();
    slot_state(&ring, 0).store(state(0, SKIP), SeqCst);
    check_calls(&ring, "SKIP on an even seq", true, true);

    // A BUSY tag naming thread 0.
    let ring = SlotRing::new(3, 8).unwrap();
    slot_state(&ring, 0).store(state(0, BUSY), SeqCst);
    check_calls(&ring, "BUSY without a tid", true, true);

    // Indices far from every slot's sequence number.
    let ring = SlotRing::new(3, 8).unwrap();
    word(&ring, TAIL).store(0x1234_5678_9abc, SeqCst);
    check_calls(&ring, "garbage tail", true, false);
    let ring = SlotRing::new(3, 8).unwrap();
    word(&ring, HEAD).store(u64::MAX - 5, SeqCst);
    check_calls(&ring, "garbage head", false, true);
    let _ = ring.len(); // any value, no panic

    // A sequence number from another lap entirely.
    let ring = SlotRing::new(5, 8).unwrap();
    slot_state(&ring, 0).store(state(777, 0), SeqCst);
    check_calls(&ring, "seq from nowhere", true, true);

    // A geometry that does not match the segment: new handles are refused.
    let ring = MpmcRing::<u64>::new(4).unwrap();
    word(ring.slots(), CAPACITY).store(5, SeqCst);
    assert!(matches!(ring.reopen(), Err(SegmentError::Corrupt(_))));
    word(ring.slots(), CAPACITY).store(0, SeqCst);
    assert!(matches!(ring.reopen(), Err(SegmentError::Corrupt(_))));
    word(ring.slots(), CAPACITY).store(4, SeqCst);
    assert!(ring.reopen().is_ok());
}

fn geometry_of(ring: SlotRing) -> (usize, usize) {
    (ring.capacity(), ring.slot_size())
}

fn sum_all(ring: MpmcRing<[u32; 3]>) -> u64 {
    let mut s = 0;
    while let Ok(v) = ring.try_pop() {
        s += v.iter().map(|&x| u64::from(x)).sum::<u64>();
    }
    s
}

#[test]
fn handles_reach_children_with_their_geometry() {
    let _g = common::shared();
    for m in METHODS {
        let ring = SlotRing::new(5, 100).unwrap();
        assert_eq!(join(&mut start(m, geometry_of, ring.clone())), (5, 104));
        let typed = MpmcRing::<[u32; 3]>::new(3).unwrap();
        assert_eq!(typed.slots().slot_size(), 16);
        for k in 0..3 {
            typed.try_push([k, 10 * k, 100 * k]).unwrap();
        }
        assert_eq!(join(&mut start(m, sum_all, typed.clone())), 333);
        assert!(typed.is_empty());
    }
}

#[test]
fn rejected_geometries() {
    let _g = common::shared();
    assert!(matches!(SlotRing::new(0, 8), Err(SegmentError::InvalidSize(_))));
    assert!(matches!(SlotRing::new(4, 0), Err(SegmentError::InvalidSize(_))));
    assert!(matches!(
        MpmcRing::<u64>::new(0),
        Err(SegmentError::InvalidSize(_))
    ));
    assert!(matches!(
        SlotRing::new(shmproc::raw::MAX_CAPACITY + 1, 8),
        Err(SegmentError::TooLarge(_))
    ));
    assert!(matches!(
        MpmcRing::<()>::new(4),
        Err(SegmentError::Unsupported(_))
    ));
    let one = MpmcRing::<u8>::new(1).unwrap();
    one.try_push(5).unwrap();
    assert_eq!(one.try_push(6), Err(TrySendError::Full(6)));
    assert_eq!(one.try_pop(), Ok(5));
}

/// Threads of one process on one handle: the ring is `Sync`.
#[test]
fn threads_share_one_handle() {
    let _g = common::shared();
    let ring = Arc::new(MpmcRing::<u64>::new(5).unwrap());
    let done = Arc::new(AtomicU32::new(0));
    let producers: Vec<_> = (0..3u64)
        .map(|id| {
            let (ring, done) = (ring.clone(), done.clone());
            std::thread::spawn(move || {
                for seq in 0..10_000 {
                    ring.push(item(id, seq), Some(Instant::now() + LONG)).unwrap();
                }
                done.fetch_add(1, SeqCst);
            })
        })
        .collect();
    let mut last = [None::<u64>; 3];
    let mut n = 0;
    while n < 30_000 {
        let v = ring.pop(Some(Instant::now() + LONG)).unwrap();
        let (id, seq) = ((v >> 32) as usize, v & 0xffff_ffff);
        if let Some(prev) = last[id].replace(seq) {
            assert!(prev < seq, "producer {id}: {prev} then {seq}");
        }
        n += 1;
    }
    for p in producers {
        p.join().unwrap();
    }
    assert_eq!(done.load(SeqCst), 3);
    assert!(ring.is_empty());
}

// ------------------------------------------------------------------------------------------
// Nothing leaks
// ------------------------------------------------------------------------------------------

fn push_pop((ring, n): (MpmcRing<u64>, u64)) -> u64 {
    for i in 0..n {
        ring.push(i, Some(Instant::now() + LONG)).expect("push");
    }
    (0..n)
        .map(|_| ring.pop(Some(Instant::now() + LONG)).expect("pop"))
        .sum()
}

fn mpmc_leak_scenario(m: shmproc::StartMethod) {
    let ring = MpmcRing::<u64>::new(8).unwrap();
    for _ in 0..2 {
        assert_eq!(join(&mut start(m, push_pop, (ring.clone(), 5))), 10);
    }
    // A consumer killed while it sleeps in pop.
    let waiting = RawValue::new(0u32).unwrap();
    let mut c = start(m, pop_forever, (ring.clone(), waiting.clone()));
    assert!(eventually(LONG, || waiting.get() == 1));
    wait_until_asleep(c.pid());
    kill_and_reap(&mut c);
    ring.try_push(1).unwrap();
    assert_eq!(ring.try_pop().unwrap(), 1);
}

/// No zombie, fd or `/dev/shm` entry is left after children used a ring and a sleeping
/// consumer was killed (both start methods).
#[test]
fn nothing_leaks_after_children_used_a_ring_and_were_killed() {
    let _g = common::exclusive();
    for m in METHODS {
        let ring = MpmcRing::<u64>::new(8).unwrap();
        assert_eq!(join(&mut start(m, push_pop, (ring.clone(), 1))), 0);
    }
    common::assert_leaves_nothing(mpmc_leak_scenario);
}
