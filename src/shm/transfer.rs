//! How segment handles travel to spawned children inside serde arguments.
//!
//! A handle serializes to a small token: the number of its fd, the name for named
//! segments, and for an object in an arena chunk its slot (offset, length, layout). Every
//! chunk's fd is collected once however many of its slots travel, and the child maps it
//! once: decoding keeps a cache fd → `Segment` for the duration of one decode. That only means something while the spawn helper is encoding a child's
//! arguments: it collects the fds (and keeps them open across `exec`), and in the child it
//! lists the fds that were passed, so a token naming any other fd is refused. Outside those
//! two moments (e.g. writing a handle to a file) (de)serializing a handle is an error.

use std::cell::RefCell;
use std::os::fd::{OwnedFd, RawFd};

use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::arena::{self, SlotToken};
use super::header::Fingerprint;
use super::segment::Segment;
use crate::sys::fd;

thread_local! {
    static OUTGOING: RefCell<Option<Vec<RawFd>>> = const { RefCell::new(None) };
    static INCOMING: RefCell<Option<Vec<RawFd>>> = const { RefCell::new(None) };
    static LAST_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
    static ON_STARTED: RefCell<Option<Vec<OnStarted>>> = const { RefCell::new(None) };
    static CLAIMED: RefCell<Vec<RawFd>> = const { RefCell::new(Vec::new()) };
    /// Segments opened during the current decode, by the inherited fd they came from, so
    /// 100 000 handles into one arena chunk dup and map it once.
    static DECODED: RefCell<Option<Vec<(RawFd, Segment)>>> = const { RefCell::new(None) };
}

/// Adds `fd` to the fds the spawn helper is collecting for a child (for a value that
/// carries handles in an encoded form of its own). `false` outside such a collection.
pub(crate) fn pass_fd(fd: RawFd) -> bool {
    OUTGOING.with(|o| match o.borrow_mut().as_mut() {
        Some(v) => {
            if !v.contains(&fd) {
                v.push(fd);
            }
            true
        }
        None => false,
    })
}

