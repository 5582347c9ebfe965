//! The clickstream materialized views of the docs, created and read from psql and over the
//! extended protocol, fed by a `\copy` of a CSV file: every view read equals its query
//! recomputed over the raw table, and sketch rollups equal one-pass distinct counts.

use crate::pg::{TestServer, psql};

const EVENTS: &str = "CREATE TABLE events (ts TIMESTAMP NOT NULL, user_id BIGINT, session_id BIGINT, \
    page TEXT, country TEXT, device TEXT, status INT, latency_ms DOUBLE PRECISION, bytes BIGINT)";

const PAGE_HOURLY: &str = "SELECT date_trunc('hour', ts) AS hour, page, count(*) AS views, \
    sum(bytes) AS bytes, avg(latency_ms) AS avg_latency, max(latency_ms) AS max_latency, \
    approx_count_distinct(user_id) AS users FROM events GROUP BY 1, 2";
const COUNTRY_DAILY: &str = "SELECT date_trunc('day', ts) AS day, country, device, \
    count(*) AS views, approx_count_distinct(user_id) AS users, \
    approx_count_distinct(session_id) AS sessions FROM events GROUP BY 1, 2, 3";
const ERRORS_MINUTE: &str = "SELECT date_trunc('minute', ts) AS minute, status, count(*) AS n \
    FROM events WHERE status >= 400 GROUP BY 1, 2";

