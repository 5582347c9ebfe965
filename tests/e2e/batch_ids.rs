//! Idempotent retries: a batch id recorded with the rows makes a retried ingest or COPY an
//! acknowledged no-op, through the library, across a reopen, and over the wire after a dropped
//! connection.

use std::time::Duration;

use bytes::Bytes;
use futures::SinkExt;
use tally_engine::Options;
use tally_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::bulk::segment_files;
use super::pg::{TestServer, simple_value};
use super::pg_robustness::startup_packet;

const VIEW: &str = "CREATE MATERIALIZED VIEW per_batch AS \
     SELECT batch_id, count(*) AS n, sum(latency_ms) AS total FROM events GROUP BY batch_id";

#[tokio::test]
async fn a_retried_ingest_with_the_same_batch_id_writes_nothing_even_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    let db = tally_engine::Database::open(&path, test_options()).unwrap();
    db.sql(EVENTS_DDL).await.unwrap();
    db.sql(VIEW).await.unwrap();

    let first = db
        .ingest_with_batch_id("events", events_batch(1, 500, 2), "load-1")
        .await
        .unwrap();
    assert_eq!((first.rows, first.duplicate), (500, false));
    // A retry, even with different rows: the id decides, and the first commit's count returns.
    let retry = db
        .ingest_with_batch_id("events", events_batch(1, 300, 2), "load-1")
        .await
        .unwrap();
    assert_eq!((retry.rows, retry.duplicate), (500, true));
    // Another id, and the same id on another table, are new batches.
    db.ingest_with_batch_id("events", events_batch(2, 200, 2), "load-2")
        .await
        .unwrap();
    db.sql("CREATE TABLE other (x BIGINT)").await.unwrap();
    let other = arrow::record_batch::RecordBatch::try_new(
        std::sync::Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("x", arrow::datatypes::DataType::Int64, true),
        ])),
        vec![std::sync::Arc::new(arrow::array::Int64Array::from(vec![
            1, 2, 3,
        ]))],
    )
    .unwrap();
    let on_other = db
        .ingest_with_batch_id("other", other.clone(), "load-1")
        .await
        .unwrap();
    assert!(!on_other.duplicate);
    assert_eq!(query_i64(&db, "SELECT count(*) FROM events").await, 700);
    assert_eq!(query_i64(&db, "SELECT sum(n) FROM per_batch").await, 700);

    db.close().unwrap();
    let db = tally_engine::Database::open(&path, test_options()).unwrap();
    let after_reopen = db
        .ingest_with_batch_id("events", events_batch(1, 500, 2), "load-1")
        .await
        .unwrap();
    assert!(after_reopen.duplicate, "the id is durable with the rows");
    assert_eq!(query_i64(&db, "SELECT count(*) FROM events").await, 700);
    assert_eq!(
        query_i64(&db, "SELECT n FROM per_batch WHERE batch_id = 1").await,
        500
    );

    // DROP TABLE forgets the table's ids: a new table of that name starts afresh.
    db.sql("DROP TABLE other").await.unwrap();
    db.sql("CREATE TABLE other (x BIGINT)").await.unwrap();
    let again = db
        .ingest_with_batch_id("other", other, "load-1")
        .await
        .unwrap();
    assert!(!again.duplicate);

    let bad = db
        .ingest_with_batch_id("events", events_batch(3, 1, 1), "")
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("batch id"), "{bad}");
    db.close().unwrap();
}

#[tokio::test]
async fn a_duplicate_bulk_ingest_deletes_the_segments_it_spilled() {
    let (dir, db) = temp_db(Options {
        flush_rows: 1_000,
        ..test_options()
    });
    db.sql(EVENTS_DDL).await.unwrap();
    for attempt in 0..2 {
        let mut bulk = db.bulk_ingest("events").unwrap();
        bulk.batch_id("nightly-2026-12-01").unwrap();
        for b in 0..5 {
            bulk.write(events_batch(b, 700, 3)).await.unwrap();
        }
        let receipt = bulk.commit_receipt().await.unwrap();
        assert_eq!(receipt.rows, 3_500);
        assert_eq!(receipt.duplicate, attempt == 1);
    }
    assert_eq!(query_i64(&db, "SELECT count(*) FROM events").await, 3_500);
    let registered: i64 = db.table_stats("events").unwrap().segments as i64;
    assert_eq!(
        segment_files(dir.path()) as i64,
        registered,
        "the duplicate's spilled files are gone"
    );
}

