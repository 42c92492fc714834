//! Error types, one enum per module, with short lowercase messages.
//!
//! This module imports nothing from the rest of the crate (the other modules import it), so
//! the module graph has no cycle through it: what an error needs to say is stored in the
//! error itself (e.g. [`LayoutInfo`] rather than the segment layer's `Fingerprint`).

use std::fmt;
use std::io;

mod array;
mod sync;

pub use array::ArraySetError;

pub use sync::{
    AcquireError, AcquireTimeoutError, BarrierError, BarrierTimeoutError, CondWaitError,
    CondWaitTimeoutError, LockError, LockTimeoutError, NotifyError, OwnerDied, ReleaseError, TryAcquireError,
    TryLockError, WaitTimeoutError,
};

/// The layout a segment stores, as recorded in its header or asked for by an open; carried
/// by [`SegmentError::LayoutMismatch`]. Compares equal to the
/// [`Fingerprint`](crate::Fingerprint) it was made from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayoutInfo {
    /// `size_of` the element type.
    pub size: u64,
    /// `align_of` the element type.
    pub align: u64,
    /// FNV-1a hash of the full type name.
    pub hash: u64,
    /// The type name (possibly truncated to 48 bytes when read back from a header).
    pub name: String,
}

impl fmt::Display for LayoutInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` (size {}, align {}, hash {:#x})",
            self.name, self.size, self.align, self.hash
        )
    }
}

mod channel;
pub use channel::{
    JoinTimeoutError, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TaskDoneError, TryRecvError,
    TrySendError,
};

/// Why a shared-memory segment could not be created, opened or used.
///
/// Every way a file in `/dev/shm` (or an inherited fd) can be wrong maps to a variant here;
/// opening never panics on bad content.
///
/// ```
/// use shmproc::{SegmentError, SharedMemory};
/// match SharedMemory::open_named("/shmproc-doc-no-such-segment") {
///     Err(SegmentError::NotFound(name)) => assert_eq!(name, "/shmproc-doc-no-such-segment"),
///     other => panic!("{other:?}"),
/// }
/// assert!(matches!(SharedMemory::open_named("no-slash"), Err(SegmentError::InvalidName(_))));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentError {
    /// No segment with this name exists (`ENOENT`).
    #[error("no shared-memory segment named {0:?}")]
    NotFound(String),
    /// A segment with this name exists already (`EEXIST`; creation is `O_EXCL`).
    #[error("a shared-memory segment named {0:?} already exists")]
    AlreadyExists(String),
    /// The kernel refused access, or the object is owned by another user or open to others.
    #[error("permission denied for segment {name:?}: {reason}")]
    PermissionDenied {
        /// The segment's name (empty for anonymous segments).
        name: String,
        /// What was refused.
        reason: String,
    },
    /// The name is not of the form `/name` (one leading slash, no other, 1–250 bytes).
    #[error("invalid segment name {0:?}: expected \"/name\" with no other '/' and at most 250 bytes")]
    InvalidName(String),
    /// The object is shorter than a header, or than the header says the data needs.
    #[error("segment too small: {len} bytes, at least {needed} needed")]
    TooSmall {
        /// Bytes present.
        len: u64,
        /// Bytes needed.
        needed: u64,
    },
    /// The requested size cannot be mapped (overflow, or above `isize::MAX`).
    #[error("segment size {0} is too large")]
    TooLarge(u128),
    /// The first eight bytes are not the shmproc magic number.
    #[error("bad magic number {found:#018x}: not a shmproc segment")]
    BadMagic {
        /// The value found.
        found: u64,
    },
    /// The magic number is still zero: the object is empty, or its creator has not
    /// finished initialising it (the magic is published last). Retrying may succeed.
    #[error("segment is not initialised yet (zero magic)")]
    Uninitialized,
    /// The segment was written by another format version of shmproc.
    #[error("segment format version {found}, this build reads version {expected}")]
    VersionMismatch {
        /// The version this build writes and reads.
        expected: u32,
        /// The version in the header.
        found: u32,
    },
    /// The segment stores another type than the one asked for.
    #[error("segment layout mismatch: expected {expected}, found {found}")]
    LayoutMismatch {
        /// The layout asked for.
        expected: LayoutInfo,
        /// The layout recorded in the header.
        found: LayoutInfo,
    },
    /// Header fields contradict each other or the file (a corrupted or hostile segment).
    #[error("corrupt segment header: {0}")]
    Corrupt(&'static str),
    /// The fd or name does not refer to a regular file / shm object.
    #[error("not a regular shared-memory object")]
    NotARegularFile,
    /// The type cannot live in a segment (for example alignment above the page size).
    #[error("unsupported layout: {0}")]
    Unsupported(&'static str),
    /// A size, length or count that makes no sense (Python's `ValueError`): a
    /// `SharedMemory` of zero bytes, a buffer of zero bytes, a ring of zero slots, a
    /// barrier of zero parties. The text says which.
    #[error("invalid size: {0}")]
    InvalidSize(&'static str),
    /// Any other operating-system error.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

impl SegmentError {
    /// Maps an OS error from opening/creating `name` to the typed variant.
    pub(crate) fn from_open(e: io::Error, name: &str) -> Self {
        use crate::sys::fd::OpenFailure;
        match crate::sys::fd::classify_open(&e) {
            OpenFailure::NotFound => Self::NotFound(name.to_owned()),
            OpenFailure::Exists => Self::AlreadyExists(name.to_owned()),
            OpenFailure::Denied => Self::PermissionDenied {
                name: name.to_owned(),
                reason: e.to_string(),
            },
            OpenFailure::BadName => Self::InvalidName(name.to_owned()),
            OpenFailure::SymLink => Self::PermissionDenied {
                name: name.to_owned(),
                reason: "is a symbolic link".to_owned(),
            },
            OpenFailure::Other => Self::Io(e),
        }
    }
}

/// Where a panic happened and what it said; carried back from a child to its parent.
///
/// ```
/// use shmproc::{Process, ProcessError};
/// shmproc::init();
/// let mut p = Process::fork(|| -> u8 { panic!("no luck") }).start()?;
/// let Err(ProcessError::Panicked(info)) = p.join() else { panic!() };
/// assert_eq!(info.message, "no luck");
/// assert!(info.location.unwrap().contains(".rs:"));
/// # Ok::<(), ProcessError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PanicInfo {
    /// The panic message (`"Box<dyn Any>"` when the payload was not a string).
    pub message: String,
    /// `file:line:column` of the panic, when known.
    pub location: Option<String>,
}

impl fmt::Display for PanicInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(loc) => write!(f, "{} at {}", self.message, loc),
            None => f.write_str(&self.message),
        }
    }
}

