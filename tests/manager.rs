//! `Manager`, `Dict`, `List` and `Namespace` across real child processes, with both start
//! methods: concurrent read-modify-writes that lose nothing, snapshots that never show half a
//! transaction, holders `SIGKILL`ed with the lock (also at random moments while compacting a
//! small container), timeouts and `try_lock` against a live holder, growth to a million
//! entries, the memory limit, type mismatches and garbage written into the segment by a
//! peer, `WouldDeadlock`, the nested-value pitfall, handles in pool initializer arguments,
//! and leaks (fds, `/dev/shm`, zombies).
//!
//! Every blocking call is bounded — a timeout form, `join_timeout`, or a watchdog thread
//! (`common::bounded`) — so a bug fails a test instead of hanging the suite. Children are
//! daemons: one left behind by a failing test dies with the test's thread. The only timing
//! assertions are generous "does not hang" bounds and "a timeout does not end early".
// std atomics here are user code (e.g. inside a `Shared<T>`); the shim rule is for the library.
#![allow(clippy::disallowed_types)]

mod common;

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{assert_leaves_nothing, bounded, dev_shm, exclusive, join, ms, shared, start, JOIN, LONG};
use common::{kill_and_reap, sleep_forever, METHODS};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use shmproc::{Dict, Event, List, Manager, ManagerError, Namespace, Pool, Process, StartMethod};

// ------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------

/// Bound on a survivor's first operation after the lock's holder was killed (the take-over
/// itself takes about 20–40 ms).
const TAKEOVER: Duration = Duration::from_secs(5);

/// A memory limit small enough that the containers below compact all the time.
const SMALL: usize = 64 * 1024;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn seed(what: &str) -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let s = (t ^ u64::from(std::process::id()) << 32) | 1;
    eprintln!("{what}: seed {s:#x}");
    s
}

/// Waits for a child's readiness event (bounded).
fn await_ready<R: Serialize + DeserializeOwned + 'static>(ev: &Event, p: &Process<R>, what: &str) {
    assert!(
        ev.wait_timeout(LONG).is_ok(),
        "{what}: child {} never got ready (alive: {})",
        p.pid(),
        p.is_alive()
    );
}

/// A value whose contents follow from `(key, gen)`, of a size that varies with both, so
/// records of many sizes come and go.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Val {
    key: u64,
    gen: u64,
    data: Vec<u8>,
}

fn val(key: u64, gen: u64) -> Val {
    Val {
        key,
        gen,
        data: vec![(key ^ gen) as u8; ((key + gen) % 23) as usize],
    }
}

fn well_formed(key: u64, v: &Val) -> bool {
    *v == val(key, v.gen)
}

fn words(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("w{}", i % 7)).collect()
}

// ------------------------------------------------------------------------------------------
// 1. Several processes at once
// ------------------------------------------------------------------------------------------

const ROUNDS: u64 = 300;

/// One writer of [`several_processes_update_push_and_set_at_once`]: every round, two
/// read-modify-writes on the dict, a push or an extend on the list, one on the namespace.
type WriterArgs = (Dict<String, u64>, List<(u64, u64)>, Namespace, Event, u64);

fn mixed_writer((d, l, ns, go, id): WriterArgs) -> String {
    assert!(go.wait_timeout(LONG).is_ok(), "writer {id}: no go");
    ns.set(&format!("name{id}"), format!("writer {id}")).unwrap();
    ns.set(&format!("pid{id}"), std::process::id()).unwrap();
    for i in 0..ROUNDS {
        d.update_with("total", |v| v.unwrap_or(0) + 1).unwrap();
        d.update_with(&format!("k{}", i % 4), |v| v.unwrap_or(0) + id)
            .unwrap();
        match i % 3 {
            0 => l.push((id, i)).unwrap(),
            1 => l.extend([(id, i), (id, i + 1)]).unwrap(),
            _ => {} // pushed by the extend above
        }
        ns.update_with("hits", |h: Option<u64>| h.unwrap_or(0) + 1)
            .unwrap();
    }
    ns.get::<String>("greeting").unwrap().expect("the parent's field")
}

#[test]
fn several_processes_update_push_and_set_at_once() {
    let _g = shared();
    for m in METHODS {
        bounded(&format!("{m:?} concurrent writers"), move || {
            let mgr = Manager::new();
            let d = mgr.dict::<String, u64>().unwrap();
            let l = mgr.list::<(u64, u64)>().unwrap();
            let ns = mgr.namespace().unwrap();
            ns.set("greeting", "hello from the parent".to_string()).unwrap();
            let go = Event::new().unwrap();
            let ids = [1u64, 2, 3];
            let mut kids: Vec<_> = ids
                .iter()
                .map(|&id| {
                    let args = (d.clone(), l.clone(), ns.clone(), go.clone(), id);
                    start(m, mixed_writer, args)
                })
                .collect();
            // The parent is the fourth writer.
            go.set();
            let parent = (d.clone(), l.clone(), ns.clone(), go.clone(), 100);
            assert_eq!(mixed_writer(parent), "hello from the parent");
            for k in &mut kids {
                assert_eq!(join(k), "hello from the parent", "{m:?}");
            }

            // Dict: no update lost.
            let all: u64 = ids.iter().sum::<u64>() + 100;
            assert_eq!(d.get("total").unwrap(), Some(4 * ROUNDS), "{m:?}");
            for j in 0..4 {
                assert_eq!(
                    d.get(&format!("k{j}")).unwrap(),
                    Some(ROUNDS / 4 * all),
                    "{m:?} k{j}"
                );
            }
            assert_eq!(d.len().unwrap(), 5, "{m:?}");

            // List: every element exactly once, each writer's in its order, extends adjacent.
            let snap = l.snapshot().unwrap();
            assert_eq!(snap.len(), l.len().unwrap());
            let per_writer =
                (0..ROUNDS).filter(|i| i % 3 != 2).count() + (0..ROUNDS).filter(|i| i % 3 == 1).count();
            assert_eq!(snap.len(), 4 * per_writer, "{m:?}");
            for &id in ids.iter().chain([&100]) {
                let mine: Vec<u64> = snap.iter().filter(|e| e.0 == id).map(|e| e.1).collect();
                let want: Vec<u64> = (0..ROUNDS)
                    .flat_map(|i| match i % 3 {
                        0 => vec![i],
                        1 => vec![i, i + 1],
                        _ => vec![],
                    })
                    .collect();
                assert_eq!(mine, want, "{m:?}: writer {id}'s elements");
            }
            // Only an extend's first element has `i % 3 == 1`: its partner follows at once.
            for (at, e) in snap.iter().enumerate().filter(|(_, e)| e.1 % 3 == 1) {
                assert_eq!(
                    snap.get(at + 1),
                    Some(&(e.0, e.1 + 1)),
                    "{m:?}: extend split at {at}"
                );
            }

            // Namespace: fields set by every child, counter exact.
            assert_eq!(ns.get::<u64>("hits").unwrap(), Some(4 * ROUNDS), "{m:?}");
            for (k, &id) in kids.iter().zip(&ids) {
                assert_eq!(
                    ns.get::<String>(&format!("name{id}")).unwrap(),
                    Some(format!("writer {id}"))
                );
                assert_eq!(
                    ns.get::<u32>(&format!("pid{id}")).unwrap(),
                    Some(k.pid()),
                    "{m:?}"
                );
            }
            let mut names = ns.names().unwrap();
            names.sort();
            assert_eq!(names.len(), 2 + 2 * 4, "{m:?}: {names:?}");
        });
    }
}

// ------------------------------------------------------------------------------------------
// 2. Snapshots never show half a transaction
// ------------------------------------------------------------------------------------------

const KEYS: u32 = 12;
const TOTAL: i64 = 12_000;

type TxArgs = (Dict<u32, i64>, List<(u64, u8)>, Namespace, Event, Event, u64);

/// Moves amounts between keys (and folds keys into others) under one guard, pushes and pops
/// pairs under one guard, and sets two namespace fields under one guard, until `stop`.
fn transactions((d, l, ns, started, stop, seed): TxArgs) -> u64 {
    let mut rng = XorShift(seed);
    let mut t = 0u64;
    while !stop.is_set() {
        {
            let mut g = d.lock().unwrap();
            let (a, b) = (rng.below(KEYS as u64) as u32, rng.below(KEYS as u64) as u32);
            if a != b && rng.below(4) == 0 {
                if let Some(va) = g.remove(&a).unwrap() {
                    g.update_with(&b, |v| v.unwrap_or(0) + va).unwrap();
                }
            } else {
                let amount = rng.below(500) as i64 - 250;
                let va = g.get(&a).unwrap().unwrap_or(0);
                g.insert(a, va - amount).unwrap();
                g.update_with(&b, |v| v.unwrap_or(0) + amount).unwrap();
            }
        }
        {
            let mut g = l.lock().unwrap();
            if g.len().unwrap() >= 40 && rng.below(2) == 0 {
                let x = g.pop().unwrap().unwrap();
                let y = g.pop().unwrap().unwrap();
                assert_eq!((y.0, y.1, x.1), (x.0, 0, 1), "my own pair");
            } else {
                g.push((t, 0)).unwrap();
                g.push((t, 1)).unwrap();
            }
        }
        {
            let mut g = ns.lock().unwrap();
            let a = rng.below(1000) as i64;
            g.set("a", a).unwrap();
            g.set("b", (TOTAL - a).to_string()).unwrap();
            g.set("gen", t).unwrap();
        }
        t += 1;
        if t == 1 {
            started.set();
        }
    }
    t
}

#[test]
fn snapshots_never_show_half_a_transaction() {
    let _g = shared();
    for m in METHODS {
        bounded(&format!("{m:?} snapshots"), move || {
            let d = Dict::<u32, i64>::with_limit(SMALL).unwrap();
            d.update((0..KEYS).map(|k| (k, TOTAL / KEYS as i64))).unwrap();
            let l = List::<(u64, u8)>::with_limit(SMALL).unwrap();
            let ns = Namespace::with_limit(SMALL).unwrap();
            ns.set("a", 0i64).unwrap();
            ns.set("b", TOTAL.to_string()).unwrap();
            let (started, stop) = (Event::new().unwrap(), Event::new().unwrap());
            let args = (
                d.clone(),
                l.clone(),
                ns.clone(),
                started.clone(),
                stop.clone(),
                seed("snapshots"),
            );
            let mut child = start(m, transactions, args);
            await_ready(&started, &child, "snapshots");
            let mut last_gen = 0u64;
            let check = |last_gen: &mut u64| {
                let items = d.items().unwrap();
                assert_eq!(items.iter().map(|e| e.1).sum::<i64>(), TOTAL, "{m:?}: {items:?}");
                let keys: BTreeSet<u32> = items.iter().map(|e| e.0).collect();
                assert_eq!(keys.len(), items.len(), "{m:?}: a key twice in {items:?}");
                assert!(keys.iter().all(|&k| k < KEYS));
                assert_eq!(d.values().unwrap().iter().sum::<i64>(), TOTAL, "{m:?}");
                {
                    let g = d.lock().unwrap();
                    assert_eq!(g.len().unwrap(), g.items().unwrap().len(), "{m:?}");
                    assert_eq!(g.keys().unwrap().len(), g.len().unwrap(), "{m:?}");
                }
                let snap = l.snapshot().unwrap();
                assert_eq!(snap.len() % 2, 0, "{m:?}: half a pair in {snap:?}");
                for p in snap.chunks(2) {
                    assert_eq!((p[0].0, p[0].1, p[1].1), (p[1].0, 0, 1), "{m:?}: {snap:?}");
                }
                let g = ns.lock().unwrap();
                let a: i64 = g.get("a").unwrap().unwrap();
                let b: String = g.get("b").unwrap().unwrap();
                assert_eq!(a + b.parse::<i64>().unwrap(), TOTAL, "{m:?}");
                let gen = g.get::<u64>("gen").unwrap().unwrap_or(0);
                assert!(
                    gen >= *last_gen,
                    "{m:?}: namespace went back from {last_gen} to {gen}"
                );
                *last_gen = gen;
            };
            for _ in 0..300 {
                check(&mut last_gen);
            }
            stop.set();
            let done = join(&mut child);
            check(&mut last_gen);
            assert!(done >= last_gen, "{m:?}");
            println!("{m:?}: 300 snapshots during {done} transactions");
        });
    }
}

// ------------------------------------------------------------------------------------------
// 3a. A holder killed with the lock
// ------------------------------------------------------------------------------------------

fn hold_dict((d, ready): (Dict<u64, String>, Event)) {
    let mut g = d.lock().unwrap();
    g.insert(99, "child".into()).unwrap();
    g.remove(&0).unwrap();
    ready.set();
    sleep_forever();
}

fn hold_list((l, ready): (List<String>, Event)) {
    let mut g = l.lock().unwrap();
    g.push("child".into()).unwrap();
    ready.set();
    sleep_forever();
}

fn hold_namespace((ns, ready): (Namespace, Event)) {
    let mut g = ns.lock().unwrap();
    g.set("child", 7u8).unwrap();
    ready.set();
    sleep_forever();
}

/// Runs `op` on a watchdog thread and checks that it was done within [`TAKEOVER`].
fn after_takeover<T: Send + 'static>(what: &str, op: impl FnOnce() -> T + Send + 'static) -> T {
    let label = what.to_string();
    bounded(what, move || {
        let t0 = Instant::now();
        let r = op();
        let took = t0.elapsed();
        assert!(took < TAKEOVER, "{label}: {took:?} to take over");
        println!("{label:<30} took over in {:>7.2} ms", took.as_secs_f64() * 1e3);
        r
    })
}

#[test]
fn a_holder_killed_with_the_lock_is_taken_over_and_the_data_kept() {
    let _g = shared();
    for m in METHODS {
        // Dict.
        let d = Dict::<u64, String>::new().unwrap();
        d.update((0..50).map(|k| (k, format!("v{k}")))).unwrap();
        let ready = Event::new().unwrap();
        let mut child = start(m, hold_dict, (d.clone(), ready.clone()));
        await_ready(&ready, &child, "dict holder");
        assert!(matches!(d.try_lock(), Err(ManagerError::WouldBlock)), "{m:?}");
        kill_and_reap(&mut child);
        let d = after_takeover(&format!("{m:?} dict take-over"), move || {
            d.insert(100, "parent".into()).unwrap();
            d
        });
        assert_eq!(d.recoveries(), 1, "{m:?}");
        let mut items = d.items().unwrap();
        items.sort();
        let mut want: Vec<(u64, String)> = (1..50).map(|k| (k, format!("v{k}"))).collect();
        want.extend([(99, "child".to_string()), (100, "parent".to_string())]);
        assert_eq!(items, want, "{m:?}");
        assert_eq!(d.len().unwrap(), 51, "{m:?}");
        assert_eq!(d.recoveries(), 1, "{m:?}: only the first locker recovers");

        // List.
        let l = List::<String>::new().unwrap();
        l.extend((0..50).map(|i| format!("e{i}"))).unwrap();
        let ready = Event::new().unwrap();
        let mut child = start(m, hold_list, (l.clone(), ready.clone()));
        await_ready(&ready, &child, "list holder");
        assert!(matches!(l.try_lock(), Err(ManagerError::WouldBlock)), "{m:?}");
        kill_and_reap(&mut child);
        let l = after_takeover(&format!("{m:?} list take-over"), move || {
            l.push("parent".into()).unwrap();
            l
        });
        assert_eq!(l.recoveries(), 1, "{m:?}");
        let mut want: Vec<String> = (0..50).map(|i| format!("e{i}")).collect();
        want.extend(["child".to_string(), "parent".to_string()]);
        assert_eq!(l.snapshot().unwrap(), want, "{m:?}");
        assert_eq!(l.len().unwrap(), 52);

        // Namespace.
        let ns = Namespace::new().unwrap();
        ns.set("parent", 1.5f64).unwrap();
        let ready = Event::new().unwrap();
        let mut child = start(m, hold_namespace, (ns.clone(), ready.clone()));
        await_ready(&ready, &child, "namespace holder");
        assert!(matches!(ns.try_lock(), Err(ManagerError::WouldBlock)), "{m:?}");
        kill_and_reap(&mut child);
        let ns = after_takeover(&format!("{m:?} namespace take-over"), move || {
            ns.set("after", "yes".to_string()).unwrap();
            ns
        });
        assert_eq!(ns.recoveries(), 1, "{m:?}");
        assert_eq!(ns.get::<f64>("parent").unwrap(), Some(1.5));
        assert_eq!(ns.get::<u8>("child").unwrap(), Some(7));
        assert_eq!(ns.get::<String>("after").unwrap().as_deref(), Some("yes"));
        let mut names = ns.names().unwrap();
        names.sort();
        assert_eq!(names, ["after", "child", "parent"], "{m:?}");
    }
}

