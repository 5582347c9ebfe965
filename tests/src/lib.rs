//! Shared helpers for Tally's end-to-end tests: temporary data directories, small flush
//! thresholds, and generators of event batches.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use tally_engine::{Database, Options};

/// DDL of the events table used across tests.
pub const EVENTS_DDL: &str = "CREATE TABLE events (ts TIMESTAMP NOT NULL, user_id BIGINT, page TEXT, \
     latency_ms DOUBLE PRECISION, batch_id BIGINT NOT NULL) \
     WITH (time_column = 'ts', bloom_filter_columns = 'user_id')";

/// Microseconds since the epoch of 2026-01-01T00:00:00Z.
pub const JAN_1_2026_US: i64 = 1_767_225_600_000_000;

/// Options for tests: no background flush (tests flush explicitly), small row groups.
pub fn test_options() -> Options {
    Options {
        background_flush: false,
        row_group_rows: 1024,
        target_partitions: Some(2),
        ..Options::default()
    }
}

/// Options whose background flusher runs often, for tests of concurrent flushes.
pub fn eager_flush_options() -> Options {
    Options {
        flush_rows: 2_000,
        flush_check_interval: Duration::from_millis(20),
        row_group_rows: 512,
        target_partitions: Some(2),
        ..Options::default()
    }
}

/// Opens a fresh database in a new temporary directory.
pub fn temp_db(options: Options) -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().expect("create temp dir");
    let db = Database::open(dir.path().join("data"), options).expect("open database");
    (dir, db)
}

/// The Arrow schema of an events batch as a client would build it.
pub fn events_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("user_id", DataType::Int64, true),
        Field::new("page", DataType::Utf8, true),
        Field::new("latency_ms", DataType::Float64, true),
        Field::new("batch_id", DataType::Int64, false),
    ]))
}

/// `rows` deterministic events for batch `batch_id`, spread over `days` days from 2026-01-01.
pub fn events_batch(batch_id: i64, rows: usize, days: i64) -> RecordBatch {
    let span = days.max(1) * 86_400_000_000;
    // Steps of about 29 hours wrap around the span, so rows cover every day of it.
    let ts: Vec<i64> = (0..rows as i64)
        .map(|i| JAN_1_2026_US + ((batch_id * 7919 + i * 104_729) * 1_000_000) % span)
        .collect();
    // Even ids only: odd ids inside the range are absent, which bloom filters can tell.
    let user: Vec<Option<i64>> = (0..rows as i64)
        .map(|i| {
            if i % 17 == 0 {
                None
            } else {
                Some((batch_id * 31 + i) % 1000 * 2)
            }
        })
        .collect();
    let page: Vec<Option<String>> = (0..rows)
        .map(|i| {
            if i % 13 == 0 {
                None
            } else {
                Some(format!("/p/{}", i % 50))
            }
        })
        .collect();
    let latency: Vec<f64> = (0..rows).map(|i| (i % 100) as f64 * 1.5).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampMicrosecondArray::from(ts)),
        Arc::new(Int64Array::from(user)),
        Arc::new(StringArray::from(page)),
        Arc::new(Float64Array::from(latency)),
        Arc::new(Int64Array::from(vec![batch_id; rows])),
    ];
    RecordBatch::try_new(events_schema(), columns).expect("valid events batch")
}

/// Runs a query expected to return one row with one Int64 value (e.g. `count(*)`).
pub async fn query_i64(db: &Database, sql: &str) -> i64 {
    let batches = db.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let batch = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .unwrap_or_else(|| panic!("{sql}: no rows"));
    let column = arrow::compute::cast(batch.column(0), &DataType::Int64).expect("cast to i64");
    column
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("i64")
        .value(0)
}

/// All rows of a query, rendered as text lines (for comparisons in tests).
pub async fn query_lines(db: &Database, sql: &str) -> Vec<String> {
    let batches = db.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    batches.iter().flat_map(batch_lines).collect()
}

/// All rows of a query over the raw tables, with materialized views never answering for them
/// (`tally.view_rewrite` off): the recompute a view is checked against.
pub async fn raw_lines(db: &Database, sql: &str) -> Vec<String> {
    let off = tally_engine::SessionSettings {
        view_rewrite: Some(false),
    };
    off.scope(query_lines(db, sql)).await
}

/// The rows of a batch as `a|b|c` text lines (NULL as the empty string).
pub fn batch_lines(batch: &RecordBatch) -> Vec<String> {
    let formatters: Vec<_> = batch
        .columns()
        .iter()
        .map(|c| {
            arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &Default::default())
                .expect("formatter")
        })
        .collect();
    (0..batch.num_rows())
        .map(|row| {
            formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}
