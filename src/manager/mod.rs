//! Shared containers: see the docs of `Manager` (moved there so users can read them).

mod dict;
mod list;
mod namespace;
pub(crate) mod store;

use std::ops::Deref;

pub use dict::{Dict, DictGuard};
pub use list::{List, ListGuard};
pub use namespace::{Namespace, NamespaceGuard};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ManagerError;

/// The memory limit of a container when none is given: 256 MiB of address space, of which
/// only touched pages use memory. A container holds up to half of it.
pub const DEFAULT_LIMIT: usize = 256 << 20;

/// Makes shared containers; mirrors Python's `multiprocessing.Manager()`.
///
/// Unlike Python's, it starts no server process: it only carries the memory limit for the
/// containers it makes, which live in shared memory themselves (see the
/// [module docs](crate::Manager#how-the-containers-work)). There is nothing to shut down; a container is freed when
/// its last handle is dropped.
///
/// ```
/// use shmproc::{Manager, Process};
///
/// let m = Manager::new();
/// let counts = m.dict::<String, u64>()?;
/// let c = counts.clone();
/// let mut child = Process::fork(move || {
///     for _ in 0..1000 {
///         c.update_with("hits", |n| n.unwrap_or(0) + 1).expect("update");
///     }
/// })
/// .start()?;
/// for _ in 0..1000 {
///     counts.update_with("hits", |n| n.unwrap_or(0) + 1)?;
/// }
/// child.join()?;
/// assert_eq!(counts.get("hits")?, Some(2000)); // no update lost
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # How the containers work
///
/// Shared containers: [`Manager`], [`Dict`], [`List`] and [`Namespace`] — Python's
/// `multiprocessing.Manager().dict()`, `.list()` and `.Namespace()`.
///
/// # Mechanism: containers live in shared memory, not behind a server
///
/// Python's `Manager()` starts a server process; every proxy call pickles its arguments,
/// sends them over a socket and waits for the answer (about 70–80 µs an operation), and when
/// the server dies every proxy breaks. Here each container is **one memfd segment** that
/// every process holding a handle maps; an operation takes the container's robust lock
/// ([`RawLock`](crate::sync::RawLock)), hashes the key's encoding, probes an open-addressing
/// table and copies one record in or out: no other process, no system call on the fast path.
///
/// - **No growth, no remapping.** The segment is created at the container's *memory limit*
///   (default [`DEFAULT_LIMIT`], set with [`Manager::with_limit`]) and mapped whole. A memfd
///   is sparse: pages cost memory only once touched, so a 256 MiB limit costs a few pages for
///   a small dict. Every process maps the same size from the start, so nothing ever has to
///   be remapped or handed to running children. A change that would not fit fails with
///   [`ManagerError::LimitExceeded`] and leaves the container as it was.
/// - **Two halves, copy-on-write.** The limit is split into two halves. Records are appended
///   in the active half; when it is full (or the table must grow) the live entries are
///   copied into the other half with a fresh table, and the halves swap with one store. The
///   freed half is given back to the kernel (`MADV_REMOVE`), so resident memory is what the
///   active half uses (live records plus replaced ones not yet compacted), not the limit. A
///   container can thus hold up to half its limit, exactly as stated
///   [below](#the-memory-limit-exactly).
/// - **Readers lock too.** Every access, reads included, holds the lock, so there is no
///   lock-free protocol to get wrong: a dead reader costs the next locker a compaction.
/// - **A process killed mid-operation** (even by `SIGKILL`) never leaves the container
///   unusable: every change is published by one aligned 8-byte store, after the bytes it
///   makes reachable are written, so the container is always in its last published state.
///   The next process to take the lock is told by the lock that its holder died (within
///   about 20–40 ms), compacts the container, which recounts it and drops the dead writer's
///   unpublished bytes, and goes on; [`Dict::recoveries`] counts such take-overs.
/// - **Shared memory is untrusted.** Every offset, length and count read from the segment is
///   checked before use; bad contents give [`ManagerError::Corrupt`], never a crash.
/// - **Keys and values** are serde types encoded with postcard. Two keys are the same key
///   when their encodings are equal (as for `Hash`/`Eq` types with canonical serde forms:
///   integers, strings, tuples, `Vec`s, `BTreeMap`s; not `HashMap`s, whose order varies).
///   The hash is deterministic, so all processes agree on where a key lives. As with
///   `HashMap`, lookups take a borrowed form of the key (`d.get("k")` on a
///   `Dict<String, _>`), which must serialize exactly as the owned key does (see
///   [`Dict`'s borrowed keys](Dict#borrowed-keys)).
/// - **Handles** travel like every other shmproc handle: moved into a `Fork` child, passed
///   as an argument of a spawned child or of a pool initializer, or duplicated with
///   `clone`. The memory is freed when the last handle in any process is dropped.
///
/// # The memory limit, exactly
///
/// A container of `limit` bytes (the segment, at least 4096) has two halves of
/// **H = ⌊(limit − 128) / 2⌋**, rounded down to a multiple of 8 (128 bytes are the control
/// block). H is [`LimitExceeded`](ManagerError::LimitExceeded)`::limit`. Contents take:
///
/// - **a record per entry** of `8 + round_up_8(k + v)` bytes, `k` and `v` being the lengths of
///   the key's and the value's postcard encodings (a [`Namespace`] field's key is its name's
///   UTF-8 bytes; a [`List`] element has no key, `k = 0`);
/// - **a table** of 8-byte words: for a [`Dict`] or [`Namespace`] of `n` entries, the smallest
///   power of two of at least 8 words that `n` fill to at most 3/4 (`4n ≤ 3·words`); for a
///   [`List`] of `n` elements, the smallest power of two of at least 8 words and at least `n`.
///
/// **needed = table + records of the contents after the change.** A change — `insert`,
/// `update` (pair by pair: the pairs before a failing one stay), `update_with`, `setdefault`,
/// a namespace's `set` and `update_with`, a list's `push`, `extend` (all or nothing), `set`
/// and `update_with` — succeeds if and only if `needed ≤ H`; otherwise it fails with
/// `LimitExceeded { needed, limit: H }` and changes nothing. Removals, `pop` and `clear`
/// always succeed. What the rule leaves out never counts: replaced records, removed entries
/// (tombstones) and a table larger than the smallest one. When the active half cannot take a
/// change in place, the live contents *with the change applied* are compacted into the other
/// half in one step, published by one store (a table that must grow gets a load of at most
/// 1/2 when that fits, else the largest size that fits, down to the smallest above).
///
/// For example, `Dict::<String, u64>::with_limit(6144)` has H = 3008. Keys `"k0"` to `"k95"`
/// with values below 128 take 16-byte records, and 96 entries a table of 128 words:
/// 1024 + 1536 = 2560 bytes. A 97th key needs 256 words: 2048 + 97 · 16 = 3600 > 3008, so it
/// fails with `LimitExceeded { needed: 3600, limit: 3008 }`; after any removal it fits again,
/// and replacing a value by one of the same record size always fits.
///
/// Near its limit a dict whose table cannot double compacts whenever insertions have filled
/// 3/4 of the table's words, counting tombstones, and a full half compacts on each change;
/// a compaction copies the live contents once. (A key or value whose encoding is 4 GiB or
/// more cannot be stored at all: it is refused with [`ManagerError::Codec`] if it would fit.)
///
/// # Unrelated processes
///
/// Python connects unrelated processes to a manager by address. Here a container can be
/// created under a POSIX shared-memory name, exclusively and with mode 0600, and opened by
/// name from any process of the same user; opening checks the element types:
///
/// ```
/// use shmproc::{Dict, ManagerError, SegmentError};
/// let name = format!("/shmproc-doc-dict-{}", std::process::id());
/// let server = Dict::<String, u32>::create_named(&name, 1 << 20)?;
/// server.insert("port".into(), 8080)?;
/// let client = Dict::<String, u32>::open_named(&name)?; // e.g. in another program
/// assert_eq!(client.get("port")?, Some(8080));
/// assert!(matches!(
///     Dict::<String, String>::open_named(&name),
///     Err(ManagerError::Segment(SegmentError::LayoutMismatch { .. }))
/// ));
/// drop(server); // the creator unlinks the name; open handles keep working
/// assert_eq!(client.len()?, 1);
/// # Ok::<(), ManagerError>(())
/// ```
///
/// # Nested containers: Python's pitfall, and the idiom here
///
/// In Python, `d["k"].append(1)` on a managed dict of lists silently changes a *copy*. Here
/// values are plain serde values, so `d.get(&k)?` also returns a copy, and changing it does
/// not change the dict. The correct idiom, which is also atomic against other processes, is
/// [`Dict::update_with`]:
///
/// ```
/// let d = shmproc::Manager::new().dict::<String, Vec<u32>>()?;
/// d.insert("k".into(), vec![])?;
/// let mut copy = d.get("k")?.unwrap();
/// copy.push(1); // changes only the local copy
/// assert_eq!(d.get("k")?, Some(vec![]));
/// d.update_with("k", |v| {
///     let mut v = v.unwrap_or_default();
///     v.push(1);
///     v
/// })?; // read, change and write back under the dict's lock
/// assert_eq!(d.get("k")?, Some(vec![1]));
/// # Ok::<(), shmproc::ManagerError>(())
/// ```
///
/// A handle (a `List`, a `Queue`…) cannot be stored *inside* a container: encoding it fails
/// with [`ManagerError::Codec`]. Give each process the handles themselves instead.
///
/// # Blocking
///
/// An operation waits only for the container's lock. Every container has `lock()`,
/// `lock_timeout(t)` and `try_lock()`, returning a guard on which every operation can be
/// called: the timeout and non-blocking forms of each operation, and a way to make several
/// operations one atomic step (Python users write `with lock:` around proxy calls for this).
#[derive(Clone, Copy, Debug)]
pub struct Manager {
    limit: usize,
}

