//! Per-input logic of the `manager_ops` fuzz target, shared with its stable replay
//! (`tests/fuzz_replay.rs`) through `#[path]`, so both run exactly the same code.
//!
//! The input is a program of operations on one honest `Dict<Vec<u8>, Vec<u8>>`,
//! `List<Vec<u8>>` or `Namespace`, checked against a model (`HashMap`, `Vec`, `HashMap` of
//! fields). The memory limit is small (4 to 16 KiB, or 144 KiB so that compaction gives freed
//! halves back to the kernel) and keys and values run from empty to about 1 KiB, so
//! compactions and `LimitExceeded` happen often. Calls go through two handles of the same
//! container (`clone`), switched by the input. Every result must equal the model's, except
//! that a change may fail with `LimitExceeded`: then the container must still equal the
//! model (nothing changed), and the failure must be justified — even the largest table the
//! container could have picked plus the live records and the new one(s) would not fit in
//! one half. Operations run through the container's own (self-locking) calls, or through a
//! guard held across several of them; under a guard the container's own calls must give
//! `WouldDeadlock` and `try_lock` must refuse.
//!
//! Format: byte 0 picks the container (`b % 3`: dict, list, namespace) and the limit
//! (`(b / 3) % 4`: 4, 8, 16 or 144 KiB); then each operation is one byte and its argument
//! bytes (0 once the input runs out), until the input runs out; see [`dict_ops`],
//! [`list_ops`] and [`ns_ops`] for the operations. At the end the whole container is
//! compared with the model.

use std::collections::HashMap;
use std::time::Duration;

use shmproc::{Dict, DictGuard, List, ListGuard, ManagerError, Namespace, NamespaceGuard};

const LIMITS: [usize; 4] = [4096, 8192, 16384, 144 << 10];
/// Control block bytes at the start of the data area (`src/manager/store.rs`).
const CTRL: usize = 128;

/// Whether to check that `LimitExceeded::needed` exceeds `limit`. (It found that a
/// compaction whose copy ran out of room reported only the bytes copied so far; `rebuild`
/// now reports the table, every live record and the new one.)
const CHECK_NEEDED: bool = true;

type Bytes = Vec<u8>;

struct Input<'a> {
    data: std::slice::Iter<'a, u8>,
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        self.data.next().copied().unwrap_or(0)
    }
    fn done(&self) -> bool {
        self.data.len() == 0
    }
}

const KLEN: [usize; 8] = [0, 1, 2, 5, 8, 9, 40, 1000];
const VLEN: [usize; 8] = [0, 1, 7, 8, 30, 100, 500, 1030];

/// Key `i` of the pool (24 keys, lengths from `KLEN`).
fn key(i: u8) -> Bytes {
    let i = i % 24;
    vec![i; KLEN[usize::from(i % 8)]]
}

fn val(b: u8, c: u8) -> Bytes {
    vec![b; VLEN[usize::from(c % 8)]]
}

/// Field name `i` of the pool (16 names, one empty, one of 300 bytes).
fn name(i: u8) -> String {
    match i % 16 {
        0 => String::new(),
        1 => "x".repeat(300),
        2 => "é".repeat(20),
        i => format!("field_{i}"),
    }
}

/// The new value `update_with` computes from the old one.
fn updated(old: Option<Bytes>, b: u8, c: u8) -> Bytes {
    match old {
        Some(mut v) if v.len() < 1000 => {
            v.push(b);
            v
        }
        _ => val(b, c),
    }
}

// ---------------------------------------------------------------- sizes, as store.rs has them

/// Bytes of postcard's encoding of a byte vector of `n` bytes (varint length, then bytes).
fn enc_len(n: usize) -> usize {
    let mut varint = 1;
    let mut x = n >> 7;
    while x > 0 {
        varint += 1;
        x >>= 7;
    }
    varint + n
}

/// Bytes of a record with `k` key bytes and `v` value bytes (header, padding to 8).
fn rec(k: usize, v: usize) -> usize {
    8 + (k + v).next_multiple_of(8)
}

