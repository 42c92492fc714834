//! Creating small primitives: arena slots beside a segment each and beside a peer, in one run.
//!
//! Two parts:
//! - criterion group "create one object": time per creation, objects kept alive in batches
//!   of [`BATCH`] and dropped outside the timing (a batch of own segments already needs
//!   1000 fds). shmproc `Lock::new()` and `Value::<u64>::new(0)` (arena, the public path),
//!   `Shared::<RawLock>::new` / `RawValue::<u64>::new` (arena) beside
//!   `Shared::<RawLock>::new_own_segment` / `RawValue::<u64>::new_own_segment` (a memfd,
//!   mapping and fd per object: shmproc 0.1's path), and the peer raw_sync `Mutex` in a
//!   shared_memory segment of its own (shm_open'd in /dev/shm, 4 KiB, mutex initialised).
//!   Python's `multiprocessing.RawValue('q', 0)` took ≈ 14 µs per object on this machine
//!   (issue 14), quoted as context only.
//! - "1 M" summary (printed, not criterion): 1 000 000 `Lock`s and then 1 000 000
//!   `Value<u64>`s created and kept alive in one process: time per object, fds and mappings
//!   added, arena bytes mapped per object and slot bytes per object.
//!
//! Run: `cargo bench --bench arena`.
// std atomics here are user code (e.g. inside a `Shared<T>`); the shim rule is for the library.
#![allow(clippy::disallowed_types)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion};
use shmproc::raw::RawLock;
use shmproc::{Lock, RawValue, Shared, Value};

/// Objects alive at once in the criterion group.
const BATCH: u64 = 1000;
/// Objects of each kind in the "1 M" summary.
const MILLION: usize = 1_000_000;

/// Times `iters` creations, `BATCH` alive at a time (drops are not timed).
fn per_object<T>(iters: u64, mut make: impl FnMut() -> T) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    let mut keep: Vec<T> = Vec::with_capacity(BATCH as usize);
    while left > 0 {
        let n = left.min(BATCH);
        let t = Instant::now();
        for _ in 0..n {
            keep.push(make());
        }
        total += t.elapsed();
        keep.clear();
        left -= n;
    }
    total
}

fn bench<T>(g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, name: &str, make: impl Fn() -> T) {
    g.bench_function(name, |b| {
        b.iter_custom(|iters| per_object(iters, || black_box(make())))
    });
}

/// A raw_sync `Mutex` in a shared_memory segment of its own (the peer's per-object path).
struct RawSyncLock {
    _mutex: Box<dyn raw_sync::locks::LockImpl>,
    // Last: the mapping must outlive the mutex box that points into it.
    _shmem: shared_memory::Shmem,
}

fn raw_sync_lock() -> RawSyncLock {
    use raw_sync::locks::{LockInit, Mutex};
    let shmem = shared_memory::ShmemConf::new()
        .size(4096)
        .create()
        .expect("shared_memory segment");
    let base = shmem.as_ptr();
    // SAFETY: the segment is 4 KiB, page-aligned and ours; the mutex takes its first bytes and
    // the (unused) data pointer is 128 bytes in.
    let (mutex, _) = unsafe { Mutex::new(base, base.add(128)) }.expect("raw_sync mutex");
    RawSyncLock {
        _mutex: mutex,
        _shmem: shmem,
    }
}

fn create(c: &mut Criterion) {
    let mut g = c.benchmark_group("create one object");
    g.sample_size(30);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(3));
    bench(&mut g, "shmproc_Lock_new (arena)", || Lock::new().expect("lock"));
    bench(&mut g, "shmproc_Value_u64_new (arena)", || {
        Value::new(0u64).expect("value")
    });
    bench(&mut g, "shmproc_Shared_RawLock (arena)", || {
        Shared::new(RawLock::new()).expect("shared")
    });
    bench(&mut g, "shmproc_Shared_RawLock_own_segment", || {
        Shared::new_own_segment(RawLock::new()).expect("shared")
    });
    bench(&mut g, "shmproc_RawValue_u64 (arena)", || {
        RawValue::new(0u64).expect("raw value")
    });
    bench(&mut g, "shmproc_RawValue_u64_own_segment", || {
        RawValue::new_own_segment(0u64).expect("raw value")
    });
    bench(&mut g, "raw_sync_Mutex_in_shared_memory (peer)", raw_sync_lock);
    g.finish();
}

fn count(path: &str) -> usize {
    match path {
        "fd" => std::fs::read_dir("/proc/self/fd")
            .map(Iterator::count)
            .unwrap_or(0),
        _ => std::fs::read_to_string("/proc/self/maps")
            .map(|m| m.lines().count())
            .unwrap_or(0),
    }
}

/// Bytes of arena chunks mapped in this process (from /proc/self/maps).
fn arena_bytes() -> u64 {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    maps.lines()
        .filter(|l| l.contains("shmproc arena"))
        .filter_map(|l| {
            let range = l.split(' ').next()?;
            let (a, b) = range.split_once('-')?;
            Some(u64::from_str_radix(b, 16).ok()? - u64::from_str_radix(a, 16).ok()?)
        })
        .sum()
}

fn million() {
    let (fds, maps) = (count("fd"), count("maps"));
    let t = Instant::now();
    let locks: Vec<Lock> = (0..MILLION).map(|_| Lock::new().expect("lock")).collect();
    let lock_ns = t.elapsed().as_nanos() as f64 / MILLION as f64;
    let t = Instant::now();
    let values: Vec<Value<u64>> = (0..MILLION as u64)
        .map(|i| Value::new(i).expect("value"))
        .collect();
    let value_ns = t.elapsed().as_nanos() as f64 / MILLION as f64;
    let (fds2, maps2) = (count("fd"), count("maps"));
    let mapped = arena_bytes() as f64 / (2 * MILLION) as f64;
    // Every object used once, so the figures describe live, working primitives.
    for l in &locks {
        drop(l.lock().expect("lock"));
    }
    for v in &values {
        v.update(|x| x + 1).expect("update");
    }
    let slot = Shared::new(RawLock::new()).expect("probe");
    let next = Shared::new(RawLock::new()).expect("probe");
    println!();
    println!("== 1 M: {MILLION} Locks + {MILLION} Value<u64>s alive in one process ==");
    println!("create Lock::new()          {lock_ns:>8.1} ns/object (target <= 1000)");
    println!("create Value::<u64>::new()  {value_ns:>8.1} ns/object (target <= 1000)");
    println!(
        "extra fds                   {:>8} (target <= 16)",
        fds2 as i64 - fds as i64
    );
    println!(
        "extra mappings              {:>8} (target <= 16)",
        maps2 as i64 - maps as i64
    );
    println!("arena bytes mapped / object {mapped:>8.1} (chunks double; untouched pages cost nothing)");
    println!(
        "slot bytes / object         {:>8} (target <= 64)",
        next.offset().abs_diff(slot.offset())
    );
    println!("Python RawValue('q') create ≈ 14 µs/object and one sem/page per Lock (issue 14, context)");
    drop((locks, values, slot, next));
}

fn main() {
    shmproc::init();
    let mut criterion = Criterion::default().configure_from_args();
    create(&mut criterion);
    million();
    criterion.final_summary();
}