// ------------------------------------------------------------------------------------------
// 3b. Writers killed at random moments, compacting all the time
// ------------------------------------------------------------------------------------------

const TRIALS: usize = 12;
const DICT_KEYS: u64 = 300;

fn tolerate_full(r: Result<(), ManagerError>) {
    match r {
        Ok(()) | Err(ManagerError::LimitExceeded { .. }) => {}
        Err(e) => panic!("hammer: {e}"),
    }
}

/// The dict kill trials' container: the dict, the writer's log of operations (one entry
/// each, written before the call), and how many calls had returned (written after each).
type LoggedDict = (Dict<u64, Val>, shmproc::RawArray<u64>, shmproc::RawValue<u64>);

/// Log entries: kind (3 bits), pairs applied of an `update` (3 bits), key (18 bits),
/// generation (40 bits). Kind 0 (an all-zero word) is "nothing happened".
const OP_NONE: u64 = 0;
const OP_SET: u64 = 1;
const OP_DEL: u64 = 2;
const OP_UPDATE: u64 = 3;
const OP_CLEAR: u64 = 4;
const LOG_CAP: usize = 1 << 20;

fn op(kind: u64, pairs: u64, k: u64, gen: u64) -> u64 {
    kind | pairs << 3 | k << 6 | gen << 24
}

/// The dict writer of the kill trials, with every call's effect logged: before a call its
/// entry, after it the count of calls that returned (a refused change is logged as nothing,
/// an `update` refused part-way with the pairs it applied).
fn hammer_dict_logged(
    (d, ready, seed, log, done): (
        Dict<u64, Val>,
        Event,
        u64,
        shmproc::RawArray<u64>,
        shmproc::RawValue<u64>,
    ),
) {
    let mut rng = XorShift(seed);
    let mut gen = 0;
    let mut n = 0;
    loop {
        if n + 20 > LOG_CAP {
            ready.set();
            sleep_forever();
        }
        let mut g = d.lock().unwrap();
        for _ in 0..20 {
            gen += 1;
            let k = rng.below(DICT_KEYS);
            // The call is chosen and logged first, then made: a kill inside it leaves its
            // entry for the checker.
            let (entry, call) = match rng.below(100) {
                0..=44 => (op(OP_SET, 0, k, gen), 0),
                45..=64 => (op(OP_SET, 0, k, gen), 1),
                65..=79 => (op(OP_DEL, 0, k, gen), 2),
                80..=94 => (op(OP_DEL, 0, k, gen), 3),
                95..=98 => (op(OP_UPDATE, 5, k, gen), 4),
                _ if rng.below(20) == 0 => (op(OP_CLEAR, 0, k, gen), 5),
                _ => (OP_NONE, 6),
            };
            log.set(n, entry).unwrap();
            let r = match call {
                0 => g.insert(k, val(k, gen)).map(drop),
                1 => g.update_with(&k, |_| val(k, gen)).map(drop),
                2 => g.remove(&k).map(drop),
                3 => g.discard(&k).map(drop),
                4 => g.update((k..k + 5).map(|k| (k, val(k, gen)))),
                5 => g.clear(),
                _ => g.get(&k).map(drop),
            };
            match r {
                Ok(()) => {}
                Err(ManagerError::LimitExceeded { .. }) if entry & 7 == OP_UPDATE => {
                    // Pairs are applied one by one: count the ones that went in.
                    let applied = (k..k + 5)
                        .take_while(|j| g.get(j).unwrap() == Some(val(*j, gen)))
                        .count() as u64;
                    log.set(n, op(OP_UPDATE, applied, k, gen)).unwrap();
                }
                Err(ManagerError::LimitExceeded { .. }) => log.set(n, OP_NONE).unwrap(),
                Err(e) => panic!("hammer: {e}"),
            }
            n += 1;
            done.set(n as u64);
        }
        drop(g);
        ready.set();
    }
}

/// Applies log entry `e` to the model, `pairs` of an `update`'s pairs at most.
fn replay(model: &mut std::collections::BTreeMap<u64, Val>, e: u64, pairs: u64) {
    let (kind, applied, k, gen) = (e & 7, (e >> 3) & 7, (e >> 6) & 0x3_ffff, e >> 24);
    match kind {
        OP_SET => {
            model.insert(k, val(k, gen));
        }
        OP_DEL => {
            model.remove(&k);
        }
        OP_UPDATE => {
            for j in k..k + applied.min(pairs) {
                model.insert(j, val(j, gen));
            }
        }
        OP_CLEAR => model.clear(),
        _ => {}
    }
}

/// Every call the killed writer saw return must have left its effect: the dict equals the
/// log replayed up to the calls that returned, plus possibly (part of) the one in flight.
fn check_dict_logged(c: &LoggedDict, m: StartMethod) -> u64 {
    let (d, log, done) = c;
    let t0 = Instant::now();
    let items = d.items().unwrap();
    assert!(t0.elapsed() < TAKEOVER, "{m:?}: {:?} to take over", t0.elapsed());
    let n = done.get() as usize;
    let mut model = std::collections::BTreeMap::new();
    for i in 0..n {
        replay(&mut model, log.get(i).unwrap(), 5);
    }
    let actual: std::collections::BTreeMap<u64, Val> = items.into_iter().collect();
    let in_flight = if n < LOG_CAP { log.get(n).unwrap() } else { OP_NONE };
    let outcomes: Vec<_> = (0..=5)
        .map(|pairs| {
            let mut after = model.clone();
            if pairs > 0 {
                replay(&mut after, in_flight, pairs);
            }
            after
        })
        .collect();
    if !outcomes.contains(&actual) {
        for (k, v) in model.iter() {
            if actual.get(k) != Some(v) {
                let hist: Vec<String> = (0..n)
                    .map(|i| (i, log.get(i).unwrap()))
                    .filter(|(_, e)| {
                        let (kind, ap, kk) = (e & 7, (e >> 3) & 7, (e >> 6) & 0x3_ffff);
                        kind == OP_CLEAR || kk == *k || (kind == OP_UPDATE && kk <= *k && *k < kk + ap)
                    })
                    .map(|(i, e)| format!("#{i}:{:#x}", e))
                    .collect();
                eprintln!(
                    "key {k}: model gen {} actual {:?}; history tail {:?}",
                    v.gen,
                    actual.get(k).map(|v| v.gen),
                    &hist[hist.len().saturating_sub(6)..]
                );
            }
        }
        for k in actual.keys() {
            if !model.contains_key(k) {
                eprintln!("key {k}: only in the dict");
            }
        }
    }
    assert!(
        outcomes.contains(&actual),
        "{m:?}: after {n} returned calls (in flight {in_flight:#x}) the dict holds {} entries; \
         the model {} (a committed change was lost, or one appeared from nowhere)",
        actual.len(),
        model.len()
    );
    check_dict(d, m)
}

/// The list kill trials' container: the list, the writer's log of calls (one entry each,
/// written before the call) and how many calls had returned (written after each).
type LoggedList = (List<Val>, shmproc::RawArray<u64>, shmproc::RawValue<u64>);

/// List log entries (fields as [`op`]'s): `extend` of `count` elements `val(first + j, gen)`
/// (a `push` is one), `pop` (of an empty list: nothing), `set` of element `index` to
/// `val(index, gen)` (`update_with` too), `clear`. Kind 0 is "nothing happened".
const L_EXTEND: u64 = 1;
const L_POP: u64 = 2;
const L_SET: u64 = 3;
const L_CLEAR: u64 = 4;

/// Pushes, extends, pops, sets and clears; element `i` is always `val(i, _)`. Every call's
/// effect is logged before it and the count of calls that returned after it (a refused change
/// is logged as nothing: a refused `extend` adds none of its elements).
fn hammer_list(
    (l, ready, seed, log, done): (
        List<Val>,
        Event,
        u64,
        shmproc::RawArray<u64>,
        shmproc::RawValue<u64>,
    ),
) {
    let mut rng = XorShift(seed);
    let mut gen = 0;
    let mut n = 0;
    loop {
        // At most 20 calls and 50 pops after each: the round's entries fit.
        if n + 20 * 51 > LOG_CAP {
            ready.set();
            sleep_forever();
        }
        let mut g = l.lock().unwrap();
        for _ in 0..20 {
            gen += 1;
            let len = g.len().unwrap() as u64;
            // The call is chosen and logged first, then made: a kill inside it leaves its
            // entry for the checker.
            let (entry, call, arg) = match rng.below(100) {
                _ if len > 300 => (op(L_POP, 0, 0, 0), 2, 0),
                0..=34 => (op(L_EXTEND, 1, len, gen), 0, 0),
                35..=49 => {
                    let c = 1 + rng.below(6);
                    (op(L_EXTEND, c, len, gen), 1, c)
                }
                50..=69 => (op(L_POP, 0, 0, 0), 2, 0),
                70..=84 if len > 0 => {
                    let i = rng.below(len);
                    (op(L_SET, 0, i, gen), 3, i)
                }
                85..=98 if len > 0 => {
                    let i = rng.below(len);
                    (op(L_SET, 0, i, gen), 4, i)
                }
                99 if rng.below(10) == 0 => (op(L_CLEAR, 0, 0, gen), 5, 0),
                _ => (OP_NONE, 6, 0),
            };
            log.set(n, entry).unwrap();
            let r = match call {
                0 => g.push(val(len, gen)),
                1 => g.extend((len..len + arg).map(|j| val(j, gen))),
                2 => g.pop().map(drop),
                3 => g.set(arg as usize, val(arg, gen)),
                4 => g.update_with(arg as usize, |old| val(old.key, gen)).map(drop),
                5 => g.clear(),
                _ => g.get(0).map(drop),
            };
            let full = matches!(r, Err(ManagerError::LimitExceeded { .. }));
            if full {
                log.set(n, OP_NONE).unwrap();
            } else {
                r.unwrap_or_else(|e| panic!("hammer: {e}"));
            }
            n += 1;
            done.set(n as u64);
            if full {
                for _ in 0..50 {
                    log.set(n, op(L_POP, 0, 0, 0)).unwrap();
                    g.pop().unwrap();
                    n += 1;
                    done.set(n as u64);
                }
            }
        }
        drop(g);
        ready.set();
    }
}

/// Applies list log entry `e` to the model.
fn replay_list(model: &mut Vec<Val>, e: u64) {
    let (kind, count, k, gen) = (e & 7, (e >> 3) & 7, (e >> 6) & 0x3_ffff, e >> 24);
    match kind {
        L_EXTEND => {
            assert_eq!(model.len() as u64, k, "the log: extend at {k} of {}", model.len());
            model.extend((k..k + count).map(|i| val(i, gen)));
        }
        L_POP => {
            model.pop();
        }
        L_SET => {
            assert!(k < model.len() as u64, "the log: set {k} of {}", model.len());
            model[k as usize] = val(k, gen);
        }
        L_CLEAR => model.clear(),
        _ => {}
    }
}

/// Every call the killed writer saw return must have left its effect: the list equals the
/// log replayed up to the calls that returned, or with the one in flight (all of it: every
/// list call is all or nothing); then the checks of [`check_list`].
fn check_list_logged(c: &LoggedList, m: StartMethod) -> u64 {
    let (l, log, done) = c;
    let t0 = Instant::now();
    let actual = l.snapshot().unwrap();
    assert!(t0.elapsed() < TAKEOVER, "{m:?}: {:?} to take over", t0.elapsed());
    let n = done.get() as usize;
    let mut model = Vec::new();
    for i in 0..n {
        replay_list(&mut model, log.get(i).unwrap());
    }
    let in_flight = if n < LOG_CAP { log.get(n).unwrap() } else { OP_NONE };
    let mut after = model.clone();
    replay_list(&mut after, in_flight);
    if actual != model && actual != after {
        let first = (0..actual.len().max(model.len())).find(|&i| actual.get(i) != model.get(i));
        let show = |v: &[Val], i: Option<usize>| i.and_then(|i| v.get(i)).map(|v| (v.key, v.gen));
        panic!(
            "{m:?}: after {n} returned calls (in flight {in_flight:#x}) the list holds {} \
             elements, the model {}; first difference at {first:?}: list {:?}, model {:?} \
             (a committed change was lost, or one appeared from nowhere)",
            actual.len(),
            model.len(),
            show(&actual, first),
            show(&model, first),
        );
    }
    check_list(l, m)
}

/// Field `f{n}`: a `String` for even `n`, a `(u64, u64, Vec<u64>)` for odd `n`.
fn ns_string(n: u64, gen: u64) -> String {
    format!("{n}/{gen}/{}", "x".repeat(((n + gen) % 17) as usize))
}

fn ns_tuple(n: u64, gen: u64) -> (u64, u64, Vec<u64>) {
    (n, gen, vec![n + gen; (gen % 9) as usize])
}

/// The namespace kill trials' container: the namespace, the writer's log, the calls returned.
type LoggedNamespace = (Namespace, shmproc::RawArray<u64>, shmproc::RawValue<u64>);

/// Namespace log entries (fields as [`op`]'s): field `f{n}` set to its value of `gen`
/// (`update_with` too), field `f{n}` removed. Kind 0 is "nothing happened".
const NS_SET: u64 = 1;
const NS_DEL: u64 = 2;

/// Sets, updates and removes fields; every call's effect is logged before it and the count
/// of calls that returned after it (a refused change is logged as nothing).
fn hammer_namespace(
    (ns, ready, seed, log, done): (
        Namespace,
        Event,
        u64,
        shmproc::RawArray<u64>,
        shmproc::RawValue<u64>,
    ),
) {
    let mut rng = XorShift(seed);
    let mut gen = 0;
    let mut n_calls = 0;
    loop {
        if n_calls + 20 > LOG_CAP {
            ready.set();
            sleep_forever();
        }
        let mut g = ns.lock().unwrap();
        for _ in 0..20 {
            gen += 1;
            let n = rng.below(20);
            let name = format!("f{n}");
            let call = rng.below(10);
            let entry = match call {
                0..=7 => op(NS_SET, 0, n, gen),
                _ => op(NS_DEL, 0, n, gen),
            };
            log.set(n_calls, entry).unwrap();
            let r = match (call, n % 2) {
                (0..=5, 0) => g.set(&name, ns_string(n, gen)),
                (0..=5, _) => g.set(&name, ns_tuple(n, gen)),
                (6..=7, 0) => g
                    .update_with(&name, |_: Option<String>| ns_string(n, gen))
                    .map(drop),
                (6..=7, _) => g
                    .update_with(&name, |_: Option<(u64, u64, Vec<u64>)>| ns_tuple(n, gen))
                    .map(drop),
                _ => g.remove(&name).map(drop),
            };
            match r {
                Ok(()) => {}
                Err(ManagerError::LimitExceeded { .. }) => log.set(n_calls, OP_NONE).unwrap(),
                Err(e) => panic!("hammer: {e}"),
            }
            n_calls += 1;
            done.set(n_calls as u64);
        }
        drop(g);
        ready.set();
    }
}

/// Field `f{n}`'s value of `gen`, as text to compare.
fn ns_field(n: u64, gen: u64) -> String {
    match n % 2 {
        0 => format!("{:?}", ns_string(n, gen)),
        _ => format!("{:?}", ns_tuple(n, gen)),
    }
}

/// Applies namespace log entry `e` to the model (field number → its value as text).
fn replay_namespace(model: &mut std::collections::BTreeMap<u64, String>, e: u64) {
    let (kind, n, gen) = (e & 7, (e >> 6) & 0x3_ffff, e >> 24);
    match kind {
        NS_SET => {
            model.insert(n, ns_field(n, gen));
        }
        NS_DEL => {
            model.remove(&n);
        }
        _ => {}
    }
}

