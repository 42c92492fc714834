//! Per-input logic of the `arena_slot` fuzz target, shared with its stable replay
//! (`tests/fuzz_replay.rs`) through `#[path]`, so both run exactly the same code.
//!
//! The input describes a received slot token and the chunk it names: a real arena chunk
//! is made, the input's bytes are written into its data, some of its header bytes are
//! scribbled, and the token (offset, byte length, element type) goes through the open
//! path a spawned child uses. Every outcome must be a typed error, or a handle that is
//! inside the chunk and usable (read, written, read back) — never a panic or a fault.
//!
//! Layout: `[scribbles n][type][offset u64 LE][len u64 LE][n × (header index u16 LE,
//! byte)][data…]`. Missing bytes read as zero.

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering};

use shmproc::{
    Array, Fingerprint, RawArray, RawValue, Segment, SegmentError, Shared, TryLockError, HEADER_LEN,
    MAX_ALIGN,
};

/// Data bytes of the chunk the fuzzer writes into (a small chunk keeps runs fast).
const DATA: usize = 16 * 1024;

struct Input<'a> {
    data: &'a [u8],
    at: usize,
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }
    fn u64(&mut self) -> u64 {
        let mut v = [0u8; 8];
        for b in &mut v {
            *b = self.byte();
        }
        u64::from_le_bytes(v)
    }
    fn rest(&self) -> &[u8] {
        self.data.get(self.at..).unwrap_or(&[])
    }
}

/// Runs one input; panics only if the library misbehaves.
pub fn arena_slot_input(data: &[u8]) {
    let mut inp = Input { data, at: 0 };
    let scribbles = inp.byte() % 8;
    let ty = inp.byte();
    let offset = inp.u64();
    let len = inp.u64();
    let chunk = Segment::anonymous(Fingerprint::new(1, MAX_ALIGN, "shmproc arena"), DATA).expect("chunk");
    let lead = chunk.total_len() - chunk.len();
    // SAFETY: the mapping starts `lead` bytes before the data; nobody else has this chunk.
    let base = unsafe { chunk.as_ptr().sub(lead) };
    for _ in 0..scribbles {
        let at = usize::from(u16::from_le_bytes([inp.byte(), inp.byte()])) % HEADER_LEN;
        let b = inp.byte();
        // SAFETY: `at < HEADER_LEN`, inside the header page of our own mapping.
        unsafe { base.add(at).write_volatile(b) };
    }
    let body = inp.rest();
    let n = body.len().min(DATA);
    // SAFETY: `n <= DATA`, the chunk's data length; `body` is private memory.
    unsafe { std::ptr::copy_nonoverlapping(body.as_ptr(), chunk.as_ptr(), n) };

    // SAFETY: `chunk` keeps its fd open while the borrow is used.
    let fd = || {
        unsafe { BorrowedFd::borrow_raw(chunk.as_raw_fd()) }
            .try_clone_to_owned()
            .expect("dup")
    };
    match ty % 6 {
        0 => check(
            Shared::<AtomicU64>::open_slot(fd(), offset, len, &Fingerprint::of::<AtomicU64>()),
            |s| {
                s.fetch_add(1, Ordering::Relaxed);
                let _ = s.load(Ordering::Relaxed);
                (s.segment().clone(), s.offset(), 8)
            },
        ),
        1 => check(
            RawValue::<u64>::open_slot(fd(), offset, len, &Fingerprint::of::<u64>()),
            |v| {
                let x = v.get();
                v.set(x.wrapping_add(1));
                assert_eq!(
                    v.get(),
                    x.wrapping_add(1),
                    "a private slot reads back what was written"
                );
                (v.segment().clone(), v.offset(), 8)
            },
        ),
        2 => check(
            RawArray::<u32>::open_slot(fd(), offset, len, &Fingerprint::of::<u32>()),
            |a| {
                let all = a.to_vec();
                assert_eq!(all.len(), a.len());
                if !a.is_empty() {
                    a.set(a.len() - 1, 7).expect("last index is in bounds");
                }
                assert!(a.get(a.len()).is_none());
                (a.segment().clone(), a.offset(), a.len() * 4)
            },
        ),
        3 => check(
            RawValue::<[u8; 3]>::open_slot(fd(), offset, len, &Fingerprint::of::<[u8; 3]>()),
            |v| {
                v.set([1, 2, 3]);
                (v.segment().clone(), v.offset(), 3)
            },
        ),
        // A locked array: its lock word is fuzzed too, so only the forms that never wait are
        // used (a fuzzed "holder" may be any live thread of the system).
        4 => check(
            Array::<u32>::open_slot(fd(), offset, len, &Array::<u32>::slot_layout()),
            |a| {
                assert_eq!(a.get(a.len()).map_err(drop), Ok(None));
                assert!(a.set(a.len(), 1).is_err(), "an index past the end was accepted");
                let guard = match a.try_lock() {
                    Ok(g) => Some(g),
                    Err(e @ TryLockError::OwnerDied(_)) => e.into_guard(),
                    Err(e) => {
                        assert!(!e.to_string().is_empty());
                        None
                    }
                };
                if let Some(mut g) = guard {
                    assert_eq!(g.len(), a.len());
                    if let Some(last) = g.last_mut() {
                        *last = 7;
                        assert_eq!(*last, 7, "a private slot reads back what was written");
                    }
                }
                // The token's byte length is the whole array (lock and elements).
                (a.segment().clone(), a.offset(), len as usize)
            },
        ),
        // A token whose layout names another type than the receiver's: always refused.
        _ => match RawValue::<u64>::open_slot(fd(), offset, len, &Fingerprint::of::<i64>()) {
            Ok(_) => panic!("a slot of another type was accepted"),
            Err(e) => assert!(!e.to_string().is_empty()),
        },
    }
}

/// An error must be typed and printable; a handle must lie inside its chunk and be usable.
fn check<H>(opened: Result<H, SegmentError>, use_it: impl FnOnce(&H) -> (Segment, usize, usize)) {
    match opened {
        Ok(h) => {
            let (seg, off, bytes) = use_it(&h);
            assert_eq!(off % 64, 0, "slot offset {off} is not slot-aligned");
            assert!(
                off + bytes <= seg.len(),
                "slot {off}+{bytes} runs past {}",
                seg.len()
            );
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}
