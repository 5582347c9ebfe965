//! SIGTERM and SIGINT while clients COPY and query: the server stops within 10 s with exit
//! status 0, and every acknowledged COPY is there after a restart.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crate::harness::Tally;
use crate::workload::{self, Ledger};

/// Flush often, so that a flush is likely to run when the signal arrives.
const CONFIG: &str = "[storage]\nflush_rows = 3000\nflush_age_seconds = 1\n";

async fn stops_cleanly_under_load(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Tally::start(&data, CONFIG).await;
    workload::create_schema(&server.client().await).await;

    let ledger = Arc::new(Ledger::default());
    let never = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(tokio::spawn(workload::write_until(
            server.client().await,
            Arc::clone(&ledger),
            Arc::clone(&never),
            true,
        )));
    }
    for _ in 0..2 {
        let reader = server.client().await;
        clients.push(tokio::spawn(async move {
            let mut reads = 0;
            while reader.simple_query("SELECT * FROM per_page").await.is_ok() {
                reads += 1;
            }
            reads
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !ledger.acked().is_empty(),
        "no COPY acknowledged before the signal:\n{}",
        server.log_text()
    );

    let signalled = Instant::now();
    server.signal(signal);
    let status = server.wait_exit(Duration::from_secs(10)).await;
    let took = signalled.elapsed();
    let log = server.log_text();
    let status = status.unwrap_or_else(|| panic!("still running 10 s after SIG{signal}:\n{log}"));
    assert!(
        status.success(),
        "exit status {status} after SIG{signal}:\n{log}"
    );
    assert!(
        log.contains("database closed"),
        "no clean close logged:\n{log}"
    );
    server.assert_no_panic();
    for client in clients {
        client.await.expect("client task");
    }
    eprintln!(
        "SIG{signal}: stopped in {took:?} with {} acknowledged COPYs",
        ledger.acked().len()
    );

    let server = Tally::start(&data, CONFIG).await;
    workload::check(&server.client().await, &ledger).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_stops_within_10_s_and_keeps_every_acknowledged_copy() {
    stops_cleanly_under_load("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_under_load_stops_within_10_s_and_keeps_every_acknowledged_copy() {
    stops_cleanly_under_load("INT").await;
}

/// A subscriber is a statement that never ends on its own: shutdown must not wait for it past
/// the grace period, and the subscriber's stream must end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_subscriber_connected_stops_and_ends_its_stream() {
    use futures::StreamExt;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Tally::start(&data, CONFIG).await;
    let client = server.client().await;
    workload::create_schema(&client).await;
    let subscriber = server.client().await;
    let stream = subscriber
        .copy_out("COPY (SUBSCRIBE TO per_page) TO STDOUT")
        .await
        .expect("subscribe");
    let mut stream = Box::pin(stream);
    client
        .batch_execute("INSERT INTO events VALUES ('2026-01-01 00:00:00', 1, '/x', 1.0, 1)")
        .await
        .expect("insert");
    let first = stream.next().await.expect("a row").expect("a change");
    assert!(first.starts_with(b"1\tchange\t/x\t"), "{first:?}");
    let reader = tokio::spawn(async move {
        loop {
            match stream.next().await {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Some(e.to_string()),
                None => return None,
            }
        }
    });
    server.stop().await;
    let ended = reader.await.expect("reader task");
    assert!(
        ended.is_some(),
        "the stream ended with an error, not a CopyDone"
    );
}
