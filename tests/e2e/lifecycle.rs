//! Create, ingest, query, close and reopen: data survives, with and without a flush.

use tally_engine::{Database, Error, Options};
use tally_tests::*;

async fn load(db: &Database, batches: i64, rows: usize) {
    db.sql(EVENTS_DDL).await.unwrap();
    for b in 0..batches {
        db.ingest("events", events_batch(b, rows, 3)).await.unwrap();
    }
}

async fn summary(db: &Database) -> Vec<String> {
    query_lines(
        db,
        "SELECT count(*), count(user_id), sum(user_id), count(DISTINCT batch_id), min(ts), max(ts), \
         sum(latency_ms) FROM events",
    )
    .await
}

#[tokio::test]
async fn data_survives_reopen_without_flush() {
    let options = Options {
        flush_on_close: false,
        ..test_options()
    };
    let (dir, db) = temp_db(options.clone());
    load(&db, 5, 300).await;
    let before = summary(&db).await;
    assert_eq!(query_i64(&db, "SELECT count(*) FROM events").await, 1500);
    db.close().unwrap();
    let db = Database::open(dir.path().join("data"), options).unwrap();
    let stats = db.table_stats("events").unwrap();
    assert_eq!(
        (stats.segments, stats.hot_rows),
        (0, 1500),
        "rows come back from the hot tier"
    );
    assert_eq!(summary(&db).await, before);
}

#[tokio::test]
async fn reopen_after_close_sees_everything_and_flushes_on_close() {
    let (dir, db) = temp_db(test_options());
    load(&db, 4, 250).await;
    let before = summary(&db).await;
    db.close().unwrap();
    let after_close = db.ingest("events", events_batch(9, 1, 1)).await;
    assert!(matches!(after_close, Err(Error::Closed)), "{after_close:?}");
    assert!(matches!(db.sql("SELECT 1").await, Err(Error::Closed)));
    let db = Database::open(dir.path().join("data"), test_options()).unwrap();
    let stats = db.table_stats("events").unwrap();
    assert_eq!(stats.hot_rows, 0, "close flushes the hot tier");
    assert_eq!(stats.segment_rows, 1000);
    assert_eq!(summary(&db).await, before);
}

