//! 8 writers and 24 readers at once for 60 s (`TALLY_LOAD_SECONDS` to change): COPYs, point and
//! full reads of views (simple and extended protocol), ad hoc queries over the growing table.
//! No query fails, nothing acknowledged is lost, views stay exact, and the server's resident
//! memory stays bounded (sampled from /proc and reported).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::harness::Tally;
use crate::workload::{self, Ledger};

const WRITERS: usize = 8;
const READERS: usize = 24;
/// The bound the server's peak resident memory must stay under (a debug build; the figure
/// measured is printed and recorded in docs/reliability.md).
const RSS_BOUND_MIB: u64 = 2048;

/// Reader `n`'s next query, rotating through the kinds a dashboard sends.
async fn read_once(client: &tokio_postgres::Client, n: u64) -> Result<(), tokio_postgres::Error> {
    let page = format!("/p/{}", n % 50);
    match n % 5 {
        0 => {
            client
                .query(
                    "SELECT n, total, users FROM per_page WHERE page = $1",
                    &[&page],
                )
                .await?;
        }
        1 => {
            client
                .simple_query("SELECT * FROM per_hour ORDER BY 1")
                .await?;
        }
        2 => {
            let user = (n % 1000) as i64;
            client
                .query(
                    "SELECT page, count(*), max(latency_ms) FROM events WHERE user_id = $1 GROUP BY page",
                    &[&user],
                )
                .await?;
        }
        3 => {
            client
                .simple_query("SELECT count(*), sum(n) FROM per_page")
                .await?;
        }
        _ => {
            client
                .simple_query(
                    "SELECT date_trunc('day', ts), count(*), avg(latency_ms) FROM events \
                     WHERE ts >= '2026-01-02' GROUP BY 1 ORDER BY 1",
                )
                .await?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_writers_and_24_readers_lose_nothing_and_memory_stays_bounded() {
    let seconds = std::env::var("TALLY_LOAD_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Tally::start(&data, "[storage]\nflush_rows = 50000\n").await;
    workload::create_schema(&server.client().await).await;

    let ledger = Arc::new(Ledger::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        writers.push(tokio::spawn(workload::write_until(
            server.client().await,
            Arc::clone(&ledger),
            Arc::clone(&stop),
            false,
        )));
    }
    let queries = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for r in 0..READERS as u64 {
        let client = server.client().await;
        let (stop, queries) = (Arc::clone(&stop), Arc::clone(&queries));
        readers.push(tokio::spawn(async move {
            let mut n = r;
            while !stop.load(Ordering::Relaxed) {
                if let Err(e) = read_once(&client, n).await {
                    panic!("reader {r}, query kind {}: {e:?}", n % 5);
                }
                queries.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        }));
    }

    let started = Instant::now();
    let mut peak_rss = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        if let Some((rss, _)) = server.memory_kib() {
            peak_rss = peak_rss.max(rss);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut copies = 0;
    for writer in writers {
        copies += writer.await.expect("a writer failed");
    }
    for reader in readers {
        reader.await.expect("a reader failed");
    }
    let elapsed = started.elapsed();
    let (_, high_water) = server.memory_kib().expect("read /proc");

    let client = server.client().await;
    workload::check(&client, &ledger).await;
    let stored: u64 = workload::rows(&client, "SELECT count(*) FROM events").await[0]
        .parse()
        .unwrap();
    assert_eq!(stored, ledger.acked_rows(), "rows stored vs acknowledged");
    let queries = queries.load(Ordering::Relaxed);
    eprintln!(
        "load: {WRITERS} writers, {READERS} readers, {elapsed:.1?}: {copies} COPYs ({stored} rows, \
         {:.0} rows/s), {queries} queries ({:.0}/s); server RSS peak {} MiB sampled, {} MiB high water",
        stored as f64 / elapsed.as_secs_f64(),
        queries as f64 / elapsed.as_secs_f64(),
        peak_rss / 1024,
        high_water / 1024,
    );
    assert!(copies > 0 && queries > 0, "the load did nothing");
    assert!(
        high_water / 1024 < RSS_BOUND_MIB,
        "server peak RSS {} MiB is past {RSS_BOUND_MIB} MiB",
        high_water / 1024
    );
    server.stop().await;
}
