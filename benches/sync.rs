//! Locks and events beside their peers, every peer in the same run (this VM's cross-core
//! latency moves every few minutes, so only figures taken side by side compare).
//!
//! Four groups:
//! - "semaphore acquire+release uncontended": shmproc `Semaphore` and `RawSemaphore` fast
//!   paths (a unit always free). Unit: time per acquire+release.
//! - "lock+unlock uncontended": one thread increments a u64 under a lock. shmproc `Lock`
//!   (guard form) and `RawLock` (raw `lock(None)`/`unlock()`, placed in a `Shared` struct
//!   with the u64), `Value<u64>` (guard form, reentrant lock; extra), `std::sync::Mutex`,
//!   `parking_lot::Mutex`, and raw_sync's `Mutex` (process-shared pthread mutex) placed in a
//!   shared_memory segment. Unit: time per lock+increment+unlock.
//! - "contended counter, 2 processes": the parent and one forked child each do `N`
//!   increments of one shared, non-atomic u64 under the lock per round; both meet at a start
//!   barrier, the time runs from it to the end barrier, and the count is checked after every
//!   round. Throughput = `2 * N` increments per round. shmproc `Lock` (lock and counter in
//!   two segments), shmproc `RawLock` with the counter beside it in one `Shared` struct
//!   (extra), raw_sync `Mutex` in shared_memory (counter 128 bytes after the mutex).
//! - "event ping-pong round trip, 2 processes": the parent sends, the child answers, per
//!   round trip. shmproc `Event` pair (set, the other waits and clears, sets back), a raw
//!   futex ping-pong that never spins (two u32 words in a `Shared` struct,
//!   `shmproc::raw::futex::wait`/`wake_one`, wake always issued), and a pipe pair carrying
//!   an 8-byte message. The `*_busy100us` variants make each side work 100 µs (busy) before
//!   it answers, longer than `Event`'s spin phase, so every wait ends asleep: they compare
//!   the blocking paths (subtract the 200 µs of work per round trip). `spin_floor_reference`
//!   (both sides busy-poll a word) is the cross-core floor at that moment, for reading the
//!   others. Each side of the `Event` ping-pong also counts its own sets in shared memory,
//!   so a `wait` that returns with no new `set` behind it is detected: it is counted, the
//!   side waits again, and the counts are printed after the benchmark (any is a bug).
//!
//! Children are forked once per benchmark, before any timing, and served every warm-up and
//! sample of it; they are told to stop and joined when it ends (killed after 10 s if they do
//! not stop, and marked daemon so that they die with this process in any case).
// std atomics here are user code (e.g. inside a `Shared<T>`); the shim rule is for the library.
#![allow(clippy::disallowed_types)]

use std::cell::UnsafeCell;
use std::fs::File;
use std::hint::black_box;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
mod common;

use common::{await_change, bump};
use shmproc::raw::futex;
use shmproc::raw::{RawLock, RawSemaphore};
use shmproc::{Event, Lock, Process, ProcessError, Semaphore, Shared, ShmSafe, Value};

// ----------------------------------------------------------------------------- helpers

/// A u64 guarded by a lock that lives elsewhere (the bench keeps the protocol).
#[repr(C)]
struct Counter(UnsafeCell<u64>);

// SAFETY: repr(C) u64, valid for any bits, no pointers, no Drop. Every access in this file
// happens either under the lock the benchmark pairs it with or while the other process is
// parked at a barrier (whose atomics order the accesses).
unsafe impl Sync for Counter {}
// SAFETY: as above.
unsafe impl ShmSafe for Counter {}

impl Counter {
    fn new() -> Self {
        Self(UnsafeCell::new(0))
    }

    /// # Safety
    /// The caller holds the lock that guards this counter (or the other side is parked).
    unsafe fn bump(&self) {
        // SAFETY: exclusive access by the caller's contract.
        unsafe { *self.0.get() += 1 }
    }

    /// # Safety
    /// As for `bump`.
    unsafe fn get(&self) -> u64 {
        // SAFETY: exclusive access by the caller's contract.
        unsafe { *self.0.get() }
    }

