//! Typed views of segments: bytes, a single Pod value, a Pod array, a user's struct.

mod array;
mod bytes;
mod place;
mod shared;
mod value;

pub use array::RawArray;
pub use bytes::SharedMemory;
pub use shared::{Shared, ShmSafe};
pub use value::RawValue;

pub(crate) use place::Place;

/// Serde support shared by the typed handles: a handle serializes as its place (an arena
/// slot, or its whole segment) and deserializes only if the layout matches the handle's
/// type. `self.place()` gives the handle's [`Place`]; `$from(place)` rebuilds a handle from
/// a received one (checking what its type needs).
macro_rules! segment_serde {
    ($ty:ident < $t:ident : $bound:path >, $fp:expr, $from:expr) => {
        impl<$t: $bound> serde::Serialize for $ty<$t> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let p = self.place();
                crate::shm::transfer::serialize_slot(p.segment(), p.offset(), p.bytes(), &$fp, s)
            }
        }
        impl<'de, $t: $bound> serde::Deserialize<'de> for $ty<$t> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let (seg, off, len) = crate::shm::transfer::deserialize_slot(d, &$fp)?;
                #[allow(clippy::redundant_closure_call)]
                crate::cell::Place::at(seg, off, len)
                    .and_then($from)
                    .map_err(|e: crate::error::SegmentError| {
                        crate::shm::transfer::fail::<D::Error>(e.to_string())
                    })
            }
        }
    };
}
pub(crate) use segment_serde;

/// The constructors and accessors of a handle to one `T` in a [`Place`] (`Shared`,
/// `RawValue`): `$ty` has a `place: Place<T>` field and a `write_new(&self, T)` that moves
/// the first value into a place nobody else has yet; `$what` is the error for a place of the
/// wrong size.
macro_rules! one_value_handle {
    ($ty:ident < $t:ident : $bound:path >, $what:literal) => {
        impl<$t: $bound> $ty<$t> {
            /// A new value in shared memory: an arena slot when `size_of::<T>()` is at most
            /// [`ARENA_MAX_OBJECT`](crate::ARENA_MAX_OBJECT), else an anonymous segment of
            /// its own.
            pub fn new(value: $t) -> Result<Self, SegmentError> {
                let (size, align) = (std::mem::size_of::<$t>(), std::mem::align_of::<$t>());
                Self::init(
                    Place::anonymous(size, align, &Fingerprint::of::<$t>())?,
                    value,
                )
            }

            /// A new value in an anonymous segment of its own, whatever its size (the layout
            /// before arenas; kept for benchmarks and tests that compare both).
            #[doc(hidden)]
            pub fn new_own_segment(value: $t) -> Result<Self, SegmentError> {
                let size = std::mem::size_of::<$t>();
                Self::init(Place::own_segment(size, &Fingerprint::of::<$t>())?, value)
            }

            /// A new value in a new named segment (`"/name"`, exclusive, mode 0600).
            pub fn create_named(name: &str, value: $t) -> Result<Self, SegmentError> {
                let size = std::mem::size_of::<$t>();
                Self::init(
                    Place::create_named(name, size, &Fingerprint::of::<$t>())?,
                    value,
                )
            }

            /// Attaches to a named segment, checking that it stores a `T`.
            pub fn open_named(name: &str) -> Result<Self, SegmentError> {
                Self::from_place(Place::open_named(name, &Fingerprint::of::<$t>())?)
            }

            /// Opens the arena slot a token would name: `fd` must be an arena chunk (a
            /// sealed memfd with a valid header), `offset`/`len`/`layout` as a sender would
            /// describe a `T`. The open path of a spawned child's handles, exposed for the
            /// fuzz target.
            #[doc(hidden)]
            pub fn open_slot(
                fd: std::os::fd::OwnedFd,
                offset: u64,
                len: u64,
                layout: &Fingerprint,
            ) -> Result<Self, SegmentError> {
                let fp = Fingerprint::of::<$t>();
                Self::from_place(Place::open_slot(fd, offset, len, layout, &fp)?)
            }

            fn init(place: Place<$t>, value: $t) -> Result<Self, SegmentError> {
                let h = Self::from_place(place)?;
                h.write_new(value);
                Ok(h)
            }

            /// A handle on `place`, which must hold exactly one `T`.
            pub(crate) fn from_place(place: Place<$t>) -> Result<Self, SegmentError> {
                Ok(Self {
                    place: place.exactly_one($what)?,
                })
            }

            fn place(&self) -> &Place<$t> {
                &self.place
            }

            /// The segment holding the value. For a value in an arena this is the whole
            /// arena chunk, shared with other objects: the value starts at
            /// [`offset`](Self::offset) of its data. For a value with a segment of its own
            /// the offset is 0.
            pub fn segment(&self) -> &Segment {
                self.place.segment()
            }

            /// Where the value starts in [`segment`](Self::segment)'s data.
            pub fn offset(&self) -> usize {
                self.place.offset()
            }
        }

        /// Another handle to the same value: an in-process reference count, no new fd or
        /// mapping.
        impl<$t: $bound> Clone for $ty<$t> {
            fn clone(&self) -> Self {
                Self {
                    place: self.place.clone(),
                }
            }
        }

        impl<$t: $bound> std::fmt::Debug for $ty<$t> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("place", &self.place)
                    .finish()
            }
        }
    };
}
pub(crate) use one_value_handle;
