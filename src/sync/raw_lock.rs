//! `RawLock` and `RawRLock`: robust futex locks that live in place in shared memory.
//!
//! Lock word (32 bits, the futex word):
//!
//! | bits   | meaning                                                    |
//! |--------|------------------------------------------------------------|
//! | 0..=29 | tid of the owner, 0 when unlocked                          |
//! | 30     | must be 0 (a set bit means the word was corrupted)         |
//! | 31     | `WAITERS`: someone may sleep on the word; unlock must wake |
//!
//! Putting the owner's tid in the word itself (as Linux robust and PI futexes do) means
//! taking the lock and recording the owner are one CAS: there is no window in which the lock
//! is held by nobody we could name. A waiter sleeps in slices of
//! [`LIVENESS_SLICE`](super::park::LIVENESS_SLICE); after each slice it checks that the owner
//! thread still runs (by `/proc/<tid>/stat`, comparing the thread's start time so a reused
//! tid is not mistaken for the owner) and, if not, takes the lock over with
//! [`Acquired::OwnerDied`].

use std::time::Instant;

use super::park::{self, TID_MASK};
use super::wait::{self, Poll, Sleep, Wait};
use crate::loom::{AtomicU32, AtomicU64, Ordering};

const WAITERS: u32 = 1 << 31;
const RESERVED: u32 = 1 << 30;

/// How a lock was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// The usual way.
    Normal,
    /// Taken over from an owner thread that died while holding it (thread id given):
    /// what it protected may be half-updated.
    OwnerDied(u32),
}

/// Why a lock was not obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LockFail {
    /// It is held (try form).
    #[error("the lock is held")]
    WouldBlock,
    /// The deadline passed.
    #[error("timed out")]
    Timeout,
    /// The lock word holds a value no correct process writes.
    #[error("the lock's shared memory is corrupted")]
    Corrupted,
    /// Re-entered too deeply (`RawRLock` only, past `u32::MAX - 1` levels).
    #[error("reentrant lock recursion limit reached")]
    RecursionLimit,
}

/// Why a release was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseFail {
    /// The lock was not held.
    #[error("release of an unlocked lock")]
    NotLocked,
    /// Held by another thread (`RawRLock` only).
    #[error("release by a thread that does not own the lock")]
    NotOwner,
    /// The lock word or count holds a value no correct process writes.
    #[error("the lock's shared memory is corrupted")]
    Corrupted,
}

/// A robust lock word plus its owner record; `#[repr(C)]`, all-zero is "unlocked".
///
/// Like Python's `Lock`, it is a binary semaphore: any thread or process may release it.
/// The owner is still recorded, so a holder that dies does not hang the others.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RawLock {
    word: AtomicU32,
    _pad: AtomicU32,
    /// `park::owner_info` of the thread that took the lock (written just after the CAS).
    owner: AtomicU64,
}

impl RawLock {
    /// Byte offsets of the lock word (`u32`) and of the owner record (`u64`) inside the
    /// struct, for code that lays out or inspects shared memory holding one.
    pub(crate) const WORD_OFFSET: usize = std::mem::offset_of!(RawLock, word);
    pub(crate) const OWNER_OFFSET: usize = std::mem::offset_of!(RawLock, owner);

