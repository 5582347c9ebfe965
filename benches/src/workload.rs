//! The clickstream workload over the Postgres wire protocol: starts `tally serve` (the release
//! binary next to this one) on a temporary directory, loads the generated CSV with COPY, reads
//! the dashboard views with prepared statements, and prints one markdown table, with the peers'
//! figures (from `benches/peers/run.py --json`) beside Tally's.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt, TryStreamExt};
use serde_json::{Value, json};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls};

use crate::clickstream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What `clickstream` runs.
pub struct Settings {
    pub data: PathBuf,
    pub rows: usize,
    pub runs: usize,
    pub chunk_rows: usize,
    pub workers: usize,
    pub peers: Option<PathBuf>,
    pub json: Option<PathBuf>,
    pub loads_only: bool,
}

/// A `tally serve` child process.
struct ServerProcess {
    child: Child,
    port: u16,
}

impl ServerProcess {
    fn start(data: &Path) -> Result<ServerProcess, BoxError> {
        let binary = std::env::current_exe()?.with_file_name("tally");
        if !binary.exists() {
            return Err(format!(
                "{} is missing: build it with `cargo build --release -p tally-server`",
                binary.display()
            )
            .into());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(binary)
            .args(["serve", "--data"])
            .arg(data)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()?;
        Ok(ServerProcess { child, port })
    }

    fn conninfo(&self) -> String {
        format!("host=127.0.0.1 port={} user=tally dbname=tally", self.port)
    }

    async fn connect(&self) -> Result<Client, BoxError> {
        let (client, connection) = tokio_postgres::connect(&self.conninfo(), NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Connects, retrying until the server accepts (up to 60 s).
    async fn wait_ready(&self) -> Result<Client, BoxError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.connect().await {
                Ok(client) => return Ok(client),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// CPU seconds the server has used so far (user + system, from `/proc/PID/stat`).
    fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // Fields after the command name (which is in parentheses and may hold spaces).
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
        // utime and stime are fields 14 and 15 of the line; clock ticks are 1/100 s on Linux.
        Some((ticks(11)? + ticks(12)?) / 100.0)
    }

    /// The server's peak resident set (VmHWM), in bytes.
    fn peak_rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }

    /// SIGTERM (graceful: flush and close), then wait.
    fn stop(mut self) -> Result<(), BoxError> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        let status = self.child.wait()?;
        if !status.success() {
            return Err(format!("tally serve exited with {status}").into());
        }
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Time allowed to the full reads of `page_hourly` (each returns every group), so that the
/// whole benchmark stays within 10 minutes on a 2-core machine; the table says how many ran.
const FULL_READ_BUDGET: Duration = Duration::from_secs(90);

/// The small COPYs before the last full read: how many, and rows in each.
const SMALL_COPIES: usize = 2000;
const SMALL_COPY_ROWS: usize = 50;
/// Full reads timed right after the small COPYs.
const SMALL_COPY_READS: usize = 20;

/// `page_hourly`'s defined columns, as the peers read them (not `users_sketch`).
const FULL_READ: &str =
    "SELECT hour, page, views, bytes, avg_latency, max_latency, users FROM page_hourly";

/// Runs the workload and prints the table.
pub async fn run(settings: Settings) -> Result<(), BoxError> {
    let csv_path = settings.data.join("events.csv");
    if !csv_path.exists() {
        eprintln!(
            "generating {} events into {} …",
            settings.rows,
            settings.data.display()
        );
        let batches = clickstream::generate(settings.rows, 100_000, crate::SEED);
        clickstream::write_files(&settings.data, &batches)?;
    }
    let csv = std::fs::read(&csv_path)?;
    let header_end = csv.iter().position(|&b| b == b'\n').ok_or("empty CSV")? + 1;
    let body = &csv[header_end..];
    let rows = body.iter().filter(|&&b| b == b'\n').count();
    let chunks = split_chunks(body, settings.chunk_rows);
    eprintln!(
        "{rows} rows, {} chunks of {}",
        chunks.len(),
        settings.chunk_rows
    );

    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let server = ServerProcess::start(&data)?;
    let client = server.wait_ready().await?;
    let mut tally = serde_json::Map::new();
    tally.insert("peer".into(), json!("tally"));
    tally.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));

    // 1: a Parquet file and binary COPY (out, then the same bytes in), each into a fresh table.
    let parquet = std::path::absolute(settings.data.join("events.parquet"))?;
    let mut load_other = serde_json::Map::new();
    for views in [false, true] {
        let key = if views { "parquet_views" } else { "parquet" };
        reset(&client, views).await?;
        eprintln!("COPY FROM '{}' ({key}) …", parquet.display());
        let sql = format!(
            "COPY events FROM '{}' (FORMAT parquet)",
            parquet.display().to_string().replace('\'', "''")
        );
        let started = Instant::now();
        client.simple_query(&sql).await?;
        let seconds = started.elapsed().as_secs_f64();
        check_rows(&client, rows).await?;
        load_other.insert(key.into(), load_figure(rows, seconds));
    }
    eprintln!("COPY TO STDOUT (FORMAT binary) …");
    let started = Instant::now();
    let binary = copy_out(&client, "COPY events TO STDOUT (FORMAT binary)").await?;
    load_other.insert(
        "binary_out".into(),
        load_figure(rows, started.elapsed().as_secs_f64()),
    );
    for views in [false, true] {
        let key = if views { "binary_views" } else { "binary" };
        reset(&client, views).await?;
        eprintln!(
            "COPY FROM STDIN (FORMAT binary), {} MiB ({key}) …",
            binary.len() >> 20
        );
        let started = Instant::now();
        copy_in_sql(&client, "COPY events FROM STDIN (FORMAT binary)", &binary).await?;
        let seconds = started.elapsed().as_secs_f64();
        check_rows(&client, rows).await?;
        load_other.insert(key.into(), load_figure(rows, seconds));
    }
    drop(binary);
    tally.insert("load_other".into(), Value::Object(load_other));

    // 2 and 3: CSV loads, one COPY and many small ones, each into a fresh table.
    let mut load_bulk = serde_json::Map::new();
    let mut load_chunks = serde_json::Map::new();
    for views in [false, true] {
        let key = if views { "views" } else { "no_views" };
        reset(&client, views).await?;
        eprintln!("COPY of {rows} rows ({key}) …");
        let started = Instant::now();
        copy_in(&client, &csv, true).await?;
        let seconds = started.elapsed().as_secs_f64();
        check_rows(&client, rows).await?;
        load_bulk.insert(key.into(), load_figure(rows, seconds));

        reset(&client, views).await?;
        eprintln!(
            "COPY in {} chunks from {} connections ({key}) …",
            chunks.len(),
            settings.workers
        );
        let (seconds, latencies) = copy_chunks(&server, &chunks, settings.workers).await?;
        check_rows(&client, rows).await?;
        let mut figure = load_figure(rows, seconds);
        figure["chunks"] = json!(chunks.len());
        figure["chunk_rows"] = json!(settings.chunk_rows);
        figure["workers"] = json!(settings.workers);
        figure["p50_ms"] = json!(percentile(&latencies, 0.5));
        figure["p99_ms"] = json!(percentile(&latencies, 0.99));
        load_chunks.insert(key.into(), figure);
    }
    tally.insert("load_bulk".into(), Value::Object(load_bulk));
    tally.insert("load_chunks".into(), Value::Object(load_chunks));
    if settings.loads_only {
        drop(client);
        server.stop()?;
        return report(&settings, rows, Value::Object(tally));
    }

    // 3: dashboard queries, prepared, over the extended protocol. They are steady-state reads:
    // first the compactor merges the views' delta parts from the loads (each view ends as one
    // segment); the read racing a burst of small COPYs is figure 7.
    let settled = settle_views(&client, VIEWS_SETTLE_BUDGET).await?;
    eprintln!("views settled {settled:.1} s after the loads");
    tally.insert("views_settle_seconds".into(), json!(settled));
    eprintln!("dashboard queries, {} runs each …", settings.runs);
    let pages: Vec<String> = (1..=20).map(|k| format!("/p/{k}")).collect();
    let days: Vec<chrono::NaiveDateTime> = (1..=7)
        .map(|d| {
            chrono::NaiveDate::from_ymd_opt(2026, 1, d)
                .expect("valid date")
                .and_hms_opt(0, 0, 0)
                .expect("valid time")
        })
        .collect();
    let mut queries = serde_json::Map::new();
    let by_page = "SELECT hour, views, users FROM page_hourly WHERE page = $1 ORDER BY hour";
    queries.insert(
        "page_hourly_by_page".into(),
        time_prepared(&client, by_page, settings.runs, None, |i| {
            vec![Box::new(pages[i % pages.len()].clone())]
        })
        .await?,
    );
    let by_day = "SELECT * FROM country_daily WHERE day = $1";
    queries.insert(
        "country_daily_by_day".into(),
        time_prepared(&client, by_day, settings.runs, None, |i| {
            vec![Box::new(days[i % days.len()])]
        })
        .await?,
    );
    // The full read twice: rows collected into a `Vec<Row>` (what `Client::query` does), and
    // streamed, each row dropped once counted (what a client rendering or forwarding rows
    // does). On two cores the client's work bounds both; the server's CPU per read is beside.
    let cpu_before = server.cpu_seconds();
    let mut full = time_prepared(
        &client,
        FULL_READ,
        settings.runs,
        Some(FULL_READ_BUDGET),
        |_| vec![],
    )
    .await?;
    if let (Some(before), Some(after)) = (cpu_before, server.cpu_seconds()) {
        let runs = full["runs"].as_f64().unwrap_or(1.0).max(1.0);
        full["server_cpu_ms"] = json!((after - before) * 1e3 / runs);
    }
    queries.insert("page_hourly_full".into(), full);
    queries.insert(
        "page_hourly_full_streamed".into(),
        time_streamed(&client, FULL_READ, settings.runs, FULL_READ_BUDGET).await?,
    );
    queries.insert(
        "select_1".into(),
        time_prepared(&client, "SELECT 1", settings.runs, None, |_| vec![]).await?,
    );
    let lookup =
        "SELECT views, users FROM country_daily WHERE day = $1 AND country = $2 AND device = $3";
    queries.insert(
        "view_point_lookup".into(),
        time_prepared(&client, lookup, settings.runs, None, |i| {
            vec![
                Box::new(days[i % days.len()]),
                Box::new("US".to_string()),
                Box::new("mobile".to_string()),
            ]
        })
        .await?,
    );
    tally.insert("queries".into(), Value::Object(queries));

    // 4: the view definitions computed over the raw table.
    eprintln!("ad-hoc view queries …");
    let mut adhoc = serde_json::Map::new();
    for (name, query) in clickstream::VIEWS {
        let mut times = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            client.simple_query(query).await?;
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
        adhoc.insert(
            name.into(),
            json!({"median_ms": percentile(&times, 0.5), "runs": 5, "runs_ms": times, "sql": query}),
        );
    }
    tally.insert("adhoc".into(), Value::Object(adhoc));

    // 6: HLL error for users per (day, country), by sketch union against exact counts.
    eprintln!("HLL error …");
    let hll_query = "SELECT r.users, e.exact FROM (SELECT day, country, \
        hll_cardinality(hll_union_agg(users_sketch)) AS users FROM country_daily GROUP BY 1, 2) r \
        JOIN (SELECT date_trunc('day', ts) AS day, country, count(DISTINCT user_id) AS exact \
        FROM events GROUP BY 1, 2) e ON r.day = e.day AND r.country = e.country";
    let mut errors: Vec<f64> = client
        .query(hll_query, &[])
        .await?
        .iter()
        .map(|row| {
            let (estimate, exact): (i64, i64) = (row.get(0), row.get(1));
            (estimate - exact).abs() as f64 / exact as f64
        })
        .collect();
    errors.sort_by(f64::total_cmp);
    tally.insert(
        "hll".into(),
        json!({
            "groups": errors.len(),
            "median_rel_err": percentile(&errors, 0.5),
            "p95_rel_err": percentile(&errors, 0.95),
            "max_rel_err": errors.last().copied().unwrap_or(0.0),
            "method": "sketch_union",
            "sketch": format!("DataSketches HLL lg_k {}", 15),
        }),
    );

    // 5: memory, then bytes on disk after the flush at shutdown, then restart time.
    let peak_rss = server.peak_rss();
    let view_bytes: i64 = client
        .query_one("SELECT CAST(sum(bytes) AS BIGINT) FROM tally_views", &[])
        .await?
        .get(0);
    drop(client);
    eprintln!("stopping (flush) and restarting …");
    server.stop()?;
    let bytes = dir_bytes(&data)?;
    let segment_bytes = dir_bytes(&data.join("segments"))?;
    eprintln!("data directory by part: {}", disk_breakdown(&data)?);
    let started = Instant::now();
    let server = ServerProcess::start(&data)?;
    let client = server.wait_ready().await?;
    check_rows(&client, rows).await?;
    let restart_s = started.elapsed().as_secs_f64();

    // 7: the full read of `page_hourly` right after many small COPYs, before the compactor has
    // merged their delta parts (each COPY leaves one per view).
    let small = split_chunks(body, SMALL_COPY_ROWS);
    let small = &small[..SMALL_COPIES.min(small.len())];
    eprintln!(
        "{} COPYs of {SMALL_COPY_ROWS} rows from {} connections, then full reads …",
        small.len(),
        settings.workers
    );
    let (small_seconds, _) = copy_chunks(&server, small, settings.workers).await?;
    let parts: i64 = client
        .query_one(
            "SELECT delta_parts FROM tally_views WHERE name = 'page_hourly'",
            &[],
        )
        .await?
        .get(0);
    let mut after_small =
        time_prepared(&client, FULL_READ, SMALL_COPY_READS, None, |_| vec![]).await?;
    after_small["copies"] = json!(small.len());
    after_small["copy_rows"] = json!(SMALL_COPY_ROWS);
    after_small["copies_seconds"] = json!(small_seconds);
    after_small["delta_parts_before_read"] = json!(parts);
    tally.insert("page_hourly_full_after_small_copies".into(), after_small);
    drop(client);
    server.stop()?;
    tally.insert(
        "disk".into(),
        json!({"bytes_views": bytes, "bytes_per_event_views": bytes as f64 / rows as f64,
               "what": "data directory after shutdown (Parquet segments, RocksDB with views)",
               "segment_bytes": segment_bytes, "view_state_bytes": view_bytes,
               "live_bytes_per_event": (segment_bytes as f64 + view_bytes as f64) / rows as f64,
               "live_what": "the table's Parquet segments plus the views' states and index \
                             entries (uncompressed), without RocksDB's not yet compacted garbage"}),
    );
    tally.insert(
        "memory".into(),
        json!({"peak_rss_bytes": peak_rss, "what": "tally serve VmHWM"}),
    );
    tally.insert("restart_s".into(), json!(restart_s));

    report(&settings, rows, Value::Object(tally))
}

/// Prints the table (with the peers' figures when given) and writes the JSON file.
fn report(settings: &Settings, rows: usize, tally: Value) -> Result<(), BoxError> {
    let peers = match &settings.peers {
        Some(path) => {
            let doc: Value = serde_json::from_slice(&std::fs::read(path)?)?;
            doc.get("peers").cloned().unwrap_or(Value::Null)
        }
        None => Value::Null,
    };
    print_table(rows, &tally, &peers);
    if let Some(path) = &settings.json {
        std::fs::write(
            path,
            serde_json::to_vec_pretty(
                &json!({"schema": "tally-clickstream/1", "rows": rows, "tally": tally, "peers": peers}),
            )?,
        )?;
    }
    Ok(())
}

/// Drops and recreates `events` (and the three views when `views`).
async fn reset(client: &Client, views: bool) -> Result<(), BoxError> {
    client
        .simple_query("DROP TABLE IF EXISTS events CASCADE")
        .await?;
    client
        .simple_query(&format!(
            "{} WITH (time_column = 'ts')",
            clickstream::EVENTS_DDL
        ))
        .await?;
    if views {
        for (name, query) in clickstream::VIEWS {
            client
                .simple_query(&format!("CREATE MATERIALIZED VIEW {name} AS {query}"))
                .await?;
        }
    }
    Ok(())
}

async fn check_rows(client: &Client, rows: usize) -> Result<(), BoxError> {
    let count: i64 = client
        .query_one("SELECT count(*) FROM events", &[])
        .await?
        .get(0);
    if count as usize != rows {
        return Err(format!("events holds {count} rows, expected {rows}").into());
    }
    Ok(())
}

/// One `COPY events FROM STDIN` of CSV `data`.
async fn copy_in(client: &Client, data: &[u8], header: bool) -> Result<u64, BoxError> {
    let sql = format!(
        "COPY events FROM STDIN WITH (FORMAT csv{})",
        if header { ", HEADER" } else { "" }
    );
    copy_in_sql(client, &sql, data).await
}

/// Runs the `COPY … FROM STDIN` statement `sql` with `data` sent in 1 MiB pieces.
async fn copy_in_sql(client: &Client, sql: &str, data: &[u8]) -> Result<u64, BoxError> {
    let sink = client.copy_in::<_, Bytes>(sql).await?;
    futures::pin_mut!(sink);
    for piece in data.chunks(1 << 20) {
        sink.send(Bytes::copy_from_slice(piece)).await?;
    }
    Ok(sink.finish().await?)
}

/// Runs the `COPY … TO STDOUT` statement `sql` and returns everything it sent.
async fn copy_out(client: &Client, sql: &str) -> Result<Vec<u8>, BoxError> {
    let stream = client.copy_out(sql).await?;
    futures::pin_mut!(stream);
    let mut out = Vec::new();
    while let Some(piece) = stream.next().await {
        out.extend_from_slice(&piece?);
    }
    Ok(out)
}

/// Splits CSV rows (no header) into chunks of `rows` rows.
fn split_chunks(body: &[u8], rows: usize) -> Vec<Bytes> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut count = 0;
    for (i, &b) in body.iter().enumerate() {
        if b == b'\n' {
            count += 1;
            if count == rows {
                chunks.push(Bytes::copy_from_slice(&body[start..=i]));
                start = i + 1;
                count = 0;
            }
        }
    }
    if start < body.len() {
        chunks.push(Bytes::copy_from_slice(&body[start..]));
    }
    chunks
}

