//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::{Duration, Instant};

pub const METHODS: [shmproc::StartMethod; 2] = [shmproc::StartMethod::Fork, shmproc::StartMethod::Spawn];

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Polls `cond` every few ms until it holds or `limit` passes; returns whether it held.
/// (A bound against hangs, not a speed assertion.)
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(ms(5));
    }
}

/// State letter of a process from /proc/<pid>/stat (`None` when it no longer exists).
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    after.chars().next()
}

/// Dead for good: gone, or a zombie waiting for someone else's reap.
pub fn is_dead(pid: u32) -> bool {
    matches!(proc_state(pid), None | Some('Z') | Some('X'))
}

/// Pids of our children that are zombies.
pub fn zombie_children() -> Vec<u32> {
    let me = std::process::id();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else { continue };
        let mut f = stat[close + 2..].split(' ');
        let state = f.next();
        let ppid = f.next().and_then(|p| p.parse::<u32>().ok());
        if state == Some("Z") && ppid == Some(me) {
            out.push(pid);
        }
    }
    out
}

/// The fds open in this process.
pub fn open_fds() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .map(|e| {
            let target = std::fs::read_link(e.path())
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            format!("{} -> {}", e.file_name().to_string_lossy(), target)
        })
        .collect();
    v.sort();
    v
}

/// Entries of /dev/shm.
pub fn dev_shm() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}