    /// An unlocked lock.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            word: AtomicU32::new(0),
            _pad: AtomicU32::new(0),
            owner: AtomicU64::new(0),
        }
    }

    /// An unlocked lock.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            word: AtomicU32::new(0),
            _pad: AtomicU32::new(0),
            owner: AtomicU64::new(0),
        }
    }

    /// One attempt, never blocks.
    #[inline]
    pub fn try_lock(&self) -> Result<Acquired, LockFail> {
        let (me, info) = park::me();
        // SYNC POINT (lock hand-over): acquire pairs with the release in `unlock`.
        match self
            .word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => {
                self.owner.store(info, Ordering::Relaxed);
                Ok(Acquired::Normal)
            }
            Err(v) if v & RESERVED != 0 || (v != 0 && v & TID_MASK == 0) => Err(LockFail::Corrupted),
            Err(_) => Err(LockFail::WouldBlock),
        }
    }

    /// Blocks until the lock is taken or `deadline` passes (`None`: no deadline).
    #[inline]
    pub fn lock(&self, deadline: Option<Instant>) -> Result<Acquired, LockFail> {
        match self.try_lock() {
            Err(LockFail::WouldBlock) => self.lock_slow(deadline),
            r => r,
        }
    }

    #[cold]
    fn lock_slow(&self, deadline: Option<Instant>) -> Result<Acquired, LockFail> {
        let (me, info) = park::me();
        wait::block(
            &mut LockWait {
                lock: self,
                me,
                info,
                slept: false,
                seen: 0,
            },
            deadline,
        )
    }

    /// If the word still holds `seen` and its owner thread is gone, takes the lock over.
    #[cold]
    fn take_over_if_dead(&self, seen: u32, me: u32, info: u64) -> Option<Acquired> {
        let tid = seen & TID_MASK;
        if park::alive(tid, self.owner.load(Ordering::Relaxed)) {
            return None;
        }
        self.word
            .compare_exchange(seen, me | WAITERS, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        self.owner.store(info, Ordering::Relaxed);
        Some(Acquired::OwnerDied(tid))
    }

    /// Releases the lock (any thread may, as with Python's `Lock`).
    #[inline]
    pub fn unlock(&self) -> Result<(), ReleaseFail> {
        // SYNC POINT (lock hand-over): release pairs with the acquires in `lock`.
        let v = self.word.swap(0, Ordering::Release);
        if v == 0 {
            return Err(ReleaseFail::NotLocked);
        }
        if v & WAITERS != 0 {
            park::wake_one(&self.word);
        }
        if v & RESERVED != 0 || v & TID_MASK == 0 {
            return Err(ReleaseFail::Corrupted);
        }
        Ok(())
    }

    /// Whether the lock is held by anyone.
    pub fn is_locked(&self) -> bool {
        self.word.load(Ordering::Relaxed) != 0
    }

    /// `is_locked` as a `SeqCst` load, for store-buffering handshakes across a release
    /// (the caller's write, a `SeqCst` fence, then this read).
    pub(crate) fn is_locked_sc(&self) -> bool {
        self.word.load(Ordering::SeqCst) != 0
    }

    /// Thread id of the holder, if held.
    pub fn owner_tid(&self) -> Option<u32> {
        Some(self.word.load(Ordering::Relaxed) & TID_MASK).filter(|&t| t != 0)
    }

    /// Whether the calling thread holds the lock.
    pub fn is_owned_by_me(&self) -> bool {
        self.owner_tid() == Some(park::me().0)
    }

    /// Whether the lock is held by a thread that no longer runs (reads `/proc`; for waiters
    /// that depend on the holder's progress without trying to take the lock themselves).
    ///
    /// A word that names no thread (corrupted) also counts: no live thread can hold it.
    pub fn holder_is_dead(&self) -> bool {
        let v = self.word.load(Ordering::Acquire);
        if v == 0 {
            return false;
        }
        let tid = v & TID_MASK;
        v & RESERVED != 0 || tid == 0 || !park::alive(tid, self.owner.load(Ordering::Relaxed))
    }
}

/// A blocked `lock`: what it waits on, for [`wait::block`].
struct LockWait<'a> {
    lock: &'a RawLock,
    me: u32,
    info: u64,
    /// Until we have slept, no one can be asleep that our unlock would owe a wake-up to (a
    /// sleeper sets WAITERS again itself before sleeping), so a lock taken while spinning
    /// leaves WAITERS clear and its unlock makes no system call, as std's futex mutex does.
    /// Once we have slept, others may sleep too: keep WAITERS set.
    slept: bool,
    /// The word we last slept on (owner tid | WAITERS).
    seen: u32,
}

impl Wait for LockWait<'_> {
    type Output = Result<Acquired, LockFail>;
    const SPIN: bool = true;
    const LIVENESS: bool = true;

    fn busy(&self) -> bool {
        self.lock.word.load(Ordering::Relaxed) != 0
    }

    fn poll(&mut self) -> Poll<'_, Self::Output> {
        let word = &self.lock.word;
        let v = word.load(Ordering::Relaxed);
        if v & RESERVED != 0 || (v != 0 && v & TID_MASK == 0) {
            return Poll::Ready(Err(LockFail::Corrupted));
        }
        if v == 0 {
            let mine = if self.slept { self.me | WAITERS } else { self.me };
            // SYNC POINT (lock hand-over): acquire pairs with the release in `unlock`.
            if word
                .compare_exchange(0, mine, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                self.lock.owner.store(self.info, Ordering::Relaxed);
                return Poll::Ready(Ok(Acquired::Normal));
            }
            return Poll::Retry;
        }
        // Register: WAITERS tells the holder's unlock to wake the word.
        if v & WAITERS == 0
            && word
                .compare_exchange(v, v | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return Poll::Retry;
        }
        self.slept = true;
        self.seen = v | WAITERS;
        Poll::Sleep(Sleep::on(word, v | WAITERS))
    }

    /// Checks the holder before giving up too: a short timeout must still take over from a
    /// dead holder rather than fail forever.
    fn check_owner(&mut self) -> Option<Self::Output> {
        self.lock.take_over_if_dead(self.seen, self.me, self.info).map(Ok)
    }

    fn timed_out(&mut self) -> Self::Output {
        Err(LockFail::Timeout)
    }
}