/// COPYs the chunks from `workers` connections pulling from one queue; returns the total time
/// and each chunk's latency in ms.
async fn copy_chunks(
    server: &ServerProcess,
    chunks: &[Bytes],
    workers: usize,
) -> Result<(f64, Vec<f64>), BoxError> {
    let queue: std::collections::VecDeque<Bytes> = chunks.iter().cloned().collect();
    let queue = Arc::new(std::sync::Mutex::new(queue));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let client = server.connect().await?;
        let queue = Arc::clone(&queue);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let next = queue.lock().expect("queue").pop_front();
                let Some(chunk) = next else { break };
                let t = Instant::now();
                copy_in(&client, &chunk, false).await?;
                latencies.push(t.elapsed().as_secs_f64() * 1e3);
            }
            Ok::<_, BoxError>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    Ok((seconds, latencies))
}

fn load_figure(rows: usize, seconds: f64) -> Value {
    json!({"rows_per_s": rows as f64 / seconds, "seconds": seconds, "rows_loaded": rows,
           "rows_ok": true, "incremental": true})
}

type Params = Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>>;

/// `tally-bench query`: times `sql` with text `params` against the server at `url` and prints
/// p50 / p99 and the rows returned.
pub async fn time_query(
    url: &str,
    sql: &str,
    params: &[String],
    runs: usize,
) -> Result<(), BoxError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    let statement = client.prepare(sql).await?;
    let mut times = Vec::with_capacity(runs);
    let mut rows = 0;
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        rows = client
            .query_raw(&statement, params.iter().map(|p| p as &(dyn ToSql + Sync)))
            .await?
            .try_fold(0usize, |n, _| async move { Ok(n + 1) })
            .await?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{rows} rows; p50 {:.3} ms, p99 {:.3} ms over {} runs",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times.len()
    );
    Ok(())
}