impl Default for Manager {
    fn default() -> Self {
        Self::new()
    }
}

impl Manager {
    /// A manager whose containers get [`DEFAULT_LIMIT`] bytes each.
    pub fn new() -> Self {
        Self { limit: DEFAULT_LIMIT }
    }

    /// A manager whose containers get `bytes` of memory limit each. A limit below 4096 is
    /// refused, not rounded up: making a container then fails with
    /// [`SegmentError::InvalidSize`](crate::SegmentError::InvalidSize) (inside
    /// [`ManagerError::Segment`]).
    ///
    /// ```
    /// use shmproc::{Manager, ManagerError, SegmentError};
    /// let m = Manager::with_limit(100);
    /// assert!(matches!(m.dict::<u8, u8>(), Err(ManagerError::Segment(SegmentError::InvalidSize(_)))));
    /// ```
    pub fn with_limit(bytes: usize) -> Self {
        Self { limit: bytes }
    }

    /// The memory limit each new container gets.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A new, empty shared dict (Python's `Manager().dict()`).
    pub fn dict<K, V>(&self) -> Result<Dict<K, V>, ManagerError>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        Dict::with_limit(self.limit)
    }

    /// A new, empty shared list (Python's `Manager().list()`).
    pub fn list<T: Serialize + DeserializeOwned>(&self) -> Result<List<T>, ManagerError> {
        List::with_limit(self.limit)
    }

    /// A new, empty namespace (Python's `Manager().Namespace()`).
    pub fn namespace(&self) -> Result<Namespace, ManagerError> {
        Namespace::with_limit(self.limit)
    }
}

