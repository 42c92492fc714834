//! `Process`: children started by fork or by re-executing this program (spawn).

pub(crate) mod boot;
pub(crate) mod child;

use std::any::Any;
use std::ffi::{CString, OsString};
use std::io::Write;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
#[allow(clippy::disallowed_types)] // process-local const statics (see DEFAULT_METHOD)
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use self::boot::{Boot, Outcome, BOOT_TAG, DONE_TAG, ENV_BOOT, RECORD_LIMIT};
pub use self::child::init;
use crate::error::ProcessError;
use crate::shm::transfer;
use crate::sys::{fd, proc};

/// How a child process is started; mirrors Python's start methods.
///
/// ```
/// use shmproc::{set_start_method, get_start_method, Process, StartMethod};
/// fn pid_of_child(_: ()) -> u32 { std::process::id() }
///
/// shmproc::init();
/// assert_eq!(get_start_method(), StartMethod::Spawn);
/// let mut p = Process::new(pid_of_child, ()).start_method(StartMethod::Fork).start()?;
/// assert_eq!(p.join()?, p.pid());
/// # set_start_method(StartMethod::Spawn);
/// # Ok::<(), shmproc::ProcessError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub enum StartMethod {
    /// `fork()`: the child is a copy of the parent and runs the target at once (≈0.2 ms).
    ///
    /// Only the forking thread exists in the child. Anything another thread held at that
    /// moment (a lock, a half-written buffer) stays so in the child forever; shmproc holds
    /// its own locks and stdout/stderr across the fork so they are consistent, and glibc's
    /// malloc stays usable, but a target that touches another lock taken by another parent
    /// thread can deadlock. This is why Python moved away from fork as its default.
    Fork,
    /// Re-executes the current executable (`/proc/self/exe`), which runs the target from
    /// `shmproc::init()` (automatic before `main`). Nothing is inherited but the arguments,
    /// the handles inside them, the environment and stdin/stdout/stderr. The default.
    Spawn,
}

// Process-local and const-initialised: the loom shim's atomics are not const.
#[allow(clippy::disallowed_types)]
static DEFAULT_METHOD: AtomicU8 = AtomicU8::new(1);

/// Sets the start method used when a builder does not choose one (Python's
/// `multiprocessing.set_start_method`). The initial default is [`StartMethod::Spawn`].
pub fn set_start_method(method: StartMethod) {
    DEFAULT_METHOD.store(method as u8, Ordering::Relaxed);
}

/// The current default start method (Python's `get_start_method`).
pub fn get_start_method() -> StartMethod {
    match DEFAULT_METHOD.load(Ordering::Relaxed) {
        0 => StartMethod::Fork,
        _ => StartMethod::Spawn,
    }
}

/// What Python's `current_process()` / `parent_process()` / `active_children()` describe.
///
/// Besides the name, pid and daemon flag it remembers the process's start time, so
/// [`is_alive`](Self::is_alive) and [`sentinel`](Self::sentinel) keep naming *that* process
/// even after its pid is reused by another one.
///
/// ```
/// use shmproc::{current_process, parent_process, Process, ProcessInfo};
/// fn who(_: ()) -> (String, Option<u32>, bool) {
///     let parent = parent_process().expect("started by shmproc");
///     (current_process().name, Some(parent.pid), parent.is_alive())
/// }
///
/// shmproc::init();
/// assert_eq!(current_process().name, "MainProcess");
/// assert!(current_process().is_alive());
/// let mut p = Process::new(who, ()).name("helper").start()?;
/// assert_eq!(p.join()?, ("helper".to_owned(), Some(std::process::id()), true));
/// # Ok::<(), shmproc::ProcessError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    /// The process name (`"MainProcess"` for a program not started by shmproc).
    pub name: String,
    /// The OS process id.
    pub pid: u32,
    /// Whether the process was started as a daemon.
    pub daemon: bool,
    /// Its start time (clock ticks after boot), `None` if it had exited when this value was
    /// made.
    start: Option<u64>,
}

