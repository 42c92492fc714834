//! `SpscRing` across real child processes, with both start methods: items in order with no
//! loss or duplicate through a ring much smaller than the stream (single items and
//! `push_slice`/`pop_slice` batches), the try / timeout / blocking forms, `close` from either
//! side, and a peer killed while the other sleeps.
// std atomics here are user code (e.g. inside a `Shared<T>`); the shim rule is for the library.
#![allow(clippy::disallowed_types)]

mod common;

use std::time::Instant;

use common::{eventually, join, kill_and_reap, ms, proc_state, start, LONG, METHODS};
use shmproc::raw::SpscRing;
use shmproc::RawValue;
use shmproc::{RecvTimeoutError, SendTimeoutError, TryRecvError, TrySendError};

const N: u64 = 50_000;

/// Produces `0..n`, single items and batches of 1..=37 in turn, blocking when full, then
/// closes its side.
fn produce((ring, n): (SpscRing<u64>, u64)) -> u64 {
    let mut tx = ring.producer().expect("producer");
    let mut next = 0;
    let mut batch = Vec::new();
    while next < n {
        if next % 2 == 0 {
            tx.push(next, Some(Instant::now() + LONG)).expect("push");
            next += 1;
            continue;
        }
        let len = (1 + next % 37).min(n - next);
        batch.clear();
        batch.extend(next..next + len);
        let mut sent = 0;
        while sent < batch.len() {
            let k = tx.push_slice(&batch[sent..]).expect("push_slice");
            if k > 0 {
                tx.notify();
            } else {
                std::thread::yield_now();
            }
            sent += k;
        }
        next += len;
    }
    tx.close();
    next
}

/// Consumes until the producer's close: single pops and `pop_slice` batches in turn; checks
/// that every item is the next one expected.
fn consume(ring: SpscRing<u64>) -> u64 {
    let mut rx = ring.consumer().expect("consumer");
    let mut expect = 0;
    let mut buf = [0u64; 29];
    loop {
        if expect % 3 != 0 {
            let k = rx.pop_slice(&mut buf).expect("pop_slice");
            for &v in &buf[..k] {
                assert_eq!(v, expect, "out of order or lost in a batch");
                expect += 1;
            }
            if k > 0 {
                continue;
            }
            // Nothing there: sleep in `pop`, which also reports the producer's close.
        }
        {
            match rx.pop(Some(Instant::now() + LONG)) {
                Ok(v) => {
                    assert_eq!(v, expect, "out of order or lost");
                    expect += 1;
                }
                Err(RecvTimeoutError::Disconnected) => return expect,
                Err(e) => panic!("pop: {e}"),
            }
        }
    }
}

/// A 64-slot ring carries 50 000 items from a child to a child of either start method, in
/// order, none lost or doubled, through single and batched pushes and pops, and the
/// consumer sees the producer's close after the last item.
#[test]
fn items_cross_processes_in_order_with_slices_and_close() {
    for m in METHODS {
        for other in METHODS {
            let ring = SpscRing::<u64>::new(64).unwrap();
            assert_eq!(ring.capacity(), 64);
            let mut c = start(other, consume, ring.clone());
            let mut p = start(m, produce, (ring.clone(), N));
            assert_eq!(join(&mut p), N);
            assert_eq!(join(&mut c), N, "{m:?} -> {other:?}");
            assert!(ring.is_empty());
        }
    }
}

/// Pops once with a deadline, reporting what came back.
fn pop_once((ring, wait_ms, waiting): (SpscRing<u64>, u64, RawValue<u32>)) -> Result<u64, RecvTimeoutError> {
    let mut rx = ring.consumer().expect("consumer");
    waiting.set(1);
    rx.pop(Some(Instant::now() + ms(wait_ms)))
}

/// The try and timeout forms across processes, and a consumer asleep in `pop` woken by the
/// producer's `close` in this process.
#[test]
fn try_timeout_and_close_wake_a_sleeping_consumer() {
    for m in METHODS {
        let ring = SpscRing::<u64>::new(2).unwrap();
        {
            let mut tx = ring.producer().unwrap();
            tx.try_push(1).unwrap();
            tx.try_push(2).unwrap();
            assert_eq!(tx.try_push(3), Err(TrySendError::Full(3)));
            assert_eq!(
                tx.push(3, Some(Instant::now() + ms(20))),
                Err(SendTimeoutError::Timeout(3))
            );
        }
        // The child takes one item at once.
        let waiting = RawValue::new(0u32).unwrap();
        let got = join(&mut start(m, pop_once, (ring.clone(), 1000, waiting.clone())));
        assert_eq!(got, Ok(1));
        {
            let mut rx = ring.consumer().unwrap();
            assert_eq!(rx.try_pop().unwrap(), 2);
            assert_eq!(rx.try_pop(), Err(TryRecvError::Empty));
        }
        // A child sleeping in pop (30 s deadline) is woken by close, not by its deadline.
        let waiting = RawValue::new(0u32).unwrap();
        let mut c = start(m, pop_once, (ring.clone(), 30_000, waiting.clone()));
        assert!(eventually(LONG, || waiting.get() == 1));
        std::thread::sleep(ms(50));
        assert!(eventually(LONG, || proc_state(c.pid()) == Some('S')));
        let started = Instant::now();
        ring.producer().unwrap().close();
        assert_eq!(join(&mut c), Err(RecvTimeoutError::Disconnected), "{m:?}");
        assert!(
            started.elapsed() < ms(25_000),
            "{m:?}: woken by its deadline, not by close"
        );
    }
}

fn push_forever(ring: SpscRing<u64>) {
    let mut tx = ring.producer().expect("producer");
    for i in 0.. {
        tx.push(i, None).expect("push");
    }
}

/// A producer killed while it sleeps on a full ring leaves the ring usable: the consumer
/// reads what was published, then a new producer carries on.
#[test]
fn a_killed_producer_leaves_what_it_published() {
    for m in METHODS {
        let ring = SpscRing::<u64>::new(8).unwrap();
        let mut p = start(m, push_forever, ring.clone());
        assert!(eventually(LONG, || ring.len() == 8));
        assert!(eventually(LONG, || proc_state(p.pid()) == Some('S')));
        kill_and_reap(&mut p);
        let mut rx = ring.consumer().unwrap();
        let got: Vec<u64> = (0..8).map(|_| rx.try_pop().unwrap()).collect();
        assert_eq!(got, (0..8).collect::<Vec<_>>(), "{m:?}");
        assert_eq!(rx.try_pop(), Err(TryRecvError::Empty));
        let mut tx = ring.producer().unwrap();
        tx.try_push(99).unwrap();
        assert_eq!(rx.try_pop().unwrap(), 99);
    }
}
