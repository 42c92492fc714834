//! Per-input logic of the `manager_image` fuzz target, shared with its stable replay
//! (`tests/fuzz_replay.rs`) through `#[path]`, so both run exactly the same code.
//!
//! A shared container whose memory a hostile or buggy peer overwrote: the input fills a
//! small `Dict<Vec<u8>, Vec<u8>>`, `List<Vec<u8>>` or `Namespace` (8 KiB limit) with a few
//! valid entries, then patches its data area (control words, the table and records of either
//! half), and then runs operations on it. Whatever the bytes say, every call must return
//! (`Ok` or a `ManagerError` of the kinds the call can give) without panicking, touching
//! memory out of bounds (the fuzzer runs under AddressSanitizer) or hanging; and a call that
//! claims success must have done what it says, checked under the same guard: after
//! `insert(k, v)` or `update_with(k, ..)` the key reads back as that value (or an error),
//! after `push`/`set`/`extend` the elements read back, after `clear` the container is empty.
//!
//! The lock word (the first 16 bytes) is left alone unless the input asks for it; then every
//! operation goes through `lock_timeout(0)`, which never waits: it gives `Timeout` for a live
//! foreign owner, `WouldDeadlock` for our own thread, `Corrupt` for a malformed word, or
//! takes the lock over from a dead owner and repairs the container (a compaction over the
//! garbage), as the dead-owner option does on purpose. A repair that fails stays pending
//! (the control block's repair flag), so any later lock may fail with it; a lock that
//! succeeds leaves no repair pending.
//!
//! Format: byte 0 options — bits 0–1 the container (0, 3: dict; 1: list; 2: namespace),
//! bit 2: patches may touch the lock word and every lock is `lock_timeout(0)`, bit 3: after
//! the patches the lock word names a dead thread (the first lock repairs), bits 4–7: valid
//! entries to put first (`× 2`); byte 1 seeds their value sizes; byte 2: the number of
//! patches (`% 32`) that follow. A patch is a byte `p` — kind `p & 3`, region `(p >> 2) & 3`
//! (the whole data area, the 128-byte control block, the active half, the other half),
//! parameter `p >> 4` — and its arguments:
//! - 0 — bytes: `u16` offset, then `1 + param` bytes;
//! - 1 — add: `u16` word index, `i8` delta, added at byte `param % 8` of the word;
//! - 2 — copy: `u16` source and `u16` destination word indices, `1 + param % 8` words;
//! - 3 — set: `u16` word index and a byte `v`; by `param % 4` the word becomes `v`,
//!   `u64::MAX - v`, its top 7 bits (a root word's half and log) replaced by `v`, or bit
//!   `v % 64` flipped.
//!
//! Then operations until the input runs out: one byte (`op % 16`) and its argument bytes (0
//! once the input is exhausted); op 12 opens or closes a guard held across the following
//! operations, 13 checks the lock's state (a held guard makes the container's own calls
//! fail with `WouldDeadlock`/`WouldBlock`), 14 applies one more patch (under the guard, if
//! held), 15 a key (or field name) from the input rather than the pool. The rest are the
//! container's operations, listed in [`dict_op`], [`list_op`] and [`ns_op`].

use std::time::Duration;

use shmproc::{Dict, DictGuard, List, ListGuard, ManagerError, Namespace, NamespaceGuard};

/// Memory limit of the container: data area bytes.
const LIMIT: usize = 8192;
/// Control block bytes at the start of the data area (`src/manager/store.rs`).
const CTRL: usize = 128;
/// Bytes of the robust lock (word, padding, owner record) at the start of the control block.
const LOCK: usize = 16;
/// Offset of the repair flag in the control block: after the lock, the root word, the
/// `len`, `used` and `live` hints and the recovery count.
const REPAIR: usize = 56;
/// Bytes of each arena half.
const HALF: usize = ((LIMIT - CTRL) / 2) & !7;
/// Most table words a half can hold: no count or listing may exceed it.
const MAX_CAP: usize = HALF / 8;
/// A thread id no Linux system hands out (`pid_max` is at most 2^22).
const DEAD_TID: u32 = 0x3fff_fff0;

type Bytes = Vec<u8>;

