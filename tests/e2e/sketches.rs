//! Top-k (frequent items) and theta sketches: the ad-hoc functions, the same answers from
//! views, rollups over a view's sketches (top pages per week from a per-day view, retention
//! from a per-day theta view), and refusals of bad arguments.

use tally_engine::{Database, ErrorKind};
use tally_tests::*;

const VISITS_DDL: &str = "CREATE TABLE visits (ts TIMESTAMP NOT NULL, day INT, country TEXT, \
                          page TEXT, user_id BIGINT) WITH (time_column = 'ts')";

/// `days` days of visits: on day `d`, users `0..100 + 10 d` (users below 30 come back every
/// day, the others only on even days), pages skewed towards `/home`.
async fn visits(db: &Database, days: i64) {
    db.sql(VISITS_DDL).await.unwrap();
    let mut values = Vec::new();
    for day in 1..=days {
        for user in 0..100 + 10 * day {
            if user >= 30 && day % 2 == 1 && day != 1 {
                continue;
            }
            let country = ["de", "fr"][(user % 2) as usize];
            let page = match user % 10 {
                0..=4 => "/home",
                5..=7 => "/docs",
                8 => "/blog",
                _ => "/about",
            };
            values.push(format!(
                "(TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '{day} days', {day}, '{country}', '{page}', {user})"
            ));
        }
    }
    for chunk in values.chunks(200) {
        db.sql(&format!("INSERT INTO visits VALUES {}", chunk.join(", ")))
            .await
            .unwrap();
    }
}

async fn one(db: &Database, sql: &str) -> String {
    let lines = query_lines(db, sql).await;
    assert_eq!(lines.len(), 1, "{sql}: {lines:?}");
    lines.into_iter().next().unwrap()
}

#[tokio::test]
async fn ad_hoc_top_k_and_theta_functions() {
    let (_dir, db) = temp_db(test_options());
    visits(&db, 7).await;
    let top = one(
        &db,
        "SELECT approx_top_k(page, 2) FROM visits WHERE day = 1",
    )
    .await;
    assert_eq!(
        top,
        r#"[{"value": "/home", "count": 55}, {"value": "/docs", "count": 33}]"#
    );
    // Integers count by their text form; the sketch route gives the same answer.
    assert_eq!(
        one(
            &db,
            "SELECT approx_top_k(user_id % 3, 1) FROM visits WHERE day = 1"
        )
        .await,
        r#"[{"value": "0", "count": 37}]"#
    );
    assert_eq!(
        one(
            &db,
            "SELECT sketch_top_k(topk_sketch(page), 2) FROM visits WHERE day = 1"
        )
        .await,
        top
    );
    assert_eq!(
        one(
            &db,
            "SELECT sketch_top_k(topk_union_agg(s), 2) FROM \
             (SELECT country, topk_sketch(page) AS s FROM visits WHERE day = 1 GROUP BY country) AS q"
        )
        .await,
        top
    );
    assert_eq!(
        one(
            &db,
            "SELECT approx_top_k(page, 3) FROM visits WHERE day = 99"
        )
        .await,
        "[]"
    );

    // Theta: exact below 4096 distinct values.
    assert_eq!(
        one(
            &db,
            "SELECT theta_estimate(theta_sketch(user_id)) FROM visits"
        )
        .await,
        "160.0"
    );
    let retained = "SELECT theta_estimate(theta_intersect(a.s, b.s)), \
                    theta_estimate(theta_a_not_b(a.s, b.s)) FROM \
                    (SELECT theta_sketch(user_id) AS s FROM visits WHERE day = 1) AS a, \
                    (SELECT theta_sketch(user_id) AS s FROM visits WHERE day = 7) AS b";
    assert_eq!(one(&db, retained).await, "30.0|80.0");
    assert_eq!(
        one(
            &db,
            "SELECT theta_estimate(theta_intersect_agg(s)), theta_estimate(theta_union_agg(s)) FROM \
             (SELECT day, theta_sketch(user_id) AS s FROM visits GROUP BY day) AS q"
        )
        .await,
        "30.0|160.0"
    );
    assert_eq!(
        one(
            &db,
            "SELECT theta_union_agg(s) IS NULL, theta_intersect_agg(s) IS NULL FROM \
             (SELECT day, theta_sketch(user_id) AS s FROM visits WHERE day = 99 GROUP BY day) AS q"
        )
        .await,
        "true|true"
    );
}

