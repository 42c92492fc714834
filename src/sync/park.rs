//! What the sync algorithms need from the platform, behind one `cfg(loom)` switch:
//! blocking on a 32-bit word (futex), the calling thread's identity, and whether an owner
//! recorded in shared memory is still alive.
//!
//! The algorithms in this module's siblings are written once against these functions; under
//! `--cfg loom` they run against a model of the futex (a loom mutex + condvar: the value
//! check and the sleep are atomic with respect to wakes, exactly as `FUTEX_WAIT` guarantees)
//! so loom can find lost wake-ups as deadlocks.

use std::time::Instant;

/// Largest thread id that fits in a lock word (Linux `PID_MAX_LIMIT` is 2^22).
pub(crate) const TID_MASK: u32 = (1 << 30) - 1;

/// How long a waiter sleeps before it checks whether the owner it waits for is still alive.
/// Bounds the time to detect a dead owner (plus the time to read `/proc`).
pub(crate) const LIVENESS_SLICE: std::time::Duration = std::time::Duration::from_millis(20);

#[cfg(not(loom))]
mod imp {
    use std::cell::Cell;
    use std::sync::Once;
    use std::time::Instant;

    use crate::loom::{AtomicU32, Ordering};

    #[inline]
    pub(crate) fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> bool {
        crate::sys::futex::wait(word.as_core(), expected, deadline)
    }

    #[inline]
    pub(crate) fn wake_one(word: &AtomicU32) {
        crate::sys::futex::wake_one(word.as_core());
    }

    #[inline]
    pub(crate) fn wake_all(word: &AtomicU32) {
        crate::sys::futex::wake_all(word.as_core());
    }

    #[inline]
    pub(crate) fn wake_n(word: &AtomicU32, n: u32) {
        crate::sys::futex::wake_n(word.as_core(), n);
    }

    /// Bumped in every child right after `fork()`, so thread identities cached before the
    /// fork (the child's only thread inherits the forking thread's TLS) are recomputed.
    static FORK_EPOCH: AtomicU32 = AtomicU32::new(0);

    extern "C" fn after_fork_in_child() {
        FORK_EPOCH.fetch_add(1, Ordering::Relaxed);
    }

    thread_local! {
        /// (fork epoch, tid, owner info) of this thread.
        static ME: Cell<(u32, u32, u64)> = const { Cell::new((u32::MAX, 0, 0)) };
    }

    /// This thread's `(tid, owner_info)`; cached, and refreshed after a fork.
    #[inline]
    pub(crate) fn me() -> (u32, u64) {
        let epoch = FORK_EPOCH.load(Ordering::Relaxed);
        let (e, tid, info) = ME.with(Cell::get);
        if e == epoch {
            return (tid, info);
        }
        refresh(epoch)
    }

    /// Counts the forks this process went through as a child (0 in the original process):
    /// a handle that cached per-process state compares it to notice it was forked.
    #[inline]
    pub(crate) fn fork_epoch() -> u32 {
        FORK_EPOCH.load(Ordering::Relaxed)
    }

    #[cold]
    /// Registers the after-fork handler once per process.
    ///
    /// The spawn helper calls this in the forking thread *before* `fork()`, so the `Once` is
    /// complete in every child: a child that inherited it half-run (another thread was
    /// inside it at the fork) would wait on it forever.
    pub(crate) fn prepare_fork() {
        static HOOK: Once = Once::new();
        HOOK.call_once(crate::sys::proc::on_fork_in_child(after_fork_in_child));
    }

    fn refresh(epoch: u32) -> (u32, u64) {
        prepare_fork();
        let tid = crate::sys::proc::gettid() & super::TID_MASK;
        let start = crate::sys::proc::thread_start_time(tid).unwrap_or(0);
        let info = super::owner_info(tid, start);
        ME.with(|c| c.set((epoch, tid, info)));
        (tid, info)
    }

    /// Whether the thread recorded as `tid` (with `info` if it matches) is still running.
    pub(crate) fn alive(tid: u32, info: u64) -> bool {
        match crate::sys::proc::thread_start_time(tid) {
            None => false,
            Some(start) => {
                super::info_tid(info) != tid || super::info_start(info) == super::start_bits(start)
            }
        }
    }
}