/// Every call the killed writer saw return must have left its effect: the fields equal the
/// log replayed up to the calls that returned, or with the one in flight; then the checks of
/// [`check_namespace`].
fn check_namespace_logged(c: &LoggedNamespace, m: StartMethod) -> u64 {
    let (ns, log, done) = c;
    let t0 = Instant::now();
    let names = ns.names().unwrap();
    assert!(t0.elapsed() < TAKEOVER, "{m:?}: {:?} to take over", t0.elapsed());
    let mut actual = std::collections::BTreeMap::new();
    for name in &names {
        let n: u64 = name
            .strip_prefix('f')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{m:?}: field {name:?}"));
        let v = match n % 2 {
            0 => format!("{:?}", ns.get::<String>(name).unwrap().unwrap()),
            _ => format!("{:?}", ns.get::<(u64, u64, Vec<u64>)>(name).unwrap().unwrap()),
        };
        assert!(actual.insert(n, v).is_none(), "{m:?}: {name} twice");
    }
    let n = done.get() as usize;
    let mut model = std::collections::BTreeMap::new();
    for i in 0..n {
        replay_namespace(&mut model, log.get(i).unwrap());
    }
    let in_flight = if n < LOG_CAP { log.get(n).unwrap() } else { OP_NONE };
    let mut after = model.clone();
    replay_namespace(&mut after, in_flight);
    if actual != model && actual != after {
        let differ: Vec<_> = (0..20)
            .filter(|k| actual.get(k) != model.get(k))
            .map(|k| format!("f{k}: namespace {:?}, model {:?}", actual.get(&k), model.get(&k)))
            .collect();
        panic!(
            "{m:?}: after {n} returned calls (in flight {in_flight:#x}) the fields differ from \
             the model (a committed change was lost, or one appeared from nowhere): {differ:?}"
        );
    }
    check_namespace(ns, m)
}

/// Starts `hammer` on a fresh container, kills it 0–30 ms after it got going, then checks
/// the container with `check` (on a watchdog thread), which returns the recoveries it saw.
fn kill_trials<C, A>(
    what: &str,
    make: fn() -> C,
    hammer: fn(A),
    args: fn(&C, &Event, u64) -> A,
    check: fn(&C, StartMethod) -> u64,
) where
    C: Send + 'static,
    A: Serialize + DeserializeOwned + 'static,
{
    let mut rng = XorShift(seed(what));
    for m in METHODS {
        let mut recovered = 0;
        for trial in 0..TRIALS {
            let c = make();
            let ready = Event::new().unwrap();
            let mut child = start(m, hammer, args(&c, &ready, rng.next() | 1));
            await_ready(&ready, &child, what);
            std::thread::sleep(Duration::from_micros(rng.below(30_000)));
            kill_and_reap(&mut child);
            recovered += bounded(&format!("{m:?} {what} trial {trial}"), move || check(&c, m));
        }
        println!("{what} {m:?}: {recovered} recoveries in {TRIALS} kills");
        // The writer holds the lock nearly all the time: at least one kill caught it there.
        assert!(
            recovered >= 1,
            "{what} {m:?}: no kill caught the writer with the lock"
        );
    }
}

fn check_dict(d: &Dict<u64, Val>, m: StartMethod) -> u64 {
    let t0 = Instant::now();
    let items = d.items().unwrap();
    assert!(t0.elapsed() < TAKEOVER, "{m:?}: {:?} to take over", t0.elapsed());
    let recovered = d.recoveries();
    assert!(recovered <= 1, "{m:?}: {recovered} recoveries");
    assert_eq!(d.len().unwrap(), items.len(), "{m:?}");
    let keys: BTreeSet<u64> = items.iter().map(|e| e.0).collect();
    assert_eq!(keys.len(), items.len(), "{m:?}: a key twice");
    for (k, v) in &items {
        assert!(*k < DICT_KEYS + 5 && well_formed(*k, v), "{m:?}: {k} -> {v:?}");
        assert_eq!(d.get(k).unwrap().as_ref(), Some(v), "{m:?}");
    }
    assert_eq!(d.keys().unwrap().len(), items.len());
    assert_eq!(d.values().unwrap().len(), items.len());
    // Everything still works: absent keys, inserts, replacements, removals, clear.
    for k in 1000..1040 {
        assert!(!d.contains_key(&k).unwrap());
        d.insert(k, val(k, 1)).unwrap();
    }
    for k in 1000..1040 {
        assert_eq!(
            d.update_with(&k, |v| val(k, v.unwrap().gen + 1)).unwrap(),
            val(k, 2)
        );
    }
    let first = items.first().map(|e| e.0);
    if let Some(k) = first {
        assert!(d.remove(&k).unwrap().is_some());
    }
    assert_eq!(d.len().unwrap(), items.len() + 40 - first.iter().count(), "{m:?}");
    assert_eq!(d.recoveries(), recovered, "{m:?}: a second recovery");
    d.clear().unwrap();
    assert!(d.is_empty().unwrap());
    d.insert(1, val(1, 1)).unwrap();
    assert_eq!(d.items().unwrap(), [(1, val(1, 1))]);
    recovered
}

fn check_list(l: &List<Val>, m: StartMethod) -> u64 {
    let t0 = Instant::now();
    let snap = l.snapshot().unwrap();
    assert!(t0.elapsed() < TAKEOVER, "{m:?}: {:?} to take over", t0.elapsed());
    let recovered = l.recoveries();
    assert!(recovered <= 1, "{m:?}: {recovered} recoveries");
    assert_eq!(l.len().unwrap(), snap.len(), "{m:?}");
    for (i, v) in snap.iter().enumerate() {
        assert!(
            v.key == i as u64 && well_formed(i as u64, v),
            "{m:?}: [{i}] = {v:?}"
        );
    }
    for i in (0..snap.len()).step_by(7) {
        assert_eq!(l.get(i).unwrap().as_ref(), Some(&snap[i]));
    }
    assert_eq!(l.get(snap.len()).unwrap(), None);
    let n = snap.len() as u64;
    l.push(val(n, 1)).unwrap();
    l.extend((n + 1..n + 10).map(|i| val(i, 1))).unwrap();
    l.set(n as usize, val(n, 2)).unwrap();
    assert_eq!(l.pop().unwrap(), Some(val(n + 9, 1)));
    assert_eq!(l.len().unwrap(), snap.len() + 9);
    assert_eq!(l.get(n as usize).unwrap(), Some(val(n, 2)));
    assert_eq!(&l.snapshot().unwrap()[..snap.len()], &snap[..], "{m:?}");
    assert_eq!(l.recoveries(), recovered, "{m:?}: a second recovery");
    recovered
}

fn check_namespace(ns: &Namespace, m: StartMethod) -> u64 {
    let t0 = Instant::now();
    let names = ns.names().unwrap();
    assert!(t0.elapsed() < TAKEOVER, "{m:?}: {:?} to take over", t0.elapsed());
    let recovered = ns.recoveries();
    assert!(recovered <= 1, "{m:?}: {recovered} recoveries");
    assert_eq!(
        names.iter().collect::<BTreeSet<_>>().len(),
        names.len(),
        "{m:?}: {names:?}"
    );
    for name in &names {
        let n: u64 = name
            .strip_prefix('f')
            .and_then(|n| n.parse().ok())
            .expect("a field name");
        assert!(n < 20, "{m:?}: {name}");
        if n % 2 == 0 {
            let s: String = ns.get(name).unwrap().unwrap();
            let gen: u64 = s.split('/').nth(1).unwrap().parse().unwrap();
            assert_eq!(s, ns_string(n, gen), "{m:?}");
        } else {
            let t: (u64, u64, Vec<u64>) = ns.get(name).unwrap().unwrap();
            assert_eq!(t, ns_tuple(n, t.1), "{m:?}");
        }
        assert!(ns.contains(name).unwrap());
    }
    for n in 0..20u64 {
        let name = format!("f{n}");
        assert_eq!(ns.contains(&name).unwrap(), names.contains(&name), "{m:?}");
    }
    ns.set("new", vec![1u8, 2, 3]).unwrap();
    assert_eq!(ns.get::<Vec<u8>>("new").unwrap(), Some(vec![1, 2, 3]));
    assert_eq!(
        ns.update_with("f0", |_: Option<String>| "over".into()).unwrap(),
        "over"
    );
    assert!(ns.remove("new").unwrap());
    assert_eq!(ns.recoveries(), recovered, "{m:?}: a second recovery");
    recovered
}

#[test]
fn a_dict_writer_killed_at_random_moments_leaves_a_whole_dict() {
    let _g = shared();
    kill_trials(
        "dict kills",
        || {
            (
                Dict::<u64, Val>::with_limit(SMALL).unwrap(),
                shmproc::RawArray::new(LOG_CAP).unwrap(),
                shmproc::RawValue::new(0).unwrap(),
            )
        },
        hammer_dict_logged,
        |(d, log, done): &LoggedDict, ev, seed| (d.clone(), ev.clone(), seed, log.clone(), done.clone()),
        check_dict_logged,
    );
}

#[test]
fn a_list_writer_killed_at_random_moments_leaves_a_whole_list() {
    let _g = shared();
    kill_trials(
        "list kills",
        || {
            (
                Manager::with_limit(SMALL).list::<Val>().unwrap(),
                shmproc::RawArray::new(LOG_CAP).unwrap(),
                shmproc::RawValue::new(0).unwrap(),
            )
        },
        hammer_list,
        |(l, log, done): &LoggedList, ev, seed| (l.clone(), ev.clone(), seed, log.clone(), done.clone()),
        check_list_logged,
    );
}

#[test]
fn a_namespace_writer_killed_at_random_moments_leaves_whole_fields() {
    let _g = shared();
    kill_trials(
        "namespace kills",
        || {
            (
                Namespace::with_limit(16 * 1024).unwrap(),
                shmproc::RawArray::new(LOG_CAP).unwrap(),
                shmproc::RawValue::new(0).unwrap(),
            )
        },
        hammer_namespace,
        |(ns, log, done): &LoggedNamespace, ev, seed| {
            (ns.clone(), ev.clone(), seed, log.clone(), done.clone())
        },
        check_namespace_logged,
    );
}

// ------------------------------------------------------------------------------------------
// 3c. A live holder: timeouts and try_lock
// ------------------------------------------------------------------------------------------

type HoldArgs = (Dict<u32, u32>, List<u32>, Namespace, Event, Event);

/// Holds all three locks until `release`, then lets go and returns.
fn hold_all_until((d, l, ns, ready, release): HoldArgs) -> u32 {
    let mut gd = d.lock().unwrap();
    let gl = l.lock().unwrap();
    let gn = ns.lock().unwrap();
    gd.insert(1, 10).unwrap();
    ready.set();
    assert!(release.wait_timeout(LONG).is_ok(), "never released");
    drop((gd, gl, gn));
    7
}

#[test]
fn lock_timeout_and_try_lock_fail_while_a_live_child_holds_the_lock() {
    let _g = shared();
    for m in METHODS {
        bounded(&format!("{m:?} live holder"), move || {
            let d = Dict::<u32, u32>::new().unwrap();
            let l = List::<u32>::new().unwrap();
            let ns = Namespace::new().unwrap();
            let (ready, release) = (Event::new().unwrap(), Event::new().unwrap());
            let args = (d.clone(), l.clone(), ns.clone(), ready.clone(), release.clone());
            let mut child = start(m, hold_all_until, args);
            await_ready(&ready, &child, "holder");

            assert!(matches!(d.try_lock(), Err(ManagerError::WouldBlock)), "{m:?}");
            assert!(matches!(l.try_lock(), Err(ManagerError::WouldBlock)), "{m:?}");
            assert!(matches!(ns.try_lock(), Err(ManagerError::WouldBlock)), "{m:?}");
            // Long enough for the lock to check on its holder (every 20–40 ms): a live one
            // is never taken over.
            let t = ms(200);
            let t0 = Instant::now();
            assert!(matches!(d.lock_timeout(t), Err(ManagerError::Timeout)), "{m:?}");
            assert!(
                t0.elapsed() >= t,
                "{m:?}: the timeout ended after {:?}",
                t0.elapsed()
            );
            let t0 = Instant::now();
            assert!(matches!(l.lock_timeout(t), Err(ManagerError::Timeout)), "{m:?}");
            assert!(
                t0.elapsed() >= t,
                "{m:?}: the timeout ended after {:?}",
                t0.elapsed()
            );
            assert!(
                matches!(ns.lock_timeout(ms(0)), Err(ManagerError::Timeout)),
                "{m:?}"
            );
            assert!(
                matches!(ns.lock_timeout(ms(60)), Err(ManagerError::Timeout)),
                "{m:?}"
            );

            // A blocking operation waits for the holder.
            let d2 = d.clone();
            let (tx, rx) = std::sync::mpsc::channel();
            let waiter = std::thread::spawn(move || {
                let r = d2.update_with(&1, |v| v.unwrap() + 1);
                tx.send(()).unwrap();
                r
            });
            assert!(
                rx.recv_timeout(ms(100)).is_err(),
                "{m:?}: update_with did not wait for the lock"
            );
            release.set();
            assert_eq!(waiter.join().unwrap().unwrap(), 11, "{m:?}");
            assert_eq!(join(&mut child), 7);
            for r in [d.recoveries(), l.recoveries(), ns.recoveries()] {
                assert_eq!(r, 0, "{m:?}: a live holder's lock was taken over");
            }
            let mut g = d.lock_timeout(LONG).unwrap();
            g.insert(2, 20).unwrap();
            assert_eq!(g.len().unwrap(), 2);
            drop(g);
            assert!(l.try_lock().is_ok() && ns.try_lock().is_ok());
        });
    }
}

// ------------------------------------------------------------------------------------------
// 4. Growth
// ------------------------------------------------------------------------------------------

const MILLION: u64 = 1_000_000;

fn spot(k: u64) -> u64 {
    k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 7
}

/// Reads the grown dict from a child: spot checks and removes the odd keys.
fn read_grown((d, l): (Dict<u64, u64>, List<u64>)) -> (usize, usize) {
    for k in (0..MILLION).step_by(9973) {
        assert_eq!(d.get(&k).unwrap(), Some(spot(k)), "child: key {k}");
    }
    assert_eq!(l.get(999_999).unwrap(), Some(999_999));
    (d.len().unwrap(), l.len().unwrap())
}

#[test]
fn a_dict_grows_to_a_million_entries() {
    let _g = shared();
    bounded("million dict", || {
        let t0 = Instant::now();
        let d = Dict::<u64, u64>::new().unwrap();
        for k in 0..1000 {
            d.insert(k, spot(k)).unwrap();
        }
        for batch in (1000..MILLION).step_by(10_000) {
            let mut g = d.lock().unwrap();
            for k in batch..(batch + 10_000).min(MILLION) {
                g.insert(k, spot(k)).unwrap();
            }
        }
        let grown = t0.elapsed();
        assert_eq!(d.len().unwrap(), MILLION as usize);
        for k in (0..MILLION).step_by(997) {
            assert_eq!(d.get(&k).unwrap(), Some(spot(k)), "key {k}");
        }
        assert_eq!(d.get(&MILLION).unwrap(), None);
        let l = List::<u64>::new().unwrap();
        l.extend(0..MILLION).unwrap();
        for m in METHODS {
            let mut child = start(m, read_grown, (d.clone(), l.clone()));
            assert_eq!(join(&mut child), (MILLION as usize, MILLION as usize), "{m:?}");
        }
        drop(l);
        // Remove the odd half.
        for batch in (1..MILLION).step_by(20_000) {
            let mut g = d.lock().unwrap();
            for k in (batch..(batch + 20_000).min(MILLION)).step_by(2) {
                assert!(g.discard(&k).unwrap(), "key {k}");
            }
        }
        assert_eq!(d.len().unwrap(), MILLION as usize / 2);
        for k in (0..MILLION).step_by(991) {
            let want = (k % 2 == 0).then(|| spot(k));
            assert_eq!(d.get(&k).unwrap(), want, "key {k}");
        }
        let keys = d.keys().unwrap();
        assert_eq!(keys.len(), MILLION as usize / 2);
        assert!(keys.iter().all(|k| k % 2 == 0));
        // And grows again over the tombstones.
        for k in (1..2001).step_by(2) {
            d.insert(k, 0).unwrap();
        }
        assert_eq!(d.len().unwrap(), MILLION as usize / 2 + 1000);
        println!(
            "dict: 1M inserts {:.2} s, whole test {:.2} s",
            grown.as_secs_f64(),
            t0.elapsed().as_secs_f64()
        );
    });
}

