//! The byte-level engine under `Dict`, `List` and `Namespace`.
//!
//! # Segment layout (the data area of one memfd segment)
//!
//! ```text
//! [ Control: 128 bytes ][ half 0: H bytes ][ half 1: H bytes ]
//! ```
//!
//! Only one half is *active*. It starts with the **table** (`cap` u64 words, `cap` a power of
//! two), followed by **records** bump-allocated up to `top`:
//!
//! - a record is a u64 header (`key_len | val_len << 32`), the key bytes, the value bytes,
//!   padded to 8 bytes; list records have no key;
//! - a dict table word is `EMPTY` (0), `TOMB` (1), or `tag << 40 | offset / 8`, where `tag`
//!   is 24 bits of the key's hash and `offset` the record's offset in the half;
//! - a list table word is the offset of element `i`'s record, for `i < len`.
//!
//! # Commits
//!
//! Every change is made by writing fresh bytes where no reader looks (above `top`, or in the
//! inactive half), then publishing them with **one aligned 8-byte release store**:
//!
//! - the root word `half | log2(cap) << 57 | top` (new records reserved; or, after a
//!   compaction, the other half with a new table);
//! - a dict table word (insert, replace, remove);
//! - a list element word (set) or the list's `len` (push, pop, extend, clear).
//!
//! So a writer killed at any instruction leaves the last published state, plus unreachable
//! bytes that the next compaction drops. The dict's `len`/`used`/`live` counters are hints
//! written after the commit; after a writer died the next locker rebuilds them by compacting.
//!
//! # Compaction carries the change
//!
//! When a change cannot be made in place — the half has no room for the new record, or a
//! dict's table has no free word or would pass 3/4 of its words used (tombstones included),
//! or a list's table is too short — [`Locked::rebuild`] copies the live contents *with the
//! change applied* into the inactive half: a replaced dict record is left behind and the new
//! one added, a set list element is written in place of the old one, extended elements are
//! written past `len`. The root store that publishes the compaction publishes the change
//! with it (an extension still waits for its `len` store). Before writing anything the
//! rebuild sizes the result ([`Locked::plan`]) and picks its table: the preferred size if the
//! result fits with it, else the largest smaller one down to [`min_log`]. So a change fails
//! with `LimitExceeded` exactly when the live contents after it, with the smallest table the
//! rule allows, exceed one half (the rule is stated in the [module docs](super)); `needed`
//! is that size.
//!
//! # Untrusted memory
//!
//! Everything read from the segment — root word, table words, record headers, `len` — is
//! checked against the half before use, and bytes are copied out before they are compared
//! or decoded. A check that fails gives `ManagerError::Corrupt`; probing is bounded by `cap`.

use crate::loom::{AtomicU64, Ordering};
use std::time::Instant;

use super::INLINE;
use crate::error::ManagerError;
use crate::error::SegmentError;
use crate::shm::{Fingerprint, Segment};
use crate::sync::raw_lock::{Acquired, LockFail, RawLock};

/// Bytes of the control block at the start of the data area.
pub(crate) const CTRL: usize = 128;
/// Smallest table: 8 words.
const MIN_LOG: u32 = 3;
/// Largest table: 2^36 words (512 GiB of table).
const MAX_LOG: u32 = 36;
const EMPTY: u64 = 0;
const TOMB: u64 = 1;
const OFF_MASK: u64 = (1 << 40) - 1;
const TOP_MASK: u64 = (1 << 57) - 1;
/// The smallest memory limit a container accepts.
pub(crate) const MIN_LIMIT: usize = 4096;

/// What a segment holds; part of its fingerprint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Dict,
    List,
}

/// The control block; all-zero except the root word on creation.
#[repr(C)]
struct Control {
    lock: RawLock,
    /// Commit word: `half << 63 | log2(cap) << 57 | top`.
    root: AtomicU64,
    /// List: the commit word for its length. Dict: a hint (live keys).
    len: AtomicU64,
    /// Dict hint: table words that are not `EMPTY`.
    used: AtomicU64,
    /// Hint: bytes of live records.
    live: AtomicU64,
    /// How many times a lock was taken over from a dead holder.
    recoveries: AtomicU64,
    /// Non-zero from a take-over until the repair that follows it succeeds, so that a repair
    /// that failed is tried again by the next locker rather than forgotten.
    repair: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<Control>() <= CTRL);

/// The decoded, checked root word.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Root {
    half: usize,
    log: u32,
    top: usize,
}

impl Root {
    fn cap(&self) -> usize {
        1 << self.log
    }
    fn table_bytes(&self) -> usize {
        8 << self.log
    }
    fn word(&self) -> u64 {
        (self.half as u64) << 63 | (self.log as u64) << 57 | self.top as u64
    }
}

fn rec_size(klen: usize, vlen: usize) -> usize {
    8 + (klen + vlen).next_multiple_of(8)
}

