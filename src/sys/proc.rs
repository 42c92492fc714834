//! Process calls: fork, spawn of our own executable, pidfd, reaping, signals.

use std::ffi::CString;
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::time::Instant;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use rustix::event::{poll, PollFd, PollFlags};
use rustix::io::Errno;

fn nix_io(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

fn rustix_io(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

/// Result of [`fork`].
pub(crate) enum Forked {
    Parent(i32),
    Child,
}

/// `fork()`.
///
/// # Safety
/// In a multi-threaded parent the child may only rely on what was consistent at the moment
/// of the fork (glibc keeps malloc usable; locks held by other threads stay held forever).
pub(crate) unsafe fn fork() -> io::Result<Forked> {
    // SAFETY: forwarded to the caller's contract.
    match unsafe { nix::unistd::fork() }.map_err(nix_io)? {
        nix::unistd::ForkResult::Parent { child } => Ok(Forked::Parent(child.as_raw())),
        nix::unistd::ForkResult::Child => Ok(Forked::Child),
    }
}

/// Starts `/proc/self/exe` with `argv`/`envp` via `posix_spawn` (a `CLONE_VFORK` clone in
/// glibc: safe in multi-threaded parents, and cheap). Each fd in `keep` stays open in the
/// child under the same number (`adddup2(fd, fd)` clears `FD_CLOEXEC`); every other fd of
/// ours is close-on-exec. The child starts with an empty signal mask and default handling
/// of `SIGTERM`/`SIGINT`/`SIGHUP`, so `terminate()` works even if the parent blocks them.
pub(crate) fn spawn_self(argv: &[CString], envp: &[CString], keep: &[RawFd]) -> io::Result<i32> {
    use nix::spawn::{posix_spawn, PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags};
    let mut actions = PosixSpawnFileActions::init().map_err(nix_io)?;
    for &fd in keep {
        actions.add_dup2(fd, fd).map_err(nix_io)?;
    }
    let mut attr = PosixSpawnAttr::init().map_err(nix_io)?;
    attr.set_sigmask(&SigSet::empty()).map_err(nix_io)?;
    let mut defaults = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        defaults.add(s);
    }
    attr.set_sigdefault(&defaults).map_err(nix_io)?;
    attr.set_flags(PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF)
        .map_err(nix_io)?;
    let exe = c"/proc/self/exe";
    let pid = posix_spawn(exe, &actions, &attr, argv, envp).map_err(nix_io)?;
    Ok(pid.as_raw())
}

/// In a freshly forked child: default `SIGTERM`/`SIGINT`/`SIGHUP`, nothing blocked.
pub(crate) fn reset_signals_in_child() {
    use nix::sys::signal::{signal, sigprocmask, SigHandler, SigmaskHow};
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        // SAFETY: installing SIG_DFL runs no handler code and is async-signal-safe.
        let _ = unsafe { signal(s, SigHandler::SigDfl) };
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// A pidfd for `pid` (Linux ≥ 5.3). Taken right after the child starts, before it can be
/// reaped, so it always names our child and never a process that reused the pid.
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    let pid =
        rustix::process::Pid::from_raw(pid).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).map_err(rustix_io)
}

/// Waits until the process behind `pidfd` has exited or `deadline` passes.
/// Returns whether it has exited.
pub(crate) fn wait_exit(pidfd: &OwnedFd, deadline: Option<Instant>) -> io::Result<bool> {
    loop {
        let timeout = match deadline {
            None => None,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                Some(rustix::time::Timespec {
                    tv_sec: left.as_secs() as i64,
                    tv_nsec: i64::from(left.subsec_nanos()),
                })
            }
        };
        let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
        match poll(&mut fds, timeout.as_ref()) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(rustix_io(e)),
        }
    }
}

/// Reaps `pid` if it has exited: `Some(code)` with Python's convention (`-N` for a signal).
pub(crate) fn try_reap(pid: i32) -> io::Result<Option<i32>> {
    loop {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(Some(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(Some(-(sig as i32))),
            Ok(_) => return Ok(None),
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(nix_io(e)),
        }
    }
}

/// Blocks until `pid` exits and reaps it.
pub(crate) fn reap_blocking(pid: i32) -> io::Result<i32> {
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(-(sig as i32)),
            Ok(_) => continue,
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(nix_io(e)),
        }
    }
}

/// `SIGTERM`, for [`send_signal`].
pub(crate) const SIGTERM: i32 = libc::SIGTERM;
/// `SIGKILL`, for [`send_signal`].
pub(crate) const SIGKILL: i32 = libc::SIGKILL;

/// `SIGKILL`s our child `pid` by pid, for the one moment a child has no pidfd: opening it
/// failed right after the start. Safe against pid reuse only because the caller has not
/// reaped the child yet, so its pid cannot name another process.
pub(crate) fn kill_unreaped_child(pid: i32) -> io::Result<()> {
    match nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL) {
        Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
        Err(e) => Err(nix_io(e)),
    }
}

