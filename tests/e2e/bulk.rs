//! Bulk ingest (the path of COPY): one atomic commit of many batches in bounded memory.

use tally_engine::{DataErrorClass, Database, Error, Options};
use tally_tests::*;

fn spill_often() -> Options {
    Options {
        flush_rows: 1_000,
        ..test_options()
    }
}

/// Number of segment files under a test directory (`<dir>/data/segments`).
pub(crate) fn segment_files(dir: &std::path::Path) -> usize {
    walk(&dir.join("data/segments"))
}

/// The number of segment files once it equals `expected`, or after 10 s.
async fn settled_segment_files(dir: &std::path::Path, expected: usize) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let files = segment_files(dir);
        if files == expected || std::time::Instant::now() > deadline {
            return files;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

fn walk(path: &std::path::Path) -> usize {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        walk(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn a_bulk_ingest_becomes_visible_at_once_and_survives_reopen() {
    let (dir, db) = temp_db(spill_often());
    db.sql(EVENTS_DDL).await.unwrap();
    let mut bulk = db.bulk_ingest("events").unwrap();
    for b in 0..11 {
        let rows = if b == 10 { 300 } else { 500 };
        bulk.write(events_batch(b, rows, 3)).await.unwrap();
        let visible = query_i64(&db, "SELECT count(*) FROM events").await;
        assert_eq!(visible, 0, "nothing is visible before commit");
    }
    let spilled = segment_files(dir.path());
    assert!(
        spilled > 0,
        "rows beyond the threshold were spilled to segment files"
    );
    assert_eq!(bulk.rows(), 5300);
    assert_eq!(bulk.commit().await.unwrap(), 5300);
    assert_eq!(query_i64(&db, "SELECT count(*) FROM events").await, 5300);
    let batches = query_i64(&db, "SELECT count(DISTINCT batch_id) FROM events").await;
    assert_eq!(batches, 11);
    let stats = db.table_stats("events").unwrap();
    assert_eq!(
        (stats.segment_rows, stats.hot_rows),
        (5000, 300),
        "{stats:?}"
    );
    db.close().unwrap();
    let db = Database::open(dir.path().join("data"), test_options()).unwrap();
    assert_eq!(query_i64(&db, "SELECT count(*) FROM events").await, 5300);
}

#[tokio::test]
async fn an_abandoned_or_failed_bulk_ingest_leaves_nothing() {
    let (dir, db) = temp_db(spill_often());
    db.sql(EVENTS_DDL).await.unwrap();
    db.ingest("events", events_batch(99, 10, 1)).await.unwrap();
    db.flush().await.unwrap();
    let files_before = segment_files(dir.path());

    let mut bulk = db.bulk_ingest("events").unwrap();
    for b in 0..5 {
        bulk.write(events_batch(b, 500, 2)).await.unwrap();
    }
    assert!(segment_files(dir.path()) > files_before);
    drop(bulk);
    // A spill still running when the ingest is dropped removes its files when it ends.
    assert_eq!(
        settled_segment_files(dir.path(), files_before).await,
        files_before,
        "spilled files of an abandoned ingest are removed"
    );

    let mut bulk = db.bulk_ingest("events").unwrap();
    for b in 0..3 {
        bulk.write(events_batch(b, 500, 2)).await.unwrap();
    }
    let mut bad = events_batch(3, 500, 2);
    let mut columns = bad.columns().to_vec();
    let ids: Vec<Option<i64>> = (0..500)
        .map(|i| if i == 7 { None } else { Some(3) })
        .collect();
    columns[4] = std::sync::Arc::new(arrow::array::Int64Array::from(ids));
    let nullable: Vec<_> = bad
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(nullable));
    bad = arrow::array::RecordBatch::try_new(schema, columns).unwrap();
    let err = bulk.write(bad).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidData {
                row: Some(1507),
                class: DataErrorClass::NotNull,
                ..
            }
        ),
        "{err}"
    );
    drop(bulk);
    assert_eq!(
        settled_segment_files(dir.path(), files_before).await,
        files_before
    );
    assert_eq!(query_i64(&db, "SELECT count(*) FROM events").await, 10);
}

#[tokio::test]
async fn a_bulk_ingest_into_a_dropped_table_fails_cleanly() {
    let (dir, db) = temp_db(spill_often());
    db.sql(EVENTS_DDL).await.unwrap();
    let mut bulk = db.bulk_ingest("events").unwrap();
    bulk.write(events_batch(0, 1500, 2)).await.unwrap();
    db.sql("DROP TABLE events").await.unwrap();
    let err = bulk.commit().await.unwrap_err();
    assert!(
        matches!(&err, Error::TableNotFound(t) if t == "events"),
        "{err}"
    );
    assert_eq!(segment_files(dir.path()), 0);
}

#[tokio::test]
async fn parquet_files_round_trip_through_the_library() {
    let (dir, db) = temp_db(spill_often());
    db.sql(EVENTS_DDL).await.unwrap();
    for b in 0..4 {
        db.ingest("events", events_batch(b, 1_500, 3))
            .await
            .unwrap();
    }
    let file = dir.path().join("events.parquet");
    let written = db
        .copy_to_parquet("SELECT * FROM events", &file)
        .await
        .unwrap();
    assert_eq!(written, 6_000);
    db.sql(&EVENTS_DDL.replace("events", "copied"))
        .await
        .unwrap();
    // Spilled along the way (flush_rows 1,000), committed once.
    assert_eq!(db.copy_from_parquet("copied", &file).await.unwrap(), 6_000);
    let sum = "SELECT sum(batch_id) FROM";
    assert_eq!(
        query_i64(&db, &format!("{sum} copied")).await,
        query_i64(&db, &format!("{sum} events")).await
    );
    let missing = db
        .copy_from_parquet("copied", dir.path().join("missing.parquet"))
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), tally_engine::ErrorKind::UndefinedFile);
    std::fs::write(dir.path().join("text.parquet"), "not parquet").unwrap();
    let bad = db
        .copy_from_parquet("copied", dir.path().join("text.parquet"))
        .await
        .unwrap_err();
    assert_eq!(bad.kind(), tally_engine::ErrorKind::BadFile, "{bad}");
    assert_eq!(query_i64(&db, "SELECT count(*) FROM copied").await, 6_000);
}
