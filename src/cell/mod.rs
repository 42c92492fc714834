//! Typed views of segments: bytes, a single Pod value, a Pod array, a user's struct.

mod array;
mod bytes;
mod shared;
mod value;

pub use array::RawArray;
pub use bytes::SharedMemory;
pub use shared::{Shared, ShmSafe};
pub use value::RawValue;

use std::ptr::NonNull;

use crate::error::SegmentError;
use crate::shm::Segment;

/// The `T` at `offset` of `seg`'s data, checking that `len` bytes from there lie inside the
/// data and that the address is aligned for `T`. The typed handles' one way to a pointer.
pub(crate) fn typed_ptr<T>(seg: &Segment, offset: usize, len: usize) -> Result<NonNull<T>, SegmentError> {
    let end = offset
        .checked_add(len)
        .ok_or(SegmentError::Corrupt("object range overflows"))?;
    if end > seg.len() {
        return Err(SegmentError::Corrupt("object runs past its segment"));
    }
    // SAFETY: `offset <= seg.len()` (checked), so the result stays inside the mapping (or one
    // past its data end, never dereferenced then: `len` is 0).
    let p = unsafe { seg.as_ptr().add(offset) };
    if p as usize % std::mem::align_of::<T>() != 0 {
        return Err(SegmentError::Corrupt("object is misaligned for its type"));
    }
    Ok(NonNull::new(p.cast::<T>()).expect("a mapping is never at address 0"))
}

/// Serde support shared by the typed handles: a handle serializes as its place (an arena
/// slot, or its whole segment) and deserializes only if the layout matches the handle's
/// type. `$wrap(seg, offset, len)` builds the handle; `self.place()` gives
/// `(segment, offset, byte length)`.
macro_rules! segment_serde {
    ($ty:ident < $t:ident : $bound:path >, $fp:expr, $wrap:expr) => {
        impl<$t: $bound> serde::Serialize for $ty<$t> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let (seg, offset, len) = self.place();
                crate::shm::transfer::serialize_slot(seg, offset, len, &$fp, s)
            }
        }
        impl<'de, $t: $bound> serde::Deserialize<'de> for $ty<$t> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let (seg, off, len) = crate::shm::transfer::deserialize_slot(d, &$fp)?;
                #[allow(clippy::redundant_closure_call)]
                ($wrap)(seg, off, len).map_err(|e: crate::error::SegmentError| {
                    crate::shm::transfer::fail::<D::Error>(e.to_string())
                })
            }
        }
    };
}
pub(crate) use segment_serde;
