//! How long after a `SIGKILL` the survivors find out: the detection latencies the README
//! promises (`LockTimeoutError::OwnerDied`, `RecvTimeoutError::Disconnected`), measured over real kills of
//! children started by the crate's own `Process`.
//!
//! Plain timing, not criterion: each sample is one kill of one child, and what matters is the
//! distribution over kills (p50 / p99 / max), not a mean over a hot loop. Four cases, each
//! `DETECT_KILLS` kills per start method (default 200; when run without `--bench`, e.g. by
//! `cargo test --benches`, 3), the start methods alternating kill by kill (`Fork`, `Spawn`,
//! `Fork`, ...), every child a daemon started with `Process::new(target, args)`:
//! - `lock: waiting at the kill`: the child takes a `Lock` (`lock_timeout`), sets an `Event`
//!   and sleeps; the parent's main thread blocks in `lock_timeout(60 s)` while a helper thread
//!   sleeps a random 2–22 ms (so the kill lands at a random phase of the waiter's 20 ms
//!   liveness slice, as an unrelated death would) and then calls `p.kill()`. Latency: from
//!   the moment `kill()` returns (the signal is queued; the child's exit is still to come) to
//!   the moment `lock_timeout` returns `Err(LockTimeoutError::OwnerDied(_))`.
//! - `lock: arrives after the death`: the same child; the parent kills it and reaps it
//!   (`join_timeout` → `Err(ProcessError::Killed(9))`) before it calls `lock_timeout(60 s)`.
//!   Latency: from just before that call to its `Err(OwnerDied)`.
//! - `pipe: waiting at the kill`: a one-way `Connection::<u64>::pair` (4 KiB); the child gets
//!   the sending end, sends its pid (the parent checks it: the ready signal) and sleeps; the
//!   parent blocks in `recv_timeout(60 s)`, the helper kills as above. Latency: from
//!   `kill()`'s return to `Err(RecvTimeoutError::Disconnected)`.
//! - `pipe: arrives after the death`: kill and reap first, then `recv_timeout(60 s)`.
//!   Latency: from just before the call to `Err(Disconnected)`.
//!
//! Every outcome is checked (any other error, or a `Timeout`, panics with what happened);
//! `OwnerDied` must name the child's main thread (its pid), and the lock must be free again
//! once the parent drops the guard it was handed. Every child is reaped (`Killed(9)`) before
//! the next starts. A "waiting" sample in which the parent only started waiting after
//! `kill()` had returned (the helper won the race for the CPU) is still counted but reported
//! as "late". Before each case the bench waits (up to 30 s) for a quiet half second and
//! reports the CPU other processes took during the case.
//!
//! Output: a table per case and start method (kills, min, p50, p99, max, mean), then the same
//! figures as one line of JSON starting with `detect-json: `. No assertion on any time.
//!
//! What the code leads one to expect (`sync::park::LIVENESS_SLICE` = 20 ms): a waiter checks
//! the holder's liveness after each 20 ms slice of sleep, so a death while it waits is seen
//! 0–20 ms later (p50 ≈ 10 ms), plus the kernel's teardown of the killed child. An acquirer
//! that arrives after the death finds the word held and sleeps one full slice before its
//! first liveness check (≈ 20 ms). A receiver that arrives after the death checks at once
//! only if its handle has not checked in the last 20 ms (the throttle on `check_peer`);
//! here it had, on the ready message, so it too usually waits one slice.
// std atomics here are user code (e.g. inside a `Shared<T>`); the shim rule is for the library.
#![allow(clippy::disallowed_types)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod common;

use common::{cpu_snap, foreign, loadavg, wait_quiet};
use shmproc::{
    Connection, Event, Lock, LockTimeoutError, Process, ProcessError, RecvTimeoutError, StartMethod,
};

/// Longest a parent waits for a detection before the bench calls it a hang.
const LONG: Duration = Duration::from_secs(60);
/// Longest a child may take to start and report ready.
const READY: Duration = Duration::from_secs(10);

// ------------------------------------------------------------------------- child targets