struct Input<'a> {
    data: std::slice::Iter<'a, u8>,
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        self.data.next().copied().unwrap_or(0)
    }
    fn u16(&mut self) -> usize {
        usize::from(u16::from_le_bytes([self.byte(), self.byte()]))
    }
    fn done(&self) -> bool {
        self.data.len() == 0
    }
}

/// Key `i` of the pool: distinct for distinct `i`, one empty.
fn key(i: u8) -> Bytes {
    let i = i % 40;
    if i == 0 {
        Vec::new()
    } else {
        vec![i; 1 + usize::from(i % 4) * 3]
    }
}

/// Field name `i` of the pool.
fn name(i: u8) -> String {
    match i % 24 {
        0 => String::new(),
        7 => "x".repeat(150),
        i => format!("f{i}"),
    }
}

const VLEN: [usize; 8] = [0, 1, 3, 8, 17, 64, 200, 700];

fn val(b: u8, c: u8) -> Bytes {
    vec![b; VLEN[usize::from(c % 8)]]
}

/// Applies one patch from the input to the data area at `base` (`len` bytes).
fn patch(inp: &mut Input<'_>, base: *mut u8, len: usize, lock_too: bool) {
    let p = inp.byte();
    let param = usize::from(p >> 4);
    // SAFETY: the root word lies in the data area, 8-aligned (the data area is 64-aligned).
    let root = unsafe { base.add(LOCK).cast::<u64>().read_volatile() };
    let active = (root >> 63) as usize;
    let (start, size) = match (p >> 2) & 3 {
        0 => (0, len),
        1 => (0, CTRL),
        2 => (CTRL + active * HALF, HALF),
        _ => (CTRL + (1 - active) * HALF, HALF),
    };
    let words = size / 8;
    let writable = |at: usize| at < len && (lock_too || at >= LOCK);
    let read_word = |w: usize| {
        // SAFETY: `start + 8 * w + 8 <= start + size <= len`, 8-aligned; no other thread
        // touches the container during the patch.
        unsafe { base.add(start + 8 * w).cast::<u64>().read_volatile() }
    };
    let write_word = |w: usize, v: u64| {
        let at = start + 8 * w;
        if writable(at) {
            // SAFETY: as in `read_word`.
            unsafe { base.add(at).cast::<u64>().write_volatile(v) };
        }
    };
    match p & 3 {
        0 => {
            let off = inp.u16() % size;
            for i in 0..=param {
                let b = inp.byte();
                let at = start + off + i;
                if at < start + size && writable(at) {
                    // SAFETY: in bounds of the data area; no other thread touches it.
                    unsafe { base.add(at).write_volatile(b) };
                }
            }
        }
        1 => {
            let w = inp.u16() % words;
            let delta = inp.byte() as i8 as i64 as u64;
            write_word(w, read_word(w).wrapping_add(delta << (8 * (param % 8))));
        }
        2 => {
            let (src, dst) = (inp.u16() % words, inp.u16() % words);
            for i in 0..=(param % 8) {
                if src + i < words && dst + i < words {
                    write_word(dst + i, read_word(src + i));
                }
            }
        }
        _ => {
            let w = inp.u16() % words;
            let v = u64::from(inp.byte());
            let old = read_word(w);
            write_word(
                w,
                match param % 4 {
                    0 => v,
                    1 => u64::MAX - v,
                    2 => (v << 57) | (old & ((1 << 57) - 1)),
                    _ => old ^ (1 << (v % 64)),
                },
            );
        }
    }
}

/// Puts a dead thread in the lock word (and no owner record).
fn kill_owner(base: *mut u8) {
    // SAFETY: the lock word and owner record are the first 16 bytes of the data area,
    // aligned; no other thread touches them now.
    unsafe {
        base.cast::<u32>().write_volatile(DEAD_TID);
        base.add(8).cast::<u64>().write_volatile(0);
    }
}

/// The control block's repair flag (`Control::repair` in `src/manager/store.rs`): non-zero
/// from a lock take-over until the compaction that repairs the container succeeds.
fn repair_pending(base: *mut u8) -> u64 {
    // SAFETY: the word at `REPAIR` lies in the control block, 8-aligned; no other thread
    // touches the container.
    unsafe { base.add(REPAIR).cast::<u64>().read_volatile() }
}

