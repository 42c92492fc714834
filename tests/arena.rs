//! Arenas: small primitives are slots in shared chunks, not a segment (fd + mapping) each.
//!
//! Behaviour checks, not speed (the speed is in `benches/arena.rs`): fd and mapping counts
//! for 100 000 primitives in one process and in a child that receives them, fork safety of
//! the allocator, slots never reused under a SIGKILLed holder, whole chunks freed by
//! drop/create loops, no leaks, and every malformed slot token refused with a typed error.
// std atomics here are user code (e.g. inside a `Shared<T>`); the shim rule is for the library.
#![allow(clippy::disallowed_types)]

mod common;

use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use common::{eventually, exclusive, join, kill_and_reap, ms, shared, start, LONG, METHODS};
use shmproc::raw::{RawBarrier, RawConditionCell, RawEvent, RawLock, RawRLock, RawSemaphore, ValueCell};
use shmproc::{
    Array, ArraySetError, Fingerprint, IndexError, Lock, Process, RawArray, RawValue, SegmentError, Shared,
    StartMethod, Value, ARENA_MAX_OBJECT,
};

const N: usize = 100_000;

/// Entries of /proc/self/fd.
fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Lines of /proc/self/maps (one per mapping).
fn map_count() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

/// Mappings of arena chunks (their memfds are named "shmproc arena").
fn arena_maps() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.contains("shmproc arena"))
        .count()
}

/// Fds on arena chunks.
fn arena_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|p| p.to_string_lossy().contains("shmproc arena")))
        .count()
}

#[test]
fn small_primitives_fit_one_slot() {
    let _g = shared();
    // Every raw primitive a handle puts in a slot is at most one 64-byte slot.
    for (name, size) in [
        ("RawLock", std::mem::size_of::<RawLock>()),
        ("RawRLock", std::mem::size_of::<RawRLock>()),
        ("RawSemaphore", std::mem::size_of::<RawSemaphore>()),
        ("RawEvent", std::mem::size_of::<RawEvent>()),
        ("RawBarrier", std::mem::size_of::<RawBarrier>()),
        ("RawConditionCell", std::mem::size_of::<RawConditionCell>()),
        ("ValueCell<u64>", std::mem::size_of::<ValueCell<u64>>()),
    ] {
        assert!(size <= 64, "{name} is {size} bytes, more than one slot");
    }
    // Consecutive allocations in one chunk are one slot apart (64 bytes).
    let v: Vec<RawValue<u64>> = (0..64).map(|i| RawValue::new(i).unwrap()).collect();
    let mut adjacent = 0;
    for w in v.windows(2) {
        assert_eq!(w[0].offset() % 64, 0);
        if w[0].segment().as_raw_fd() == w[1].segment().as_raw_fd() {
            assert_eq!(w[1].offset(), w[0].offset() + 64, "slots are 64 bytes");
            adjacent += 1;
        }
    }
    assert!(adjacent >= 60, "allocations were not bumped from one chunk");
    // Alignment above 64 is honoured; objects above the limit get their own segment.
    #[repr(C, align(4096))]
    struct Page([u8; 4096]);
    // SAFETY: plain bytes, any bits valid, never mutated after sharing.
    unsafe impl shmproc::ShmSafe for Page {}
    let p = Shared::new(Page([7; 4096])).unwrap();
    assert_eq!(&*p as *const Page as usize % 4096, 0);
    assert_eq!(p.segment().layout().name, "shmproc arena");
    let big = RawArray::<u8>::new(ARENA_MAX_OBJECT + 1).unwrap();
    assert_eq!(big.offset(), 0);
    assert_ne!(big.segment().layout().name, "shmproc arena");
    let own = Shared::new_own_segment(AtomicU64::new(3)).unwrap();
    assert_eq!((own.offset(), own.load(Ordering::Relaxed)), (0, 3));
    assert_ne!(own.segment().layout().name, "shmproc arena");
}

#[test]
fn many_locks_and_values_use_few_fds_and_mappings() {
    let _g = exclusive();
    let (fds, maps, chunks) = (fd_count(), map_count(), arena_maps());
    let locks: Vec<Lock> = (0..N).map(|_| Lock::new().unwrap()).collect();
    let values: Vec<Value<u64>> = (0..N as u64).map(|i| Value::new(i).unwrap()).collect();
    let (fds2, maps2) = (fd_count(), map_count());
    assert!(fds2 <= fds + 16, "{N} locks + {N} values: {fds} -> {fds2} fds");
    assert!(
        maps2 <= maps + 16,
        "{N} locks + {N} values: {maps} -> {maps2} mappings"
    );
    for l in &locks {
        drop(l.lock().unwrap());
    }
    for (i, v) in values.iter().enumerate() {
        assert_eq!(v.update(|x| x * 2).unwrap(), 2 * i as u64);
    }
    drop((locks, values));
    // (Other mappings may stay: malloc keeps the thread's heap arena.)
    assert!(
        eventually(LONG, || fd_count() <= fds && arena_maps() <= chunks),
        "chunks not freed: {} fds (was {fds}), {} arena mappings (was {chunks})",
        fd_count(),
        arena_maps()
    );
}