/// A reentrant robust lock (Python's `RLock`): the owning thread may take it again; it is
/// free once released as many times as taken. Only the owner may release it.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RawRLock {
    lock: RawLock,
    count: AtomicU32,
    _pad: AtomicU32,
}

impl RawRLock {
    /// An unlocked reentrant lock.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            lock: RawLock::new(),
            count: AtomicU32::new(0),
            _pad: AtomicU32::new(0),
        }
    }

    /// An unlocked reentrant lock.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            lock: RawLock::new(),
            count: AtomicU32::new(0),
            _pad: AtomicU32::new(0),
        }
    }

    fn reenter(&self) -> Option<Result<Acquired, LockFail>> {
        if !self.lock.is_owned_by_me() {
            return None;
        }
        // Only the owner touches the count, so relaxed accesses suffice.
        let c = self.count.load(Ordering::Relaxed);
        Some(match c {
            0 => Err(LockFail::Corrupted),
            u32::MAX => Err(LockFail::RecursionLimit),
            _ => {
                self.count.store(c + 1, Ordering::Relaxed);
                Ok(Acquired::Normal)
            }
        })
    }

    fn entered(&self, r: Result<Acquired, LockFail>) -> Result<Acquired, LockFail> {
        if r.is_ok() {
            self.count.store(1, Ordering::Relaxed);
        }
        r
    }

    /// One attempt, never blocks.
    pub fn try_lock(&self) -> Result<Acquired, LockFail> {
        match self.reenter() {
            Some(r) => r,
            None => self.entered(self.lock.try_lock()),
        }
    }

    /// Blocks until taken (or re-entered) or `deadline` passes.
    pub fn lock(&self, deadline: Option<Instant>) -> Result<Acquired, LockFail> {
        match self.reenter() {
            Some(r) => r,
            None => self.entered(self.lock.lock(deadline)),
        }
    }

    /// Releases one level; the lock is free after the outermost release.
    pub fn unlock(&self) -> Result<(), ReleaseFail> {
        if !self.lock.is_locked() {
            return Err(ReleaseFail::NotLocked);
        }
        if !self.lock.is_owned_by_me() {
            return Err(ReleaseFail::NotOwner);
        }
        match self.count.load(Ordering::Relaxed) {
            0 => Err(ReleaseFail::Corrupted),
            1 => {
                self.count.store(0, Ordering::Relaxed);
                self.lock.unlock()
            }
            c => {
                self.count.store(c - 1, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    /// Releases every level held by the calling thread at once and returns how many there
    /// were (for `Condition::wait`); restore them with [`relock`](Self::relock).
    pub(crate) fn unlock_all(&self) -> Result<u32, ReleaseFail> {
        if !self.lock.is_owned_by_me() {
            return Err(if self.lock.is_locked() {
                ReleaseFail::NotOwner
            } else {
                ReleaseFail::NotLocked
            });
        }
        let c = self.count.swap(0, Ordering::Relaxed);
        if c == 0 {
            return Err(ReleaseFail::Corrupted);
        }
        self.lock.unlock().map(|()| c)
    }

    /// Takes the lock again with `levels` levels (after [`unlock_all`](Self::unlock_all)).
    pub(crate) fn relock(&self, levels: u32, deadline: Option<Instant>) -> Result<Acquired, LockFail> {
        let r = self.lock.lock(deadline);
        if r.is_ok() {
            self.count.store(levels.max(1), Ordering::Relaxed);
        }
        r
    }

    /// Levels held by the calling thread (0 if it does not own the lock).
    pub fn depth(&self) -> u32 {
        if self.lock.is_owned_by_me() {
            self.count.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// Whether anyone holds the lock.
    pub fn is_locked(&self) -> bool {
        self.lock.is_locked()
    }

    /// Whether the calling thread holds the lock.
    pub fn is_owned_by_me(&self) -> bool {
        self.lock.is_owned_by_me()
    }
}
