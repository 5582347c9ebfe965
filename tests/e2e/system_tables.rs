//! System tables: `tally_tables` and `tally_segments` describe storage at the statement's
//! snapshot; the server's `tally_sessions` lists sessions with their running statement and the
//! progress of a COPY.

use bytes::Bytes;
use futures::SinkExt;
use tally_tests::*;

use super::pg::{TestServer, psql, simple_rows};

#[tokio::test]
async fn tally_tables_and_tally_segments_describe_what_is_stored() {
    let (_dir, db) = temp_db(test_options());
    db.sql(EVENTS_DDL).await.unwrap();
    db.sql("CREATE TABLE plain (x BIGINT)").await.unwrap();
    // Three days of events, flushed to one segment per day, then 100 more rows left hot.
    db.ingest("events", events_batch(1, 3_000, 3))
        .await
        .unwrap();
    db.flush().await.unwrap();
    db.ingest("events", events_batch(2, 100, 1)).await.unwrap();

    let stats = db.table_stats("events").unwrap();
    let lines = query_lines(
        &db,
        "SELECT name, rows, segments, segment_rows, hot_batches, hot_rows, time_column, \
         oldest >= TIMESTAMPTZ '2026-01-01 00:00:00+00', \
         newest < TIMESTAMPTZ '2026-01-04 00:00:00+00' FROM tally_tables ORDER BY name",
    )
    .await;
    assert_eq!(
        lines,
        [
            format!("events|3100|{}|3000|1|100|ts|true|true", stats.segments),
            "plain|0|0|0|0|0|||".to_string(),
        ],
    );
    assert_eq!(stats.segments, 3, "one segment per day");
    let bytes = query_i64(&db, "SELECT bytes FROM tally_tables WHERE name = 'events'").await;
    assert!(
        bytes as u64 > stats.segment_bytes,
        "segments plus hot bytes"
    );

    let segments = query_lines(
        &db,
        "SELECT table_name, rows, min_time <= max_time, file_name LIKE 'segments/%.parquet' \
         FROM tally_segments ORDER BY min_time",
    )
    .await;
    assert_eq!(segments.len(), 3);
    assert!(
        segments
            .iter()
            .all(|s| s.starts_with("events|") && s.ends_with("|true|true"))
    );
    assert_eq!(
        query_i64(&db, "SELECT sum(rows) FROM tally_segments").await,
        stats.segment_rows as i64
    );
    assert_eq!(
        query_i64(&db, "SELECT sum(bytes) FROM tally_segments").await,
        stats.segment_bytes as i64
    );

    for name in ["tally_tables", "tally_segments", "tally_views"] {
        let err = db
            .sql(&format!("CREATE TABLE {name} (x BIGINT)"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("system table"), "{name}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_lists_tally_sessions_with_the_progress_of_a_running_copy() {
    let server = TestServer::start().await;
    let writer = server.connect().await;
    writer.batch_execute(EVENTS_DDL).await.unwrap();
    writer
        .batch_execute("SET application_name = 'loader'")
        .await
        .unwrap();

    // A COPY that has sent 20,000 rows and is still open.
    let sink = writer
        .copy_in::<_, Bytes>("COPY events FROM STDIN (FORMAT csv)")
        .await
        .unwrap();
    futures::pin_mut!(sink);
    let rows: String = (0..20_000)
        .map(|i| format!("2026-01-01 00:00:00,{i},/p,1.5,7\n"))
        .collect();
    sink.send(Bytes::from(rows)).await.unwrap();
    sink.flush().await.unwrap();

    // psql sees it, with its progress, and sees itself.
    let query = "SELECT application_name, state, query, copy_rows, copy_bytes > 0, \
                 usename, datname, client_addr LIKE '127.0.0.1:%', query_start IS NOT NULL \
                 FROM tally_sessions ORDER BY pid";
    let mut listing = String::new();
    for _ in 0..200 {
        listing = psql(&server, &["-A", "-t", "-c", query]).await.unwrap();
        if listing.contains("|16384|") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 2, "{listing}");
    assert_eq!(
        lines[0], "loader|active|COPY events FROM STDIN (FORMAT csv)|16384|t|tally|tally|t|t",
        "the COPY's session, with the rows decoded so far (whole batches of 8192)"
    );
    assert!(
        lines[1].starts_with("psql|active|SELECT application_name"),
        "{listing}"
    );

    // Once the COPY ends, its session is idle, and a closed session leaves the table.
    sink.as_mut().finish().await.unwrap();
    let states = simple_rows(
        &writer,
        "SELECT state, query FROM tally_sessions ORDER BY pid",
    )
    .await;
    assert_eq!(states.len(), 1, "psql's session is gone: {states:?}");
    assert_eq!(states[0][0].as_deref(), Some("active"));
    assert!(states[0][1].as_deref().unwrap().starts_with("SELECT state"));
    writer.batch_execute("BEGIN").await.unwrap();
    let other = server.connect().await;
    let state = simple_rows(
        &other,
        "SELECT state FROM tally_sessions WHERE application_name = 'loader'",
    )
    .await;
    assert_eq!(state, vec![vec![Some("idle in transaction".to_string())]]);
    writer.batch_execute("ROLLBACK").await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tally_views_shows_a_running_backfill_and_its_progress() {
    let (_dir, db) = temp_db(test_options());
    db.sql(EVENTS_DDL).await.unwrap();
    const ROWS: usize = 600_000;
    for b in 0..6 {
        db.ingest("events", events_batch(b, ROWS / 6, 30))
            .await
            .unwrap();
    }
    let creating = tokio::spawn({
        let db = db.clone();
        async move {
            db.sql(
                "CREATE MATERIALIZED VIEW per_page AS SELECT page, count(*) AS n, \
                 count(DISTINCT user_id) AS users FROM events GROUP BY page",
            )
            .await
        }
    });
    let query = "SELECT state, backfill_rows_done, backfill_rows_total FROM tally_views";
    let mut seen = Vec::new();
    while !creating.is_finished() {
        seen.extend(query_lines(&db, query).await);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    creating.await.unwrap().unwrap();
    let running: Vec<&String> = seen
        .iter()
        .filter(|l| l.starts_with("backfilling|"))
        .collect();
    assert!(
        !running.is_empty(),
        "the backfill was never seen running: {seen:?}"
    );
    let counting = running
        .iter()
        .filter(|l| !l.starts_with("backfilling||"))
        .count();
    assert!(counting > 0, "no progress seen: {running:?}");
    for line in running {
        let parts: Vec<&str> = line.split('|').collect();
        if parts[1].is_empty() {
            continue; // created, not yet counting
        }
        let (done, total): (u64, u64) = (parts[1].parse().unwrap(), parts[2].parse().unwrap());
        assert_eq!(total, ROWS as u64, "{line}");
        assert!(done <= total, "{line}");
    }
    assert_eq!(query_lines(&db, query).await, ["ready||"]);
}

#[tokio::test]
async fn explain_analyze_over_the_wire_lists_the_segments_pruned() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    client.batch_execute(EVENTS_DDL).await.unwrap();
    // Three days of rows, each day its own segment once the server flushes them at stop.
    let rows: String = (1..=3)
        .map(|day| format!("2026-01-0{day} 10:00:00,{day},/p,1.5,{day}\n"))
        .collect();
    let sink = client
        .copy_in::<_, Bytes>("COPY events FROM STDIN (FORMAT csv)")
        .await
        .unwrap();
    futures::pin_mut!(sink);
    sink.send(Bytes::from(rows)).await.unwrap();
    sink.as_mut().finish().await.unwrap();
    server.db.flush().await.unwrap();

    let plan = simple_rows(
        &client,
        "EXPLAIN ANALYZE SELECT sum(latency_ms) FROM events WHERE ts >= '2026-01-02 00:00:00'",
    )
    .await;
    let pruning: Vec<&str> = plan
        .iter()
        .filter(|row| row[0].as_deref() == Some("segment pruning"))
        .filter_map(|row| row[1].as_deref())
        .collect();
    assert_eq!(
        pruning,
        ["events: 2 of 3 segment(s) scanned, 1 pruned by the time column; 0 hot batch(es)"],
        "{plan:?}"
    );
    assert!(
        plan.iter()
            .any(|row| row[1].as_deref().is_some_and(|p| p.contains("metrics=["))),
        "EXPLAIN ANALYZE shows the plan with its metrics: {plan:?}"
    );
    server.stop().await;
}
