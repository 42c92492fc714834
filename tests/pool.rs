//! `Pool`, `AsyncResult`, `Executor`, `Future` and `as_completed` with real worker processes,
//! with both start methods (and the thread backend): `map`/`starmap` against the sequential
//! result for many sizes and chunk sizes, `imap` order and laziness, `imap_unordered`
//! completion order, Python's `AsyncResult` protocol and callbacks, panics, initializers
//! (also failing ones), `maxtasksperchild`, workers killed mid-task (by themselves, by
//! `abort()`, by `exit()`, from outside), arguments and results larger than the pipe,
//! `close`/`join`/`terminate`/drop, the executor's futures, cancellation and `as_completed`,
//! and leaks (fds, `/dev/shm`, zombies) after all of that.
//!
//! Every blocking call is bounded — a timeout form, or the whole scenario on a watchdog
//! thread (`common::bounded`) — so a bug fails a test instead of hanging the suite. Workers
//! are daemons of the pool's threads: one left behind by a failing test dies with it.
//!
//! Tasks sleep to make completion orders differ; the only timing assertions are generous
//! "does not hang" bounds and the "two rounds, not five" bound of Python's seed example.
// std atomics here are user code (e.g. inside a `Shared<T>`); the shim rule is for the library.
#![allow(clippy::disallowed_types)]

mod common;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};

use common::{assert_leaves_nothing, bounded, eventually, exclusive, ms, proc_state, shared, LONG, METHODS};
use shmproc::{as_completed, AsyncResult, Executor, Pool, PoolBuilder, PoolError, StartMethod};

// ------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------

/// Bound on calls that must return promptly (`terminate`, `join` after it, dropping a
/// busy pool): well under the 10 s the long tasks would take.
const PROMPT: Duration = Duration::from_secs(5);

fn builder(m: StartMethod, workers: usize) -> PoolBuilder {
    Pool::builder().processes(workers).start_method(m)
}

fn pool(m: StartMethod, workers: usize) -> Pool {
    builder(m, workers).build().expect("build a pool")
}

fn executor(m: StartMethod, workers: usize) -> Executor {
    Executor::from_builder(builder(m, workers)).expect("build an executor")
}

/// Asserts that every pid is reaped: gone from `/proc` (neither running nor a zombie).
fn assert_reaped(pids: impl IntoIterator<Item = u32>, what: &str) {
    for pid in pids {
        assert_eq!(proc_state(pid), None, "{what}: worker {pid} is not reaped");
    }
}

/// Like [`assert_reaped`], for workers the pool reaps in the background (retired or
/// replaced ones): allows a settling period.
fn assert_reaped_soon(pids: impl IntoIterator<Item = u32>, what: &str) {
    for pid in pids {
        assert!(
            eventually(PROMPT, || proc_state(pid).is_none()),
            "{what}: worker {pid} is still there in state {:?}",
            proc_state(pid)
        );
    }
}

/// The dead worker's pid, checking that the error is `WorkerDied` with this signal and code.
fn expect_died<T: std::fmt::Debug>(
    r: &Result<T, PoolError>,
    want_signal: Option<i32>,
    want_code: Option<i32>,
    what: &str,
) -> u32 {
    match r {
        Err(PoolError::WorkerDied { pid, signal, code }) => {
            assert_eq!(
                (*signal, *code),
                (want_signal, want_code),
                "{what}: worker {pid} died the wrong way"
            );
            *pid
        }
        other => panic!("{what}: expected WorkerDied, got {other:?}"),
    }
}

/// A fresh directory in which tasks announce themselves (a file named after their pid), so
/// the test can tell which worker runs a long task, and when it has started.
struct PidDir(PathBuf);