/// The crate's FNV-1a over a key's encoded bytes, with a final avalanche so that the low
/// bits (the table index) and the high bits (the tag) both depend on every byte.
/// Deterministic across processes (they run the same code), unlike std's seeded hasher.
pub(crate) fn hash(bytes: &[u8]) -> u64 {
    let mut h = crate::shm::fnv1a(bytes);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

fn tag(h: u64) -> u64 {
    (h >> 40) & 0xff_ffff
}

const fn corrupt(what: &'static str) -> ManagerError {
    ManagerError::Corrupt(what)
}

/// A container's segment plus the sizes derived from its (trusted) mapping length.
#[derive(Clone)]
pub(crate) struct Store {
    seg: Segment,
    /// Bytes per half, a multiple of 8, derived from our own mapping: never read from the segment.
    half: usize,
    kind: Kind,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("kind", &self.kind)
            .field("half", &self.half)
            .field("segment", &self.seg)
            .finish()
    }
}

/// The fingerprint of a container segment: the control block's size and alignment and a
/// name carrying the element types, so a handle opened as another type is refused.
pub(crate) fn fingerprint(name: &str) -> Fingerprint {
    Fingerprint::new(CTRL as u64, 64, name)
}

impl Store {
    /// A new container of `limit` bytes (sparse: pages are backed only when touched),
    /// anonymous or under the POSIX shm `name`.
    pub(crate) fn create(
        kind: Kind,
        fp: Fingerprint,
        limit: usize,
        name: Option<&str>,
    ) -> Result<Self, ManagerError> {
        if limit < MIN_LIMIT {
            return Err(
                SegmentError::InvalidSize("a container's memory limit must be at least 4096 bytes").into(),
            );
        }
        let seg = match name {
            None => Segment::anonymous(fp, limit)?,
            Some(name) => Segment::create_named(name, fp, limit)?,
        };
        let s = Self::wrap(seg, kind)?;
        let root = Root {
            half: 0,
            log: MIN_LOG,
            top: 8 << MIN_LOG,
        };
        // The segment is new and private to us until this function returns; its bytes are
        // zero, which is an empty table.
        s.ctrl().root.store(root.word(), Ordering::Release);
        Ok(s)
    }

    /// Opens the named container `name`, checking that it holds `fp`'s types.
    pub(crate) fn open_named(kind: Kind, fp: Fingerprint, name: &str) -> Result<Self, ManagerError> {
        Self::wrap(Segment::open_named(name, Some(&fp))?, kind)
    }

    /// Wraps an opened segment; its fingerprint was already checked.
    pub(crate) fn wrap(seg: Segment, kind: Kind) -> Result<Self, ManagerError> {
        let data = seg.len();
        if data < MIN_LIMIT || (seg.as_ptr() as usize) % 64 != 0 {
            return Err(corrupt("container segment too small or misaligned"));
        }
        let half = ((data - CTRL) / 2) & !7;
        Ok(Self { seg, half, kind })
    }

    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }

    fn ctrl(&self) -> &Control {
        // SAFETY: the data area is at least `MIN_LIMIT >= CTRL` bytes, 64-aligned (checked in
        // `wrap`); `Control` is atomics only (all bit patterns valid) and lives as long as the
        // mapping, which `self` keeps.
        unsafe { &*self.seg.as_ptr().cast::<Control>() }
    }

    fn base(&self, half: usize) -> *mut u8 {
        // SAFETY: `CTRL + 2 * self.half <= data length` by construction in `wrap`.
        unsafe { self.seg.as_ptr().add(CTRL + half * self.half) }
    }

    /// Takes the container's lock. `deadline`: `None` blocks, `Some(past)` is a try.
    pub(crate) fn lock(&self, deadline: Option<Instant>, try_only: bool) -> Result<Locked<'_>, ManagerError> {
        let lock = &self.ctrl().lock;
        let r = match lock.try_lock() {
            Err(LockFail::WouldBlock) if try_only => Err(LockFail::WouldBlock),
            Err(LockFail::WouldBlock) => {
                if lock.is_owned_by_me() {
                    return Err(ManagerError::WouldDeadlock);
                }
                lock.lock(deadline)
            }
            r => r,
        };
        let died = match r {
            Ok(Acquired::Normal) => false,
            Ok(Acquired::OwnerDied(_)) => true,
            Err(LockFail::WouldBlock) => return Err(ManagerError::WouldBlock),
            Err(LockFail::Timeout) => return Err(ManagerError::Timeout),
            Err(LockFail::Corrupted | LockFail::RecursionLimit) => return Err(corrupt("lock word")),
        };
        let mut l = Locked { s: self };
        let c = self.ctrl();
        if died {
            c.recoveries.fetch_add(1, Ordering::Relaxed);
            c.repair.store(1, Ordering::Relaxed);
        }
        if c.repair.load(Ordering::Relaxed) != 0 {
            // A holder died, perhaps inside an operation: the published state is consistent,
            // but the hints may lag and its unpublished bytes sit above `top`. Compacting
            // rebuilds all of it from the published state (checking every word on the way).
            let root = l.root()?;
            l.rebuild(root, false, Change::None)?;
            c.repair.store(0, Ordering::Relaxed);
        }
        Ok(l)
    }

    pub(crate) fn recoveries(&self) -> u64 {
        self.ctrl().recoveries.load(Ordering::Relaxed)
    }
}

