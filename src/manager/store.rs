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
//! # Untrusted memory
//!
//! Everything read from the segment — root word, table words, record headers, `len` — is
//! checked against the half before use, and bytes are copied out before they are compared
//! or decoded. A check that fails gives `ManagerError::Corrupt`; probing is bounded by `cap`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::INLINE;
use crate::error::ManagerError;
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
        let limit = limit.max(MIN_LIMIT);
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

    pub(crate) fn try_clone(&self) -> Result<Self, ManagerError> {
        Self::wrap(self.seg.try_clone()?, self.kind)
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
            l.rebuild(root.log, 0)?;
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
        let size = rec_size(key.len(), val.len());
        if key.len() > u32::MAX as usize || val.len() > u32::MAX as usize || size > self.s.half - r.top {
            return None;
        }
        let off = r.top;
        // SAFETY: `off + size <= half size`; the bytes above `top` are reachable by no
        // reader (only a lock holder writes, and we hold the lock); `off` is 8-aligned.
        unsafe { write_record(self.s.base(r.half).add(off), key, val) };
        r.top += size;
        self.commit_root(*r);
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
    pub(crate) fn put(&mut self, loc: Loc, key: &[u8], val: &[u8]) -> Result<(), ManagerError> {
        let c = self.s.ctrl();
        let mut r = self.root_of(&loc)?;
        let mut loc = loc;
        let size = rec_size(key.len(), val.len());
        if loc.found.is_none() {
            let used = (hint(&c.used) as usize).min(r.cap());
            if loc.free.is_none() || (used + 1) * 4 > r.cap() * 3 {
                let len = self.len()?;
                self.rebuild(grown_log(len + 1), size)?;
                r = self.root()?;
                loc = self.locate_in(&r, key, loc.hash)?;
            }
        }
        let off = match self.append(&mut r, key, val) {
            Some(off) => off,
            None => {
                self.rebuild(r.log, size)?;
                r = self.root()?;
                loc = self.locate_in(&r, key, loc.hash)?;
                self.append(&mut r, key, val).ok_or(ManagerError::LimitExceeded {
                    needed: (r.top + size) as u64,
                    limit: self.s.half as u64,
                })?
            }
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
            (None, None) => return Err(corrupt("table has no free word after a rebuild")),
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

    /// Calls `f(n, offset, key_len, val_len)` for each live record under `r`, checked: a
    /// dict's in table order, a list's elements `0..len` in order (`n` counts from 0).
    fn each_live(
        &self,
        r: &Root,
        mut f: impl FnMut(usize, usize, usize, usize) -> Result<(), ManagerError>,
    ) -> Result<(), ManagerError> {
        let mut visit = |n: usize, off: usize| {
            let (klen, vlen) = self.record(r, off)?;
            f(n, off, klen, vlen)
        };
        match self.s.kind {
            Kind::Dict => {
                let mut n = 0;
                for i in 0..r.cap() {
                    let w = self.word(r, i);
                    if w != EMPTY && w != TOMB {
                        visit(n, ((w & OFF_MASK) << 3) as usize)?;
                        n += 1;
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
    pub(crate) fn list_extend(&mut self, vals: &[&[u8]]) -> Result<(), ManagerError> {
        let mut r = self.root()?;
        let len = self.len_in(&r)?;
        let add: usize = vals.iter().map(|v| rec_size(0, v.len())).sum();
        if len + vals.len() > r.cap() || add > self.s.half - r.top {
            self.rebuild(grown_log(len + vals.len()).max(r.log), add)?;
            r = self.root()?;
            if self.len_in(&r)? != len || len + vals.len() > r.cap() {
                return Err(corrupt("list changed under the lock"));
            }
        }
        for (k, v) in vals.iter().enumerate() {
            let off = self.append(&mut r, &[], v).ok_or(ManagerError::LimitExceeded {
                needed: (r.top + add) as u64,
                limit: self.s.half as u64,
            })?;
            // Words at and past `len` are reachable by no reader until `len` moves.
            self.set_word(&r, len + k, off as u64);
        }
        let c = self.s.ctrl();
        // SYNC POINT (commit): the new elements become visible together.
        c.len.store((len + vals.len()) as u64, Ordering::Release);
        adjust(&c.live, add, 0);
        Ok(())
    }

    /// Replaces element `i`.
    pub(crate) fn list_set(&mut self, i: usize, val: &[u8]) -> Result<(), ManagerError> {
        let mut r = self.root()?;
        let (_, old_n) = self.elem(&r, i)?;
        let size = rec_size(0, val.len());
        let off = match self.append(&mut r, &[], val) {
            Some(off) => off,
            None => {
                self.rebuild(r.log, size)?;
                r = self.root()?;
                self.append(&mut r, &[], val).ok_or(ManagerError::LimitExceeded {
                    needed: (r.top + size) as u64,
                    limit: self.s.half as u64,
                })?
            }
        };
        if i >= self.len_in(&r)? {
            return Err(corrupt("list changed under the lock"));
        }
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

    /// Copies the live contents into the other half with a table of `2^log` words, leaving
    /// room for `extra` more record bytes, and commits it with one root store. On any error
    /// nothing is committed: the container is as it was.
    pub(crate) fn rebuild(&mut self, log: u32, extra: usize) -> Result<(), ManagerError> {
        let r = self.root()?;
        let mut log = log.clamp(MIN_LOG, MAX_LOG);
        if self.s.kind == Kind::Dict {
            // The counters are hints: the table must hold the entries actually there, plus
            // one empty word to end every probe. (Growing for load is `put`'s decision: a
            // repair, or a compaction for a replaced value, keeps the size asked for.)
            let count = (0..r.cap())
                .filter(|&i| !matches!(self.word(&r, i), EMPTY | TOMB))
                .count();
            if count + 1 > (1usize << log) {
                log = grown_log(count + 1);
            }
        }
        let other = 1 - r.half;
        let mut nr = Root {
            half: other,
            log,
            top: 8 << log,
        };
        // What the new half would need in all: the table, every live record, `extra`.
        let full = |table: usize| match self.live_bytes(&r) {
            Ok(live) => ManagerError::LimitExceeded {
                needed: (table + live + extra) as u64,
                limit: self.s.half as u64,
            },
            Err(e) => e,
        };
        if nr.table_bytes() > self.s.half {
            return Err(full(nr.table_bytes()));
        }
        if self.s.kind == Kind::List && self.len_in(&r)? > nr.cap() {
            return Err(full(nr.table_bytes()));
        }
        // SAFETY: the inactive half is reachable by no reader; the table fits (checked).
        unsafe { std::ptr::write_bytes(self.s.base(other), 0, nr.table_bytes()) };
        let mut len = 0;
        let mut key = Vec::new();
        let mask = nr.cap() - 1;
        self.each_live(&r, |n, off, klen, vlen| {
            let at = self
                .copy_record(&r, off, klen + vlen, &mut nr)
                .ok_or_else(|| full(nr.table_bytes()))?;
            let (slot, word) = match self.s.kind {
                Kind::List => (n, at as u64),
                Kind::Dict => {
                    self.copy_out(&r, off + 8, klen, &mut key);
                    let h = hash(&key);
                    let mut j = h as usize & mask;
                    let mut probes = 0;
                    while self.word(&nr, j) != EMPTY {
                        // Only a peer writing without the lock can fill the new table.
                        probes += 1;
                        if probes == nr.cap() {
                            return Err(corrupt("table changed during a rebuild"));
                        }
                        j = (j + 1) & mask;
                    }
                    (j, tag(h) << 40 | (at as u64 >> 3))
                }
            };
            self.set_word(&nr, slot, word);
            len = n + 1;
            Ok(())
        })?;
        let live = nr.top - nr.table_bytes();
        if extra > self.s.half - nr.top {
            return Err(full(nr.table_bytes()));
        }
        self.commit_root(nr);
        let c = self.s.ctrl();
        if self.s.kind == Kind::Dict {
            c.len.store(len as u64, Ordering::Relaxed);
            c.used.store(len as u64, Ordering::Relaxed);
        }
        c.live.store(live as u64, Ordering::Relaxed);
        self.release_half(r.half);
        Ok(())
    }

    /// Bytes of the live records under `r` (checked), for an honest `LimitExceeded`.
    fn live_bytes(&self, r: &Root) -> Result<usize, ManagerError> {
        let mut sum = 0;
        self.each_live(r, |_, _, klen, vlen| {
            sum += rec_size(klen, vlen);
            Ok(())
        })?;
        Ok(sum)
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
            // SAFETY: `[a, b)` lies inside the inactive half of our own shared mapping, which
            // no reader looks at; MADV_REMOVE only frees its pages (they read back as zero).
            unsafe { libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_REMOVE) };
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
