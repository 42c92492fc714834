//! The channel family's errors: one set for every queue, pipe and raw ring.
//!
//! Named after the operation, crossbeam-style. Each blocking operation has three forms and
//! three error types: `send` → [`SendError`], `send_timeout` → [`SendTimeoutError`]
//! (`Timeout` when the time is up), `try_send` → [`TrySendError`] (`Full` when it would
//! have to wait); the same for `recv` with [`RecvError`], [`RecvTimeoutError`] (`Timeout`)
//! and [`TryRecvError`] (`Empty`). A queue's `put`/`get` use the same types.
//!
//! The blocking error's variants are in both twins too, and `From` converts it into them,
//! so `?` moves a failure from one form to another. A failed send hands its item back
//! ([`into_inner`](SendError::into_inner)); `Debug` never prints it. Every type here is
//! `Send + Sync + 'static` when its item is, so `?` into `Box<dyn Error + Send + Sync>`
//! or `anyhow` just works, and serializable, so a child process can return one.
//!
//! ```
//! use shmproc::{Queue, TryRecvError, TrySendError};
//!
//! fn relay(from: &Queue<u32>, to: &Queue<u32>) -> Result<(), Box<dyn std::error::Error>> {
//!     let x = from.get()?; // RecvError
//!     to.put(x + 1)?; // SendError<u32>
//!     Ok(())
//! }
//!
//! let (a, b) = (Queue::new(1)?, Queue::new(1)?);
//! a.put(1)?;
//! relay(&a, &b)?;
//! assert_eq!(b.get()?, 2);
//! assert_eq!(b.try_get(), Err(TryRecvError::Empty));
//! b.put(3)?;
//! assert_eq!(b.try_put(4), Err(TrySendError::Full(4)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

/// Generates one of the three send errors: the common variants, plus `$extra` (the twin's
/// own reason: `Full` or `Timeout`) when given.
macro_rules! send_error {
    (
        $(#[$doc:meta])*
        $name:ident $(, $(#[$xdoc:meta])* $extra:ident => $xmsg:literal)?
    ) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[non_exhaustive]
        pub enum $name<T> {
            $($(#[$xdoc])* $extra(T),)?
            /// This handle was closed, or the channel (queue) was shut down.
            Closed(T),
            /// Every receiver is gone: the other end of a pipe was closed by every process
            /// holding it, or they all died (Python's `BrokenPipeError`); the consumer of an
            /// SPSC ring closed it.
            Disconnected(T),
            /// The item could not be encoded; the codec's message.
            Encode(T, String),
            /// The item does not fit the channel at all (larger than a ring's slot).
            TooLarge(T),
            /// This end of a one-way pipe only receives.
            NotWritable(T),
            /// The channel's shared memory holds values no correct process writes (a buggy
            /// or hostile peer): reported, never undefined behaviour.
            Corrupted(T),
        }

        impl<T> $name<T> {
            /// The item that was not sent.
            pub fn into_inner(self) -> T {
                match self {
                    $(Self::$extra(t) => t,)?
                    Self::Closed(t)
                    | Self::Disconnected(t)
                    | Self::Encode(t, _)
                    | Self::TooLarge(t)
                    | Self::NotWritable(t)
                    | Self::Corrupted(t) => t,
                }
            }

            /// Whether every receiver is gone ([`Disconnected`](Self::Disconnected)).
            pub fn is_disconnected(&self) -> bool {
                matches!(self, Self::Disconnected(_))
            }

            /// The same error carrying `f(item)` (e.g. a raw ring's `()` replaced by the
            /// item the caller still has).
            pub fn map<U>(self, f: impl FnOnce(T) -> U) -> $name<U> {
                match self {
                    $(Self::$extra(t) => $name::$extra(f(t)),)?
                    Self::Closed(t) => $name::Closed(f(t)),
                    Self::Disconnected(t) => $name::Disconnected(f(t)),
                    Self::Encode(t, e) => $name::Encode(f(t), e),
                    Self::TooLarge(t) => $name::TooLarge(f(t)),
                    Self::NotWritable(t) => $name::NotWritable(f(t)),
                    Self::Corrupted(t) => $name::Corrupted(f(t)),
                }
            }
        }

        /// Names the variant; the item is not printed.
        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $(Self::$extra(_) => f.write_str(concat!(stringify!($extra), "(..)")),)?
                    Self::Closed(_) => f.write_str("Closed(..)"),
                    Self::Disconnected(_) => f.write_str("Disconnected(..)"),
                    Self::Encode(_, e) => write!(f, "Encode(.., {e:?})"),
                    Self::TooLarge(_) => f.write_str("TooLarge(..)"),
                    Self::NotWritable(_) => f.write_str("NotWritable(..)"),
                    Self::Corrupted(_) => f.write_str("Corrupted(..)"),
                }
            }
        }

        impl<T> fmt::Display for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $(Self::$extra(_) => f.write_str($xmsg),)?
                    Self::Closed(_) => f.write_str("sending on a closed channel"),
                    Self::Disconnected(_) => f.write_str("the receiving side is disconnected"),
                    Self::Encode(_, e) => write!(f, "cannot encode the item: {e}"),
                    Self::TooLarge(_) => f.write_str("the item is too large for the channel"),
                    Self::NotWritable(_) => f.write_str("this end of the pipe cannot send"),
                    Self::Corrupted(_) => f.write_str("the channel's shared memory is corrupted"),
                }
            }
        }

        impl<T> std::error::Error for $name<T> {}
    };
}

