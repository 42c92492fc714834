//! `Dict<K, V>`: a hash map in shared memory.

use std::borrow::Borrow;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::store::{self, Kind, Locked, Store};
use super::{decode, encode, prealloc, DEFAULT_LIMIT};
use crate::error::ManagerError;
use crate::shm::Segment;
use crate::sync::deadline_after;

/// A hash map shared between processes; mirrors Python's `Manager().dict()`.
///
/// Keys and values are serde types, stored encoded (postcard) in the dict's own segment; see
/// the [module docs](crate::Manager#how-the-containers-work) for the design, the memory limit and what happens when
/// a process dies mid-operation. Every method takes the dict's lock for one operation; for
/// several operations as one atomic step, or for the timeout and non-blocking forms, take a
/// [`DictGuard`] with [`lock`](Self::lock), [`lock_timeout`](Self::lock_timeout) or
/// [`try_lock`](Self::try_lock).
///
/// [`update_with`](Self::update_with) is the atomic read-modify-write that Python's
/// `d[k] += 1` is not: concurrent increments from many processes lose nothing.
///
/// ```
/// use shmproc::Dict;
/// let d = Dict::<String, u32>::new()?;
/// assert_eq!(d.insert("a".to_string(), 1)?, None);
/// assert_eq!(d.insert("a".to_string(), 5)?, Some(1)); // the old value, as HashMap
/// d.update([("b".to_string(), 2), ("c".to_string(), 3)])?;
/// assert_eq!(d.get("b")?, Some(2)); // a &str finds a String key
/// assert!(d.contains_key("c")? && !d.contains_key("z")?);
/// assert_eq!(d.remove("a")?, Some(5));
/// assert_eq!(d.update_with("c", |v| v.unwrap_or(0) * 10)?, 30);
/// assert_eq!(d.setdefault("c".to_string(), 0)?, 30); // present: unchanged
/// let mut items = d.items()?;
/// items.sort();
/// assert_eq!(items, [("b".to_string(), 2), ("c".to_string(), 30)]);
/// # Ok::<(), shmproc::ManagerError>(())
/// ```
///
/// # Borrowed keys
///
/// Like `HashMap`, the lookups ([`get`](Self::get), [`contains_key`](Self::contains_key),
/// [`remove`](Self::remove), [`discard`](Self::discard), [`update_with`](Self::update_with))
/// take any `&Q` where `K: Borrow<Q>`. Where `HashMap` requires `Q`'s `Hash` and `Eq` to
/// agree with `K`'s, the dict hashes and compares the key's **serde encoding**, so it
/// requires that **`Q` serializes exactly as the owned `K`**. This holds for the usual
/// pairs: `String`/`str`, `Vec<T>`/`[T]`, `Box<T>`/`T`, `Cow<'_, T>`/`T` and `K`/`K`. A `Q`
/// whose encoding differs (a hand-written `Borrow` to a type with another serde form) finds
/// nothing, and `update_with` would store an entry `keys()` cannot decode.
///
/// ```
/// let d = shmproc::Dict::<Vec<u8>, u32>::new()?;
/// d.insert(vec![1, 2], 12)?;
/// assert_eq!(d.get(&[1u8, 2][..])?, Some(12)); // a [u8] finds a Vec<u8> key
/// assert_eq!(d.get(&[3u8][..])?, None);
/// # Ok::<(), shmproc::ManagerError>(())
/// ```
pub struct Dict<K, V> {
    store: Store,
    _t: PhantomData<fn() -> (K, V)>,
}

impl<K, V> std::fmt::Debug for Dict<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dict").field("store", &self.store).finish()
    }
}

fn fingerprint<K, V>() -> crate::shm::Fingerprint {
    store::fingerprint(&format!(
        "shmproc::Dict<{}, {}>",
        std::any::type_name::<K>(),
        std::any::type_name::<V>()
    ))
}

/// Another handle to the same container (reference-counted; no new fd or mapping).
impl<K, V> Clone for Dict<K, V> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            _t: PhantomData,
        }
    }
}