/// Where a key is, or where it would go.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Loc {
    /// The root word the position was found under.
    root: u64,
    hash: u64,
    /// Table index and record offset of the key, if present.
    found: Option<(usize, usize)>,
    /// The first reusable table index on the probe path (tombstone or empty).
    free: Option<usize>,
}

impl Loc {
    pub(crate) fn is_found(&self) -> bool {
        self.found.is_some()
    }
}

/// A change that a [`Locked::rebuild`] applies while it copies, so that the same root store
/// publishes the compaction and the change.
#[derive(Clone, Copy)]
enum Change<'a> {
    /// None: a plain compaction (the repair after a dead holder).
    None,
    /// Dict: `key` (hash `hash`) maps to `val`. The record it replaces is left behind — every
    /// record of that key, should a peer's garbage have made two, so that the new one is the
    /// one lookups find.
    Put { key: &'a [u8], val: &'a [u8], hash: u64 },
    /// List: element `index` becomes `val`.
    Set { index: usize, val: &'a [u8] },
    /// List: `vals` are written past `len` (published by the caller's `len` store).
    Extend { vals: &'a [&'a [u8]] },
}

/// What a rebuild will produce: `n` entries, `bytes` of records, a table of `2^log` words.
struct Plan {
    n: usize,
    bytes: usize,
    log: u32,
}

/// The container with its lock held; dropping it releases the lock.
pub(crate) struct Locked<'a> {
    s: &'a Store,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let _ = self.s.ctrl().lock.unlock();
    }
}

