//! Prometheus metrics: `tally serve --metrics ADDR` answers `GET /metrics` on `ADDR` with the
//! Prometheus text format (version 0.0.4).
//!
//! [`ServerMetrics`] holds what the server counts itself (sessions, statements by kind and
//! outcome with their latency, COPY rows, refused connections) in a `prometheus-client`
//! registry, and renders with it, at every scrape, the engine's own figures
//! ([`Database::metrics`]) and the process's resident memory. [`Endpoint`] is the tiny HTTP
//! server: one request per connection, `GET` or `HEAD /metrics`, nothing else.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgwire::api::results::Response;
use pgwire::error::PgWireResult;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet, prometheus_text,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tally_engine::Database;
use tally_engine::metrics::Histogram as EngineHistogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::pg::statement::Statement;

/// Upper bounds, in seconds, of the statement latency buckets.
const QUERY_SECONDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Scrapes answered at once; connections beyond them are closed at once.
const SCRAPES_AT_ONCE: usize = 8;

/// How long a scraper may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Most bytes of request head read.
const MAX_REQUEST_HEAD: usize = 8 * 1024;

type Labels = [(&'static str, &'static str); 2];
type Label = [(&'static str, &'static str); 1];

/// The server's metrics, and the registry that renders them with the engine's.
pub struct ServerMetrics {
    registry: Registry,
    sessions_active: Gauge,
    sessions: Counter,
    refused: Counter,
    queries: Family<Labels, Counter>,
    query_seconds: Family<Label, Histogram>,
    copy_rows: Family<Label, Counter>,
}

impl std::fmt::Debug for ServerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerMetrics").finish_non_exhaustive()
    }
}

fn query_histogram() -> Histogram {
    Histogram::new(QUERY_SECONDS)
}

impl ServerMetrics {
    /// Metrics of a server over `db`; a scrape also renders `db`'s engine metrics.
    pub fn new(db: Database) -> ServerMetrics {
        let mut registry = Registry::default();
        let sessions_active = Gauge::default();
        registry.register(
            "tally_sessions_active",
            "Client connections being served now",
            sessions_active.clone(),
        );
        let sessions = Counter::default();
        registry.register(
            "tally_sessions",
            "Client connections accepted",
            sessions.clone(),
        );
        let refused = Counter::default();
        registry.register(
            "tally_connections_refused",
            "Connections refused because max_connections sessions were open",
            refused.clone(),
        );
        let queries = Family::<Labels, Counter>::default();
        registry.register(
            "tally_queries",
            "Statements run, by kind (select, insert, ddl, copy_from, copy_to, transaction, other) and outcome (ok, error)",
            queries.clone(),
        );
        let query_seconds =
            Family::<Label, Histogram>::new_with_constructor(query_histogram as fn() -> Histogram);
        registry.register(
            "tally_query_duration_seconds",
            "Time to run a statement, by kind (a COPY FROM STDIN until its rows are committed)",
            query_seconds.clone(),
        );
        let copy_rows = Family::<Label, Counter>::default();
        registry.register(
            "tally_copy_rows",
            "Rows of successful COPY statements, by direction (in: FROM, out: TO)",
            copy_rows.clone(),
        );
        registry.register_collector(Box::new(EngineCollector { db }));
        registry.register_collector(Box::new(ProcessCollector));
        ServerMetrics {
            registry,
            sessions_active,
            sessions,
            refused,
            queries,
            query_seconds,
            copy_rows,
        }
    }