#[tokio::test]
async fn bad_arguments_are_clear_errors() {
    let (_dir, db) = temp_db(test_options());
    visits(&db, 1).await;
    for (sql, kind, words) in [
        (
            "SELECT approx_top_k(page, 0) FROM visits",
            Some(ErrorKind::InvalidArgument),
            "positive",
        ),
        (
            "SELECT sketch_top_k(topk_sketch(page), -1) FROM visits",
            Some(ErrorKind::InvalidArgument),
            "positive",
        ),
        (
            "SELECT sketch_top_k(page::bytea, 3) FROM visits",
            Some(ErrorKind::InvalidArgument),
            "frequent items",
        ),
        (
            "SELECT theta_estimate(page::bytea) FROM visits",
            Some(ErrorKind::InvalidArgument),
            "theta",
        ),
        (
            "SELECT theta_estimate(theta_intersect(theta_sketch(user_id), 'xx'::bytea)) FROM visits",
            Some(ErrorKind::InvalidArgument),
            "theta",
        ),
        (
            "SELECT theta_union_agg(s) FROM (SELECT hll_sketch(user_id) AS s FROM visits) AS q",
            Some(ErrorKind::InvalidArgument),
            "theta",
        ),
        ("SELECT theta_estimate(page) FROM visits", None, "BYTEA"),
        (
            "SELECT approx_top_k(page, 'x') FROM visits",
            None,
            "integer",
        ),
        (
            "SELECT approx_top_k(page, day) FROM visits",
            None,
            "constant",
        ),
        ("SELECT topk_union_agg(user_id) FROM visits", None, "BYTEA"),
    ] {
        let err = db.sql(sql).await.expect_err(sql);
        if let Some(kind) = kind {
            assert_eq!(err.kind(), kind, "{sql}: {err}");
        }
        assert!(err.to_string().contains(words), "{sql}: {err}");
    }
}

/// A per-day, per-country view keeps top pages and user sketches; it reads like its query,
/// rolls up to the week (top pages) and answers retention by a self-join, through flushes,
/// compaction and a reopen.
#[tokio::test]
async fn views_keep_top_k_and_theta_sketches_and_roll_up() {
    let (dir, db) = temp_db(test_options());
    visits(&db, 3).await;
    let query = "SELECT day, country, approx_top_k(page, 2) AS top, theta_sketch(user_id) AS users, \
                 topk_sketch(user_id) AS frequent_users, count(*) AS n FROM visits GROUP BY day, country";
    db.sql(&format!("CREATE MATERIALIZED VIEW daily AS {query}"))
        .await
        .unwrap();
    let columns = "day, country, top, users, frequent_users, n";
    let read = format!("SELECT {columns} FROM daily ORDER BY day, country");
    let recompute = format!("SELECT * FROM ({query}) AS q ORDER BY day, country");
    assert_eq!(
        query_lines(&db, &read).await,
        query_lines(&db, &recompute).await
    );
    // The hidden sketch of `top`, left out of `*`.
    let star = db.sql("SELECT * FROM daily LIMIT 1").await.unwrap();
    let names: Vec<String> = star[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        ["day", "country", "top", "users", "frequent_users", "n"]
    );

    // More days arrive in several commits, with flushes and compactions between them.
    for day in 4..=7 {
        let mut values = Vec::new();
        for user in 0..100 + 10 * day {
            if user >= 30 && day % 2 == 1 {
                continue;
            }
            let country = ["de", "fr"][(user % 2) as usize];
            let page = ["/home", "/home", "/docs", "/blog"][(user % 4) as usize];
            values.push(format!(
                "(TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '{day} days', {day}, '{country}', '{page}', {user})"
            ));
        }
        for chunk in values.chunks(40) {
            db.sql(&format!("INSERT INTO visits VALUES {}", chunk.join(", ")))
                .await
                .unwrap();
        }
        if day % 2 == 0 {
            db.flush().await.unwrap();
        } else {
            db.compact_views().await.unwrap();
        }
        assert_eq!(
            query_lines(&db, &read).await,
            query_lines(&db, &recompute).await,
            "day {day}"
        );
    }

    let weekly = "SELECT country, sketch_top_k(topk_union_agg(top_sketch), 3) FROM daily \
                  GROUP BY country ORDER BY country";
    let weekly_recomputed =
        "SELECT country, approx_top_k(page, 3) FROM visits GROUP BY country ORDER BY country";
    assert_eq!(
        query_lines(&db, weekly).await,
        query_lines(&db, weekly_recomputed).await
    );
    let retention = "SELECT a.country, theta_estimate(theta_intersect(a.users, b.users)) \
                     FROM daily AS a JOIN daily AS b ON a.country = b.country \
                     WHERE a.day = 1 AND b.day = 7 ORDER BY a.country";
    let exact = "SELECT a.country, count(DISTINCT a.user_id)::double precision FROM visits AS a \
                 JOIN visits AS b ON a.country = b.country AND a.user_id = b.user_id \
                 WHERE a.day = 1 AND b.day = 7 GROUP BY a.country ORDER BY a.country";
    assert_eq!(
        query_lines(&db, retention).await,
        query_lines(&db, exact).await
    );
    assert_eq!(
        query_lines(&db, retention).await,
        vec!["de|15.0".to_string(), "fr|15.0".to_string()]
    );

    drop(db);
    let db = Database::open(dir.path().join("data"), test_options()).unwrap();
    assert_eq!(
        query_lines(&db, &read).await,
        query_lines(&db, &recompute).await
    );
    assert_eq!(
        query_lines(&db, weekly).await,
        query_lines(&db, weekly_recomputed).await
    );
}

