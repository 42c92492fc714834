//! Removing named segments whose creator died without unlinking them.

use std::os::fd::AsFd;

use super::header::{Header, FLAG_KEEP, HEADER_LEN};
use crate::sys::{fd, proc};

/// Removes the names of shmproc segments in `/dev/shm` whose creating process is gone
/// (for instance `SIGKILL`ed before it could unlink), and returns the names removed.
///
/// Only objects owned by this user, with mode `0600`, that carry a valid shmproc header and
/// were not marked with [`Segment::keep`](crate::Segment::keep) are considered; a creator counts as alive when a process with its pid *and* start time
/// exists, so a reused pid does not keep a segment alive or get one removed. Processes
/// that still have a removed segment mapped keep using it; only the name goes (Python's
/// resource tracker does the same at shutdown, without the liveness check).
///
/// ```
/// let removed = shmproc::cleanup_stale();
/// for name in &removed { println!("removed stale segment {name}"); }
/// ```
pub fn cleanup_stale() -> Vec<String> {
    let mut removed = Vec::new();
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return removed;
    };
    for entry in dir.flatten() {
        let Some(file) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let name = format!("/{file}");
        if is_stale(&name) && fd::shm_unlink(&name).is_ok() {
            removed.push(name);
        }
    }
    removed
}

fn is_stale(name: &str) -> bool {
    if super::segment::check_name(name).is_err() {
        return false;
    }
    let Ok(f) = fd::shm_open_readonly(name) else {
        return false;
    };
    let Ok(info) = fd::file_info(f.as_fd()) else {
        return false;
    };
    if !info.regular || info.uid != fd::geteuid() || info.mode != 0o600 || info.len < HEADER_LEN as u64 {
        return false;
    }
    let mut buf = [0u8; HEADER_LEN];
    if fd::read_exact_at(f.as_fd(), &mut buf, 0).is_err() {
        return false;
    }
    let h: Header = bytemuck::pod_read_unaligned(&buf);
    if !h.is_ours() || h.creator_pid == 0 || h.creator_start == 0 || h.flags & FLAG_KEEP != 0 {
        return false;
    }
    proc::start_time(h.creator_pid) != Some(h.creator_start)
}
