//! COPY over the Postgres wire protocol: text and csv in, text and csv out, every bad-input
//! case (nothing is stored, the connection stays usable), CopyFail and disconnects.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio_postgres::Client;

use crate::pg::{TestServer, code, simple_value};

const EVENTS: &str = "CREATE TABLE events (ts TIMESTAMP NOT NULL, user_id BIGINT, page TEXT, ok BOOLEAN, n SMALLINT)";

/// Sends `data` through COPY in odd-sized chunks, so rows are split anywhere.
async fn copy_in(client: &Client, sql: &str, data: &[u8]) -> Result<u64, tokio_postgres::Error> {
    let sink = client.copy_in::<_, Bytes>(sql).await?;
    futures::pin_mut!(sink);
    for chunk in data.chunks(4099) {
        sink.send(Bytes::copy_from_slice(chunk)).await?;
    }
    sink.as_mut().finish().await
}

async fn count(client: &Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0)
}

fn text_rows(rows: usize) -> String {
    let mut data = String::new();
    for i in 0..rows {
        let page = if i % 7 == 0 {
            "\\N".to_string()
        } else {
            format!("/p\\t{i}")
        };
        data.push_str(&format!(
            "2026-01-01 00:{:02}:{:02}\t{i}\t{page}\t{}\t{}\n",
            (i / 60) % 60,
            i % 60,
            if i % 2 == 0 { "t" } else { "false" },
            i % 100
        ));
    }
    data
}

#[tokio::test]
async fn copy_text_in_chunks_commits_every_row_once() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    client.batch_execute(EVENTS).await.unwrap();
    let rows = copy_in(
        &client,
        "COPY events FROM STDIN",
        text_rows(20_000).as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(rows, 20_000);
    assert_eq!(count(&client).await, 20_000);
    let nulls = simple_value(&client, "SELECT count(*) FROM events WHERE page IS NULL").await;
    assert_eq!(nulls, (20_000 / 7 + 1).to_string());
    let page = simple_value(&client, "SELECT page FROM events WHERE user_id = 1").await;
    assert_eq!(page, "/p\t1", "backslash escapes are decoded");
    // A column list fills the other nullable columns with NULL.
    let rows = copy_in(
        &client,
        "COPY events (user_id, ts) FROM STDIN",
        b"5\t2026-02-01 00:00:00\n6\t2026-02-01 00:00:01",
    )
    .await
    .unwrap();
    assert_eq!(rows, 2, "an unterminated last line is a row");
    server.stop().await;
}

#[tokio::test]
async fn copy_csv_with_options() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    client.batch_execute(EVENTS).await.unwrap();
    let data = "ts;user_id;page;ok;n\r\n\
                2026-01-01 00:00:00;1;'a;b';t;1\r\n\
                2026-01-01 00:00:01;NA;'multi\nline';f;2\r\n\
                2026-01-01 00:00:02;3;'it\\'s';NA;3\r\n\
                2026-01-01 00:00:03;4;'';true;4\r\n\
                2026-01-01 00:00:04;5;NA;false;NA\r\n";
    let rows = copy_in(
        &client,
        "COPY events FROM STDIN WITH (FORMAT csv, HEADER true, DELIMITER ';', NULL 'NA', QUOTE '''', ESCAPE '\\')",
        data.as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(rows, 5);
    let rows = crate::pg::simple_rows(
        &client,
        "SELECT user_id, page, ok, n FROM events ORDER BY ts",
    )
    .await;
    let cell = |r: usize, c: usize| rows[r][c].clone();
    assert_eq!(cell(0, 1).as_deref(), Some("a;b"));
    assert_eq!(cell(1, 0), None);
    assert_eq!(cell(1, 1).as_deref(), Some("multi\nline"));
    assert_eq!(cell(2, 1).as_deref(), Some("it's"));
    assert_eq!(cell(2, 2), None);
    assert_eq!(
        cell(3, 1).as_deref(),
        Some(""),
        "a quoted empty string is not NULL"
    );
    assert_eq!(cell(4, 1), None);
    assert_eq!(cell(4, 3), None);
    // Plain csv with the legacy syntax psql users type.
    let rows = copy_in(
        &client,
        "COPY events (ts, user_id) FROM STDIN CSV HEADER",
        b"ts,user_id\n2026-03-01 00:00:00,\"9\"\n",
    )
    .await
    .unwrap();
    assert_eq!(rows, 1);
    server.stop().await;
}

