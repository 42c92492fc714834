//! A guided run of shmproc across real processes: `cargo run --release --example tour`.
//!
//! Each step starts children with both start methods, shares memory with them, and prints
//! what happened; step 12 measures process start+join against `/bin/true`, steps 13–14 run
//! a `Pool` and an `Executor` on real work, timed against one process, and step 15 has pool
//! workers count words into a shared `Dict`.
// std atomics here are user code (e.g. inside a `Shared<T>`); the shim rule is for the library.
#![allow(clippy::disallowed_types)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shmproc::{
    as_completed, current_process, parent_process, Barrier, Bytes, Connection, Dict, Event, Executor, Lock,
    LockError, LockTimeoutError, PodCodec, Pool, Process, ProcessError, Queue, RawArray, Run, SegmentError,
    Semaphore, Shared, SharedMemory, ShmSafe, StartMethod, Value, PIPE_CAPACITY,
};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const METHODS: [StartMethod; 2] = [StartMethod::Fork, StartMethod::Spawn];

/// A shared struct: one atomic counter, one plain (read-only once shared) field.
#[repr(C)]
struct Tally {
    count: AtomicU64,
    per_child: u64,
}
// SAFETY: repr(C), any bit pattern is valid, mutated only through the atomic.
unsafe impl ShmSafe for Tally {}

fn count_up(t: Shared<Tally>) -> u64 {
    for _ in 0..t.per_child {
        t.count.fetch_add(1, Ordering::Relaxed);
    }
    t.per_child
}

/// Python's `Process` subclass with `run()`, the Rust way.
#[derive(Serialize, Deserialize)]
struct SquareSlice {
    out: RawArray<u64>,
    start: usize,
    end: usize,
}

impl Run for SquareSlice {
    type Output = String;
    fn run(self) -> String {
        for i in self.start..self.end {
            self.out.set(i, (i * i) as u64).expect("index in range");
        }
        let me = current_process();
        format!(
            "{} (pid {}) squared {}..{}",
            me.name, me.pid, self.start, self.end
        )
    }
}

fn greet(shm: SharedMemory) -> usize {
    let msg = format!(
        "hello from pid {}, child of {:?}",
        std::process::id(),
        parent_process().map(|p| p.pid)
    );
    shm.write_at(0, msg.as_bytes()).expect("fits");
    msg.len()
}

fn explode(code: u32) -> u32 {
    if code == 0 {
        panic!("a child panicked on purpose");
    }
    std::process::exit(code as i32)
}