/// Takes the lock, says so, and sleeps until killed.
fn hold_lock((lock, ready): (Lock, Event)) {
    let _held = lock.lock_timeout(READY).expect("child: take the free lock");
    ready.set();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Holds the sending end, sends its pid on it, and sleeps until killed.
fn hold_pipe(tx: Connection<u64>) {
    tx.send(&u64::from(std::process::id()))
        .expect("child: send ready");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

// ------------------------------------------------------------------------------ helpers

/// A small xorshift, seeded from the clock: the kill delays.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Self(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    /// 2 ms + uniform 0–20 ms (one liveness slice), in µs steps.
    fn kill_delay(&mut self) -> Duration {
        Duration::from_micros(2_000 + self.below(20_000))
    }
}

fn method_name(m: StartMethod) -> &'static str {
    match m {
        StartMethod::Fork => "Fork",
        StartMethod::Spawn => "Spawn",
    }
}

/// Reaps a killed child and checks it died of `SIGKILL`.
fn reap_killed(p: &mut Process<()>, what: &str) {
    match p.join_timeout(Duration::from_secs(10)) {
        Err(ProcessError::Killed(9)) => {}
        other => panic!(
            "{what}: the killed child (pid {}) should join as Killed(9), got {other:?}",
            p.pid()
        ),
    }
}

/// Waits for `ready`; if it never comes, kills and reaps the child and panics with its fate.
fn await_ready(p: &mut Process<()>, ready: impl FnOnce() -> bool, what: &str) {
    if !ready() {
        let _ = p.kill();
        let fate = p.join_timeout(Duration::from_secs(10));
        panic!(
            "{what}: child (pid {}) never reported ready; it ended with {fate:?}",
            p.pid()
        );
    }
}

/// One kill's result: the latency, and whether the parent began waiting only after the kill.
struct Sample {
    ns: u64,
    late: bool,
}

/// Kills `p` from a helper thread after a random delay while `wait` blocks on this thread.
/// Returns (instant `kill()` returned, instant `wait` was entered, `wait`'s result, instant
/// it returned).
fn kill_while_waiting<T: Send>(
    p: &Process<()>,
    delay: Duration,
    wait: impl FnOnce() -> T,
) -> (Instant, Instant, T, Instant) {
    std::thread::scope(|s| {
        let killer = s.spawn(move || {
            std::thread::sleep(delay);
            p.kill().expect("kill the child");
            Instant::now()
        });
        let entered = Instant::now();
        let r = wait();
        let returned = Instant::now();
        let killed = killer.join().expect("killer thread");
        (killed, entered, r, returned)
    })
}

fn since(later: Instant, earlier: Instant) -> u64 {
    later.saturating_duration_since(earlier).as_nanos() as u64
}

// -------------------------------------------------------------------------------- cases

#[derive(Clone, Copy, PartialEq, Eq)]
enum Case {
    LockWaiting,
    LockAfter,
    PipeWaiting,
    PipeAfter,
}

impl Case {
    const ALL: [Case; 4] = [
        Case::LockWaiting,
        Case::LockAfter,
        Case::PipeWaiting,
        Case::PipeAfter,
    ];

    fn label(self) -> &'static str {
        match self {
            Case::LockWaiting => "lock: waiting at the kill -> OwnerDied",
            Case::LockAfter => "lock: arrives after the death -> OwnerDied",
            Case::PipeWaiting => "pipe: waiting at the kill -> Disconnected",
            Case::PipeAfter => "pipe: arrives after the death -> Disconnected",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Case::LockWaiting => "lock_owner_died_waiting",
            Case::LockAfter => "lock_owner_died_after_reap",
            Case::PipeWaiting => "pipe_disconnected_waiting",
            Case::PipeAfter => "pipe_disconnected_after_reap",
        }
    }
}

/// The lock the lock cases share (free between kills) and the child's ready event.
struct LockRig {
    lock: Lock,
    ready: Event,
}

fn check_owner_died<G>(r: Result<G, LockTimeoutError<G>>, child: u32, what: &str) {
    match r {
        Err(LockTimeoutError::OwnerDied(d)) => {
            assert_eq!(
                d.dead_owner_tid(),
                child,
                "{what}: OwnerDied should name the killed child's thread (pid {child})"
            );
            drop(d.into_guard());
        }
        Err(e) => {
            panic!("{what}: expected Err(OwnerDied) after killing the holder (pid {child}), got Err({e:?})")
        }
        Ok(_) => panic!(
            "{what}: expected Err(OwnerDied) after killing the holder (pid {child}), got the lock normally"
        ),
    }
}

