//! The server under bad and heavy traffic: connections past `max_connections` get
//! PostgreSQL's 53300; garbage, truncated and oversized messages end only their own connection;
//! many sessions at once are all served.

use std::time::{Duration, Instant};

use tally_server::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use super::pg::{TestServer, psql};

/// A startup packet for user `tally`, database `tally`, protocol 3.0.
pub(crate) fn startup_packet() -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for (k, v) in [("user", "tally"), ("database", "tally")] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = (body.len() as u32 + 4).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    packet
}

/// Sends `bytes` on a new connection, then reads until the server closes it (or 10 s pass);
/// returns what the server sent.
async fn send_raw(server: &TestServer, bytes: &[u8], close_write: bool) -> Vec<u8> {
    let mut socket = TcpStream::connect(server.addr).await.expect("connect");
    let _ = socket.write_all(bytes).await;
    if close_write {
        let _ = socket.shutdown().await;
    }
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut received)).await;
    received
}

/// The server still answers a query on a new session.
async fn still_serves(server: &TestServer) {
    let client = server.connect().await;
    let row = client.query_one("SELECT 41 + 1", &[]).await.expect("query");
    assert_eq!(row.get::<_, i64>(0), 42);
}

#[tokio::test]
async fn connections_past_max_connections_get_53300() {
    let server = TestServer::start_with(Config {
        max_connections: 3,
        ..Config::default()
    })
    .await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(server.connect().await);
    }
    let err = tokio_postgres::connect(&server.conninfo(), NoTls)
        .await
        .err()
        .expect("a fourth session is refused");
    let db_error = err
        .as_db_error()
        .expect("an ErrorResponse, not a dropped socket");
    assert_eq!(db_error.code(), &SqlState::TOO_MANY_CONNECTIONS);
    assert_eq!(db_error.message(), "sorry, too many clients already");
    // psql (SSL negotiation first, as its default sslmode=prefer asks) prints the same.
    let err = psql(&server, &["-c", "SELECT 1"]).await.unwrap_err();
    assert!(err.contains("sorry, too many clients already"), "{err}");
    // The sessions already in are unaffected; when one leaves, a new one gets in.
    let row = clients[0].query_one("SELECT 1", &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    drop(clients.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio_postgres::connect(&server.conninfo(), NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                client.simple_query("SELECT 1").await.unwrap();
                break;
            }
            Err(e) if Instant::now() < deadline => {
                assert_eq!(e.code(), Some(&SqlState::TOO_MANY_CONNECTIONS), "{e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("no session after one left: {e}"),
        }
    }
    drop(clients);
    server.stop().await;
}

#[test]
fn max_connections_comes_from_the_file_or_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tally.toml");
    std::fs::write(&file, "max_connections = 7\n").unwrap();
    let config = Config::resolve(None, None, Some(&file)).unwrap();
    assert_eq!(config.max_connections, 7);
    assert_eq!(config.with_max_connections(Some(9)).max_connections, 9);
    let none = Config::default().with_max_connections(Some(0));
    assert!(none.check().unwrap_err().contains("max_connections"));
}

#[tokio::test]
async fn garbage_truncated_and_oversized_messages_end_only_their_connection() {
    let server = TestServer::start().await;
    let bystander = server.connect().await;

    // Not a startup packet at all.
    send_raw(&server, b"GET / HTTP/1.1\r\nHost: tally\r\n\r\n", true).await;
    send_raw(&server, &[0xff; 4096], true).await;
    // Lengths below the header, and at the top of the range (no 2 GiB allocation).
    send_raw(&server, &3u32.to_be_bytes(), true).await;
    let mut huge = 0x7fff_ffffu32.to_be_bytes().to_vec();
    huge.extend_from_slice(&196_608u32.to_be_bytes());
    send_raw(&server, &huge, true).await;
    // A startup packet cut short, then the connection closed.
    let packet = startup_packet();
    send_raw(&server, &packet[..packet.len() / 2], true).await;

    // After a good startup: a query message claiming 2^31-1 bytes, one with a length below
    // its header, an unknown message type, and a query cut short.
    let mut oversized = packet.clone();
    oversized.push(b'Q');
    oversized.extend_from_slice(&0x7fff_ffffu32.to_be_bytes());
    oversized.extend_from_slice(b"SELECT 1");
    let reply = send_raw(&server, &oversized, true).await;
    assert!(
        !reply.is_empty(),
        "the startup was answered before the bad message"
    );
    let mut short = packet.clone();
    short.push(b'Q');
    short.extend_from_slice(&2u32.to_be_bytes());
    send_raw(&server, &short, true).await;
    let mut unknown = packet.clone();
    unknown.push(b'@');
    unknown.extend_from_slice(&8u32.to_be_bytes());
    unknown.extend_from_slice(b"abcd");
    send_raw(&server, &unknown, true).await;
    let mut cut = packet.clone();
    cut.push(b'Q');
    cut.extend_from_slice(&100u32.to_be_bytes());
    cut.extend_from_slice(b"SELECT");
    send_raw(&server, &cut, true).await;
    // Extended-protocol messages whose body is shorter than its fields (found by fuzzing:
    // pgwire 0.42 panics decoding them; the panic ends only that connection's task).
    for (kind, body) in [
        (b'B', &b"\0\0\x01"[..]),
        (b'B', &b"p\0s\0\x00\x01\x00"[..]),
        // One parameter said to be 4,096 bytes long, in a 14-byte body.
        (b'B', &b"\0\0\x00\x00\x00\x01\x00\x00\x10\x00ab"[..]),
        (b'D', &b""[..]),
        (b'P', &b"s\0SELECT 1\0\x00"[..]),
        (b'E', &b"p\0\x00"[..]),
    ] {
        let mut message = packet.clone();
        message.push(kind);
        message.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        message.extend_from_slice(body);
        send_raw(&server, &message, true).await;
    }

    // The session that was open all along, and new ones, are served.
    let row = bystander.query_one("SELECT 2", &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 2);
    still_serves(&server).await;
    drop(bystander);
    server.stop().await;
}

