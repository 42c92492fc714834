//! Cost of one child round trip: start a process, let it return a value, join it.
//!
//! Five variants side by side in the group "process start+join":
//! - `fork`: `Process::new(trivial, ())` with `StartMethod::Fork`, start + join;
//! - `spawn`: the same with `StartMethod::Spawn` (re-executes this bench binary);
//! - `fork_closure`: `Process::fork(|| 7u32)`, start + join;
//! - `command_bin_true`: `std::process::Command::new("/bin/true").status()`, the peer;
//! - `raw_fork_waitpid`: `libc::fork()` + `_exit(0)` + `waitpid`, the physical floor.
//!
//! Every iteration reaps its child before the next one starts (no zombies), and the shmproc
//! variants check the value that came back, so they measure a full round trip.
// std atomics here are user code (e.g. inside a `Shared<T>`); the shim rule is for the library.
#![allow(clippy::disallowed_types)]

use std::process::Command;
use std::time::Duration;

use criterion::{Criterion, SamplingMode};
use shmproc::{Process, StartMethod};

/// The child's target: returns a known value so that `join()` has something to check.
fn trivial(_: ()) -> u32 {
    7
}

fn start_join_fork() {
    let mut p = Process::new(trivial, ())
        .start_method(StartMethod::Fork)
        .start()
        .expect("fork start");
    assert_eq!(p.join().expect("fork join"), 7);
}

fn start_join_spawn() {
    let mut p = Process::new(trivial, ())
        .start_method(StartMethod::Spawn)
        .start()
        .expect("spawn start");
    assert_eq!(p.join().expect("spawn join"), 7);
}

fn start_join_fork_closure() {
    let mut p = Process::fork(|| 7u32).start().expect("fork_closure start");
    assert_eq!(p.join().expect("fork_closure join"), 7);
}

fn command_bin_true() {
    let status = Command::new("/bin/true").status().expect("run /bin/true");
    assert!(status.success());
}

fn raw_fork_waitpid() {
    // SAFETY: the child calls only `_exit`, which is async-signal-safe, so forking a
    // (possibly multi-threaded) process is sound here.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: `_exit` never returns and runs no atexit handlers.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    loop {
        // SAFETY: `pid` is our own child and `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        assert_eq!(err.raw_os_error(), Some(libc::EINTR), "waitpid failed: {err}");
    }
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
}

fn process_start_join(c: &mut Criterion) {
    let mut group = c.benchmark_group("process start+join");
    // Spawn costs a millisecond or two per iteration: 60 samples over 11 s (plus 2 s of
    // warm-up) for each of the five keeps the whole run near 75 s on a 2-core VM.
    group.sample_size(60);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(11));
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function("fork", |b| b.iter(start_join_fork));
    group.bench_function("spawn", |b| b.iter(start_join_spawn));
    group.bench_function("fork_closure", |b| b.iter(start_join_fork_closure));
    group.bench_function("command_bin_true", |b| b.iter(command_bin_true));
    group.bench_function("raw_fork_waitpid", |b| b.iter(raw_fork_waitpid));
    group.finish();
}

fn main() {
    // Spawned children re-execute this binary; they run their target here and exit.
    shmproc::init();
    let mut criterion = Criterion::default().configure_from_args();
    process_start_join(&mut criterion);
    criterion.final_summary();
}