fn lock_kill(rig: &LockRig, method: StartMethod, after: bool, rng: &mut Rng) -> Sample {
    let what = if after { "lock/after" } else { "lock/waiting" };
    assert!(
        !rig.lock.is_locked(),
        "{what}: the lock should be free before a round"
    );
    rig.ready.clear();
    let args = (rig.lock.clone(), rig.ready.clone());
    let mut p = Process::new(hold_lock, args)
        .start_method(method)
        .daemon(true)
        .start()
        .expect("start the lock holder");
    let child = p.pid();
    await_ready(&mut p, || rig.ready.wait_timeout(READY).is_ok(), what);
    assert!(
        rig.lock.is_locked(),
        "{what}: the child reported ready but the lock is free"
    );
    let sample = if after {
        p.kill().expect("kill the child");
        reap_killed(&mut p, what);
        let t0 = Instant::now();
        let r = rig.lock.lock_timeout(LONG);
        let t1 = Instant::now();
        check_owner_died(r.map(drop).map_err(|e| e.map(drop)), child, what);
        Sample {
            ns: since(t1, t0),
            late: false,
        }
    } else {
        let (killed, entered, r, returned) = kill_while_waiting(&p, rng.kill_delay(), || {
            rig.lock.lock_timeout(LONG).map(drop).map_err(|e| e.map(drop))
        });
        check_owner_died(r, child, what);
        reap_killed(&mut p, what);
        Sample {
            ns: since(returned, killed),
            late: entered > killed,
        }
    };
    assert!(
        !rig.lock.is_locked(),
        "{what}: the lock should be free once the taken-over guard is dropped"
    );
    sample
}

fn check_disconnected(r: Result<u64, RecvTimeoutError>, child: u32, what: &str) {
    match r {
        Err(RecvTimeoutError::Disconnected) => {}
        other => {
            panic!("{what}: expected Err(Disconnected) after killing the sender (pid {child}), got {other:?}")
        }
    }
}

fn pipe_kill(method: StartMethod, after: bool, rng: &mut Rng) -> Sample {
    let what = if after { "pipe/after" } else { "pipe/waiting" };
    let (rx, tx) = Connection::<u64>::pair(false, 4096).expect("pipe");
    let mut p = Process::new(hold_pipe, tx)
        .start_method(method)
        .daemon(true)
        .start()
        .expect("start the pipe holder");
    let child = p.pid();
    await_ready(
        &mut p,
        || match rx.recv_timeout(READY) {
            Ok(pid) => {
                assert_eq!(
                    pid,
                    u64::from(child),
                    "{what}: the ready message should carry the child's pid"
                );
                true
            }
            Err(_) => false,
        },
        what,
    );
    if after {
        p.kill().expect("kill the child");
        reap_killed(&mut p, what);
        let t0 = Instant::now();
        let r = rx.recv_timeout(LONG);
        let t1 = Instant::now();
        check_disconnected(r, child, what);
        Sample {
            ns: since(t1, t0),
            late: false,
        }
    } else {
        let (killed, entered, r, returned) =
            kill_while_waiting(&p, rng.kill_delay(), || rx.recv_timeout(LONG));
        check_disconnected(r, child, what);
        reap_killed(&mut p, what);
        Sample {
            ns: since(returned, killed),
            late: entered > killed,
        }
    }
}

// ---------------------------------------------------------------------------- statistics

struct Row {
    case: Case,
    method: StartMethod,
    samples: Vec<u64>,
    late: usize,
    /// Other processes' CPU during the whole case (both methods), in cores.
    other_cores: f64,
}

