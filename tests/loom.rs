//! Loom model checks of the crate's lock-free protocols.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --test loom` (`.ci/run` does).
//! Without `--cfg loom` this file compiles to nothing.
#![cfg(loom)]
// std atomics here are user code (e.g. inside a `Shared<T>`); the shim rule is for the library.
#![allow(clippy::disallowed_types)]

use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;
use shmproc::loom_api::{observe, publish, MagicWord};

const MAGIC: u64 = 0x5348_4d50_524f_4301;

/// Writer publishes a two-word header body; a concurrent reader that sees the magic must
/// see the body. The body words are relaxed atomics: the reader may race with the writer, as
/// an opener may race with a segment's creator.
fn check_header_publish<W: MagicWord + Send + Sync + 'static>(new_word: fn() -> W) {
    loom::model(move || {
        let seg = Arc::new((new_word(), AtomicU64::new(0), AtomicU64::new(0)));
        let writer = {
            let seg = seg.clone();
            thread::spawn(move || {
                publish(&seg.0, MAGIC, || {
                    seg.1.store(4096, Ordering::Relaxed);
                    seg.2.store(0xfeed, Ordering::Relaxed);
                });
            })
        };
        let (magic, (len, fp)) = observe(&seg.0, || {
            (seg.1.load(Ordering::Relaxed), seg.2.load(Ordering::Relaxed))
        });
        if magic == MAGIC {
            assert_eq!((len, fp), (4096, 0xfeed), "saw the magic before the header body");
        }
        writer.join().unwrap();
    });
}

#[test]
fn header_publish_is_ordered() {
    check_header_publish(|| AtomicU64::new(0));
}

/// A deliberately broken word (relaxed both ways): loom must find the reordering, which
/// shows that the check above can fail.
struct RelaxedWord(AtomicU64);

impl MagicWord for RelaxedWord {
    fn load_acquire(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    fn store_release(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed)
    }
}

#[test]
#[should_panic(expected = "saw the magic before the header body")]
fn relaxed_publish_is_caught() {
    check_header_publish(|| RelaxedWord(AtomicU64::new(0)));
}

// ---------------------------------------------------------------------------------------------
// The sync algorithms (`shmproc::raw::Raw*`), run against the futex model of `sync/park.rs`
// (a sleeper returns only when a wake of its word picks it; no spinning, no spurious
// wake-ups) and the atomics of `src/loom.rs` (loom's, with a `SeqCst` fence after every
// `SeqCst` write): a lost wake-up shows up as a loom deadlock, a failed exclusion as a
// causality violation on a `loom::cell::UnsafeCell`, a retry loop that can no longer block
// as loom's branch limit.
//
// Every model starts its other threads first (`yield_now` right after spawning): loom 0.7's
// DPOR remembers only the last access to each atomic, so which thread runs first changes
// which orders it explores. With bugs seeded into the algorithms, this start caught every
// one the main-thread-first start caught, and one more.
// ---------------------------------------------------------------------------------------------

use std::collections::BTreeSet;

use loom::cell::UnsafeCell;
use shmproc::loom_api::Shadow;
use shmproc::raw::{
    Acquired, BarrierFail, LockFail, RawBarrier, RawCondition, RawEvent, RawLock, RawRLock, RawSemaphore,
    ReleaseFail, SemFail,
};

/// A counter guarded by whatever the test says: non-atomic, so loom reports a data race
/// (a "Causality violation") when two threads touch it without a happens-before edge.
struct Guarded<L> {
    lock: L,
    value: UnsafeCell<u32>,
}

// SAFETY: `value` is only touched by a thread that holds `lock`; loom checks exactly that.
unsafe impl<L: Sync> Sync for Guarded<L> {}

impl<L> Guarded<L> {
    fn new(lock: L) -> Arc<Self> {
        Arc::new(Self {
            lock,
            value: UnsafeCell::new(0),
        })
    }

    /// The critical section: call only while holding `lock`.
    fn bump(&self) {
        // SAFETY: the caller holds `lock` (loom reports it if that does not exclude others).
        self.value.with_mut(|p| unsafe { *p += 1 });
    }

    /// The value: call while holding `lock`, or once every writer is joined.
    fn get(&self) -> u32 {
        // SAFETY: as documented; loom reports a read that races with a bump.
        self.value.with(|p| unsafe { *p })
    }
}

/// `loom::model` with an explicit preemption bound, whatever `LOOM_MAX_PREEMPTIONS` says:
/// 4 for two threads, 3 for three, which keeps the slowest model under ten seconds (release
/// build) and the suite well under a minute; [`let_others_block`] relies on the bound too.
fn model_bounded<F: Fn() + Sync + Send + 'static>(preemptions: usize, f: F) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(preemptions);
    builder.check(f);
}

/// Lets every other thread run until it blocks or ends before the caller goes on, in every
/// execution of a model bounded to `preemptions`: after a `yield_now` the caller gets the CPU
/// back while another thread can still run only by a preemption, so one yield more than the
/// bound allows ends with all the others blocked (and they stay so: the caller does nothing
/// in between). How a test makes "the waiter is asleep before the wake" certain.
fn let_others_block(preemptions: usize) {
    for _ in 0..=preemptions {
        thread::yield_now();
    }
}