impl Locked<'_> {
    /// The checked root word.
    pub(crate) fn root(&self) -> Result<Root, ManagerError> {
        let w = self.s.ctrl().root.load(Ordering::Acquire);
        let root = Root {
            half: (w >> 63) as usize,
            log: ((w >> 57) & 63) as u32,
            top: (w & TOP_MASK) as usize,
        };
        if !(MIN_LOG..=MAX_LOG).contains(&root.log)
            || root.table_bytes() > self.s.half
            || root.top < root.table_bytes()
            || root.top > self.s.half
            || root.top % 8 != 0
        {
            return Err(corrupt("root word"));
        }
        Ok(root)
    }

    fn commit_root(&self, root: Root) {
        // SYNC POINT (commit): release orders the bytes written above `top` before the word
        // that makes them reachable, for the compiler as well as for peers.
        self.s.ctrl().root.store(root.word(), Ordering::Release);
    }

    fn word_at(&self, half: usize, index: usize) -> &AtomicU64 {
        // SAFETY: callers pass `index < cap` of a checked root (`8 * cap <= half size`), so the
        // word lies in the half; the half base is 8-aligned (64-aligned data, `CTRL` and the
        // half size multiples of 8); any bits are a valid `AtomicU64`.
        unsafe { &*self.s.base(half).add(index * 8).cast::<AtomicU64>() }
    }

    fn word(&self, r: &Root, index: usize) -> u64 {
        debug_assert!(index < r.cap());
        self.word_at(r.half, index).load(Ordering::Acquire)
    }

    fn set_word(&self, r: &Root, index: usize, v: u64) {
        debug_assert!(index < r.cap());
        // SYNC POINT (commit): see `commit_root`.
        self.word_at(r.half, index).store(v, Ordering::Release)
    }

    /// Checks the record at `off` of the active half: `(key_len, val_len)`.
    fn record(&self, r: &Root, off: usize) -> Result<(usize, usize), ManagerError> {
        if off % 8 != 0 || off < r.table_bytes() || off > r.top || r.top - off < 8 {
            return Err(corrupt("record offset"));
        }
        // SAFETY: `off + 8 <= top <= half size` and `off` is 8-aligned (checked above).
        let h = unsafe { &*self.s.base(r.half).add(off).cast::<AtomicU64>() }.load(Ordering::Relaxed);
        let (klen, vlen) = ((h & 0xffff_ffff) as usize, (h >> 32) as usize);
        if klen + vlen > r.top - off - 8 {
            return Err(corrupt("record length"));
        }
        Ok((klen, vlen))
    }

    /// Copies `len` bytes at `off` of the active half into `out` (replacing its contents).
    /// The caller checked the range with [`record`](Self::record).
    fn copy_out(&self, r: &Root, off: usize, len: usize, out: &mut Vec<u8>) {
        debug_assert!(off + len <= r.top);
        out.clear();
        out.reserve(len);
        // SAFETY: `off + len <= top <= half size` (checked by `record`); `out` has room for
        // `len` bytes, which the copy initialises before `set_len`.
        unsafe {
            std::ptr::copy_nonoverlapping(self.s.base(r.half).add(off), out.as_mut_ptr(), len);
            out.set_len(len);
        }
    }

    /// Runs `f` on a copy of the `len` bytes at `off` of the active half (range checked by
    /// the caller with [`record`](Self::record)): on the stack when small.
    fn with_bytes<R>(&self, r: &Root, off: usize, len: usize, f: impl FnOnce(&[u8]) -> R) -> R {
        if len <= INLINE {
            let mut buf = std::mem::MaybeUninit::<[u8; INLINE]>::uninit();
            debug_assert!(off + len <= r.top);
            // SAFETY: `off + len <= top <= half size`; `buf` holds `len <= INLINE` bytes, and
            // the slice covers exactly the `len` bytes the copy initialised.
            let bytes = unsafe {
                let p = buf.as_mut_ptr().cast::<u8>();
                std::ptr::copy_nonoverlapping(self.s.base(r.half).add(off), p, len);
                std::slice::from_raw_parts(p, len)
            };
            f(bytes)
        } else {
            let mut v = Vec::new();
            self.copy_out(r, off, len, &mut v);
            f(&v)
        }
    }

    /// Whether the `len` bytes at `off` equal `key` (range checked by the caller).
    fn equals(&self, r: &Root, off: usize, key: &[u8]) -> bool {
        let mut buf = [0u8; 64];
        let mut done = 0;
        while done < key.len() {
            let n = (key.len() - done).min(buf.len());
            // SAFETY: `off + key.len() <= top` (checked by the caller); `buf` holds `n` bytes.
            // Copying out first means a peer writing concurrently changes only our copy's
            // contents, never what we may assume about it.
            unsafe {
                std::ptr::copy_nonoverlapping(self.s.base(r.half).add(off + done), buf.as_mut_ptr(), n)
            };
            if buf[..n] != key[done..done + n] {
                return false;
            }
            done += n;
        }
        true
    }

    /// Writes a record at `top` in the active half and commits the new `top`, or returns
    /// `None` if the half has no room (nothing written).
    fn append(&self, r: &mut Root, key: &[u8], val: &[u8]) -> Option<usize> {
        let off = self.write_at_top(r, key, val)?;
        self.commit_root(*r);
        Some(off)
    }

    /// Writes a record at `r.top` of `r`'s half and moves `r.top` past it (nothing is
    /// committed), or returns `None` if it does not fit or a length does not fit its header.
    fn write_at_top(&self, r: &mut Root, key: &[u8], val: &[u8]) -> Option<usize> {
        let size = rec_size(key.len(), val.len());
        if !storable(key, val) || size > self.s.half - r.top {
            return None;
        }
        let off = r.top;
        // SAFETY: `off + size <= half size`; the bytes above `top` of the active half, and
        // the whole inactive half, are reachable by no reader (only a lock holder writes, and
        // we hold the lock); `off` is 8-aligned.
        unsafe { write_record(self.s.base(r.half).add(off), key, val) };
        r.top += size;
        Some(off)
    }

    // ------------------------------------------------------------------ dict

    /// Finds `key` (its encoded bytes).
    pub(crate) fn locate(&self, key: &[u8]) -> Result<Loc, ManagerError> {
        let r = self.root()?;
        self.locate_in(&r, key, hash(key))
    }

    fn locate_in(&self, r: &Root, key: &[u8], h: u64) -> Result<Loc, ManagerError> {
        let mask = r.cap() - 1;
        let mut i = h as usize & mask;
        let mut free = None;
        for _ in 0..r.cap() {
            match self.word(r, i) {
                EMPTY => {
                    return Ok(Loc {
                        root: r.word(),
                        hash: h,
                        found: None,
                        free: free.or(Some(i)),
                    })
                }
                TOMB => {
                    free.get_or_insert(i);
                }
                w if w >> 40 == tag(h) => {
                    let off = ((w & OFF_MASK) << 3) as usize;
                    let (klen, _) = self.record(r, off)?;
                    if klen == key.len() && self.equals(r, off + 8, key) {
                        return Ok(Loc {
                            root: r.word(),
                            hash: h,
                            found: Some((i, off)),
                            free,
                        });
                    }
                }
                _ => {}
            }
            i = (i + 1) & mask;
        }
        Ok(Loc {
            root: r.word(),
            hash: h,
            found: None,
            free,
        })
    }

    /// The current root, which must be the one `loc` was found under: only a peer writing
    /// without the lock could have changed it, and `loc`'s table indices belong to it.
    fn root_of(&self, loc: &Loc) -> Result<Root, ManagerError> {
        let r = self.root()?;
        if r.word() != loc.root {
            return Err(corrupt("root word changed under the lock"));
        }
        Ok(r)
    }

    /// Runs `f` on a copy of the value of a found key.
    pub(crate) fn value_with<R>(&self, loc: &Loc, f: impl FnOnce(&[u8]) -> R) -> Result<R, ManagerError> {
        let (_, off) = loc.found.ok_or(corrupt("value of a missing key"))?;
        let r = self.root_of(loc)?;
        let (klen, vlen) = self.record(&r, off)?;
        Ok(self.with_bytes(&r, off + 8 + klen, vlen, f))
    }

    /// Inserts or replaces `key` → `val` at `loc` (from `locate` under this same lock).
    ///
    /// The fast path appends the record and publishes it with one table-word store. When the
    /// table must grow (or be cleared of tombstones), or the half has no room left, the put is
    /// done by a [`rebuild`](Self::rebuild) that copies the live entries *minus the replaced
    /// record plus the new one* into the other half: one root store publishes the compaction
    /// and the change together, so a put succeeds whenever the dict after it fits.
    pub(crate) fn put(&mut self, loc: Loc, key: &[u8], val: &[u8]) -> Result<(), ManagerError> {
        let c = self.s.ctrl();
        let mut r = self.root_of(&loc)?;
        let size = rec_size(key.len(), val.len());
        let change = Change::Put {
            key,
            val,
            hash: loc.hash,
        };
        if loc.found.is_none() {
            let used = (hint(&c.used) as usize).min(r.cap());
            if loc.free.is_none() || (used + 1) * 4 > r.cap() * 3 {
                return self.rebuild(r, true, change);
            }
        }
        let Some(off) = self.append(&mut r, key, val) else {
            return self.rebuild(r, false, change);
        };
        let w = tag(loc.hash) << 40 | (off as u64 >> 3);
        match (loc.found, loc.free) {
            (Some((i, old)), _) => {
                let old_size = self.record(&r, old).map(|(k, v)| rec_size(k, v)).unwrap_or(0);
                self.set_word(&r, i, w);
                adjust(&c.live, size, old_size);
            }
            (None, Some(i)) => {
                let was = self.word(&r, i);
                self.set_word(&r, i, w);
                adjust(&c.len, 1, 0);
                if was == EMPTY {
                    adjust(&c.used, 1, 0);
                }
                adjust(&c.live, size, 0);
            }
            (None, None) => return Err(corrupt("table has no free word")),
        }
        Ok(())
    }

    /// Removes the key found at `loc`.
    pub(crate) fn delete(&mut self, loc: &Loc) -> Result<(), ManagerError> {
        let Some((i, off)) = loc.found else {
            return Ok(());
        };
        let r = self.root_of(loc)?;
        let size = self.record(&r, off).map(|(k, v)| rec_size(k, v)).unwrap_or(0);
        self.set_word(&r, i, TOMB);
        let c = self.s.ctrl();
        adjust(&c.len, 0, 1);
        adjust(&c.live, 0, size);
        Ok(())
    }

    /// Calls `f(slot, offset, key_len, val_len)` for each live record under `r`, checked: a
    /// dict's in table order (`slot` is the table index), a list's elements `0..len` in order
    /// (`slot` is the element index).
    fn each_live(
        &self,
        r: &Root,
        mut f: impl FnMut(usize, usize, usize, usize) -> Result<(), ManagerError>,
    ) -> Result<(), ManagerError> {
        let mut visit = |slot: usize, off: usize| {
            let (klen, vlen) = self.record(r, off)?;
            f(slot, off, klen, vlen)
        };
        match self.s.kind {
            Kind::Dict => {
                for i in 0..r.cap() {
                    let w = self.word(r, i);
                    if w != EMPTY && w != TOMB {
                        visit(i, ((w & OFF_MASK) << 3) as usize)?;
                    }
                }
            }
            Kind::List => {
                for i in 0..self.len_in(r)? {
                    visit(i, self.word(r, i) as usize)?;
                }
            }
        }
        Ok(())
    }

    /// Calls `f(key, value)` for every entry, in table order, with copies of the bytes.
    pub(crate) fn for_each_entry(
        &self,
        mut f: impl FnMut(&[u8], &[u8]) -> Result<(), ManagerError>,
    ) -> Result<(), ManagerError> {
        let r = self.root()?;
        let (mut k, mut v) = (Vec::new(), Vec::new());
        self.each_live(&r, |_, off, klen, vlen| {
            self.copy_out(&r, off + 8, klen, &mut k);
            self.copy_out(&r, off + 8 + klen, vlen, &mut v);
            f(&k, &v)
        })
    }

    /// Number of entries (a dict's hint, bounded by the table; a list's checked length).
    pub(crate) fn len(&self) -> Result<usize, ManagerError> {
        self.len_in(&self.root()?)
    }

    /// Number of entries, checked against the table of `r` (a list's words `0..len`).
    fn len_in(&self, r: &Root) -> Result<usize, ManagerError> {
        let n = self.s.ctrl().len.load(Ordering::Acquire);
        match self.s.kind {
            Kind::Dict => Ok((n as usize).min(r.cap())),
            Kind::List if n <= r.cap() as u64 => Ok(n as usize),
            Kind::List => Err(corrupt("list length")),
        }
    }

    /// Removes everything: commits an empty table in the other half.
    pub(crate) fn clear(&mut self) -> Result<(), ManagerError> {
        if self.s.kind == Kind::List {
            // SYNC POINT (commit): the list is empty from this store on.
            self.s.ctrl().len.store(0, Ordering::Release);
        }
        let r = self.root()?;
        let other = 1 - r.half;
        let nr = Root {
            half: other,
            log: MIN_LOG,
            top: 8 << MIN_LOG,
        };
        // SAFETY: the inactive half is reachable by no reader; the table fits in it.
        unsafe { std::ptr::write_bytes(self.s.base(other), 0, nr.table_bytes()) };
        self.commit_root(nr);
        let c = self.s.ctrl();
        c.len.store(0, Ordering::Relaxed);
        c.used.store(0, Ordering::Relaxed);
        c.live.store(0, Ordering::Relaxed);
        self.release_half(r.half);
        Ok(())
    }

    // ------------------------------------------------------------------ list

    /// The record offset of element `i` (checked against the length).
    fn elem(&self, r: &Root, i: usize) -> Result<(usize, usize), ManagerError> {
        let len = self.len_in(r)?;
        if i >= len {
            return Err(ManagerError::Index { index: i, len });
        }
        let off = self.word(r, i) as usize;
        let (klen, vlen) = self.record(r, off)?;
        Ok((off + 8 + klen, vlen))
    }

    /// Runs `f` on a copy of element `i`.
    pub(crate) fn list_get_with<R>(&self, i: usize, f: impl FnOnce(&[u8]) -> R) -> Result<R, ManagerError> {
        let r = self.root()?;
        let (at, n) = self.elem(&r, i)?;
        Ok(self.with_bytes(&r, at, n, f))
    }

    /// Appends the encoded values of `vals`, all visible at once (one `len` commit).
    ///
    /// If the table or the half has no room, a [`rebuild`](Self::rebuild) copies the elements
    /// and the new ones into the other half (the new ones past `len`, so still unpublished);
    /// then one `len` store publishes them either way.
    pub(crate) fn list_extend(&mut self, vals: &[&[u8]]) -> Result<(), ManagerError> {
        let mut r = self.root()?;
        let len = self.len_in(&r)?;
        let add = vals
            .iter()
            .fold(0usize, |a, v| a.saturating_add(rec_size(0, v.len())));
        let c = self.s.ctrl();
        let mut in_place = len.saturating_add(vals.len()) <= r.cap() && add <= self.s.half - r.top;
        if in_place {
            for (k, v) in vals.iter().enumerate() {
                // Fails only for a length past its header's 32 bits (the sizes fit): what was
                // appended before is reachable by no reader, and the rebuild below says why.
                let Some(off) = self.append(&mut r, &[], v) else {
                    in_place = false;
                    break;
                };
                // Words at and past `len` are reachable by no reader until `len` moves.
                self.set_word(&r, len + k, off as u64);
            }
        }
        if in_place {
            adjust(&c.live, add, 0);
        } else {
            self.rebuild(self.root()?, true, Change::Extend { vals })?;
            if self.len_in(&self.root()?)? != len {
                return Err(corrupt("list changed under the lock"));
            }
        }
        // SYNC POINT (commit): the new elements become visible together.
        c.len.store((len + vals.len()) as u64, Ordering::Release);
        Ok(())
    }

    /// Replaces element `i`.
    ///
    /// If the half has no room, a [`rebuild`](Self::rebuild) copies the elements into the
    /// other half with the new value in place of the old one, published by its root store.
    pub(crate) fn list_set(&mut self, i: usize, val: &[u8]) -> Result<(), ManagerError> {
        let mut r = self.root()?;
        let (_, old_n) = self.elem(&r, i)?;
        let size = rec_size(0, val.len());
        let Some(off) = self.append(&mut r, &[], val) else {
            return self.rebuild(r, false, Change::Set { index: i, val });
        };
        self.set_word(&r, i, off as u64);
        let c = self.s.ctrl();
        adjust(&c.live, size, rec_size(0, old_n));
        Ok(())
    }

    /// Removes the last element and runs `f` on a copy of it; `None` if the list is empty.
    pub(crate) fn list_pop_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>, ManagerError> {
        let r = self.root()?;
        let len = self.len_in(&r)?;
        if len == 0 {
            return Ok(None);
        }
        let (at, n) = self.elem(&r, len - 1)?;
        let out = self.with_bytes(&r, at, n, f);
        let c = self.s.ctrl();
        // SYNC POINT (commit).
        c.len.store((len - 1) as u64, Ordering::Release);
        adjust(&c.live, 0, rec_size(0, n));
        Ok(Some(out))
    }

    /// Calls `f(value)` for elements `0..len`, in order, with copies of the bytes.
    pub(crate) fn for_each_elem(
        &self,
        mut f: impl FnMut(&[u8]) -> Result<(), ManagerError>,
    ) -> Result<(), ManagerError> {
        let r = self.root()?;
        let mut v = Vec::new();
        self.each_live(&r, |_, off, klen, vlen| {
            self.copy_out(&r, off + 8 + klen, vlen, &mut v);
            f(&v)
        })
    }

    // ------------------------------------------------------------------ compaction

    /// Compacts: copies the live contents under `r` (the current root), with `change` applied,
    /// into the other half with a fresh table, and commits it with one root store, so the
    /// compaction and the change are published together (or neither: on any error nothing is
    /// committed and the container is as it was).
    ///
    /// The table is the preferred size if the result fits with it, else the largest smaller
    /// one that fits, down to the smallest the rule allows ([`min_log`]): preferred is the
    /// current size, or with `grow` the size for a load of at most 1/2 ([`grown_log`], a list
    /// never below its current size). If even the smallest does not fit, the change fails
    /// with `LimitExceeded` naming exactly what the contents after it need.
    #[cold]
    #[inline(never)]
    fn rebuild(&mut self, r: Root, grow: bool, change: Change<'_>) -> Result<(), ManagerError> {
        let plan = self.plan(&r, grow, &change)?;
        let other = 1 - r.half;
        let mut nr = Root {
            half: other,
            log: plan.log,
            top: 8 << plan.log,
        };
        // SAFETY: the inactive half is reachable by no reader; the table fits (planned).
        unsafe { std::ptr::write_bytes(self.s.base(other), 0, nr.table_bytes()) };
        // The plan counted every byte: running out of room now means that the contents
        // changed since, which only a peer writing without the lock can do.
        let changed = || corrupt("contents changed during a rebuild");
        let mut key = Vec::new();
        let mut n = 0;
        self.each_live(&r, |slot, off, klen, vlen| {
            if self.replaced(&r, slot, off, klen, &change) {
                // Left behind; the new record is added below.
                return Ok(());
            }
            let at = match change {
                Change::Set { index, val } if index == slot => {
                    self.write_at_top(&mut nr, &[], val).ok_or_else(changed)?
                }
                _ => self
                    .copy_record(&r, off, klen + vlen, &mut nr)
                    .ok_or_else(changed)?,
            };
            match self.s.kind {
                Kind::List => self.set_word(&nr, slot, at as u64),
                Kind::Dict => {
                    self.copy_out(&r, off + 8, klen, &mut key);
                    self.place(&nr, hash(&key), at)?;
                }
            }
            n += 1;
            Ok(())
        })?;
        match change {
            Change::Put { key, val, hash, .. } => {
                let at = self.write_at_top(&mut nr, key, val).ok_or_else(changed)?;
                self.place(&nr, hash, at)?;
                n += 1;
            }
            Change::Extend { vals } => {
                // Past the list's `len`: the caller's `len` store publishes them.
                for v in vals {
                    let at = self.write_at_top(&mut nr, &[], v).ok_or_else(changed)?;
                    if n >= nr.cap() {
                        return Err(changed());
                    }
                    self.set_word(&nr, n, at as u64);
                    n += 1;
                }
            }
            Change::None | Change::Set { .. } => {}
        }
        if n != plan.n || nr.top - nr.table_bytes() != plan.bytes {
            return Err(changed());
        }
        self.commit_root(nr);
        let c = self.s.ctrl();
        if self.s.kind == Kind::Dict {
            c.len.store(n as u64, Ordering::Relaxed);
            c.used.store(n as u64, Ordering::Relaxed);
        }
        c.live.store(plan.bytes as u64, Ordering::Relaxed);
        self.release_half(r.half);
        Ok(())
    }

    /// Sizes the contents under `r` would have after `change`, and picks the table for
    /// [`rebuild`](Self::rebuild); `LimitExceeded` if they do not fit even with the smallest.
    fn plan(&self, r: &Root, grow: bool, change: &Change<'_>) -> Result<Plan, ManagerError> {
        let (mut n, mut bytes) = (0usize, 0usize);
        self.each_live(r, |slot, off, klen, vlen| {
            if self.replaced(r, slot, off, klen, change) {
                return Ok(());
            }
            let size = match *change {
                Change::Set { index, val } if index == slot => rec_size(0, val.len()),
                _ => rec_size(klen, vlen),
            };
            n += 1;
            bytes = bytes.saturating_add(size);
            Ok(())
        })?;
        let mut storable_all = true;
        match *change {
            Change::None => {}
            Change::Put { key, val, .. } => {
                n += 1;
                bytes = bytes.saturating_add(rec_size(key.len(), val.len()));
                storable_all = storable(key, val);
            }
            Change::Set { val, .. } => storable_all = storable(&[], val),
            Change::Extend { vals } => {
                n = n.saturating_add(vals.len());
                for v in vals {
                    bytes = bytes.saturating_add(rec_size(0, v.len()));
                    storable_all &= storable(&[], v);
                }
            }
        }
        let min = min_log(self.s.kind, n);
        let want = match (grow, self.s.kind) {
            (false, _) => r.log,
            (true, Kind::Dict) => grown_log(n),
            (true, Kind::List) => grown_log(n).max(r.log),
        };
        let half = self.s.half;
        let fits = |log: u32| log <= MAX_LOG && (8usize << log) <= half && bytes <= half - (8 << log);
        let Some(log) = (min..=want.clamp(min, MAX_LOG.max(min))).rev().find(|&l| fits(l)) else {
            let table = 8u128 << min.min(64);
            return Err(ManagerError::LimitExceeded {
                needed: u64::try_from(table + bytes as u128).unwrap_or(u64::MAX),
                limit: half as u64,
            });
        };
        if !storable_all {
            return Err(ManagerError::Codec(
                "a key or value encoded to 4 GiB or more cannot be stored".into(),
            ));
        }
        Ok(Plan { n, bytes, log })
    }

    /// Whether the live dict record at table index `slot`, offset `off` (key of `klen` bytes,
    /// checked) of `r` is one that `change` replaces: a record of the key being put.
    fn replaced(&self, r: &Root, slot: usize, off: usize, klen: usize, change: &Change<'_>) -> bool {
        match *change {
            Change::Put { key, hash, .. } => {
                self.word(r, slot) >> 40 == tag(hash) && klen == key.len() && self.equals(r, off + 8, key)
            }
            _ => false,
        }
    }

    /// Puts the record at `at` of `nr`'s (new, unpublished) table into the first empty word
    /// of its probe path.
    fn place(&self, nr: &Root, h: u64, at: usize) -> Result<(), ManagerError> {
        let mask = nr.cap() - 1;
        let mut j = h as usize & mask;
        let mut probes = 0;
        while self.word(nr, j) != EMPTY {
            // The plan leaves a quarter of the table empty: only a peer writing without the
            // lock can fill it.
            probes += 1;
            if probes == nr.cap() {
                return Err(corrupt("table changed during a rebuild"));
            }
            j = (j + 1) & mask;
        }
        self.set_word(nr, j, tag(h) << 40 | (at as u64 >> 3));
        Ok(())
    }

    /// Copies a checked record (`body` bytes after its header) from the active half to the
    /// top of `nr`'s half; `None` if it does not fit.
    fn copy_record(&self, r: &Root, off: usize, body: usize, nr: &mut Root) -> Option<usize> {
        let size = 8 + body.next_multiple_of(8);
        if size > self.s.half - nr.top {
            return None;
        }
        let at = nr.top;
        // SAFETY: source `off + 8 + body <= top` (checked by `record`) in the active half;
        // destination `at + size <= half size` in the inactive half: the ranges are disjoint.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.s.base(r.half).add(off),
                self.s.base(nr.half).add(at),
                8 + body,
            )
        };
        nr.top += size;
        Some(at)
    }

    /// Gives a half that no longer holds live data back to the kernel (its pages read as
    /// zero afterwards), so a container's memory follows its live size.
    fn release_half(&self, half: usize) {
        let start = self.s.base(half) as usize;
        let end = start + self.s.half;
        let page = 4096;
        let (a, b) = (start.next_multiple_of(page), end & !(page - 1));
        if b > a + 16 * page {
            // SAFETY: `[a, b)` (page-aligned) lies inside the inactive half of our own shared
            // mapping, which no reader looks at; its pages may read back as zero. Failing to
            // free them only costs memory, so the error is ignored.
            let _ = unsafe { crate::sys::mem::remove_pages(a as *mut u8, b - a) };
        }
    }
}

