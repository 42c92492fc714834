//! The channel layer: queues and pipes over the byte and slot rings, their codecs, and the
//! bounded decoder for bytes another process wrote.

pub(crate) mod codec;
pub mod connection;
pub(crate) mod queue;
