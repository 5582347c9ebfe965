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