/// Outcomes seen across all executions of one model (std types: they live outside the model
/// and survive from one execution to the next), so a test can check that loom explored each
/// order it is meant to, not only that the orders it did explore were fine.
#[derive(Clone, Default)]
struct Outcomes(std::sync::Arc<std::sync::Mutex<BTreeSet<&'static str>>>);

impl Outcomes {
    fn saw(&self, outcome: &'static str) {
        self.0.lock().unwrap().insert(outcome);
    }

    fn assert_all(&self, expected: &[&'static str]) {
        let seen = self.0.lock().unwrap();
        let missing: Vec<_> = expected.iter().filter(|o| !seen.contains(*o)).collect();
        assert!(
            missing.is_empty(),
            "loom never explored {missing:?} (saw {seen:?})"
        );
    }
}

// --- RawLock -------------------------------------------------------------------------------

/// Two threads lock / bump / unlock: the bumps never race and both land.
#[test]
fn lock_excludes() {
    model_bounded(4, || {
        let g = Guarded::new(RawLock::new());
        let t = {
            let g = g.clone();
            thread::spawn(move || {
                assert_eq!(g.lock.lock(None), Ok(Acquired::Normal));
                g.bump();
                g.lock.unlock().unwrap();
            })
        };
        thread::yield_now();
        assert_eq!(g.lock.lock(None), Ok(Acquired::Normal));
        g.bump();
        g.lock.unlock().unwrap();
        t.join().unwrap();
        assert!(!g.lock.is_locked());
        assert_eq!(g.get(), 2);
    });
}

/// Three contenders: two can sleep on the word at once, so the one woken must keep `WAITERS`
/// set when it takes the lock, or its unlock skips the wake the other sleeper needs (the
/// futex model's `wake_one` wakes exactly one sleeper).
#[test]
fn lock_three_contenders() {
    model_bounded(3, || {
        let g = Guarded::new(RawLock::new());
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let g = g.clone();
                thread::spawn(move || {
                    g.lock.lock(None).unwrap();
                    g.bump();
                    g.lock.unlock().unwrap();
                })
            })
            .collect();
        thread::yield_now();
        g.lock.lock(None).unwrap();
        g.bump();
        g.lock.unlock().unwrap();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(g.get(), 3);
    });
}

/// `try_lock` on a held lock fails with `WouldBlock` and leaves the holder's lock alone.
#[test]
fn lock_try_lock_while_held() {
    model_bounded(4, || {
        let lock = Arc::new(RawLock::new());
        assert_eq!(lock.try_lock(), Ok(Acquired::Normal));
        let t = {
            let lock = lock.clone();
            thread::spawn(move || {
                assert_eq!(lock.try_lock(), Err(LockFail::WouldBlock));
                assert!(!lock.is_owned_by_me());
            })
        };
        t.join().unwrap();
        assert!(lock.is_owned_by_me());
        lock.unlock().unwrap();
        assert_eq!(lock.unlock(), Err(ReleaseFail::NotLocked));
    });
}

/// A binary semaphore, like Python's `Lock`: another thread releases the lock this one
/// holds, which lets this one's blocking `lock` through (a lost wake-up would deadlock).
#[test]
fn lock_released_by_other_thread() {
    model_bounded(4, || {
        let lock = Arc::new(RawLock::new());
        assert_eq!(lock.lock(None), Ok(Acquired::Normal));
        let t = {
            let lock = lock.clone();
            thread::spawn(move || lock.unlock())
        };
        thread::yield_now();
        assert_eq!(lock.lock(None), Ok(Acquired::Normal));
        assert_eq!(t.join().unwrap(), Ok(()));
        assert!(lock.is_owned_by_me());
        lock.unlock().unwrap();
    });
}

// --- RawRLock ------------------------------------------------------------------------------

/// One thread takes the lock twice (re-entering) while another contends: exclusion holds
/// across both levels, and the lock is free only after the outer release.
#[test]
fn rlock_reentry_under_contention() {
    model_bounded(4, || {
        let g = Guarded::new(RawRLock::new());
        let t = {
            let g = g.clone();
            thread::spawn(move || {
                g.lock.lock(None).unwrap();
                g.bump();
                g.lock.unlock().unwrap();
                assert_eq!(g.lock.depth(), 0);
            })
        };
        thread::yield_now();
        g.lock.lock(None).unwrap();
        assert_eq!(g.lock.try_lock(), Ok(Acquired::Normal), "re-entry must not block");
        assert_eq!(g.lock.depth(), 2);
        g.bump();
        g.lock.unlock().unwrap();
        assert!(g.lock.is_owned_by_me(), "still held after the inner release");
        g.bump();
        g.lock.unlock().unwrap();
        t.join().unwrap();
        assert!(!g.lock.is_locked());
        assert_eq!(g.get(), 3);
    });
}

/// Only the owner may release an `RLock`: a refused release changes nothing, and the
/// refused thread then takes its turn normally once the owner lets go.
#[test]
fn rlock_non_owner_unlock() {
    const PREEMPTIONS: usize = 4;
    model_bounded(PREEMPTIONS, || {
        let lock = Arc::new(RawRLock::new());
        lock.lock(None).unwrap();
        let t = {
            let lock = lock.clone();
            thread::spawn(move || {
                assert_eq!(lock.unlock(), Err(ReleaseFail::NotOwner));
                assert_eq!(lock.depth(), 0);
                lock.lock(None).unwrap();
                assert_eq!(lock.depth(), 1);
                lock.unlock().unwrap();
            })
        };
        // The other thread's refused release and then its `lock` (which blocks) come first.
        let_others_block(PREEMPTIONS);
        assert!(lock.is_owned_by_me(), "a refused release must not free the lock");
        assert_eq!(lock.depth(), 1);
        lock.unlock().unwrap();
        t.join().unwrap();
        assert_eq!(lock.unlock(), Err(ReleaseFail::NotLocked));
    });
}

