//! Per-input logic of the `channel_ops` fuzz target, shared with its stable replay
//! (`tests/fuzz_replay.rs`) through `#[path]`, so both run exactly the same code.
//!
//! The input is a program of channel operations on one `Channel` (256 to 4096 bytes of
//! buffer), checked against a model: a `VecDeque` of the messages sent, plus the bytes
//! their frames take in the ring (an 8-byte header per frame, payloads of at most
//! `capacity / 4 - 8` bytes, padded to 8). Every message received must be the model's
//! front, `len()` must be the model's length after every step, and a send must succeed or
//! report `Full` exactly when the model says the room or the item limit allows.
//!
//! A message that does not fit in the free space all at once can only go while a reader
//! drains: such sends run on a second thread while this one receives everything queued and
//! then the new message. Everything else happens on the calling thread, and the outcome
//! does not depend on timing.
//!
//! Format: byte 0 picks the capacity (`256 << (b % 5)`); then each operation is one byte
//! (`op % 8`) followed by its arguments, until the input runs out:
//! - 0, 1, 2 — send: `u16` length (bit 15 set: up to three times the buffer, else up to two
//!   frames), a pattern seed byte, an item-limit byte (`l % 4 == 0`: limit `l / 4`);
//! - 3 — receive, non-blocking;
//! - 4 — receive with a 200 µs timeout, into a reused dirty buffer;
//! - 5 — switch between the original handle and a clone;
//! - 6 — a byte: `% 8 == 0` shuts the channel down;
//! - 7 — check `capacity`, `is_shutdown`, `is_empty`.
//!
//! At the end everything left is received and checked.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmproc::raw::Channel;
use shmproc::{RecvTimeoutError, SendTimeoutError};

/// Bound on receives that must succeed (a hang guard, not a speed check).
const GUARD: Duration = Duration::from_secs(10);

/// The payload of a test message: position-dependent, so a frame dropped, repeated or
/// reordered changes it.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(0x9e37_79b1).rotate_left(8) as u8 ^ (i >> 8) as u8 ^ seed)
        .collect()
}

/// Ring bytes that a message of `len` bytes takes while it is queued.
fn ring_bytes(len: usize, max_frame: usize) -> usize {
    if len == 0 {
        return 8;
    }
    let (whole, rest) = (len / max_frame, len % max_frame);
    whole * (8 + max_frame.next_multiple_of(8)) + if rest > 0 { 8 + rest.next_multiple_of(8) } else { 0 }
}

struct Model {
    queue: VecDeque<Vec<u8>>,
    used: usize,
    closed: bool,
    cap: usize,
    max_frame: usize,
}

impl Model {
    fn push(&mut self, m: Vec<u8>) {
        self.used += ring_bytes(m.len(), self.max_frame);
        self.queue.push_back(m);
    }

    fn pop(&mut self) -> Option<Vec<u8>> {
        let m = self.queue.pop_front()?;
        self.used -= ring_bytes(m.len(), self.max_frame);
        Some(m)
    }

    /// What a non-blocking receive must return now.
    fn expect_empty(&self) -> RecvTimeoutError {
        if self.closed {
            RecvTimeoutError::Closed
        } else {
            RecvTimeoutError::Timeout
        }
    }
}

fn check_recv(got: Result<Vec<u8>, RecvTimeoutError>, model: &mut Model, what: &str) {
    match model.pop() {
        Some(want) => match got {
            Ok(m) => assert!(
                m == want,
                "{what}: received {} bytes, expected the model's front of {} bytes{}",
                m.len(),
                want.len(),
                if m.len() == want.len() {
                    " (contents differ)"
                } else {
                    ""
                }
            ),
            Err(e) => panic!("{what}: {e:?} with {} messages queued", model.queue.len() + 1),
        },
        None => assert_eq!(
            got.map(|m| m.len()),
            Err(model.expect_empty()),
            "{what} on an empty channel"
        ),
    }
}