/// Child body: reports its arena fds and mappings, then increments every value.
fn bump_all(values: Vec<Value<u64>>) -> (usize, usize) {
    let counts = (arena_fds(), arena_maps());
    for v in &values {
        v.update(|x| x + 1).unwrap();
    }
    counts
}

#[test]
fn child_receives_100k_handles_through_few_fds() {
    let _g = shared();
    for m in METHODS {
        let values: Vec<Value<u64>> = (0..N as u64).map(|i| Value::new(i * 3).unwrap()).collect();
        let mut p = start(m, bump_all, values.clone());
        let (fds, maps) = join(&mut p);
        assert!(
            fds <= 16,
            "{m:?}: the child holds {fds} arena fds for {N} handles"
        );
        assert!(
            maps <= 16,
            "{m:?}: the child maps {maps} arena chunks for {N} handles"
        );
        for (i, v) in values.iter().enumerate() {
            assert_eq!(v.get().unwrap(), i as u64 * 3 + 1, "{m:?}: value {i}");
        }
    }
}

type Mixed = (RawArray<u32>, RawArray<u8>, Shared<AtomicU64>, RawValue<[u16; 3]>);

/// Child body: writes through every kind of handle, arena slot or own segment.
fn write_mixed((small, big, counter, triple): Mixed) -> (usize, usize) {
    for i in 0..small.len() {
        small.set(i, small.get(i).unwrap() + 100).unwrap();
    }
    big.set(big.len() - 1, 9).unwrap();
    counter.fetch_add(5, Ordering::SeqCst);
    triple.set([7, 8, 9]);
    (small.len(), big.len())
}

#[test]
fn arrays_structs_and_own_segments_travel_too() {
    let _g = shared();
    for m in METHODS {
        let small = RawArray::from_slice(&[1u32, 2, 3, 4, 5]).unwrap();
        let big = RawArray::<u8>::new(ARENA_MAX_OBJECT * 2).unwrap();
        let counter = Shared::new(AtomicU64::new(1)).unwrap();
        let triple = RawValue::new([0u16; 3]).unwrap();
        assert_eq!(small.segment().layout().name, "shmproc arena");
        assert_ne!(big.segment().layout().name, "shmproc arena");
        let args = (small.clone(), big.clone(), counter.clone(), triple.clone());
        assert_eq!(
            join(&mut start(m, write_mixed, args)),
            (5, ARENA_MAX_OBJECT * 2),
            "{m:?}"
        );
        assert_eq!(small.to_vec(), vec![101, 102, 103, 104, 105], "{m:?}");
        assert_eq!(big.get(big.len() - 1), Some(9), "{m:?}");
        assert_eq!(counter.load(Ordering::SeqCst), 6, "{m:?}");
        assert_eq!(triple.get(), [7, 8, 9], "{m:?}");
    }
}

#[test]
fn many_small_locked_arrays_use_few_fds_and_mappings() {
    let _g = exclusive();
    const K: usize = 20_000;
    let (fds, maps, chunks) = (fd_count(), map_count(), arena_maps());
    let arrays: Vec<Array<u32>> = (0..K).map(|_| Array::new(4).unwrap()).collect();
    let (fds2, maps2) = (fd_count(), map_count());
    assert!(fds2 <= fds + 16, "{K} small arrays: {fds} -> {fds2} fds");
    assert!(maps2 <= maps + 16, "{K} small arrays: {maps} -> {maps2} mappings");
    // Each one is a slot of an arena chunk, lock and elements together in 64 bytes.
    for w in arrays.windows(2) {
        assert_eq!(w[0].segment().layout().name, "shmproc arena");
        assert_eq!(w[0].offset() % 64, 0);
        if w[0].segment().as_raw_fd() == w[1].segment().as_raw_fd() {
            assert_eq!(w[1].offset(), w[0].offset() + 64, "a small Array is one slot");
        }
    }
    for (i, a) in arrays.iter().enumerate() {
        a.set(3, i as u32).unwrap();
        a.lock().unwrap()[0] = 1;
    }
    for (i, a) in arrays.iter().enumerate() {
        assert_eq!(a.to_vec().unwrap(), [1, 0, 0, i as u32], "array {i}");
    }
    // A big array keeps a segment of its own.
    let big = Array::<u8>::new(ARENA_MAX_OBJECT).unwrap();
    assert_eq!(big.offset(), 0);
    assert_ne!(big.segment().layout().name, "shmproc arena");
    drop((arrays, big));
    assert!(
        eventually(LONG, || fd_count() <= fds && arena_maps() <= chunks),
        "chunks not freed: {} fds (was {fds}), {} arena mappings (was {chunks})",
        fd_count(),
        arena_maps()
    );
}

