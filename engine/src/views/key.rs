//! Group keys: an order-preserving ("memcomparable") encoding of a view's group values, so that
//! RocksDB's byte order is the order of the values and a view scan returns groups sorted.
//!
//! Each value is one presence byte (`0x00` NULL, sorts first; `0x01` present) followed by:
//! - integers, dates and timestamps: i64 big-endian with the sign bit flipped (8 bytes);
//! - floats: f64 bits, sign bit flipped for positives and all bits flipped for negatives;
//!   `-0.0` is stored as `0.0` and every NaN as the canonical NaN (8 bytes);
//! - decimals: i128 big-endian with the sign bit flipped (16 bytes);
//! - booleans: one byte, 0 or 1;
//! - text and bytes: each byte, with `0x00` escaped as `0x00 0xFF`, then the terminator
//!   `0x00 0x00`.

use crate::error::{Error, Result};

/// One group value in its canonical form.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyValue {
    /// SQL NULL.
    Null,
    /// Integers of any width, dates (days) and timestamps (microseconds).
    Int(i64),
    /// Floats of any width.
    Float(f64),
    /// Decimals, in units of their scale.
    Decimal(i128),
    /// Booleans.
    Bool(bool),
    /// Text (UTF-8) and bytea.
    Bytes(Vec<u8>),
}

/// The canonical kind of a group column, which fixes how its values are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Encoded as [`KeyValue::Int`].
    Int,
    /// Encoded as [`KeyValue::Float`].
    Float,
    /// Encoded as [`KeyValue::Decimal`].
    Decimal,
    /// Encoded as [`KeyValue::Bool`].
    Bool,
    /// Encoded as [`KeyValue::Bytes`].
    Bytes,
}

/// Appends one value to a key.
pub(crate) fn encode_value(out: &mut Vec<u8>, value: &KeyValue) {
    match value {
        KeyValue::Null => out.push(0),
        KeyValue::Int(v) => {
            out.push(1);
            out.extend_from_slice(&((*v as u64) ^ (1 << 63)).to_be_bytes());
        }
        KeyValue::Float(v) => {
            out.push(1);
            out.extend_from_slice(&float_bits(*v).to_be_bytes());
        }
        KeyValue::Decimal(v) => {
            out.push(1);
            out.extend_from_slice(&((*v as u128) ^ (1 << 127)).to_be_bytes());
        }
        KeyValue::Bool(v) => {
            out.push(1);
            out.push(u8::from(*v));
        }
        KeyValue::Bytes(bytes) => encode_bytes(out, bytes),
    }
}

/// Appends a present text or bytes value: `0x01`, the bytes with `0x00` escaped as
/// `0x00 0xFF`, then the terminator `0x00 0x00`.
pub(crate) fn encode_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(1);
    out.reserve(bytes.len() + 2);
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

fn float_bits(v: f64) -> u64 {
    let v = if v == 0.0 {
        0.0
    } else if v.is_nan() {
        f64::NAN
    } else {
        v
    };
    let bits = v.to_bits();
    if bits & (1 << 63) == 0 {
        bits ^ (1 << 63)
    } else {
        !bits
    }
}

fn float_from_bits(bits: u64) -> f64 {
    let raw = if bits & (1 << 63) != 0 {
        bits ^ (1 << 63)
    } else {
        !bits
    };
    f64::from_bits(raw)
}

/// The encoded values of a key (each with its presence byte), given the kinds of its columns;
/// `None` for a malformed key.
pub(crate) fn split<'a>(mut key: &'a [u8], kinds: &[KeyKind]) -> Option<Vec<&'a [u8]>> {
    let mut out = Vec::with_capacity(kinds.len());
    for kind in kinds {
        let len = if *key.first()? == 0 {
            1
        } else {
            match kind {
                KeyKind::Int | KeyKind::Float => 9,
                KeyKind::Decimal => 17,
                KeyKind::Bool => 2,
                KeyKind::Bytes => {
                    // Up to and including the terminator 00 00 (an escaped 00 is 00 FF).
                    let mut i = 1;
                    loop {
                        match (key.get(i)?, key.get(i + 1)) {
                            (0, Some(0)) => break i + 2,
                            (0, _) => i += 2,
                            _ => i += 1,
                        }
                    }
                }
            }
        };
        if key.len() < len {
            return None;
        }
        let (value, rest) = key.split_at(len);
        out.push(value);
        key = rest;
    }
    Some(out)
}