impl ProcessInfo {
    /// Whether the process is still running (Python's `is_alive()`). Robust against pid
    /// reuse: the pid must still name a running process with the start time seen when this
    /// value was made. A process that has exited but is not reaped yet is not alive.
    pub fn is_alive(&self) -> bool {
        self.start.is_some_and(|s| proc::start_time(self.pid) == Some(s))
    }

    /// Something to wait on for the process's exit (Python's `sentinel`): an fd that polls
    /// readable once the process has exited — a pidfd while it runs, or an fd that is
    /// readable at once if it had exited already (or its pid names another process now).
    /// It works for any process, not only children, and is what a `poll`/`epoll` loop (or
    /// the crate's own waiting) can watch.
    ///
    /// ```
    /// # fn main() -> Result<(), shmproc::ProcessError> {
    /// use std::time::Duration;
    /// let me = shmproc::current_process().sentinel()?;
    /// assert!(!me.is_ready()); // this process has not exited
    /// assert!(matches!(me.wait_timeout(Duration::from_millis(1)), Err(shmproc::ProcessError::Timeout)));
    /// # Ok(()) }
    /// ```
    pub fn sentinel(&self) -> Result<Sentinel, ProcessError> {
        let fd = match self.start {
            Some(start) => proc::pidfd_if_same(self.pid, start)?,
            None => None,
        };
        Ok(Sentinel {
            fd: match fd {
                Some(fd) => fd,
                None => proc::ready_fd()?,
            },
        })
    }
}

/// The exit of one process as a file descriptor (Python's `Process.sentinel`), from
/// [`ProcessInfo::sentinel`]: it polls readable once the process has exited.
#[derive(Debug)]
pub struct Sentinel {
    fd: OwnedFd,
}

impl Sentinel {
    /// Whether the process has exited.
    pub fn is_ready(&self) -> bool {
        self.wait_deadline(Some(Instant::now()))
    }

    /// Blocks until the process has exited.
    pub fn wait(&self) {
        self.wait_deadline(None);
    }

    /// Blocks until the process has exited (`Ok(())`) or `timeout` passes
    /// ([`ProcessError::Timeout`], the crate's timeout rule).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<(), ProcessError> {
        match self.wait_deadline(crate::sync::deadline_after(timeout)) {
            true => Ok(()),
            false => Err(ProcessError::Timeout),
        }
    }

    fn wait_deadline(&self, deadline: Option<Instant>) -> bool {
        // A poll error on an fd we own cannot happen short of a kernel without pidfd, which
        // could not have made this sentinel; treat it as "not known to have exited".
        proc::wait_exit(&self.fd, deadline).unwrap_or(false)
    }
}

