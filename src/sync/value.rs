//! `Value<T>` and `Array<T>`: Pod data with its own reentrant lock, together in one shared
//! arena slot (a big `Array` in a segment of its own).
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
use std::os::fd::OwnedFd;

use bytemuck::Pod;
use serde::{Deserialize, Serialize};

use std::time::{Duration, Instant};

use super::lock::{deadline_after, release_result, settle, FromRawLock, RLockGuard};
use super::raw_lock::{Acquired, LockFail, RawRLock};
use super::unlock::UnlockOnDrop;
use crate::cell::Place;
use crate::error::{
    ArraySetError, IndexError, LockError, LockTimeoutError, OwnerDied, ReleaseError, SegmentError,
    TryLockError,
};
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
/// The value and its lock live together in a slot of a shared arena chunk (no fd or mapping
/// of their own) when they fit in [`ARENA_MAX_OBJECT`](crate::ARENA_MAX_OBJECT) bytes, else
/// in a segment of their own (see [`Shared`](crate::Shared)). Nothing here panics: lock
/// failures are [`LockError`]s.
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
    /// A new value in a shared arena slot (no fd or mapping of its own).
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
/// An array whose lock and elements fit in [`ARENA_MAX_OBJECT`](crate::ARENA_MAX_OBJECT)
/// bytes lives in a slot of a shared arena chunk, like every small primitive (no fd or
/// mapping of its own; slots are never reused while their chunk lives); a bigger one gets a
/// segment of its own.
///
/// # Panics and errors
/// Nothing here panics. An index out of range is an error, not a panic: [`get`](Self::get)
/// returns `Ok(None)` (like [`slice::get`]) and [`set`](Self::set) returns
/// [`ArraySetError::Index`], both without taking the lock. Lock failures are
/// [`LockError`]s; the guard ([`lock`](Self::lock)) derefs to a slice, whose indexing panics
/// as any slice's does.
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
/// a.set(1, 4.0)?;
/// assert_eq!(a.get(1).map_err(LockError::without_guard)?, Some(4.0));
/// assert_eq!(a.get(5).map_err(LockError::without_guard)?, None);
/// assert!(a.set(5, 0.0).is_err()); // ArraySetError::Index
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// ```
pub struct Array<T: Pod> {
    /// The array's `LockedHead` (in an arena slot or a segment of its own); the elements
    /// follow at `elems`.
    place: Place<LockedHead>,
    len: usize,
    /// Byte offset of the first element from `head`.
    elems: usize,
    _t: PhantomData<T>,
}

// SAFETY: the handle owns a mapping (through `seg`) and points into it; elements are only
// copied in and out under the lock, so the handle moves between threads when `T` does.
unsafe impl<T: Pod + Send> Send for Array<T> {}
// SAFETY: shared use copies `T` values through raw pointers under the lock only.
unsafe impl<T: Pod + Sync> Sync for Array<T> {}

/// Another handle to the same array: an in-process reference count, no new fd or mapping.
impl<T: Pod> Clone for Array<T> {
    fn clone(&self) -> Self {
        Self {
            place: self.place.clone(),
            len: self.len,
            elems: self.elems,
            _t: PhantomData,
        }
    }
}

impl<T: Pod> std::fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Array")
            .field("len", &self.len)
            .field("place", &self.place)
            .finish()
    }
}

/// The fingerprint of an `Array<T>` (its own segment's header, or its slot token) and the
/// byte offset of its elements after the `LockedHead`.
fn array_layout<T>() -> (Fingerprint, usize) {
    let align = std::mem::align_of::<T>().max(std::mem::align_of::<LockedHead>());
    let name = format!("shmproc::Array<{}>", std::any::type_name::<T>());
    let elems = std::mem::size_of::<LockedHead>().next_multiple_of(std::mem::align_of::<T>());
    (Fingerprint::new(1, align as u64, &name), elems)
}

impl<T: Pod> Array<T> {
    /// A new array of `len` zeroed elements: an arena slot when small, else a segment of
    /// its own.
    pub fn new(len: usize) -> Result<Self, SegmentError> {
        if std::mem::size_of::<T>() == 0 {
            return Err(SegmentError::Unsupported("zero-sized element types"));
        }
        let (fp, elems) = array_layout::<T>();
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .and_then(|b| b.checked_add(elems))
            .ok_or(SegmentError::TooLarge(
                len as u128 * std::mem::size_of::<T>() as u128 + elems as u128,
            ))?;
        let a = Self::from_place(Place::anonymous(bytes, fp.align as usize, &fp)?)?;
        // SAFETY: the place is new (zeroed, never handed out before), so nobody else uses it
        // yet; it is aligned for `LockedHead` (checked in `wrap_at`). An all-zero
        // `LockedHead` is the unlocked state, which `write` makes explicit.
        unsafe { std::ptr::write(a.place.ptr().as_ptr(), LockedHead::default()) };
        Ok(a)
    }

