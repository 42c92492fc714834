//! Codecs ([`Codec`]: how the items of a queue or pipe become bytes and back) and the
//! bounded decoder for bytes another process wrote.
//!
//! # The bounded decoder
//!
//! Decoding bytes that another process wrote has a bound on the work they can cause.
//! postcard reads a sequence's length and then decodes that many elements. An element of a
//! zero-sized type (`()`, an empty struct, `PhantomData`…) reads no bytes, so three bytes
//! claiming a `Vec<()>` of 2^60 elements keep the decoder busy for ages: a hostile or
//! corrupt peer could hang the reader without any bad memory access. Every other element
//! reads at least one byte, so the input's length already bounds it.
//!
//! [`from_bytes`] and [`take_from_bytes`] decode as postcard does, through a thin serde
//! adapter that counts zero-sized elements against a budget proportional to the input
//! (65 536 plus 64 per input byte) and fails past it. The adapter forwards everything else
//! unchanged; for types without zero-sized elements the count is compiled away.

use std::cell::Cell;
use std::fmt;

use bytemuck::Pod;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess,
    Visitor,
};
use serde::Serialize;

/// How the items of a queue or pipe become bytes and back.
pub trait Codec<T> {
    /// `Some(n)` if every item encodes to exactly `n` bytes: the queue then keeps items in a
    /// ring of fixed-size slots ([`ring::SlotRing`](crate::ring::SlotRing)) instead of a
    /// byte channel.
    const FIXED_SIZE: Option<usize> = None;
    /// For codecs whose encoding is the item's own bytes: those bytes, so the queue copies
    /// them straight into shared memory (no encoding buffer).
    fn as_bytes(_item: &T) -> Option<&[u8]> {
        None
    }
    /// Whether [`decode_owned`](Self::decode_owned) takes the received bytes as they are
    /// (the queue then receives into a fresh vector instead of its scratch buffer).
    const OWNS_BYTES: bool = false;
    /// Decodes one item from bytes the caller gives up.
    fn decode_owned(bytes: Vec<u8>) -> Result<T, String> {
        Self::decode(&bytes)
    }
    /// For fixed-size codecs whose encoding is the item's own bytes: builds an item by
    /// letting `fill` write those bytes in place (one copy, straight out of a slot).
    fn fill_fixed<E>(_fill: impl FnOnce(&mut [u8]) -> Result<(), E>) -> Option<Result<T, E>> {
        None
    }
    /// Appends the encoding of `item` to `out`.
    fn encode(item: &T, out: &mut Vec<u8>) -> Result<(), String>;
    /// Decodes one item (the bytes come from another process: never trust them).
    fn decode(bytes: &[u8]) -> Result<T, String>;
}

/// The default codec: postcard (serde, compact), for any `Serialize + DeserializeOwned` type.
#[derive(Clone, Copy, Debug, Default)]
pub struct Postcard;

impl<T: Serialize + DeserializeOwned> Codec<T> for Postcard {
    fn encode(item: &T, out: &mut Vec<u8>) -> Result<(), String> {
        let bytes = postcard::to_extend(item, std::mem::take(out)).map_err(|e| e.to_string())?;
        *out = bytes;
        Ok(())
    }

    fn decode(bytes: &[u8]) -> Result<T, String> {
        from_bytes(bytes).map_err(|e| e.to_string())
    }
}

/// The zero-copy path for `Pod` items: the item's bytes as they are.
#[derive(Clone, Copy, Debug, Default)]
pub struct PodCodec;

impl<T: Pod> Codec<T> for PodCodec {
    const FIXED_SIZE: Option<usize> = Some(std::mem::size_of::<T>());

    fn as_bytes(item: &T) -> Option<&[u8]> {
        Some(bytemuck::bytes_of(item))
    }

    fn fill_fixed<E>(fill: impl FnOnce(&mut [u8]) -> Result<(), E>) -> Option<Result<T, E>> {
        let mut item = T::zeroed();
        Some(fill(bytemuck::bytes_of_mut(&mut item)).map(|()| item))
    }

    fn encode(item: &T, out: &mut Vec<u8>) -> Result<(), String> {
        out.extend_from_slice(bytemuck::bytes_of(item));
        Ok(())
    }

    fn decode(bytes: &[u8]) -> Result<T, String> {
        bytemuck::try_pod_read_unaligned(bytes).map_err(|e| e.to_string())
    }
}

/// Raw byte messages (`Vec<u8>`), copied as they are: no length prefix, no per-byte
/// encoding. Serde's `Vec<u8>` goes through `serialize_seq` one element at a time, which
/// makes [`Postcard`] about 10× slower for byte payloads; use this codec (or wrap the bytes
/// in `serde_bytes::ByteBuf`) for them.
///
/// ```
/// let q = shmproc::Queue::<Vec<u8>, shmproc::Bytes>::new(0)?;
/// q.put(vec![1, 2, 3])?;
/// assert_eq!(q.get()?, [1, 2, 3]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Bytes;

impl Codec<Vec<u8>> for Bytes {
    const OWNS_BYTES: bool = true;

    fn as_bytes(item: &Vec<u8>) -> Option<&[u8]> {
        Some(item)
    }

    fn decode_owned(bytes: Vec<u8>) -> Result<Vec<u8>, String> {
        Ok(bytes)
    }

    fn encode(item: &Vec<u8>, out: &mut Vec<u8>) -> Result<(), String> {
        out.extend_from_slice(item);
        Ok(())
    }

    fn decode(bytes: &[u8]) -> Result<Vec<u8>, String> {
        Ok(bytes.to_vec())
    }
}