// --- RawSemaphore --------------------------------------------------------------------------

/// `Semaphore(1)` as a mutex.
#[test]
fn semaphore_one_excludes() {
    model_bounded(4, || {
        let g = Guarded::new(RawSemaphore::new(1, false));
        let t = {
            let g = g.clone();
            thread::spawn(move || {
                g.lock.acquire(None).unwrap();
                g.bump();
                g.lock.release().unwrap();
            })
        };
        thread::yield_now();
        g.lock.acquire(None).unwrap();
        g.bump();
        g.lock.release().unwrap();
        t.join().unwrap();
        assert_eq!(g.lock.value(), 1);
        assert_eq!(g.get(), 2);
    });
}

/// `Semaphore(0)`: a blocking acquire completes once another thread releases (the
/// `waiters` / `value` handshake must not lose the wake-up).
#[test]
fn semaphore_zero_release_wakes_acquirer() {
    model_bounded(4, || {
        let sem = Arc::new(RawSemaphore::new(0, false));
        let t = {
            let sem = sem.clone();
            thread::spawn(move || sem.release())
        };
        thread::yield_now();
        assert_eq!(sem.acquire(None), Ok(()));
        assert_eq!(t.join().unwrap(), Ok(()));
        assert_eq!(sem.value(), 0);
        assert_eq!(sem.try_acquire(), Err(SemFail::WouldBlock));
    });
}

/// `Semaphore(0)` with two acquirers asleep: two releases wake both, whether the second
/// release comes before or after the first sleeper has taken its unit.
#[test]
fn semaphore_two_sleepers_two_releases() {
    const PREEMPTIONS: usize = 3;
    model_bounded(PREEMPTIONS, || {
        let sem = Arc::new(RawSemaphore::new(0, false));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let sem = sem.clone();
                thread::spawn(move || sem.acquire(None))
            })
            .collect();
        let_others_block(PREEMPTIONS);
        sem.release().unwrap();
        sem.release().unwrap();
        for t in threads {
            assert_eq!(t.join().unwrap(), Ok(()));
        }
        assert_eq!(sem.value(), 0);
    });
}

/// `BoundedSemaphore(1)`: one thread takes and returns the unit while another releases
/// once more than it took; exactly one of the two releases is refused, whatever the order.
#[test]
fn bounded_semaphore_too_many_releases() {
    let outcomes = Outcomes::default();
    let seen = outcomes.clone();
    model_bounded(4, move || {
        let sem = Arc::new(RawSemaphore::new(1, true));
        let t = {
            let sem = sem.clone();
            thread::spawn(move || {
                sem.acquire(None).unwrap();
                sem.release()
            })
        };
        thread::yield_now();
        let mine = sem.release();
        let theirs = t.join().unwrap();
        match (mine, theirs) {
            (Err(SemFail::TooManyReleases), Ok(())) => seen.saw("mine refused"),
            (Ok(()), Err(SemFail::TooManyReleases)) => seen.saw("theirs refused"),
            other => panic!("exactly one release must be refused, got {other:?}"),
        }
        assert_eq!(sem.value(), 1);
        assert_eq!(sem.bound(), Some(1));
    });
    outcomes.assert_all(&["mine refused", "theirs refused"]);
}

// --- RawEvent ------------------------------------------------------------------------------

/// A waiter in `wait(None)` returns `true` once another thread sets the event.
#[test]
fn event_set_releases_waiter() {
    model_bounded(4, || {
        let ev = Arc::new(RawEvent::new());
        let t = {
            let ev = ev.clone();
            thread::spawn(move || ev.set())
        };
        thread::yield_now();
        assert!(ev.wait(None));
        assert!(ev.is_set());
        t.join().unwrap();
    });
}

/// `set` immediately followed by `clear` releases a waiter that is already asleep in
/// `wait(None)` (made certain by [`let_others_block`]): it waits for the generation to move,
/// not for the flag to stay up.
#[test]
fn event_set_clear_releases_sleeping_waiter() {
    const PREEMPTIONS: usize = 4;
    model_bounded(PREEMPTIONS, || {
        let ev = Arc::new(RawEvent::new());
        let waiter = {
            let ev = ev.clone();
            thread::spawn(move || ev.wait(None))
        };
        let_others_block(PREEMPTIONS);
        ev.set();
        ev.clear();
        assert!(waiter.join().unwrap());
        assert!(!ev.is_set());
    });
}

/// `set`, `clear`, `set` against a `wait` at any point. Where the first pair runs entirely
/// before the waiter's first look, the waiter rightly waits for the next `set`, which the
/// last one provides; so every interleaving must end, with `wait` returning `true` — including
/// a waiter between its snapshot and its sleep, or woken by the first `set` and re-checking
/// only after the `clear`.
#[test]
fn event_set_clear_any_interleaving() {
    model_bounded(4, || {
        let ev = Arc::new(RawEvent::new());
        let waiter = {
            let ev = ev.clone();
            thread::spawn(move || ev.wait(None))
        };
        thread::yield_now();
        ev.set();
        ev.clear();
        ev.set();
        assert!(waiter.join().unwrap());
    });
}

// --- RawCondition --------------------------------------------------------------------------

