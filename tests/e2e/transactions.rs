//! Transaction blocks through the library API: held writes, one atomic commit across tables
//! and views, rollback, savepoints, held bulk loads.

use tally_engine::{Database, Error, Options, Transaction};
use tally_tests::*;

const ORDERS: &str =
    "CREATE TABLE orders (ts TIMESTAMP NOT NULL, id BIGINT NOT NULL, amount DOUBLE PRECISION)";
const PAYMENTS: &str = "CREATE TABLE payments (ts TIMESTAMP NOT NULL, id BIGINT NOT NULL)";

async fn setup(options: Options) -> (tempfile::TempDir, Database) {
    let (dir, db) = temp_db(options);
    db.sql(ORDERS).await.unwrap();
    db.sql(PAYMENTS).await.unwrap();
    db.sql(
        "CREATE MATERIALIZED VIEW order_totals AS \
         SELECT id, count(*) AS n, sum(amount) AS total FROM orders GROUP BY id",
    )
    .await
    .unwrap();
    (dir, db)
}

/// A count read inside a transaction.
async fn tx_count(tx: &Transaction, sql: &str) -> i64 {
    let result = tx.execute(sql).await.unwrap().pop().unwrap();
    let column = tally_engine::reexports::arrow::compute::cast(
        result.batches[0].column(0),
        &tally_engine::reexports::arrow::datatypes::DataType::Int64,
    )
    .unwrap();
    column
        .as_any()
        .downcast_ref::<tally_engine::reexports::arrow::array::Int64Array>()
        .unwrap()
        .value(0)
}

async fn counts(db: &Database) -> (i64, i64, i64) {
    (
        query_i64(db, "SELECT count(*) FROM orders").await,
        query_i64(db, "SELECT count(*) FROM payments").await,
        query_i64(db, "SELECT coalesce(sum(n), 0) FROM order_totals").await,
    )
}

#[tokio::test]
async fn a_transaction_commits_every_table_and_view_at_once() {
    let (_dir, db) = setup(test_options()).await;
    let tx = db.begin();
    tx.execute("INSERT INTO orders VALUES ('2026-01-01 00:00:00', 1, 9.5), ('2026-01-01 00:00:01', 2, 1.0)")
        .await
        .unwrap();
    tx.execute("INSERT INTO payments VALUES ('2026-01-01 00:00:02', 1)")
        .await
        .unwrap();
    tx.ingest("orders", events_like_orders(3)).await.unwrap();
    assert_eq!(tx.held_rows(), 6);
    // Held: others see nothing; the transaction reads its own rows (not yet in its views).
    assert_eq!(counts(&db).await, (0, 0, 0));
    assert_eq!(tx_count(&tx, "SELECT count(*) FROM orders").await, 5);
    assert_eq!(tx_count(&tx, "SELECT count(*) FROM order_totals").await, 0);
    assert_eq!(tx.commit().await.unwrap(), 6);
    assert_eq!(counts(&db).await, (5, 1, 5));
    let recomputed = raw_lines(
        &db,
        "SELECT id, count(*), sum(amount) FROM orders GROUP BY id ORDER BY id",
    )
    .await;
    let view = query_lines(&db, "SELECT id, n, total FROM order_totals ORDER BY id").await;
    assert_eq!(
        view, recomputed,
        "the view equals its recompute after the commit"
    );
}

/// Three orders with ids 10, 11, 12 as an Arrow batch.
fn events_like_orders(rows: usize) -> tally_engine::reexports::arrow::array::RecordBatch {
    use std::sync::Arc;
    use tally_engine::reexports::arrow::array::{
        Float64Array, Int64Array, RecordBatch, TimestampMicrosecondArray,
    };
    use tally_engine::reexports::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("id", DataType::Int64, false),
        Field::new("amount", DataType::Float64, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(TimestampMicrosecondArray::from(vec![JAN_1_2026_US; rows])),
            Arc::new(Int64Array::from((10..10 + rows as i64).collect::<Vec<_>>())),
            Arc::new(Float64Array::from(vec![2.5; rows])),
        ],
    )
    .unwrap()
}

#[tokio::test]
async fn rollback_and_drop_discard_the_held_rows() {
    let (_dir, db) = setup(test_options()).await;
    let tx = db.begin();
    tx.execute("INSERT INTO orders VALUES ('2026-01-01 00:00:00', 1, 9.5)")
        .await
        .unwrap();
    tx.rollback();
    let tx = db.begin();
    tx.execute("INSERT INTO payments VALUES ('2026-01-01 00:00:00', 1)")
        .await
        .unwrap();
    drop(tx);
    assert_eq!(counts(&db).await, (0, 0, 0));
    // A row that breaks the schema fails its statement at once, not the commit.
    let tx = db.begin();
    let err = tx
        .execute("INSERT INTO orders VALUES (NULL, 1, 1.0)")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ts"), "{err}");
    assert_eq!(tx.commit().await.unwrap(), 0);
}