    /// # Safety
    /// As for `bump`.
    unsafe fn set(&self, v: u64) {
        // SAFETY: exclusive access by the caller's contract.
        unsafe { *self.0.get() = v }
    }
}

/// A `RawLock` and the u64 it guards, side by side in one `Shared` struct.
#[repr(C)]
struct Guarded {
    lock: RawLock,
    value: Counter,
}

// SAFETY: repr(C) of a ShmSafe lock and a ShmSafe counter; `value` is only touched under
// `lock` (or while the peer is parked at a barrier).
unsafe impl ShmSafe for Guarded {}

/// Control block of a child that serves a benchmark: a two-party barrier and a stop flag.
#[repr(C)]
struct Ctl {
    /// Barrier: parties arrived in the current generation.
    arrived: AtomicU32,
    /// Barrier generation (the futex word its sleepers wait on).
    gen: AtomicU32,
    /// Barrier parties asleep on `gen` (so the last arriver can skip the wake syscall).
    sleepers: AtomicU32,
    /// Non-zero: the child must return.
    stop: AtomicU32,
    /// Ping-pong sequence number, bumped by the child at every answer.
    seq: AtomicU64,
    /// Ping-pong: words for the raw futex peer (parent -> child, child -> parent); `ping`
    /// also counts the parent's sets in the `Event` ping-pong.
    ping: AtomicU32,
    pong: AtomicU32,
    /// `Event::wait` returns in the child that no `set` explains.
    early: AtomicU64,
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
            seq: AtomicU64::new(0),
            ping: AtomicU32::new(0),
            pong: AtomicU32::new(0),
            early: AtomicU64::new(0),
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire) != 0
    }

    /// Two-party barrier: spins for up to 200 µs, then sleeps on `gen`. Returns `false` if
    /// the stop flag was raised (the barrier is then no longer usable).
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

    /// Tells the child to return, wherever it waits on this block; never blocks.
    fn raise_stop(&self) {
        self.stop.store(1, Ordering::Release);
        self.gen.fetch_add(1, Ordering::AcqRel);
        futex::wake_all(&self.gen);
        self.ping.fetch_add(1, Ordering::AcqRel);
        futex::wake_all(&self.ping);
    }
}

/// A forked child serving one benchmark. `finish` stops it and checks how it ended; if the
/// benchmark panics first, `Drop` stops it (killing it after 10 s) and reaps it.
struct Peer {
    child: Option<Process<()>>,
    stop: Box<dyn FnMut()>,
    name: &'static str,
}

impl Peer {
    fn start(name: &'static str, body: impl FnOnce() + 'static, stop: impl FnMut() + 'static) -> Self {
        let child = Process::fork(body)
            .name(name)
            .daemon(true)
            .start()
            .unwrap_or_else(|e| panic!("{name}: cannot fork the peer: {e}"));
        Self {
            child: Some(child),
            stop: Box::new(stop),
            name,
        }
    }

    fn shutdown(&mut self) -> Result<(), ProcessError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        (self.stop)();
        match child.join_timeout(Duration::from_secs(10)) {
            Err(ProcessError::Timeout) => {
                let _ = child.kill();
                child.join().and(Err(ProcessError::Timeout))
            }
            r => r,
        }
    }

    fn finish(mut self) {
        if let Err(e) = self.shutdown() {
            panic!("{}: the peer process failed: {e}", self.name);
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!("{}: the peer process failed: {e}", self.name);
        }
    }
}

/// A raw_sync `Mutex` (process-shared pthread mutex) at offset 0 of a 4 KiB shared_memory
/// segment, guarding a u64 at offset 128, as in the anchors.
struct RawSyncMutex {
    mutex: Box<dyn raw_sync::locks::LockImpl>,
    counter: *mut u64,
    // Last: the mapping must outlive the mutex box that points into it.
    shmem: shared_memory::Shmem,
}

const RAW_SYNC_SEG: usize = 4096;
const RAW_SYNC_COUNTER: usize = 128;

