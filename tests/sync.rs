//! The sync primitives across real child processes, with both start methods: mutual
//! exclusion, reentrancy, counting, events, conditions, barriers, locked values and arrays,
//! holders killed by `SIGKILL`, corrupted shared words, and timeouts.
//!
//! Every blocking call is bounded — a timeout, `join_timeout`, or a watchdog thread for the
//! calls that have no timeout form — so a bug fails a test instead of hanging the suite.
//! Children are daemons: one left behind by a failing test dies with the test's thread.
// std atomics here are user code (e.g. inside a `Shared<T>`); the shim rule is for the library.
#![allow(clippy::disallowed_types)]

mod common;

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{bounded, eventually, join, kill_and_reap, ms, sleep_forever, start, JOIN, LONG, METHODS};
use serde::de::DeserializeOwned;
use serde::Serialize;
use shmproc::raw::{
    Acquired, BarrierFail, LockFail, RawBarrier, RawEvent, RawLock, RawRLock, RawSemaphore, ReleaseFail,
    SemFail, SEM_VALUE_MAX,
};
use shmproc::{
    AcquireError, AcquireTimeoutError, Array, ArraySetError, Barrier, BarrierTimeoutError, BoundedSemaphore,
    CondWaitTimeoutError, Condition, Event, Lock, LockError, LockTimeoutError, Process, RLock, RawValue,
    ReleaseError, Semaphore, Shared, ShmSafe, StartMethod, TryAcquireError, TryLockError, Value,
    WaitTimeoutError,
};

// ------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------

/// Bound on a survivor's acquisition after the holder died.
const TAKEOVER: Duration = Duration::from_secs(5);

fn join_all<R: Serialize + DeserializeOwned + 'static>(kids: &mut [Process<R>]) -> Vec<R> {
    kids.iter_mut().map(join).collect()
}

/// Prints how long a survivor took to take over a dead holder's lock (no assertion on it).
fn report_detection(what: &str, m: StartMethod, took: Duration) {
    println!(
        "OwnerDied detection: {what:<40} {m:<5?} {:>7.2} ms",
        took.as_secs_f64() * 1e3
    );
}

/// Word `i` (32-bit) of a primitive living in a `Shared`, through the segment's pointer.
fn word<T: ShmSafe>(s: &Shared<T>, i: usize) -> &AtomicU32 {
    assert!((i + 1) * 4 <= std::mem::size_of::<T>() && std::mem::align_of::<T>() >= 4);
    assert!(s.offset() + std::mem::size_of::<T>() <= s.segment().len());
    // SAFETY: in bounds and 4-aligned (checked above; the value is aligned for `T`);
    // the raw primitives are `#[repr(C)]` structs of `AtomicU32`/`AtomicU64` fields, and the
    // tests only address words that are whole `AtomicU32` fields, accessed atomically.
    unsafe { &*s.segment().as_ptr().add(s.offset()).cast::<AtomicU32>().add(i) }
}

/// Word `i` (32-bit) of a primitive reached through a handle's `raw()`.
fn word_in<T: ShmSafe>(prim: &T, i: usize) -> &AtomicU32 {
    assert!((i + 1) * 4 <= std::mem::size_of::<T>() && std::mem::align_of::<T>() >= 4);
    // SAFETY: as in `word`: in bounds, aligned, and an `AtomicU32` field (interior mutability,
    // so writing through a pointer derived from `&T` is allowed).
    unsafe { &*(prim as *const T).cast::<AtomicU32>().add(i) }
}

/// How many processes sleep in `Event::wait` now. `RawEvent` is `#[repr(C)] { flag,
/// generation, waiters, _pad }` (src/sync/raw_event.rs); a waiter counts itself only after
/// reading the generation it waits to see move, so once it is counted a `set` cannot miss it.
fn event_sleepers(ev: &Event) -> u32 {
    assert_eq!(std::mem::size_of::<RawEvent>(), 16);
    word_in(ev.raw(), 2).load(SeqCst)
}

/// Four shared counters for signalling between processes.
#[repr(C)]
#[derive(Default)]
struct Counters {
    a: AtomicU32,
    b: AtomicU32,
    c: AtomicU32,
    d: AtomicU32,
}
// SAFETY: repr(C) of atomics only.
unsafe impl ShmSafe for Counters {}

fn counters() -> Shared<Counters> {
    Shared::new(Counters::default()).unwrap()
}

// ------------------------------------------------------------------------------------------
// Mutual exclusion: a NON-atomic counter, read then written under the lock
// ------------------------------------------------------------------------------------------

const N: usize = 4;
const M: u64 = 2_000;

fn count_under_lock((lock, counter, go): (Lock, RawValue<u64>, Event)) {
    assert!(go.wait_timeout(LONG).is_ok(), "never told to go");
    for _ in 0..M {
        let _g = lock.lock_timeout(LONG).expect("lock");
        let x = counter.get();
        std::hint::spin_loop();
        counter.set(x + 1);
    }
}

/// Enters the `RLock` twice per increment (guard + guard, or guard + Python-style acquire);
/// returns the deepest level seen.
fn count_under_rlock((lock, counter, go): (RLock, RawValue<u64>, Event)) -> u32 {
    assert!(go.wait_timeout(LONG).is_ok(), "never told to go");
    let mut deepest = 0;
    for i in 0..M {
        let _outer = lock.lock_timeout(LONG).expect("outer level");
        if i % 2 == 0 {
            let _inner = lock.lock_timeout(LONG).expect("inner level (re-entry)");
            deepest = deepest.max(lock.depth());
            let x = counter.get();
            counter.set(x + 1);
        } else {
            lock.acquire().expect("inner acquire (re-entry)");
            deepest = deepest.max(lock.depth());
            let x = counter.get();
            counter.set(x + 1);
            lock.release().expect("inner release");
        }
    }
    assert_eq!(lock.depth(), 0);
    deepest
}

#[test]
fn lock_excludes_processes_on_a_plain_counter() {
    let _g = common::shared();
    for m in METHODS {
        let lock = Lock::new().unwrap();
        let counter = RawValue::new(0u64).unwrap();
        let go = Event::new().unwrap();
        let mut kids: Vec<_> = (0..N)
            .map(|_| {
                let args = (lock.clone(), counter.clone(), go.clone());
                start(m, count_under_lock, args)
            })
            .collect();
        go.set();
        join_all(&mut kids);
        assert_eq!(counter.get(), N as u64 * M, "{m:?}");
        assert!(!lock.is_locked());
    }
}

#[test]
fn lock_excludes_fork_closures() {
    let _g = common::shared();
    let lock = Lock::new().unwrap();
    let counter = RawValue::new(0u64).unwrap();
    let mut kids: Vec<_> = (0..N)
        .map(|_| {
            let (l, c) = (lock.clone(), counter.clone());
            Process::fork(move || {
                for _ in 0..M {
                    let _g = l.lock_timeout(LONG).expect("lock");
                    let x = c.get();
                    c.set(x + 1);
                }
            })
            .daemon(true)
            .start()
            .unwrap()
        })
        .collect();
    // The parent takes part too.
    for _ in 0..M {
        let _g = lock.lock_timeout(LONG).expect("lock");
        let x = counter.get();
        counter.set(x + 1);
    }
    join_all(&mut kids);
    assert_eq!(counter.get(), (N as u64 + 1) * M);
}

#[test]
fn rlock_entered_twice_excludes_processes_on_a_plain_counter() {
    let _g = common::shared();
    for m in METHODS {
        let lock = RLock::new().unwrap();
        let counter = RawValue::new(0u64).unwrap();
        let go = Event::new().unwrap();
        let mut kids: Vec<_> = (0..N)
            .map(|_| {
                let args = (lock.clone(), counter.clone(), go.clone());
                start(m, count_under_rlock, args)
            })
            .collect();
        go.set();
        let depths = join_all(&mut kids);
        assert_eq!(counter.get(), N as u64 * M, "{m:?}");
        assert!(depths.iter().all(|&d| d == 2), "{depths:?}");
        assert!(!lock.is_locked());
    }
}

/// Increments a `Value` M times: 0 = `update`, 1 = `get_lock()` + `get`/`set` (Python's
/// `with v.get_lock(): v.value += 1`, which re-enters the held lock), 2 = the data guard.
fn count_value((v, go, mode): (Value<u64>, Event, u8)) {
    assert!(go.wait_timeout(LONG).is_ok(), "never told to go");
    for _ in 0..M {
        match mode {
            0 => {
                v.update(|x| x + 1).expect("update");
            }
            1 => {
                let lk = v.get_lock();
                let _held = lk.lock().expect("get_lock");
                let x = v.get().expect("get while holding get_lock");
                v.set(x + 1).expect("set while holding get_lock");
            }
            _ => {
                *v.lock().expect("data guard") += 1;
            }
        }
    }
}

#[test]
fn value_update_get_lock_and_guard_exclude_processes() {
    let _g = common::shared();
    for m in METHODS {
        for mode in 0..3u8 {
            let v = Value::new(0u64).unwrap();
            let go = Event::new().unwrap();
            let mut kids: Vec<_> = (0..N)
                .map(|_| {
                    let args = (v.clone(), go.clone(), mode);
                    start(m, count_value, args)
                })
                .collect();
            go.set();
            join_all(&mut kids);
            let v2 = v.clone();
            let total = bounded("Value::get", move || v2.get().expect("get"));
            assert_eq!(total, N as u64 * M, "{m:?} mode {mode}");
        }
    }
}

#[test]
fn value_modes_mixed_across_processes() {
    let _g = common::shared();
    // All three access paths at once, from processes of both start methods.
    let v = Value::new(0u64).unwrap();
    let go = Event::new().unwrap();
    let mut kids: Vec<_> = (0..6u8)
        .map(|i| {
            let args = (v.clone(), go.clone(), i % 3);
            start(METHODS[usize::from(i) % 2], count_value, args)
        })
        .collect();
    go.set();
    join_all(&mut kids);
    let v2 = v.clone();
    assert_eq!(bounded("Value::get", move || v2.get().expect("get")), 6 * M);
}

// ------------------------------------------------------------------------------------------
// Lock and RLock ownership rules
// ------------------------------------------------------------------------------------------

fn lock_release(lock: Lock) -> String {
    format!("{:?}", lock.release())
}

fn lock_try_acquire(lock: Lock) -> bool {
    match lock.try_acquire() {
        Ok(()) => {
            lock.release().expect("release");
            true
        }
        Err(TryLockError::WouldBlock) => false,
        Err(e) => panic!("try_acquire: {e:?}"),
    }
}

#[test]
fn lock_is_a_binary_semaphore_across_processes() {
    let _g = common::shared();
    for m in METHODS {
        let lock = Lock::new().unwrap();
        lock.acquire().unwrap();
        // Not reentrant: the holding thread itself is refused.
        assert!(matches!(lock.try_lock(), Err(TryLockError::WouldBlock)));
        assert_eq!(format!("{:?}", lock.try_acquire()), "Err(WouldBlock)");
        assert_eq!(format!("{:?}", lock.acquire_timeout(ms(15))), "Err(Timeout)");
        // Another process sees it held...
        assert!(!join(&mut start(m, lock_try_acquire, lock.clone())));
        // ...and may release it (Python's Lock).
        assert_eq!(join(&mut start(m, lock_release, lock.clone())), "Ok(())");
        assert!(!lock.is_locked());
        assert!(join(&mut start(m, lock_try_acquire, lock.clone())));
        // Releasing a free lock is refused, here and there.
        assert_eq!(lock.release(), Err(ReleaseError::NotLocked));
        assert_eq!(join(&mut start(m, lock_release, lock.clone())), "Err(NotLocked)");
        lock.try_acquire().unwrap();
        lock.release().unwrap();
    }
}

/// What a process that does not own a held `RLock` may do with it.
fn rlock_stranger(lock: RLock) -> Vec<String> {
    vec![
        format!("{:?}", lock.release()),
        format!("{:?}", lock.try_acquire()),
        format!("{:?}", lock.acquire_timeout(ms(25))),
        format!("{:?}", lock.try_lock().map(drop)),
        lock.depth().to_string(),
        lock.is_locked().to_string(),
    ]
}

/// Levels taken and given back in a child.
fn rlock_levels(lock: RLock) -> Vec<String> {
    let mut out = vec![format!("{:?}", lock.release())];
    let outer = lock.lock_timeout(LONG).expect("outer");
    let inner = lock.lock_timeout(LONG).expect("inner");
    lock.acquire().expect("third level");
    out.push(lock.depth().to_string());
    lock.release().expect("third level");
    drop(inner);
    out.push(lock.depth().to_string());
    drop(outer);
    out.push(lock.is_locked().to_string());
    out.push(format!("{:?}", lock.release()));
    out
}

