//! The in-memory image of committed state: a [`Snapshot`] is immutable, and each commit
//! publishes a new one. A query holds one snapshot for its whole run, which is what makes its
//! reads consistent across tables and immune to concurrent commits and flushes.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use arrow::record_batch::RecordBatch;

use crate::catalog::{SegmentMeta, TableDef};

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

/// All tables at one commit point.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    /// Tables by name.
    pub tables: BTreeMap<String, Arc<TableState>>,
    /// Sequence number of the last commit that wrote rows.
    pub last_seq: u64,
}

impl Snapshot {
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

    /// Publishes a new snapshot.
    pub(crate) fn set(&self, snapshot: Snapshot) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
    }
}
