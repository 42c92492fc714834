//! `Value<T>` and `Array<T>`: Pod data with its own reentrant lock, in one segment.
//!
//! Two ways in, as in Python:
//! - copies under the lock: `get`/`set`/`update` (and `Array::get`/`set`/`to_vec`). They
//!   re-enter the lock, so they also work while the same thread holds
//!   [`get_lock`](Value::get_lock) — Python's `with v.get_lock(): v.value += 1`;
//! - a guard that derefs to `&mut T` / `&mut [T]` ([`Value::lock`], [`Array::lock`]). To keep
//!   that reference unique, a guard is refused (`WouldDeadlock`) while the same thread
//!   already has one, and copies are refused while a guard lives.
//!
//! A holder that died leaves the data as it was at that moment (any bytes are a valid `T`);
//! the next access reports [`LockError::OwnerDied`] carrying its result.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use bytemuck::Pod;
use serde::{Deserialize, Serialize};

use std::time::{Duration, Instant};

use super::lock::{deadline_after, release_result, settle, FromRawLock, RLockGuard};
use super::raw_lock::{Acquired, LockFail, RawRLock};
use super::unlock::UnlockOnDrop;
use crate::error::{LockError, LockTimeoutError, OwnerDied, ReleaseError, SegmentError, TryLockError};
use crate::loom::{AtomicU32, Ordering};
use crate::shm::Fingerprint;
use crate::{Segment, ShmSafe};

/// Lock and borrow flag at the start of a `Value`/`Array` segment.
#[repr(C)]
#[derive(Debug, Default)]
pub struct LockedHead {
    lock: RawRLock,
    /// 1 while a data guard (`&mut` access) exists; only the lock holder reads or writes it.
    borrowed: AtomicU32,
    _pad: AtomicU32,
}

// SAFETY: repr(C) of atomics; invalid lock states are reported as `Corrupted`.
unsafe impl ShmSafe for LockedHead {}

/// A borrowed view of a `Value`'s or `Array`'s lock (Python's `get_lock()`).
#[derive(Clone, Copy, Debug)]
pub struct LockRef<'a> {
    head: &'a LockedHead,
}

impl<'a> LockRef<'a> {
    fn guard(&self) -> RLockGuard<'a> {
        RLockGuard::new(&self.head.lock)
    }

    /// Takes the lock (reentrant) until the guard drops.
    pub fn lock(&self) -> Result<RLockGuard<'a>, LockError<RLockGuard<'a>>> {
        settle(self.head.enter(Take::Block), || self.guard())
    }

    /// Like [`lock`](Self::lock), giving up after `timeout` with `Timeout`.
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<RLockGuard<'a>, LockTimeoutError<RLockGuard<'a>>> {
        settle(self.head.enter(Take::until(timeout)), || self.guard())
    }

    /// Takes the lock only if that needs no waiting (`WouldBlock` otherwise).
    pub fn try_lock(&self) -> Result<RLockGuard<'a>, TryLockError<RLockGuard<'a>>> {
        settle(self.head.enter(Take::Try), || self.guard())
    }

    /// Python-style `acquire()`; release with [`release`](Self::release).
    pub fn acquire(&self) -> Result<(), LockError<()>> {
        settle(self.head.enter(Take::Block), || ())
    }

    /// Python-style `release()`.
    pub fn release(&self) -> Result<(), ReleaseError> {
        release_result(self.head.lock.unlock())
    }
}

/// How to take the lock: the three forms of every blocking operation.
#[derive(Clone, Copy)]
enum Take {
    Block,
    Until(Option<Instant>),
    Try,
}

impl Take {
    fn until(timeout: Duration) -> Self {
        Self::Until(deadline_after(timeout))
    }
}

/// A data guard's lock attempt: the raw refusal, or `None` when this thread already has a
/// data guard (taking another would alias `&mut`).
type Borrowed = Result<Acquired, Option<LockFail>>;

/// The guard or the public error `E` for a data-guard attempt.
fn borrowed<G, E: FromRawLock<G>>(r: Borrowed, guard: impl FnOnce() -> G) -> Result<G, E> {
    match r {
        Err(None) => Err(E::would_deadlock()),
        Err(Some(e)) => settle(Err(e), guard),
        Ok(how) => settle(Ok(how), guard),
    }
}

impl LockedHead {
    /// Takes the lock; after a dead holder the borrow flag it may have left is cleared.
    fn enter(&self, take: Take) -> Result<Acquired, LockFail> {
        let r = match take {
            Take::Block => self.lock.lock(None),
            Take::Until(deadline) => self.lock.lock(deadline),
            Take::Try => self.lock.try_lock(),
        };
        if let Ok(Acquired::OwnerDied(_)) = r {
            self.borrowed.store(0, Ordering::Relaxed);
        }
        r
    }