#[test]
fn rlock_reentrancy_and_ownership_across_processes() {
    let _g = common::shared();
    for m in METHODS {
        let lock = RLock::new().unwrap();
        let outer = lock.lock_timeout(LONG).unwrap();
        let inner = lock.lock_timeout(LONG).unwrap();
        lock.acquire_timeout(ms(1)).unwrap();
        lock.try_acquire().unwrap();
        assert_eq!(lock.depth(), 4);
        let seen = join(&mut start(m, rlock_stranger, lock.clone()));
        assert_eq!(
            seen,
            [
                "Err(NotOwner)",
                "Err(WouldBlock)",
                "Err(Timeout)",
                "Err(WouldBlock)",
                "0",
                "true"
            ],
            "{m:?}"
        );
        // The stranger's refused release did not take a level away.
        assert_eq!(lock.depth(), 4);
        lock.release().unwrap();
        lock.release().unwrap();
        drop(inner);
        assert_eq!(lock.depth(), 1);
        assert!(lock.is_locked());
        drop(outer);
        assert!(!lock.is_locked());
        assert_eq!(lock.release(), Err(ReleaseError::NotLocked));

        let seen = join(&mut start(m, rlock_levels, lock.clone()));
        assert_eq!(
            seen,
            ["Err(NotLocked)", "3", "1", "false", "Err(NotLocked)"],
            "{m:?}"
        );
        assert!(!lock.is_locked());
    }
}

/// Whether `T: Send`, decided at compile time without requiring it: the by-value candidate
/// (`SendYes` on `Probe<T>`) applies only when `T: Send`; otherwise method lookup goes on to the
/// auto-referenced one (`SendNo` on `&Probe<T>`).
struct Probe<T>(std::marker::PhantomData<T>);
trait SendYes {
    fn is_send(&self) -> bool {
        true
    }
}
impl<T: Send> SendYes for Probe<T> {}
trait SendNo {
    fn is_send(&self) -> bool {
        false
    }
}
impl<T> SendNo for &Probe<T> {}
macro_rules! is_send {
    ($t:ty) => {
        (&Probe::<$t>(std::marker::PhantomData)).is_send()
    };
}

fn rlock_try(lock: RLock) -> bool {
    match lock.try_acquire() {
        Ok(()) => {
            lock.release().expect("release");
            true
        }
        Err(TryLockError::WouldBlock) => false,
        Err(e) => panic!("try_acquire: {e:?}"),
    }
}

