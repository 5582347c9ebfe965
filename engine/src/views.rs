//! Incrementally maintained materialized views: definition analysis, per-batch maintenance,
//! the state codec and view scans. This module never writes to RocksDB itself: it turns
//! batches into `(key, state)` deltas that the commit thread merges in the same `WriteBatch`
//! as the rows.

pub(crate) mod bounds;
pub(crate) mod definition;
pub(crate) mod key;
pub(crate) mod maintain;
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
