//! `Process` across real child processes, with both start methods.
// std atomics here are user code (e.g. inside a `Shared<T>`); the shim rule is for the library.
#![allow(clippy::disallowed_types)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use common::{eventually, is_dead, ms, METHODS};
use serde::{Deserialize, Serialize};
use shmproc::{
    current_process, parent_process, Process, ProcessError, RawArray, RawValue, Run, Shared, SharedMemory,
    ShmSafe, StartMethod,
};

fn square(x: u64) -> u64 {
    x * x
}

fn describe(tag: String) -> (String, String, u32, Option<u32>) {
    let me = current_process();
    (tag, me.name, me.pid, parent_process().map(|p| p.pid))
}

fn panics(_: ()) -> u64 {
    panic!("the child gave up");
}

fn exits_3(_: ()) -> u64 {
    std::process::exit(3)
}

fn sleeps(secs: u64) {
    std::thread::sleep(std::time::Duration::from_secs(secs));
}

fn fill(a: RawArray<u32>) -> usize {
    for i in 0..a.len() {
        a.set(i, (i * i) as u32).unwrap();
    }
    a.len()
}

#[repr(C)]
struct Counter {
    hits: AtomicU64,
    per_child: u64,
}
// SAFETY: repr(C), every bit pattern valid, mutated only through the atomic.
unsafe impl ShmSafe for Counter {}