#[tokio::test]
async fn savepoints_discard_only_what_follows_them() {
    let (_dir, db) = setup(test_options()).await;
    let mut tx = db.begin();
    let insert = |id: i64| format!("INSERT INTO orders VALUES ('2026-01-01 00:00:00', {id}, 1.0)");
    tx.execute(&insert(1)).await.unwrap();
    tx.savepoint("a");
    tx.execute(&insert(2)).await.unwrap();
    tx.savepoint("b");
    tx.execute(&insert(3)).await.unwrap();
    tx.rollback_to("a").unwrap();
    assert_eq!(tx.held_rows(), 1);
    // `b` went with the rollback to `a`; `a` itself stays.
    assert!(matches!(tx.rollback_to("b"), Err(Error::NoSuchSavepoint(name)) if name == "b"));
    tx.execute(&insert(4)).await.unwrap();
    tx.rollback_to("a").unwrap();
    tx.execute(&insert(5)).await.unwrap();
    tx.release("a").unwrap();
    assert!(tx.release("a").is_err(), "released savepoints are gone");
    assert_eq!(tx.commit().await.unwrap(), 2);
    let ids = query_lines(&db, "SELECT id FROM orders ORDER BY id").await;
    assert_eq!(ids, ["1", "5"]);
}

#[tokio::test]
async fn a_commit_that_fails_writes_nothing_of_any_table() {
    let (_dir, db) = setup(test_options()).await;
    let tx = db.begin();
    tx.execute("INSERT INTO orders VALUES ('2026-01-01 00:00:00', 1, 9.5)")
        .await
        .unwrap();
    tx.execute("INSERT INTO payments VALUES ('2026-01-01 00:00:00', 1)")
        .await
        .unwrap();
    db.sql("DROP TABLE payments").await.unwrap();
    let err = tx.commit().await.unwrap_err();
    assert!(
        matches!(err, Error::TableNotFound(ref t) if t == "payments"),
        "{err}"
    );
    assert_eq!(query_i64(&db, "SELECT count(*) FROM orders").await, 0);
    assert_eq!(query_i64(&db, "SELECT count(*) FROM order_totals").await, 0);
}

#[tokio::test]
async fn held_bulk_loads_keep_their_files_until_commit_and_survive_reopen() {
    let options = Options {
        flush_rows: 1_000,
        ..test_options()
    };
    let (dir, db) = temp_db(options);
    db.sql(EVENTS_DDL).await.unwrap();
    db.sql("CREATE MATERIALIZED VIEW per_batch AS SELECT batch_id, count(*) AS n FROM events GROUP BY batch_id")
        .await
        .unwrap();
    let tx = db.begin();
    for round in 0..2 {
        let mut bulk = db.bulk_ingest("events").unwrap();
        for b in 0..4 {
            bulk.write(events_batch(round * 10 + b, 700, 2))
                .await
                .unwrap();
        }
        assert_eq!(tx.hold_bulk(bulk), 2800);
    }
    // A third load is rolled back by a savepoint: its spilled files go.
    let mut tx = tx;
    tx.savepoint("before_third");
    let mut bulk = db.bulk_ingest("events").unwrap();
    bulk.write(events_batch(99, 2500, 2)).await.unwrap();
    tx.hold_bulk(bulk);
    assert_eq!(tx_count(&tx, "SELECT count(*) FROM events").await, 8100);
    tx.rollback_to("before_third").unwrap();
    assert_eq!(
        tx_count(&tx, "SELECT count(*) FROM events").await,
        5600,
        "own spilled and buffered rows"
    );
    assert_eq!(query_i64(&db, "SELECT count(*) FROM events").await, 0);
    assert_eq!(tx.commit().await.unwrap(), 5600);
    assert_eq!(query_i64(&db, "SELECT count(*) FROM events").await, 5600);
    assert_eq!(query_i64(&db, "SELECT sum(n) FROM per_batch").await, 5600);
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM per_batch WHERE batch_id = 99").await,
        0
    );
    db.close().unwrap();
    let db = Database::open(dir.path().join("data"), test_options()).unwrap();
    assert_eq!(query_i64(&db, "SELECT count(*) FROM events").await, 5600);
    let stats = db.table_stats("events").unwrap();
    assert!(
        stats.segments > 0,
        "the held loads registered their segments: {stats:?}"
    );
    // The rolled-back load left no files: every file on disk is a registered segment.
    assert_eq!(crate::bulk::segment_files(dir.path()), stats.segments);
}