/// Errors a container operation may give on garbage (besides the lock's).
fn allowed(e: &ManagerError, index_ok: bool) -> bool {
    match e {
        ManagerError::Corrupt(_) | ManagerError::Codec(_) | ManagerError::LimitExceeded { .. } => true,
        ManagerError::Index { index, len } => index_ok && index >= len,
        _ => false,
    }
}

#[track_caller]
fn check<T: std::fmt::Debug>(what: &str, r: &Result<T, ManagerError>, index_ok: bool) {
    if let Err(e) = r {
        assert!(allowed(e, index_ok), "{what}: unexpected error {e:?}");
    }
}

/// What a lock attempt may give: the lock's own errors, or a repair that failed.
#[track_caller]
fn check_lock<T>(r: &Result<T, ManagerError>, lock_mode: bool) {
    if let Err(e) = r {
        let ok = match e {
            // A dead owner's repair compacts the garbage.
            ManagerError::Corrupt(_) | ManagerError::LimitExceeded { .. } => true,
            ManagerError::Timeout | ManagerError::WouldDeadlock | ManagerError::WouldBlock => lock_mode,
            _ => false,
        };
        assert!(ok, "lock: unexpected error {e:?}");
    }
}

/// The container's common parts, so one driver serves all three.
trait Container {
    type Guard<'a>
    where
        Self: 'a;
    fn create() -> Self;
    fn base(&self) -> (*mut u8, usize);
    fn fill(&self, n: usize, seed: u8);
    fn lock(&self) -> Result<Self::Guard<'_>, ManagerError>;
    fn lock_now(&self) -> Result<Self::Guard<'_>, ManagerError>;
    fn try_lock(&self) -> Result<Self::Guard<'_>, ManagerError>;
    /// The container's own (self-locking) read: `WouldDeadlock` while we hold a guard.
    fn probe(&self) -> Result<(), ManagerError>;
    fn recoveries(&self) -> u64;
    fn op(g: &mut Self::Guard<'_>, op: u8, inp: &mut Input<'_>);
}

impl Container for Dict<Bytes, Bytes> {
    type Guard<'a> = DictGuard<'a, Bytes, Bytes>;
    fn create() -> Self {
        Dict::with_limit(LIMIT).expect("create a dict")
    }
    fn base(&self) -> (*mut u8, usize) {
        (self.segment().as_ptr(), self.segment().len())
    }
    fn fill(&self, n: usize, seed: u8) {
        for i in 0..n {
            let v = vec![i as u8; usize::from(seed).wrapping_mul(i + 3) % 97];
            self.insert(key(i as u8), v).expect("room for a valid entry");
        }
    }
    fn lock(&self) -> Result<Self::Guard<'_>, ManagerError> {
        Dict::lock(self)
    }
    fn lock_now(&self) -> Result<Self::Guard<'_>, ManagerError> {
        self.lock_timeout(Duration::ZERO)
    }
    fn try_lock(&self) -> Result<Self::Guard<'_>, ManagerError> {
        Dict::try_lock(self)
    }
    fn probe(&self) -> Result<(), ManagerError> {
        self.len().map(drop)
    }
    fn recoveries(&self) -> u64 {
        Dict::recoveries(self)
    }
    fn op(g: &mut Self::Guard<'_>, op: u8, inp: &mut Input<'_>) {
        dict_op(g, op, inp)
    }
}

impl Container for List<Bytes> {
    type Guard<'a> = ListGuard<'a, Bytes>;
    fn create() -> Self {
        List::with_limit(LIMIT).expect("create a list")
    }
    fn base(&self) -> (*mut u8, usize) {
        (self.segment().as_ptr(), self.segment().len())
    }
    fn fill(&self, n: usize, seed: u8) {
        for i in 0..n {
            let v = vec![i as u8; usize::from(seed).wrapping_mul(i + 3) % 97];
            self.push(v).expect("room for a valid element");
        }
    }
    fn lock(&self) -> Result<Self::Guard<'_>, ManagerError> {
        List::lock(self)
    }
    fn lock_now(&self) -> Result<Self::Guard<'_>, ManagerError> {
        self.lock_timeout(Duration::ZERO)
    }
    fn try_lock(&self) -> Result<Self::Guard<'_>, ManagerError> {
        List::try_lock(self)
    }
    fn probe(&self) -> Result<(), ManagerError> {
        self.len().map(drop)
    }
    fn recoveries(&self) -> u64 {
        List::recoveries(self)
    }
    fn op(g: &mut Self::Guard<'_>, op: u8, inp: &mut Input<'_>) {
        list_op(g, op, inp)
    }
}