impl RawSyncMutex {
    fn create() -> Self {
        use raw_sync::locks::{LockInit, Mutex};
        let shmem = shared_memory::ShmemConf::new()
            .size(RAW_SYNC_SEG)
            .create()
            .expect("shared_memory segment");
        let base = shmem.as_ptr();
        // SAFETY: the segment is 4 KiB, page-aligned and ours; the mutex takes the first
        // 40 bytes and the counter 8 bytes at offset 128.
        let (mutex, _) = unsafe { Mutex::new(base, base.add(RAW_SYNC_COUNTER)) }.expect("raw_sync mutex");
        Self {
            mutex,
            // SAFETY: inside the segment, 8-aligned.
            counter: unsafe { base.add(RAW_SYNC_COUNTER) }.cast(),
            shmem,
        }
    }

    /// Opens the same segment by name (as an unrelated process would) and the mutex in it.
    fn open(os_id: &str) -> Self {
        use raw_sync::locks::{LockInit, Mutex};
        let shmem = shared_memory::ShmemConf::new()
            .os_id(os_id)
            .open()
            .expect("open shared_memory segment");
        let base = shmem.as_ptr();
        // SAFETY: the creator initialised a pthread mutex at offset 0 of this segment.
        let (mutex, _) =
            unsafe { Mutex::from_existing(base, base.add(RAW_SYNC_COUNTER)) }.expect("raw_sync mutex");
        Self {
            mutex,
            // SAFETY: inside the segment, 8-aligned.
            counter: unsafe { base.add(RAW_SYNC_COUNTER) }.cast(),
            shmem,
        }
    }

    fn os_id(&self) -> String {
        self.shmem.get_os_id().to_owned()
    }

    #[inline]
    fn increment(&self) {
        let g = black_box(&*self.mutex).lock().expect("raw_sync lock");
        // SAFETY: the guard's data pointer is the counter, and we hold the mutex.
        unsafe { *(*g).cast::<u64>() += 1 };
        drop(g);
    }

    /// # Safety
    /// Only while the other process is parked at a barrier.
    unsafe fn count(&self) -> u64 {
        // SAFETY: by the caller's contract nobody writes meanwhile.
        unsafe { self.counter.read_volatile() }
    }

    /// # Safety
    /// As for `count`.
    unsafe fn reset(&self) {
        // SAFETY: as above.
        unsafe { self.counter.write_volatile(0) }
    }
}

/// Spins until `d` has passed (stands for work done before answering).
fn busy(d: Duration) {
    if d.is_zero() {
        return;
    }
    let end = Instant::now() + d;
    while Instant::now() < end {
        std::hint::spin_loop();
    }
}

// -------------------------------------------------------------- 1: uncontended lock+unlock

