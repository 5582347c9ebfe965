//! Thin wrappers over crate-private code, so that `benches/benches/micro.rs` times the engine's
//! own view states, sketches and group keys. Nothing here is part of the supported API.

pub use crate::sketch::{DistinctSet, Hll, canonical_bytes};
pub use crate::views::key::{KeyKind, KeyValue};
pub use crate::views::state::AggState;

use crate::error::Result;
use crate::views::{key, state};

/// Combines the partial state `other` into `into` (the merge of two [`AggState`]s of the same
/// aggregate).
pub fn merge_state(into: &mut AggState, other: &AggState) -> Result<()> {
    into.merge(other)
}

/// Encodes the states of one group as a value of the `views` column family.
pub fn encode_states(states: &[AggState]) -> Vec<u8> {
    state::encode(states)
}

/// Decodes a value of the `views` column family.
pub fn decode_states(bytes: &[u8]) -> Result<Vec<AggState>> {
    state::decode(bytes)
}

/// Merges encoded values as the `views` merge operator does (it is associative, so full and
/// partial merges alike): decode `first`, merge each of `rest` into it, encode the result.
/// (The operator's shortcuts for index keys and lone operands are not taken here.)
pub fn merge_encoded_values(first: &[u8], rest: &[&[u8]]) -> Result<Vec<u8>> {
    state::merge_values(first, rest.iter().copied())
}

/// Appends one value to a memcomparable group key.
pub fn encode_key_value(out: &mut Vec<u8>, value: &KeyValue) {
    key::encode_value(out, value)
}

/// Decodes the values of a group key, given the kinds of its columns.
pub fn decode_key(key: &[u8], kinds: &[KeyKind]) -> Result<Vec<KeyValue>> {
    key::decode(key, kinds)
}

/// Splits a group key into its encoded values (as view reads do to filter on key bytes);
/// `None` for a malformed key.
pub fn split_key<'a>(key: &'a [u8], kinds: &[KeyKind]) -> Option<Vec<&'a [u8]>> {
    key::split(key, kinds)
}
