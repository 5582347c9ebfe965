//! What a database has done and what it holds, for monitoring: commits, ingested rows and bytes,
//! commit latency, flushes, view backfills, the hot tier, and RocksDB's memtables and
//! compactions. Read with [`Database::metrics`](crate::Database::metrics).
//!
//! Each database keeps its own [`Recorder`] (nothing here is process-global, so two databases
//! in one process never mix). The commit and flush threads add to it with relaxed atomic
//! increments; gauges (the hot tier, views still backfilling, RocksDB properties) are read when
//! a [`Metrics`] snapshot is taken.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::commit::{Op, Outcome};
use crate::error::Result;
use crate::snapshot::Snapshot;
use crate::views::ViewStatus;

/// Upper bounds, in seconds, of the [`Metrics::commit_latency`] buckets: a synced commit takes
/// from about 100 µs (a fast SSD, a small group) to seconds (a stalled disk).
pub const COMMIT_LATENCY_BOUNDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A snapshot of a database's metrics, from [`Database::metrics`](crate::Database::metrics).
///
/// Counters (`commits`, `rows_ingested` …) count from the database's open; gauges (`hot_rows`,
/// `views_backfilling` …) are the state at the moment of the snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Metrics {
    /// Requests committed by the commit thread, by kind.
    pub commits: CommitCounts,
    /// Requests that failed: refused against the working snapshot (a table dropped meanwhile …)
    /// or part of a RocksDB write that failed (a full disk …).
    pub commit_failures: u64,
    /// Commit groups written: one RocksDB write, with at most one WAL sync, for the requests
    /// that were waiting together.
    pub commit_groups: u64,
    /// Time from a commit request to its durable, visible reply, for requests that succeeded.
    pub commit_latency: Histogram,
    /// Rows committed by appends (`INSERT`, COPY, `ingest`, bulk loads, transaction commits).
    pub rows_ingested: u64,
    /// Bytes those rows took when committed: Arrow IPC for rows kept in the hot tier, plus the
    /// Parquet files a bulk load wrote.
    pub bytes_ingested: u64,
    /// Tables flushed from the hot tier to Parquet (one per table and flush).
    pub flushes: u64,
    /// Rows moved to Parquet by those flushes.
    pub flushed_rows: u64,
    /// Bytes of Parquet written by those flushes.
    pub flushed_bytes: u64,
    /// Flushes of a table that failed (retried later).
    pub flush_failures: u64,
    /// Tables.
    pub tables: u64,
    /// Materialized views.
    pub views: u64,
    /// Views still backfilling (not yet readable).
    pub views_backfilling: u64,
    /// Rows that running backfills have yet to aggregate.
    pub backfill_rows_pending: u64,
    /// Rows aggregated by backfills since open.
    pub backfilled_rows: u64,
    /// Rows in the hot tier (committed, not yet flushed to Parquet).
    pub hot_rows: u64,
    /// Bytes of Arrow IPC in the hot tier.
    pub hot_bytes: u64,
    /// Parquet segments.
    pub segments: u64,
    /// Bytes of Parquet segments.
    pub segment_bytes: u64,
    /// RocksDB's own figures; `None` once the database is closed.
    pub rocksdb: Option<RocksDbMetrics>,
}

/// Committed requests by kind (see [`Metrics::commits`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommitCounts {
    /// Appends of rows, and transaction commits.
    pub appends: u64,
    /// Catalog changes: CREATE/DROP TABLE, CREATE/DROP MATERIALIZED VIEW.
    pub catalog: u64,
    /// Segment registrations by the flusher.
    pub flushes: u64,
    /// Chunks of view backfill, and views marked ready.
    pub backfills: u64,
    /// View compactions swapped in (delta parts and segments merged into a segment).
    pub compactions: u64,
}

/// A latency distribution: counts per bucket, Prometheus-style.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Upper bounds of the buckets, in seconds, ascending.
    pub bounds: Vec<f64>,
    /// Observations per bucket (not cumulative): `counts[i]` are those at most `bounds[i]` and
    /// above `bounds[i - 1]`; the last entry, one past `bounds`, counts those above every bound.
    pub counts: Vec<u64>,
    /// Sum of all observations, in seconds.
    pub sum_seconds: f64,
}

