//! Queries over a table answered from its materialized views: the clickstream views answer
//! their own queries, coarser groupings and filters on their groups, with the answer the raw
//! table gives (rewriting off); every refusal reason leaves the query on the table, still
//! correct; EXPLAIN says which view answered and why the others did not.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use tally_engine::{Database, SessionSettings};
use tally_tests::*;

const EVENTS: &str = "CREATE TABLE events (ts TIMESTAMP NOT NULL, user_id BIGINT, session_id BIGINT, \
    page TEXT, country TEXT, device TEXT, status INT, latency_ms DOUBLE PRECISION, bytes BIGINT) \
    WITH (time_column = 'ts')";

/// The three views of `benches/src/clickstream.rs`.
const VIEWS: [(&str, &str); 3] = [
    (
        "page_hourly",
        "SELECT date_trunc('hour', ts) AS hour, page, count(*) AS views, sum(bytes) AS bytes, \
         avg(latency_ms) AS avg_latency, max(latency_ms) AS max_latency, \
         approx_count_distinct(user_id) AS users FROM events GROUP BY 1, 2",
    ),
    (
        "country_daily",
        "SELECT date_trunc('day', ts) AS day, country, device, count(*) AS views, \
         approx_count_distinct(user_id) AS users, approx_count_distinct(session_id) AS sessions \
         FROM events GROUP BY 1, 2, 3",
    ),
    (
        "errors_minute",
        "SELECT date_trunc('minute', ts) AS minute, status, count(*) AS n FROM events \
         WHERE status >= 400 GROUP BY 1, 2",
    ),
];

/// `rows` deterministic events over three days from 2026-01-01, some with NULLs.
fn events(rows: usize, seed: u64) -> RecordBatch {
    let hash = |i: u64| (i ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
    let h: Vec<u64> = (0..rows as u64).map(hash).collect();
    let pages = ["/", "/docs", "/pricing", "/blog"];
    let countries = ["US", "DE", "IN"];
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampMicrosecondArray::from_iter_values(
            h.iter()
                .map(|h| JAN_1_2026_US + (*h % (3 * 86_400)) as i64 * 1_000_000),
        )),
        Arc::new(Int64Array::from_iter(
            h.iter().map(|h| (h % 13 != 0).then_some((h % 500) as i64)),
        )),
        Arc::new(Int64Array::from_iter_values(
            h.iter().map(|h| (h % 2_000) as i64),
        )),
        Arc::new(StringArray::from_iter(
            h.iter()
                .map(|h| (h % 17 != 0).then(|| pages[(h / 7 % 4) as usize])),
        )),
        Arc::new(StringArray::from_iter_values(
            h.iter().map(|h| countries[(h / 3 % 3) as usize]),
        )),
        Arc::new(StringArray::from_iter_values(
            h.iter()
                .map(|h| if h % 3 == 0 { "mobile" } else { "desktop" }),
        )),
        Arc::new(Int32Array::from_iter_values(
            h.iter()
                .map(|h| [200, 200, 301, 404, 500][(h / 11 % 5) as usize]),
        )),
        // Multiples of 0.25: float sums are exact in any order.
        Arc::new(Float64Array::from_iter(
            h.iter()
                .map(|h| (h % 19 != 0).then_some((h % 800) as f64 * 0.25)),
        )),
        Arc::new(Int64Array::from_iter_values(
            h.iter().map(|h| (h % 10_000) as i64),
        )),
    ];
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("user_id", DataType::Int64, true),
        Field::new("session_id", DataType::Int64, true),
        Field::new("page", DataType::Utf8, true),
        Field::new("country", DataType::Utf8, true),
        Field::new("device", DataType::Utf8, true),
        Field::new("status", DataType::Int32, true),
        Field::new("latency_ms", DataType::Float64, true),
        Field::new("bytes", DataType::Int64, true),
    ]));
    RecordBatch::try_new(schema, columns).unwrap()
}