    /// Every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_text::encode(&mut text, &self.registry) {
            // Only a `fmt::Error` from writing to a String, which does not fail.
            tracing::warn!("rendering metrics failed: {e}");
        }
        text
    }

    /// Counts a connection being served until the returned guard is dropped.
    pub fn session(self: &Arc<Self>) -> SessionGuard {
        self.sessions.inc();
        self.sessions_active.inc();
        SessionGuard(Arc::clone(self))
    }

    /// Counts a connection refused past `max_connections`.
    pub fn connection_refused(&self) {
        self.refused.inc();
    }

    /// Starts timing `statement`; [`QueryTimer::finish`] records it.
    pub fn start_query(&self, statement: &Statement) -> QueryTimer<'_> {
        QueryTimer {
            metrics: self,
            kind: query_kind(statement),
            started: Instant::now(),
        }
    }

    /// Records a `COPY … FROM STDIN` that started at `started` and ended with `rows` stored (or
    /// held in a transaction block), or failed (`None`).
    pub fn copy_in_finished(&self, started: Instant, rows: Option<u64>) {
        self.record("copy_from", started, rows.is_some());
        if let Some(rows) = rows {
            self.copy_rows(Direction::In, rows);
        }
    }

    /// Counts rows of a successful COPY.
    pub fn copy_rows(&self, direction: Direction, rows: u64) {
        let label = match direction {
            Direction::In => "in",
            Direction::Out => "out",
        };
        self.copy_rows
            .get_or_create(&[("direction", label)])
            .inc_by(rows);
    }

    fn record(&self, kind: &'static str, started: Instant, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.queries
            .get_or_create(&[("kind", kind), ("outcome", outcome)])
            .inc();
        self.query_seconds
            .get_or_create(&[("kind", kind)])
            .observe(started.elapsed().as_secs_f64());
    }
}

/// Which way COPY rows go.
#[derive(Debug, Clone, Copy)]
pub enum Direction {
    /// `COPY … FROM`: rows into a table.
    In,
    /// `COPY … TO`: rows out of a query.
    Out,
}

/// Keeps a connection counted in `tally_sessions_active`.
pub struct SessionGuard(Arc<ServerMetrics>);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.sessions_active.dec();
    }
}

/// A statement being timed (see [`ServerMetrics::start_query`]).
pub struct QueryTimer<'a> {
    metrics: &'a ServerMetrics,
    kind: &'static str,
    started: Instant,
}

impl QueryTimer<'_> {
    /// Records the statement's outcome and latency and hands its result back. A COPY FROM
    /// STDIN that starts is recorded when it ends ([`ServerMetrics::copy_in_finished`]).
    pub fn finish(self, result: PgWireResult<Response>) -> PgWireResult<Response> {
        if !matches!(result, Ok(Response::CopyIn(_))) {
            self.metrics.record(self.kind, self.started, result.is_ok());
        }
        result
    }
}

/// The `kind` label of a statement.
fn query_kind(statement: &Statement) -> &'static str {
    match statement {
        Statement::Engine(sql) => {
            let first = sql
                .trim_start_matches(|c: char| c.is_whitespace() || c == '(')
                .split(|c: char| !c.is_ascii_alphabetic())
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            match first.as_str() {
                "select" | "with" | "values" | "table" | "explain" => "select",
                "insert" => "insert",
                "create" | "drop" => "ddl",
                _ => "other",
            }
        }
        Statement::CopyIn(_) | Statement::CopyFromParquet { .. } => "copy_from",
        Statement::CopyOut(_) | Statement::CopyToParquet { .. } => "copy_to",
        Statement::Subscribe(_) => "subscribe",
        Statement::Begin(_)
        | Statement::Commit
        | Statement::Rollback
        | Statement::Savepoint(_)
        | Statement::Release(_)
        | Statement::RollbackTo(_) => "transaction",
        Statement::Index { .. } => "ddl",
        Statement::Set { .. } | Statement::ResetAll | Statement::Show(_) | Statement::Noop(_) => {
            "other"
        }
    }
}

/// Renders [`Database::metrics`] at each scrape.
#[derive(Clone)]
struct EngineCollector {
    db: Database,
}

impl std::fmt::Debug for EngineCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineCollector").finish_non_exhaustive()
    }
}

/// Writes one unlabelled counter.
fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> std::fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// Writes one unlabelled gauge.
fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> std::fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// Writes an engine histogram (its buckets are per bucket; the encoder accumulates them).
fn histogram(mut encoder: MetricEncoder, histogram: &EngineHistogram) -> std::fmt::Result {
    let buckets: Vec<(f64, u64)> = histogram
        .bounds
        .iter()
        .copied()
        .zip(histogram.counts.iter().copied())
        .collect();
    encoder.encode_histogram::<NoLabelSet>(histogram.sum_seconds, histogram.count(), &buckets, None)
}