/// The classic handshake: the consumer waits (under the lock, held twice) until the producer
/// has set the flag (under the lock) and notified. A missed notify deadlocks; the flag is a
/// non-atomic cell, so the exclusion across `wait`'s release and re-take is checked too.
#[test]
fn condition_flag_handshake() {
    let outcomes = Outcomes::default();
    let seen = outcomes.clone();
    model_bounded(4, move || {
        let shared = Arc::new((Guarded::new(RawRLock::new()), RawCondition::new()));
        let producer = {
            let shared = shared.clone();
            thread::spawn(move || {
                let (g, cond) = &*shared;
                g.lock.lock(None).unwrap();
                g.bump();
                cond.notify(1);
                g.lock.unlock().unwrap();
            })
        };
        thread::yield_now();
        let (g, cond) = &*shared;
        g.lock.lock(None).unwrap();
        g.lock.lock(None).unwrap(); // `wait` must release and restore both levels
        let mut waited = false;
        while g.get() == 0 {
            let (_notified, how) = cond.wait(&g.lock, None).unwrap();
            assert_eq!(how, Acquired::Normal);
            assert_eq!(g.lock.depth(), 2);
            waited = true;
        }
        seen.saw(if waited {
            "consumer waited"
        } else {
            "flag already set"
        });
        g.lock.unlock().unwrap();
        g.lock.unlock().unwrap();
        producer.join().unwrap();
        assert_eq!(g.get(), 1);
    });
    outcomes.assert_all(&["consumer waited", "flag already set"]);
}

// --- RawBarrier ----------------------------------------------------------------------------

/// `Barrier(2)`: both parties return, with arrival indices 0 and 1.
#[test]
fn barrier_two_parties() {
    model_bounded(4, || {
        let b = Arc::new(RawBarrier::new(2));
        let t = {
            let b = b.clone();
            thread::spawn(move || b.wait(None))
        };
        thread::yield_now();
        let mine = b.wait(None).unwrap();
        let theirs = t.join().unwrap().unwrap();
        let mut both = [mine, theirs];
        both.sort_unstable();
        assert_eq!(both, [0, 1]);
        assert_eq!(b.n_waiting(), 0);
        assert!(!b.is_broken());
    });
}

/// `abort` while a party waits (or before it arrives): the party gets `Broken`, never hangs,
/// and so does every later `wait`.
#[test]
fn barrier_abort_breaks_waiter() {
    model_bounded(4, || {
        let b = Arc::new(RawBarrier::new(2));
        let t = {
            let b = b.clone();
            thread::spawn(move || b.wait(None))
        };
        thread::yield_now();
        b.abort().unwrap();
        assert_eq!(t.join().unwrap(), Err(BarrierFail::Broken));
        assert!(b.is_broken());
        assert_eq!(b.wait(None), Err(BarrierFail::Broken));
    });
}

/// Two parties and an `abort` from a third thread: either the round completed before the
/// abort (both get their index) or it was broken (both get `Broken`); never one of each,
/// never a hang.
#[test]
fn barrier_abort_races_round() {
    let outcomes = Outcomes::default();
    let seen = outcomes.clone();
    model_bounded(3, move || {
        let b = Arc::new(RawBarrier::new(2));
        let parties: Vec<_> = (0..2)
            .map(|_| {
                let b = b.clone();
                thread::spawn(move || b.wait(None))
            })
            .collect();
        thread::yield_now();
        b.abort().unwrap();
        let r: Vec<_> = parties.into_iter().map(|t| t.join().unwrap()).collect();
        match (r[0], r[1]) {
            (Ok(x), Ok(y)) => {
                assert_eq!(x + y, 1, "indices {x} and {y}");
                seen.saw("round completed");
            }
            (Err(BarrierFail::Broken), Err(BarrierFail::Broken)) => seen.saw("round broken"),
            other => panic!("mixed outcome {other:?}"),
        }
    });
    outcomes.assert_all(&["round completed", "round broken"]);
}

/// A party times out while another holds the barrier's internal lock (here: inside
/// `reset`): the timed-out party either takes the lock and breaks the round itself, or posts
/// a request that the holder carries out when it releases. In every interleaving the round
/// ends broken exactly once and no request is left behind (a holder that looked for
/// requests only before its unlock would lose one posted in between).
#[test]
fn barrier_break_request_is_never_lost() {
    model_bounded(3, || {
        let b = Arc::new(RawBarrier::new(2));
        let holder = {
            let b = b.clone();
            thread::spawn(move || b.reset().unwrap())
        };
        b.loom_time_out();
        holder.join().unwrap();
        assert_eq!(b.loom_state(), (1, 0), "(generation, pending)");
    });
}

// --- Negative control ----------------------------------------------------------------------

/// A deliberately broken test-local spin lock: its CAS and release are `Relaxed`, so the
/// critical sections are not ordered. Loom must report the race on the guarded cell, which
/// shows that the `Guarded` checks above can fail.
struct RelaxedSpinLock(loom::sync::atomic::AtomicBool);

impl RelaxedSpinLock {
    fn lock(&self) {
        while self
            .0
            .compare_exchange(false, true, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            thread::yield_now();
        }
    }

