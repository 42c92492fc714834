//! `Queue`, `SimpleQueue` and `JoinableQueue` across real child processes, with both start
//! methods: many producers and consumers on a small buffer, the blocking / timeout /
//! non-blocking forms, `maxsize`, `close` and `shutdown`, messages far larger than the
//! buffer and sizes around the frame boundary, the Pod codec, decode errors, task
//! accounting, and processes killed by `SIGKILL` in the middle of a message.
//!
//! Every blocking call is bounded — a timeout, `join_timeout`, or a watchdog thread for the
//! calls that have no timeout form — so a bug fails a test instead of hanging the suite.
//! Children are daemons: one left behind by a failing test dies with the test's thread.
// std atomics here are user code (e.g. inside a `Shared<T>`); the shim rule is for the library.
#![allow(clippy::disallowed_types)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{bounded, eventually, join, kill_and_reap, ms, proc_state, start, JOIN, LONG, METHODS};
use serde::{Deserialize, Serialize};
use shmproc::{
    Codec, Event, JoinTimeoutError, JoinableQueue, PodCodec, Process, ProcessError, Queue, RecvError,
    RecvTimeoutError, SendError, SendTimeoutError, Shared, ShmSafe, SimpleQueue, StartMethod, TaskDoneError,
    TryRecvError, TrySendError,
};

// ------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------

/// How long the tests let a child run into a blocking call before acting on it.
const SETTLE: Duration = Duration::from_millis(100);

/// Sends `SIGKILL` and reaps the child; `false` if it had finished on its own first.
fn kill_if_running(p: &mut Process<()>) -> bool {
    p.kill().expect("kill");
    match p.join_timeout(JOIN) {
        Err(ProcessError::Killed(9)) => true,
        Ok(()) => false,
        Err(e) => panic!("child {}: expected death by SIGKILL, got {e}", p.pid()),
    }
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).expect("signal");
}

/// Waits until the child `pid` sleeps (state `S`) — it has reached its blocking call.
fn wait_until_asleep(pid: u32) {
    std::thread::sleep(SETTLE);
    assert!(
        eventually(LONG, || proc_state(pid) == Some('S')),
        "child {pid} never went to sleep"
    );
}

/// A message that checks itself: who sent it, its rank in that producer's stream, a
/// patterned payload and a checksum over all of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Msg {
    producer: u32,
    seq: u32,
    payload: Vec<u8>,
    sum: u64,
}

fn fnv(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

fn checksum(producer: u32, seq: u32, payload: &[u8]) -> u64 {
    let h = fnv(0xcbf2_9ce4_8422_2325, &producer.to_le_bytes());
    fnv(fnv(h, &seq.to_le_bytes()), payload)
}

fn make(producer: u32, seq: u32, len: usize) -> Msg {
    let payload: Vec<u8> = (0..len)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(producer * 7 + seq) as u8)
        .collect();
    Msg {
        producer,
        seq,
        sum: checksum(producer, seq, &payload),
        payload,
    }
}

fn intact(m: &Msg) -> bool {
    m.sum == checksum(m.producer, m.seq, &m.payload)
}

/// `(producer, seq)` packed in one word.
fn key(producer: u32, seq: u32) -> u64 {
    (u64::from(producer) << 32) | u64::from(seq)
}

fn unkey(k: u64) -> (u32, u32) {
    ((k >> 32) as u32, k as u32)
}

/// Raw bytes as they are: the message is exactly the item, so tests can aim at frame sizes.
struct Raw;

impl Codec<Vec<u8>> for Raw {
    fn encode(item: &Vec<u8>, out: &mut Vec<u8>) -> Result<(), String> {
        out.extend_from_slice(item);
        Ok(())
    }

    fn decode(bytes: &[u8]) -> Result<Vec<u8>, String> {
        Ok(bytes.to_vec())
    }
}

/// A flag a child raises just before its blocking call.
fn flag() -> Shared<AtomicU32> {
    Shared::new(AtomicU32::new(0)).unwrap()
}

// ------------------------------------------------------------------------------------------
// Several producers × several consumers on a small buffer
// ------------------------------------------------------------------------------------------

const PRODUCERS: u32 = 3;
const CONSUMERS: usize = 2;
const PER_PRODUCER: u32 = 300;

/// Payload length of message `seq`: 0 to 2500 bytes, so on a 4 KiB buffer (frames of at
/// most 1016 bytes) some messages take one frame and some two or three.
fn mixed_len(producer: u32, seq: u32) -> usize {
    ((seq * 37 + producer * 11) % 2501) as usize
}

fn mpmc_producer((q, id): (Queue<Option<Msg>>, u32)) {
    for seq in 0..PER_PRODUCER {
        q.put_timeout(Some(make(id, seq, mixed_len(id, seq))), LONG)
            .expect("put");
    }
}

/// Reads until a `None` sentinel; returns `(producer, seq)` in arrival order, checking
/// every message on the way.
fn mpmc_consumer(q: Queue<Option<Msg>>) -> Vec<(u32, u32)> {
    let mut got = Vec::new();
    loop {
        match q.get_timeout(LONG).expect("get") {
            Some(m) => {
                assert!(intact(&m), "damaged message {}/{}", m.producer, m.seq);
                assert_eq!(m.payload.len(), mixed_len(m.producer, m.seq));
                got.push((m.producer, m.seq));
            }
            None => return got,
        }
    }
}

#[test]
fn producers_and_consumers_keep_per_producer_order_without_loss_or_duplicates() {
    let _g = common::shared();
    for m in METHODS {
        let q = Queue::<Option<Msg>>::with_capacity(0, 4096).unwrap();
        let mut consumers: Vec<_> = (0..CONSUMERS)
            .map(|_| start(m, mpmc_consumer, q.clone()))
            .collect();
        let mut producers: Vec<_> = (0..PRODUCERS)
            .map(|id| start(m, mpmc_producer, (q.clone(), id)))
            .collect();
        for p in &mut producers {
            join(p);
        }
        for _ in 0..CONSUMERS {
            q.put_timeout(None, LONG).unwrap();
        }
        let mut seen = HashSet::new();
        let mut counts = Vec::new();
        for c in &mut consumers {
            let got = join(c);
            counts.push(got.len());
            let mut last: BTreeMap<u32, u32> = BTreeMap::new();
            for &(p, s) in &got {
                if let Some(&prev) = last.get(&p) {
                    assert!(s > prev, "{m:?}: producer {p}: {s} after {prev} at one consumer");
                }
                last.insert(p, s);
                assert!(seen.insert((p, s)), "{m:?}: {p}/{s} received twice");
            }
        }
        assert_eq!(
            seen.len(),
            (PRODUCERS * PER_PRODUCER) as usize,
            "{m:?}: lost messages"
        );
        assert!(q.empty() && q.qsize() == 0);
        println!("mpmc {m:?}: consumers got {counts:?}");
    }
}

// ------------------------------------------------------------------------------------------
// Blocking, timeout and non-blocking forms; maxsize
// ------------------------------------------------------------------------------------------

/// `get_timeout` on an empty queue, then a blocking get that a later `put` releases.
fn timed_get((q, waiting): (Queue<u32>, Shared<AtomicU32>)) -> (String, u128, u32) {
    let t = Instant::now();
    let empty = format!("{:?}", q.get_timeout(ms(100)));
    let took = t.elapsed().as_millis();
    waiting.store(1, SeqCst);
    let item = q.get_timeout(LONG).expect("the parent's put");
    (empty, took, item)
}