/// One group value decoded from its encoded form; text and bytes borrow a caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum ValueRef<'a> {
    Null,
    Int(i64),
    Float(f64),
    Decimal(i128),
    Bool(bool),
    Bytes(&'a [u8]),
}

impl ValueRef<'_> {
    /// The value in its owned, canonical form.
    pub(crate) fn to_value(self) -> KeyValue {
        match self {
            ValueRef::Null => KeyValue::Null,
            ValueRef::Int(v) => KeyValue::Int(v),
            ValueRef::Float(v) => KeyValue::Float(v),
            ValueRef::Decimal(v) => KeyValue::Decimal(v),
            ValueRef::Bool(v) => KeyValue::Bool(v),
            ValueRef::Bytes(v) => KeyValue::Bytes(v.to_vec()),
        }
    }
}

/// Decodes one encoded value of `kind` (a part returned by [`split`], presence byte
/// included), unescaping text and bytes into `scratch`.
pub(crate) fn decode_one<'a>(
    encoded: &[u8],
    kind: KeyKind,
    scratch: &'a mut Vec<u8>,
) -> Result<ValueRef<'a>> {
    let corrupt = || Error::Corrupt("malformed view group key".into());
    let (&flag, body) = encoded.split_first().ok_or_else(corrupt)?;
    if flag == 0 {
        return Ok(ValueRef::Null);
    }
    let fixed = |n: usize| body.get(..n).ok_or_else(corrupt);
    Ok(match kind {
        KeyKind::Int => {
            let b: [u8; 8] = fixed(8)?.try_into().map_err(|_| corrupt())?;
            ValueRef::Int((u64::from_be_bytes(b) ^ (1 << 63)) as i64)
        }
        KeyKind::Float => {
            let b: [u8; 8] = fixed(8)?.try_into().map_err(|_| corrupt())?;
            ValueRef::Float(float_from_bits(u64::from_be_bytes(b)))
        }
        KeyKind::Decimal => {
            let b: [u8; 16] = fixed(16)?.try_into().map_err(|_| corrupt())?;
            ValueRef::Decimal((u128::from_be_bytes(b) ^ (1 << 127)) as i128)
        }
        KeyKind::Bool => ValueRef::Bool(fixed(1)?[0] != 0),
        KeyKind::Bytes => {
            scratch.clear();
            let mut rest = body;
            loop {
                let zero = rest.iter().position(|&b| b == 0).ok_or_else(corrupt)?;
                scratch.extend_from_slice(&rest[..zero]);
                match rest.get(zero + 1) {
                    Some(0) => break,
                    Some(0xFF) => {
                        scratch.push(0);
                        rest = &rest[zero + 2..];
                    }
                    _ => return Err(corrupt()),
                }
            }
            ValueRef::Bytes(scratch)
        }
    })
}