impl Container for Namespace {
    type Guard<'a> = NamespaceGuard<'a>;
    fn create() -> Self {
        Namespace::with_limit(LIMIT).expect("create a namespace")
    }
    fn base(&self) -> (*mut u8, usize) {
        (self.segment().as_ptr(), self.segment().len())
    }
    fn fill(&self, n: usize, seed: u8) {
        for i in 0..n {
            let v = vec![i as u8; usize::from(seed).wrapping_mul(i + 3) % 97];
            self.set(&name(i as u8), v).expect("room for a valid field");
        }
    }
    fn lock(&self) -> Result<Self::Guard<'_>, ManagerError> {
        Namespace::lock(self)
    }
    fn lock_now(&self) -> Result<Self::Guard<'_>, ManagerError> {
        self.lock_timeout(Duration::ZERO)
    }
    fn try_lock(&self) -> Result<Self::Guard<'_>, ManagerError> {
        Namespace::try_lock(self)
    }
    fn probe(&self) -> Result<(), ManagerError> {
        self.contains("f1").map(drop)
    }
    fn recoveries(&self) -> u64 {
        Namespace::recoveries(self)
    }
    fn op(g: &mut Self::Guard<'_>, op: u8, inp: &mut Input<'_>) {
        ns_op(g, op, inp)
    }
}

/// Runs one input; panics if a call panics or misbehaves.
pub fn manager_image_input(data: &[u8]) {
    let Some(&opts) = data.first() else {
        return;
    };
    match opts & 3 {
        1 => run::<List<Bytes>>(data),
        2 => run::<Namespace>(data),
        _ => run::<Dict<Bytes, Bytes>>(data),
    }
}

fn run<C: Container>(data: &[u8]) {
    let mut inp = Input { data: data.iter() };
    let opts = inp.byte();
    let lock_mode = opts & 4 != 0;
    let dead_owner = opts & 8 != 0;
    let fill = usize::from(opts >> 4) * 2;
    let seed = inp.byte();
    let patches = inp.byte() % 32;

    let c = C::create();
    let (base, len) = c.base();
    assert_eq!(len, LIMIT);
    c.fill(fill, seed);
    for _ in 0..patches {
        patch(&mut inp, base, len, lock_mode);
    }
    if dead_owner {
        kill_owner(base);
        let before = c.recoveries();
        let r = c.lock_now().map(drop);
        check_lock(&r, lock_mode);
        // A failed repair stays pending for the next locker; a successful one is done.
        assert_eq!(
            r.is_err(),
            repair_pending(base) != 0,
            "repair flag after a take-over: {r:?}"
        );
        // A thread that cannot exist: the take-over (and the repair) must have happened.
        assert!(
            !matches!(
                r,
                Err(ManagerError::Timeout | ManagerError::WouldBlock | ManagerError::WouldDeadlock)
            ),
            "a dead owner was not taken over: {r:?}"
        );
        assert_eq!(c.recoveries(), before.wrapping_add(1), "take-over not counted");
    }

    let mut guard: Option<C::Guard<'_>> = None;
    while !inp.done() {
        let op = inp.byte() % 16;
        match op {
            12 => {
                if guard.take().is_none() {
                    let r = if lock_mode { c.lock_now() } else { c.lock() };
                    check_lock(&r, lock_mode);
                    assert!(
                        r.is_err() || repair_pending(base) == 0,
                        "a repair still pending after a successful lock"
                    );
                    guard = r.ok();
                }
            }
            13 => {
                if lock_mode {
                    // Patches under the guard may have rewritten the lock word: only a try.
                    check_lock(&c.try_lock().map(drop), true);
                } else if guard.is_some() {
                    let r = c.probe();
                    assert!(
                        matches!(r, Err(ManagerError::WouldDeadlock)),
                        "own call under a guard: {r:?}"
                    );
                    let r = c.try_lock().map(drop);
                    assert!(
                        matches!(r, Err(ManagerError::WouldBlock | ManagerError::WouldDeadlock)),
                        "try_lock under a guard: {r:?}"
                    );
                } else {
                    // Nobody holds the lock and its word is clean: the try takes it (and
                    // may fail only in the repair a take-over left pending).
                    let r = c.try_lock().map(drop);
                    check_lock(&r, false);
                    assert!(
                        r.is_err() || repair_pending(base) == 0,
                        "a repair still pending after a successful lock"
                    );
                }
            }
            14 => patch(&mut inp, base, len, lock_mode),
            _ => {
                if let Some(g) = guard.as_mut() {
                    C::op(g, op, &mut inp);
                } else {
                    let r = if lock_mode { c.lock_now() } else { c.lock() };
                    check_lock(&r, lock_mode);
                    assert!(
                        r.is_err() || repair_pending(base) == 0,
                        "a repair still pending after a successful lock"
                    );
                    // Refused: the op's argument bytes are read as the next ops.
                    if let Ok(mut g) = r {
                        C::op(&mut g, op, &mut inp);
                    }
                }
            }
        }
    }
}