#[cfg(loom)]
mod imp {
    use std::time::Instant;

    use loom::sync::{Condvar, Mutex};

    use crate::loom::AtomicU32;

    /// The futex model's wait queue: one entry per thread asleep in [`wait`], keyed by the
    /// address of the word it sleeps on. A wake removes up to `n` entries of its word (oldest
    /// first) and the sleepers whose entry is gone return, so `wake_one` wakes exactly one
    /// sleeper of that word, as `FUTEX_WAKE` does: a wake-up that reaches the wrong word or
    /// too few threads is a deadlock loom reports, not something a blanket wake hides.
    struct Sleepers {
        queue: Vec<(usize, u64)>,
        next_ticket: u64,
    }

    loom::lazy_static! {
        static ref PARK: (Mutex<Sleepers>, Condvar) = (
            Mutex::new(Sleepers {
                queue: Vec::new(),
                next_ticket: 0,
            }),
            Condvar::new(),
        );
    }

    fn key(word: &AtomicU32) -> usize {
        word as *const AtomicU32 as usize
    }

    /// The futex model: the value check and the sleep are atomic with respect to wakes (both
    /// hold the model's mutex, as the kernel holds the hash-bucket lock), and a sleeper
    /// returns only when a wake of its word picked it: no spurious wake-ups, so a caller that
    /// loses a wake-up deadlocks under loom. Deadlines are ignored (loom has no clock); tests
    /// only use blocking and try forms.
    pub(crate) fn wait(word: &AtomicU32, expected: u32, _deadline: Option<Instant>) -> bool {
        let mut sleepers = PARK.0.lock().unwrap();
        if word.load(std::sync::atomic::Ordering::SeqCst) != expected {
            return true;
        }
        let ticket = sleepers.next_ticket;
        sleepers.next_ticket += 1;
        sleepers.queue.push((key(word), ticket));
        while sleepers.queue.iter().any(|&(_, t)| t == ticket) {
            sleepers = PARK.1.wait(sleepers).unwrap();
        }
        true
    }

    fn wake(word: &AtomicU32, n: u32) {
        let mut sleepers = PARK.0.lock().unwrap();
        let k = key(word);
        let mut left = n;
        sleepers.queue.retain(|&(w, _)| {
            let pick = w == k && left > 0;
            if pick {
                left -= 1;
            }
            !pick
        });
        if left != n {
            // One condvar serves every sleeper: each re-checks whether its entry is gone.
            PARK.1.notify_all();
        }
    }

    pub(crate) fn wake_one(word: &AtomicU32) {
        wake(word, 1);
    }

    pub(crate) fn wake_all(word: &AtomicU32) {
        wake(word, u32::MAX);
    }

    pub(crate) fn wake_n(word: &AtomicU32, n: u32) {
        wake(word, n);
    }

    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

    loom::thread_local! {
        static ME: u32 = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & super::TID_MASK;
    }

    pub(crate) fn me() -> (u32, u64) {
        let tid = ME.with(|t| *t);
        (tid, super::owner_info(tid, 1))
    }

    pub(crate) fn fork_epoch() -> u32 {
        0
    }

    pub(crate) fn alive(_tid: u32, _info: u64) -> bool {
        true
    }
}

#[cfg(not(loom))]
pub(crate) use imp::prepare_fork;
pub(crate) use imp::{alive, fork_epoch, me, wait, wake_all, wake_n, wake_one};

/// Packs a thread id and the low 34 bits of its start time into one word, so a reader sees
/// both from the same owner (a tid alone may be reused after the thread dies).
pub(crate) fn owner_info(tid: u32, start: u64) -> u64 {
    (u64::from(tid) << 34) | start_bits(start)
}

fn start_bits(start: u64) -> u64 {
    start & ((1 << 34) - 1)
}

#[cfg_attr(loom, allow(dead_code))] // the loom model's `alive` needs no owner record
pub(crate) fn info_tid(info: u64) -> u32 {
    (info >> 34) as u32
}

