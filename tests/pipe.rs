//! `pipe()`, `pipe_simplex()` and `Connection` across real child processes, with both start
//! methods: duplex echo, simplex order and direction errors, clean close (drain then
//! `Disconnected`, Python's `EOFError`), peers killed by `SIGKILL` in every state, no false
//! disconnect before a child first touches its end, Python's inherited-fd hang that must not
//! happen, ends handed down to grandchildren, the timeout and non-blocking forms, messages
//! far larger than the pipe, `recv_bytes_into`, decode errors, `close()` (also racing the
//! parent's record of a forked child), and leaks after killed children.
//!
//! Every blocking call is bounded — a timeout, `join_timeout`, or a watchdog thread — so a
//! bug fails a test instead of hanging the suite. Children are daemons: one left behind by a
//! failing test dies with the test's thread.
//!
//! Detection times are printed (`--nocapture` shows them) and only checked against a
//! generous bound: these tests check behaviour, not speed.
// std atomics here are user code (e.g. inside a `Shared<T>`); the shim rule is for the library.
#![allow(clippy::disallowed_types)]

mod common;

use std::fmt::Debug;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{
    bounded, dev_shm, eventually, exclusive, join, ms, open_fds, proc_state, shared, start, zombie_children,
    JOIN, LONG, METHODS,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use shmproc::{
    pipe, pipe_simplex, Codec, Connection, Event, Process, ProcessError, RecvError, RecvTimeoutError,
    SendError, SendTimeoutError, Shared, StartMethod, TryRecvError, TrySendError,
};

// ------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------

type Conn<T> = Connection<T>;

/// How long the tests let a thread or child run into a blocking call before acting on it.
const SETTLE: Duration = Duration::from_millis(100);

/// Bound on noticing a gone peer (documented ≈ 20 ms): only there so that a bug fails.
const DETECT_BOUND: Duration = Duration::from_secs(2);

/// A small buffer per direction, to fill a pipe quickly.
const SMALL: usize = 4096;

/// A flag a child raises just before its blocking call.
type Flag = Shared<AtomicU32>;

fn flag() -> Flag {
    Shared::new(AtomicU32::new(0)).unwrap()
}

fn raise(f: &Flag) {
    f.store(1, SeqCst);
}

/// Waits until the child `pid` raised `ready` and went to sleep (state `S`) in the blocking
/// call that follows.
fn wait_blocked(ready: &Flag, pid: u32) {
    assert!(
        eventually(LONG, || ready.load(SeqCst) == 1),
        "child {pid} never got ready"
    );
    std::thread::sleep(SETTLE);
    assert!(
        eventually(LONG, || proc_state(pid) == Some('S')),
        "child {pid} never went to sleep"
    );
}

/// Sends `SIGKILL`; returns when it was sent.
fn kill<R>(p: &Process<R>) -> Instant {
    p.kill().expect("kill");
    Instant::now()
}

/// Reaps a child sent `SIGKILL`, checking that it died of it.
fn reap_killed<R: Serialize + DeserializeOwned + 'static>(p: &mut Process<R>) {
    match p.join_timeout(JOIN) {
        Err(ProcessError::Killed(9)) => {}
        Err(e) => panic!("child {}: expected death by SIGKILL, got {e}", p.pid()),
        Ok(_) => panic!("child {} returned instead of being killed", p.pid()),
    }
}

/// Prints how long noticing a gone peer took and checks it against the generous bound.
fn report_detection(what: &str, took: Duration) {
    eprintln!("{what}: peer gone noticed after {took:?}");
    assert!(
        took < DETECT_BOUND,
        "{what}: peer gone noticed only after {took:?}"
    );
}

/// Pins the calling thread to the first CPU: two threads that wake each other there run
/// in turns, which makes a race between them far more likely to show.
fn pin_to_cpu0() {
    // SAFETY: a zeroed `cpu_set_t` is a valid empty set; we pass its exact size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set),
            0,
            "sched_setaffinity"
        );
    }
}

/// A call running on a watchdog-guarded thread, so that the test can act (kill the peer,
/// drop an end) while it blocks.
struct Background<T> {
    what: String,
    rx: mpsc::Receiver<(T, Instant)>,
    thread: JoinHandle<()>,
}

fn background<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> Background<T> {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let v = f();
        let _ = tx.send((v, Instant::now()));
    });
    Background {
        what: what.to_owned(),
        rx,
        thread,
    }
}

impl<T: Debug> Background<T> {
    /// Lets the call run into its wait, then checks that it is still blocked.
    fn assert_blocked(&self) {
        std::thread::sleep(SETTLE);
        if let Ok((v, _)) = self.rx.try_recv() {
            panic!("{}: returned {v:?} instead of blocking", self.what);
        }
    }

    /// The call's result and when it returned; panics if it is still blocked after `LONG`.
    fn finish(self) -> (T, Instant) {
        match self.finish_within(LONG) {
            Ok(v) => v,
            Err(me) => panic!("{}: still blocked after {LONG:?}", me.what),
        }
    }

    /// The call's result and when it returned, or the call back if it is still blocked
    /// after `limit`.
    fn finish_within(self, limit: Duration) -> Result<(T, Instant), Self> {
        match self.rx.recv_timeout(limit) {
            Ok(v) => Ok(v),
            Err(mpsc::RecvTimeoutError::Disconnected) => match self.thread.join() {
                Err(panic) => std::panic::resume_unwind(panic),
                Ok(()) => unreachable!("the thread always sends before it ends"),
            },
            Err(mpsc::RecvTimeoutError::Timeout) => Err(self),
        }
    }
}

/// Receives until `Disconnected` (each wait bounded by `LONG`); returns what came.
fn drain<T: Debug, C: Codec<T>>(conn: &Connection<T, C>) -> Vec<T> {
    let mut got = Vec::new();
    loop {
        match conn.recv_timeout(LONG) {
            Ok(v) => got.push(v),
            Err(RecvTimeoutError::Disconnected) => return got,
            Err(e) => panic!("drain: {e:?} after {} items", got.len()),
        }
    }
}

/// Sends until `Disconnected` (each wait bounded by `LONG`, at most 10 M sends); returns
/// how many got through.
fn send_until_disconnected(conn: &Conn<u64>) -> u64 {
    for i in 0..10_000_000 {
        match conn.send_timeout(&i, LONG) {
            Ok(()) => {}
            Err(SendTimeoutError::Disconnected(())) => return i,
            Err(e) => panic!("send #{i}: {e:?}"),
        }
    }
    panic!("10 M sends to a dead peer succeeded");
}

/// `try_send`s until the pipe is `Full`; returns how many went in.
fn fill(conn: &Conn<u64>) -> u64 {
    for i in 0..1_000_000 {
        match conn.try_send(&i) {
            Ok(()) => {}
            Err(TrySendError::Full(())) => return i,
            Err(e) => panic!("try_send #{i}: {e:?}"),
        }
    }
    panic!("a {SMALL}-byte pipe took a million items");
}

