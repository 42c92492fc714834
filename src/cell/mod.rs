//! Typed views of segments: bytes, a single Pod value, a Pod array, a user's struct.

mod array;
mod bytes;
mod shared;
mod value;

pub use array::RawArray;
pub use bytes::SharedMemory;
pub use shared::{Shared, ShmSafe};
pub use value::RawValue;

/// Serde support shared by the typed handles: a handle serializes as its segment's token
/// and deserializes only if the segment's layout matches the handle's type.
macro_rules! segment_serde {
    ($ty:ident < $t:ident : $bound:path >, $fp:expr, $wrap:expr) => {
        impl<$t: $bound> serde::Serialize for $ty<$t> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.seg.serialize(s)
            }
        }
        impl<'de, $t: $bound> serde::Deserialize<'de> for $ty<$t> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let seg = crate::shm::transfer::deserialize_segment(d, Some(&$fp))?;
                #[allow(clippy::redundant_closure_call)]
                ($wrap)(seg).map_err(|e: crate::error::SegmentError| {
                    crate::shm::transfer::fail::<D::Error>(e.to_string())
                })
            }
        }
    };
}
pub(crate) use segment_serde;
