//! What a queue handle and a pipe end share: turning items into the bytes a ring moves and
//! back (through a scratch buffer, so the hot path allocates nothing of its own), and the
//! three forms of every call.
//!
//! The rings below take a deadline and return the timeout twin of the operation's error
//! ([`SendTimeoutError<()>`], [`RecvTimeoutError`]). An endpoint passes it through, putting
//! the item back in place of `()`, and its three public forms only pick the error type:
//! the timed form returns it as it is, the try form (deadline "now") reads `Timeout` as
//! `Full` / `Empty`, the blocking form (no deadline, so never `Timeout`) drops the variant.

use std::cell::{Cell, RefCell};

use super::codec::Codec;
use crate::error::{RecvError, RecvTimeoutError, SendError, SendTimeoutError};

/// A buffer to encode into or receive into, lent for one call.
pub(crate) trait Scratch {
    /// Runs `f` with the buffer (cleared).
    fn with<R>(&self, f: impl FnOnce(&mut Vec<u8>) -> R) -> R;
}

thread_local! {
    /// Per-thread buffer for encoding and receiving, so a queue's `put`/`get` allocate
    /// nothing of their own on the hot path.
    static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// This thread's scratch buffer (a queue handle is shared by threads).
pub(crate) struct ThreadScratch;

impl Scratch for ThreadScratch {
    #[inline]
    fn with<R>(&self, f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
        let mut buf = SCRATCH.with(Cell::take);
        buf.clear();
        let r = f(&mut buf);
        if buf.capacity() <= 1 << 20 {
            SCRATCH.with(|s| s.set(buf));
        }
        r
    }
}

/// The handle's own buffer (a pipe end is used by one thread at a time).
impl Scratch for RefCell<Vec<u8>> {
    #[inline]
    fn with<R>(&self, f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
        let mut buf = self.take();
        buf.clear();
        let r = f(&mut buf);
        self.replace(buf);
        r
    }
}

/// Sends `item` through `send` as codec `C`'s bytes: the item's own bytes when the codec
/// has them (Pod, raw bytes: no encoding buffer), else its encoding in a scratch buffer.
/// `Encode(())` if it does not encode.
#[inline]
pub(crate) fn send_item<T, C: Codec<T>>(
    item: &T,
    scratch: &impl Scratch,
    send: impl FnOnce(&[u8]) -> Result<(), SendTimeoutError<()>>,
) -> Result<(), SendTimeoutError<()>> {
    match C::as_bytes(item) {
        Some(bytes) => send(bytes),
        None => scratch.with(|buf| match C::encode(item, buf) {
            Ok(()) => send(buf),
            Err(e) => Err(SendTimeoutError::Encode((), e)),
        }),
    }
}

/// Receives one message with `recv` and decodes it as codec `C`: into a fresh vector the
/// codec takes as it is (raw bytes), or into a scratch buffer. `Decode` if it does not
/// decode.
#[inline]
pub(crate) fn recv_item<T, C: Codec<T>>(
    scratch: &impl Scratch,
    recv: impl FnOnce(&mut Vec<u8>) -> Result<(), RecvTimeoutError>,
) -> Result<T, RecvTimeoutError> {
    if C::OWNS_BYTES {
        // Raw bytes: received into the vector that is returned (one copy, one allocation).
        let mut v = Vec::new();
        recv(&mut v)?;
        return C::decode_owned(v).map_err(RecvTimeoutError::Decode);
    }
    scratch.with(|buf| {
        recv(buf)?;
        C::decode(buf).map_err(RecvTimeoutError::Decode)
    })
}

/// The blocking form's error. A call without a deadline never times out: every layer below
/// waits as long as it takes when given none. (Were one to report a timeout anyway, the
/// channel would be misbehaving: `Corrupted`.)
#[cold]
pub(crate) fn blocking_send<T>(e: SendTimeoutError<T>) -> SendError<T> {
    e.split().unwrap_or_else(|item| {
        debug_assert!(false, "a send without a deadline timed out");
        SendError::Corrupted(item)
    })
}

/// The blocking form's error of a receive (see [`blocking_send`]).
#[cold]
pub(crate) fn blocking_recv(e: RecvTimeoutError) -> RecvError {
    e.split().unwrap_or_else(|| {
        debug_assert!(false, "a receive without a deadline timed out");
        RecvError::Corrupted
    })
}

/// The timeout twins as a pipe's retry loop sees them.
pub(crate) trait Failure: Sized {
    /// The deadline of the attempt passed (no room / nothing there).
    fn is_timeout(&self) -> bool;
    /// The channel says the other end is gone.
    fn is_disconnected(&self) -> bool;
    /// The shared memory is garbage.
    fn is_corrupted(&self) -> bool;
    /// The error for an end whose peer is gone.
    fn disconnected() -> Self;
}

impl Failure for SendTimeoutError<()> {
    fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(()))
    }

    fn is_disconnected(&self) -> bool {
        matches!(self, Self::Disconnected(()))
    }

    fn is_corrupted(&self) -> bool {
        matches!(self, Self::Corrupted(()))
    }

    fn disconnected() -> Self {
        Self::Disconnected(())
    }
}

impl Failure for RecvTimeoutError {
    fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout)
    }

    fn is_disconnected(&self) -> bool {
        matches!(self, Self::Disconnected)
    }

    fn is_corrupted(&self) -> bool {
        matches!(self, Self::Corrupted)
    }

    fn disconnected() -> Self {
        Self::Disconnected
    }
}