    fn unlock(&self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

#[test]
#[should_panic(expected = "Causality violation")]
fn relaxed_lock_race_is_caught() {
    model_bounded(3, || {
        let g = Guarded::new(RelaxedSpinLock(loom::sync::atomic::AtomicBool::new(false)));
        let t = {
            let g = g.clone();
            thread::spawn(move || {
                g.lock.lock();
                g.bump();
                g.lock.unlock();
            })
        };
        thread::yield_now();
        g.lock.lock();
        g.bump();
        g.lock.unlock();
        t.join().unwrap();
    });
}

// ------------------------------------------------------------------------------------------
// Ring cores: the event count and the byte ring
// ------------------------------------------------------------------------------------------

/// A consumer that follows the event-count protocol (prepare, re-check, wait) never misses
/// a producer's notify: a lost wake-up would be a loom deadlock.
#[test]
fn eventcount_no_lost_wakeup() {
    use loom::sync::atomic::AtomicU32;
    use shmproc::raw::EventCount;
    model_bounded(3, || {
        let s = Arc::new((EventCount::new(), AtomicU32::new(0)));
        let producer = {
            let s = s.clone();
            thread::spawn(move || {
                s.1.store(1, Ordering::Release);
                s.0.notify();
            })
        };
        loop {
            if s.1.load(Ordering::Acquire) == 1 {
                break;
            }
            let key = s.0.prepare_wait();
            if s.1.load(Ordering::Acquire) == 1 {
                s.0.cancel_wait();
                break;
            }
            s.0.wait(key, None);
        }
        producer.join().unwrap();
        assert!(!s.0.has_waiters(), "every registration was withdrawn");
    });
}

/// Two notifications in a row and two waiters, one of which waits again after the first:
/// the first notify clears the "sleepers" bit, so a waiter that registers after it must set
/// the bit again and be woken by the second (a wake-up skipped because the bit was clear
/// would be a loom deadlock).
#[test]
fn eventcount_sleepers_bit_across_two_notifies() {
    use loom::sync::atomic::AtomicU32;
    use shmproc::raw::EventCount;
    fn wait_until(s: &(EventCount, AtomicU32), target: u32) {
        loop {
            if s.1.load(Ordering::Acquire) >= target {
                return;
            }
            let key = s.0.prepare_wait();
            if s.1.load(Ordering::Acquire) >= target {
                s.0.cancel_wait();
                return;
            }
            s.0.wait(key, None);
        }
    }
    model_bounded(2, || {
        let s = Arc::new((EventCount::new(), AtomicU32::new(0)));
        let producer = {
            let s = s.clone();
            thread::spawn(move || {
                for v in 1..=2 {
                    s.1.store(v, Ordering::Release);
                    s.0.notify();
                }
            })
        };
        let other = {
            let s = s.clone();
            thread::spawn(move || wait_until(&s, 2))
        };
        wait_until(&s, 1);
        wait_until(&s, 2);
        producer.join().unwrap();
        other.join().unwrap();
        assert!(!s.0.has_waiters(), "every registration was withdrawn");
    });
}

/// A byte buffer shared by the two sides of a byte ring in the model.
struct Buf(std::cell::UnsafeCell<[u8; 256]>);
// SAFETY: the byte ring's protocol decides which side touches which bytes; the test checks
// what the reader gets.
unsafe impl Sync for Buf {}

/// The indices, the buffer and the buffer's loom stand-in (one unit per 8 bytes), so loom
/// checks that every payload read is ordered after the write it copies.
type RingParts = (shmproc::raw::ByteRingIndices, Buf, Shadow);

fn ring_parts() -> Arc<RingParts> {
    Arc::new((
        Default::default(),
        Buf(std::cell::UnsafeCell::new([0; 256])),
        Shadow::new(32),
    ))
}

/// A ring over the parts.
fn byte_ring(p: &RingParts) -> shmproc::raw::ByteRing<'_> {
    // SAFETY: 256 bytes, 8-aligned enough for the ring (byte copies only), alive as long
    // as `p`, used only through rings over these indices.
    unsafe { shmproc::raw::ByteRing::new(&p.0, p.1 .0.get().cast(), 256) }.with_shadow(&p.2)
}

/// The writer sends a one-frame message and a three-frame one; the reader, polling, gets
/// both whole and in order, and the indices stay consistent in every interleaving; every
/// payload byte read was published to the reader (the buffer's stand-in checks it).
#[test]
fn byte_ring_frames_arrive_whole_and_in_order() {
    use shmproc::raw::{FIRST, LAST};
    model_bounded(2, || {
        let shared = ring_parts();
        let writer = {
            let shared = shared.clone();
            thread::spawn(move || {
                let ring = byte_ring(&shared);
                let frames: [(&[u8], u32); 4] =
                    [(b"one", FIRST | LAST), (b"two", FIRST), (b"-", 0), (b"two", LAST)];
                for (payload, flags) in frames {
                    while !ring.try_write(payload, flags).expect("consistent indices") {
                        thread::yield_now();
                    }
                }
            })
        };
        let ring = byte_ring(&shared);
        let mut got = Vec::new();
        let mut msg = Vec::new();
        while got.len() < 2 {
            match ring.peek().expect("consistent frames") {
                None => thread::yield_now(),
                Some(info) => {
                    ring.take(info, &mut msg).expect("take");
                    if info.flags & LAST != 0 {
                        got.push(std::mem::take(&mut msg));
                    }
                }
            }
        }
        writer.join().unwrap();
        assert_eq!(got, vec![b"one".to_vec(), b"two-two".to_vec()]);
        assert_eq!(ring.used(), Ok(0));
    });
}

/// Negative control for the byte ring's payload check: two writers on one byte ring (its
/// protocol allows one; the channel's write lock serializes them) write the same bytes with
/// no order between them, and loom must report it through the buffer's stand-in. Were the
/// stand-in not touched where the payload is copied, this would pass.
#[test]
#[should_panic(expected = "Causality violation")]
fn byte_ring_two_unserialized_writers_are_caught() {
    use shmproc::raw::{FIRST, LAST};
    model_bounded(2, || {
        let shared = ring_parts();
        let other = {
            let shared = shared.clone();
            thread::spawn(move || {
                let _ = byte_ring(&shared).try_write(b"other", FIRST | LAST);
            })
        };
        let _ = byte_ring(&shared).try_write(b"mine", FIRST | LAST);
        other.join().unwrap();
    });
}

// ------------------------------------------------------------------------------------------
// Slot rings: the SPSC ring and the MPMC slot ring, over real (memfd) segments whose words
// are the loom atomics of `src/loom.rs`; each MPMC slot carries a `loom::cell::UnsafeCell`
// stand-in that the ring touches where it copies the payload, so an unordered payload access
// is a causality violation. Liveness checks never fire under loom (every claimer is alive),
// and the futex model ignores deadlines: a lost wake-up is a deadlock.
// ------------------------------------------------------------------------------------------

use shmproc::raw::{MpmcRing, SpscRing};
use shmproc::{RecvTimeoutError, SendTimeoutError, TryRecvError, TrySendError};

/// One producer pushes two items into a ring of one slot (the second push must wait for
/// the pop), one consumer pops with blocking pops: both arrive, in order, whatever the
/// interleaving (a lost `not_empty` or `not_full` wake-up would be a deadlock).
#[test]
fn mpmc_one_to_one_blocking() {
    model_bounded(2, || {
        let ring = Arc::new(MpmcRing::<u64>::new(1).unwrap());
        let producer = {
            let ring = ring.clone();
            thread::spawn(move || {
                ring.push(7, None).unwrap();
                ring.push(8, None).unwrap();
            })
        };
        thread::yield_now();
        assert_eq!(ring.pop(None), Ok(7));
        assert_eq!(ring.pop(None), Ok(8));
        producer.join().unwrap();
        assert_eq!(ring.len(), 0);
        assert_eq!(ring.try_pop(), Err(TryRecvError::Empty));
    });
}

/// Two producers, one consumer on a ring of two slots (so a push can find the previous
/// lap's slot still in use): no item lost or repeated, each producer's items in its order.
#[test]
fn mpmc_two_producers_one_consumer() {
    model_bounded(2, || {
        let ring = Arc::new(MpmcRing::<u64>::new(2).unwrap());
        let producers: Vec<_> = [[10, 11], [20, 0]]
            .into_iter()
            .map(|items| {
                let ring = ring.clone();
                thread::spawn(move || {
                    for v in items.into_iter().filter(|&v| v != 0) {
                        ring.push(v, None).unwrap();
                    }
                })
            })
            .collect();
        thread::yield_now();
        let got: Vec<u64> = (0..3).map(|_| ring.pop(None).unwrap()).collect();
        for p in producers {
            p.join().unwrap();
        }
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [10, 11, 20], "lost or repeated items: {got:?}");
        let pos = |v| got.iter().position(|&x| x == v).unwrap();
        assert!(pos(10) < pos(11), "producer order broken: {got:?}");
        assert_eq!(ring.len(), 0);
    });
}