/// `rows` clickstream events as CSV with a header, deterministic.
fn clickstream_csv(rows: u64) -> String {
    let mut out =
        String::from("ts,user_id,session_id,page,country,device,status,latency_ms,bytes\n");
    let hash = |i: u64| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
    for i in 0..rows {
        let h = hash(i);
        let seconds = i * 3 * 86_400 / rows;
        let user = h % 4_000;
        let status = [200, 200, 200, 200, 200, 200, 301, 404, 500, 503][(h % 10) as usize];
        let user_id = if i % 50 == 0 {
            String::new()
        } else {
            user.to_string()
        };
        out.push_str(&format!(
            "2026-01-{:02} {:02}:{:02}:{:02},{user_id},{},/p/{},{},{},{status},{}.{:03},{}\n",
            1 + seconds / 86_400,
            seconds / 3600 % 24,
            seconds / 60 % 60,
            seconds % 60,
            user * 1000 + (seconds / 1800) % 1000,
            (h >> 12) % 20,
            ["de", "fr", "us", "br", "in"][((h >> 20) % 5) as usize],
            ["desktop", "mobile", "tablet"][((h >> 24) % 3) as usize],
            (h >> 28) % 900,
            (h >> 8) % 1000,
            200 + (h >> 30) % 200_000,
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickstream_views_work_from_psql() {
    let server = TestServer::start().await;
    let create = |name: &str, query: &str| format!("CREATE MATERIALIZED VIEW {name} AS {query}");
    // Two views exist before the data, one is created over it (backfilled).
    let out = psql(
        &server,
        &[
            "-c",
            EVENTS,
            "-c",
            &create("page_hourly", PAGE_HOURLY),
            "-c",
            &create("errors_minute", ERRORS_MINUTE),
        ],
    )
    .await
    .unwrap();
    assert!(out.contains("CREATE MATERIALIZED VIEW"), "{out}");
    std::fs::write(
        server.dir.path().join("events.csv"),
        clickstream_csv(30_000),
    )
    .unwrap();
    let out = psql(
        &server,
        &[
            "-c",
            "\\copy events FROM 'events.csv' WITH (FORMAT csv, HEADER)",
        ],
    )
    .await
    .unwrap();
    assert!(out.contains("COPY 30000"), "{out}");
    psql(&server, &["-c", &create("country_daily", COUNTRY_DAILY)])
        .await
        .unwrap();
    let more = clickstream_csv(5_000).replace("2026-01-0", "2026-01-1");
    std::fs::write(server.dir.path().join("more.csv"), more).unwrap();
    psql(
        &server,
        &[
            "-c",
            "\\copy events FROM 'more.csv' WITH (FORMAT csv, HEADER)",
        ],
    )
    .await
    .unwrap();

    let query = |sql: String| {
        let server = &server;
        async move { psql(server, &["-A", "-t", "-c", &sql]).await.unwrap() }
    };
    // The raw table's answer: no view answers for it (the recompute a view is checked against).
    let raw = |sql: String| {
        let server = &server;
        async move {
            let set = "SET tally.view_rewrite = off";
            psql(server, &["-q", "-A", "-t", "-c", set, "-c", &sql])
                .await
                .unwrap()
        }
    };
    let columns = [
        (
            "page_hourly",
            PAGE_HOURLY,
            "hour, page, views, bytes, avg_latency, max_latency, users",
            "hour, page",
        ),
        (
            "country_daily",
            COUNTRY_DAILY,
            "day, country, device, views, users, sessions",
            "day, country, device",
        ),
        (
            "errors_minute",
            ERRORS_MINUTE,
            "minute, status, n",
            "minute, status",
        ),
    ];
    for (view, definition, columns, order) in columns {
        let stored = query(format!("SELECT {columns} FROM {view} ORDER BY {order}")).await;
        let recomputed = raw(format!("SELECT * FROM ({definition}) q ORDER BY {order}")).await;
        assert!(stored.lines().count() > 10, "{view}: {stored}");
        assert_eq!(stored, recomputed, "{view}");
    }
    // A dashboard read with a filter on a group column, and a rollup by sketch union.
    let stored = query(
        "SELECT hour, views, users FROM page_hourly WHERE page = '/p/3' ORDER BY hour".into(),
    )
    .await;
    let recomputed = raw(
        "SELECT date_trunc('hour', ts), count(*), approx_count_distinct(user_id) FROM events \
         WHERE page = '/p/3' GROUP BY 1 ORDER BY 1"
            .into(),
    )
    .await;
    assert_eq!(stored, recomputed);
    let rollup = query(
        "SELECT country, hll_cardinality(hll_union_agg(users_sketch)) FROM country_daily \
         GROUP BY country ORDER BY country"
            .into(),
    )
    .await;
    let one_pass = raw(
        "SELECT country, approx_count_distinct(user_id) FROM events GROUP BY country ORDER BY country"
            .into(),
    )
    .await;
    assert_eq!(rollup, one_pass);

    // The same dashboard query, prepared, over the extended protocol.
    let client = server.connect().await;
    let statement = client
        .prepare("SELECT hour, views, users FROM page_hourly WHERE page = $1 ORDER BY hour")
        .await
        .unwrap();
    let rows = client.query(&statement, &[&"/p/3"]).await.unwrap();
    assert_eq!(rows.len(), stored.lines().count());
    let first: i64 = rows[0].get("views");
    assert_eq!(
        first.to_string(),
        stored.lines().next().unwrap().split('|').nth(1).unwrap()
    );
    let listed = query("SELECT name, state FROM tally_views ORDER BY name".into()).await;
    assert_eq!(
        listed.trim(),
        "country_daily|ready\nerrors_minute|ready\npage_hourly|ready"
    );
    drop(client);
    server.stop().await;
}

/// Percentiles over the wire: a view's p50/p95/p99 read as float8 from psql and tokio-postgres,
/// its `p95_sketch` as bytea, read back by `sketch_quantile` from a parameter, and rolled up
/// from hours to pages close to the one-pass answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percentile_views_and_their_sketches_over_the_wire() {
    let server = TestServer::start().await;
    let view = "CREATE MATERIALIZED VIEW latency_hourly AS SELECT date_trunc('hour', ts) AS hour, \
                page, approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50, \
                approx_percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95, \
                approx_percentile_cont(latency_ms, 0.99) AS p99 FROM events GROUP BY 1, 2";
    psql(&server, &["-c", EVENTS, "-c", view]).await.unwrap();
    std::fs::write(
        server.dir.path().join("events.csv"),
        clickstream_csv(30_000),
    )
    .unwrap();
    let out = psql(
        &server,
        &[
            "-c",
            "\\copy events FROM 'events.csv' WITH (FORMAT csv, HEADER)",
        ],
    )
    .await
    .unwrap();
    assert!(out.contains("COPY 30000"), "{out}");
    let query = |sql: &str| {
        let (server, sql) = (&server, sql.to_string());
        async move { psql(server, &["-A", "-t", "-c", &sql]).await.unwrap() }
    };
    let parse = |text: String| -> Vec<(String, f64)> {
        text.lines()
            .map(|l| {
                let (key, value) = l.rsplit_once('|').unwrap();
                (key.to_string(), value.parse().unwrap())
            })
            .collect()
    };
    let rollup = parse(
        query(
            "SELECT page, sketch_quantile(quantile_union_agg(p95_sketch), 0.95) FROM latency_hourly \
             GROUP BY page ORDER BY page",
        )
        .await,
    );
    let one_pass = parse(
        query(
            "SELECT page, percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) FROM events \
             GROUP BY page ORDER BY page",
        )
        .await,
    );
    assert_eq!(rollup.len(), 20, "{rollup:?}");
    for ((page, estimate), (exact_page, exact)) in rollup.iter().zip(&one_pass) {
        assert_eq!(page, exact_page);
        // Latencies are uniform in 0..900 ms: a rank error of 1% is 9 ms.
        assert!(
            (estimate - exact).abs() < 9.0,
            "{page}: {estimate} vs {exact}"
        );
    }

    let client = server.connect().await;
    let rows = client
        .query(
            "SELECT p50, p95, p99, p95_sketch FROM latency_hourly WHERE page = $1 ORDER BY hour",
            &[&"/p/3"],
        )
        .await
        .unwrap();
    assert!(rows.len() > 10, "{} rows", rows.len());
    for row in &rows {
        let (p50, p95, p99): (f64, f64, f64) = (row.get(0), row.get(1), row.get(2));
        assert!(p50 <= p95 && p95 <= p99, "{p50} {p95} {p99}");
        let sketch: Vec<u8> = row.get(3);
        let read = client
            .query_one(
                "SELECT sketch_quantile($1::bytea, 0.95), sketch_rank($1::bytea, $2::float8), \
                 sketch_quantile($1::bytea, 0.99)",
                &[&sketch, &p99],
            )
            .await
            .unwrap();
        assert_eq!(read.get::<_, f64>(0), p95);
        assert_eq!(read.get::<_, f64>(2), p99);
        // Groups of a few dozen values: p99 interpolates between the two largest, whose ranks
        // are (n − 1)/n and 1.
        let rank: f64 = read.get(1);
        assert!((0.9..=1.0).contains(&rank), "rank of p99: {rank}");
    }
    let err = client
        .query_one(
            "SELECT sketch_quantile($1::bytea, 2.0)",
            &[&vec![1u8, 2, 3]],
        )
        .await
        .unwrap_err();
    assert!(err.as_db_error().is_some(), "{err}");
    let err = client
        .query_one(
            "SELECT approx_percentile_cont(latency_ms, 1.5) FROM events",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.as_db_error().map(|e| e.code().code()),
        Some("22023"),
        "{err}"
    );
    let err = client
        .batch_execute("CREATE MATERIALIZED VIEW exact AS SELECT page, percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) FROM events GROUP BY 1")
        .await
        .unwrap_err();
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "0A000", "{db:?}");
    assert!(db.message().contains("approx_percentile_cont"), "{db:?}");
    drop(client);
    server.stop().await;
}