    /// Runs `f` under the lock unless a data guard of this thread is alive.
    fn with<R>(&self, f: impl FnOnce() -> R) -> Result<R, LockError<R>> {
        let how = self
            .enter(Take::Block)
            .map_err(<LockError<R> as FromRawLock<R>>::fail)?;
        // Released on every path, unwinding from a panicking `f` included.
        let _unlock = UnlockOnDrop(&self.lock);
        if self.borrowed.load(Ordering::Relaxed) != 0 {
            return Err(LockError::WouldDeadlock);
        }
        let r = f();
        match how {
            Acquired::Normal => Ok(r),
            Acquired::OwnerDied(tid) => Err(LockError::OwnerDied(OwnerDied { guard: r, tid })),
        }
    }

    /// Takes the lock for a data guard (refused while this thread has one).
    fn borrow(&self, take: Take) -> Borrowed {
        let how = self.enter(take).map_err(Some)?;
        if self.borrowed.swap(1, Ordering::Relaxed) != 0 {
            let _ = self.lock.unlock();
            return Err(None);
        }
        Ok(how)
    }

    fn unborrow(&self) {
        self.borrowed.store(0, Ordering::Relaxed);
        let _ = self.lock.unlock();
    }
}

/// The whole shared part of a `Value<T>`.
#[repr(C)]
pub struct ValueCell<T> {
    head: LockedHead,
    value: core::cell::UnsafeCell<T>,
}

// SAFETY: `value` is only read or written by the holder of `head.lock` (every access path
// below takes it first), and `T: Pod` is valid for any bytes a peer may leave there.
unsafe impl<T: Pod> Sync for ValueCell<T> {}
// SAFETY: repr(C); the head is ShmSafe and `T: Pod` has no pointers and accepts any bits.
unsafe impl<T: Pod> ShmSafe for ValueCell<T> {}

/// A `Pod` value with its own lock, shared between processes; mirrors Python's
/// `multiprocessing.Value(typecode, value, lock=True)`. `RawValue` is the lock-free form.
///
/// ```
/// use shmproc::{LockError, Process, Value};
/// let v = Value::new(0u64)?;
/// let mut kids = Vec::new();
/// for _ in 0..2 {
///     let h = v.clone();
///     kids.push(Process::fork(move || {
///         for _ in 0..1000 { h.update(|x| x + 1).expect("locked add"); }
///     }).start()?);
/// }
/// for k in &mut kids { k.join()?; }
/// assert_eq!(v.get().map_err(LockError::without_guard)?, 2000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Value<T: Pod> {
    cell: crate::Shared<ValueCell<T>>,
}

impl<T: Pod> std::fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Value")
            .field("segment", self.cell.segment())
            .finish()
    }
}

impl<T: Pod> Value<T> {
    /// A new value in its own segment.
    pub fn new(value: T) -> Result<Self, SegmentError> {
        Ok(Self {
            cell: crate::Shared::new(ValueCell {
                head: LockedHead::default(),
                value: core::cell::UnsafeCell::new(value),
            })?,
        })
    }

    fn ptr(&self) -> *mut T {
        self.cell.value.get()
    }

    /// Reads the value under the lock (Python's `v.value`).
    pub fn get(&self) -> Result<T, LockError<T>> {
        // SAFETY: we hold the lock and no data guard exists (checked by `with`).
        self.cell
            .head
            .with(|| unsafe { std::ptr::read_volatile(self.ptr()) })
    }

    /// Writes the value under the lock (Python's `v.value = x`).
    pub fn set(&self, value: T) -> Result<(), LockError<()>> {
        // SAFETY: as in `get`.
        self.cell
            .head
            .with(|| unsafe { std::ptr::write_volatile(self.ptr(), value) })
    }

    /// Replaces the value with `f(old)` in one locked step and returns the new value (the
    /// race-free form of Python's `v.value += 1`).
    pub fn update(&self, f: impl FnOnce(T) -> T) -> Result<T, LockError<T>> {
        self.cell.head.with(|| {
            // SAFETY: as in `get`; the lock is held across read and write.
            unsafe {
                let new = f(std::ptr::read_volatile(self.ptr()));
                std::ptr::write_volatile(self.ptr(), new);
                new
            }
        })
    }