impl Collector for EngineCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let m = self.db.metrics();
        let e = &mut encoder;
        let mut commits = e.encode_descriptor(
            "tally_commits",
            "Requests committed by the commit thread, by kind (append: rows and transaction commits; catalog: CREATE/DROP; flush: segment registrations; backfill: view backfill chunks; compaction: view state segments swapped in).",
            None,
            MetricType::Counter,
        )?;
        for (kind, value) in [
            ("append", m.commits.appends),
            ("catalog", m.commits.catalog),
            ("flush", m.commits.flushes),
            ("backfill", m.commits.backfills),
            ("compaction", m.commits.compactions),
        ] {
            let labels = [("kind", kind)];
            ConstCounter::new(value).encode(commits.encode_family(&labels)?)?;
        }
        counter(
            e,
            "tally_commit_failures",
            "Commit requests that failed (refused, or their RocksDB write failed).",
            m.commit_failures,
        )?;
        counter(
            e,
            "tally_commit_groups",
            "Commit groups written: one RocksDB write and at most one WAL sync each.",
            m.commit_groups,
        )?;
        histogram(
            e.encode_descriptor(
                "tally_commit_duration_seconds",
                "Time from a commit request to its durable, visible reply.",
                None,
                MetricType::Histogram,
            )?,
            &m.commit_latency,
        )?;
        counter(
            e,
            "tally_ingested_rows",
            "Rows committed by INSERT, COPY and the library's ingest.",
            m.rows_ingested,
        )?;
        counter(
            e,
            "tally_ingested_bytes",
            "Bytes of those rows as committed (Arrow IPC in the hot tier, Parquet of bulk loads).",
            m.bytes_ingested,
        )?;
        counter(
            e,
            "tally_flushes",
            "Tables flushed from the hot tier to Parquet.",
            m.flushes,
        )?;
        counter(
            e,
            "tally_flushed_rows",
            "Rows flushed to Parquet.",
            m.flushed_rows,
        )?;
        counter(
            e,
            "tally_flushed_bytes",
            "Bytes of Parquet written by flushes.",
            m.flushed_bytes,
        )?;
        counter(
            e,
            "tally_flush_failures",
            "Flushes of a table that failed (retried later).",
            m.flush_failures,
        )?;
        gauge(e, "tally_tables", "Tables.", m.tables)?;
        gauge(e, "tally_views", "Materialized views.", m.views)?;
        gauge(
            e,
            "tally_views_backfilling",
            "Materialized views still backfilling (not yet readable).",
            m.views_backfilling,
        )?;
        gauge(
            e,
            "tally_backfill_pending_rows",
            "Rows running view backfills have yet to aggregate.",
            m.backfill_rows_pending,
        )?;
        counter(
            e,
            "tally_backfilled_rows",
            "Rows aggregated by view backfills.",
            m.backfilled_rows,
        )?;
        gauge(
            e,
            "tally_hot_rows",
            "Rows in the hot tier, not yet flushed to Parquet.",
            m.hot_rows,
        )?;
        gauge(
            e,
            "tally_hot_bytes",
            "Bytes of Arrow IPC in the hot tier.",
            m.hot_bytes,
        )?;
        gauge(e, "tally_segments", "Parquet segments.", m.segments)?;
        gauge(
            e,
            "tally_segment_bytes",
            "Bytes of Parquet segments.",
            m.segment_bytes,
        )?;
        if let Some(r) = m.rocksdb {
            gauge(
                e,
                "tally_rocksdb_memtable_bytes",
                "RocksDB memtables, active and immutable, of all column families (rocksdb.cur-size-all-mem-tables).",
                r.memtable_bytes,
            )?;
            gauge(
                e,
                "tally_rocksdb_pending_compaction_bytes",
                "Bytes RocksDB estimates compactions must rewrite (rocksdb.estimate-pending-compaction-bytes).",
                r.pending_compaction_bytes,
            )?;
            gauge(
                e,
                "tally_rocksdb_running_compactions",
                "RocksDB compactions running now.",
                r.running_compactions,
            )?;
            gauge(
                e,
                "tally_rocksdb_running_flushes",
                "RocksDB memtable flushes running now.",
                r.running_flushes,
            )?;
            gauge(
                e,
                "tally_rocksdb_live_sst_bytes",
                "Bytes of RocksDB's live SST files.",
                r.live_sst_bytes,
            )?;
            gauge(
                e,
                "tally_rocksdb_write_stopped",
                "1 while RocksDB stops writes (a write stall), else 0.",
                r.write_stopped,
            )?;
            counter(
                e,
                "tally_rocksdb_compaction_read_bytes",
                "Bytes read by RocksDB compactions.",
                r.compaction_read_bytes,
            )?;
            counter(
                e,
                "tally_rocksdb_compaction_written_bytes",
                "Bytes written by RocksDB compactions.",
                r.compaction_write_bytes,
            )?;
            counter(
                e,
                "tally_rocksdb_flush_written_bytes",
                "Bytes written by RocksDB memtable flushes.",
                r.flush_write_bytes,
            )?;
            let stall = ConstCounter::new(r.stall_micros as f64 / 1e6);
            stall.encode(e.encode_descriptor(
                "tally_rocksdb_stall_seconds",
                "Time RocksDB delayed or stopped writes.",
                None,
                stall.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

/// Renders the process's resident memory and Tally's version at each scrape.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let version = [("version", env!("CARGO_PKG_VERSION"))];
        let mut info =
            encoder.encode_descriptor("tally_build", "Tally's version.", None, MetricType::Info)?;
        info.encode_info(&version)?;
        if let Some(rss) = resident_bytes() {
            gauge(
                &mut encoder,
                "tally_process_resident_memory_bytes",
                "Resident memory of the server process (VmRSS).",
                rss,
            )?;
        }
        Ok(())
    }
}

/// The process's resident set size, from `/proc/self/status` (`None` where there is none).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The metrics endpoint: a bound listener that answers `GET /metrics`.
pub struct Endpoint {
    listener: TcpListener,
    metrics: Arc<ServerMetrics>,
}

impl Endpoint {
    /// Binds `addr` for [`Endpoint::new`]; failing to is an error that names the address.
    pub async fn bind_listener(addr: &str) -> Result<TcpListener, String> {
        TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))
    }

    /// An endpoint answering on `listener` with `metrics`.
    pub fn new(listener: TcpListener, metrics: Arc<ServerMetrics>) -> Endpoint {
        Endpoint { listener, metrics }
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Answers scrapes until the task running it is dropped or aborted.
    pub async fn serve(self) {
        let mut scrapes = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((socket, _)) if scrapes.len() >= SCRAPES_AT_ONCE => drop(socket),
                    Ok((socket, peer)) => {
                        let metrics = Arc::clone(&self.metrics);
                        scrapes.spawn(async move {
                            if let Err(e) = answer(socket, &metrics).await {
                                tracing::debug!("metrics request from {peer}: {e}");
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!("metrics endpoint: accept failed: {e}");
                        // Out of file descriptors, say: do not spin.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = scrapes.join_next(), if !scrapes.is_empty() => {}
            }
        }
    }
}

/// Reads one HTTP request head and answers it; the connection is then closed.
async fn answer(mut socket: TcpStream, metrics: &ServerMetrics) -> std::io::Result<()> {
    let head = match tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut socket)).await {
        Ok(head) => head?,
        Err(_) => return Ok(()),
    };
    let response = respond(&head, metrics);
    socket.write_all(&response).await?;
    socket.shutdown().await
}

