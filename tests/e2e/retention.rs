//! Retention: raw rows age out in whole-day segments while materialized views keep their
//! aggregates; the files leave the disk.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, TimestampMicrosecondArray};
use arrow::record_batch::RecordBatch;
use tally_engine::{Database, Options, RetentionReport};
use tally_tests::*;

const DDL: &str = "CREATE TABLE events (ts TIMESTAMP NOT NULL, user_id BIGINT, page TEXT, \
     latency_ms DOUBLE PRECISION, batch_id BIGINT NOT NULL) \
     WITH (time_column = 'ts', retention = '30 days')";
const VIEW: &str = "CREATE MATERIALIZED VIEW per_batch AS SELECT batch_id, count(*) AS n, \
     sum(latency_ms) AS total, count(DISTINCT user_id) AS users FROM events GROUP BY batch_id";

/// `rows` events of `batch_id` from the last hour (never older than any retention here).
fn recent_batch(batch_id: i64, rows: usize) -> RecordBatch {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let base = events_batch(batch_id, rows, 1);
    let ts: Vec<i64> = (0..rows as i64).map(|i| now - i * 1_000_000).collect();
    let mut columns: Vec<ArrayRef> = base.columns().to_vec();
    columns[0] = Arc::new(TimestampMicrosecondArray::from(ts));
    RecordBatch::try_new(base.schema(), columns).unwrap()
}

/// Bytes of the files under `dir`.
fn bytes_under(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        bytes_under(&e.path())
                    } else {
                        e.metadata().map(|m| m.len()).unwrap_or(0)
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn old_rows_age_out_while_views_keep_their_aggregates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    let segments = path.join("segments");
    let db = Database::open(&path, test_options()).unwrap();
    db.sql(DDL).await.unwrap();
    db.sql(VIEW).await.unwrap();
    // January 2026 (older than 30 days): three days flushed, two more days still hot.
    db.ingest("events", events_batch(1, 3_000, 3))
        .await
        .unwrap();
    db.flush().await.unwrap();
    db.ingest("events", events_batch(2, 500, 2)).await.unwrap();
    // And the last hour.
    db.ingest("events", recent_batch(3, 200)).await.unwrap();
    let view_before = query_lines(&db, "SELECT * FROM per_batch ORDER BY batch_id").await;
    assert_eq!(view_before.len(), 3);
    let disk_before = bytes_under(&segments);

    let report = db.apply_retention().await.unwrap();
    assert_eq!(report.rows, 3_500, "every January row: {report:?}");
    assert_eq!(report.segments, 5, "one segment per January day");
    assert_eq!(query_i64(&db, "SELECT count(*) FROM events").await, 200);
    assert_eq!(
        query_i64(&db, "SELECT min(batch_id) FROM events").await,
        3,
        "only the recent rows are left"
    );
    assert_eq!(
        query_lines(&db, "SELECT * FROM per_batch ORDER BY batch_id").await,
        view_before,
        "the view keeps the aggregates of the rows retention removed"
    );
    let disk_after = bytes_under(&segments);
    assert!(
        disk_after < disk_before / 2,
        "segment bytes on disk {disk_before} → {disk_after}"
    );
    assert_eq!(
        query_lines(
            &db,
            "SELECT retention, rows, segments, hot_rows FROM tally_tables"
        )
        .await,
        ["30 days|200|1|0"]
    );
    // Nothing more to do.
    assert_eq!(
        db.apply_retention().await.unwrap(),
        RetentionReport::default()
    );

    // A view created now sees only what is stored, and says so.
    let results = db
        .execute("CREATE MATERIALIZED VIEW late AS SELECT count(*) AS n FROM events")
        .await
        .unwrap();
    assert!(
        results[0].notices[0].contains("retention"),
        "{:?}",
        results[0].notices
    );
    assert_eq!(query_i64(&db, "SELECT n FROM late").await, 200);

    // ALTER TABLE changes the period; NULL keeps rows forever; it survives a reopen.
    db.sql("ALTER TABLE events SET (retention = NULL)")
        .await
        .unwrap();
    db.ingest("events", events_batch(4, 100, 1)).await.unwrap();
    assert_eq!(db.apply_retention().await.unwrap().rows, 0);
    db.sql("ALTER TABLE events SET (retention = '2 weeks')")
        .await
        .unwrap();
    db.close().unwrap();
    let db = Database::open(&path, test_options()).unwrap();
    assert_eq!(
        query_lines(&db, "SELECT retention FROM tally_tables").await,
        ["2 weeks"]
    );
    assert_eq!(db.apply_retention().await.unwrap().rows, 100);
    assert_eq!(query_i64(&db, "SELECT count(*) FROM events").await, 200);
    assert_eq!(query_i64(&db, "SELECT sum(n) FROM per_batch").await, 3_800);
    db.close().unwrap();
}

#[tokio::test]
async fn the_background_flusher_applies_retention() {
    let (_dir, db) = temp_db(Options {
        flush_check_interval: Duration::from_millis(20),
        retention_check_interval: Duration::from_millis(50),
        ..Options::default()
    });
    db.sql(DDL).await.unwrap();
    db.ingest("events", events_batch(1, 1_000, 2))
        .await
        .unwrap();
    db.ingest("events", recent_batch(2, 10)).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while query_i64(&db, "SELECT count(*) FROM events").await > 10 {
        assert!(
            std::time::Instant::now() < deadline,
            "old rows still there after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(query_i64(&db, "SELECT min(batch_id) FROM events").await, 2);
}

#[tokio::test]
async fn bad_retention_settings_are_refused_with_a_reason() {
    let (_dir, db) = temp_db(test_options());
    let message = |sql: &'static str| {
        let db = db.clone();
        async move { db.sql(sql).await.unwrap_err().to_string() }
    };
    assert!(
        message("CREATE TABLE t (x BIGINT) WITH (retention = '1 day')")
            .await
            .contains("needs a time_column")
    );
    assert!(
        message("CREATE TABLE t (ts TIMESTAMP) WITH (time_column = 'ts', retention = 'soon')")
            .await
            .contains("'30 days'")
    );
    assert!(
        message("CREATE TABLE t (ts TIMESTAMP) WITH (time_column = 'ts', retention = '0 days')")
            .await
            .contains("longer than zero")
    );
    db.sql("CREATE TABLE plain (x BIGINT)").await.unwrap();
    assert!(
        message("ALTER TABLE plain SET (retention = '1 day')")
            .await
            .contains("needs a time_column")
    );
    assert!(
        message("ALTER TABLE missing SET (retention = '1 day')")
            .await
            .contains("missing")
    );
    assert!(
        message("ALTER TABLE plain ADD COLUMN y BIGINT")
            .await
            .contains("only SET (retention")
    );
    assert!(
        message("ALTER TABLE plain SET (fillfactor = 70)")
            .await
            .contains("the only valid one is retention")
    );
}
