//! How segment handles travel to spawned children inside serde arguments.
//!
//! A handle serializes to a small token: the number of its fd plus the name for named
//! segments. That only means something while the spawn helper is encoding a child's
//! arguments: it collects the fds (and keeps them open across `exec`), and in the child it
//! lists the fds that were passed, so a token naming any other fd is refused. Outside those
//! two moments (e.g. writing a handle to a file) (de)serializing a handle is an error.

use std::cell::RefCell;
use std::os::fd::{OwnedFd, RawFd};

use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::header::Fingerprint;
use super::segment::Segment;
use crate::sys::fd;

thread_local! {
    static OUTGOING: RefCell<Option<Vec<RawFd>>> = const { RefCell::new(None) };
    static INCOMING: RefCell<Option<Vec<RawFd>>> = const { RefCell::new(None) };
    static LAST_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
    static ON_STARTED: RefCell<Option<Vec<OnStarted>>> = const { RefCell::new(None) };
    static CLAIMED: RefCell<Vec<RawFd>> = const { RefCell::new(Vec::new()) };
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
    let r = f();
    INCOMING.with(|i| i.replace(prev));
    r
}

#[derive(Serialize, Deserialize)]
struct Token {
    fd: i32,
    name: Option<String>,
}

impl Serialize for Segment {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let fd = self.as_raw_fd();
        let ok = OUTGOING.with(|o| match o.borrow_mut().as_mut() {
            Some(v) => {
                if !v.contains(&fd) {
                    v.push(fd);
                }
                true
            }
            None => false,
        });
        if !ok {
            return Err(S::Error::custom(
                "a shmproc segment handle can only be serialized as an argument of a spawned child",
            ));
        }
        Token {
            fd,
            name: self.name().map(str::to_owned),
        }
        .serialize(s)
    }
}

/// Rebuilds a segment from a token inside a spawned child, checking `expected` if given.
pub(crate) fn deserialize_segment<'de, D: Deserializer<'de>>(
    d: D,
    expected: Option<&Fingerprint>,
) -> Result<Segment, D::Error> {
    let t = Token::deserialize(d)?;
    let allowed = INCOMING.with(|i| i.borrow().as_ref().map(|v| v.contains(&t.fd)));
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
    let borrowed = unsafe { fd::borrow_raw(t.fd) };
    let own: OwnedFd = fd::dup_cloexec(borrowed).map_err(|e| fail(e.to_string()))?;
    Segment::from_fd_named(own, t.name, expected).map_err(|e| fail(e.to_string()))
}

impl<'de> Deserialize<'de> for Segment {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_segment(d, None)
    }
}