fn dict_rec(k: &[u8], v: &[u8]) -> usize {
    rec(enc_len(k.len()), enc_len(v.len()))
}

/// Table size (log2) the container grows to for `n` entries.
fn grown_log(n: usize) -> u32 {
    (n.max(4) * 2).next_power_of_two().trailing_zeros()
}

/// The container's layout, from its (trusted, honest) segment.
struct Layout {
    base: *mut u8,
    half: usize,
}

impl Layout {
    fn new(base: *mut u8, len: usize) -> Self {
        Self {
            base,
            half: ((len - CTRL) / 2) & !7,
        }
    }

    /// Table words of the committed table (from the root word).
    fn cap(&self) -> usize {
        // SAFETY: the root word is the 8-aligned word at byte 16 of the data area; only this
        // thread uses the container.
        let root = unsafe { self.base.add(16).cast::<u64>().read_volatile() };
        1 << ((root >> 57) & 63)
    }

    /// Whether `e` is a `LimitExceeded` that the sizes justify: with the largest table the
    /// container could use (the one before or after the call, or one grown for `len_after`
    /// entries), `live_before` bytes of records and the `added` bytes of the new ones do not
    /// fit in one half.
    fn justified(
        &self,
        e: &ManagerError,
        caps: &[usize],
        live_before: usize,
        added: usize,
        len_after: usize,
    ) -> Result<(), String> {
        let ManagerError::LimitExceeded { needed, limit } = e else {
            return Err(format!("unexpected error {e:?}"));
        };
        if *limit != self.half as u64 {
            return Err(format!("LimitExceeded names another limit: {e:?}"));
        }
        let table = caps
            .iter()
            .copied()
            .chain([1 << grown_log(len_after + 1)])
            .max()
            .expect("a table size");
        let most = 8 * table + live_before + added;
        if most <= self.half {
            return Err(format!(
                "LimitExceeded although {most} bytes (table of {table} words, {live_before} live, \
                 {added} new) fit in a half of {}: {e:?}",
                self.half
            ));
        }
        if CHECK_NEEDED && *needed <= *limit {
            return Err(format!(
                "LimitExceeded says {needed} bytes needed of {limit}: {e:?}"
            ));
        }
        Ok(())
    }

    /// Panics unless [`justified`](Self::justified).
    #[track_caller]
    fn justify(
        &self,
        what: &str,
        e: &ManagerError,
        caps: &[usize],
        live_before: usize,
        added: usize,
        len_after: usize,
    ) {
        if let Err(why) = self.justified(e, caps, live_before, added, len_after) {
            panic!("{what}: {why}");
        }
    }
}

/// Runs one input; panics if the container disagrees with the model.
pub fn manager_ops_input(data: &[u8]) {
    let mut inp = Input { data: data.iter() };
    let Some(&first) = data.first() else {
        return;
    };
    inp.byte();
    let limit = LIMITS[usize::from(first / 3) % 4];
    match first % 3 {
        0 => dict_ops(limit, &mut inp),
        1 => list_ops(limit, &mut inp),
        _ => ns_ops(limit, &mut inp),
    }
}

/// Calls a method on the guard if one is held, else on the container itself.
macro_rules! call {
    ($c:expr, $g:expr, $($m:tt)+) => {
        match $g.as_mut() {
            Some(g) => g.$($m)+,
            None => $c.$($m)+,
        }
    };
}

/// Opens a guard (`lock`, `lock_timeout` or `try_lock` by `how % 3`), or closes the one held;
/// with no guard held and bit 3 of `how` set, switches to the other handle instead.
macro_rules! toggle_guard {
    ($c:ident, $g:expr, $both:expr, $how:expr) => {{
        let how = $how;
        if how & 8 != 0 && $g.is_none() {
            // Go on through the other handle (same memory, another mapping).
            $c = if std::ptr::eq($c, &$both[0]) {
                &$both[1]
            } else {
                &$both[0]
            };
        } else if $g.take().is_none() {
            let r = match how % 3 {
                0 => $c.lock(),
                1 => $c.lock_timeout(Duration::from_secs(5)),
                _ => $c.try_lock(),
            };
            $g = Some(r.expect("an uncontended lock"));
        }
    }};
}