/// Reads until the end of the request head (an empty line), at most [`MAX_REQUEST_HEAD`] bytes.
async fn read_head(socket: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while head.len() < MAX_REQUEST_HEAD && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    Ok(head)
}

/// The HTTP response to a request head: the metrics for `GET /metrics`, headers only for
/// `HEAD`, else an error status.
fn respond(head: &[u8], metrics: &ServerMetrics) -> Vec<u8> {
    let request_line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let request_line = String::from_utf8_lossy(request_line);
    let mut parts = request_line.split_whitespace();
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let Some((method, target, _)) = method
        .zip(target)
        .zip(version.filter(|v| v.starts_with("HTTP/1.")))
        .map(|((m, t), v)| (m, t, v))
    else {
        return http(
            "400 Bad Request",
            "text/plain",
            "expected an HTTP/1 request\n",
            true,
        );
    };
    let path = target.split('?').next().unwrap_or_default();
    let with_body = method != "HEAD";
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => http(
            "200 OK",
            prometheus_text::CONTENT_TYPE,
            &metrics.render(),
            with_body,
        ),
        ("GET" | "HEAD", _) => http(
            "404 Not Found",
            "text/plain",
            "Tally serves its metrics at /metrics\n",
            with_body,
        ),
        _ => http(
            "405 Method Not Allowed\r\nAllow: GET, HEAD",
            "text/plain",
            "only GET and HEAD\n",
            true,
        ),
    }
}

