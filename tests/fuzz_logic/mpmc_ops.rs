//! Per-input logic of the `mpmc_ops` fuzz target, shared with its stable replay
//! (`tests/fuzz_replay.rs`) through `#[path]`, so both run exactly the same code.
//!
//! The input is a program of operations on one `SlotRing` of 1 to 7 slots (most of them not
//! a power of two) of 8, 16 or 24 bytes, checked against a model: a `VecDeque` of the items
//! pushed. Every pop must return the model's front (its bytes, and nothing written past the
//! slot size into the caller's buffer), every push must succeed or fail exactly as the model
//! says (`TooLarge`, `Closed`, `Full`), and `len()` must equal the model's length after
//! every step. All calls run on this thread, so the outcome does not depend on timing; the
//! timed forms wait 200 µs and must not return early.
//!
//! Format: byte 0 picks the capacity (`1 + b % 7`), byte 1 the slot size (`1 + b % 24`,
//! rounded up to 8); then each operation is one byte (`op % 8`) followed by its arguments,
//! until the input runs out:
//! - 0, 1 — try_push: a length byte (`% (slot_size + 3)`, so some are too large) and a seed;
//! - 2 — push with a 200 µs deadline: the same arguments;
//! - 3 — try_pop;
//! - 4 — pop with a 200 µs deadline;
//! - 5 — switch between the original handle and a clone;
//! - 6 — a byte: `% 4 == 0` shuts the ring down;
//! - 7 — check `capacity`, `slot_size`, `is_shutdown`, `is_empty`.
//!
//! At the end everything left is popped and checked.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use shmproc::raw::SlotRing;
use shmproc::{RecvTimeoutError, SendTimeoutError, TryRecvError, TrySendError};

const WAIT: Duration = Duration::from_micros(200);
/// Filler of the caller's buffer: what a pop must leave alone past the slot size.
const DIRT: u8 = 0xee;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed.rotate_left(i as u32 % 8))
        .collect()
}

struct Model {
    items: VecDeque<Vec<u8>>,
    closed: bool,
    cap: usize,
    slot: usize,
}

/// Why the model says a push fails.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Refused {
    TooLarge,
    Closed,
    NoRoom,
}

impl Model {
    fn push_outcome(&self, len: usize) -> Result<(), Refused> {
        if len > self.slot {
            Err(Refused::TooLarge)
        } else if self.closed {
            Err(Refused::Closed)
        } else if self.items.len() == self.cap {
            Err(Refused::NoRoom)
        } else {
            Ok(())
        }
    }
}

/// The timed push's error for a refusal.
fn timed_err(r: Refused) -> SendTimeoutError<()> {
    match r {
        Refused::TooLarge => SendTimeoutError::TooLarge(()),
        Refused::Closed => SendTimeoutError::Closed(()),
        Refused::NoRoom => SendTimeoutError::Timeout(()),
    }
}

/// The try push's error for a refusal.
fn try_err(r: Refused) -> TrySendError<()> {
    match r {
        Refused::TooLarge => TrySendError::TooLarge(()),
        Refused::Closed => TrySendError::Closed(()),
        Refused::NoRoom => TrySendError::Full(()),
    }
}

/// A pop as the timed form reports it (the try form's `Empty` read as `Timeout`).
fn pop_as_timed(ring: &SlotRing, out: &mut [u8], deadline: Option<Instant>) -> Result<(), RecvTimeoutError> {
    match deadline {
        Some(d) => ring.pop(out, Some(d)),
        None => ring.try_pop(out).map_err(|e| match e {
            TryRecvError::Empty => RecvTimeoutError::Timeout,
            TryRecvError::Closed => RecvTimeoutError::Closed,
            TryRecvError::Corrupted => RecvTimeoutError::Corrupted,
            e => panic!("try_pop: unexpected {e:?}"),
        }),
    }
}

/// One pop: `deadline` `None` is the try form.
fn check_pop(ring: &SlotRing, model: &mut Model, deadline: Option<Instant>, what: &str) {
    let mut out = vec![DIRT; model.slot + 3];
    let t = Instant::now();
    let r = pop_as_timed(ring, &mut out, deadline);
    match model.items.pop_front() {
        Some(want) => {
            assert_eq!(r, Ok(()), "{what} with {} items queued", model.items.len() + 1);
            assert!(out[..want.len()] == want[..], "{what}: wrong bytes");
            assert!(
                out[model.slot..].iter().all(|&b| b == DIRT),
                "{what}: wrote past the slot"
            );
        }
        None => {
            let want = if model.closed {
                RecvTimeoutError::Closed
            } else {
                RecvTimeoutError::Timeout
            };
            assert_eq!(r, Err(want.clone()), "{what} on an empty ring");
            assert!(out.iter().all(|&b| b == DIRT), "{what}: a failed pop wrote");
            if want == RecvTimeoutError::Timeout && deadline.is_some_and(|d| d > t) {
                assert!(Instant::now() >= deadline.unwrap(), "{what}: timed out early");
            }
        }
    }
}

/// Runs one input; panics only if the ring disagrees with the model.
pub fn mpmc_ops_input(data: &[u8]) {
    let mut input = data.iter().copied();
    let (Some(b0), Some(b1)) = (input.next(), input.next()) else {
        return;
    };
    let cap = 1 + usize::from(b0 % 7);
    let asked = 1 + usize::from(b1 % 24);
    let ring = SlotRing::new(cap, asked).expect("create a ring");
    let slot = asked.next_multiple_of(8);
    assert_eq!((ring.capacity(), ring.slot_size()), (cap, slot));
    let clone = ring.clone();
    let mut model = Model {
        items: VecDeque::new(),
        closed: false,
        cap,
        slot,
    };
    let mut use_clone = false;

    while let Some(op) = input.next() {
        let h = if use_clone { &clone } else { &ring };
        match op % 8 {
            0..=2 => {
                let (Some(l), Some(seed)) = (input.next(), input.next()) else {
                    break;
                };
                let item = pattern(usize::from(l) % (slot + 3), seed);
                let want = model.push_outcome(item.len());
                let t = Instant::now();
                let ok = if op % 8 == 2 {
                    let r = h.push(&item, Some(t + WAIT));
                    assert_eq!(r, want.map_err(timed_err), "push of {} bytes", item.len());
                    r.is_ok()
                } else {
                    let r = h.try_push(&item);
                    assert_eq!(r, want.map_err(try_err), "try_push of {} bytes", item.len());
                    r.is_ok()
                };
                if want == Err(Refused::NoRoom) && op % 8 == 2 {
                    assert!(t.elapsed() >= WAIT, "push timed out early");
                }
                if ok {
                    model.items.push_back(item);
                }
            }
            3 => check_pop(h, &mut model, None, "try_pop"),
            4 => check_pop(h, &mut model, Some(Instant::now() + WAIT), "timed pop"),
            5 => use_clone = !use_clone,
            6 => {
                let Some(b) = input.next() else { break };
                if b % 4 == 0 {
                    h.shutdown();
                    model.closed = true;
                }
            }
            _ => {
                assert_eq!((h.capacity(), h.slot_size()), (cap, slot));
                assert_eq!(h.is_shutdown(), model.closed);
                assert_eq!(h.is_empty(), model.items.is_empty());
            }
        }
        assert_eq!(ring.len(), model.items.len(), "len() after op {}", op % 8);
        assert_eq!(clone.len(), model.items.len());
    }
    while !model.items.is_empty() {
        check_pop(&ring, &mut model, None, "final drain");
    }
    assert_eq!(ring.len(), 0);
    check_pop(&ring, &mut model, None, "pop after the drain");
}