#[test]
fn get_timeout_and_try_get_on_an_empty_queue() {
    let _g = common::shared();
    let q = Queue::<u32>::new(0).unwrap();
    assert_eq!(q.try_get(), Err(TryRecvError::Empty));
    for timeout in [ms(1), ms(30), ms(120)] {
        let t = Instant::now();
        assert_eq!(q.get_timeout(timeout), Err(RecvTimeoutError::Timeout));
        assert!(
            t.elapsed() >= timeout,
            "Empty after {:?} < {timeout:?}",
            t.elapsed()
        );
    }
    for m in METHODS {
        let waiting = flag();
        let mut c = start(m, timed_get, (q.clone(), waiting.clone()));
        assert!(eventually(LONG, || waiting.load(SeqCst) == 1));
        wait_until_asleep(c.pid());
        q.put(7).unwrap();
        let (empty, took, item) = join(&mut c);
        assert_eq!(empty, "Err(Timeout)", "{m:?}");
        assert!(took >= 100, "{m:?}: Empty after {took} ms");
        assert_eq!(item, 7);
        assert!(q.empty());
    }
}

/// Puts into a full queue: `put` blocks until the parent makes room.
fn blocked_put((q, waiting): (Queue<u32>, Shared<AtomicU32>)) -> String {
    let full = format!("{:?}", q.try_put(100));
    waiting.store(1, SeqCst);
    let r = q.put_timeout(101, LONG);
    format!("{full} {r:?}")
}

#[test]
fn maxsize_limits_items_with_full_errors_that_return_the_item() {
    let _g = common::shared();
    for m in METHODS {
        let q = Queue::<u32>::new(2).unwrap();
        assert_eq!(q.capacity(), Some(2));
        assert_eq!(Queue::<u32>::new(0).unwrap().capacity(), None, "no item limit");
        let pod = Queue::<u64, PodCodec>::with_capacity(0, 1024).unwrap();
        assert!(
            pod.capacity().is_some_and(|n| n >= 2),
            "a Pod queue's slots bound it"
        );
        assert!(q.empty() && !q.full() && q.qsize() == 0);
        q.put(1).unwrap();
        assert!(!q.empty() && !q.full() && q.qsize() == 1);
        q.try_put(2).unwrap();
        assert!(q.full() && q.qsize() == 2);
        match q.try_put(3) {
            Err(TrySendError::Full(3)) => {}
            other => panic!("try_put on a full queue: {other:?}"),
        }
        let t = Instant::now();
        match q.put_timeout(4, ms(80)) {
            Err(SendTimeoutError::Timeout(item)) => assert_eq!(item, 4),
            other => panic!("put_timeout on a full queue: {other:?}"),
        }
        assert!(t.elapsed() >= ms(80), "Full after {:?}", t.elapsed());
        assert_eq!(q.qsize(), 2);

        // A child blocks on the limit until this process takes an item.
        let waiting = flag();
        let mut c = start(m, blocked_put, (q.clone(), waiting.clone()));
        assert!(eventually(LONG, || waiting.load(SeqCst) == 1));
        wait_until_asleep(c.pid());
        assert_eq!(q.qsize(), 2);
        assert_eq!(q.get_timeout(LONG), Ok(1));
        assert_eq!(join(&mut c), "Err(Full(..)) Ok(())", "{m:?}");
        assert!(q.full() && q.qsize() == 2);
        assert_eq!(q.try_get(), Ok(2));
        assert_eq!(q.try_get(), Ok(101));
        assert!(q.empty() && !q.full() && q.qsize() == 0);
        assert_eq!(q.try_get(), Err(TryRecvError::Empty));
    }
}

#[test]
fn qsize_is_exact_across_processes() {
    let _g = common::shared();
    fn put_n((q, n): (Queue<u64>, u64)) {
        for i in 0..n {
            q.put(i).unwrap();
        }
    }
    for m in METHODS {
        let q = Queue::<u64>::with_capacity(0, 4096).unwrap();
        join(&mut start(m, put_n, (q.clone(), 200)));
        assert_eq!(q.qsize(), 200);
        for i in 0..200 {
            assert_eq!(q.try_get(), Ok(i));
            assert_eq!(q.qsize(), 199 - i as usize);
        }
        assert!(q.empty());
    }
}

// ------------------------------------------------------------------------------------------
// close() and shutdown()
// ------------------------------------------------------------------------------------------

/// Closes its own handle, then tries every form of put and get through it.
fn close_mine(q: Queue<String>) -> Vec<String> {
    q.close();
    let put = match q.put("from a closed handle".into()) {
        Err(SendError::Closed(s)) => format!("Closed({s})"),
        other => format!("{other:?}"),
    };
    // An item is waiting: a closed handle must refuse it, not wait and not take it.
    vec![
        put,
        format!("{:?}", q.get_timeout(LONG)),
        format!("{:?}", q.get()),
        format!("{:?}", q.try_get()),
    ]
}

/// The same on a `SimpleQueue` and a `JoinableQueue` handle.
fn close_mine_simple_joinable((s, j): (SimpleQueue<u32>, JoinableQueue<u32>)) -> Vec<String> {
    s.close();
    j.close();
    vec![
        format!("{:?}", s.get()),
        format!("{:?}", j.get()),
        format!("{:?}", j.get_timeout(LONG)),
        format!("{:?}", j.try_get()),
        format!("{:?}", j.put(7).map_err(|e| e.into_inner())),
    ]
}

#[test]
fn close_is_per_handle() {
    let _g = common::shared();
    for m in METHODS {
        let q = Queue::<String>::new(0).unwrap();
        let mine = q.clone();
        mine.close();
        match mine.put("x".into()) {
            Err(SendError::Closed(s)) => assert_eq!(s, "x"),
            other => panic!("put on a closed handle: {other:?}"),
        }
        assert!(matches!(mine.try_put("y".into()), Err(TrySendError::Closed(_))));
        // A closed handle refuses to read (Python: "Queue is closed"), even with an item
        // waiting, and a clone of it is open.
        q.put("a".into()).unwrap();
        assert_eq!(mine.try_get(), Err(TryRecvError::Closed));
        assert_eq!(mine.get_timeout(LONG), Err(RecvTimeoutError::Closed));
        assert_eq!(
            bounded("get on a closed handle", move || mine.get()),
            Err(RecvError::Closed)
        );
        assert_eq!(q.try_get().unwrap(), "a", "the refused gets took nothing");
        let mine = q.clone();
        mine.close();
        mine.clone().put("b".into()).unwrap();
        assert_eq!(q.try_get().unwrap(), "b");

        // The child's close does not reach this process's handle; the item it was refused
        // is still there for others.
        q.put("for the child".into()).unwrap();
        let got = join(&mut start(m, close_mine, q.clone()));
        assert_eq!(
            got,
            [
                "Closed(from a closed handle)",
                "Err(Closed)",
                "Err(Closed)",
                "Err(Closed)"
            ],
            "{m:?}"
        );
        assert_eq!(q.try_get().unwrap(), "for the child", "{m:?}");
        q.put("still open".into()).unwrap();
        assert_eq!(q.try_get().unwrap(), "still open");
        assert!(!q.full() && q.empty());

        let s = SimpleQueue::<u32>::new().unwrap();
        let j = JoinableQueue::<u32>::new(0).unwrap();
        s.put(1).unwrap();
        j.put(2).unwrap();
        let got = join(&mut start(m, close_mine_simple_joinable, (s.clone(), j.clone())));
        assert_eq!(
            got,
            [
                "Err(Closed)",
                "Err(Closed)",
                "Err(Closed)",
                "Err(Closed)",
                "Err(7)"
            ],
            "{m:?}"
        );
        // This process's handles still read what the child was refused.
        assert_eq!(s.get(), Ok(1));
        assert_eq!(j.try_get(), Ok(2));
        j.task_done().unwrap();
        assert_eq!(j.unfinished_tasks(), 0, "{m:?}: a refused put is not a task");
    }
}

fn blocked_get((q, waiting): (Queue<u32>, Shared<AtomicU32>)) -> String {
    waiting.store(1, SeqCst);
    format!("{:?}", q.get())
}