/// Why starting, joining or signalling a child process failed, or how the child ended badly.
///
/// ```
/// use shmproc::{Process, ProcessError};
/// fn quit(code: i32) { std::process::exit(code) }
/// shmproc::init();
/// let mut p = Process::new(quit, 3).start()?;
/// assert!(matches!(p.join(), Err(ProcessError::Exited(3))));
/// assert_eq!(p.exitcode(), Some(3));
/// # Ok::<(), ProcessError>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// The child panicked (exit code 1); the panic's message and location.
    #[error("child panicked: {0}")]
    Panicked(PanicInfo),
    /// The child exited with a non-zero code without panicking (e.g. `std::process::exit(3)`).
    #[error("child exited with code {0}")]
    Exited(i32),
    /// The child was killed by a signal (`exitcode()` is `-signal`).
    #[error("child was killed by signal {0}")]
    Killed(i32),
    /// `join_timeout` (or a [`Sentinel`](crate::Sentinel)'s `wait_timeout`) ran out; the
    /// child is still running and can be joined again.
    #[error("timed out waiting for the child")]
    Timeout,
    /// The result was already taken by an earlier `join`.
    #[error("the child was already joined")]
    AlreadyJoined,
    /// The child exited with code 0 but left no result: usually a spawned binary whose
    /// `main` does not call `shmproc::init()` first.
    #[error("child exited without reporting a result (does main() call shmproc::init() first?)")]
    NoResult,
    /// The arguments or the result could not be (de)serialized.
    #[error("could not encode or decode the child's arguments or result: {0}")]
    Codec(String),
    /// A spawned child could not run its target (unusable boot record or arguments).
    #[error("child could not run its target: {0}")]
    ChildFailed(String),
    /// The requested combination is not possible (e.g. a closure with the Spawn method).
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// An operating-system call failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// An index or length outside a shared array or byte segment (Python's `IndexError`).
///
/// ```
/// let a = shmproc::RawArray::<u8>::new(4)?;
/// let e = a.set(4, 1).unwrap_err();
/// assert_eq!((e.index, e.len), (4, 4));
/// # Ok::<(), shmproc::SegmentError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("index {index} (+{count}) out of range for length {len}")]
pub struct IndexError {
    /// The first index asked for.
    pub index: usize,
    /// How many elements were asked for from `index`.
    pub count: usize,
    /// The length of the array.
    pub len: usize,
}