impl std::os::fd::AsFd for Sentinel {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// This process (Python's `multiprocessing.current_process()`).
pub fn current_process() -> ProcessInfo {
    let pid = std::process::id();
    ProcessInfo {
        name: child::identity_name(),
        pid,
        daemon: child::identity().daemon,
        start: proc::own_start_time(),
    }
}

/// The process that started this one, if shmproc started it (Python's `parent_process()`).
/// Its [`is_alive`](ProcessInfo::is_alive) turns false once the parent has exited (also by
/// `SIGKILL`), and its [`sentinel`](ProcessInfo::sentinel) lets this process wait for that.
pub fn parent_process() -> Option<ProcessInfo> {
    child::identity().parent.as_ref().map(|(pid, name)| ProcessInfo {
        name: name.clone(),
        pid: *pid,
        daemon: false,
        start: proc::start_time_of_parent(*pid),
    })
}

/// Children of this process that are still running (Python's `active_children()`); as in
/// Python, finished children found on the way are reaped.
pub fn active_children() -> Vec<ProcessInfo> {
    let mut list = registry();
    list.retain(|w| w.strong_count() > 0);
    list.iter()
        .filter_map(Weak::upgrade)
        .filter(|c| matches!(c.poll_exit(Some(Instant::now())), Ok(None)))
        .map(|c| ProcessInfo {
            name: c.name.clone(),
            pid: c.pid as u32,
            daemon: c.daemon,
            // Not reaped yet (we are its reaper), so the pid is still this child's.
            start: proc::start_time(c.pid as u32),
        })
        .collect()
}

/// Number of CPUs this process may run on (Python's `cpu_count()`, restricted to the
/// affinity mask like `os.process_cpu_count()`).
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Python's "subclass `Process` and override `run()`": implement `Run` on a serde struct
/// whose fields are the arguments, then start it with [`Process::from_run`]. It works with
/// both start methods.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use shmproc::{Process, Run};
///
/// #[derive(Serialize, Deserialize)]
/// struct Square { x: u64 }
/// impl Run for Square {
///     type Output = u64;
///     fn run(self) -> u64 { self.x * self.x }
/// }
///
/// shmproc::init();
/// let mut p = Process::from_run(Square { x: 7 }).start()?;
/// assert_eq!(p.join()?, 49);
/// # Ok::<(), shmproc::ProcessError>(())
/// ```
pub trait Run: Serialize + DeserializeOwned + 'static {
    /// What the child returns to `join()`.
    type Output: Serialize + DeserializeOwned + 'static;
    /// The child's body.
    fn run(self) -> Self::Output;
}

fn run_task<T: Run>(task: T) -> T::Output {
    task.run()
}

/// Spawn-side pieces of a target: code offsets, encoded arguments and the fds they name.
struct SpawnParts {
    trampoline: u64,
    target: u64,
    signature: u64,
    args: Vec<u8>,
    fds: Vec<RawFd>,
    /// Run with the child's pid once it started, before `keep_alive` is dropped.
    started: Vec<transfer::OnStarted>,
    /// The arguments themselves, alive until the child has its copies of their fds.
    keep_alive: Box<dyn Any>,
}

type ForkBody<R> = Box<dyn FnOnce() -> R>;

enum Prepared<R> {
    Fork(ForkBody<R>),
    Spawn(SpawnParts),
}

type Prepare<R> = Box<dyn FnOnce(StartMethod) -> Result<Prepared<R>, ProcessError>>;

enum Target<R> {
    Closure(ForkBody<R>),
    Func(Prepare<R>),
}

/// Configures a child before [`start`](Self::start): name, daemon flag, start method.
/// Made by [`Process::new`], [`Process::fork`] or [`Process::from_run`].
///
/// ```
/// use shmproc::Process;
/// fn forever(_: ()) { loop { std::thread::sleep(std::time::Duration::from_secs(1)) } }
///
/// shmproc::init();
/// let p = Process::new(forever, ()).name("watcher").daemon(true).start()?;
/// assert!(p.daemon() && p.is_alive());
/// p.kill()?; // a daemon would also die with this process
/// # Ok::<(), shmproc::ProcessError>(())
/// ```
#[must_use = "a builder does nothing until start() is called"]
pub struct ProcessBuilder<R> {
    name: Option<String>,
    daemon: bool,
    method: Option<StartMethod>,
    target: Target<R>,
}