/// Under a guard, the container's own calls would wait for ourselves.
macro_rules! check_held {
    ($c:expr, $g:expr, $probe:expr) => {
        if $g.is_some() {
            let r = $probe;
            assert!(
                matches!(r, Err(ManagerError::WouldDeadlock)),
                "own call under a guard: {r:?}"
            );
            let r = $c.try_lock().map(drop);
            assert!(
                matches!(r, Err(ManagerError::WouldBlock | ManagerError::WouldDeadlock)),
                "try_lock under a guard: {r:?}"
            );
        }
    };
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

// ---------------------------------------------------------------- dict

fn dict_live(m: &HashMap<Bytes, Bytes>) -> usize {
    m.iter().map(|(k, v)| dict_rec(k, v)).sum()
}

/// Dict operations (`op % 12`, then arguments): 0 get (key), 1 insert (key, value byte,
/// size), 2 remove (key), 3 discard (key), 4 contains_key (key), 5 len and is_empty, 6 keys,
/// values or items (which), 7 update_with (key, byte, size), 8 clear, 9 update (count, then
/// 1–3 pairs), 10 open or close a guard, or switch handles (how), 11 compare everything
/// (and, under a guard, check that the dict's own calls refuse).
fn dict_ops(limit: usize, inp: &mut Input<'_>) {
    let first = Dict::<Bytes, Bytes>::with_limit(limit).expect("create a dict");
    let both = [first.clone(), first];
    let mut d = &both[0];
    let lay = Layout::new(d.segment().as_ptr(), d.segment().len());
    let mut m: HashMap<Bytes, Bytes> = HashMap::new();
    let mut g: Option<DictGuard<'_, Bytes, Bytes>> = None;
    macro_rules! check_all {
        ($what:expr) => {{
            let items = call!(d, g, items()).expect("items");
            let want: Vec<(Bytes, Bytes)> = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            assert_eq!(sorted(items), sorted(want), "items after {}", $what);
            assert_eq!(call!(d, g, len()).expect("len"), m.len(), "len after {}", $what);
        }};
    }
    while !inp.done() {
        let op = inp.byte() % 12;
        let cap_before = lay.cap();
        match op {
            0 => {
                let k = key(inp.byte());
                assert_eq!(call!(d, g, get(&k)).expect("get"), m.get(&k).cloned(), "get");
            }
            1 => {
                let k = key(inp.byte());
                let v = val(inp.byte(), inp.byte());
                match call!(d, g, insert(k.clone(), v.clone())) {
                    Ok(old) => {
                        assert_eq!(old, m.insert(k, v), "insert's old value");
                    }
                    Err(e) => {
                        let len_after = m.len() + usize::from(!m.contains_key(&k));
                        lay.justify(
                            "insert",
                            &e,
                            &[cap_before, lay.cap()],
                            dict_live(&m),
                            dict_rec(&k, &v),
                            len_after,
                        );
                        check_all!("a failed insert");
                    }
                }
            }
            2 => {
                let k = key(inp.byte());
                assert_eq!(call!(d, g, remove(&k)).expect("remove"), m.remove(&k), "remove");
            }
            3 => {
                let k = key(inp.byte());
                assert_eq!(
                    call!(d, g, discard(&k)).expect("discard"),
                    m.remove(&k).is_some(),
                    "discard"
                );
            }
            4 => {
                let k = key(inp.byte());
                assert_eq!(
                    call!(d, g, contains_key(&k)).expect("contains_key"),
                    m.contains_key(&k)
                );
            }
            5 => {
                assert_eq!(call!(d, g, len()).expect("len"), m.len(), "len");
                assert_eq!(
                    call!(d, g, is_empty()).expect("is_empty"),
                    m.is_empty(),
                    "is_empty"
                );
            }
            6 => match inp.byte() % 3 {
                0 => {
                    let want: Vec<Bytes> = m.keys().cloned().collect();
                    assert_eq!(sorted(call!(d, g, keys()).expect("keys")), sorted(want), "keys");
                }
                1 => {
                    let want: Vec<Bytes> = m.values().cloned().collect();
                    assert_eq!(
                        sorted(call!(d, g, values()).expect("values")),
                        sorted(want),
                        "values"
                    );
                }
                _ => check_all!("items"),
            },
            7 => {
                let k = key(inp.byte());
                let (b, c) = (inp.byte(), inp.byte());
                let old = m.get(&k).cloned();
                let want = updated(old.clone(), b, c);
                let mut seen = None;
                let r = call!(
                    d,
                    g,
                    update_with(&k, |o| {
                        seen = Some(o.clone());
                        updated(o, b, c)
                    })
                );
                assert_eq!(seen, Some(old), "update_with's f got another old value");
                match r {
                    Ok(new) => {
                        assert_eq!(new, want, "update_with's result");
                        m.insert(k, new);
                    }
                    Err(e) => {
                        let len_after = m.len() + usize::from(!m.contains_key(&k));
                        let added = dict_rec(&k, &want);
                        lay.justify(
                            "update_with",
                            &e,
                            &[cap_before, lay.cap()],
                            dict_live(&m),
                            added,
                            len_after,
                        );
                        check_all!("a failed update_with");
                    }
                }
            }
            8 => {
                call!(d, g, clear()).expect("clear");
                m.clear();
                assert_eq!(call!(d, g, len()).expect("len"), 0, "len after clear");
            }
            9 => {
                let n = 1 + inp.byte() % 3;
                let pairs: Vec<(Bytes, Bytes)> = (0..n)
                    .map(|_| (key(inp.byte()), val(inp.byte(), inp.byte())))
                    .collect();
                match call!(d, g, update(pairs.clone())) {
                    Ok(()) => m.extend(pairs),
                    Err(e) => {
                        // The pairs before the failing one stay inserted: the dict must hold
                        // the model with a prefix of the pairs applied, and the next pair must
                        // not fit. (A pair that changes nothing makes two prefixes look alike.)
                        let items: HashMap<Bytes, Bytes> =
                            call!(d, g, items()).expect("items").into_iter().collect();
                        let mut why = Vec::new();
                        for (done, (k, v)) in pairs.iter().enumerate() {
                            if items == m {
                                let len_after = m.len() + usize::from(!m.contains_key(k));
                                match lay.justified(
                                    &e,
                                    &[lay.cap()],
                                    dict_live(&m),
                                    dict_rec(k, v),
                                    len_after,
                                ) {
                                    Ok(()) => break,
                                    Err(w) => why.push(format!("pair {done}: {w}")),
                                }
                            }
                            m.insert(k.clone(), v.clone());
                            assert!(
                                done + 1 < pairs.len(),
                                "update failed, and no prefix of its pairs explains it: {why:?}"
                            );
                        }
                        check_all!("a failed update");
                    }
                }
            }
            10 => toggle_guard!(d, g, both, inp.byte()),
            _ => {
                check_held!(d, g, d.get(&key(0)));
                check_all!("check");
            }
        }
    }
    check_all!("the end");
}

// ---------------------------------------------------------------- list

fn list_live(m: &[Bytes]) -> usize {
    m.iter().map(|v| rec(0, enc_len(v.len()))).sum()
}

/// An index from the input: mostly in range or just past it, sometimes huge.
fn index(b: u8, len: usize) -> usize {
    match b {
        255 => usize::MAX,
        254 => len,
        b => usize::from(b) % (len + 2),
    }
}

/// List operations (`op % 12`, then arguments): 0 push (value byte, size), 1 pop, 2 get
/// (index), 3 set (index, byte, size), 4 len and is_empty, 5 extend (count `% 5`, then the
/// values), 6 snapshot, 7 clear, 8 update_with (index, byte, size), 9 open or close a guard,
/// or switch handles (how), 10 compare everything (and, under a guard, check that the
/// list's own calls refuse), 11 push then pop.
fn list_ops(limit: usize, inp: &mut Input<'_>) {
    let first = List::<Bytes>::with_limit(limit).expect("create a list");
    let both = [first.clone(), first];
    let mut l = &both[0];
    let lay = Layout::new(l.segment().as_ptr(), l.segment().len());
    let mut m: Vec<Bytes> = Vec::new();
    let mut g: Option<ListGuard<'_, Bytes>> = None;
    macro_rules! check_all {
        ($what:expr) => {{
            assert_eq!(
                call!(l, g, snapshot()).expect("snapshot"),
                m,
                "snapshot after {}",
                $what
            );
            assert_eq!(call!(l, g, len()).expect("len"), m.len(), "len after {}", $what);
        }};
    }
    while !inp.done() {
        let op = inp.byte() % 12;
        let cap_before = lay.cap();
        match op {
            0 | 11 => {
                let v = val(inp.byte(), inp.byte());
                match call!(l, g, push(v.clone())) {
                    Ok(()) => m.push(v),
                    Err(e) => {
                        let added = rec(0, enc_len(v.len()));
                        lay.justify(
                            "push",
                            &e,
                            &[cap_before, lay.cap()],
                            list_live(&m),
                            added,
                            m.len() + 1,
                        );
                        check_all!("a failed push");
                    }
                }
                if op == 11 {
                    assert_eq!(call!(l, g, pop()).expect("pop"), m.pop(), "pop after push");
                }
            }
            1 => assert_eq!(call!(l, g, pop()).expect("pop"), m.pop(), "pop"),
            2 => {
                let i = index(inp.byte(), m.len());
                assert_eq!(call!(l, g, get(i)).expect("get"), m.get(i).cloned(), "get({i})");
            }
            3 | 8 => {
                let i = index(inp.byte(), m.len());
                let (b, c) = (inp.byte(), inp.byte());
                let want = if op == 3 {
                    val(b, c)
                } else {
                    updated(m.get(i).cloned(), b, c)
                };
                let r = if op == 3 {
                    call!(l, g, set(i, want.clone())).map(|()| want.clone())
                } else {
                    call!(l, g, update_with(i, |o| updated(Some(o), b, c)))
                };
                match r {
                    Ok(new) => {
                        assert!(i < m.len(), "set({i}) succeeded on a list of {}", m.len());
                        assert_eq!(new, want, "update_with's result");
                        m[i] = new;
                    }
                    Err(e) if i >= m.len() => {
                        let want = (i, m.len());
                        assert!(
                            matches!(e, ManagerError::Index { index, len } if (index, len) == want),
                            "set({i}) past the end: {e:?}"
                        );
                    }
                    Err(e) => {
                        let added = rec(0, enc_len(want.len()));
                        lay.justify("set", &e, &[cap_before, lay.cap()], list_live(&m), added, m.len());
                        check_all!("a failed set");
                    }
                }
            }
            4 => {
                assert_eq!(call!(l, g, len()).expect("len"), m.len(), "len");
                assert_eq!(
                    call!(l, g, is_empty()).expect("is_empty"),
                    m.is_empty(),
                    "is_empty"
                );
            }
            5 => {
                let vs: Vec<Bytes> = (0..inp.byte() % 5).map(|_| val(inp.byte(), inp.byte())).collect();
                match call!(l, g, extend(vs.clone())) {
                    Ok(()) => m.extend(vs),
                    Err(e) => {
                        let added = vs.iter().map(|v| rec(0, enc_len(v.len()))).sum();
                        let len_after = m.len() + vs.len();
                        lay.justify(
                            "extend",
                            &e,
                            &[cap_before, lay.cap()],
                            list_live(&m),
                            added,
                            len_after,
                        );
                        check_all!("a failed extend");
                    }
                }
            }
            6 => check_all!("snapshot"),
            7 => {
                call!(l, g, clear()).expect("clear");
                m.clear();
                assert_eq!(call!(l, g, len()).expect("len"), 0, "len after clear");
            }
            9 => toggle_guard!(l, g, both, inp.byte()),
            _ => {
                check_held!(l, g, l.len());
                check_all!("check");
            }
        }
    }
    check_all!("the end");
}

// ---------------------------------------------------------------- namespace

fn ns_live(m: &HashMap<String, Bytes>) -> usize {
    m.iter().map(|(k, v)| rec(k.len(), enc_len(v.len()))).sum()
}

/// Namespace operations (`op % 8`, then arguments): 0 get (name), 1 set (name, value byte,
/// size), 2 remove (name), 3 contains (name), 4 names, 5 update_with (name, byte, size),
/// 6 open or close a guard, or switch handles (how), 7 compare everything (and, under a
/// guard, check that the namespace's own calls refuse).
fn ns_ops(limit: usize, inp: &mut Input<'_>) {
    let first = Namespace::with_limit(limit).expect("create a namespace");
    let both = [first.clone(), first];
    let mut ns = &both[0];
    let lay = Layout::new(ns.segment().as_ptr(), ns.segment().len());
    let mut m: HashMap<String, Bytes> = HashMap::new();
    let mut g: Option<NamespaceGuard<'_>> = None;
    macro_rules! check_all {
        ($what:expr) => {{
            let names = call!(ns, g, names()).expect("names");
            assert_eq!(
                sorted(names),
                sorted(m.keys().cloned().collect()),
                "names after {}",
                $what
            );
            for (n, v) in &m {
                assert_eq!(
                    call!(ns, g, get::<Bytes>(n)).expect("get"),
                    Some(v.clone()),
                    "field {n:?} after {}",
                    $what
                );
            }
        }};
    }
    while !inp.done() {
        let op = inp.byte() % 8;
        let cap_before = lay.cap();
        match op {
            0 => {
                let n = name(inp.byte());
                assert_eq!(
                    call!(ns, g, get::<Bytes>(&n)).expect("get"),
                    m.get(&n).cloned(),
                    "get"
                );
            }
            1 => {
                let n = name(inp.byte());
                let v = val(inp.byte(), inp.byte());
                match call!(ns, g, set(&n, &v)) {
                    Ok(()) => {
                        m.insert(n, v);
                    }
                    Err(e) => {
                        let len_after = m.len() + usize::from(!m.contains_key(&n));
                        let added = rec(n.len(), enc_len(v.len()));
                        lay.justify("set", &e, &[cap_before, lay.cap()], ns_live(&m), added, len_after);
                        check_all!("a failed set");
                    }
                }
            }
            2 => {
                let n = name(inp.byte());
                assert_eq!(
                    call!(ns, g, remove(&n)).expect("remove"),
                    m.remove(&n).is_some(),
                    "remove"
                );
            }
            3 => {
                let n = name(inp.byte());
                assert_eq!(
                    call!(ns, g, contains(&n)).expect("contains"),
                    m.contains_key(&n),
                    "contains"
                );
            }
            4 => check_all!("names"),
            5 => {
                let n = name(inp.byte());
                let (b, c) = (inp.byte(), inp.byte());
                let want = updated(m.get(&n).cloned(), b, c);
                match call!(ns, g, update_with(&n, |o: Option<Bytes>| updated(o, b, c))) {
                    Ok(new) => {
                        assert_eq!(new, want, "update_with's result");
                        m.insert(n, new);
                    }
                    Err(e) => {
                        let len_after = m.len() + usize::from(!m.contains_key(&n));
                        let added = rec(n.len(), enc_len(want.len()));
                        lay.justify(
                            "update_with",
                            &e,
                            &[cap_before, lay.cap()],
                            ns_live(&m),
                            added,
                            len_after,
                        );
                        check_all!("a failed update_with");
                    }
                }
            }
            6 => toggle_guard!(ns, g, both, inp.byte()),
            _ => {
                check_held!(ns, g, ns.contains("a"));
                check_all!("check");
            }
        }
    }
    check_all!("the end");
}