impl IndexError {
    /// Checks that `index..index + count` lies within `0..len`.
    pub(crate) fn check(index: usize, count: usize, len: usize) -> Result<(), Self> {
        match index.checked_add(count) {
            Some(end) if end <= len => Ok(()),
            _ => Err(Self { index, count, len }),
        }
    }
}

/// Why a [`Pool`](crate::Pool) or [`Executor`](crate::Executor) task, or the pool itself,
/// did not deliver a result.
///
/// Unlike Python, a worker that dies fails only the task it was running
/// ([`WorkerDied`](Self::WorkerDied)); the pool replaces it and every other task completes.
///
/// ```
/// use shmproc::{Pool, PoolError};
/// fn half(x: u32) -> u32 { assert!(x % 2 == 0, "odd input {x}"); x / 2 }
///
/// shmproc::init();
/// let pool = Pool::new(1)?;
/// let Err(PoolError::Panicked(p)) = pool.apply(half, 3) else { panic!() };
/// assert_eq!(p.message, "odd input 3");
/// assert_eq!(pool.apply(half, 4)?, 2); // the worker keeps serving
/// # Ok::<(), PoolError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// The task panicked; its message and location. The worker keeps serving.
    #[error("task panicked: {0}")]
    Panicked(PanicInfo),
    /// The worker process running the task died (killed by `signal`, or exited with `code`
    /// while the task ran). The pool started a replacement.
    #[error("{}", worker_died(*.pid, *.signal, *.code))]
    WorkerDied {
        /// The dead worker's pid.
        pid: u32,
        /// The signal that killed it (9 for `SIGKILL`, 6 for `abort()`), if a signal did.
        signal: Option<i32>,
        /// Its exit code, if it exited (e.g. `std::process::exit` inside the task).
        code: Option<i32>,
    },
    /// The timeout passed first; the task still runs and can be waited for again.
    #[error("timed out waiting for the result")]
    Timeout,
    /// `successful()` was asked before the result was ready (Python's `ValueError`).
    #[error("the result is not ready yet")]
    NotReady,
    /// The result was already taken by an earlier `get`.
    #[error("the result was already taken")]
    AlreadyTaken,
    /// New work was submitted after `close()` / `shutdown()` (Python's `ValueError: Pool not running`).
    #[error("the pool is closed and takes no new work")]
    Closed,
    /// `join()` was called before `close()` or `terminate()` (Python's `ValueError`).
    #[error("join() needs close() or terminate() first")]
    NotClosed,
    /// The pool was terminated before the task finished.
    #[error("the pool was terminated before the task finished")]
    Terminated,
    /// The task was cancelled before it started (`Future::cancel`).
    #[error("the task was cancelled")]
    Cancelled,
    /// The initializer failed in a worker (panicked, or its worker died); the pool is broken
    /// and fails every task, rather than restarting workers forever as Python does.
    #[error("the pool's initializer failed: {0}")]
    InitializerFailed(String),
    /// A worker process could not be started.
    #[error("cannot start a worker: {0}")]
    Start(String),
    /// Arguments or results could not be encoded or decoded, or a worker's reply was malformed.
    #[error("cannot encode or decode a task or its result: {0}")]
    Codec(String),
    /// Bad parameters (Python's `ValueError`), e.g. a pool of zero processes or `chunksize` 0.
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
}