fn blocked_put_forever((q, item, waiting): (Queue<Vec<u8>, Raw>, Vec<u8>, Shared<AtomicU32>)) -> String {
    waiting.store(1, SeqCst);
    match q.put(item) {
        Err(SendError::Closed(v)) => format!("Closed({} bytes)", v.len()),
        other => format!("{other:?}"),
    }
}

fn blocked_put_on_limit((q, waiting): (Queue<u32>, Shared<AtomicU32>)) -> String {
    waiting.store(1, SeqCst);
    format!("{:?}", q.put(2))
}

#[test]
fn shutdown_wakes_a_blocked_get_in_another_process() {
    let _g = common::shared();
    for m in METHODS {
        let q = Queue::<u32>::new(0).unwrap();
        let waiting = flag();
        let mut c = start(m, blocked_get, (q.clone(), waiting.clone()));
        assert!(eventually(LONG, || waiting.load(SeqCst) == 1));
        wait_until_asleep(c.pid());
        q.shutdown();
        assert_eq!(join(&mut c), "Err(Closed)", "{m:?}");
        assert!(matches!(q.try_put(1), Err(TrySendError::Closed(1))));
        assert_eq!(q.try_get(), Err(TryRecvError::Closed));
        assert_eq!(q.get_timeout(ms(10)), Err(RecvTimeoutError::Closed));
    }
}

#[test]
fn shutdown_wakes_a_put_blocked_on_maxsize_or_on_a_full_buffer() {
    let _g = common::shared();
    for m in METHODS {
        // On the item limit.
        let q = Queue::<u32>::new(1).unwrap();
        q.put(1).unwrap();
        let waiting = flag();
        let mut c = start(m, blocked_put_on_limit, (q.clone(), waiting.clone()));
        assert!(eventually(LONG, || waiting.load(SeqCst) == 1));
        wait_until_asleep(c.pid());
        q.shutdown();
        assert_eq!(join(&mut c), "Err(Closed(..))", "{m:?}");
        assert_eq!(
            q.try_get(),
            Ok(1),
            "{m:?}: the item put before the shutdown drains"
        );
        assert_eq!(q.try_get(), Err(TryRecvError::Closed));

        // On a full buffer: four 1000-byte frames fill 4 KiB, the fifth message waits.
        let q = Queue::<Vec<u8>, Raw>::with_capacity(0, 4096).unwrap();
        let mut n = 0;
        while q.try_put(vec![n; 1000]).is_ok() {
            n += 1;
        }
        assert_eq!(n, 4);
        let waiting = flag();
        let mut c = start(
            m,
            blocked_put_forever,
            (q.clone(), vec![9; 1000], waiting.clone()),
        );
        assert!(eventually(LONG, || waiting.load(SeqCst) == 1));
        wait_until_asleep(c.pid());
        q.shutdown();
        assert_eq!(join(&mut c), "Closed(1000 bytes)", "{m:?}");
        for i in 0..4 {
            assert_eq!(q.get_timeout(LONG), Ok(vec![i; 1000]));
        }
        assert_eq!(q.try_get(), Err(TryRecvError::Closed));
    }
}

fn put_then_shutdown((q, n): (Queue<u32>, u32)) {
    for i in 0..n {
        q.put(i).unwrap();
    }
    q.shutdown();
}

#[test]
fn gets_drain_remaining_items_after_shutdown() {
    let _g = common::shared();
    for m in METHODS {
        let q = Queue::<u32>::with_capacity(0, 4096).unwrap();
        join(&mut start(m, put_then_shutdown, (q.clone(), 50)));
        assert_eq!(q.qsize(), 50);
        assert!(matches!(q.put(99), Err(SendError::Closed(99))));
        for i in 0..50 {
            assert_eq!(q.get_timeout(LONG), Ok(i), "{m:?}");
        }
        assert_eq!(q.get_timeout(LONG), Err(RecvTimeoutError::Closed));
        assert_eq!(q.try_get(), Err(TryRecvError::Closed));
    }
}

// ------------------------------------------------------------------------------------------
// Large messages and frame boundaries
// ------------------------------------------------------------------------------------------

const BIG: usize = 64 << 20;

/// `len` bytes of a pattern with a prime period (so a frame dropped, repeated or misplaced
/// shows), stamped every 4 KiB with its own offset. Built with copies only: fast in debug
/// builds too.
fn big_pattern(len: usize) -> Vec<u8> {
    const PERIOD: usize = 65_521;
    let base: Vec<u8> = (0..PERIOD).map(|i| (i * 131 % 251) as u8).collect();
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        let n = PERIOD.min(len - v.len());
        v.extend_from_slice(&base[..n]);
    }
    for at in (0..len.saturating_sub(8)).step_by(4096) {
        v[at..at + 8].copy_from_slice(&(at as u64).to_le_bytes());
    }
    v
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    if a.len() != b.len() {
        return Some(a.len().min(b.len()));
    }
    let chunk = 1 << 16;
    let k = a.chunks(chunk).zip(b.chunks(chunk)).position(|(x, y)| x != y)?;
    let at = k * chunk;
    Some(
        at + a[at..]
            .iter()
            .zip(&b[at..])
            .position(|(x, y)| x != y)
            .unwrap_or(0),
    )
}

fn put_big_raw((q, len): (Queue<Vec<u8>, Raw>, usize)) {
    q.put(big_pattern(len)).expect("put");
}

fn put_big_postcard((q, len): (Queue<Vec<u8>>, usize)) {
    q.put(big_pattern(len)).expect("put");
}

/// 64 MiB through the default 1 MiB buffer, 256 frames. The message goes as its raw bytes:
/// postcard handles a `Vec<u8>` byte by byte, which takes about 6 s each way for 64 MiB in
/// a debug build; its path is covered by the 4 MiB message of the next test.
#[test]
fn a_64_mib_message_streams_through_the_default_1_mib_buffer() {
    let _g = common::shared();
    let want = big_pattern(BIG);
    for m in METHODS {
        let q = Queue::<Vec<u8>, Raw>::new(0).unwrap();
        let mut c = start(m, put_big_raw, (q.clone(), BIG));
        let v = q.get_timeout(LONG).expect("the 64 MiB message");
        join(&mut c);
        if let Some(i) = first_difference(&v, &want) {
            panic!("{m:?}: {} bytes, first difference at byte {i}", v.len());
        }
        assert!(q.empty() && q.qsize() == 0);
    }
}

#[test]
fn a_large_postcard_message_streams_through_the_default_buffer() {
    let _g = common::shared();
    let len = 4 << 20;
    let want = big_pattern(len);
    for m in METHODS {
        let q = Queue::<Vec<u8>>::new(0).unwrap();
        let mut c = start(m, put_big_postcard, (q.clone(), len));
        let v = q.get_timeout(LONG).expect("the 4 MiB message");
        join(&mut c);
        if let Some(i) = first_difference(&v, &want) {
            panic!("{m:?}: {} bytes, first difference at byte {i}", v.len());
        }
        assert!(q.empty());
    }
}

fn put_sizes((q, sizes): (Queue<Vec<u8>, Raw>, Vec<usize>)) {
    for (k, &len) in sizes.iter().enumerate() {
        q.put((0..len).map(|i| (i * 7 + k) as u8).collect()).expect("put");
    }
}

#[test]
fn messages_around_the_frame_boundary() {
    let _g = common::shared();
    let cap = 4096;
    let max_frame = cap / 4 - 8;
    let sizes = vec![
        0,
        1,
        7,
        8,
        9,
        max_frame - 1,
        max_frame,
        max_frame + 1,
        2 * max_frame,
        2 * max_frame + 3,
        cap - 1,
        cap,
        cap + 1,
        3 * cap + 5,
    ];
    for m in METHODS {
        let q = Queue::<Vec<u8>, Raw>::with_capacity(0, cap).unwrap();
        let mut c = start(m, put_sizes, (q.clone(), sizes.clone()));
        for (k, &len) in sizes.iter().enumerate() {
            let v = q.get_timeout(LONG).expect("get");
            let want: Vec<u8> = (0..len).map(|i| (i * 7 + k) as u8).collect();
            assert!(
                v == want,
                "{m:?}: message {k} of {len} bytes came back as {} bytes",
                v.len()
            );
        }
        join(&mut c);
        assert!(q.empty());
    }
}

