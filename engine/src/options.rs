//! Tuning knobs for a [`Database`](crate::Database).

use std::sync::Arc;
use std::time::Duration;

use crate::query::extension::SessionExtension;

/// How a database commits, flushes and queries. `Options::default()` suits most uses.
#[derive(Debug, Clone)]
pub struct Options {
    /// Sync the write-ahead log before a commit is acknowledged (Postgres'
    /// `synchronous_commit = on`). With `false`, a crash may lose the last commits
    /// but never leaves a partial one.
    pub sync: bool,
    /// Flush a table's hot tier to a Parquet segment once it holds this many rows.
    pub flush_rows: usize,
    /// … or this many bytes of Arrow IPC.
    pub flush_bytes: usize,
    /// … or this many hot batches (each commit copies the list of hot batches, so many tiny
    /// commits are flushed sooner).
    pub flush_batches: usize,
    /// … or once its oldest hot batch is this old.
    pub flush_age: Duration,
    /// How often the background flusher checks the thresholds.
    pub flush_check_interval: Duration,
    /// How often the background flusher applies tables' retention (`WITH (retention = …)`).
    pub retention_check_interval: Duration,
    /// Run the background flusher. When `false`, segments are written only by
    /// [`Database::flush`](crate::Database::flush) and on close.
    pub background_flush: bool,
    /// Flush the hot tier to Parquet on close. With `false`, close is fast and the hot
    /// batches are read back from RocksDB at the next open.
    pub flush_on_close: bool,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// Partitions DataFusion uses to run a query (defaults to the number of cores).
    pub target_partitions: Option<usize>,
    /// How long a batch id given to [`BulkIngest::batch_id`](crate::BulkIngest::batch_id) or
    /// [`Database::ingest_with_batch_id`](crate::Database::ingest_with_batch_id) (`COPY … WITH
    /// (batch_id '…')` over the wire) is remembered: a retry within it is acknowledged without
    /// writing the rows again.
    pub batch_id_window: Duration,
    /// How many of its latest changes a subscribed materialized view keeps in memory, so that a
    /// subscriber that reconnects with `from` resumes without a gap (see
    /// [`Database::subscribe`](crate::Database::subscribe)). Older ones are answered with a
    /// fresh snapshot.
    pub changefeed_ring_commits: usize,
    /// How long a view keeps recording its changes after its last subscriber left, for that
    /// subscriber to resume.
    pub changefeed_linger: Duration,
    /// How often the background compactor merges materialized views' delta parts into state
    /// segments (a view that gathers 8 parts wakes it sooner). It runs when
    /// `background_flush` is on.
    pub compaction_interval: Duration,
    /// An ingest into a table waits (backpressure, never an error) while one of its views has
    /// this many delta parts that compaction has not merged yet.
    pub view_parts_to_delay: usize,
    /// Answer aggregate queries over a table from a materialized view of it where a view can
    /// give the same answer (`tally.view_rewrite`; see `docs/sql.md`, "Queries answered from
    /// views"). A [`SessionSettings`](crate::SessionSettings) scope overrides it.
    pub view_rewrite: bool,
    /// Hooks that add schemas and functions to every query session (see
    /// [`SessionExtension`]); the Postgres server adds its `pg_catalog` here.
    pub session_extensions: Vec<Arc<dyn SessionExtension>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sync: true,
            flush_rows: 1_000_000,
            flush_bytes: 64 << 20,
            flush_batches: 4096,
            flush_age: Duration::from_secs(60),
            flush_check_interval: Duration::from_millis(500),
            retention_check_interval: Duration::from_secs(60),
            background_flush: true,
            flush_on_close: true,
            row_group_rows: 128 * 1024,
            target_partitions: None,
            batch_id_window: Duration::from_secs(24 * 3600),
            changefeed_ring_commits: 10_000,
            changefeed_linger: Duration::from_secs(300),
            compaction_interval: Duration::from_millis(500),
            view_parts_to_delay: 256,
            view_rewrite: true,
            session_extensions: Vec::new(),
        }
    }
}