/// A database with the events table, rows in segments and in the hot tier, and the views.
async fn clickstream() -> (tempfile::TempDir, Database) {
    let (dir, db) = temp_db(test_options());
    db.sql(EVENTS).await.unwrap();
    db.ingest("events", events(1_500, 1)).await.unwrap();
    for (name, query) in VIEWS {
        db.sql(&format!("CREATE MATERIALIZED VIEW {name} AS {query}"))
            .await
            .unwrap();
    }
    db.flush().await.unwrap();
    // Groups in state segments and in delta parts.
    db.compact_views().await.unwrap();
    db.ingest("events", events(700, 2)).await.unwrap();
    (dir, db)
}

const OFF: SessionSettings = SessionSettings {
    view_rewrite: Some(false),
};

/// The query's rows with rewriting off: the raw table's answer.
async fn raw(db: &Database, sql: &str) -> Vec<String> {
    OFF.scope(query_lines(db, sql)).await
}

/// The `view matching` lines of the query's EXPLAIN.
pub(crate) async fn matching(db: &Database, sql: &str) -> Vec<String> {
    let rows = query_lines(db, &format!("EXPLAIN {sql}")).await;
    rows.iter()
        .filter_map(|r| r.strip_prefix("view matching|"))
        .map(str::to_string)
        .collect()
}

/// The query's rows, after checking that EXPLAIN says `view` answered it and that its result
/// schema is the raw query's.
async fn answered_by(db: &Database, view: &str, sql: &str) -> Vec<String> {
    let lines = matching(db, sql).await;
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("answered from view {view} "))),
        "{sql} should be answered from {view}: {lines:#?}"
    );
    let rewritten = db.execute(sql).await.unwrap().pop().unwrap();
    let original = OFF.scope(db.execute(sql)).await.unwrap().pop().unwrap();
    let names = |s: &arrow::datatypes::Schema| -> Vec<(String, DataType)> {
        s.fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect()
    };
    assert_eq!(names(&rewritten.schema), names(&original.schema), "{sql}");
    rewritten.batches.iter().flat_map(batch_lines).collect()
}

/// Asserts `sql` is answered from `view` with the raw table's rows.
async fn assert_answered(db: &Database, view: &str, sql: &str) {
    let rows = answered_by(db, view, sql).await;
    assert_eq!(rows, raw(db, sql).await, "{sql}");
    assert!(
        !rows.is_empty(),
        "{sql} returned no rows: test data too thin"
    );
}

/// Asserts `sql` is not rewritten, every view of the table giving a reason containing
/// `reason`, and that it still returns the raw table's rows.
async fn assert_refused(db: &Database, sql: &str, reason: &str) {
    let lines = matching(db, sql).await;
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with("not answered from a view")),
        "{sql} should not be rewritten: {lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains(reason)),
        "{sql}: expected a refusal with {reason:?}: {lines:#?}"
    );
    let mut rows = query_lines(db, sql).await;
    let mut expected = raw(db, sql).await;
    rows.sort();
    expected.sort();
    assert_eq!(rows, expected, "{sql}");
}

#[tokio::test]
async fn the_clickstream_view_queries_run_ad_hoc_are_answered_from_their_views() {
    let (_dir, db) = clickstream().await;
    for (name, query) in VIEWS {
        assert_answered(&db, name, &format!("{query} ORDER BY 1, 2, 3")).await;
    }
}