/// A pusher blocked on a full ring (certainly asleep: [`let_others_block`]) is woken by the
/// pop that frees its slot, and its item follows.
#[test]
fn mpmc_full_ring_pusher_woken_by_pop() {
    const PREEMPTIONS: usize = 2;
    model_bounded(PREEMPTIONS, || {
        let ring = Arc::new(MpmcRing::<u64>::new(1).unwrap());
        ring.push(1, None).unwrap();
        assert_eq!(ring.try_push(9), Err(TrySendError::Full(9)));
        let pusher = {
            let ring = ring.clone();
            thread::spawn(move || ring.push(2, None))
        };
        let_others_block(PREEMPTIONS);
        assert_eq!(ring.len(), 1);
        assert_eq!(ring.pop(None), Ok(1));
        assert_eq!(ring.pop(None), Ok(2));
        assert_eq!(pusher.join().unwrap(), Ok(()));
    });
}

/// A push racing a `shutdown` made by a third thread either succeeds, and then the
/// draining pop gets its item, or fails with `Closed`; the pop ends with `Closed` either way
/// (never a lost item, never a hang, `len()` back to 0). Found a pop that slept on an empty
/// slot through the shutdown it had just seen.
#[test]
fn mpmc_push_races_shutdown() {
    let outcomes = Outcomes::default();
    let seen = outcomes.clone();
    model_bounded(2, move || {
        let ring = Arc::new(MpmcRing::<u64>::new(2).unwrap());
        let pusher = {
            let ring = ring.clone();
            thread::spawn(move || ring.push(5, None))
        };
        let closer = {
            let ring = ring.clone();
            thread::spawn(move || ring.shutdown())
        };
        thread::yield_now();
        let mut got = Vec::new();
        loop {
            match ring.pop(None) {
                Ok(v) => got.push(v),
                Err(RecvTimeoutError::Closed) => break,
                Err(e) => panic!("pop: {e:?}"),
            }
        }
        match pusher.join().unwrap() {
            Ok(()) => {
                assert_eq!(got, [5], "a successful push was not drained");
                seen.saw("pushed");
            }
            Err(SendTimeoutError::Closed(5)) => {
                assert!(got.is_empty(), "a refused push delivered {got:?}");
                seen.saw("refused");
            }
            Err(e) => panic!("push: {e:?}"),
        }
        closer.join().unwrap();
        assert_eq!(ring.len(), 0);
    });
    outcomes.assert_all(&["pushed", "refused"]);
}

/// `SpscRing`: the producer pushes three items into a ring of two (the third waits for
/// room) while the consumer pops with blocking pops: all arrive in order, and neither side
/// misses the other's wake-up.
#[test]
fn spsc_hand_off_and_wake_ups() {
    model_bounded(2, || {
        let ring = Arc::new(SpscRing::<u64>::new(2).unwrap());
        let producer = {
            let ring = ring.clone();
            thread::spawn(move || {
                let mut tx = ring.producer().unwrap();
                for v in [1, 2, 3] {
                    tx.push(v, None).unwrap();
                }
            })
        };
        thread::yield_now();
        let mut rx = ring.consumer().unwrap();
        for v in [1, 2, 3] {
            assert_eq!(rx.pop(None).unwrap(), v);
        }
        producer.join().unwrap();
        assert!(ring.is_empty());
    });
}

