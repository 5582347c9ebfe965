//! Every kind of bad input gets a precise error, and nothing of the failed statement is stored.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, Float64Array, Int64Array, RecordBatch, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use tally_engine::{DataErrorClass, Database, Error, ErrorKind};
use tally_tests::*;

async fn events_db() -> (tempfile::TempDir, Database) {
    let (dir, db) = temp_db(test_options());
    db.sql(EVENTS_DDL).await.unwrap();
    db.ingest("events", events_batch(0, 10, 1)).await.unwrap();
    (dir, db)
}

fn batch(fields: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let schema = Schema::new(
        fields
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    );
    RecordBatch::try_new(
        Arc::new(schema),
        fields.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap()
}

fn ts(values: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(values))
}

async fn assert_unchanged(db: &Database) {
    assert_eq!(
        query_i64(db, "SELECT count(*) FROM events").await,
        10,
        "a failed statement stored rows"
    );
}

#[tokio::test]
async fn ingest_rejects_a_wrong_type() {
    let (_dir, db) = events_db().await;
    let bad = batch(vec![
        ("ts", ts(vec![JAN_1_2026_US])),
        ("user_id", Arc::new(Float64Array::from(vec![1.5]))),
        ("batch_id", Arc::new(Int64Array::from(vec![1]))),
    ]);
    let err = db.ingest("events", bad).await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidData { column, class: DataErrorClass::WrongType, .. } if column == "user_id"),
        "{err}"
    );
    assert!(err.to_string().contains("table \"events\""), "{err}");
    assert_unchanged(&db).await;
}

#[tokio::test]
async fn ingest_rejects_null_in_not_null_naming_the_row() {
    let (_dir, db) = events_db().await;
    let bad = batch(vec![
        ("ts", ts(vec![JAN_1_2026_US, JAN_1_2026_US, JAN_1_2026_US])),
        (
            "batch_id",
            Arc::new(Int64Array::from(vec![Some(1), Some(2), None])),
        ),
    ]);
    let err = db.ingest("events", bad).await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Data(DataErrorClass::NotNull),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "table \"events\", column \"batch_id\", row 3: null value violates NOT NULL constraint"
    );
    let missing = batch(vec![("ts", ts(vec![JAN_1_2026_US]))]);
    let err = db.ingest("events", missing).await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Data(DataErrorClass::NotNull),
        "{err}"
    );
    assert_unchanged(&db).await;
}

#[tokio::test]
async fn ingest_rejects_unknown_columns_and_tables() {
    let (_dir, db) = events_db().await;
    let bad = batch(vec![
        ("ts", ts(vec![JAN_1_2026_US])),
        ("batch_id", Arc::new(Int64Array::from(vec![1]))),
        ("colour", Arc::new(Int64Array::from(vec![1]))),
    ]);
    let err = db.ingest("events", bad).await.unwrap_err();
    assert!(
        matches!(&err, Error::ColumnNotFound { table, column } if table == "events" && column == "colour"),
        "{err}"
    );
    let err = db.ingest("nope", events_batch(1, 1, 1)).await.unwrap_err();
    assert!(
        matches!(&err, Error::TableNotFound(t) if t == "nope"),
        "{err}"
    );
    assert_unchanged(&db).await;
}

#[tokio::test]
async fn ingest_rejects_invalid_utf8_for_text() {
    let (_dir, db) = events_db().await;
    let page: ArrayRef = Arc::new(BinaryArray::from(vec![
        b"/ok".as_ref(),
        b"/bad\xc3\x28".as_ref(),
    ]));
    let bad = batch(vec![
        ("ts", ts(vec![JAN_1_2026_US, JAN_1_2026_US])),
        ("page", page),
        ("batch_id", Arc::new(Int64Array::from(vec![1, 1]))),
    ]);
    let err = db.ingest("events", bad).await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidData { column, row: Some(1), class: DataErrorClass::BadEncoding, .. } if column == "page"),
        "{err}"
    );
    assert_unchanged(&db).await;
}

