//! Incrementally maintained materialized views: definition analysis, per-batch maintenance,
//! the state codec and view scans. This module never writes to RocksDB itself: it turns
//! batches into `(key, state)` deltas that the commit thread merges in the same `WriteBatch`
//! as the rows.

pub(crate) mod bounds;
pub(crate) mod definition;
pub(crate) mod key;
pub(crate) mod maintain;
pub(crate) mod progress;
pub(crate) mod read;
pub(crate) mod state;

pub(crate) use definition::CompiledView;

use serde::{Deserialize, Serialize};

/// A materialized view's catalog entry (JSON in the `catalog` column family, key `'v' view_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewDef {
    /// Encoding version ([`crate::catalog::CATALOG_ENTRY_VERSION`]).
    pub v: u32,
    /// Stable view id; its states live under this id in the `views` column family.
    pub id: u64,
    /// View name (shares the namespace of tables).
    pub name: String,
    /// Id of the table the view aggregates.
    pub table_id: u64,
    /// The defining query, as written after `AS`.
    pub query: String,
    /// `backfilling` until the rows that existed at creation are aggregated, then `ready`.
    pub status: ViewStatus,
    /// Whether the view keeps an index entry per non-leading group column (views created
    /// before indexes existed have none and are read by scanning).
    #[serde(default)]
    pub indexed: bool,
}

/// Whether a view can be read yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViewStatus {
    /// Being filled from the rows that existed when it was created.
    Backfilling,
    /// Complete and readable.
    Ready,
}

impl crate::catalog::Versioned for ViewDef {
    fn version(&self) -> u32 {
        self.v
    }
}

/// `views` key prefix of one view: its id, big-endian.
pub(crate) fn view_prefix(view_id: u64) -> [u8; 8] {
    view_id.to_be_bytes()
}

/// `views` key of one group: view id, then the memcomparable group key.
pub(crate) fn state_key(view_id: u64, group_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + group_key.len());
    k.extend_from_slice(&view_prefix(view_id));
    k.extend_from_slice(group_key);
    k
}

/// Set in the id part of index keys; view ids never reach it.
const INDEX_FLAG: u64 = 1 << 63;

/// `views` key prefix of one view's index entries.
pub(crate) fn index_prefix(view_id: u64) -> [u8; 8] {
    (view_id | INDEX_FLAG).to_be_bytes()
}

/// Whether a `views` key is an index entry (whose value is always empty).
pub(crate) fn is_index_key(key: &[u8]) -> bool {
    key.first().is_some_and(|b| b & 0x80 != 0)
}

/// `views` key prefix of the index entries of groups whose column `group` has the encoded
/// value `value` (see [`key::split`]).
pub(crate) fn index_value_prefix(view_id: u64, group: usize, value: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + value.len());
    k.extend_from_slice(&index_prefix(view_id));
    k.push(group as u8);
    k.extend_from_slice(value);
    k
}

/// Appends the stored entries of one group's delta: its encoded states under its view key and,
/// when the view is indexed, one index entry per non-leading group column
/// (`index prefix | column | encoded value | group key`, empty value).
pub(crate) fn push_group_entries(
    view: &CompiledView,
    kinds: &[key::KeyKind],
    group_key: &[u8],
    states: &[state::AggState],
    out: &mut Vec<(Vec<u8>, Vec<u8>)>,
) {
    let id = view.def.id;
    out.push((state_key(id, group_key), state::encode(states)));
    if !view.def.indexed || kinds.len() < 2 {
        return;
    }
    if let Some(values) = key::split(group_key, kinds) {
        for (group, value) in values.iter().enumerate().skip(1) {
            let mut k = index_value_prefix(id, group, value);
            k.extend_from_slice(group_key);
            out.push((k, Vec::new()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_created_before_indexes_read_as_not_indexed() {
        let def: ViewDef = serde_json::from_str(
            r#"{"v":1,"id":2,"name":"per_page","table_id":1,"query":"SELECT 1","status":"ready"}"#,
        )
        .unwrap();
        assert!(!def.indexed);
    }

    #[test]
    fn index_keys_never_share_a_prefix_with_view_states() {
        for id in [0, 1, 2, 1 << 40] {
            assert!(!is_index_key(&view_prefix(id)));
            assert!(is_index_key(&index_prefix(id)));
            let prefix = index_value_prefix(id, 1, &[1, b'x', 0, 0]);
            assert!(prefix.starts_with(&index_prefix(id)));
            assert_eq!(prefix[8], 1);
            assert!(index_prefix(id) < index_prefix(id + 1));
        }
    }
}
