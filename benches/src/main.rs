//! `tally-bench`: workload benchmarks for Tally, each printed beside a baseline measured in the
//! same run on the same machine.
//!
//! - `cargo run --release -p tally-bench -- ingest [--rows N] [--batch-rows N]`
//! - `cargo run --release -p tally-bench -- views [--rows N] [--batch-rows N]`
//! - `cargo run --release -p tally-bench -- sketches [--rows N] [--batch-rows N]`
//! - `cargo run --release -p tally-bench -- generate --out DIR [--rows N]`
//! - `cargo run --release -p tally-bench -- clickstream [--rows N] [--data DIR] [--peers peers.json]`

mod clickstream;
mod sketches;
mod workload;

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::path::PathBuf;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
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
    /// Ingest through `Database::ingest` with 0, 1 and 3 materialized views; HLL error and
    /// bytes per group of the views.
    Views {
        /// Total rows.
        #[arg(long, default_value_t = 5_000_000)]
        rows: usize,
        /// Rows per ingest call.
        #[arg(long, default_value_t = 10_000)]
        batch_rows: usize,
        /// Ingests timed per configuration (the median is reported, with the range).
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
    /// Ingest with the 3 views, and with p50/p95/p99 added to `page_hourly`: the percentiles'
    /// cost to the writer and the view's bytes per group.
    Sketches {
        /// Total rows.
        #[arg(long, default_value_t = 5_000_000)]
        rows: usize,
        /// Rows per ingest call.
        #[arg(long, default_value_t = 10_000)]
        batch_rows: usize,
        /// Ingests timed per configuration (the median is reported, with the range).
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
    /// The clickstream workload over pgwire against `tally serve`, beside the peers' figures.
    Clickstream {
        /// Directory with `events.csv` (generated there when missing).
        #[arg(long, default_value = "target/clickstream-data")]
        data: PathBuf,
        /// Rows to generate when the data is missing.
        #[arg(long, default_value_t = 5_000_000)]
        rows: usize,
        /// Runs of each dashboard query.
        #[arg(long, default_value_t = 1000)]
        runs: usize,
        /// Rows per COPY in the concurrent load.
        #[arg(long, default_value_t = 10_000)]
        chunk_rows: usize,
        /// Concurrent connections in the chunked load.
        #[arg(long, default_value_t = 4)]
        workers: usize,
        /// JSON written by `benches/peers/run.py --json` to print beside Tally.
        #[arg(long)]
        peers: Option<PathBuf>,
        /// Write Tally's figures (and the peers') as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Only the loads (CSV, binary and Parquet COPY), no queries, disk or restart figures.
        #[arg(long)]
        loads_only: bool,
    },
    /// Time one prepared statement against a running server (binary results, as the
    /// clickstream figures are taken): p50 / p99 of `--runs` runs.
    Query {
        /// Connection string, e.g. `host=127.0.0.1 port=5433 user=tally`.
        #[arg(long, default_value = "host=127.0.0.1 port=5433 user=tally")]
        url: String,
        /// The statement; `$1`, `$2` … take `--param` values, in order (sent as text).
        sql: String,
        /// A parameter value (repeat for more).
        #[arg(long = "param")]
        params: Vec<String>,
        /// Runs.
        #[arg(long, default_value_t = 20)]
        runs: usize,
    },
    /// Write the clickstream workload as `events.csv` and `events.parquet`.
    Generate {
        /// Directory to write into.
        #[arg(long)]
        out: PathBuf,
        /// Total rows.
        #[arg(long, default_value_t = 5_000_000)]
        rows: usize,
    },
}

/// Seed of the workload's generator: figures compare across runs.
pub(crate) const SEED: u64 = 20260101;

/// The workload's table, with its time column and a bloom filter for user lookups.
fn events_ddl() -> String {
    format!(
        "{} WITH (time_column = 'ts', bloom_filter_columns = 'user_id')",
        clickstream::EVENTS_DDL
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let command = Cli::parse().command;
    // The library benchmarks run Tally in this process: a multi-thread runtime, as an
    // embedding application would give it. The pgwire benchmarks are clients of a separate
    // server: one thread, as a latency client would run (tokio-postgres on a multi-thread
    // runtime hands every chunk of rows across threads, which costs as much as the server's
    // work on a large read).
    let runtime = match command {
        Command::Ingest { .. } | Command::Views { .. } | Command::Sketches { .. } => {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
        }
        _ => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    }?;
    runtime.block_on(run(command))
}

async fn run(command: Command) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Ingest { rows, batch_rows } => ingest(rows, batch_rows).await,
        Command::Views {
            rows,
            batch_rows,
            repeat,
        } => views(rows, batch_rows, repeat.max(1)).await,
        Command::Sketches {
            rows,
            batch_rows,
            repeat,
        } => sketches::run(rows, batch_rows, repeat.max(1)).await,
        Command::Clickstream {
            data,
            rows,
            runs,
            chunk_rows,
            workers,
            peers,
            json,
            loads_only,
        } => workload::run(workload::Settings {
            data,
            rows,
            runs,
            chunk_rows,
            workers,
            peers,
            json,
            loads_only,
        })
        .await
        .map_err(|e| e as Box<dyn std::error::Error>),
        Command::Query {
            url,
            sql,
            params,
            runs,
        } => workload::time_query(&url, &sql, &params, runs)
            .await
            .map_err(|e| e as Box<dyn std::error::Error>),
        Command::Generate { out, rows } => {
            eprintln!("generating {rows} events …");
            let batches = clickstream::generate(rows, 100_000, SEED);
            eprintln!("writing {} …", out.display());
            clickstream::write_files(&out, &batches)?;
            Ok(())
        }
    }
}

