//! `tally serve --metrics ADDR`: after COPYs, INSERTs, queries and a failed statement, `GET
//! /metrics` returns Prometheus text that a parser reads line by line, with every documented
//! series, and counters that count what the test did. The endpoint goes away with the server,
//! and an address that cannot be bound stops the start with a message naming it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use prometheus_parse::{LineInfo, Scrape, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::Tally;
use crate::workload::{self, rows_of};

/// Flush after a few thousand rows, so a flush happens during the test.
const CONFIG: &str = "[storage]\nflush_rows = 2000\nflush_age_seconds = 1\n";

/// Every series the endpoint promises (docs/server.md, "Metrics"), as named in the text.
const SERIES: &[&str] = &[
    "tally_build_info",
    "tally_sessions_active",
    "tally_sessions_total",
    "tally_connections_refused_total",
    "tally_queries_total",
    "tally_query_duration_seconds_bucket",
    "tally_query_duration_seconds_sum",
    "tally_query_duration_seconds_count",
    "tally_copy_rows_total",
    "tally_commits_total",
    "tally_commit_failures_total",
    "tally_commit_groups_total",
    "tally_commit_duration_seconds_bucket",
    "tally_commit_duration_seconds_sum",
    "tally_commit_duration_seconds_count",
    "tally_ingested_rows_total",
    "tally_ingested_bytes_total",
    "tally_flushes_total",
    "tally_flushed_rows_total",
    "tally_flushed_bytes_total",
    "tally_flush_failures_total",
    "tally_tables",
    "tally_views",
    "tally_views_backfilling",
    "tally_backfill_pending_rows",
    "tally_backfilled_rows_total",
    "tally_hot_rows",
    "tally_hot_bytes",
    "tally_segments",
    "tally_segment_bytes",
    "tally_rocksdb_memtable_bytes",
    "tally_rocksdb_pending_compaction_bytes",
    "tally_rocksdb_running_compactions",
    "tally_rocksdb_running_flushes",
    "tally_rocksdb_live_sst_bytes",
    "tally_rocksdb_write_stopped",
    "tally_rocksdb_compaction_read_bytes_total",
    "tally_rocksdb_compaction_written_bytes_total",
    "tally_rocksdb_flush_written_bytes_total",
    "tally_rocksdb_stall_seconds_total",
    "tally_process_resident_memory_bytes",
];

/// A sample's labels and value.
type Sample = (HashMap<String, String>, f64);

/// One scrape: the samples by name.
struct Metrics {
    samples: HashMap<String, Vec<Sample>>,
}

impl Metrics {
    /// The value of `name` whose labels include all of `labels` (summed over the rest).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .get(name)
            .unwrap_or_else(|| panic!("no series {name}"))
            .iter()
            .filter(|(have, _)| {
                labels
                    .iter()
                    .all(|(k, v)| have.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, value)| value)
            .sum()
    }
}

/// `GET /metrics` over a plain TCP connection: the status line, headers and body.
async fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut socket = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to the metrics endpoint {addr}: {e}"));
    socket
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\n\r\n").as_bytes())
        .await
        .expect("send the request");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), socket.read_to_end(&mut response))
        .await
        .expect("the endpoint answers within 30 s")
        .expect("read the response");
    let response = String::from_utf8(response).expect("the response is UTF-8");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {response:?}"));
    (head.to_string(), body.to_string())
}

/// Scrapes the endpoint and parses it, requiring every line to be a comment or a sample with
/// a numeric value (the parser alone skips lines it does not understand).
async fn scrape(addr: SocketAddr) -> Metrics {
    let (head, body) = get(addr, "/metrics").await;
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    for line in body.lines() {
        match LineInfo::parse(line) {
            LineInfo::Doc { .. } | LineInfo::Type { .. } => {}
            LineInfo::Sample { value, .. } => {
                assert!(value.parse::<f64>().is_ok(), "not a number in {line:?}")
            }
            other => panic!("unexpected line {line:?} ({other:?}) in:\n{body}"),
        }
    }
    let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("parse the text");
    let mut samples: HashMap<String, Vec<Sample>> = HashMap::new();
    for sample in scrape.samples {
        let labels: HashMap<String, String> = sample
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        match sample.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => {
                samples.entry(sample.metric).or_default().push((labels, v));
            }
            Value::Histogram(buckets) => {
                let name = &sample.metric;
                let entry = samples.entry(format!("{name}_bucket")).or_default();
                for bucket in buckets {
                    let mut labels = labels.clone();
                    labels.insert("le".into(), bucket.less_than.to_string());
                    entry.push((labels, bucket.count));
                }
            }
            Value::Summary(_) => panic!("no summaries are served: {}", sample.metric),
        }
    }
    for name in SERIES {
        assert!(
            samples.contains_key(*name),
            "series {name} missing from:\n{body}"
        );
    }
    Metrics { samples }
}