impl<R: Serialize + DeserializeOwned + 'static> ProcessBuilder<R> {
    /// The child's name (default `"Process-N"`, as in Python).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// A daemon child is killed (`SIGKILL`) when the thread that started it, and so in
    /// particular the parent process, dies — also when the parent is itself `SIGKILL`ed.
    /// Start daemons from a thread that lives as long as they should.
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = daemon;
        self
    }

    /// The start method for this child (default: [`get_start_method`]).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Starts the child.
    pub fn start(self) -> Result<Process<R>, ProcessError> {
        let method = self.method.unwrap_or_else(get_start_method);
        let name = self.name.unwrap_or_else(|| {
            // Process-local and const-initialised: the loom shim's atomics are not const.
            #[allow(clippy::disallowed_types)]
            static COUNTER: AtomicUsize = AtomicUsize::new(1);
            format!("Process-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
        });
        child::install_panic_hook();
        let prepared = match self.target {
            Target::Closure(body) => match method {
                StartMethod::Fork => Prepared::Fork(body),
                StartMethod::Spawn => {
                    return Err(ProcessError::Unsupported(
                        "a closure can only run in a forked child; use Process::new with a fn for Spawn",
                    ))
                }
            },
            Target::Func(prepare) => prepare(method)?,
        };
        let record = fd::memfd_plain("shmproc-child")?;
        let spec = Spec {
            name,
            daemon: self.daemon,
            method,
        };
        let pid = match prepared {
            Prepared::Fork(body) => start_fork(&spec, record.as_raw_fd(), body)?,
            Prepared::Spawn(parts) => start_spawn(&spec, &record, parts)?,
        };
        Process::adopt(pid, spec, record)
    }
}

struct Spec {
    name: String,
    daemon: bool,
    method: StartMethod,
}

fn registry() -> MutexGuard<'static, Vec<Weak<Inner>>> {
    static CHILDREN: Mutex<Vec<Weak<Inner>>> = Mutex::new(Vec::new());
    CHILDREN.lock().unwrap_or_else(|p| p.into_inner())
}

fn start_fork<R: Serialize>(spec: &Spec, record: RawFd, body: ForkBody<R>) -> Result<i32, ProcessError> {
    let parent_pid = std::process::id();
    let parent_name = child::identity_name();
    // Finish every lazily-run `Once` a child may need before forking (see `prepare_fork`).
    #[cfg(not(loom))]
    crate::sync::park::prepare_fork();
    // Hold the locks a child may need while forking, so that no other thread holds them at
    // the moment of the fork: the child gets them unlocked. Flush stdout so buffered text
    // is not printed twice.
    let mut children = registry();
    let mut out = std::io::stdout().lock();
    let err = std::io::stderr().lock();
    let _ = out.flush();
    // SAFETY: the child only uses the locks taken above (released below), malloc (kept
    // consistent by glibc across fork) and the user's target, whose hazards are documented
    // on `StartMethod::Fork`.
    match unsafe { proc::fork() }? {
        proc::Forked::Parent(pid) => {
            drop((out, err, children));
            // Pipe ends moved into the child's closure learn the child's pid as they drop here.
            crate::channel::connection::dropping_for_fork_child(pid as u32, move || drop(body));
            Ok(pid)
        }
        proc::Forked::Child => {
            // The parent's children are not ours; forget them without touching each entry.
            std::mem::forget(std::mem::take(&mut *children));
            drop((out, err, children));
            proc::reset_signals_in_child();
            if spec.daemon && !proc::die_with_parent(parent_pid) {
                proc::exit_now(1);
            }
            child::set_identity(child::Identity {
                name: spec.name.clone(),
                daemon: spec.daemon,
                parent: Some((parent_pid, parent_name)),
            });
            let outcome = child::run_captured(move || child::encode_result(&body()));
            let code = child::report(record, &outcome);
            child::flush_std();
            proc::exit_now(code)
        }
    }
}