#[test]
fn a_list_grows_to_a_million_elements() {
    let _g = shared();
    bounded("million list", || {
        let t0 = Instant::now();
        let l = List::<u64>::new().unwrap();
        for batch in (0..MILLION).step_by(50_000) {
            l.extend(batch..batch + 50_000).unwrap();
        }
        assert_eq!(l.len().unwrap(), MILLION as usize);
        for i in (0..MILLION).step_by(997) {
            assert_eq!(l.get(i as usize).unwrap(), Some(i));
        }
        let extended = t0.elapsed();
        let t1 = Instant::now();
        let p = List::<u64>::new().unwrap();
        for i in 0..MILLION {
            p.push(i * 3).unwrap();
        }
        let pushed = t1.elapsed();
        assert_eq!(p.len().unwrap(), MILLION as usize);
        let snap = p.snapshot().unwrap();
        assert!(snap.iter().enumerate().all(|(i, &v)| v == i as u64 * 3));
        for _ in 0..10 {
            p.pop().unwrap();
        }
        assert_eq!(p.len().unwrap(), MILLION as usize - 10);
        println!(
            "list: 1M by extend {:.2} s, 1M by push {:.2} s",
            extended.as_secs_f64(),
            pushed.as_secs_f64()
        );
    });
}

// ------------------------------------------------------------------------------------------
// 5. The memory limit
// ------------------------------------------------------------------------------------------

/// From a child: an insert into the full dict and a push onto the full list must fail and
/// change nothing; returns what it saw.
fn insert_into_full((d, l, expect_full): (Dict<u64, Vec<u8>>, List<Vec<u8>>, bool)) -> (bool, bool) {
    let (dn, ln) = (d.len().unwrap(), l.len().unwrap());
    let dr = d.insert(1_000_000, vec![1; 100]);
    let lr = l.push(vec![1; 100]);
    if expect_full {
        assert_eq!((d.len().unwrap(), l.len().unwrap()), (dn, ln));
    }
    (
        matches!(dr, Err(ManagerError::LimitExceeded { .. })),
        matches!(lr, Err(ManagerError::LimitExceeded { .. })),
    )
}

#[test]
fn a_full_container_fails_with_limit_exceeded_and_stays_as_it_was() {
    let _g = shared();
    bounded("memory limit", || {
        let mgr = Manager::with_limit(SMALL);
        assert_eq!(mgr.limit(), SMALL);
        let d = mgr.dict::<u64, Vec<u8>>().unwrap();
        assert_eq!(d.limit(), SMALL);
        let mut n = 0u64;
        let err = loop {
            match d.insert(n, vec![n as u8; 100]) {
                Ok(_) => n += 1,
                Err(e) => break e,
            }
            assert!(n < 10_000, "a 64 KiB dict took {n} values of 100 bytes");
        };
        assert!(matches!(err, ManagerError::LimitExceeded { .. }), "{err}");
        assert!(n > 100, "only {n} values of 100 bytes fit in a 64 KiB dict");
        let before = {
            let mut v = d.items().unwrap();
            v.sort();
            v
        };
        assert_eq!(before.len(), n as usize);
        assert_eq!(d.len().unwrap(), n as usize);
        assert!(!d.contains_key(&n).unwrap());
        // A replacement that does not fit, and a value larger than the whole limit.
        assert!(matches!(
            d.insert(0, vec![0; 2000]),
            Err(ManagerError::LimitExceeded { .. })
        ));
        assert!(matches!(
            d.insert(n, vec![0; SMALL]),
            Err(ManagerError::LimitExceeded { .. })
        ));
        assert!(matches!(
            d.update_with(&1, |_| vec![0; SMALL]),
            Err(ManagerError::LimitExceeded { .. })
        ));
        let mut after = d.items().unwrap();
        after.sort();
        assert_eq!(after, before, "a failed change changed the dict");

        // Same for a list.
        let l = mgr.list::<Vec<u8>>().unwrap();
        let mut len = 0usize;
        let err = loop {
            match l.push(vec![len as u8; 100]) {
                Ok(()) => len += 1,
                Err(e) => break e,
            }
            assert!(len < 10_000);
        };
        assert!(matches!(err, ManagerError::LimitExceeded { .. }), "{err}");
        let lbefore = l.snapshot().unwrap();
        assert_eq!(lbefore.len(), len);
        assert!(matches!(
            l.extend([vec![1u8; 100], vec![2; 100]]),
            Err(ManagerError::LimitExceeded { .. })
        ));
        assert!(matches!(
            l.set(3, vec![0; SMALL]),
            Err(ManagerError::LimitExceeded { .. })
        ));
        assert!(matches!(
            l.update_with(3, |_| vec![0; SMALL]),
            Err(ManagerError::LimitExceeded { .. })
        ));
        assert_eq!(l.snapshot().unwrap(), lbefore, "a failed change changed the list");

        // A namespace too.
        let ns = Namespace::with_limit(4096).unwrap();
        assert!(matches!(
            ns.set("big", vec![0u8; 4096]),
            Err(ManagerError::LimitExceeded { .. })
        ));
        assert!(ns.names().unwrap().is_empty());

        for m in METHODS {
            let args = (d.clone(), l.clone(), true);
            assert_eq!(join(&mut start(m, insert_into_full, args)), (true, true), "{m:?}");
        }
        let mut after = d.items().unwrap();
        after.sort();
        assert_eq!(after, before);
        assert_eq!(l.snapshot().unwrap(), lbefore);

        // Room again after removals, from this process and from a child.
        for k in 0..10 {
            assert_eq!(d.remove(&k).unwrap(), Some(vec![k as u8; 100]));
            l.pop().unwrap().unwrap();
        }
        for m in METHODS {
            let args = (d.clone(), l.clone(), false);
            assert_eq!(
                join(&mut start(m, insert_into_full, args)),
                (false, false),
                "{m:?}"
            );
            d.remove(&1_000_000).unwrap().unwrap();
            l.pop().unwrap().unwrap();
        }
        d.insert(n, vec![1; 100]).unwrap();
        assert_eq!(d.len().unwrap(), n as usize - 10 + 1);
        l.push(vec![1; 100]).unwrap();
        assert_eq!(l.len().unwrap(), len - 10 + 1);
        assert_eq!(l.snapshot().unwrap()[..len - 10], lbefore[..len - 10]);
    });
}

// ------------------------------------------------------------------------------------------
// 5b. The limit rule: a change succeeds exactly when the live contents after it fit
// ------------------------------------------------------------------------------------------

/// The rule of the `shmproc::manager` module docs, restated so that the tests hold the
/// library to the documented sizes rather than to its own arithmetic.
mod rule {
    use serde::Serialize;

    /// Bytes of the control block before the two halves.
    const CTRL: usize = 128;

    /// Bytes of one half: `LimitExceeded::limit` for a container of `limit` bytes.
    pub fn half(limit: usize) -> u64 {
        (((limit.max(4096) - CTRL) / 2) & !7) as u64
    }

    /// Bytes of one record whose key and value encode to `k` and `v` bytes.
    pub fn record(k: usize, v: usize) -> u64 {
        8 + (k + v).next_multiple_of(8) as u64
    }

    /// Table bytes of a dict (or namespace) of `n` entries: the smallest power of two of at
    /// least 8 words that `n` fill to at most 3/4.
    pub fn dict_table(n: usize) -> u64 {
        let mut c = 8;
        while 4 * n > 3 * c {
            c *= 2;
        }
        8 * c as u64
    }

    /// Table bytes of a list of `n` elements: a power of two of at least 8 words, at least `n`.
    pub fn list_table(n: usize) -> u64 {
        8 * n.max(8).next_power_of_two() as u64
    }

    /// Bytes of `v`'s encoding.
    pub fn enc<T: Serialize + ?Sized>(v: &T) -> usize {
        postcard::to_allocvec(v).unwrap().len()
    }
}

fn limit_of(e: &ManagerError) -> Option<(u64, u64)> {
    match e {
        ManagerError::LimitExceeded { needed, limit } => Some((*needed, *limit)),
        _ => None,
    }
}

/// The issue's dict: `Dict<String, u64>` with a 6 KiB limit; keys `k{i}`, values `i`.
const ISSUE_LIMIT: usize = 6144;

fn issue_key(i: u64) -> String {
    format!("k{i}")
}

/// What the issue's dict needs for `n` keys `k{i}` with values `i` (`i < 10_000`: every
/// record is 16 bytes).
fn issue_needed(n: usize) -> u64 {
    rule::dict_table(n) + n as u64 * rule::record(5, 3)
}

/// Fills the dict with `k0, k1, …` until an insert fails: how many fit, and the error.
fn fill_issue_dict(d: Dict<String, u64>) -> (u64, Option<(u64, u64)>) {
    let mut n = 0;
    loop {
        match d.insert(issue_key(n), n) {
            Ok(_) => n += 1,
            Err(e) => return (n, limit_of(&e)),
        }
        assert!(n < 10_000);
    }
}

/// Removes `removed` keys (`k0, k3, k6, …`), inserts as many new ones (`k{first_new + j}`),
/// then one more: the errors of the first inserts (there should be none) and the last one's.
fn remove_then_insert((d, removed, first_new): (Dict<String, u64>, u64, u64)) -> (Vec<String>, String) {
    for i in 0..removed {
        assert_eq!(d.remove(&issue_key(3 * i)).unwrap(), Some(3 * i));
    }
    let mut failed = Vec::new();
    for j in first_new..first_new + removed {
        if let Err(e) = d.insert(issue_key(j), j) {
            failed.push(format!("{} after removing {removed}: {e}", issue_key(j)));
        }
    }
    let last = first_new + removed;
    (failed, format!("{:?}", d.insert(issue_key(last), last)))
}

#[test]
fn a_full_dict_takes_new_keys_after_removals() {
    let _g = shared();
    bounded("issue 12 item 6", || {
        let half = rule::half(ISSUE_LIMIT);
        // 96 keys fit (a table of 128 words); a 97th needs a table of 256 words.
        assert!(issue_needed(96) <= half && issue_needed(97) > half);
        for (fill_m, other_m) in [(METHODS[0], METHODS[1]), (METHODS[1], METHODS[0])] {
            for removed in [1u64, 12, 24, 32] {
                let d = Manager::with_limit(ISSUE_LIMIT).dict::<String, u64>().unwrap();
                let (n, err) = join(&mut start(fill_m, fill_issue_dict, d.clone()));
                assert_eq!(n, 96, "{fill_m:?}: keys that fit");
                assert_eq!(err, Some((issue_needed(97), half)), "{fill_m:?}: the 97th key");
                let args = (d.clone(), removed, 1000);
                let (failed, last) = join(&mut start(other_m, remove_then_insert, args));
                assert!(failed.is_empty(), "{fill_m:?} then {other_m:?}: {failed:?}");
                let full = format!(
                    "{:?}",
                    Err::<(), _>(ManagerError::LimitExceeded {
                        needed: issue_needed(97),
                        limit: half
                    })
                );
                assert_eq!(last, full, "{fill_m:?} then {other_m:?}: one key too many");
                let mut expect: Vec<(String, u64)> = (0..96)
                    .filter(|i| i % 3 != 0 || i / 3 >= removed)
                    .chain(1000..1000 + removed)
                    .map(|i| (issue_key(i), i))
                    .collect();
                expect.sort();
                let mut items = d.items().unwrap();
                items.sort();
                assert_eq!(items, expect, "{fill_m:?} then {other_m:?}, {removed} removed");
                assert_eq!(d.len().unwrap(), 96);
            }
        }
    });
}

/// 39 entries of 64-byte records and a table of 64 words: 8 · 64 + 39 · 64 = 3008 bytes, a
/// whole half of a 6 KiB container.
const EXACT: u64 = 39;

fn exact_dict() -> Dict<String, Vec<u8>> {
    let d = Dict::with_limit(ISSUE_LIMIT).unwrap();
    for i in 0..EXACT {
        d.insert(format!("k{i:02}"), vec![i as u8; 51]).unwrap();
    }
    d
}

fn exact_namespace() -> Namespace {
    let ns = Namespace::with_limit(ISSUE_LIMIT).unwrap();
    for i in 0..EXACT {
        ns.set(&format!("f{i:02}"), vec![i as u8; 52]).unwrap();
    }
    ns
}

/// 8 elements of 368-byte records and a table of 8 words: 64 + 8 · 368 = 3008 bytes.
fn exact_list() -> List<Vec<u8>> {
    let l = List::with_limit(ISSUE_LIMIT).unwrap();
    for i in 0..8 {
        l.push(vec![i as u8; 357]).unwrap();
    }
    l
}

type Exact = (Dict<String, Vec<u8>>, Namespace, List<Vec<u8>>);

/// Replaces values of an exactly full dict, namespace and list with values of the same size
/// (which must work), then tries one byte more (which must not): the outcomes, in order.
fn replace_in_exactly_full((d, ns, l): Exact) -> Vec<String> {
    let mut out = Vec::new();
    let mut note = |what: &str, r: Result<(), ManagerError>| out.push(format!("{what}: {r:?}"));
    note(
        "dict update_with",
        d.update_with("k05", |v| vec![v.unwrap()[0] + 100; 51]).map(drop),
    );
    note("dict insert", d.insert("k06".into(), vec![200; 51]).map(drop));
    note("dict setdefault", d.setdefault("k07".into(), vec![]).map(drop));
    note(
        "dict guard update_with",
        d.lock()
            .and_then(|mut g| g.update_with("k08", |_| vec![208; 51]).map(drop)),
    );
    note(
        "dict grow a value",
        d.update_with("k09", |_| vec![0; 52]).map(drop),
    );
    note("dict new key", d.insert("k99".into(), vec![]).map(drop));
    note("namespace set", ns.set("f05", vec![105u8; 52]));
    note(
        "namespace update_with",
        ns.update_with("f06", |v: Option<Vec<u8>>| vec![v.unwrap()[0] + 100; 52])
            .map(drop),
    );
    note("namespace grow a field", ns.set("f07", vec![0u8; 53]));
    note("list set", l.set(3, vec![103; 357]));
    note(
        "list update_with",
        l.update_with(4, |v| vec![v[0] + 100; 357]).map(drop),
    );
    note("list grow an element", l.set(5, vec![0; 359]));
    note("list push", l.push(vec![]));
    out
}

#[test]
fn replacing_values_of_an_exactly_full_container_works() {
    let _g = shared();
    bounded("exactly full", || {
        let half = rule::half(ISSUE_LIMIT);
        let rec = rule::record(4, 52);
        assert_eq!(rule::dict_table(EXACT as usize) + EXACT * rec, half);
        assert_eq!(rule::record(3, 53), rec);
        let lrec = rule::record(0, 359);
        assert_eq!(rule::enc(&vec![0u8; 357]), 359);
        // The values that grow by one byte grow their record by 8.
        assert_eq!(rule::record(4, rule::enc(&vec![0u8; 52])), rec + 8);
        assert_eq!(rule::record(3, rule::enc(&vec![0u8; 53])), rec + 8);
        assert_eq!(rule::record(0, rule::enc(&vec![0u8; 359])), lrec + 8);
        assert_eq!(rule::list_table(8) + 8 * lrec, half);
        let full = |needed: u64| {
            format!(
                "{:?}",
                Err::<(), _>(ManagerError::LimitExceeded { needed, limit: half })
            )
        };
        let expect = [
            "dict update_with: Ok(())".to_string(),
            "dict insert: Ok(())".into(),
            "dict setdefault: Ok(())".into(),
            "dict guard update_with: Ok(())".into(),
            format!("dict grow a value: {}", full(half + 8)),
            format!(
                "dict new key: {}",
                full(half + rule::dict_table(40) - rule::dict_table(39) + 16)
            ),
            "namespace set: Ok(())".into(),
            "namespace update_with: Ok(())".into(),
            format!("namespace grow a field: {}", full(half + 8)),
            "list set: Ok(())".into(),
            "list update_with: Ok(())".into(),
            format!("list grow an element: {}", full(half + 8)),
            format!(
                "list push: {}",
                full(half + rule::list_table(9) - rule::list_table(8) + 16)
            ),
        ];
        for m in [None, Some(METHODS[0]), Some(METHODS[1])] {
            let (d, ns, l) = (exact_dict(), exact_namespace(), exact_list());
            let args = (d.clone(), ns.clone(), l.clone());
            let got = match m {
                None => replace_in_exactly_full(args),
                Some(m) => join(&mut start(m, replace_in_exactly_full, args)),
            };
            assert_eq!(got, expect, "{m:?}");
            let mut items = d.items().unwrap();
            items.sort();
            let want: Vec<(String, Vec<u8>)> = (0..EXACT)
                .map(|i| {
                    let v = match i {
                        5 => vec![105; 51],
                        6 => vec![200; 51],
                        8 => vec![208; 51],
                        i => vec![i as u8; 51],
                    };
                    (format!("k{i:02}"), v)
                })
                .collect();
            assert_eq!(items, want, "{m:?}");
            for i in 0..EXACT {
                let want = match i {
                    5 => vec![105u8; 52],
                    6 => vec![106; 52],
                    i => vec![i as u8; 52],
                };
                assert_eq!(
                    ns.get::<Vec<u8>>(&format!("f{i:02}")).unwrap(),
                    Some(want),
                    "{m:?}"
                );
            }
            let want: Vec<Vec<u8>> = (0..8u8)
                .map(|i| match i {
                    3 => vec![103; 357],
                    4 => vec![104; 357],
                    i => vec![i; 357],
                })
                .collect();
            assert_eq!(l.snapshot().unwrap(), want, "{m:?}");
        }
    });
}