fn uncontended(c: &mut Criterion) {
    let mut group = c.benchmark_group("lock+unlock uncontended");
    group.sample_size(50);
    group.warm_up_time(Duration::from_millis(700));
    group.measurement_time(Duration::from_secs(3));

    // Each variant times `iters` increments and then checks that exactly `iters` landed.
    let lock = Lock::new().expect("Lock");
    let count = Shared::new(Counter::new()).expect("counter");
    group.bench_function("shmproc_Lock", |b| {
        b.iter_custom(|iters| {
            let lock = black_box(&lock);
            // SAFETY: nobody else has the counter.
            let before = unsafe { count.get() };
            let t = Instant::now();
            for _ in 0..iters {
                let g = lock.lock().expect("Lock::lock");
                // SAFETY: `g` holds the lock guarding the counter.
                unsafe { count.bump() };
                drop(g);
            }
            let e = t.elapsed();
            // SAFETY: as above.
            assert_eq!(unsafe { count.get() } - before, iters);
            e
        })
    });

    let guarded = Shared::new(Guarded {
        lock: RawLock::new(),
        value: Counter::new(),
    })
    .expect("Guarded");
    group.bench_function("shmproc_RawLock", |b| {
        b.iter_custom(|iters| {
            let g = black_box(&*guarded);
            // SAFETY: nobody else has the counter.
            let before = unsafe { g.value.get() };
            let t = Instant::now();
            for _ in 0..iters {
                g.lock.lock(None).expect("RawLock::lock");
                // SAFETY: we hold `g.lock`, which guards `g.value`.
                unsafe { g.value.bump() };
                g.lock.unlock().expect("RawLock::unlock");
            }
            let e = t.elapsed();
            // SAFETY: as above.
            assert_eq!(unsafe { g.value.get() } - before, iters);
            e
        })
    });

    let value = Value::new(0u64).expect("Value");
    group.bench_function("shmproc_Value_guard", |b| {
        b.iter_custom(|iters| {
            let v = black_box(&value);
            let before = v.get().expect("Value::get");
            let t = Instant::now();
            for _ in 0..iters {
                *v.lock().expect("Value::lock") += 1;
            }
            let e = t.elapsed();
            assert_eq!(v.get().expect("Value::get") - before, iters);
            e
        })
    });

    let std_mutex = std::sync::Mutex::new(0u64);
    group.bench_function("std_Mutex", |b| {
        b.iter_custom(|iters| {
            let m = black_box(&std_mutex);
            let before = *m.lock().expect("std lock");
            let t = Instant::now();
            for _ in 0..iters {
                *m.lock().expect("std lock") += 1;
            }
            let e = t.elapsed();
            assert_eq!(*m.lock().expect("std lock") - before, iters);
            e
        })
    });

    let pl_mutex = parking_lot::Mutex::new(0u64);
    group.bench_function("parking_lot_Mutex", |b| {
        b.iter_custom(|iters| {
            let m = black_box(&pl_mutex);
            let before = *m.lock();
            let t = Instant::now();
            for _ in 0..iters {
                *m.lock() += 1;
            }
            let e = t.elapsed();
            assert_eq!(*m.lock() - before, iters);
            e
        })
    });

    let rs = RawSyncMutex::create();
    group.bench_function("raw_sync_Mutex_shm", |b| {
        b.iter_custom(|iters| {
            // SAFETY: single process, single thread.
            let before = unsafe { rs.count() };
            let t = Instant::now();
            for _ in 0..iters {
                rs.increment();
            }
            let e = t.elapsed();
            // SAFETY: as above.
            assert_eq!(unsafe { rs.count() } - before, iters);
            e
        })
    });
    group.finish();
}

// --------------------------------------------------------- 2: contended counter, 2 processes

/// Increments per process per round: ≈ 5–30 ms per round on this machine.
const CONTENDED_N: u64 = 100_000;

/// Runs `iters` rounds on the parent side: reset the counter, start barrier, `N` increments,
/// end barrier, check `2 * N`. Returns the time from the start to the end barrier, summed.
fn contended_rounds(
    name: &str,
    ctl: &Ctl,
    iters: u64,
    work: impl Fn(),
    reset: impl Fn(),
    count: impl Fn() -> u64,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        reset();
        assert!(ctl.barrier(), "{name}: stop raised");
        let t = Instant::now();
        for _ in 0..CONTENDED_N {
            work();
        }
        assert!(ctl.barrier(), "{name}: stop raised");
        total += t.elapsed();
        assert_eq!(count(), 2 * CONTENDED_N, "{name}: lost increments");
    }
    total
}

/// The child's side of `contended_rounds`.
fn contended_child(ctl: &Ctl, work: impl Fn()) {
    while ctl.barrier() {
        for _ in 0..CONTENDED_N {
            work();
        }
        if !ctl.barrier() {
            break;
        }
    }
}

fn stop_on(ctl: &Shared<Ctl>) -> impl FnMut() + 'static {
    let ctl = ctl.clone();
    move || ctl.raise_stop()
}