// ------------------------------------------------------------------------------------------
// The Pod codec
// ------------------------------------------------------------------------------------------

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
struct Sample {
    id: u32,
    flags: u32,
    value: f64,
    coords: [i16; 4],
}

fn sample(i: u32) -> Sample {
    Sample {
        id: i,
        flags: i.rotate_left(7) ^ 0xdead_beef,
        value: f64::from(i) * 0.5 - 3.25,
        coords: [i as i16, -(i as i16), 0x7fff, i16::MIN],
    }
}

fn pod_producer((nums, samples, n): (Queue<u64, PodCodec>, Queue<Sample, PodCodec>, u32)) {
    for i in 0..n {
        nums.put(u64::from(i).wrapping_mul(0x0101_0101_0101_0101))
            .unwrap();
        samples.put(sample(i)).unwrap();
    }
}

#[test]
fn pod_items_cross_processes() {
    let _g = common::shared();
    for m in METHODS {
        let nums = Queue::<u64, PodCodec>::with_capacity(0, 4096).unwrap();
        let samples = Queue::<Sample, PodCodec>::with_capacity(0, 4096).unwrap();
        let n = 500;
        let mut c = start(m, pod_producer, (nums.clone(), samples.clone(), n));
        for i in 0..n {
            assert_eq!(
                nums.get_timeout(LONG),
                Ok(u64::from(i).wrapping_mul(0x0101_0101_0101_0101))
            );
            assert_eq!(samples.get_timeout(LONG), Ok(sample(i)), "{m:?}");
        }
        join(&mut c);
        assert!(nums.empty() && samples.empty());
    }
}

// ------------------------------------------------------------------------------------------
// Decode errors
// ------------------------------------------------------------------------------------------

/// An item whose decoding refuses values its encoding happily writes: the public way to put
/// bytes a consumer cannot decode. (Reinterpreting one queue handle as another item type or
/// codec is not expressible through the public API, so that variant is not tested.)
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "u32")]
struct Even(u32);

impl TryFrom<u32> for Even {
    type Error = String;
    fn try_from(v: u32) -> Result<Self, String> {
        if v % 2 == 0 {
            Ok(Self(v))
        } else {
            Err(format!("{v} is odd"))
        }
    }
}

fn put_evens_and_odds(q: Queue<Even>) {
    for v in [2, 3, 4, 5, 6] {
        q.put(Even(v)).unwrap();
    }
}

#[test]
fn an_undecodable_message_is_a_decode_error_and_is_consumed() {
    let _g = common::shared();
    for m in METHODS {
        let q = Queue::<Even>::new(0).unwrap();
        join(&mut start(m, put_evens_and_odds, q.clone()));
        assert_eq!(q.qsize(), 5);
        assert_eq!(q.try_get(), Ok(Even(2)));
        match q.try_get() {
            Err(TryRecvError::Decode(e)) => println!("{m:?}: decode error: {e}"),
            other => panic!("{m:?}: expected a decode error, got {other:?}"),
        }
        assert_eq!(q.try_get(), Ok(Even(4)));
        assert!(matches!(q.try_get(), Err(TryRecvError::Decode(_))));
        assert_eq!(q.try_get(), Ok(Even(6)));
        assert_eq!(q.try_get(), Err(TryRecvError::Empty));
        assert_eq!(q.qsize(), 0);
    }
}

// ------------------------------------------------------------------------------------------
// SimpleQueue, JoinableQueue, the sentinel pattern
// ------------------------------------------------------------------------------------------

type Pairs = SimpleQueue<(u32, String)>;

fn simple_echo((inq, outq): (Pairs, Pairs)) {
    loop {
        let (n, s) = inq.get().expect("get");
        if n == u32::MAX {
            break;
        }
        outq.put((n * 2, s.to_uppercase())).expect("put");
    }
    outq.close();
    assert!(matches!(outq.put((0, String::new())), Err(SendError::Closed(_))));
}

#[test]
fn simple_queue_across_processes() {
    let _g = common::shared();
    for m in METHODS {
        let inq = Pairs::new().unwrap();
        let outq = Pairs::new().unwrap();
        assert!(inq.empty() && outq.empty());
        let mut c = start(m, simple_echo, (inq.clone(), outq.clone()));
        for i in 0..20 {
            inq.put((i, format!("item {i}"))).unwrap();
        }
        inq.put((u32::MAX, String::new())).unwrap();
        let out = outq.clone();
        let got = bounded("SimpleQueue::get", move || {
            (0..20).map(|_| out.get().expect("get")).collect::<Vec<_>>()
        });
        join(&mut c);
        for (i, (n, s)) in got.into_iter().enumerate() {
            assert_eq!((n, s), (2 * i as u32, format!("ITEM {i}")), "{m:?}");
        }
        assert!(inq.empty() && outq.empty());
        // The child's close was its own handle's.
        outq.put((1, "x".into())).unwrap();
        assert!(!outq.empty());
    }
}

fn joinable_worker((q, done, n): (JoinableQueue<u32>, Shared<AtomicU32>, u32)) -> String {
    for _ in 0..n {
        q.get_timeout(LONG).expect("get");
        std::thread::sleep(ms(5));
        done.fetch_add(1, SeqCst);
        q.task_done().expect("task_done");
    }
    format!("{:?}", q.task_done())
}

#[test]
fn joinable_queue_join_waits_for_every_task_done() {
    let _g = common::shared();
    for m in METHODS {
        let q = JoinableQueue::<u32>::new(0).unwrap();
        assert_eq!(q.join_timeout(ms(1)), Ok(()), "nothing put: nothing to wait for");
        assert_eq!(q.task_done(), Err(TaskDoneError));
        let done = flag();
        let n = 12;
        let mut c = start(m, joinable_worker, (q.clone(), done.clone(), n));
        for i in 0..n {
            q.put(i).unwrap();
        }
        assert!(q.unfinished_tasks() > 0);
        // The worker sleeps 5 ms per item: 12 items cannot all be done within 5 ms.
        let t = Instant::now();
        assert_eq!(
            q.join_timeout(ms(5)),
            Err(JoinTimeoutError::Timeout),
            "{m:?}: join_timeout with tasks pending"
        );
        assert!(t.elapsed() >= ms(5));
        let h = q.clone();
        bounded("JoinableQueue::join", move || h.join());
        assert_eq!(
            done.load(SeqCst),
            n,
            "{m:?}: join returned before every task was done"
        );
        assert_eq!(q.unfinished_tasks(), 0);
        assert_eq!(q.join_timeout(ms(1)), Ok(()));
        assert_eq!(
            join(&mut c),
            "Err(TaskDoneError)",
            "{m:?}: one task_done too many"
        );
        assert_eq!(q.task_done(), Err(TaskDoneError));
        assert_eq!(q.unfinished_tasks(), 0);
        assert!(q.queue().empty());
    }
}

#[test]
fn joinable_queue_failed_put_is_not_a_task() {
    let _g = common::shared();
    let q = JoinableQueue::<u32>::new(1).unwrap();
    q.put(1).unwrap();
    assert!(matches!(q.try_put(2), Err(TrySendError::Full(2))));
    assert!(matches!(
        q.put_timeout(3, ms(10)),
        Err(SendTimeoutError::Timeout(3))
    ));
    assert_eq!(q.unfinished_tasks(), 1);
    assert_eq!(q.try_get(), Ok(1));
    q.task_done().unwrap();
    assert_eq!(q.join_timeout(ms(1)), Ok(()));
}