fn worker_died(pid: u32, signal: Option<i32>, code: Option<i32>) -> String {
    match (signal, code) {
        (Some(s), _) => format!(
            "worker {pid} died from signal {s} ({}) while running the task",
            crate::sys::proc::signal_name(s)
        ),
        (None, Some(c)) => format!("worker {pid} exited with code {c} while running the task"),
        (None, None) => format!("worker {pid} died while running the task"),
    }
}

/// Why an operation on a shared container ([`Dict`](crate::Dict), [`List`](crate::List),
/// [`Namespace`](crate::Namespace)) failed.
///
/// No operation panics on bad input or on a bad segment: a peer that wrote garbage into the
/// container's memory gives [`Corrupt`](ManagerError::Corrupt), a value of another type gives
/// [`Codec`](ManagerError::Codec), and a container at its memory limit gives
/// [`LimitExceeded`](ManagerError::LimitExceeded) and stays as it was.
///
/// ```
/// use shmproc::{Manager, ManagerError};
/// let ns = Manager::new().namespace()?;
/// ns.set("x", 1.5f64)?;
/// assert!(matches!(ns.get::<String>("x"), Err(ManagerError::Codec(_))));
/// # Ok::<(), ManagerError>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// The container's lock is held by someone else (the `try_lock` form).
    #[error("the container is locked by another thread or process")]
    WouldBlock,
    /// The timeout passed before the container's lock was free.
    #[error("timed out waiting for the container's lock")]
    Timeout,
    /// This thread already holds the container's lock (a guard is alive, or an
    /// `update_with` closure touched its own container): blocking would deadlock.
    #[error("this thread already holds the container's lock; waiting would deadlock")]
    WouldDeadlock,
    /// The change does not fit in the container's memory limit; nothing was changed.
    ///
    /// Exact: a change fails with it if and only if the container's live contents after the
    /// change — one padded record per entry plus the smallest table the rule allows for their
    /// number — exceed one half of the segment. Replaced records, removed entries and spare
    /// table words never count. The rule, with an example, is in the
    /// [manager docs](crate::Manager#the-memory-limit-exactly).
    #[error("the container would outgrow its memory limit: {needed} bytes needed, {limit} available")]
    LimitExceeded {
        /// Bytes the live contents after the change need: the smallest table for their
        /// number of entries plus their records.
        needed: u64,
        /// Bytes of one arena half: `(limit - 128) / 2` rounded down to a multiple of 8.
        limit: u64,
    },
    /// A key or value could not be encoded, or stored bytes did not decode as the expected
    /// type (a type mismatch between processes, or a handle that cannot be stored).
    #[error("cannot encode or decode a key or value: {0}")]
    Codec(String),
    /// A list index outside `0..len` (Python's `IndexError`).
    #[error("index {index} out of range for a list of length {len}")]
    Index {
        /// The index asked for.
        index: usize,
        /// The list's length.
        len: usize,
    },
    /// The container's shared memory holds values no correct process writes (a buggy or
    /// hostile peer); nothing was read or changed past the check that failed.
    #[error("the container's shared memory is corrupt: {0}")]
    Corrupt(&'static str),
    /// The container's segment could not be created or opened.
    #[error(transparent)]
    Segment(#[from] SegmentError),
}