/// A key from the pool, or (op 15's form) from the input.
fn any_key(inp: &mut Input<'_>) -> Bytes {
    let a = inp.byte();
    if a >= 240 {
        (0..a % 16).map(|_| inp.byte()).collect()
    } else {
        key(a)
    }
}

/// Dict operations, `op % 16` (12–14 are the driver's): 0 get, 1 insert, 2 remove,
/// 3 discard, 4 contains_key, 5 len, 6 keys, 7 values, 8 items, 9 update_with, 10 clear,
/// 11 update with 1–3 pairs, 15 get then insert of a key from the input.
fn dict_op(g: &mut DictGuard<'_, Bytes, Bytes>, op: u8, inp: &mut Input<'_>) {
    match op {
        0 => {
            let k = any_key(inp);
            check("get", &g.get(&k), false);
        }
        1 | 15 => {
            let k = if op == 15 {
                (0..inp.byte() % 24).map(|_| inp.byte()).collect()
            } else {
                any_key(inp)
            };
            let v = val(inp.byte(), inp.byte());
            let r = g.insert(k.clone(), v.clone());
            check("insert", &r, false);
            if r.is_ok() {
                let got = g.get(&k);
                check("get after insert", &got, false);
                if let Ok(got) = got {
                    assert_eq!(got.as_ref(), Some(&v), "get after a successful insert");
                }
                let has = g.contains_key(&k);
                check("contains_key after insert", &has, false);
                assert!(has.unwrap_or(true), "contains_key after a successful insert");
            }
        }
        2 => {
            let k = any_key(inp);
            check("remove", &g.remove(&k), false);
        }
        3 => {
            let k = any_key(inp);
            check("discard", &g.discard(&k), false);
        }
        4 => {
            let k = any_key(inp);
            check("contains_key", &g.contains_key(&k), false);
        }
        5 => {
            let r = g.len();
            check("len", &r, false);
            if let Ok(n) = r {
                assert!(n <= MAX_CAP, "len {n} beyond any table");
            }
        }
        6 => {
            let r = g.keys();
            check("keys", &r, false);
            if let Ok(ks) = r {
                assert!(ks.len() <= MAX_CAP, "{} keys beyond any table", ks.len());
            }
        }
        7 => check("values", &g.values().map(|v| assert!(v.len() <= MAX_CAP)), false),
        8 => check("items", &g.items().map(|v| assert!(v.len() <= MAX_CAP)), false),
        9 => {
            let k = any_key(inp);
            let (b, c) = (inp.byte(), inp.byte());
            let mut seen = None;
            let r = g.update_with(&k, |old| {
                seen = Some(old.clone());
                match old {
                    Some(mut v) if v.len() < 900 => {
                        v.push(b);
                        v
                    }
                    _ => val(b, c),
                }
            });
            check("update_with", &r, false);
            if let Ok(new) = r {
                let old = seen.expect("update_with succeeded without calling f");
                let want = match old {
                    Some(mut v) if v.len() < 900 => {
                        v.push(b);
                        v
                    }
                    _ => val(b, c),
                };
                assert_eq!(new, want, "update_with returned another value than f's");
                let got = g.get(&k);
                check("get after update_with", &got, false);
                if let Ok(got) = got {
                    assert_eq!(got, Some(new), "get after a successful update_with");
                }
            }
        }
        10 => {
            let r = g.clear();
            check("clear", &r, false);
            if r.is_ok() {
                assert_eq!(g.len().ok(), Some(0), "len after clear");
                assert_eq!(g.keys().ok(), Some(vec![]), "keys after clear");
                assert_eq!(g.get(&key(1)).ok(), Some(None), "get after clear");
            }
        }
        11 => {
            let n = 1 + inp.byte() % 3;
            let pairs: Vec<(Bytes, Bytes)> = (0..n)
                .map(|_| (any_key(inp), val(inp.byte(), inp.byte())))
                .collect();
            let r = g.update(pairs.clone());
            check("update", &r, false);
            if r.is_ok() {
                // The last value given for each key wins.
                let (k, v) = pairs.last().expect("one pair at least");
                if let Ok(got) = g.get(k) {
                    assert_eq!(got.as_ref(), Some(v), "get after a successful update");
                }
            }
        }
        _ => unreachable!("driver op {op}"),
    }
}