/// Negative control for the SPSC ring's payload check: two producers on one ring (it
/// allows one) fill the same slot with no order between them; loom must report it through
/// the slots' stand-in.
#[test]
#[should_panic(expected = "Causality violation")]
fn spsc_two_producers_are_caught() {
    model_bounded(2, || {
        let ring = Arc::new(SpscRing::<u64>::new(2).unwrap());
        let other = {
            let ring = ring.clone();
            thread::spawn(move || {
                let _ = ring.producer().unwrap().try_push(1);
            })
        };
        let _ = ring.producer().unwrap().try_push(2);
        other.join().unwrap();
    });
}

/// Two consumers, one producer on a ring of two slots: each item is taken exactly once,
/// whichever consumer claims it, and a consumer asleep on an empty ring is woken.
#[test]
fn mpmc_one_producer_two_consumers() {
    model_bounded(2, || {
        let ring = Arc::new(MpmcRing::<u64>::new(2).unwrap());
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let ring = ring.clone();
                thread::spawn(move || ring.pop(None).unwrap())
            })
            .collect();
        thread::yield_now();
        for v in [1, 2] {
            ring.push(v, None).unwrap();
        }
        let mut got: Vec<u64> = consumers.into_iter().map(|c| c.join().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, [1, 2], "lost or repeated items");
        assert_eq!(ring.len(), 0);
        assert_eq!(ring.try_pop(), Err(TryRecvError::Empty));
    });
}

/// `SpscRing`: a consumer certainly asleep in `pop(None)` is woken by one push.
#[test]
fn spsc_sleeping_consumer_woken_by_push() {
    const PREEMPTIONS: usize = 2;
    model_bounded(PREEMPTIONS, || {
        let ring = Arc::new(SpscRing::<u64>::new(2).unwrap());
        let consumer = {
            let ring = ring.clone();
            thread::spawn(move || ring.consumer().unwrap().pop(None).unwrap())
        };
        let_others_block(PREEMPTIONS);
        ring.producer().unwrap().push(42, None).unwrap();
        assert_eq!(consumer.join().unwrap(), 42);
    });
}

/// The slot ring publishes with a `SeqCst` compare-exchange and then reads the waiter count
/// without a fence. A deliberately broken variant of that hand-off, publishing with a plain
/// release store, must lose a wake-up: loom reports the sleeping waiter as a deadlock, which
/// shows the MPMC and event-count checks above can fail.
#[test]
#[should_panic(expected = "deadlock")]
fn publish_without_sc_rmw_loses_wakeup() {
    use shmproc::raw::EventCount;
    model_bounded(2, || {
        let s = Arc::new((EventCount::new(), AtomicU64::new(0)));
        let publisher = {
            let s = s.clone();
            thread::spawn(move || {
                s.1.store(1, Ordering::Release);
                if s.0.has_waiters() {
                    s.0.notify();
                }
            })
        };
        loop {
            if s.1.load(Ordering::Acquire) == 1 {
                break;
            }
            let key = s.0.prepare_wait();
            if s.1.load(Ordering::Acquire) == 1 {
                s.0.cancel_wait();
                break;
            }
            s.0.wait(key, None);
        }
        publisher.join().unwrap();
    });
}

// ------------------------------------------------------------------------------------------
// The message channel: writers and readers with their cached copies of each other's index
// (`fits_cached` / `peek_cached`), the message counts and the wake-ups, end to end.
// ------------------------------------------------------------------------------------------

/// A writer sends a one-frame message and then one that takes two frames (longer than the
/// 256-byte ring's largest frame); a reader receives both with blocking calls. Whatever the
/// interleaving, both arrive whole and in order, the count of waiting messages ends at 0,
/// and nobody sleeps through a wake-up (that would be a deadlock).
#[test]
fn channel_messages_stream_through_cached_indices() {
    use shmproc::raw::Channel;
    model_bounded(2, || {
        let chan = Arc::new(Channel::new(256).unwrap());
        let long: Vec<u8> = (0..100u8).collect();
        let writer = {
            let chan = chan.clone();
            let long = long.clone();
            thread::spawn(move || {
                chan.send(b"one", None, None).unwrap();
                chan.send(&long, None, None).unwrap();
            })
        };
        let first = chan.recv(None).unwrap();
        let second = chan.recv(None).unwrap();
        writer.join().unwrap();
        assert_eq!(first, b"one");
        assert_eq!(second, long);
        assert_eq!(chan.len(), 0);
    });
}

/// A ring too small for five one-frame messages at once (64 ring bytes each in 256): a send
/// must wait for room the reader frees, and the reader's release of room must wake it (through the writer's cached
/// head going stale and being refreshed).
#[test]
fn channel_writer_waits_for_room_and_is_woken() {
    use shmproc::raw::Channel;
    model_bounded(2, || {
        let chan = Arc::new(Channel::new(256).unwrap());
        let writer = {
            let chan = chan.clone();
            thread::spawn(move || {
                for k in 0..5u8 {
                    chan.send(&[k; 56], None, None).unwrap();
                }
            })
        };
        for k in 0..5u8 {
            assert_eq!(chan.recv(None).unwrap(), [k; 56]);
        }
        writer.join().unwrap();
        assert_eq!(chan.len(), 0);
    });
}

