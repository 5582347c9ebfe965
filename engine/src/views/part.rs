//! Delta parts: what one commit adds to one view. A commit pre-aggregates its rows per view into
//! one partial state per touched group, sorts the groups by key and stores them as ONE value in
//! the `view_parts` column family, in the same `WriteBatch` as the rows. Parts are merged into
//! state segments by the compactor (`compact.rs`); until then reads merge them on the fly.
//!
//! Stored value (documented in `docs/format.md`): `0x01`, the group count `n` (u32 LE), then the
//! keys and the encoded states as two Arrow-style binary columns: `n + 1` offsets (u32 LE) and
//! the concatenated bytes, keys first.

use std::sync::Arc;

use arrow::array::{Array, BinaryArray, BinaryBuilder};
use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use datafusion::common::HashMap;

use super::state::{self, AggState};
use crate::error::{Error, Result};

/// Encoding version of a stored part.
const PART_VERSION: u8 = 1;

/// The partial states one commit (or one chunk of a backfill) adds to one view, sorted by group
/// key, each key once.
#[derive(Debug, Clone)]
pub(crate) struct DeltaPart {
    /// Part id: its key in `view_parts` after the view id; later commits have larger ids.
    pub id: u64,
    /// Memcomparable group keys, ascending.
    pub keys: BinaryArray,
    /// Encoded states ([`state::encode`]), one per key.
    pub states: BinaryArray,
}

/// The groups of a delta before it is a part: group key → partial states.
pub(crate) type Groups = HashMap<Vec<u8>, Vec<AggState>>;

/// One group of a delta before it is a part: its key and partial states.
pub(crate) type Entry = (Vec<u8>, Vec<AggState>);

impl DeltaPart {
    /// A part of `groups`, sorted by key (its id is assigned at commit).
    pub(crate) fn from_groups(groups: Groups) -> DeltaPart {
        let mut entries: Vec<Entry> = groups.into_iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        DeltaPart::from_sorted(&entries)
    }

    /// A part of `entries`, in which a key may appear more than once: sorted by key (stably,
    /// so equal keys merge in the order given) and merged into one group per key.
    pub(crate) fn from_entries(mut entries: Vec<Entry>) -> Result<DeltaPart> {
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut merged: Vec<Entry> = Vec::with_capacity(entries.len());
        for (key, states) in entries {
            match merged.last_mut() {
                Some((last, existing)) if *last == key => {
                    for (a, b) in existing.iter_mut().zip(&states) {
                        a.merge(b)?;
                    }
                }
                _ => merged.push((key, states)),
            }
        }
        Ok(DeltaPart::from_sorted(&merged))
    }

    /// A part of entries sorted by key, each key once.
    fn from_sorted(entries: &[Entry]) -> DeltaPart {
        let key_bytes = entries.iter().map(|(k, _)| k.len()).sum();
        let mut keys = BinaryBuilder::with_capacity(entries.len(), key_bytes);
        let mut states = BinaryBuilder::with_capacity(entries.len(), entries.len() * 16);
        let mut scratch = Vec::new();
        for (key, group_states) in entries {
            keys.append_value(key);
            scratch.clear();
            state::encode_into(group_states.iter(), &mut scratch);
            states.append_value(&scratch);
        }
        DeltaPart {
            id: 0,
            keys: keys.finish(),
            states: states.finish(),
        }
    }

    /// This part under another id.
    pub(crate) fn with_id(&self, id: u64) -> Arc<DeltaPart> {
        Arc::new(DeltaPart {
            id,
            keys: self.keys.clone(),
            states: self.states.clone(),
        })
    }

    /// Number of groups.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the part has no group.
    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Size of the stored value.
    pub(crate) fn encoded_len(&self) -> usize {
        1 + 4 + 8 * (self.len() + 1) + self.keys.values().len() + self.states.values().len()
    }

    /// The stored value.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.push(PART_VERSION);
        out.extend_from_slice(&(self.len() as u32).to_le_bytes());
        for column in [&self.keys, &self.states] {
            let base = column.value_offsets()[0];
            for offset in column.value_offsets() {
                out.extend_from_slice(&((offset - base) as u32).to_le_bytes());
            }
            let (start, end) = (
                base as usize,
                *column.value_offsets().last().unwrap() as usize,
            );
            out.extend_from_slice(&column.values()[start..end]);
        }
        out
    }

    /// Decodes a stored value (with the id from its key), checking its structure.
    pub(crate) fn decode(id: u64, bytes: &[u8]) -> Result<DeltaPart> {
        let corrupt = |what: &str| Error::Corrupt(format!("view delta part {id}: {what}"));
        let (&version, rest) = bytes.split_first().ok_or_else(|| corrupt("empty"))?;
        if version != PART_VERSION {
            return Err(corrupt(&format!("unknown encoding version {version}")));
        }
        let (count, mut rest) = take_u32(rest).ok_or_else(|| corrupt("truncated"))?;
        let count = count as usize;
        // Two columns of `count + 1` offsets each: a count the bytes cannot hold is damage,
        // refused before anything is allocated for it.
        if rest.len() / 8 < count + 1 {
            return Err(corrupt(&format!(
                "{count} groups do not fit in {} bytes",
                bytes.len()
            )));
        }
        let mut column = || -> Result<BinaryArray> {
            let mut offsets = Vec::with_capacity(count + 1);
            for _ in 0..=count {
                let (offset, tail) = take_u32(rest).ok_or_else(|| corrupt("truncated offsets"))?;
                offsets.push(i32::try_from(offset).map_err(|_| corrupt("offset too large"))?);
                rest = tail;
            }
            if offsets[0] != 0 || offsets.windows(2).any(|w| w[0] > w[1]) {
                return Err(corrupt("offsets out of order"));
            }
            let len = *offsets.last().expect("count + 1 offsets") as usize;
            let values = rest.get(..len).ok_or_else(|| corrupt("truncated values"))?;
            rest = &rest[len..];
            let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
            BinaryArray::try_new(offsets, Buffer::from(values), None)
                .map_err(|e| corrupt(&e.to_string()))
        };
        let keys = column()?;
        let states = column()?;
        if !rest.is_empty() {
            return Err(corrupt("trailing bytes"));
        }
        if keys.iter().zip(keys.iter().skip(1)).any(|(a, b)| a >= b) {
            return Err(corrupt("keys not strictly ascending"));
        }
        Ok(DeltaPart { id, keys, states })
    }
}