/// An index from the input: mostly small, sometimes huge.
fn index(inp: &mut Input<'_>) -> usize {
    match inp.byte() {
        255 => usize::MAX,
        254 => 1 << 40,
        b => usize::from(b % 80),
    }
}

/// List operations, `op % 16` (12–14 are the driver's): 0, 15 push, 1 pop, 2 get, 3 set,
/// 4 len, 5 extend with 0–4 values, 6 snapshot, 7 clear, 8 update_with, 9 is_empty,
/// 10 get of the last element, 11 pop then push back.
fn list_op(g: &mut ListGuard<'_, Bytes>, op: u8, inp: &mut Input<'_>) {
    let len = |g: &ListGuard<'_, Bytes>| {
        let r = g.len();
        check("len", &r, false);
        if let Ok(n) = r {
            assert!(n <= MAX_CAP, "list len {n} beyond any table");
        }
        r.ok()
    };
    match op {
        0 | 15 => {
            let v = val(inp.byte(), inp.byte());
            let before = len(g);
            let r = g.push(v.clone());
            check("push", &r, false);
            if r.is_ok() {
                let n = len(g).expect("len right after a successful push");
                assert!(n >= 1);
                if let Some(b) = before {
                    assert_eq!(n, b + 1, "len after a push");
                }
                if let Ok(got) = g.get(n - 1) {
                    assert_eq!(got, Some(v), "last element after a push");
                }
            }
        }
        1 => {
            let before = len(g);
            let r = g.pop();
            check("pop", &r, false);
            if let (Ok(Some(_)), Some(b)) = (&r, before) {
                assert_eq!(len(g), Some(b - 1), "len after a pop");
            }
            if let (Ok(None), Some(b)) = (&r, before) {
                assert_eq!(b, 0, "pop gave nothing from a non-empty list");
            }
        }
        2 => {
            let i = index(inp);
            let before = len(g);
            let r = g.get(i);
            check("get", &r, false);
            if let (Ok(Some(_)), Some(n)) = (&r, before) {
                assert!(i < n, "get({i}) found an element past len {n}");
            }
        }
        3 | 8 => {
            let i = index(inp);
            let v = val(inp.byte(), inp.byte());
            let r = if op == 3 {
                g.set(i, v.clone()).map(|()| v)
            } else {
                g.update_with(i, |mut old| {
                    if old.len() > 900 {
                        old.clear();
                    }
                    old.extend_from_slice(&v);
                    old
                })
            };
            check("set", &r, true);
            if let Ok(v) = r {
                if let Ok(got) = g.get(i) {
                    assert_eq!(got, Some(v), "element {i} after a successful set");
                }
            }
        }
        4 | 9 => {
            let n = len(g);
            let e = g.is_empty();
            check("is_empty", &e, false);
            if let (Some(n), Ok(e)) = (n, e) {
                assert_eq!(n == 0, e);
            }
        }
        5 => {
            let vs: Vec<Bytes> = (0..inp.byte() % 5).map(|_| val(inp.byte(), inp.byte())).collect();
            let before = len(g);
            let r = g.extend(vs.clone());
            check("extend", &r, false);
            if let (Ok(()), Some(b)) = (r, before) {
                assert_eq!(len(g), Some(b + vs.len()), "len after extend");
                for (j, v) in vs.into_iter().enumerate() {
                    if let Ok(got) = g.get(b + j) {
                        assert_eq!(got, Some(v), "element {} after extend", b + j);
                    }
                }
            }
        }
        6 => {
            let r = g.snapshot();
            check("snapshot", &r, false);
            if let Ok(s) = r {
                assert!(s.len() <= MAX_CAP);
            }
        }
        7 => {
            let r = g.clear();
            check("clear", &r, false);
            if r.is_ok() {
                assert_eq!(g.len().ok(), Some(0), "len after clear");
                assert_eq!(g.snapshot().ok(), Some(vec![]), "snapshot after clear");
                assert_eq!(g.get(0).ok(), Some(None), "get after clear");
            }
        }
        10 => {
            if let Some(n) = len(g) {
                check("get last", &g.get(n.wrapping_sub(1)), false);
            }
        }
        11 => {
            if let Ok(Some(v)) = g.pop() {
                check("push back", &g.push(v), false);
            }
        }
        _ => unreachable!("driver op {op}"),
    }
}

