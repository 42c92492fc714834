//! Lock-free cores in shared memory: the SPSC ring of `Pod` items, the MPMC ring of
//! fixed-size slots, the byte ring of variable-length frames, the message channel built on
//! it, and the event count that lets either side sleep.
//!
//! Their errors are the crate's channel family ([`SendError`](crate::SendError),
//! [`RecvError`](crate::RecvError) and their twins), the same a `Queue` or a pipe returns:
//! a call with a deadline returns the timeout twin (`Timeout` when it passes), a try form
//! the try twin (`Full` / `Empty`). Byte-level calls carry `()` as the item.

mod bytes;
mod channel;
mod eventcount;
mod mpmc;
mod pad;
mod spsc;

pub use bytes::{ByteRing, ByteRingIndices, Corrupt, FrameInfo, ABORT, FIRST, LAST};
pub use channel::{Channel, ChannelCtl, ChannelHeader, HeaderField};
pub(crate) use eventcount::Ended;
pub use eventcount::EventCount;
pub use mpmc::{MpmcRing, SlotRing, SlotRingHeader, MAX_CAPACITY, MAX_SLOT_SIZE};
pub use pad::CachePadded;
pub use spsc::{Consumer, Producer, SpscHeader, SpscRing};