/// Bytes of RocksDB's write-ahead log files in a data directory.
fn wal_bytes(data: &std::path::Path) -> u64 {
    std::fs::read_dir(data.join("rocksdb"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

#[tokio::test]
async fn close_leaves_no_write_ahead_log_to_replay() {
    for flush_on_close in [true, false] {
        let options = Options {
            flush_on_close,
            ..test_options()
        };
        let (dir, db) = temp_db(options.clone());
        load(&db, 20, 2_000).await;
        let data = dir.path().join("data");
        let before = summary(&db).await;
        assert!(
            wal_bytes(&data) > 200_000,
            "the hot rows are in the log while open: {}",
            wal_bytes(&data)
        );
        db.close().unwrap();
        assert!(
            wal_bytes(&data) < 16_384,
            "close persisted the memtables (flush_on_close {flush_on_close}): {} bytes of log",
            wal_bytes(&data)
        );
        let db = Database::open(&data, options).unwrap();
        assert_eq!(summary(&db).await, before);
    }
}

#[tokio::test]
async fn reopen_with_hot_and_flushed_data() {
    let (dir, db) = temp_db(Options {
        flush_on_close: false,
        ..test_options()
    });
    load(&db, 3, 200).await;
    db.flush().await.unwrap();
    for b in 3..6 {
        db.ingest("events", events_batch(b, 200, 3)).await.unwrap();
    }
    let stats = db.table_stats("events").unwrap();
    assert!(
        stats.segments >= 3,
        "3 days → at least 3 segments, got {stats:?}"
    );
    assert_eq!((stats.segment_rows, stats.hot_rows), (600, 600));
    let before = summary(&db).await;
    // Reopen without flushing the last batches.
    let options = Options {
        flush_on_close: false,
        ..test_options()
    };
    drop(db);
    let db = Database::open(dir.path().join("data"), options).unwrap();
    assert_eq!(summary(&db).await, before);
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM events WHERE batch_id = 4").await,
        200
    );
}

#[tokio::test]
async fn segments_are_partitioned_by_day_and_pruned_by_time() {
    let (_dir, db) = temp_db(test_options());
    load(&db, 2, 1000).await;
    db.flush().await.unwrap();
    let stats = db.table_stats("events").unwrap();
    assert_eq!(stats.segments, 3, "{stats:?}");
    let one_day = query_i64(
        &db,
        "SELECT count(*) FROM events WHERE ts >= '2026-01-02 00:00:00' AND ts < '2026-01-03 00:00:00'",
    )
    .await;
    let expected = query_i64(
        &db,
        "SELECT count(*) FROM events WHERE date_trunc('day', ts) = TIMESTAMP '2026-01-02 00:00:00'",
    )
    .await;
    assert_eq!(one_day, expected);
    assert!(one_day > 0 && one_day < 2000);
    let plan = query_lines(&db, "EXPLAIN SELECT count(*) FROM events WHERE ts >= '2026-01-02 00:00:00' AND ts < '2026-01-03 00:00:00'").await.join("\n");
    assert_eq!(
        plan.matches(".parquet").count(),
        1,
        "only the segment of Jan 2 is scanned:\n{plan}"
    );
}

#[tokio::test]
async fn bloom_filters_skip_row_groups_on_point_lookups() {
    let (_dir, db) = temp_db(test_options());
    load(&db, 4, 1000).await;
    db.flush().await.unwrap();
    // Stored ids are even numbers from 0 to 1998: 1001 is inside every row group's min/max
    // range, so only the bloom filter can rule it out.
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM events WHERE user_id = 1001").await,
        0
    );
    // A present id is found exactly as often as a scan that cannot prune finds it.
    let present = query_i64(&db, "SELECT count(*) FROM events WHERE user_id = 1000").await;
    assert!(present > 0);
    assert_eq!(
        present,
        query_i64(&db, "SELECT count(*) FROM events WHERE user_id + 0 = 1000").await
    );
    let plan = query_lines(
        &db,
        "EXPLAIN ANALYZE SELECT * FROM events WHERE user_id = 1001",
    )
    .await
    .join("\n");
    let pruned = metric(&plan, "row_groups_pruned_bloom_filter=");
    assert!(
        pruned.0 > 0 && pruned.1 == 0,
        "bloom filters should rule out every row group: {pruned:?}\n{plan}"
    );
}

/// Parses a DataFusion pruning metric `name=T total → M matched` into (T, M), summed over scans.
fn metric(plan: &str, name: &str) -> (u64, u64) {
    plan.split(name).skip(1).fold((0, 0), |(t, m), rest| {
        let mut numbers = rest
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<u64>().unwrap());
        (
            t + numbers.next().unwrap_or(0),
            m + numbers.next().unwrap_or(0),
        )
    })
}

#[tokio::test]
async fn a_second_open_of_a_locked_directory_fails_cleanly() {
    let (dir, db) = temp_db(test_options());
    let err = Database::open(dir.path().join("data"), test_options())
        .err()
        .expect("second open must fail");
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    assert!(
        err.to_string().contains("locked by another process"),
        "{err}"
    );
    db.close().unwrap();
    Database::open(dir.path().join("data"), test_options()).expect("open after close");
}

#[tokio::test]
async fn orphan_segment_files_are_removed_at_open() {
    let (dir, db) = temp_db(test_options());
    load(&db, 1, 100).await;
    db.flush().await.unwrap();
    let id = db.table("events").unwrap().id;
    db.close().unwrap();
    let segments = dir.path().join("data/segments");
    let table_dir = segments.join(id.to_string());
    std::fs::write(table_dir.join("9999999999999999.parquet"), b"half-written").unwrap();
    std::fs::create_dir_all(segments.join("424242")).unwrap();
    std::fs::write(
        segments.join("424242/0000000000000001.parquet"),
        b"dropped table",
    )
    .unwrap();
    let db = Database::open(dir.path().join("data"), test_options()).unwrap();
    assert!(!table_dir.join("9999999999999999.parquet").exists());
    assert!(!segments.join("424242").exists());
    assert_eq!(query_i64(&db, "SELECT count(*) FROM events").await, 100);
}

