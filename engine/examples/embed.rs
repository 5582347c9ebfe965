//! Embedding Tally: open a database, create a table, ingest an Arrow batch, query it with SQL.
//!
//! Run with `cargo run -p tally-engine --example embed`.

use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::util::pretty::print_batches;
use tally_engine::{Database, Options};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let db = Database::open(dir.path(), Options::default())?;

    db.sql(
        "CREATE TABLE events (ts TIMESTAMP NOT NULL, user_id BIGINT, page TEXT, latency_ms DOUBLE PRECISION) \
         WITH (time_column = 'ts', bloom_filter_columns = 'user_id')",
    )
    .await?;

    // One ingest call is one atomic, durable commit.
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("user_id", DataType::Int64, true),
        Field::new("page", DataType::Utf8, true),
        Field::new("latency_ms", DataType::Float64, true),
    ]));
    let start = 1_767_225_600_000_000i64; // 2026-01-01T00:00:00
    let n = 10_000i64;
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(TimestampMicrosecondArray::from(
                (0..n).map(|i| start + i * 60_000_000).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                (0..n).map(|i| i % 321).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                (0..n).map(|i| format!("/p/{}", i % 7)).collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from(
                (0..n).map(|i| (i % 90) as f64 + 0.5).collect::<Vec<_>>(),
            )),
        ],
    )?;
    let written = db.ingest("events", batch).await?;
    println!("ingested {written} rows");

    // SQL works the same before and after the hot tier is flushed to Parquet.
    db.flush().await?;
    db.sql("INSERT INTO events VALUES ('2026-01-08 00:00:00', 1, '/p/late', 12.5)")
        .await?;
    let result = db
        .sql(
            "SELECT date_trunc('day', ts) AS day, count(*) AS views, count(DISTINCT user_id) AS users, \
             round(avg(latency_ms), 2) AS avg_latency FROM events GROUP BY 1 ORDER BY 1",
        )
        .await?;
    print_batches(&result)?;
    let stats = db.table_stats("events")?;
    println!(
        "{} segment(s) with {} rows, {} rows in the hot tier",
        stats.segments, stats.segment_rows, stats.hot_rows
    );

    db.close()?;
    Ok(())
}
