#![doc = include_str!("../README.md")]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[cfg(not(target_os = "linux"))]
compile_error!("shmproc supports Linux only for now (futex, memfd, pidfd)");

mod cell;
mod channel;
mod error;
mod loom;
pub mod manager;
pub mod pool;
mod process;
/// Pipes: [`Connection`] and its constructors (kept as a path for 0.1 code).
pub use channel::connection;
pub mod ring;
mod shm;
pub mod sync;
pub mod sys;

pub use cell::{RawArray, RawValue, Shared, SharedMemory, ShmSafe};
pub use channel::codec::{Bytes, Codec, PodCodec, Postcard};
pub use channel::connection::{pipe, pipe_simplex, Connection, PIPE_CAPACITY};
pub use channel::queue::{JoinState, JoinableQueue, Queue, SimpleQueue, DEFAULT_CAPACITY};
pub use error::{
    AcquireError, AcquireTimeoutError, ArraySetError, BarrierError, BarrierTimeoutError, CondWaitError,
    CondWaitTimeoutError, IndexError, JoinTimeoutError, LayoutInfo, LockError, LockTimeoutError,
    ManagerError, NotifyError, OwnerDied, PanicInfo, PoolError, ProcessError, RecvError, RecvTimeoutError,
    ReleaseError, SegmentError, SendError, SendTimeoutError, TaskDoneError, TryAcquireError, TryLockError,
    TryRecvError, TrySendError, WaitTimeoutError,
};
pub use manager::{Dict, DictGuard, List, ListGuard, Manager, Namespace, NamespaceGuard};
pub use pool::{
    as_completed, AsCompleted, AsyncResult, Executor, Future, IMap, IMapUnordered, Pool, PoolBuilder, StarFn,
};
pub use process::{
    active_children, cpu_count, current_process, get_start_method, init, parent_process, set_start_method,
    Process, ProcessBuilder, ProcessInfo, Run, Sentinel, StartMethod,
};
pub use shm::{
    check_image, cleanup_stale, DataRange, Fingerprint, Segment, ARENA_MAX_OBJECT, HEADER_LEN, MAGIC,
    MAX_ALIGN, VERSION,
};
pub use sync::{Array, Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore, Value};

/// The lock-free protocols, exposed only to the loom suite (`--cfg loom`).
#[cfg(loom)]
#[doc(hidden)]
pub mod loom_api {
    pub use crate::channel::holders::loom_link::Table as LinkTable;
    pub use crate::loom::Shadow;
    pub use crate::pool::loom_cell::ResultCell;
    pub use crate::shm::publish::{observe, publish, MagicWord};
}