fn start_spawn(spec: &Spec, record: &OwnedFd, parts: SpawnParts) -> Result<i32, ProcessError> {
    // Keep the pre-main constructor linked into every binary that can spawn.
    std::hint::black_box(&child::CONSTRUCTOR);
    let boot = Boot {
        exe: proc::file_id("/proc/self/exe")?,
        parent_pid: std::process::id(),
        parent_name: child::identity_name(),
        name: spec.name.clone(),
        daemon: spec.daemon,
        trampoline: parts.trampoline,
        target: parts.target,
        signature: parts.signature,
        args: parts.args,
        fds: parts.fds.clone(),
    };
    let rec = boot::encode(BOOT_TAG, &boot).map_err(|e| ProcessError::Codec(e.to_string()))?;
    fd::write_all(record.as_fd(), &rec)?;
    let mut keep = parts.fds;
    keep.push(record.as_raw_fd());
    let argv0 = std::env::args_os()
        .next()
        .unwrap_or_else(|| OsString::from("shmproc-child"));
    let argv = [cstring(argv0.as_bytes())?, cstring(b"--shmproc-child")?];
    let mut envp = Vec::new();
    for (k, v) in std::env::vars_os() {
        if k != ENV_BOOT {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            envp.push(cstring(&kv)?);
        }
    }
    envp.push(cstring(format!("{ENV_BOOT}={}", record.as_raw_fd()).as_bytes())?);
    let pid = proc::spawn_self(&argv, &envp, &keep)?;
    for f in parts.started {
        f(pid as u32);
    }
    drop(parts.keep_alive);
    Ok(pid)
}

fn cstring(b: &[u8]) -> Result<CString, ProcessError> {
    CString::new(b).map_err(|_| ProcessError::Unsupported("an argument or variable contains a NUL byte"))
}

/// State shared by a `Process` handle and the `active_children` registry.
struct Inner {
    pid: i32,
    pidfd: OwnedFd,
    name: String,
    daemon: bool,
    exit: Mutex<Option<i32>>,
}

impl Inner {
    /// The exit code once the child has exited (reaping it), waiting until `deadline`
    /// (`None`: forever; `Some(now)`: just look).
    fn poll_exit(&self, deadline: Option<Instant>) -> std::io::Result<Option<i32>> {
        loop {
            {
                let mut exit = self.exit.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(code) = *exit {
                    return Ok(Some(code));
                }
                if let Some(code) = proc::try_reap(self.pid)? {
                    *exit = Some(code);
                    return Ok(Some(code));
                }
            }
            if !proc::wait_exit(&self.pidfd, deadline)? {
                return Ok(None);
            }
        }
    }

    /// Sends `sig` through the pidfd, unless the child has been reaped.
    fn signal(&self, sig: i32) -> Result<(), ProcessError> {
        let exit = self.exit.lock().unwrap_or_else(|p| p.into_inner());
        if exit.is_some() {
            return Ok(());
        }
        // Under the lock the child cannot be reaped meanwhile, and the pidfd never names
        // another process anyway.
        Ok(proc::send_signal(&self.pidfd, sig)?)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let done = self.exit.get_mut().map(|e| e.is_some()).unwrap_or(true);
        if done || matches!(proc::try_reap(self.pid), Ok(Some(_)) | Err(_)) {
            return;
        }
        // Still running and nobody will join it: reap it in the background so that it does
        // not stay a zombie (Python keeps such children until the parent exits).
        let pid = self.pid;
        let spawned = std::thread::Builder::new()
            .name("shmproc-reaper".into())
            .spawn(move || proc::reap_blocking(pid));
        if spawned.is_err() {
            let _ = proc::reap_blocking(pid);
        }
    }
}

/// A child process; mirrors Python's `multiprocessing.Process`.
///
/// Start one with [`Process::new`] (a plain `fn(A) -> R` and serde arguments; either start
/// method), [`Process::fork`] (any closure; fork only) or [`Process::from_run`] (a
/// [`Run`] struct). [`join`](Self::join) returns what the target returned, or why it did not:
/// a panic comes back with its message and location.
///
/// The exit code follows Python: `0` after a normal return, `1` after a panic, the code
/// passed to `std::process::exit`, or `-N` when killed by signal `N`.
///
/// Dropping a handle neither kills nor waits for the child: a background thread reaps it
/// when it ends (no zombies). Daemon children die with their parent.
///
/// ```
/// use shmproc::{Process, StartMethod};
///
/// fn square(x: u64) -> u64 { x * x }
///
/// shmproc::init(); // the first line of main() in a real program
/// let mut a = Process::new(square, 12).name("sq").start()?;            // spawn
/// let mut b = Process::new(square, 5).start_method(StartMethod::Fork).start()?;
/// let mut c = Process::fork(|| -> u64 { panic!("boom") }).start()?;
/// assert_eq!(a.join()?, 144);
/// assert_eq!(b.join()?, 25);
/// assert!(matches!(c.join(), Err(shmproc::ProcessError::Panicked(p)) if p.message == "boom"));
/// assert_eq!(c.exitcode(), Some(1));
/// # Ok::<(), shmproc::ProcessError>(())
/// ```
pub struct Process<R> {
    inner: Arc<Inner>,
    record: OwnedFd,
    method: StartMethod,
    taken: bool,
    _r: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for Process<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.inner.name)
            .field("pid", &self.inner.pid)
            .field("daemon", &self.inner.daemon)
            .field("method", &self.method)
            .field("exitcode", &self.exitcode())
            .finish()
    }
}