impl<K, V> Dict<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    /// A new, empty dict with the [`DEFAULT_LIMIT`] memory limit.
    pub fn new() -> Result<Self, ManagerError> {
        Self::with_limit(DEFAULT_LIMIT)
    }

    /// A new, empty dict whose segment is `limit` bytes; it holds up to about half of that
    /// in table and entries (exactly: see [the memory limit](crate::Manager#the-memory-limit-exactly)).
    /// A limit below 4096 is refused with
    /// [`SegmentError::InvalidSize`](crate::SegmentError::InvalidSize), not rounded up.
    pub fn with_limit(limit: usize) -> Result<Self, ManagerError> {
        Self::from_store(Store::create(Kind::Dict, fingerprint::<K, V>(), limit, None)?)
    }

    /// A new, empty dict under the POSIX shared-memory name `name` (`"/name"`, created
    /// exclusively, mode 0600), which unrelated processes of the same user can
    /// [`open_named`](Self::open_named) (Python: a manager serving at an address). This
    /// handle unlinks the name when dropped, unless [`segment`](Self::segment)`().keep()`.
    /// A named segment cannot be sealed, so it trusts the processes that can open it.
    pub fn create_named(name: &str, limit: usize) -> Result<Self, ManagerError> {
        Self::from_store(Store::create(
            Kind::Dict,
            fingerprint::<K, V>(),
            limit,
            Some(name),
        )?)
    }

    /// Opens the named dict `name`, checking that it was created with the same types.
    pub fn open_named(name: &str) -> Result<Self, ManagerError> {
        Self::from_store(Store::open_named(Kind::Dict, fingerprint::<K, V>(), name)?)
    }

    fn from_store(store: Store) -> Result<Self, ManagerError> {
        Ok(Self {
            store,
            _t: PhantomData,
        })
    }

    /// Takes the dict's lock, waiting as long as needed.
    pub fn lock(&self) -> Result<DictGuard<'_, K, V>, ManagerError> {
        self.guard(None, false)
    }

    /// Takes the dict's lock, or fails with [`ManagerError::Timeout`] after `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> Result<DictGuard<'_, K, V>, ManagerError> {
        self.guard(deadline_after(timeout), false)
    }

    /// Takes the dict's lock only if it is free ([`ManagerError::WouldBlock`] otherwise).
    pub fn try_lock(&self) -> Result<DictGuard<'_, K, V>, ManagerError> {
        self.guard(None, true)
    }

    fn guard(
        &self,
        deadline: Option<std::time::Instant>,
        try_only: bool,
    ) -> Result<DictGuard<'_, K, V>, ManagerError> {
        Ok(DictGuard {
            l: self.store.lock(deadline, try_only)?,
            _t: PhantomData,
            _not_send: PhantomData,
        })
    }

    /// The value for `key` (a copy), or `None` (Python's `d.get(k)`).
    ///
    /// As with `HashMap`, `key` may be any borrowed form of `K` (`&str` for a `String` key);
    /// see [borrowed keys](Self#borrowed-keys) for what the borrowed form must satisfy.
    pub fn get<Q>(&self, key: &Q) -> Result<Option<V>, ManagerError>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        let k = encode(key)?; // outside the lock: a shorter critical section
        self.lock()?.get_enc(&k)
    }

    /// Sets `key` to `value` (Python's `d[k] = v`) and returns the value it replaces, as
    /// `HashMap::insert` does. If the replaced value does not decode as `V` (it was stored
    /// as another type), nothing changes and the error says why; [`discard`](Self::discard)
    /// removes such an entry without decoding it.
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>, ManagerError> {
        let (k, v) = (encode(&key)?, encode(&value)?);
        self.lock()?.insert_enc(&k, &v)
    }

    /// Removes `key`, returning its value (Python's `d.pop(k, None)`). If the stored value
    /// does not decode as `V`, nothing is removed and the error says why.
    pub fn remove<Q>(&self, key: &Q) -> Result<Option<V>, ManagerError>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        let k = encode(key)?;
        self.lock()?.remove_enc(&k)
    }

    /// Removes `key` without decoding its value; whether it was there (Python's `del d[k]`).
    pub fn discard<Q>(&self, key: &Q) -> Result<bool, ManagerError>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        let k = encode(key)?;
        self.lock()?.discard_enc(&k)
    }

    /// Whether `key` is present (Python's `k in d`).
    pub fn contains_key<Q>(&self, key: &Q) -> Result<bool, ManagerError>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        let k = encode(key)?;
        Ok(self.lock()?.l.locate(&k)?.is_found())
    }

    /// Number of entries (Python's `len(d)`).
    pub fn len(&self) -> Result<usize, ManagerError> {
        self.lock()?.len()
    }

    /// Whether the dict has no entries.
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }

    /// All keys, taken under one lock (a consistent snapshot, in no particular order).
    pub fn keys(&self) -> Result<Vec<K>, ManagerError> {
        self.lock()?.keys()
    }

    /// All values, taken under one lock.
    pub fn values(&self) -> Result<Vec<V>, ManagerError> {
        self.lock()?.values()
    }

    /// All entries, taken under one lock (Python's `d.items()` / `d.copy()`).
    pub fn items(&self) -> Result<Vec<(K, V)>, ManagerError> {
        self.lock()?.items()
    }

    /// Inserts every pair, under one lock (Python's `d.update(pairs)`).
    pub fn update(&self, pairs: impl IntoIterator<Item = (K, V)>) -> Result<(), ManagerError> {
        self.lock()?.update(pairs)
    }

    /// Removes every entry (Python's `d.clear()`).
    pub fn clear(&self) -> Result<(), ManagerError> {
        self.lock()?.clear()
    }

    /// The value of `key`, after inserting `default` if it was absent, as one atomic step
    /// (Python's `d.setdefault(k, default)`): of several processes racing to initialise a
    /// key, exactly one inserts and all see its value.
    pub fn setdefault(&self, key: K, default: V) -> Result<V, ManagerError> {
        let (k, v) = (encode(&key)?, encode(&default)?);
        self.lock()?.setdefault_enc(&k, &v)
    }

    /// Atomically replaces the value of `key` by `f(old)` (`None` when absent) and returns the
    /// new value: `d.update_with("hits", |v| v.unwrap_or(0) + 1)` is a `d[k] += 1` that loses
    /// no update between processes. `f` runs under the dict's lock: it must not use this dict
    /// (that gives [`ManagerError::WouldDeadlock`]). If `f` panics, nothing changes.
    ///
    /// `key` may be a borrowed form of `K`; when absent, the entry is stored under its
    /// encoding, which is the owned key's (see [borrowed keys](Self#borrowed-keys)).
    pub fn update_with<Q>(&self, key: &Q, f: impl FnOnce(Option<V>) -> V) -> Result<V, ManagerError>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        let k = encode(key)?;
        self.lock()?.update_with_enc(&k, f)
    }

    /// The segment's size: the memory limit given at creation.
    pub fn limit(&self) -> usize {
        self.store.segment().len()
    }

    /// How many times a process took this dict's lock over from a holder that had died, and
    /// repaired the dict (see the [module docs](crate::Manager#how-the-containers-work)).
    pub fn recoveries(&self) -> u64 {
        self.store.recoveries()
    }

    /// The underlying segment (for inspection; writing to it bypasses every check but can
    /// only make operations fail with [`ManagerError::Corrupt`]).
    pub fn segment(&self) -> &Segment {
        self.store.segment()
    }
}