#[cfg_attr(loom, allow(dead_code))]
fn info_start(info: u64) -> u64 {
    start_bits(info)
}

/// The deadline of the next sleep slice: the caller's deadline or the next liveness check,
/// whichever comes first. Returns whether the slice ends at the caller's deadline.
pub(crate) fn slice_deadline(deadline: Option<Instant>) -> (Instant, bool) {
    let slice = Instant::now() + LIVENESS_SLICE;
    match deadline {
        Some(d) if d <= slice => (d, true),
        _ => (slice, false),
    }
}

/// Spins briefly while `busy()` holds, then gives up. Returns `true` if `busy` turned false.
/// Threads that asked for it ([`yield_in_spins`]) yield instead of spinning past the first
/// few µs.
#[inline]
pub(crate) fn spin_while(busy: impl FnMut() -> bool) -> bool {
    #[cfg(not(loom))]
    let yielding = YIELD_IN_SPINS.with(std::cell::Cell::get);
    #[cfg(loom)]
    let yielding = false;
    spin(busy, yielding)
}

/// [`spin_while`] that yields past the first few µs whatever the thread asked for.
#[inline]
pub(crate) fn spin_while_yielding(busy: impl FnMut() -> bool) -> bool {
    spin(busy, true)
}

#[cfg(not(loom))]
thread_local! {
    static YIELD_IN_SPINS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Makes this thread's waits yield the CPU after ≈ 6 µs of PAUSEs instead of spinning on for
/// the rest of their budget. For threads that wait on each other in a chain with more
/// threads than CPUs (a pool's feeders and workers): the thread waited for gets to run. A
/// plain two-party hand-off is better off spinning (a yield is a syscall and may lose the
/// CPU for a while), so this is off by default.
pub(crate) fn yield_in_spins(on: bool) {
    #[cfg(not(loom))]
    YIELD_IN_SPINS.with(|c| c.set(on));
    #[cfg(loom)]
    let _ = on;
}

#[inline]
#[cfg_attr(loom, allow(clippy::reversed_empty_ranges))] // no spin rounds under loom
fn spin(mut busy: impl FnMut() -> bool, yielding: bool) -> bool {
    // Already done: no clock read (≈ 20–25 ns, a tenth of a queue round trip). Callers
    // used to make this check themselves before spinning; the one wait loop relies on it.
    #[cfg(not(loom))]
    if !busy() {
        return true;
    }
    #[cfg(not(loom))]
    let start = Instant::now();
    for i in 0..SPIN_ROUNDS {
        if !busy() {
            return true;
        }
        if i < YIELD_AFTER || !yielding {
            for _ in 0..(1u32 << i.min(6)) {
                crate::loom::spin_loop();
            }
        } else {
            #[cfg(not(loom))]
            std::thread::yield_now();
        }
        #[cfg(not(loom))]
        if i % 4 == 3 && start.elapsed() >= SPIN_BUDGET {
            break;
        }
    }
    !busy()
}

/// How long a waiter spins before it sleeps: about the cost of one futex wake-up on this
/// kind of VM (7–8 µs each way; PAUSE takes ≈ 25 ns on its EPYC host), so a hand-over that
/// comes quickly never pays for sleeping, and a long wait burns at most this much CPU.
#[cfg(not(loom))]
const SPIN_BUDGET: std::time::Duration = std::time::Duration::from_micros(20);
/// Spin rounds made of PAUSEs (1, 2, 4, … 64, 64 of them: ≈ 5 µs in all) before a yielding
/// spinner spends the rest of its budget yielding.
#[cfg(not(loom))]
const YIELD_AFTER: u32 = 8;
#[cfg(loom)]
const YIELD_AFTER: u32 = 0;
/// Upper bound on spin rounds (the time budget above usually ends the spin first).
#[cfg(not(loom))]
const SPIN_ROUNDS: u32 = 40;
/// No spinning under loom: a `yield_now` there makes loom run the other threads first and
/// never explores the spinner going on to sleep before them, which is exactly the order that
/// exposes a lost wake-up. Every retry loop that follows sleeps in the futex model instead.
#[cfg(loom)]
const SPIN_ROUNDS: u32 = 0;
