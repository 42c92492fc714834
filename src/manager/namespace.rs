//! `Namespace`: named fields of any serde type in shared memory.

use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::store::{self, Kind, Locked, Store};
use super::{decode, encode, DEFAULT_LIMIT};
use crate::error::ManagerError;
use crate::shm::Segment;
use crate::sync::deadline_after;

/// Named fields shared between processes; mirrors Python's `Manager().Namespace()`.
///
/// Where Python writes `ns.x = 1` and `ns.x`, Rust writes `ns.set("x", 1)` and
/// `ns.get::<i32>("x")`. Each field keeps the type it was set with; reading it as a type
/// its bytes do not decode as gives [`ManagerError::Codec`]. The encoding cannot tell every
/// pair of types apart: a `u32` read as a `u64` decodes (postcard integers are
/// variable-length), a `String` read as an `f64` does not. As with [`Dict`](crate::Dict), a
/// field holds a copy: change nested values with [`update_with`](Self::update_with).
///
/// ```
/// let ns = shmproc::Namespace::new()?;
/// ns.set("name", "run-7")?; // a &str reads back as a String
/// ns.set("progress", 0.25f64)?;
/// assert_eq!(ns.get::<String>("name")?.as_deref(), Some("run-7"));
/// assert_eq!(ns.update_with("progress", |p: Option<f64>| p.unwrap_or(0.0) + 0.5)?, 0.75);
/// assert!(ns.get::<u8>("missing")?.is_none());
/// let mut names = ns.names()?;
/// names.sort();
/// assert_eq!(names, ["name", "progress"]);
/// # Ok::<(), shmproc::ManagerError>(())
/// ```
#[derive(Clone)]
pub struct Namespace {
    store: Store,
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace").field("store", &self.store).finish()
    }
}

fn fingerprint() -> crate::shm::Fingerprint {
    store::fingerprint("shmproc::Namespace")
}

impl Namespace {
    /// A new, empty namespace with the [`DEFAULT_LIMIT`] memory limit.
    pub fn new() -> Result<Self, ManagerError> {
        Self::with_limit(DEFAULT_LIMIT)
    }

    /// A new, empty namespace whose segment is `limit` bytes; it holds up to about half of that
    /// in table and fields (exactly: see [the memory limit](crate::Manager#the-memory-limit-exactly)).
    /// A limit below 4096 is refused with
    /// [`SegmentError::InvalidSize`](crate::SegmentError::InvalidSize), not rounded up.
    pub fn with_limit(limit: usize) -> Result<Self, ManagerError> {
        Self::from_store(Store::create(Kind::Dict, fingerprint(), limit, None)?)
    }

    /// A new, empty namespace under the POSIX shared-memory name `name` (`"/name"`, created
    /// exclusively, mode 0600), which unrelated processes of the same user can
    /// [`open_named`](Self::open_named) (Python: a manager serving at an address). This
    /// handle unlinks the name when dropped, unless [`segment`](Self::segment)`().keep()`.
    /// A named segment cannot be sealed, so it trusts the processes that can open it.
    pub fn create_named(name: &str, limit: usize) -> Result<Self, ManagerError> {
        Self::from_store(Store::create(Kind::Dict, fingerprint(), limit, Some(name))?)
    }

    /// Opens the named namespace `name`, checking that it was created with the same types.
    pub fn open_named(name: &str) -> Result<Self, ManagerError> {
        Self::from_store(Store::open_named(Kind::Dict, fingerprint(), name)?)
    }

    fn from_store(store: Store) -> Result<Self, ManagerError> {
        Ok(Self { store })
    }