/// Runs one input; panics only if the channel disagrees with the model (or hangs).
pub fn channel_ops_input(data: &[u8]) {
    let mut input = data.iter().copied();
    let Some(b0) = input.next() else { return };
    let cap = 256usize << (b0 % 5);
    let chan = Arc::new(Channel::new(cap).expect("create a channel"));
    assert_eq!(chan.capacity(), cap);
    let mut model = Model {
        queue: VecDeque::new(),
        used: 0,
        closed: false,
        cap,
        max_frame: cap / 4 - 8,
    };
    let mut clone: Option<Arc<Channel>> = None;
    let mut use_clone = false;
    let mut dirty = vec![0xa5u8; 300];

    while let Some(op) = input.next() {
        let h = if use_clone {
            clone.as_ref().expect("made when switched to").clone()
        } else {
            chan.clone()
        };
        match op % 8 {
            0..=2 => {
                let (Some(lo), Some(hi), Some(seed), Some(l)) =
                    (input.next(), input.next(), input.next(), input.next())
                else {
                    break;
                };
                let raw_len = u16::from_le_bytes([lo, hi]);
                let len = if raw_len & 0x8000 != 0 {
                    usize::from(raw_len & 0x7fff) % (3 * cap + 1)
                } else {
                    usize::from(raw_len) % (2 * model.max_frame + 1)
                };
                let limit = (l % 4 == 0).then_some(u64::from(l / 4));
                let msg = pattern(len, seed);
                let first = 8 + len.min(model.max_frame).next_multiple_of(8);
                let expected = if model.closed {
                    Some(SendTimeoutError::Closed(()))
                } else if limit.is_some_and(|l| model.queue.len() as u64 >= l)
                    || model.cap - model.used < first
                {
                    Some(SendTimeoutError::Timeout(()))
                } else {
                    None
                };
                if expected.is_some() || model.used + ring_bytes(len, model.max_frame) <= model.cap {
                    let r = h.send(&msg, limit, Some(Instant::now()));
                    assert_eq!(
                        r,
                        expected.map_or(Ok(()), Err),
                        "send of {len} bytes (limit {limit:?})"
                    );
                    if r.is_ok() {
                        model.push(msg);
                    }
                } else {
                    // Too big for the free space: it streams while this thread drains.
                    let sender = h.clone();
                    let copy = msg.clone();
                    let t = std::thread::spawn(move || sender.send(&copy, limit, None));
                    model.push(msg);
                    while !model.queue.is_empty() {
                        let got = h.recv(Some(Instant::now() + GUARD));
                        check_recv(got, &mut model, "receive while a large message streams");
                    }
                    assert_eq!(
                        t.join().expect("sender thread"),
                        Ok(()),
                        "streamed send of {len} bytes"
                    );
                }
            }
            3 => check_recv(h.recv(Some(Instant::now())), &mut model, "try_recv"),
            4 => {
                let r = h.recv_into(&mut dirty, Some(Instant::now() + Duration::from_micros(200)));
                let got = r.map(|()| dirty.clone());
                check_recv(got, &mut model, "recv_into with a timeout");
            }
            5 => {
                if clone.is_none() {
                    clone = Some(Arc::new(Channel::clone(&chan)));
                }
                use_clone = !use_clone;
            }
            6 => {
                let Some(b) = input.next() else { break };
                if b % 8 == 0 {
                    h.shutdown();
                    model.closed = true;
                }
            }
            _ => {
                assert_eq!(h.capacity(), cap);
                assert_eq!(h.is_shutdown(), model.closed);
                assert_eq!(h.is_empty(), model.queue.is_empty());
            }
        }
        assert_eq!(chan.len(), model.queue.len() as u64, "len() after op {}", op % 8);
    }
    while !model.queue.is_empty() {
        let got = chan.recv(Some(Instant::now() + GUARD));
        check_recv(got, &mut model, "final drain");
    }
    assert_eq!(chan.recv(Some(Instant::now())), Err(model.expect_empty()));
    assert_eq!(chan.len(), 0);
}