#[tokio::test]
async fn views_refuse_bad_top_k_arguments() {
    let (_dir, db) = temp_db(test_options());
    visits(&db, 1).await;
    for (sql, kind, words) in [
        (
            "SELECT day, approx_top_k(page, 0) AS t FROM visits GROUP BY day",
            Some(ErrorKind::InvalidArgument),
            "positive",
        ),
        (
            "SELECT day, approx_top_k(page, day) AS t FROM visits GROUP BY day",
            Some(ErrorKind::NotSupported),
            "constant",
        ),
        (
            "SELECT day, topk_sketch(page::bytea) AS t FROM visits GROUP BY day",
            None,
            "hex",
        ),
        (
            "SELECT day, approx_top_k(page, 2) AS t, count(*) AS t_sketch FROM visits GROUP BY day",
            Some(ErrorKind::InvalidDefinition),
            "t_sketch",
        ),
    ] {
        let err = db
            .sql(&format!("CREATE MATERIALIZED VIEW bad AS {sql}"))
            .await
            .expect_err(sql);
        if let Some(kind) = kind {
            assert_eq!(err.kind(), kind, "{sql}: {err}");
        }
        assert!(err.to_string().contains(words), "{sql}: {err}");
    }
}

/// The examples of docs/sql.md ("Top-k and set operations") run and agree with the table.
#[tokio::test]
async fn the_documented_examples_run() {
    let (_dir, db) = temp_db(test_options());
    visits(&db, 7).await;
    db.sql(
        "CREATE MATERIALIZED VIEW daily AS \
         SELECT date_trunc('day', ts) AS day, country, \
                approx_top_k(page, 10) AS top_pages, \
                theta_sketch(user_id)  AS users \
         FROM visits GROUP BY 1, 2",
    )
    .await
    .unwrap();
    let weekly = query_lines(
        &db,
        "SELECT country, sketch_top_k(topk_union_agg(top_pages_sketch), 10) AS top_pages \
         FROM daily GROUP BY 1 ORDER BY 1",
    )
    .await;
    let direct = query_lines(
        &db,
        "SELECT country, approx_top_k(page, 10) FROM visits GROUP BY 1 ORDER BY 1",
    )
    .await;
    assert_eq!(weekly, direct);
    query_lines(
        &db,
        "SELECT date_trunc('week', day) AS week, country, \
         sketch_top_k(topk_union_agg(top_pages_sketch), 10) AS top_pages FROM daily GROUP BY 1, 2",
    )
    .await;
    assert_eq!(
        query_lines(
            &db,
            "SELECT a.country, theta_estimate(a.users) AS cohort, \
             theta_estimate(theta_intersect(a.users, b.users)) AS retained \
             FROM daily AS a JOIN daily AS b \
             ON a.country = b.country AND b.day = a.day + INTERVAL '6 days' \
             WHERE a.day = TIMESTAMP '2026-01-02' ORDER BY 1",
        )
        .await,
        ["de|55.0|15.0", "fr|55.0|15.0"]
    );
    assert_eq!(
        query_lines(
            &db,
            "SELECT a.country, theta_estimate(theta_a_not_b(a.users, b.users)) AS churned \
             FROM daily AS a JOIN daily AS b ON a.country = b.country \
             WHERE a.day = TIMESTAMP '2026-01-02' AND b.day = TIMESTAMP '2026-01-08' ORDER BY 1",
        )
        .await,
        ["de|40.0", "fr|40.0"]
    );
    assert_eq!(
        query_lines(
            &db,
            "SELECT country, theta_estimate(theta_intersect_agg(users)) FROM daily \
             WHERE day >= TIMESTAMP '2026-01-02' AND day < TIMESTAMP '2026-01-09' \
             GROUP BY country ORDER BY 1",
        )
        .await,
        ["de|15.0", "fr|15.0"]
    );
}

