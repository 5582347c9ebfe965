//! Extended-protocol answers as PostgreSQL gives them, for every kind of command: Describe of a
//! statement or portal without result rows (INSERT, DDL, SET, BEGIN/COMMIT, COPY) is NoData,
//! and its Execute sends only the command tag. JDBC depends on this: `executeUpdate` fails on
//! any RowDescription ("A result was returned when none was expected"), even an empty one.
//! Checked with tokio-postgres (the columns it sees) and on the raw wire (which message came).

use std::time::Duration;

use bytes::Bytes;
use futures::SinkExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::pg::{TestServer, code};
use super::pg_robustness::startup_packet;

const DDL: &str = "CREATE TABLE ext (id BIGINT NOT NULL, label TEXT, ts TIMESTAMP)";

#[tokio::test]
async fn commands_without_rows_describe_no_columns_and_run_with_their_tag() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    // (statement, columns Describe gives, what Execute counts where PostgreSQL counts)
    let cases: &[(&str, usize, Option<u64>)] = &[
        (DDL, 0, Some(0)),
        (
            "INSERT INTO ext (id, label, ts) VALUES ($1, $2, '2026-01-02 03:04:05')",
            0,
            Some(1),
        ),
        ("INSERT INTO ext (id) VALUES (1), (2), (3)", 0, Some(3)),
        ("INSERT INTO ext SELECT * FROM ext", 0, Some(4)),
        ("SET application_name = 'extended'", 0, Some(0)),
        ("RESET application_name", 0, Some(0)),
        ("BEGIN", 0, Some(0)),
        ("COMMIT", 0, Some(0)),
        (
            "CREATE MATERIALIZED VIEW ext_count AS SELECT count(*) AS n FROM ext",
            0,
            Some(0),
        ),
        ("DROP MATERIALIZED VIEW ext_count", 0, Some(0)),
        ("CREATE TABLE ext_scratch (a BIGINT)", 0, Some(0)),
        ("DROP TABLE ext_scratch", 0, Some(0)),
        ("SHOW application_name", 1, None),
        ("SELECT id, label FROM ext WHERE id = $1", 2, Some(4)),
        ("EXPLAIN SELECT * FROM ext", 2, None),
    ];
    for (sql, columns, expected) in cases {
        let statement = client
            .prepare(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(statement.columns().len(), *columns, "columns of {sql}");
        let count = match statement.params().len() {
            0 => client.execute(&statement, &[]).await,
            1 => client.execute(&statement, &[&1i64]).await,
            _ => client.execute(&statement, &[&1i64, &"one"]).await,
        };
        let count = count.unwrap_or_else(|e| panic!("{sql}: {e}"));
        if let Some(expected) = expected {
            assert_eq!(count, *expected, "count of {sql}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn copy_in_and_out_through_prepared_statements() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    client.batch_execute(DDL).await.unwrap();
    let copy_in = "COPY ext (id, label) FROM STDIN (FORMAT csv)";
    assert!(client.prepare(copy_in).await.unwrap().columns().is_empty());
    let sink = client.copy_in::<_, Bytes>(copy_in).await.unwrap();
    futures::pin_mut!(sink);
    sink.send(Bytes::from_static(b"1,a\n2,b\n3,c\n"))
        .await
        .unwrap();
    assert_eq!(sink.finish().await.unwrap(), 3);
    let copy_out = "COPY (SELECT id FROM ext ORDER BY id) TO STDOUT (FORMAT csv, HEADER)";
    assert!(client.prepare(copy_out).await.unwrap().columns().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn insert_returning_is_refused_as_not_supported() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    client.batch_execute(DDL).await.unwrap();
    for sql in [
        "INSERT INTO ext (id) VALUES ($1) RETURNING id",
        "INSERT INTO ext (id) VALUES ($1) RETURNING *",
    ] {
        let err = client.prepare(sql).await.unwrap_err();
        assert_eq!(code(&err), "0A000", "{sql}: {err}");
        let message = err.as_db_error().map(|e| e.message()).unwrap_or_default();
        assert!(message.contains("RETURNING"), "{message}");
    }
    let err = client
        .simple_query("INSERT INTO ext (id) VALUES (1) RETURNING id")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "0A000", "{err}");
    let rows = client.query_one("SELECT count(*) FROM ext", &[]).await;
    assert_eq!(rows.unwrap().get::<_, i64>(0), 0, "nothing was inserted");
    server.stop().await;
}

/// A frontend message: its type byte and body.
fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// `text` as a C string.
fn cstr(text: &str) -> Vec<u8> {
    let mut out = text.as_bytes().to_vec();
    out.push(0);
    out
}

/// Parse (unnamed, no parameter types given), Describe statement, Bind with `params` (text),
/// Describe portal, Execute, Sync.
fn extended_round(sql: &str, params: &[&str]) -> Vec<u8> {
    let mut parse = cstr("");
    parse.extend(cstr(sql));
    parse.extend_from_slice(&0i16.to_be_bytes());
    let mut bind = cstr("");
    bind.extend(cstr(""));
    bind.extend_from_slice(&0i16.to_be_bytes());
    bind.extend_from_slice(&(params.len() as i16).to_be_bytes());
    for param in params {
        bind.extend_from_slice(&(param.len() as i32).to_be_bytes());
        bind.extend_from_slice(param.as_bytes());
    }
    bind.extend_from_slice(&0i16.to_be_bytes());
    let mut execute = cstr("");
    execute.extend_from_slice(&0i32.to_be_bytes());
    let mut out = message(b'P', &parse);
    out.extend(message(b'D', &[b"S".as_slice(), &cstr("")].concat()));
    out.extend(message(b'B', &bind));
    out.extend(message(b'D', &[b"P".as_slice(), &cstr("")].concat()));
    out.extend(message(b'E', &execute));
    out.extend(message(b'S', &[]));
    out
}

/// A raw session: reads backend messages as (type, body).
struct Raw(TcpStream);

impl Raw {
    async fn connect(server: &TestServer) -> Raw {
        let mut raw = Raw(TcpStream::connect(server.addr).await.expect("connect"));
        raw.0.write_all(&startup_packet()).await.unwrap();
        raw.until_ready().await;
        raw
    }

    /// Sends `bytes` and returns the messages up to ReadyForQuery, as `T`ype letters with
    /// CommandComplete's tag (`C:INSERT 0 1`) and ParameterDescription's count (`t:1`).
    async fn round(&mut self, bytes: &[u8]) -> Vec<String> {
        self.0.write_all(bytes).await.unwrap();
        self.until_ready().await
    }

    async fn until_ready(&mut self) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let read = async {
                let kind = self.0.read_u8().await?;
                let len = self.0.read_u32().await? as usize;
                let mut body = vec![0; len.saturating_sub(4)];
                self.0.read_exact(&mut body).await?;
                std::io::Result::Ok((kind, body))
            };
            let (kind, body) = tokio::time::timeout(Duration::from_secs(10), read)
                .await
                .expect("the server answers")
                .expect("read a message");
            let text = match kind {
                b'C' => format!(
                    "C:{}",
                    String::from_utf8_lossy(&body).trim_end_matches('\0')
                ),
                b't' => format!("t:{}", i16::from_be_bytes([body[0], body[1]])),
                b'T' => format!("T:{}", i16::from_be_bytes([body[0], body[1]])),
                // Data rows and startup chatter are not what these tests are about.
                b'D' | b'd' | b'S' | b'K' | b'R' | b'N' => continue,
                other => (other as char).to_string(),
            };
            seen.push(text);
            if kind == b'Z' {
                return seen;
            }
        }
    }
}

#[tokio::test]
async fn describe_answers_no_data_on_the_wire() {
    let server = TestServer::start().await;
    let mut raw = Raw::connect(&server).await;
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // (sql, parameters, the messages PostgreSQL 16 sends for them)
    let cases: &[(&str, &[&str], Vec<String>)] = &[
        (
            DDL,
            &[],
            s(&["1", "t:0", "n", "2", "n", "C:CREATE TABLE", "Z"]),
        ),
        (
            "INSERT INTO ext (id, label) VALUES ($1, $2)",
            &["7", "seven"],
            s(&["1", "t:2", "n", "2", "n", "C:INSERT 0 1", "Z"]),
        ),
        (
            "SET statement_timeout = '10s'",
            &[],
            s(&["1", "t:0", "n", "2", "n", "C:SET", "Z"]),
        ),
        (
            "BEGIN",
            &[],
            s(&["1", "t:0", "n", "2", "n", "C:BEGIN", "Z"]),
        ),
        (
            "COMMIT",
            &[],
            s(&["1", "t:0", "n", "2", "n", "C:COMMIT", "Z"]),
        ),
        (
            "SELECT id, label FROM ext WHERE id = $1",
            &["7"],
            s(&["1", "t:1", "T:2", "2", "T:2", "C:SELECT 1", "Z"]),
        ),
        (
            "COPY (SELECT id FROM ext) TO STDOUT (FORMAT csv, HEADER)",
            &[],
            s(&["1", "t:0", "n", "2", "n", "H", "c", "C:COPY 1", "Z"]),
        ),
        (
            "COPY (SELECT id FROM ext WHERE id < 0) TO STDOUT (FORMAT binary)",
            &[],
            s(&["1", "t:0", "n", "2", "n", "H", "c", "C:COPY 0", "Z"]),
        ),
        (
            "SHOW statement_timeout",
            &[],
            s(&["1", "t:0", "T:1", "2", "T:1", "C:SHOW", "Z"]),
        ),
        (
            "DROP TABLE ext",
            &[],
            s(&["1", "t:0", "n", "2", "n", "C:DROP TABLE", "Z"]),
        ),
    ];
    for (sql, params, expected) in cases {
        let seen = raw.round(&extended_round(sql, params)).await;
        assert_eq!(&seen, expected, "{sql}");
    }
    // In the simple protocol as well, SHOW completes as `SHOW`.
    let seen = raw
        .round(&message(b'Q', &cstr("SHOW statement_timeout")))
        .await;
    assert_eq!(seen, s(&["T:1", "C:SHOW", "Z"]));
    server.stop().await;
}

#[tokio::test]
async fn copy_out_tags_count_rows_not_headers() {
    let server = TestServer::start().await;
    let mut raw = Raw::connect(&server).await;
    let query = |sql: &str| message(b'Q', &cstr(sql));
    raw.round(&query(DDL)).await;
    raw.round(&query("INSERT INTO ext (id) VALUES (1), (2)"))
        .await;
    for (sql, tag) in [
        ("COPY ext TO STDOUT (FORMAT csv, HEADER)", "C:COPY 2"),
        (
            "COPY (SELECT * FROM ext WHERE id < 0) TO STDOUT (FORMAT csv, HEADER)",
            "C:COPY 0",
        ),
        (
            "COPY (SELECT * FROM ext WHERE id < 0) TO STDOUT (FORMAT binary)",
            "C:COPY 0",
        ),
        ("COPY ext TO STDOUT (FORMAT binary)", "C:COPY 2"),
    ] {
        let seen = raw.round(&query(sql)).await;
        assert_eq!(seen, ["H", "c", tag, "Z"], "{sql}");
    }
    // Two in one query string: each with its own count.
    let seen = raw
        .round(&query(
            "COPY ext TO STDOUT (FORMAT csv, HEADER); COPY (SELECT 1) TO STDOUT",
        ))
        .await;
    assert_eq!(seen, ["H", "c", "C:COPY 2", "H", "c", "C:COPY 1", "Z"]);
    server.stop().await;
}

/// `SELECT a, a …` and other repeated output names, which PostgreSQL answers (DataFusion alone
/// refuses to plan them): the columns keep their names, in the simple and extended protocols.
#[tokio::test]
async fn repeated_output_names_are_answered_as_postgres_does() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    client.batch_execute(DDL).await.unwrap();
    client
        .batch_execute("INSERT INTO ext (id, label) VALUES (1, 'one'), (2, 'two'), (2, 'deux')")
        .await
        .unwrap();
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "SELECT id, id FROM ext ORDER BY id, label",
            &["id", "id"],
            &["1|1", "2|2", "2|2"],
        ),
        (
            "SELECT id AS n, label AS n FROM ext WHERE id = 2 ORDER BY 2",
            &["n", "n"],
            &["2|deux", "2|two"],
        ),
        (
            "SELECT id, id, count(*) AS rows FROM ext GROUP BY id HAVING count(*) > 1",
            &["id", "id", "rows"],
            &["2|2|2"],
        ),
        (
            "SELECT *, label FROM ext WHERE id = 1",
            &["id", "label", "ts", "label"],
            &["1|one||one"],
        ),
        (
            "SELECT label, id, label AS l FROM ext ORDER BY l LIMIT 1",
            &["label", "id", "l"],
            &["deux|2|deux"],
        ),
    ];
    for (sql, names, rows) in cases {
        let statement = client
            .prepare(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let described: Vec<&str> = statement.columns().iter().map(|c| c.name()).collect();
        assert_eq!(&described, names, "{sql}");
        let mut seen = Vec::new();
        for message in client.simple_query(sql).await.unwrap() {
            if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
                let columns: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
                assert_eq!(&columns, names, "{sql}");
                let values: Vec<&str> = (0..row.len()).map(|i| row.get(i).unwrap_or("")).collect();
                seen.push(values.join("|"));
            }
        }
        assert_eq!(&seen, rows, "{sql}");
        // The prepared statement runs too, with the same rows.
        assert_eq!(
            client.query(&statement, &[]).await.unwrap().len(),
            rows.len(),
            "{sql}"
        );
    }
    // Repeated names inside a subquery are still refused (PostgreSQL would answer this `*`;
    // DataFusion needs distinct names in a derived table).
    let err = client
        .simple_query("SELECT * FROM (SELECT id, id FROM ext) s")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "42000", "{err}");
    server.stop().await;
}
