//! The error of [`Array::set`](crate::Array::set): an index out of range, or the lock's
//! failure.

use super::{IndexError, LockError};

/// Why [`Array::set`](crate::Array::set) failed.
///
/// The index is checked first, without taking the lock ([`Index`](Self::Index): nothing was
/// locked or written; Rust's `slice[i] = v` would panic, Python raises `IndexError`). Then the
/// lock is taken ([`Lock`](Self::Lock)). A `Lock(LockError::OwnerDied(_))` means the element
/// **was** written after taking the lock over from a holder that died;
/// [`recover`](Self::recover) accepts that case. `Send + Sync + 'static`: `?` into
/// `Box<dyn Error + Send + Sync>` or `anyhow` just works.
///
/// ```
/// use shmproc::{Array, ArraySetError, IndexError};
/// let a = Array::<u32>::new(3)?;
/// a.set(2, 7)?;
/// let e = a.set(3, 1).unwrap_err();
/// assert_eq!(e, ArraySetError::Index(IndexError { index: 3, count: 1, len: 3 }));
/// a.set(0, 1).or_else(ArraySetError::recover)?; // a dead previous holder is fine here
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// ```
#[derive(Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ArraySetError {
    /// The index is outside `0..len`: nothing was locked or written.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// Taking the array's lock failed (see [`LockError`]); after `OwnerDied` the element was
    /// written.
    #[error(transparent)]
    Lock(#[from] LockError<()>),
}

impl ArraySetError {
    /// "Write anyway": `Ok(())` if the only trouble was a previous holder that died (the
    /// element was written), else the error. Use as `.or_else(ArraySetError::recover)?`.
    pub fn recover(self) -> Result<(), Self> {
        match self {
            Self::Lock(e) => e.recover().map_err(Self::Lock),
            e => Err(e),
        }
    }
}