    /// The value's lock (Python's `get_lock()`); `get`/`set` still work while it is held.
    pub fn get_lock(&self) -> LockRef<'_> {
        LockRef {
            head: &self.cell.head,
        }
    }

    fn guard(&self) -> ValueGuard<'_, T> {
        ValueGuard {
            v: self,
            _thread: PhantomData,
        }
    }

    /// Locks and returns a guard that derefs to the value (`WouldDeadlock` if this thread
    /// already has one).
    pub fn lock(&self) -> Result<ValueGuard<'_, T>, LockError<ValueGuard<'_, T>>> {
        borrowed(self.cell.head.borrow(Take::Block), || self.guard())
    }

    /// Like [`lock`](Self::lock), giving up after `timeout` with `Timeout`.
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<ValueGuard<'_, T>, LockTimeoutError<ValueGuard<'_, T>>> {
        borrowed(self.cell.head.borrow(Take::until(timeout)), || self.guard())
    }

    /// Locks only if that needs no waiting (`WouldBlock` otherwise).
    pub fn try_lock(&self) -> Result<ValueGuard<'_, T>, TryLockError<ValueGuard<'_, T>>> {
        borrowed(self.cell.head.borrow(Take::Try), || self.guard())
    }
}

/// `&mut T` access to a [`Value`] while its lock is held.
pub struct ValueGuard<'a, T: Pod> {
    v: &'a Value<T>,
    /// The lock is per thread: the guard must be dropped where it was made (`!Send`).
    _thread: PhantomData<*const ()>,
}

impl<T: Pod> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock and is the only data borrow (borrow flag set).
        unsafe { &*self.v.ptr() }
    }
}

impl<T: Pod> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only reference.
        unsafe { &mut *self.v.ptr() }
    }
}

impl<T: Pod> Drop for ValueGuard<'_, T> {
    fn drop(&mut self) {
        self.v.cell.head.unborrow();
    }
}

/// A fixed-length `Pod` array with its own lock, shared between processes; mirrors Python's
/// `multiprocessing.Array(typecode, n, lock=True)`. `RawArray` is the lock-free form.
///
/// ```
/// use shmproc::{Array, LockError};
/// let a = Array::from_slice(&[1.0f64, 2.0, 3.0])?;
/// {
///     let mut g = a.lock().map_err(LockError::without_guard)?;
///     g[0] = 10.0;
///     g.reverse();
/// }
/// // A copy's error carries the copy, not a guard; take it even after a dead holder:
/// assert_eq!(a.to_vec().or_else(LockError::recover)?, vec![3.0, 2.0, 10.0]);
/// assert_eq!(a.get(5).map_err(LockError::without_guard)?, None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Array<T: Pod> {
    seg: Segment,
    len: usize,
    elems: usize,
    _t: PhantomData<T>,
}

impl<T: Pod> std::fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Array")
            .field("len", &self.len)
            .field("segment", &self.seg)
            .finish()
    }
}

fn array_layout<T>() -> (Fingerprint, usize) {
    let align = std::mem::align_of::<T>().max(std::mem::align_of::<LockedHead>());
    let name = format!("shmproc::Array<{}>", std::any::type_name::<T>());
    let elems = std::mem::size_of::<LockedHead>().next_multiple_of(std::mem::align_of::<T>());
    (Fingerprint::new(1, align as u64, &name), elems)
}

impl<T: Pod> Array<T> {
    /// A new array of `len` zeroed elements in its own segment.
    pub fn new(len: usize) -> Result<Self, SegmentError> {
        if std::mem::size_of::<T>() == 0 {
            return Err(SegmentError::Unsupported("zero-sized element types"));
        }
        let (fp, elems) = array_layout::<T>();
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .and_then(|b| b.checked_add(elems))
            .ok_or(SegmentError::TooLarge(len as u128))?;
        let seg = Segment::anonymous(fp, bytes)?;
        // SAFETY: the new segment is zeroed, aligned for `LockedHead` and nobody else has it;
        // an all-zero `LockedHead` is the unlocked state, which `write` makes explicit.
        unsafe { std::ptr::write(seg.as_ptr().cast::<LockedHead>(), LockedHead::default()) };
        Self::wrap(seg)
    }