/// Nearest-rank percentile of sorted samples.
fn pct(sorted: &[u64], p: f64) -> u64 {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

impl Row {
    fn stats(&self) -> (u64, u64, u64, u64, f64) {
        let mut s = self.samples.clone();
        s.sort_unstable();
        let mean = s.iter().sum::<u64>() as f64 / s.len() as f64;
        (s[0], pct(&s, 0.50), pct(&s, 0.99), s[s.len() - 1], mean)
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` of now (civil-from-days, no date crate).
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn main() {
    // Spawned children re-execute this binary; they run their target here and exit.
    shmproc::init();
    let benching = std::env::args().any(|a| a == "--bench");
    let kills: usize = match std::env::var("DETECT_KILLS") {
        Ok(v) => v.parse().expect("DETECT_KILLS must be a number of kills"),
        Err(_) if benching => 200,
        Err(_) => 3,
    };
    assert!(kills > 0, "DETECT_KILLS must be at least 1");
    let started = utc_now();
    let t_all = Instant::now();
    println!(
        "detect: {kills} kills per case and start method (methods alternate), from {started}, load {}",
        loadavg()
    );

    let rig = LockRig {
        lock: Lock::new().expect("lock"),
        ready: Event::new().expect("event"),
    };
    let mut rng = Rng::new();
    let mut rows = Vec::new();
    for case in Case::ALL {
        let (waited, cores) = wait_quiet(&[]);
        let before = cpu_snap(&[]);
        let t_case = Instant::now();
        let mut fork = Row {
            case,
            method: StartMethod::Fork,
            samples: Vec::with_capacity(kills),
            late: 0,
            other_cores: 0.0,
        };
        let mut spawn = Row {
            case,
            method: StartMethod::Spawn,
            samples: Vec::with_capacity(kills),
            late: 0,
            other_cores: 0.0,
        };
        for _ in 0..kills {
            for row in [&mut fork, &mut spawn] {
                let s = match case {
                    Case::LockWaiting => lock_kill(&rig, row.method, false, &mut rng),
                    Case::LockAfter => lock_kill(&rig, row.method, true, &mut rng),
                    Case::PipeWaiting => pipe_kill(row.method, false, &mut rng),
                    Case::PipeAfter => pipe_kill(row.method, true, &mut rng),
                };
                row.samples.push(s.ns);
                row.late += usize::from(s.late);
            }
        }
        let secs = t_case.elapsed().as_secs_f64();
        let other = foreign(before, cpu_snap(&[])) / secs;
        fork.other_cores = other;
        spawn.other_cores = other;
        println!(
            "  {}: {} kills in {secs:.1} s (waited {:.1} s for quiet, then {cores:.2} cores busy elsewhere; during: {other:.2})",
            case.label(),
            2 * kills,
            waited.as_secs_f64()
        );
        rows.push(fork);
        rows.push(spawn);
    }
    assert!(
        shmproc::active_children().is_empty(),
        "every killed child should have been reaped"
    );

    println!();
    println!(
        "{:<46} {:<6} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>5} {:>6}",
        "case (latency from kill() return / call)",
        "method",
        "kills",
        "min",
        "p50",
        "p99",
        "max",
        "mean",
        "late",
        "other"
    );
    for r in &rows {
        let (min, p50, p99, max, mean) = r.stats();
        println!(
            "{:<46} {:<6} {:>5} {:>6.2} ms {:>6.2} ms {:>6.2} ms {:>6.2} ms {:>6.2} ms {:>5} {:>6.2}",
            r.case.label(),
            method_name(r.method),
            r.samples.len(),
            ms(min),
            ms(p50),
            ms(p99),
            ms(max),
            mean / 1e6,
            r.late,
            r.other_cores
        );
    }
    println!("(late: waiting samples in which the parent began to wait only after kill() returned; other: cores used by other processes during the case)");
    println!("total {:.1} s", t_all.elapsed().as_secs_f64());

    let results: Vec<String> = rows
        .iter()
        .map(|r| {
            let (min, p50, p99, max, mean) = r.stats();
            format!(
                "{{\"case\":\"{}\",\"method\":\"{}\",\"kills\":{},\"min_ms\":{:.3},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3},\"mean_ms\":{:.3},\"late\":{},\"other_cores\":{:.2}}}",
                r.case.key(),
                method_name(r.method).to_lowercase(),
                r.samples.len(),
                ms(min),
                ms(p50),
                ms(p99),
                ms(max),
                mean / 1e6,
                r.late,
                r.other_cores
            )
        })
        .collect();
    println!(
        "detect-json: {{\"started\":\"{started}\",\"kills_per_case_and_method\":{kills},\"results\":[{}]}}",
        results.join(",")
    );
}
