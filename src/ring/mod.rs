//! Lock-free cores in shared memory: the SPSC ring and the event count that lets either
//! side sleep. (The MPMC ring and the byte ring for variable-length frames are next.)

mod eventcount;
mod pad;
mod spsc;

pub use eventcount::EventCount;
pub use pad::CachePadded;
pub use spsc::{Consumer, Producer, RingError, SpscHeader, SpscRing};