fn sentinel_producer((q, n): (Queue<Option<u64>>, u64)) {
    for i in 0..n {
        q.put(Some(i * i)).unwrap();
    }
    q.put(None).unwrap();
}

fn sentinel_consumer(q: Queue<Option<u64>>) -> (u64, u64) {
    let (mut count, mut sum) = (0, 0);
    while let Some(v) = q.get_timeout(LONG).expect("get") {
        assert_eq!(v, count * count, "out of order");
        count += 1;
        sum += v;
    }
    (count, sum)
}

#[test]
fn producer_puts_then_a_sentinel_and_consumer_reads_until_it() {
    let _g = common::shared();
    for m in METHODS {
        let q = Queue::<Option<u64>>::with_capacity(0, 4096).unwrap();
        let mut cons = start(m, sentinel_consumer, q.clone());
        let mut prod = start(m, sentinel_producer, (q.clone(), 1000));
        join(&mut prod);
        let n: u64 = 1000;
        assert_eq!(join(&mut cons), (n, (0..n).map(|i| i * i).sum()), "{m:?}");
        assert!(q.empty());
    }
}

// ------------------------------------------------------------------------------------------
// SIGKILL in the middle of a message
// ------------------------------------------------------------------------------------------

const KILL_CAP: usize = 64 << 10;
const KILL_BIG: usize = 8 << 20;

/// Puts one message far larger than the buffer: with nobody reading it blocks, holding the
/// write lock, with the buffer full of its first frames.
fn put_huge((q, id, started): (Queue<Msg>, u32, Shared<AtomicU32>)) {
    let m = make(id, 0, KILL_BIG);
    started.store(1, SeqCst);
    q.put(m).expect("put");
}

/// Puts `n` messages (some larger than the buffer) with a blocking `put`.
fn put_stream((q, id, n): (Queue<Msg>, u32, u32)) {
    for seq in 0..n {
        let len = if seq % 3 == 2 {
            3 * KILL_CAP / 2
        } else {
            100 + seq as usize
        };
        q.put(make(id, seq, len)).expect("put");
    }
}

/// Waits for `go`, then gets `n` messages; returns `(producer, seq, intact)` of each.
fn get_n((q, go, n): (Queue<Msg>, Event, u32)) -> Vec<(u32, u32, bool)> {
    assert!(go.wait_timeout(LONG).is_ok(), "never told to go");
    (0..n)
        .map(|_| {
            let m = q.get_timeout(LONG).expect("get");
            (m.producer, m.seq, intact(&m))
        })
        .collect()
}

fn expect_stream(got: &[(u32, u32, bool)], id: u32, n: u32, what: &str) {
    let want: Vec<(u32, u32, bool)> = (0..n).map(|s| (id, s, true)).collect();
    assert_eq!(got, want, "{what}");
}

/// Kill (a): a producer dies while putting an 8 MiB message into a 64 KiB queue that nobody
/// reads; then another producer puts, and the consumer starts. The consumer first reads the
/// dead producer's first frames, then drops that partial message (an `ABORT` frame from the
/// next writer, or its own check that the writer died) and receives the other producer's
/// messages intact. Nothing is counted for the partial message.
#[test]
fn killed_producer_mid_message_consumer_not_reading_drops_the_partial_message() {
    let _g = common::shared();
    for m in METHODS {
        let q = Queue::<Msg>::with_capacity(0, KILL_CAP).unwrap();
        let go = Event::new().unwrap();
        let mut cons = start(m, get_n, (q.clone(), go.clone(), 6));
        let started = flag();
        let mut p1 = start(m, put_huge, (q.clone(), 1, started.clone()));
        assert!(eventually(LONG, || started.load(SeqCst) == 1));
        wait_until_asleep(p1.pid());
        kill_and_reap(&mut p1);
        assert_eq!(q.qsize(), 0, "{m:?}: a partial message is not an item");
        // The next producer takes the write lock over; it must wait for room for its ABORT.
        let mut p2 = start(m, put_stream, (q.clone(), 2, 6));
        std::thread::sleep(SETTLE);
        go.set();
        let got = join(&mut cons);
        join(&mut p2);
        expect_stream(&got, 2, 6, &format!("{m:?}"));
        assert!(q.empty() && q.qsize() == 0);
        assert_eq!(q.try_get().map(|m| m.seq), Err(TryRecvError::Empty));
    }
}

/// Kill (a'): the consumer is in the middle of the message when its producer is stopped and
/// then killed. The consumer notices the writer's death by itself (there is no next writer
/// yet), drops the partial message, and receives a later producer's messages intact.
#[test]
fn killed_producer_mid_message_consumer_mid_message_drops_it() {
    let _g = common::shared();
    use nix::sys::signal::Signal;
    for m in METHODS {
        let q = Queue::<Msg>::with_capacity(0, KILL_CAP).unwrap();
        let go = Event::new().unwrap();
        let started = flag();
        let mut p1 = start(m, put_huge, (q.clone(), 1, started.clone()));
        assert!(eventually(LONG, || started.load(SeqCst) == 1));
        wait_until_asleep(p1.pid());
        // Frozen with a full buffer: the consumer reads the first frames and then waits for
        // the rest, which never comes.
        signal(p1.pid(), Signal::SIGSTOP);
        go.set();
        let mut cons = start(m, get_n, (q.clone(), go.clone(), 4));
        std::thread::sleep(SETTLE);
        wait_until_asleep(cons.pid());
        assert!(cons.is_alive());
        kill_and_reap(&mut p1);
        let mut p2 = start(m, put_stream, (q.clone(), 2, 4));
        let got = join(&mut cons);
        join(&mut p2);
        expect_stream(&got, 2, 4, &format!("{m:?}"));
        assert!(q.empty());
    }
}

/// Gets messages forever, counting the whole ones it returned.
fn get_forever((q, got, started): (Queue<Msg>, Shared<AtomicU32>, Shared<AtomicU32>)) {
    started.store(1, SeqCst);
    loop {
        let m = q.get_timeout(LONG).expect("get");
        assert!(intact(&m));
        got.fetch_add(1, SeqCst);
    }
}

/// Kill (b): a consumer dies in the middle of receiving an 8 MiB message (its producer is
/// stopped after filling the 64 KiB buffer, so the consumer has taken the first frames and
/// waits for the rest). Expected: that message is lost — delivery is at most once at a
/// consumer's death — and the next consumer skips its remaining frames and receives every
/// following message intact and in order.
#[test]
fn killed_consumer_mid_message_loses_only_that_message() {
    let _g = common::shared();
    use nix::sys::signal::Signal;
    fn big_then_stream((q, started): (Queue<Msg>, Shared<AtomicU32>)) {
        let m = make(1, 0, KILL_BIG);
        started.store(1, SeqCst);
        q.put(m).expect("put the big one");
        for seq in 1..8 {
            let len = if seq % 3 == 0 { KILL_BIG / 4 } else { 1000 };
            q.put(make(1, seq, len)).expect("put");
        }
    }
    for m in METHODS {
        let q = Queue::<Msg>::with_capacity(0, KILL_CAP).unwrap();
        let started = flag();
        let mut prod = start(m, big_then_stream, (q.clone(), started.clone()));
        assert!(eventually(LONG, || started.load(SeqCst) == 1));
        wait_until_asleep(prod.pid());
        signal(prod.pid(), Signal::SIGSTOP);
        let got = flag();
        let c_started = flag();
        let mut c1 = start(m, get_forever, (q.clone(), got.clone(), c_started.clone()));
        assert!(eventually(LONG, || c_started.load(SeqCst) == 1));
        wait_until_asleep(c1.pid());
        kill_and_reap(&mut c1);
        assert_eq!(
            got.load(SeqCst),
            0,
            "the first consumer cannot have finished the message"
        );
        signal(prod.pid(), Signal::SIGCONT);
        let go = Event::new().unwrap();
        go.set();
        let rest = join(&mut start(m, get_n, (q.clone(), go, 7)));
        join(&mut prod);
        let want: Vec<(u32, u32, bool)> = (1..8).map(|s| (1, s, true)).collect();
        assert_eq!(rest, want, "{m:?}: message 0 is lost, every later one arrives");
        assert!(q.empty() && q.qsize() == 0, "{m:?}: qsize {}", q.qsize());
    }
}

