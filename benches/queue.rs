//! Queues, rings and channels beside their peers, every peer in the same run (this VM's
//! cross-core speed moves 2–6x when the host moves its vCPUs, so only figures taken side by
//! side compare). Filter by group: `cargo bench --bench queue -- u64` (or `1KiB`,
//! `roundtrip`).
//!
//! Four groups, each first through criterion (one candidate after the other), then through
//! an interleaved pass (every candidate once per round, several rounds, a spin-floor probe
//! at the start of each round) printed as a table with same-round ratios:
//! - "u64": throughput of u64 messages from a forked producer (child) to the consumer
//!   (parent). The producer sends the sequence number, the consumer checks every message
//!   against the number it expects (order, loss, duplicates; the numbering runs on across
//!   rounds, so a message left over from a round fails the next). Candidates: shmproc
//!   `SpscRing<u64>` non-blocking (`try_push`/`try_pop`, both spinning; nobody sleeps, so
//!   no notify), the same with `push_slice`/`pop_slice` in batches of 64 (extra), and
//!   blocking (`push`/`pop` with no deadline); a minimal cached-index SPSC ring written
//!   here (a reference, not a ceiling: the same algorithm with no checks, no close flag, no wake-up words,
//!   in a `MAP_SHARED` anonymous mapping; memmap2's `map_anon` is `MAP_PRIVATE`, so plain
//!   `mmap`); shmproc `Queue<u64, PodCodec>` (`put`/`get`, default 1 MiB buffer, no item
//!   limit); shmproc `Connection<u64, PodCodec>` (one-way pipe, blocking `send`/`recv`);
//!   shmproc `MpmcRing<u64>` (blocking `push`/`pop`, 1024 slots); `ipmpsc` (1 MiB file-backed ring created with `create_temp`, opened by path in
//!   the child, as in the anchors); `ipc-channel` `IpcSender<u64>` (channel created before
//!   the fork); a pipe and a `UnixStream` socketpair (one 8-byte write and one 8-byte
//!   `read_exact` per message); and, in-process references between two THREADS,
//!   `crossbeam_channel::bounded(1024)` and `std::sync::mpsc::sync_channel(1024)`. Rings
//!   and channels with an item capacity hold 1024 items.
//! - "1KiB": throughput of 1 KiB messages, same set-up; the producer writes the message's
//!   sequence number into its first and last 8 bytes, the consumer checks the length and
//!   both. shmproc `Queue<Vec<u8>>` (postcard: a `Vec<u8>` is a serde sequence, encoded
//!   and decoded byte by byte), `Queue<Vec<u8>, Bytes>` (the raw-bytes codec),
//!   `Queue<ByteBuf>` (postcard, serde_bytes: one length-prefixed copy), `Queue<[u8; 1024],
//!   PodCodec>`, `Connection::send_bytes` / `recv_bytes_into` (1 MiB pipe, no allocation
//!   on either side), `SpscRing<[u8; 1024]>` blocking (1024 slots = 1 MiB; extra, the ring
//!   ceiling for big items), `ipmpsc` with `serde_bytes` (its fast path: sends `Bytes`,
//!   receives through its `zero_copy_context` a `&Bytes` borrowed from its ring: no
//!   allocation or copy, its best documented path), `ipc-channel` `IpcBytesSender` and `IpcSender<Vec<u8>>`, pipe and
//!   socketpair (1 KiB `write_all` / `read_exact`). APIs that take the message by value
//!   (`Queue::put`, `IpcSender::send`) get a fresh copy of the template per message, the
//!   others reuse one buffer.
//! - "roundtrip": the parent sends a u64, the child answers with it, the parent checks it.
//!   Raw atomic spin ping-pong on one word (the floor), raw futex WAIT/WAKE ping-pong that
//!   never spins (non-private futex on one u32 through `shmproc::raw::futex`, wake always
//!   issued; the blocking floor),
//!   shmproc `SpscRing` pair spinning (`try_pop` loops) and blocking (`pop(None)`, which
//!   spins for up to 20 µs before it sleeps), shmproc `Queue<u64, PodCodec>` pair
//!   (blocking `get`), a shmproc duplex `Connection<u64, PodCodec>`, ipmpsc pair, ipc-channel pair, pipe pair, socketpair. Criterion
//!   times blocks of round trips with no clock read inside; the interleaved pass then
//!   stamps every round trip (one `Instant::now()` each, whose cost is printed) and prints
//!   mean, p50, p90, p99, p99.9 and max per candidate.
//! - "roundtrip_sleeping": the same for the futex floor, `Queue` and `Connection`, with the
//!   child busy for 200 µs before each answer, so the parent's wait outlasts shmproc's 20 µs
//!   spin and sleeps every time: the blocking path against the raw futex.
//!
//! Each candidate's peer (a forked child, or a thread for the two in-process references)
//! is created the first time criterion runs the candidate and serves every warm-up and
//! sample of it, and the interleaved pass: it waits at a two-party barrier (spins 200 µs,
//! then sleeps on a futex), then for the parent's "go", reads how many messages the round
//! has, produces or echoes them, and waits again. The parent starts its clock after the
//! barrier and before "go" (so a producer never fills the ring ahead of the clock); the
//! clock stops at the round's last message (or round trip). Idle peers sleep. After the
//! group every peer is told to stop and joined (a child that does not stop within 10 s is
//! killed, then joined; children are daemons, so they die with this process in any case),
//! and the segments, mappings, fds and ipmpsc's temporary files go with the handles.
//!
//! Conditions, printed with each group's table: before its first candidate the group waits
//! (at most 30 s) for half a second in which other processes use under 0.15 core; the spin
//! floor (mean round trip of a cross-core atomic ping-pong) before criterion, at the start
//! of each interleaved round and after; the CPU time other processes used during each
//! interleaved round (`/proc/stat` minus this process, its peers and its reaped children)
//! and the steal time (a round in which the two add up to more than 0.1 s — the tick-based
//! accounting alone is off by a few hundredths — is dropped and redone after a quiet half
//! second, up to 8 times per pass); the same for the whole group,
//! with the load average. Spinning candidates need both vCPUs: when a third process runs,
//! they crawl.
// std atomics here are user code (e.g. inside a `Shared<T>`); the shim rule is for the library.
#![allow(clippy::disallowed_types)]

use std::cell::UnsafeCell;
use std::fs::File;
use std::hint::black_box;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytemuck::Pod;
use criterion::{Criterion, SamplingMode, Throughput};
use serde_bytes::ByteBuf;
use shmproc::raw::{Consumer, MpmcRing, Producer, SpscRing};
mod common;

use common::{await_change, bump, cpu_snap, fmt_ns, foreign, loadavg, median, pct, wait_quiet};
use shmproc::raw::futex;
use shmproc::{
    Bytes, Codec, Connection, PodCodec, Postcard, Process, ProcessError, Queue, Shared, ShmSafe,
    TryRecvError, TrySendError, PIPE_CAPACITY,
};

// ------------------------------------------------------------------------------ settings

/// Item capacity of every ring and bounded channel in the u64 group.
const SLOTS: usize = 1024;
/// ipmpsc ring size (as in the anchors).
const IPMPSC_RING: u32 = 1 << 20;
/// Size of a message in the 1 KiB group.
const KIB: usize = 1024;
type Kib = [u8; KIB];