/// A [`Dict`] with its lock held: every operation, several of them as one atomic step.
///
/// ```
/// use std::time::Duration;
/// let d = shmproc::Dict::<u32, u32>::new()?;
/// {
///     let mut g = d.lock_timeout(Duration::from_secs(1))?;
///     let v = g.get(&1)?.unwrap_or(0);
///     g.insert(1, v + 1)?; // no other process sees the dict in between
///     assert!(matches!(d.try_lock(), Err(shmproc::ManagerError::WouldBlock)));
///     assert!(matches!(d.get(&1), Err(shmproc::ManagerError::WouldDeadlock)));
/// }
/// assert_eq!(d.get(&1)?, Some(1));
/// # Ok::<(), shmproc::ManagerError>(())
/// ```
pub struct DictGuard<'a, K, V> {
    l: Locked<'a>,
    _t: PhantomData<fn() -> (K, V)>,
    /// The lock records its owner thread: the guard stays on it.
    _not_send: PhantomData<*const ()>,
}

impl<K, V> std::fmt::Debug for DictGuard<'_, K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DictGuard")
    }
}

impl<K, V> DictGuard<'_, K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    /// See [`Dict::get`].
    pub fn get<Q>(&self, key: &Q) -> Result<Option<V>, ManagerError>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        self.get_enc(&encode(key)?)
    }

    fn get_enc(&self, k: &[u8]) -> Result<Option<V>, ManagerError> {
        let loc = self.l.locate(k)?;
        if !loc.is_found() {
            return Ok(None);
        }
        self.l.value_with(&loc, decode)?.map(Some)
    }

    /// See [`Dict::insert`].
    pub fn insert(&mut self, key: K, value: V) -> Result<Option<V>, ManagerError> {
        self.insert_enc(&encode(&key)?, &encode(&value)?)
    }

    fn insert_enc(&mut self, k: &[u8], v: &[u8]) -> Result<Option<V>, ManagerError> {
        let loc = self.l.locate(k)?;
        let old = match loc.is_found() {
            true => Some(self.l.value_with(&loc, decode)??),
            false => None,
        };
        self.l.put(loc, k, v)?;
        Ok(old)
    }

    /// See [`Dict::remove`].
    pub fn remove<Q>(&mut self, key: &Q) -> Result<Option<V>, ManagerError>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        self.remove_enc(&encode(key)?)
    }

    fn remove_enc(&mut self, k: &[u8]) -> Result<Option<V>, ManagerError> {
        let loc = self.l.locate(k)?;
        if !loc.is_found() {
            return Ok(None);
        }
        let old = self.l.value_with(&loc, decode)??;
        self.l.delete(&loc)?;
        Ok(Some(old))
    }

    /// See [`Dict::discard`].
    pub fn discard<Q>(&mut self, key: &Q) -> Result<bool, ManagerError>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        self.discard_enc(&encode(key)?)
    }

    fn discard_enc(&mut self, k: &[u8]) -> Result<bool, ManagerError> {
        let loc = self.l.locate(k)?;
        self.l.delete(&loc)?;
        Ok(loc.is_found())
    }

    /// See [`Dict::contains_key`].
    pub fn contains_key<Q>(&self, key: &Q) -> Result<bool, ManagerError>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        Ok(self.l.locate(&encode(key)?)?.is_found())
    }

    /// See [`Dict::len`].
    pub fn len(&self) -> Result<usize, ManagerError> {
        self.l.len()
    }

    /// Whether the dict has no entries.
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }

    /// See [`Dict::keys`].
    pub fn keys(&self) -> Result<Vec<K>, ManagerError> {
        let mut out = Vec::with_capacity(prealloc(self.len()?));
        self.l.for_each_entry(|k, _| {
            out.push(decode(k)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// See [`Dict::values`].
    pub fn values(&self) -> Result<Vec<V>, ManagerError> {
        let mut out = Vec::with_capacity(prealloc(self.len()?));
        self.l.for_each_entry(|_, v| {
            out.push(decode(v)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// See [`Dict::items`].
    pub fn items(&self) -> Result<Vec<(K, V)>, ManagerError> {
        let mut out = Vec::with_capacity(prealloc(self.len()?));
        self.l.for_each_entry(|k, v| {
            out.push((decode(k)?, decode(v)?));
            Ok(())
        })?;
        Ok(out)
    }

    /// See [`Dict::update`]. If a pair fails (encoding, memory limit), the pairs before it
    /// stay inserted.
    pub fn update(&mut self, pairs: impl IntoIterator<Item = (K, V)>) -> Result<(), ManagerError> {
        for (k, v) in pairs {
            let (k, v) = (encode(&k)?, encode(&v)?);
            let loc = self.l.locate(&k)?;
            self.l.put(loc, &k, &v)?;
        }
        Ok(())
    }

    /// See [`Dict::clear`].
    pub fn clear(&mut self) -> Result<(), ManagerError> {
        self.l.clear()
    }

    /// See [`Dict::setdefault`].
    pub fn setdefault(&mut self, key: K, default: V) -> Result<V, ManagerError> {
        self.setdefault_enc(&encode(&key)?, &encode(&default)?)
    }

    fn setdefault_enc(&mut self, k: &[u8], default: &[u8]) -> Result<V, ManagerError> {
        let loc = self.l.locate(k)?;
        if loc.is_found() {
            return self.l.value_with(&loc, decode)?;
        }
        let v = decode(default)?;
        self.l.put(loc, k, default)?;
        Ok(v)
    }

    /// See [`Dict::update_with`].
    pub fn update_with<Q>(&mut self, key: &Q, f: impl FnOnce(Option<V>) -> V) -> Result<V, ManagerError>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        self.update_with_enc(&encode(key)?, f)
    }

    fn update_with_enc(&mut self, k: &[u8], f: impl FnOnce(Option<V>) -> V) -> Result<V, ManagerError> {
        let loc = self.l.locate(k)?;
        let old = match loc.is_found() {
            true => Some(self.l.value_with(&loc, decode)??),
            false => None,
        };
        let new = f(old);
        self.l.put(loc, k, &encode(&new)?)?;
        Ok(new)
    }
}

impl<K, V> serde::Serialize for Dict<K, V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.store.segment().serialize(s)
    }
}

impl<'de, K, V> serde::Deserialize<'de> for Dict<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let seg = crate::shm::transfer::deserialize_segment(d, Some(&fingerprint::<K, V>()))?;
        Store::wrap(seg, Kind::Dict)
            .and_then(Self::from_store)
            .map_err(|e| crate::shm::transfer::fail::<D::Error>(e.to_string()))
    }
}