#[tokio::test]
async fn drop_table_removes_data_and_frees_the_name() {
    let (dir, db) = temp_db(test_options());
    load(&db, 2, 100).await;
    db.flush().await.unwrap();
    let id = db.table("events").unwrap().id;
    db.sql("DROP TABLE events").await.unwrap();
    assert!(!dir.path().join(format!("data/segments/{id}")).exists());
    assert!(
        matches!(db.sql("SELECT * FROM events").await, Err(Error::TableNotFound(t)) if t == "events")
    );
    db.sql("DROP TABLE IF EXISTS events").await.unwrap();
    load(&db, 1, 10).await;
    assert_eq!(query_i64(&db, "SELECT count(*) FROM events").await, 10);
    db.close().unwrap();
    let db = Database::open(dir.path().join("data"), test_options()).unwrap();
    assert_eq!(query_i64(&db, "SELECT count(*) FROM events").await, 10);
}

/// Bytes of RocksDB's table (SST) files in a data directory.
fn sst_bytes(data: &std::path::Path) -> u64 {
    std::fs::read_dir(data.join("rocksdb"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "sst"))
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// Waits up to 20 s for RocksDB's table files to shrink below `limit` bytes.
async fn sst_bytes_fall_below(data: &std::path::Path, limit: u64) -> bool {
    for _ in 0..400 {
        if sst_bytes(data) < limit {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn drop_view_and_drop_table_give_their_disk_space_back() {
    // Rows stay hot (in RocksDB) and the view has a group per user and minute.
    let options = Options {
        flush_on_close: false,
        ..test_options()
    };
    let (dir, db) = temp_db(options.clone());
    load(&db, 20, 5_000).await;
    db.sql(
        "CREATE MATERIALIZED VIEW per_user_minute AS SELECT user_id, date_trunc('minute', ts) AS m, \
         count(*) AS n, max(latency_ms) AS slowest FROM events GROUP BY 1, 2",
    )
    .await
    .unwrap();
    db.close().unwrap();
    let data = dir.path().join("data");
    let db = Database::open(&data, options.clone()).unwrap();
    let full = sst_bytes(&data);
    assert!(full > 1_000_000, "rows and states on disk: {full} bytes");

    db.sql("DROP MATERIALIZED VIEW per_user_minute")
        .await
        .unwrap();
    assert!(
        sst_bytes_fall_below(&data, full * 9 / 10).await,
        "DROP MATERIALIZED VIEW gave nothing back: {} of {full} bytes",
        sst_bytes(&data)
    );
    db.sql("DROP TABLE events").await.unwrap();
    assert!(
        sst_bytes_fall_below(&data, full / 10).await,
        "DROP TABLE gave nothing back: {} of {full} bytes",
        sst_bytes(&data)
    );
    // Close right after a DROP does not wait for its compaction, and releases the directory.
    load(&db, 20, 5_000).await;
    db.sql("DROP TABLE events").await.unwrap();
    let closing = std::time::Instant::now();
    db.close().unwrap();
    eprintln!("close right after a DROP took {:?}", closing.elapsed());
    let db = Database::open(&data, options).unwrap();
    assert!(db.table("events").is_none());
    db.close().unwrap();
}

#[tokio::test]
async fn a_relative_data_directory_works_across_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = std::env::current_dir().unwrap();
    let up: std::path::PathBuf = cwd.components().skip(1).map(|_| "..").collect();
    let relative = up
        .join(dir.path().strip_prefix("/").unwrap())
        .join("./data");
    assert!(relative.is_relative());
    let db = Database::open(&relative, test_options()).unwrap();
    load(&db, 1, 100).await;
    db.flush().await.unwrap();
    assert_eq!(query_i64(&db, "SELECT count(*) FROM events").await, 100);
}