/// Criterion, per candidate: samples, warm-up, measurement.
const SAMPLES: usize = 15;
const WARM_UP: Duration = Duration::from_millis(800);
const MEASURE: Duration = Duration::from_millis(2500);

/// Interleaved pass: rounds, and the target length of one candidate's turn in a round.
const ROUNDS: usize = 7;
/// A round during which other processes' CPU-s plus steal exceed this is dropped and redone,
/// at most `MAX_DROPPED` times per pass and while the pass is within `PASS_BUDGET`.
const ROUND_FOREIGN_MAX: f64 = 0.1;
const MAX_DROPPED: usize = 8;
const PASS_BUDGET: Duration = Duration::from_secs(60);
const TURN_THROUGHPUT: Duration = Duration::from_millis(60);
const TURN_ROUNDTRIP: Duration = Duration::from_millis(50);
/// Round trips of one block of the spin-floor probe.
const PROBE_RTS: u64 = 1000;

/// A value on its own 128-byte line (two lines: the adjacent-line prefetcher).
#[repr(C, align(128))]
struct Padded<T>(T);

// ------------------------------------------------------------------------ control block

/// Control block of one candidate: a two-party barrier, a "go" word, a stop flag and the
/// round length.
#[repr(C)]
struct Ctl {
    /// Barrier: parties arrived in the current generation.
    arrived: AtomicU32,
    /// Barrier generation.
    gen: AtomicU32,
    /// Barrier parties asleep on `gen`.
    sleepers: AtomicU32,
    /// Non-zero: the peer must return.
    stop: AtomicU32,
    /// Bumped by the parent once its clock runs, after each barrier: the peer starts the
    /// round only then, so a producer never gets a head start on the timed region.
    go: AtomicU32,
    /// Peers asleep on `go`.
    go_sleepers: AtomicU32,
    /// Messages (or round trips) in the round the barrier starts.
    n: AtomicU64,
}

// SAFETY: repr(C) of atomics only.
unsafe impl ShmSafe for Ctl {}

impl Ctl {
    fn new() -> Self {
        Self {
            arrived: AtomicU32::new(0),
            gen: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
            stop: AtomicU32::new(0),
            go: AtomicU32::new(0),
            go_sleepers: AtomicU32::new(0),
            n: AtomicU64::new(0),
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst) != 0
    }

    /// Two-party barrier (spin, then sleep). Returns `false` if the stop flag was raised.
    fn barrier(&self) -> bool {
        let g = self.gen.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) == 1 {
            self.arrived.store(0, Ordering::Relaxed);
            bump(&self.gen, &self.sleepers);
        } else {
            await_change(&self.gen, g, &self.sleepers);
        }
        !self.stopped()
    }

    /// Tells the peer to return, wherever it waits on this block; never blocks.
    fn raise_stop(&self) {
        self.stop.store(1, Ordering::SeqCst);
        for w in [&self.gen, &self.go] {
            w.fetch_add(1, Ordering::SeqCst);
            futex::wake_all(w);
        }
    }
}

/// The peer's loop: at each barrier, wait for "go", then run one round of `n` items
/// numbered from where the last round stopped.
fn serve(ctl: &Ctl, mut round: impl FnMut(u64, u64)) {
    let mut next = 0u64;
    let mut go = 0u32;
    while ctl.barrier() {
        await_change(&ctl.go, go, &ctl.go_sleepers);
        go = go.wrapping_add(1);
        if ctl.stopped() {
            break;
        }
        let n = ctl.n.load(Ordering::Relaxed);
        round(next, n);
        next += n;
    }
}

/// Runs `op(i)` for `i` in `start..start + n`. With `stamps`, also records each call's
/// duration in ns (one clock read per call).
#[inline(always)]
fn timed(start: u64, n: u64, stamps: Option<&mut Vec<u32>>, mut op: impl FnMut(u64)) {
    match stamps {
        None => {
            for i in start..start + n {
                op(i);
            }
        }
        Some(out) => {
            let mut prev = Instant::now();
            for i in start..start + n {
                op(i);
                let now = Instant::now();
                out.push(u32::try_from((now - prev).as_nanos()).unwrap_or(u32::MAX));
                prev = now;
            }
        }
    }
}

// ------------------------------------------------------------------------------- peers

/// The parent's side of a round: `(first item number, items, per-item stamps)`.
type ParentRound = Box<dyn FnMut(u64, u64, Option<&mut Vec<u32>>)>;

enum Worker {
    Proc(Process<()>),
    Thread(std::thread::JoinHandle<()>),
}

/// One candidate: its control block, the parent's side and the peer serving it.
struct Cand {
    name: &'static str,
    ctl: Shared<Ctl>,
    parent: Option<ParentRound>,
    worker: Option<Worker>,
    next: u64,
}

impl Cand {
    /// Forks the peer, which runs `child` with the control block.
    fn fork(
        name: &'static str,
        child: impl FnOnce(&Ctl) + 'static,
        parent: impl FnMut(u64, u64, Option<&mut Vec<u32>>) + 'static,
    ) -> Self {
        let ctl = Shared::new(Ctl::new()).expect("control block");
        let x = ctl.clone();
        let p = Process::fork(move || child(&x))
            .name(name)
            .daemon(true)
            .start()
            .unwrap_or_else(|e| panic!("{name}: cannot fork the peer: {e}"));
        Self {
            name,
            ctl,
            parent: Some(Box::new(parent)),
            worker: Some(Worker::Proc(p)),
            next: 0,
        }
    }

    /// Starts the peer as a thread of this process.
    fn thread(
        name: &'static str,
        child: impl FnOnce(&Ctl) + Send + 'static,
        parent: impl FnMut(u64, u64, Option<&mut Vec<u32>>) + 'static,
    ) -> Self {
        let ctl = Shared::new(Ctl::new()).expect("control block");
        let x = ctl.clone();
        let h = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || child(&x))
            .unwrap_or_else(|e| panic!("{name}: cannot start the peer thread: {e}"));
        Self {
            name,
            ctl,
            parent: Some(Box::new(parent)),
            worker: Some(Worker::Thread(h)),
            next: 0,
        }
    }

    /// One round of `n` items (messages or round trips): barrier, start the clock, "go",
    /// the parent's side; returns the time from the clock's start to the last item.
    fn round(&mut self, n: u64, stamps: Option<&mut Vec<u32>>) -> Duration {
        self.ctl.n.store(n, Ordering::Relaxed);
        assert!(self.ctl.barrier(), "{}: stop raised", self.name);
        let parent = self.parent.as_mut().expect("candidate already shut down");
        let t = Instant::now();
        bump(&self.ctl.go, &self.ctl.go_sleepers);
        parent(self.next, n, stamps);
        let e = t.elapsed();
        self.next += n;
        e
    }

    /// Drops the parent's ends, stops the peer and joins it.
    fn shutdown(&mut self) -> Result<(), String> {
        self.parent = None;
        let Some(worker) = self.worker.take() else {
            return Ok(());
        };
        self.ctl.raise_stop();
        match worker {
            Worker::Proc(mut p) => match p.join_timeout(Duration::from_secs(10)) {
                Err(ProcessError::Timeout) => {
                    let _ = p.kill();
                    let _ = p.join();
                    Err("did not stop within 10 s; killed".into())
                }
                r => r.map_err(|e| e.to_string()),
            },
            Worker::Thread(h) => h.join().map_err(|_| "the peer thread panicked".into()),
        }
    }

    /// The peer's pid, if it is a child process.
    fn pid(&self) -> Option<u32> {
        match &self.worker {
            Some(Worker::Proc(p)) => Some(p.pid()),
            _ => None,
        }
    }

    fn finish(mut self) {
        if let Err(e) = self.shutdown() {
            panic!("{}: the peer failed: {e}", self.name);
        }
    }
}

