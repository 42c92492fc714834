//! Synchronization across processes: futex-based, robust, in shared memory.
//!
//! Two levels, as everywhere in shmproc: raw `#[repr(C)]` primitives (`RawLock`, `RawRLock`,
//! `RawSemaphore`, `RawEvent`, `RawCondition`, `RawBarrier`) that live in place — for instance
//! inside a user's [`Shared`](crate::Shared) struct — and owning handles (`Lock`, `RLock`,
//! `Semaphore`, `BoundedSemaphore`, `Event`, `Condition`, `Barrier`, `Value`, `Array`) that
//! can be cloned and travel to children. A handle's shared part lives in a slot of a shared
//! arena chunk (no fd or mapping of its own, so a process can hold millions; see
//! [`Shared`](crate::Shared) for the reuse rule); only an `Array` above
//! [`ARENA_MAX_OBJECT`](crate::ARENA_MAX_OBJECT) bytes gets a segment of its own.
//!
//! Every blocking operation has three forms with errors named after it (`lock()` →
//! [`LockError`](crate::LockError), `lock_timeout(d)` → [`LockTimeoutError`](crate::LockTimeoutError),
//! `try_lock()` → [`TryLockError`](crate::TryLockError); `acquire`, `wait`… likewise); a
//! timeout is always `Err(Timeout)`. Bad arguments to the handles are refused with an error
//! (`Barrier::new(0)`, a semaphore above [`SEM_VALUE_MAX`]); the raw constructors panic on
//! them instead (documented under *Panics*). All of them block through one wait loop
//! (`sync/wait.rs`), the seam for waiting on many objects and for async.

mod barrier;
mod condition;
mod event;
mod lock;
pub(crate) mod park;
pub(crate) mod raw_barrier;
pub(crate) mod raw_cond;
pub(crate) mod raw_event;
pub(crate) mod raw_lock;
pub(crate) mod raw_sem;
mod semaphore;
mod unlock;
mod value;
pub(crate) mod wait;

pub use barrier::Barrier;
pub use condition::{Condition, RawConditionCell};
pub use event::Event;
pub(crate) use lock::deadline_after;
pub use lock::{Lock, LockGuard, RLock, RLockGuard};
pub use raw_barrier::{BarrierFail, RawBarrier};
pub use raw_cond::{CondFail, RawCondition};
pub use raw_event::RawEvent;
pub use raw_lock::{Acquired, LockFail, RawLock, RawRLock, ReleaseFail};
pub use raw_sem::{RawSemaphore, SemFail, SEM_VALUE_MAX};
pub use semaphore::{BoundedSemaphore, Semaphore};
pub use value::{Array, ArrayGuard, LockRef, LockedHead, Value, ValueCell, ValueGuard};

macro_rules! raw_shm_safe {
    ($($t:ty),*) => { $(
        // SAFETY: repr(C) structs of atomics only, no pointers, no Drop; every bit pattern
        // is either a valid state or detected and reported as `Corrupted`.
        unsafe impl crate::ShmSafe for $t {}
    )* };
}
raw_shm_safe!(
    RawLock,
    RawRLock,
    RawSemaphore,
    RawEvent,
    RawCondition,
    RawBarrier
);
