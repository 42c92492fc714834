//! `Semaphore` and `BoundedSemaphore` handles.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::lock::deadline_after;
use super::raw_sem::{RawSemaphore, SemFail, SEM_VALUE_MAX};
use crate::error::{LockError, ReleaseError, SegmentError};
use crate::Shared;

fn acquired(r: Result<(), SemFail>) -> Result<bool, LockError<()>> {
    match r {
        Ok(()) => Ok(true),
        Err(SemFail::WouldBlock | SemFail::Timeout) => Ok(false),
        Err(_) => Err(LockError::Corrupted),
    }
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
            /// A semaphore with `value` units (at most `i32::MAX`), in its own segment.
            pub fn new(value: u32) -> Result<Self, SegmentError> {
                Ok(Self {
                    cell: Shared::new(RawSemaphore::new(value.min(SEM_VALUE_MAX), $bounded))?,
                })
            }

            /// Takes a unit, blocking while none is free (Python's `acquire()`).
            pub fn acquire(&self) -> Result<(), LockError<()>> {
                self.cell.acquire(None).map_err(|_| LockError::Corrupted)
            }

            /// Takes a unit, waiting at most `timeout`; `Ok(false)` if it timed out.
            pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool, LockError<()>> {
                acquired(self.cell.acquire(deadline_after(timeout)))
            }

            /// Takes a unit only if one is free now (`acquire(block=False)`).
            pub fn try_acquire(&self) -> Result<bool, LockError<()>> {
                acquired(self.cell.try_acquire())
            }

            /// Returns a unit, waking one waiter in any process.
            pub fn release(&self) -> Result<(), ReleaseError> {
                released(self.cell.release())
            }

            /// Units free now (Python's `get_value()`; a snapshot).
            pub fn get_value(&self) -> u32 {
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
/// let s = shmproc::Semaphore::new(2)?;
/// assert!(s.try_acquire()?);
/// assert!(s.try_acquire()?);
/// assert!(!s.try_acquire()?);
/// assert!(!s.acquire_timeout(std::time::Duration::from_millis(10))?);
/// s.release()?;
/// assert_eq!(s.get_value(), 1);
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
