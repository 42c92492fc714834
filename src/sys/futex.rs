//! Process-shared futex wait/wake on a 32-bit word (which may live in a shared segment).
//!
//! Three functions, as in std's futex layer, but **without `FUTEX_PRIVATE_FLAG`**: the word
//! is usually inside a `MAP_SHARED` mapping that other processes map at other addresses, and
//! a private futex would hash by virtual address and never meet the other process.
//!
//! Deadlines are absolute `CLOCK_MONOTONIC` instants (`std::time::Instant` uses the same
//! clock on Linux), passed to `FUTEX_WAIT_BITSET`, so an `EINTR` retry never stretches the
//! total wait. These are the blocking building blocks of every later primitive; they are
//! public so that users embedding raw words in a [`Shared`](crate::Shared) struct can block
//! on them too.
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use shmproc::{raw::futex, Process, Shared};
//!
//! let flag = Shared::new(AtomicU32::new(0))?;
//! let child_flag = flag.clone();
//! let mut child = Process::fork(move || {
//!     // Sleep until the parent flips the word (a spurious wake just loops).
//!     while child_flag.load(Ordering::Acquire) == 0 {
//!         futex::wait(&child_flag, 0, None);
//!     }
//! })
//! .start()?;
//! flag.store(1, Ordering::Release);
//! futex::wake_all(&flag);
//! child.join()?;
//! // A deadline in the past returns `false` at once.
//! assert!(!futex::wait(&flag, 1, Some(std::time::Instant::now())));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::num::NonZeroU32;
use core::sync::atomic::AtomicU32;
use std::time::Instant;

use rustix::io::Errno;
use rustix::thread::futex;

/// Matches every waiter (the bitset argument of `FUTEX_WAIT_BITSET`).
const ALL_BITS: NonZeroU32 = NonZeroU32::MAX;

/// Converts an `Instant` (CLOCK_MONOTONIC on Linux) to a `timespec` for the kernel.
fn to_timespec(deadline: Instant) -> futex::Timespec {
    let now_instant = Instant::now();
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let left = deadline.saturating_duration_since(now_instant);
    let mut sec = now.tv_sec.saturating_add(left.as_secs() as i64);
    let mut nsec = now.tv_nsec + i64::from(left.subsec_nanos());
    if nsec >= 1_000_000_000 {
        nsec -= 1_000_000_000;
        sec = sec.saturating_add(1);
    }
    futex::Timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }
}

/// Blocks while `*word == expected`, until woken or until `deadline` (`None`: no deadline).
///
/// Returns `false` only when the deadline passed; `true` on a wake-up, a spurious wake-up,
/// or because the word did not hold `expected` to begin with. Callers re-check their
/// condition in a loop, as with every futex. `EINTR` is retried internally.
pub fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> bool {
    loop {
        if let Some(d) = deadline {
            if Instant::now() >= d {
                return false;
            }
        }
        let ts = deadline.map(to_timespec);
        match futex::wait_bitset(word, futex::Flags::empty(), expected, ts.as_ref(), ALL_BITS) {
            Ok(()) => return true,
            Err(Errno::AGAIN) => return true,
            Err(Errno::TIMEDOUT) => return false,
            Err(Errno::INTR) => continue,
            // EFAULT/EINVAL cannot happen with a valid `&AtomicU32`; treat as a spurious wake.
            Err(_) => return true,
        }
    }
}

/// Wakes at most one waiter blocked on `word` (in any process). Returns whether one was woken.
pub fn wake_one(word: &AtomicU32) -> bool {
    matches!(futex::wake(word, futex::Flags::empty(), 1), Ok(n) if n > 0)
}

/// Wakes every waiter blocked on `word` (in any process). Returns how many were woken.
pub fn wake_all(word: &AtomicU32) -> usize {
    wake_n(word, i32::MAX as u32)
}

/// Wakes at most `n` waiters (capped at `i32::MAX`, the kernel's limit).
pub(crate) fn wake_n(word: &AtomicU32, n: u32) -> usize {
    futex::wake(word, futex::Flags::empty(), n.min(i32::MAX as u32)).unwrap_or(0)
}
