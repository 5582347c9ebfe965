//! `Database::metrics`: what the counters count after ingest, a bulk load, a flush, a view
//! backfill and a failed commit; two databases in one process keep their own.

use tally_engine::Options;
use tally_tests::{EVENTS_DDL, events_batch, temp_db, test_options};

#[tokio::test]
async fn metrics_count_commits_rows_flushes_and_backfills_of_their_own_database() {
    let (_dir, db) = temp_db(test_options());
    let (_other_dir, other) = temp_db(Options {
        background_flush: false,
        ..Options::default()
    });
    let fresh = db.metrics();
    assert_eq!(fresh.rows_ingested, 0);
    assert_eq!(fresh.commit_latency.count(), 0);
    assert!(fresh.rocksdb.is_some());

    db.sql(EVENTS_DDL).await.unwrap();
    let mut rows = 0;
    for id in 0..3 {
        rows += db.ingest("events", events_batch(id, 500, 2)).await.unwrap();
    }
    let mut bulk = db.bulk_ingest("events").unwrap();
    bulk.write(events_batch(3, 700, 2)).await.unwrap();
    rows += bulk.commit().await.unwrap();
    db.sql("INSERT INTO no_such_table VALUES (1)")
        .await
        .expect_err("an unknown table fails before any commit");

    let m = db.metrics();
    assert_eq!(m.rows_ingested, rows);
    assert_eq!(m.commits.appends, 4);
    assert_eq!(m.commits.catalog, 1);
    assert!(m.bytes_ingested > 0);
    assert_eq!(m.commit_latency.count(), 5, "one per committed request");
    assert!(m.commit_groups >= 1 && m.commit_groups <= 5);
    assert_eq!(m.tables, 1);
    assert_eq!(m.hot_rows, rows);
    assert!(m.hot_bytes > 0);
    assert_eq!((m.segments, m.flushes), (0, 0));
    let rocks = m.rocksdb.expect("open");
    assert!(rocks.memtable_bytes > 0);

    db.flush().await.unwrap();
    let m = db.metrics();
    assert_eq!(m.hot_rows, 0);
    assert_eq!(m.flushed_rows, rows);
    assert!(m.flushes >= 1 && m.flushed_bytes > 0);
    assert_eq!(m.commits.flushes, m.flushes);
    assert!(m.segments >= 1 && m.segment_bytes > 0);

    db.sql(
        "CREATE MATERIALIZED VIEW per_page AS SELECT page, count(*) AS n FROM events GROUP BY page",
    )
    .await
    .unwrap();
    let m = db.metrics();
    assert_eq!(m.views, 1);
    assert_eq!(m.views_backfilling, 0);
    assert_eq!(m.backfill_rows_pending, 0);
    assert_eq!(m.backfilled_rows, rows);
    assert!(m.commits.backfills >= 2, "a chunk and the ready mark");

    let untouched = other.metrics();
    assert_eq!(untouched.rows_ingested, 0);
    assert_eq!(untouched.commits.appends + untouched.commits.catalog, 0);
    assert_eq!(untouched.tables, 0);

    db.close().unwrap();
    let closed = db.metrics();
    assert!(closed.rocksdb.is_none());
    assert_eq!(closed.rows_ingested, rows, "counters outlive close");
    other.close().unwrap();
}
