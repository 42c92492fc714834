//! The `Barrier` handle.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::lock::deadline_after;
use super::raw_barrier::{BarrierFail, RawBarrier};
use crate::error::{BarrierError, SegmentError};
use crate::Shared;

fn barrier_result<T>(r: Result<T, BarrierFail>) -> Result<T, BarrierError> {
    r.map_err(|e| match e {
        BarrierFail::Broken => BarrierError::Broken,
        BarrierFail::Timeout => BarrierError::Timeout,
        BarrierFail::Corrupted => BarrierError::Corrupted,
    })
}

/// A cyclic barrier for a fixed number of parties across processes; mirrors Python's
/// `multiprocessing.Barrier(parties, timeout=None)`.
///
/// [`wait`](Self::wait) returns the party's arrival index (`0..parties`). A wait that times
/// out, [`abort`](Self::abort), or [`reset`](Self::reset) while parties wait, breaks the
/// barrier: waiting parties get [`BarrierError::Broken`] (the timed-out one `Timeout`), and so
/// do later waits until `reset`.
///
/// ```
/// use shmproc::{Barrier, Process};
/// let b = Barrier::new(2)?;
/// let b2 = b.clone();
/// let mut child = Process::fork(move || b2.wait().expect("barrier")).start()?;
/// let mine = b.wait()?;
/// let theirs = child.join()?;
/// assert_eq!(mine + theirs, 1); // indices 0 and 1
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Barrier {
    cell: Shared<RawBarrier>,
    timeout: Option<Duration>,
}

impl Barrier {
    /// A barrier for `parties` with no default timeout. `parties` must be at least 1
    /// ([`SegmentError::InvalidSize`] otherwise, as Python's `Barrier(0)` is a
    /// `ValueError`).
    pub fn new(parties: u32) -> Result<Self, SegmentError> {
        Self::with_timeout(parties, None)
    }

    /// A barrier whose `wait` uses `timeout` by default (Python's `timeout` argument).
    pub fn with_timeout(parties: u32, timeout: Option<Duration>) -> Result<Self, SegmentError> {
        if parties == 0 {
            return Err(SegmentError::InvalidSize("a barrier needs at least one party"));
        }
        Ok(Self {
            cell: Shared::new(RawBarrier::new(parties))?,
            timeout,
        })
    }

    /// Waits for all parties (with the default timeout, if any).
    pub fn wait(&self) -> Result<u32, BarrierError> {
        barrier_result(self.cell.wait(self.timeout.and_then(deadline_after)))
    }

    /// Waits for all parties, at most `timeout`, the barrier's internal lock included: a
    /// peer stopped inside the barrier's bookkeeping (or a lock word that names a live
    /// thread) cannot hold this call past its deadline. A timed-out wait breaks the barrier
    /// for everyone, as in Python (if the internal lock was held at the deadline, the break
    /// happens when its holder releases it).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32, BarrierError> {
        barrier_result(self.cell.wait(deadline_after(timeout)))
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
    pub fn parties(&self) -> u32 {
        self.cell.parties()
    }

    /// Parties waiting now.
    pub fn n_waiting(&self) -> u32 {
        self.cell.n_waiting()
    }

    /// The raw barrier.
    pub fn raw(&self) -> &RawBarrier {
        &self.cell
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        self.cell.broken()
    }
}