fn nap(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn trivial(_: ()) -> u32 {
    7
}

/// Prints three lines while holding the lock, so they come out together.
fn print_block((lock, id): (Lock, u32)) {
    let _g = lock.lock().expect("lock");
    for line in 0..3 {
        println!("    child {id} (pid {}) line {line}", std::process::id());
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[repr(C)]
struct Occupancy {
    inside: AtomicU64,
    max_inside: AtomicU64,
}
// SAFETY: repr(C) of atomics only.
unsafe impl ShmSafe for Occupancy {}

/// Enters the semaphore-guarded section and records how many are inside at once.
fn limited((sem, occ): (Semaphore, Shared<Occupancy>)) {
    sem.acquire().expect("acquire");
    let now = occ.inside.fetch_add(1, Ordering::SeqCst) + 1;
    occ.max_inside.fetch_max(now, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(20));
    occ.inside.fetch_sub(1, Ordering::SeqCst);
    sem.release().expect("release");
}

/// Waits for the start signal and reports how long after `set` it woke (µs).
fn released((go, stamp): (Event, Shared<AtomicU64>)) -> u64 {
    go.wait();
    let woke = now_ns();
    woke.saturating_sub(stamp.load(Ordering::SeqCst)) / 1000
}

fn now_ns() -> u64 {
    // CLOCK_MONOTONIC is one clock for all processes, so stamps compare across them.
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Counts under a barrier, round by round.
fn rounds((b, v): (Barrier, Value<u64>)) -> Vec<usize> {
    (0..3)
        .map(|_| {
            v.update(|x| x + 1).expect("update");
            b.wait_timeout(Duration::from_secs(10)).expect("barrier")
        })
        .collect()
}

/// Puts `n` sequence numbers (zero-copy Pod path), then `n / 10` 1 KiB messages (raw bytes).
fn pipeline_producer((small, big, n): (Queue<u64, PodCodec>, Queue<Vec<u8>, Bytes>, u64)) {
    for i in 0..n {
        small.put(i).expect("put u64");
    }
    let mut msg = vec![0u8; 1024];
    for i in 0..n / 10 {
        msg[..8].copy_from_slice(&i.to_le_bytes());
        big.put(msg.clone()).expect("put 1 KiB");
    }
}

/// Streams `n` numbers through a one-way pipe, then answers pings on a duplex one until the
/// parent hangs up.
fn pipe_worker((out, n, ping): (Connection<u64, PodCodec>, u64, Connection<u64, PodCodec>)) -> u64 {
    for i in 0..n {
        out.send(&i).expect("send");
    }
    let mut answered = 0;
    while let Ok(x) = ping.recv() {
        ping.send(&(x + 1)).expect("pong");
        answered += 1;
    }
    answered
}

/// The pool's shared word counts, handed to each worker by the initializer.
static WORDS: std::sync::OnceLock<Dict<String, u64>> = std::sync::OnceLock::new();

fn keep_counts(d: Dict<String, u64>) {
    let _ = WORDS.set(d);
}

/// Counts the words of `text` into the shared dict, one atomic update per word.
fn count_words(text: String) -> u64 {
    let d = WORDS.get().expect("the initializer ran");
    let mut n = 0;
    for w in text.split_whitespace() {
        d.update_with(w, |c| c.unwrap_or(0) + 1).expect("update"); // a &str finds a String key
        n += 1;
    }
    n
}

/// A deterministic text of `n` words drawn (Zipf-like) from made-up syllable words.
fn corpus(n: usize) -> Vec<String> {
    const SYL: [&str; 12] = [
        "ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "de", "po", "ul", "ex",
    ];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut lines = Vec::new();
    let mut line = String::new();
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Rank r with probability ~ 1/r over 2000 words.
        let r = (2000f64.powf((x % 10_000) as f64 / 10_000.0)) as usize;
        let word: String = [r % 12, r / 12 % 12, r / 144 % 12]
            .iter()
            .map(|&k| SYL[k])
            .collect();
        line.push_str(&word);
        line.push(' ');
        if i % 500 == 499 {
            lines.push(std::mem::take(&mut line));
        }
    }
    lines.push(line);
    lines
}

/// Takes the lock and dies holding it (killed by the parent).
fn hold_forever(lock: Lock) {
    let g = lock.lock().expect("lock");
    std::mem::forget(g);
    std::thread::sleep(Duration::from_secs(600));
}

/// Number of primes in `[lo, hi)`: a sieve of the segment by the primes up to √hi.
fn count_primes((lo, hi): (u64, u64)) -> u64 {
    let root = (hi as f64).sqrt() as u64 + 1;
    let mut small = vec![true; root as usize + 1];
    let mut seg = vec![true; (hi - lo) as usize];
    for p in 2..=root {
        if !small[p as usize] {
            continue;
        }
        for m in (p * p..=root).step_by(p as usize) {
            small[m as usize] = false;
        }
        let first = (p * p).max(lo.div_ceil(p) * p);
        for m in (first..hi).step_by(p as usize) {
            seg[(m - lo) as usize] = false;
        }
    }
    (lo.max(2)..hi).filter(|&n| seg[(n - lo) as usize]).count() as u64
}

/// The start in `[lo, hi)` of the longest Collatz chain, and its length.
fn longest_collatz((lo, hi): (u64, u64)) -> (u64, u32) {
    let steps = |mut n: u64| {
        let mut k = 0;
        while n != 1 {
            n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
            k += 1;
        }
        k
    };
    (lo.max(1)..hi)
        .map(|n| (n, steps(n)))
        .max_by_key(|&(_, k)| k)
        .unwrap_or((0, 0))
}

fn step(n: u32, title: &str) {
    println!("\n[{n}] {title}");
}

fn main() -> Res<()> {
    shmproc::init(); // a spawned child takes over here and never returns
                     // Step 4's children panic on purpose and print their panic message on stderr (as Python
                     // prints a failed child's traceback). With RUST_BACKTRACE set in the caller's shell they
                     // would add a full backtrace that looks like the tour failing: turn it off here, before
                     // any thread starts; children inherit the environment (spawned) or this process's state
                     // (forked).
    std::env::set_var("RUST_BACKTRACE", "0");
    println!(
        "shmproc tour — pid {}, {} CPUs",
        std::process::id(),
        shmproc::cpu_count()
    );

    step(
        1,
        "a Shared<T> counter incremented by children of both start methods",
    );
    let tally = Shared::new(Tally {
        count: AtomicU64::new(0),
        per_child: 100_000,
    })?;
    let mut kids = Vec::new();
    for m in METHODS.iter().chain(METHODS.iter()) {
        kids.push(Process::new(count_up, tally.clone()).start_method(*m).start()?);
    }
    for k in &mut kids {
        let n = k.join()?;
        println!(
            "    {:<10} {:?} pid {:>7} added {n}",
            k.name(),
            k.start_method(),
            k.pid()
        );
    }
    println!(
        "    total {} (expected {})",
        tally.count.load(Ordering::Relaxed),
        4 * 100_000
    );

    step(2, "a RawArray filled by two Run tasks (one forked, one spawned)");
    let squares = RawArray::<u64>::new(10)?;
    let mut a = Process::from_run(SquareSlice {
        out: squares.clone(),
        start: 0,
        end: 5,
    })
    .name("lower")
    .start_method(StartMethod::Fork)
    .start()?;
    let mut b = Process::from_run(SquareSlice {
        out: squares.clone(),
        start: 5,
        end: 10,
    })
    .name("upper")
    .start()?;
    println!("    {}\n    {}", a.join()?, b.join()?);
    println!("    array now {:?}", squares.to_vec());

    step(3, "a named SharedMemory opened by a spawned child");
    let name = format!("/shmproc-tour-{}", std::process::id());
    let shm = SharedMemory::create_named(&name, 256)?;
    let mut c = Process::new(greet, SharedMemory::open_named(&name)?).start()?;
    let len = c.join()?;
    println!(
        "    {name} reads: {:?}",
        String::from_utf8_lossy(&shm.to_vec()[..len])
    );
    match SharedMemory::create_named(&name, 256) {
        Err(SegmentError::AlreadyExists(n)) => {
            println!("    creating {n} again: AlreadyExists, as it should")
        }
        other => println!("    unexpected: {other:?}"),
    }
    match RawArray::<f32>::open_named(&name) {
        Err(e @ SegmentError::LayoutMismatch { .. }) => println!("    opening it as RawArray<f32>: {e}"),
        other => println!("    unexpected: {other:?}"),
    }
    drop(shm); // the creator unlinks the name
    println!(
        "    after drop, open gives: {}",
        SharedMemory::open_named(&name).unwrap_err()
    );

    step(
        4,
        "children that fail: panic, exit code, SIGTERM, SIGKILL, join timeout",
    );
    println!("    (each panicking child prints its own panic message on stderr, as Python prints a child's traceback)");
    for m in METHODS {
        let mut p = Process::new(explode, 0).start_method(m).start()?;
        if let Err(ProcessError::Panicked(info)) = p.join() {
            println!("    {m:?}: panic came back: {info} (exitcode {:?})", p.exitcode());
        }
        let mut p = Process::new(explode, 3).start_method(m).start()?;
        println!(
            "    {m:?}: exit(3) -> {} (exitcode {:?})",
            p.join().unwrap_err(),
            p.exitcode()
        );
        let mut p = Process::new(nap, 60_000).start_method(m).start()?;
        p.terminate()?;
        println!(
            "    {m:?}: terminate() -> {} (exitcode {:?})",
            p.join().unwrap_err(),
            p.exitcode()
        );
        let mut p = Process::new(nap, 60_000).start_method(m).start()?;
        let timed_out = matches!(
            p.join_timeout(Duration::from_millis(20)),
            Err(ProcessError::Timeout)
        );
        p.kill()?;
        println!(
            "    {m:?}: join_timeout(20ms) timed out: {timed_out}; kill() -> {} (exitcode {:?})",
            p.join().unwrap_err(),
            p.exitcode()
        );
    }

    step(5, "a Lock keeps each child's three lines together");
    let lock = Lock::new()?;
    let mut kids = Vec::new();
    for (i, m) in METHODS.iter().chain(METHODS.iter()).enumerate() {
        kids.push(
            Process::new(print_block, (lock.clone(), i as u32))
                .start_method(*m)
                .start()?,
        );
    }
    for k in &mut kids {
        k.join()?;
    }

    step(6, "a Semaphore(2) lets at most two of six children in at once");
    let sem = Semaphore::new(2)?;
    let occ = Shared::new(Occupancy {
        inside: AtomicU64::new(0),
        max_inside: AtomicU64::new(0),
    })?;
    let mut kids = Vec::new();
    for i in 0..6 {
        let args = (sem.clone(), occ.clone());
        kids.push(Process::new(limited, args).start_method(METHODS[i % 2]).start()?);
    }
    for k in &mut kids {
        k.join()?;
    }
    println!(
        "    most children inside at once: {}",
        occ.max_inside.load(Ordering::SeqCst)
    );

    step(7, "an Event releases waiting workers in other processes");
    let go = Event::new()?;
    let stamp = Shared::new(AtomicU64::new(0))?;
    let mut kids = Vec::new();
    for m in METHODS.iter().chain(METHODS.iter()) {
        kids.push(
            Process::new(released, (go.clone(), stamp.clone()))
                .start_method(*m)
                .start()?,
        );
    }
    std::thread::sleep(Duration::from_millis(100)); // let them reach wait()
    stamp.store(now_ns(), Ordering::SeqCst);
    go.set();
    for k in &mut kids {
        let us = k.join()?;
        println!("    {:<10} woke {us} µs after set()", k.name());
    }

    step(8, "a Value counted by children meeting at a Barrier each round");
    let barrier = Barrier::new(3)?;
    let total = Value::new(0u64)?;
    let mut kids = Vec::new();
    for m in [StartMethod::Fork, StartMethod::Spawn, StartMethod::Fork] {
        kids.push(
            Process::new(rounds, (barrier.clone(), total.clone()))
                .start_method(m)
                .start()?,
        );
    }
    for k in &mut kids {
        let indices = k.join()?;
        println!("    {} arrival indices per round: {indices:?}", k.name());
    }
    println!(
        "    value: {} (3 children × 3 rounds)",
        // `recover`: take the value even if a child died holding the lock.
        total.get().or_else(LockError::recover)?
    );

    step(
        9,
        "a child SIGKILLed while holding a Lock does not hang the others",
    );
    for m in METHODS {
        let lock = Lock::new()?;
        let mut holder = Process::new(hold_forever, lock.clone()).start_method(m).start()?;
        while !lock.is_locked() {
            std::thread::sleep(Duration::from_millis(1));
        }
        holder.kill()?;
        let _ = holder.join();
        let t = Instant::now();
        match lock.lock_timeout(Duration::from_secs(5)) {
            Err(LockTimeoutError::OwnerDied(died)) => {
                let tid = died.dead_owner_tid();
                drop(died.into_guard());
                println!(
                    "    {m:?}: next lock() got OwnerDied (thread {tid}) after {:?}",
                    t.elapsed()
                );
            }
            Ok(_) => println!("    {m:?}: lock was free (unexpected)"),
            Err(e) => println!("    {m:?}: {e}"),
        };
        // The two idioms for code that only wants the lock, with `?`: take it anyway after
        // a dead holder (`recover`), or fail with a guard-free, 'static error (`without_guard`).
        let mut holder = Process::new(hold_forever, lock.clone()).start_method(m).start()?;
        while !lock.is_locked() {
            std::thread::sleep(Duration::from_millis(1));
        }
        holder.kill()?;
        let _ = holder.join();
        let g = lock.lock().or_else(LockError::recover)?;
        println!("    {m:?}: lock().or_else(LockError::recover)? took it over");
        drop(g);
        let g = lock.lock().map_err(LockError::without_guard)?;
        drop(g);
    }

    step(10, "a producer process streams through Queues to this process");
    let n = 1_000_000u64;
    let small = Queue::<u64, PodCodec>::new(0)?;
    let big = Queue::<Vec<u8>, Bytes>::new(0)?;
    let mut producer = Process::new(pipeline_producer, (small.clone(), big.clone(), n)).start()?;
    let t = Instant::now();
    for want in 0..n {
        assert_eq!(small.get()?, want, "u64 stream out of order");
    }
    let dt_small = t.elapsed();
    let t = Instant::now();
    for want in 0..n / 10 {
        let m = big.get()?;
        assert!(
            m.len() == 1024 && m[..8] == want.to_le_bytes(),
            "1 KiB stream out of order"
        );
    }
    let dt_big = t.elapsed();
    producer.join()?;
    println!(
        "    Queue<u64, PodCodec>: {:.2} M msg/s; Queue<Vec<u8>, Bytes> 1 KiB: {:.2} M msg/s (Python's mp.Queue: ~0.09 / 0.07 M/s)",
        n as f64 / dt_small.as_secs_f64() / 1e6,
        (n / 10) as f64 / dt_big.as_secs_f64() / 1e6
    );

    step(
        11,
        "a Pipe: a child streams numbers, then answers pings until we hang up",
    );
    let n = 1_000_000u64;
    let (rx, tx) = Connection::<u64, PodCodec>::pair(false, PIPE_CAPACITY)?;
    let (ping, pong) = Connection::<u64, PodCodec>::pair(true, PIPE_CAPACITY)?;
    let mut worker = Process::new(pipe_worker, (tx, n, pong)).start()?;
    let t = Instant::now();
    for want in 0..n {
        assert_eq!(rx.recv()?, want, "pipe stream out of order");
    }
    let dt_stream = t.elapsed();
    let rounds = 20_000u64;
    let t = Instant::now();
    for i in 0..rounds {
        ping.send(&i)?;
        assert_eq!(ping.recv()?, i + 1);
    }
    let dt_rt = t.elapsed();
    drop(ping); // the child's recv now fails with Disconnected (Python's EOFError)
    let answered = worker.join()?;
    assert_eq!(answered, rounds);
    assert_eq!(rx.recv(), Err(shmproc::RecvError::Disconnected));
    println!(
        "    Connection<u64>: {:.2} M msg/s one way; round trip {:.1} µs (Python's Pipe: ~0.09 M/s, 57 µs)",
        n as f64 / dt_stream.as_secs_f64() / 1e6,
        dt_rt.as_secs_f64() * 1e6 / rounds as f64
    );
    println!("    the child saw Disconnected after {answered} pings, and so did we once it exited");

    step(12, "process start+join latency (interleaved, 200 rounds each)");
    let mut samples: [Vec<Duration>; 3] = Default::default();
    for _ in 0..200 {
        let t = Instant::now();
        Process::new(trivial, ())
            .start_method(StartMethod::Fork)
            .start()?
            .join()?;
        samples[0].push(t.elapsed());
        let t = Instant::now();
        Process::new(trivial, ())
            .start_method(StartMethod::Spawn)
            .start()?
            .join()?;
        samples[1].push(t.elapsed());
        let t = Instant::now();
        std::process::Command::new("/bin/true").status()?;
        samples[2].push(t.elapsed());
    }
    println!("    {:<28} {:>10} {:>10} {:>10}", "what", "p50", "p90", "p99");
    for (label, s) in ["shmproc Fork", "shmproc Spawn", "Command(\"/bin/true\")"]
        .iter()
        .zip(samples.iter_mut())
    {
        s.sort();
        let pct = |p: usize| s[(s.len() * p / 100).min(s.len() - 1)];
        println!(
            "    {:<28} {:>8.3}ms {:>8.3}ms {:>8.3}ms",
            label,
            pct(50).as_secs_f64() * 1e3,
            pct(90).as_secs_f64() * 1e3,
            pct(99).as_secs_f64() * 1e3
        );
    }
    println!("    (for scale: Python's Process start+join is ~3 ms with fork, ~105 ms with spawn here)");
    step(13, "a Pool counts the primes below 10 million in chunks");
    let ranges: Vec<(u64, u64)> = (0..40).map(|i| (i * 250_000, (i + 1) * 250_000)).collect();
    let t = Instant::now();
    let sequential: u64 = ranges.iter().map(|&r| count_primes(r)).sum();
    let dt_seq = t.elapsed();
    let pool = Pool::new(shmproc::cpu_count())?;
    pool.map(count_primes, [(0, 10)])?; // the workers are up
    let t = Instant::now();
    let parallel: u64 = pool
        .map_chunked(count_primes, ranges.clone(), 1)?
        .into_iter()
        .sum();
    let dt_par = t.elapsed();
    assert_eq!(parallel, sequential);
    println!(
        "    {parallel} primes; one process {:.1} ms, Pool({}) {:.1} ms: {:.2}× faster",
        dt_seq.as_secs_f64() * 1e3,
        pool.workers(),
        dt_par.as_secs_f64() * 1e3,
        dt_seq.as_secs_f64() / dt_par.as_secs_f64()
    );
    let t = Instant::now();
    let squares = pool.map(|x: u64| x * x, 0..100_000u64)?;
    println!(
        "    and map(x → x², 100 000 items) takes {:.2} ms (Python's Pool(2).map: ~23 ms)",
        t.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!(squares[99_999], 99_999 * 99_999);
    pool.close();
    pool.join()?;

    step(
        14,
        "an Executor's futures, as_completed: the longest Collatz chain below 2 million",
    );
    let ranges: Vec<(u64, u64)> = (0..8).map(|i| (i * 250_000, (i + 1) * 250_000)).collect();
    let t = Instant::now();
    let best_seq = ranges.iter().map(|&r| longest_collatz(r)).max_by_key(|&(_, k)| k);
    let dt_seq = t.elapsed();
    let ex = Executor::new(shmproc::cpu_count())?;
    ex.submit(longest_collatz, (0, 2))?.result()?; // the workers are up
    let t = Instant::now();
    let futures = ranges
        .iter()
        .map(|&r| ex.submit(longest_collatz, r))
        .collect::<Result<Vec<_>, _>>()?;
    let mut best = (0, 0);
    for (i, f) in as_completed(futures).enumerate() {
        let (n, k) = f.result()?;
        println!(
            "    #{i} done at {:>6.1} ms: {n} takes {k} steps",
            t.elapsed().as_secs_f64() * 1e3
        );
        if k > best.1 {
            best = (n, k);
        }
    }
    let dt_par = t.elapsed();
    assert_eq!(Some(best), best_seq);
    println!(
        "    longest: {} ({} steps); one process {:.1} ms, Executor({}) {:.1} ms: {:.2}× faster",
        best.0,
        best.1,
        dt_seq.as_secs_f64() * 1e3,
        ex.pool().workers(),
        dt_par.as_secs_f64() * 1e3,
        dt_seq.as_secs_f64() / dt_par.as_secs_f64()
    );
    ex.shutdown(true);

    step(
        15,
        "Pool workers count words into a shared Dict (Python's Manager().dict() demo)",
    );
    let text = corpus(200_000);
    let mut expected = std::collections::HashMap::<String, u64>::new();
    for w in text.iter().flat_map(|l| l.split_whitespace()) {
        *expected.entry(w.to_owned()).or_default() += 1;
    }
    for m in METHODS {
        let counts = shmproc::Manager::new().dict::<String, u64>()?;
        let pool = Pool::builder()
            .processes(2)
            .start_method(m)
            .initializer(keep_counts, counts.clone())
            .build()?;
        pool.apply(count_words, String::new())?; // the workers are up
        let t = Instant::now();
        let words: u64 = pool.map(count_words, text.clone())?.iter().sum();
        let dt = t.elapsed();
        pool.close();
        pool.join()?;
        let mut top = counts.items()?;
        assert_eq!(top.len(), expected.len());
        assert!(
            top.iter().all(|(w, c)| expected.get(w) == Some(c)),
            "no update lost"
        );
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        println!(
            "    {m:?} workers: {words} words, {} distinct, {:.0} k updates/s ({:.2} µs each); top: {}",
            top.len(),
            words as f64 / dt.as_secs_f64() / 1e3,
            dt.as_secs_f64() * 1e6 / words as f64,
            top.iter()
                .take(3)
                .map(|(w, c)| format!("{w}×{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!("    (Python's Manager().dict(): ~80 µs per operation)");

    println!("\nactive children left: {}", shmproc::active_children().len());
    Ok(())
}