async fn ingest(rows: usize, batch_rows: usize) -> Result<(), Box<dyn std::error::Error>> {
    eprintln!("generating {rows} events in batches of {batch_rows} …");
    let batches = clickstream::generate(rows, batch_rows, SEED);
    let dir = tempfile::tempdir()?;
    let db = Database::open(dir.path(), Options::default())?;
    db.sql(&events_ddl()).await?;

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
        Arc::new(MemTable::try_new(
            clickstream::schema(),
            vec![batches.clone()],
        )?),
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

pub(crate) async fn median_secs<F, Fut>(runs: usize, mut f: F) -> f64
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

/// Ingests `batches` into a new database with the first `views` of the workload's views
/// created beforehand; returns the database (open) and the ingest time in seconds.
async fn ingest_with_views(
    dir: &std::path::Path,
    batches: &[RecordBatch],
    views: usize,
) -> Result<(Database, f64), Box<dyn std::error::Error>> {
    ingest_with(dir, batches, &clickstream::VIEWS[..views]).await
}

/// Ingests `batches` into a new database with the views `(name, defining query)` created
/// beforehand; returns the database (open) and the ingest time in seconds.
pub(crate) async fn ingest_with(
    dir: &std::path::Path,
    batches: &[RecordBatch],
    view_defs: &[(&str, &str)],
) -> Result<(Database, f64), Box<dyn std::error::Error>> {
    let views = view_defs.len();
    let db = Database::open(dir, Options::default())?;
    db.sql(&events_ddl()).await?;
    for (name, query) in view_defs {
        db.sql(&format!("CREATE MATERIALIZED VIEW {name} AS {query}"))
            .await?;
    }
    let started = Instant::now();
    let cpu_before = thread_cpu();
    let mut last_report = Instant::now();
    for (i, batch) in batches.iter().enumerate() {
        db.ingest("events", batch.clone()).await?;
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!("  {views} views: {} / {} batches", i + 1, batches.len());
            last_report = Instant::now();
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let mut cpu: Vec<(String, f64)> = thread_cpu()
        .into_iter()
        .map(|(name, s)| {
            let before = cpu_before.get(&name).copied().unwrap_or(0.0);
            (name, s - before)
        })
        .filter(|(_, s)| *s >= 0.05)
        .collect();
    cpu.sort_by(|a, b| b.1.total_cmp(&a.1));
    let cpu: Vec<String> = cpu.iter().map(|(n, s)| format!("{n} {s:.1}")).collect();
    eprintln!(
        "  {views} views: {secs:.2} s; CPU seconds by thread: {}",
        cpu.join(", ")
    );
    Ok((db, secs))
}

/// CPU seconds (user + system) this process's threads used so far, summed by thread name
/// (from `/proc/self/task`; empty where that does not exist). Threads that ended are missed.
fn thread_cpu() -> std::collections::BTreeMap<String, f64> {
    let mut by_name = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return by_name;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ... : fields after the closing parenthesis, utime and stime are
        // the 12th and 13th of them.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close]
            .trim_end_matches(char::is_numeric)
            .to_string();
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // Clock ticks are 1/100 s on Linux.
        *by_name.entry(name).or_insert(0.0) += (ticks(11) + ticks(12)) / 100.0;
    }
    by_name
}

async fn views(
    rows: usize,
    batch_rows: usize,
    repeat: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    eprintln!("generating {rows} events in batches of {batch_rows} …");
    let batches = clickstream::generate(rows, batch_rows, SEED);
    println!("| figure | value |");
    println!("|---|---|");
    println!("| rows | {rows} in batches of {batch_rows}, sync on |");
    // Each configuration `repeat` times into fresh databases: on this kind of machine one
    // run's rate moves by half from the next. The last three-view database is kept.
    let mut baseline = 0.0;
    let mut last = None;
    for views in [0, 1, 3] {
        let mut rates = Vec::with_capacity(repeat);
        for round in 0..repeat {
            let dir = tempfile::tempdir()?;
            let (db, secs) = ingest_with_views(dir.path(), &batches, views).await?;
            rates.push(rows as f64 / secs);
            if views == 3 && round + 1 == repeat {
                last = Some((dir, db));
            } else {
                db.close()?;
            }
        }
        let (rate, low, high) = median_and_range(&mut rates);
        if views == 0 {
            baseline = rate;
        }
        let names: Vec<&str> = clickstream::VIEWS[..views].iter().map(|v| v.0).collect();
        println!(
            "| ingest with {views} views ({}), median of {repeat} | {rate:.0} rows/s ({:.2} of no views; {low:.0}–{high:.0}) |",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            },
            rate / baseline
        );
    }
    let (_dir, db) = last.expect("the 3-view run");

    let backlog = int_rows(
        &db,
        "SELECT name, delta_parts, segments FROM tally_views ORDER BY name",
    )
    .await?;
    println!(
        "| right after the ingest: delta parts, segments per view | {} |",
        backlog
            .iter()
            .map(|(name, parts, segments)| format!("{name} {parts}, {segments}"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    view_reads(&db, "right after the ingest").await;
    let started = Instant::now();
    db.compact_views().await?;
    println!(
        "| `compact_views()` of what the background compactor left | {:.2} s |",
        started.elapsed().as_secs_f64()
    );
    view_reads(&db, "compacted").await;
    for line in int_rows(
        &db,
        "SELECT name, groups, bytes FROM tally_views ORDER BY name",
    )
    .await?
    {
        println!(
            "| `{}`: groups, bytes per group after compaction | {}, {:.0} B |",
            line.0,
            line.1,
            line.2 as f64 / line.1.max(1) as f64
        );
    }
    let per_group = error_stats(
        &db,
        "SELECT v.users, e.exact FROM country_daily v JOIN (SELECT date_trunc('day', ts) AS day, \
         country, device, count(DISTINCT user_id) AS exact FROM events GROUP BY 1, 2, 3) e \
         ON v.day = e.day AND v.country = e.country AND v.device = e.device WHERE e.exact >= 1000",
    )
    .await?;
    println!(
        "| HLL error, users per (day, country, device) with ≥ 1000 users ({} groups) | median {:.2}%, p95 {:.2}%, max {:.2}% |",
        per_group.0, per_group.1, per_group.2, per_group.3
    );
    let rollup = error_stats(
        &db,
        "SELECT r.users, e.exact FROM (SELECT day, country, \
         hll_cardinality(hll_union_agg(users_sketch)) AS users FROM country_daily GROUP BY 1, 2) r \
         JOIN (SELECT date_trunc('day', ts) AS day, country, count(DISTINCT user_id) AS exact \
         FROM events GROUP BY 1, 2) e ON r.day = e.day AND r.country = e.country \
         WHERE e.exact >= 1000",
    )
    .await?;
    println!(
        "| HLL error, users per (day, country) by sketch union ({} groups) | median {:.2}%, p95 {:.2}%, max {:.2}% |",
        rollup.0, rollup.1, rollup.2, rollup.3
    );
    println!(
        "| `page_hourly` recomputed from the table (median of 5) | {:.1} ms |",
        median_secs(5, || async {
            db.sql(clickstream::VIEWS[0].1).await.expect("query");
        })
        .await
            * 1e3
    );
    db.close()?;

    // (After the three-view database is closed: its compactor must not run beside them.)
    // The rates above end at the last acknowledgement: the work the ingest leaves to the
    // background (the table's flush to Parquet, the views' compaction) is not in them, and
    // without views the flusher has barely started by then. Sustained: the same ingest
    // until that work is done too (`flush()`, then `compact_views()`).
    let mut sustained_baseline = 0.0;
    for views in [0, 3] {
        let mut rates = Vec::with_capacity(repeat);
        let mut parts = Vec::with_capacity(repeat);
        for _ in 0..repeat {
            let dir = tempfile::tempdir()?;
            let (db, secs) = ingest_with_views(dir.path(), &batches, views).await?;
            let started = Instant::now();
            db.flush().await?;
            db.compact_views().await?;
            let background = started.elapsed().as_secs_f64();
            rates.push(rows as f64 / (secs + background));
            parts.push(format!("{secs:.2} + {background:.2}"));
            db.close()?;
        }
        let (rate, low, high) = median_and_range(&mut rates);
        if views == 0 {
            sustained_baseline = rate;
        }
        println!(
            "| sustained ingest with {views} views, median of {repeat} (ingest + flush and compaction, s: {}) | {rate:.0} rows/s ({:.2} of no views; {low:.0}–{high:.0}) |",
            parts.join(", "),
            rate / sustained_baseline
        );
    }
    Ok(())
}

/// The median, lowest and highest of `values` (sorted in place; not empty).
pub(crate) fn median_and_range(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (
        values[values.len() / 2],
        values[0],
        values[values.len() - 1],
    )
}

/// Times the three view reads of the workload (median of 5 each).
async fn view_reads(db: &Database, when: &str) {
    for (label, query) in [
        ("full read of `page_hourly`", "SELECT * FROM page_hourly"),
        (
            "`page_hourly` for one page",
            "SELECT hour, views, users FROM page_hourly WHERE page = '/p/1' ORDER BY hour",
        ),
        (
            "one day of `country_daily`",
            "SELECT * FROM country_daily WHERE day = '2026-01-03'",
        ),
    ] {
        let secs = median_secs(5, || async {
            db.sql(query).await.expect("query");
        })
        .await;
        println!("| {label}, {when} (median of 5) | {:.2} ms |", secs * 1e3);
    }
}

/// Rows of `(text, i64, i64)` from a query.
pub(crate) async fn int_rows(
    db: &Database,
    sql: &str,
) -> Result<Vec<(String, i64, i64)>, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    for batch in db.sql(sql).await? {
        let names = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8)?;
        let names = names.as_string::<i32>();
        let a = batch.column(1).as_primitive::<Int64Type>();
        let b = batch.column(2).as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            out.push((names.value(i).to_string(), a.value(i), b.value(i)));
        }
    }
    Ok(out)
}

/// `(groups, median, p95, max)` of the relative error in percent, from rows of
/// `(estimate, exact)`.
async fn error_stats(
    db: &Database,
    sql: &str,
) -> Result<(usize, f64, f64, f64), Box<dyn std::error::Error>> {
    let mut errors = Vec::new();
    for batch in db.sql(sql).await? {
        let estimate = batch.column(0).as_primitive::<Int64Type>();
        let exact = batch.column(1).as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            if estimate.is_valid(i) && exact.is_valid(i) {
                let e = exact.value(i) as f64;
                errors.push((estimate.value(i) as f64 - e).abs() / e * 100.0);
            }
        }
    }
    if errors.is_empty() {
        return Ok((0, 0.0, 0.0, 0.0));
    }
    errors.sort_by(f64::total_cmp);
    let at = |q: f64| errors[((errors.len() - 1) as f64 * q).round() as usize];
    Ok((errors.len(), at(0.5), at(0.95), at(1.0)))
}
