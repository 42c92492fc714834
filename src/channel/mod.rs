//! The channel layer: queues and pipes over the byte and slot rings.
//!
//! - `queue`: `Queue`, `SimpleQueue`, `JoinableQueue` (their API);
//! - `connection`: `pipe()`, `Connection` (their API);
//! - `endpoint`: what both share (items to bytes and back, the three forms of a call);
//! - `holders`: a pipe's table of the processes holding each end;
//! - `codec`: `Codec` and its implementations, and the bounded decoder for bytes another
//!   process wrote.
//!
//! Their errors are the channel family in `error/channel.rs`.

pub(crate) mod codec;
pub mod connection;
mod endpoint;
pub(crate) mod holders;
pub(crate) mod queue;