type Locked = (Array<u64>, Array<u16>, Array<u8>);

/// Child body: uses every form of a locked array's access, in a slot and in its own segment.
fn write_locked((small, odd, big): Locked) -> Vec<String> {
    for i in 0..small.len() {
        small.set(i, small.get(i).unwrap().unwrap() * 10).unwrap();
    }
    small.lock().unwrap()[0] += 1;
    odd.lock().unwrap().fill(3);
    big.set(big.len() - 1, 9).unwrap();
    vec![
        format!("{:?}", small.get(small.len())),
        format!("{:?}", small.set(small.len(), 0)),
        format!("{:?}", odd.to_vec()),
        format!("{}", big.len()),
    ]
}

#[test]
fn small_locked_arrays_travel_to_children() {
    let _g = shared();
    for m in METHODS {
        // Allocated between other slots, so a wrong offset lands on a neighbour.
        let _before = RawValue::new(0u64).unwrap();
        let small = Array::from_slice(&[1u64, 2, 3, 4, 5]).unwrap();
        let odd = Array::<u16>::new(3).unwrap();
        let big = Array::<u8>::new(ARENA_MAX_OBJECT * 2).unwrap();
        assert_eq!(small.segment().layout().name, "shmproc arena");
        assert_eq!(odd.segment().layout().name, "shmproc arena");
        assert_ne!(big.segment().layout().name, "shmproc arena");
        let got = join(&mut start(
            m,
            write_locked,
            (small.clone(), odd.clone(), big.clone()),
        ));
        assert_eq!(
            got,
            [
                "Ok(None)".to_owned(),
                format!(
                    "{:?}",
                    Err::<(), _>(ArraySetError::Index(IndexError {
                        index: 5,
                        count: 1,
                        len: 5
                    }))
                ),
                "Ok([3, 3, 3])".to_owned(),
                (ARENA_MAX_OBJECT * 2).to_string(),
            ],
            "{m:?}"
        );
        assert_eq!(small.to_vec().unwrap(), [11, 20, 30, 40, 50], "{m:?}");
        assert_eq!(odd.to_vec().unwrap(), [3, 3, 3], "{m:?}");
        assert_eq!(big.get(big.len() - 1).unwrap(), Some(9), "{m:?}");
        assert_eq!(big.get(0).unwrap(), Some(0), "{m:?}");
    }
}

/// An element type aligned above a slot (128 bytes).
#[repr(C, align(128))]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Wide([u8; 128]);

/// Child body: checks the elements' alignment and writes a mark into each one.
fn mark_wide(a: Array<Wide>) -> bool {
    let mut g = a.lock().unwrap();
    let aligned = g.as_ptr() as usize % 128 == 0;
    for (i, w) in g.iter_mut().enumerate() {
        w.0[127] = i as u8 + 1;
    }
    aligned
}

#[test]
fn locked_array_elements_keep_their_alignment_in_a_slot() {
    let _g = shared();
    for m in METHODS {
        let _before = RawValue::new(0u64).unwrap();
        let a = Array::<Wide>::new(3).unwrap();
        assert_eq!(a.segment().layout().name, "shmproc arena");
        assert_eq!(a.offset() % 128, 0);
        assert_eq!(a.lock().unwrap().as_ptr() as usize % 128, 0);
        assert!(
            join(&mut start(m, mark_wide, a.clone())),
            "{m:?}: misaligned in the child"
        );
        let marks: Vec<u8> = a.to_vec().unwrap().iter().map(|w| w.0[127]).collect();
        assert_eq!(marks, [1, 2, 3], "{m:?}");
    }
}