send_error! {
    /// Why a blocking send (a queue's `put`, a pipe's `send`, a ring's push without a
    /// deadline) failed; the item is handed back.
    ///
    /// ```
    /// let q = shmproc::Queue::<u32>::new(0)?;
    /// q.close();
    /// assert_eq!(q.put(1), Err(shmproc::SendError::Closed(1)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    SendError
}

send_error! {
    /// Why a non-blocking send (`try_put`, `try_send`, `try_push`) failed: [`Full`]
    /// (Python's `queue.Full`) if it would have to wait, or a [`SendError`]'s reason.
    ///
    /// [`Full`]: TrySendError::Full
    ///
    /// ```
    /// let q = shmproc::Queue::<u32>::new(1)?;
    /// q.put(1)?;
    /// assert_eq!(q.try_put(2), Err(shmproc::TrySendError::Full(2)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    TrySendError,
    /// No room now (Python's `queue.Full`).
    Full => "the channel is full"
}

send_error! {
    /// Why a send with a timeout (`put_timeout`, `send_timeout`, a raw push with a
    /// deadline) failed: [`Timeout`] when the time ran out, or a [`SendError`]'s reason.
    ///
    /// [`Timeout`]: SendTimeoutError::Timeout
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = shmproc::Queue::<u32>::new(1)?;
    /// q.put(1)?;
    /// let e = q.put_timeout(2, Duration::from_millis(1)).unwrap_err();
    /// assert_eq!(e, shmproc::SendTimeoutError::Timeout(2));
    /// assert_eq!(e.into_inner(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    SendTimeoutError,
    /// No room before the timeout (Python's `queue.Full` after a timeout).
    Timeout => "timed out waiting to send"
}

macro_rules! send_from {
    ($($name:ident),*) => {$(
        impl<T> From<SendError<T>> for $name<T> {
            fn from(e: SendError<T>) -> Self {
                match e {
                    SendError::Closed(t) => Self::Closed(t),
                    SendError::Disconnected(t) => Self::Disconnected(t),
                    SendError::Encode(t, e) => Self::Encode(t, e),
                    SendError::TooLarge(t) => Self::TooLarge(t),
                    SendError::NotWritable(t) => Self::NotWritable(t),
                    SendError::Corrupted(t) => Self::Corrupted(t),
                }
            }
        }
    )*};
}
send_from!(TrySendError, SendTimeoutError);

impl<T> SendTimeoutError<T> {
    /// Whether the time ran out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }

    /// The blocking error of this failure, or `Err(item)` if it is a timeout.
    pub(crate) fn split(self) -> Result<SendError<T>, T> {
        Ok(match self {
            Self::Timeout(t) => return Err(t),
            Self::Closed(t) => SendError::Closed(t),
            Self::Disconnected(t) => SendError::Disconnected(t),
            Self::Encode(t, e) => SendError::Encode(t, e),
            Self::TooLarge(t) => SendError::TooLarge(t),
            Self::NotWritable(t) => SendError::NotWritable(t),
            Self::Corrupted(t) => SendError::Corrupted(t),
        })
    }

    /// The try form's error for a call whose deadline was "now": a timeout means the
    /// channel was full.
    pub(crate) fn into_try(self) -> TrySendError<T> {
        match self.split() {
            Ok(e) => e.into(),
            Err(t) => TrySendError::Full(t),
        }
    }
}

impl<T> TrySendError<T> {
    /// Whether there was no room ([`Full`](Self::Full)).
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full(_))
    }

    /// The timed form's error for a wait whose last try found no room: `Full` is `Timeout`.
    pub(crate) fn into_timeout(self) -> SendTimeoutError<T> {
        match self {
            Self::Full(t) => SendTimeoutError::Timeout(t),
            Self::Closed(t) => SendTimeoutError::Closed(t),
            Self::Disconnected(t) => SendTimeoutError::Disconnected(t),
            Self::Encode(t, e) => SendTimeoutError::Encode(t, e),
            Self::TooLarge(t) => SendTimeoutError::TooLarge(t),
            Self::NotWritable(t) => SendTimeoutError::NotWritable(t),
            Self::Corrupted(t) => SendTimeoutError::Corrupted(t),
        }
    }
}

