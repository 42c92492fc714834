//! The `Event` handle.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::lock::deadline_after;
use super::raw_event::RawEvent;
use crate::error::{SegmentError, WaitTimeoutError};
use crate::Shared;

/// A flag that processes wait for; mirrors Python's `multiprocessing.Event`.
///
/// [`set`](Self::set) wakes every waiter in every process; a `set` immediately followed by
/// [`clear`](Self::clear) still releases everyone who was already waiting.
///
/// ```
/// use shmproc::{Event, Process};
/// let ev = Event::new()?;
/// let e = ev.clone();
/// let mut child = Process::fork(move || e.wait_timeout(std::time::Duration::from_secs(10)).is_ok()).start()?;
/// ev.set();
/// assert!(child.join()?); // the child's wait returned Ok: the event was set
/// assert!(ev.is_set());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Event {
    cell: Shared<RawEvent>,
}

impl Event {
    /// A clear event, in a shared arena slot (no fd or mapping of its own).
    pub fn new() -> Result<Self, SegmentError> {
        Ok(Self {
            cell: Shared::new(RawEvent::new())?,
        })
    }

    /// Sets the flag and wakes all waiters.
    pub fn set(&self) {
        self.cell.set()
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.cell.clear()
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.cell.is_set()
    }

    /// Blocks until the event is set (Python's `wait()`). Cannot fail: every value of the
    /// event's word is a valid state.
    pub fn wait(&self) {
        self.cell.wait(None);
    }

    /// Waits at most `timeout` for the event to be set: `Err(Timeout)` if it was not
    /// (Python's `wait(t)` returning `False`).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<(), WaitTimeoutError> {
        if self.cell.wait(deadline_after(timeout)) {
            Ok(())
        } else {
            Err(WaitTimeoutError::Timeout)
        }
    }

    /// The raw event.
    pub fn raw(&self) -> &RawEvent {
        &self.cell
    }
}