/// Writes `tag | i` into `n` new values, meets the other process at `met`, then counts how
/// many still hold their tag.
fn tag_after_meeting(met: &AtomicU32, tag: u64, n: usize) -> usize {
    let mine: Vec<RawValue<u64>> = (0..n as u64).map(|i| RawValue::new(tag | i).unwrap()).collect();
    met.fetch_add(1, Ordering::SeqCst);
    while met.load(Ordering::SeqCst) < 2 {
        std::thread::sleep(ms(1));
    }
    mine.iter()
        .enumerate()
        .filter(|(i, v)| v.get() == tag | *i as u64)
        .count()
}

#[test]
fn forked_child_and_parent_allocate_independently() {
    let _g = shared();
    const K: usize = 20_000;
    // A partly filled current chunk that the child inherits.
    let before: Vec<RawValue<u64>> = (0..100).map(RawValue::new).collect::<Result<_, _>>().unwrap();
    let met = Shared::new(AtomicU32::new(0)).unwrap();
    let mut child = Process::fork({
        let met = met.clone();
        move || tag_after_meeting(&met, 2 << 40, K)
    })
    .daemon(true)
    .start()
    .unwrap();
    let parent_ok = tag_after_meeting(&met, 1 << 40, K);
    let child_ok = join(&mut child);
    assert_eq!(
        parent_ok, K,
        "the child overwrote slots the parent allocated after the fork"
    );
    assert_eq!(
        child_ok, K,
        "the parent overwrote slots the child allocated after the fork"
    );
    for (i, v) in before.iter().enumerate() {
        assert_eq!(v.get(), i as u64);
    }
}

