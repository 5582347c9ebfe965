//! Incrementally maintained materialized views: definition analysis, per-batch maintenance,
//! the state codec, delta parts, state segments, their merge, compaction and view scans. The
//! commit thread writes each commit's delta part (one per view) in the same `WriteBatch` as the
//! rows; the compactor merges parts into segments in the background.

pub(crate) mod assemble;
pub(crate) mod bounds;
pub(crate) mod column;
pub(crate) mod compact;
pub(crate) mod definition;
pub(crate) mod hidden_columns;
pub(crate) mod key;
pub(crate) mod load;
pub(crate) mod logical;
pub(crate) mod maintain;
pub(crate) mod merge;
pub(crate) mod part;
pub(crate) mod percentile;
pub(crate) mod progress;
pub(crate) mod provider;
pub(crate) mod read;
pub(crate) mod scan;
pub(crate) mod segment;
pub(crate) mod state;

pub(crate) use definition::CompiledView;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A materialized view's catalog entry (JSON in the `catalog` column family, key `'v' view_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewDef {
    /// Encoding version ([`crate::catalog::CATALOG_ENTRY_VERSION`]).
    pub v: u32,
    /// Stable view id; its delta parts and state segments live under this id.
    pub id: u64,
    /// View name (shares the namespace of tables).
    pub name: String,
    /// Id of the table the view aggregates.
    pub table_id: u64,
    /// The defining query, as written after `AS`.
    pub query: String,
    /// `backfilling` until the rows that existed at creation are aggregated, then `ready`.
    pub status: ViewStatus,
    /// Written as `true` by format 1 builds (which kept index entries); unused since format 2,
    /// whose segments order their rows by every group column.
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

/// A view's stored groups as of one snapshot: immutable state segments written by compaction and
/// the delta parts committed since, each sorted by group key. Reads merge them; the compactor
/// folds parts (and small segments) into larger segments.
#[derive(Debug, Clone, Default)]
pub(crate) struct ViewData {
    /// State segments, by id.
    pub segments: Vec<Arc<segment::StateSegment>>,
    /// Delta parts not yet compacted, in commit order.
    pub parts: Vec<Arc<part::DeltaPart>>,
}

impl ViewData {
    /// Bytes of the stored segments and parts.
    pub(crate) fn bytes(&self) -> u64 {
        let segments: u64 = self.segments.iter().map(|s| s.meta.bytes).sum();
        let parts: usize = self.parts.iter().map(|p| p.encoded_len()).sum();
        segments + parts as u64
    }

    /// Group entries in the delta parts (the compaction backlog).
    pub(crate) fn part_groups(&self) -> usize {
        self.parts.iter().map(|p| p.len()).sum()
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
}