    /// A new array holding a copy of `values`.
    pub fn from_slice(values: &[T]) -> Result<Self, SegmentError> {
        let a = Self::new(values.len())?;
        // SAFETY: nobody else has the new segment; the range is exactly the elements.
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), a.elems_ptr(), values.len()) };
        Ok(a)
    }

    fn wrap(seg: Segment) -> Result<Self, SegmentError> {
        let (_, elems) = array_layout::<T>();
        let size = std::mem::size_of::<T>();
        if size == 0 {
            return Err(SegmentError::Unsupported("zero-sized element types"));
        }
        let data = seg
            .len()
            .checked_sub(elems)
            .ok_or(SegmentError::Corrupt("array segment too short"))?;
        if data % size != 0 {
            return Err(SegmentError::Corrupt(
                "array length is not a whole number of elements",
            ));
        }
        Ok(Self {
            len: data / size,
            elems,
            seg,
            _t: PhantomData,
        })
    }

    fn head(&self) -> &LockedHead {
        // SAFETY: the segment starts with a `LockedHead` (aligned: the data offset is a
        // multiple of its alignment); it is ShmSafe, so any bytes are sound to reference.
        unsafe { &*self.seg.as_ptr().cast::<LockedHead>() }
    }

    fn elems_ptr(&self) -> *mut T {
        // SAFETY: `elems + len * size_of::<T>() == seg.len()` (checked in `wrap`), and
        // `elems` is a multiple of `align_of::<T>()`.
        unsafe { self.seg.as_ptr().add(self.elems).cast() }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the array is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Element `i` under the lock (`None` past the end).
    pub fn get(&self, i: usize) -> Result<Option<T>, LockError<Option<T>>> {
        // SAFETY: bounds checked; the lock is held and no data guard exists.
        self.head()
            .with(|| (i < self.len).then(|| unsafe { std::ptr::read_volatile(self.elems_ptr().add(i)) }))
    }

    /// Sets element `i` under the lock; `Ok(false)` if `i` is past the end (Python's
    /// `IndexError`).
    pub fn set(&self, i: usize, value: T) -> Result<bool, LockError<bool>> {
        self.head().with(|| {
            if i >= self.len {
                return false;
            }
            // SAFETY: bounds checked; the lock is held and no data guard exists.
            unsafe { std::ptr::write_volatile(self.elems_ptr().add(i), value) };
            true
        })
    }

    /// A copy of all elements, taken under the lock.
    pub fn to_vec(&self) -> Result<Vec<T>, LockError<Vec<T>>> {
        self.head().with(|| {
            let mut v = vec![T::zeroed(); self.len];
            // SAFETY: the lock is held; the ranges are the whole array and a private vector.
            unsafe { std::ptr::copy_nonoverlapping(self.elems_ptr(), v.as_mut_ptr(), self.len) };
            v
        })
    }

    /// The array's lock (Python's `get_lock()`); `get`/`set` still work while it is held.
    pub fn get_lock(&self) -> LockRef<'_> {
        LockRef { head: self.head() }
    }

    fn guard(&self) -> ArrayGuard<'_, T> {
        ArrayGuard {
            a: self,
            _thread: PhantomData,
        }
    }

    /// Locks and returns a guard that derefs to the elements as a slice (`WouldDeadlock`
    /// if this thread already has one).
    pub fn lock(&self) -> Result<ArrayGuard<'_, T>, LockError<ArrayGuard<'_, T>>> {
        borrowed(self.head().borrow(Take::Block), || self.guard())
    }

    /// Like [`lock`](Self::lock), giving up after `timeout` with `Timeout`.
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<ArrayGuard<'_, T>, LockTimeoutError<ArrayGuard<'_, T>>> {
        borrowed(self.head().borrow(Take::until(timeout)), || self.guard())
    }

    /// Locks only if that needs no waiting (`WouldBlock` otherwise).
    pub fn try_lock(&self) -> Result<ArrayGuard<'_, T>, TryLockError<ArrayGuard<'_, T>>> {
        borrowed(self.head().borrow(Take::Try), || self.guard())
    }

    /// The underlying segment.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }
}

/// `&mut [T]` access to an [`Array`] while its lock is held.
pub struct ArrayGuard<'a, T: Pod> {
    a: &'a Array<T>,
    /// The lock is per thread: the guard must be dropped where it was made (`!Send`).
    _thread: PhantomData<*const ()>,
}

impl<T: Pod> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: the guard holds the lock and is the only data borrow; bounds from `wrap`.
        unsafe { std::slice::from_raw_parts(self.a.elems_ptr(), self.a.len) }
    }
}

impl<T: Pod> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.a.elems_ptr(), self.a.len) }
    }
}

impl<T: Pod> Drop for ArrayGuard<'_, T> {
    fn drop(&mut self) {
        self.a.head().unborrow();
    }
}

impl<T: Pod> Serialize for Array<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.seg.serialize(s)
    }
}

impl<'de, T: Pod> Deserialize<'de> for Array<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let seg = crate::shm::transfer::deserialize_segment(d, Some(&array_layout::<T>().0))?;
        Self::wrap(seg).map_err(|e| crate::shm::transfer::fail::<D::Error>(e.to_string()))
    }
}
