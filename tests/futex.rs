//! The shared futex wrapper, across real processes.
// std atomics here are user code (e.g. inside a `Shared<T>`); the shim rule is for the library.
#![allow(clippy::disallowed_types)]

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use common::{eventually, ms, METHODS};
use shmproc::raw::futex;
use shmproc::{Process, Shared};

#[repr(C)]
struct Words {
    flag: AtomicU32,
    asleep: AtomicU32,
    woke: AtomicU32,
}
// SAFETY: repr(C) of atomics only.
unsafe impl shmproc::ShmSafe for Words {}

fn sleeper(w: Shared<Words>) -> u32 {
    w.asleep.fetch_add(1, Ordering::SeqCst);
    let mut loops = 0;
    while w.flag.load(Ordering::Acquire) == 0 {
        futex::wait(&w.flag, 0, None);
        loops += 1;
    }
    w.woke.fetch_add(1, Ordering::SeqCst);
    loops
}

fn new_words() -> Shared<Words> {
    Shared::new(Words {
        flag: AtomicU32::new(0),
        asleep: AtomicU32::new(0),
        woke: AtomicU32::new(0),
    })
    .unwrap()
}

#[test]
fn wake_all_reaches_sleepers_in_other_processes() {
    let w = new_words();
    let mut kids: Vec<_> = (0..4)
        .map(|i| {
            Process::new(sleeper, w.clone())
                .start_method(METHODS[i % 2])
                .start()
                .unwrap()
        })
        .collect();
    assert!(eventually(ms(10_000), || w.asleep.load(Ordering::SeqCst) == 4));
    std::thread::sleep(ms(50)); // let them reach FUTEX_WAIT (correct either way)
    assert_eq!(
        w.woke.load(Ordering::SeqCst),
        0,
        "nobody may pass before the flag flips"
    );
    w.flag.store(1, Ordering::Release);
    futex::wake_all(&w.flag);
    for k in &mut kids {
        k.join_timeout(ms(10_000)).expect("sleeper woke and returned");
    }
    assert_eq!(w.woke.load(Ordering::SeqCst), 4);
}

/// Sleeps once on `flag` (at most 30 s, so a lost wake-up fails the test instead of hanging
/// it); returns whether it was woken rather than timed out.
fn sleep_once(w: Shared<Words>) -> bool {
    w.asleep.fetch_add(1, Ordering::SeqCst);
    let woken = futex::wait(&w.flag, 0, Some(Instant::now() + ms(30_000)));
    w.woke.fetch_add(1, Ordering::SeqCst);
    woken
}

/// `wake_one` wakes exactly one of two sleepers in two other processes: one returns, the
/// other stays asleep (with the word unchanged it has no reason to return) until a second
/// `wake_one`. A `wake_one` that woke both, or none, fails here.
#[test]
fn wake_one_wakes_one_of_two() {
    let w = new_words();
    let mut kids: Vec<_> = (0..2)
        .map(|i| {
            Process::new(sleep_once, w.clone())
                .start_method(METHODS[i])
                .daemon(true)
                .start()
                .unwrap()
        })
        .collect();
    assert!(eventually(ms(10_000), || w.asleep.load(Ordering::SeqCst) == 2));
    // Both are asleep in the kernel (state S) before the wake: it cannot reach only one
    // merely because the other had not arrived yet.
    for k in &kids {
        assert!(
            eventually(ms(10_000), || common::proc_state(k.pid()) == Some('S')),
            "child {} never went to sleep",
            k.pid()
        );
    }
    assert!(futex::wake_one(&w.flag), "wake_one found no sleeper");
    assert!(
        eventually(ms(10_000), || w.woke.load(Ordering::SeqCst) == 1),
        "nobody woke"
    );
    // The other one must still be asleep a while later.
    std::thread::sleep(ms(200));
    assert_eq!(w.woke.load(Ordering::SeqCst), 1, "wake_one woke both sleepers");
    assert!(futex::wake_one(&w.flag), "the second sleeper was not asleep");
    for k in &mut kids {
        assert!(
            k.join_timeout(ms(40_000)).unwrap(),
            "a sleeper timed out instead of being woken"
        );
    }
    assert_eq!(w.woke.load(Ordering::SeqCst), 2);
    assert!(!futex::wake_one(&w.flag), "nobody is left asleep");
}

#[test]
fn wait_times_out_at_the_deadline() {
    let word = AtomicU32::new(5);
    let start = Instant::now();
    let deadline = start + ms(50);
    assert!(!futex::wait(&word, 5, Some(deadline)));
    assert!(Instant::now() >= deadline, "returned before its deadline");
}

#[test]
fn wait_returns_at_once_when_the_value_differs() {
    let word = AtomicU32::new(1);
    // Expected 0 but the word holds 1: EAGAIN, reported as "woken" (true).
    assert!(futex::wait(&word, 0, Some(Instant::now() + ms(60_000))));
    assert!(!futex::wake_one(&word), "nobody sleeps");
    assert_eq!(futex::wake_all(&word), 0);
}
