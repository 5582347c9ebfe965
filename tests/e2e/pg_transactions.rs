//! Transaction blocks over the wire: held INSERTs and COPYs, ROLLBACK, savepoints, aborted
//! blocks, and the tags and warnings PostgreSQL gives.

use tokio_postgres::SimpleQueryMessage;

use crate::pg::{TestServer, code, psql, simple_value};

async fn count(client: &tokio_postgres::Client, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get::<_, i64>(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserts_in_a_block_are_held_until_commit_and_undone_by_rollback() {
    let server = TestServer::start().await;
    let mut client = server.connect().await;
    let other = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE t (x BIGINT); CREATE TABLE u (y BIGINT);
             CREATE MATERIALIZED VIEW t_sum AS SELECT count(*) AS n, sum(x) AS s FROM t",
        )
        .await
        .unwrap();
    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO t VALUES ($1), ($2)", &[&7i64, &8i64])
        .await
        .unwrap();
    tx.execute("INSERT INTO u VALUES (1)", &[]).await.unwrap();
    assert_eq!(
        count(&other, "t").await,
        0,
        "held rows are invisible to others"
    );
    let own = tx.query_one("SELECT count(*) FROM t", &[]).await.unwrap();
    assert_eq!(own.get::<_, i64>(0), 2, "the block reads its own rows");
    assert_eq!(
        simple_value(&other, "SELECT n FROM t_sum").await,
        "0",
        "and so does the view"
    );
    tx.commit().await.unwrap();
    assert_eq!((count(&other, "t").await, count(&other, "u").await), (2, 1));
    assert_eq!(simple_value(&other, "SELECT s FROM t_sum").await, "15");

    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO t VALUES (100)", &[]).await.unwrap();
    tx.execute("INSERT INTO u VALUES (100)", &[]).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(
        (count(&client, "t").await, count(&client, "u").await),
        (2, 1)
    );
    assert_eq!(simple_value(&client, "SELECT s FROM t_sum").await, "15");

    // A nested transaction is a savepoint: rolling it back keeps the outer block's rows.
    let mut tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO t VALUES (1)", &[]).await.unwrap();
    let inner = tx.transaction().await.unwrap();
    inner
        .execute("INSERT INTO t VALUES (1000)", &[])
        .await
        .unwrap();
    inner.rollback().await.unwrap();
    let inner = tx.transaction().await.unwrap();
    inner
        .execute("INSERT INTO t VALUES (2)", &[])
        .await
        .unwrap();
    inner.commit().await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(simple_value(&client, "SELECT s FROM t_sum").await, "18");
    // Outside a block every statement still commits on its own.
    client
        .execute("INSERT INTO t VALUES (3)", &[])
        .await
        .unwrap();
    assert_eq!(count(&other, "t").await, 5);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_aborts_the_block_until_rollback_to_a_savepoint_or_the_end() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE t (x BIGINT NOT NULL)")
        .await
        .unwrap();
    client
        .batch_execute("BEGIN; INSERT INTO t VALUES (1); SAVEPOINT s1; INSERT INTO t VALUES (2)")
        .await
        .unwrap();
    let err = client
        .batch_execute("SELECT * FROM nosuch")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "42P01");
    let err = client.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(code(&err), "25P02", "{err}");
    let err = client.execute("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(
        code(&err),
        "25P02",
        "the extended protocol refuses too: {err}"
    );
    // ROLLBACK TO recovers the block and discards the row after the savepoint.
    client
        .batch_execute("ROLLBACK TO SAVEPOINT s1")
        .await
        .unwrap();
    client
        .batch_execute("INSERT INTO t VALUES (3); COMMIT")
        .await
        .unwrap();
    assert_eq!(simple_value(&client, "SELECT sum(x) FROM t").await, "4");

    // COMMIT of an aborted block rolls it back.
    client
        .batch_execute("BEGIN; INSERT INTO t VALUES (10)")
        .await
        .unwrap();
    let err = client
        .batch_execute("INSERT INTO t VALUES (NULL)")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "23502");
    let tags: Vec<u64> = client
        .simple_query("COMMIT")
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(n),
            _ => None,
        })
        .collect();
    assert_eq!(tags, [0]);
    assert_eq!(simple_value(&client, "SELECT sum(x) FROM t").await, "4");

    // Savepoint commands outside a block, and unknown savepoints.
    let err = client.batch_execute("SAVEPOINT s").await.unwrap_err();
    assert_eq!(code(&err), "25P01");
    let err = client
        .batch_execute("BEGIN; RELEASE SAVEPOINT nope")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "3B001");
    client.batch_execute("ROLLBACK").await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_sees_postgres_tags_warnings_and_held_copies() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("rows.csv");
    std::fs::write(&csv, "1\n2\n3\n").unwrap();
    let script = dir.path().join("script.sql");
    std::fs::write(
        &script,
        format!(
            "CREATE TABLE t (x BIGINT);
BEGIN ISOLATION LEVEL SERIALIZABLE;
SET TRANSACTION READ WRITE;
\\copy t FROM '{csv}' WITH (FORMAT csv)
ROLLBACK;
SELECT count(*) AS after_rollback FROM t;
START TRANSACTION;
\\copy t FROM '{csv}' WITH (FORMAT csv)
SAVEPOINT before_second;
\\copy t FROM '{csv}' WITH (FORMAT csv)
ROLLBACK TO before_second;
COMMIT;
SELECT count(*) AS after_commit FROM t;
COMMIT;
BEGIN;
BEGIN;
ROLLBACK;
",
            csv = csv.display()
        ),
    )
    .unwrap();
    let path = script.display().to_string();
    let out = psql(&server, &["-f", &path]).await.unwrap();
    let normalized: Vec<&str> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let expect_in_order = [
        "CREATE TABLE",
        "BEGIN",
        "SET",
        "COPY 3",
        "ROLLBACK",
        "after_rollback",
        "0",
        "START TRANSACTION",
        "COPY 3",
        "SAVEPOINT",
        "COPY 3",
        "ROLLBACK",
        "COMMIT",
        "after_commit",
        "3",
        "COMMIT",
        "BEGIN",
        "BEGIN",
        "ROLLBACK",
    ];
    let mut at = 0;
    for line in &normalized {
        if at < expect_in_order.len() && *line == expect_in_order[at] {
            at += 1;
        }
    }
    assert_eq!(at, expect_in_order.len(), "psql printed:\n{out}");
    server.stop().await;
}