impl Histogram {
    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// RocksDB's figures that matter for operating Tally (see [`Metrics::rocksdb`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RocksDbMetrics {
    /// Bytes in memtables, active and immutable, of all column families.
    pub memtable_bytes: u64,
    /// Bytes RocksDB estimates compactions must rewrite to bring every level under its target.
    pub pending_compaction_bytes: u64,
    /// Compactions running now.
    pub running_compactions: u64,
    /// Memtable flushes running now.
    pub running_flushes: u64,
    /// Bytes of live SST files.
    pub live_sst_bytes: u64,
    /// Whether writes are stopped (a write stall); 0 or 1.
    pub write_stopped: u64,
    /// Bytes read by compactions since open.
    pub compaction_read_bytes: u64,
    /// Bytes written by compactions since open.
    pub compaction_write_bytes: u64,
    /// Bytes written by memtable flushes since open.
    pub flush_write_bytes: u64,
    /// Microseconds writes were delayed or stopped by RocksDB's write controller since open.
    pub stall_micros: u64,
}

/// The database's counters, shared by the commit thread, the flusher and backfills.
#[derive(Debug)]
pub(crate) struct Recorder {
    appends: AtomicU64,
    catalog: AtomicU64,
    flush_commits: AtomicU64,
    backfills: AtomicU64,
    compactions: AtomicU64,
    commit_failures: AtomicU64,
    commit_groups: AtomicU64,
    commit_latency: AtomicHistogram,
    rows_ingested: AtomicU64,
    bytes_ingested: AtomicU64,
    flushes: AtomicU64,
    flushed_rows: AtomicU64,
    flushed_bytes: AtomicU64,
    flush_failures: AtomicU64,
    backfill_rows_pending: AtomicU64,
    backfilled_rows: AtomicU64,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            appends: AtomicU64::new(0),
            catalog: AtomicU64::new(0),
            flush_commits: AtomicU64::new(0),
            backfills: AtomicU64::new(0),
            compactions: AtomicU64::new(0),
            commit_failures: AtomicU64::new(0),
            commit_groups: AtomicU64::new(0),
            commit_latency: AtomicHistogram::new(&COMMIT_LATENCY_BOUNDS),
            rows_ingested: AtomicU64::new(0),
            bytes_ingested: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            flushed_rows: AtomicU64::new(0),
            flushed_bytes: AtomicU64::new(0),
            flush_failures: AtomicU64::new(0),
            backfill_rows_pending: AtomicU64::new(0),
            backfilled_rows: AtomicU64::new(0),
        }
    }
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Recorder {
    /// Records the reply to one commit request, queued at `queued`.
    pub(crate) fn committed(&self, op: &Op, result: &Result<Outcome>, queued: Instant) {
        let Ok(outcome) = result else {
            add(&self.commit_failures, 1);
            return;
        };
        self.commit_latency.observe(queued.elapsed());
        let kind = match op {
            Op::Append { .. } | Op::Transaction(_) => &self.appends,
            Op::CreateTable { .. }
            | Op::DropTables { .. }
            | Op::CreateView { .. }
            | Op::DropViews { .. } => &self.catalog,
            Op::RegisterSegments { .. } => &self.flush_commits,
            Op::SetRetention { .. } | Op::DropSegments { .. } => &self.catalog,
            Op::Backfill { .. } | Op::ViewReady { .. } => &self.backfills,
            Op::CompactView { .. } => &self.compactions,
        };
        add(kind, 1);
        // A duplicate batch id wrote nothing.
        if let Outcome::Appended {
            rows,
            duplicate: false,
        } = outcome
        {
            add(&self.rows_ingested, *rows);
            add(&self.bytes_ingested, appended_bytes(op));
        }
    }

    /// Records a commit group written (its requests are recorded by [`Recorder::committed`]).
    pub(crate) fn group_committed(&self) {
        add(&self.commit_groups, 1);
    }

    /// Records a commit group whose RocksDB write failed, failing its `requests`.
    pub(crate) fn group_failed(&self, requests: usize) {
        add(&self.commit_failures, requests as u64);
    }

    /// Records a table flushed to Parquet.
    pub(crate) fn flushed(&self, rows: u64, bytes: u64) {
        add(&self.flushes, 1);
        add(&self.flushed_rows, rows);
        add(&self.flushed_bytes, bytes);
    }

    /// Records a failed flush of a table.
    pub(crate) fn flush_failed(&self) {
        add(&self.flush_failures, 1);
    }

    /// Starts counting a backfill of `rows` rows; the rows it has not reported done when the
    /// returned guard drops (a failure) stop counting as pending then.
    pub(crate) fn backfill(&self, rows: u64) -> BackfillProgress<'_> {
        add(&self.backfill_rows_pending, rows);
        BackfillProgress {
            recorder: self,
            left: rows,
        }
    }

    /// The counters, the gauges of `snapshot`, and RocksDB's figures when `rocksdb` is given.
    pub(crate) fn snapshot(&self, snapshot: &Snapshot, rocksdb: Option<RocksDbMetrics>) -> Metrics {
        let mut metrics = Metrics {
            commits: CommitCounts {
                appends: get(&self.appends),
                catalog: get(&self.catalog),
                flushes: get(&self.flush_commits),
                backfills: get(&self.backfills),
                compactions: get(&self.compactions),
            },
            commit_failures: get(&self.commit_failures),
            commit_groups: get(&self.commit_groups),
            commit_latency: self.commit_latency.snapshot(),
            rows_ingested: get(&self.rows_ingested),
            bytes_ingested: get(&self.bytes_ingested),
            flushes: get(&self.flushes),
            flushed_rows: get(&self.flushed_rows),
            flushed_bytes: get(&self.flushed_bytes),
            flush_failures: get(&self.flush_failures),
            tables: snapshot.tables.len() as u64,
            views: snapshot.views.len() as u64,
            views_backfilling: snapshot
                .views
                .values()
                .filter(|v| v.status == ViewStatus::Backfilling)
                .count() as u64,
            backfill_rows_pending: get(&self.backfill_rows_pending),
            backfilled_rows: get(&self.backfilled_rows),
            rocksdb,
            ..Metrics::default()
        };
        for table in snapshot.tables.values() {
            metrics.hot_rows += table.hot_rows() as u64;
            metrics.hot_bytes += table.hot_bytes() as u64;
            metrics.segments += table.segments.len() as u64;
            metrics.segment_bytes += table.segments.iter().map(|s| s.bytes).sum::<u64>();
        }
        metrics
    }
}