/// The result of every call on a handle, for checking them all at once.
fn every_call<T: Debug, C: Codec<T>>(conn: &Connection<T, C>, item: &T) -> Vec<String> {
    let mut buf = [0u8; 64];
    vec![
        format!("send {:?}", conn.send(item)),
        format!("try_send {:?}", conn.try_send(item)),
        format!("send_timeout {:?}", conn.send_timeout(item, ms(10))),
        format!("send_bytes {:?}", conn.send_bytes(b"x")),
        format!("recv {:?}", conn.recv()),
        format!("try_recv {:?}", conn.try_recv()),
        format!("recv_timeout {:?}", conn.recv_timeout(ms(10))),
        format!("recv_bytes {:?}", conn.recv_bytes()),
        format!("recv_bytes_into {:?}", conn.recv_bytes_into(&mut buf)),
        format!("try_poll {:?}", conn.try_poll()),
    ]
}

fn assert_all(calls: &[String], want: &str, what: &str) {
    for c in calls {
        // A send's error carries its item, `()`: `Closed(..)` reads as `Closed`.
        let c = c.replace("(..)", "");
        assert!(c.ends_with(want), "{what}: {c} (want {want}); all: {calls:?}");
    }
}

/// A message with text and a vector, of varied size (up to ≈ 2.5 KB).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Record {
    id: u64,
    name: String,
    data: Vec<u32>,
}

fn record(id: u64) -> Record {
    Record {
        id,
        name: format!("record #{id} {}", "é".repeat((id % 40) as usize)),
        data: (0..(id * 37 % 500) as u32)
            .map(|i| i.wrapping_mul(2_654_435_761) ^ id as u32)
            .collect(),
    }
}

/// `len` bytes of a pattern with a prime period, stamped every 4 KiB with its own offset
/// (so a frame dropped, repeated or misplaced shows). Copies only: fast in debug builds.
fn big_pattern(len: usize) -> Vec<u8> {
    const PERIOD: usize = 65_521;
    let base: Vec<u8> = (0..PERIOD).map(|i| (i * 131 % 251) as u8).collect();
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        let n = PERIOD.min(len - v.len());
        v.extend_from_slice(&base[..n]);
    }
    for at in (0..len.saturating_sub(8)).step_by(4096) {
        v[at..at + 8].copy_from_slice(&(at as u64).to_le_bytes());
    }
    v
}