fn bump(c: Shared<Counter>) {
    for _ in 0..c.per_child {
        c.hits.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn return_values_both_methods() {
    for m in METHODS {
        let mut p = Process::new(square, 12).start_method(m).start().unwrap();
        assert_eq!(p.start_method(), m);
        assert_eq!(p.join().unwrap(), 144);
        assert_eq!(p.exitcode(), Some(0));
        assert!(!p.is_alive());
        assert!(matches!(p.join(), Err(ProcessError::AlreadyJoined)));
    }
}

#[test]
fn closure_return_value_fork() {
    let data: Vec<u32> = (1..=3).collect();
    let mut p = Process::fork(move || data.iter().sum::<u32>().to_string())
        .start()
        .unwrap();
    assert_eq!(p.join().unwrap(), "6");
}

#[test]
fn closure_cannot_spawn() {
    let r = Process::fork(|| 1u8).start_method(StartMethod::Spawn).start();
    assert!(matches!(r, Err(ProcessError::Unsupported(_))));
}

#[test]
fn names_and_parent() {
    for m in METHODS {
        let mut p = Process::new(describe, "x".to_owned())
            .name("worker-7")
            .start_method(m)
            .start()
            .unwrap();
        let child_pid = p.pid();
        assert_eq!(p.name(), "worker-7");
        let (tag, name, pid, parent) = p.join().unwrap();
        assert_eq!(tag, "x");
        assert_eq!(name, "worker-7");
        assert_eq!(pid, child_pid);
        assert_eq!(parent, Some(std::process::id()));
        let q = Process::new(square, 1).start_method(m).start().unwrap();
        assert!(q.name().starts_with("Process-"), "{}", q.name());
    }
    assert!(parent_process().is_none());
    assert_eq!(current_process().name, "MainProcess");
}

#[test]
fn child_writes_array_parent_reads() {
    for m in METHODS {
        let a = RawArray::<u32>::new(16).unwrap();
        let mut p = Process::new(fill, a.clone()).start_method(m).start().unwrap();
        assert_eq!(p.join().unwrap(), 16);
        let want: Vec<u32> = (0..16u32).map(|i| i * i).collect();
        assert_eq!(a.to_vec(), want, "{m:?}");
    }
}

#[test]
fn shared_atomic_counter_from_many_children() {
    for m in METHODS {
        let c = Shared::new(Counter {
            hits: AtomicU64::new(0),
            per_child: 5_000,
        })
        .unwrap();
        let mut kids: Vec<_> = (0..4)
            .map(|_| Process::new(bump, c.clone()).start_method(m).start().unwrap())
            .collect();
        for k in &mut kids {
            k.join().unwrap();
        }
        assert_eq!(c.hits.load(Ordering::Relaxed), 20_000, "{m:?}");
    }
}

#[test]
fn raw_value_by_fork_closure() {
    let v = RawValue::new(0i64).unwrap();
    let h = v.clone();
    let mut p = Process::fork(move || h.set(-5)).start().unwrap();
    p.join().unwrap();
    assert_eq!(v.get(), -5);
}

#[test]
fn panic_comes_back_with_message_and_location() {
    for m in METHODS {
        let mut p = Process::new(panics, ()).start_method(m).start().unwrap();
        match p.join() {
            Err(ProcessError::Panicked(info)) => {
                assert_eq!(info.message, "the child gave up");
                let loc = info.location.expect("location recorded");
                assert!(loc.contains("tests/process.rs"), "{loc}");
            }
            other => panic!("{m:?}: expected a panic, got {other:?}"),
        }
        assert_eq!(p.exitcode(), Some(1));
    }
}

#[test]
fn exit_code_is_reported() {
    for m in METHODS {
        let mut p = Process::new(exits_3, ()).start_method(m).start().unwrap();
        assert!(matches!(p.join(), Err(ProcessError::Exited(3))), "{m:?}");
        assert_eq!(p.exitcode(), Some(3));
    }
}

#[test]
fn terminate_and_kill_give_negative_codes() {
    for m in METHODS {
        // terminate() right after start(), before the child did anything.
        let mut p = Process::new(sleeps, 30).start_method(m).start().unwrap();
        p.terminate().unwrap();
        assert!(matches!(p.join(), Err(ProcessError::Killed(15))), "{m:?}");
        assert_eq!(p.exitcode(), Some(-15));

        let mut p = Process::new(sleeps, 30).start_method(m).start().unwrap();
        assert!(p.is_alive());
        p.kill().unwrap();
        assert!(matches!(p.join(), Err(ProcessError::Killed(9))));
        assert_eq!(p.exitcode(), Some(-9));
        // Signalling a finished child is a no-op, not an error.
        p.kill().unwrap();
        p.terminate().unwrap();
    }
}

#[test]
fn join_timeout_on_sleeping_child() {
    for m in METHODS {
        let mut p = Process::new(sleeps, 30).start_method(m).start().unwrap();
        assert!(matches!(p.join_timeout(ms(50)), Err(ProcessError::Timeout)));
        assert!(p.is_alive());
        assert_eq!(p.exitcode(), None);
        p.kill().unwrap();
        assert!(matches!(p.join_timeout(ms(10_000)), Err(ProcessError::Killed(9))));
    }
}

#[test]
fn join_timeout_returns_result_when_done_in_time() {
    for m in METHODS {
        let mut p = Process::new(square, 3).start_method(m).start().unwrap();
        assert_eq!(p.join_timeout(ms(10_000)).unwrap(), 9);
    }
}

#[derive(Serialize, Deserialize)]
struct WordCount {
    text: String,
}

impl Run for WordCount {
    type Output = usize;
    fn run(self) -> usize {
        self.text.split_whitespace().count()
    }
}

#[test]
fn run_trait_like_a_process_subclass() {
    for m in METHODS {
        let task = WordCount {
            text: "the quick brown fox".into(),
        };
        let mut p = Process::from_run(task).start_method(m).start().unwrap();
        assert_eq!(p.join().unwrap(), 4);
    }
}

#[test]
fn active_children_lists_running_ones() {
    let mut p = Process::new(sleeps, 30).name("lister").start().unwrap();
    let listed = shmproc::active_children();
    assert!(listed.iter().any(|c| c.pid == p.pid() && c.name == "lister"));
    p.kill().unwrap();
    let _ = p.join();
    assert!(!shmproc::active_children().iter().any(|c| c.pid == p.pid()));
}

/// The middle process: starts a grandchild, publishes its pid, then sleeps until killed.
fn middle((daemon, method, slot): (bool, u8, RawValue<u32>)) {
    let m = if method == 0 {
        StartMethod::Fork
    } else {
        StartMethod::Spawn
    };
    let g = Process::new(sleeps, 60)
        .daemon(daemon)
        .start_method(m)
        .start()
        .unwrap();
    slot.set(g.pid());
    std::thread::sleep(std::time::Duration::from_secs(60));
}

#[test]
fn daemon_grandchild_dies_with_its_parent() {
    for (mi, m) in METHODS.iter().enumerate() {
        for daemon in [true, false] {
            let slot = RawValue::new(0u32).unwrap();
            let arg = (daemon, mi as u8, slot.clone());
            let mut mid = Process::new(middle, arg).start_method(*m).start().unwrap();
            assert!(
                eventually(ms(10_000), || slot.get() != 0),
                "grandchild never started"
            );
            let grandchild = slot.get();
            mid.kill().unwrap();
            assert!(matches!(mid.join(), Err(ProcessError::Killed(9))));
            if daemon {
                assert!(
                    eventually(ms(10_000), || is_dead(grandchild)),
                    "daemon grandchild {grandchild} outlived its parent ({m:?})"
                );
            } else {
                std::thread::sleep(ms(200));
                assert!(
                    !is_dead(grandchild),
                    "non-daemon grandchild died with its parent ({m:?})"
                );
                // Clean up: it is no longer our concern, but do not leave it running.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(grandchild as i32),
                    nix::sys::signal::SIGKILL,
                );
                assert!(eventually(ms(10_000), || is_dead(grandchild)));
            }
        }
    }
}

#[test]
fn many_threads_forking_at_once_do_not_hang() {
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..25u64 {
                    let m = METHODS[(i % 2) as usize];
                    let mut p = Process::new(square, t * 100 + i).start_method(m).start().unwrap();
                    assert_eq!(p.join().unwrap(), (t * 100 + i) * (t * 100 + i));
                    println!("thread {t} child {i} ok");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn default_start_method_is_spawn() {
    assert_eq!(shmproc::get_start_method(), StartMethod::Spawn);
    assert!(shmproc::cpu_count() >= 1);
}

/// Set in a child before it starts a grandchild: a forked grandchild sees it, a spawned one
/// starts from a fresh image.
static MARK: AtomicU64 = AtomicU64::new(0);

fn read_mark(_: ()) -> u64 {
    MARK.load(Ordering::SeqCst)
}

/// In a child (so the test process's default stays as it is): `set_start_method(m)`, then
/// a grandchild started without naming a method.
fn set_method_then_start(m: StartMethod) -> (StartMethod, StartMethod, u64) {
    shmproc::set_start_method(m);
    let got = shmproc::get_start_method();
    MARK.store(42, Ordering::SeqCst);
    let mut g = Process::new(read_mark, ()).start().expect("grandchild");
    let used = g.start_method();
    (got, used, g.join().expect("grandchild's mark"))
}

/// `set_start_method` round trip across processes: the value set is the one read back, and
/// the next `Process` started without a method uses it (a forked grandchild sees the
/// child's memory, a spawned one does not).
#[test]
fn set_start_method_round_trip() {
    for m in METHODS {
        let mut c = Process::new(set_method_then_start, m)
            .start_method(StartMethod::Spawn)
            .start()
            .unwrap();
        let mark = if m == StartMethod::Fork { 42 } else { 0 };
        assert_eq!(c.join().unwrap(), (m, m, mark), "{m:?}");
    }
    assert_eq!(
        shmproc::get_start_method(),
        StartMethod::Spawn,
        "the test process's own default"
    );
}

fn list_fds(_handles: (RawArray<u8>, SharedMemory)) -> Vec<i32> {
    // Collect first, so the directory fd itself can be recognised and dropped.
    let entries: Vec<(i32, String)> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let fd = e.file_name().to_string_lossy().parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?.display().to_string();
            Some((fd, target))
        })
        .collect();
    entries
        .into_iter()
        .filter(|(_, t)| !t.starts_with("/proc/"))
        .map(|(fd, _)| fd)
        .collect()
}

#[test]
fn spawned_child_inherits_only_its_handles() {
    // Handles that exist in the parent but are not passed must not reach the child.
    let _unrelated = (RawArray::<u8>::new(8).unwrap(), SharedMemory::new(8).unwrap());
    let a = RawArray::<u8>::new(8).unwrap();
    let s = SharedMemory::new(8).unwrap();
    let args = (a.clone(), s.clone());
    let mut p = Process::new(list_fds, args)
        .start_method(StartMethod::Spawn)
        .start()
        .unwrap();
    let fds = p.join().unwrap();
    // stdin/stdout/stderr, the child's private record fd, and one fd per passed handle.
    assert_eq!(fds.len(), 3 + 1 + 2, "child fds: {fds:?}");
}

fn open_by_name(name: String) -> String {
    let shm = SharedMemory::open_named(&name).unwrap();
    let mut buf = [0u8; 5];
    shm.read_at(0, &mut buf).unwrap();
    shm.write_at(5, b" back").unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

#[test]
fn child_attaches_to_a_named_segment_by_name() {
    for m in METHODS {
        let name = format!("/shmproc-test-{}-byname-{m:?}", std::process::id());
        let shm = SharedMemory::create_named(&name, 16).unwrap();
        shm.write_at(0, b"hello").unwrap();
        let mut p = Process::new(open_by_name, name.clone())
            .start_method(m)
            .start()
            .unwrap();
        assert_eq!(p.join().unwrap(), "hello");
        assert_eq!(&shm.to_vec()[..10], b"hello back");
        drop(shm);
        assert!(
            matches!(
                SharedMemory::open_named(&name),
                Err(shmproc::SegmentError::NotFound(_))
            ),
            "creator's drop unlinks"
        );
    }
}

// ------------------------------------------------------------------------------------------
// parent_process(): is_alive() and sentinel()
// ------------------------------------------------------------------------------------------

/// Slots of the grandchild's report.
const G_PID: usize = 0;
const G_ALIVE_BEFORE: usize = 1;
const G_READY_BEFORE: usize = 2;
const G_FIRED: usize = 3;
const G_ALIVE_AFTER: usize = 4;
const G_WATCHING: usize = 5;
const G_DONE: usize = 6;
const G_PARENT: usize = 7;

/// The grandchild: looks at its parent, then waits (at most 60 s) for the parent to die.
fn watch_parent(report: RawArray<u32>) {
    let parent = parent_process().expect("started by shmproc");
    let sentinel = parent.sentinel().expect("sentinel");
    report.set(G_PID, std::process::id()).unwrap();
    report.set(G_PARENT, parent.pid).unwrap();
    report.set(G_ALIVE_BEFORE, parent.is_alive() as u32).unwrap();
    report.set(G_READY_BEFORE, sentinel.is_ready() as u32).unwrap();
    report.set(G_WATCHING, 1).unwrap();
    let fired = sentinel.wait_timeout(std::time::Duration::from_secs(60));
    report.set(G_FIRED, fired.is_ok() as u32).unwrap();
    report.set(G_ALIVE_AFTER, parent.is_alive() as u32).unwrap();
    // A ProcessInfo made after the death says the same.
    let late = parent_process().expect("still known");
    report
        .set(
            G_DONE,
            1 + (late.is_alive() as u32) * 10 + (late.sentinel().unwrap().is_ready() as u32) * 100,
        )
        .unwrap();
}

/// The middle process: starts the watcher (not a daemon: it must outlive us), then waits
/// to be killed.
fn start_watcher((report, m): (RawArray<u32>, StartMethod)) {
    let watcher = Process::new(watch_parent, report)
        .start_method(m)
        .start()
        .expect("start");
    std::mem::forget(watcher); // orphaned on purpose: its new parent reaps it
    common::sleep_forever()
}

/// Python's `parent_process()` is a process object with `is_alive()` and a `sentinel`: a
/// grandchild sees its parent alive, then — after the parent is SIGKILLed — sees the
/// sentinel fire and `is_alive()` turn false, with both start methods at both levels.
#[test]
fn parent_process_is_alive_and_sentinel_follow_the_parents_death() {
    for m in METHODS {
        for inner in METHODS {
            let report = RawArray::<u32>::new(8).unwrap();
            let mut middle = Process::new(start_watcher, (report.clone(), inner))
                .start_method(m)
                .daemon(true)
                .start()
                .unwrap();
            assert!(
                eventually(common::LONG, || report.get(G_WATCHING) == Some(1)),
                "{m:?}/{inner:?}: the watcher never reported"
            );
            assert_eq!(report.get(G_PARENT), Some(middle.pid()));
            assert_eq!(
                report.get(G_ALIVE_BEFORE),
                Some(1),
                "{m:?}/{inner:?}: parent alive"
            );
            assert_eq!(
                report.get(G_READY_BEFORE),
                Some(0),
                "{m:?}/{inner:?}: sentinel early"
            );
            // Still waiting while the parent lives.
            std::thread::sleep(ms(50));
            assert_eq!(
                report.get(G_DONE),
                Some(0),
                "{m:?}/{inner:?}: woke with the parent alive"
            );
            common::kill_and_reap(&mut middle);
            assert!(
                eventually(common::LONG, || report.get(G_DONE) != Some(0)),
                "{m:?}/{inner:?}: the watcher did not see its parent die"
            );
            assert_eq!(
                report.get(G_FIRED),
                Some(1),
                "{m:?}/{inner:?}: sentinel timed out"
            );
            assert_eq!(
                report.get(G_ALIVE_AFTER),
                Some(0),
                "{m:?}/{inner:?}: is_alive after death"
            );
            assert_eq!(
                report.get(G_DONE),
                Some(101),
                "{m:?}/{inner:?}: a late parent_process()"
            );
            let g = report.get(G_PID).unwrap();
            assert!(
                eventually(common::LONG, || is_dead(g)),
                "the watcher did not exit"
            );
        }
    }
}

fn sleeper(_: ()) {
    common::sleep_forever()
}

/// `is_alive()` and `sentinel()` of `current_process()` and of `active_children()` entries.
#[test]
fn process_info_is_alive_and_sentinel() {
    let me = current_process();
    assert!(me.is_alive());
    assert!(!me.sentinel().unwrap().is_ready());
    for m in METHODS {
        let mut child = Process::new(sleeper, ())
            .start_method(m)
            .daemon(true)
            .start()
            .unwrap();
        let info = shmproc::active_children()
            .into_iter()
            .find(|c| c.pid == child.pid())
            .expect("listed");
        assert!(info.is_alive());
        let sentinel = info.sentinel().unwrap();
        assert!(
            matches!(sentinel.wait_timeout(ms(20)), Err(ProcessError::Timeout)),
            "{m:?}: ready while the child runs"
        );
        child.kill().unwrap();
        assert!(
            sentinel.wait_timeout(common::LONG).is_ok(),
            "{m:?}: did not fire on death"
        );
        assert!(
            !info.is_alive(),
            "{m:?}: an exited child is not alive, reaped or not"
        );
        let _ = child.join_timeout(common::JOIN);
        // After the reap: a fresh sentinel of the same info is ready at once.
        assert!(info.sentinel().unwrap().is_ready());
    }
}

#[test]
fn process_error_is_send_sync_static_and_boxes_with_question_mark() {
    const fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}
    const _: () = assert_error::<ProcessError>();
    fn boxed() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Err(ProcessError::Timeout)?
    }
    assert_eq!(
        boxed().unwrap_err().to_string(),
        ProcessError::Timeout.to_string()
    );
}

#[test]
fn join_timeout_and_sentinel_follow_the_timeout_rule_for_both_start_methods() {
    for m in METHODS {
        let mut p = Process::new(sleep_then, 10_000u64)
            .start_method(m)
            .start()
            .unwrap();
        assert!(
            matches!(p.join_timeout(ms(20)), Err(ProcessError::Timeout)),
            "{m:?}"
        );
        let info = shmproc::active_children()
            .into_iter()
            .find(|c| c.pid == p.pid())
            .expect("listed");
        let sentinel = info.sentinel().unwrap();
        assert!(
            matches!(sentinel.wait_timeout(ms(20)), Err(ProcessError::Timeout)),
            "{m:?}"
        );
        p.kill().unwrap();
        assert!(sentinel.wait_timeout(common::LONG).is_ok(), "{m:?}");
        assert!(
            matches!(p.join_timeout(common::LONG), Err(ProcessError::Killed(9))),
            "{m:?}"
        );
        assert!(
            matches!(p.join_timeout(ms(0)), Err(ProcessError::AlreadyJoined)),
            "{m:?}"
        );
    }
}

fn sleep_then(ms: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(ms));
    ms
}
