//! The `Barrier` handle.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::lock::deadline_after;
use super::raw_barrier::{BarrierFail, RawBarrier};
use crate::error::{BarrierError, BarrierTimeoutError, SegmentError};
use crate::Shared;

/// A public barrier error that a raw [`BarrierFail`] can become: the one place where they are
/// mapped (`Timeout` only comes from timed waits).
trait FromBarrierFail: Sized {
    fn fail(e: BarrierFail) -> Self;
}

impl FromBarrierFail for BarrierError {
    fn fail(e: BarrierFail) -> Self {
        match e {
            BarrierFail::Broken => Self::Broken,
            // A wait without deadline never times out; the rest is corruption.
            BarrierFail::Timeout | BarrierFail::Corrupted => Self::Corrupted,
        }
    }
}

impl FromBarrierFail for BarrierTimeoutError {
    fn fail(e: BarrierFail) -> Self {
        match e {
            BarrierFail::Broken => Self::Broken,
            BarrierFail::Timeout => Self::Timeout,
            BarrierFail::Corrupted => Self::Corrupted,
        }
    }
}

fn barrier_result<T, E: FromBarrierFail>(r: Result<T, BarrierFail>) -> Result<T, E> {
    r.map_err(E::fail)
}

/// A cyclic barrier for a fixed number of parties across processes; mirrors Python's
/// `multiprocessing.Barrier(parties)` (Python's `timeout` argument is
/// [`wait_timeout`](Self::wait_timeout)).
///
/// [`wait`](Self::wait) returns the party's arrival index (`0..parties`). A wait that times
/// out, [`abort`](Self::abort), or [`reset`](Self::reset) while parties wait, breaks the
/// barrier: waiting parties get [`BarrierError::Broken`] (the timed-out one
/// [`BarrierTimeoutError::Timeout`]), and so do later waits until `reset`.
///
/// ```
/// use shmproc::{Barrier, Process};
/// let b = Barrier::new(2)?;
/// let b2 = b.clone();
/// let mut child = Process::fork(move || b2.wait().expect("barrier")).start()?;
/// let mine = b.wait()?;
/// let theirs = child.join()?;
/// assert_eq!(mine + theirs, 1); // indices 0 and 1
/// assert!(Barrier::new(0).is_err()); // refused, as Python's ValueError
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Barrier {
    cell: Shared<RawBarrier>,
}

impl Barrier {
    /// A barrier for `parties`. `parties` must be between 1 and `u32::MAX`
    /// ([`SegmentError::InvalidSize`] otherwise, as Python's `Barrier(0)` is a
    /// `ValueError`).
    pub fn new(parties: usize) -> Result<Self, SegmentError> {
        if parties == 0 {
            return Err(SegmentError::InvalidSize("a barrier needs at least one party"));
        }
        let parties = u32::try_from(parties)
            .map_err(|_| SegmentError::InvalidSize("a barrier has at most u32::MAX parties"))?;
        Ok(Self {
            cell: Shared::new(RawBarrier::new(parties))?,
        })
    }

    /// Waits for all parties; returns this party's arrival index (`0..parties`).
    pub fn wait(&self) -> Result<usize, BarrierError> {
        barrier_result(self.cell.wait(None)).map(|i| i as usize)
    }

    /// Waits for all parties, at most `timeout`, the barrier's internal lock included: a
    /// peer stopped inside the barrier's bookkeeping (or a lock word that names a live
    /// thread) cannot hold this call past its deadline. A timed-out wait breaks the barrier
    /// for everyone, as in Python (if the internal lock was held at the deadline, the break
    /// happens when its holder releases it).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize, BarrierTimeoutError> {
        barrier_result(self.cell.wait(deadline_after(timeout))).map(|i| i as usize)
    }

    /// Breaks the barrier (Python's `abort()`).
    pub fn abort(&self) -> Result<(), BarrierError> {
        barrier_result(self.cell.abort())
    }

    /// Empties and un-breaks the barrier; current waiters get `Broken` (Python's `reset()`).
    pub fn reset(&self) -> Result<(), BarrierError> {
        barrier_result(self.cell.reset())
    }

    /// The number of parties.
    pub fn parties(&self) -> usize {
        self.cell.parties() as usize
    }

    /// Parties waiting now (Python's `n_waiting`).
    pub fn n_waiting(&self) -> usize {
        self.cell.n_waiting() as usize
    }

    /// Whether the barrier is broken (Python's `broken`).
    pub fn is_broken(&self) -> bool {
        self.cell.is_broken()
    }

    /// The raw barrier.
    pub fn raw(&self) -> &RawBarrier {
        &self.cell
    }
}