#[test]
fn threads_allocating_at_once_get_distinct_slots() {
    let _g = shared();
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            std::thread::spawn(move || {
                (0..20_000u64)
                    .map(|i| RawValue::new((t << 32) | i).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let all: Vec<Vec<RawValue<u64>>> = threads.into_iter().map(|h| h.join().unwrap()).collect();
    for (t, vs) in all.iter().enumerate() {
        for (i, v) in vs.iter().enumerate() {
            assert_eq!(
                v.get(),
                ((t as u64) << 32) | i as u64,
                "thread {t} value {i} was overwritten"
            );
        }
    }
}

/// Child body: tags its own new values, holds the parent's, and waits to be killed.
fn hold_and_wait((held, ready): (Vec<Value<u64>>, Shared<AtomicU32>)) {
    let own: Vec<Value<u64>> = (0..1000).map(|i| Value::new(0xdead_0000 + i).unwrap()).collect();
    for v in &held {
        v.update(|x| x + 1).unwrap();
    }
    ready.store(1, Ordering::SeqCst);
    std::hint::black_box(&own);
    common::sleep_forever()
}

#[test]
fn killed_holder_never_makes_a_slot_reusable() {
    let _g = shared();
    for m in METHODS {
        let held: Vec<Value<u64>> = (0..5000).map(|i| Value::new(i << 8).unwrap()).collect();
        let ready = Shared::new(AtomicU32::new(0)).unwrap();
        let mut p = start(m, hold_and_wait, (held.clone(), ready.clone()));
        assert!(
            eventually(LONG, || ready.load(Ordering::SeqCst) == 1),
            "{m:?}: child not ready"
        );
        kill_and_reap(&mut p);
        // Survivors keep using their slots; new allocations never land on a live one.
        let fresh: Vec<Value<u64>> = (0..20_000)
            .map(|i| Value::new(0xf000_0000 + i).unwrap())
            .collect();
        for (i, v) in held.iter().enumerate() {
            assert_eq!(
                v.update(|x| x + 1).unwrap(),
                ((i as u64) << 8) + 2,
                "{m:?}: held {i}"
            );
        }
        for (i, v) in fresh.iter().enumerate() {
            assert_eq!(v.get().unwrap(), 0xf000_0000 + i as u64, "{m:?}: fresh {i}");
        }
    }
}

#[test]
fn drop_create_loops_recycle_whole_chunks() {
    let _g = exclusive();
    let base = arena_maps();
    for round in 0..40 {
        let v: Vec<Value<u64>> = (0..20_000).map(|i| Value::new(i).unwrap()).collect();
        assert!(
            arena_maps() <= base + 3,
            "round {round}: {} arena mappings",
            arena_maps()
        );
        drop(v);
    }
    assert!(
        eventually(LONG, || arena_maps() <= base),
        "chunks stay mapped after every handle is gone: {} (was {base})",
        arena_maps()
    );
}

fn use_values(values: Vec<Value<u64>>) -> u64 {
    values.iter().map(|v| v.update(|x| x + 1).unwrap()).sum()
}

fn leak_scenario(m: StartMethod) {
    let values: Vec<Value<u64>> = (0..10_000).map(Value::new).collect::<Result<_, _>>().unwrap();
    let mut p = start(m, use_values, values.clone());
    assert_eq!(join(&mut p), (1..=10_000).sum::<u64>());
    let locks: Vec<Lock> = (0..10_000).map(|_| Lock::new().unwrap()).collect();
    drop((values, locks));
}

#[test]
fn arena_handles_leak_nothing() {
    let _g = exclusive();
    // Warm up process-wide state (the spawn helper's fds) before the baseline.
    leak_scenario(StartMethod::Spawn);
    common::assert_leaves_nothing(leak_scenario);
}

fn dup(fd: BorrowedFd<'_>) -> OwnedFd {
    fd.try_clone_to_owned().unwrap()
}

#[test]
fn malformed_slot_tokens_are_typed_errors() {
    let _g = shared();
    let v = RawValue::new(5u64).unwrap();
    let chunk = v.segment().as_raw_fd();
    // SAFETY: `v` keeps the chunk's fd open for the duration of the borrows below.
    let fd = || dup(unsafe { BorrowedFd::borrow_raw(chunk) });
    let fp = Fingerprint::of::<u64>();
    let len = v.segment().len() as u64;

    // The token a sender would write opens the same slot.
    let w = RawValue::<u64>::open_slot(fd(), v.offset() as u64, 8, &fp).unwrap();
    w.set(9);
    assert_eq!(v.get(), 9);

    let corrupt = |r: Result<RawValue<u64>, SegmentError>| match r {
        Err(SegmentError::Corrupt(_)) => {}
        other => panic!("expected Corrupt, got {other:?}"),
    };
    corrupt(RawValue::<u64>::open_slot(fd(), 8, 8, &fp)); // misaligned
    corrupt(RawValue::<u64>::open_slot(fd(), len - 64 + 64, 8, &fp)); // past the end
    corrupt(RawValue::<u64>::open_slot(fd(), u64::MAX - 63, 8, &fp)); // overflows
    corrupt(RawValue::<u64>::open_slot(fd(), 0, 16, &fp)); // wrong length for the type
    match RawValue::<u64>::open_slot(fd(), 0, 8, &Fingerprint::of::<i64>()) {
        Err(SegmentError::LayoutMismatch { .. }) => {}
        other => panic!("expected LayoutMismatch, got {other:?}"),
    }
    // An array's slot: any whole number of elements inside the chunk.
    let a = RawArray::<u32>::open_slot(fd(), 128, 40, &Fingerprint::of::<u32>()).unwrap();
    assert_eq!(a.len(), 10);
    match RawArray::<u32>::open_slot(fd(), 128, 6, &Fingerprint::of::<u32>()) {
        Err(SegmentError::Corrupt(_)) => {}
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // A locked array's slot: its lock, then a whole number of elements.
    let afp = Array::<u32>::slot_layout();
    let a = Array::<u32>::open_slot(fd(), 128, 64, &afp).unwrap();
    assert!(!a.is_empty() && a.len() < 16);
    for (token_len, why) in [(0, "shorter than the lock"), (63, "not whole elements")] {
        match Array::<u32>::open_slot(fd(), 128, token_len, &afp) {
            Err(SegmentError::Corrupt(_)) => {}
            other => panic!("{why}: expected Corrupt, got {other:?}"),
        }
    }
    match Array::<u32>::open_slot(fd(), 128, 64, &Array::<i32>::slot_layout()) {
        Err(SegmentError::LayoutMismatch { .. }) => {}
        other => panic!("expected LayoutMismatch, got {other:?}"),
    }
    match Array::<u32>::open_slot(fd(), 128, 40, &Fingerprint::of::<u32>()) {
        Err(SegmentError::LayoutMismatch { .. }) => {}
        other => panic!("a RawArray's layout opened a locked Array: {other:?}"),
    }
    // A segment of its own is not an arena.
    let own = Shared::new_own_segment(AtomicU64::new(1)).unwrap();
    // SAFETY: `own` keeps its fd open during the borrow.
    let own_fd = dup(unsafe { BorrowedFd::borrow_raw(own.segment().as_raw_fd()) });
    match Shared::<AtomicU64>::open_slot(own_fd, 0, 8, &Fingerprint::of::<AtomicU64>()) {
        Err(SegmentError::Corrupt(_)) => {}
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn arena_objects_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Shared<AtomicU64>>();
    check::<RawValue<u64>>();
    check::<RawArray<u8>>();
    check::<Value<u64>>();
    check::<Array<u64>>();
    check::<Lock>();
}
