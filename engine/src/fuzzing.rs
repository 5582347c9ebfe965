//! Entry points for the cargo-fuzz targets in `fuzz/` only: thin wrappers over the crate-private
//! decoders of stored data (catalog entries, view states, group keys), so the targets feed them
//! arbitrary bytes as a damaged or hostile data directory would. Not a supported API.

use crate::catalog::{self, SegmentMeta, TableDef};
use crate::error::Result;
use crate::views::ViewDef;
use crate::views::key::{self, KeyKind, KeyValue};
use crate::views::state;

/// Decodes a table definition as `Database::open` reads it from the catalog.
pub fn decode_table_def(bytes: &[u8]) -> Result<TableDef> {
    catalog::decode("table definition", bytes)
}

/// Decodes a segment entry as `Database::open` reads it from the catalog.
pub fn decode_segment(bytes: &[u8]) -> Result<SegmentMeta> {
    catalog::decode("segment", bytes)
}

/// Decodes a materialized view's entry as `Database::open` reads it from the catalog.
pub fn decode_view_def(bytes: &[u8]) -> Result<ViewDef> {
    catalog::decode("view definition", bytes)
}

/// Encodes a table definition as the catalog stores it.
pub fn encode_table_def(def: &TableDef) -> Vec<u8> {
    catalog::encode(def)
}

/// Encodes a segment entry as the catalog stores it.
pub fn encode_segment(segment: &SegmentMeta) -> Vec<u8> {
    catalog::encode(segment)
}

/// Encodes a materialized view's entry as the catalog stores it.
pub fn encode_view_def(def: &ViewDef) -> Vec<u8> {
    catalog::encode(def)
}

/// Walks an encoded group value as view reads do (borrowed states, sketches left serialized);
/// returns the number of states.
pub fn visit_view_state(bytes: &[u8]) -> Result<usize> {
    let mut states = 0;
    state::visit(bytes, |_, _| {
        states += 1;
        Ok(())
    })?;
    Ok(states)
}

/// Decodes one encoded group-key value of `kind` as view reads do: a part of a key split by
/// [`crate::internals::split_key`], presence byte included.
pub fn decode_key_value(encoded: &[u8], kind: KeyKind) -> Result<KeyValue> {
    let mut scratch = Vec::new();
    Ok(key::decode_one(encoded, kind, &mut scratch)?.to_value())
}

/// Orders two values of the same kind as the views' `min` and `max` do.
pub fn compare_values(a: &KeyValue, b: &KeyValue) -> std::cmp::Ordering {
    state::compare(a, b)
}

/// Decodes a view's delta part as `Database::open` reads it from `view_parts`, then walks each
/// group's states as view reads do; returns its number of groups.
pub fn decode_delta_part(bytes: &[u8]) -> Result<usize> {
    let part = crate::views::part::DeltaPart::decode(1, bytes)?;
    for i in 0..part.len() {
        state::visit(part.states.value(i), |_, _| Ok(()))?;
    }
    Ok(part.len())
}