/// The table size for `n` entries: load at most 1/2 after a rebuild.
fn grown_log(n: usize) -> u32 {
    n.max(4)
        .saturating_mul(2)
        .checked_next_power_of_two()
        .map_or(MAX_LOG + 1, |p| p.trailing_zeros())
}

/// The smallest table the limit rule allows for `n` entries: at least 8 words, and for a
/// dict at most 3/4 full (`4n <= 3 * cap`), for a list at least `n` words. (Past `MAX_LOG`
/// it does not fit any half.)
fn min_log(kind: Kind, n: usize) -> u32 {
    let words = match kind {
        Kind::Dict => n.saturating_mul(4).div_ceil(3),
        Kind::List => n,
    };
    words
        .max(1 << MIN_LOG)
        .checked_next_power_of_two()
        .map_or(64, |p| p.trailing_zeros())
}

/// Whether a record's lengths fit its header's two 32-bit fields.
fn storable(key: &[u8], val: &[u8]) -> bool {
    key.len() <= u32::MAX as usize && val.len() <= u32::MAX as usize
}

fn hint(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// Moves a counter hint by `+add - sub`, saturating (a peer may have stored anything).
fn adjust(a: &AtomicU64, add: usize, sub: usize) {
    a.store(
        hint(a).saturating_sub(sub as u64).saturating_add(add as u64),
        Ordering::Relaxed,
    );
}

/// Writes a record (header, key, value) at `p`.
///
/// # Safety
/// `p` is 8-aligned with `rec_size(key.len(), val.len())` writable bytes that no one else
/// reads or writes meanwhile.
unsafe fn write_record(p: *mut u8, key: &[u8], val: &[u8]) {
    let h = key.len() as u64 | (val.len() as u64) << 32;
    // SAFETY: per the contract, the header and both byte ranges fit in the record.
    unsafe {
        p.cast::<u64>().write(h);
        std::ptr::copy_nonoverlapping(key.as_ptr(), p.add(8), key.len());
        std::ptr::copy_nonoverlapping(val.as_ptr(), p.add(8 + key.len()), val.len());
    }
}