/// Beyond exact mode (groups of 20,000 users and 3,000 pages, ingested in pieces, flushed and
/// compacted between them), a view's estimates stay within the documented bounds of the truth:
/// theta within 3 standard errors (1.6% each) of the union it comes from (and its sketch is
/// the ad-hoc one, byte for byte), and top-k counts never below the true count and at most
/// 3.5/1024 of the group's rows above it.
#[tokio::test]
async fn estimates_beyond_exact_mode_stay_within_their_bounds() {
    use arrow::array::{
        Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
    };
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;

    let (_dir, db) = temp_db(test_options());
    db.sql("CREATE TABLE t (ts TIMESTAMP NOT NULL, g INT, page TEXT, u BIGINT) WITH (time_column = 'ts')")
        .await
        .unwrap();
    db.sql(
        "CREATE MATERIALIZED VIEW v AS SELECT g, approx_top_k(page, 5) AS pages, \
         theta_sketch(u) AS users, count(*) AS n FROM t GROUP BY g",
    )
    .await
    .unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("g", DataType::Int32, true),
        Field::new("page", DataType::Utf8, true),
        Field::new("u", DataType::Int64, true),
    ]));
    let hash = |i: u64| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20;
    let rows_per_piece = 20_000u64;
    for piece in 0..6u64 {
        let n = piece * rows_per_piece..(piece + 1) * rows_per_piece;
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(TimestampMicrosecondArray::from_iter_values(
                    n.clone().map(|i| JAN_1_2026_US + i as i64),
                )),
                Arc::new(Int32Array::from_iter_values(
                    n.clone().map(|i| (i % 2) as i32),
                )),
                Arc::new(StringArray::from_iter_values(n.clone().map(|i| {
                    // A few heavy pages and a long tail of 3,000.
                    let h = hash(i);
                    if h % 4 == 0 {
                        format!("/hot/{}", h % 5)
                    } else {
                        format!("/p/{}", h % 3000)
                    }
                }))),
                // Group 0 sees users 0..20000, group 1 users 10000..30000.
                Arc::new(Int64Array::from_iter_values(
                    n.map(|i| (hash(i ^ 5) % 20_000 + (i % 2) * 10_000) as i64),
                )),
            ],
        )
        .unwrap();
        db.ingest("t", batch).await.unwrap();
        match piece % 3 {
            0 => db.flush().await.unwrap(),
            1 => db.compact_views().await.unwrap(),
            _ => {}
        }
    }
    let pairs = query_lines(
        &db,
        "SELECT theta_estimate(a.users), theta_estimate(theta_intersect(a.users, b.users)), \
         theta_estimate(theta_a_not_b(a.users, b.users)), \
         (SELECT count(DISTINCT u) FROM t WHERE g = 0) AS truth, \
         (SELECT count(DISTINCT u) FROM t WHERE g = 0 AND u IN (SELECT u FROM t WHERE g = 1)) AS truth_both \
         FROM v AS a, v AS b WHERE a.g = 0 AND b.g = 1",
    )
    .await;
    let fields: Vec<f64> = pairs[0].split('|').map(|f| f.parse().unwrap()).collect();
    let (estimate, both, only_a, truth, truth_both) =
        (fields[0], fields[1], fields[2], fields[3], fields[4]);
    assert!(truth > 4096.0, "the test must leave exact mode: {truth}");
    let union = 30_000.0;
    let bound = 3.0 * union / 4096f64.sqrt();
    assert!(
        (estimate - truth).abs() <= 3.0 * truth / 4096f64.sqrt(),
        "{estimate} vs {truth}"
    );
    assert!((both - truth_both).abs() <= bound, "{both} vs {truth_both}");
    assert!((only_a - (truth - truth_both)).abs() <= bound, "{only_a}");

    // The view's sketch, merged from six commits and compactions, is the one-pass sketch.
    assert_eq!(
        query_lines(&db, "SELECT g, users FROM v ORDER BY g").await,
        raw_lines(
            &db,
            "SELECT g, theta_sketch(u) FROM t GROUP BY g ORDER BY g"
        )
        .await
    );

    for g in 0..2 {
        let top = query_lines(&db, &format!("SELECT pages, n FROM v WHERE g = {g}")).await;
        let (json, n) = top[0].rsplit_once('|').unwrap();
        let n: f64 = n.parse().unwrap();
        let exact = query_lines(
            &db,
            &format!("SELECT page, count(*) FROM t WHERE g = {g} GROUP BY page ORDER BY 2 DESC, 1 LIMIT 5"),
        )
        .await;
        for line in exact {
            let (page, count) = line.split_once('|').unwrap();
            let count: f64 = count.parse().unwrap();
            let needle = format!("{{\"value\": \"{page}\", \"count\": ");
            let at = json
                .find(&needle)
                .unwrap_or_else(|| panic!("{page} missing from {json}"));
            let rest = &json[at + needle.len()..];
            let estimate: f64 = rest[..rest.find('}').unwrap()].parse().unwrap();
            assert!(
                estimate >= count && estimate - count <= n * 3.5 / 1024.0,
                "{page}: {estimate} vs {count} of {n}"
            );
        }
    }
}