#[tokio::test]
async fn ids_are_forgotten_after_the_window() {
    let (_dir, db) = temp_db(Options {
        batch_id_window: Duration::from_millis(50),
        ..test_options()
    });
    db.sql(EVENTS_DDL).await.unwrap();
    db.ingest_with_batch_id("events", events_batch(1, 10, 1), "a")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Any commit expires what is older than the window.
    db.ingest("events", events_batch(2, 10, 1)).await.unwrap();
    let late = db
        .ingest_with_batch_id("events", events_batch(1, 10, 1), "a")
        .await
        .unwrap();
    assert!(!late.duplicate, "a retry after the window is a new batch");
    assert_eq!(query_i64(&db, "SELECT count(*) FROM events").await, 30);
}

/// A protocol message: type byte, length, body.
fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// Sends a whole COPY with `batch_id` on a raw connection and closes it without reading the
/// answer (the client's view of a dropped connection: it cannot know whether the COPY
/// committed).
async fn copy_and_hang_up(server: &TestServer, batch_id: &str, data: &str) {
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    socket.write_all(&startup_packet()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // Wait for ReadyForQuery ('Z') after authentication.
    while !seen.contains(&b'Z') {
        let n = socket.read(&mut buf).await.unwrap();
        assert!(n > 0, "server closed during startup");
        seen.extend_from_slice(&buf[..n]);
    }
    let sql = format!("COPY events FROM STDIN (FORMAT csv, batch_id '{batch_id}')\0");
    let mut out = message(b'Q', sql.as_bytes());
    out.extend(message(b'd', data.as_bytes()));
    out.extend(message(b'c', &[]));
    socket.write_all(&out).await.unwrap();
    drop(socket);
}

fn csv_rows(batch: i64, rows: usize) -> String {
    (0..rows)
        .map(|i| format!("2026-01-01 00:00:{:02},{i},/p/{i},1.5,{batch}\n", i % 60))
        .collect()
}

#[tokio::test]
async fn a_copy_retried_after_a_dropped_connection_is_stored_once() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    client.batch_execute(EVENTS_DDL).await.unwrap();
    client.batch_execute(VIEW).await.unwrap();
    for batch in 1..=5i64 {
        let id = format!("copy-{batch}");
        let data = csv_rows(batch, 100 + batch as usize);
        copy_and_hang_up(&server, &id, &data).await;
        // The server commits a COPY whose CopyDone it received, answered or not: once the first
        // try is visible, the retry below must be the duplicate.
        let count = format!("SELECT count(*) FROM events WHERE batch_id = {batch}");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while simple_value(&client, &count).await == "0" && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            simple_value(&client, &count).await,
            (100 + batch).to_string(),
            "the hung-up COPY committed"
        );
        // The client retries until it gets an acknowledgement, whatever became of the first try.
        let sql = format!("COPY events FROM STDIN (FORMAT csv, batch_id '{id}')");
        let sink = client.copy_in::<_, Bytes>(sql.as_str()).await.unwrap();
        futures::pin_mut!(sink);
        sink.send(Bytes::from(data)).await.unwrap();
        let rows = sink.as_mut().finish().await.unwrap();
        assert_eq!(
            rows,
            100 + batch as u64,
            "the acknowledgement counts the batch"
        );
        let stored = simple_value(
            &client,
            &format!("SELECT count(*) FROM events WHERE batch_id = {batch}"),
        )
        .await;
        assert_eq!(
            stored,
            (100 + batch).to_string(),
            "batch {batch} stored once"
        );
        let in_view = simple_value(
            &client,
            &format!("SELECT n FROM per_batch WHERE batch_id = {batch}"),
        )
        .await;
        assert_eq!(
            in_view,
            (100 + batch).to_string(),
            "view counts batch {batch} once"
        );
    }

    // Inside a transaction block the block's COMMIT is the unit of retry: refused.
    client.batch_execute("BEGIN").await.unwrap();
    let err = client
        .copy_in::<_, Bytes>("COPY events FROM STDIN (FORMAT csv, batch_id 'tx')")
        .await
        .err()
        .expect("refused in a transaction block");
    assert_eq!(super::pg::code(&err), "0A000");
    client.batch_execute("ROLLBACK").await.unwrap();
    server.stop().await;
}