#[tokio::test]
async fn ingest_applies_safe_widening() {
    let (_dir, db) = events_db().await;
    let schema = Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("user_id", DataType::Int32, true),
        Field::new("batch_id", DataType::Int16, false),
    ]);
    let ok = RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(arrow::array::TimestampMillisecondArray::from(vec![
                JAN_1_2026_US / 1000,
            ])),
            Arc::new(arrow::array::Int32Array::from(vec![7])),
            Arc::new(arrow::array::Int16Array::from(vec![99])),
        ],
    )
    .unwrap();
    assert_eq!(db.ingest("events", ok).await.unwrap(), 1);
    assert_eq!(
        query_lines(
            &db,
            "SELECT ts, user_id, page FROM events WHERE batch_id = 99"
        )
        .await,
        vec!["2026-01-01T00:00:00|7|"]
    );
}

#[tokio::test]
async fn insert_is_atomic_when_a_later_row_is_bad() {
    let (_dir, db) = events_db().await;
    let err = db
        .sql("INSERT INTO events (ts, batch_id) VALUES ('2026-01-01 00:00:00', 1), ('2026-01-01 00:00:01', 2), ('2026-01-01 00:00:02', NULL)")
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Data(DataErrorClass::NotNull),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "table \"events\", column \"batch_id\", row 3: null value violates NOT NULL constraint"
    );
    // NOT NULL columns left out of the column list.
    let err = db
        .sql("INSERT INTO events (ts) VALUES ('2026-01-01 00:00:00')")
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Data(DataErrorClass::NotNull),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("table \"events\", column \"batch_id\""),
        "{err}"
    );
    let err = db
        .sql("INSERT INTO events (page) VALUES ('x')")
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Data(DataErrorClass::NotNull),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("table \"events\", column \"ts\""),
        "{err}"
    );
    // Through INSERT … SELECT the row is known too.
    let err = db
        .sql("INSERT INTO events (ts, batch_id) SELECT ts, CASE WHEN user_id IS NULL THEN NULL ELSE 1 END FROM events")
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Data(DataErrorClass::NotNull),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("table \"events\", column \"batch_id\", row "),
        "{err}"
    );
    let err = db
        .sql("INSERT INTO events (ts, batch_id, nope) VALUES ('2026-01-01 00:00:00', 1, 1)")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    let err = db
        .sql("INSERT INTO events (ts, batch_id) VALUES ('not a time', 1)")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a time"), "{err}");
    assert_unchanged(&db).await;
    let n = db.execute("INSERT INTO events (ts, batch_id) VALUES ('2026-01-01 00:00:00', 1), ('2026-01-01 00:00:01', 2)").await.unwrap();
    assert_eq!((n[0].command.as_str(), n[0].rows), ("INSERT", 2));
}

#[tokio::test]
async fn tables_are_append_only() {
    let (_dir, db) = events_db().await;
    for sql in [
        "UPDATE events SET user_id = 1",
        "DELETE FROM events",
        "TRUNCATE events",
    ] {
        let err = db.sql(sql).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotSupported, "{sql}: {err}");
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert_unchanged(&db).await;
}

