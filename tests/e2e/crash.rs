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

/// Runs the child until it has acknowledged `kill_after` batches, then kills it with SIGKILL.
/// Returns every batch id it acknowledged.
fn run_child_until(data: &std::path::Path, kill_after: usize) -> BTreeSet<i64> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash::child_ingest_loop",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, data)
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