impl PidDir {
    fn new(tag: &str, m: StartMethod) -> Self {
        let p = std::env::temp_dir().join(format!("shmproc-pooltest-{}-{tag}-{m:?}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create the pid directory");
        Self(p)
    }

    /// The argument of [`announce_and_nap`].
    fn arg(&self, ms: u64) -> (String, u64) {
        (self.0.display().to_string(), ms)
    }

    fn pids(&self) -> BTreeSet<u32> {
        std::fs::read_dir(&self.0)
            .expect("read the pid directory")
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect()
    }

    /// Waits until `n` tasks have announced themselves.
    fn wait_for(&self, n: usize) -> BTreeSet<u32> {
        assert!(
            eventually(LONG, || self.pids().len() >= n),
            "only {:?} of {n} tasks started",
            self.pids()
        );
        self.pids()
    }
}

impl Drop for PidDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sigkill(pid: u32) {
    // SAFETY: kill(2) has no memory-safety preconditions; the pid names our pool's worker,
    // which is alive or a zombie until its pump reaps it.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0, "kill {pid}");
}

// ------------------------------------------------------------------------------------------
// Tasks (fn items: their code travels, not their data)
// ------------------------------------------------------------------------------------------

fn square(x: u64) -> u64 {
    x * x
}

fn pid(_: ()) -> u32 {
    std::process::id()
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn mul_add(a: u64, b: u64, c: u64) -> u64 {
    a * b + c
}

fn label(name: String, n: u32, bang: bool) -> String {
    format!("{name}{n}{}", if bang { "!" } else { "" })
}

fn shout(s: String) -> String {
    s.to_uppercase()
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Sleeps `ms`, then returns `x` and the worker's pid.
fn tagged_nap((x, ms): (u64, u64)) -> (u64, u32) {
    std::thread::sleep(Duration::from_millis(ms));
    (x, std::process::id())
}

/// Writes a file named after the worker's pid into `dir`, then sleeps `ms`.
fn announce_and_nap((dir, ms): (String, u64)) -> u32 {
    let me = std::process::id();
    std::fs::write(format!("{dir}/{me}"), b"").expect("announce");
    std::thread::sleep(Duration::from_millis(ms));
    me
}

fn always_panics(_: ()) -> u32 {
    panic!("task exploded");
}

fn boom(x: u64) -> u64 {
    assert!(x != 3, "boom at {x}");
    x
}

/// Sleeps 20 ms and returns `(x, pid)`, except for the victim, which SIGKILLs its worker.
fn die_at((x, victim): (u64, u64)) -> (u64, u32) {
    if x == victim {
        // SAFETY: kill(2) on our own process; no memory-safety preconditions.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    tagged_nap((x, 20))
}

/// Like [`die_at`], but the victim calls `abort()` (SIGABRT).
fn abort_at((x, victim): (u64, u64)) -> (u64, u32) {
    if x == victim {
        std::process::abort();
    }
    tagged_nap((x, 20))
}

/// Like [`die_at`], but the victim calls `exit(3)`.
fn exit_at((x, victim): (u64, u64)) -> (u64, u32) {
    if x == victim {
        std::process::exit(3);
    }
    tagged_nap((x, 20))
}

/// A result of `n` bytes, whatever the (possibly large) padding argument.
fn inflate((n, pad): (u32, Vec<u8>)) -> Vec<u8> {
    vec![(pad.len() % 251) as u8; n as usize]
}

thread_local! {
    /// How often the initializer ran in this thread (a worker process's only thread, or a
    /// thread-backend worker thread).
    static INITS: Cell<u32> = const { Cell::new(0) };
    static TAG: Cell<u32> = const { Cell::new(0) };
}

fn setup(tag: u32) {
    INITS.with(|c| c.set(c.get() + 1));
    TAG.with(|t| t.set(tag));
}

/// (pid, thread name, initializer runs, tag)
fn init_report(_: ()) -> (u32, String, u32, u32) {
    (
        std::process::id(),
        std::thread::current().name().unwrap_or("?").to_owned(),
        INITS.with(Cell::get),
        TAG.with(Cell::get),
    )
}

fn setup_panics(_: ()) {
    panic!("initializer exploded");
}

fn setup_dies(_: ()) {
    // SAFETY: kill(2) on our own process; no memory-safety preconditions.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

// ------------------------------------------------------------------------------------------
// map, starmap, imap, imap_unordered
// ------------------------------------------------------------------------------------------

#[test]
fn map_matches_the_sequential_map_for_every_size_and_chunksize() {
    let _g = shared();
    for m in METHODS {
        bounded(&format!("{m:?} map"), move || {
            let pool = pool(m, 2);
            for n in [0u64, 1, 2, 7, 100, 1000, 10_007] {
                let want: Vec<u64> = (0..n).map(square).collect();
                for cs in [None, Some(1), Some(3), Some(64), Some(n as usize + 1)] {
                    let got = match cs {
                        None => pool.map(square, 0..n),
                        Some(cs) => pool.map_chunked(square, 0..n, cs),
                    };
                    assert_eq!(
                        got.as_ref(),
                        Ok(&want),
                        "{m:?}: map of {n} items, chunksize {cs:?}"
                    );
                }
            }
            let words: Vec<String> = (0..300).map(|i| "ab".repeat(i % 40) + "é").collect();
            let want: Vec<String> = words.iter().cloned().map(shout).collect();
            assert_eq!(pool.map_chunked(shout, words, 7), Ok(want), "{m:?}: strings");
            assert_eq!(
                pool.map_chunked(square, 0..10u64, 0),
                Err(PoolError::Invalid("chunksize must be at least 1")),
                "{m:?}"
            );
            // The pool still works after the refused call.
            assert_eq!(pool.map_chunked(square, [3u64], 1), Ok(vec![9]));
            pool.close();
            pool.join().unwrap();
        });
    }
}

#[test]
fn starmap_spreads_tuples_over_two_and_three_arguments() {
    let _g = shared();
    for m in METHODS {
        bounded(&format!("{m:?} starmap"), move || {
            let pool = pool(m, 2);
            let pairs: Vec<(u64, u64)> = (0..500).map(|i| (i, 2 * i + 1)).collect();
            let want: Vec<u64> = pairs.iter().map(|&(a, b)| add(a, b)).collect();
            assert_eq!(pool.starmap(add, pairs.clone()), Ok(want.clone()), "{m:?}");
            assert_eq!(pool.starmap_chunked(add, pairs, 1), Ok(want), "{m:?}");

            let triples: Vec<(u64, u64, u64)> = (0..300).map(|i| (i, i + 1, 7)).collect();
            let want: Vec<u64> = triples.iter().map(|&(a, b, c)| mul_add(a, b, c)).collect();
            assert_eq!(pool.starmap_chunked(mul_add, triples, 16), Ok(want), "{m:?}");

            let mixed = vec![("a".to_owned(), 1u32, true), ("bc".to_owned(), 22, false)];
            assert_eq!(
                pool.starmap(label, mixed),
                Ok(vec!["a1!".to_owned(), "bc22".to_owned()]),
                "{m:?}"
            );
            assert_eq!(
                pool.starmap(|a: u64, b: u64| a.pow(b as u32), [(2, 10), (3, 3)]),
                Ok(vec![1024, 27]),
                "{m:?}: non-capturing closure"
            );
            assert_eq!(pool.starmap(add, Vec::<(u64, u64)>::new()), Ok(vec![]));
            assert!(matches!(
                pool.starmap_chunked(add, [(1, 2)], 0),
                Err(PoolError::Invalid(_))
            ));
        });
    }
}

#[test]
fn imap_keeps_input_order_and_reads_endless_input_lazily() {
    let _g = shared();
    for m in METHODS {
        bounded(&format!("{m:?} imap"), move || {
            let pool = pool(m, 2);
            // Later items sleep less, so they finish first; imap still yields in input order.
            let items: Vec<(u64, u64)> = (0..6).map(|i| (i, (6 - i) * 20)).collect();
            let got: Vec<u64> = pool
                .imap(tagged_nap, items)
                .map(|r| r.expect("tagged_nap").0)
                .collect();
            assert_eq!(got, (0..6).collect::<Vec<_>>(), "{m:?}: imap order");

            // An endless input: read only a bounded window ahead of the consumer.
            let first: Result<Vec<u64>, _> = pool.imap_chunked(square, 0u64.., 1).take(50).collect();
            assert_eq!(
                first,
                Ok((0..50u64).map(square).collect()),
                "{m:?}: endless, chunks of 1"
            );
            let first: Result<Vec<u64>, _> = pool.imap_chunked(square, 0u64.., 8).take(50).collect();
            assert_eq!(
                first,
                Ok((0..50u64).map(square).collect()),
                "{m:?}: endless, chunks of 8"
            );

            let all: Result<Vec<u64>, _> = pool.imap_chunked(square, 0..1000u64, 7).collect();
            assert_eq!(all, Ok((0..1000u64).map(square).collect()), "{m:?}: chunks of 7");
            assert_eq!(pool.imap(square, Vec::<u64>::new()).count(), 0);

            let mut bad = pool.imap_chunked(square, 0..10u64, 0);
            assert!(matches!(bad.next(), Some(Err(PoolError::Invalid(_)))), "{m:?}");
            assert!(bad.next().is_none(), "{m:?}: nothing after the error");
        });
    }
}

#[test]
fn imap_unordered_yields_every_result_once_in_completion_order() {
    let _g = shared();
    for m in METHODS {
        bounded(&format!("{m:?} imap_unordered"), move || {
            // While the first item sleeps on one worker (with at most one job queued behind
            // it), the other worker finishes the rest.
            let pool = pool(m, 2);
            let items: Vec<(u64, u64)> = (0..20).map(|i| (i, if i == 0 { 300 } else { 0 })).collect();
            let order: Vec<u64> = pool
                .imap_unordered_chunked(tagged_nap, items, 1)
                .map(|r| r.expect("tagged_nap").0)
                .collect();
            assert_ne!(
                order.first(),
                Some(&0),
                "{m:?}: the slow first item came out first"
            );
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..20).collect::<Vec<_>>(), "{m:?}: {order:?}");

            for cs in [1, 7, 5000] {
                let mut got: Vec<u64> = pool
                    .imap_unordered_chunked(square, 0..3000u64, cs)
                    .map(|r| r.expect("square"))
                    .collect();
                got.sort_unstable();
                assert_eq!(
                    got,
                    (0..3000u64).map(square).collect::<Vec<_>>(),
                    "{m:?}: chunks of {cs}"
                );
            }
            let mut first: Vec<u64> = pool
                .imap_unordered_chunked(square, 0u64.., 4)
                .take(50)
                .map(|r| r.expect("square"))
                .collect();
            first.sort_unstable();
            first.dedup();
            assert_eq!(first.len(), 50, "{m:?}: endless input, distinct results");
            assert!(matches!(
                pool.imap_unordered_chunked(square, 0..3u64, 0).next(),
                Some(Err(PoolError::Invalid(_)))
            ));
        });
    }
}

/// Arguments and results larger than the pipe, and many medium ones queued behind short
/// jobs (when the pool keeps several jobs in flight per worker): no deadlock between a pump
/// sending and its worker answering.
#[test]
fn large_arguments_and_results_do_not_deadlock() {
    let _g = shared();
    for m in METHODS {
        bounded(&format!("{m:?} large messages"), move || {
            let pool = pool(m, 2);
            let big: Vec<(u32, Vec<u8>)> = (0..6).map(|i| (1 << 20, vec![i as u8; 1 << 20])).collect();
            let got = pool.map_chunked(inflate, big, 1).expect("1 MiB in and out");
            assert!(got.iter().all(|v| v.len() == 1 << 20), "{m:?}");

            // Tiny jobs first (the workers count as fast), then 60 KB arguments with 200 KB
            // results.
            let mut items: Vec<(u32, Vec<u8>)> = (0..8).map(|_| (1, vec![])).collect();
            items.extend((0..48).map(|_| (200_000, vec![1u8; 60_000])));
            let got = pool.map_chunked(inflate, items, 1).expect("medium messages");
            assert_eq!(got.len(), 56, "{m:?}");
            assert!(got[8..].iter().all(|v| v.len() == 200_000), "{m:?}");
        });
    }
}

// ------------------------------------------------------------------------------------------
// apply, apply_async, AsyncResult, callbacks
// ------------------------------------------------------------------------------------------

#[test]
fn apply_and_async_result_follow_pythons_protocol() {
    let _g = shared();
    for m in METHODS {
        bounded(&format!("{m:?} AsyncResult"), move || {
            let pool = pool(m, 1);
            assert_eq!(pool.apply(square, 12), Ok(144), "{m:?}");

            let r = pool.apply_async(nap, 300).unwrap();
            assert!(!r.ready(), "{m:?}");
            assert_eq!(r.successful(), Err(PoolError::NotReady), "{m:?}");
            assert_eq!(r.get_timeout(ms(10)), Err(PoolError::Timeout), "{m:?}");
            assert_eq!(r.wait_timeout(ms(10)), Err(PoolError::Timeout), "{m:?}");
            assert_eq!(r.wait_timeout(LONG), Ok(()), "{m:?}");
            assert!(r.ready(), "{m:?}");
            assert_eq!(r.successful(), Ok(true), "{m:?}");
            assert_eq!(r.get_timeout(LONG), Ok(300), "{m:?}: success after a timeout");
            assert_eq!(r.get_timeout(LONG), Err(PoolError::AlreadyTaken), "{m:?}");
            assert_eq!(r.get_timeout(ms(0)), Err(PoolError::AlreadyTaken), "{m:?}");

            let r = pool.apply_async(always_panics, ()).unwrap();
            assert_eq!(r.wait_timeout(LONG), Ok(()), "{m:?}");
            assert_eq!(r.successful(), Ok(false), "{m:?}");
            assert!(matches!(r.get(), Err(PoolError::Panicked(_))), "{m:?}");

            let rs: Vec<AsyncResult<u64>> = (0..50).map(|x| pool.apply_async(square, x).unwrap()).collect();
            for (x, r) in (0..50u64).zip(rs) {
                assert_eq!(r.get_timeout(LONG), Ok(x * x), "{m:?}");
            }
            // get() after wait(): the value is there at once.
            let r = pool.apply_async(square, 5).unwrap();
            r.wait();
            assert_eq!(r.get(), Ok(25));
        });
    }
}

#[test]
fn apply_async_with_runs_the_matching_callback_before_the_result_is_ready() {
    let _g = shared();
    for m in METHODS {
        bounded(&format!("{m:?} callbacks"), move || {
            let pool = pool(m, 2);

            // Success: the callback sees the value, and runs while the result is not ready.
            let slot: Arc<OnceLock<AsyncResult<u64>>> = Arc::new(OnceLock::new());
            let ran = Arc::new(AtomicBool::new(false));
            let (tx, rx) = mpsc::channel();
            let (etx, erx) = mpsc::channel::<PoolError>();
            let (s2, ran2) = (slot.clone(), ran.clone());
            let r = pool
                .apply_async_with(
                    nap,
                    150,
                    move |v: &u64| {
                        let ready_seen = s2.get().map(AsyncResult::ready);
                        std::thread::sleep(ms(50)); // ready() must wait for the callback
                        ran2.store(true, SeqCst);
                        let _ = tx.send((*v, ready_seen));
                    },
                    move |e: &PoolError| {
                        let _ = etx.send(e.clone());
                    },
                )
                .unwrap();
            assert!(slot.set(r).is_ok());
            let r = slot.get().unwrap();
            assert_eq!(r.wait_timeout(LONG), Ok(()), "{m:?}");
            assert!(ran.load(SeqCst), "{m:?}: ready before the callback finished");
            assert_eq!(rx.recv_timeout(LONG), Ok((150, Some(false))), "{m:?}");
            assert!(
                erx.try_recv().is_err(),
                "{m:?}: the error callback ran on success"
            );
            assert_eq!(r.successful(), Ok(true));

            // Failure: the error callback sees the panic; the success callback does not run.
            let (tx, rx) = mpsc::channel::<u32>();
            let (etx, erx) = mpsc::channel::<PoolError>();
            let r = pool
                .apply_async_with(
                    always_panics,
                    (),
                    move |v: &u32| {
                        let _ = tx.send(*v);
                    },
                    move |e: &PoolError| {
                        let _ = etx.send(e.clone());
                    },
                )
                .unwrap();
            match erx.recv_timeout(LONG) {
                Ok(PoolError::Panicked(p)) => assert_eq!(p.message, "task exploded", "{m:?}"),
                other => panic!("{m:?}: error callback got {other:?}"),
            }
            assert_eq!(r.wait_timeout(LONG), Ok(()));
            assert!(
                rx.try_recv().is_err(),
                "{m:?}: the success callback ran on failure"
            );
            assert_eq!(r.successful(), Ok(false));
        });
    }
}

// ------------------------------------------------------------------------------------------
// Panics, initializers, maxtasksperchild
// ------------------------------------------------------------------------------------------

#[test]
fn a_panicking_task_fails_alone_and_the_worker_keeps_serving() {
    let _g = shared();
    for m in METHODS {
        bounded(&format!("{m:?} panics"), move || {
            let pool = pool(m, 1);
            let before = pool.apply(pid, ()).unwrap();
            assert_ne!(before, std::process::id(), "{m:?}: tasks run in a worker process");
            match pool.apply(always_panics, ()) {
                Err(PoolError::Panicked(p)) => {
                    assert_eq!(p.message, "task exploded", "{m:?}");
                    let loc = p.location.expect("a panic location");
                    assert!(loc.contains("pool.rs"), "{m:?}: location {loc}");
                }
                other => panic!("{m:?}: expected Panicked, got {other:?}"),
            }
            assert_eq!(pool.apply(pid, ()), Ok(before), "{m:?}: the worker was replaced");

            for cs in [1, 4] {
                match pool.map_chunked(boom, 0..10u64, cs) {
                    Err(PoolError::Panicked(p)) => assert_eq!(p.message, "boom at 3", "{m:?} cs {cs}"),
                    other => panic!("{m:?} cs {cs}: expected Panicked, got {other:?}"),
                }
            }
            // imap: only the panicking item fails, also inside a chunk of several items.
            for cs in [1, 4] {
                let out: Vec<_> = pool.imap_chunked(boom, 0..10u64, cs).collect();
                for (x, r) in (0..10u64).zip(&out) {
                    if x == 3 {
                        assert!(matches!(r, Err(PoolError::Panicked(_))), "{m:?} cs {cs}: {r:?}");
                    } else {
                        assert_eq!(r, &Ok(x), "{m:?} cs {cs}");
                    }
                }
            }
            assert_eq!(pool.apply(pid, ()), Ok(before), "{m:?}: the worker was replaced");
        });
    }
}

#[test]
fn initializer_runs_once_in_every_worker() {
    let _g = shared();
    for m in METHODS {
        bounded(&format!("{m:?} initializer"), move || {
            let pool = builder(m, 2).initializer(setup, 7).build().unwrap();
            let reports = pool.map_chunked(init_report, vec![(); 400], 1).unwrap();
            let pids: BTreeSet<u32> = reports.iter().map(|r| r.0).collect();
            assert!((1..=2).contains(&pids.len()), "{m:?}: workers {pids:?}");
            assert!(!pids.contains(&std::process::id()), "{m:?}");
            for r in &reports {
                assert_eq!((r.2, r.3), (1, 7), "{m:?}: {r:?}");
            }
            pool.close();
            pool.join().unwrap();
            assert_reaped(pids, &format!("{m:?} initializer pool"));

            // Replacement workers run the initializer too, once each.
            let pool = builder(m, 1)
                .initializer(setup, 9)
                .maxtasksperchild(2)
                .build()
                .unwrap();
            let reports: Vec<_> = (0..6).map(|_| pool.apply(init_report, ()).unwrap()).collect();
            let pids: BTreeSet<u32> = reports.iter().map(|r| r.0).collect();
            assert_eq!(pids.len(), 3, "{m:?}: {reports:?}");
            assert!(reports.iter().all(|r| (r.2, r.3) == (1, 9)), "{m:?}: {reports:?}");
        });
    }
}

#[test]
fn a_failing_initializer_breaks_the_pool_without_hanging() {
    let _g = shared();
    for m in METHODS {
        bounded(&format!("{m:?} failing initializer"), move || {
            let pool = builder(m, 2).initializer(setup_panics, ()).build().unwrap();
            match pool.apply(square, 2) {
                Err(PoolError::InitializerFailed(msg)) => {
                    assert!(msg.contains("initializer exploded"), "{m:?}: {msg}")
                }
                other => panic!("{m:?}: expected InitializerFailed, got {other:?}"),
            }
            assert!(
                matches!(
                    pool.map_chunked(square, 0..20u64, 1),
                    Err(PoolError::InitializerFailed(_))
                ),
                "{m:?}"
            );
            let r = pool.apply_async(square, 3).unwrap();
            assert!(matches!(r.get(), Err(PoolError::InitializerFailed(_))), "{m:?}");
            assert!(pool
                .imap_chunked(square, 0..3u64, 1)
                .all(|r| matches!(r, Err(PoolError::InitializerFailed(_)))));
            drop(pool);

            // An initializer that kills its worker: the same, not a restart loop.
            let pool = builder(m, 2).initializer(setup_dies, ()).build().unwrap();
            assert!(
                matches!(pool.apply(square, 2), Err(PoolError::InitializerFailed(_))),
                "{m:?}"
            );
            assert!(
                matches!(pool.apply(square, 2), Err(PoolError::InitializerFailed(_))),
                "{m:?}"
            );
            pool.close();
            pool.join().unwrap();
        });
    }
}

#[test]
fn maxtasksperchild_replaces_and_reaps_workers() {
    let _g = shared();
    for m in METHODS {
        bounded(&format!("{m:?} maxtasksperchild"), move || {
            let pool = builder(m, 1).maxtasksperchild(2).build().unwrap();
            let pids: Vec<u32> = (0..10).map(|_| pool.apply(pid, ()).unwrap()).collect();
            let mut count: BTreeMap<u32, usize> = BTreeMap::new();
            for p in &pids {
                *count.entry(*p).or_default() += 1;
            }
            assert!(count.len() >= 5, "{m:?}: {pids:?}");
            assert!(count.values().all(|&n| n <= 2), "{m:?}: {pids:?}");
            // Retired workers are reaped by the pool, not left as zombies.
            assert_reaped_soon(count.keys().copied(), &format!("{m:?} retired"));

            // map chunks count as jobs too.
            let out = pool.map_chunked(tagged_nap, (0..12).map(|x| (x, 0)), 1).unwrap();
            assert_eq!(
                out.iter().map(|r| r.0).collect::<Vec<_>>(),
                (0..12).collect::<Vec<_>>()
            );
            let mut count: BTreeMap<u32, usize> = BTreeMap::new();
            for r in &out {
                *count.entry(r.1).or_default() += 1;
            }
            assert!(
                count.len() >= 6 && count.values().all(|&n| n <= 2),
                "{m:?}: {out:?}"
            );
            pool.close();
            pool.join().unwrap();
            assert_reaped(count.keys().copied(), &format!("{m:?} after join"));
        });
    }
}

// ------------------------------------------------------------------------------------------
// Workers dying mid-task
// ------------------------------------------------------------------------------------------

/// A pool of 2 runs 20 items of `f` (20 ms each) in which item `victim` kills its worker:
/// exactly that item fails with `WorkerDied`, the others succeed, the pool goes on, and
/// `close()` + `join()` leave no worker behind.
fn one_victim<F>(m: StartMethod, f: F, victim: u64, signal: Option<i32>, code: Option<i32>, what: &str)
where
    F: Fn((u64, u64)) -> (u64, u32) + Copy + Send + Sync + 'static,
{
    let pool = pool(m, 2);
    let items: Vec<(u64, u64)> = (0..20).map(|x| (x, victim)).collect();
    let out: Vec<_> = pool.imap_chunked(f, items.clone(), 1).collect();
    assert_eq!(out.len(), 20, "{what}");
    let mut pids = BTreeSet::new();
    for (x, r) in (0..20u64).zip(&out) {
        if x == victim {
            pids.insert(expect_died(r, signal, code, what));
        } else {
            match r {
                Ok((y, p)) => {
                    assert_eq!(*y, x, "{what}");
                    pids.insert(*p);
                }
                Err(e) => panic!("{what}: item {x} failed: {e:?}"),
            }
        }
    }
    // map reports the death as its error.
    let r = pool.map_chunked(f, items, 1);
    pids.insert(expect_died(&r, signal, code, what));
    // The pool goes on with replacements.
    let after = pool.map_chunked(f, (0..6).map(|x| (x, u64::MAX)), 1).unwrap();
    assert_eq!(
        after.iter().map(|r| r.0).collect::<Vec<_>>(),
        (0..6).collect::<Vec<_>>()
    );
    pids.extend(after.iter().map(|r| r.1));
    pool.close();
    pool.join().unwrap();
    assert_reaped(pids, what);
}

#[test]
fn a_task_that_sigkills_its_worker_fails_alone() {
    let _g = shared();
    for m in METHODS {
        for trial in 0..5u64 {
            let victim = (trial * 7 + 2) % 20;
            let what = format!("{m:?} SIGKILL trial {trial}, victim {victim}");
            bounded(&what.clone(), move || {
                one_victim(m, die_at, victim, Some(9), None, &what)
            });
        }
    }
}

#[test]
fn abort_and_exit_in_a_task_are_reported_with_signal_and_code() {
    let _g = shared();
    for m in METHODS {
        let what = format!("{m:?} abort");
        bounded(&what.clone(), move || {
            one_victim(m, abort_at, 5, Some(libc::SIGABRT), None, &what)
        });
        let what = format!("{m:?} exit(3)");
        bounded(&what.clone(), move || {
            one_victim(m, exit_at, 11, None, Some(3), &what)
        });
    }
}

#[test]
fn a_worker_killed_from_outside_fails_only_its_task() {
    let _g = shared();
    for m in METHODS {
        bounded(&format!("{m:?} killed from outside"), move || {
            let dir = PidDir::new("outside", m);
            let pool = pool(m, 2);
            let long = pool.apply_async(announce_and_nap, dir.arg(10_000)).unwrap();
            let victim = *dir.wait_for(1).first().unwrap();
            let others: Vec<_> = (0..10)
                .map(|x| pool.apply_async(tagged_nap, (x, 20)).unwrap())
                .collect();
            std::thread::sleep(ms(50));
            sigkill(victim);
            let died = expect_died(&long.get_timeout(LONG), Some(9), None, &format!("{m:?}"));
            assert_eq!(died, victim, "{m:?}");
            let mut pids = BTreeSet::from([victim]);
            for (x, r) in (0..10u64).zip(others) {
                let (y, p) = r.get_timeout(LONG).expect("the other tasks complete");
                assert_eq!(y, x);
                assert_ne!(p, victim);
                pids.insert(p);
            }
            // The pool replaced the worker and goes on.
            let out = pool.map_chunked(tagged_nap, (0..8).map(|x| (x, 10)), 1).unwrap();
            assert!(out.iter().all(|r| r.1 != victim), "{m:?}");
            pids.extend(out.iter().map(|r| r.1));
            pool.close();
            pool.join().unwrap();
            assert_reaped(pids, &format!("{m:?} killed from outside"));
        });
    }
}

// ------------------------------------------------------------------------------------------
// close, join, terminate, drop
// ------------------------------------------------------------------------------------------

/// Python's seed example: `with Pool(4) as p: p.map(f, range(5))` where `f` sleeps — two
/// rounds, not five.
#[test]
fn five_naps_on_four_workers_take_two_rounds_then_close_and_join() {
    let _g = shared();
    for m in METHODS {
        bounded(&format!("{m:?} seed example"), move || {
            let pool = pool(m, 4);
            // Warm up: every worker started and answering (and the jobs count as long ones).
            assert_eq!(pool.map_chunked(nap, [30u64; 8], 1), Ok(vec![30; 8]));
            let t = Instant::now();
            assert_eq!(pool.map_chunked(nap, [300u64; 5], 1), Ok(vec![300; 5]), "{m:?}");
            let took = t.elapsed();
            eprintln!("{m:?}: 5 naps of 300 ms on 4 workers took {took:?}");
            assert!(
                took >= ms(550) && took < ms(1100),
                "{m:?}: {took:?} is not two rounds"
            );

            assert_eq!(pool.join(), Err(PoolError::NotClosed), "{m:?}");
            let r = pool.apply_async(square, 4).unwrap();
            pool.close();
            assert_eq!(
                pool.apply_async(square, 2).unwrap_err(),
                PoolError::Closed,
                "{m:?}"
            );
            assert_eq!(pool.map(square, 0..3u64), Err(PoolError::Closed), "{m:?}");
            assert!(matches!(
                pool.imap_chunked(square, 0..3u64, 1).next(),
                Some(Err(PoolError::Closed))
            ));
            pool.join().unwrap();
            assert_eq!(
                r.get_timeout(ms(0)),
                Ok(16),
                "{m:?}: work queued before close() ran"
            );
            pool.join().unwrap(); // twice is fine
        });
    }
}

/// Jobs submitted together go to free workers first: two long tasks and a short one on a
/// pool of two run the long ones side by side (Python's workers take the next task when they
/// are free), not one behind the other.
#[test]
fn long_tasks_submitted_together_run_on_different_workers() {
    let _g = shared();
    for m in METHODS {
        bounded(&format!("{m:?} spread"), move || {
            let pool = pool(m, 2);
            assert_eq!(pool.map_chunked(nap, [20u64; 4], 1), Ok(vec![20; 4])); // both workers up
            let a = pool.apply_async(tagged_nap, (0, 400)).unwrap();
            let b = pool.apply_async(tagged_nap, (1, 400)).unwrap();
            let c = pool.apply_async(tagged_nap, (2, 0)).unwrap();
            let (a, b) = (a.get_timeout(LONG).unwrap(), b.get_timeout(LONG).unwrap());
            assert_eq!(c.get_timeout(LONG).map(|r| r.0), Ok(2));
            assert_ne!(
                a.1, b.1,
                "{m:?}: both long tasks ran on worker {}, one after the other",
                a.1
            );
        });
    }
}

#[test]
fn terminate_fails_running_and_queued_tasks_and_kills_workers() {
    let _g = shared();
    for m in METHODS {
        bounded(&format!("{m:?} terminate"), move || {
            let dir = PidDir::new("terminate", m);
            let pool = pool(m, 1);
            let long = pool.apply_async(announce_and_nap, dir.arg(10_000)).unwrap();
            let queued = pool.apply_async(square, 3).unwrap();
            let worker = *dir.wait_for(1).first().unwrap();
            let t = Instant::now();
            pool.terminate();
            assert!(t.elapsed() < PROMPT, "{m:?}: terminate took {:?}", t.elapsed());
            assert_eq!(
                long.get_timeout(LONG),
                Err(PoolError::Terminated),
                "{m:?}: running task"
            );
            assert_eq!(
                queued.get_timeout(LONG),
                Err(PoolError::Terminated),
                "{m:?}: queued task"
            );
            pool.join().unwrap();
            assert!(
                t.elapsed() < PROMPT,
                "{m:?}: join after terminate took {:?}",
                t.elapsed()
            );
            assert_reaped([worker], &format!("{m:?} terminate"));
            assert_eq!(pool.apply_async(square, 2).unwrap_err(), PoolError::Closed);
        });
    }
}

#[test]
fn dropping_a_busy_pool_kills_its_workers() {
    let _g = shared();
    for m in METHODS {
        bounded(&format!("{m:?} drop"), move || {
            let dir = PidDir::new("drop", m);
            let pool = pool(m, 2);
            // One at a time, so that each lands on its own worker.
            let running: Vec<_> = (1..=2)
                .map(|n| {
                    let r = pool.apply_async(announce_and_nap, dir.arg(10_000)).unwrap();
                    dir.wait_for(n);
                    r
                })
                .collect();
            let queued = pool.apply_async(square, 3).unwrap();
            let workers = dir.pids();
            assert_eq!(workers.len(), 2, "{m:?}");
            let t = Instant::now();
            drop(pool);
            assert!(t.elapsed() < PROMPT, "{m:?}: drop took {:?}", t.elapsed());
            assert_reaped(workers, &format!("{m:?} drop"));
            for r in running {
                let e = r.get_timeout(LONG);
                assert_eq!(
                    e,
                    Err(PoolError::Terminated),
                    "{m:?}: a task running when its pool dropped"
                );
            }
            assert_eq!(queued.get_timeout(LONG), Err(PoolError::Terminated), "{m:?}");
        });
    }
}

#[test]
fn invalid_parameters_are_errors() {
    let _g = shared();
    assert!(matches!(Pool::new(0), Err(PoolError::Invalid(_))));
    assert!(matches!(Pool::threads(0), Err(PoolError::Invalid(_))));
    assert!(matches!(Executor::new(0), Err(PoolError::Invalid(_))));
    for m in METHODS {
        assert!(
            matches!(builder(m, 0).build(), Err(PoolError::Invalid(_))),
            "{m:?}"
        );
        assert!(
            matches!(
                builder(m, 1).maxtasksperchild(0).build(),
                Err(PoolError::Invalid(_))
            ),
            "{m:?}"
        );
    }
    assert_eq!(shmproc::default_chunksize(0, 4), 1);
    assert_eq!(shmproc::default_chunksize(100, 4), 7);
    assert_eq!(shmproc::default_chunksize(10_007, 2), 1251);
}

// ------------------------------------------------------------------------------------------
// Executor, Future, as_completed
// ------------------------------------------------------------------------------------------

#[test]
fn executor_submit_result_timeout_and_cancel() {
    let _g = shared();
    for m in METHODS {
        bounded(&format!("{m:?} executor futures"), move || {
            let ex = executor(m, 2);
            let fs: Vec<_> = (0..200u64).map(|x| ex.submit(square, x).unwrap()).collect();
            for (x, f) in (0..200u64).zip(fs) {
                assert_eq!(f.result(), Ok(x * x), "{m:?}");
            }

            let ex = executor(m, 1);
            let busy = ex.submit(nap, 600).unwrap();
            assert!(eventually(LONG, || busy.running()), "{m:?}: never running");
            // As in Python, one call may be queued to the busy worker already (it is then
            // "running" and cannot be cancelled); the one after it is still pending.
            let next = ex.submit(nap, 1).unwrap();
            let queued = ex.submit(nap, 2).unwrap();
            std::thread::sleep(ms(100)); // let the pool hand out what it would
            assert!(!queued.running() && !queued.done(), "{m:?}");
            assert!(queued.cancel(), "{m:?}: cancel a pending future");
            assert!(queued.cancel(), "{m:?}: cancel twice");
            assert!(queued.cancelled() && queued.done() && !queued.running(), "{m:?}");
            assert!(!busy.cancel(), "{m:?}: cancelled a running future");
            assert!(!busy.cancelled(), "{m:?}");
            assert_eq!(busy.result_timeout(ms(10)), Err(PoolError::Timeout), "{m:?}");
            assert_eq!(queued.result(), Err(PoolError::Cancelled), "{m:?}");
            let next_cancelled = next.cancel();
            assert_eq!(next.cancelled(), next_cancelled, "{m:?}");
            assert_eq!(busy.result_timeout(LONG), Ok(600), "{m:?}");
            assert!(!busy.running(), "{m:?}");
            let want = if next_cancelled {
                Err(PoolError::Cancelled)
            } else {
                Ok(1)
            };
            assert_eq!(next.result_timeout(LONG), want, "{m:?}");

            let f = ex.submit(square, 9).unwrap();
            assert!(eventually(LONG, || f.done()), "{m:?}");
            assert!(
                !f.cancel() && !f.cancelled(),
                "{m:?}: cancelled a finished future"
            );
            assert_eq!(f.result(), Ok(81), "{m:?}");

            let f = ex.submit(always_panics, ()).unwrap();
            assert!(matches!(f.result(), Err(PoolError::Panicked(_))), "{m:?}");

            let (tx, rx) = mpsc::channel();
            let f = ex.submit(nap, 50).unwrap();
            f.add_done_callback(move || tx.send(()).unwrap());
            assert_eq!(rx.recv_timeout(LONG), Ok(()), "{m:?}: done callback");
            assert!(f.done());
        });
    }
}

#[test]
fn as_completed_yields_in_completion_order() {
    let _g = shared();
    for m in METHODS {
        bounded(&format!("{m:?} as_completed"), move || {
            let ex = executor(m, 3);
            let fs = [600u64, 20, 300].map(|t| ex.submit(nap, t).unwrap());
            let order: Vec<u64> = as_completed(fs).map(|f| f.result().unwrap()).collect();
            assert_eq!(order, [20, 300, 600], "{m:?}");

            let ex = executor(m, 1);
            let mut it = as_completed(vec![ex.submit(nap, 400).unwrap()]);
            assert_eq!(it.next_timeout(ms(30)).unwrap_err(), PoolError::Timeout, "{m:?}");
            let f = it.next_timeout(LONG).expect("completes").expect("a future");
            assert_eq!(f.result(), Ok(400), "{m:?}");
            assert!(matches!(it.next_timeout(ms(0)), Ok(None)), "{m:?}");

            // Futures already done are yielded too, once each.
            let fs: Vec<_> = (0..20u64).map(|x| ex.submit(square, x).unwrap()).collect();
            assert!(eventually(LONG, || fs.iter().all(|f| f.done())));
            let mut got: Vec<u64> = as_completed(fs).map(|f| f.result().unwrap()).collect();
            got.sort_unstable();
            assert_eq!(got, (0..20u64).map(square).collect::<Vec<_>>(), "{m:?}");
        });
    }
}

#[test]
fn executor_map_and_shutdown() {
    let _g = shared();
    for m in METHODS {
        bounded(&format!("{m:?} executor map/shutdown"), move || {
            let ex = executor(m, 2);
            let items: Vec<(u64, u64)> = (0..6).map(|i| (i, (6 - i) * 15)).collect();
            let got: Vec<u64> = ex.map(tagged_nap, items).map(|r| r.unwrap().0).collect();
            assert_eq!(got, (0..6).collect::<Vec<_>>(), "{m:?}: Executor::map order");
            let got: Result<Vec<u64>, _> = ex.map_chunked(square, 0..500u64, 10).collect();
            assert_eq!(got, Ok((0..500u64).map(square).collect()), "{m:?}");

            // shutdown(true) waits for everything pending.
            let ex = executor(m, 1);
            let fs: Vec<_> = (0..3).map(|_| ex.submit(nap, 100).unwrap()).collect();
            ex.shutdown(true);
            assert!(
                fs.iter().all(|f| f.done()),
                "{m:?}: shutdown(true) returned early"
            );
            for f in fs {
                assert_eq!(f.result_timeout(ms(0)), Ok(100), "{m:?}");
            }
            assert_eq!(ex.submit(square, 1).unwrap_err(), PoolError::Closed, "{m:?}");
            ex.shutdown(true);

            // shutdown(false) returns at once; the pending work still completes.
            let ex = executor(m, 1);
            let f = ex.submit(nap, 100).unwrap();
            ex.shutdown(false);
            assert_eq!(f.result_timeout(LONG), Ok(100), "{m:?}");
        });
    }
}

#[test]
fn executor_survives_a_killed_worker() {
    let _g = shared();
    for m in METHODS {
        bounded(&format!("{m:?} executor, killed worker"), move || {
            // 20 ms tasks: the job queued behind the victim on its worker goes back to the
            // queue and runs elsewhere.
            let ex = executor(m, 2);
            let fs: Vec<_> = (0..8u64).map(|x| ex.submit(die_at, (x, 3)).unwrap()).collect();
            for (x, f) in (0..8u64).zip(fs) {
                let r = f.result_timeout(PROMPT);
                if x == 3 {
                    expect_died(&r, Some(9), None, &format!("{m:?} executor"));
                } else {
                    assert_eq!(r.map(|v| v.0), Ok(x), "{m:?}");
                }
            }
            assert_eq!(
                ex.submit(square, 5).unwrap().result_timeout(LONG),
                Ok(25),
                "{m:?}"
            );
            let got: Result<Vec<u64>, _> = ex.map_chunked(square, 0..100u64, 1).collect();
            assert_eq!(got, Ok((0..100u64).map(square).collect()), "{m:?}: after a death");
        });
    }
}

/// Sleeps `ms`, then SIGKILLs its own worker.
fn die_later(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    die_at((0, 0)).0
}

fn byte_len(v: Vec<u8>) -> usize {
    v.len()
}

/// A future whose job a pump took and then handed back to the queue still completes: one
/// queued behind a long job whose worker died, and one too large to be sent ahead to a busy
/// worker (the pump hands it back until the worker is idle).
#[test]
fn executor_futures_handed_back_to_the_queue_still_complete() {
    let _g = shared();
    for m in METHODS {
        bounded(&format!("{m:?} executor requeue"), move || {
            let ex = executor(m, 1);
            let warm: Vec<_> = (0..50u64).map(|x| ex.submit(square, x).unwrap()).collect();
            assert!(warm.into_iter().all(|f| f.result_timeout(LONG).is_ok()));
            let doomed = ex.submit(die_later, 100).unwrap();
            let behind: Vec<_> = (0..3u64).map(|x| ex.submit(square, x).unwrap()).collect();
            expect_died(&doomed.result_timeout(LONG), Some(9), None, &format!("{m:?}"));
            for (x, f) in (0..3u64).zip(behind) {
                assert_eq!(
                    f.result_timeout(PROMPT),
                    Ok(x * x),
                    "{m:?}: a future queued behind the dead one was lost"
                );
            }

            let ex = executor(m, 1);
            let warm: Vec<_> = (0..50u64).map(|x| ex.submit(square, x).unwrap()).collect();
            assert!(warm.into_iter().all(|f| f.result_timeout(LONG).is_ok()));
            let busy = ex.submit(nap, 200).unwrap();
            std::thread::sleep(ms(50));
            let big = ex.submit(byte_len, vec![0u8; 100_000]).unwrap();
            assert_eq!(busy.result_timeout(LONG), Ok(200), "{m:?}");
            assert_eq!(
                big.result_timeout(PROMPT),
                Ok(100_000),
                "{m:?}: a future with a large argument was lost"
            );
        });
    }
}

// ------------------------------------------------------------------------------------------
// Thread backend
// ------------------------------------------------------------------------------------------

#[test]
fn thread_backend_behaves_like_the_process_pool() {
    let _g = shared();
    bounded("thread backend", || {
        let me = std::process::id();
        let pool = Pool::threads(2).unwrap();
        assert_eq!(pool.workers(), 2);
        for n in [0u64, 1, 7, 1000] {
            for cs in [None, Some(1), Some(64)] {
                let got = match cs {
                    None => pool.map(square, 0..n),
                    Some(cs) => pool.map_chunked(square, 0..n, cs),
                };
                assert_eq!(got, Ok((0..n).map(square).collect()));
            }
        }
        assert_eq!(pool.starmap(add, [(1, 2), (3, 4)]), Ok(vec![3, 7]));
        let items: Vec<(u64, u64)> = (0..6).map(|i| (i, (6 - i) * 10)).collect();
        let got: Vec<(u64, u32)> = pool
            .imap_chunked(tagged_nap, items, 1)
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            got,
            (0..6).map(|i| (i, me)).collect::<Vec<_>>(),
            "order, same pid"
        );
        let mut got: Vec<u64> = pool
            .imap_unordered_chunked(square, 0..100u64, 3)
            .map(Result::unwrap)
            .collect();
        got.sort_unstable();
        assert_eq!(got, (0..100u64).map(square).collect::<Vec<_>>());
        assert_eq!(
            pool.apply(pid, ()),
            Ok(me),
            "a thread task runs in the test's process"
        );
        match pool.apply(always_panics, ()) {
            Err(PoolError::Panicked(p)) => {
                assert_eq!(p.message, "task exploded");
                assert!(p.location.unwrap_or_default().contains("pool.rs"));
            }
            other => panic!("expected Panicked, got {other:?}"),
        }
        assert_eq!(pool.apply(square, 3), Ok(9), "the thread keeps serving");
        let r = pool.apply_async(nap, 100).unwrap();
        assert_eq!(r.get_timeout(ms(1)), Err(PoolError::Timeout));
        assert_eq!(r.get_timeout(LONG), Ok(100));
        pool.close();
        pool.join().unwrap();

        // The initializer runs once in every worker thread.
        let pool = Pool::builder()
            .processes(2)
            .threads(true)
            .initializer(setup, 5)
            .maxtasksperchild(1) // ignored by the thread backend
            .build()
            .unwrap();
        let reports = pool.map_chunked(init_report, vec![(); 200], 1).unwrap();
        let threads: BTreeSet<&str> = reports.iter().map(|r| r.1.as_str()).collect();
        assert!((1..=2).contains(&threads.len()), "{threads:?}");
        assert!(
            reports.iter().all(|r| r.0 == me && (r.2, r.3) == (1, 5)),
            "{reports:?}"
        );
        drop(pool);

        let pool = Pool::builder()
            .processes(2)
            .threads(true)
            .initializer(setup_panics, ())
            .build()
            .unwrap();
        assert!(matches!(
            pool.apply(square, 2),
            Err(PoolError::InitializerFailed(_))
        ));
        assert!(matches!(
            pool.map_chunked(square, 0..9u64, 1),
            Err(PoolError::InitializerFailed(_))
        ));
        drop(pool);

        let ex = Executor::from_builder(Pool::builder().processes(2).threads(true)).unwrap();
        let fs: Vec<_> = (0..20u64).map(|x| ex.submit(square, x).unwrap()).collect();
        let mut got: Vec<u64> = as_completed(fs).map(|f| f.result().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, (0..20u64).map(square).collect::<Vec<_>>());
        ex.shutdown(true);
    });
}

// ------------------------------------------------------------------------------------------
// Leaks
// ------------------------------------------------------------------------------------------

/// Busy pools with panics, killed workers (from inside and outside), terminate and drop.
fn leak_scenario(m: StartMethod) {
    let what = format!("{m:?} leak scenario");
    let dir = PidDir::new("leaks", m);
    {
        let pool = pool(m, 2);
        assert_eq!(pool.map(square, 0..500u64), Ok((0..500u64).map(square).collect()));
        let out: Vec<_> = pool.imap_chunked(die_at, (0..10).map(|x| (x, 4)), 1).collect();
        expect_died(&out[4], Some(9), None, &what);
        assert!(matches!(
            pool.apply(always_panics, ()),
            Err(PoolError::Panicked(_))
        ));
        let long = pool.apply_async(announce_and_nap, dir.arg(10_000)).unwrap();
        let victim = *dir.wait_for(1).first().unwrap();
        sigkill(victim);
        expect_died(&long.get_timeout(LONG), Some(9), None, &what);
        let _running = pool.apply_async(nap, 10_000).unwrap();
        // dropped while busy
    }
    {
        let ex = executor(m, 2);
        let f = ex.submit(abort_at, (2, 2)).unwrap();
        expect_died(&f.result_timeout(LONG), Some(libc::SIGABRT), None, &what);
        let fs: Vec<_> = (0..6u64).map(|x| ex.submit(boom, x).unwrap()).collect();
        let failed = fs.into_iter().filter(|f| f.result_timeout(LONG).is_err()).count();
        assert_eq!(failed, 1, "{what}");
        ex.shutdown(true);
    }
    {
        let pool = builder(m, 1).maxtasksperchild(1).build().unwrap();
        let _ = pool.map_chunked(square, 0..5u64, 1).unwrap();
        let r = pool.apply_async(nap, 10_000).unwrap();
        std::thread::sleep(ms(50));
        pool.terminate();
        assert_eq!(r.get_timeout(LONG), Err(PoolError::Terminated), "{what}");
        pool.join().unwrap();
    }
    {
        let pool = builder(m, 2).initializer(setup_panics, ()).build().unwrap();
        let e = pool.apply(square, 1);
        assert!(matches!(e, Err(PoolError::InitializerFailed(_))), "{what}: {e:?}");
    }
}

#[test]
fn nothing_leaks_after_kills_panics_terminate_and_drop() {
    let _g = exclusive();
    // Warm up lazily created process-wide state (panic hook, spawn helper) first.
    for m in METHODS {
        let pool = pool(m, 1);
        assert_eq!(pool.apply(square, 2), Ok(4));
    }
    assert_leaves_nothing(leak_scenario);
}

/// The middle process of [`workers_die_with_a_killed_parent`]: builds a pool of two, runs a
/// long task on each worker (they announce their pids in `dir`), then waits to be killed.
fn pool_owner((dir, m): (String, StartMethod)) {
    let pool = pool(m, 2);
    let running: Vec<_> = (0..2)
        .map(|_| pool.apply_async(announce_and_nap, (dir.clone(), 60_000)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_secs(60));
    drop(running);
}

#[test]
fn workers_die_with_a_killed_parent() {
    let _g = shared();
    for m in METHODS {
        bounded(&format!("{m:?} killed parent"), move || {
            let dir = PidDir::new("orphans", m);
            // The pool's owner is itself a child (started either way), SIGKILLed while both
            // of its workers run a task: nothing can clean up, yet no worker may outlive it.
            let mut owner = common::start(m, pool_owner, (dir.0.display().to_string(), m));
            let workers = dir.wait_for(2);
            owner.kill().unwrap();
            assert!(
                matches!(owner.join_timeout(LONG), Err(shmproc::ProcessError::Killed(9))),
                "{m:?}"
            );
            for pid in &workers {
                assert!(
                    eventually(PROMPT, || common::is_dead(*pid)),
                    "{m:?}: worker {pid} outlived its killed pool (state {:?})",
                    proc_state(*pid)
                );
            }
        });
    }
}

#[test]
fn map_async_and_starmap_async_return_at_once() {
    let _g = shared();
    for m in METHODS {
        bounded(&format!("{m:?} map_async"), move || {
            let pool = pool(m, 2);
            let slow = pool.map_async_chunked(nap, [200u64, 1], 1).unwrap();
            assert!(!slow.ready(), "{m:?}: map_async waited for its tasks");
            let sums = pool.starmap_async(add, [(1u64, 2u64), (3, 4)]).unwrap();
            assert_eq!(sums.get(), Ok(vec![3, 7]), "{m:?}");
            assert_eq!(slow.get_timeout(LONG), Ok(vec![200, 1]), "{m:?}");
            let failed = pool.map_async_chunked(boom, 0..8u64, 2).unwrap();
            assert!(
                matches!(failed.get_timeout(LONG), Err(PoolError::Panicked(_))),
                "{m:?}"
            );
            assert!(failed.successful() == Ok(false), "{m:?}");
            let empty = pool.map_async(square, Vec::<u64>::new()).unwrap();
            assert_eq!(empty.get(), Ok(vec![]), "{m:?}");
        });
    }
}

fn hold_end(_: shmproc::Connection<u64>) {}

fn bump_counter(v: shmproc::Value<u64>) {
    v.update(|x| x + 1).expect("update");
}

#[test]
fn initializer_arguments_carry_handles_but_not_pipe_ends() {
    let _g = shared();
    for m in METHODS {
        // A handle in the initializer's arguments reaches every worker.
        let inits = shmproc::Value::new(0u64).unwrap();
        let pool = Pool::builder()
            .processes(2)
            .start_method(m)
            .initializer(bump_counter, inits.clone())
            .build()
            .unwrap();
        assert_eq!(pool.map_chunked(square, vec![1, 2, 3], 1).unwrap(), vec![1, 4, 9]);
        let ran = || inits.get().unwrap();
        assert!(
            eventually(LONG, || ran() == 2),
            "{m:?}: {} initializers ran",
            ran()
        );
        pool.close();
        pool.join().unwrap();
        // A pipe end would be shared by every worker: refused when the pool is built.
        let (a, _b) = shmproc::pipe::<u64>().unwrap();
        let built = Pool::builder()
            .processes(1)
            .start_method(m)
            .initializer(hold_end, a)
            .build();
        assert!(
            matches!(built, Err(PoolError::Codec(_))),
            "{m:?}: {:?}",
            built.err()
        );
    }
}

// ------------------------------------------------------------------------------------------
// No head-of-line blocking; idle deaths
// ------------------------------------------------------------------------------------------

/// How long the blocker of [`wait_for_others`] waits for the other items: far longer than
/// they take to run on a free worker, so timing out means one of them sat queued behind it.
const BLOCKER_WAIT: Duration = Duration::from_secs(8);

/// Item 0 (the blocker) waits until `n - 1` other items have run (each leaves a file in
/// `dir`) and returns whether they all did within [`BLOCKER_WAIT`]; the others leave their
/// file and return `true` at once. So item 0 returns `true` only if every other item ran
/// while item 0 was still running: none was held back behind it on its worker.
fn wait_for_others((dir, x, n): (String, u64, u64)) -> bool {
    if x != 0 {
        std::fs::write(format!("{dir}/done-{x}"), b"").expect("leave a mark");
        return true;
    }
    let others = || {
        std::fs::read_dir(&dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("done-"))
                    .count()
            })
            .unwrap_or(0) as u64
    };
    eventually(BLOCKER_WAIT, || others() + 1 >= n)
}

/// The ways work reaches a pool: each must let an idle worker take a task queued behind a
/// busy one.
#[derive(Clone, Copy, Debug)]
enum Submit {
    ImapUnordered,
    Map,
    ApplyAsync,
    Executor,
}

/// Four tasks, chunk size 1, two workers: item 0 blocks until items 1–3 have run. The issue's
/// case: item 2 was prefetched behind item 0 and stayed bound to its worker while the other
/// worker sat idle, so item 0 (and with it item 2) only returned after the blocker's wait.
fn no_head_of_line_blocking(m: StartMethod, threads: bool, how: Submit) -> Result<(), String> {
    let what = format!("{m:?} threads={threads} {how:?}");
    let dir = PidDir::new(&format!("hol-{threads}-{how:?}"), m);
    let d = dir.0.display().to_string();
    let items: Vec<(String, u64, u64)> = (0..4).map(|x| (d.clone(), x, 4)).collect();
    let b = builder(m, 2).threads(threads);
    let results: Vec<(u64, bool)> = match how {
        Submit::ImapUnordered => {
            let pool = b.build().unwrap();
            // Results come in completion order (the blocker's last, as it waits for the others).
            let out: Vec<bool> = pool
                .imap_unordered_chunked(wait_for_others, items, 1)
                .map(Result::unwrap)
                .collect();
            (0..4).zip(out).collect()
        }
        Submit::Map => {
            let pool = b.build().unwrap();
            let out = pool.map_chunked(wait_for_others, items, 1).unwrap();
            (0..4).zip(out).collect()
        }
        Submit::ApplyAsync => {
            let pool = b.build().unwrap();
            let rs: Vec<_> = items
                .into_iter()
                .map(|i| pool.apply_async(wait_for_others, i).unwrap())
                .collect();
            (0..4)
                .zip(rs.into_iter().map(|r| r.get_timeout(LONG).unwrap()))
                .collect()
        }
        Submit::Executor => {
            let ex = Executor::from_builder(b).unwrap();
            let fs: Vec<_> = items
                .into_iter()
                .map(|i| ex.submit(wait_for_others, i).unwrap())
                .collect();
            (0..4)
                .zip(fs.into_iter().map(|f| f.result_timeout(LONG).unwrap()))
                .collect()
        }
    };
    if results.iter().all(|r| r.1) {
        Ok(())
    } else {
        Err(format!(
            "{what}: item 0 waited {BLOCKER_WAIT:?} in vain for the others (one was held behind it): {results:?}"
        ))
    }
}

#[test]
fn an_idle_worker_takes_a_task_queued_behind_a_busy_one() {
    let _g = shared();
    // Every case runs (and reports), so that a failure names all the forms that block.
    let mut failed = Vec::new();
    for how in [
        Submit::ImapUnordered,
        Submit::Map,
        Submit::ApplyAsync,
        Submit::Executor,
    ] {
        for (m, threads) in [
            (StartMethod::Fork, false),
            (StartMethod::Spawn, false),
            (StartMethod::Fork, true),
        ] {
            let r = bounded(
                &format!("{m:?} threads={threads} {how:?} head of line"),
                move || no_head_of_line_blocking(m, threads, how),
            );
            failed.extend(r.err());
        }
    }
    assert!(
        failed.is_empty(),
        "{} cases blocked:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// The issue's own example, with its 2 s sleeper: in `imap_unordered(f, 0..4)` on two
/// workers, every other item arrives while item 0 is still asleep (before it arrives).
#[test]
fn imap_unordered_items_do_not_wait_for_a_sleeper() {
    let _g = shared();
    for_each_method("sleeper", |m| {
        {
            let pool = pool(m, 2);
            let items = [(0u64, 2_000u64), (1, 0), (2, 0), (3, 0)];
            let t = Instant::now();
            let order: Vec<(u64, Duration)> = pool
                .imap_unordered_chunked(tagged_nap, items, 1)
                .map(|r| (r.unwrap().0, t.elapsed()))
                .collect();
            assert_eq!(order.len(), 4, "{m:?}");
            assert_eq!(
                order[3].0, 0,
                "{m:?}: an item came after the 2 s sleeper: {order:?}"
            );
            // Generous: the others came well before the sleeper could have finished.
            assert!(order[2].1 < ms(1_500), "{m:?}: {order:?}");
        }
    });
}

/// Creates `dir/x` exclusively (`false` if it exists: the task ran before), sleeps a
/// little for some `x`, returns `(x, created)`.
fn run_once_exclusive((dir, x): (String, u64)) -> (u64, bool) {
    let made = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(format!("{dir}/{x}"))
        .is_ok();
    std::thread::sleep(Duration::from_micros(
        [0, 0, 50, 0, 2_000, 0, 0, 300][x as usize % 8],
    ));
    (x, made)
}

/// Every task ran exactly once and its answer reached its own caller.
fn check_once(out: &[(u64, bool)], want: impl Iterator<Item = u64>, what: &str) {
    let got: BTreeSet<u64> = out.iter().map(|r| r.0).collect();
    assert_eq!(got, want.collect(), "{what}: answers went to the wrong tasks");
    let twice: Vec<u64> = out.iter().filter(|r| !r.1).map(|r| r.0).collect();
    assert!(twice.is_empty(), "{what}: tasks ran twice: {twice:?}");
}

/// Many tasks of mixed length on three workers, so that idle workers take back tasks sent
/// ahead to busy ones all the time; then answers read slowly (a callback that naps on the
/// pool's thread), so that workers start the tasks sent ahead to them before their feeder
/// has read the answers before, while idle feeders look for tasks to take back: every task
/// runs exactly once (each creates its own file, exclusively) and answers its own caller.
fn exactly_once(m: StartMethod) {
    let dir = PidDir::new("once", m);
    let d = dir.0.display().to_string();
    let pool = pool(m, 3);
    for round in 0..4u64 {
        let what = format!("{m:?} round {round}");
        let range = round * 500..(round + 1) * 500;
        let items: Vec<_> = range.clone().map(|x| (d.clone(), x)).collect();
        let out: Vec<(u64, bool)> = match round % 2 {
            0 => pool.map_chunked(run_once_exclusive, items, 1).unwrap(),
            _ => pool
                .imap_unordered_chunked(run_once_exclusive, items, 1)
                .map(Result::unwrap)
                .collect(),
        };
        assert_eq!(out.len(), 500, "{what}");
        check_once(&out, range, &what);
    }
    for round in 0..3u64 {
        let what = format!("{m:?} slow callbacks {round}");
        // Items 10 000+ so as not to meet the files above.
        let range = 10_000 + round * 60..10_000 + (round + 1) * 60;
        let rs: Vec<_> = range
            .clone()
            .map(|x| {
                let nap = if x % 2 == 0 { ms(3) } else { ms(0) };
                pool.apply_async_with(
                    run_once_exclusive,
                    (d.clone(), x * 8),
                    move |_| std::thread::sleep(nap),
                    |_| {},
                )
                .unwrap()
            })
            .collect();
        let out: Vec<(u64, bool)> = rs
            .into_iter()
            .map(|r| r.get_timeout(LONG).map(|(x, made)| (x / 8, made)))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{what}: {e:?}"));
        check_once(&out, range, &what);
    }
}

#[test]
fn a_task_taken_back_from_a_busy_worker_runs_exactly_once() {
    let _g = shared();
    for_each_method("exactly once", exactly_once);
}

/// Runs `case` for each start method, each bounded, all of them even when one fails; then
/// fails with every failure.
fn for_each_method(what: &str, case: fn(StartMethod)) {
    let failed: Vec<String> = METHODS
        .into_iter()
        .filter_map(|m| {
            let name = format!("{m:?} {what}");
            let r = std::panic::catch_unwind(|| bounded(&name, move || case(m)));
            r.err().map(|p| {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                format!("{name}: {msg}")
            })
        })
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// A worker killed while idle fails no task: the next task never ran on it, so a live
/// worker (its replacement) runs it. The case first: one worker, `apply` after it
/// was killed idle.
fn idle_death(m: StartMethod) {
    let pool = pool(m, 1);
    let first = pool.apply(pid, ()).unwrap();
    sigkill(first);
    std::thread::sleep(ms(50));
    assert_eq!(
        pool.apply(square, 3),
        Ok(9),
        "{m:?}: the task after an idle death"
    );
    let second = pool.apply(pid, ()).unwrap();
    assert_ne!(first, second, "{m:?}");
    assert_eq!(
        pool.map_chunked(square, 0..4u64, 1),
        Ok(vec![0, 1, 4, 9]),
        "{m:?}"
    );
    // Both idle workers of a bigger pool killed: every form of submission still runs.
    let (pool2, victims) = pool_with_workers_up(m, 2);
    for v in &victims {
        sigkill(*v);
    }
    std::thread::sleep(ms(50));
    let r = pool2.apply_async(square, 5).unwrap();
    assert_eq!(
        pool2.map_chunked(square, 0..6u64, 1),
        Ok(vec![0, 1, 4, 9, 16, 25]),
        "{m:?}"
    );
    assert_eq!(r.get_timeout(LONG), Ok(25), "{m:?}");
    pool.close();
    pool.join().unwrap();
    pool2.close();
    pool2.join().unwrap();
    let mut dead = victims;
    dead.insert(first);
    assert_reaped(dead, &format!("{m:?} idle death"));
}

#[test]
fn a_worker_killed_while_idle_fails_no_task() {
    let _g = shared();
    for_each_method("idle death", idle_death);
}

fn idle_death_executor(m: StartMethod) {
    let ex = executor(m, 1);
    let first = ex.submit(pid, ()).unwrap().result_timeout(LONG).unwrap();
    sigkill(first);
    std::thread::sleep(ms(50));
    let f = ex.submit(square, 7).unwrap();
    assert_eq!(
        f.result_timeout(LONG),
        Ok(49),
        "{m:?}: the executor's task after an idle death"
    );
    ex.shutdown(true);
    assert_reaped([first], &format!("{m:?} idle death, executor"));
}

#[test]
fn an_executor_worker_killed_while_idle_fails_no_task() {
    let _g = shared();
    for_each_method("idle death, executor", idle_death_executor);
}

/// A pool of `n` workers, all started and idle, and their pids.
fn pool_with_workers_up(m: StartMethod, n: usize) -> (Pool, BTreeSet<u32>) {
    let p = pool(m, n);
    let dir = PidDir::new("up", m);
    // One long-ish task per worker at the same time (long tasks spread over free workers).
    let rs: Vec<_> = (0..n)
        .map(|_| p.apply_async(announce_and_nap, dir.arg(300)).unwrap())
        .collect();
    let pids = dir.wait_for(n);
    for r in rs {
        r.get_timeout(LONG).unwrap();
    }
    (p, pids)
}

/// `Pool::new(n)` and `Executor::new(n)` with a valid `n` (the default start method,
/// `Spawn`): `n` worker processes that run tasks, then close and join cleanly.
#[test]
fn pool_new_and_executor_new_with_a_valid_n() {
    let _g = shared();
    for n in [1, 3] {
        let pool = Pool::new(n).unwrap();
        assert_eq!(
            pool.map_chunked(square, 0..50u64, 1).unwrap(),
            (0..50u64).map(|x| x * x).collect::<Vec<_>>()
        );
        let pids: BTreeSet<u32> = pool
            .map_chunked(pid, vec![(); 60], 1)
            .unwrap()
            .into_iter()
            .collect();
        assert!(
            !pids.is_empty() && pids.len() <= n,
            "{n} workers, answers from {pids:?}"
        );
        assert!(
            !pids.contains(&std::process::id()),
            "tasks ran in worker processes"
        );
        pool.close();
        bounded("Pool::join", move || pool.join().unwrap());

        let ex = Executor::new(n).unwrap();
        let futures: Vec<_> = (0..20u64).map(|x| ex.submit(square, x).unwrap()).collect();
        let got: Vec<u64> = futures.iter().map(|f| f.result_timeout(LONG).unwrap()).collect();
        assert_eq!(got, (0..20u64).map(|x| x * x).collect::<Vec<_>>());
        ex.shutdown(true);
    }
}

#[test]
fn pool_error_is_send_sync_static_and_boxes_with_question_mark() {
    const fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}
    const _: () = assert_error::<PoolError>();
    fn boxed() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Err(PoolError::Timeout)?
    }
    assert_eq!(boxed().unwrap_err().to_string(), PoolError::Timeout.to_string());
}

#[test]
fn every_chunked_twin_gives_what_its_default_form_gives() {
    let _g = shared();
    for m in METHODS {
        bounded(&format!("{m:?} chunked twins"), move || {
            let pool = pool(m, 2);
            let items: Vec<u64> = (0..257).collect();
            let pairs: Vec<(u64, u64)> = items.iter().map(|&x| (x, 2 * x)).collect();
            let want: Vec<u64> = items.iter().map(|&x| square(x)).collect();
            let sums: Vec<u64> = pairs.iter().map(|&(a, b)| add(a, b)).collect();
            for cs in [1, 5, 300] {
                let what = format!("{m:?}, chunksize {cs}");
                assert_eq!(pool.map(square, items.clone()).as_ref(), Ok(&want), "{what}");
                assert_eq!(
                    pool.map_chunked(square, items.clone(), cs).as_ref(),
                    Ok(&want),
                    "{what}"
                );
                assert_eq!(pool.starmap(add, pairs.clone()).as_ref(), Ok(&sums), "{what}");
                assert_eq!(
                    pool.starmap_chunked(add, pairs.clone(), cs).as_ref(),
                    Ok(&sums),
                    "{what}"
                );
                let a = pool.map_async(square, items.clone()).unwrap();
                let b = pool.map_async_chunked(square, items.clone(), cs).unwrap();
                assert_eq!((a.get(), b.get()), (Ok(want.clone()), Ok(want.clone())), "{what}");
                let a = pool.starmap_async(add, pairs.clone()).unwrap();
                let b = pool.starmap_async_chunked(add, pairs.clone(), cs).unwrap();
                assert_eq!((a.get(), b.get()), (Ok(sums.clone()), Ok(sums.clone())), "{what}");
                let a: Result<Vec<u64>, _> = pool.imap(square, items.clone()).collect();
                let b: Result<Vec<u64>, _> = pool.imap_chunked(square, items.clone(), cs).collect();
                assert_eq!((a.as_ref(), b.as_ref()), (Ok(&want), Ok(&want)), "{what}");
                let mut a: Vec<u64> = pool
                    .imap_unordered(square, items.clone())
                    .map(Result::unwrap)
                    .collect();
                let mut b: Vec<u64> = (pool.imap_unordered_chunked(square, items.clone(), cs))
                    .map(Result::unwrap)
                    .collect();
                a.sort_unstable();
                b.sort_unstable();
                assert_eq!((&a, &b), (&want, &want), "{what}");
            }
            let zero = |r: Result<Vec<u64>, PoolError>| matches!(r, Err(PoolError::Invalid(_)));
            assert!(zero(pool.starmap_chunked(add, pairs.clone(), 0)), "{m:?}");
            assert!(
                zero(pool.map_async_chunked(square, items.clone(), 0).map(|_| vec![])),
                "{m:?}"
            );
            assert!(
                zero(pool.starmap_async_chunked(add, pairs, 0).map(|_| vec![])),
                "{m:?}"
            );
            drop(pool);

            let ex = executor(m, 2);
            let a: Result<Vec<u64>, _> = ex.map(square, items.clone()).collect();
            let b: Result<Vec<u64>, _> = ex.map_chunked(square, items.clone(), 7).collect();
            assert_eq!(
                (a.as_ref(), b.as_ref()),
                (Ok(&want), Ok(&want)),
                "{m:?}: executor"
            );
            let mut bad = ex.map_chunked(square, items, 0);
            assert!(matches!(bad.next(), Some(Err(PoolError::Invalid(_)))), "{m:?}");
            assert!(bad.next().is_none(), "{m:?}");
        });
    }
}