    /// Takes the namespace's lock, waiting as long as needed.
    pub fn lock(&self) -> Result<NamespaceGuard<'_>, ManagerError> {
        self.guard(None, false)
    }

    /// Takes the namespace's lock, or fails with [`ManagerError::Timeout`] after `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> Result<NamespaceGuard<'_>, ManagerError> {
        self.guard(deadline_after(timeout), false)
    }

    /// Takes the namespace's lock only if it is free ([`ManagerError::WouldBlock`] otherwise).
    pub fn try_lock(&self) -> Result<NamespaceGuard<'_>, ManagerError> {
        self.guard(None, true)
    }

    fn guard(
        &self,
        deadline: Option<std::time::Instant>,
        try_only: bool,
    ) -> Result<NamespaceGuard<'_>, ManagerError> {
        Ok(NamespaceGuard {
            l: self.store.lock(deadline, try_only)?,
            _not_send: PhantomData,
        })
    }

    /// Sets field `name` (Python's `ns.name = value`).
    ///
    /// `value` is taken by value, as `HashMap::insert` takes it; a `&str` is stored as a
    /// `String` would be (a field is read back with the type whose encoding matches).
    pub fn set<T: Serialize>(&self, name: &str, value: T) -> Result<(), ManagerError> {
        let v = encode(&value)?; // outside the lock: a shorter critical section
        let mut g = self.lock()?;
        let loc = g.l.locate(name.as_bytes())?;
        g.l.put(loc, name.as_bytes(), &v)
    }

    /// Field `name` as a `T`, `None` if unset (Python's `ns.name`, or `getattr(ns, name, None)`).
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, ManagerError> {
        self.lock()?.get(name)
    }

    /// Removes field `name`; whether it was set (Python's `del ns.name`).
    pub fn remove(&self, name: &str) -> Result<bool, ManagerError> {
        self.lock()?.remove(name)
    }

    /// Whether field `name` is set (Python's `hasattr(ns, name)`).
    pub fn contains(&self, name: &str) -> Result<bool, ManagerError> {
        self.lock()?.contains(name)
    }

    /// The names of all fields (Python's `vars(ns)`), in no particular order.
    pub fn names(&self) -> Result<Vec<String>, ManagerError> {
        self.lock()?.names()
    }

    /// Atomically replaces field `name` by `f(old)` and returns the new value.
    pub fn update_with<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        f: impl FnOnce(Option<T>) -> T,
    ) -> Result<T, ManagerError> {
        self.lock()?.update_with(name, f)
    }

    /// How many times a process took this namespace's lock over from a dead holder.
    pub fn recoveries(&self) -> u64 {
        self.store.recoveries()
    }

    /// The underlying segment (for inspection).
    pub fn segment(&self) -> &Segment {
        self.store.segment()
    }
}

/// A [`Namespace`] with its lock held.
///
/// ```
/// let ns = shmproc::Namespace::new()?;
/// let mut g = ns.lock()?;
/// g.set("a", 1u8)?;
/// g.set("b", 2u8)?; // others see both fields or neither
/// assert_eq!(g.get::<u8>("b")?, Some(2));
/// # Ok::<(), shmproc::ManagerError>(())
/// ```
pub struct NamespaceGuard<'a> {
    l: Locked<'a>,
    /// The lock records its owner thread: the guard stays on it.
    _not_send: PhantomData<*const ()>,
}

impl std::fmt::Debug for NamespaceGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NamespaceGuard")
    }
}

impl NamespaceGuard<'_> {
    /// See [`Namespace::set`].
    pub fn set<T: Serialize>(&mut self, name: &str, value: T) -> Result<(), ManagerError> {
        let v = encode(&value)?;
        let loc = self.l.locate(name.as_bytes())?;
        self.l.put(loc, name.as_bytes(), &v)
    }

    /// See [`Namespace::get`].
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, ManagerError> {
        let loc = self.l.locate(name.as_bytes())?;
        if !loc.is_found() {
            return Ok(None);
        }
        self.l.value_with(&loc, decode)?.map(Some)
    }

    /// See [`Namespace::remove`].
    pub fn remove(&mut self, name: &str) -> Result<bool, ManagerError> {
        let loc = self.l.locate(name.as_bytes())?;
        self.l.delete(&loc)?;
        Ok(loc.is_found())
    }

    /// See [`Namespace::contains`].
    pub fn contains(&self, name: &str) -> Result<bool, ManagerError> {
        Ok(self.l.locate(name.as_bytes())?.is_found())
    }

    /// See [`Namespace::names`].
    pub fn names(&self) -> Result<Vec<String>, ManagerError> {
        let mut out = Vec::new();
        self.l.for_each_entry(|k, _| {
            let name =
                std::str::from_utf8(k).map_err(|_| ManagerError::Corrupt("field name is not UTF-8"))?;
            out.push(name.to_owned());
            Ok(())
        })?;
        Ok(out)
    }

    /// See [`Namespace::update_with`].
    pub fn update_with<T: Serialize + DeserializeOwned>(
        &mut self,
        name: &str,
        f: impl FnOnce(Option<T>) -> T,
    ) -> Result<T, ManagerError> {
        let loc = self.l.locate(name.as_bytes())?;
        let old = match loc.is_found() {
            true => Some(self.l.value_with(&loc, decode)??),
            false => None,
        };
        let new = f(old);
        let v = encode(&new)?;
        self.l.put(loc, name.as_bytes(), &v)?;
        Ok(new)
    }
}

impl serde::Serialize for Namespace {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.store.segment().serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Namespace {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let seg = crate::shm::transfer::deserialize_segment(d, Some(&fingerprint()))?;
        Store::wrap(seg, Kind::Dict)
            .and_then(Self::from_store)
            .map_err(|e| crate::shm::transfer::fail::<D::Error>(e.to_string()))
    }
}