fn http(status: &str, content_type: &str, body: &str, with_body: bool) -> Vec<u8> {
    let mut response = String::with_capacity(body.len() + 160);
    let _ = write!(
        response,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    if with_body {
        response.push_str(body);
    }
    response.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(sql: &str) -> Statement {
        crate::pg::statement::classify(sql).expect("valid statement")
    }

    #[test]
    fn statements_get_their_kind() {
        for (sql, kind) in [
            ("SELECT 1", "select"),
            ("  with x as (select 1) select * from x", "select"),
            ("(SELECT 1)", "select"),
            ("INSERT INTO t VALUES (1)", "insert"),
            ("CREATE TABLE t (a BIGINT)", "ddl"),
            ("DROP TABLE t", "ddl"),
            ("COPY t FROM STDIN", "copy_from"),
            ("COPY t TO STDOUT", "copy_to"),
            ("BEGIN", "transaction"),
            ("COMMIT", "transaction"),
            ("SET application_name = 'x'", "other"),
            ("SHOW TimeZone", "other"),
        ] {
            assert_eq!(query_kind(&statement(sql)), kind, "{sql}");
        }
    }

    #[test]
    fn resident_memory_is_read_from_proc() {
        if std::path::Path::new("/proc/self/status").exists() {
            let rss = resident_bytes().expect("VmRSS in /proc/self/status");
            assert!(rss > 1024 * 1024, "{rss}");
        }
    }

    fn http_text(request: &str, metrics: &ServerMetrics) -> String {
        String::from_utf8(respond(request.as_bytes(), metrics)).expect("UTF-8")
    }

    #[tokio::test]
    async fn the_endpoint_answers_metrics_and_refuses_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path(), tally_engine::Options::default()).unwrap();
        let metrics = Arc::new(ServerMetrics::new(db.clone()));
        let ok = http_text("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &metrics);
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("text/plain; version=0.0.4"), "{ok}");
        assert!(ok.contains("\r\n\r\n# HELP "), "{ok}");
        let head = http_text("HEAD /metrics?x=1 HTTP/1.0\r\n\r\n", &metrics);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"));
        let other = http_text("GET / HTTP/1.1\r\n\r\n", &metrics);
        assert!(other.starts_with("HTTP/1.1 404 "), "{other}");
        let post = http_text("POST /metrics HTTP/1.1\r\n\r\n", &metrics);
        assert!(post.starts_with("HTTP/1.1 405 ") && post.contains("Allow: GET, HEAD"));
        let garbage = http_text("\u{16}\u{3}\u{1}garbage", &metrics);
        assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");
        drop(metrics);
        db.close().unwrap();
    }

    #[tokio::test]
    async fn a_render_names_every_series_once_with_its_type() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path(), tally_engine::Options::default()).unwrap();
        let metrics = Arc::new(ServerMetrics::new(db.clone()));
        let _session = metrics.session();
        metrics
            .start_query(&statement("SELECT 1"))
            .finish(Ok(Response::EmptyQuery))
            .ok();
        metrics.copy_in_finished(Instant::now(), Some(7));
        let text = metrics.render();
        for series in [
            "tally_sessions_active 1",
            "tally_sessions_total 1",
            "tally_queries_total{kind=\"select\",outcome=\"ok\"} 1",
            "tally_queries_total{kind=\"copy_from\",outcome=\"ok\"} 1",
            "tally_copy_rows_total{direction=\"in\"} 7",
            "tally_query_duration_seconds_bucket{kind=\"select\",le=\"+Inf\"} 1",
            "tally_commits_total{kind=\"catalog\"} 0",
            "tally_commit_duration_seconds_bucket{le=\"+Inf\"} 0",
            "tally_commit_duration_seconds_count 0",
            "tally_tables 0",
            "tally_build_info{version=",
            "tally_rocksdb_memtable_bytes ",
            "tally_rocksdb_stall_seconds_total 0",
            "tally_process_resident_memory_bytes ",
        ] {
            assert!(text.contains(series), "{series} missing from:\n{text}");
        }
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        let mut names: Vec<&str> = types
            .iter()
            .map(|l| l.split_whitespace().nth(2).unwrap())
            .collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "a series is declared twice:\n{text}");
        drop(metrics);
        db.close().unwrap();
    }
}