/// Over the wire: `approx_top_k` is `json` (text a driver parses), sketches are `bytea`,
/// `theta_estimate` is `float8`, and a damaged sketch is SQLSTATE 22023.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_clients_see_json_bytea_and_clear_errors() {
    use tokio_postgres::types::Type;
    let server = crate::pg::TestServer::start().await;
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE hits (ts TIMESTAMP NOT NULL, page TEXT, user_id BIGINT); \
             INSERT INTO hits VALUES ('2026-01-01 10:00:00', '/a', 1), ('2026-01-01 11:00:00', '/a', 2), \
             ('2026-01-01 12:00:00', '/b', 2); \
             CREATE MATERIALIZED VIEW daily AS SELECT date_trunc('day', ts) AS day, \
             approx_top_k(page, 5) AS pages, theta_sketch(user_id) AS users FROM hits GROUP BY 1",
        )
        .await
        .unwrap();
    let statement = client
        .prepare("SELECT pages, users, pages_sketch, theta_estimate(users) FROM daily")
        .await
        .unwrap();
    let types: Vec<Type> = statement
        .columns()
        .iter()
        .map(|c| c.type_().clone())
        .collect();
    assert_eq!(types, [Type::JSON, Type::BYTEA, Type::BYTEA, Type::FLOAT8]);
    let row = client.query_one(&statement, &[]).await.unwrap();
    let users: Vec<u8> = row.get(1);
    assert!(!users.is_empty());
    assert_eq!(row.get::<_, f64>(3), 2.0);
    let text = client
        .simple_query("SELECT pages FROM daily")
        .await
        .unwrap();
    let pages = text.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    });
    assert_eq!(
        pages.as_deref(),
        Some(r#"[{"value": "/a", "count": 2}, {"value": "/b", "count": 1}]"#)
    );
    let err = client
        .simple_query("SELECT theta_estimate('\\x0102'::bytea)")
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("22023"), "{err}");
}