    /// A new array holding a copy of `values`.
    pub fn from_slice(values: &[T]) -> Result<Self, SegmentError> {
        let a = Self::new(values.len())?;
        // SAFETY: nobody else has the new array; the range is exactly the elements.
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), a.elems_ptr(), values.len()) };
        Ok(a)
    }

    /// Opens an arena slot as a token would name it (see `Shared::open_slot`): `fd` must be
    /// an arena chunk, `offset`/`len`/`layout` as a sender would describe an `Array<T>`
    /// ([`slot_layout`](Self::slot_layout)). Exposed for the fuzz target.
    #[doc(hidden)]
    pub fn open_slot(fd: OwnedFd, offset: u64, len: u64, layout: &Fingerprint) -> Result<Self, SegmentError> {
        Self::from_place(Place::open_slot(fd, offset, len, layout, &array_layout::<T>().0)?)
    }

    /// The layout an `Array<T>`'s slot token names (for the fuzz target).
    #[doc(hidden)]
    pub fn slot_layout() -> Fingerprint {
        array_layout::<T>().0
    }

    /// A handle on `place` (lock and elements), checking that it holds a `LockedHead`
    /// and a whole number of elements aligned for `T`.
    fn from_place(place: Place<LockedHead>) -> Result<Self, SegmentError> {
        let (_, elems) = array_layout::<T>();
        let size = std::mem::size_of::<T>();
        if size == 0 {
            return Err(SegmentError::Unsupported("zero-sized element types"));
        }
        let data = place
            .bytes()
            .checked_sub(elems)
            .ok_or(SegmentError::Corrupt("array segment too short"))?;
        if data % size != 0 {
            return Err(SegmentError::Corrupt(
                "array length is not a whole number of elements",
            ));
        }
        // The place was checked for `LockedHead`'s alignment; `elems` is a multiple of
        // `align_of::<T>()`, but the elements' own alignment is checked here.
        if (place.ptr().as_ptr() as usize + elems) % std::mem::align_of::<T>() != 0 {
            return Err(SegmentError::Corrupt("object is misaligned for its type"));
        }
        Ok(Self {
            len: data / size,
            elems,
            place,
            _t: PhantomData,
        })
    }

    fn place(&self) -> &Place<LockedHead> {
        &self.place
    }

    fn head(&self) -> &LockedHead {
        // SAFETY: the place starts with a `LockedHead`, aligned (checked in `from_place`) and
        // mapped while `self` lives; it is ShmSafe, so any bytes are sound to reference.
        unsafe { self.place.ptr().as_ref() }
    }

    fn elems_ptr(&self) -> *mut T {
        // SAFETY: `elems + len * size_of::<T>()` bytes from `head` lie inside the mapping
        // and the elements are aligned for `T` (both checked in `from_place`).
        unsafe { self.place.ptr().as_ptr().cast::<u8>().add(self.elems).cast() }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the array is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Element `i` under the lock, or `Ok(None)` if `i` is past the end (like
    /// [`slice::get`]; the lock is not taken then).
    pub fn get(&self, i: usize) -> Result<Option<T>, LockError<Option<T>>> {
        if i >= self.len {
            return Ok(None);
        }
        // SAFETY: `i < len`; the lock is held and no data guard exists (checked by `with`).
        self.head()
            .with(|| Some(unsafe { std::ptr::read_volatile(self.elems_ptr().add(i)) }))
    }

    /// Sets element `i` under the lock (Python's `a[i] = v`). An `i` past the end is
    /// [`ArraySetError::Index`] (Python's `IndexError`), reported without taking the lock.
    pub fn set(&self, i: usize, value: T) -> Result<(), ArraySetError> {
        IndexError::check(i, 1, self.len)?;
        // SAFETY: bounds checked; the lock is held and no data guard exists.
        self.head()
            .with(|| unsafe { std::ptr::write_volatile(self.elems_ptr().add(i), value) })?;
        Ok(())
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

    /// The segment holding the array: the arena chunk (shared with other objects; the
    /// array starts at [`offset`](Self::offset) of its data) or the array's own segment.
    pub fn segment(&self) -> &Segment {
        self.place.segment()
    }

    /// Where the array (its lock, then its elements) starts in
    /// [`segment`](Self::segment)'s data (0 for an array with a segment of its own).
    pub fn offset(&self) -> usize {
        self.place.offset()
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

crate::cell::segment_serde!(Array<T: Pod>, array_layout::<T>().0, Array::<T>::from_place);