/// The metrics address the server logged.
fn metrics_addr(server: &Tally) -> SocketAddr {
    let log = server.log_text();
    let url = log
        .lines()
        .find_map(|l| l.split("serving Prometheus metrics at http://").nth(1))
        .unwrap_or_else(|| panic!("no metrics address logged:\n{log}"));
    url.trim_end_matches("/metrics")
        .parse()
        .unwrap_or_else(|e| panic!("metrics address {url:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_serves_parseable_prometheus_text_that_counts_the_work() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Tally::start_with_args(&data, CONFIG, &["--metrics", "127.0.0.1:0"]).await;
    let addr = metrics_addr(&server);
    let client = server.client().await;
    workload::create_schema(&client).await;

    let mut copied = 0u64;
    for id in 0..10 {
        let rows = workload::copy_batch(&client, id).await.expect("COPY");
        assert_eq!(rows as usize, rows_of(id));
        copied += rows;
    }
    client
        .batch_execute(
            "INSERT INTO events VALUES ('2026-01-01 00:00:00', 1, '/a', 1.5, 1000), \
             ('2026-01-01 00:00:01', 2, '/b', 2.5, 1000)",
        )
        .await
        .expect("INSERT");
    for _ in 0..3 {
        client
            .simple_query("SELECT count(*) FROM events")
            .await
            .expect("SELECT");
    }
    client
        .simple_query("SELECT * FROM no_such_table")
        .await
        .expect_err("an unknown table fails");
    let out = workload::rows(&client, "SELECT page, n FROM per_page ORDER BY page").await;
    assert!(!out.is_empty());

    // The background flush runs within a second or so; wait for it, bounded.
    let deadline = Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        let metrics = scrape(addr).await;
        if metrics.get("tally_flushes_total", &[]) >= 1.0 || Instant::now() > deadline {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let m = |name: &str, labels: &[(&str, &str)]| metrics.get(name, labels);

    assert!(m("tally_sessions_active", &[]) >= 1.0);
    assert!(m("tally_sessions_total", &[]) >= 1.0);
    assert_eq!(
        m("tally_copy_rows_total", &[("direction", "in")]),
        copied as f64
    );
    assert!(m("tally_ingested_rows_total", &[]) >= (copied + 2) as f64);
    assert!(m("tally_ingested_bytes_total", &[]) > 0.0);
    assert!(m("tally_commits_total", &[("kind", "append")]) >= 11.0);
    assert!(m("tally_commits_total", &[("kind", "catalog")]) >= 3.0);
    assert!(m("tally_commit_groups_total", &[]) >= 1.0);
    assert!(m("tally_commit_duration_seconds_count", &[]) >= 14.0);
    assert!(m("tally_commit_duration_seconds_bucket", &[("le", "inf")]) >= 14.0);
    assert_eq!(
        m(
            "tally_queries_total",
            &[("kind", "copy_from"), ("outcome", "ok")]
        ),
        10.0
    );
    assert_eq!(
        m(
            "tally_queries_total",
            &[("kind", "insert"), ("outcome", "ok")]
        ),
        1.0
    );
    assert!(
        m(
            "tally_queries_total",
            &[("kind", "select"), ("outcome", "ok")]
        ) >= 4.0
    );
    assert!(
        m(
            "tally_queries_total",
            &[("kind", "select"), ("outcome", "error")]
        ) >= 1.0
    );
    assert!(m("tally_queries_total", &[("kind", "ddl"), ("outcome", "ok")]) >= 3.0);
    assert!(m("tally_query_duration_seconds_count", &[("kind", "select")]) >= 5.0);
    assert!(
        m(
            "tally_query_duration_seconds_count",
            &[("kind", "copy_from")]
        ) >= 10.0
    );
    assert_eq!(m("tally_tables", &[]), 1.0);
    assert_eq!(m("tally_views", &[]), 2.0);
    assert_eq!(m("tally_views_backfilling", &[]), 0.0);
    assert_eq!(m("tally_backfill_pending_rows", &[]), 0.0);
    assert!(
        m("tally_flushes_total", &[]) >= 1.0,
        "no flush counted: {}",
        server.log_text()
    );
    assert!(m("tally_flushed_rows_total", &[]) >= 1.0);
    assert!(m("tally_flushed_bytes_total", &[]) > 0.0);
    assert!(m("tally_segments", &[]) >= 1.0);
    assert_eq!(
        m("tally_hot_rows", &[]) + m("tally_flushed_rows_total", &[]),
        (copied + 2) as f64,
        "every row is hot or flushed"
    );
    assert!(m("tally_rocksdb_memtable_bytes", &[]) > 0.0);
    assert!(m("tally_process_resident_memory_bytes", &[]) > 1e6);
    assert_eq!(m("tally_build_info", &[]), 1.0);

    // Other paths and methods are refused; the endpoint stays up.
    let (head, _) = get(addr, "/").await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    drop(client);
    server.stop().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the metrics endpoint outlived the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_address_in_use_stops_the_start_with_a_message_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let taken_addr = taken.local_addr().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_tally"))
        .arg("serve")
        .arg("--data")
        .arg(dir.path().join("data"))
        .args(["--listen", "127.0.0.1:0"])
        .env("TALLY_METRICS", taken_addr.to_string())
        .stdin(Stdio::null())
        .output()
        .expect("run tally serve");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot serve metrics on {taken_addr}")),
        "{stderr}"
    );
    drop(taken);
}