/// In a child decoding its arguments: takes ownership of the inherited original `fd`, so
/// that it stays open after decoding (the spawn helper closes the others). `None` if `fd`
/// was not passed to this child or was claimed already.
pub(crate) fn claim_fd(fd: RawFd) -> Option<OwnedFd> {
    let passed = INCOMING.with(|i| i.borrow().as_ref().is_some_and(|v| v.contains(&fd)));
    let fresh = CLAIMED.with(|c| {
        let mut c = c.borrow_mut();
        let fresh = !c.contains(&fd);
        if passed && fresh {
            c.push(fd);
        }
        fresh
    });
    if !(passed && fresh) {
        return None;
    }
    // SAFETY: `fd` is one of the originals the spawn helper kept open for this child and
    // would close after decoding; recording it in `CLAIMED` hands that duty to us, once.
    Some(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// The fds claimed while decoding the arguments (the helper must not close them); resets.
pub(crate) fn take_claimed() -> Vec<RawFd> {
    CLAIMED.with(|c| std::mem::take(&mut *c.borrow_mut()))
}

/// Work a handle asks the spawn helper to do once the child's pid is known (e.g. record the
/// child as a holder of a pipe end before the parent drops its own copy).
pub(crate) type OnStarted = Box<dyn FnOnce(u32)>;

/// Called by a handle while it is serialized for a spawned child: `f` runs with the child's
/// pid right after it starts (before the parent drops the arguments). Returns `false`
/// outside such serialization.
pub(crate) fn on_child_started(f: OnStarted) -> bool {
    ON_STARTED.with(|o| match o.borrow_mut().as_mut() {
        Some(v) => {
            v.push(f);
            true
        }
        None => false,
    })
}

/// The message of the last handle that failed to deserialize on this thread (codecs such
/// as postcard drop custom messages, so the spawn helper fetches it from here).
pub(crate) fn take_last_error() -> Option<String> {
    LAST_ERROR.with(|e| e.borrow_mut().take())
}

pub(crate) fn fail<E: serde::de::Error>(msg: String) -> E {
    LAST_ERROR.with(|e| *e.borrow_mut() = Some(msg.clone()));
    E::custom(msg)
}

/// Runs `f` (which serializes a child's arguments) and returns the fds its handles named
/// and the work they asked for once the child has started.
pub(crate) fn collect_fds<R>(f: impl FnOnce() -> R) -> (R, Vec<RawFd>, Vec<OnStarted>) {
    let prev = OUTGOING.with(|o| o.replace(Some(Vec::new())));
    let prev_started = ON_STARTED.with(|o| o.replace(Some(Vec::new())));
    let r = f();
    let fds = OUTGOING.with(|o| o.replace(prev)).unwrap_or_default();
    let started = ON_STARTED.with(|o| o.replace(prev_started)).unwrap_or_default();
    (r, fds, started)
}

/// Runs `f` (which deserializes arguments) while the inherited `fds` may be claimed.
pub(crate) fn with_inherited<R>(fds: &[RawFd], f: impl FnOnce() -> R) -> R {
    let prev = INCOMING.with(|i| i.replace(Some(fds.to_vec())));
    let prev_decoded = DECODED.with(|c| c.replace(Some(Vec::new())));
    let r = f();
    INCOMING.with(|i| i.replace(prev));
    // Drop the cache's clones: the handles decoded keep what they use.
    drop(DECODED.with(|c| c.replace(prev_decoded)));
    r
}

#[derive(Serialize, Deserialize)]
struct Token {
    fd: i32,
    name: Option<String>,
    /// `None`: the whole segment (its own segment, offset 0). `Some`: a slot of an arena.
    slot: Option<SlotToken>,
}

impl Serialize for Segment {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_token(self, None, s)
    }
}

/// Serializes a handle to the object at `offset` (`len` bytes of elements `fp`) in `seg`:
/// a slot token for an arena chunk, a whole-segment token otherwise.
pub(crate) fn serialize_slot<S: Serializer>(
    seg: &Segment,
    offset: usize,
    len: usize,
    fp: &Fingerprint,
    s: S,
) -> Result<S::Ok, S::Error> {
    let slot = arena::is_arena(seg).then_some(SlotToken {
        offset: offset as u64,
        len: len as u64,
        size: fp.size,
        align: fp.align,
        hash: fp.hash,
    });
    serialize_token(seg, slot, s)
}

fn serialize_token<S: Serializer>(seg: &Segment, slot: Option<SlotToken>, s: S) -> Result<S::Ok, S::Error> {
    let fd = seg.as_raw_fd();
    if !pass_fd(fd) {
        return Err(S::Error::custom(
            "a shmproc segment handle can only be serialized as an argument of a spawned child",
        ));
    }
    Token {
        fd,
        name: seg.name().map(str::to_owned),
        slot,
    }
    .serialize(s)
}

/// Rebuilds a segment from a token inside a spawned child, checking `expected` if given.
/// A slot token (an object in an arena) is refused: the whole chunk is not the object.
pub(crate) fn deserialize_segment<'de, D: Deserializer<'de>>(
    d: D,
    expected: Option<&Fingerprint>,
) -> Result<Segment, D::Error> {
    let t = Token::deserialize(d)?;
    if t.slot.is_some() {
        return Err(fail("token names an arena slot, not a whole segment".to_owned()));
    }
    let seg = open_token(t.fd, t.name)?;
    check_layout(&seg, expected).map_err(|e| fail(e.to_string()))?;
    Ok(seg)
}

/// Rebuilds the place of an object of elements `expected` from a token inside a spawned
/// child: `(segment, offset, len)` in its data. A whole-segment token gives offset 0 and
/// the segment's length; a slot token is checked against its chunk ([`arena::check_slot`]).
pub(crate) fn deserialize_slot<'de, D: Deserializer<'de>>(
    d: D,
    expected: &Fingerprint,
) -> Result<(Segment, usize, usize), D::Error> {
    let t = Token::deserialize(d)?;
    let seg = open_token(t.fd, t.name)?;
    match t.slot {
        None => {
            check_layout(&seg, Some(expected)).map_err(|e| fail(e.to_string()))?;
            let len = seg.len();
            Ok((seg, 0, len))
        }
        Some(slot) => {
            let (off, len) = arena::check_slot(&seg, &slot, expected).map_err(|e| fail(e.to_string()))?;
            Ok((seg, off, len))
        }
    }
}

fn check_layout(seg: &Segment, expected: Option<&Fingerprint>) -> Result<(), crate::error::SegmentError> {
    expected.map_or(Ok(()), |exp| exp.expect(seg.layout()))
}

/// The segment behind an inherited fd, validated for integrity; opened once per decode.
fn open_token<E: serde::de::Error>(raw: i32, name: Option<String>) -> Result<Segment, E> {
    let cached = DECODED.with(|c| {
        c.borrow()
            .as_ref()
            .and_then(|v| v.iter().find(|(fd, _)| *fd == raw).map(|(_, s)| s.clone()))
    });
    if let Some(seg) = cached {
        return Ok(seg);
    }
    let allowed = INCOMING.with(|i| i.borrow().as_ref().map(|v| v.contains(&raw)));
    match allowed {
        None => {
            return Err(fail(
                "a shmproc segment handle can only be deserialized in a spawned child".to_owned(),
            ))
        }
        Some(false) => return Err(fail("segment token names an fd that was not passed".to_owned())),
        Some(true) => {}
    }
    // SAFETY: the fd number is in the list of fds the spawn helper kept open for this child,
    // and the helper closes those originals only after deserialization finishes.
    let borrowed = unsafe { fd::borrow_raw(raw) };
    let own: OwnedFd = fd::dup_cloexec(borrowed).map_err(|e| fail(e.to_string()))?;
    let seg = Segment::from_fd_named(own, name, None).map_err(|e| fail(e.to_string()))?;
    DECODED.with(|c| {
        if let Some(v) = c.borrow_mut().as_mut() {
            v.push((raw, seg.clone()));
        }
    });
    Ok(seg)
}

impl<'de> Deserialize<'de> for Segment {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_segment(d, None)
    }
}