#[tokio::test]
async fn coarser_groupings_and_filters_on_groups_are_answered_from_views() {
    let (_dir, db) = clickstream().await;
    let cases = [
        (
            "page_hourly",
            "SELECT date_trunc('day', ts) AS day, count(*) AS views, sum(bytes) AS bytes, \
             avg(latency_ms) AS avg_latency, max(latency_ms) AS max_latency, \
             approx_count_distinct(user_id) AS users FROM events WHERE page = '/docs' \
             GROUP BY 1 ORDER BY 1",
        ),
        (
            "page_hourly",
            "SELECT date_trunc('day', ts) AS day, page, count(*) AS views, sum(bytes) AS bytes, \
             avg(latency_ms) AS avg_latency, max(latency_ms) AS max_latency, \
             approx_count_distinct(user_id) AS users FROM events GROUP BY 1, 2 ORDER BY 1, 2",
        ),
        (
            "page_hourly",
            "SELECT page, count(*), approx_count_distinct(user_id) FROM events GROUP BY page \
             ORDER BY page",
        ),
        (
            "page_hourly",
            "SELECT count(*), sum(bytes), max(latency_ms), approx_count_distinct(user_id) \
             FROM events",
        ),
        (
            "country_daily",
            "SELECT country, count(*) AS views, approx_count_distinct(session_id) AS sessions \
             FROM events WHERE device = 'mobile' GROUP BY country ORDER BY country",
        ),
        (
            "country_daily",
            "SELECT date_trunc('week', ts) AS week, device, approx_count_distinct(user_id) \
             FROM events WHERE country IN ('US', 'DE') GROUP BY 1, 2 ORDER BY 1, 2",
        ),
        (
            "country_daily",
            "SELECT date_trunc('month', ts), count(*) FROM events GROUP BY 1 ORDER BY 1",
        ),
        // The view queries themselves, coarser and filtered on a group column.
        (
            "country_daily",
            "SELECT date_trunc('week', ts) AS week, country, device, count(*) AS views, \
             approx_count_distinct(user_id) AS users, \
             approx_count_distinct(session_id) AS sessions FROM events \
             WHERE country = 'US' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        ),
        (
            "errors_minute",
            "SELECT date_trunc('hour', ts) AS hour, status, count(*) AS n FROM events \
             WHERE status >= 400 AND status <> 404 GROUP BY 1, 2 ORDER BY 1, 2",
        ),
        (
            "errors_minute",
            "SELECT date_trunc('hour', ts) AS hour, count(*) AS n FROM events \
             WHERE status >= 400 AND status = 404 GROUP BY 1 ORDER BY 1",
        ),
    ];
    for (view, sql) in cases {
        assert_answered(&db, view, sql).await;
    }
}

#[tokio::test]
async fn a_views_averages_keep_their_sums_and_counts_in_hidden_columns() {
    let (_dir, db) = clickstream().await;
    let columns = db.execute("SELECT * FROM page_hourly").await.unwrap();
    let names: Vec<String> = columns[0]
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with("avg_latency_")),
        "{names:?}"
    );
    let parts = query_lines(
        &db,
        "SELECT hour, page, avg_latency_sum, avg_latency_count FROM page_hourly ORDER BY 1, 2",
    )
    .await;
    let raw_parts = raw(
        &db,
        "SELECT date_trunc('hour', ts), page, sum(latency_ms), count(latency_ms) FROM events \
         GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .await;
    assert_eq!(parts, raw_parts);
}

#[tokio::test]
async fn having_order_by_limit_subqueries_aliases_and_time_ranges_on_bucket_boundaries() {
    let (_dir, db) = clickstream().await;
    let cases = [
        "SELECT page, count(*) AS n FROM events GROUP BY page HAVING count(*) > 10 \
         ORDER BY n DESC, page LIMIT 2",
        "SELECT e.page, sum(e.bytes) AS b FROM events AS e GROUP BY e.page ORDER BY b DESC",
        "SELECT * FROM (SELECT page, count(*) AS n FROM events GROUP BY page) AS s \
         WHERE n > 5 ORDER BY page",
        "SELECT (SELECT count(*) FROM events WHERE page = '/docs') AS docs",
        "SELECT page, max(latency_ms) FROM events WHERE ts >= '2026-01-02' \
         AND ts < TIMESTAMP '2026-01-03 00:00:00' GROUP BY page ORDER BY page",
        "SELECT date_trunc('day', ts), count(*) FROM events \
         WHERE date_trunc('hour', ts) >= '2026-01-01 05:00:00' AND lower(page) <> '/blog' \
         GROUP BY 1 ORDER BY 1",
        "SELECT page, count(*) FROM events WHERE page IS NULL GROUP BY page",
    ];
    for sql in cases {
        assert_answered(&db, "page_hourly", sql).await;
    }
}