impl<R: Serialize + DeserializeOwned + 'static> Process<R> {
    /// A child that runs `target(args)`. `target` is a plain `fn` (or a closure that
    /// captures nothing); with `Spawn` the arguments travel serialized, and segment handles
    /// inside them are rebuilt in the child.
    #[allow(clippy::new_ret_no_self)] // Python's `Process(target, args)`: a builder, then start().
    pub fn new<A: Serialize + DeserializeOwned + 'static>(target: fn(A) -> R, args: A) -> ProcessBuilder<R> {
        let prepare: Prepare<R> = Box::new(move |method| match method {
            StartMethod::Fork => Ok(Prepared::Fork(Box::new(move || target(args)))),
            StartMethod::Spawn => {
                let (encoded, fds, started) = transfer::collect_fds(|| postcard::to_allocvec(&args));
                let encoded = encoded.map_err(|e| ProcessError::Codec(e.to_string()))?;
                let base = boot::anchor_addr();
                let tramp: child::Trampoline = child::trampoline::<A, R>;
                Ok(Prepared::Spawn(SpawnParts {
                    trampoline: (tramp as usize).wrapping_sub(base) as u64,
                    target: (target as usize).wrapping_sub(base) as u64,
                    signature: child::signature_of::<A, R>(),
                    args: encoded,
                    fds,
                    started,
                    keep_alive: Box::new(args),
                }))
            }
        });
        ProcessBuilder {
            name: None,
            daemon: false,
            method: None,
            target: Target::Func(prepare),
        }
    }

    /// A forked child that runs `body` (it may capture anything; it runs in a copy of this
    /// process). Only [`StartMethod::Fork`] can run a closure.
    pub fn fork(body: impl FnOnce() -> R + 'static) -> ProcessBuilder<R> {
        ProcessBuilder {
            name: None,
            daemon: false,
            method: Some(StartMethod::Fork),
            target: Target::Closure(Box::new(body)),
        }
    }

    /// A child that runs `task.run()` (Python's `Process` subclass with `run()`).
    pub fn from_run<T: Run<Output = R>>(task: T) -> ProcessBuilder<R> {
        Self::new(run_task::<T>, task)
    }

    fn adopt(pid: i32, spec: Spec, record: OwnedFd) -> Result<Self, ProcessError> {
        let pidfd = match proc::pidfd_open(pid) {
            Ok(p) => p,
            Err(e) => {
                // No pidfd to signal through: kill by pid, which still names our unreaped child.
                let _ = proc::kill_unreaped_child(pid);
                let _ = proc::reap_blocking(pid);
                return Err(e.into());
            }
        };
        let inner = Arc::new(Inner {
            pid,
            pidfd,
            name: spec.name,
            daemon: spec.daemon,
            exit: Mutex::new(None),
        });
        let mut list = registry();
        list.retain(|w| w.strong_count() > 0);
        list.push(Arc::downgrade(&inner));
        drop(list);
        Ok(Self {
            inner,
            record,
            method: spec.method,
            taken: false,
            _r: PhantomData,
        })
    }

    /// Waits for the child to end and returns its target's result.
    ///
    /// Errors: [`ProcessError::Panicked`] (with message and location),
    /// [`Exited`](ProcessError::Exited), [`Killed`](ProcessError::Killed),
    /// [`AlreadyJoined`](ProcessError::AlreadyJoined) on a second call.
    pub fn join(&mut self) -> Result<R, ProcessError> {
        self.join_deadline(None)
    }

    /// Like [`join`](Self::join), but gives up after `timeout` with
    /// [`ProcessError::Timeout`], leaving the child running (join again later).
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<R, ProcessError> {
        self.join_deadline(crate::sync::deadline_after(timeout))
    }

    fn join_deadline(&mut self, deadline: Option<Instant>) -> Result<R, ProcessError> {
        let code = self.inner.poll_exit(deadline)?.ok_or(ProcessError::Timeout)?;
        if self.taken {
            return Err(ProcessError::AlreadyJoined);
        }
        self.taken = true;
        if code < 0 {
            return Err(ProcessError::Killed(-code));
        }
        let bytes = fd::read_all(self.record.as_fd(), RECORD_LIMIT)?;
        match boot::decode::<Outcome>(DONE_TAG, &bytes) {
            None if code == 0 => Err(ProcessError::NoResult),
            None => Err(ProcessError::Exited(code)),
            Some(Err(e)) => Err(ProcessError::Codec(format!("unreadable result record: {e}"))),
            Some(Ok(Outcome::Returned(r))) if code == 0 => crate::channel::codec::from_bytes(&r)
                .map_err(|e| ProcessError::Codec(format!("cannot decode the result: {e}"))),
            Some(Ok(Outcome::Panicked(p))) if code == 1 => Err(ProcessError::Panicked(p)),
            Some(Ok(Outcome::Failed(m))) if code == 1 => Err(ProcessError::ChildFailed(m)),
            // The target finished, but the exit code says something else happened after.
            Some(Ok(_)) => Err(ProcessError::Exited(code)),
        }
    }
}