/// Encoded keys and values up to this size stay on the stack.
pub(crate) const INLINE: usize = 128;

/// A key or value encoded with postcard: on the stack when small (no allocation), else on
/// the heap.
pub(crate) enum Enc {
    Inline { buf: [u8; INLINE], len: usize },
    Heap(Vec<u8>),
}

impl Deref for Enc {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Enc::Inline { buf, len } => &buf[..*len],
            Enc::Heap(v) => v,
        }
    }
}

/// Encodes `v` (done before taking a container's lock where the value is known).
/// Inlined so that the buffer is built in the caller's frame rather than moved out.
#[inline(always)]
pub(crate) fn encode<T: Serialize + ?Sized>(v: &T) -> Result<Enc, ManagerError> {
    let mut buf = [0u8; INLINE];
    match postcard::to_slice(v, &mut buf) {
        Ok(used) => {
            let len = used.len();
            Ok(Enc::Inline { buf, len })
        }
        Err(postcard::Error::SerializeBufferFull) => postcard::to_allocvec(v)
            .map(Enc::Heap)
            .map_err(|e| ManagerError::Codec(e.to_string())),
        Err(e) => Err(ManagerError::Codec(e.to_string())),
    }
}

/// Decodes a whole stored value; leftover bytes mean the value was written as another type.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ManagerError> {
    match crate::channel::codec::take_from_bytes::<T>(bytes) {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(ManagerError::Codec(format!(
            "{} bytes left over after decoding a {}: the value was stored as another type",
            rest.len(),
            std::any::type_name::<T>()
        ))),
        Err(e) => Err(ManagerError::Codec(format!(
            "cannot decode a {}: {e}",
            std::any::type_name::<T>()
        ))),
    }
}

/// How many elements a snapshot reserves for a length read from shared memory: the length
/// is checked against the table, but a peer could still claim a huge one, so the vector
/// grows by itself past this.
pub(crate) fn prealloc(len: usize) -> usize {
    len.min(1 << 16)
}