/// A survivor's non-blocking and short-timeout calls after a consumer was killed while it
/// waited in `get` (it holds the queue's read lock while waiting): the items that arrive
/// later must be reachable with `try_get`, as `qsize` says they are there.
#[test]

fn try_get_after_a_consumer_died_waiting() {
    let _g = common::shared();
    for m in METHODS {
        let q = Queue::<u32>::new(0).unwrap();
        let waiting = flag();
        let mut c = start(m, blocked_get, (q.clone(), waiting.clone()));
        assert!(eventually(LONG, || waiting.load(SeqCst) == 1));
        wait_until_asleep(c.pid());
        kill_and_reap(&mut c);
        q.put(5).unwrap();
        assert_eq!(q.qsize(), 1);
        let t = Instant::now();
        let mut last = Err(TryRecvError::Empty);
        let got = eventually(ms(2000), || {
            last = q.try_get();
            last.is_ok()
        });
        assert!(
            got,
            "{m:?}: try_get still {last:?} after {:?} with qsize {}",
            t.elapsed(),
            q.qsize()
        );
        assert_eq!(last, Ok(5));
        q.put(6).unwrap();
        assert!(
            eventually(ms(2000), || q.get_timeout(ms(10)) == Ok(6)),
            "{m:?}: get_timeout(10 ms)"
        );
    }
}

/// The same for producers: one killed while blocked in `put` (waiting for room, holding the
/// write lock) must not make every later `try_put` fail with `Full` when there is room.
#[test]

fn try_put_after_a_producer_died_waiting_for_room() {
    let _g = common::shared();
    fn put_past_limit((q, waiting): (Queue<u32>, Shared<AtomicU32>)) {
        waiting.store(1, SeqCst);
        q.put(2).expect("put");
    }
    for m in METHODS {
        let q = Queue::<u32>::new(1).unwrap();
        q.put(1).unwrap();
        let waiting = flag();
        let mut c = start(m, put_past_limit, (q.clone(), waiting.clone()));
        assert!(eventually(LONG, || waiting.load(SeqCst) == 1));
        wait_until_asleep(c.pid());
        kill_and_reap(&mut c);
        assert_eq!(q.try_get(), Ok(1));
        assert!(!q.full());
        let mut last = String::new();
        let put = eventually(ms(2000), || {
            last = format!("{:?}", q.try_put(3));
            last == "Ok(())"
        });
        assert!(put, "{m:?}: try_put still {last:?} on a queue with room");
        assert_eq!(q.try_get(), Ok(3));
    }
}

/// A producer died mid-message with the buffer full and nobody reading. Another producer's
/// `put_timeout` takes the write lock over and must first write an `ABORT` frame, for which
/// it needs room; it must still give up with `Full` after its timeout rather than wait for a
/// reader.
#[test]

fn put_timeout_after_a_producer_died_mid_message_keeps_its_timeout() {
    let _g = common::shared();
    for m in METHODS {
        let q = Queue::<Msg>::with_capacity(0, KILL_CAP).unwrap();
        let started = flag();
        let mut p1 = start(m, put_huge, (q.clone(), 1, started.clone()));
        assert!(eventually(LONG, || started.load(SeqCst) == 1));
        wait_until_asleep(p1.pid());
        kill_and_reap(&mut p1);
        let h = q.clone();
        let (tx, rx) = mpsc::channel();
        let putter = std::thread::spawn(move || {
            let t = Instant::now();
            let r = h
                .put_timeout(make(2, 0, 10), ms(200))
                .map_err(|e| format!("{e:?}"));
            let _ = tx.send((r, t.elapsed()));
        });
        let outcome = rx.recv_timeout(ms(3000));
        if outcome.is_err() {
            // Unblock the putter (a reader drains the dead producer's frames) before failing.
            let first = q.get_timeout(LONG);
            putter.join().unwrap();
            panic!("{m:?}: put_timeout(200 ms) still blocked after 3 s (then a get gave {first:?})");
        }
        putter.join().unwrap();
        let (r, took) = outcome.unwrap();
        assert!(took >= ms(200) && took < ms(2000), "{m:?}: {r:?} after {took:?}");
        assert_eq!(r, Err("Timeout(..)".to_owned()));
    }
}

// ------------------------------------------------------------------------------------------
// Random kills of producers and consumers on a stream of small messages
// ------------------------------------------------------------------------------------------

const TRIALS: u32 = 10;
const TRIAL_MSGS: u32 = 400;
const LOG: usize = 2 * TRIAL_MSGS as usize;

/// What the children of one trial report through shared memory, so that what a killed child
/// did before it died is known.
#[repr(C)]
struct TrialLog {
    /// Children that are about to start working.
    ready: AtomicU32,
    /// Set by the parent: consumers leave after their current `get`.
    stop: AtomicU32,
    /// Messages received damaged.
    bad: AtomicU32,
    _pad: AtomicU32,
    /// Per producer: messages whose `put` returned.
    acked: [AtomicU64; 2],
    /// Per consumer: entries in `log`.
    n: [AtomicU64; 2],
    /// Per consumer: `key(producer, seq)` of each message received, in order.
    log: [[AtomicU64; LOG]; 2],
}

// SAFETY: repr(C) of atomics only; any bit pattern is valid.
unsafe impl ShmSafe for TrialLog {}

fn trial_log() -> Shared<TrialLog> {
    Shared::new(TrialLog {
        ready: AtomicU32::new(0),
        stop: AtomicU32::new(0),
        bad: AtomicU32::new(0),
        _pad: AtomicU32::new(0),
        acked: [const { AtomicU64::new(0) }; 2],
        n: [const { AtomicU64::new(0) }; 2],
        log: [const { [const { AtomicU64::new(0) }; LOG] }; 2],
    })
    .unwrap()
}

/// Payload length in a trial: mostly small, every fifth message two or three frames.
fn trial_len(seq: u32) -> usize {
    if seq % 5 == 4 {
        1500 + (seq as usize * 13) % 1000
    } else {
        (seq as usize * 29) % 300
    }
}

fn trial_producer((q, t, go, id): (Queue<Msg>, Shared<TrialLog>, Event, u32)) {
    t.ready.fetch_add(1, SeqCst);
    assert!(go.wait_timeout(LONG).is_ok(), "never told to go");
    for seq in 0..TRIAL_MSGS {
        q.put_timeout(make(id, seq, trial_len(seq)), LONG).expect("put");
        t.acked[id as usize].store(u64::from(seq) + 1, SeqCst);
    }
}

