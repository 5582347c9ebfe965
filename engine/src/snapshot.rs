//! The in-memory image of committed state: a [`Snapshot`] is immutable, and each commit
//! publishes a new one. A query holds one snapshot for its whole run, which is what makes its
//! reads consistent across tables and immune to concurrent commits and flushes.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use arrow::record_batch::RecordBatch;

use crate::catalog::{SegmentMeta, TableDef};
use crate::views::{CompiledView, ViewData, ViewStatus};

/// A committed batch not yet flushed to Parquet.
#[derive(Debug)]
pub(crate) struct HotBatch {
    /// Commit sequence number (also its key in the hot column family).
    pub seq: u64,
    /// The rows, in the table's schema.
    pub batch: RecordBatch,
    /// Size of its IPC encoding.
    pub bytes: usize,
    /// When it was committed (or loaded at open), for the flush-age threshold.
    pub since: Instant,
}

/// One table as of a snapshot.
#[derive(Debug, Clone)]
pub(crate) struct TableState {
    /// The definition.
    pub def: Arc<TableDef>,
    /// Flushed segments.
    pub segments: Vec<Arc<SegmentMeta>>,
    /// Committed, unflushed batches in sequence order.
    pub hot: Vec<Arc<HotBatch>>,
}

impl TableState {
    /// A new, empty table.
    pub(crate) fn new(def: TableDef) -> Self {
        TableState {
            def: Arc::new(def),
            segments: vec![],
            hot: vec![],
        }
    }

    /// Rows in the hot tier.
    pub(crate) fn hot_rows(&self) -> usize {
        self.hot.iter().map(|h| h.batch.num_rows()).sum()
    }

    /// Bytes in the hot tier.
    pub(crate) fn hot_bytes(&self) -> usize {
        self.hot.iter().map(|h| h.bytes).sum()
    }
}

/// A materialized view as of a snapshot.
#[derive(Debug, Clone)]
pub(crate) struct ViewEntry {
    /// The compiled definition (its `def` holds id, table and query).
    pub view: Arc<CompiledView>,
    /// Backfilling or ready.
    pub status: ViewStatus,
    /// Its stored groups: state segments and delta parts.
    pub data: ViewData,
}

/// All tables at one commit point.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    /// Tables by name.
    pub tables: BTreeMap<String, Arc<TableState>>,
    /// Materialized views by name.
    pub views: BTreeMap<String, Arc<ViewEntry>>,
    /// Sequence number of the last commit that wrote rows.
    pub last_seq: u64,
    /// Ids of tables to which an open transaction added rows that their views do not count
    /// (a transaction's view of the data: see `Held::overlay`); no view of them answers
    /// queries over them.
    pub held_tables: std::collections::BTreeSet<u64>,
}

impl Snapshot {
    /// Views maintained over the table with this id.
    pub(crate) fn views_of(&self, table_id: u64) -> impl Iterator<Item = &Arc<ViewEntry>> {
        self.views
            .values()
            .filter(move |v| v.view.def.table_id == table_id)
    }

    /// The table with this id, if it exists.
    pub(crate) fn table_by_id(&self, id: u64) -> Option<&Arc<TableState>> {
        self.tables.values().find(|t| t.def.id == id)
    }
}

/// The current snapshot, swapped atomically by the committer.
#[derive(Debug, Default)]
pub(crate) struct Current(RwLock<Arc<Snapshot>>);

impl Current {
    /// Creates the holder with an initial snapshot.
    pub(crate) fn new(snapshot: Snapshot) -> Self {
        Current(RwLock::new(Arc::new(snapshot)))
    }

    /// The latest committed snapshot.
    pub(crate) fn get(&self) -> Arc<Snapshot> {
        Arc::clone(&self.0.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Publishes a new snapshot and returns it.
    pub(crate) fn set(&self, snapshot: Snapshot) -> Arc<Snapshot> {
        let snapshot = Arc::new(snapshot);
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::clone(&snapshot);
        snapshot
    }
}