fn take_u32(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<4>()?;
    Some((u32::from_le_bytes(*head), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(groups: &[(&[u8], i64)]) -> DeltaPart {
        let groups: Groups = groups
            .iter()
            .map(|(k, n)| (k.to_vec(), vec![AggState::Count(*n)]))
            .collect();
        DeltaPart::from_groups(groups)
    }

    #[test]
    fn parts_sort_their_keys_and_round_trip() {
        let p = part(&[(b"\x01b", 2), (b"\x01a", 1), (b"", 3)]);
        let keys: Vec<&[u8]> = p.keys.iter().map(Option::unwrap).collect();
        assert_eq!(keys, vec![&b""[..], b"\x01a", b"\x01b"]);
        let bytes = p.encode();
        assert_eq!(bytes.len(), p.encoded_len());
        let back = DeltaPart::decode(7, &bytes).unwrap();
        assert_eq!(back.id, 7);
        assert_eq!(back.keys, p.keys);
        assert_eq!(back.states, p.states);
        assert_eq!(
            state::decode(back.states.value(2)).unwrap(),
            vec![AggState::Count(2)]
        );
    }

    #[test]
    fn entries_with_repeated_keys_merge_into_one_group_each() {
        let entries: Vec<Entry> = vec![
            (
                b"\x01b".to_vec(),
                vec![AggState::Count(1), AggState::SumFloat(Some(0.1))],
            ),
            (
                b"\x01a".to_vec(),
                vec![AggState::Count(2), AggState::SumFloat(None)],
            ),
            (
                b"\x01b".to_vec(),
                vec![AggState::Count(4), AggState::SumFloat(Some(0.2))],
            ),
        ];
        let p = DeltaPart::from_entries(entries).unwrap();
        let keys: Vec<&[u8]> = p.keys.iter().map(Option::unwrap).collect();
        assert_eq!(keys, vec![&b"\x01a"[..], b"\x01b"]);
        assert_eq!(
            state::decode(p.states.value(1)).unwrap(),
            vec![AggState::Count(5), AggState::SumFloat(Some(0.1 + 0.2))]
        );
        // States of different aggregates under one key are a damaged input, not a panic.
        let clash: Vec<Entry> = vec![
            (b"k".to_vec(), vec![AggState::Count(1)]),
            (b"k".to_vec(), vec![AggState::SumInt(Some(1))]),
        ];
        assert!(DeltaPart::from_entries(clash).is_err());
    }

    #[test]
    fn damaged_parts_are_refused() {
        let bytes = part(&[(b"\x01a", 1), (b"\x01b", 2)]).encode();
        assert!(DeltaPart::decode(1, &[]).is_err());
        assert!(DeltaPart::decode(1, &bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(DeltaPart::decode(1, &longer).is_err());
        let mut version = bytes.clone();
        version[0] = 9;
        assert!(DeltaPart::decode(1, &version).is_err());
        // Every truncation fails cleanly, never panics.
        for end in 0..bytes.len() {
            assert!(DeltaPart::decode(1, &bytes[..end]).is_err());
        }
        // A group count the bytes cannot hold is refused before anything is allocated for it.
        let mut huge = bytes.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = DeltaPart::decode(1, &huge).unwrap_err().to_string();
        assert!(err.contains("do not fit"), "{err}");
    }

    /// Every single-byte change of a stored part (several values at each position) decodes
    /// to a part or to an error, never a panic; a part that decodes has readable groups.
    #[test]
    fn every_byte_damage_is_an_error_or_a_readable_part() {
        let groups: Groups = (0..5u8)
            .map(|i| {
                let mut sketch = crate::sketch::Hll::for_storage();
                sketch.insert_bytes(&[i; 8]);
                (
                    vec![1, b'k', i],
                    vec![AggState::Count(i64::from(i)), AggState::Hll(sketch)],
                )
            })
            .collect();
        let bytes = DeltaPart::from_groups(groups).encode();
        let mut decoded = 0;
        for position in 0..bytes.len() {
            let original = bytes[position];
            for value in [0, 0xff, original ^ 1, original.wrapping_add(1), 0x7f, 0x80] {
                let mut damaged = bytes.clone();
                damaged[position] = value;
                if let Ok(part) = DeltaPart::decode(1, &damaged) {
                    decoded += 1;
                    for i in 0..part.len() {
                        let _ = part.keys.value(i);
                        let _ = state::decode(part.states.value(i));
                    }
                }
            }
        }
        assert!(decoded > 0, "changes inside the values still decode");
    }
}