fn contended(c: &mut Criterion) {
    let mut group = c.benchmark_group("contended counter, 2 processes");
    group.throughput(Throughput::Elements(2 * CONTENDED_N));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(40);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(6));

    // shmproc Lock: the lock in its own segment, the counter in another.
    {
        let lock = Lock::new().expect("Lock");
        let count = Shared::new(Counter::new()).expect("counter");
        let ctl = Shared::new(Ctl::new()).expect("ctl");
        let inc = |lock: &Lock, count: &Counter| {
            let g = lock.lock().expect("Lock::lock");
            // SAFETY: `g` holds the lock guarding the counter.
            unsafe { count.bump() };
            drop(g);
        };
        let mut peer = None;
        group.bench_function("shmproc_Lock", |b| {
            peer.get_or_insert_with(|| {
                let (l, k, x) = (lock.clone(), count.clone(), ctl.clone());
                Peer::start(
                    "contended_shmproc_Lock",
                    move || contended_child(&x, || inc(&l, &k)),
                    stop_on(&ctl),
                )
            });
            b.iter_custom(|iters| {
                contended_rounds(
                    "shmproc_Lock",
                    &ctl,
                    iters,
                    || inc(&lock, &count),
                    // SAFETY (both): the child is parked at the start / after the end barrier.
                    || unsafe { count.set(0) },
                    || unsafe { count.get() },
                )
            })
        });
        if let Some(p) = peer {
            p.finish();
        }
    }

    // shmproc RawLock with its counter in the same Shared struct (same cache line).
    {
        let guarded = Shared::new(Guarded {
            lock: RawLock::new(),
            value: Counter::new(),
        })
        .expect("Guarded");
        let ctl = Shared::new(Ctl::new()).expect("ctl");
        let inc = |g: &Guarded| {
            g.lock.lock(None).expect("RawLock::lock");
            // SAFETY: we hold `g.lock`, which guards `g.value`.
            unsafe { g.value.bump() };
            g.lock.unlock().expect("RawLock::unlock");
        };
        let mut peer = None;
        group.bench_function("shmproc_RawLock_same_line", |b| {
            peer.get_or_insert_with(|| {
                let (g, x) = (guarded.clone(), ctl.clone());
                Peer::start(
                    "contended_shmproc_RawLock",
                    move || contended_child(&x, || inc(&g)),
                    stop_on(&ctl),
                )
            });
            b.iter_custom(|iters| {
                contended_rounds(
                    "shmproc_RawLock_same_line",
                    &ctl,
                    iters,
                    || inc(&guarded),
                    // SAFETY (both): the child is parked at the start / after the end barrier.
                    || unsafe { guarded.value.set(0) },
                    || unsafe { guarded.value.get() },
                )
            })
        });
        if let Some(p) = peer {
            p.finish();
        }
    }

    // raw_sync Mutex in a shared_memory segment; the child opens it by name.
    {
        let rs = RawSyncMutex::create();
        let ctl = Shared::new(Ctl::new()).expect("ctl");
        let mut peer = None;
        group.bench_function("raw_sync_Mutex_shm", |b| {
            peer.get_or_insert_with(|| {
                let (os_id, x) = (rs.os_id(), ctl.clone());
                let body = move || {
                    let mine = RawSyncMutex::open(&os_id);
                    contended_child(&x, || mine.increment());
                };
                Peer::start("contended_raw_sync", body, stop_on(&ctl))
            });
            b.iter_custom(|iters| {
                contended_rounds(
                    "raw_sync_Mutex_shm",
                    &ctl,
                    iters,
                    || rs.increment(),
                    // SAFETY (both): the child is parked at the start / after the end barrier.
                    || unsafe { rs.reset() },
                    || unsafe { rs.count() },
                )
            })
        });
        if let Some(p) = peer {
            p.finish();
        }
    }
    group.finish();
}

// ------------------------------------------------------ 3: event ping-pong, 2 processes

/// Work each side does before answering in the `*_busy100us` variants.
const BUSY: Duration = Duration::from_micros(100);