impl Drop for Cand {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!("{}: the peer failed: {e}", self.name);
        }
    }
}

// ------------------------------------------------------------------------------ helpers

/// Pushes, spinning while the ring is full.
#[inline]
fn push_spin<T: Pod>(tx: &mut Producer<'_, T>, mut v: T) {
    loop {
        match tx.try_push(v) {
            Ok(()) => return,
            Err(TrySendError::Full(back)) => {
                v = back;
                std::hint::spin_loop();
            }
            Err(e) => panic!("try_push: {e}"),
        }
    }
}

/// Pops, spinning while the ring is empty.
#[inline]
fn pop_spin<T: Pod>(rx: &mut Consumer<'_, T>) -> T {
    loop {
        match rx.try_pop() {
            Ok(v) => return v,
            Err(TryRecvError::Empty) => std::hint::spin_loop(),
            Err(e) => panic!("try_pop: {e}"),
        }
    }
}

/// A pipe as two `File`s: (read end, write end).
fn pipe() -> (File, File) {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` is a valid out-array of two ints.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both fds are new and owned by nobody else.
    unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
}

fn socketpair() -> (UnixStream, UnixStream) {
    UnixStream::pair().expect("socketpair")
}

fn ipmpsc_ring() -> (String, ipmpsc::SharedRingBuffer) {
    ipmpsc::SharedRingBuffer::create_temp(IPMPSC_RING).expect("ipmpsc ring")
}

fn ipmpsc_open(path: &str) -> ipmpsc::SharedRingBuffer {
    ipmpsc::SharedRingBuffer::open(path).expect("open ipmpsc ring")
}

/// The 1 KiB template every producer starts from.
fn template() -> Kib {
    std::array::from_fn(|k| (k as u8) ^ 0xA5)
}

/// Writes the message number into the first and last 8 bytes.
#[inline]
fn stamp(buf: &mut [u8], i: u64) {
    buf[..8].copy_from_slice(&i.to_le_bytes());
    buf[KIB - 8..].copy_from_slice(&i.to_le_bytes());
}

/// Checks a received 1 KiB message: length and both copies of its number.
#[inline]
fn check(buf: &[u8], i: u64) {
    assert_eq!(buf.len(), KIB, "message length");
    let head = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
    let tail = u64::from_le_bytes(buf[KIB - 8..].try_into().expect("8 bytes"));
    assert!(head == i && tail == i, "message {i}: got {head}/{tail}");
}

/// An anonymous `MAP_SHARED` mapping (zeroed; a forked child keeps it at the same address).
struct ShmMap {
    ptr: *mut u8,
    len: usize,
}

impl ShmMap {
    fn new(len: usize) -> Self {
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(p != libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
        Self { ptr: p.cast(), len }
    }

    /// Start of the mapping. (A method, so that a closure using it captures the whole
    /// map, not just the `ptr` field: the map must live as long as the closure.)
    fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }
}

impl Drop for ShmMap {
    fn drop(&mut self) {
        // SAFETY: our own mapping; nothing borrowed from it outlives `self` (the rings
        // below keep the map beside every reference they make).
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

// ------------------------------------------------------------------- the minimal ring

/// The reference ring: a cached-index SPSC ring, release/acquire only, each index on its
/// own line, no checks, no close flag, no wake-up words. Not a bound: the crate's ring can
/// match or beat it in a round.
#[repr(C)]
struct MinRing {
    /// Written by the producer.
    tail: Padded<AtomicU64>,
    /// Written by the consumer.
    head: Padded<AtomicU64>,
    slots: [UnsafeCell<u64>; SLOTS],
}

struct MinProducer<'a> {
    ring: &'a MinRing,
    tail: u64,
    cached_head: u64,
}

impl MinProducer<'_> {
    #[inline]
    fn push(&mut self, v: u64) {
        while self.tail.wrapping_sub(self.cached_head) == SLOTS as u64 {
            self.cached_head = self.ring.head.0.load(Ordering::Acquire);
            if self.tail.wrapping_sub(self.cached_head) == SLOTS as u64 {
                std::hint::spin_loop();
            }
        }
        let slot = &self.ring.slots[self.tail as usize & (SLOTS - 1)];
        // SAFETY: the slot is free (the consumer released it: acquire of `head` above or
        // earlier) and only this producer writes free slots.
        unsafe { *slot.get() = v };
        self.tail = self.tail.wrapping_add(1);
        self.ring.tail.0.store(self.tail, Ordering::Release);
    }
}

struct MinConsumer<'a> {
    ring: &'a MinRing,
    head: u64,
    cached_tail: u64,
}

impl MinConsumer<'_> {
    #[inline]
    fn pop(&mut self) -> u64 {
        while self.cached_tail == self.head {
            self.cached_tail = self.ring.tail.0.load(Ordering::Acquire);
            if self.cached_tail == self.head {
                std::hint::spin_loop();
            }
        }
        let slot = &self.ring.slots[self.head as usize & (SLOTS - 1)];
        // SAFETY: the slot was published (acquire of `tail` above or earlier) and only
        // this consumer reads published slots.
        let v = unsafe { *slot.get() };
        self.head = self.head.wrapping_add(1);
        self.ring.head.0.store(self.head, Ordering::Release);
        v
    }
}

// --------------------------------------------------------------------- u64 throughput

fn u64_spsc_try(name: &'static str) -> Cand {
    let ring = SpscRing::<u64>::new(SLOTS).expect("SpscRing");
    let theirs = ring.clone();
    Cand::fork(
        name,
        move |ctl| {
            let mut tx = theirs.producer().expect("producer");
            serve(ctl, |start, n| {
                for i in start..start + n {
                    push_spin(&mut tx, i);
                }
            });
        },
        move |start, n, stamps| {
            let mut rx = ring.consumer().expect("consumer");
            timed(start, n, stamps, |i| assert_eq!(pop_spin(&mut rx), i))
        },
    )
}

const BATCH: usize = 64;

fn u64_spsc_slice(name: &'static str) -> Cand {
    let ring = SpscRing::<u64>::new(SLOTS).expect("SpscRing");
    let theirs = ring.clone();
    Cand::fork(
        name,
        move |ctl| {
            let mut tx = theirs.producer().expect("producer");
            let mut buf = [0u64; BATCH];
            serve(ctl, |start, n| {
                let end = start + n;
                let mut i = start;
                while i < end {
                    let k = (end - i).min(BATCH as u64) as usize;
                    for (j, b) in buf[..k].iter_mut().enumerate() {
                        *b = i + j as u64;
                    }
                    let mut done = 0;
                    while done < k {
                        let w = tx.push_slice(&buf[done..k]).expect("push_slice");
                        if w == 0 {
                            std::hint::spin_loop();
                        }
                        done += w;
                    }
                    i += k as u64;
                }
            });
        },
        move |start, n, _stamps| {
            let mut rx = ring.consumer().expect("consumer");
            let mut buf = [0u64; BATCH];
            let end = start + n;
            let mut want = start;
            while want < end {
                let room = (end - want).min(BATCH as u64) as usize;
                let k = rx.pop_slice(&mut buf[..room]).expect("pop_slice");
                if k == 0 {
                    std::hint::spin_loop();
                    continue;
                }
                for v in &buf[..k] {
                    assert_eq!(*v, want);
                    want += 1;
                }
            }
        },
    )
}

fn u64_spsc_blocking(name: &'static str) -> Cand {
    let ring = SpscRing::<u64>::new(SLOTS).expect("SpscRing");
    let theirs = ring.clone();
    Cand::fork(
        name,
        move |ctl| {
            let mut tx = theirs.producer().expect("producer");
            serve(ctl, |start, n| {
                for i in start..start + n {
                    tx.push(i, None).expect("push");
                }
            });
        },
        move |start, n, stamps| {
            let mut rx = ring.consumer().expect("consumer");
            timed(start, n, stamps, |i| assert_eq!(rx.pop(None).expect("pop"), i))
        },
    )
}

fn u64_minimal_ring(name: &'static str) -> Cand {
    let map = ShmMap::new(std::mem::size_of::<MinRing>());
    let ptr = map.as_ptr().cast::<MinRing>().cast_const();
    // Indices survive from round to round on each side.
    let (mut tail, mut cached_head) = (0u64, 0u64);
    let (mut head, mut cached_tail) = (0u64, 0u64);
    Cand::fork(
        name,
        move |ctl| {
            // SAFETY: the child inherited the mapping at the same address; zeroed memory is
            // an empty ring (atomics and u64 slots are valid for any bits).
            let ring = unsafe { &*ptr };
            serve(ctl, |start, n| {
                let mut tx = MinProducer {
                    ring,
                    tail,
                    cached_head,
                };
                for i in start..start + n {
                    tx.push(i);
                }
                (tail, cached_head) = (tx.tail, tx.cached_head);
            });
        },
        move |start, n, stamps| {
            // SAFETY: `map` lives in this closure, so the ring outlives this borrow.
            let ring = unsafe { &*map.as_ptr().cast::<MinRing>() };
            let mut rx = MinConsumer {
                ring,
                head,
                cached_tail,
            };
            timed(start, n, stamps, |i| assert_eq!(rx.pop(), i));
            (head, cached_tail) = (rx.head, rx.cached_tail);
        },
    )
}

fn u64_queue_pod(name: &'static str) -> Cand {
    let q = Queue::<u64, PodCodec>::new(0).expect("Queue");
    let theirs = q.clone();
    Cand::fork(
        name,
        move |ctl| {
            serve(ctl, |start, n| {
                for i in start..start + n {
                    theirs.put(i).expect("put");
                }
            })
        },
        move |start, n, stamps| timed(start, n, stamps, |i| assert_eq!(q.get().expect("get"), i)),
    )
}

fn u64_connection_pod(name: &'static str) -> Cand {
    let (rx, tx) = Connection::<u64, PodCodec>::pair(false, PIPE_CAPACITY).expect("pipe");
    Cand::fork(
        name,
        move |ctl| {
            serve(ctl, |start, n| {
                for i in start..start + n {
                    tx.send(&i).expect("send");
                }
            })
        },
        move |start, n, stamps| timed(start, n, stamps, |i| assert_eq!(rx.recv().expect("recv"), i)),
    )
}

fn u64_mpmc(name: &'static str) -> Cand {
    let ring = MpmcRing::<u64>::new(SLOTS).expect("MpmcRing");
    let theirs = ring.clone();
    Cand::fork(
        name,
        move |ctl| {
            serve(ctl, |start, n| {
                for i in start..start + n {
                    theirs.push(i, None).expect("push");
                }
            })
        },
        move |start, n, stamps| timed(start, n, stamps, |i| assert_eq!(ring.pop(None).expect("pop"), i)),
    )
}

fn u64_ipmpsc(name: &'static str) -> Cand {
    let (path, buf) = ipmpsc_ring();
    let rx = ipmpsc::Receiver::new(buf);
    Cand::fork(
        name,
        move |ctl| {
            let tx = ipmpsc::Sender::new(ipmpsc_open(&path));
            serve(ctl, |start, n| {
                for i in start..start + n {
                    tx.send(&i).expect("send");
                }
            });
        },
        move |start, n, stamps| {
            timed(start, n, stamps, |i| {
                assert_eq!(rx.recv::<u64>().expect("recv"), i)
            })
        },
    )
}

fn u64_ipc_channel(name: &'static str) -> Cand {
    let (tx, rx) = ipc_channel::ipc::channel::<u64>().expect("ipc channel");
    Cand::fork(
        name,
        move |ctl| {
            serve(ctl, |start, n| {
                for i in start..start + n {
                    tx.send(i).expect("send");
                }
            })
        },
        move |start, n, stamps| timed(start, n, stamps, |i| assert_eq!(rx.recv().expect("recv"), i)),
    )
}

/// u64 messages over a byte stream: one 8-byte write and one 8-byte read per message.
fn u64_stream(name: &'static str, mut r: impl Read + 'static, mut w: impl Write + 'static) -> Cand {
    Cand::fork(
        name,
        move |ctl| {
            serve(ctl, |start, n| {
                for i in start..start + n {
                    w.write_all(&i.to_le_bytes()).expect("write");
                }
            })
        },
        move |start, n, stamps| {
            timed(start, n, stamps, |i| {
                let mut b = [0u8; 8];
                r.read_exact(&mut b).expect("read");
                assert_eq!(u64::from_le_bytes(b), i);
            })
        },
    )
}

fn u64_pipe(name: &'static str) -> Cand {
    let (r, w) = pipe();
    u64_stream(name, r, w)
}

fn u64_socketpair(name: &'static str) -> Cand {
    let (a, b) = socketpair();
    u64_stream(name, a, b)
}

fn u64_crossbeam(name: &'static str) -> Cand {
    let (tx, rx) = crossbeam_channel::bounded::<u64>(SLOTS);
    Cand::thread(
        name,
        move |ctl| {
            serve(ctl, |start, n| {
                for i in start..start + n {
                    tx.send(i).expect("send");
                }
            })
        },
        move |start, n, stamps| timed(start, n, stamps, |i| assert_eq!(rx.recv().expect("recv"), i)),
    )
}

fn u64_std_sync_channel(name: &'static str) -> Cand {
    let (tx, rx) = std::sync::mpsc::sync_channel::<u64>(SLOTS);
    Cand::thread(
        name,
        move |ctl| {
            serve(ctl, |start, n| {
                for i in start..start + n {
                    tx.send(i).expect("send");
                }
            })
        },
        move |start, n, stamps| timed(start, n, stamps, |i| assert_eq!(rx.recv().expect("recv"), i)),
    )
}

// -------------------------------------------------------------------- 1 KiB throughput

/// A `Queue<T, C>` of 1 KiB items; `make` turns the stamped template into the item (a
/// fresh one per message: `put` takes its item by value).
fn kib_queue<T: AsRef<[u8]> + 'static, C: Codec<T> + 'static>(
    name: &'static str,
    make: fn(Kib) -> T,
) -> Cand {
    let q = Queue::<T, C>::new(0).expect("Queue");
    let theirs = q.clone();
    Cand::fork(
        name,
        move |ctl| {
            let t = template();
            serve(ctl, |start, n| {
                for i in start..start + n {
                    let mut a = t;
                    stamp(&mut a, i);
                    theirs.put(make(a)).expect("put");
                }
            });
        },
        move |start, n, stamps| timed(start, n, stamps, |i| check(q.get().expect("get").as_ref(), i)),
    )
}

fn kib_connection_bytes(name: &'static str) -> Cand {
    let (rx, tx) = Connection::<(), PodCodec>::pair(false, 1 << 20).expect("pipe");
    Cand::fork(
        name,
        move |ctl| {
            let mut v = template().to_vec();
            serve(ctl, |start, n| {
                for i in start..start + n {
                    stamp(&mut v, i);
                    tx.send_bytes(&v).expect("send_bytes");
                }
            });
        },
        move |start, n, stamps| {
            let mut buf = [0u8; KIB];
            timed(start, n, stamps, |i| {
                let len = rx.recv_bytes_into(&mut buf).expect("recv_bytes_into");
                check(&buf[..len], i)
            })
        },
    )
}

fn kib_spsc_blocking(name: &'static str) -> Cand {
    let ring = SpscRing::<Kib>::new(SLOTS).expect("SpscRing");
    let theirs = ring.clone();
    Cand::fork(
        name,
        move |ctl| {
            let t = template();
            let mut tx = theirs.producer().expect("producer");
            serve(ctl, |start, n| {
                for i in start..start + n {
                    let mut a = t;
                    stamp(&mut a, i);
                    tx.push(a, None).expect("push");
                }
            });
        },
        move |start, n, stamps| {
            let mut rx = ring.consumer().expect("consumer");
            timed(start, n, stamps, |i| check(&rx.pop(None).expect("pop"), i))
        },
    )
}

fn kib_ipmpsc_bytes(name: &'static str) -> Cand {
    let (path, buf) = ipmpsc_ring();
    let mut rx = ipmpsc::Receiver::new(buf);
    Cand::fork(
        name,
        move |ctl| {
            let tx = ipmpsc::Sender::new(ipmpsc_open(&path));
            let mut v = template();
            serve(ctl, |start, n| {
                for i in start..start + n {
                    stamp(&mut v, i);
                    tx.send(&serde_bytes::Bytes::new(&v)).expect("send");
                }
            });
        },
        move |start, n, stamps| {
            timed(start, n, stamps, |i| {
                // ipmpsc's zero-copy receive: the bytes are borrowed from its ring and
                // released when the context drops (no allocation, no copy).
                let mut ctx = rx.zero_copy_context();
                let bytes: &[u8] = ctx.recv::<&serde_bytes::Bytes>().expect("recv");
                check(bytes, i)
            })
        },
    )
}

fn kib_ipc_bytes(name: &'static str) -> Cand {
    let (tx, rx) = ipc_channel::ipc::bytes_channel().expect("ipc bytes channel");
    Cand::fork(
        name,
        move |ctl| {
            let mut v = template();
            serve(ctl, |start, n| {
                for i in start..start + n {
                    stamp(&mut v, i);
                    tx.send(&v).expect("send");
                }
            });
        },
        move |start, n, stamps| timed(start, n, stamps, |i| check(&rx.recv().expect("recv"), i)),
    )
}

fn kib_ipc_vec(name: &'static str) -> Cand {
    let (tx, rx) = ipc_channel::ipc::channel::<Vec<u8>>().expect("ipc channel");
    Cand::fork(
        name,
        move |ctl| {
            let t = template().to_vec();
            serve(ctl, |start, n| {
                for i in start..start + n {
                    let mut v = t.clone();
                    stamp(&mut v, i);
                    tx.send(v).expect("send");
                }
            });
        },
        move |start, n, stamps| timed(start, n, stamps, |i| check(&rx.recv().expect("recv"), i)),
    )
}

/// 1 KiB messages over a byte stream: one 1 KiB `write_all` and `read_exact` per message.
fn kib_stream(name: &'static str, mut r: impl Read + 'static, mut w: impl Write + 'static) -> Cand {
    Cand::fork(
        name,
        move |ctl| {
            let mut v = template();
            serve(ctl, |start, n| {
                for i in start..start + n {
                    stamp(&mut v, i);
                    w.write_all(&v).expect("write");
                }
            });
        },
        move |start, n, stamps| {
            let mut v = [0u8; KIB];
            timed(start, n, stamps, |i| {
                r.read_exact(&mut v).expect("read");
                check(&v, i);
            })
        },
    )
}

fn kib_pipe(name: &'static str) -> Cand {
    let (r, w) = pipe();
    kib_stream(name, r, w)
}

fn kib_socketpair(name: &'static str) -> Cand {
    let (a, b) = socketpair();
    kib_stream(name, a, b)
}

// -------------------------------------------------------------------------- round trips

/// Words for the raw ping-pongs, each on its own line.
#[repr(C)]
struct PingWords {
    spin: Padded<AtomicU64>,
    futex: Padded<AtomicU32>,
}

// SAFETY: repr(C) of atomics only.
unsafe impl ShmSafe for PingWords {}

fn ping_words() -> Shared<PingWords> {
    Shared::new(PingWords {
        spin: Padded(AtomicU64::new(0)),
        futex: Padded(AtomicU32::new(0)),
    })
    .expect("ping words")
}

/// Both sides busy-poll one word: the parent writes `2i + 1`, the child answers `2i + 2`.
fn rt_atomic_spin(name: &'static str) -> Cand {
    let w = ping_words();
    let theirs = w.clone();
    Cand::fork(
        name,
        move |ctl| {
            let w = &theirs.spin.0;
            serve(ctl, |start, n| {
                for i in start..start + n {
                    while w.load(Ordering::Acquire) != 2 * i + 1 {
                        std::hint::spin_loop();
                    }
                    w.store(2 * i + 2, Ordering::Release);
                }
            });
        },
        move |start, n, stamps| {
            let w = &w.spin.0;
            timed(start, n, stamps, |i| {
                w.store(2 * i + 1, Ordering::Release);
                while w.load(Ordering::Acquire) != 2 * i + 2 {
                    std::hint::spin_loop();
                }
            })
        },
    )
}

/// The ping value of round trip `i` on a u32 futex word (the answer is one more).
fn ping32(i: u64) -> u32 {
    (i as u32).wrapping_mul(2).wrapping_add(1)
}

/// Both sides sleep on one futex word at once (no spinning) and always wake the other.
fn rt_futex(name: &'static str) -> Cand {
    rt_futex_work(name, Duration::ZERO)
}

/// Busy for `d` (the peer's "work" before it answers, so the other side's wait outlasts
/// any spin and really sleeps).
fn busy(d: Duration) {
    if d.is_zero() {
        return;
    }
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// How long the peer works before each answer in the "roundtrip_sleeping" group: longer
/// than shmproc's 20 µs spin, so every blocking wait there goes to sleep.
const WORK: Duration = Duration::from_micros(200);

fn rt_futex_work(name: &'static str, work: Duration) -> Cand {
    let w = ping_words();
    let theirs = w.clone();
    Cand::fork(
        name,
        move |ctl| {
            let w = &theirs.futex.0;
            serve(ctl, |start, n| {
                for i in start..start + n {
                    let ping = ping32(i);
                    loop {
                        let v = w.load(Ordering::Acquire);
                        if v == ping {
                            break;
                        }
                        futex::wait(w, v, None);
                    }
                    busy(work);
                    w.store(ping.wrapping_add(1), Ordering::Release);
                    futex::wake_one(w);
                }
            });
        },
        move |start, n, stamps| {
            let w = &w.futex.0;
            timed(start, n, stamps, |i| {
                let ping = ping32(i);
                w.store(ping, Ordering::Release);
                futex::wake_one(w);
                loop {
                    let v = w.load(Ordering::Acquire);
                    if v == ping.wrapping_add(1) {
                        break;
                    }
                    futex::wait(w, v, None);
                }
            })
        },
    )
}

/// Two `SpscRing<u64>`s, parent → child and back; `blocking` picks `push`/`pop(None)`
/// over spinning on `try_push`/`try_pop`.
fn rt_spsc(name: &'static str, blocking: bool) -> Cand {
    let p2c = SpscRing::<u64>::new(64).expect("SpscRing");
    let c2p = SpscRing::<u64>::new(64).expect("SpscRing");
    let (their_p2c, their_c2p) = (p2c.clone(), c2p.clone());
    Cand::fork(
        name,
        move |ctl| {
            let mut rx = their_p2c.consumer().expect("consumer");
            let mut tx = their_c2p.producer().expect("producer");
            serve(ctl, |start, n| {
                for i in start..start + n {
                    let v = if blocking {
                        rx.pop(None).expect("pop")
                    } else {
                        pop_spin(&mut rx)
                    };
                    assert_eq!(v, i, "spsc ping-pong out of step");
                    if blocking {
                        tx.push(v, None).expect("push");
                    } else {
                        push_spin(&mut tx, v);
                    }
                }
            });
        },
        move |start, n, stamps| {
            let mut tx = p2c.producer().expect("producer");
            let mut rx = c2p.consumer().expect("consumer");
            if blocking {
                timed(start, n, stamps, |i| {
                    tx.push(i, None).expect("push");
                    assert_eq!(rx.pop(None).expect("pop"), i);
                })
            } else {
                timed(start, n, stamps, |i| {
                    push_spin(&mut tx, i);
                    assert_eq!(pop_spin(&mut rx), i);
                })
            }
        },
    )
}

fn rt_queue_pod(name: &'static str) -> Cand {
    rt_queue_pod_work(name, Duration::ZERO)
}

fn rt_queue_pod_work(name: &'static str, work: Duration) -> Cand {
    let p2c = Queue::<u64, PodCodec>::new(0).expect("Queue");
    let c2p = Queue::<u64, PodCodec>::new(0).expect("Queue");
    let (their_p2c, their_c2p) = (p2c.clone(), c2p.clone());
    Cand::fork(
        name,
        move |ctl| {
            serve(ctl, |start, n| {
                for i in start..start + n {
                    let v = their_p2c.get().expect("get");
                    assert_eq!(v, i, "queue ping-pong out of step");
                    busy(work);
                    their_c2p.put(v).expect("put");
                }
            })
        },
        move |start, n, stamps| {
            timed(start, n, stamps, |i| {
                p2c.put(i).expect("put");
                assert_eq!(c2p.get().expect("get"), i);
            })
        },
    )
}

fn rt_connection_pod(name: &'static str) -> Cand {
    rt_connection_pod_work(name, Duration::ZERO)
}

fn rt_connection_pod_work(name: &'static str, work: Duration) -> Cand {
    let (ours, theirs) = Connection::<u64, PodCodec>::pair(true, PIPE_CAPACITY).expect("pipe");
    Cand::fork(
        name,
        move |ctl| {
            serve(ctl, |start, n| {
                for i in start..start + n {
                    let v = theirs.recv().expect("recv");
                    assert_eq!(v, i, "pipe ping-pong out of step");
                    busy(work);
                    theirs.send(&v).expect("send");
                }
            })
        },
        move |start, n, stamps| {
            timed(start, n, stamps, |i| {
                ours.send(&i).expect("send");
                assert_eq!(ours.recv().expect("recv"), i);
            })
        },
    )
}

fn rt_ipmpsc(name: &'static str) -> Cand {
    let (p2c_path, p2c_buf) = ipmpsc_ring();
    let (c2p_path, c2p_buf) = ipmpsc_ring();
    let tx = ipmpsc::Sender::new(p2c_buf);
    let rx = ipmpsc::Receiver::new(c2p_buf);
    Cand::fork(
        name,
        move |ctl| {
            let rx = ipmpsc::Receiver::new(ipmpsc_open(&p2c_path));
            let tx = ipmpsc::Sender::new(ipmpsc_open(&c2p_path));
            serve(ctl, |start, n| {
                for i in start..start + n {
                    let v: u64 = rx.recv().expect("recv");
                    assert_eq!(v, i, "ipmpsc ping-pong out of step");
                    tx.send(&v).expect("send");
                }
            });
        },
        move |start, n, stamps| {
            timed(start, n, stamps, |i| {
                tx.send(&i).expect("send");
                assert_eq!(rx.recv::<u64>().expect("recv"), i);
            })
        },
    )
}

fn rt_ipc_channel(name: &'static str) -> Cand {
    let (ptx, crx) = ipc_channel::ipc::channel::<u64>().expect("ipc channel");
    let (ctx, prx) = ipc_channel::ipc::channel::<u64>().expect("ipc channel");
    Cand::fork(
        name,
        move |ctl| {
            serve(ctl, |start, n| {
                for i in start..start + n {
                    let v = crx.recv().expect("recv");
                    assert_eq!(v, i, "ipc-channel ping-pong out of step");
                    ctx.send(v).expect("send");
                }
            })
        },
        move |start, n, stamps| {
            timed(start, n, stamps, |i| {
                ptx.send(i).expect("send");
                assert_eq!(prx.recv().expect("recv"), i);
            })
        },
    )
}

/// Round trips of an 8-byte message over byte streams (the child reads `cr`, writes `cw`).
fn rt_stream(
    name: &'static str,
    mut pr: impl Read + 'static,
    mut pw: impl Write + 'static,
    mut cr: impl Read + 'static,
    mut cw: impl Write + 'static,
) -> Cand {
    Cand::fork(
        name,
        move |ctl| {
            serve(ctl, |start, n| {
                for i in start..start + n {
                    let mut b = [0u8; 8];
                    cr.read_exact(&mut b).expect("read");
                    assert_eq!(u64::from_le_bytes(b), i, "stream ping-pong out of step");
                    cw.write_all(&b).expect("write");
                }
            })
        },
        move |start, n, stamps| {
            timed(start, n, stamps, |i| {
                pw.write_all(&i.to_le_bytes()).expect("write");
                let mut b = [0u8; 8];
                pr.read_exact(&mut b).expect("read");
                assert_eq!(u64::from_le_bytes(b), i);
            })
        },
    )
}

fn rt_pipe(name: &'static str) -> Cand {
    let (cr, pw) = pipe();
    let (pr, cw) = pipe();
    rt_stream(name, pr, pw, cr, cw)
}

fn rt_socketpair(name: &'static str) -> Cand {
    let (p, c) = socketpair();
    let (p2, c2) = (
        p.try_clone().expect("dup socket"),
        c.try_clone().expect("dup socket"),
    );
    rt_stream(name, p, p2, c, c2)
}

// ------------------------------------------------------------------------------ groups

type Build = fn(&'static str) -> Cand;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Throughput,
    RoundTrip,
}

/// The cross-core floor at this moment: blocks of `PROBE_RTS` round trips of the spin
/// probe until 10 ms have passed (at least one block, at most 20); the median of the block
/// means, in ns. (Bounded in time: spinning peers crawl when a third process competes for
/// the two vCPUs.)
fn floor_ns(probe: &mut Cand) -> f64 {
    let t = Instant::now();
    let mut means = Vec::new();
    while means.is_empty() || (t.elapsed() < Duration::from_millis(10) && means.len() < 20) {
        means.push(probe.round(PROBE_RTS, None).as_nanos() as f64 / PROBE_RTS as f64);
    }
    median(&mut means)
}

/// Cost of one `Instant::now()`, in ns.
fn clock_read_ns() -> f64 {
    let n = 1_000_000u32;
    let t = Instant::now();
    let mut last = t;
    for _ in 0..n {
        last = black_box(Instant::now());
    }
    (last - t).as_nanos() as f64 / f64::from(n)
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M", r / 1e6)
    } else {
        format!("{:.1} k", r / 1e3)
    }
}

fn fmt_floors(f: &[f64]) -> String {
    f.iter()
        .map(|x| format!("{x:.0}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// Positions of the reference candidates (those present) in `live`.
fn ref_positions<'a>(live: &[Cand], refs: &[&'a str]) -> Vec<(&'a str, usize)> {
    refs.iter()
        .filter_map(|r| live.iter().position(|c| c.name == *r).map(|i| (*r, i)))
        .collect()
}

/// Items for one turn of about `turn`, from the faster of two calibration rounds of `n0`.
fn turn_size(c: &mut Cand, n0: u64, turn: Duration, lo: u64, hi: u64) -> u64 {
    let d = c.round(n0, None).min(c.round(n0, None)).as_secs_f64().max(1e-7);
    ((n0 as f64 / d * turn.as_secs_f64()) as u64).clamp(lo, hi)
}

/// What the interleaved rounds were run under.
struct Conditions {
    /// Spin floor (ns), CPU-s other processes used and steal (s), per kept round.
    kept: Vec<(f64, f64, f64)>,
    /// Rounds dropped because other processes plus steal took more than
    /// `ROUND_FOREIGN_MAX`.
    dropped: usize,
}

impl Conditions {
    fn print(&self, before: f64, after: f64) {
        let floors: Vec<f64> = self.kept.iter().map(|k| k.0).collect();
        let other: Vec<String> = self
            .kept
            .iter()
            .map(|k| format!("{:.2}+{:.2}", k.1, k.2))
            .collect();
        println!(
            "   spin floor (atomic ping-pong round trip, mean ns): before criterion {before:.0}; \
             at each kept round {}; after {after:.0}",
            fmt_floors(&floors)
        );
        println!(
            "   other processes' CPU-s + steal (s) during each kept round: {}; rounds dropped for \
             more than {ROUND_FOREIGN_MAX} s: {}",
            other.join(" / "),
            self.dropped
        );
    }
}

/// Runs `ROUNDS` interleaved rounds (spin-floor probe, then `round`), dropping and redoing
/// (after waiting for a quiet machine) a round during which other processes' CPU time plus
/// steal exceeded `ROUND_FOREIGN_MAX` — at most `MAX_DROPPED` times and within `PASS_BUDGET`; after
/// that every round is kept (their other-CPU figure shows it).
fn interleave<R>(
    live: &mut [Cand],
    probe: &mut Cand,
    mut round: impl FnMut(&mut [Cand]) -> R,
) -> (Vec<R>, Conditions) {
    let peers: Vec<u32> = live.iter().chain([&*probe]).filter_map(Cand::pid).collect();
    let t = Instant::now();
    let mut out = Vec::new();
    let mut cond = Conditions {
        kept: Vec::new(),
        dropped: 0,
    };
    while out.len() < ROUNDS {
        let a = cpu_snap(&peers);
        let floor = floor_ns(probe);
        let r = round(live);
        let b = cpu_snap(&peers);
        let (other, steal) = (foreign(a, b), b.steal - a.steal);
        if other + steal <= ROUND_FOREIGN_MAX || cond.dropped >= MAX_DROPPED || t.elapsed() > PASS_BUDGET {
            out.push(r);
            cond.kept.push((floor, other, steal));
        } else {
            cond.dropped += 1;
            wait_quiet(&peers);
        }
    }
    (out, cond)
}

/// Interleaved throughput pass: each candidate once per round; prints msg/s and the
/// median over rounds of the same-round ratio to each reference.
fn throughput_pass(group: &str, live: &mut [Cand], probe: &mut Cand, before: f64, refs: &[&str]) {
    let sizes: Vec<u64> = live
        .iter_mut()
        .map(|c| turn_size(c, 8192, TURN_THROUGHPUT, 4096, 50_000_000))
        .collect();
    let (rounds, cond) = interleave(live, probe, |live| {
        live.iter_mut()
            .zip(&sizes)
            .map(|(c, &n)| n as f64 / c.round(n, None).as_secs_f64())
            .collect::<Vec<f64>>()
    });
    let after = floor_ns(probe);
    println!();
    println!(
        "== {group}: interleaved pass, {ROUNDS} rounds (each candidate once per round, ≈{} ms a \
         turn), msg/s",
        TURN_THROUGHPUT.as_millis()
    );
    cond.print(before, after);
    let refs = ref_positions(live, refs);
    let mut header = format!("   {:<32} {:>10} {:>21}", "candidate", "median", "min – max");
    for (r, _) in &refs {
        header += &format!("  {:>26}", format!("× {r}"));
    }
    println!("{header}");
    for (k, c) in live.iter().enumerate() {
        let mut v: Vec<f64> = rounds.iter().map(|r| r[k]).collect();
        let m = median(&mut v);
        let range = format!("{} – {}", fmt_rate(v[0]), fmt_rate(v[v.len() - 1]));
        let mut line = format!("   {:<32} {:>10} {:>21}", c.name, fmt_rate(m), range);
        for &(_, i) in &refs {
            // The ratio within each round, then the median over rounds.
            let mut ratios: Vec<f64> = rounds.iter().map(|r| r[k] / r[i]).collect();
            line += &format!("  {:>26}", format!("{:.3}", median(&mut ratios)));
        }
        println!("{line}");
    }
}

/// Interleaved round-trip pass: each candidate once per round, every round trip stamped;
/// prints mean and percentiles of the pooled samples, and p50 ratios to the references.
fn roundtrip_pass(group: &str, live: &mut [Cand], probe: &mut Cand, before: f64, refs: &[&str]) {
    let sizes: Vec<u64> = live
        .iter_mut()
        .map(|c| turn_size(c, 500, TURN_ROUNDTRIP, 500, 100_000))
        .collect();
    let (rounds, cond) = interleave(live, probe, |live| {
        live.iter_mut()
            .zip(&sizes)
            .map(|(c, &n)| {
                let mut v = Vec::with_capacity(n as usize);
                c.round(n, Some(&mut v));
                v
            })
            .collect::<Vec<Vec<u32>>>()
    });
    let after = floor_ns(probe);
    let clock = clock_read_ns();
    let mut samples: Vec<Vec<u32>> = (0..live.len())
        .map(|k| rounds.iter().flat_map(|r| r[k].iter().copied()).collect())
        .collect();
    println!();
    println!(
        "== {group}: interleaved pass, {ROUNDS} rounds (each candidate once per round, ≈{} ms a \
         turn); every round trip stamped (one clock read each, ≈{clock:.0} ns, included)",
        TURN_ROUNDTRIP.as_millis()
    );
    cond.print(before, after);
    for s in &mut samples {
        s.sort_unstable();
    }
    let p50: Vec<f64> = samples.iter().map(|s| f64::from(pct(s, 0.5))).collect();
    let refs = ref_positions(live, refs);
    let mut header = format!(
        "   {:<26} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "candidate", "n", "mean", "p50", "p90", "p99", "p99.9", "max"
    );
    for (r, _) in &refs {
        header += &format!("  {:>22}", format!("p50 × {r}"));
    }
    println!("{header}");
    for (k, c) in live.iter().enumerate() {
        let s = &samples[k];
        let mean = s.iter().map(|&x| f64::from(x)).sum::<f64>() / s.len() as f64;
        let q = |p| fmt_ns(f64::from(pct(s, p)));
        let mut line = format!(
            "   {:<26} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            c.name,
            s.len(),
            fmt_ns(mean),
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            q(1.0),
        );
        for &(_, i) in &refs {
            line += &format!("  {:>22}", format!("{:.2}", p50[k] / p50[i]));
        }
        println!("{line}");
    }
}

/// Runs one group: every candidate through criterion, then the interleaved pass and its
/// table; then stops and joins every peer. `refs` name the candidates ratios are taken to.
fn run_group(
    c: &mut Criterion,
    group_name: &str,
    kind: Kind,
    cands: &[(&'static str, Build)],
    refs: &[&str],
) {
    let mut group = c.benchmark_group(group_name);
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(SAMPLES);
    group.warm_up_time(WARM_UP);
    group.measurement_time(MEASURE);
    if kind == Kind::Throughput {
        group.throughput(Throughput::Elements(1));
    }
    // With the first candidate the filter selects (none: nothing happens here), wait for a
    // quiet machine, then fork the spin probe (before any thread peer exists).
    let mut probe: Option<(Cand, f64)> = None;
    let mut machine = None;
    let mut live: Vec<Cand> = Vec::new();
    for &(id, build) in cands {
        let mut cand: Option<Cand> = None;
        group.bench_function(id, |b| {
            if probe.is_none() {
                let (waited, cores) = wait_quiet(&[]);
                machine = Some((waited, cores, cpu_snap(&[]), Instant::now(), loadavg()));
                let mut p = rt_atomic_spin("spin_probe");
                floor_ns(&mut p); // warm-up
                let before = floor_ns(&mut p);
                probe = Some((p, before));
            }
            let cand = cand.get_or_insert_with(|| build(id));
            b.iter_custom(|iters| cand.round(iters, None));
        });
        live.extend(cand);
    }
    group.finish();
    let Some((mut probe, before)) = probe else {
        return;
    };
    let t_pass = Instant::now();
    match kind {
        Kind::Throughput => throughput_pass(group_name, &mut live, &mut probe, before, refs),
        Kind::RoundTrip => roundtrip_pass(group_name, &mut live, &mut probe, before, refs),
    }
    println!(
        "   (interleaved pass took {:.1} s)",
        t_pass.elapsed().as_secs_f64()
    );
    for c in live {
        c.finish();
    }
    probe.finish();
    if let Some((waited, cores, snap, t0, load0)) = machine {
        let end = cpu_snap(&[]);
        let wall = t0.elapsed().as_secs_f64();
        let other = foreign(snap, end);
        println!(
            "   machine: waited {:.1} s for a quiet half second (other load then {cores:.2} cores); \
             during the group ({wall:.1} s) other processes used {other:.1} CPU-s ({:.2} cores \
             on average), steal {:.2} s, load average {load0} -> {}",
            waited.as_secs_f64(),
            other / wall,
            end.steal - snap.steal,
            loadavg()
        );
    }
    println!();
}

fn main() {
    shmproc::init();
    let start = Instant::now();
    let mut criterion = Criterion::default().configure_from_args();
    // Thread peers last in each list: every fork happens before any peer thread exists.
    run_group(
        &mut criterion,
        "u64",
        Kind::Throughput,
        &[
            ("shmproc_SpscRing_try", u64_spsc_try),
            ("shmproc_SpscRing_slice64", u64_spsc_slice),
            ("shmproc_SpscRing_blocking", u64_spsc_blocking),
            ("minimal_ring", u64_minimal_ring),
            ("shmproc_Queue_Pod", u64_queue_pod),
            ("shmproc_Connection_Pod", u64_connection_pod),
            ("shmproc_MpmcRing_blocking", u64_mpmc),
            ("ipmpsc", u64_ipmpsc),
            ("ipc_channel", u64_ipc_channel),
            ("pipe_8B", u64_pipe),
            ("socketpair_8B", u64_socketpair),
            ("crossbeam_bounded_threads", u64_crossbeam),
            ("std_sync_channel_threads", u64_std_sync_channel),
        ],
        &["minimal_ring", "std_sync_channel_threads", "ipmpsc"],
    );
    run_group(
        &mut criterion,
        "1KiB",
        Kind::Throughput,
        &[
            ("shmproc_Queue_Vec_postcard", |n| {
                kib_queue::<_, Postcard>(n, |a| a.to_vec())
            }),
            ("shmproc_Queue_Vec_Bytes_codec", |n| {
                kib_queue::<_, Bytes>(n, |a| a.to_vec())
            }),
            ("shmproc_Queue_ByteBuf_postcard", |n| {
                kib_queue::<_, Postcard>(n, |a| ByteBuf::from(a.to_vec()))
            }),
            ("shmproc_Queue_Pod_array", |n| {
                kib_queue::<Kib, PodCodec>(n, |a| a)
            }),
            ("shmproc_Connection_bytes", kib_connection_bytes),
            ("shmproc_SpscRing_array_blocking", kib_spsc_blocking),
            ("ipmpsc_serde_bytes", kib_ipmpsc_bytes),
            ("ipc_channel_bytes", kib_ipc_bytes),
            ("ipc_channel_Vec", kib_ipc_vec),
            ("pipe_1KiB", kib_pipe),
            ("socketpair_1KiB", kib_socketpair),
        ],
        &["ipmpsc_serde_bytes", "ipc_channel_bytes", "pipe_1KiB"],
    );
    run_group(
        &mut criterion,
        "roundtrip",
        Kind::RoundTrip,
        &[
            ("atomic_spin_floor", rt_atomic_spin),
            ("futex_floor", rt_futex),
            ("shmproc_SpscRing_spin", |n| rt_spsc(n, false)),
            ("shmproc_SpscRing_blocking", |n| rt_spsc(n, true)),
            ("shmproc_Queue_Pod", rt_queue_pod),
            ("shmproc_Connection_Pod", rt_connection_pod),
            ("ipmpsc", rt_ipmpsc),
            ("ipc_channel", rt_ipc_channel),
            ("pipe", rt_pipe),
            ("socketpair", rt_socketpair),
        ],
        &["atomic_spin_floor", "futex_floor"],
    );
    run_group(
        &mut criterion,
        "roundtrip_sleeping",
        Kind::RoundTrip,
        &[
            ("futex_floor_200us_work", |n| rt_futex_work(n, WORK)),
            ("shmproc_Queue_Pod_200us_work", |n| rt_queue_pod_work(n, WORK)),
            ("shmproc_Connection_Pod_200us_work", |n| {
                rt_connection_pod_work(n, WORK)
            }),
        ],
        &["futex_floor_200us_work"],
    );
    criterion.final_summary();
    println!("total bench time: {:.1} s", start.elapsed().as_secs_f64());
}
