//! What the benches share: a word one process bumps and the other waits on — spinning for
//! up to 200 µs (so a busy peer answers at once), then sleeping on a futex (so an idle peer
//! costs no CPU), on which the two-party barriers of the bench control blocks are built; the
//! machine-load accounting of the interleaved passes (how much CPU other processes took);
//! and the small statistics and formatting helpers of their tables.
// Each bench uses its own subset.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use shmproc::raw::futex;

/// Spins for up to 200 µs while `word` holds `old`, then sleeps on it (counted in
/// `sleepers`, so that `bump` can skip the wake syscall when nobody sleeps).
pub fn await_change(word: &AtomicU32, old: u32, sleepers: &AtomicU32) {
    let spin_until = Instant::now() + Duration::from_micros(200);
    loop {
        for _ in 0..64 {
            if word.load(Ordering::Acquire) != old {
                return;
            }
            std::hint::spin_loop();
        }
        if Instant::now() >= spin_until {
            break;
        }
    }
    sleepers.fetch_add(1, Ordering::SeqCst);
    while word.load(Ordering::SeqCst) == old {
        futex::wait(word, old, None);
    }
    sleepers.fetch_sub(1, Ordering::SeqCst);
}

/// Moves `word` on and wakes whoever sleeps in `await_change` on it.
pub fn bump(word: &AtomicU32, sleepers: &AtomicU32) {
    word.fetch_add(1, Ordering::SeqCst);
    if sleepers.load(Ordering::SeqCst) != 0 {
        futex::wake_all(word);
    }
}

/// CPU seconds: the whole machine's busy time and steal (from `/proc/stat`), and ours:
/// this process, its reaped children and the live peers listed.
#[derive(Clone, Copy)]
pub struct CpuSnap {
    pub busy: f64,
    pub steal: f64,
    pub own: f64,
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

/// The numeric fields of `/proc/<pid>/stat` after the parenthesised command, as text
/// (field 0 is the state, 1 the ppid, 11 and 12 utime and stime).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    )
}

/// User + system CPU seconds of a live process (0 if gone).
pub fn proc_cpu(pid: u32) -> f64 {
    let f = stat_fields(pid).unwrap_or_default();
    let num = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (num(11) + num(12)) / clock_ticks()
}

/// Pids of this process's live children.
pub fn live_children() -> Vec<u32> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok()?.parse::<u32>().ok())
                .filter(|&pid| stat_fields(pid).is_some_and(|f| f.get(1) == Some(&me)))
                .collect()
        })
        .unwrap_or_default()
}

pub fn cpu_snap(peers: &[u32]) -> CpuSnap {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let t = |i: usize| ticks.get(i).copied().unwrap_or(0.0) / clock_ticks();
    let rusage = |who| {
        // SAFETY: an all-zero rusage is valid; getrusage fills it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `ru` is a valid out-pointer.
        unsafe { libc::getrusage(who, &mut ru) };
        let tv = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 * 1e-6;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    };
    CpuSnap {
        // user + nice + system + irq + softirq
        busy: t(0) + t(1) + t(2) + t(5) + t(6),
        steal: t(7),
        own: rusage(libc::RUSAGE_SELF)
            + rusage(libc::RUSAGE_CHILDREN)
            + peers.iter().map(|&p| proc_cpu(p)).sum::<f64>(),
    }
}

/// CPU seconds used by other processes between two snapshots (same peer list).
pub fn foreign(a: CpuSnap, b: CpuSnap) -> f64 {
    ((b.busy - a.busy) - (b.own - a.own)).max(0.0)
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_owned()
}

/// Waits (up to 30 s) for a half second in which other processes use under 0.15 of a
/// core. Returns the time waited and the other load of the last half second, in cores.
pub fn wait_quiet(peers: &[u32]) -> (Duration, f64) {
    let t = Instant::now();
    loop {
        let a = cpu_snap(peers);
        std::thread::sleep(Duration::from_millis(500));
        let cores = foreign(a, cpu_snap(peers)) / 0.5;
        if cores < 0.15 || t.elapsed() >= Duration::from_secs(30) {
            return (t.elapsed(), cores);
        }
    }
}

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let k = v.len();
    if k % 2 == 1 {
        v[k / 2]
    } else {
        (v[k / 2 - 1] + v[k / 2]) / 2.0
    }
}

/// Nearest-rank percentile of sorted samples.
pub fn pct(sorted: &[u32], p: f64) -> u32 {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e4 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}