fn trial_consumer((q, t, go, id): (Queue<Msg>, Shared<TrialLog>, Event, u32)) {
    t.ready.fetch_add(1, SeqCst);
    assert!(go.wait_timeout(LONG).is_ok(), "never told to go");
    let id = id as usize;
    loop {
        // Longer than the 20 ms liveness slice, so that a dead reader's lock is taken over.
        match q.get_timeout(ms(100)) {
            Ok(m) => {
                if !intact(&m) || m.payload.len() != trial_len(m.seq) {
                    t.bad.fetch_add(1, SeqCst);
                }
                let k = t.n[id].load(SeqCst) as usize;
                if k < LOG {
                    t.log[id][k].store(key(m.producer, m.seq), SeqCst);
                    t.n[id].store(k as u64 + 1, SeqCst);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(e) => panic!("consumer {id}: {e}"),
        }
        if t.stop.load(SeqCst) != 0 {
            return;
        }
    }
}

/// xorshift64*, seeded from the clock (the seed is printed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn random_kills_of_producers_and_consumers_lose_nothing_else() {
    let _g = common::shared();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("random kills: seed {seed:#x}");
    let mut rng = Rng(seed);
    let (mut total_received, mut total_lost, mut total_drained) = (0, 0, 0);
    let (mut forced, mut caught, mut mid_kills) = (0, 0, 0);
    for trial in 0..TRIALS {
        let m = METHODS[(trial % 2) as usize];
        let q = Queue::<Msg>::with_capacity(0, 4096).unwrap();
        let t = trial_log();
        let go = Event::new().unwrap();
        let args = |id: u32| (q.clone(), t.clone(), go.clone(), id);
        let mut producers: Vec<_> = (0..2).map(|id| start(m, trial_producer, args(id))).collect();
        let mut consumers: Vec<_> = (0..2).map(|id| start(m, trial_consumer, args(id))).collect();
        assert!(
            eventually(LONG, || t.ready.load(SeqCst) == 4),
            "children never ready"
        );
        // Kill a producer, a consumer, or one of each, at random points of the stream.
        // 0: a producer, 1: a consumer, 2: one of each. Even trials kill a producer first,
        // frozen in the middle of a message (a reader is mid-message only for the moments it
        // waits for a writer's next frame, too rarely to catch on demand).
        let which = if trial % 2 == 0 {
            2 * rng.below(2)
        } else {
            rng.below(3)
        };
        let victim_p = (which != 1).then(|| rng.below(2) as usize);
        let victim_c = (which != 0).then(|| rng.below(2) as usize);
        go.set();
        let mut kill_log = Vec::new();
        let chan = q.byte_channel().expect("a byte channel");
        for (kind, victim) in [("producer", victim_p), ("consumer", victim_c)] {
            let Some(v) = victim else { continue };
            let p = if kind == "producer" {
                &mut producers[v]
            } else {
                &mut consumers[v]
            };
            let pid = p.pid();
            let mid = |chan| {
                if kind == "producer" {
                    common::writing_mid_message(chan, pid)
                } else {
                    common::reading_mid_message(chan, pid)
                }
            };
            let pause = Duration::from_micros(rng.below(5000));
            if trial % 2 == 0 && kill_log.is_empty() {
                // Freeze the trial's first victim, a producer, in the middle of a message
                // (one in five is long enough to take several frames).
                forced += 1;
                if common::stop_when(pid, 5000, || mid(chan)) {
                    caught += 1;
                }
            } else {
                std::thread::sleep(pause);
            }
            let in_mid = mid(chan);
            // A child that already finished is not counted as killed.
            if kill_if_running(p) {
                kill_log.push(format!(
                    "{kind} {v} after {pause:?}{}",
                    if in_mid { " mid-message" } else { "" }
                ));
                mid_kills += usize::from(in_mid);
            }
        }
        let consumer_deaths = kill_log.iter().filter(|k| k.starts_with("consumer")).count();
        // The surviving consumers leave soon; this process drains the rest while the
        // surviving producers finish.
        t.stop.store(1, SeqCst);
        for (i, c) in consumers.iter_mut().enumerate() {
            if victim_c != Some(i) {
                join(c);
            }
        }
        let mut drained = Vec::new();
        loop {
            let producers_done = producers.iter().all(|p| !p.is_alive());
            match q.get_timeout(ms(100)) {
                Ok(msg) => {
                    assert!(intact(&msg), "trial {trial}: damaged message in the drain");
                    drained.push(key(msg.producer, msg.seq));
                }
                Err(RecvTimeoutError::Timeout) if producers_done => break,
                Err(RecvTimeoutError::Timeout) => {}
                Err(e) => panic!("trial {trial}: drain: {e}"),
            }
            assert!(
                drained.len() <= 2 * TRIAL_MSGS as usize,
                "trial {trial}: endless drain"
            );
        }
        for (i, p) in producers.iter_mut().enumerate() {
            if victim_p != Some(i) {
                join(p);
            }
        }
        assert!(
            q.empty() && q.qsize() == 0,
            "trial {trial}: qsize {} after the drain",
            q.qsize()
        );

        assert_eq!(t.bad.load(SeqCst), 0, "trial {trial}: damaged messages");
        let logs: Vec<Vec<u64>> = (0..2)
            .map(|c| {
                let n = t.n[c].load(SeqCst) as usize;
                (0..n).map(|i| t.log[c][i].load(SeqCst)).collect()
            })
            .chain(std::iter::once(drained.clone()))
            .collect();
        let mut seen = HashSet::new();
        for (who, log) in logs.iter().enumerate() {
            let mut last: BTreeMap<u32, u32> = BTreeMap::new();
            for &k in log {
                let (p, s) = unkey(k);
                assert!(p < 2 && s < TRIAL_MSGS, "trial {trial}: bogus key {k:#x}");
                if let Some(&prev) = last.get(&p) {
                    assert!(
                        s > prev,
                        "trial {trial}: reader {who}: producer {p}: {s} after {prev}"
                    );
                }
                last.insert(p, s);
                assert!(seen.insert(k), "trial {trial}: {p}/{s} received twice");
            }
        }
        // Everything a producer saw accepted arrived, except at most one message per dead
        // consumer (the one it was receiving or had just received); at most the message a
        // killed producer was putting arrived beyond what it saw accepted.
        let mut lost = 0;
        for p in 0..2u32 {
            let acked = t.acked[p as usize].load(SeqCst) as u32;
            lost += (0..acked).filter(|&s| !seen.contains(&key(p, s))).count();
            let beyond = seen
                .iter()
                .map(|&k| unkey(k))
                .filter(|&(pp, s)| pp == p && s > acked)
                .count();
            assert_eq!(
                beyond, 0,
                "trial {trial}: producer {p}: messages past the one in flight"
            );
        }
        assert!(
            lost <= consumer_deaths,
            "trial {trial} ({m:?}, {kill_log:?}): {lost} accepted messages lost"
        );
        println!(
            "trial {trial} {m:?}: killed [{}]; received {} (drained {}), lost {lost}",
            kill_log.join(", "),
            seen.len(),
            drained.len()
        );
        total_received += seen.len();
        total_lost += lost;
        total_drained += drained.len();
    }
    println!(
        "random kills: {total_received} received, {total_drained} of them drained, {total_lost} lost; \
         {mid_kills} kills mid-message ({caught} of {forced} forced)"
    );
    assert_eq!(
        caught, forced,
        "the even trials must kill their first victim mid-message"
    );
    assert!(mid_kills >= forced);
}

/// The Pod path keeps items in a slot ring whose capacity is exactly `maxsize` (3 here, not
/// a power of two): Python's `full()` / `put_nowait` semantics hold, and a child drains it.
#[test]
fn pod_queue_maxsize_is_exact_and_crosses_processes() {
    let _g = common::shared();
    fn drain_three(q: Queue<u64, PodCodec>) -> Vec<u64> {
        (0..3).map(|_| q.get_timeout(LONG).expect("get")).collect()
    }
    for m in METHODS {
        let q = Queue::<u64, PodCodec>::new(3).unwrap();
        for i in 0..3 {
            q.try_put(i).unwrap();
        }
        assert!(q.full(), "{m:?}");
        assert_eq!(q.qsize(), 3, "{m:?}");
        assert!(matches!(q.try_put(9), Err(TrySendError::Full(9))), "{m:?}");
        assert!(
            matches!(q.put_timeout(9, ms(30)), Err(SendTimeoutError::Timeout(9))),
            "{m:?}"
        );
        let mut c = start(m, drain_three, q.clone());
        assert_eq!(join(&mut c), vec![0, 1, 2], "{m:?}");
        assert!(q.empty(), "{m:?}");
        assert_eq!(q.try_get(), Err(TryRecvError::Empty), "{m:?}");
        q.shutdown();
        assert!(matches!(q.try_put(1), Err(TrySendError::Closed(1))), "{m:?}");
        assert_eq!(q.get_timeout(ms(30)), Err(RecvTimeoutError::Closed), "{m:?}");
    }
}

// ------------------------------------------------------------------------------------------
// Nothing leaks
// ------------------------------------------------------------------------------------------

fn blocked_get_forever((q, waiting): (Queue<String>, Shared<AtomicU32>)) {
    waiting.store(1, SeqCst);
    let _ = q.get();
}

fn put_forever((q, big, waiting): (Queue<Vec<u8>, Raw>, Vec<u8>, Shared<AtomicU32>)) {
    waiting.store(1, SeqCst);
    let _ = q.put(big);
}

fn queue_leak_scenario(m: StartMethod) {
    let q = Queue::<String>::new(0).unwrap();
    let s = SimpleQueue::<u32>::new().unwrap();
    let j = JoinableQueue::<u32>::new(0).unwrap();
    let pod = Queue::<u64, PodCodec>::new(4).unwrap();
    // Children that use every kind and finish.
    fn use_all(
        (q, s, j, pod): (
            Queue<String>,
            SimpleQueue<u32>,
            JoinableQueue<u32>,
            Queue<u64, PodCodec>,
        ),
    ) {
        q.put("x".into()).unwrap();
        s.put(1).unwrap();
        j.get_timeout(LONG).unwrap();
        j.task_done().unwrap();
        pod.put(7).unwrap();
    }
    for _ in 0..2 {
        j.put(0).unwrap();
        let args = (q.clone(), s.clone(), j.clone(), pod.clone());
        join(&mut start(m, use_all, args));
        assert_eq!(q.try_get().unwrap(), "x");
        assert_eq!(s.get().unwrap(), 1);
        assert_eq!(pod.try_get().unwrap(), 7);
    }
    // A consumer killed while it sleeps in get.
    let waiting = flag();
    let mut c = start(m, blocked_get_forever, (q.clone(), waiting.clone()));
    assert!(eventually(LONG, || waiting.load(SeqCst) == 1));
    wait_until_asleep(c.pid());
    kill_and_reap(&mut c);
    // A producer killed in the middle of a message far larger than the buffer.
    let raw = Queue::<Vec<u8>, Raw>::with_capacity(0, 4096).unwrap();
    let waiting = flag();
    let mut p = start(
        m,
        put_forever,
        (raw.clone(), vec![7u8; 64 * 1024], waiting.clone()),
    );
    assert!(eventually(LONG, || waiting.load(SeqCst) == 1));
    wait_until_asleep(p.pid());
    kill_and_reap(&mut p);
    assert_eq!(
        raw.try_get(),
        Err(TryRecvError::Empty),
        "the partial message is dropped"
    );
    // A running child whose handle is dropped after a kill (the reaper takes it).
    let waiting = flag();
    let c = start(m, blocked_get_forever, (q.clone(), waiting.clone()));
    assert!(eventually(LONG, || waiting.load(SeqCst) == 1));
    c.kill().unwrap();
    drop(c);
    q.put("after".into()).unwrap();
    assert_eq!(q.try_get().unwrap(), "after");
}

/// No zombie, fd or `/dev/shm` entry is left after children used every queue kind and
/// consumers and producers were killed mid-call (both start methods).
#[test]
fn nothing_leaks_after_children_used_queues_and_were_killed() {
    let _g = common::exclusive();
    // Warm up lazily created process-wide state (panic hook, spawn helper, scratch buffers).
    for m in METHODS {
        let q = Queue::<String>::new(0).unwrap();
        join(&mut start(m, close_mine, q.clone()));
    }
    common::assert_leaves_nothing(queue_leak_scenario);
}

// ------------------------------------------------------------------------------------------
// The Bytes codec, and the Pod path's close / shutdown / peer death, across processes
// ------------------------------------------------------------------------------------------

/// Sends `n` raw messages of growing sizes (0 up to 3× the buffer), each a pattern.
fn put_raw_bytes((q, n): (Queue<Vec<u8>, shmproc::Bytes>, u32)) {
    for i in 0..n {
        let len = (i as usize * 997) % (3 * 4096 + 1);
        q.put(big_pattern(len).into_iter().map(|b| b ^ i as u8).collect())
            .expect("put");
    }
}

/// `Queue<Vec<u8>, Bytes>` (raw bytes, no serde) from a child of each start method: every
/// message arrives whole and in order, including empty ones and ones larger than the buffer.
#[test]
fn bytes_codec_crosses_processes() {
    let _g = common::shared();
    for m in METHODS {
        let q = Queue::<Vec<u8>, shmproc::Bytes>::with_capacity(0, 4096).unwrap();
        let n = 40;
        let mut p = start(m, put_raw_bytes, (q.clone(), n));
        for i in 0..n {
            let len = (i as usize * 997) % (3 * 4096 + 1);
            let want: Vec<u8> = big_pattern(len).into_iter().map(|b| b ^ i as u8).collect();
            let got = q.get_timeout(LONG).unwrap();
            assert_eq!(got.len(), len, "{m:?}: message {i}");
            assert_eq!(first_difference(&got, &want), None, "{m:?}: message {i}");
        }
        join(&mut p);
        assert!(q.empty());
    }
}

/// Closes its own handle, then reports what put and get say; the rest of the queue is
/// untouched.
fn pod_close_mine(q: Queue<u64, PodCodec>) -> Vec<String> {
    q.close();
    vec![
        format!("{:?}", q.try_put(5).map_err(|e| e.into_inner())),
        format!("{:?}", q.get_timeout(LONG)),
    ]
}

fn pod_get_forever((q, waiting): (Queue<u64, PodCodec>, Shared<AtomicU32>)) -> String {
    waiting.store(1, SeqCst);
    format!("{:?}", q.get())
}

fn pod_put_forever((q, waiting): (Queue<u64, PodCodec>, Shared<AtomicU32>)) {
    for i in 0.. {
        if i == 2 {
            waiting.store(1, SeqCst);
        }
        q.put(i).expect("put");
    }
}

/// The Pod (slot ring) path across processes: a child's `close` is its own handle's; a
/// `shutdown` here wakes a child asleep in `get`; a producer killed asleep on a full queue
/// leaves exactly what it put, and the queue goes on working.
#[test]
fn pod_queue_close_shutdown_and_a_killed_producer() {
    let _g = common::shared();
    for m in METHODS {
        let q = Queue::<u64, PodCodec>::new(2).unwrap();
        q.put(1).unwrap();
        let got = join(&mut start(m, pod_close_mine, q.clone()));
        assert_eq!(got, ["Err(5)", "Err(Closed)"], "{m:?}");
        assert_eq!(
            q.try_get(),
            Ok(1),
            "{m:?}: the child's closed handle took nothing"
        );

        let waiting = flag();
        let mut c = start(m, pod_get_forever, (q.clone(), waiting.clone()));
        assert!(eventually(LONG, || waiting.load(SeqCst) == 1));
        wait_until_asleep(c.pid());
        q.shutdown();
        assert_eq!(join(&mut c), "Err(Closed)", "{m:?}: shutdown wakes the sleeper");
        assert!(matches!(q.try_put(3), Err(TrySendError::Closed(3))));

        let q = Queue::<u64, PodCodec>::new(2).unwrap();
        let waiting = flag();
        let mut p = start(m, pod_put_forever, (q.clone(), waiting.clone()));
        assert!(eventually(LONG, || waiting.load(SeqCst) == 1));
        wait_until_asleep(p.pid());
        kill_and_reap(&mut p);
        assert_eq!((q.try_get(), q.try_get()), (Ok(0), Ok(1)), "{m:?}");
        assert_eq!(q.try_get(), Err(TryRecvError::Empty));
        q.put(9).unwrap();
        assert_eq!(q.try_get(), Ok(9));
    }
}