/// Decodes the values of a key, given the kinds of its columns (reads decode into columns
/// with [`split`] and [`decode_one`] instead; this is their whole-key form).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn decode(key: &[u8], kinds: &[KeyKind]) -> Result<Vec<KeyValue>> {
    let corrupt = || Error::Corrupt("malformed view group key".into());
    let parts = split(key, kinds).ok_or_else(corrupt)?;
    if parts.iter().map(|p| p.len()).sum::<usize>() != key.len() {
        return Err(corrupt());
    }
    let mut scratch = Vec::new();
    parts
        .iter()
        .zip(kinds)
        .map(|(part, kind)| Ok(decode_one(part, *kind, &mut scratch)?.to_value()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(values: &[KeyValue]) -> Vec<u8> {
        let mut out = Vec::new();
        for v in values {
            encode_value(&mut out, v);
        }
        out
    }

    #[test]
    fn byte_order_is_value_order() {
        let ints = [
            KeyValue::Null,
            KeyValue::Int(i64::MIN),
            KeyValue::Int(-1),
            KeyValue::Int(0),
            KeyValue::Int(7),
            KeyValue::Int(i64::MAX),
        ];
        let floats = [
            KeyValue::Null,
            KeyValue::Float(f64::NEG_INFINITY),
            KeyValue::Float(-2.5),
            KeyValue::Float(0.0),
            KeyValue::Float(1e-9),
            KeyValue::Float(3.0),
            KeyValue::Float(f64::INFINITY),
        ];
        let texts = [
            KeyValue::Null,
            KeyValue::Bytes(vec![]),
            KeyValue::Bytes(vec![0]),
            KeyValue::Bytes(vec![0, 0]),
            KeyValue::Bytes(vec![0, 1]),
            KeyValue::Bytes(b"a".to_vec()),
            KeyValue::Bytes(b"ab".to_vec()),
            KeyValue::Bytes(b"b".to_vec()),
        ];
        let decimals = [
            KeyValue::Decimal(-5),
            KeyValue::Decimal(0),
            KeyValue::Decimal(i128::MAX),
        ];
        for values in [&ints[..], &floats[..], &texts[..], &decimals[..]] {
            let keys: Vec<_> = values
                .iter()
                .map(|v| key(std::slice::from_ref(v)))
                .collect();
            assert!(keys.windows(2).all(|w| w[0] < w[1]), "{values:?}");
        }
    }

    #[test]
    fn keys_round_trip_and_compose() {
        let values = vec![
            KeyValue::Int(-3),
            KeyValue::Bytes(b"x\0y".to_vec()),
            KeyValue::Null,
            KeyValue::Float(-0.5),
            KeyValue::Bool(true),
            KeyValue::Decimal(-12345),
        ];
        let kinds = [
            KeyKind::Int,
            KeyKind::Bytes,
            KeyKind::Float,
            KeyKind::Float,
            KeyKind::Bool,
            KeyKind::Decimal,
        ];
        assert_eq!(decode(&key(&values), &kinds).unwrap(), values);
        let encoded = key(&values);
        let parts = split(&encoded, &kinds).unwrap();
        assert_eq!(parts.concat(), encoded);
        for (part, value) in parts.iter().zip(&values) {
            assert_eq!(*part, key(std::slice::from_ref(value)).as_slice());
        }
        assert!(split(&encoded[..encoded.len() - 1], &kinds).is_none());
        // A shorter text sorts before a longer one with the same prefix, whatever follows.
        let a = key(&[KeyValue::Bytes(b"a".to_vec()), KeyValue::Int(i64::MAX)]);
        let b = key(&[KeyValue::Bytes(b"a\0".to_vec()), KeyValue::Int(i64::MIN)]);
        assert!(a < b);
        assert!(decode(&[1, 2], &[KeyKind::Int]).is_err());
    }

    #[test]
    fn one_value_decodes_and_malformed_values_are_refused() {
        let mut scratch = Vec::new();
        let text = key(&[KeyValue::Bytes(b"a\0b".to_vec())]);
        assert_eq!(
            decode_one(&text, KeyKind::Bytes, &mut scratch).unwrap(),
            ValueRef::Bytes(b"a\0b")
        );
        assert_eq!(
            decode_one(&[0], KeyKind::Int, &mut scratch).unwrap(),
            ValueRef::Null
        );
        let int = key(&[KeyValue::Int(-7)]);
        assert_eq!(
            decode_one(&int, KeyKind::Int, &mut scratch).unwrap(),
            ValueRef::Int(-7)
        );
        for (bad, kind) in [
            (&[][..], KeyKind::Int),
            (&int[..5], KeyKind::Int),
            (&[1, 0x00, 0x07][..], KeyKind::Bytes),
            (&text[..text.len() - 1], KeyKind::Bytes),
            (&[1, b'a'][..], KeyKind::Bytes),
        ] {
            assert!(
                decode_one(bad, kind, &mut scratch).is_err(),
                "{bad:?} as {kind:?}"
            );
        }
    }
}
