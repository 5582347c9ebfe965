//! Query results streamed to the client: large results through both protocols with the right
//! row count, errors that happen after rows were sent, and clients that cancel or leave while
//! rows are still coming.

use std::time::{Duration, Instant};

use futures::{StreamExt, pin_mut};
use tokio_postgres::{NoTls, SimpleQueryMessage};

use super::pg::{TestServer, code, simple_rows, simple_value};

const ROWS: i64 = 200_000;

/// A query whose error (division by zero) comes from one of its last rows: after rows of
/// earlier batches were sent.
const LATE_ERROR: &str = "SELECT value, 10 / (value - 190000) FROM generate_series(1, 200000)";

/// A query with more rows than any test reads.
const ENDLESS: &str = "SELECT value FROM generate_series(1, 100000000000)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_results_arrive_whole_with_their_row_count() {
    let server = TestServer::start().await;
    let client = server.connect().await;

    // Simple protocol: every row, and the CommandComplete count.
    let messages = client
        .simple_query(&format!("SELECT value FROM generate_series(1, {ROWS})"))
        .await
        .unwrap();
    let mut rows = 0i64;
    let mut sum = 0i64;
    let mut complete = None;
    for message in &messages {
        match message {
            SimpleQueryMessage::Row(row) => {
                rows += 1;
                sum += row.get(0).unwrap().parse::<i64>().unwrap();
            }
            SimpleQueryMessage::CommandComplete(n) => complete = Some(*n),
            _ => {}
        }
    }
    assert_eq!(rows, ROWS);
    assert_eq!(sum, ROWS * (ROWS + 1) / 2);
    assert_eq!(complete, Some(ROWS as u64));

    // Extended protocol, binary, with a parameter: `query_raw` reads the rows as they come.
    let stream = client
        .query_raw(
            &format!(
                "SELECT value, value * 2 AS twice FROM generate_series(1, {ROWS}) \
                 WHERE value > $1"
            ),
            [0i64],
        )
        .await
        .unwrap();
    pin_mut!(stream);
    // (A filter over two partitions does not keep generate_series' order.)
    let mut seen = vec![false; ROWS as usize + 1];
    while let Some(row) = stream.next().await {
        let row = row.unwrap();
        let value: i64 = row.get(0);
        assert_eq!(row.get::<_, i64>(1), value * 2);
        assert!(
            !std::mem::replace(&mut seen[value as usize], true),
            "{value} twice"
        );
    }
    assert!(seen[1..].iter().all(|s| *s), "every row arrived");
    assert_eq!(stream.rows_affected(), Some(ROWS as u64));

    // A table's rows, from segments and hot rows alike.
    client
        .batch_execute("CREATE TABLE big (x BIGINT NOT NULL, label TEXT)")
        .await
        .unwrap();
    client
        .batch_execute(&format!(
            "INSERT INTO big SELECT value, 'row ' || value FROM generate_series(1, {})",
            ROWS / 2
        ))
        .await
        .unwrap();
    server.db.flush().await.unwrap();
    client
        .batch_execute(&format!(
            "INSERT INTO big SELECT value, 'row ' || value FROM generate_series({}, {ROWS})",
            ROWS / 2 + 1
        ))
        .await
        .unwrap();
    let rows = client
        .query("SELECT x, label FROM big ORDER BY x", &[])
        .await
        .unwrap();
    assert_eq!(rows.len() as i64, ROWS);
    for (i, row) in rows.iter().enumerate() {
        let x: i64 = row.get(0);
        assert_eq!(x, i as i64 + 1);
        assert_eq!(row.get::<_, String>(1), format!("row {x}"));
    }
    // An empty result still completes with a count of zero.
    let messages = client
        .simple_query("SELECT x FROM big WHERE x < 0")
        .await
        .unwrap();
    assert!(
        matches!(
            messages.last(),
            Some(SimpleQueryMessage::CommandComplete(0))
        ),
        "{messages:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_after_rows_were_sent_reaches_the_client() {
    let server = TestServer::start().await;
    let mut client = server.connect().await;
    client
        .batch_execute("CREATE TABLE t (x BIGINT)")
        .await
        .unwrap();

    // Simple protocol.
    let err = client.simple_query(LATE_ERROR).await.unwrap_err();
    assert_eq!(code(&err), "22012", "{err:?}");
    assert_eq!(simple_value(&client, "SELECT 1").await, "1");

    // A statement after the failing one in the same query string does not run.
    let err = client
        .batch_execute(&format!("{LATE_ERROR}; INSERT INTO t VALUES (1)"))
        .await
        .unwrap_err();
    assert_eq!(code(&err), "22012", "{err:?}");
    assert_eq!(simple_value(&client, "SELECT count(*) FROM t").await, "0");

    // Extended protocol, reading rows as they come: some arrive, then the error.
    let stream = client
        .query_raw(LATE_ERROR, Vec::<i64>::new())
        .await
        .unwrap();
    pin_mut!(stream);
    let mut rows = 0;
    let err = loop {
        match stream.next().await {
            Some(Ok(_)) => rows += 1,
            Some(Err(e)) => break e,
            None => panic!("the query ended without its error after {rows} rows"),
        }
    };
    assert_eq!(code(&err), "22012", "{err:?}");
    assert!(rows > 0, "rows before the failing batch were sent first");
    let err = client.query(LATE_ERROR, &[]).await.unwrap_err();
    assert_eq!(code(&err), "22012", "{err:?}");
    let one: i64 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);

    // In a transaction block the error fails the block, as any failed statement does.
    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO t VALUES (2)", &[]).await.unwrap();
    let err = tx.query(LATE_ERROR, &[]).await.unwrap_err();
    assert_eq!(code(&err), "22012", "{err:?}");
    let err = tx.query("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(code(&err), "25P02", "{err:?}");
    tx.rollback().await.unwrap();
    assert_eq!(simple_value(&client, "SELECT count(*) FROM t").await, "0");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portals_with_a_row_limit_read_a_large_result_in_pieces() {
    let server = TestServer::start().await;
    let mut client = server.connect().await;
    let tx = client.transaction().await.unwrap();
    let portal = tx
        .bind(
            &format!("SELECT value FROM generate_series(1, {ROWS}) WHERE value > $1"),
            &[&0i64],
        )
        .await
        .unwrap();
    let mut seen = 0i64;
    let mut sum = 0i64;
    loop {
        let rows = tx.query_portal(&portal, 30_000).await.unwrap();
        assert!(rows.len() <= 30_000);
        if rows.is_empty() {
            break;
        }
        seen += rows.len() as i64;
        sum += rows.iter().map(|r| r.get::<_, i64>(0)).sum::<i64>();
    }
    assert_eq!(seen, ROWS);
    assert_eq!(sum, ROWS * (ROWS + 1) / 2);
    // A portal whose query fails in a later piece reports it on that Execute.
    let portal = tx.bind(LATE_ERROR, &[]).await.unwrap();
    let first = tx.query_portal(&portal, 1_000).await.unwrap();
    assert_eq!(first.len(), 1_000);
    let err = loop {
        match tx.query_portal(&portal, 50_000).await {
            Ok(rows) => assert!(!rows.is_empty(), "the portal ended without its error"),
            Err(e) => break e,
        }
    };
    assert_eq!(code(&err), "22012", "{err:?}");
    tx.rollback().await.unwrap();
    assert_eq!(simple_value(&client, "SELECT 1").await, "1");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_rows_arrive_before_the_query_ends_and_cancel_stops_it() {
    let server = TestServer::start().await;
    let client = server.connect().await;

    // A hundred billion rows could not be collected first: the first ones arrive at once.
    let started = Instant::now();
    let stream = client.query_raw(ENDLESS, Vec::<i64>::new()).await.unwrap();
    pin_mut!(stream);
    for expected in 1..=10_000i64 {
        let row = stream.next().await.unwrap().unwrap();
        assert_eq!(row.get::<_, i64>(0), expected);
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    // A cancel request stops it while rows are being sent.
    client.cancel_token().cancel_query(NoTls).await.unwrap();
    let err = loop {
        match stream.next().await {
            Some(Ok(_)) => {}
            Some(Err(e)) => break e,
            None => panic!("the query ended without being cancelled"),
        }
    };
    assert_eq!(code(&err), "57014", "{err:?}");
    assert_eq!(simple_value(&client, "SELECT 1").await, "1");

    // The statement_timeout covers the time spent sending rows, in both protocols.
    client
        .batch_execute("SET statement_timeout = 300")
        .await
        .unwrap();
    let stream = client.query_raw(ENDLESS, Vec::<i64>::new()).await.unwrap();
    pin_mut!(stream);
    let err = loop {
        match stream.next().await {
            Some(Ok(_)) => {}
            Some(Err(e)) => break e,
            None => panic!("the query ended without timing out"),
        }
    };
    assert_eq!(code(&err), "57014", "{err:?}");
    let err = client.batch_execute(ENDLESS).await.unwrap_err();
    assert_eq!(code(&err), "57014", "{err:?}");
    assert_eq!(simple_value(&client, "SELECT 1").await, "1");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_stream_ends_its_session() {
    let server = TestServer::start().await;
    let observer = server.connect().await;
    let (client, connection) = tokio_postgres::connect(&server.conninfo(), NoTls)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let stream = client.query_raw(ENDLESS, Vec::<i64>::new()).await.unwrap();
    pin_mut!(stream);
    for _ in 0..1_000 {
        stream.next().await.unwrap().unwrap();
    }
    // The client goes without a word: its socket closes with rows still coming.
    connection.abort();
    let _ = connection.await;
    let mut sessions = Vec::new();
    for _ in 0..500 {
        sessions = simple_rows(&observer, "SELECT pid FROM tally_sessions").await;
        if sessions.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        sessions.len(),
        1,
        "the streaming session ended: {sessions:?}"
    );
    // The server still answers, and stops cleanly (no query is left running).
    assert_eq!(simple_value(&observer, "SELECT 1").await, "1");
    server.stop().await;
}