fn event_pingpong(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: &str,
    work: Duration,
) {
    let ping = Event::new().expect("Event");
    let pong = Event::new().expect("Event");
    let ctl = Shared::new(Ctl::new()).expect("ctl");
    let mut expected = 0u64;
    let mut early = 0u64;
    let mut peer = None;
    group.bench_function(id, |b| {
        peer.get_or_insert_with(|| {
            let (pi, po, x) = (ping.clone(), pong.clone(), ctl.clone());
            let body = move || {
                let mut seen = 0u32;
                loop {
                    // `ping` counts the parent's sets (bumped before each): a `wait` that
                    // returns without it having moved returned early; count it, wait again.
                    loop {
                        pi.wait();
                        pi.clear();
                        let v = x.ping.load(Ordering::SeqCst);
                        if v != seen {
                            seen = v;
                            break;
                        }
                        x.early.fetch_add(1, Ordering::Relaxed);
                    }
                    if x.stopped() {
                        break;
                    }
                    busy(work);
                    x.seq.fetch_add(1, Ordering::SeqCst);
                    po.set();
                }
            };
            let stopper = ping.clone();
            let x = ctl.clone();
            Peer::start("event_pingpong", body, move || {
                x.raise_stop();
                stopper.set();
            })
        });
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                busy(work);
                ctl.ping.fetch_add(1, Ordering::SeqCst);
                ping.set();
                expected += 1;
                loop {
                    pong.wait();
                    pong.clear();
                    let seq = ctl.seq.load(Ordering::SeqCst);
                    if seq == expected {
                        break;
                    }
                    assert!(seq < expected, "event ping-pong out of step");
                    early += 1;
                }
            }
            t.elapsed()
        })
    });
    if let Some(p) = peer {
        p.finish();
    }
    // `Event::wait` must not return before a `set` that started after the `clear`: any
    // count here is a bug in `RawEvent` (its flag and generation are two separate words).
    let child_early = ctl.early.load(Ordering::Relaxed);
    if expected > 0 {
        eprintln!(
            "{id}: {expected} round trips; Event::wait returned early {early} times in the \
             parent, {child_early} in the child"
        );
    }
}

fn futex_pingpong(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: &str,
    work: Duration,
) {
    let ctl = Shared::new(Ctl::new()).expect("ctl");
    let mut expected = 0u64;
    let mut peer = None;
    group.bench_function(id, |b| {
        peer.get_or_insert_with(|| {
            let x = ctl.clone();
            let body = move || {
                let mut seen = 0u32;
                loop {
                    // Sleep at once until the parent bumps `ping`: no spinning.
                    loop {
                        let v = x.ping.load(Ordering::Acquire);
                        if v != seen {
                            seen = v;
                            break;
                        }
                        futex::wait(&x.ping, v, None);
                    }
                    if x.stopped() {
                        break;
                    }
                    busy(work);
                    x.seq.fetch_add(1, Ordering::Relaxed);
                    x.pong.store(seen, Ordering::Release);
                    futex::wake_one(&x.pong);
                }
            };
            Peer::start("futex_pingpong", body, stop_on(&ctl))
        });
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                busy(work);
                let next = ctl.ping.load(Ordering::Relaxed).wrapping_add(1);
                ctl.ping.store(next, Ordering::Release);
                futex::wake_one(&ctl.ping);
                loop {
                    let v = ctl.pong.load(Ordering::Acquire);
                    if v == next {
                        break;
                    }
                    futex::wait(&ctl.pong, v, None);
                }
                expected += 1;
                assert_eq!(
                    ctl.seq.load(Ordering::Relaxed),
                    expected,
                    "futex ping-pong out of step"
                );
            }
            t.elapsed()
        })
    });
    if let Some(p) = peer {
        p.finish();
    }
}

