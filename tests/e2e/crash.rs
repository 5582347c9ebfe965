//! `kill -9` in the middle of a stream of ingests: after reopen, every acknowledged batch is
//! present exactly once and no batch is present partially.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tally_engine::Database;
use tally_tests::*;

const CHILD_DIR_ENV: &str = "TALLY_CRASH_CHILD_DIR";

fn rows_of(batch_id: i64) -> usize {
    50 + (batch_id as usize * 37) % 150
}

/// The child side: ingests batches forever, printing `ACK n` after each acknowledged one.
/// It does nothing unless started by the parent test with the data directory in the env.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_ingest_loop() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let db = Database::open(dir, eager_flush_options()).expect("child opens the database");
    db.sql(&EVENTS_DDL.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS"))
        .await
        .unwrap();
    let mut stdout = std::io::stdout();
    for batch_id in 0.. {
        db.ingest("events", events_batch(batch_id, rows_of(batch_id), 2))
            .await
            .unwrap();
        writeln!(stdout, "ACK {batch_id}").unwrap();
        stdout.flush().unwrap();
    }
}

#[tokio::test]
async fn kill_9_during_ingest_loses_and_duplicates_nothing() {
    // Two rounds, killed at different points of the commit/flush cycle.
    for kill_after in [40usize, 13] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let acked = run_child_until(&data, kill_after);
        let max_acked = *acked.iter().max().expect("some batches acknowledged");

        let db = Database::open(&data, test_options()).expect("reopen after kill -9");
        let counts: BTreeMap<i64, usize> = query_lines(
            &db,
            "SELECT batch_id, count(*) FROM events GROUP BY batch_id",
        )
        .await
        .into_iter()
        .map(|l| {
            let (b, n) = l.split_once('|').expect("two columns");
            (b.parse().expect("batch id"), n.parse().expect("count"))
        })
        .collect();
        for id in &acked {
            assert_eq!(
                counts.get(id).copied(),
                Some(rows_of(*id)),
                "acknowledged batch {id} must be present exactly once"
            );
        }
        for (id, n) in &counts {
            assert_eq!(
                *n,
                rows_of(*id),
                "batch {id} is partial or duplicated: {n} rows"
            );
            assert!(
                acked.contains(id) || *id == max_acked + 1,
                "batch {id} was never in flight (max acked {max_acked})"
            );
        }
        db.close().unwrap();
    }
}

const COMPACTING_CHILD_ENV: &str = "TALLY_COMPACTING_CHILD_DIR";
const COMPACTING_VIEWS: [&str; 2] = [
    "CREATE MATERIALIZED VIEW IF NOT EXISTS per_page AS SELECT page, count(*) AS n, \
     sum(user_id) AS users, max(latency_ms) AS slowest, approx_count_distinct(user_id) AS uniq \
     FROM events GROUP BY page",
    "CREATE MATERIALIZED VIEW IF NOT EXISTS per_minute AS SELECT date_trunc('minute', ts) AS m, \
     page, count(*) AS n, avg(latency_ms) AS mean FROM events GROUP BY 1, 2",
];

/// The child side of the compaction crash test: ingests forever into a table with views
/// while the compactor runs every millisecond, printing `ACK n` after each batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_ingest_while_compacting() {
    let Ok(dir) = std::env::var(COMPACTING_CHILD_ENV) else {
        return;
    };
    let options = tally_engine::Options {
        background_flush: true,
        compaction_interval: Duration::from_millis(1),
        ..test_options()
    };
    let db = Database::open(dir, options).expect("child opens the database");
    db.sql(&EVENTS_DDL.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS"))
        .await
        .unwrap();
    for view in COMPACTING_VIEWS {
        db.sql(view).await.unwrap();
    }
    let mut stdout = std::io::stdout();
    for batch_id in 0.. {
        db.ingest("events", events_batch(batch_id, rows_of(batch_id) * 4, 2))
            .await
            .unwrap();
        writeln!(stdout, "ACK {batch_id}").unwrap();
        stdout.flush().unwrap();
    }
}

#[tokio::test]
async fn kill_9_during_view_compaction_then_views_equal_a_recompute() {
    for kill_after in [60usize, 25] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let acked = run_child(
            "crash::child_ingest_while_compacting",
            COMPACTING_CHILD_ENV,
            &data,
            kill_after,
        );
        assert!(acked.len() >= kill_after);
        let db = Database::open(&data, test_options()).expect("reopen after kill -9");
        let segments = query_lines(
            &db,
            "SELECT name, segments, delta_parts FROM tally_views ORDER BY name",
        )
        .await;
        eprintln!("views after the kill: {segments:?}");
        let checks = [
            (
                "SELECT page, n, users, slowest, uniq FROM per_page ORDER BY page",
                "SELECT page, count(*), sum(user_id), max(latency_ms), approx_count_distinct(user_id) \
                 FROM events GROUP BY page ORDER BY page",
            ),
            (
                "SELECT m, page, n, round(mean, 6) FROM per_minute ORDER BY m, page",
                "SELECT date_trunc('minute', ts), page, count(*), round(avg(latency_ms), 6) \
                 FROM events GROUP BY 1, 2 ORDER BY 1, 2",
            ),
        ];
        for (stored, recomputed) in checks {
            assert_eq!(
                query_lines(&db, stored).await,
                raw_lines(&db, recomputed).await,
                "{stored}"
            );
        }
        // And once everything is merged into one segment per view.
        db.compact_views().await.unwrap();
        for (stored, recomputed) in checks {
            assert_eq!(
                query_lines(&db, stored).await,
                raw_lines(&db, recomputed).await,
                "{stored} after compaction"
            );
        }
        db.close().unwrap();
    }
}

