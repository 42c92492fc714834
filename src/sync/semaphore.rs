//! `Semaphore` and `BoundedSemaphore` handles.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::lock::deadline_after;
use super::raw_sem::{RawSemaphore, SemFail, SEM_VALUE_MAX};
use crate::error::{AcquireError, AcquireTimeoutError, ReleaseError, SegmentError, TryAcquireError};
use crate::Shared;

/// A public semaphore error that a raw [`SemFail`] can become: the one place where they are
/// mapped (`WouldBlock` only comes from try forms, `Timeout` only from timed ones).
trait FromSemFail: Sized {
    fn fail(e: SemFail) -> Self;
}

impl FromSemFail for AcquireError {
    fn fail(_: SemFail) -> Self {
        // A blocking acquire neither times out nor would block; the rest is corruption.
        Self::Corrupted
    }
}

impl FromSemFail for AcquireTimeoutError {
    fn fail(e: SemFail) -> Self {
        match e {
            SemFail::Timeout => Self::Timeout,
            _ => Self::Corrupted,
        }
    }
}

impl FromSemFail for TryAcquireError {
    fn fail(e: SemFail) -> Self {
        match e {
            SemFail::WouldBlock => Self::WouldBlock,
            _ => Self::Corrupted,
        }
    }
}

fn acquired<E: FromSemFail>(r: Result<(), SemFail>) -> Result<(), E> {
    r.map_err(E::fail)
}

fn released(r: Result<(), SemFail>) -> Result<(), ReleaseError> {
    r.map_err(|e| match e {
        SemFail::TooManyReleases => ReleaseError::TooManyReleases,
        _ => ReleaseError::Corrupted,
    })
}

macro_rules! semaphore_handle {
    ($name:ident, $bounded:expr) => {
        impl $name {
            /// A semaphore with `value` units, in a shared arena slot. `value` above
            /// [`SEM_VALUE_MAX`](crate::sync::SEM_VALUE_MAX) (`i32::MAX`, as POSIX
            /// semaphores) is refused with [`SegmentError::InvalidSize`], not clamped.
            pub fn new(value: u32) -> Result<Self, SegmentError> {
                if value > SEM_VALUE_MAX {
                    return Err(SegmentError::InvalidSize(
                        "a semaphore's value is at most SEM_VALUE_MAX (i32::MAX)",
                    ));
                }
                Ok(Self {
                    cell: Shared::new(RawSemaphore::new(value, $bounded))?,
                })
            }

            /// Takes a unit, blocking while none is free (Python's `acquire()`).
            pub fn acquire(&self) -> Result<(), AcquireError> {
                acquired(self.cell.acquire(None))
            }

            /// Takes a unit, waiting at most `timeout`: `Err(Timeout)` if none came free
            /// (Python's `acquire(timeout=t)` returning `False`).
            pub fn acquire_timeout(&self, timeout: Duration) -> Result<(), AcquireTimeoutError> {
                acquired(self.cell.acquire(deadline_after(timeout)))
            }

            /// Takes a unit only if one is free now: `Err(WouldBlock)` otherwise (Python's
            /// `acquire(block=False)` returning `False`).
            pub fn try_acquire(&self) -> Result<(), TryAcquireError> {
                acquired(self.cell.try_acquire())
            }

            /// Returns a unit, waking one waiter in any process.
            pub fn release(&self) -> Result<(), ReleaseError> {
                released(self.cell.release())
            }

            /// Units free now (a snapshot; Python's `get_value()`).
            pub fn value(&self) -> u32 {
                self.cell.value()
            }

            /// The raw semaphore.
            pub fn raw(&self) -> &RawSemaphore {
                &self.cell
            }
        }
    };
}

/// A counting semaphore shared between processes; mirrors Python's
/// `multiprocessing.Semaphore(value)`. Releases are not checked against the initial value
/// (see [`BoundedSemaphore`]).
///
/// ```
/// use shmproc::{AcquireTimeoutError, Semaphore, TryAcquireError};
/// let s = Semaphore::new(2)?;
/// s.try_acquire()?;
/// s.acquire()?;
/// assert_eq!(s.try_acquire(), Err(TryAcquireError::WouldBlock));
/// let r = s.acquire_timeout(std::time::Duration::from_millis(10));
/// assert_eq!(r, Err(AcquireTimeoutError::Timeout));
/// s.release()?;
/// assert_eq!(s.value(), 1);
/// assert!(Semaphore::new(u32::MAX).is_err()); // above SEM_VALUE_MAX: refused
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Semaphore {
    cell: Shared<RawSemaphore>,
}

semaphore_handle!(Semaphore, false);

/// A semaphore that refuses to be released past its initial value
/// ([`ReleaseError::TooManyReleases`], Python's `ValueError`); mirrors
/// `multiprocessing.BoundedSemaphore(value)`.
///
/// ```
/// let s = shmproc::BoundedSemaphore::new(1)?;
/// s.acquire()?;
/// s.release()?;
/// assert_eq!(s.release(), Err(shmproc::ReleaseError::TooManyReleases));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BoundedSemaphore {
    cell: Shared<RawSemaphore>,
}

semaphore_handle!(BoundedSemaphore, true);