#[test]
fn lock_guard_may_be_released_from_another_thread() {
    let _g = common::shared();
    // A Lock is a binary semaphore: its guard may travel, and dropping it anywhere releases.
    assert!(is_send!(shmproc::LockGuard<'static>));
    assert!(
        !is_send!(std::sync::MutexGuard<'static, u8>),
        "the probe tells both ways"
    );
    let lock = Lock::new().unwrap();
    let g = lock.lock_timeout(LONG).unwrap();
    std::thread::scope(|s| {
        s.spawn(move || drop(g));
    });
    assert!(!lock.is_locked());
    assert!(join(&mut start(METHODS[0], lock_try_acquire, lock.clone())));
    // An RLock released on its own thread is free for other processes too.
    let rl = RLock::new().unwrap();
    drop(rl.lock_timeout(LONG).unwrap());
    assert!(join(&mut start(METHODS[1], rlock_try, rl.clone())));
}

#[test]
fn reentrant_guards_cannot_leave_their_thread() {
    let _g = common::shared();
    assert!(!is_send!(shmproc::RLockGuard<'static>), "RLockGuard is Send");
    assert!(!is_send!(shmproc::ValueGuard<'static, u64>), "ValueGuard is Send");
    assert!(!is_send!(shmproc::ArrayGuard<'static, u64>), "ArrayGuard is Send");
}

// ------------------------------------------------------------------------------------------
// Semaphores
// ------------------------------------------------------------------------------------------

/// The two semaphore handles, for generic children.
trait Units: Serialize + DeserializeOwned + 'static {
    fn units_handle(&self) -> Self;
    fn units_acquire(&self, timeout: Duration) -> bool;
    fn units_release(&self) -> Result<(), ReleaseError>;
    fn units_value(&self) -> u32;
}

macro_rules! units {
    ($t:ty) => {
        impl Units for $t {
            fn units_handle(&self) -> Self {
                self.clone()
            }
            fn units_acquire(&self, timeout: Duration) -> bool {
                match self.acquire_timeout(timeout) {
                    Ok(()) => true,
                    Err(AcquireTimeoutError::Timeout) => false,
                    Err(e) => panic!("acquire: {e:?}"),
                }
            }
            fn units_release(&self) -> Result<(), ReleaseError> {
                self.release()
            }
            fn units_value(&self) -> u32 {
                self.value()
            }
        }
    };
}
units!(Semaphore);
units!(BoundedSemaphore);

/// Shared gauge of a semaphore's users: a, ready; b, inside now; c, most inside at once;
/// d, entries.
fn crowd<S: Units>((sem, gauge, go): (S, Shared<Counters>, Event)) {
    gauge.a.fetch_add(1, SeqCst);
    assert!(go.wait_timeout(LONG).is_ok(), "never told to go");
    for _ in 0..4 {
        assert!(sem.units_acquire(LONG), "acquire timed out");
        let now = gauge.b.fetch_add(1, SeqCst) + 1;
        gauge.c.fetch_max(now, SeqCst);
        gauge.d.fetch_add(1, SeqCst);
        std::thread::sleep(ms(3));
        gauge.b.fetch_sub(1, SeqCst);
        sem.units_release().expect("release");
    }
}

fn crowd_run<S: Units>(m: StartMethod, sem: S, k: u32) {
    const KIDS: u32 = 6;
    let gauge = counters();
    let go = Event::new().unwrap();
    let mut kids: Vec<_> = (0..KIDS)
        .map(|_| {
            let args = (sem.units_handle(), gauge.clone(), go.clone());
            start(m, crowd::<S>, args)
        })
        .collect();
    // Everyone is at the start line before the gate opens, so they really contend.
    assert!(eventually(LONG, || gauge.a.load(SeqCst) == KIDS));
    go.set();
    join_all(&mut kids);
    let most = gauge.c.load(SeqCst);
    assert!(most <= k, "{m:?}: {most} processes inside a semaphore of {k}");
    assert_eq!(most, k, "{m:?}: never {k} inside at once with {KIDS} contenders");
    assert_eq!(gauge.d.load(SeqCst), KIDS * 4);
    assert_eq!(gauge.b.load(SeqCst), 0);
    assert_eq!(sem.units_value(), k);
}

#[test]
fn semaphore_bounds_concurrency_across_processes() {
    let _g = common::shared();
    for m in METHODS {
        crowd_run(m, Semaphore::new(1).unwrap(), 1);
        crowd_run(m, Semaphore::new(3).unwrap(), 3);
        crowd_run(m, BoundedSemaphore::new(2).unwrap(), 2);
    }
}

fn release_n<S: Units>((sem, n): (S, u32)) -> Vec<String> {
    (0..n).map(|_| format!("{:?}", sem.units_release())).collect()
}

#[test]
fn bounded_semaphore_refuses_over_release_from_another_process() {
    let _g = common::shared();
    for m in METHODS {
        let b = BoundedSemaphore::new(2).unwrap();
        b.acquire().unwrap();
        b.acquire().unwrap();
        assert_eq!(b.value(), 0);
        let seen = join(&mut start(
            m,
            release_n::<BoundedSemaphore>,
            (b.units_handle(), 3),
        ));
        assert_eq!(seen, ["Ok(())", "Ok(())", "Err(TooManyReleases)"], "{m:?}");
        assert_eq!(b.value(), 2);
        assert_eq!(b.release(), Err(ReleaseError::TooManyReleases));
        assert_eq!(b.value(), 2);

        // An unbounded semaphore accepts the same releases.
        let s = Semaphore::new(2).unwrap();
        let seen = join(&mut start(m, release_n::<Semaphore>, (s.units_handle(), 3)));
        assert_eq!(seen, ["Ok(())", "Ok(())", "Ok(())"]);
        assert_eq!(s.value(), 5);
    }
}

#[test]
fn bounded_semaphore_of_zero_refuses_any_release() {
    let _g = common::shared();
    let b = BoundedSemaphore::new(0).unwrap();
    assert_eq!(b.release(), Err(ReleaseError::TooManyReleases));
    assert_eq!(b.value(), 0);
}

fn sem_acquire((sem, wait_ms): (Semaphore, u64)) -> bool {
    match sem.acquire_timeout(ms(wait_ms)) {
        Ok(()) => true,
        Err(AcquireTimeoutError::Timeout) => false,
        Err(e) => panic!("acquire: {e:?}"),
    }
}

fn sem_release_after((sem, delay_ms): (Semaphore, u64)) {
    std::thread::sleep(ms(delay_ms));
    sem.release().expect("release");
}

#[test]
fn semaphore_try_acquire_timeouts_and_wakeups_across_processes() {
    let _g = common::shared();
    for m in METHODS {
        let s = Semaphore::new(1).unwrap();
        s.try_acquire().unwrap();
        assert_eq!(format!("{:?}", s.try_acquire()), "Err(WouldBlock)");
        let t0 = Instant::now();
        assert_eq!(format!("{:?}", s.acquire_timeout(ms(40))), "Err(Timeout)");
        assert!(t0.elapsed() >= ms(40));
        // A child's timed acquire fails the same way.
        assert!(!join(&mut start(m, sem_acquire, (s.clone(), 30))));

        // A release from another process wakes a waiter here.
        let mut giver = start(m, sem_release_after, (s.clone(), 50));
        s.acquire_timeout(LONG).unwrap();
        join(&mut giver);
        assert_eq!(s.value(), 0);

        // And releases here wake waiters in other processes, one unit each.
        let mut waiters: Vec<_> = (0..3)
            .map(|_| start(m, sem_acquire, (s.clone(), LONG.as_millis() as u64)))
            .collect();
        for _ in 0..3 {
            s.release().unwrap();
        }
        assert!(join_all(&mut waiters).into_iter().all(|got| got));
        assert_eq!(s.value(), 0);
    }
}

// ------------------------------------------------------------------------------------------
// Event
// ------------------------------------------------------------------------------------------

fn event_waiter((ev, arrived, forever): (Event, Shared<AtomicU32>, bool)) -> bool {
    arrived.fetch_add(1, SeqCst);
    if forever {
        ev.wait();
        true
    } else {
        ev.wait_timeout(LONG).is_ok()
    }
}

fn event_timed_wait((ev, wait_ms): (Event, u64)) -> (bool, u64) {
    let t0 = Instant::now();
    let set = ev.wait_timeout(ms(wait_ms)).is_ok();
    (set, t0.elapsed().as_micros() as u64)
}

#[test]
fn event_set_releases_every_waiting_process() {
    let _g = common::shared();
    for m in METHODS {
        let ev = Event::new().unwrap();
        let arrived = Shared::new(AtomicU32::new(0)).unwrap();
        let mut kids: Vec<_> = (0..4)
            .map(|i| {
                let args = (ev.clone(), arrived.clone(), i % 2 == 0);
                start(m, event_waiter, args)
            })
            .collect();
        assert!(eventually(LONG, || arrived.load(SeqCst) == 4));
        assert!(
            eventually(LONG, || event_sleepers(&ev) == 4),
            "{m:?}: waiters never slept"
        );
        assert!(!ev.is_set());
        ev.set();
        assert_eq!(join_all(&mut kids), [true; 4], "{m:?}");
        assert!(ev.is_set());
        // Set stays set: a late waiter returns at once.
        assert!(join(&mut start(m, event_timed_wait, (ev.clone(), 1))).0);
        ev.clear();
        assert!(!ev.is_set());
    }
}

#[test]
fn event_wait_timeout_on_unset_event_is_timeout() {
    let _g = common::shared();
    for m in METHODS {
        let ev = Event::new().unwrap();
        let t0 = Instant::now();
        assert_eq!(ev.wait_timeout(ms(30)), Err(WaitTimeoutError::Timeout));
        assert!(t0.elapsed() >= ms(30));
        let (set, micros) = join(&mut start(m, event_timed_wait, (ev.clone(), 40)));
        assert!(!set);
        assert!(micros >= 40_000, "{m:?}: returned after {micros} µs");
    }
}

#[test]
fn event_set_then_clear_still_releases_those_already_waiting() {
    let _g = common::shared();
    for m in METHODS {
        let ev = Event::new().unwrap();
        let arrived = Shared::new(AtomicU32::new(0)).unwrap();
        let mut kids: Vec<_> = (0..3)
            .map(|_| {
                let args = (ev.clone(), arrived.clone(), false);
                start(m, event_waiter, args)
            })
            .collect();
        assert!(eventually(LONG, || arrived.load(SeqCst) == 3));
        assert!(
            eventually(LONG, || event_sleepers(&ev) == 3),
            "{m:?}: waiters never slept"
        );
        std::thread::sleep(ms(50));
        ev.set();
        ev.clear();
        assert_eq!(join_all(&mut kids), [true; 3], "{m:?}: a pulse was missed");
        assert!(!ev.is_set());
        // Someone arriving after the pulse waits for the next one.
        let (set, _) = join(&mut start(m, event_timed_wait, (ev.clone(), 30)));
        assert!(!set);
    }
}

// ------------------------------------------------------------------------------------------
// Condition
// ------------------------------------------------------------------------------------------

/// Stock shared by producers and consumers: a, items (read then written under the
/// condition's lock); b, producers finished.
fn producer((c, stock, items): (Condition, Shared<Counters>, u32)) {
    for _ in 0..items {
        let g = c.lock_timeout(LONG).expect("lock");
        let x = stock.a.load(SeqCst);
        stock.a.store(x + 1, SeqCst);
        c.notify(&g, 1).expect("notify");
    }
    let g = c.lock_timeout(LONG).expect("lock");
    stock.b.fetch_add(1, SeqCst);
    c.notify_all(&g).expect("notify_all");
}

fn consumer((c, stock, producers): (Condition, Shared<Counters>, u32)) -> u32 {
    let mut got = 0;
    loop {
        let g = c.lock_timeout(LONG).expect("lock");
        let _g = match c.wait_for_timeout(
            g,
            || stock.a.load(SeqCst) > 0 || stock.b.load(SeqCst) == producers,
            LONG,
        ) {
            Ok(g) => g,
            Err(CondWaitTimeoutError::Timeout(_)) => panic!("wait_for timed out: a lost wake-up?"),
            Err(e) => panic!("wait_for: {e:?}"),
        };
        let x = stock.a.load(SeqCst);
        if x == 0 {
            return got;
        }
        stock.a.store(x - 1, SeqCst);
        got += 1;
    }
}

#[test]
fn condition_producers_and_consumers_across_processes() {
    let _g = common::shared();
    for m in METHODS {
        const ITEMS: u32 = 300;
        let c = Condition::new().unwrap();
        let stock = counters();
        let mut consumers: Vec<_> = (0..2)
            .map(|_| start(m, consumer, (c.clone(), stock.clone(), 2)))
            .collect();
        let mut producers: Vec<_> = (0..2)
            .map(|_| start(m, producer, (c.clone(), stock.clone(), ITEMS)))
            .collect();
        join_all(&mut producers);
        let got = join_all(&mut consumers);
        assert_eq!(got.iter().sum::<u32>(), 2 * ITEMS, "{m:?}: {got:?}");
        assert_eq!(stock.a.load(SeqCst), 0);
    }
}

/// Waiting or notifying with the guard of another condition.
fn condition_wrong_guard((c1, c2): (Condition, Condition)) -> Vec<String> {
    let g2 = c2.lock_timeout(LONG).expect("lock c2");
    let mut out = Vec::new();
    // Each refused wait hands the guard back.
    let e = c1.wait(g2).unwrap_err();
    out.push(format!("{e:?}"));
    let g2 = e.into_guard().expect("guard handed back");
    let e = c1.wait_timeout(g2, ms(10)).unwrap_err();
    out.push(format!("{e:?}"));
    let g2 = e.into_guard().expect("guard handed back");
    let e = c1.wait_for_timeout(g2, || false, ms(10)).unwrap_err();
    out.push(format!("{e:?}"));
    let g2 = e.into_guard().expect("guard handed back");
    let e = c1.wait_while(g2, || true).unwrap_err();
    out.push(format!("{e:?}"));
    let g2 = e.into_guard().expect("guard handed back");
    out.push(format!("{:?}", c1.notify(&g2, 1)));
    out.push(format!("{:?}", c1.notify_all(&g2)));
    // The guard still works for its own condition.
    let e = c2.wait_timeout(g2, ms(10)).unwrap_err();
    out.push(format!("{e:?}"));
    let g2 = e.into_guard().expect("guard handed back");
    out.push(format!("{:?}", c2.notify_all(&g2)));
    out
}

const WRONG_GUARD: [&str; 8] = [
    "NotOwner(..)",
    "NotOwner(..)",
    "NotOwner(..)",
    "NotOwner(..)",
    "Err(NotOwner)",
    "Err(NotOwner)",
    "Timeout(..)",
    "Ok(())",
];

fn cond_try_lock((c, wait_ms): (Condition, u64)) -> String {
    format!("{:?}", c.lock_timeout(ms(wait_ms)).map(drop))
}

#[test]
fn condition_refuses_the_guard_of_another_condition() {
    let _g = common::shared();
    let c1 = Condition::new().unwrap();
    let c2 = Condition::new().unwrap();
    let args = (c1.clone(), c2.clone());
    assert_eq!(
        bounded("wrong guard", move || condition_wrong_guard(args)),
        WRONG_GUARD
    );
    for m in METHODS {
        let args = (c1.clone(), c2.clone());
        assert_eq!(
            join(&mut start(m, condition_wrong_guard, args)),
            WRONG_GUARD,
            "{m:?}"
        );
    }
    // Nothing was left locked by the refused calls.
    for c in [&c1, &c2] {
        assert_eq!(
            join(&mut start(METHODS[0], cond_try_lock, (c.clone(), 1))),
            "Ok(())"
        );
    }
}

#[test]
fn condition_accepts_a_guard_from_another_handle_to_the_same_condition() {
    let _g = common::shared();
    let c = Condition::new().unwrap();
    let same = c.clone();
    let g = same.lock_timeout(LONG).unwrap();
    let e = c.wait_timeout(g, ms(5)).unwrap_err();
    assert!(matches!(e, CondWaitTimeoutError::Timeout(_)), "{e:?}");
    let g = e.into_guard().unwrap();
    assert_eq!(c.notify_all(&g), Ok(()));
}

fn cond_timed_wait((c, wait_ms): (Condition, u64)) -> (String, u64) {
    let g = c.lock_timeout(LONG).expect("lock");
    let t0 = Instant::now();
    let r = c.wait_timeout(g, ms(wait_ms));
    (format!("{r:?}"), t0.elapsed().as_micros() as u64)
}

#[test]
fn condition_wait_timeout_is_timeout_and_holds_the_lock_again() {
    let _g = common::shared();
    for m in METHODS {
        let c = Condition::new().unwrap();
        let g = c.lock_timeout(LONG).unwrap();
        let t0 = Instant::now();
        let e = c.wait_timeout(g, ms(30)).unwrap_err();
        assert!(matches!(e, CondWaitTimeoutError::Timeout(_)), "{e:?}");
        let g = e.into_guard().unwrap();
        assert!(t0.elapsed() >= ms(30));
        let t0 = Instant::now();
        let e = c.wait_for_timeout(g, || false, ms(25)).unwrap_err();
        assert!(matches!(e, CondWaitTimeoutError::Timeout(_)), "{e:?}");
        let g = e.into_guard().unwrap();
        assert!(t0.elapsed() >= ms(25));
        // The lock is held again after the timed-out wait.
        assert_eq!(
            join(&mut start(m, cond_try_lock, (c.clone(), 20))),
            "Err(Timeout)"
        );
        drop(g);
        let (r, micros) = join(&mut start(m, cond_timed_wait, (c.clone(), 35)));
        assert_eq!(r, "Err(Timeout(..))", "{m:?}");
        assert!(micros >= 35_000, "{m:?}: returned after {micros} µs");
    }
}

fn cond_set_flag((c, flag): (Condition, Shared<AtomicU32>)) {
    let g = c.lock_timeout(LONG).expect("lock");
    flag.store(1, SeqCst);
    c.notify_all(&g).expect("notify_all");
}

#[test]
fn condition_wait_releases_every_level_and_restores_them() {
    let _g = common::shared();
    for m in METHODS {
        let c = Condition::new().unwrap();
        let flag = Shared::new(AtomicU32::new(0)).unwrap();
        let g1 = c.lock_timeout(LONG).unwrap();
        let g2 = c.lock_timeout(LONG).unwrap(); // re-entered: two levels
        let mut setter = start(m, cond_set_flag, (c.clone(), flag.clone()));
        // The setter can only get in if `wait` gives up both levels.
        let g2 = c.wait_for_timeout(g2, || flag.load(SeqCst) == 1, LONG);
        let g2 = g2.unwrap_or_else(|e| panic!("{m:?}: {e:?}"));
        join(&mut setter);
        drop(g2);
        // One level is still held.
        assert_eq!(
            join(&mut start(m, cond_try_lock, (c.clone(), 20))),
            "Err(Timeout)"
        );
        drop(g1);
        assert_eq!(join(&mut start(m, cond_try_lock, (c.clone(), 10_000))), "Ok(())");
    }
}

// ------------------------------------------------------------------------------------------
// Barrier
// ------------------------------------------------------------------------------------------

fn barrier_rounds((b, rounds): (Barrier, u32)) -> Vec<usize> {
    (0..rounds)
        .map(|_| b.wait_timeout(LONG).expect("barrier round"))
        .collect()
}

fn barrier_wait_once((b, wait_ms): (Barrier, u64)) -> String {
    format!("{:?}", b.wait_timeout(ms(wait_ms)))
}

/// Parent + `kids` children meet `rounds` times; each round's indices are 0..parties.
fn barrier_full_rounds(m: StartMethod, b: &Barrier, kids: u32, rounds: u32) {
    let mut children: Vec<_> = (0..kids)
        .map(|_| start(m, barrier_rounds, (b.clone(), rounds)))
        .collect();
    let mine: Vec<usize> = (0..rounds)
        .map(|_| b.wait_timeout(LONG).expect("parent's round"))
        .collect();
    let theirs = join_all(&mut children);
    for r in 0..rounds as usize {
        let mut idx: Vec<usize> = theirs.iter().map(|v| v[r]).chain([mine[r]]).collect();
        idx.sort_unstable();
        assert_eq!(idx, (0..=kids as usize).collect::<Vec<_>>(), "{m:?}: round {r}");
    }
    assert_eq!(b.n_waiting(), 0);
    assert!(!b.is_broken());
}

#[test]
fn barrier_rounds_give_every_index_once() {
    let _g = common::shared();
    for m in METHODS {
        let b = Barrier::new(4).unwrap();
        assert_eq!(b.parties(), 4);
        barrier_full_rounds(m, &b, 3, 6);
        let solo = Barrier::new(1).unwrap();
        assert_eq!(solo.wait_timeout(ms(1)), Ok(0));
        assert_eq!(solo.wait(), Ok(0));
    }
}

#[test]
fn barrier_timeout_breaks_it_for_everyone_until_reset() {
    let _g = common::shared();
    for m in METHODS {
        let b = Barrier::new(4).unwrap();
        let mut kids: Vec<_> = (0..2)
            .map(|_| start(m, barrier_wait_once, (b.clone(), 10_000)))
            .collect();
        assert!(eventually(LONG, || b.n_waiting() == 2));
        // The fourth party never comes.
        let t0 = Instant::now();
        assert_eq!(
            b.wait_timeout(ms(150)),
            Err(BarrierTimeoutError::Timeout),
            "{m:?}"
        );
        assert!(t0.elapsed() >= ms(150));
        assert_eq!(join_all(&mut kids), ["Err(Broken)", "Err(Broken)"], "{m:?}");
        assert!(b.is_broken());
        assert_eq!(b.wait_timeout(LONG), Err(BarrierTimeoutError::Broken));
        assert_eq!(
            join(&mut start(m, barrier_wait_once, (b.clone(), 10_000))),
            "Err(Broken)"
        );
        b.reset().unwrap();
        assert!(!b.is_broken());
        barrier_full_rounds(m, &b, 3, 2);
    }
}

#[test]
fn barrier_abort_breaks_waiters_and_reset_repairs() {
    let _g = common::shared();
    for m in METHODS {
        let b = Barrier::new(3).unwrap();
        let mut kids: Vec<_> = (0..2)
            .map(|_| start(m, barrier_wait_once, (b.clone(), 10_000)))
            .collect();
        assert!(eventually(LONG, || b.n_waiting() == 2));
        b.abort().unwrap();
        assert_eq!(join_all(&mut kids), ["Err(Broken)", "Err(Broken)"], "{m:?}");
        assert!(b.is_broken());
        assert_eq!(b.wait_timeout(LONG), Err(BarrierTimeoutError::Broken));
        b.reset().unwrap();
        barrier_full_rounds(m, &b, 2, 2);
    }
}

#[test]
fn barrier_reset_while_waiting_breaks_those_waiters_only() {
    let _g = common::shared();
    for m in METHODS {
        let b = Barrier::new(3).unwrap();
        let mut kids: Vec<_> = (0..2)
            .map(|_| start(m, barrier_wait_once, (b.clone(), 10_000)))
            .collect();
        assert!(eventually(LONG, || b.n_waiting() == 2));
        b.reset().unwrap();
        assert_eq!(join_all(&mut kids), ["Err(Broken)", "Err(Broken)"], "{m:?}");
        // Reset leaves it usable at once.
        assert!(!b.is_broken());
        assert_eq!(b.n_waiting(), 0);
        barrier_full_rounds(m, &b, 2, 3);
    }
}

fn signal(p: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(p as i32), sig).expect("signal the child");
}

/// Resets the barrier over and over (each call takes and releases its internal lock) until
/// `stop` is set.
fn barrier_reset_loop((b, stop): (Barrier, Shared<AtomicU32>)) -> u64 {
    let mut n = 0;
    while stop.load(SeqCst) == 0 {
        b.reset().expect("reset");
        n += 1;
    }
    n
}

fn hang(_: ()) {
    sleep_forever()
}

/// Runs `b.wait_timeout(timeout)` on a helper thread; `None` if it is still blocked after
/// `bound` (then `unstick` runs, so the thread can finish, and the caller fails the test).
fn timed_wait_returns(
    b: &Barrier,
    timeout: Duration,
    bound: Duration,
    unstick: impl FnOnce(),
) -> Option<String> {
    let b2 = b.clone();
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        let _ = tx.send(format!("{:?}", b2.wait_timeout(timeout)));
    });
    let r = rx.recv_timeout(bound).ok();
    if r.is_none() {
        unstick();
    }
    t.join().unwrap();
    r
}

/// `wait_timeout` honours its deadline on the barrier's internal lock too: with the lock held
/// by a peer that is stopped inside `reset` (SIGSTOP), and with a lock word that names a live
/// thread (corrupted memory), it returns `Timeout` while the holder is still stopped / alive.
/// The timed-out wait breaks the barrier once the stopped holder releases the lock.
#[test]
fn barrier_wait_timeout_honours_its_deadline_on_the_internal_lock() {
    let _g = common::shared();
    use nix::sys::signal::Signal;
    for m in METHODS {
        // A peer frozen while it holds the internal lock.
        let b = Barrier::new(2).unwrap();
        let stop = Shared::new(AtomicU32::new(0)).unwrap();
        let mut peer = start(m, barrier_reset_loop, (b.clone(), stop.clone()));
        let lock_word = word_in(b.raw(), 0);
        let mut tries = 0;
        loop {
            tries += 1;
            assert!(tries < 10_000, "{m:?}: never caught the peer inside the lock");
            signal(peer.pid(), Signal::SIGSTOP);
            assert!(eventually(LONG, || common::proc_state(peer.pid()) == Some('T')));
            if lock_word.load(SeqCst) != 0 {
                break;
            }
            signal(peer.pid(), Signal::SIGCONT);
            std::thread::sleep(Duration::from_micros(50 + (tries % 7) * 30));
        }
        assert!(!b.is_broken());
        let pid = peer.pid();
        let r = timed_wait_returns(&b, ms(100), ms(10_000), || signal(pid, Signal::SIGCONT));
        assert_eq!(
            r.as_deref(),
            Some("Err(Timeout)"),
            "{m:?}: wait_timeout(100 ms) still blocked after 10 s on a lock held by a stopped peer"
        );
        assert_eq!(
            common::proc_state(peer.pid()),
            Some('T'),
            "{m:?}: the peer is still stopped"
        );
        stop.store(1, SeqCst);
        signal(peer.pid(), Signal::SIGCONT);
        assert!(join(&mut peer) > 0);
        // The peer's reset finished, then its release carried out the timed-out wait's break.
        // The peer's release carried out the timed-out wait's break of round 0: it ended,
        // broken. (`RawBarrier` is `#[repr(C)] { lock: RawLock (4 words), generation, count,
        // parties, broken, outcomes, pending }`; the peer's resets never end a round, as no
        // party waits.) Whether `broken` is still set depends on where the peer was stopped:
        // in the middle of its `reset`, the break comes first and the reset then repairs it.
        assert_eq!(word_in(b.raw(), 4).load(SeqCst), 1, "{m:?}: round 0 never ended");
        assert_eq!(
            word_in(b.raw(), 8).load(SeqCst) & 1,
            1,
            "{m:?}: round 0 was not broken"
        );
        assert_eq!(
            word_in(b.raw(), 9).load(SeqCst),
            0,
            "{m:?}: the request is left pending"
        );
        b.reset().unwrap();
        barrier_full_rounds(m, &b, 1, 2);

        // A lock word naming a live thread that never releases it (corrupted memory).
        let b = Barrier::new(2).unwrap();
        let mut holder = start(m, hang, ());
        word_in(b.raw(), 0).store(holder.pid(), SeqCst);
        let pid = holder.pid();
        let r = timed_wait_returns(&b, ms(100), ms(10_000), || {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
        });
        assert_eq!(
            r.as_deref(),
            Some("Err(Timeout)"),
            "{m:?}: a live-looking lock word"
        );
        assert!(!common::is_dead(holder.pid()));
        // Once the "holder" is gone, the next locker takes over and the barrier is broken.
        kill_and_reap(&mut holder);
        assert_eq!(b.wait_timeout(LONG), Err(BarrierTimeoutError::Broken), "{m:?}");
        b.reset().unwrap();
        barrier_full_rounds(m, &b, 1, 1);
    }
}

#[test]
fn barrier_waiter_of_an_aborted_round_gets_broken_even_when_it_runs_late() {
    let _g = common::shared();
    use nix::sys::signal::Signal;
    for m in METHODS {
        let b = Barrier::new(2).unwrap();
        let mut late = start(m, barrier_wait_once, (b.clone(), 10_000));
        assert!(eventually(LONG, || b.n_waiting() == 1));
        std::thread::sleep(ms(20));
        // Freeze the waiter (as a long preemption would) while its round is aborted, the
        // barrier reset, and a later round broken by a timeout. On a helper thread, and the
        // waiter is thawed after at most 2 s either way: a fixed barrier may make those calls
        // wait until the frozen waiter has left its round.
        signal(late.pid(), Signal::SIGSTOP);
        let b2 = b.clone();
        let (tx, rx) = mpsc::channel();
        let meddler = std::thread::spawn(move || {
            b2.abort().unwrap();
            b2.reset().unwrap();
            let _ = b2.wait_timeout(ms(20));
            b2.reset().unwrap();
            let _ = tx.send(());
        });
        let _ = rx.recv_timeout(ms(2_000));
        signal(late.pid(), Signal::SIGCONT);
        bounded("abort/reset/wait/reset", move || meddler.join().unwrap());
        assert_eq!(join(&mut late), "Err(Broken)", "{m:?}: its round was aborted");
    }
}

// ------------------------------------------------------------------------------------------
// Array and Value
// ------------------------------------------------------------------------------------------

const PART: usize = 16;

/// Fills part `part` of the array: the first half through the guard, the rest with `set`.
fn fill_part((a, part): (Array<u64>, usize)) {
    let base = part * PART;
    {
        let mut g = a.lock().expect("guard");
        for (i, x) in g[base..base + PART / 2].iter_mut().enumerate() {
            *x = ((base + i) * 10) as u64;
        }
    }
    for i in base + PART / 2..base + PART {
        a.set(i, (i * 10) as u64).expect("set");
    }
}

#[test]
fn array_children_fill_disjoint_ranges() {
    let _g = common::shared();
    for m in METHODS {
        let a = Array::<u64>::new(N * PART).unwrap();
        let mut kids: Vec<_> = (0..N)
            .map(|part| start(m, fill_part, (a.clone(), part)))
            .collect();
        join_all(&mut kids);
        let want: Vec<u64> = (0..N * PART).map(|i| (i * 10) as u64).collect();
        let a2 = a.clone();
        assert_eq!(
            bounded("Array::to_vec", move || a2.to_vec().expect("to_vec")),
            want,
            "{m:?}"
        );
    }
}

/// The same-thread rules of `Array`, as seen by whoever runs it.
fn array_rules(a: Array<u32>) -> Vec<String> {
    let n = a.len();
    let mut out = vec![
        format!("{:?}", a.get(n)),
        format!("{:?}", a.get(usize::MAX)),
        format!("{:?}", a.set(n, 1)),
    ];
    {
        let mut g = a.lock().expect("guard");
        g[0] = 7;
        out.push(format!("{:?}", a.lock().map(drop)));
        out.push(format!("{:?}", a.get(0)));
        out.push(format!("{:?}", a.set(0, 1)));
        out.push(format!("{:?}", a.to_vec()));
        out.push(g[0].to_string()); // the refused calls did not release the guard's lock
    }
    {
        let lk = a.get_lock();
        let _held = lk.lock().expect("get_lock");
        out.push(format!("{:?}", a.get(0)));
        out.push(format!("{:?}", a.set(1, 8)));
        let g = a.lock().expect("a guard while holding get_lock");
        out.push(format!("{:?}", a.get(1)));
        drop(g);
        out.push(format!("{:?}", a.get(1)));
    }
    // Every level is gone.
    out.push(format!("{:?}", a.get_lock().release()));
    out
}

const ARRAY_RULES: [&str; 13] = [
    "Ok(None)",
    "Ok(None)",
    "Err(Index(IndexError { index: 5, count: 1, len: 5 }))",
    "Err(WouldDeadlock)",
    "Err(WouldDeadlock)",
    "Err(Lock(WouldDeadlock))",
    "Err(WouldDeadlock)",
    "7",
    "Ok(Some(7))",
    "Ok(())",
    "Err(WouldDeadlock)",
    "Ok(Some(8))",
    "Err(NotLocked)",
];

#[test]
fn array_bounds_and_same_thread_refusals() {
    let _g = common::shared();
    let empty = Array::<u8>::new(0).unwrap();
    assert!(empty.is_empty());
    let e2 = empty.clone();
    let seen = bounded("empty array", move || {
        format!("{:?} {:?} {:?}", e2.get(0), e2.set(0, 1), e2.to_vec())
    });
    assert_eq!(
        seen,
        "Ok(None) Err(Index(IndexError { index: 0, count: 1, len: 0 })) Ok([])"
    );
    let a = Array::<u32>::new(5).unwrap();
    let a2 = a.clone();
    assert_eq!(bounded("array rules", move || array_rules(a2)), ARRAY_RULES);
    for m in METHODS {
        let a = Array::<u32>::new(5).unwrap();
        assert_eq!(join(&mut start(m, array_rules, a.clone())), ARRAY_RULES, "{m:?}");
        let a2 = a.clone();
        assert_eq!(bounded("to_vec", move || a2.to_vec().unwrap()), [7, 8, 0, 0, 0]);
    }
}

fn array_read_first((a, started): (Array<u32>, Shared<AtomicU32>)) -> String {
    started.store(1, SeqCst);
    format!("{:?}", a.get(0))
}

#[test]
fn array_guard_makes_other_processes_wait_not_fail() {
    let _g = common::shared();
    for m in METHODS {
        let a = Array::<u32>::new(2).unwrap();
        let started = Shared::new(AtomicU32::new(0)).unwrap();
        let mut g = a.lock().unwrap();
        let mut reader = start(m, array_read_first, (a.clone(), started.clone()));
        assert!(eventually(LONG, || started.load(SeqCst) == 1));
        std::thread::sleep(ms(30));
        g[0] = 42; // written while the reader waits: it must see it
        drop(g);
        assert_eq!(join(&mut reader), "Ok(Some(42))", "{m:?}");
    }
}

/// The same-thread rules of `Value`.
fn value_rules(v: Value<u64>) -> Vec<String> {
    let mut out = Vec::new();
    {
        let mut g = v.lock().expect("guard");
        *g = 5;
        out.push(format!("{:?}", v.lock().map(drop)));
        out.push(format!("{:?}", v.get()));
        out.push(format!("{:?}", v.set(1)));
        out.push(format!("{:?}", v.update(|x| x + 1)));
        out.push(g.to_string());
    }
    {
        let lk = v.get_lock();
        let _held = lk.lock().expect("get_lock");
        lk.acquire().expect("re-enter get_lock, Python-style");
        out.push(format!("{:?}", v.get()));
        out.push(format!("{:?}", v.set(6)));
        out.push(format!("{:?}", v.update(|x| x * 2)));
        lk.release().expect("release the inner level");
    }
    out.push(format!("{:?}", v.get_lock().release()));
    out
}

const VALUE_RULES: [&str; 9] = [
    "Err(WouldDeadlock)",
    "Err(WouldDeadlock)",
    "Err(WouldDeadlock)",
    "Err(WouldDeadlock)",
    "5",
    "Ok(5)",
    "Ok(())",
    "Ok(12)",
    "Err(NotLocked)",
];

#[test]
fn value_same_thread_refusals_and_get_lock_reentry() {
    let _g = common::shared();
    let v = Value::new(0u64).unwrap();
    let v2 = v.clone();
    assert_eq!(bounded("value rules", move || value_rules(v2)), VALUE_RULES);
    for m in METHODS {
        let v = Value::new(0u64).unwrap();
        assert_eq!(join(&mut start(m, value_rules, v.clone())), VALUE_RULES, "{m:?}");
        let v2 = v.clone();
        assert_eq!(bounded("get", move || v2.get().unwrap()), 12);
    }
}

fn update_with_panicking_closure(v: Value<u64>) -> String {
    let r = std::panic::catch_unwind(AssertUnwindSafe(|| v.update(|_| panic!("the closure gave up"))));
    assert!(r.is_err());
    // The panic must not have left the lock held by this thread.
    format!("{:?}", v.get_lock().release())
}

#[test]
fn value_update_panic_releases_the_lock() {
    let _g = common::shared();
    for m in METHODS {
        let v = Value::new(1u64).unwrap();
        let r = join(&mut start(m, update_with_panicking_closure, v.clone()));
        assert_eq!(r, "Err(NotLocked)", "{m:?}");
    }
}

// ------------------------------------------------------------------------------------------
// Holders killed by SIGKILL: the next acquirer gets OwnerDied, then all is normal again
// ------------------------------------------------------------------------------------------

/// Starts `holder((a, held))`, waits until it says it holds, kills and reaps it; returns
/// its pid (its only thread's tid).
fn kill_while_holding<A>(m: StartMethod, holder: fn((A, Event)), a: A) -> u32
where
    A: Serialize + DeserializeOwned + 'static,
{
    let held = Event::new().unwrap();
    let mut p = start(m, holder, (a, held.clone()));
    assert!(
        held.wait_timeout(LONG).is_ok(),
        "{m:?}: the holder never signalled"
    );
    kill_and_reap(&mut p);
    p.pid()
}

fn hold_lock((lock, held): (Lock, Event)) {
    let _g = lock.lock_timeout(LONG).expect("lock");
    held.set();
    sleep_forever()
}

fn lock_cycles((lock, n): (Lock, u32)) -> u32 {
    for _ in 0..n {
        let _g = lock.lock_timeout(LONG).expect("lock after recovery");
    }
    n
}

#[test]
fn killed_lock_holder_gives_owner_died_then_normal() {
    let _g = common::shared();
    for m in METHODS {
        let lock = Lock::new().unwrap();

        // Guard form.
        let pid = kill_while_holding(m, hold_lock, lock.clone());
        assert!(
            lock.is_locked(),
            "a dead holder's lock stays held until taken over"
        );
        let t0 = Instant::now();
        let r = lock.lock_timeout(TAKEOVER);
        let took = t0.elapsed();
        let guard = match r {
            Err(LockTimeoutError::OwnerDied(d)) => {
                assert_eq!(d.dead_owner_tid(), pid);
                d.into_guard()
            }
            other => panic!("{m:?}: expected OwnerDied, got {:?}", other.map(drop)),
        };
        report_detection("Lock, lock_timeout", m, took);
        // The survivor holds it now.
        assert!(!join(&mut start(m, lock_try_acquire, lock.clone())));
        drop(guard);
        assert_eq!(join(&mut start(m, lock_cycles, (lock.clone(), 50))), 50);

        // Python-style form: acquire reports OwnerDied holding the lock; release it.
        let pid = kill_while_holding(m, hold_lock, lock.clone());
        let t0 = Instant::now();
        let r = lock.acquire_timeout(TAKEOVER);
        let took = t0.elapsed();
        match r {
            Err(LockTimeoutError::OwnerDied(d)) => assert_eq!(d.dead_owner_tid(), pid),
            other => panic!("{m:?}: expected OwnerDied, got {other:?}"),
        }
        report_detection("Lock, acquire_timeout", m, took);
        assert!(lock.is_locked());
        lock.release().unwrap();
        lock.try_acquire().expect("no second OwnerDied");
        lock.release().unwrap();
        assert_eq!(join(&mut start(m, lock_cycles, (lock.clone(), 50))), 50);

        // A survivor already blocked when the holder dies: time from kill() to takeover.
        let held = Event::new().unwrap();
        let mut holder = start(m, hold_lock, (lock.clone(), held.clone()));
        assert!(held.wait_timeout(LONG).is_ok());
        let l2 = lock.clone();
        let (tx, rx) = mpsc::channel();
        let survivor = std::thread::spawn(move || {
            tx.send(()).unwrap();
            let died = matches!(l2.lock_timeout(TAKEOVER), Err(LockTimeoutError::OwnerDied(_)));
            (died, Instant::now())
        });
        rx.recv_timeout(LONG).unwrap();
        std::thread::sleep(ms(30)); // it sleeps on the lock word now
        let killed_at = Instant::now();
        holder.kill().unwrap();
        let (died, taken_at) = survivor.join().unwrap();
        assert!(died, "{m:?}: the blocked survivor did not report OwnerDied");
        report_detection("Lock, already blocked (kill->takeover)", m, taken_at - killed_at);
        kill_and_reap(&mut holder);
        assert!(!lock.is_locked());
    }
}

fn contend_after_death((lock, waiting): (Lock, Shared<AtomicU32>)) -> String {
    waiting.fetch_add(1, SeqCst);
    match lock.lock_timeout(TAKEOVER) {
        Ok(_g) => {
            std::thread::sleep(ms(5));
            "normal".to_owned()
        }
        Err(LockTimeoutError::OwnerDied(d)) => {
            let _g = d.into_guard();
            std::thread::sleep(ms(5));
            "died".to_owned()
        }
        Err(e) => format!("{e:?}"),
    }
}

#[test]
fn only_one_of_several_waiters_takes_a_dead_holders_lock_over() {
    let _g = common::shared();
    for m in METHODS {
        let lock = Lock::new().unwrap();
        let held = Event::new().unwrap();
        let mut holder = start(m, hold_lock, (lock.clone(), held.clone()));
        assert!(held.wait_timeout(LONG).is_ok());
        let waiting = Shared::new(AtomicU32::new(0)).unwrap();
        let mut waiters: Vec<_> = (0..3)
            .map(|_| {
                let args = (lock.clone(), waiting.clone());
                start(m, contend_after_death, args)
            })
            .collect();
        assert!(eventually(LONG, || waiting.load(SeqCst) == 3));
        std::thread::sleep(ms(30)); // let them sleep on the word
        kill_and_reap(&mut holder);
        let mut seen = join_all(&mut waiters);
        seen.sort();
        assert_eq!(seen, ["died", "normal", "normal"], "{m:?}");
        assert!(!lock.is_locked());
    }
}

fn acquire_and_return(lock: Lock) -> u32 {
    lock.acquire().expect("acquire");
    std::process::id()
}

#[test]
fn lock_abandoned_by_a_child_that_exits_normally() {
    let _g = common::shared();
    for m in METHODS {
        let lock = Lock::new().unwrap();
        // Any process may release an abandoned Lock, which then is just free.
        join(&mut start(m, acquire_and_return, lock.clone()));
        assert!(lock.is_locked());
        lock.release().unwrap();
        lock.try_acquire().unwrap();
        lock.release().unwrap();
        // Or the next acquirer takes it over.
        let pid = join(&mut start(m, acquire_and_return, lock.clone()));
        match lock.lock_timeout(TAKEOVER) {
            Err(LockTimeoutError::OwnerDied(d)) => assert_eq!(d.dead_owner_tid(), pid),
            other => panic!("{m:?}: expected OwnerDied, got {:?}", other.map(drop)),
        }
        assert!(!lock.is_locked());
    }
    // The same with a fork closure that forgets its guard.
    let lock = Lock::new().unwrap();
    let l = lock.clone();
    let mut p = Process::fork(move || std::mem::forget(l.lock_timeout(LONG).expect("lock")))
        .daemon(true)
        .start()
        .unwrap();
    join(&mut p);
    let r = lock.lock_timeout(TAKEOVER).map(drop);
    assert!(
        matches!(r, Err(LockTimeoutError::OwnerDied(ref d)) if d.dead_owner_tid() == p.pid()),
        "{r:?}"
    );
}

fn hold_rlock_twice((lock, held): (RLock, Event)) {
    let _outer = lock.lock_timeout(LONG).expect("outer");
    let _inner = lock.lock_timeout(LONG).expect("inner");
    assert_eq!(lock.depth(), 2);
    held.set();
    sleep_forever()
}

fn rlock_cycles((lock, n): (RLock, u32)) -> u32 {
    for _ in 0..n {
        let _a = lock.lock_timeout(LONG).expect("lock after recovery");
        let _b = lock.lock_timeout(LONG).expect("re-entry after recovery");
    }
    n
}

#[test]
fn killed_rlock_holder_entered_twice_gives_owner_died_then_normal() {
    let _g = common::shared();
    for m in METHODS {
        let lock = RLock::new().unwrap();
        let pid = kill_while_holding(m, hold_rlock_twice, lock.clone());
        assert!(lock.is_locked());
        assert_eq!(lock.depth(), 0, "not ours");
        let t0 = Instant::now();
        let r = lock.lock_timeout(TAKEOVER);
        let took = t0.elapsed();
        let guard = match r {
            Err(LockTimeoutError::OwnerDied(d)) => {
                assert_eq!(d.dead_owner_tid(), pid);
                d.into_guard()
            }
            other => panic!("{m:?}: expected OwnerDied, got {:?}", other.map(drop)),
        };
        report_detection("RLock (entered twice)", m, took);
        // Taken over with one level, not the dead owner's two.
        assert_eq!(lock.depth(), 1);
        let inner = lock.try_lock().expect("re-entry after takeover");
        assert_eq!(lock.depth(), 2);
        drop(inner);
        drop(guard);
        assert!(!lock.is_locked());
        assert_eq!(lock.release(), Err(ReleaseError::NotLocked));
        assert_eq!(join(&mut start(m, rlock_cycles, (lock.clone(), 50))), 50);

        // Python-style acquire after a second death.
        kill_while_holding(m, hold_rlock_twice, lock.clone());
        assert!(matches!(
            lock.acquire_timeout(TAKEOVER),
            Err(LockTimeoutError::OwnerDied(_))
        ));
        assert_eq!(lock.depth(), 1);
        lock.release().unwrap();
        assert!(!lock.is_locked());
    }
}

fn hold_condition((c, held): (Condition, Event)) {
    let _g = c.lock_timeout(LONG).expect("lock");
    held.set();
    sleep_forever()
}

#[test]
fn killed_condition_lock_holder_gives_owner_died_then_normal() {
    let _g = common::shared();
    for m in METHODS {
        let c = Condition::new().unwrap();
        let pid = kill_while_holding(m, hold_condition, c.clone());
        let t0 = Instant::now();
        let r = c.lock_timeout(TAKEOVER);
        let took = t0.elapsed();
        let g = match r {
            Err(LockTimeoutError::OwnerDied(d)) => {
                assert_eq!(d.dead_owner_tid(), pid);
                d.into_guard()
            }
            other => panic!("{m:?}: expected OwnerDied, got {:?}", other.map(drop)),
        };
        report_detection("Condition lock", m, took);
        // The taken-over guard is a full guard: wait and notify work with it.
        assert_eq!(c.notify_all(&g), Ok(()));
        let e = c.wait_timeout(g, ms(5)).unwrap_err();
        assert!(matches!(e, CondWaitTimeoutError::Timeout(_)), "{e:?}");
        let g = e.into_guard().unwrap();
        let flag = Shared::new(AtomicU32::new(0)).unwrap();
        let mut setter = start(m, cond_set_flag, (c.clone(), flag.clone()));
        let g = c.wait_for_timeout(g, || flag.load(SeqCst) == 1, LONG);
        let g = g.unwrap_or_else(|e| panic!("{m:?}: {e:?}"));
        drop(g);
        join(&mut setter);
        assert_eq!(join(&mut start(m, cond_try_lock, (c.clone(), 10_000))), "Ok(())");

        // Python-style acquire/release after a second death.
        kill_while_holding(m, hold_condition, c.clone());
        let mut probe = start(m, cond_try_lock, (c.clone(), TAKEOVER.as_millis() as u64));
        let r = join(&mut probe);
        assert!(r.starts_with("Err(OwnerDied"), "{m:?}: {r}");
        // The probe took it over and then released it by dropping the guard.
        assert_eq!(join(&mut start(m, cond_try_lock, (c.clone(), 10_000))), "Ok(())");
        c.acquire().unwrap();
        c.release().unwrap();
    }
}

/// Waits on the condition; reports how the wait ended (the lock is held again after it).
fn cond_waiter((c, waiting): (Condition, Shared<AtomicU32>)) -> String {
    let g = c.lock_timeout(LONG).expect("lock");
    waiting.store(1, SeqCst);
    match c.wait_timeout(g, LONG) {
        Err(CondWaitTimeoutError::OwnerDied(d)) => format!("OwnerDied({})", d.dead_owner_tid()),
        other => format!("{:?}", other.map(drop)),
    }
}

fn notify_and_hold((c, held): (Condition, Event)) {
    let g = c.lock_timeout(LONG).expect("lock");
    c.notify_all(&g).expect("notify_all");
    held.set();
    sleep_forever()
}

#[test]
fn condition_waiter_takes_the_lock_back_from_a_killed_notifier() {
    let _g = common::shared();
    for m in METHODS {
        let c = Condition::new().unwrap();
        let waiting = Shared::new(AtomicU32::new(0)).unwrap();
        let mut waiter = start(m, cond_waiter, (c.clone(), waiting.clone()));
        assert!(eventually(LONG, || waiting.load(SeqCst) == 1));
        // The notifier can only lock once the waiter sleeps; it notifies, then dies holding
        // the lock the waiter needs back.
        let held = Event::new().unwrap();
        let mut notifier = start(m, notify_and_hold, (c.clone(), held.clone()));
        assert!(held.wait_timeout(LONG).is_ok());
        std::thread::sleep(ms(30));
        kill_and_reap(&mut notifier);
        assert_eq!(
            join(&mut waiter),
            format!("OwnerDied({})", notifier.pid()),
            "{m:?}"
        );
        assert_eq!(join(&mut start(m, cond_try_lock, (c.clone(), 10_000))), "Ok(())");
    }
}

fn hold_value_guard((v, held): (Value<[u64; 2]>, Event)) {
    let mut g = v.lock().expect("guard");
    g[0] += 1; // half of an update that keeps both halves equal
    held.set();
    sleep_forever()
}

fn bump_pair((v, n): (Value<[u64; 2]>, u64)) {
    for _ in 0..n {
        let mut g = v.lock().expect("guard after recovery");
        g[0] += 1;
        g[1] += 1;
    }
}

#[test]
fn killed_value_guard_holder_gives_owner_died_then_normal() {
    let _g = common::shared();
    for m in METHODS {
        let v = Value::new([0u64; 2]).unwrap();
        let pid = kill_while_holding(m, hold_value_guard, v.clone());
        let v2 = v.clone();
        let (took, tid, seen) = bounded("Value::lock after a dead holder", move || {
            let t0 = Instant::now();
            let r = v2.lock();
            let took = t0.elapsed();
            match r {
                Err(LockError::OwnerDied(d)) => {
                    let tid = d.dead_owner_tid();
                    let mut g = d.into_guard();
                    let seen = *g;
                    g[1] = g[0]; // repair the invariant
                    (took, tid, seen)
                }
                other => panic!("expected OwnerDied, got {:?}", other.map(|g| *g)),
            }
        });
        report_detection("Value guard", m, took);
        assert_eq!(tid, pid);
        assert_eq!(seen, [1, 0], "the dead holder's half-done write is visible");
        // Normal again, for this thread and for other processes; no stale borrow flag.
        let v2 = v.clone();
        assert_eq!(bounded("Value::get", move || v2.get().expect("get")), [1, 1]);
        let mut kids: Vec<_> = (0..2).map(|_| start(m, bump_pair, (v.clone(), 100))).collect();
        join_all(&mut kids);
        let v2 = v.clone();
        assert_eq!(
            bounded("Value::update", move || v2.update(|p| p).expect("update")),
            [201, 201]
        );

        // A second death; the survivor's first access is `get`, which reports it with the
        // value and leaves the lock free.
        kill_while_holding(m, hold_value_guard, v.clone());
        let v2 = v.clone();
        let r = bounded("Value::get after a dead holder", move || match v2.get() {
            Err(LockError::OwnerDied(d)) => d.into_guard(),
            other => panic!("expected OwnerDied, got {other:?}"),
        });
        assert_eq!(r, [202, 201]);
        let v2 = v.clone();
        assert_eq!(
            bounded("Value::set", move || v2.set([0, 0]).map_err(|e| e.to_string())),
            Ok(())
        );
    }
}

fn hold_array_guard((a, held): (Array<u64>, Event)) {
    let mut g = a.lock().expect("guard");
    let half = g.len() / 2;
    g[..half].fill(9); // the first half of a whole-array update
    held.set();
    sleep_forever()
}

#[test]
fn killed_array_guard_holder_gives_owner_died_then_normal() {
    let _g = common::shared();
    for m in METHODS {
        let a = Array::<u64>::new(N * PART).unwrap();
        let pid = kill_while_holding(m, hold_array_guard, a.clone());
        let a2 = a.clone();
        let (took, tid, nines) = bounded("Array::lock after a dead holder", move || {
            let t0 = Instant::now();
            let r = a2.lock();
            let took = t0.elapsed();
            match r {
                Err(LockError::OwnerDied(d)) => {
                    let tid = d.dead_owner_tid();
                    let mut g = d.into_guard();
                    let nines = g.iter().filter(|&&x| x == 9).count();
                    g.fill(0); // repair
                    (took, tid, nines)
                }
                other => panic!("expected OwnerDied, got {:?}", other.map(drop)),
            }
        });
        report_detection("Array guard (survivor: lock)", m, took);
        assert_eq!(tid, pid);
        assert_eq!(nines, N * PART / 2);
        let mut kids: Vec<_> = (0..N)
            .map(|part| start(m, fill_part, (a.clone(), part)))
            .collect();
        join_all(&mut kids);
        let want: Vec<u64> = (0..N * PART).map(|i| (i * 10) as u64).collect();
        let a2 = a.clone();
        assert_eq!(
            bounded("Array::to_vec", move || a2.to_vec().expect("to_vec")),
            want
        );

        // A second death; the survivor's first access is a copy, which reports the death,
        // hands over the data and leaves the lock free (no stale borrow flag either).
        kill_while_holding(m, hold_array_guard, a.clone());
        let a2 = a.clone();
        let (took, data, after) = bounded("Array::to_vec after a dead holder", move || {
            let t0 = Instant::now();
            let r = a2.to_vec();
            let took = t0.elapsed();
            let data = match r {
                Err(LockError::OwnerDied(d)) => d.into_guard(),
                other => panic!("expected OwnerDied, got {other:?}"),
            };
            (took, data, format!("{:?}", a2.get(0)))
        });
        report_detection("Array guard (survivor: to_vec)", m, took);
        assert_eq!(&data[..N * PART / 2], &[9; N * PART / 2][..]);
        assert_eq!(data[N * PART / 2], (N * PART / 2 * 10) as u64);
        assert_eq!(after, "Ok(Some(9))");
        assert!(join(&mut start(m, array_guard_then_get, a.clone())));

        // A third death; the survivor's first access is `set`: the element is written and
        // the death reported inside `ArraySetError::Lock`, which `recover` accepts.
        kill_while_holding(m, hold_array_guard, a.clone());
        let a2 = a.clone();
        let (died, recovered, got) = bounded("Array::set after a dead holder", move || {
            let r = a2.set(1, 5);
            let died = matches!(r, Err(ArraySetError::Lock(LockError::OwnerDied(_))));
            let recovered = r.or_else(ArraySetError::recover);
            (died, recovered, a2.get(1).expect("get after recovery"))
        });
        assert!(died, "{m:?}: set did not report the dead holder");
        assert_eq!(recovered, Ok(()));
        assert_eq!(got, Some(5));
    }
}

fn array_guard_then_get(a: Array<u64>) -> bool {
    let mut g = a.lock().expect("guard after recovery");
    g[0] = 1;
    drop(g);
    a.get(0).expect("get") == Some(1)
}

// ------------------------------------------------------------------------------------------
// Corrupted shared words: reported, never a hang or a panic
// ------------------------------------------------------------------------------------------

/// Lock words no correct process writes: bit 30 set, or only the WAITERS bit (31).
const BAD_LOCK_WORDS: [u32; 5] = [
    1 << 30,
    (1 << 30) | 1234,
    u32::MAX,
    1 << 31,
    (1 << 31) | (1 << 30),
];

#[test]
fn corrupted_raw_lock_word_is_reported() {
    let _g = common::shared();
    assert_eq!(std::mem::size_of::<RawLock>(), 16);
    for bad in BAD_LOCK_WORDS {
        let s = Shared::new(RawLock::new()).unwrap();
        word(&s, 0).store(bad, SeqCst);
        assert_eq!(s.try_lock(), Err(LockFail::Corrupted), "{bad:#x}");
        assert_eq!(
            s.lock(Some(Instant::now() + LONG)),
            Err(LockFail::Corrupted),
            "{bad:#x}"
        );
        let s2 = s.clone();
        assert_eq!(
            bounded("RawLock::lock(None)", move || s2.lock(None)),
            Err(LockFail::Corrupted)
        );
        assert_eq!(s.unlock(), Err(ReleaseFail::Corrupted), "{bad:#x}");
        word(&s, 0).store(0, SeqCst);
        assert_eq!(s.try_lock(), Ok(Acquired::Normal));
        assert_eq!(s.unlock(), Ok(()));
    }
    // A well-formed word naming a thread that cannot exist is a dead owner, not corruption.
    let s = Shared::new(RawLock::new()).unwrap();
    let ghost = (1 << 30) - 7;
    word(&s, 0).store(ghost, SeqCst);
    assert_eq!(s.owner_tid(), Some(ghost));
    assert_eq!(
        s.lock(Some(Instant::now() + TAKEOVER)),
        Ok(Acquired::OwnerDied(ghost))
    );
    assert!(s.is_owned_by_me());
    assert_eq!(s.unlock(), Ok(()));
}

#[test]
fn corrupted_lock_handle_is_reported() {
    let _g = common::shared();
    for bad in BAD_LOCK_WORDS {
        let lock = Lock::new().unwrap();
        word_in(lock.raw(), 0).store(bad, SeqCst);
        assert!(
            matches!(lock.try_lock(), Err(TryLockError::Corrupted)),
            "{bad:#x}"
        );
        assert!(matches!(
            lock.lock_timeout(LONG),
            Err(LockTimeoutError::Corrupted)
        ));
        assert!(matches!(lock.try_acquire(), Err(TryLockError::Corrupted)));
        assert!(matches!(
            lock.acquire_timeout(LONG),
            Err(LockTimeoutError::Corrupted)
        ));
        let l2 = lock.clone();
        assert!(bounded("Lock::acquire", move || matches!(
            l2.acquire(),
            Err(LockError::Corrupted)
        )));
        assert_eq!(lock.release(), Err(ReleaseError::Corrupted));
    }
}

fn lock_wait_report((lock, waiting): (Lock, Shared<AtomicU32>)) -> String {
    waiting.store(1, SeqCst);
    format!("{:?}", lock.lock_timeout(LONG).map(drop))
}

#[test]
fn lock_corrupted_while_a_process_waits_is_reported_to_it() {
    let _g = common::shared();
    for m in METHODS {
        let lock = Lock::new().unwrap();
        lock.acquire().unwrap();
        let waiting = Shared::new(AtomicU32::new(0)).unwrap();
        let mut waiter = start(m, lock_wait_report, (lock.clone(), waiting.clone()));
        assert!(eventually(LONG, || waiting.load(SeqCst) == 1));
        std::thread::sleep(ms(30));
        word_in(lock.raw(), 0).store(1 << 30, SeqCst);
        assert_eq!(join(&mut waiter), "Err(Corrupted)", "{m:?}");
        word_in(lock.raw(), 0).store(0, SeqCst);
        lock.try_acquire().unwrap();
        lock.release().unwrap();
    }
}

#[test]
fn corrupted_rlock_count_is_reported() {
    let _g = common::shared();
    // RawRLock is #[repr(C)] { lock: RawLock (4 words), count, _pad }.
    assert_eq!(std::mem::size_of::<RawRLock>(), 24);
    let s = Shared::new(RawRLock::new()).unwrap();
    assert_eq!(s.try_lock(), Ok(Acquired::Normal));
    assert_eq!(word(&s, 4).load(SeqCst), 1);
    word(&s, 4).store(0, SeqCst); // owned, yet zero levels
    assert_eq!(s.depth(), 0);
    assert_eq!(s.unlock(), Err(ReleaseFail::Corrupted));
    assert_eq!(s.try_lock(), Err(LockFail::Corrupted));
    assert_eq!(s.lock(Some(Instant::now() + LONG)), Err(LockFail::Corrupted));
    word(&s, 4).store(u32::MAX, SeqCst);
    assert_eq!(s.try_lock(), Err(LockFail::RecursionLimit));
    word(&s, 4).store(1, SeqCst);
    assert_eq!(s.unlock(), Ok(()));
    assert!(!s.is_locked());

    // The same through the handle.
    let rl = RLock::new().unwrap();
    let g = rl.lock_timeout(LONG).unwrap();
    word_in(rl.raw(), 4).store(0, SeqCst);
    assert_eq!(rl.release(), Err(ReleaseError::Corrupted));
    assert!(matches!(rl.lock_timeout(LONG), Err(LockTimeoutError::Corrupted)));
    assert!(matches!(rl.try_acquire(), Err(TryLockError::Corrupted)));
    word_in(rl.raw(), 4).store(u32::MAX, SeqCst);
    assert!(matches!(rl.try_lock(), Err(TryLockError::RecursionLimit)));
    word_in(rl.raw(), 4).store(1, SeqCst);
    drop(g);
    assert!(!rl.is_locked());
}

#[test]
fn corrupted_semaphore_value_is_reported() {
    let _g = common::shared();
    // RawSemaphore is #[repr(C)] { value, waiters, bound, bounded }.
    assert_eq!(std::mem::size_of::<RawSemaphore>(), 16);
    let s = Shared::new(RawSemaphore::new(2, true)).unwrap();
    assert_eq!((s.value(), s.bound()), (2, Some(2)));
    word(&s, 0).store(3, SeqCst); // above the bound
    assert_eq!(s.value(), 3);
    assert_eq!(s.try_acquire(), Err(SemFail::Corrupted));
    assert_eq!(s.acquire(Some(Instant::now() + LONG)), Err(SemFail::Corrupted));
    let s2 = s.clone();
    assert_eq!(
        bounded("RawSemaphore::acquire(None)", move || s2.acquire(None)),
        Err(SemFail::Corrupted)
    );
    assert_eq!(s.release(), Err(SemFail::Corrupted));
    word(&s, 0).store(1, SeqCst);
    word(&s, 3).store(0, SeqCst); // bounded flag cleared: now unbounded, and value 1 is fine
    assert_eq!(s.bound(), None);
    assert_eq!(s.try_acquire(), Ok(()));

    // An unbounded semaphore above SEM_VALUE_MAX.
    let s = Shared::new(RawSemaphore::new(0, false)).unwrap();
    word(&s, 0).store(SEM_VALUE_MAX + 1, SeqCst);
    assert_eq!(s.try_acquire(), Err(SemFail::Corrupted));
    assert_eq!(s.release(), Err(SemFail::Corrupted));

    // Through the handles.
    let b = BoundedSemaphore::new(2).unwrap();
    word_in(b.raw(), 0).store(5, SeqCst);
    assert_eq!(b.try_acquire(), Err(TryAcquireError::Corrupted));
    assert_eq!(b.acquire_timeout(LONG), Err(AcquireTimeoutError::Corrupted));
    let b2 = b.clone();
    assert!(bounded("acquire", move || b2.acquire() == Err(AcquireError::Corrupted)));
    assert_eq!(b.release(), Err(ReleaseError::Corrupted));
    let s = Semaphore::new(1).unwrap();
    word_in(s.raw(), 0).store(u32::MAX, SeqCst);
    assert_eq!(s.try_acquire(), Err(TryAcquireError::Corrupted));
    assert_eq!(s.release(), Err(ReleaseError::Corrupted));
}

#[test]
fn corrupted_barrier_is_reported() {
    let _g = common::shared();
    // RawBarrier is #[repr(C)] { lock: RawLock (4 words), generation, count, parties, broken,
    // outcomes, pending }.
    assert_eq!(std::mem::size_of::<RawBarrier>(), 40);
    for (what, idx, bad) in [
        ("count = parties", 5, 1u32),
        ("count > parties", 5, 77),
        ("parties = 0", 6, 0),
    ] {
        let s = Shared::new(RawBarrier::new(1)).unwrap();
        assert_eq!(s.parties(), 1);
        word(&s, idx).store(bad, SeqCst);
        if idx == 5 {
            assert_eq!(s.n_waiting(), bad);
        } else {
            assert_eq!(s.parties(), bad);
        }
        let s2 = s.clone();
        let r = bounded("RawBarrier::wait", move || s2.wait(Some(Instant::now() + LONG)));
        assert_eq!(r, Err(BarrierFail::Corrupted), "{what}");
        // It is now broken; a reset repairs the count (not a zeroed party number).
        assert!(s.is_broken());
        assert_eq!(s.wait(Some(Instant::now() + LONG)), Err(BarrierFail::Broken));
        assert_eq!(s.reset(), Ok(()));
        if idx == 5 {
            assert_eq!(s.wait(Some(Instant::now() + LONG)), Ok(0), "{what}");
        }
    }
    // A corrupted internal lock word.
    let s = Shared::new(RawBarrier::new(2)).unwrap();
    word(&s, 0).store(1 << 30, SeqCst);
    let s2 = s.clone();
    let r = bounded("RawBarrier::wait", move || s2.wait(Some(Instant::now() + LONG)));
    assert_eq!(r, Err(BarrierFail::Corrupted));
    assert_eq!(s.abort(), Err(BarrierFail::Corrupted));
    assert_eq!(s.reset(), Err(BarrierFail::Corrupted));
}

#[test]
fn corrupted_array_lock_is_reported() {
    let _g = common::shared();
    // An Array starts with its LockedHead { lock: RawRLock (6 words), borrowed, _pad }, at
    // `offset()` of its segment (an arena chunk for a small array).
    let a = Array::<u32>::from_slice(&[1, 2, 3]).unwrap();
    // SAFETY: the array starts with the lock word (see above), 8-aligned, inside the mapping.
    let lock_word = unsafe { &*a.segment().as_ptr().add(a.offset()).cast::<AtomicU32>() };
    lock_word.store(1 << 30, SeqCst);
    let a2 = a.clone();
    let seen = bounded("Array on a corrupted lock", move || {
        vec![
            format!("{:?}", a2.get(0)),
            format!("{:?}", a2.set(0, 1)),
            format!("{:?}", a2.to_vec()),
            format!("{:?}", a2.lock().map(drop)),
        ]
    });
    assert_eq!(
        seen,
        [
            "Err(Corrupted)",
            "Err(Lock(Corrupted))",
            "Err(Corrupted)",
            "Err(Corrupted)"
        ]
    );
    lock_word.store(0, SeqCst);
    let a2 = a.clone();
    assert_eq!(bounded("Array::to_vec", move || a2.to_vec().unwrap()), [1, 2, 3]);
}

// ------------------------------------------------------------------------------------------
// Timeouts are honoured: never return before the deadline
// ------------------------------------------------------------------------------------------

fn hold_until_told((lock, rlock, cond, held, done): (Lock, RLock, Condition, Event, Event)) {
    let _a = lock.lock_timeout(LONG).expect("lock");
    let _b = rlock.lock_timeout(LONG).expect("rlock");
    let _c = cond.lock_timeout(LONG).expect("condition");
    held.set();
    assert!(done.wait_timeout(JOIN).is_ok(), "never told to let go");
}

fn at_least(what: &str, t: Duration, f: impl FnOnce() -> bool) {
    let t0 = Instant::now();
    assert!(f(), "{what} ({t:?}): wrong result");
    let took = t0.elapsed();
    assert!(
        took >= t,
        "{what}: returned after {took:?}, before its {t:?} timeout"
    );
}

#[test]
fn timeouts_are_honoured() {
    let _g = common::shared();
    for m in METHODS {
        let lock = Lock::new().unwrap();
        let rlock = RLock::new().unwrap();
        let cond = Condition::new().unwrap();
        let (held, done) = (Event::new().unwrap(), Event::new().unwrap());
        let args = (
            lock.clone(),
            rlock.clone(),
            cond.clone(),
            held.clone(),
            done.clone(),
        );
        let mut holder = start(m, hold_until_told, args);
        assert!(held.wait_timeout(LONG).is_ok());
        let sem = Semaphore::new(0).unwrap();
        let bsem = BoundedSemaphore::new(1).unwrap();
        bsem.try_acquire().unwrap();
        let ev = Event::new().unwrap();
        let own = Condition::new().unwrap();
        let bar = Barrier::new(2).unwrap();
        // Around the 20 ms liveness slice of the lock waiters, and either side of it.
        for t in [0, 1, 7, 19, 20, 21, 45].map(ms) {
            at_least("Lock::lock_timeout", t, || {
                matches!(lock.lock_timeout(t), Err(LockTimeoutError::Timeout))
            });
            at_least("Lock::acquire_timeout", t, || {
                format!("{:?}", lock.acquire_timeout(t)) == "Err(Timeout)"
            });
            at_least("RLock::lock_timeout", t, || {
                matches!(rlock.lock_timeout(t), Err(LockTimeoutError::Timeout))
            });
            at_least("RLock::acquire_timeout", t, || {
                format!("{:?}", rlock.acquire_timeout(t)) == "Err(Timeout)"
            });
            at_least("Condition::lock_timeout", t, || {
                matches!(cond.lock_timeout(t), Err(LockTimeoutError::Timeout))
            });
            at_least("Semaphore::acquire_timeout", t, || {
                format!("{:?}", sem.acquire_timeout(t)) == "Err(Timeout)"
            });
            at_least("BoundedSemaphore::acquire_timeout", t, || {
                format!("{:?}", bsem.acquire_timeout(t)) == "Err(Timeout)"
            });
            at_least("Event::wait_timeout", t, || {
                ev.wait_timeout(t) == Err(WaitTimeoutError::Timeout)
            });
            let mut g = Some(own.lock_timeout(LONG).unwrap());
            // A timed-out wait hands the guard back.
            at_least("Condition::wait_timeout", t, || {
                match own.wait_timeout(g.take().unwrap(), t) {
                    Err(CondWaitTimeoutError::Timeout(back)) => g = Some(back),
                    _ => return false,
                }
                true
            });
            at_least("Condition::wait_for_timeout", t, || {
                match own.wait_for_timeout(g.take().unwrap(), || false, t) {
                    Err(CondWaitTimeoutError::Timeout(back)) => g = Some(back),
                    _ => return false,
                }
                true
            });
            drop(g);
            at_least("Barrier::wait_timeout", t, || {
                bar.wait_timeout(t) == Err(BarrierTimeoutError::Timeout)
            });
            bar.reset().unwrap();
        }
        // A timeout too large for a deadline means no deadline.
        let free = Lock::new().unwrap();
        free.acquire_timeout(Duration::MAX).unwrap();
        free.release().unwrap();
        assert!(free.lock_timeout(Duration::MAX).is_ok());
        ev.set();
        assert!(ev.wait_timeout(Duration::MAX).is_ok());
        sem.release().unwrap();
        sem.acquire_timeout(Duration::MAX).unwrap();
        assert_eq!(Barrier::new(1).unwrap().wait_timeout(Duration::MAX), Ok(0));
        assert!(
            lock.is_locked() && rlock.is_locked(),
            "{m:?}: the holder lost its locks"
        );
        done.set();
        join(&mut holder);
        assert!(!lock.is_locked() && !rlock.is_locked());
    }
}

// ------------------------------------------------------------------------------------------
// Nothing leaks
// ------------------------------------------------------------------------------------------

type SyncSet = (
    Lock,
    RLock,
    Semaphore,
    Event,
    Condition,
    Barrier,
    Value<u64>,
    Array<u32>,
);

fn sync_set() -> SyncSet {
    (
        Lock::new().unwrap(),
        RLock::new().unwrap(),
        Semaphore::new(1).unwrap(),
        Event::new().unwrap(),
        Condition::new().unwrap(),
        Barrier::new(2).unwrap(),
        Value::new(0).unwrap(),
        Array::new(4).unwrap(),
    )
}

fn clone_set(s: &SyncSet) -> SyncSet {
    (
        s.0.clone(),
        s.1.clone(),
        s.2.clone(),
        s.3.clone(),
        s.4.clone(),
        s.5.clone(),
        s.6.clone(),
        s.7.clone(),
    )
}

/// Uses every primitive once and meets the parent at the barrier.
fn use_sync_set((l, r, s, e, c, b, v, a): SyncSet) {
    drop(l.lock_timeout(LONG).expect("lock"));
    drop(r.lock_timeout(LONG).expect("rlock"));
    s.acquire_timeout(LONG).expect("acquire");
    s.release().expect("release");
    e.set();
    drop(c.lock_timeout(LONG).expect("condition lock"));
    b.wait_timeout(LONG).expect("barrier");
    v.update(|x| x + 1).expect("value");
    a.set(0, 1).expect("array");
}

/// Takes the lock and waits to be killed.
fn hold_until_killed((l, ready): (Lock, Event)) {
    let _g = l.lock_timeout(LONG).expect("lock");
    ready.set();
    sleep_forever();
}

fn sync_leak_scenario(m: StartMethod) {
    let set = sync_set();
    for _ in 0..2 {
        let mut c = start(m, use_sync_set, clone_set(&set));
        set.5.wait_timeout(LONG).unwrap();
        join(&mut c);
    }
    assert_eq!(set.6.get().unwrap(), 2);
    // A lock holder killed: the next locker gets OwnerDied.
    let ready = Event::new().unwrap();
    let mut c = start(m, hold_until_killed, (set.0.clone(), ready.clone()));
    assert!(ready.wait_timeout(LONG).is_ok());
    kill_and_reap(&mut c);
    // (The guard inside the error releases the lock as it drops.)
    assert!(matches!(
        set.0.lock_timeout(LONG),
        Err(LockTimeoutError::OwnerDied(_))
    ));
    set.0.try_acquire().unwrap();
    set.0.release().unwrap();
    // A waiter killed in Event::wait, its handle dropped (the reaper takes it).
    let gate = Event::new().unwrap();
    fn wait_forever(e: Event) {
        e.wait();
    }
    let c = start(m, wait_forever, gate.clone());
    c.kill().unwrap();
    drop(c);
}

/// No zombie, fd or `/dev/shm` entry is left after children used every primitive and a
/// holder and a waiter were killed (both start methods).
#[test]
fn nothing_leaks_after_children_used_primitives_and_were_killed() {
    let _g = common::exclusive();
    for m in METHODS {
        let set = sync_set();
        let mut c = start(m, use_sync_set, clone_set(&set));
        set.5.wait_timeout(LONG).unwrap();
        join(&mut c);
    }
    common::assert_leaves_nothing(sync_leak_scenario);
}

// ------------------------------------------------------------------------------------------
// Across processes: Condition waits that succeed, Barrier::wait with no timeout, raw
// primitives embedded in a user's Shared<T>
// ------------------------------------------------------------------------------------------

/// Waits (no timeout) until the value reaches `target`, with `wait` and then `wait_while`;
/// returns what it saw.
fn condition_waiter((c, v, target, ready): (Condition, Value<u64>, u64, Event)) -> (u64, bool) {
    let mut g = c.lock().expect("lock");
    ready.set();
    // Plain `wait`: Python's `while not pred: cond.wait()`.
    while v.get().expect("get") < target / 2 {
        g = c.wait(g).expect("wait");
    }
    let mid = v.get().expect("get");
    let _g = c
        .wait_while(g, || v.get().expect("get") < target)
        .expect("wait_while");
    (mid, true)
}

/// Children of each start method wait on a `Condition` with `wait` and `wait_while` (no
/// timeout) while this process bumps a value under the lock and notifies: they return once
/// the value is reached, having slept in between.
#[test]
fn condition_wait_and_wait_while_succeed_across_processes() {
    let _g = common::shared();
    for m in METHODS {
        let c = Condition::new().unwrap();
        let v = Value::new(0u64).unwrap();
        let ready = Event::new().unwrap();
        let target = 20;
        let mut kids: Vec<_> = (0..2)
            .map(|_| {
                ready.clear();
                let k = start(m, condition_waiter, (c.clone(), v.clone(), target, ready.clone()));
                assert!(ready.wait_timeout(LONG).is_ok());
                k
            })
            .collect();
        for _ in 0..target {
            std::thread::sleep(ms(2));
            let g = c.lock().unwrap();
            v.update(|x| x + 1).unwrap();
            c.notify_all(&g).unwrap();
        }
        for k in &mut kids {
            let (mid, done) = join(k);
            assert!((target / 2..=target).contains(&mid), "{m:?}: mid {mid}");
            assert!(done, "{m:?}");
        }
    }
}

fn barrier_no_timeout((b, rounds): (Barrier, u32)) -> Vec<usize> {
    (0..rounds).map(|_| b.wait().expect("barrier wait")).collect()
}

/// `Barrier::wait` with no timeout (and no default timeout) across three processes.
#[test]
fn barrier_wait_without_timeout_across_processes() {
    let _g = common::shared();
    for m in METHODS {
        let b = Barrier::new(3).unwrap();
        let mut kids: Vec<_> = (0..2)
            .map(|_| start(m, barrier_no_timeout, (b.clone(), 4)))
            .collect();
        let b2 = b.clone();
        let mine = bounded("Barrier::wait", move || {
            (0..4).map(|_| b2.wait().unwrap()).collect::<Vec<usize>>()
        });
        let theirs: Vec<Vec<usize>> = kids.iter_mut().map(join).collect();
        for r in 0..4 {
            let mut idx = vec![mine[r], theirs[0][r], theirs[1][r]];
            idx.sort_unstable();
            assert_eq!(idx, [0, 1, 2], "{m:?}: round {r}");
        }
    }
}

/// A user's own struct in shared memory with raw primitives inside.
#[repr(C)]
#[derive(Default)]
struct Board {
    lock: RawLock,
    items: RawSemaphore,
    done: RawEvent,
    total: AtomicU64,
    plain: AtomicU64,
}
// SAFETY: repr(C) of raw primitives and atomics, all of which live in shared memory as they
// are, any bit pattern valid (corruption is detected by the primitives).
unsafe impl ShmSafe for Board {}

/// Takes `n` items off the board's semaphore, adding each under the board's lock with a
/// non-atomic read-modify-write of `plain` (which only the lock keeps whole), then sets
/// `done`.
fn board_worker((b, n): (Shared<Board>, u64)) {
    for _ in 0..n {
        b.items.acquire(Some(Instant::now() + LONG)).expect("acquire");
        b.lock.lock(Some(Instant::now() + LONG)).expect("lock");
        let x = b.plain.load(SeqCst);
        std::hint::spin_loop();
        b.plain.store(x + 1, SeqCst);
        b.total.fetch_add(1, SeqCst);
        b.lock.unlock().expect("unlock");
    }
    b.done.set();
}

/// `RawLock`, `RawSemaphore` and `RawEvent` embedded in a user's `Shared<T>`, used by two
/// children of each start method: the lock keeps a load-then-store count exact, the
/// semaphore hands out exactly the items released, the event reports the end.
#[test]
fn raw_primitives_in_a_users_shared_struct_work_across_processes() {
    let _g = common::shared();
    for m in METHODS {
        let b = Shared::new(Board {
            items: RawSemaphore::new(0, false),
            ..Board::default()
        })
        .unwrap();
        let per = 2000;
        let mut kids: Vec<_> = (0..2).map(|_| start(m, board_worker, (b.clone(), per))).collect();
        for _ in 0..2 * per {
            b.items.release().unwrap();
        }
        for k in &mut kids {
            join(k);
        }
        assert!(b.done.wait(Some(Instant::now() + LONG)));
        assert_eq!(b.total.load(SeqCst), 2 * per, "{m:?}");
        assert_eq!(
            b.plain.load(SeqCst),
            2 * per,
            "{m:?}: the lock let updates through together"
        );
        assert_eq!(b.items.value(), 0);
        assert!(!b.lock.is_locked());
    }
}

// ------------------------------------------------------------------------------------------
// Error types: the crate-wide rule
// ------------------------------------------------------------------------------------------

/// Every error without a guard is `Error + Send + Sync + 'static` (so `?` into
/// `Box<dyn Error + Send + Sync>` or `anyhow` works); checked at compile time.
#[test]
fn errors_without_a_guard_are_send_sync_static() {
    fn check<E: std::error::Error + Send + Sync + 'static>() {}
    check::<LockError<()>>();
    check::<TryLockError<()>>();
    check::<LockTimeoutError<()>>();
    check::<shmproc::CondWaitError<()>>();
    check::<CondWaitTimeoutError<()>>();
    check::<shmproc::NotifyError>();
    check::<AcquireError>();
    check::<AcquireTimeoutError>();
    check::<TryAcquireError>();
    check::<WaitTimeoutError>();
    check::<ReleaseError>();
    check::<shmproc::BarrierError>();
    check::<BarrierTimeoutError>();
    // The other families of error/mod.rs.
    check::<shmproc::SegmentError>();
    check::<shmproc::ProcessError>();
    check::<shmproc::PoolError>();
    check::<shmproc::ManagerError>();
    check::<shmproc::IndexError>();
    check::<shmproc::ArraySetError>();
}

/// The guard idioms: `recover` takes the lock anyway, `without_guard` makes a `'static`
/// error, and the blocking form's error converts into its twins with `?`.
#[test]
fn guard_errors_recover_or_drop_their_guard() {
    let _g = common::shared();
    type BoxError = Box<dyn std::error::Error + Send + Sync>;
    let lock = Lock::new().unwrap();
    // `?` straight into a boxed error, with both idioms.
    let take = |lock: &Lock| -> Result<(), BoxError> {
        let g = lock.lock().or_else(LockError::recover)?;
        drop(g);
        let g = lock.lock_timeout(LONG).map_err(LockTimeoutError::without_guard)?;
        drop(g);
        lock.try_acquire()?;
        lock.release()?;
        Ok(())
    };
    take(&lock).unwrap();
    // A blocking form's error moves into its twins with `?` / `From`.
    let t: TryLockError<()> = LockError::<()>::Corrupted.into();
    assert_eq!(t, TryLockError::Corrupted);
    let t: LockTimeoutError<()> = LockError::<()>::RecursionLimit.into();
    assert_eq!(t, LockTimeoutError::RecursionLimit);
    assert_eq!(
        AcquireTimeoutError::from(AcquireError::Corrupted),
        AcquireTimeoutError::Corrupted
    );
    assert_eq!(
        BarrierTimeoutError::from(shmproc::BarrierError::Broken),
        BarrierTimeoutError::Broken
    );
    // Debug never prints the guard; Display is short and lowercase.
    let held = lock.lock().unwrap();
    let e = lock.try_lock().map(drop).unwrap_err();
    assert_eq!(format!("{e:?}"), "WouldBlock");
    assert_eq!(e.to_string(), "the lock is held by someone else");
    drop(held);
    // Refused, not clamped.
    assert!(matches!(
        Semaphore::new(SEM_VALUE_MAX + 1),
        Err(shmproc::SegmentError::InvalidSize(_))
    ));
    assert!(matches!(
        BoundedSemaphore::new(u32::MAX),
        Err(shmproc::SegmentError::InvalidSize(_))
    ));
    assert_eq!(Semaphore::new(SEM_VALUE_MAX).unwrap().value(), SEM_VALUE_MAX);
}

/// The three forms of `Value`/`Array`/`LockRef` locking: the same thread is refused with
/// `WouldDeadlock` while its data guard lives, another thread gets `WouldBlock` /
/// `Timeout`.
#[test]
fn value_and_array_lock_forms() {
    let _g = common::shared();
    let v = Value::new(1u32).unwrap();
    let a = Array::<u8>::new(3).unwrap();
    {
        let g = v.lock_timeout(LONG).unwrap();
        assert!(matches!(v.try_lock(), Err(TryLockError::WouldDeadlock)));
        assert!(matches!(
            v.lock_timeout(ms(5)),
            Err(LockTimeoutError::WouldDeadlock)
        ));
        let (v2, a2) = (v.clone(), a.clone());
        let ga = a.try_lock().unwrap();
        let seen = std::thread::spawn(move || {
            vec![
                format!("{:?}", v2.try_lock().map(drop)),
                format!("{:?}", v2.lock_timeout(ms(5)).map(drop)),
                format!("{:?}", a2.try_lock().map(drop)),
                format!("{:?}", a2.lock_timeout(ms(5)).map(drop)),
                format!("{:?}", a2.get_lock().try_lock().map(drop)),
                format!("{:?}", a2.get_lock().lock_timeout(ms(5)).map(drop)),
            ]
        })
        .join()
        .unwrap();
        assert_eq!(
            seen,
            [
                "Err(WouldBlock)",
                "Err(Timeout)",
                "Err(WouldBlock)",
                "Err(Timeout)",
                "Err(WouldBlock)",
                "Err(Timeout)"
            ]
        );
        drop((g, ga));
    }
    assert_eq!(*v.try_lock().unwrap(), 1);
    assert_eq!(a.get_lock().try_lock().map(drop), Ok(()));
}