/// Generates one of the three receive errors: the common variants, plus `$extra` (the
/// twin's own reason: `Empty` or `Timeout`) when given.
macro_rules! recv_error {
    (
        $(#[$doc:meta])*
        $name:ident $(, $(#[$xdoc:meta])* $extra:ident => $xmsg:literal)?
    ) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$xdoc])* $extra,)?
            /// This handle was closed, or the channel (queue) was shut down and is drained.
            Closed,
            /// Every sender is gone and everything they sent was received: the other end of
            /// a pipe was closed by every process holding it, or they all died (Python's
            /// `EOFError`); the producer of an SPSC ring closed it.
            Disconnected,
            /// A message arrived but does not decode as the item type; the codec's message.
            Decode(String),
            /// The message is longer than the caller's buffer (`recv_bytes_into`, Python's
            /// `BufferTooShort`): here it is, whole, so nothing is lost.
            TooLarge(Vec<u8>),
            /// This end of a one-way pipe only sends.
            NotReadable,
            /// The channel's shared memory holds values no correct process writes (a buggy
            /// or hostile peer): reported, never undefined behaviour.
            Corrupted,
        }

        /// Names the variant; a returned message is not printed, only its length.
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $(Self::$extra => f.write_str(stringify!($extra)),)?
                    Self::Closed => f.write_str("Closed"),
                    Self::Disconnected => f.write_str("Disconnected"),
                    Self::Decode(e) => write!(f, "Decode({e:?})"),
                    Self::TooLarge(m) => write!(f, "TooLarge({} bytes)", m.len()),
                    Self::NotReadable => f.write_str("NotReadable"),
                    Self::Corrupted => f.write_str("Corrupted"),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $(Self::$extra => f.write_str($xmsg),)?
                    Self::Closed => f.write_str("receiving on a closed channel"),
                    Self::Disconnected => f.write_str("the sending side is disconnected"),
                    Self::Decode(e) => write!(f, "cannot decode the message: {e}"),
                    Self::TooLarge(m) => write!(f, "message of {} bytes does not fit the buffer", m.len()),
                    Self::NotReadable => f.write_str("this end of the pipe cannot receive"),
                    Self::Corrupted => f.write_str("the channel's shared memory is corrupted"),
                }
            }
        }

        impl std::error::Error for $name {}
    };
}

recv_error! {
    /// Why a blocking receive (a queue's `get`, a pipe's `recv`, a ring's pop without a
    /// deadline) returned no item.
    ///
    /// ```
    /// let (a, b) = shmproc::pipe::<u8>()?;
    /// drop(a);
    /// assert_eq!(b.recv(), Err(shmproc::RecvError::Disconnected)); // Python's EOFError
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    RecvError
}

recv_error! {
    /// Why a non-blocking receive (`try_get`, `try_recv`, `try_pop`) returned no item:
    /// [`Empty`](TryRecvError::Empty) (Python's `queue.Empty`), or a [`RecvError`]'s reason.
    ///
    /// ```
    /// let q = shmproc::Queue::<u32>::new(0)?;
    /// assert_eq!(q.try_get(), Err(shmproc::TryRecvError::Empty));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    TryRecvError,
    /// Nothing to take now (Python's `queue.Empty`).
    Empty => "the channel is empty"
}

recv_error! {
    /// Why a receive with a timeout (`get_timeout`, `recv_timeout`, a raw pop with a
    /// deadline) returned no item: [`Timeout`](RecvTimeoutError::Timeout), or a
    /// [`RecvError`]'s reason.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (a, b) = shmproc::pipe::<u8>()?;
    /// assert_eq!(b.recv_timeout(Duration::from_millis(1)), Err(shmproc::RecvTimeoutError::Timeout));
    /// # drop(a);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    RecvTimeoutError,
    /// Nothing arrived before the timeout.
    Timeout => "timed out waiting to receive"
}

macro_rules! recv_from {
    ($($name:ident),*) => {$(
        impl From<RecvError> for $name {
            fn from(e: RecvError) -> Self {
                match e {
                    RecvError::Closed => Self::Closed,
                    RecvError::Disconnected => Self::Disconnected,
                    RecvError::Decode(e) => Self::Decode(e),
                    RecvError::TooLarge(m) => Self::TooLarge(m),
                    RecvError::NotReadable => Self::NotReadable,
                    RecvError::Corrupted => Self::Corrupted,
                }
            }
        }
    )*};
}
recv_from!(TryRecvError, RecvTimeoutError);