/// One operation of the property test; values are `vec![byte; len]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Op {
    Insert(u16, u16, u8),
    UpdateWith(u16, u16, u8),
    Setdefault(u16, u16, u8),
    Remove(u16),
    Update(Vec<(u16, u16, u8)>),
    Push(u16, u8),
    Extend(Vec<(u16, u8)>),
    Set(u16, u16, u8),
    ListUpdateWith(u16, u16, u8),
    Pop,
    NsSet(u16, u16, u8),
    NsUpdateWith(u16, u16, u8),
    NsRemove(u16),
    Clear(u8),
}

fn bytes(len: u16, b: u8) -> Vec<u8> {
    vec![b; usize::from(len)]
}

fn field(i: u16) -> String {
    format!("field{}", "x".repeat(usize::from(i % 9)) + &i.to_string())
}

type Models = (
    std::collections::BTreeMap<u16, Vec<u8>>,
    Vec<Vec<u8>>,
    std::collections::BTreeMap<String, Vec<u8>>,
);
type Handles = (Dict<u16, Vec<u8>>, List<Vec<u8>>, Namespace);

/// A value length: mostly small, sometimes a few hundred bytes, rarely more than a KiB.
fn some_len(rng: &mut XorShift) -> u16 {
    match rng.below(20) {
        0..=11 => rng.below(40) as u16,
        12..=18 => rng.below(400) as u16,
        _ => 1000 + rng.below(1500) as u16,
    }
}

fn some_op(rng: &mut XorShift, list_len: usize) -> Op {
    let (k, len, b) = (rng.below(60) as u16, some_len(rng), rng.next() as u8);
    match rng.below(100) {
        0..=19 => Op::Insert(k, len, b),
        20..=29 => Op::UpdateWith(k, len, b),
        30..=34 => Op::Setdefault(k, len, b),
        35..=44 => Op::Remove(k),
        45..=46 => Op::Update((0..rng.below(5)).map(|i| (k + i as u16, len, b)).collect()),
        47..=56 => Op::Push(len, b),
        57..=59 => Op::Extend((0..rng.below(6)).map(|i| (len / (i as u16 + 1), b)).collect()),
        60..=66 if list_len > 0 => Op::Set(rng.below(list_len as u64) as u16, len, b),
        67..=70 if list_len > 0 => Op::ListUpdateWith(rng.below(list_len as u64) as u16, len, b),
        60..=75 => Op::Pop,
        76..=87 => Op::NsSet(k % 40, len, b),
        88..=93 => Op::NsUpdateWith(k % 40, len, b),
        94..=98 => Op::NsRemove(k % 40),
        _ => Op::Clear(b % 3),
    }
}

/// The value an update_with computes: from the old one's first byte and length, when there.
fn updated(old: Option<&Vec<u8>>, len: u16, b: u8) -> Vec<u8> {
    match old {
        Some(o) => vec![o.first().copied().unwrap_or(b).wrapping_add(1); usize::from(len).max(o.len() / 2)],
        None => bytes(len, b),
    }
}

/// Runs `op` on the containers: `Ok`, or the `LimitExceeded` fields (any other error panics).
fn run_op((d, l, ns): &Handles, op: &Op) -> Result<(), (u64, u64)> {
    let r = match op.clone() {
        Op::Insert(k, len, b) => d.insert(k, bytes(len, b)).map(drop),
        Op::UpdateWith(k, len, b) => d.update_with(&k, |o| updated(o.as_ref(), len, b)).map(drop),
        Op::Setdefault(k, len, b) => d.setdefault(k, bytes(len, b)).map(drop),
        Op::Remove(k) => d.remove(&k).map(drop),
        Op::Update(pairs) => d.update(pairs.into_iter().map(|(k, len, b)| (k, bytes(len, b)))),
        Op::Push(len, b) => l.push(bytes(len, b)),
        Op::Extend(vals) => l.extend(vals.into_iter().map(|(len, b)| bytes(len, b))),
        Op::Set(i, len, b) => l.set(usize::from(i), bytes(len, b)),
        Op::ListUpdateWith(i, len, b) => l
            .update_with(usize::from(i), |o| updated(Some(&o), len, b))
            .map(drop),
        Op::Pop => l.pop().map(drop),
        Op::NsSet(i, len, b) => ns.set(&field(i), bytes(len, b)),
        Op::NsUpdateWith(i, len, b) => ns
            .update_with(&field(i), |o: Option<Vec<u8>>| updated(o.as_ref(), len, b))
            .map(drop),
        Op::NsRemove(i) => ns.remove(&field(i)).map(drop),
        Op::Clear(0) => d.clear(),
        Op::Clear(1) => l.clear(),
        Op::Clear(_) => {
            for name in ns.names().unwrap() {
                ns.remove(&name).unwrap();
            }
            Ok(())
        }
    };
    r.map_err(|e| limit_of(&e).unwrap_or_else(|| panic!("{op:?}: {e}")))
}

fn run_ops((h, ops): (Handles, Vec<Op>)) -> Vec<Result<(), (u64, u64)>> {
    ops.iter().map(|op| run_op(&h, op)).collect()
}

fn dict_needed(m: &std::collections::BTreeMap<u16, Vec<u8>>) -> u64 {
    rule::dict_table(m.len())
        + m.iter()
            .map(|(k, v)| rule::record(rule::enc(k), rule::enc(v)))
            .sum::<u64>()
}

fn list_needed(m: &[Vec<u8>]) -> u64 {
    rule::list_table(m.len()) + m.iter().map(|v| rule::record(0, rule::enc(v))).sum::<u64>()
}

fn ns_needed(m: &std::collections::BTreeMap<String, Vec<u8>>) -> u64 {
    rule::dict_table(m.len())
        + m.iter()
            .map(|(k, v)| rule::record(k.len(), rule::enc(v)))
            .sum::<u64>()
}

/// Applies `op` to the models by the documented rule: what the containers must answer.
fn model_op(models: &mut Models, op: &Op, half: u64) -> Result<(), (u64, u64)> {
    // Tries a change: kept if what it leaves fits, else the model is unchanged.
    fn attempt<M: Clone>(
        m: &mut M,
        half: u64,
        needed: fn(&M) -> u64,
        f: impl FnOnce(&mut M),
    ) -> Result<(), (u64, u64)> {
        let mut next = m.clone();
        f(&mut next);
        let n = needed(&next);
        if n > half {
            return Err((n, half));
        }
        *m = next;
        Ok(())
    }
    let (d, l, ns) = models;
    match op.clone() {
        Op::Insert(k, len, b) => attempt(d, half, dict_needed, |d| drop(d.insert(k, bytes(len, b)))),
        Op::UpdateWith(k, len, b) => attempt(d, half, dict_needed, |d| {
            let v = updated(d.get(&k), len, b);
            d.insert(k, v);
        }),
        Op::Setdefault(k, len, b) => attempt(d, half, dict_needed, |d| {
            d.entry(k).or_insert(bytes(len, b));
        }),
        Op::Remove(k) => attempt(d, half, dict_needed, |d| drop(d.remove(&k))),
        Op::Update(pairs) => {
            for (k, len, b) in pairs {
                attempt(d, half, dict_needed, |d| drop(d.insert(k, bytes(len, b))))?;
            }
            Ok(())
        }
        Op::Push(len, b) => attempt(l, half, |l| list_needed(l), |l| l.push(bytes(len, b))),
        Op::Extend(vals) => attempt(
            l,
            half,
            |l| list_needed(l),
            |l| l.extend(vals.iter().map(|&(len, b)| bytes(len, b))),
        ),
        Op::Set(i, len, b) => attempt(l, half, |l| list_needed(l), |l| l[usize::from(i)] = bytes(len, b)),
        Op::ListUpdateWith(i, len, b) => attempt(
            l,
            half,
            |l| list_needed(l),
            |l| {
                let i = usize::from(i);
                l[i] = updated(Some(&l[i]), len, b);
            },
        ),
        Op::Pop => attempt(l, half, |l| list_needed(l), |l| drop(l.pop())),
        Op::NsSet(i, len, b) => attempt(ns, half, ns_needed, |ns| drop(ns.insert(field(i), bytes(len, b)))),
        Op::NsUpdateWith(i, len, b) => attempt(ns, half, ns_needed, |ns| {
            let v = updated(ns.get(&field(i)), len, b);
            ns.insert(field(i), v);
        }),
        Op::NsRemove(i) => attempt(ns, half, ns_needed, |ns| drop(ns.remove(&field(i)))),
        Op::Clear(0) => attempt(d, half, dict_needed, |d| d.clear()),
        Op::Clear(1) => attempt(l, half, |l| list_needed(l), |l| l.clear()),
        Op::Clear(_) => attempt(ns, half, ns_needed, |ns| ns.clear()),
    }
}

fn assert_same(h: &Handles, models: &Models, what: &str) {
    let (d, l, ns) = h;
    let items: std::collections::BTreeMap<u16, Vec<u8>> = d.items().unwrap().into_iter().collect();
    assert_eq!(items, models.0, "{what}: dict");
    assert_eq!(d.len().unwrap(), models.0.len(), "{what}: dict len");
    assert_eq!(l.snapshot().unwrap(), models.1, "{what}: list");
    let mut fields = std::collections::BTreeMap::new();
    for name in ns.names().unwrap() {
        let v = ns.get::<Vec<u8>>(&name).unwrap().unwrap();
        fields.insert(name, v);
    }
    assert_eq!(fields, models.2, "{what}: namespace");
}

#[test]
fn random_operations_fail_with_limit_exceeded_exactly_when_the_contents_would_not_fit() {
    let _g = shared();
    bounded("limit rule", || {
        let mut rng = XorShift(seed("limit rule"));
        let (mut ok, mut full) = (0, 0);
        for limit in [4096, 6144, 8192, 16384] {
            let half = rule::half(limit);
            let m = Manager::with_limit(limit);
            let h: Handles = (m.dict().unwrap(), m.list().unwrap(), m.namespace().unwrap());
            let mut models = Models::default();
            // In this process, checking the whole contents after every operation; then a batch
            // in a child of each start method, checked after the batch.
            for round in 0..3usize {
                let in_child = round.checked_sub(1).map(|r| METHODS[r]);
                let count = if in_child.is_none() { 1500 } else { 300 };
                let (mut ops, mut expect) = (Vec::new(), Vec::new());
                for i in 0..count {
                    let op = some_op(&mut rng, models.1.len());
                    let e = model_op(&mut models, &op, half);
                    if in_child.is_some() {
                        ops.push(op);
                        expect.push(e);
                        continue;
                    }
                    let g = run_op(&h, &op);
                    assert_eq!(g, e, "limit {limit}, op {i}: {op:?}");
                    assert_same(&h, &models, &format!("limit {limit}, after op {i}: {op:?}"));
                    if g.is_ok() {
                        ok += 1
                    } else {
                        full += 1
                    }
                }
                if let Some(m) = in_child {
                    let handles = (h.0.clone(), h.1.clone(), h.2.clone());
                    let got = join(&mut start(m, run_ops, (handles, ops.clone())));
                    assert_eq!(got.len(), ops.len());
                    for (i, (g, e)) in got.iter().zip(&expect).enumerate() {
                        assert_eq!(g, e, "limit {limit}, {m:?} child, op {i}: {:?}", ops[i]);
                        if g.is_ok() {
                            ok += 1
                        } else {
                            full += 1
                        }
                    }
                }
                assert_same(
                    &h,
                    &models,
                    &format!("limit {limit}, after round {round} ({in_child:?})"),
                );
            }
        }
        println!("limit rule: {ok} operations succeeded, {full} refused with LimitExceeded");
        assert!(
            full > 200 && ok > 2000,
            "{ok} succeeded, {full} refused: the test missed the limit"
        );
    });
}

/// The tight dict of the kill test: keys `0..48`, values of up to 90 bytes, 6 KiB: it sits at
/// its limit, so most changes compact into the other half and many are refused.
const TIGHT_LIMIT: usize = 6144;

fn tight_op(rng: &mut XorShift) -> Op {
    let (k, len, b) = (rng.below(48) as u16, rng.below(90) as u16, rng.next() as u8);
    match rng.below(10) {
        0..=3 => Op::Insert(k, len, b),
        4..=6 => Op::UpdateWith(k, len, b),
        7 => Op::Setdefault(k, len, b),
        _ => Op::Remove(k),
    }
}

type TightArgs = (Dict<u16, Vec<u8>>, shmproc::RawValue<u64>, Event, u64);

/// Runs `tight_op`s from `seed` forever, 20 a guard, counting in `done` the operations that
/// returned (so the dict is in the state after `done` or `done + 1` of them).
fn tight_writer((d, done, ready, seed): TightArgs) {
    let mut rng = XorShift(seed);
    let mut n = 0;
    loop {
        let mut g = d.lock().unwrap();
        for _ in 0..20 {
            let r = match tight_op(&mut rng) {
                Op::Insert(k, len, b) => g.insert(k, bytes(len, b)).map(drop),
                Op::UpdateWith(k, len, b) => g.update_with(&k, |o| updated(o.as_ref(), len, b)).map(drop),
                Op::Setdefault(k, len, b) => g.setdefault(k, bytes(len, b)).map(drop),
                Op::Remove(k) => g.remove(&k).map(drop),
                op => unreachable!("{op:?}"),
            };
            tolerate_full(r);
            n += 1;
            done.set(n);
        }
        drop(g);
        ready.set();
    }
}

#[test]
fn a_writer_killed_while_compacting_a_full_dict_leaves_the_last_published_state() {
    let _g = shared();
    let mut rng = XorShift(seed("tight kills"));
    let half = rule::half(TIGHT_LIMIT);
    for m in METHODS {
        let mut recovered = 0;
        for trial in 0..TRIALS {
            let d = Dict::<u16, Vec<u8>>::with_limit(TIGHT_LIMIT).unwrap();
            let done = shmproc::RawValue::new(0u64).unwrap();
            let ready = Event::new().unwrap();
            let s = rng.next() | 1;
            let args = (d.clone(), done.clone(), ready.clone(), s);
            let mut child = start(m, tight_writer, args);
            await_ready(&ready, &child, "tight writer");
            std::thread::sleep(Duration::from_micros(rng.below(30_000)));
            kill_and_reap(&mut child);
            let what = format!("{m:?} tight trial {trial}");
            recovered += bounded(&what.clone(), move || {
                let t0 = Instant::now();
                let items: std::collections::BTreeMap<u16, Vec<u8>> =
                    d.items().unwrap().into_iter().collect();
                assert!(t0.elapsed() < TAKEOVER, "{what}: {:?} to take over", t0.elapsed());
                let recovered = d.recoveries();
                assert!(recovered <= 1, "{what}: {recovered} recoveries");
                // Replay the writer's operations on the model: the dict must be the state
                // after the `n` that returned, or after the one in flight.
                let n = done.get();
                let mut w = XorShift(s);
                let mut models = Models::default();
                for _ in 0..n {
                    let _ = model_op(&mut models, &tight_op(&mut w), half);
                }
                if items != models.0 {
                    let _ = model_op(&mut models, &tight_op(&mut w), half);
                    assert_eq!(
                        items, models.0,
                        "{what}: neither the state after {n} operations nor the next"
                    );
                }
                assert_eq!(d.len().unwrap(), items.len(), "{what}");
                // And from there on, every operation follows the rule.
                let h: Handles = (
                    d,
                    Manager::new().list().unwrap(),
                    Manager::new().namespace().unwrap(),
                );
                for i in 0..300 {
                    let op = tight_op(&mut w);
                    let e = model_op(&mut models, &op, half);
                    assert_eq!(run_op(&h, &op), e, "{what}: op {i} after the take-over: {op:?}");
                }
                assert_same(&h, &models, &what);
                assert_eq!(h.0.recoveries(), recovered, "{what}: a second recovery");
                recovered
            });
        }
        println!("tight kills {m:?}: {recovered} recoveries in {TRIALS} kills");
        assert!(recovered >= 1, "{m:?}: no kill caught the writer with the lock");
    }
}

