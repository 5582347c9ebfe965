//! `tally-bench`: workload benchmarks for Tally, each printed beside a baseline measured in the
//! same run on the same machine.
//!
//! `cargo run --release -p tally-bench -- ingest [--rows N] [--batch-rows N]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use clap::{Parser, Subcommand};
use tally_engine::reexports::datafusion::datasource::MemTable;
use tally_engine::reexports::datafusion::prelude::SessionContext;
use tally_engine::{Database, Options};

#[derive(Parser)]
#[command(name = "tally-bench", about = "Tally workload benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Ingest through `Database::ingest`, flush, and time `SELECT count(*), max(ts)`.
    Ingest {
        /// Total rows.
        #[arg(long, default_value_t = 5_000_000)]
        rows: usize,
        /// Rows per ingest call.
        #[arg(long, default_value_t = 10_000)]
        batch_rows: usize,
    },
}

const EVENTS_DDL: &str = "CREATE TABLE events (ts TIMESTAMP NOT NULL, user_id BIGINT, session_id BIGINT, \
    page TEXT, country TEXT, device TEXT, status INT, latency_ms DOUBLE PRECISION, bytes BIGINT) \
    WITH (time_column = 'ts', bloom_filter_columns = 'user_id')";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    match Cli::parse().command {
        Command::Ingest { rows, batch_rows } => ingest(rows, batch_rows).await,
    }
}

async fn ingest(rows: usize, batch_rows: usize) -> Result<(), Box<dyn std::error::Error>> {
    eprintln!("generating {rows} events in batches of {batch_rows} …");
    let batches = generate(rows, batch_rows);
    let dir = tempfile::tempdir()?;
    let db = Database::open(dir.path(), Options::default())?;
    db.sql(EVENTS_DDL).await?;

    let started = Instant::now();
    let mut last_report = Instant::now();
    for (i, batch) in batches.iter().enumerate() {
        db.ingest("events", batch.clone()).await?;
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!("  {} / {} batches", i + 1, batches.len());
            last_report = Instant::now();
        }
    }
    let ingest_secs = started.elapsed().as_secs_f64();
    let flush_started = Instant::now();
    db.flush().await?;
    let flush_secs = flush_started.elapsed().as_secs_f64();
    let stats = db.table_stats("events")?;

    let query = "SELECT count(*), max(ts) FROM events";
    let tally_query = median_secs(5, || async {
        db.sql(query).await.expect("query");
    })
    .await;

    // Baseline: DataFusion over the same batches held in memory (no storage at all).
    let ctx = SessionContext::new();
    ctx.register_table(
        "events",
        Arc::new(MemTable::try_new(schema(), vec![batches.clone()])?),
    )?;
    let memory_query = median_secs(5, || async {
        ctx.sql(query)
            .await
            .expect("plan")
            .collect()
            .await
            .expect("query");
    })
    .await;

    let rate = rows as f64 / ingest_secs;
    println!("| figure | value |");
    println!("|---|---|");
    println!("| rows | {rows} in batches of {batch_rows} |");
    println!("| ingest (sync on, `Database::ingest`) | {rate:.0} rows/s ({ingest_secs:.2} s) |");
    println!("| flush of the remaining hot tier | {flush_secs:.2} s |");
    println!(
        "| segments / bytes on disk | {} / {} ({:.1} B/row) |",
        stats.segments,
        stats.segment_bytes,
        stats.segment_bytes as f64 / rows as f64
    );
    println!(
        "| `{query}` over Tally (median of 5) | {:.1} ms |",
        tally_query * 1e3
    );
    println!(
        "| same query, DataFusion over in-memory batches (baseline) | {:.1} ms |",
        memory_query * 1e3
    );
    println!(
        "| ratio Tally / in-memory | {:.2} |",
        tally_query / memory_query
    );
    db.close()?;
    Ok(())
}

async fn median_secs<F, Fut>(runs: usize, mut f: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f().await;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("user_id", DataType::Int64, true),
        Field::new("session_id", DataType::Int64, true),
        Field::new("page", DataType::Utf8, true),
        Field::new("country", DataType::Utf8, true),
        Field::new("device", DataType::Utf8, true),
        Field::new("status", DataType::Int32, true),
        Field::new("latency_ms", DataType::Float64, true),
        Field::new("bytes", DataType::Int64, true),
    ]))
}

/// A deterministic splitmix64 stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Clickstream-like events over 7 days from 2026-01-01, in time order.
fn generate(rows: usize, batch_rows: usize) -> Vec<RecordBatch> {
    const START: i64 = 1_767_225_600_000_000;
    const SPAN: i64 = 7 * 86_400_000_000;
    const COUNTRIES: [&str; 8] = ["US", "DE", "FR", "GB", "IN", "BR", "JP", "NL"];
    const DEVICES: [&str; 3] = ["desktop", "mobile", "tablet"];
    let mut rng = Rng(42);
    let mut out = Vec::new();
    let mut produced = 0usize;
    while produced < rows {
        let n = batch_rows.min(rows - produced);
        let ts: Vec<i64> = (0..n)
            .map(|i| START + ((produced + i) as i64 * SPAN) / rows as i64)
            .collect();
        let user: Vec<i64> = (0..n)
            .map(|_| (rng.below(1000) * rng.below(1000)) as i64)
            .collect();
        let session: Vec<i64> = user
            .iter()
            .zip(&ts)
            .map(|(u, t)| u * 1000 + (t / 1_800_000_000) % 1000)
            .collect();
        let page: Vec<String> = (0..n).map(|_| format!("/p/{}", rng.below(2000))).collect();
        let country: Vec<&str> = (0..n).map(|_| COUNTRIES[rng.below(8) as usize]).collect();
        let device: Vec<&str> = (0..n).map(|_| DEVICES[rng.below(3) as usize]).collect();
        let status: Vec<i32> = (0..n)
            .map(|_| if rng.below(10) == 0 { 404 } else { 200 })
            .collect();
        let latency: Vec<f64> = (0..n).map(|_| rng.below(500_000) as f64 / 1000.0).collect();
        let bytes: Vec<i64> = (0..n).map(|_| 200 + rng.below(199_800) as i64).collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(TimestampMicrosecondArray::from(ts)),
            Arc::new(Int64Array::from(user)),
            Arc::new(Int64Array::from(session)),
            Arc::new(StringArray::from(page)),
            Arc::new(StringArray::from(country)),
            Arc::new(StringArray::from(device)),
            Arc::new(Int32Array::from(status)),
            Arc::new(Float64Array::from(latency)),
            Arc::new(Int64Array::from(bytes)),
        ];
        out.push(RecordBatch::try_new(schema(), columns).expect("valid batch"));
        produced += n;
    }
    out
}