#[tokio::test]
async fn bad_definitions_are_rejected() {
    let (_dir, db) = events_db().await;
    let cases: &[(&str, ErrorKind)] = &[
        ("CREATE TABLE events (a INT)", ErrorKind::DuplicateTable),
        (
            "CREATE TABLE t (a INT, a BIGINT)",
            ErrorKind::InvalidDefinition,
        ),
        ("CREATE TABLE t (a INTERVAL)", ErrorKind::NotSupported),
        (
            "CREATE TABLE t (a INT) WITH (time_column = 'a')",
            ErrorKind::InvalidDefinition,
        ),
        (
            "CREATE TABLE t (a INT) WITH (time_column = 'b')",
            ErrorKind::UndefinedColumn,
        ),
        (
            "CREATE TABLE t (a INT) WITH (colour = 'red')",
            ErrorKind::InvalidArgument,
        ),
        (
            "CREATE TABLE t (a NUMERIC(50, 2))",
            ErrorKind::InvalidDefinition,
        ),
        (
            "CREATE TABLE t (a INT PRIMARY KEY)",
            ErrorKind::NotSupported,
        ),
        ("CREATE TABLE t AS SELECT 1", ErrorKind::NotSupported),
        ("CREATE TABL t (a INT)", ErrorKind::Syntax),
        ("SELEC 1", ErrorKind::Syntax),
        ("SELECT * FROM missing", ErrorKind::UndefinedTable),
        ("DROP TABLE missing", ErrorKind::UndefinedTable),
        ("CREATE VIEW v AS SELECT 1", ErrorKind::NotSupported),
        // A misspelled parameter is refused by name, never dropped without a word (22023).
        (
            "CREATE MATERIALIZED VIEW v WITH (bogus_option = 'zzz') AS \
             SELECT user_id, count(*) AS n FROM events GROUP BY user_id",
            ErrorKind::InvalidArgument,
        ),
        (
            "ALTER TABLE events SET (retension = '1 day')",
            ErrorKind::InvalidArgument,
        ),
        // One DROP of several tables is atomic: `events` survives the missing name.
        ("DROP TABLE events, missing", ErrorKind::UndefinedTable),
    ];
    for (sql, kind) in cases {
        let err = db.sql(sql).await.map(|_| ()).unwrap_err();
        assert_eq!(err.kind(), *kind, "{sql}: {err}");
    }
    assert_eq!(db.table_names(), vec!["events".to_string()]);
    assert!(db.view_names().is_empty(), "a refused view was created");
    let err = db
        .sql("CREATE MATERIALIZED VIEW v WITH (bogus_option = 'zzz') AS SELECT count(*) AS n FROM events")
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(err.to_string().contains("\"bogus_option\""), "{err}");
    db.sql("CREATE TABLE IF NOT EXISTS events (a INT)")
        .await
        .unwrap();
    assert_eq!(db.table("events").unwrap().columns.len(), 5);
}

#[tokio::test]
async fn a_directory_from_a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    Database::open(&path, test_options())
        .unwrap()
        .close()
        .unwrap();
    {
        let mut opts = rocksdb::Options::default();
        opts.create_missing_column_families(true);
        let families = rocksdb::DB::list_cf(&opts, path.join("rocksdb")).unwrap();
        let db = rocksdb::DB::open_cf(&opts, path.join("rocksdb"), families).unwrap();
        db.put_cf(
            db.cf_handle("meta").unwrap(),
            b"format_version",
            99u32.to_be_bytes(),
        )
        .unwrap();
    }
    let err = Database::open(&path, test_options())
        .err()
        .expect("newer format must be refused");
    assert!(
        matches!(
            err,
            Error::FormatTooNew {
                found: 99,
                supported: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade Tally"), "{err}");
}

/// The checked-in fuzz seeds of the delta-part codec (`fuzz/corpus/view_part`, written by
/// `fuzz/make_seeds.py`) are valid parts whose states walk as reads walk them: fuzzing starts
/// from the real layout. Cut short by one byte, each is refused, not a panic.
#[test]
fn the_delta_part_fuzz_seeds_decode() {
    use tally_engine::fuzzing::decode_delta_part;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/view_part");
    for (name, groups) in [("two_groups", 2), ("no_group_key", 1), ("empty", 0)] {
        let bytes = std::fs::read(format!("{dir}/{name}")).unwrap();
        assert_eq!(decode_delta_part(&bytes).unwrap(), groups, "{name}");
        assert!(
            decode_delta_part(&bytes[..bytes.len() - 1]).is_err(),
            "{name}"
        );
    }
}