impl RecvTimeoutError {
    /// Whether the time ran out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout)
    }

    /// The blocking error of this failure, or `None` if it is a timeout.
    pub(crate) fn split(self) -> Option<RecvError> {
        Some(match self {
            Self::Timeout => return None,
            Self::Closed => RecvError::Closed,
            Self::Disconnected => RecvError::Disconnected,
            Self::Decode(e) => RecvError::Decode(e),
            Self::TooLarge(m) => RecvError::TooLarge(m),
            Self::NotReadable => RecvError::NotReadable,
            Self::Corrupted => RecvError::Corrupted,
        })
    }

    /// The try form's error for a call whose deadline was "now": a timeout means the
    /// channel was empty.
    pub(crate) fn into_try(self) -> TryRecvError {
        match self.split() {
            Some(e) => e.into(),
            None => TryRecvError::Empty,
        }
    }
}

impl TryRecvError {
    /// Whether nothing was there ([`Empty`](Self::Empty)).
    pub fn is_empty(&self) -> bool {
        matches!(self, Self::Empty)
    }

    /// The timed form's error for a wait whose last try found nothing: `Empty` is `Timeout`.
    pub(crate) fn into_timeout(self) -> RecvTimeoutError {
        match self {
            Self::Empty => RecvTimeoutError::Timeout,
            Self::Closed => RecvTimeoutError::Closed,
            Self::Disconnected => RecvTimeoutError::Disconnected,
            Self::Decode(e) => RecvTimeoutError::Decode(e),
            Self::TooLarge(m) => RecvTimeoutError::TooLarge(m),
            Self::NotReadable => RecvTimeoutError::NotReadable,
            Self::Corrupted => RecvTimeoutError::Corrupted,
        }
    }
}

impl RecvError {
    /// Whether every sender is gone ([`Disconnected`](Self::Disconnected)).
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Self::Disconnected)
    }
}

/// `JoinableQueue::task_done` called more often than items were put (Python's `ValueError`).
///
/// ```
/// let q = shmproc::JoinableQueue::<u8>::new(0)?;
/// assert_eq!(q.task_done(), Err(shmproc::TaskDoneError));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("task_done() called more times than there were items")]
pub struct TaskDoneError;

/// Why `JoinableQueue::join_timeout` returned before every task was done.
///
/// ```
/// use std::time::Duration;
/// let q = shmproc::JoinableQueue::<u8>::new(0)?;
/// q.put(1)?;
/// assert_eq!(q.join_timeout(Duration::from_millis(1)), Err(shmproc::JoinTimeoutError::Timeout));
/// q.get()?;
/// q.task_done()?;
/// q.join_timeout(Duration::from_millis(1))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinTimeoutError {
    /// Tasks were still unfinished when the timeout passed.
    #[error("timed out waiting for the queue's tasks")]
    Timeout,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}

    #[test]
    fn every_channel_error_is_send_sync_static() {
        assert_error::<SendError<String>>();
        assert_error::<TrySendError<String>>();
        assert_error::<SendTimeoutError<String>>();
        assert_error::<SendError<()>>();
        assert_error::<RecvError>();
        assert_error::<TryRecvError>();
        assert_error::<RecvTimeoutError>();
        assert_error::<TaskDoneError>();
        assert_error::<JoinTimeoutError>();
    }

    #[test]
    fn conversions_are_lossless() {
        let e: TrySendError<u8> = SendError::Encode(7, "bad".into()).into();
        assert_eq!(e, TrySendError::Encode(7, "bad".into()));
        let e: SendTimeoutError<u8> = SendError::TooLarge(3).into();
        assert_eq!(e.into_inner(), 3);
        assert_eq!(SendTimeoutError::Timeout(4).into_try(), TrySendError::Full(4));
        assert_eq!(
            SendTimeoutError::Disconnected(4).split(),
            Ok(SendError::Disconnected(4))
        );
        let big = RecvError::TooLarge(vec![1, 2, 3]);
        assert_eq!(
            TryRecvError::from(big.clone()),
            TryRecvError::TooLarge(vec![1, 2, 3])
        );
        assert_eq!(RecvTimeoutError::from(big.clone()).split(), Some(big));
        assert_eq!(RecvTimeoutError::Timeout.into_try(), TryRecvError::Empty);
        assert_eq!(
            format!("{:?}", TrySendError::Full(String::from("secret"))),
            "Full(..)"
        );
        assert_eq!(
            format!("{:?}", RecvError::TooLarge(vec![0; 5])),
            "TooLarge(5 bytes)"
        );
        assert_eq!(SendError::Closed(()).to_string(), "sending on a closed channel");
    }
}