/// Sends `sig` through a pidfd (never hits a process that reused the pid).
pub(crate) fn send_signal(pidfd: &OwnedFd, sig: i32) -> io::Result<()> {
    let sig = rustix::process::Signal::from_named_raw(sig)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    match rustix::process::pidfd_send_signal(pidfd, sig) {
        Ok(()) | Err(Errno::SRCH) => Ok(()),
        Err(e) => Err(rustix_io(e)),
    }
}

/// Asks the kernel to `SIGKILL` us when our parent (thread) dies, then checks that the
/// parent did not die before the request: returns `false` if it did.
pub(crate) fn die_with_parent(parent_pid: u32) -> bool {
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    rustix::process::getppid().is_some_and(|p| p.as_raw_pid() as u32 == parent_pid)
}

/// `_exit(code)`: leaves at once, running no atexit handlers (for forked children).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is always safe to call; it does not return.
    unsafe { libc::_exit(code) }
}

/// `(st_dev, st_ino)` of a path, used to check that a spawned child runs our executable.
pub(crate) fn file_id(path: &str) -> io::Result<(u64, u64)> {
    let st = rustix::fs::stat(path).map_err(rustix_io)?;
    Ok((st.st_dev, st.st_ino))
}

/// This process's start time, read from `/proc` once per process (a forked child, whose
/// pid differs, reads its own).
pub(crate) fn own_start_time() -> Option<u64> {
    #[allow(clippy::disallowed_types)] // process-local const statics (loom's are not const)
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
    // Process-local and const-initialised: the loom shim's atomics are not const.
    #[allow(clippy::disallowed_types)]
    static PID: AtomicU32 = AtomicU32::new(0);
    #[allow(clippy::disallowed_types)]
    static START: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    // Pairs with the release store below: a pid seen here comes with its start time.
    if PID.load(Ordering::Acquire) == pid {
        return Some(START.load(Ordering::Relaxed));
    }
    let start = start_time(pid)?;
    START.store(start, Ordering::Relaxed);
    PID.store(pid, Ordering::Release);
    Some(start)
}

/// Our parent's pid (`getppid`; 0 if there is none, as for a process whose parent is
/// outside our pid namespace).
pub(crate) fn parent_pid() -> u32 {
    rustix::process::getppid().map_or(0, |p| p.as_raw_pid() as u32)
}

/// The start time of our parent `pid`, or `None` if `pid` is no longer our parent (it has
/// exited: its children were handed to a reaper). Reading the start time between two checks
/// that `pid` is still our parent makes sure it is that process's and not a successor's: a
/// process whose parent it still is cannot have exited.
pub(crate) fn start_time_of_parent(pid: u32) -> Option<u64> {
    if parent_pid() != pid {
        return None;
    }
    let start = start_time(pid)?;
    (parent_pid() == pid).then_some(start)
}

/// An fd that always polls readable (an eventfd holding 1): the sentinel of a process that
/// has exited already.
pub(crate) fn ready_fd() -> io::Result<OwnedFd> {
    rustix::event::eventfd(1, rustix::event::EventfdFlags::CLOEXEC).map_err(rustix_io)
}

/// A pidfd for `pid` if `pid` still names the process that started at `start` (clock
/// ticks), `None` if that process has exited. The start time is checked after the pidfd is
/// open, so a pid reused by another process is never taken for it.
pub(crate) fn pidfd_if_same(pid: u32, start: u64) -> io::Result<Option<OwnedFd>> {
    let fd = match pidfd_open(pid as i32) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok((start_time(pid) == Some(start)).then_some(fd))
}

/// Start time of process `pid` in clock ticks after boot (`/proc/<pid>/stat` field 22), or
/// `None` if there is no such process. Together with the pid it names one process for good.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    thread_start_time(pid)
}

/// The calling thread's kernel thread id.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn gettid() -> u32 {
    rustix::thread::gettid().as_raw_nonzero().get() as u32
}

/// Start time of thread `tid` (clock ticks after boot), `None` if no such thread is
/// running (gone, or a zombie). Thread ids are global, so `/proc/<tid>` works for any thread.
pub(crate) fn thread_start_time(tid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{tid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" || state == "x" {
        return None;
    }
    // `rest` starts with field 3 (state); field 22 (starttime) is 19 further on.
    fields.nth(18)?.parse().ok()
}

/// Registers `handler` to run in the child after every `fork()` of this process
/// (`pthread_atfork`; nix and rustix do not wrap it). Returns a closure for `Once`.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn on_fork_in_child(handler: extern "C" fn()) -> impl FnOnce() {
    move || {
        // SAFETY: registering a plain `extern "C" fn` with no captured state; it only bumps
        // an atomic, which is async-signal-safe as the child side of fork requires.
        unsafe {
            libc::pthread_atfork(None, None, Some(handler));
        }
    }
}

/// The usual name of a signal number, for messages (`"signal"` for the others).
pub(crate) fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGKILL => "SIGKILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGPIPE => "SIGPIPE",
        _ => "signal",
    }
}