#[tokio::test]
async fn every_bad_copy_input_stores_nothing_and_names_the_line() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    client.batch_execute(EVENTS).await.unwrap();
    let good = text_rows(10_000);
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "invalid integer",
            format!("{good}2026-01-01 00:00:00\tabc\t/x\tt\t1\n"),
            "22P02",
            "COPY events, line 10001, column user_id: \"abc\"",
        ),
        (
            "smallint out of range",
            format!("{good}2026-01-01 00:00:00\t1\t/x\tt\t70000\n"),
            "22003",
            "column n: \"70000\"",
        ),
        (
            "NULL in a NOT NULL column",
            format!("\\N\t1\t/x\tt\t1\n{good}"),
            "23502",
            "COPY events, line 1",
        ),
        (
            "bad timestamp",
            format!("{good}yesterday\t1\t/x\tt\t1"),
            "22P02",
            "column ts: \"yesterday\"",
        ),
        (
            "bad boolean",
            format!("{good}2026-01-01 00:00:00\t1\t/x\tmaybe\t1\n"),
            "22P02",
            "column ok: \"maybe\"",
        ),
        (
            "missing column",
            format!("{good}2026-01-01 00:00:00\t1\n"),
            "22P04",
            "line 10001",
        ),
        (
            "NUL byte",
            format!("{good}2026-01-01 00:00:00\t1\t/a\0b\tt\t1\n"),
            "22021",
            "COPY events, line 10001",
        ),
        (
            "an escape that makes invalid UTF-8",
            format!("{good}2026-01-01 00:00:00\t1\t/\\xff\tt\t1\n"),
            "22021",
            "COPY events, line 10001",
        ),
        ("empty line", format!("{good}\n"), "22P04", "line 10001"),
        (
            "bigint overflow",
            format!("{good}2026-01-01 00:00:00\t99999999999999999999\t/x\tt\t1\n"),
            "22003",
            "column user_id: \"99999999999999999999\"",
        ),
        (
            "extra column",
            format!("2026-01-01 00:00:00\t1\t/x\tt\t1\textra\n{good}"),
            "22P04",
            "line 1",
        ),
    ];
    for (what, data, expected, context) in cases {
        let err = copy_in(&client, "COPY events FROM STDIN", data.as_bytes())
            .await
            .unwrap_err();
        assert_eq!(code(&err), expected, "{what}: {err:?}");
        let db = err.as_db_error().expect("a server error");
        let where_ = db.where_().unwrap_or_default();
        assert!(where_.contains(context), "{what}: CONTEXT {where_:?}");
        assert_eq!(count(&client).await, 0, "{what}: nothing is stored");
    }
    let csv_cases: Vec<(&str, &str, &str)> = vec![
        (
            "unterminated quote",
            "2026-01-01 00:00:00,1,\"open\n",
            "22P04",
        ),
        (
            "replacement character is fine",
            "2026-01-01 00:00:00,1,\u{fffd},t,1\n",
            "OK",
        ),
        ("unknown column", "", "42703"),
    ];
    for (what, data, expected) in csv_cases {
        let sql = if what == "unknown column" {
            "COPY events (ts, nope) FROM STDIN (FORMAT csv)"
        } else {
            "COPY events FROM STDIN (FORMAT csv)"
        };
        let result = copy_in(&client, sql, data.as_bytes()).await;
        match expected {
            "OK" => {
                result.unwrap();
            }
            expected => assert_eq!(code(&result.unwrap_err()), expected, "{what}"),
        }
    }
    let err = copy_in(
        &client,
        "COPY events FROM STDIN (FORMAT csv)",
        b"2026-01-01 00:00:00,1,\xff\xfe,t,1\n",
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), "22021");
    assert_eq!(count(&client).await, 1, "only the valid csv row above");
    // A 16 MB field is stored whole, and the connection goes on.
    let big = "x".repeat(16 << 20);
    let rows = copy_in(
        &client,
        "COPY events (ts, page) FROM STDIN",
        format!("2026-01-02 00:00:00\t{big}\n").as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(rows, 1);
    let length = simple_value(&client, "SELECT max(length(page)) FROM events").await;
    assert_eq!(length, (16 << 20).to_string());
    let err = copy_in(&client, "COPY missing FROM STDIN", b"")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "42P01");
    assert_eq!(simple_value(&client, "SELECT 1").await, "1");
    server.stop().await;
}

