//! Per-input logic of the `pool_ops` fuzz target, shared with its stable replay
//! (`tests/fuzz_replay.rs`) through `#[path]`.
//!
//! A sequence of pool operations, driven by the input, against an [`Executor`] on the thread
//! backend (the same dispatch queue, claims, cancellation and result cells as the process
//! pool; processes are left to the tests, since libFuzzer runs in one process): `submit`,
//! `cancel`, `result_timeout(0)`, `map` and `imap_unordered` with chunk sizes from the
//! input, and `apply_async_with` callbacks. Every future ends with its task's value, or
//! `Cancelled` exactly when `cancel` said so; every map equals the sequential one; each
//! callback runs once; nothing hangs (a stuck operation shows up as a fuzzer timeout).
//!
//! Format: byte 0 picks the number of threads (`1 + b % 3`); then one op per byte
//! (`b % 6`), with the following byte as its argument.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shmproc::{Executor, Future, Pool, PoolError};

fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

/// Busy work long enough that later submissions queue up behind it (so cancels can win).
fn slow_square(x: u64) -> u64 {
    let mut acc = x;
    for i in 0..2_000u64 {
        acc = std::hint::black_box(acc.wrapping_add(i));
    }
    std::hint::black_box(acc);
    x.wrapping_mul(x)
}

pub fn pool_ops_input(data: &[u8]) {
    let Some((&first, ops)) = data.split_first() else {
        return;
    };
    let threads = 1 + (first % 3) as usize;
    let ex = Executor::from_builder(Pool::builder().processes(threads).threads(true)).expect("thread pool");
    let mut futures: Vec<(Future<u64>, u64, bool)> = Vec::new();
    let callbacks = Arc::new(AtomicUsize::new(0));
    let mut expected_callbacks = 0;
    let mut bytes = ops.iter().copied();
    while let Some(op) = bytes.next() {
        let arg = bytes.next().unwrap_or(0);
        match op % 6 {
            0 => {
                let x = u64::from(arg);
                let f = if arg % 2 == 0 {
                    ex.submit(slow_square, x)
                } else {
                    ex.submit(square, x)
                };
                futures.push((f.expect("submit"), square(x), false));
            }
            1 if !futures.is_empty() => {
                let i = arg as usize % futures.len();
                let (f, _, cancelled) = &mut futures[i];
                let was_done = f.done() && !f.cancelled();
                let ok = f.cancel();
                assert!(!(ok && was_done), "cancelled a finished future");
                *cancelled |= ok;
                assert_eq!(f.cancelled(), *cancelled);
            }
            2 if !futures.is_empty() => {
                let i = arg as usize % futures.len();
                let (f, want, cancelled) = &futures[i];
                match f.result_timeout(Duration::ZERO) {
                    Err(PoolError::Timeout) => {}
                    Err(PoolError::Cancelled) => assert!(*cancelled),
                    Ok(v) => {
                        assert_eq!(v, *want);
                        // Taken: replace it by a fresh one so the end check still holds.
                        futures[i] = (ex.submit(square, 3).expect("submit"), 9, false);
                    }
                    Err(e) => panic!("result_timeout: {e:?}"),
                }
            }
            3 => {
                let n = u64::from(arg % 40);
                let chunk = (arg / 40) as usize; // 0 → Python's default
                let items: Vec<u64> = (0..n).collect();
                let got = match chunk {
                    0 => ex.pool().map(square, items.clone()),
                    _ => ex.pool().map_chunked(square, items.clone(), chunk),
                };
                assert_eq!(got, Ok(items.iter().map(|&x| square(x)).collect::<Vec<_>>()));
            }
            4 => {
                let n = u64::from(arg % 30);
                let chunk = 1 + (arg / 30) as usize;
                let mut got: Vec<u64> = ex
                    .pool()
                    .imap_unordered_chunked(square, 0..n, chunk)
                    .map(|r| r.expect("imap_unordered item"))
                    .collect();
                got.sort_unstable();
                let mut want: Vec<u64> = (0..n).map(square).collect();
                want.sort_unstable();
                assert_eq!(got, want);
            }
            _ => {
                let c = callbacks.clone();
                let x = u64::from(arg);
                let r = ex
                    .pool()
                    .apply_async_with(
                        square,
                        x,
                        move |v: &u64| {
                            assert_eq!(*v, square(x));
                            c.fetch_add(1, Ordering::SeqCst);
                        },
                        |e: &PoolError| panic!("error callback: {e:?}"),
                    )
                    .expect("apply_async_with");
                expected_callbacks += 1;
                if arg % 3 == 0 {
                    assert_eq!(r.get(), Ok(square(x)));
                }
            }
        }
    }
    for (f, want, cancelled) in futures {
        let r = f.result();
        if cancelled {
            assert_eq!(r, Err(PoolError::Cancelled));
        } else {
            assert_eq!(r, Ok(want));
        }
    }
    ex.shutdown(true);
    assert_eq!(callbacks.load(Ordering::SeqCst), expected_callbacks);
}
