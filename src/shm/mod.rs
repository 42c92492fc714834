//! Shared-memory segments: header, validation, mapping, and how handles reach children.

pub(crate) mod arena;
mod header;
pub(crate) mod publish;
mod segment;
mod stale;
pub(crate) mod transfer;

pub use arena::ARENA_MAX_OBJECT;
pub(crate) use header::fnv1a;
pub use header::{check_image, DataRange, Fingerprint, HEADER_LEN, MAGIC, MAX_ALIGN, VERSION};
pub use segment::Segment;
pub use stale::cleanup_stale;
