//! Nothing leaks: no fds, no /dev/shm entries, no zombies — also when children are killed.
//!
//! One test in this binary, so nothing else runs beside it and the before/after snapshots
//! of this process's fds and children are exact.
// std atomics here are user code (e.g. inside a `Shared<T>`); the shim rule is for the library.
#![allow(clippy::disallowed_types)]

mod common;

use common::{dev_shm, eventually, ms, open_fds, zombie_children, METHODS};
use shmproc::{Process, ProcessError, RawArray, SharedMemory, StartMethod};

fn square(x: u64) -> u64 {
    x * x
}

fn touch(a: RawArray<u8>) -> u8 {
    a.set(0, 1).unwrap();
    a.get(0).unwrap()
}

fn hold_and_sleep(shm: SharedMemory) {
    shm.write_at(0, b"held").unwrap();
    std::thread::sleep(std::time::Duration::from_secs(60));
}

fn create_named_and_sleep((name, keep): (String, bool)) {
    let shm = SharedMemory::create_named(&name, 1024).unwrap();
    if keep {
        shm.keep();
    }
    shm.write_at(0, b"made").unwrap();
    std::thread::sleep(std::time::Duration::from_secs(60));
}

fn panics(_: ()) {
    panic!("leak check panic");
}

fn sleeps_ms(n: u64) {
    std::thread::sleep(ms(n));
}

struct Snapshot {
    fds: Vec<String>,
    shm: Vec<String>,
}

fn snapshot() -> Snapshot {
    Snapshot {
        fds: open_fds(),
        shm: dev_shm(),
    }
}

fn assert_clean(before: &Snapshot, what: &str) {
    // A dropped handle's child is reaped by a background thread: give it time.
    assert!(
        eventually(ms(10_000), || zombie_children().is_empty()),
        "zombies after {what}: {:?}",
        zombie_children()
    );
    assert!(
        eventually(ms(5_000), || open_fds() == before.fds),
        "fds leaked by {what}:\nbefore {:?}\nafter  {:?}",
        before.fds,
        open_fds()
    );
    assert_eq!(dev_shm(), before.shm, "/dev/shm entries leaked by {what}");
}

#[test]
fn nothing_leaks() {
    // Warm up lazily created process-wide state (panic hook, registry) before the baseline.
    Process::new(square, 1).start().unwrap().join().unwrap();
    let before = snapshot();

    for m in METHODS {
        let mut p = Process::new(square, 9).start_method(m).start().unwrap();
        assert_eq!(p.join().unwrap(), 81);
        drop(p);
        assert_clean(&before, &format!("{m:?} start+join"));

        let a = RawArray::<u8>::new(64).unwrap();
        let mut p = Process::new(touch, a.clone()).start_method(m).start().unwrap();
        assert_eq!(p.join().unwrap(), 1);
        drop((p, a));
        assert_clean(&before, &format!("{m:?} child with a handle"));

        let mut p = Process::new(panics, ()).start_method(m).start().unwrap();
        assert!(matches!(p.join(), Err(ProcessError::Panicked(_))));
        drop(p);
        assert_clean(&before, &format!("{m:?} panicking child"));

        // A child killed while it holds a named segment: the creator (us) still unlinks.
        let name = format!("/shmproc-leaktest-{}-{m:?}", std::process::id());
        let shm = SharedMemory::create_named(&name, 4096).unwrap();
        let mut p = Process::new(hold_and_sleep, SharedMemory::open_named(&name).unwrap())
            .start_method(m)
            .start()
            .unwrap();
        assert!(eventually(ms(10_000), || shm.to_vec().starts_with(b"held")));
        p.kill().unwrap();
        assert!(matches!(p.join(), Err(ProcessError::Killed(9))));
        drop((p, shm));
        assert_clean(&before, &format!("{m:?} killed child holding a named segment"));

        // A handle dropped while its child still runs: reaped in the background.
        let p = Process::new(sleeps_ms, 100).start_method(m).start().unwrap();
        drop(p);
        assert_clean(&before, &format!("{m:?} dropped running handle"));

        // A handle dropped after the child ended, never joined.
        let p = Process::new(square, 2).start_method(m).start().unwrap();
        assert!(eventually(ms(10_000), || !p.is_alive()));
        drop(p);
        assert_clean(&before, &format!("{m:?} dropped finished handle"));
    }

    // A creator SIGKILLed before it could unlink leaves its name behind; cleanup_stale()
    // finds it (dead creator) and removes it, and leaves live creators' segments alone.
    let live_name = format!("/shmproc-leaktest-live-{}", std::process::id());
    let live = SharedMemory::create_named(&live_name, 64).unwrap();
    let before_live = snapshot();
    for m in METHODS {
        let name = format!("/shmproc-leaktest-orphan-{}-{m:?}", std::process::id());
        let mut p = Process::new(create_named_and_sleep, (name.clone(), false))
            .start_method(m)
            .start()
            .unwrap();
        assert!(eventually(ms(10_000), || SharedMemory::open_named(&name)
            .is_ok_and(|s| s.to_vec().starts_with(b"made"))));
        p.kill().unwrap();
        let _ = p.join();
        drop(p);
        assert!(
            dev_shm().iter().any(|e| format!("/{e}") == name),
            "the orphan should exist before cleanup"
        );
        let removed = shmproc::cleanup_stale();
        assert!(removed.contains(&name), "{removed:?}");
        assert!(!removed.contains(&live_name));
        assert_clean(&before_live, &format!("{m:?} killed creator + cleanup_stale"));
    }
    drop(live);

    // A segment marked keep() survives its creator and cleanup_stale().
    let kept = format!("/shmproc-leaktest-kept-{}", std::process::id());
    let mut p = Process::new(create_named_and_sleep, (kept.clone(), true))
        .start()
        .unwrap();
    assert!(eventually(ms(10_000), || SharedMemory::open_named(&kept)
        .is_ok_and(|s| s.to_vec().starts_with(b"made"))));
    p.kill().unwrap();
    let _ = p.join();
    drop(p);
    assert!(!shmproc::cleanup_stale().contains(&kept));
    SharedMemory::open_named(&kept).unwrap().unlink().unwrap();
    assert_clean(&before, "kept segment, unlinked by hand");

    let r = Process::fork(|| 1u8).start_method(StartMethod::Spawn).start();
    assert!(
        matches!(r, Err(shmproc::ProcessError::Unsupported(_))),
        "{:?}",
        r.map(drop)
    );
    assert_clean(&before, "refused start");
}