#[tokio::test]
async fn empty_answers_are_the_raw_tables() {
    let (_dir, db) = clickstream().await;
    let global = "SELECT count(*), sum(bytes), max(latency_ms), approx_count_distinct(user_id) \
                  FROM events WHERE page = 'nowhere'";
    let rows = answered_by(&db, "page_hourly", global).await;
    assert_eq!(rows, ["0|||0"]);
    assert_eq!(rows, raw(&db, global).await);
    let grouped = "SELECT page, count(*) FROM events WHERE page = 'nowhere' GROUP BY page";
    let rows = answered_by(&db, "page_hourly", grouped).await;
    assert!(rows.is_empty());
    assert_eq!(rows, raw(&db, grouped).await);

    // A table with views but no rows yet.
    let (_dir, empty) = temp_db(test_options());
    empty.sql(EVENTS).await.unwrap();
    let (name, query) = VIEWS[0];
    empty
        .sql(&format!("CREATE MATERIALIZED VIEW {name} AS {query}"))
        .await
        .unwrap();
    let rows = answered_by(&empty, "page_hourly", global).await;
    assert_eq!(rows, raw(&empty, global).await);
}

#[tokio::test]
async fn every_refusal_leaves_the_query_on_the_table() {
    let (_dir, db) = clickstream().await;
    db.sql(
        "CREATE MATERIALIZED VIEW page_sets AS SELECT page, date_trunc('day', ts) AS day, \
         count(DISTINCT user_id) AS users, \
         approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50 \
         FROM events GROUP BY 1, 2",
    )
    .await
    .unwrap();
    let cases = [
        (
            "SELECT page, count(*) FROM events WHERE latency_ms > 100 GROUP BY page",
            "column latency_ms is not a group column of the view",
        ),
        (
            "SELECT page, min(latency_ms) FROM events GROUP BY page",
            "the view has no min(latency_ms)",
        ),
        (
            "SELECT page, avg(bytes) FROM events GROUP BY page",
            "avg(bytes) over coarser groups needs the view's avg, or its sum and count",
        ),
        (
            "SELECT page, count(*) FILTER (WHERE status = 404) FROM events GROUP BY page",
            "the view has no count(Int64(1)) FILTER",
        ),
        (
            "SELECT status, count(*) FROM events GROUP BY status",
            "the group status is not derived from its groups",
        ),
        (
            "SELECT date_trunc('minute', ts), status, count(*) FROM events GROUP BY 1, 2",
            "its WHERE condition CAST(status AS Int64) >= Int64(400) is not a condition of the query",
        ),
        (
            "SELECT page, count(*) FROM events WHERE ts >= '2026-01-02 00:30:00' GROUP BY page",
            "it is not a bucket boundary",
        ),
        (
            "SELECT page, count(*) FROM events WHERE ts > '2026-01-02' GROUP BY page",
            "only >= and < a bucket boundary select whole buckets",
        ),
        (
            "SELECT page, count(*) FROM events WHERE random() < 2 GROUP BY page",
            "random() gives a new value for every row",
        ),
        (
            "SELECT page, count(DISTINCT user_id) FROM events GROUP BY page",
            "count(DISTINCT …) cannot be re-aggregated",
        ),
        (
            "SELECT page, date_trunc('day', ts), \
             approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) FROM events \
             GROUP BY 1, 2",
            "may differ from approx_percentile_cont over the raw rows",
        ),
        (
            "SELECT date_trunc('minute', ts), count(*) FROM events GROUP BY 1",
            "the group date_trunc(Utf8(\"minute\"), ts) is not derived",
        ),
    ];
    for (sql, reason) in cases {
        assert_refused(&db, sql, reason).await;
    }
    // The exact sets answer their own grouping.
    assert_answered(
        &db,
        "page_sets",
        "SELECT date_trunc('day', ts), page, count(DISTINCT user_id) FROM events \
         GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .await;
}

#[tokio::test]
async fn the_smallest_view_that_can_answer_does() {
    let (_dir, db) = clickstream().await;
    db.sql(
        "CREATE MATERIALIZED VIEW page_daily AS SELECT date_trunc('day', ts) AS day, page, \
         count(*) AS views FROM events GROUP BY 1, 2",
    )
    .await
    .unwrap();
    let sql = "SELECT page, count(*) FROM events GROUP BY page ORDER BY page";
    assert_answered(&db, "page_daily", sql).await;
    // EXPLAIN VERBOSE shows the plan after the rewrite.
    let verbose = query_lines(&db, &format!("EXPLAIN VERBOSE {sql}")).await;
    assert!(
        verbose
            .iter()
            .any(|l| l.contains("tally_view_match") && l.contains("TableScan: page_daily")),
        "{verbose:#?}"
    );
    let lines = matching(&db, sql).await;
    assert!(
        lines.iter().any(|l| l.starts_with(
            "events: view page_hourly not used: it can answer, but view page_daily is smaller"
        )),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("view errors_minute not used: its WHERE condition")),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn rewriting_turns_off_per_session_and_per_database() {
    let (_dir, db) = clickstream().await;
    let sql = "SELECT page, count(*) FROM events GROUP BY page ORDER BY page";
    let lines = OFF.scope(matching(&db, sql)).await;
    assert_eq!(
        lines,
        ["events: not answered from a view: tally.view_rewrite is off"]
    );
    let on = SessionSettings {
        view_rewrite: Some(true),
    };
    let lines = on.scope(matching(&db, sql)).await;
    assert!(
        lines[0].starts_with("events: answered from view"),
        "{lines:#?}"
    );
    // In the library, SET holds for the rest of one execute call.
    let results = db
        .execute(&format!("SET tally.view_rewrite = off; EXPLAIN {sql}; SET tally.view_rewrite TO 'on'; EXPLAIN {sql}"))
        .await
        .unwrap();
    let lines = |r: &tally_engine::StatementResult| -> Vec<String> {
        r.batches
            .iter()
            .flat_map(batch_lines)
            .filter_map(|l| l.strip_prefix("view matching|").map(str::to_string))
            .collect()
    };
    assert_eq!(results[0].command, "SET");
    assert_eq!(
        lines(&results[1]),
        ["events: not answered from a view: tally.view_rewrite is off"]
    );
    assert!(lines(&results[3])[0].starts_with("events: answered from view"));
    assert!(
        matching(&db, sql).await[0].starts_with("events: answered from view"),
        "the next call"
    );
    let err = db
        .execute("SET tally.view_rewrite = maybe")
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        tally_engine::ErrorKind::InvalidArgument,
        "{err}"
    );
    let prepared = db.prepare(sql).await.unwrap();
    let off = OFF
        .scope(db.execute_prepared(&prepared, vec![]))
        .await
        .unwrap();
    assert_eq!(
        off.batches.iter().flat_map(batch_lines).collect::<Vec<_>>(),
        raw(&db, sql).await
    );

    let dir = tempfile::tempdir().unwrap();
    let off = Database::open(
        dir.path(),
        tally_engine::Options {
            view_rewrite: false,
            ..test_options()
        },
    )
    .unwrap();
    off.sql(EVENTS).await.unwrap();
    let (name, query) = VIEWS[0];
    off.sql(&format!("CREATE MATERIALIZED VIEW {name} AS {query}"))
        .await
        .unwrap();
    assert_eq!(
        matching(&off, sql).await,
        ["events: not answered from a view: tally.view_rewrite is off"]
    );
    assert!(on.scope(matching(&off, sql)).await[0].contains("answered from view page_hourly"));
}

#[tokio::test]
async fn a_transaction_holding_rows_reads_them_from_the_table() {
    let (_dir, db) = clickstream().await;
    let sql = "SELECT page, count(*) FROM events GROUP BY page ORDER BY page";
    let tx = db.begin();
    let before = tx.execute(sql).await.unwrap();
    assert!(!before.is_empty());
    tx.execute("INSERT INTO events (ts, page) VALUES ('2026-01-01 10:00:00', '/docs')")
        .await
        .unwrap();
    let lines = query_lines_tx(&tx, &format!("EXPLAIN {sql}")).await;
    assert!(
        lines.iter().any(|l| l.contains(
            "view page_hourly not used: this transaction holds rows of events that its views \
             count only at COMMIT"
        )),
        "{lines:#?}"
    );
    let inside = query_lines_tx(&tx, sql).await;
    let committed = raw(&db, sql).await;
    assert_ne!(inside, committed, "the held row is counted");
    tx.commit().await.unwrap();
    assert_eq!(answered_by(&db, "page_hourly", sql).await, inside);
}

async fn query_lines_tx(tx: &tally_engine::Transaction, sql: &str) -> Vec<String> {
    let mut results = tx.execute(sql).await.unwrap();
    let result = results.pop().unwrap();
    result.batches.iter().flat_map(batch_lines).collect()
}

#[tokio::test]
async fn views_of_a_table_that_retention_pruned_answer_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    let db = Database::open(&path, test_options()).unwrap();
    db.sql(
        "CREATE TABLE logs (ts TIMESTAMP NOT NULL, page TEXT) \
         WITH (time_column = 'ts', retention = '30 days')",
    )
    .await
    .unwrap();
    db.sql("CREATE MATERIALIZED VIEW per_page AS SELECT page, count(*) AS n FROM logs GROUP BY 1")
        .await
        .unwrap();
    db.sql("INSERT INTO logs VALUES ('2026-01-01 00:00:00', '/a'), (now(), '/a')")
        .await
        .unwrap();
    let sql = "SELECT page, count(*) FROM logs GROUP BY page";
    // Nothing removed yet: the view is exact.
    assert!(matching(&db, sql).await[0].starts_with("logs: answered from view per_page"));
    db.flush().await.unwrap();
    db.apply_retention().await.unwrap();
    let reason = "retention removed rows of logs that its views still count";
    let check = |db: Database| async move {
        let lines = matching(&db, sql).await;
        assert!(lines.iter().any(|l| l.contains(reason)), "{lines:#?}");
        assert_eq!(query_lines(&db, sql).await, ["/a|1"]);
        // The view still counts both rows.
        assert_eq!(query_lines(&db, "SELECT n FROM per_page").await, ["2"]);
        db.close().unwrap();
    };
    check(db).await;
    // The table remembers it across a restart.
    check(Database::open(&path, test_options()).unwrap()).await;
}