/// How long the dashboard queries wait at most for the views' compaction to settle.
const VIEWS_SETTLE_BUDGET: Duration = Duration::from_secs(60);

/// Waits until no view has delta parts and each is one segment (or `budget` runs out);
/// seconds waited.
async fn settle_views(client: &Client, budget: Duration) -> Result<f64, BoxError> {
    let begun = Instant::now();
    loop {
        let row = client
            .query_one(
                "SELECT CAST(coalesce(sum(delta_parts), 0) AS BIGINT), \
                 CAST(coalesce(max(segments), 0) AS BIGINT) FROM tally_views",
                &[],
            )
            .await?;
        let (parts, segments): (i64, i64) = (row.get(0), row.get(1));
        if (parts == 0 && segments <= 1) || begun.elapsed() > budget {
            return Ok(begun.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs a prepared statement `runs` times, or fewer when `budget` runs out first (at least
/// 10 runs); p50/p99 latency in ms and the number of runs made.
async fn time_prepared(
    client: &Client,
    sql: &str,
    runs: usize,
    budget: Option<Duration>,
    params: impl Fn(usize) -> Params,
) -> Result<Value, BoxError> {
    let statement = client.prepare(sql).await?;
    let mut times = Vec::with_capacity(runs);
    let (mut min_rows, mut max_rows) = (usize::MAX, 0);
    let begun = Instant::now();
    for i in 0..runs {
        if i >= 10 && budget.is_some_and(|b| begun.elapsed() > b) {
            eprintln!("  {sql}: stopped after {i} runs (time budget)");
            break;
        }
        let values = params(i);
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = values
            .iter()
            .map(|v| v.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        let started = Instant::now();
        let rows = client.query(&statement, &refs).await?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
        min_rows = min_rows.min(rows.len());
        max_rows = max_rows.max(rows.len());
    }
    let runs = times.len();
    let mean = times.iter().sum::<f64>() / runs.max(1) as f64;
    times.sort_by(f64::total_cmp);
    Ok(
        json!({"p50_ms": percentile(&times, 0.5), "p99_ms": percentile(&times, 0.99),
              "mean_ms": mean, "runs": runs, "prepared": true, "sql": sql,
              "result_rows_min": min_rows, "result_rows_max": max_rows}),
    )
}

/// Runs a prepared statement without parameters `runs` times (or until `budget` runs out,
/// at least 10 runs), consuming its rows as a stream: each row is dropped once counted, so
/// the client never holds the result. p50/p99 latency in ms and the number of runs.
async fn time_streamed(
    client: &Client,
    sql: &str,
    runs: usize,
    budget: Duration,
) -> Result<Value, BoxError> {
    let statement = client.prepare(sql).await?;
    let mut times = Vec::with_capacity(runs);
    let mut rows = 0;
    let begun = Instant::now();
    for i in 0..runs {
        if i >= 10 && begun.elapsed() > budget {
            eprintln!("  {sql} (streamed): stopped after {i} runs (time budget)");
            break;
        }
        let started = Instant::now();
        rows = client
            .query_raw(&statement, std::iter::empty::<&(dyn ToSql + Sync)>())
            .await?
            .try_fold(0usize, |n, row| async move {
                Ok(n + usize::from(!row.is_empty()))
            })
            .await?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(
        json!({"p50_ms": percentile(&times, 0.5), "p99_ms": percentile(&times, 0.99),
              "runs": times.len(), "prepared": true, "streamed": true, "sql": sql,
              "result_rows_min": rows, "result_rows_max": rows}),
    )
}

/// The `q` quantile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let mut values = sorted.to_vec();
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * q).round() as usize]
}

fn dir_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// The bytes of a data directory by top-level entry, with RocksDB's files by kind (SSTs,
/// write-ahead log, the rest): where the bytes per event go.
fn disk_breakdown(data: &Path) -> std::io::Result<String> {
    let mut parts = Vec::new();
    for entry in std::fs::read_dir(data)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "rocksdb" {
            let (mut sst, mut wal, mut other) = (0u64, 0u64, 0u64);
            for file in std::fs::read_dir(entry.path())? {
                let file = file?;
                let len = file.metadata()?.len();
                let file_name = file.file_name().to_string_lossy().into_owned();
                if file_name.ends_with(".sst") {
                    sst += len;
                } else if file_name.ends_with(".log") {
                    wal += len;
                } else {
                    other += len;
                }
            }
            parts.push(format!(
                "rocksdb SSTs {:.1} MB, WAL {:.1} MB, other {:.1} MB",
                sst as f64 / 1e6,
                wal as f64 / 1e6,
                other as f64 / 1e6
            ));
        } else {
            let bytes = if entry.metadata()?.is_dir() {
                dir_bytes(&entry.path())?
            } else {
                entry.metadata()?.len()
            };
            parts.push(format!("{name} {:.1} MB", bytes as f64 / 1e6));
        }
    }
    parts.sort();
    Ok(parts.join(", "))
}

/// Prints one row per figure, Tally first, then each peer present in `peers`.
fn print_table(rows: usize, tally: &Value, peers: &Value) {
    let mut columns = vec![("tally", tally)];
    if let Value::Object(map) = peers {
        for name in ["duckdb", "chdb", "postgres"] {
            if let Some(p) = map.get(name) {
                columns.push((name, p));
            }
        }
    }
    let header: Vec<&str> = columns.iter().map(|c| c.0).collect();
    println!("| figure (N = {rows}) | {} |", header.join(" | "));
    println!("|---|{}", "---|".repeat(columns.len()));
    let rate = |v: &Value| {
        v.get("rows_per_s")
            .and_then(Value::as_f64)
            .map(|r| format!("{r:.0}"))
    };
    let ms = |v: &Value| match (
        v.get("p50_ms").and_then(Value::as_f64),
        v.get("p99_ms").and_then(Value::as_f64),
    ) {
        (Some(a), Some(b)) => Some(match v.get("runs").and_then(Value::as_u64) {
            Some(runs) if runs < 1000 => format!("{a:.2} / {b:.2} ({runs} runs)"),
            _ => format!("{a:.2} / {b:.2}"),
        }),
        _ => None,
    };
    type Getter<'a> = Box<dyn Fn(&Value) -> Option<String> + 'a>;
    let figures: Vec<(&str, Getter)> = vec![
        (
            "COPY csv, one COPY, no views (rows/s)",
            Box::new(|p| rate(&p["load_bulk"]["no_views"])),
        ),
        (
            "COPY csv, one COPY, 3 views (rows/s)",
            Box::new(|p| rate(&p["load_bulk"]["views"])),
        ),
        (
            "COPY binary, one COPY, no views (rows/s)",
            Box::new(|p| rate(&p["load_other"]["binary"])),
        ),
        (
            "COPY binary, one COPY, 3 views (rows/s)",
            Box::new(|p| rate(&p["load_other"]["binary_views"])),
        ),
        (
            "COPY events TO STDOUT (FORMAT binary) (rows/s)",
            Box::new(|p| rate(&p["load_other"]["binary_out"])),
        ),
        (
            "COPY of events.parquet, no views (rows/s)",
            // The peers report it as `load_parquet`.
            Box::new(|p| {
                rate(&p["load_other"]["parquet"]).or_else(|| rate(&p["load_parquet"]["no_views"]))
            }),
        ),
        (
            "COPY of events.parquet, 3 views (rows/s)",
            Box::new(|p| rate(&p["load_other"]["parquet_views"])),
        ),
        (
            "COPY 10k-row chunks × 4 connections, no views (rows/s)",
            Box::new(|p| rate(&p["load_chunks"]["no_views"])),
        ),
        (
            "  chunk commit p50 / p99 (ms)",
            Box::new(|p| ms(&p["load_chunks"]["no_views"])),
        ),
        (
            "COPY 10k-row chunks × 4 connections, 3 views (rows/s)",
            Box::new(|p| rate(&p["load_chunks"]["views"])),
        ),
        (
            "  chunk commit p50 / p99 (ms)",
            Box::new(|p| ms(&p["load_chunks"]["views"])),
        ),
        (
            "views settled after the loads, before the queries (s)",
            Box::new(|p| {
                p["views_settle_seconds"]
                    .as_f64()
                    .map(|v| format!("{v:.1}"))
            }),
        ),
        (
            "`page_hourly WHERE page = $1` p50 / p99 (ms)",
            Box::new(|p| ms(&p["queries"]["page_hourly_by_page"])),
        ),
        (
            "`country_daily WHERE day = $1` p50 / p99 (ms)",
            Box::new(|p| ms(&p["queries"]["country_daily_by_day"])),
        ),
        (
            "full read of `page_hourly` p50 / p99 (ms)",
            Box::new(|p| ms(&p["queries"]["page_hourly_full"])),
        ),
        (
            "  the same, rows streamed (not collected) p50 / p99 (ms)",
            Box::new(|p| ms(&p["queries"]["page_hourly_full_streamed"])),
        ),
        (
            "  server CPU per full read (ms)",
            Box::new(|p| {
                p["queries"]["page_hourly_full"]["server_cpu_ms"]
                    .as_f64()
                    .map(|v| format!("{v:.1}"))
            }),
        ),
        (
            "  right after many small COPYs p50 / p99 (ms)",
            Box::new(|p| {
                let f = &p["page_hourly_full_after_small_copies"];
                ms(f).map(|m| {
                    format!(
                        "{m} (after {} COPYs of {} rows; {} delta parts)",
                        f["copies"], f["copy_rows"], f["delta_parts_before_read"]
                    )
                })
            }),
        ),
        (
            "`SELECT 1` p50 / p99 (ms)",
            Box::new(|p| ms(&p["queries"]["select_1"])),
        ),
        (
            "one-group view lookup p50 / p99 (ms)",
            Box::new(|p| ms(&p["queries"]["view_point_lookup"])),
        ),
        (
            "ad hoc `page_hourly`, median of 5 (ms)",
            Box::new(|p| {
                p["adhoc"]["page_hourly"]["median_ms"]
                    .as_f64()
                    .map(|v| format!("{v:.0}"))
            }),
        ),
        (
            "ad hoc `country_daily`, median of 5 (ms)",
            Box::new(|p| {
                p["adhoc"]["country_daily"]["median_ms"]
                    .as_f64()
                    .map(|v| format!("{v:.0}"))
            }),
        ),
        (
            "ad hoc `errors_minute`, median of 5 (ms)",
            Box::new(|p| {
                p["adhoc"]["errors_minute"]["median_ms"]
                    .as_f64()
                    .map(|v| format!("{v:.0}"))
            }),
        ),
        (
            "peak RSS (MiB)",
            Box::new(|p| {
                p["memory"]["peak_rss_bytes"]
                    .as_f64()
                    .map(|v| format!("{:.0}", v / 1048576.0))
            }),
        ),
        (
            "bytes on disk per event, with views (data directory)",
            Box::new(|p| {
                p["disk"]["bytes_per_event_views"]
                    .as_f64()
                    .map(|v| format!("{v:.1}"))
            }),
        ),
        (
            "  live: segments + view states per event",
            Box::new(|p| {
                p["disk"]["live_bytes_per_event"]
                    .as_f64()
                    .map(|v| format!("{v:.1}"))
            }),
        ),
        (
            "restart time (s)",
            Box::new(|p| p["restart_s"].as_f64().map(|v| format!("{v:.2}"))),
        ),
        (
            "HLL users per (day, country): median / p95 / max error",
            Box::new(|p| {
                let h = &p["hll"];
                Some(format!(
                    "{:.2}% / {:.2}% / {:.2}%{}",
                    h["median_rel_err"].as_f64()? * 100.0,
                    h["p95_rel_err"].as_f64()? * 100.0,
                    h["max_rel_err"].as_f64()? * 100.0,
                    if h["method"] == "raw_approx" {
                        " (raw rows)"
                    } else {
                        ""
                    }
                ))
            }),
        ),
    ];
    for (label, get) in figures {
        let cells: Vec<String> = columns
            .iter()
            .map(|(_, p)| get(p).unwrap_or_else(|| "–".into()))
            .collect();
        println!("| {label} | {} |", cells.join(" | "));
    }
}