impl<R> Process<R> {
    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.inner.pid as u32
    }

    /// The child's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Whether the child is a daemon.
    pub fn daemon(&self) -> bool {
        self.inner.daemon
    }

    /// The start method used.
    pub fn start_method(&self) -> StartMethod {
        self.method
    }

    /// Whether the child is still running (never blocks; reaps it if it has ended).
    pub fn is_alive(&self) -> bool {
        matches!(self.inner.poll_exit(Some(Instant::now())), Ok(None))
    }

    /// The exit code if the child has ended (never blocks): `0`, `1` after a panic, the
    /// code it exited with, or `-N` if killed by signal `N`.
    pub fn exitcode(&self) -> Option<i32> {
        self.inner.poll_exit(Some(Instant::now())).ok().flatten()
    }

    /// Sends `SIGTERM` (Python's `terminate()`). Does nothing if the child already ended.
    pub fn terminate(&self) -> Result<(), ProcessError> {
        self.signal(proc::SIGTERM)
    }

    /// Sends `SIGKILL` (Python's `kill()`). Does nothing if the child already ended.
    pub fn kill(&self) -> Result<(), ProcessError> {
        self.signal(proc::SIGKILL)
    }

    fn signal(&self, sig: i32) -> Result<(), ProcessError> {
        self.inner.signal(sig)
    }

    /// A handle that can only kill this child, through its pidfd (for the pool's
    /// `terminate`, which does not own the `Process`).
    pub(crate) fn killer(&self) -> Killer {
        Killer(self.inner.clone())
    }
}

/// Kills one child through its pidfd; see [`Process::killer`].
pub(crate) struct Killer(Arc<Inner>);

impl Killer {
    /// Sends `SIGKILL`; does nothing if the child has ended.
    pub(crate) fn kill(&self) -> Result<(), ProcessError> {
        self.0.signal(proc::SIGKILL)
    }
}