/// Bytes an append committed: the IPC encodings of its hot batches and its bulk-load segments.
fn appended_bytes(op: &Op) -> u64 {
    match op {
        Op::Append {
            batches, segments, ..
        } => {
            let hot: usize = batches.iter().map(|(_, encoded)| encoded.len()).sum();
            hot as u64 + segments.iter().map(|s| s.bytes).sum::<u64>()
        }
        Op::Transaction(parts) => parts.iter().map(appended_bytes).sum(),
        _ => 0,
    }
}

/// A running backfill's share of [`Metrics::backfill_rows_pending`].
pub(crate) struct BackfillProgress<'a> {
    recorder: &'a Recorder,
    left: u64,
}

impl BackfillProgress<'_> {
    /// Records `rows` more rows aggregated.
    pub(crate) fn done(&mut self, rows: u64) {
        let rows = rows.min(self.left);
        self.left -= rows;
        self.recorder
            .backfill_rows_pending
            .fetch_sub(rows, Ordering::Relaxed);
        add(&self.recorder.backfilled_rows, rows);
    }
}

impl Drop for BackfillProgress<'_> {
    fn drop(&mut self) {
        self.recorder
            .backfill_rows_pending
            .fetch_sub(self.left, Ordering::Relaxed);
    }
}

/// A histogram of durations over fixed bounds, updated without locks.
#[derive(Debug)]
struct AtomicHistogram {
    bounds: &'static [f64],
    /// One per bound, then one for everything above the last.
    counts: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
}

impl AtomicHistogram {
    fn new(bounds: &'static [f64]) -> AtomicHistogram {
        AtomicHistogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = self.bounds.partition_point(|bound| *bound < seconds);
        add(&self.counts[bucket], 1);
        add(
            &self.sum_nanos,
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
        );
    }

    fn snapshot(&self) -> Histogram {
        Histogram {
            bounds: self.bounds.to_vec(),
            counts: self.counts.iter().map(get).collect(),
            sum_seconds: get(&self.sum_nanos) as f64 / 1e9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_observation_lands_in_the_first_bucket_whose_bound_it_does_not_exceed() {
        let histogram = AtomicHistogram::new(&COMMIT_LATENCY_BOUNDS);
        histogram.observe(Duration::from_micros(50));
        histogram.observe(Duration::from_micros(100));
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_secs(60));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.counts.len(), COMMIT_LATENCY_BOUNDS.len() + 1);
        assert_eq!(snapshot.counts[0], 2, "50 µs and exactly 100 µs: le 0.0001");
        assert_eq!(snapshot.counts[5], 1, "3 ms: le 0.005");
        assert_eq!(
            *snapshot.counts.last().unwrap(),
            1,
            "60 s: above every bound"
        );
        assert_eq!(snapshot.count(), 4);
        assert!((snapshot.sum_seconds - 60.00315).abs() < 1e-9);
    }

    #[test]
    fn a_backfill_that_stops_early_leaves_nothing_pending() {
        let recorder = Recorder::default();
        {
            let mut progress = recorder.backfill(1000);
            progress.done(400);
            assert_eq!(get(&recorder.backfill_rows_pending), 600);
            let _other = recorder.backfill(10);
            assert_eq!(get(&recorder.backfill_rows_pending), 610);
        }
        assert_eq!(get(&recorder.backfill_rows_pending), 0);
        assert_eq!(get(&recorder.backfilled_rows), 400);
    }
}
