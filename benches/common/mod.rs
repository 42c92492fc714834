//! What the benches share: a word one process bumps and the other waits on — spinning for
//! up to 200 µs (so a busy peer answers at once), then sleeping on a futex (so an idle peer
//! costs no CPU). The two-party barriers of the bench control blocks are built on it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use shmproc::sys::futex;

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
