//! Concurrent ingest, queries and flushes: every query sees one committed state.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tally_tests::*;

const WRITERS: i64 = 4;
const BATCHES_PER_WRITER: i64 = 25;
const ROWS: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queries_see_only_committed_states_while_ingest_and_flushes_run() {
    let (_dir, db) = temp_db(eager_flush_options());
    db.sql(EVENTS_DDL).await.unwrap();
    let done = Arc::new(AtomicBool::new(false));

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let db = db.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..BATCHES_PER_WRITER {
                db.ingest("events", events_batch(w * 1000 + i, ROWS, 2))
                    .await
                    .unwrap();
                if i == BATCHES_PER_WRITER / 2 && w == 0 {
                    db.flush().await.unwrap();
                }
            }
        }));
    }
    let mut readers = Vec::new();
    for _ in 0..2 {
        let db = db.clone();
        let done = Arc::clone(&done);
        readers.push(tokio::spawn(async move {
            let mut last = 0;
            let mut checks = 0;
            while !done.load(Ordering::Relaxed) || checks == 0 {
                let line =
                    query_lines(&db, "SELECT count(*), count(DISTINCT batch_id) FROM events").await;
                let (rows, batches) = line[0].split_once('|').unwrap();
                let (rows, batches): (i64, i64) = (rows.parse().unwrap(), batches.parse().unwrap());
                assert_eq!(
                    rows,
                    batches * ROWS as i64,
                    "a query saw a partial batch or a row twice"
                );
                assert!(rows >= last, "count went backwards: {last} then {rows}");
                last = rows;
                checks += 1;
            }
            checks
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.await.unwrap() > 0);
    }
    let total = WRITERS * BATCHES_PER_WRITER * ROWS as i64;
    assert_eq!(query_i64(&db, "SELECT count(*) FROM events").await, total);
    db.flush().await.unwrap();
    let stats = db.table_stats("events").unwrap();
    assert_eq!((stats.segment_rows, stats.hot_rows), (total as u64, 0));
    assert_eq!(query_i64(&db, "SELECT count(*) FROM events").await, total);
}
