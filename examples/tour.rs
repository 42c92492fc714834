//! A guided run of shmproc across real processes: `cargo run --release --example tour`.
//!
//! Each step starts children with both start methods, shares memory with them, and prints
//! what happened; the last step measures process start+join against `/bin/true`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shmproc::{
    current_process, parent_process, Process, ProcessError, RawArray, Run, SegmentError, Shared,
    SharedMemory, ShmSafe, StartMethod,
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

fn step(n: u32, title: &str) {
    println!("\n[{n}] {title}");
}

fn main() -> Res<()> {
    shmproc::init(); // a spawned child takes over here and never returns
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
        kids.push(
            Process::new(count_up, tally.clone_handle()?)
                .start_method(*m)
                .start()?,
        );
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
        out: squares.clone_handle()?,
        start: 0,
        end: 5,
    })
    .name("lower")
    .start_method(StartMethod::Fork)
    .start()?;
    let mut b = Process::from_run(SquareSlice {
        out: squares.clone_handle()?,
        start: 5,
        end: 10,
    })
    .name("upper")
    .start()?;
    println!("    {}\n    {}", a.join()?, b.join()?);
    println!("    array now {:?}", squares.to_vec());

    step(3, "a named SharedMemory opened by a spawned child");
    let name = format!("/shmproc-tour-{}", std::process::id());
    let shm = SharedMemory::create(&name, 256)?;
    let mut c = Process::new(greet, SharedMemory::open(&name)?).start()?;
    let len = c.join()?;
    println!(
        "    {name} reads: {:?}",
        String::from_utf8_lossy(&shm.to_vec()[..len])
    );
    match SharedMemory::create(&name, 256) {
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
        SharedMemory::open(&name).unwrap_err()
    );

    step(
        4,
        "children that fail: panic, exit code, SIGTERM, SIGKILL, join timeout",
    );
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

    step(5, "process start+join latency (interleaved, 200 rounds each)");
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
    println!("\nactive children left: {}", shmproc::active_children().len());
    Ok(())
}
