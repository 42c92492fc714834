//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;
use shmproc::{Process, ProcessError, StartMethod};

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

/// Bound on every join: generous, only there so that a bug fails instead of hanging.
pub const JOIN: Duration = Duration::from_secs(60);
/// Bound on waits that are expected to succeed.
pub const LONG: Duration = Duration::from_secs(30);

/// Starts `f(args)` with method `m`, as a daemon (it dies with the test's thread).
pub fn start<A, R>(m: StartMethod, f: fn(A) -> R, args: A) -> Process<R>
where
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    Process::new(f, args)
        .start_method(m)
        .daemon(true)
        .start()
        .expect("start a child")
}

/// The child's result; panics (with the child's own panic message) if it failed.
pub fn join<R: Serialize + DeserializeOwned + 'static>(p: &mut Process<R>) -> R {
    match p.join_timeout(JOIN) {
        Ok(r) => r,
        Err(e) => panic!("child {} ({:?}) failed: {e}", p.pid(), p.start_method()),
    }
}

/// Runs `f` on a watchdog thread, for calls that have no timeout form (`put`, `get`,
/// `Value`, `Array`, raw `lock(None)`): panics if it is still blocked after `LONG`.
pub fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(LONG) {
        Ok(v) => v,
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the worker always sends before it ends"),
        },
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("{what}: still blocked after {LONG:?}"),
    }
}

/// Sends `SIGKILL` and reaps the child, checking that it died of it.
pub fn kill_and_reap<R: Serialize + DeserializeOwned + 'static>(p: &mut Process<R>) {
    p.kill().expect("kill");
    let pid = p.pid();
    assert!(eventually(JOIN, || is_dead(pid)), "child {pid} survived SIGKILL");
    match p.join_timeout(JOIN) {
        Err(ProcessError::Killed(9)) => {}
        Err(e) => panic!("child {pid}: expected death by SIGKILL, got {e}"),
        Ok(_) => panic!("child {pid} returned instead of being killed"),
    }
}

/// The body of a child that waits to be killed.
pub fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// `/dev/shm` entries of shmproc that were not in `before`.
pub fn new_shmproc_entries(before: &[String]) -> Vec<String> {
    dev_shm()
        .into_iter()
        .filter(|e| e.contains("shmproc") && !before.contains(e))
        .collect()
}

/// Runs `scenario` for each start method (bounded), then checks that it left no zombie
/// children, no fd and no shmproc `/dev/shm` entry behind. Call it with the other tests of
/// the binary excluded (they open fds and start children too), after a warm-up that made
/// the lazily created process-wide fds.
pub fn assert_leaves_nothing(scenario: fn(StartMethod)) {
    assert!(eventually(LONG, || zombie_children().is_empty()));
    let fds = open_fds();
    let shm = dev_shm();
    for m in METHODS {
        bounded(&format!("{m:?} leak scenario"), move || scenario(m));
        assert!(
            eventually(ms(10_000), || zombie_children().is_empty()),
            "{m:?}: zombies {:?}",
            zombie_children()
        );
        assert!(
            eventually(ms(5_000), || open_fds() == fds),
            "{m:?}: fds leaked:\nbefore {fds:?}\nafter  {:?}",
            open_fds()
        );
        // Other test binaries on the machine may make short-lived entries: allow them to go.
        assert!(
            eventually(ms(5_000), || new_shmproc_entries(&shm).is_empty()),
            "{m:?}: /dev/shm entries leaked: {:?}",
            new_shmproc_entries(&shm)
        );
    }
}

/// The leak tests compare this process's fds and children before and after; the tests of a
/// binary run in parallel, so a leak test takes this lock exclusively and every other test
/// of its binary takes it shared.
static SERIAL: RwLock<()> = RwLock::new(());

/// Runs beside the other tests of this binary, but never beside a leak test.
pub fn shared() -> RwLockReadGuard<'static, ()> {
    SERIAL.read().unwrap_or_else(PoisonError::into_inner)
}

/// Runs alone among this binary's tests that took [`shared`].
pub fn exclusive() -> RwLockWriteGuard<'static, ()> {
    SERIAL.write().unwrap_or_else(PoisonError::into_inner)
}

/// Freezes the child `pid` (SIGSTOP) at a moment when `caught()` holds, sampling: stop it,
/// look, and if `caught()` is false let it run (SIGCONT) a few hundred µs and try again, up
/// to `tries` times. Returns whether it is now stopped with `caught()` true — then a SIGKILL
/// kills it exactly in that state (a stopped process dies of SIGKILL). On `false` the child
/// runs again.
pub fn stop_when(pid: u32, tries: u32, mut caught: impl FnMut() -> bool) -> bool {
    use nix::sys::signal::{kill, Signal};
    let p = nix::unistd::Pid::from_raw(pid as i32);
    for k in 0..tries {
        if kill(p, Signal::SIGSTOP).is_err() {
            return false;
        }
        if !eventually(LONG, || proc_state(pid) == Some('T')) {
            let _ = kill(p, Signal::SIGCONT);
            return false;
        }
        if caught() {
            return true;
        }
        let _ = kill(p, Signal::SIGCONT);
        std::thread::sleep(Duration::from_micros(100 + u64::from(k % 7) * 70));
    }
    false
}

/// The 32-bit header field `name` of a channel (`ChannelHeader::fields()`).
pub fn chan_word<'a>(chan: &'a shmproc::raw::Channel, name: &str) -> &'a std::sync::atomic::AtomicU32 {
    let (_, off, size) = shmproc::raw::ChannelHeader::fields()
        .into_iter()
        .find(|f| f.0 == name)
        .unwrap_or_else(|| panic!("no channel header field {name}"));
    assert!(size >= 4 && off % 4 == 0 && off + 4 <= chan.segment().len());
    // SAFETY: in bounds of the live mapping and 4-aligned (checked); the channel accesses
    // its header fields only atomically.
    unsafe {
        &*chan
            .segment()
            .as_ptr()
            .add(off)
            .cast::<std::sync::atomic::AtomicU32>()
    }
}

/// Whether thread `tid` holds the channel's `lock` (its word's field name) in the middle of
/// a message (it has moved part of one: the `mid` field set).
fn mid_message(chan: &shmproc::raw::Channel, tid: u32, lock: &str, mid: &str) -> bool {
    use std::sync::atomic::Ordering::SeqCst;
    chan_word(chan, lock).load(SeqCst) & ((1 << 30) - 1) == tid && chan_word(chan, mid).load(SeqCst) != 0
}

/// Whether thread `tid` holds the channel's write lock in the middle of a message.
pub fn writing_mid_message(chan: &shmproc::raw::Channel, tid: u32) -> bool {
    mid_message(chan, tid, "write_lock.word", "writer_mid")
}

/// Whether thread `tid` holds the channel's read lock in the middle of a message.
pub fn reading_mid_message(chan: &shmproc::raw::Channel, tid: u32) -> bool {
    mid_message(chan, tid, "read_lock.word", "reader_mid")
}