#[tokio::test]
async fn copy_fail_and_disconnects_leave_nothing() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    client.batch_execute(EVENTS).await.unwrap();
    // The client aborts the COPY (tokio-postgres sends CopyFail when the sink is dropped).
    {
        let sink = client
            .copy_in::<_, Bytes>("COPY events FROM STDIN")
            .await
            .unwrap();
        futures::pin_mut!(sink);
        sink.send(Bytes::from(text_rows(10_000))).await.unwrap();
    }
    assert_eq!(simple_value(&client, "SELECT 1").await, "1");
    assert_eq!(count(&client).await, 0);

    // A client that disconnects mid-COPY.
    let (doomed, connection) = tokio_postgres::connect(&server.conninfo(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let sink = doomed
        .copy_in::<_, Bytes>("COPY events FROM STDIN")
        .await
        .unwrap();
    futures::pin_mut!(sink);
    sink.send(Bytes::from(text_rows(20_000))).await.unwrap();
    sink.flush().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    connection.abort();
    let _ = connection.await;
    drop(doomed);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(count(&client).await, 0);
    // The table takes a new COPY.
    let rows = copy_in(&client, "COPY events FROM STDIN", text_rows(3).as_bytes())
        .await
        .unwrap();
    assert_eq!(rows, 3);
    server.stop().await;
}

async fn copy_out(client: &Client, sql: &str) -> String {
    let stream = client.copy_out(sql).await.unwrap();
    futures::pin_mut!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn copy_to_stdout_in_text_and_csv() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    client.batch_execute(EVENTS).await.unwrap();
    client
        .batch_execute(
            "INSERT INTO events VALUES ('2026-01-01 00:00:00', 1, 'a\tb', true, 1), \
             ('2026-01-01 00:00:01', NULL, 'say \"hi\", ok', NULL, 2)",
        )
        .await
        .unwrap();
    let text = copy_out(&client, "COPY events TO STDOUT").await;
    assert_eq!(
        text,
        "2026-01-01 00:00:00\t1\ta\\tb\tt\t1\n2026-01-01 00:00:01\t\\N\tsay \"hi\", ok\t\\N\t2\n"
    );
    let csv = copy_out(
        &client,
        "COPY (SELECT user_id, page FROM events ORDER BY ts) TO STDOUT WITH (FORMAT csv, HEADER)",
    )
    .await;
    assert_eq!(csv, "user_id,page\n1,a\tb\n,\"say \"\"hi\"\", ok\"\n");
    // What COPY TO writes, COPY FROM reads back.
    client
        .batch_execute(
            "CREATE TABLE copy2 (ts TIMESTAMP NOT NULL, user_id BIGINT, page TEXT, ok BOOLEAN, n SMALLINT)",
        )
        .await
        .unwrap();
    let rows = copy_in(&client, "COPY copy2 FROM STDIN", text.as_bytes())
        .await
        .unwrap();
    assert_eq!(rows, 2);
    assert_eq!(copy_out(&client, "COPY copy2 TO STDOUT").await, text);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_to_and_from_parquet_files_on_the_server() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    client.batch_execute(EVENTS).await.unwrap();
    copy_in(
        &client,
        "COPY events FROM STDIN",
        text_rows(20_000).as_bytes(),
    )
    .await
    .unwrap();
    let file = server.dir.path().join("events.parquet");
    let path = file.to_str().unwrap();
    let written = client
        .execute(
            &format!("COPY (SELECT * FROM events ORDER BY user_id) TO '{path}' (FORMAT parquet)"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(written, 20_000);
    assert!(file.exists());
    // Into a fresh table with a view: one commit, the view counts every row.
    client
        .batch_execute(&format!(
            "{};
             CREATE MATERIALIZED VIEW loaded_by_ok AS SELECT ok, count(*) AS n, sum(n) AS s FROM loaded GROUP BY ok",
            EVENTS.replace("events", "loaded")
        ))
        .await
        .unwrap();
    let loaded = client
        .execute(&format!("COPY loaded FROM '{path}' (FORMAT parquet)"), &[])
        .await
        .unwrap();
    assert_eq!(loaded, 20_000);
    let same = "SELECT count(*) || ',' || sum(user_id) || ',' || count(page) || ',' || min(ts) || ',' || max(ts)";
    assert_eq!(
        simple_value(&client, &format!("{same} FROM loaded")).await,
        simple_value(&client, &format!("{same} FROM events")).await,
    );
    assert_eq!(
        simple_value(
            &client,
            "SELECT string_agg(ok || ':' || n || ':' || s, ',' ORDER BY ok) FROM loaded_by_ok"
        )
        .await,
        simple_value(
            &client,
            "SELECT string_agg(ok || ':' || n || ':' || s, ',' ORDER BY ok) FROM
                 (SELECT ok, count(*) AS n, sum(n) AS s FROM events GROUP BY ok) r"
        )
        .await,
    );
    // A relative path is under the data directory, both ways.
    client
        .batch_execute("COPY events TO 'relative.parquet' (FORMAT parquet); COPY loaded FROM 'relative.parquet' (FORMAT parquet)")
        .await
        .unwrap();
    assert_eq!(
        simple_value(&client, "SELECT count(*) FROM loaded").await,
        "40000"
    );
    // In a transaction block the load is held: ROLLBACK discards it, COMMIT writes it.
    client
        .batch_execute(&format!(
            "BEGIN; COPY loaded FROM '{path}' (FORMAT parquet)"
        ))
        .await
        .unwrap();
    let in_block = simple_value(&client, "SELECT count(*) FROM loaded").await;
    assert_eq!(in_block, "60000", "the block reads its own load");
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        simple_value(&client, "SELECT count(*) FROM loaded").await,
        "40000"
    );
    client
        .batch_execute(&format!(
            "BEGIN; COPY loaded FROM '{path}' (FORMAT parquet); COMMIT"
        ))
        .await
        .unwrap();
    let committed = simple_value(&client, "SELECT count(*) FROM loaded").await;
    assert_eq!(committed, "60000");
    // Refusals: each leaves the table as it was.
    std::fs::write(server.dir.path().join("not.parquet"), "id,page\n1,/a\n").unwrap();
    let not_parquet = server.dir.path().join("not.parquet");
    let cases = [
        (
            "a missing file".to_string(),
            "COPY loaded FROM '/nonexistent/x.parquet' (FORMAT parquet)".to_string(),
            "58P01",
        ),
        (
            "not a parquet file".into(),
            format!(
                "COPY loaded FROM '{}' (FORMAT parquet)",
                not_parquet.display()
            ),
            "22P04",
        ),
        (
            "a path with ..".into(),
            "COPY loaded FROM '../x.parquet' (FORMAT parquet)".into(),
            "42501",
        ),
        (
            "parquet from STDIN".into(),
            "COPY loaded FROM STDIN (FORMAT parquet)".into(),
            "0A000",
        ),
        (
            "csv from a file".into(),
            format!("COPY loaded FROM '{path}' (FORMAT csv)"),
            "0A000",
        ),
        (
            "a column list".into(),
            format!("COPY loaded (ts) FROM '{path}' (FORMAT parquet)"),
            "0A000",
        ),
        (
            "another option".into(),
            format!("COPY loaded FROM '{path}' (FORMAT parquet, HEADER)"),
            "42601",
        ),
    ];
    for (what, sql, expected) in cases {
        let err = client.batch_execute(&sql).await.unwrap_err();
        assert_eq!(code(&err), expected, "{what}: {err:?}");
    }
    let after = simple_value(&client, "SELECT count(*) FROM loaded").await;
    assert_eq!(after, "60000");
    server.stop().await;
}