/// Reference, not a peer: both sides busy-poll one word each (no futex), so this is the
/// cross-core floor of a round trip at the moment (it moves with the host's vCPU placement).
fn spin_pingpong(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, id: &str) {
    let ctl = Shared::new(Ctl::new()).expect("ctl");
    let mut peer = None;
    group.bench_function(id, |b| {
        peer.get_or_insert_with(|| {
            let x = ctl.clone();
            let body = move || {
                let mut seen = 0u32;
                loop {
                    let v = loop {
                        let v = x.ping.load(Ordering::Acquire);
                        if v != seen {
                            break v;
                        }
                        std::hint::spin_loop();
                    };
                    seen = v;
                    if x.stopped() {
                        break;
                    }
                    x.pong.store(v, Ordering::Release);
                }
            };
            Peer::start("spin_pingpong", body, stop_on(&ctl))
        });
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                let next = ctl.ping.load(Ordering::Relaxed).wrapping_add(1);
                ctl.ping.store(next, Ordering::Release);
                while ctl.pong.load(Ordering::Acquire) != next {
                    std::hint::spin_loop();
                }
            }
            t.elapsed()
        })
    });
    if let Some(p) = peer {
        p.finish();
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

/// The parent's "stop" message on the pipe.
const PIPE_STOP: u64 = u64::MAX;

fn pipe_pingpong(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, id: &str) {
    let (to_child_rx, mut to_child_tx) = pipe();
    let (mut to_parent_rx, to_parent_tx) = pipe();
    let mut seq = 0u64;
    let mut peer = None;
    let mut ends = Some((to_child_rx, to_parent_tx));
    group.bench_function(id, |b| {
        peer.get_or_insert_with(|| {
            let (mut rx, mut tx) = ends.take().expect("pipe ends");
            let body = move || {
                let mut buf = [0u8; 8];
                let mut want = 0u64;
                loop {
                    rx.read_exact(&mut buf).expect("child read");
                    let v = u64::from_le_bytes(buf);
                    if v == PIPE_STOP {
                        break;
                    }
                    assert_eq!(v, want, "pipe ping-pong out of step");
                    want += 1;
                    tx.write_all(&buf).expect("child write");
                }
            };
            let mut stopper = to_child_tx.try_clone().expect("dup pipe");
            Peer::start("pipe_pingpong", body, move || {
                let _ = stopper.write_all(&PIPE_STOP.to_le_bytes());
            })
        });
        b.iter_custom(|iters| {
            let mut buf = [0u8; 8];
            let t = Instant::now();
            for _ in 0..iters {
                to_child_tx.write_all(&seq.to_le_bytes()).expect("parent write");
                to_parent_rx.read_exact(&mut buf).expect("parent read");
                assert_eq!(u64::from_le_bytes(buf), seq, "pipe ping-pong out of step");
                seq += 1;
            }
            t.elapsed()
        })
    });
    // The parent's copies of the child's ends close here (after the fork, if any).
    drop(ends);
    if let Some(p) = peer {
        p.finish();
    }
}

fn pingpong(c: &mut Criterion) {
    let mut group = c.benchmark_group("event ping-pong round trip, 2 processes");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(40);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    spin_pingpong(&mut group, "spin_floor_reference");
    event_pingpong(&mut group, "shmproc_Event", Duration::ZERO);
    futex_pingpong(&mut group, "raw_futex_nospin", Duration::ZERO);
    pipe_pingpong(&mut group, "pipe_8B");
    event_pingpong(&mut group, "shmproc_Event_busy100us", BUSY);
    futex_pingpong(&mut group, "raw_futex_nospin_busy100us", BUSY);
    group.finish();
}

// ------------------------------------------------------- 1b: uncontended semaphore acquire+release

/// The semaphore fast paths (a unit is always free): one CAS down, one CAS up, no futex call.
fn semaphore_uncontended(c: &mut Criterion) {
    let mut group = c.benchmark_group("semaphore acquire+release uncontended");
    group.sample_size(50);
    group.warm_up_time(Duration::from_millis(700));
    group.measurement_time(Duration::from_secs(3));

    let sem = Semaphore::new(1).expect("Semaphore");
    group.bench_function("shmproc_Semaphore", |b| {
        b.iter_custom(|iters| {
            let s = black_box(&sem);
            let t = Instant::now();
            for _ in 0..iters {
                s.acquire().expect("Semaphore::acquire");
                s.release().expect("Semaphore::release");
            }
            let e = t.elapsed();
            assert_eq!(s.value(), 1);
            e
        })
    });

    let raw = Shared::new(RawSemaphore::new(1, false)).expect("RawSemaphore");
    group.bench_function("shmproc_RawSemaphore", |b| {
        b.iter_custom(|iters| {
            let s = black_box(&*raw);
            let t = Instant::now();
            for _ in 0..iters {
                s.acquire(None).expect("RawSemaphore::acquire");
                s.release().expect("RawSemaphore::release");
            }
            let e = t.elapsed();
            assert_eq!(s.value(), 1);
            e
        })
    });
    group.finish();
}

fn main() {
    shmproc::init();
    let mut criterion = Criterion::default().configure_from_args();
    uncontended(&mut criterion);
    semaphore_uncontended(&mut criterion);
    contended(&mut criterion);
    pingpong(&mut criterion);
    criterion.final_summary();
}