/// A field name from the pool, or (for byte values ≥ 240) up to 15 bytes of the input,
/// made UTF-8 lossily.
fn any_name(inp: &mut Input<'_>) -> String {
    let a = inp.byte();
    if a >= 240 {
        let raw: Vec<u8> = (0..a % 16).map(|_| inp.byte()).collect();
        String::from_utf8_lossy(&raw).into_owned()
    } else {
        name(a)
    }
}

/// Namespace operations, `op % 16` (12–14 are the driver's): 0 get as bytes, 1, 15 set
/// bytes, 2 remove, 3 contains, 4 names, 5 update_with, 6 get as `u64`, 7 set a `u64`,
/// 8 set a string, 9 get as a string, 10 get as `(u8, String)`, 11 remove then contains.
fn ns_op(g: &mut NamespaceGuard<'_>, op: u8, inp: &mut Input<'_>) {
    match op {
        0 => {
            let n = any_name(inp);
            check("get", &g.get::<Bytes>(&n), false);
        }
        1 | 15 => {
            let n = any_name(inp);
            let v = val(inp.byte(), inp.byte());
            let r = g.set(&n, v.clone());
            check("set", &r, false);
            if r.is_ok() {
                if let Ok(got) = g.get::<Bytes>(&n) {
                    assert_eq!(got, Some(v), "field after a successful set");
                }
                assert!(g.contains(&n).unwrap_or(true), "contains after a successful set");
            }
        }
        2 => {
            let n = any_name(inp);
            check("remove", &g.remove(&n), false);
        }
        3 => {
            let n = any_name(inp);
            check("contains", &g.contains(&n), false);
        }
        4 => {
            let r = g.names();
            check("names", &r, false);
            if let Ok(ns) = r {
                assert!(ns.len() <= MAX_CAP);
            }
        }
        5 => {
            let n = any_name(inp);
            let b = inp.byte();
            let r = g.update_with(&n, |old: Option<Bytes>| {
                let mut v = old.unwrap_or_default();
                if v.len() > 900 {
                    v.clear();
                }
                v.push(b);
                v
            });
            check("update_with", &r, false);
            if let Ok(new) = r {
                assert_eq!(new.last(), Some(&b));
                if let Ok(got) = g.get::<Bytes>(&n) {
                    assert_eq!(got, Some(new), "field after a successful update_with");
                }
            }
        }
        6 => {
            let n = any_name(inp);
            check("get u64", &g.get::<u64>(&n), false);
        }
        7 => {
            let n = any_name(inp);
            let v = u64::from(inp.byte()) << (inp.byte() % 64);
            let r = g.set(&n, v);
            check("set u64", &r, false);
            if r.is_ok() {
                if let Ok(got) = g.get::<u64>(&n) {
                    assert_eq!(got, Some(v), "u64 field after a successful set");
                }
            }
        }
        8 => {
            let n = any_name(inp);
            let s = name(inp.byte());
            check("set str", &g.set(&n, s.as_str()), false);
        }
        9 => {
            let n = any_name(inp);
            check("get string", &g.get::<String>(&n), false);
        }
        10 => {
            let n = any_name(inp);
            check("get tuple", &g.get::<(u8, String)>(&n), false);
        }
        11 => {
            let n = any_name(inp);
            let r = g.remove(&n);
            check("remove", &r, false);
            check("contains after remove", &g.contains(&n), false);
        }
        _ => unreachable!("driver op {op}"),
    }
}
