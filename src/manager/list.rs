//! `List<T>`: a growable list in shared memory.

use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::store::{self, Kind, Locked, Store};
use super::{decode, encode, prealloc, Enc, DEFAULT_LIMIT};
use crate::error::ManagerError;
use crate::shm::Segment;
use crate::sync::deadline_after;

/// A list shared between processes; mirrors Python's `Manager().list()`.
///
/// Elements are serde values stored encoded in the list's own segment (see the
/// [module docs](crate::Manager#how-the-containers-work)). Each method takes the list's lock for one operation; a
/// [`ListGuard`] (from [`lock`](Self::lock), [`lock_timeout`](Self::lock_timeout) or
/// [`try_lock`](Self::try_lock)) makes several one atomic step and gives the timeout and
/// non-blocking forms. [`extend`](Self::extend) publishes all its elements at once: another
/// process, or a crash, never exposes half of them.
///
/// ```
/// let l = shmproc::List::<String>::new()?;
/// l.push("a".to_string())?;
/// l.extend(["b".to_string(), "c".to_string()])?;
/// l.set(0, "A".to_string())?;
/// assert_eq!(l.get(2)?, Some("c".to_string()));
/// assert_eq!(l.pop()?, Some("c".to_string()));
/// assert_eq!(l.snapshot()?, ["A", "b"]);
/// assert!(matches!(l.set(5, "x".into()), Err(shmproc::ManagerError::Index { index: 5, len: 2 })));
/// # Ok::<(), shmproc::ManagerError>(())
/// ```
pub struct List<T> {
    store: Store,
    _t: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for List<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("List").field("store", &self.store).finish()
    }
}

fn fingerprint<T>() -> crate::shm::Fingerprint {
    store::fingerprint(&format!("shmproc::List<{}>", std::any::type_name::<T>()))
}

/// Another handle to the same container (reference-counted; no new fd or mapping).
impl<T> Clone for List<T> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> List<T> {
    /// A new, empty list with the [`DEFAULT_LIMIT`] memory limit.
    pub fn new() -> Result<Self, ManagerError> {
        Self::with_limit(DEFAULT_LIMIT)
    }

    /// A new, empty list whose segment is `limit` bytes; it holds up to about half of that
    /// in index and elements (exactly: see [the memory limit](crate::Manager#the-memory-limit-exactly)).
    /// A limit below 4096 is refused with
    /// [`SegmentError::InvalidSize`](crate::SegmentError::InvalidSize), not rounded up.
    pub fn with_limit(limit: usize) -> Result<Self, ManagerError> {
        Self::from_store(Store::create(Kind::List, fingerprint::<T>(), limit, None)?)
    }

    /// A new, empty list under the POSIX shared-memory name `name` (`"/name"`, created
    /// exclusively, mode 0600), which unrelated processes of the same user can
    /// [`open_named`](Self::open_named) (Python: a manager serving at an address). This
    /// handle unlinks the name when dropped, unless [`segment`](Self::segment)`().keep()`.
    /// A named segment cannot be sealed, so it trusts the processes that can open it.
    pub fn create_named(name: &str, limit: usize) -> Result<Self, ManagerError> {
        Self::from_store(Store::create(Kind::List, fingerprint::<T>(), limit, Some(name))?)
    }

    /// Opens the named list `name`, checking that it was created with the same types.
    pub fn open_named(name: &str) -> Result<Self, ManagerError> {
        Self::from_store(Store::open_named(Kind::List, fingerprint::<T>(), name)?)
    }

    fn from_store(store: Store) -> Result<Self, ManagerError> {
        Ok(Self {
            store,
            _t: PhantomData,
        })
    }