// ------------------------------------------------------------------------------------------
// A pipe end's holder table: a forked child's own record (use, release) racing the record
// its parent makes for it late, when it drops the closure it forked the child with.
// ------------------------------------------------------------------------------------------

use shmproc::loom_api::LinkTable;

/// The child uses the end and lets it go while the parent records it provisionally: in
/// every interleaving the end ends up unheld (a stale provisional record would keep the
/// peer waiting for as long as the child lives).
#[test]
fn link_child_use_and_release_vs_late_parent_record() {
    model_bounded(2, || {
        let t = Arc::new(LinkTable::default());
        let child = {
            let t = t.clone();
            thread::spawn(move || {
                assert!(t.register(100, true));
                t.release(100, true);
            })
        };
        assert!(t.register(100, false));
        child.join().unwrap();
        assert!(!t.held(), "a released child still counts as a holder");
    });
}

/// The child drops the end without ever using it while the parent records it late.
#[test]
fn link_child_drops_unused_end_vs_late_parent_record() {
    model_bounded(2, || {
        let t = Arc::new(LinkTable::default());
        let child = {
            let t = t.clone();
            thread::spawn(move || t.release(100, false))
        };
        assert!(t.register(100, false));
        child.join().unwrap();
        assert!(!t.held(), "a child that dropped the end still counts as a holder");
    });
}

/// The child starts using the end while the parent records it: it holds the end (once,
/// whatever the interleaving), and one release lets it go.
#[test]
fn link_child_use_vs_late_parent_record_holds_once() {
    model_bounded(2, || {
        let t = Arc::new(LinkTable::default());
        let child = {
            let t = t.clone();
            thread::spawn(move || assert!(t.register(100, true)))
        };
        assert!(t.register(100, false));
        child.join().unwrap();
        assert!(t.held(), "the child uses the end");
        t.release(100, true);
        assert!(!t.held(), "one release by the only user lets the end go");
    });
}

/// Two processes claim records at once: both hold, and after both release nobody does.
#[test]
fn link_two_processes_claim_at_once() {
    model_bounded(2, || {
        let t = Arc::new(LinkTable::default());
        let other = {
            let t = t.clone();
            thread::spawn(move || {
                assert!(t.register(200, true));
            })
        };
        assert!(t.register(100, true));
        other.join().unwrap();
        t.release(100, true);
        assert!(t.held(), "process 200 still holds the end");
        t.release(200, true);
        assert!(!t.held());
    });
}

// ------------------------------------------------------------------------------------------
// The pool's result cell: a pump claims and completes a job while the user cancels it,
// waits for it, and registers a done-callback.
// ------------------------------------------------------------------------------------------

use shmproc::loom_api::ResultCell;
use shmproc::PoolError;

/// Exactly one of "the pump ran it" and "the user cancelled it" happens, and the waiter
/// gets the matching outcome without hanging (loom reports a deadlock if a wake-up is lost).
#[test]
fn pool_cancel_races_the_pump() {
    loom::model(|| {
        let cell = ResultCell::default();
        let pump = {
            let cell = cell.clone();
            thread::spawn(move || {
                if cell.claim_to_run() {
                    cell.set(Ok(7));
                    true
                } else {
                    false
                }
            })
        };
        let canceller = {
            let cell = cell.clone();
            thread::spawn(move || cell.cancel())
        };
        let got = cell.take();
        let ran = pump.join().unwrap();
        let cancelled = canceller.join().unwrap();
        assert!(ran != cancelled, "ran {ran}, cancelled {cancelled}");
        assert_eq!(got, if ran { Ok(7) } else { Err(PoolError::Cancelled) });
        // A value is taken once; an error can be read again.
        assert_eq!(
            cell.take(),
            Err(if ran {
                PoolError::AlreadyTaken
            } else {
                PoolError::Cancelled
            })
        );
        assert!(cell.is_done());
    });
}

/// A done-callback registered while the pump completes the cell runs exactly once, and
/// after the outcome is visible.
#[test]
fn pool_done_callback_runs_once() {
    loom::model(|| {
        let cell = ResultCell::default();
        let calls = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
        let pump = {
            let cell = cell.clone();
            thread::spawn(move || {
                assert!(cell.claim_to_run());
                cell.set(Ok(1));
            })
        };
        {
            let calls = calls.clone();
            let seen = cell.clone();
            cell.on_done(move || {
                assert!(seen.is_done());
                calls.fetch_add(1, Ordering::SeqCst);
            });
        }
        pump.join().unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(cell.take(), Ok(1));
        assert_eq!(cell.take(), Err(PoolError::AlreadyTaken));
    });
}

/// `EventCount::wait_until` (the protocol run by the crate's one wait loop) never misses a
/// producer's notify, and withdraws every registration: a lost wake-up is a loom deadlock.
#[test]
fn eventcount_wait_until_no_lost_wakeup() {
    use loom::sync::atomic::AtomicU32;
    use shmproc::raw::EventCount;
    model_bounded(3, || {
        let s = Arc::new((EventCount::new(), AtomicU32::new(0)));
        let producer = {
            let s = s.clone();
            thread::spawn(move || {
                for v in 1..=2 {
                    s.1.store(v, Ordering::Release);
                    s.0.notify();
                }
            })
        };
        let got =
            s.0.wait_until(None, || Some(s.1.load(Ordering::Acquire)).filter(|&v| v >= 2));
        assert_eq!(got, Some(2));
        producer.join().unwrap();
        assert!(!s.0.has_waiters(), "every registration was withdrawn");
    });
}
