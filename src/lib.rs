#![doc = include_str!("../README.md")]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[cfg(not(target_os = "linux"))]
compile_error!("shmproc supports Linux only for now (futex, memfd, pidfd)");

// Every module is private; the public API is the flat list of re-exports below (crossbeam's
// shape), plus `raw` for the primitives that live in place inside a user's `Shared<T>`.
mod cell;
mod channel;
mod error;
mod loom;
mod manager;
mod pool;
mod process;
mod ring;
mod shm;
mod sync;
mod sys;

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
pub use manager::{Dict, DictGuard, List, ListGuard, Manager, Namespace, NamespaceGuard, DEFAULT_LIMIT};
pub use pool::{
    as_completed, default_chunksize, AsCompleted, AsyncResult, Executor, Future, IMap, IMapUnordered, Pool,
    PoolBuilder, StarFn,
};
pub use process::{
    active_children, cpu_count, current_process, get_start_method, init, parent_process, set_start_method,
    Process, ProcessBuilder, ProcessInfo, Run, Sentinel, StartMethod,
};
pub use shm::{
    check_image, cleanup_stale, DataRange, Fingerprint, Segment, ARENA_MAX_OBJECT, HEADER_LEN, MAGIC,
    MAX_ALIGN, VERSION,
};
pub use sync::{
    Array, ArrayGuard, Barrier, BoundedSemaphore, Condition, Event, Lock, LockGuard, LockRef, RLock,
    RLockGuard, Semaphore, Value, ValueGuard,
};

/// The raw layer: `#[repr(C)]` primitives that live in place (for instance inside a user's
/// [`Shared`] struct), the lock-free rings the queues and pipes are built on, and the futex
/// calls they sleep with. The handles at the crate root are built from these; reach for them
/// when you lay out shared memory yourself.
///
/// ```
/// use shmproc::raw::RawLock;
/// use shmproc::{Shared, ShmSafe};
///
/// #[repr(C)]
/// struct Account { lock: RawLock, balance: std::sync::atomic::AtomicU64 }
/// // SAFETY: repr(C) of a raw lock and an atomic: any bits are valid, no pointers, no Drop.
/// unsafe impl ShmSafe for Account {}
///
/// let acct = Shared::new(Account { lock: RawLock::new(), balance: 0.into() })?;
/// acct.lock.lock(None)?;
/// acct.balance.fetch_add(5, std::sync::atomic::Ordering::Relaxed);
/// acct.lock.unlock()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub mod raw {
    pub use crate::ring::{
        ByteRing, ByteRingIndices, CachePadded, Channel, ChannelCtl, ChannelHeader, Consumer, Corrupt,
        EventCount, FrameInfo, HeaderField, MpmcRing, Producer, SlotRing, SlotRingHeader, SpscHeader,
        SpscRing, ABORT, FIRST, LAST, MAX_CAPACITY, MAX_SLOT_SIZE,
    };
    pub use crate::sync::{
        Acquired, BarrierFail, CondFail, LockFail, LockedHead, RawBarrier, RawCondition, RawConditionCell,
        RawEvent, RawLock, RawRLock, RawSemaphore, ReleaseFail, SemFail, ValueCell, SEM_VALUE_MAX,
    };
    pub use crate::sys::futex;
}

/// The pool's wire format, for the fuzz targets.
#[doc(hidden)]
pub use pool::wire;

/// The lock-free protocols, exposed only to the loom suite (`--cfg loom`).
#[cfg(loom)]
#[doc(hidden)]
pub mod loom_api {
    pub use crate::channel::holders::loom_link::Table as LinkTable;
    pub use crate::loom::Shadow;
    pub use crate::pool::loom_cell::ResultCell;
    pub use crate::shm::publish::{observe, publish, MagicWord};
}