// ------------------------------------------------------------------------------------------
// 6. Wrong types and garbage from another process
// ------------------------------------------------------------------------------------------

fn outcome<T: std::fmt::Debug>(r: Result<Option<T>, ManagerError>) -> String {
    match r {
        Ok(v) => format!("ok {v:?}"),
        Err(ManagerError::Codec(_)) => "codec".into(),
        Err(e) => format!("other {e}"),
    }
}

/// Reads the parent's fields as other types.
fn read_as_other_types(ns: Namespace) -> Vec<String> {
    vec![
        outcome(ns.get::<String>("s")),
        outcome(ns.get::<f64>("s")),
        outcome(ns.get::<u32>("s")),
        outcome(ns.get::<bool>("s")),
        outcome(ns.get::<(u64, u64)>("s")),
        outcome(ns.get::<Vec<String>>("s")),
        outcome(ns.get::<String>("f")),
        outcome(ns.get::<u64>("n")),
        outcome(ns.update_with("s", |_: Option<f64>| 0.0).map(Some)),
        outcome(ns.get::<String>("s")),
    ]
}

#[test]
fn a_field_read_as_another_type_in_a_child_is_a_codec_error() {
    let _g = shared();
    for m in METHODS {
        let ns = Namespace::new().unwrap();
        ns.set("s", "hello world".to_string()).unwrap();
        ns.set("f", 2.5f64).unwrap();
        ns.set("n", 7u32).unwrap();
        let got = join(&mut start(m, read_as_other_types, ns.clone()));
        let want = [
            "ok Some(\"hello world\")",
            "codec",
            "codec",
            "codec",
            "codec",
            "codec",
            "codec",
            // Documented: postcard integers are variable-length, a u32 reads as a u64.
            "ok Some(7)",
            "codec",
            "ok Some(\"hello world\")",
        ];
        assert_eq!(got, want, "{m:?}");
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
enum Scribble {
    /// Random bytes over the whole data area past the lock.
    Everything,
    /// A random root word.
    Root,
    /// A root word that passes the range checks: random half, table size and top.
    PlausibleRoot,
    /// The root pointing at the other half.
    OtherHalf,
    /// Random words over the active table.
    Table,
    /// Random bytes over the active half's records.
    Records,
    /// 64 random bytes anywhere but the lock.
    Sparse,
    /// A random `len` (a list's commit word), up to twice the table.
    Len,
    /// Random counter words (`len`, `used`, `live`, `recoveries`), the root left alone.
    Hints,
}

const SCRIBBLES: [Scribble; 9] = [
    Scribble::Everything,
    Scribble::Root,
    Scribble::PlausibleRoot,
    Scribble::OtherHalf,
    Scribble::Table,
    Scribble::Records,
    Scribble::Sparse,
    Scribble::Len,
    Scribble::Hints,
];

/// Control block offsets (see src/manager/store.rs): lock 0..16, root 16, len 24, used 32,
/// live 40, recoveries 48.
const ROOT: usize = 16;
const LEN: usize = 24;
const HINTS: std::ops::Range<usize> = 32..48;
const CTRL: usize = 128;

fn scribble(seg: &shmproc::Segment, how: Scribble, rng: &mut XorShift) {
    let p = seg.as_ptr();
    let size = seg.len();
    let half = ((size - CTRL) / 2) & !7;
    // SAFETY (all accesses below): in bounds of the mapped data area (the root word is
    // 8-aligned). Other processes may use the container meanwhile: racing with them is the
    // point, and the library must treat the segment's bytes as untrusted.
    let root = unsafe { p.add(ROOT).cast::<u64>().read_volatile() };
    let (h, log, top) = (
        (root >> 63) as usize,
        ((root >> 57) & 63) as u32,
        (root & ((1 << 57) - 1)) as usize,
    );
    let base = CTRL + h * half;
    // A scribbled root may say anything: keep the ranges inside the half.
    let table = if log <= 20 {
        (8usize << log).min(half)
    } else {
        half
    };
    let put = |at: usize, b: u8| {
        if (16..size).contains(&at) {
            unsafe { p.add(at).write_volatile(b) }
        }
    };
    let put_u64 = |at: usize, v: u64| {
        for (i, b) in v.to_le_bytes().into_iter().enumerate() {
            put(at + i, b)
        }
    };
    match how {
        Scribble::Everything => (16..size).for_each(|at| put(at, rng.next() as u8)),
        Scribble::Root => put_u64(ROOT, rng.next()),
        Scribble::PlausibleRoot => {
            let log = 3 + rng.below(9) as u32;
            let table = 8usize << log; // at most 16 KiB, less than the half
            let top = (table + rng.below((half - table) as u64) as usize) & !7;
            put_u64(ROOT, rng.below(2) << 63 | u64::from(log) << 57 | top as u64)
        }
        Scribble::OtherHalf => put_u64(ROOT, root ^ 1 << 63),
        Scribble::Table => (base..base + table).step_by(8).for_each(|at| {
            if rng.below(3) == 0 {
                put_u64(at, rng.next() >> rng.below(64))
            }
        }),
        Scribble::Records => (base + table..base + top.min(half)).for_each(|at| put(at, rng.next() as u8)),
        Scribble::Sparse => (0..64).for_each(|_| put(rng.below(size as u64) as usize, rng.next() as u8)),
        Scribble::Len => put_u64(LEN, rng.below(2 * (table as u64 / 8) + 1)),
        Scribble::Hints => (LEN..56)
            .step_by(8)
            .for_each(|at| put_u64(at, rng.next() >> rng.below(64))),
    }
}

type Victims = (Vec<Dict<u64, String>>, Vec<List<String>>, Vec<Namespace>, u64);

fn scribble_all((ds, ls, nss, seed): Victims) -> usize {
    let mut rng = XorShift(seed);
    let segs = ds
        .iter()
        .map(|d| d.segment())
        .chain(ls.iter().map(|l| l.segment()))
        .chain(nss.iter().map(|n| n.segment()));
    let mut n = 0;
    for (i, seg) in segs.enumerate() {
        scribble(seg, SCRIBBLES[i % SCRIBBLES.len()], &mut rng);
        n += 1;
    }
    n
}

/// An operation on a scribbled container may succeed or fail with an error that says so;
/// anything else (another error, a panic, a hang) is a bug. Returns whether it succeeded.
fn fine<T>(what: &str, r: Result<T, ManagerError>) -> bool {
    match r {
        Ok(_) => true,
        Err(
            ManagerError::Corrupt(_)
            | ManagerError::Codec(_)
            | ManagerError::LimitExceeded { .. }
            | ManagerError::Index { .. },
        ) => false,
        Err(e) => panic!("{what}: unexpected error {e:?}"),
    }
}

/// `strict`: nobody writes meanwhile, so a successful `clear` must leave a healthy dict.
fn poke_dict(d: &Dict<u64, String>, what: &str, strict: bool) -> bool {
    fine(what, d.len());
    fine(what, d.items());
    fine(what, d.keys());
    fine(what, d.values());
    for k in 0..45 {
        fine(what, d.get(&k));
        fine(what, d.contains_key(&k));
    }
    fine(what, d.insert(7, "seven".into()));
    fine(what, d.insert(1000, "new".into()));
    fine(what, d.update_with(&3, |_| "three".into()));
    fine(what, d.remove(&5));
    fine(what, d.discard(&6));
    fine(what, d.update((200..260).map(|k| (k, "many".into()))));
    fine(what, d.try_lock().map(drop));
    if fine(what, d.clear()) && strict {
        // A successful clear makes a whole, empty dict.
        assert!(d.is_empty().unwrap(), "{what}");
        d.insert(1, "one".into()).unwrap();
        assert_eq!(d.items().unwrap(), [(1, "one".to_string())], "{what}");
        return true;
    }
    false
}

fn poke_list(l: &List<String>, what: &str, strict: bool) -> bool {
    fine(what, l.len());
    fine(what, l.snapshot());
    for i in 0..45 {
        fine(what, l.get(i));
    }
    fine(what, l.set(3, "three".into()));
    fine(what, l.update_with(4, |s| s + "!"));
    fine(what, l.push("pushed".into()));
    fine(what, l.extend((0..60).map(|i| i.to_string())));
    fine(what, l.pop());
    if fine(what, l.clear()) && strict {
        assert!(l.is_empty().unwrap(), "{what}");
        l.push("one".into()).unwrap();
        assert_eq!(l.snapshot().unwrap(), ["one"], "{what}");
        return true;
    }
    false
}

fn poke_namespace(ns: &Namespace, what: &str) {
    fine(what, ns.names());
    for i in 0..25 {
        fine(what, ns.get::<String>(&format!("f{i}")));
        fine(what, ns.contains(&format!("f{i}")));
    }
    fine(what, ns.set("f1", 1.5f64));
    fine(what, ns.set("new", "new".to_string()));
    fine(what, ns.update_with("f2", |_: Option<u8>| 2));
    fine(what, ns.remove("f3"));
}

/// Reads word `at` of a container's control block (the root, `len`, the repair flag).
fn ctrl_word(seg: &shmproc::Segment, at: usize) -> u64 {
    assert!(at % 8 == 0 && at + 8 <= seg.len());
    // SAFETY: in bounds and 8-aligned (checked; the data area is page-aligned); nobody writes the segment meanwhile (or, while a
    // scribbler runs, a torn read is as good as any other garbage).
    unsafe { seg.as_ptr().add(at).cast::<u64>().read_volatile() }
}

/// The repair flag: after the counters (see src/manager/store.rs).
const REPAIR: usize = 56;

/// The table capacity of the root word, if the library accepts it (the checks of
/// `Locked::root` in src/manager/store.rs).
fn valid_root_cap(seg: &shmproc::Segment) -> Option<u64> {
    let w = ctrl_word(seg, ROOT);
    let half = ((seg.len() - CTRL) / 2) & !7;
    let (log, top) = ((w >> 57) & 63, (w & ((1 << 57) - 1)) as usize);
    let ok = (3..=36).contains(&log) && {
        let table = 8usize << log;
        table <= half && top >= table && top <= half && top % 8 == 0
    };
    ok.then(|| 1 << log)
}

/// A root word the library rejects makes every call fail with `Corrupt` (`try_lock` may
/// still take the lock, unless a repair is pending, which fails on the root too).
fn corrupt<T: std::fmt::Debug>(what: &str, r: Result<T, ManagerError>) {
    assert!(
        matches!(r, Err(ManagerError::Corrupt(_))),
        "{what}: {r:?}, not Corrupt, with a rejected root word"
    );
}

/// What a control block left as it was says about the outcome: with the root word accepted
/// and no repair pending, `clear` must succeed (it needs nothing else).
fn clear_must_work(seg: &shmproc::Segment) -> bool {
    valid_root_cap(seg).is_some() && ctrl_word(seg, REPAIR) == 0
}

/// Pokes a dict a child scribbled on with `how` (nobody writes meanwhile) and asserts every
/// outcome that is determined; returns whether it was cleared back to health.
fn check_scribbled_dict(d: &Dict<u64, String>, how: Scribble, what: &str) -> bool {
    let must_clear = clear_must_work(d.segment());
    if valid_root_cap(d.segment()).is_none() {
        corrupt(what, d.len());
        corrupt(what, d.items());
        corrupt(what, d.keys());
        corrupt(what, d.values());
        for k in 0..45 {
            corrupt(what, d.get(&k));
            corrupt(what, d.contains_key(&k));
        }
        corrupt(what, d.insert(7, "seven".into()));
        corrupt(what, d.update_with(&3, |_| "three".into()));
        corrupt(what, d.remove(&5));
        corrupt(what, d.discard(&6));
        corrupt(what, d.update((200..260).map(|k| (k, "many".into()))));
        fine(what, d.try_lock().map(drop));
        corrupt(what, d.clear());
        return false;
    }
    if matches!(how, Scribble::Len | Scribble::Hints) {
        // Only hints changed: the dict reads exactly as it was.
        let mut items = d.items().unwrap();
        items.sort();
        let want: Vec<_> = (0..40).map(|k| (k, format!("value {k}"))).collect();
        assert_eq!(items, want, "{what}");
        for k in 0..45 {
            assert_eq!(
                d.get(&k).unwrap(),
                (k < 40).then(|| format!("value {k}")),
                "{what}"
            );
            assert_eq!(d.contains_key(&k).unwrap(), k < 40, "{what}");
        }
        d.insert(7, "seven".into()).unwrap();
        assert_eq!(d.get(&7).unwrap().as_deref(), Some("seven"), "{what}");
        assert_eq!(d.remove(&5).unwrap().as_deref(), Some("value 5"), "{what}");
        assert_eq!(d.get(&5).unwrap(), None, "{what}");
    }
    let cleared = poke_dict(d, what, true);
    assert!(
        cleared || !must_clear,
        "{what}: root word accepted and no repair pending, yet clear failed"
    );
    cleared
}

/// As [`check_scribbled_dict`], for a list (40 elements `element {i}` before the scribble).
fn check_scribbled_list(l: &List<String>, how: Scribble, what: &str) -> bool {
    let must_clear = clear_must_work(l.segment());
    let Some(cap) = valid_root_cap(l.segment()) else {
        corrupt(what, l.len());
        corrupt(what, l.snapshot());
        for i in 0..45 {
            corrupt(what, l.get(i));
        }
        corrupt(what, l.set(3, "three".into()));
        corrupt(what, l.update_with(4, |s| s + "!"));
        corrupt(what, l.push("pushed".into()));
        corrupt(what, l.extend((0..60).map(|i| i.to_string())));
        corrupt(what, l.pop());
        corrupt(what, l.clear());
        return false;
    };
    if matches!(how, Scribble::Len | Scribble::Hints) {
        // Only `len` changed: a prefix of the 40 elements, or `Corrupt` past them (their
        // table words are zero, which no record has) or past the table.
        let len = ctrl_word(l.segment(), LEN);
        let elem = |i: u64| format!("element {i}");
        if len > cap {
            corrupt(what, l.len());
            corrupt(what, l.snapshot());
            corrupt(what, l.get(0));
        } else {
            assert_eq!(l.len().unwrap() as u64, len, "{what}");
            for i in 0..len.min(40) {
                assert_eq!(l.get(i as usize).unwrap(), Some(elem(i)), "{what}");
            }
            for i in 40..len {
                corrupt(what, l.get(i as usize));
            }
            assert_eq!(l.get(len as usize).unwrap(), None, "{what}");
            if len <= 40 {
                let want: Vec<_> = (0..len).map(elem).collect();
                assert_eq!(l.snapshot().unwrap(), want, "{what}");
            } else {
                corrupt(what, l.snapshot());
            }
        }
    }
    let cleared = poke_list(l, what, true);
    assert!(
        cleared || !must_clear,
        "{what}: root word accepted and no repair pending, yet clear failed"
    );
    cleared
}

/// As [`check_scribbled_dict`], for a namespace (fields `f{i}` = `field {i}`, 0..20, before).
fn check_scribbled_namespace(ns: &Namespace, how: Scribble, what: &str) {
    if valid_root_cap(ns.segment()).is_none() {
        corrupt(what, ns.names());
        for i in 0..25 {
            corrupt(what, ns.get::<String>(&format!("f{i}")));
            corrupt(what, ns.contains(&format!("f{i}")));
        }
        corrupt(what, ns.set("f1", 1.5f64));
        corrupt(what, ns.set("new", "new".to_string()));
        corrupt(what, ns.update_with("f2", |_: Option<u8>| 2));
        corrupt(what, ns.remove("f3"));
        return;
    }
    if matches!(how, Scribble::Len | Scribble::Hints) {
        let mut names = ns.names().unwrap();
        names.sort();
        let mut want: Vec<_> = (0..20).map(|i| format!("f{i}")).collect();
        want.sort();
        assert_eq!(names, want, "{what}");
        for i in 0..25 {
            let name = format!("f{i}");
            let v = ns.get::<String>(&name).unwrap();
            assert_eq!(v, (i < 20).then(|| format!("field {i}")), "{what}");
            assert_eq!(ns.contains(&name).unwrap(), i < 20, "{what}");
        }
        ns.set("f1", 1.5f64).unwrap();
        assert_eq!(ns.get::<f64>("f1").unwrap(), Some(1.5), "{what}");
        assert!(ns.remove("f3").unwrap(), "{what}");
        assert!(!ns.contains("f3").unwrap(), "{what}");
    }
    poke_namespace(ns, what);
}

#[test]
fn garbage_written_by_a_child_gives_errors_not_panics_or_hangs() {
    let _g = shared();
    let mut rng = XorShift(seed("garbage"));
    for m in METHODS {
        let rounds = 2 * SCRIBBLES.len();
        let mk = Manager::with_limit(SMALL);
        let ds: Vec<Dict<u64, String>> = (0..rounds)
            .map(|_| {
                let d = mk.dict().unwrap();
                d.update((0..40).map(|k| (k, format!("value {k}")))).unwrap();
                d
            })
            .collect();
        let ls: Vec<List<String>> = (0..rounds)
            .map(|_| {
                let l = mk.list().unwrap();
                l.extend((0..40).map(|k| format!("element {k}"))).unwrap();
                l
            })
            .collect();
        let nss: Vec<Namespace> = (0..rounds)
            .map(|_| {
                let ns = mk.namespace().unwrap();
                for i in 0..20 {
                    ns.set(&format!("f{i}"), format!("field {i}")).unwrap();
                }
                ns
            })
            .collect();
        let args = (ds.to_vec(), ls.to_vec(), nss.to_vec(), rng.next() | 1);
        assert_eq!(join(&mut start(m, scribble_all, args)), 3 * rounds, "{m:?}");
        let (cleared_d, cleared_l) = bounded(&format!("{m:?} scribbled containers"), move || {
            let (mut cd, mut cl) = (0, 0);
            let mut i = 0;
            for d in &ds {
                let how = SCRIBBLES[i % SCRIBBLES.len()];
                cd += check_scribbled_dict(d, how, &format!("{m:?} dict {how:?}")) as u32;
                i += 1;
            }
            for l in &ls {
                let how = SCRIBBLES[i % SCRIBBLES.len()];
                cl += check_scribbled_list(l, how, &format!("{m:?} list {how:?}")) as u32;
                i += 1;
            }
            for ns in &nss {
                let how = SCRIBBLES[i % SCRIBBLES.len()];
                check_scribbled_namespace(ns, how, &format!("{m:?} namespace {how:?}"));
                i += 1;
            }
            (cd, cl)
        });
        println!("{m:?}: {cleared_d}/{rounds} dicts and {cleared_l}/{rounds} lists cleared back to health");
        // Six of the nine scribbles leave the root word valid and the repair flag alone.
        let root_kept = (0..rounds)
            .filter(|i| {
                !matches!(
                    SCRIBBLES[i % SCRIBBLES.len()],
                    Scribble::Everything | Scribble::Root | Scribble::Sparse
                )
            })
            .count() as u32;
        assert!(
            cleared_d >= root_kept && cleared_l >= root_kept,
            "{m:?}: {cleared_d} dicts and {cleared_l} lists of {rounds} cleared, {root_kept} must be"
        );
    }
}

/// Scribbles on the three containers (lock words excepted) until `stop`, without their locks.
fn scribble_meanwhile(
    (d, l, ns, ready, stop, seed): (Dict<u64, String>, List<String>, Namespace, Event, Event, u64),
) -> u64 {
    let mut rng = XorShift(seed);
    let segs = [d.segment(), l.segment(), ns.segment()];
    let mild = [
        Scribble::Table,
        Scribble::Records,
        Scribble::Sparse,
        Scribble::Len,
        Scribble::PlausibleRoot,
        Scribble::Hints,
    ];
    let mut n = 0;
    while !stop.is_set() {
        let how = if rng.below(50) == 0 {
            SCRIBBLES[rng.below(SCRIBBLES.len() as u64) as usize]
        } else {
            mild[rng.below(mild.len() as u64) as usize]
        };
        scribble(segs[rng.below(3) as usize], how, &mut rng);
        n += 1;
        if n == 1 {
            ready.set();
        }
        if rng.below(4) == 0 {
            std::thread::yield_now();
        }
    }
    n
}

#[test]
fn garbage_written_by_a_child_during_operations_gives_errors_not_panics_or_hangs() {
    let _g = shared();
    let mut rng = XorShift(seed("concurrent garbage"));
    for m in METHODS {
        let mk = Manager::with_limit(SMALL);
        let d = mk.dict::<u64, String>().unwrap();
        let l = mk.list::<String>().unwrap();
        let ns = mk.namespace().unwrap();
        let (ready, stop) = (Event::new().unwrap(), Event::new().unwrap());
        let args = (
            d.clone(),
            l.clone(),
            ns.clone(),
            ready.clone(),
            stop.clone(),
            rng.next() | 1,
        );
        let mut child = start(m, scribble_meanwhile, args);
        await_ready(&ready, &child, "scribbler");
        let what = format!("{m:?} concurrent garbage");
        let (d, l, ns) = bounded(&what.clone(), move || {
            let t0 = Instant::now();
            while t0.elapsed() < ms(400) {
                // Refill what the scribbler broke (when the root still allows it), then poke.
                if fine(&what, d.clear()) {
                    fine(&what, d.update((0..40).map(|k| (k, format!("value {k}")))));
                }
                if fine(&what, l.clear()) {
                    fine(&what, l.extend((0..40).map(|k| format!("element {k}"))));
                }
                poke_dict(&d, &what, false);
                poke_list(&l, &what, false);
                poke_namespace(&ns, &what);
            }
            (d, l, ns)
        });
        stop.set();
        let n = join(&mut child);
        println!("{m:?}: {n} scribbles during the operations");
        assert!(n >= 1, "{m:?}: the scribbler never scribbled");
        // The scribbler is gone: whatever it left, a clear that the control block allows
        // must work and leave a healthy container.
        let what = format!("{m:?} after concurrent garbage");
        bounded(&what.clone(), move || {
            let (dict_clears, list_clears) = (clear_must_work(d.segment()), clear_must_work(l.segment()));
            let cleared = poke_dict(&d, &what, true);
            assert!(
                cleared || !dict_clears,
                "{what}: dict root accepted, no repair pending, clear failed"
            );
            let cleared = poke_list(&l, &what, true);
            assert!(
                cleared || !list_clears,
                "{what}: list root accepted, no repair pending, clear failed"
            );
            if valid_root_cap(ns.segment()).is_none() {
                check_scribbled_namespace(&ns, Scribble::Root, &what);
            } else {
                poke_namespace(&ns, &what);
            }
        });
    }
}

/// Writes `u64::MAX` into the `used` and `live` hints of the control block.
fn max_out_hints(d: Dict<u64, u64>) {
    for at in HINTS.step_by(8) {
        // SAFETY: in bounds and 8-aligned; the parent does not use the dict meanwhile.
        unsafe {
            d.segment()
                .as_ptr()
                .add(at)
                .cast::<u64>()
                .write_volatile(u64::MAX)
        };
    }
}

#[test]
fn hints_full_of_garbage_do_not_panic() {
    let _g = shared();
    for m in METHODS {
        let d = Dict::<u64, u64>::with_limit(SMALL).unwrap();
        d.insert(1, 1).unwrap();
        join(&mut start(m, max_out_hints, d.clone()));
        bounded("insert after garbage hints", move || {
            // The hints are only hints: `used` past the table sends the insert to a
            // compaction, which counts from the table and succeeds.
            d.insert(2, 2).unwrap();
            let mut items = d.items().unwrap();
            items.sort();
            assert_eq!(items, [(1, 1), (2, 2)], "{m:?}");
            assert_eq!(d.len().unwrap(), 2, "{m:?}");
            assert_eq!(d.get(&1).unwrap(), Some(1), "{m:?}");
            d.insert(3, 3).unwrap();
            assert!(d.remove(&1).unwrap().is_some(), "{m:?}");
            assert_eq!(d.len().unwrap(), 2, "{m:?}");
        });
    }
}

// ------------------------------------------------------------------------------------------
// 7. WouldDeadlock
// ------------------------------------------------------------------------------------------

#[test]
fn using_a_container_inside_its_own_critical_section_is_would_deadlock() {
    let _g = shared();
    bounded("would deadlock", || {
        let d = Dict::<String, u64>::new().unwrap();
        let k = "k".to_string();
        d.insert(k.clone(), 1).unwrap();
        let mut inner = None;
        let out = d
            .update_with(&k, |v| {
                inner = Some(d.get(&k));
                v.unwrap() + 1
            })
            .unwrap();
        assert_eq!(out, 2);
        assert!(
            matches!(inner, Some(Err(ManagerError::WouldDeadlock))),
            "{inner:?}"
        );
        assert_eq!(d.get(&k).unwrap(), Some(2));
        // Through another handle of the same dict as well, and every blocking form.
        let d2 = d.clone();
        let mut inner = Vec::new();
        d.update_with(&k, |v| {
            inner.push(d2.insert("x".into(), 0).err());
            inner.push(d2.lock_timeout(ms(50)).err());
            inner.push(d2.lock().err());
            v.unwrap() + 1
        })
        .unwrap();
        assert!(
            inner
                .iter()
                .all(|e| matches!(e, Some(ManagerError::WouldDeadlock))),
            "{inner:?}"
        );
        {
            let g = d.lock().unwrap();
            assert!(matches!(d.len(), Err(ManagerError::WouldDeadlock)));
            assert!(matches!(d.try_lock(), Err(ManagerError::WouldBlock)));
            assert_eq!(g.get(&k).unwrap(), Some(3));
            // Another thread just waits (or times out): it is not the holder.
            let d3 = d.clone();
            let r = std::thread::spawn(move || {
                (
                    matches!(d3.try_lock(), Err(ManagerError::WouldBlock)),
                    matches!(d3.lock_timeout(ms(30)), Err(ManagerError::Timeout)),
                )
            })
            .join()
            .unwrap();
            assert_eq!(r, (true, true));
        }
        assert_eq!(d.len().unwrap(), 1);

        let l = List::<u64>::new().unwrap();
        l.push(1).unwrap();
        let mut inner = None;
        assert_eq!(
            l.update_with(0, |v| {
                inner = Some(l.push(9));
                v + 1
            })
            .unwrap(),
            2
        );
        assert!(
            matches!(inner, Some(Err(ManagerError::WouldDeadlock))),
            "{inner:?}"
        );
        assert_eq!(l.snapshot().unwrap(), [2]);

        let ns = Namespace::new().unwrap();
        let mut inner = None;
        assert_eq!(
            ns.update_with("n", |v: Option<u32>| {
                inner = Some(ns.names());
                v.unwrap_or(0) + 5
            })
            .unwrap(),
            5
        );
        assert!(
            matches!(inner, Some(Err(ManagerError::WouldDeadlock))),
            "{inner:?}"
        );
        assert_eq!(ns.get::<u32>("n").unwrap(), Some(5));
    });
}

// ------------------------------------------------------------------------------------------
// 8. Nested values: a copy is a copy, update_with writes back
// ------------------------------------------------------------------------------------------

fn append_to_nested((d, go, id): (Dict<String, Vec<u32>>, Event, u32)) -> Vec<u32> {
    assert!(go.wait_timeout(LONG).is_ok());
    let k = "k".to_string();
    // The pitfall: changing a copy changes nothing.
    let mut copy = d.get(&k).unwrap().unwrap_or_default();
    copy.push(999_999);
    for i in 0..100 {
        d.update_with(&k, |v| {
            let mut v = v.unwrap_or_default();
            v.push(id * 1000 + i);
            v
        })
        .unwrap();
    }
    copy
}

#[test]
fn a_nested_value_copy_does_not_write_back_but_update_with_does() {
    let _g = shared();
    for m in METHODS {
        bounded(&format!("{m:?} nested"), move || {
            let d = Dict::<String, Vec<u32>>::new().unwrap();
            let k = "k".to_string();
            d.insert(k.clone(), vec![]).unwrap();
            let mut copy = d.get(&k).unwrap().unwrap();
            copy.push(1);
            assert_eq!(d.get(&k).unwrap(), Some(vec![]), "{m:?}: a copy wrote back");
            let go = Event::new().unwrap();
            let mut kids: Vec<_> = (1..=3u32)
                .map(|id| start(m, append_to_nested, (d.clone(), go.clone(), id)))
                .collect();
            go.set();
            for i in 0..100 {
                d.update_with(&k, |v| {
                    let mut v = v.unwrap();
                    v.push(i);
                    v
                })
                .unwrap();
            }
            for kid in &mut kids {
                assert_eq!(join(kid).last(), Some(&999_999));
            }
            let v = d.get(&k).unwrap().unwrap();
            assert!(!v.contains(&999_999), "{m:?}: a child's copy wrote back");
            let mut sorted = v.clone();
            sorted.sort();
            let mut want: Vec<u32> = (0..100)
                .chain((1..=3).flat_map(|id| (0..100).map(move |i| id * 1000 + i)))
                .collect();
            want.sort();
            assert_eq!(sorted, want, "{m:?}: an append was lost");
            // Each process's appends stay in its order.
            for id in 0..=3u32 {
                let mine: Vec<u32> = v.iter().copied().filter(|x| x / 1000 == id).collect();
                assert!(mine.windows(2).all(|w| w[0] < w[1]), "{m:?}: {mine:?}");
            }
        });
    }
}

// ------------------------------------------------------------------------------------------
// 9. Handles in pool initializer arguments
// ------------------------------------------------------------------------------------------

static COUNTS: OnceLock<Dict<String, u64>> = OnceLock::new();

fn keep_counts(d: Dict<String, u64>) {
    COUNTS.set(d).expect("the initializer runs once a worker");
}

fn count_word(w: String) -> u64 {
    let d = COUNTS.get().expect("the initializer's dict");
    d.update_with(&w, |n| n.unwrap_or(0) + 1).unwrap()
}

#[test]
fn a_dict_handed_to_pool_workers_by_the_initializer_counts_their_tasks() {
    let _g = shared();
    for m in METHODS {
        bounded(&format!("{m:?} pool initializer"), move || {
            let d = Dict::<String, u64>::new().unwrap();
            let pool = Pool::builder()
                .processes(2)
                .start_method(m)
                .initializer(keep_counts, d.clone())
                .build()
                .unwrap_or_else(|e| panic!("{m:?}: build a pool with a dict initializer argument: {e}"));
            let ws = words(700);
            let r = pool.map(count_word, ws.clone());
            let r = r.unwrap_or_else(|e| panic!("{m:?}: map with a dict from the initializer: {e}"));
            assert_eq!(r.len(), ws.len());
            let mut items = d.items().unwrap();
            items.sort();
            let want: Vec<(String, u64)> = (0..7).map(|i| (format!("w{i}"), 100)).collect();
            assert_eq!(items, want, "{m:?}");
            pool.close();
            pool.join().unwrap();
        });
    }
}

#[test]
fn replacement_workers_get_the_initializer_handles_too() {
    let _g = shared();
    for m in METHODS {
        bounded(&format!("{m:?} replaced workers"), move || {
            let d = Dict::<String, u64>::new().unwrap();
            // Every worker runs one chunk, then a fresh one starts and decodes its own handle.
            let pool = Pool::builder()
                .processes(2)
                .start_method(m)
                .maxtasksperchild(1)
                .initializer(keep_counts, d.clone())
                .build()
                .unwrap();
            let ws = words(70);
            assert_eq!(pool.map_chunked(count_word, ws, 5).unwrap().len(), 70, "{m:?}");
            let total: u64 = d.values().unwrap().iter().sum();
            assert_eq!(total, 70, "{m:?}: every one of the 14 chunks counted");
            pool.close();
            pool.join().unwrap();
        });
    }
}

/// For the thread backend, whose initializer runs in this test process: its own static.
static THREAD_COUNTS: OnceLock<Dict<String, u64>> = OnceLock::new();

fn keep_thread_counts(d: Dict<String, u64>) {
    let _ = THREAD_COUNTS.set(d);
}

fn count_word_in_thread(w: String) -> u64 {
    let d = THREAD_COUNTS.get().expect("the initializer ran");
    d.update_with(&w, |c| c.unwrap_or(0) + 1).expect("update")
}

#[test]
fn a_dict_handed_to_a_thread_pool_by_the_initializer_counts_its_tasks() {
    let _g = shared();
    bounded("thread pool initializer", || {
        let d = Dict::<String, u64>::new().unwrap();
        let pool = Pool::builder()
            .threads(true)
            .processes(2)
            .initializer(keep_thread_counts, d.clone())
            .build()
            .unwrap();
        let ws = words(700);
        assert_eq!(pool.map(count_word_in_thread, ws).unwrap().len(), 700);
        let mut items = d.items().unwrap();
        items.sort();
        let want: Vec<(String, u64)> = (0..7).map(|i| (format!("w{i}"), 100)).collect();
        assert_eq!(items, want);
        pool.close();
        pool.join().unwrap();
    });
}

// ------------------------------------------------------------------------------------------
// 10. Leaks
// ------------------------------------------------------------------------------------------

fn use_all((d, l, ns): (Dict<u64, u64>, List<u64>, Namespace)) -> usize {
    d.update_with(&1, |v| v.unwrap_or(0) + 1).unwrap();
    l.push(1).unwrap();
    ns.set("x", 1u8).unwrap();
    d.len().unwrap() + l.len().unwrap()
}

fn hold_and_die((d, ready): (Dict<u64, u64>, Event)) {
    let _g = d.lock().unwrap();
    ready.set();
    sleep_forever();
}

fn leak_scenario(m: StartMethod) {
    let mgr = Manager::with_limit(SMALL);
    let d = mgr.dict::<u64, u64>().unwrap();
    let l = mgr.list::<u64>().unwrap();
    let ns = mgr.namespace().unwrap();
    for _ in 0..2 {
        let args = (d.clone(), l.clone(), ns.clone());
        join(&mut start(m, use_all, args));
    }
    let ready = Event::new().unwrap();
    let mut child = start(m, hold_and_die, (d.clone(), ready.clone()));
    await_ready(&ready, &child, "leak holder");
    kill_and_reap(&mut child);
    assert_eq!(d.get(&1).unwrap(), Some(2));
    assert_eq!(d.recoveries(), 1);
    // A dropped handle of a running child, killed by dropping (daemon) or not.
    let ready = Event::new().unwrap();
    let child = start(m, hold_and_die, (d.clone(), ready.clone()));
    await_ready(&ready, &child, "leak holder 2");
    child.kill().unwrap();
    drop(child);
    assert_eq!(d.len().unwrap(), 1);
    assert_eq!(l.snapshot().unwrap(), [1, 1]);
    // The handles of a Fork child closure.
    let (d2, l2) = (d.clone(), l.clone());
    if m == StartMethod::Fork {
        let mut p = Process::fork(move || {
            l2.push(2).unwrap();
            d2.len().unwrap()
        })
        .start()
        .unwrap();
        assert_eq!(p.join_timeout(JOIN).unwrap(), 1);
    }
}

#[test]
fn nothing_leaks_after_children_used_and_were_killed_with_containers() {
    let _g = exclusive();
    // Warm up lazily created process-wide state (panic hook, spawn helper) first.
    for m in METHODS {
        join(&mut start(
            m,
            use_all,
            (
                Dict::new().unwrap(),
                List::new().unwrap(),
                Namespace::new().unwrap(),
            ),
        ));
    }
    assert_leaves_nothing(leak_scenario);
}

// ------------------------------------------------------------------------------------------
// Bugs
// ------------------------------------------------------------------------------------------

/// 12 entries in a table of 16 words (the most a 16-word table takes) whose records fill
/// most of a 4 KiB dict's half.
fn full_small_dict() -> Dict<u64, Vec<u8>> {
    let d = Dict::<u64, Vec<u8>>::with_limit(4096).unwrap();
    for k in 0..12 {
        d.insert(k, vec![k as u8; 140]).unwrap();
    }
    d
}

fn hold_small((d, ready): (Dict<u64, Vec<u8>>, Event)) {
    let _g = d.lock().unwrap();
    ready.set();
    sleep_forever();
}

#[test]
fn a_full_dict_recovers_from_a_killed_holder() {
    let _g = shared();
    for m in METHODS {
        let d = full_small_dict();
        assert_eq!(d.len().unwrap(), 12);
        let ready = Event::new().unwrap();
        let mut child = start(m, hold_small, (d.clone(), ready.clone()));
        await_ready(&ready, &child, "small holder");
        kill_and_reap(&mut child);
        let d = bounded("read after take-over", move || {
            let r = d.get(&3);
            assert_eq!(
                r.as_ref().ok(),
                Some(&Some(vec![3u8; 140])),
                "{m:?}: get after a take-over: {r:?}"
            );
            d
        });
        assert_eq!(d.recoveries(), 1);
        assert_eq!(d.len().unwrap(), 12);
    }
}

#[test]
fn replacing_a_value_at_full_load_only_compacts() {
    let _g = shared();
    // 12 entries (the most a 16-word table takes) of 136-byte records: 128 + 12 * 136 = 1760
    // bytes of a 1984-byte half. A compaction for a replacement needs 1760 + 136 = 1896 bytes
    // with the same table, 2024 with a 32-word one.
    let d = Dict::<u64, Vec<u8>>::with_limit(4096).unwrap();
    for k in 0..12 {
        d.insert(k, vec![k as u8; 126]).unwrap();
    }
    for round in 0..20u8 {
        let r = d.insert(0, vec![round; 126]);
        assert!(r.is_ok(), "replacement {round}: {r:?}");
    }
    assert_eq!(d.get(&0).unwrap(), Some(vec![19; 126]));
}

// ------------------------------------------------------------------------------------------
// 11. Named containers, for processes that share no handle
// ------------------------------------------------------------------------------------------

/// Opens the containers by name only (as an unrelated program would) and writes to them.
fn open_by_name(base: String) -> Result<u64, String> {
    let d = Dict::<String, u64>::open_named(&format!("{base}-d")).map_err(|e| e.to_string())?;
    let l = List::<u64>::open_named(&format!("{base}-l")).map_err(|e| e.to_string())?;
    let ns = Namespace::open_named(&format!("{base}-n")).map_err(|e| e.to_string())?;
    if !matches!(
        Dict::<u64, u64>::open_named(&format!("{base}-d")),
        Err(ManagerError::Segment(
            shmproc::SegmentError::LayoutMismatch { .. }
        ))
    ) {
        return Err("a dict opened with other types was not refused".into());
    }
    d.update_with("child", |v| v.unwrap_or(0) + 1)
        .map_err(|e| e.to_string())?;
    l.push(7).map_err(|e| e.to_string())?;
    ns.set("from", "child".to_string()).map_err(|e| e.to_string())?;
    d.get("parent")
        .map_err(|e| e.to_string())?
        .ok_or("no parent key".to_string())
}

#[test]
fn named_containers_are_shared_by_name_and_unlinked_by_their_creator() {
    let _g = shared();
    for m in METHODS {
        let base = format!("/shmproc-test-mgr-{}-{m:?}", std::process::id());
        let d = Dict::<String, u64>::create_named(&format!("{base}-d"), 1 << 20).unwrap();
        let l = List::<u64>::create_named(&format!("{base}-l"), 1 << 20).unwrap();
        let ns = Namespace::create_named(&format!("{base}-n"), 1 << 20).unwrap();
        assert!(matches!(
            Dict::<String, u64>::create_named(&format!("{base}-d"), 1 << 20),
            Err(ManagerError::Segment(shmproc::SegmentError::AlreadyExists(_)))
        ));
        let leaf = |suffix: &str| format!("{}-{suffix}", &base[1..]);
        assert!(dev_shm().contains(&leaf("d")), "{m:?}: the name exists");
        d.insert("parent".into(), 41).unwrap();
        let mut child = start(m, open_by_name, base.clone());
        assert_eq!(join(&mut child), Ok(41), "{m:?}");
        assert_eq!(d.get("child").unwrap(), Some(1));
        assert_eq!(l.snapshot().unwrap(), [7]);
        assert_eq!(ns.get::<String>("from").unwrap().as_deref(), Some("child"));
        drop((d, l, ns));
        for s in ["d", "l", "n"] {
            assert!(!dev_shm().contains(&leaf(s)), "{m:?}: {s} unlinked on drop");
        }
        assert!(matches!(
            Dict::<String, u64>::open_named(&format!("{base}-d")),
            Err(ManagerError::Segment(shmproc::SegmentError::NotFound(_)))
        ));
    }
}

// ------------------------------------------------------------------------------------------
// 12. setdefault races
// ------------------------------------------------------------------------------------------

/// Waits for the start signal, then claims 50 keys with its own id; returns what it saw.
fn claim_keys((d, go, id): (Dict<u64, u32>, Event, u32)) -> Vec<u32> {
    assert!(go.wait_timeout(LONG).is_ok(), "no start signal");
    (0..50)
        .map(|k| d.setdefault(k, id).expect("setdefault"))
        .collect()
}

#[test]
fn processes_racing_setdefault_all_see_the_one_value_inserted() {
    let _g = shared();
    for m in METHODS {
        let d = Dict::<u64, u32>::new().unwrap();
        let go = Event::new().unwrap();
        let mut kids: Vec<_> = (1..=3)
            .map(|id| start(m, claim_keys, (d.clone(), go.clone(), id)))
            .collect();
        go.set();
        let seen: Vec<Vec<u32>> = kids.iter_mut().map(join).collect();
        let stored: Vec<u32> = (0..50).map(|k| d.get(&k).unwrap().unwrap()).collect();
        for (i, s) in seen.iter().enumerate() {
            assert_eq!(
                s,
                &stored,
                "{m:?}: child {} saw another value than the one stored",
                i + 1
            );
        }
        assert!(stored.iter().all(|v| (1..=3).contains(v)));
    }
}

#[test]
fn a_value_claiming_endless_zero_sized_elements_is_a_codec_error_not_a_hang() {
    let _g = shared();
    bounded("decode a huge Vec<()>", || {
        let ns = Namespace::new().unwrap();
        // 2^60 encodes exactly like the length prefix of a `Vec<()>` of 2^60 elements.
        ns.set("n", 1u64 << 60).unwrap();
        assert!(matches!(ns.get::<Vec<()>>("n"), Err(ManagerError::Codec(_))));
        ns.set("n", vec![(); 5]).unwrap();
        assert_eq!(ns.get::<Vec<()>>("n").unwrap(), Some(vec![(); 5]));
    });
}

// ------------------------------------------------------------------ borrowed keys (issue 14)

/// The `HashMap`-style pairs a Rust user writes: `String`/`str`, `Vec<u8>`/`[u8]`,
/// `Box<T>`/`T`.
type BorrowArgs = (
    Dict<String, u32>,
    Dict<Vec<u8>, String>,
    Dict<Box<(u32, String)>, u8>,
);

/// In a child: every lookup with a borrowed key, present and absent, and the writes that
/// take the owned key by value.
fn borrowed_lookups((s, v, b): BorrowArgs) -> u32 {
    // String / str.
    assert_eq!(s.get("parent").unwrap(), Some(1));
    assert!(s.contains_key("parent").unwrap());
    assert_eq!(s.get("absent").unwrap(), None);
    assert!(!s.contains_key("absent").unwrap());
    assert_eq!(s.remove("absent").unwrap(), None);
    assert!(!s.discard("absent").unwrap());
    assert_eq!(s.update_with("child", |n| n.unwrap_or(0) + 10).unwrap(), 10);
    assert_eq!(s.insert("parent".to_string(), 2).unwrap(), Some(1));
    assert_eq!(s.insert("fresh".to_string(), 3).unwrap(), None);
    assert_eq!(s.setdefault("fresh".to_string(), 99).unwrap(), 3);
    assert_eq!(s.remove("gone").unwrap(), Some(7));
    {
        let mut g = s.lock().unwrap();
        assert_eq!(g.get("child").unwrap(), Some(10));
        assert_eq!(g.get("nobody").unwrap(), None);
        assert!(g.contains_key("fresh").unwrap() && !g.contains_key("nobody").unwrap());
        assert_eq!(g.update_with("guarded", |n| n.unwrap_or(5)).unwrap(), 5);
        assert!(g.discard("guarded").unwrap());
        assert_eq!(g.remove("nobody").unwrap(), None);
    }
    // Vec<u8> / [u8].
    assert_eq!(v.get(&[1u8, 2][..]).unwrap(), Some("one-two".to_string()));
    assert_eq!(v.get(&[2u8, 1][..]).unwrap(), None);
    assert_eq!(v.get(&[][..]).unwrap(), Some("empty".to_string()));
    assert_eq!(v.remove(&[1u8, 2][..]).unwrap(), Some("one-two".to_string()));
    assert!(!v.contains_key(&[1u8, 2][..]).unwrap());
    assert_eq!(
        v.update_with(&[3u8][..], |o| o.unwrap_or_default() + "three")
            .unwrap(),
        "three"
    );
    // Box<T> / T.
    let key = (7u32, "seven".to_string());
    assert_eq!(b.get(&key).unwrap(), Some(7));
    assert_eq!(b.get(&(7u32, "other".to_string())).unwrap(), None);
    assert!(b.discard(&key).unwrap());
    assert_eq!(b.insert(Box::new((8, "eight".into())), 8).unwrap(), None);
    s.len().unwrap() as u32
}

#[test]
fn borrowed_keys_find_owned_keys_in_a_child() {
    let _g = shared();
    for m in METHODS {
        bounded(&format!("{m:?} borrowed keys"), move || {
            let s = Dict::<String, u32>::with_limit(SMALL).unwrap();
            assert_eq!(s.insert("parent".into(), 1).unwrap(), None);
            assert_eq!(s.insert("gone".into(), 7).unwrap(), None);
            let v = Dict::<Vec<u8>, String>::with_limit(SMALL).unwrap();
            v.insert(vec![1, 2], "one-two".into()).unwrap();
            v.insert(vec![], "empty".into()).unwrap();
            let b = Dict::<Box<(u32, String)>, u8>::with_limit(SMALL).unwrap();
            b.insert(Box::new((7, "seven".into())), 7).unwrap();

            let mut child = start(m, borrowed_lookups, (s.clone(), v.clone(), b.clone()));
            assert_eq!(join(&mut child), 3, "{m:?}: parent, child, fresh");

            // What the child stored under a borrowed key reads back as the owned key.
            let mut keys = s.keys().unwrap();
            keys.sort();
            assert_eq!(keys, ["child", "fresh", "parent"], "{m:?}");
            assert_eq!(s.get(&"child".to_string()).unwrap(), Some(10), "{m:?}");
            assert_eq!(s.get("parent").unwrap(), Some(2), "{m:?}");
            let mut vk = v.items().unwrap();
            vk.sort();
            assert_eq!(
                vk,
                [(vec![], "empty".to_string()), (vec![3], "three".to_string())],
                "{m:?}"
            );
            assert_eq!(
                b.items().unwrap(),
                [(Box::new((8, "eight".to_string())), 8)],
                "{m:?}"
            );
        });
    }
}

#[test]
fn insert_returns_the_replaced_value_like_hashmap() {
    let _g = shared();
    let d = Dict::<String, u64>::with_limit(SMALL).unwrap();
    assert_eq!(d.insert("k".into(), 1).unwrap(), None);
    assert_eq!(d.insert("k".into(), 2).unwrap(), Some(1));
    {
        let mut g = d.lock().unwrap();
        assert_eq!(g.insert("k".into(), 3).unwrap(), Some(2));
        assert_eq!(g.insert("j".into(), 4).unwrap(), None);
    }
    let mut items = d.items().unwrap();
    items.sort();
    assert_eq!(items, [("j".to_string(), 4), ("k".to_string(), 3)]);
}

#[test]
fn manager_error_is_send_sync_static_and_boxes_with_question_mark() {
    const fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}
    const _: () = assert_error::<ManagerError>();
    fn boxed() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Err(ManagerError::Timeout)?
    }
    assert_eq!(
        boxed().unwrap_err().to_string(),
        ManagerError::Timeout.to_string()
    );
}

#[test]
fn a_limit_below_4096_is_refused_not_rounded_up() {
    let _g = shared();
    use shmproc::SegmentError;
    let small =
        |r: Result<(), ManagerError>| matches!(r, Err(ManagerError::Segment(SegmentError::InvalidSize(_))));
    assert!(small(Dict::<u8, u8>::with_limit(4095).map(drop)));
    assert!(small(List::<u8>::with_limit(0).map(drop)));
    assert!(small(Namespace::with_limit(100).map(drop)));
    assert!(small(Manager::with_limit(1).dict::<u8, u8>().map(drop)));
    let name = format!("/shmproc-test-small-limit-{}", std::process::id());
    assert!(small(Dict::<u8, u8>::create_named(&name, 10).map(drop)));
    assert!(
        !dev_shm().iter().any(|n| name.ends_with(n.as_str())),
        "nothing created"
    );
    assert_eq!(Dict::<u8, u8>::with_limit(4096).unwrap().limit(), 4096);
}