#[tokio::test]
async fn three_hundred_sessions_at_once_are_all_served() {
    let server = TestServer::start_with(Config {
        max_connections: 400,
        ..Config::default()
    })
    .await;
    let setup = server.connect().await;
    setup
        .batch_execute("CREATE TABLE hits (n BIGINT); INSERT INTO hits VALUES (1), (2), (3)")
        .await
        .unwrap();
    let mut sessions = tokio::task::JoinSet::new();
    for i in 0..300i64 {
        let conninfo = server.conninfo();
        sessions.spawn(async move {
            let (client, connection) = tokio_postgres::connect(&conninfo, NoTls).await?;
            tokio::spawn(connection);
            let row = client
                .query_one("SELECT sum(n) + $1 FROM hits", &[&i])
                .await?;
            Ok::<_, tokio_postgres::Error>((i, row.get::<_, i64>(0)))
        });
    }
    let mut answered = 0;
    while let Some(result) = sessions.join_next().await {
        let (i, sum) = result.expect("session task").expect("session");
        assert_eq!(sum, 6 + i);
        answered += 1;
    }
    assert_eq!(answered, 300);
    still_serves(&server).await;
    drop(setup);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_during_concurrent_copies_keeps_every_acknowledged_copy() {
    let mut server = TestServer::start().await;
    let setup = server.connect().await;
    setup
        .batch_execute("CREATE TABLE chunks (chunk BIGINT NOT NULL, n BIGINT)")
        .await
        .unwrap();
    drop(setup);
    const ROWS: i64 = 2_000;
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..4i64 {
        let client = server.connect().await;
        let acked = std::sync::Arc::clone(&acked);
        writers.spawn(async move {
            for k in 0.. {
                let chunk = writer * 1_000_000 + k;
                let data: String = (0..ROWS).map(|n| format!("{chunk}\t{n}\n")).collect();
                let sink = match client
                    .copy_in::<_, bytes::Bytes>("COPY chunks FROM STDIN")
                    .await
                {
                    Ok(sink) => sink,
                    Err(_) => return,
                };
                futures::pin_mut!(sink);
                use futures::SinkExt;
                if sink.send(bytes::Bytes::from(data)).await.is_err() {
                    return;
                }
                match sink.finish().await {
                    Ok(rows) => {
                        assert_eq!(rows, ROWS as u64);
                        acked.lock().unwrap().push(chunk);
                    }
                    Err(_) => return,
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    let started = Instant::now();
    server.stop().await;
    let took = started.elapsed();
    while writers.join_next().await.is_some() {}
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");

    let acked = acked.lock().unwrap().clone();
    assert!(!acked.is_empty(), "some COPYs finished before the shutdown");
    let db =
        tally_engine::Database::open(dir.path().join("data"), tally_tests::test_options()).unwrap();
    let counts = tally_tests::query_lines(
        &db,
        "SELECT chunk, count(*) FROM chunks GROUP BY chunk ORDER BY chunk",
    )
    .await;
    let mut stored = std::collections::BTreeMap::new();
    for line in counts {
        let (chunk, n) = line.split_once('|').unwrap_or_else(|| panic!("{line}"));
        stored.insert(
            chunk.trim().parse::<i64>().unwrap(),
            n.trim().parse::<i64>().unwrap(),
        );
    }
    for chunk in &acked {
        assert_eq!(stored.get(chunk), Some(&ROWS), "acknowledged COPY {chunk}");
    }
    for (chunk, n) in &stored {
        assert_eq!(*n, ROWS, "COPY {chunk} is whole or absent");
    }
    db.close().unwrap();
}