/// Decodes a `T` from the start of `bytes` and returns it with the bytes left over.
pub(crate) fn take_from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> postcard::Result<(T, &[u8])> {
    let mut de = postcard::Deserializer::from_bytes(bytes);
    let budget = Budget(Cell::new(65_536 + 64 * bytes.len() as u64));
    let value = T::deserialize(De {
        d: &mut de,
        b: &budget,
    })?;
    Ok((value, de.finalize()?))
}

/// Decodes a `T` from `bytes` (trailing bytes are ignored, as by `postcard::from_bytes`).
pub(crate) fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> postcard::Result<T> {
    take_from_bytes(bytes).map(|(v, _)| v)
}

/// Zero-sized elements that may still be decoded.
struct Budget(Cell<u64>);

impl Budget {
    #[inline]
    fn spend_if_zero_sized<T, E: de::Error>(&self) -> Result<(), E> {
        if std::mem::size_of::<T>() != 0 {
            return Ok(());
        }
        match self.0.get() {
            0 => Err(E::custom(
                "more zero-sized elements than the input's size allows (a corrupt or hostile message)",
            )),
            n => {
                self.0.set(n - 1);
                Ok(())
            }
        }
    }
}

/// The adapter around a deserializer, a visitor, a seed or an access.
struct De<'b, D> {
    d: D,
    b: &'b Budget,
}

struct Vis<'b, V> {
    v: V,
    b: &'b Budget,
}

struct Seed<'b, S> {
    s: S,
    b: &'b Budget,
}

struct Access<'b, A> {
    a: A,
    b: &'b Budget,
}

macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            #[inline]
            fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
                self.d.$method($($arg,)* Vis { v: visitor, b: self.b })
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for De<'_, D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    fn is_human_readable(&self) -> bool {
        self.d.is_human_readable()
    }
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty);)*) => {
        $(
            #[inline]
            fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
                self.v.$method(v)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Vis<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.v.expecting(f)
    }

    forward_visit! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.v.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.v.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.v.visit_some(De { d, b: self.b })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.v.visit_newtype_struct(De { d, b: self.b })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, a: A) -> Result<Self::Value, A::Error> {
        self.v.visit_seq(Access { a, b: self.b })
    }

    fn visit_map<A: MapAccess<'de>>(self, a: A) -> Result<Self::Value, A::Error> {
        self.v.visit_map(Access { a, b: self.b })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, a: A) -> Result<Self::Value, A::Error> {
        self.v.visit_enum(Access { a, b: self.b })
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, S> {
    type Value = S::Value;

    #[inline]
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.s.deserialize(De { d, b: self.b })
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Access<'_, A> {
    type Error = A::Error;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, A::Error> {
        self.b.spend_if_zero_sized::<T::Value, A::Error>()?;
        self.a.next_element_seed(Seed { s: seed, b: self.b })
    }

    fn size_hint(&self) -> Option<usize> {
        self.a.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Access<'_, A> {
    type Error = A::Error;

    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        self.b.spend_if_zero_sized::<K::Value, A::Error>()?;
        self.a.next_key_seed(Seed { s: seed, b: self.b })
    }

    #[inline]
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.a.next_value_seed(Seed { s: seed, b: self.b })
    }

    fn size_hint(&self) -> Option<usize> {
        self.a.size_hint()
    }
}

impl<'de, 'b, A: EnumAccess<'de>> EnumAccess<'de> for Access<'b, A> {
    type Error = A::Error;
    type Variant = Access<'b, A::Variant>;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self::Variant), A::Error> {
        let b = self.b;
        let (value, variant) = self.a.variant_seed(Seed { s: seed, b })?;
        Ok((value, Access { a: variant, b }))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Access<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.a.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.a.newtype_variant_seed(Seed { s: seed, b: self.b })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.a.tuple_variant(
            len,
            Vis {
                v: visitor,
                b: self.b,
            },
        )
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.a.struct_variant(
            fields,
            Vis {
                v: visitor,
                b: self.b,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_like_postcard() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        enum E {
            A,
            B(u8),
            C { x: Option<String> },
            D(u16, Vec<()>),
        }
        let v = (
            vec![E::A, E::B(7), E::C { x: Some("s".into()) }, E::D(9, vec![(); 3])],
            std::collections::BTreeMap::from([(1u32, -2i64)]),
            ((), [1.5f32; 2], 'x', u128::MAX),
        );
        type T = (
            Vec<E>,
            std::collections::BTreeMap<u32, i64>,
            ((), [f32; 2], char, u128),
        );
        let bytes = [postcard::to_allocvec(&v).unwrap().as_slice(), &[0xAA]].concat();
        let (back, rest) = take_from_bytes::<T>(&bytes).unwrap();
        assert_eq!(back, v);
        assert_eq!(rest, [0xAA]);
    }

    #[test]
    fn a_huge_count_of_zero_sized_elements_fails_fast() {
        // A `Vec<()>` claiming 2^60 elements, in 9 bytes.
        let bytes = postcard::to_allocvec(&(1u64 << 60)).unwrap();
        let t = std::time::Instant::now();
        assert!(from_bytes::<Vec<()>>(&bytes).is_err());
        assert!(from_bytes::<Vec<Vec<()>>>(&bytes).is_err());
        assert!(from_bytes::<std::collections::BTreeMap<(), ()>>(&bytes).is_err());
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
        // An honest one of modest size still decodes.
        let ok = postcard::to_allocvec(&vec![(); 60_000]).unwrap();
        assert_eq!(from_bytes::<Vec<()>>(&ok).unwrap().len(), 60_000);
    }
}