/// Runs the child until it has acknowledged `kill_after` batches, then kills it with SIGKILL.
/// Returns every batch id it acknowledged.
fn run_child_until(data: &std::path::Path, kill_after: usize) -> BTreeSet<i64> {
    run_child("crash::child_ingest_loop", CHILD_DIR_ENV, data, kill_after)
}

/// Runs the child test `name` (with `data` in `env`) until it has acknowledged `kill_after`
/// batches, then kills it with SIGKILL. Returns every batch id it acknowledged.
fn run_child(name: &str, env: &str, data: &std::path::Path, kill_after: usize) -> BTreeSet<i64> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(env, data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // The test harness may print its own text before ours on the same line.
            if let Some(id) = line
                .split("ACK ")
                .nth(1)
                .and_then(|s| s.trim().parse::<i64>().ok())
                && tx.send(id).is_err()
            {
                break;
            }
        }
    });
    let mut acked = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.len() < kill_after {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(id) => {
                acked.insert(id);
            }
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "child acknowledged only {} batches before the deadline",
                    acked.len()
                );
            }
        }
    }
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap the child");
    // Acknowledgements printed before the kill but not yet read.
    std::thread::sleep(Duration::from_millis(50));
    while let Ok(id) = rx.try_recv() {
        acked.insert(id);
    }
    acked
}

const BACKFILL_CHILD_ENV: &str = "TALLY_BACKFILL_CHILD_DIR";
const BACKFILL_VIEW: &str = "CREATE MATERIALIZED VIEW per_page AS SELECT page, count(*) AS n, sum(user_id) AS users, \
    max(latency_ms) AS slowest FROM events GROUP BY page";

/// The child side of the backfill crash test: creates a view over a large table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_create_view() {
    let Ok(dir) = std::env::var(BACKFILL_CHILD_ENV) else {
        return;
    };
    let db = Database::open(dir, test_options()).expect("child opens the database");
    println!("CREATING");
    db.sql(BACKFILL_VIEW).await.unwrap();
    println!("CREATED");
}

#[tokio::test]
async fn kill_9_during_backfill_then_the_view_is_exact_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let db = Database::open(&data, test_options()).unwrap();
        db.sql(EVENTS_DDL).await.unwrap();
        for b in 0..40 {
            db.ingest("events", events_batch(b, 2500, 3)).await.unwrap();
        }
        db.close().unwrap();
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash::child_create_view",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(BACKFILL_CHILD_ENV, &data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let started = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("CREATING"));
    assert!(started, "child never started creating the view");
    std::thread::sleep(Duration::from_millis(150));
    child.kill().expect("SIGKILL the child");
    child.wait().unwrap();

    eprintln!("view status at the kill: {}", raw_view_status(&data));
    let db = Database::open(&data, test_options()).expect("reopen after kill -9 during backfill");
    if db.view("per_page").is_none() {
        // Killed before the view's creation committed: creating it now must work.
        db.sql(BACKFILL_VIEW).await.unwrap();
    }
    assert_eq!(
        query_lines(&db, "SELECT state FROM tally_views").await,
        vec!["ready"]
    );
    let stored = query_lines(
        &db,
        "SELECT page, n, users, slowest FROM per_page ORDER BY page",
    )
    .await;
    let expected = query_lines(
        &db,
        "SELECT page, count(*), sum(user_id), max(latency_ms) FROM events GROUP BY page ORDER BY page",
    )
    .await;
    assert_eq!(stored, expected);
    db.ingest("events", events_batch(99, 100, 1)).await.unwrap();
    let total = query_i64(&db, "SELECT sum(n) FROM per_page").await;
    assert_eq!(total, 40 * 2500 + 100);
}

/// The stored status of the first view, read from RocksDB directly ("none" if no view), for
/// the test's log only. A read-only open cannot repair a write-ahead log torn by the kill
/// (RocksDB then reports "column family inconsistency"); the read-write open that follows is
/// what the test checks, so that case is reported, not fatal.
fn raw_view_status(data: &std::path::Path) -> String {
    let opts = rocksdb::Options::default();
    let families = match rocksdb::DB::list_cf(&opts, data.join("rocksdb")) {
        Ok(families) => families,
        Err(e) => return format!("unreadable ({e})"),
    };
    let db = match rocksdb::DB::open_cf_for_read_only(&opts, data.join("rocksdb"), families, false)
    {
        Ok(db) => db,
        Err(e) => return format!("unreadable read-only ({e})"),
    };
    let catalog = db.cf_handle("catalog").unwrap();
    let found = db
        .prefix_iterator_cf(catalog, b"v")
        .map_while(Result::ok)
        .find(|(k, _)| k.starts_with(b"v"));
    match found {
        Some((_, v)) => String::from_utf8_lossy(&v)
            .split("\"status\":")
            .nth(1)
            .unwrap_or("?")
            .to_string(),
        None => "none".into(),
    }
}