    /// Takes the list's lock, waiting as long as needed.
    pub fn lock(&self) -> Result<ListGuard<'_, T>, ManagerError> {
        self.guard(None, false)
    }

    /// Takes the list's lock, or fails with [`ManagerError::Timeout`] after `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> Result<ListGuard<'_, T>, ManagerError> {
        self.guard(deadline_after(timeout), false)
    }

    /// Takes the list's lock only if it is free ([`ManagerError::WouldBlock`] otherwise).
    pub fn try_lock(&self) -> Result<ListGuard<'_, T>, ManagerError> {
        self.guard(None, true)
    }

    fn guard(
        &self,
        deadline: Option<std::time::Instant>,
        try_only: bool,
    ) -> Result<ListGuard<'_, T>, ManagerError> {
        Ok(ListGuard {
            l: self.store.lock(deadline, try_only)?,
            _t: PhantomData,
            _not_send: PhantomData,
        })
    }

    /// Appends `value` (Python's `l.append(v)`).
    pub fn push(&self, value: T) -> Result<(), ManagerError> {
        let v = encode(&value)?; // outside the lock: a shorter critical section
        self.lock()?.l.list_extend(&[&v])
    }

    /// Removes and returns the last element, `None` if empty (Python's `l.pop()`).
    pub fn pop(&self) -> Result<Option<T>, ManagerError> {
        self.lock()?.pop()
    }

    /// A copy of element `index`, `None` past the end (Python's `l[i]`).
    pub fn get(&self, index: usize) -> Result<Option<T>, ManagerError> {
        self.lock()?.get(index)
    }

    /// Replaces element `index` (Python's `l[i] = v`); [`ManagerError::Index`] past the end.
    pub fn set(&self, index: usize, value: T) -> Result<(), ManagerError> {
        let v = encode(&value)?;
        self.lock()?.l.list_set(index, &v)
    }

    /// Number of elements (Python's `len(l)`).
    pub fn len(&self) -> Result<usize, ManagerError> {
        self.lock()?.len()
    }

    /// Whether the list has no elements.
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }

    /// Appends every value, all visible at once (Python's `l.extend(values)`).
    pub fn extend(&self, values: impl IntoIterator<Item = T>) -> Result<(), ManagerError> {
        let enc = encode_all(values)?;
        let refs: Vec<&[u8]> = enc.iter().map(|b| &**b).collect();
        self.lock()?.l.list_extend(&refs)
    }

    /// A copy of all elements, in order, taken under one lock (Python's `l[:]`).
    pub fn snapshot(&self) -> Result<Vec<T>, ManagerError> {
        self.lock()?.snapshot()
    }

    /// Removes every element (Python's `l.clear()`).
    pub fn clear(&self) -> Result<(), ManagerError> {
        self.lock()?.clear()
    }

    /// Atomically replaces element `index` by `f(old)` and returns the new value.
    /// `f` runs under the list's lock and must not use this list.
    pub fn update_with(&self, index: usize, f: impl FnOnce(T) -> T) -> Result<T, ManagerError> {
        self.lock()?.update_with(index, f)
    }

    /// The segment's size: the memory limit given at creation.
    pub fn limit(&self) -> usize {
        self.store.segment().len()
    }

    /// How many times a process took this list's lock over from a holder that had died.
    pub fn recoveries(&self) -> u64 {
        self.store.recoveries()
    }

    /// The underlying segment (for inspection).
    pub fn segment(&self) -> &Segment {
        self.store.segment()
    }
}

/// A [`List`] with its lock held: every operation, several of them as one atomic step.
///
/// ```
/// let l = shmproc::List::<u64>::new()?;
/// l.extend([1, 2, 3])?;
/// let mut g = l.try_lock()?;
/// let last = g.pop()?.unwrap();
/// g.push(last * 10)?;
/// assert_eq!(g.snapshot()?, [1, 2, 30]);
/// # Ok::<(), shmproc::ManagerError>(())
/// ```
pub struct ListGuard<'a, T> {
    l: Locked<'a>,
    _t: PhantomData<fn() -> T>,
    /// The lock records its owner thread: the guard stays on it.
    _not_send: PhantomData<*const ()>,
}

impl<T> std::fmt::Debug for ListGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ListGuard")
    }
}

impl<T: Serialize + DeserializeOwned> ListGuard<'_, T> {
    /// See [`List::push`].
    pub fn push(&mut self, value: T) -> Result<(), ManagerError> {
        let v = encode(&value)?;
        self.l.list_extend(&[&v])
    }

    /// See [`List::pop`]. If the last element does not decode as `T`, it is still removed.
    pub fn pop(&mut self) -> Result<Option<T>, ManagerError> {
        self.l.list_pop_with(decode)?.transpose()
    }

    /// See [`List::get`].
    pub fn get(&self, index: usize) -> Result<Option<T>, ManagerError> {
        match self.l.list_get_with(index, decode) {
            Ok(v) => v.map(Some),
            Err(ManagerError::Index { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// See [`List::set`].
    pub fn set(&mut self, index: usize, value: T) -> Result<(), ManagerError> {
        let v = encode(&value)?;
        self.l.list_set(index, &v)
    }

    /// See [`List::len`].
    pub fn len(&self) -> Result<usize, ManagerError> {
        self.l.len()
    }

    /// Whether the list has no elements.
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }

    /// See [`List::extend`].
    pub fn extend(&mut self, values: impl IntoIterator<Item = T>) -> Result<(), ManagerError> {
        let enc = encode_all(values)?;
        let refs: Vec<&[u8]> = enc.iter().map(|b| &**b).collect();
        self.l.list_extend(&refs)
    }

    /// See [`List::snapshot`].
    pub fn snapshot(&self) -> Result<Vec<T>, ManagerError> {
        let mut out = Vec::with_capacity(prealloc(self.len()?));
        self.l.for_each_elem(|v| {
            out.push(decode(v)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// See [`List::clear`].
    pub fn clear(&mut self) -> Result<(), ManagerError> {
        self.l.clear()
    }

    /// See [`List::update_with`].
    pub fn update_with(&mut self, index: usize, f: impl FnOnce(T) -> T) -> Result<T, ManagerError> {
        let new = f(self.l.list_get_with(index, decode)??);
        let enc = encode(&new)?;
        self.l.list_set(index, &enc)?;
        Ok(new)
    }
}

fn encode_all<T: Serialize>(values: impl IntoIterator<Item = T>) -> Result<Vec<Enc>, ManagerError> {
    values.into_iter().map(|v| encode(&v)).collect()
}

impl<T> serde::Serialize for List<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.store.segment().serialize(s)
    }
}

impl<'de, T: Serialize + DeserializeOwned> serde::Deserialize<'de> for List<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let seg = crate::shm::transfer::deserialize_segment(d, Some(&fingerprint::<T>()))?;
        Store::wrap(seg, Kind::List)
            .and_then(Self::from_store)
            .map_err(|e| crate::shm::transfer::fail::<D::Error>(e.to_string()))
    }
}