/// An order-sensitive checksum, a word at a time.
fn checksum(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325 ^ bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let w = u64::from_le_bytes(w.try_into().unwrap());
        h = (h ^ w).wrapping_mul(0x100_0000_01b3).rotate_left(17);
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

// ------------------------------------------------------------------------------------------
// Duplex and simplex traffic
// ------------------------------------------------------------------------------------------

/// Echoes every record until the parent's end is gone; returns how many it echoed.
fn echo(conn: Conn<Record>) -> u64 {
    let mut n = 0;
    loop {
        match conn.recv_timeout(LONG) {
            Ok(r) => conn.send_timeout(&r, LONG).expect("echo send"),
            Err(RecvTimeoutError::Disconnected) => return n,
            Err(e) => panic!("echo recv after {n}: {e:?}"),
        }
        n += 1;
    }
}

#[test]
fn duplex_echo_returns_every_message_in_order() {
    const N: u64 = 1000;
    /// Records in flight at once (well under the 256 KiB per direction).
    const WINDOW: u64 = 16;
    let _g = shared();
    for m in METHODS {
        let (a, b) = pipe::<Record>().unwrap();
        let mut c = start(m, echo, b);
        for i in 0..N + WINDOW {
            if i < N {
                a.send_timeout(&record(i), LONG).expect("send");
            }
            if i >= WINDOW {
                let want = record(i - WINDOW);
                assert_eq!(a.recv_timeout(LONG), Ok(want), "{m:?}: echo #{}", i - WINDOW);
            }
        }
        assert_eq!(a.try_recv(), Err(TryRecvError::Empty), "{m:?}");
        drop(a);
        assert_eq!(join(&mut c), N, "{m:?}: echoed count");
    }
}

const SIMPLEX_N: u64 = 10_000;

/// Sends `0..SIMPLEX_N` on the sending end; returns what the receiving calls said on it.
fn count_up(tx: Conn<u64>) -> Vec<String> {
    let mut buf = [0u8; 8];
    let wrong_way = vec![
        format!("recv {:?}", tx.recv()),
        format!("recv_timeout {:?}", tx.recv_timeout(ms(10))),
        format!("try_recv {:?}", tx.try_recv()),
        format!("recv_bytes {:?}", tx.recv_bytes()),
        format!("recv_bytes_into {:?}", tx.recv_bytes_into(&mut buf)),
        format!("try_poll {:?}", tx.try_poll()),
    ];
    assert!(tx.writable() && !tx.readable());
    for i in 0..SIMPLEX_N {
        tx.send_timeout(&i, LONG).expect("send");
    }
    wrong_way
}

#[test]
fn simplex_keeps_the_order_of_10k_items_and_each_end_goes_one_way() {
    let _g = shared();
    for m in METHODS {
        let (rx, tx) = pipe_simplex::<u64>().unwrap();
        assert!(rx.readable() && !rx.writable());
        let mut c = start(m, count_up, tx);
        let on_rx = "on the receiving end";
        assert_eq!(
            rx.send(&1),
            Err(SendError::NotWritable(())),
            "{m:?}: send {on_rx}"
        );
        assert_eq!(
            rx.try_send(&1),
            Err(TrySendError::NotWritable(())),
            "{m:?}: try_send {on_rx}"
        );
        assert_eq!(
            rx.send_timeout(&1, ms(10)),
            Err(SendTimeoutError::NotWritable(())),
            "{m:?}: send_timeout {on_rx}"
        );
        assert_eq!(
            rx.send_bytes(b"x"),
            Err(SendError::NotWritable(())),
            "{m:?}: send_bytes {on_rx}"
        );
        for i in 0..SIMPLEX_N {
            assert_eq!(rx.recv_timeout(LONG), Ok(i), "{m:?}");
        }
        let wrong_way = join(&mut c);
        assert_all(&wrong_way, "Err(NotReadable)", &format!("{m:?}: the sending end"));
        assert_eq!(
            rx.recv_timeout(LONG),
            Err(RecvTimeoutError::Disconnected),
            "{m:?}"
        );
    }
}

// ------------------------------------------------------------------------------------------
// Clean close: drain, then Disconnected
// ------------------------------------------------------------------------------------------

fn send_k_then_return((conn, k): (Conn<Record>, u64)) {
    for i in 0..k {
        conn.send_timeout(&record(i), LONG).expect("send");
    }
}

/// After the peer is gone for good, every form reports it.
fn assert_peer_gone(conn: &Conn<Record>, what: &str) {
    assert_eq!(
        conn.try_recv(),
        Err(TryRecvError::Disconnected),
        "{what}: try_recv"
    );
    assert_eq!(
        conn.recv_timeout(LONG),
        Err(RecvTimeoutError::Disconnected),
        "{what}: recv_timeout"
    );
    assert_eq!(conn.try_poll(), Ok(()), "{what}: poll");
    assert_eq!(
        conn.send(&record(0)),
        Err(SendError::Disconnected(())),
        "{what}: send"
    );
    assert_eq!(
        conn.try_send(&record(0)),
        Err(TrySendError::Disconnected(())),
        "{what}: try_send"
    );
}

#[test]
fn child_returning_after_k_messages_gives_exactly_k_then_disconnected() {
    let _g = shared();
    // 60 records fit in the pipe: the child finishes before the parent reads. 2000 do not:
    // the parent reads while the child still sends.
    for m in METHODS {
        for (k, join_first) in [(60, true), (2000, false)] {
            let what = format!("{m:?}, {k} messages");
            let (a, b) = pipe::<Record>().unwrap();
            let mut c = start(m, send_k_then_return, (b, k));
            if join_first {
                join(&mut c);
            }
            let got = drain(&a);
            assert_eq!(got.len() as u64, k, "{what}");
            assert!(
                got.iter().zip(0..).all(|(r, i)| *r == record(i)),
                "{what}: content"
            );
            if !join_first {
                join(&mut c);
            }
            assert_peer_gone(&a, &what);
        }
    }
}

/// Blocks in `recv` until the parent's end goes; returns what `recv` and then `send` said.
/// The `send` comes a little later: one right after `recv` is the subject of
/// `send_right_after_recv_reported_disconnected_fails_too`.
fn recv_blocked((conn, ready): (Conn<Record>, Flag)) -> String {
    raise(&ready);
    let r = conn.recv();
    std::thread::sleep(SETTLE);
    let s = conn.send(&record(1));
    format!("{r:?} {s:?}")
}

#[test]
fn dropping_the_parent_end_wakes_a_child_blocked_in_recv() {
    let _g = shared();
    for m in METHODS {
        let (a, b) = pipe::<Record>().unwrap();
        let ready = flag();
        let mut c = start(m, recv_blocked, (b, ready.clone()));
        wait_blocked(&ready, c.pid());
        drop(a);
        assert_eq!(join(&mut c), "Err(Disconnected) Err(Disconnected(..))", "{m:?}");
    }
}

/// Blocks in `recv` until the parent's end goes, then sends at once.
fn recv_then_send_at_once((conn, ready): (Conn<Record>, Flag)) -> String {
    pin_to_cpu0();
    raise(&ready);
    let r = conn.recv();
    let s = conn.send(&record(1));
    format!("{r:?} {s:?}")
}

/// Closes its end when told.
fn close_on_go((conn, go): (Conn<Record>, Event)) {
    pin_to_cpu0();
    assert!(go.wait_timeout(LONG).is_ok(), "no go");
    conn.close();
}

/// Once `recv` has said the peer is gone, a `send` on the same handle must say so too (a
/// message sent after `EOFError` would be lost without an error). Both sides: the child's
/// handle after the parent drops its end, the parent's after the child closes its own.
#[test]
fn send_right_after_recv_reported_disconnected_fails_too() {
    const ROUNDS: usize = 10;
    let _g = shared();
    let mut failures = Vec::new();
    for m in METHODS {
        for round in 0..ROUNDS {
            let (a, b) = pipe::<Record>().unwrap();
            let ready = flag();
            let mut c = start(m, recv_then_send_at_once, (b, ready.clone()));
            wait_blocked(&ready, c.pid());
            bounded("drop on CPU 0", move || {
                pin_to_cpu0();
                drop(a);
            });
            let got = join(&mut c);
            if got != "Err(Disconnected) Err(Disconnected(..))" {
                failures.push(format!(
                    "{m:?} round {round}, child after the parent dropped: {got}"
                ));
            }

            let (a, b) = pipe::<Record>().unwrap();
            let go = Event::new().unwrap();
            let mut c = start(m, close_on_go, (b, go.clone()));
            let call = background("parent recv", move || {
                pin_to_cpu0();
                let r = a.recv();
                let s = a.send(&record(2));
                format!("{r:?} {s:?}")
            });
            call.assert_blocked();
            go.set();
            let (got, _) = call.finish();
            join(&mut c);
            if got != "Err(Disconnected) Err(Disconnected(..))" {
                failures.push(format!(
                    "{m:?} round {round}, parent after the child closed: {got}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "send after recv's Disconnected:\n{}",
        failures.join("\n")
    );
}

// ------------------------------------------------------------------------------------------
// SIGKILL
// ------------------------------------------------------------------------------------------

/// What a killed child was doing, and what the parent does around the kill.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kill {
    /// Child blocked in `recv`; the parent's first `poll_timeout(1 s)` after the kill.
    InRecvParentPolls,
    /// Child idle holding its end; the parent blocked in `recv` at the kill.
    IdleParentInRecv,
    /// Child idle; the parent blocked in `poll()` at the kill.
    IdleParentInPoll,
    /// Child idle; the parent blocked in `send` on a full pipe at the kill.
    IdleParentInSend,
    /// Child idle; the parent blocked halfway through sending a message far larger than the
    /// pipe at the kill (a streaming send must not wait for a dead reader).
    IdleParentMidHugeSend,
    /// Child idle; the parent `send`s in a loop after the kill.
    IdleParentSends,
    /// Child sent messages first; the parent's `recv`s after the kill get them, then
    /// `Disconnected`.
    SentFirst,
    /// Child sent messages, then blocked halfway through a message far larger than the
    /// pipe: the parent gets the whole messages, not the partial one, then `Disconnected`.
    MidMessage,
}

impl Kill {
    /// How many messages the child sends first, and what it does next.
    fn child_plan(self) -> (u64, Then) {
        match self {
            Kill::InRecvParentPolls => (0, Then::Recv),
            Kill::SentFirst => (SENT_BEFORE_KILL, Then::Idle),
            Kill::MidMessage => (SENT_BEFORE_KILL, Then::SendHuge),
            _ => (0, Then::Idle),
        }
    }
}

/// Messages the child sends before the kill in `Kill::SentFirst`.
const SENT_BEFORE_KILL: u64 = 50;

/// What a child does once it has sent its messages and raised `ready`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
enum Then {
    Recv,
    Idle,
    /// `send_bytes` of 4 MiB, which blocks halfway once the pipe is full.
    SendHuge,
}

fn victim((conn, sent, then, ready): (Conn<u64>, u64, Then, Flag)) {
    for i in 0..sent {
        conn.send_timeout(&i, LONG).expect("send");
    }
    raise(&ready);
    match then {
        Then::Recv => panic!("recv returned {:?}", conn.recv()),
        Then::SendHuge => panic!("send_bytes returned {:?}", conn.send_bytes(&vec![7; 4 << 20])),
        // Holds `conn` until killed (without touching it, unless it sent).
        Then::Idle => loop {
            std::thread::sleep(Duration::from_secs(1));
        },
    }
}

/// Starts a child, kills it as `case` says, checks what the parent's end reports; returns
/// how long noticing the death took.
fn kill_scenario(m: StartMethod, case: Kill) -> Duration {
    let what = format!("{m:?} {case:?}");
    let (a, b) = if matches!(case, Kill::IdleParentInSend | Kill::IdleParentMidHugeSend) {
        Connection::<u64>::pair(true, SMALL).unwrap()
    } else {
        pipe::<u64>().unwrap()
    };
    let (sent, then) = case.child_plan();
    let ready = flag();
    let mut c = start(m, victim, (b, sent, then, ready.clone()));
    wait_blocked(&ready, c.pid());

    let (a, took) = match case {
        Kill::InRecvParentPolls => {
            let killed = kill(&c);
            assert_eq!(a.poll_timeout(Duration::from_secs(1)), Ok(()), "{what}: poll");
            let took = killed.elapsed();
            assert_eq!(
                a.recv_timeout(LONG),
                Err(RecvTimeoutError::Disconnected),
                "{what}: recv"
            );
            (a, took)
        }
        Kill::IdleParentInRecv => {
            let call = background(&what, move || {
                let r = a.recv();
                (a, r)
            });
            call.assert_blocked();
            let killed = kill(&c);
            let ((a, r), at) = call.finish();
            assert_eq!(r, Err(RecvError::Disconnected), "{what}: blocked recv");
            (a, at - killed)
        }
        Kill::IdleParentInPoll => {
            let call = background(&what, move || {
                let r = a.poll();
                (a, r)
            });
            call.assert_blocked();
            let killed = kill(&c);
            let ((a, r), at) = call.finish();
            assert_eq!(r, Ok(()), "{what}: blocked poll");
            assert_eq!(
                a.recv_timeout(LONG),
                Err(RecvTimeoutError::Disconnected),
                "{what}: recv"
            );
            (a, at - killed)
        }
        Kill::IdleParentInSend => {
            assert!(fill(&a) > 0, "{what}: nothing fit in the pipe");
            let call = background(&what, move || {
                let r = a.send(&7);
                (a, r)
            });
            call.assert_blocked();
            let killed = kill(&c);
            let ((a, r), at) = call.finish();
            assert_eq!(r, Err(SendError::Disconnected(())), "{what}: blocked send");
            (a, at - killed)
        }
        Kill::IdleParentMidHugeSend => {
            let call = background(&what, move || {
                let r = a.send_bytes(&vec![7; 64 * SMALL]);
                (a, r)
            });
            call.assert_blocked();
            let killed = kill(&c);
            let ((a, r), at) = call.finish();
            assert_eq!(
                r,
                Err(SendError::Disconnected(())),
                "{what}: blocked streaming send"
            );
            (a, at - killed)
        }
        Kill::IdleParentSends => {
            let killed = kill(&c);
            let n = send_until_disconnected(&a);
            let took = killed.elapsed();
            eprintln!("{what}: {n} sends went through before Disconnected");
            (a, took)
        }
        Kill::SentFirst | Kill::MidMessage => {
            let killed = kill(&c);
            let got = drain(&a);
            let took = killed.elapsed();
            assert_eq!(
                got,
                (0..SENT_BEFORE_KILL).collect::<Vec<_>>(),
                "{what}: sent before the kill"
            );
            (a, took)
        }
    };
    reap_killed(&mut c);
    report_detection(&what, took);

    // Whatever noticed it first, every form now reports the peer gone.
    assert_eq!(a.poll_timeout(Duration::from_secs(1)), Ok(()), "{what}: poll");
    assert_eq!(a.try_recv(), Err(TryRecvError::Disconnected), "{what}: try_recv");
    assert_eq!(
        a.recv_timeout(LONG),
        Err(RecvTimeoutError::Disconnected),
        "{what}: recv_timeout"
    );
    assert_eq!(send_until_disconnected(&a), 0, "{what}: sends");
    took
}

fn kill_both_methods(case: Kill) {
    let _g = shared();
    for m in METHODS {
        kill_scenario(m, case);
    }
}

#[test]
fn kill_of_a_child_blocked_in_recv_is_seen_by_poll() {
    kill_both_methods(Kill::InRecvParentPolls);
}

#[test]
fn kill_of_an_idle_child_wakes_a_blocked_recv_with_disconnected() {
    kill_both_methods(Kill::IdleParentInRecv);
}

#[test]
fn kill_of_an_idle_child_wakes_a_blocked_poll() {
    kill_both_methods(Kill::IdleParentInPoll);
}

#[test]
fn kill_of_an_idle_child_wakes_a_send_blocked_on_a_full_pipe() {
    kill_both_methods(Kill::IdleParentInSend);
}

#[test]
fn kill_of_an_idle_child_stops_a_send_streaming_a_huge_message() {
    kill_both_methods(Kill::IdleParentMidHugeSend);
}

#[test]
fn sends_to_a_killed_child_end_with_disconnected() {
    kill_both_methods(Kill::IdleParentSends);
}

#[test]
fn messages_sent_before_the_kill_are_received_then_disconnected() {
    kill_both_methods(Kill::SentFirst);
}

#[test]
fn kill_mid_message_delivers_the_whole_messages_only_then_disconnected() {
    kill_both_methods(Kill::MidMessage);
}

// ------------------------------------------------------------------------------------------
// Who holds an end: no false disconnect, no inherited hold
// ------------------------------------------------------------------------------------------

/// How long the child leaves its end untouched.
const LATE: Duration = Duration::from_millis(300);

fn late_send(conn: Conn<Record>) {
    std::thread::sleep(LATE);
    conn.send(&record(5)).expect("late send");
}

/// The parent no longer has the child's end; the child touches it only after `LATE`. The
/// parent must get its message, not `Disconnected`.
fn expect_late_message(a: &Conn<Record>, c: &mut Process<()>, what: &str) {
    let early = a.try_recv();
    assert!(
        matches!(early, Err(TryRecvError::Empty)) || early == Ok(record(5)),
        "{what}: try_recv before the child touched its end: {early:?}"
    );
    if early.is_err() {
        assert_eq!(a.recv_timeout(Duration::from_secs(5)), Ok(record(5)), "{what}");
    }
    join(c);
    assert_eq!(
        a.recv_timeout(LONG),
        Err(RecvTimeoutError::Disconnected),
        "{what}: after the child ended"
    );
}

#[test]
fn no_false_disconnect_before_a_child_first_touches_its_end() {
    let _g = shared();
    for m in METHODS {
        let (a, b) = pipe::<Record>().unwrap();
        let mut c = start(m, late_send, b);
        expect_late_message(&a, &mut c, &format!("{m:?} Process::new"));
    }
    let (a, b) = pipe::<Record>().unwrap();
    let mut c = Process::fork(move || late_send(b)).daemon(true).start().unwrap();
    expect_late_message(&a, &mut c, "Process::fork closure");
}

/// Python's classic hang: a forked child inherits the parent's end `a` with the parent's
/// memory (an fd, in Python), so dropping `a` in the parent never gives the child `EOFError`.
/// Here the child holds only what its closure captured (`b`).
#[test]
fn a_forked_child_does_not_hold_the_parent_end_it_merely_inherited() {
    let _g = shared();
    let (a, b) = pipe::<Record>().unwrap();
    let ready = flag();
    let r = ready.clone();
    let mut c = Process::fork(move || recv_blocked((b, r)))
        .daemon(true)
        .start()
        .unwrap();
    wait_blocked(&ready, c.pid());
    drop(a);
    assert_eq!(join(&mut c), "Err(Disconnected) Err(Disconnected(..))");
}

fn grandchild_send(conn: Conn<Record>) {
    std::thread::sleep(SETTLE);
    conn.send_timeout(&record(9), LONG).expect("grandchild send");
}

/// Hands its end, untouched, to a grandchild started with `METHODS[method]`, and waits for it.
fn hand_down((conn, method): (Conn<Record>, usize)) {
    let mut g = start(METHODS[method], grandchild_send, conn);
    join(&mut g);
}

/// A child passes the end it got on to its own child (started with `m2`) and lets go of
/// it: the grandchild holds it now, so the parent gets the grandchild's message, then
/// `Disconnected`.
fn hand_down_to_grandchild(m: StartMethod, m2: StartMethod) {
    let what = format!("{m:?} child, {m2:?} grandchild");
    let i = METHODS.iter().position(|&x| x == m2).unwrap();
    let (a, b) = pipe::<Record>().unwrap();
    let mut c = start(m, hand_down, (b, i));
    let r = a.recv_timeout(LONG);
    if let Err(e) = c.join_timeout(JOIN) {
        panic!("{what}: child: {e}");
    }
    assert_eq!(r, Ok(record(9)), "{what}");
    assert_eq!(
        a.recv_timeout(LONG),
        Err(RecvTimeoutError::Disconnected),
        "{what}: after both ended"
    );
}

#[test]
fn an_end_handed_down_to_a_grandchild_stays_connected() {
    let _g = shared();
    for (m, m2) in [
        (StartMethod::Spawn, StartMethod::Spawn),
        (StartMethod::Spawn, StartMethod::Fork),
        (StartMethod::Fork, StartMethod::Spawn),
    ] {
        hand_down_to_grandchild(m, m2);
    }
}

#[test]
fn an_end_handed_down_from_a_forked_child_to_a_forked_grandchild_stays_connected() {
    let _g = shared();
    hand_down_to_grandchild(StartMethod::Fork, StartMethod::Fork);
}

// ------------------------------------------------------------------------------------------
// Timeouts and non-blocking forms
// ------------------------------------------------------------------------------------------

/// Holds its end until `go`, then sends one item and drains; returns how many it received.
fn hold_then_drain((conn, go): (Conn<u64>, Event)) -> u64 {
    assert!(go.wait_timeout(LONG).is_ok(), "no go");
    conn.send_timeout(&u64::MAX, LONG).expect("send");
    drain(&conn).len() as u64
}

/// Runs `f` and checks that it took at least `at_least`.
fn timed<T: Debug + PartialEq>(what: &str, at_least: Duration, want: T, f: impl FnOnce() -> T) {
    let t = Instant::now();
    let got = f();
    let took = t.elapsed();
    assert_eq!(got, want, "{what}");
    assert!(took >= at_least, "{what}: returned after {took:?} < {at_least:?}");
}

#[test]
fn timeouts_and_try_forms_with_a_live_peer() {
    let _g = shared();
    for m in METHODS {
        let (a, b) = Connection::<u64>::pair(true, SMALL).unwrap();
        let go = Event::new().unwrap();
        let mut c = start(m, hold_then_drain, (b, go.clone()));
        let what = |s: &str| format!("{m:?}: {s}");

        // Empty pipe, live peer.
        assert_eq!(a.try_recv(), Err(TryRecvError::Empty), "{m:?}");
        assert_eq!(a.try_recv_bytes(), Err(TryRecvError::Empty), "{m:?}");
        for t in [ms(1), ms(30), ms(120)] {
            timed(
                &what(&format!("recv_timeout({t:?})")),
                t,
                Err(RecvTimeoutError::Timeout),
                || a.recv_timeout(t),
            );
        }
        timed(
            &what("recv_bytes_timeout"),
            ms(30),
            Err(RecvTimeoutError::Timeout),
            || a.recv_bytes_timeout(ms(30)),
        );
        timed(
            &what("recv_bytes_into_timeout"),
            ms(30),
            Err(RecvTimeoutError::Timeout),
            || a.recv_bytes_into_timeout(&mut [0u8; 16], ms(30)),
        );
        assert_eq!(a.try_poll(), Err(TryRecvError::Empty), "{m:?}");
        timed(
            &what("poll_timeout(50 ms)"),
            ms(50),
            Err(RecvTimeoutError::Timeout),
            || a.poll_timeout(ms(50)),
        );

        // Full pipe, live peer.
        let sent = fill(&a);
        assert!(sent > 0, "{m:?}: nothing fit in the pipe");
        assert_eq!(a.try_send(&1), Err(TrySendError::Full(())), "{m:?}");
        assert_eq!(a.try_send_bytes(&[0; 64]), Err(TrySendError::Full(())), "{m:?}");
        timed(
            &what("send_timeout"),
            ms(50),
            Err(SendTimeoutError::Timeout(())),
            || a.send_timeout(&1, ms(50)),
        );
        timed(
            &what("send_bytes_timeout"),
            ms(50),
            Err(SendTimeoutError::Timeout(())),
            || a.send_bytes_timeout(&[0; 64], ms(50)),
        );
        assert!(c.is_alive(), "{m:?}: the child ended early");

        // The child sends one item and drains: poll turns true, room comes back.
        go.set();
        assert_eq!(a.poll_timeout(LONG), Ok(()), "{m:?}");
        assert_eq!(a.try_poll(), Ok(()), "{m:?}");
        assert_eq!(a.try_recv(), Ok(u64::MAX), "{m:?}");
        a.send_timeout(&sent, LONG).expect("send once the child drains");
        drop(a);
        assert_eq!(join(&mut c), sent + 1, "{m:?}: items the child received");
    }
}

/// Holds its end without reading until `go`, then drains; returns the sizes it received.
fn hold_then_drain_bytes((conn, go): (Conn<()>, Event)) -> Vec<usize> {
    assert!(go.wait_timeout(LONG).is_ok(), "no go");
    let mut sizes = Vec::new();
    loop {
        match conn.recv_bytes_timeout(LONG) {
            Ok(v) => sizes.push(v.len()),
            Err(RecvTimeoutError::Disconnected) => return sizes,
            Err(e) => panic!("recv_bytes after {sizes:?}: {e:?}"),
        }
    }
}

/// `try_send_bytes` and `send_bytes_timeout` of a message 4× the pipe, to a live peer that
/// does not read: they must give up (`Full`, `Timeout`) instead of blocking until the peer
/// reads, and the peer must not see a partial message.
#[test]
fn a_message_larger_than_the_pipe_does_not_make_try_send_or_send_timeout_block() {
    const LEN: usize = 1 << 20;
    let _g = shared();
    for m in METHODS {
        let (a, b) = pipe::<()>().unwrap();
        let go = Event::new().unwrap();
        let mut c = start(m, hold_then_drain_bytes, (b, go.clone()));
        let call = background(&format!("{m:?} oversized sends"), move || {
            let t = Instant::now();
            let tried = a.try_send_bytes(&vec![1; LEN]);
            let try_took = t.elapsed();
            let t = Instant::now();
            let timed = a.send_bytes_timeout(&vec![2; LEN], ms(100));
            let timed_took = t.elapsed();
            a.send_bytes_timeout(b"end", LONG).expect("send the end marker");
            (tried, try_took, timed, timed_took)
        });
        let early = call.finish_within(Duration::from_secs(3));
        // Let the child read: a call still blocked completes, and the test ends either way.
        go.set();
        let ((tried, try_took, timed, timed_took), _) = early.unwrap_or_else(Background::finish);
        let sizes = join(&mut c);
        assert_eq!(
            tried,
            Err(TrySendError::Full(())),
            "{m:?}: try_send_bytes (took {try_took:?})"
        );
        assert_eq!(
            timed,
            Err(SendTimeoutError::Timeout(())),
            "{m:?}: send_bytes_timeout (took {timed_took:?})"
        );
        assert_eq!(sizes, vec![3], "{m:?}: what the reader got");
    }
}

// ------------------------------------------------------------------------------------------
// Large messages and recv_bytes_into
// ------------------------------------------------------------------------------------------

const BIG: usize = 64 << 20;

fn send_big((conn, len): (Conn<()>, usize)) -> u64 {
    let v = big_pattern(len);
    conn.send_bytes(&v).expect("send_bytes");
    checksum(&v)
}

#[test]
fn a_64_mib_message_streams_through_the_256_kib_pipe() {
    let _g = shared();
    for m in METHODS {
        let (a, b) = pipe::<()>().unwrap();
        let mut c = start(m, send_big, (b, BIG));
        let t = Instant::now();
        let v = a.recv_bytes_timeout(LONG).expect("the 64 MiB message");
        eprintln!("{m:?}: 64 MiB received in {:?}", t.elapsed());
        assert_eq!(v.len(), BIG, "{m:?}");
        assert_eq!(checksum(&v), join(&mut c), "{m:?}: checksum");
        assert_eq!(
            a.recv_bytes_timeout(LONG),
            Err(RecvTimeoutError::Disconnected),
            "{m:?}"
        );
    }
}

/// Sends the pattern of `len` bytes `n` times, then an empty message.
fn send_pattern_n((conn, len, n): (Conn<()>, usize, usize)) {
    let v = big_pattern(len);
    for _ in 0..n {
        conn.send_bytes_timeout(&v, LONG).expect("send_bytes");
    }
    conn.send_bytes_timeout(&[], LONG).expect("send empty");
}

#[test]
fn recv_bytes_into_returns_a_too_long_message_whole_and_fills_a_big_enough_buffer() {
    // Longer than the pipe's 256 KiB, so each message streams.
    const LEN: usize = 300 << 10;
    let _g = shared();
    let want = big_pattern(LEN);
    for m in METHODS {
        let (a, b) = pipe::<()>().unwrap();
        let mut c = start(m, send_pattern_n, (b, LEN, 3));

        let mut small = vec![0u8; 1024];
        match a.recv_bytes_into_timeout(&mut small, LONG) {
            Err(RecvTimeoutError::TooLarge(msg)) => assert!(msg == want, "{m:?}: message in the error"),
            other => panic!("{m:?}: too-small buffer: {:?}", other),
        }
        assert!(
            small.iter().all(|&b| b == 0),
            "{m:?}: the too-small buffer was written"
        );

        let mut exact = vec![0u8; LEN];
        assert_eq!(
            a.recv_bytes_into_timeout(&mut exact, LONG),
            Ok(LEN),
            "{m:?}: exact buffer"
        );
        assert!(exact == want, "{m:?}: exact buffer content");

        let mut roomy = vec![0xAA; LEN + 100];
        assert_eq!(
            a.recv_bytes_into_timeout(&mut roomy, LONG),
            Ok(LEN),
            "{m:?}: roomy buffer"
        );
        assert!(roomy[..LEN] == want[..], "{m:?}: roomy buffer content");
        assert!(
            roomy[LEN..].iter().all(|&b| b == 0xAA),
            "{m:?}: written past the message"
        );

        assert_eq!(
            a.recv_bytes_into_timeout(&mut [], LONG),
            Ok(0),
            "{m:?}: empty message"
        );
        join(&mut c);
        assert_eq!(
            a.recv_bytes_into_timeout(&mut exact, LONG),
            Err(RecvTimeoutError::Disconnected),
            "{m:?}"
        );
    }
}

// ------------------------------------------------------------------------------------------
// Decode errors
// ------------------------------------------------------------------------------------------

/// Messages that do not decode as a `Record`: empty, and a name of invalid UTF-8.
const GARBAGE: [&[u8]; 2] = [b"", &[1, 2, 0xC3, 0x28]];

/// What three `recv`s in a row got: `Decode` for each undecodable message, else the result.
fn three_recvs(conn: &Conn<Record>) -> Vec<String> {
    (0..3)
        .map(|_| match conn.recv_timeout(LONG) {
            Err(RecvTimeoutError::Decode(_)) => "Decode".to_owned(),
            other => format!("{other:?}"),
        })
        .collect()
}

fn garbage_both_ways(conn: Conn<Record>) -> Vec<String> {
    for g in GARBAGE {
        conn.send_bytes_timeout(g, LONG).expect("send garbage");
    }
    conn.send_timeout(&record(7), LONG).expect("send");
    three_recvs(&conn)
}

#[test]
fn an_undecodable_message_is_a_decode_error_and_the_pipe_stays_usable() {
    let _g = shared();
    let want = vec![
        "Decode".to_owned(),
        "Decode".to_owned(),
        format!("{:?}", Ok::<_, RecvError>(record(7))),
    ];
    for m in METHODS {
        let (a, b) = pipe::<Record>().unwrap();
        let mut c = start(m, garbage_both_ways, b);
        assert_eq!(three_recvs(&a), want, "{m:?}: parent");
        for g in GARBAGE {
            a.send_bytes_timeout(g, LONG).expect("send garbage");
        }
        a.send_timeout(&record(7), LONG).expect("send");
        assert_eq!(join(&mut c), want, "{m:?}: child");
    }
}

// ------------------------------------------------------------------------------------------
// close()
// ------------------------------------------------------------------------------------------

/// Sends one record, closes its end, and stays alive until `go`; returns what every call
/// on the closed handle said.
fn close_mine((conn, go): (Conn<Record>, Event)) -> Vec<String> {
    conn.send_timeout(&record(1), LONG).expect("send");
    conn.close();
    conn.close(); // twice is harmless
    let calls = every_call(&conn, &record(2));
    assert!(go.wait_timeout(LONG).is_ok(), "no go");
    calls
}

#[test]
fn close_makes_later_calls_fail_with_closed_and_the_peer_sees_disconnected() {
    let _g = shared();
    for m in METHODS {
        // The child closes while it lives on.
        let (a, b) = pipe::<Record>().unwrap();
        let go = Event::new().unwrap();
        let mut c = start(m, close_mine, (b, go.clone()));
        assert_eq!(a.recv_timeout(LONG), Ok(record(1)), "{m:?}");
        let t = Instant::now();
        let r = a.recv_timeout(LONG);
        report_detection(&format!("{m:?} close in a live child"), t.elapsed());
        assert_eq!(
            r,
            Err(RecvTimeoutError::Disconnected),
            "{m:?}: after the child closed"
        );
        assert!(c.is_alive(), "{m:?}: the child should still live");
        go.set();
        assert_all(
            &join(&mut c),
            "Err(Closed)",
            &format!("{m:?}: child's closed handle"),
        );
        assert_eq!(a.send(&record(3)), Err(SendError::Disconnected(())), "{m:?}");

        // The parent closes while the child waits in recv.
        let (a, b) = pipe::<Record>().unwrap();
        let ready = flag();
        let mut c = start(m, recv_blocked, (b, ready.clone()));
        wait_blocked(&ready, c.pid());
        a.close();
        assert_eq!(join(&mut c), "Err(Disconnected) Err(Disconnected(..))", "{m:?}");
        assert_all(
            &every_call(&a, &record(4)),
            "Err(Closed)",
            &format!("{m:?}: parent's closed handle"),
        );
        a.close();
        drop(a); // after close: nothing more happens
    }
}

#[test]
fn a_closed_connection_cannot_be_passed_to_a_spawned_child() {
    let _g = shared();
    let (a, b) = pipe::<Record>().unwrap();
    b.close();
    let r = Process::new(late_send, b)
        .start_method(StartMethod::Spawn)
        .daemon(true)
        .start();
    assert!(matches!(r, Err(ProcessError::Codec(_))), "{r:?}");
    assert_eq!(a.try_recv(), Err(TryRecvError::Disconnected));
}

/// Drops slowly: stands for anything a closure captures that takes the parent a while to
/// free (a large buffer, say).
struct SlowDrop(Duration);

impl Drop for SlowDrop {
    fn drop(&mut self) {
        std::thread::sleep(self.0);
    }
}

/// The parent records a forked child as a holder of the ends its closure captured when it
/// drops its copy of the closure, after `fork()`. A child that is quicker — it sends and
/// closes its end before that — must still count as having closed it.
#[test]
fn a_forked_child_that_closes_its_end_before_the_parent_drops_the_closure_disconnects() {
    let _g = shared();
    let (a, b) = pipe::<Record>().unwrap();
    let go = Event::new().unwrap();
    let g = go.clone();
    // A tuple drops its fields in order: the parent sleeps, then drops `b`.
    let captured = (SlowDrop(ms(300)), b);
    let mut c = Process::fork(move || {
        let captured = captured;
        let (slow, b) = captured;
        std::mem::forget(slow);
        b.send_timeout(&record(1), LONG).expect("send");
        b.close();
        assert!(g.wait_timeout(LONG).is_ok(), "no go");
    })
    .daemon(true)
    .start()
    .unwrap();
    assert_eq!(a.recv_timeout(LONG), Ok(record(1)));
    let r = a.recv_timeout(Duration::from_secs(2));
    let alive = c.is_alive();
    go.set();
    join(&mut c);
    assert!(alive, "the child should have lived on after closing");
    assert_eq!(
        r,
        Err(RecvTimeoutError::Disconnected),
        "the child closed its end, the parent dropped its copy"
    );
}

// ------------------------------------------------------------------------------------------
// Leaks
// ------------------------------------------------------------------------------------------

#[test]
fn killed_children_leak_no_fds_shm_entries_or_zombies() {
    let _g = exclusive();
    // Warm up lazily created process-wide state before the baseline.
    for m in METHODS {
        kill_scenario(m, Kill::SentFirst);
    }
    let fds = open_fds();
    let shm = dev_shm();
    for m in METHODS {
        for case in [Kill::SentFirst, Kill::IdleParentInRecv] {
            kill_scenario(m, case);
        }
    }
    assert!(
        eventually(ms(10_000), || zombie_children().is_empty()),
        "zombies: {:?}",
        zombie_children()
    );
    assert!(
        eventually(ms(5_000), || open_fds() == fds),
        "fds leaked:\nbefore {fds:?}\nafter  {:?}",
        open_fds()
    );
    // Other test binaries may run meanwhile and create names of their own: only a new name
    // that stays is a leak.
    let new_names = || -> Vec<String> { dev_shm().into_iter().filter(|n| !shm.contains(n)).collect() };
    assert!(
        eventually(ms(5_000), || new_names().is_empty()),
        "/dev/shm entries leaked: {:?}",
        new_names()
    );
}

// ------------------------------------------------------------------------------------------
// Random kills of a streaming writer
// ------------------------------------------------------------------------------------------

/// Message `i` of the random stream: `len` bytes, its number in the first 8, then a pattern
/// that depends on both, so a torn or mixed-up message is caught.
fn stream_message(i: u64, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len)
        .map(|k| (k as u64).wrapping_mul(31).wrapping_add(i) as u8)
        .collect();
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

/// Sends messages of random sizes (8 B to 24 KiB, often larger than the 4 KiB pipe, so
/// many stream in parts) until it is killed or the reader goes.
fn stream_random((conn, seed): (Conn<()>, u64)) {
    let mut x = seed | 1;
    for i in 0.. {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = 8 + (x % (24 << 10)) as usize;
        if conn.send_bytes(&stream_message(i, len)).is_err() {
            return;
        }
    }
}

/// A writer killed at random points (odd trials) or frozen while it is in the middle of a
/// message and killed there (even trials, checked on the channel's header: it holds the
/// write lock with part of a message sent): the reader gets a gap-free prefix of whole,
/// intact messages and then `Disconnected` — never a torn message, never a hang.
#[test]
fn random_kills_of_a_streaming_writer_leave_whole_messages_then_disconnected() {
    let _g = shared();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("random writer kills: seed {seed:#x}");
    let (mut mid, mut mid_message) = (0, 0);
    for trial in 0..10u64 {
        let m = METHODS[(trial % 2) as usize];
        let what = format!("{m:?} trial {trial}");
        let (a, b) = Connection::<()>::pair(false, SMALL).unwrap();
        let mut c = start(m, stream_random, (b, seed.wrapping_add(trial)));
        // Read a little, then kill at a random moment while the writer streams.
        let mut got = 0u64;
        let reads = seed.wrapping_mul(trial + 1) % 40;
        let check = |v: Vec<u8>, got: &mut u64| {
            assert!(v.len() >= 8, "{what}: short message");
            let i = u64::from_le_bytes(v[..8].try_into().unwrap());
            assert_eq!(i, *got, "{what}: a message is missing or repeated");
            assert!(
                v == stream_message(i, v.len()),
                "{what}: message {i} torn or mixed"
            );
            *got += 1;
        };
        for _ in 0..reads {
            check(
                a.recv_bytes_timeout(LONG).expect("recv before the kill"),
                &mut got,
            );
        }
        std::thread::sleep(Duration::from_micros(seed.wrapping_mul(trial + 7) % 3000));
        let chan = a.inbound_channel().expect("a receiving end");
        let pid = c.pid();
        if trial % 2 == 0 {
            // Freeze it mid-message; between tries read a message, so that it moves on.
            let mut caught = false;
            for _ in 0..500 {
                if common::stop_when(pid, 10, || common::writing_mid_message(chan, pid)) {
                    caught = true;
                    break;
                }
                check(a.recv_bytes_timeout(LONG).expect("recv while forcing"), &mut got);
            }
            assert!(
                caught,
                "{what}: never caught the writer in the middle of a message"
            );
        }
        if common::writing_mid_message(chan, pid) {
            mid_message += 1;
        }
        kill(&c);
        loop {
            match a.recv_bytes_timeout(LONG) {
                Ok(v) => check(v, &mut got),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(e) => panic!("{what}: {e:?} after {got} messages"),
            }
        }
        reap_killed(&mut c);
        if got > reads {
            mid += 1;
        }
    }
    eprintln!(
        "random writer kills: {mid} of 10 trials delivered messages after the kill point, \
         {mid_message} killed the writer mid-message"
    );
    assert!(
        mid_message >= 5,
        "the forced trials must kill the writer mid-message"
    );
}

/// Sends a message claiming 2^60 zero-sized elements (9 bytes); returns when it was read.
fn claim_huge_zst_vec(conn: Conn<Vec<()>>) {
    let huge = [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]; // varint 2^60
    conn.send_bytes_timeout(&huge, LONG).expect("send");
    conn.send_timeout(&vec![(); 3], LONG).expect("send");
}

#[test]
fn a_message_claiming_endless_zero_sized_elements_is_a_decode_error_not_a_hang() {
    let _g = shared();
    for m in METHODS {
        let (a, b) = pipe::<Vec<()>>().unwrap();
        let mut c = start(m, claim_huge_zst_vec, b);
        let got = bounded("decode a huge Vec<()>", move || {
            let first = a.recv_timeout(LONG);
            let second = a.recv_timeout(LONG);
            (format!("{first:?}"), second)
        });
        assert!(got.0.contains("Decode"), "{m:?}: {}", got.0);
        assert_eq!(got.1.ok(), Some(vec![(); 3]), "{m:?}: the pipe stays usable");
        join(&mut c);
    }
}

// ------------------------------------------------------------------------------------------
// Connection<_, PodCodec> across processes
// ------------------------------------------------------------------------------------------

type PodConn = Connection<u64, shmproc::PodCodec>;

/// Echoes every number doubled until 0, then waits to be killed.
fn pod_echo(c: PodConn) {
    loop {
        let v = c.recv_timeout(LONG).expect("recv");
        if v == 0 {
            break;
        }
        c.send(&(2 * v)).expect("send");
    }
    c.send(&u64::MAX).expect("send the end mark");
    common::sleep_forever()
}

/// A duplex `Connection<u64, PodCodec>` to a child of each start method: 2 000 round trips
/// in order, `poll`, the try forms, then `Disconnected` once the child is killed.
#[test]
fn pod_connection_crosses_processes_and_reports_a_killed_peer() {
    let _g = shared();
    for m in METHODS {
        let (mine, theirs) = PodConn::pair(true, 4096).unwrap();
        let mut child = start(m, pod_echo, theirs);
        assert_eq!(mine.try_recv(), Err(TryRecvError::Empty));
        for v in 1..=2000u64 {
            mine.send(&v).unwrap();
            assert_eq!(mine.recv_timeout(LONG), Ok(2 * v), "{m:?}");
        }
        mine.send(&0).unwrap();
        assert_eq!(
            mine.poll_timeout(LONG),
            Ok(()),
            "{m:?}: the end mark never became readable"
        );
        assert_eq!(mine.try_recv(), Ok(u64::MAX));
        common::kill_and_reap(&mut child);
        assert_eq!(
            mine.recv_timeout(LONG),
            Err(RecvTimeoutError::Disconnected),
            "{m:?}"
        );
        assert_eq!(mine.send(&1), Err(SendError::Disconnected(())), "{m:?}");
    }
}

/// `try_recv_bytes_into`: `Empty` with nothing there, the message whole in `TooLarge` for a
/// buffer too short, the length otherwise; `try_poll` agrees with what is waiting.
#[test]
fn try_recv_bytes_into_follows_the_try_rule() {
    let _g = shared();
    let (a, b) = pipe::<()>().unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(a.try_recv_bytes_into(&mut buf), Err(TryRecvError::Empty));
    assert_eq!(a.try_poll(), Err(TryRecvError::Empty));
    b.send_bytes(b"hello").unwrap();
    assert_eq!(a.poll_timeout(LONG), Ok(()));
    assert_eq!(
        a.try_recv_bytes_into(&mut buf),
        Err(TryRecvError::TooLarge(b"hello".to_vec()))
    );
    b.send_bytes(b"hey").unwrap();
    assert_eq!(a.try_recv_bytes_into(&mut buf), Ok(3));
    assert_eq!(&buf[..3], b"hey");
    drop(b);
    assert_eq!(a.try_poll(), Ok(()), "the peer is gone: a recv would not wait");
    assert_eq!(a.try_recv_bytes_into(&mut buf), Err(TryRecvError::Disconnected));
}