/// The `view matching` lines of EXPLAIN over the wire.
async fn pg_matching(client: &tokio_postgres::Client) -> Vec<String> {
    let rows = crate::pg::simple_rows(
        client,
        "EXPLAIN SELECT page, sum(bytes) FROM events GROUP BY page",
    )
    .await;
    rows.into_iter()
        .filter(|r| r[0].as_deref() == Some("view matching"))
        .filter_map(|r| r[1].clone())
        .collect()
}

#[tokio::test]
async fn the_server_setting_turns_rewriting_off_for_its_connection() {
    let server = crate::pg::TestServer::start().await;
    let client = server.connect().await;
    client.batch_execute(EVENTS).await.unwrap();
    let (name, query) = VIEWS[0];
    client
        .batch_execute(&format!(
            "CREATE MATERIALIZED VIEW {name} AS {query}; \
             INSERT INTO events (ts, page, bytes) VALUES ('2026-01-01 10:00:00', '/a', 3)"
        ))
        .await
        .unwrap();
    assert_eq!(
        crate::pg::simple_value(&client, "SHOW tally.view_rewrite").await,
        "on"
    );
    assert!(pg_matching(&client).await[0].starts_with("events: answered from view page_hourly"));
    client
        .batch_execute("SET tally.view_rewrite = off")
        .await
        .unwrap();
    assert_eq!(
        pg_matching(&client).await,
        ["events: not answered from a view: tally.view_rewrite is off"]
    );
    // Another connection keeps the default.
    let other = server.connect().await;
    assert!(pg_matching(&other).await[0].starts_with("events: answered from view"));
    // Over the extended protocol too.
    let rows = client
        .query("SELECT page, sum(bytes) FROM events GROUP BY page", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    client
        .batch_execute("RESET tally.view_rewrite")
        .await
        .unwrap();
    assert!(pg_matching(&client).await[0].starts_with("events: answered from view"));
    let err = client
        .batch_execute("SET tally.view_rewrite = sometimes")
        .await
        .unwrap_err();
    assert_eq!(crate::pg::code(&err), "22023", "{err}");
    server.stop().await;
}

mod property;
