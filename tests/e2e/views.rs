//! Materialized views: every view equals its defining query recomputed over the base rows, at
//! every snapshot, through ingest, flush, backfill, reopen and concurrent writers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tally_engine::{Database, ErrorKind};
use tally_tests::*;

/// The group and aggregate columns of a view, and the recompute query over the table.
struct ViewCase {
    name: &'static str,
    select: String,
    order: String,
}

impl ViewCase {
    fn create(&self) -> String {
        format!("CREATE MATERIALIZED VIEW {} AS {}", self.name, self.select)
    }

    fn recompute(&self) -> String {
        format!(
            "SELECT * FROM ({}) AS recomputed ORDER BY {}",
            self.select, self.order
        )
    }

    fn read(&self) -> String {
        format!("SELECT * FROM {} ORDER BY {}", self.name, self.order)
    }
}

fn clickstream_views() -> Vec<ViewCase> {
    vec![
        ViewCase {
            name: "page_hourly",
            select: "SELECT date_trunc('hour', ts) AS hour, page, count(*) AS views, sum(user_id) AS user_sum, \
                     avg(latency_ms) AS avg_latency, max(latency_ms) AS max_latency, min(ts) AS first_seen \
                     FROM events GROUP BY 1, 2"
                .into(),
            order: "hour, page".into(),
        },
        ViewCase {
            name: "daily",
            select: "SELECT date_trunc('day', ts) AS day, count(*) AS n, count(user_id) AS with_user, \
                     count(*) FILTER (WHERE latency_ms > 100) AS slow FROM events GROUP BY 1"
                .into(),
            order: "day".into(),
        },
        ViewCase {
            name: "slow_pages",
            select: "SELECT lower(page) AS page, min(user_id) AS min_user, sum(latency_ms) AS total \
                     FROM events WHERE latency_ms >= 90 GROUP BY lower(page)"
                .into(),
            order: "page".into(),
        },
        ViewCase { name: "everything", select: "SELECT count(*) AS n, sum(batch_id) AS s FROM events".into(), order: "n".into() },
    ]
}

async fn assert_views_exact(db: &Database, views: &[ViewCase]) {
    for v in views {
        let stored = query_lines(db, &v.read()).await;
        let expected = raw_lines(db, &v.recompute()).await;
        assert_eq!(stored, expected, "view {} differs from its query", v.name);
    }
}

#[tokio::test]
async fn clickstream_views_stay_exact_through_ingest_flush_and_reopen() {
    let (dir, db) = temp_db(test_options());
    db.sql(EVENTS_DDL).await.unwrap();
    db.ingest("events", events_batch(0, 300, 3)).await.unwrap();
    let views = clickstream_views();
    // Created over existing rows: backfilled.
    for v in &views {
        db.sql(&v.create()).await.unwrap();
    }
    assert_views_exact(&db, &views).await;
    for b in 1..6 {
        db.ingest("events", events_batch(b, 200 + b as usize * 10, 3))
            .await
            .unwrap();
        if b == 3 {
            db.flush().await.unwrap();
        }
        assert_views_exact(&db, &views).await;
    }
    db.sql("INSERT INTO events VALUES ('2025-12-31 23:59:59', 5, '/LATE', 250.0, 99)")
        .await
        .unwrap();
    assert_views_exact(&db, &views).await;
    db.close().unwrap();
    let db = Database::open(dir.path().join("data"), test_options()).unwrap();
    assert_views_exact(&db, &views).await;
    db.ingest("events", events_batch(7, 100, 2)).await.unwrap();
    assert_views_exact(&db, &views).await;
    assert_eq!(db.view_names().len(), 4);
    let listed = query_lines(
        &db,
        "SELECT name, table_name, state, groups > 0, bytes > 0 FROM tally_views ORDER BY name",
    )
    .await;
    assert_eq!(
        listed,
        vec![
            "daily|events|ready|true|true",
            "everything|events|ready|true|true",
            "page_hourly|events|ready|true|true",
            "slow_pages|events|ready|true|true",
        ]
    );
    let groups = query_i64(
        &db,
        "SELECT groups FROM tally_views WHERE name = 'page_hourly'",
    )
    .await;
    assert_eq!(
        groups,
        query_i64(&db, "SELECT count(*) FROM page_hourly").await
    );
}

#[tokio::test]
async fn unmaintainable_definitions_are_refused_precisely() {
    let (_dir, db) = temp_db(test_options());
    db.sql(EVENTS_DDL).await.unwrap();
    db.sql("CREATE TABLE other (batch_id BIGINT)")
        .await
        .unwrap();
    let cases = [
        (
            "SELECT e.page, count(*) FROM events e JOIN other o ON e.batch_id = o.batch_id GROUP BY 1",
            "joins",
        ),
        (
            "SELECT page, count(*) FROM events GROUP BY page ORDER BY page",
            "ORDER BY",
        ),
        (
            "SELECT page, count(*) FROM events GROUP BY page LIMIT 3",
            "LIMIT",
        ),
        (
            "SELECT page, count(*) FROM events GROUP BY page HAVING count(*) > 1",
            "HAVING",
        ),
        (
            "SELECT page, count(*) FROM events WHERE ts < now() GROUP BY page",
            "now()",
        ),
        (
            "SELECT page, sum(random()) FROM events GROUP BY page",
            "random()",
        ),
        (
            "SELECT page, count(*) FROM events WHERE batch_id IN (SELECT batch_id FROM other) GROUP BY page",
            "subquer",
        ),
        ("SELECT page, row_number() OVER () FROM events", "window"),
        ("SELECT page FROM events", "aggregates"),
        (
            "SELECT page, count(*) + 1 AS n FROM events GROUP BY page",
            "on top of the aggregates",
        ),
        (
            "SELECT page, sum(DISTINCT user_id) FROM events GROUP BY page",
            "sum(DISTINCT",
        ),
    ];
    for (query, expected) in cases {
        let err = db
            .sql(&format!("CREATE MATERIALIZED VIEW v AS {query}"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotSupported, "{query}: {err}");
        assert!(err.to_string().contains(expected), "{query}: {err}");
        assert!(db.view_names().is_empty(), "{query} created a view");
    }
    let err = db
        .sql("CREATE MATERIALIZED VIEW events AS SELECT count(*) FROM other")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DuplicateTable, "{err}");
    let err = db
        .sql("CREATE MATERIALIZED VIEW v AS SELECT count(*) FROM missing")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UndefinedTable, "{err}");
}

/// `rows` hits over three days and three countries, with user ids from a multiplicative hash of
/// the row number (so they repeat) in `0..users`.
fn hits_batch(start: u64, rows: u64, users: u64) -> arrow::array::RecordBatch {
    use arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    let n = start..start + rows;
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("country", DataType::Utf8, true),
        Field::new("user_id", DataType::Int64, true),
    ]));
    let hash = |i: u64| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17;
    arrow::array::RecordBatch::try_new(
        schema,
        vec![
            Arc::new(TimestampMicrosecondArray::from_iter_values(n.clone().map(
                |i| JAN_1_2026_US + (hash(i) % (3 * 86_400)) as i64 * 1_000_000,
            ))),
            Arc::new(StringArray::from_iter_values(
                n.clone()
                    .map(|i| ["de", "fr", "us"][(hash(i ^ 7) % 3) as usize]),
            )),
            Arc::new(Int64Array::from_iter(
                n.map(|i| (i % 97 != 0).then(|| (hash(i ^ 99) % users) as i64)),
            )),
        ],
    )
    .unwrap()
}

/// Names of the columns `sql` returns.
async fn names(db: &Database, sql: &str) -> Vec<String> {
    let mut results = db.execute(sql).await.unwrap();
    let last = results.pop().unwrap();
    last.schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

/// A view's `<column>_sketch` columns are left out of `*` (KBs per row nobody asked for), in
/// queries, prepared statements, `v.*` and subqueries; named, they still read.
#[tokio::test]
async fn sketch_columns_are_hidden_from_star_but_read_by_name() {
    let (_dir, db) = temp_db(test_options());
    db.sql("CREATE TABLE hits (ts TIMESTAMP NOT NULL, country TEXT, user_id BIGINT) WITH (time_column = 'ts')")
        .await
        .unwrap();
    db.ingest("hits", hits_batch(0, 2_000, 500)).await.unwrap();
    db.sql(
        "CREATE MATERIALIZED VIEW users_by_country AS SELECT country, \
         approx_count_distinct(user_id) AS users, count(*) AS hits FROM hits GROUP BY country",
    )
    .await
    .unwrap();
    let star = names(&db, "SELECT * FROM users_by_country").await;
    assert_eq!(star, ["country", "users", "hits"]);
    let qualified = names(&db, "SELECT v.*, h.country AS again FROM users_by_country AS v JOIN (SELECT DISTINCT country FROM hits) AS h ON v.country = h.country")
        .await;
    assert_eq!(qualified, ["country", "users", "hits", "again"]);
    let nested = names(
        &db,
        "SELECT * FROM (SELECT * FROM public.users_by_country) AS q",
    )
    .await;
    assert_eq!(nested, ["country", "users", "hits"]);
    let prepared = db
        .prepare("SELECT * FROM users_by_country WHERE country = $1")
        .await
        .unwrap();
    let fields: Vec<&str> = prepared
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(fields, ["country", "users", "hits"]);
    // By name the sketch is there, and rolls up to the one-pass estimate.
    assert_eq!(
        query_lines(
            &db,
            "SELECT hll_cardinality(hll_union_agg(users_sketch)) FROM users_by_country"
        )
        .await,
        raw_lines(&db, "SELECT approx_count_distinct(user_id) FROM hits").await
    );
    let named = names(&db, "SELECT country, users_sketch FROM users_by_country").await;
    assert_eq!(named, ["country", "users_sketch"]);
    // A table's columns are never hidden, whatever their names.
    db.sql("CREATE TABLE t (x_sketch BYTEA)").await.unwrap();
    let table = names(&db, "SELECT * FROM t").await;
    assert_eq!(table, ["x_sketch"]);
}

#[tokio::test]
async fn distinct_count_views_match_one_pass_sketches_and_roll_up_by_union() {
    let (dir, db) = temp_db(test_options());
    db.sql("CREATE TABLE hits (ts TIMESTAMP NOT NULL, country TEXT, user_id BIGINT) WITH (time_column = 'ts')")
        .await
        .unwrap();
    db.ingest("hits", hits_batch(0, 20_000, 50_000))
        .await
        .unwrap();
    db.sql(
        "CREATE MATERIALIZED VIEW users_daily AS SELECT date_trunc('day', ts) AS day, country, \
         approx_count_distinct(user_id) AS users, count(DISTINCT user_id) AS exact_users, \
         count(*) AS hits FROM hits GROUP BY 1, 2",
    )
    .await
    .unwrap();
    let columns = "day, country, users, exact_users, hits";
    let read = format!("SELECT {columns} FROM users_daily ORDER BY day, country");
    let recompute = "SELECT date_trunc('day', ts) AS day, country, approx_count_distinct(user_id), \
                     count(DISTINCT user_id), count(*) FROM hits GROUP BY 1, 2 ORDER BY 1, 2";
    let rollup = "SELECT country, hll_cardinality(hll_union_agg(users_sketch)) FROM users_daily \
                  GROUP BY country ORDER BY country";
    let one_pass = "SELECT country, approx_count_distinct(user_id) FROM hits GROUP BY country ORDER BY country";
    for b in 1..12u64 {
        db.ingest("hits", hits_batch(b * 20_000, 20_000, 50_000))
            .await
            .unwrap();
        if b == 5 {
            db.flush().await.unwrap();
        }
        if b % 4 == 0 {
            assert_eq!(
                query_lines(&db, &read).await,
                raw_lines(&db, recompute).await
            );
            assert_eq!(
                query_lines(&db, rollup).await,
                raw_lines(&db, one_pass).await
            );
        }
    }
    db.close().unwrap();
    let db = Database::open(dir.path().join("data"), test_options()).unwrap();
    assert_eq!(
        query_lines(&db, &read).await,
        raw_lines(&db, recompute).await
    );
    assert_eq!(
        query_lines(&db, rollup).await,
        raw_lines(&db, one_pass).await
    );

    // The estimates are close to the exact counts (thousands of users per group).
    for line in query_lines(&db, &read).await {
        let fields: Vec<&str> = line.split('|').collect();
        let (estimate, exact): (f64, f64) =
            (fields[2].parse().unwrap(), fields[3].parse().unwrap());
        assert!(exact > 5_000.0, "{line}");
        assert!((estimate - exact).abs() / exact < 0.03, "{line}");
    }
    // Sketch functions agree with the aggregate, and a one-row view has exact counts of nothing.
    assert_eq!(
        query_lines(
            &db,
            "SELECT hll_cardinality(hll_sketch(user_id)) = approx_distinct(user_id) FROM hits"
        )
        .await,
        vec!["true"]
    );
    db.sql("CREATE MATERIALIZED VIEW nothing AS SELECT approx_count_distinct(user_id) AS u, count(DISTINCT country) AS c FROM hits WHERE user_id < 0")
        .await
        .unwrap();
    assert_eq!(
        query_lines(&db, "SELECT u, c, u_sketch IS NULL FROM nothing").await,
        vec!["0|0|false"]
    );
    let err = db
        .sql("CREATE MATERIALIZED VIEW clash AS SELECT country, approx_count_distinct(user_id) AS u, count(*) AS u_sketch FROM hits GROUP BY 1")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("u_sketch"), "{err}");
    let err = db
        .sql("SELECT hll_cardinality(country::bytea) FROM hits")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("HLL"), "{err}");
}

#[tokio::test]
async fn dropping_tables_and_views() {
    let (dir, db) = temp_db(test_options());
    db.sql(EVENTS_DDL).await.unwrap();
    db.ingest("events", events_batch(0, 100, 1)).await.unwrap();
    db.sql("CREATE MATERIALIZED VIEW n AS SELECT count(*) AS n FROM events")
        .await
        .unwrap();
    db.sql("CREATE MATERIALIZED VIEW IF NOT EXISTS n AS SELECT count(*) AS n FROM events")
        .await
        .unwrap();
    let err = db.sql("DROP TABLE events").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DependentObjects, "{err}");
    assert!(err.to_string().contains("CASCADE"), "{err}");
    db.sql("DROP MATERIALIZED VIEW n").await.unwrap();
    db.sql("DROP MATERIALIZED VIEW IF EXISTS n").await.unwrap();
    db.sql("CREATE MATERIALIZED VIEW n AS SELECT count(*) AS n FROM events")
        .await
        .unwrap();
    assert_eq!(query_i64(&db, "SELECT n FROM n").await, 100);
    db.sql("DROP TABLE events CASCADE").await.unwrap();
    assert!(db.view_names().is_empty() && db.table_names().is_empty());
    db.close().unwrap();
    let db = Database::open(dir.path().join("data"), test_options()).unwrap();
    assert!(db.view_names().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backfill_while_ingest_runs_and_one_query_sees_view_and_table_together() {
    let (_dir, db) = temp_db(eager_flush_options());
    db.sql(EVENTS_DDL).await.unwrap();
    for b in 0..20 {
        db.ingest("events", events_batch(b, 250, 2)).await.unwrap();
    }
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let db = db.clone();
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let mut b = 100;
            while !done.load(Ordering::Relaxed) {
                db.ingest("events", events_batch(b, 100, 2)).await.unwrap();
                b += 1;
            }
        })
    };
    db.sql("CREATE MATERIALIZED VIEW per_batch AS SELECT batch_id, count(*) AS n FROM events GROUP BY batch_id")
        .await
        .unwrap();
    for _ in 0..20 {
        let line = raw_lines(
            &db,
            "SELECT (SELECT sum(n) FROM per_batch), (SELECT count(*) FROM events)",
        )
        .await;
        let (view, table) = line[0].split_once('|').unwrap();
        assert_eq!(view, table, "view and table disagree inside one query");
    }
    done.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let stored = query_lines(&db, "SELECT batch_id, n FROM per_batch ORDER BY batch_id").await;
    let expected = raw_lines(
        &db,
        "SELECT batch_id, count(*) FROM events GROUP BY batch_id ORDER BY batch_id",
    )
    .await;
    assert_eq!(stored, expected);
}

mod property {
    //! Random tables, batches and view definitions: after every batch, each view equals its
    //! defining query recomputed by DataFusion over the raw rows at the same snapshot.

    use proptest::prelude::*;
    use tally_engine::{Database, Options};
    use tally_tests::*;

    use crate::random_rows::{Row, batch, row};

    const GROUPS: [&str; 5] = [
        "k1",
        "k2",
        "date_trunc('hour', ts)",
        "CASE WHEN x > 0 THEN 'pos' ELSE 'other' END",
        "lower(k2)",
    ];
    /// Percentiles: below about k = 200 values per group a t-digest keeps every value, so the
    /// view's answer equals the recompute's exactly whatever the order of merges; larger groups
    /// are held to the rank error in `view_percentiles`.
    const AGGS: [&str; 31] = [
        "count(*)",
        "count(x)",
        "sum(x)",
        "min(x)",
        "max(x)",
        "avg(x)",
        "sum(y)",
        "min(y)",
        "max(y)",
        "avg(y)",
        "min(k2)",
        "max(ts)",
        "count(*) FILTER (WHERE x > 10)",
        "sum(y) FILTER (WHERE k1 = 1)",
        "approx_count_distinct(x)",
        "approx_distinct(k2)",
        "approx_count_distinct(y) FILTER (WHERE k1 <> 0)",
        "count(DISTINCT x)",
        "count(DISTINCT k2) FILTER (WHERE y > 0)",
        "count(DISTINCT ts)",
        "approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY y)",
        "approx_percentile_cont(0.9) WITHIN GROUP (ORDER BY y DESC)",
        "approx_percentile_cont(x, 0.95)",
        "approx_median(x) FILTER (WHERE k1 <> 0)",
        "approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY y)",
        // Sketches: a case holds at most 180 rows, far below the 768 distinct items a top-k
        // sketch counts exactly and the 4096 hashes a theta sketch keeps, so their documented
        // error bound is zero here and the view must equal the recompute exactly (top-k JSON
        // and sketch bytes alike, whatever the order of merges and compactions).
        "approx_top_k(k2, 2)",
        "approx_top_k(x, 3) FILTER (WHERE k1 <> 0)",
        "topk_sketch(ts)",
        "theta_sketch(x)",
        "theta_sketch(k2) FILTER (WHERE y > 0)",
        "theta_sketch(y)",
    ];
    /// Comparisons on each group expression (`{}` is the view column), pushed into view scans.
    const GROUP_PREDICATES: [&[&str]; 5] = [
        &["{} = 1", "{} > 1", "{} BETWEEN 1 AND 2", "0 >= {}"],
        &["{} = 'b'", "{} >= 'B'", "{} < 'b'"],
        &[
            "{} >= TIMESTAMP '2026-01-01 03:00:00'",
            "{} = TIMESTAMP '2026-01-01 02:00:00'",
            "{} < '2026-01-01 05:00:00'",
        ],
        &["{} = 'pos'", "{} <> 'pos'"],
        &["{} > 'a'", "{} = 'b'"],
    ];
    const FILTERS: [Option<&str>; 4] =
        [None, Some("x IS NOT NULL"), Some("k1 <> 2"), Some("y > 0")];

    #[derive(Debug, Clone)]
    struct Case {
        groups: Vec<usize>,
        aggs: Vec<usize>,
        filter: Option<&'static str>,
        /// Each batch, whether to flush the table after it, and whether to merge the view's
        /// parts and segments into one segment after it.
        batches: Vec<(Vec<Row>, bool, bool)>,
        /// Run the background compactor every millisecond, racing the commits.
        eager_compaction: bool,
    }

    fn case() -> impl Strategy<Value = Case> {
        (
            prop::sample::subsequence((0..GROUPS.len()).collect::<Vec<_>>(), 0..=3),
            prop::sample::subsequence((0..AGGS.len()).collect::<Vec<_>>(), 1..=5),
            prop::sample::select(FILTERS.to_vec()),
            prop::collection::vec(
                (
                    prop::collection::vec(row(), 0..30),
                    any::<bool>(),
                    any::<bool>(),
                ),
                1..6,
            ),
            any::<bool>(),
        )
            .prop_map(|(groups, aggs, filter, batches, eager_compaction)| Case {
                groups,
                aggs,
                filter,
                batches,
                eager_compaction,
            })
    }

    fn select(case: &Case) -> String {
        let mut items: Vec<String> = case
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| format!("{} AS g{i}", GROUPS[*g]))
            .collect();
        items.extend(
            case.aggs
                .iter()
                .enumerate()
                .map(|(i, a)| format!("{} AS a{i}", AGGS[*a])),
        );
        let mut sql = format!("SELECT {} FROM t", items.join(", "));
        if let Some(f) = case.filter {
            sql.push_str(&format!(" WHERE {f}"));
        }
        if !case.groups.is_empty() {
            let keys: Vec<&str> = case.groups.iter().map(|g| GROUPS[*g]).collect();
            sql.push_str(&format!(" GROUP BY {}", keys.join(", ")));
        }
        sql
    }

    async fn run(case: Case) {
        let (_dir, db) = temp_db(Options {
            row_group_rows: 16,
            background_flush: case.eager_compaction,
            compaction_interval: std::time::Duration::from_millis(1),
            ..test_options()
        });
        db.sql("CREATE TABLE t (ts TIMESTAMP NOT NULL, k1 INT, k2 TEXT, x BIGINT, y DOUBLE PRECISION) WITH (time_column = 'ts')")
            .await
            .unwrap();
        let query = select(&case);
        let order: Vec<String> = (1..=case.groups.len() + case.aggs.len())
            .map(|i| i.to_string())
            .collect();
        let order = order.join(", ");
        // Only the defined columns: the view also exposes its sketches as `<column>_sketch`.
        let columns: Vec<String> = (0..case.groups.len())
            .map(|i| format!("g{i}"))
            .chain((0..case.aggs.len()).map(|i| format!("a{i}")))
            .collect();
        let columns = columns.join(", ");
        // The first batch exists before the view: it is backfilled.
        let (first, rest) = case.batches.split_first().unwrap();
        db.ingest("t", batch(&first.0)).await.unwrap();
        db.sql(&format!("CREATE MATERIALIZED VIEW v AS {query}"))
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        // The same read, prepared once: its kept plan runs again at every later snapshot.
        let read = format!("SELECT {columns} FROM v ORDER BY {order}");
        let prepared = db.prepare(&read).await.unwrap();
        for (i, (rows, flush, compact)) in std::iter::once(first).chain(rest).enumerate() {
            if i > 0 {
                db.ingest("t", batch(rows)).await.unwrap();
            }
            if *flush {
                db.flush().await.unwrap();
            }
            if *compact {
                db.compact_views().await.unwrap();
            }
            let stored = query_lines(&db, &read).await;
            let expected = raw_lines(
                &db,
                &format!("SELECT * FROM ({query}) AS q ORDER BY {order}"),
            )
            .await;
            assert_eq!(stored, expected, "after batch {i} of {query}");
            let reused = db.execute_prepared(&prepared, vec![]).await.unwrap();
            let reused: Vec<String> = reused.batches.iter().flat_map(batch_lines).collect();
            assert_eq!(reused, expected, "prepared, after batch {i} of {query}");
            assert_eq!(
                prepared.cached_plans(),
                1,
                "the prepared read's plan is kept"
            );
        }
        // Filters on group columns narrow the view scan; the rows must not change.
        let mut conjunction = Vec::new();
        let rows: usize = case.batches.iter().map(|b| b.0.len()).sum();
        for (i, g) in case.groups.iter().enumerate() {
            // One predicate per group column, varying with the case, then all of them so far.
            let choices = GROUP_PREDICATES[*g];
            let column = format!("g{i}");
            let predicate = choices[rows % choices.len()].replace("{}", &column);
            assert_filtered(&db, &columns, &query, &order, &predicate).await;
            if i > 0 {
                // Alone, an equality on a non-leading group column is looked up in the index.
                let alone = choices[0].replace("{}", &column);
                assert_filtered(&db, &columns, &query, &order, &alone).await;
            }
            conjunction.push(choices[0].replace("{}", &column));
            assert_filtered(&db, &columns, &query, &order, &conjunction.join(" AND ")).await;
        }
    }

    /// The view filtered by `predicate` equals its query recomputed and filtered alike.
    async fn assert_filtered(
        db: &Database,
        columns: &str,
        query: &str,
        order: &str,
        predicate: &str,
    ) {
        let stored = query_lines(
            db,
            &format!("SELECT {columns} FROM v WHERE {predicate} ORDER BY {order}"),
        )
        .await;
        let expected = raw_lines(
            db,
            &format!("SELECT * FROM ({query}) AS q WHERE {predicate} ORDER BY {order}"),
        )
        .await;
        assert_eq!(stored, expected, "{predicate} on {query}");
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
            ..ProptestConfig::default()
        })]

        #[test]
        fn views_equal_their_recomputed_query(case in case()) {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run(case));
        }
    }
}

#[tokio::test]
async fn a_bulk_ingest_that_spills_updates_views_exactly() {
    let (_dir, db) = temp_db(tally_engine::Options {
        flush_rows: 700,
        ..test_options()
    });
    db.sql(EVENTS_DDL).await.unwrap();
    let views = clickstream_views();
    for v in &views {
        db.sql(&v.create()).await.unwrap();
    }
    let mut bulk = db.bulk_ingest("events").unwrap();
    for b in 0..6 {
        bulk.write(events_batch(b, 400, 3)).await.unwrap();
    }
    bulk.commit().await.unwrap();
    assert!(
        db.table_stats("events").unwrap().segments > 0,
        "the bulk ingest spilled"
    );
    assert_views_exact(&db, &views).await;
}

/// A regression found by the property test: DataFusion 55's min/max dynamic filter pruned the
/// rows holding `x` while `min(x)` was still NULL, so the recompute (not the view) was wrong.
#[tokio::test]
async fn min_and_max_over_segments_see_rows_pruned_by_a_dynamic_filter() {
    let (_dir, db) = temp_db(tally_engine::Options {
        row_group_rows: 16,
        ..test_options()
    });
    db.sql("CREATE TABLE t (ts TIMESTAMP NOT NULL, k1 INT, k2 TEXT, x BIGINT, y DOUBLE PRECISION) WITH (time_column = 'ts')")
        .await
        .unwrap();
    db.sql("INSERT INTO t VALUES (TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '343 minutes', NULL, NULL, 20, -6.0), (TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '560 minutes', 1, NULL, NULL, NULL)").await.unwrap();
    db.flush().await.unwrap();
    db.sql("INSERT INTO t VALUES (TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '88 minutes', 3, 'c', NULL, 6.75), (TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '406 minutes', NULL, 'c', 5, 8.5), (TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '181 minutes', 2, 'a', 36, 4.0), (TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '592 minutes', NULL, 'b', NULL, 5.75), (TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '215 minutes', NULL, NULL, NULL, 0.5), (TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '523 minutes', NULL, 'B', 39, 2.75), (TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '311 minutes', NULL, 'a', 2, NULL), (TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '46 minutes', NULL, NULL, NULL, -1.75), (TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '205 minutes', NULL, 'c', NULL, 2.75), (TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '360 minutes', NULL, 'B', NULL, -7.5), (TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '176 minutes', NULL, NULL, -36, 6.25), (TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '363 minutes', NULL, 'b', -5, NULL), (TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '388 minutes', 3, NULL, -50, NULL), (TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '427 minutes', 2, 'B', 25, NULL), (TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '501 minutes', 0, 'b', 31, NULL), (TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '200 minutes', NULL, 'B', NULL, NULL), (TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '512 minutes', 0, NULL, NULL, 3.0), (TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '454 minutes', 2, NULL, NULL, NULL), (TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '258 minutes', NULL, NULL, 8, 8.75), (TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '434 minutes', 0, NULL, 14, 8.0), (TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '0 minutes', NULL, 'a', NULL, NULL), (TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '70 minutes', NULL, NULL, -44, NULL), (TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '435 minutes', 1, NULL, -46, -5.5)").await.unwrap();
    db.flush().await.unwrap();
    for _ in 0..5 {
        assert_eq!(
            query_lines(&db, "SELECT min(x), max(ts) FROM t WHERE k1 <> 2").await,
            ["-50|2026-01-01T09:20:00"]
        );
    }
}

/// A format 1 directory (view states in a `views` column family under a merge operator) is
/// upgraded at open: its views are rebuilt from their tables and equal a recompute.
#[tokio::test]
async fn a_format_1_directory_is_upgraded_by_rebuilding_its_views() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let db = Database::open(&data, test_options()).unwrap();
        db.sql(EVENTS_DDL).await.unwrap();
        db.sql("CREATE MATERIALIZED VIEW per_page AS SELECT page, count(*) AS n FROM events GROUP BY page")
            .await
            .unwrap();
        for b in 0..5 {
            db.ingest("events", events_batch(b, 300, 2)).await.unwrap();
        }
        db.close().unwrap();
    }
    // Turn it into what format 1 left: version 1, a `views` family of per-group values, no
    // delta parts or state segments.
    {
        let mut opts = rocksdb::Options::default();
        opts.create_missing_column_families(true);
        let path = data.join("rocksdb");
        let mut families = rocksdb::DB::list_cf(&opts, &path).unwrap();
        families.push("views".into());
        let db = rocksdb::DB::open_cf(&opts, &path, &families).unwrap();
        let meta = db.cf_handle("meta").unwrap();
        db.put_cf(meta, b"format_version", 1u32.to_be_bytes())
            .unwrap();
        let views = db.cf_handle("views").unwrap();
        db.put_cf(views, [0, 0, 0, 0, 0, 0, 0, 2, 1], b"stale state")
            .unwrap();
        let parts = db.cf_handle("view_parts").unwrap();
        let keys: Vec<Box<[u8]>> = db
            .iterator_cf(parts, rocksdb::IteratorMode::Start)
            .map(|kv| kv.unwrap().0)
            .collect();
        for key in keys {
            db.delete_cf(parts, key).unwrap();
        }
        let catalog = db.cf_handle("catalog").unwrap();
        let segments: Vec<Box<[u8]>> = db
            .prefix_iterator_cf(catalog, b"w")
            .map(|kv| kv.unwrap().0)
            .filter(|k| k.starts_with(b"w"))
            .collect();
        for key in segments {
            db.delete_cf(catalog, key).unwrap();
        }
    }
    let db = Database::open(&data, test_options()).expect("a format 1 directory opens");
    assert_eq!(
        query_lines(&db, "SELECT state FROM tally_views").await,
        vec!["ready"]
    );
    assert_per_page_is_exact(&db).await;
    db.close().unwrap();
    let families =
        rocksdb::DB::list_cf(&rocksdb::Options::default(), data.join("rocksdb")).unwrap();
    assert!(!families.contains(&"views".to_string()), "{families:?}");
}

/// A damaged state segment file fails the open with an error naming the file, never a panic
/// or a silently wrong view.
#[tokio::test]
async fn a_damaged_view_segment_fails_the_open_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let db = Database::open(&data, test_options()).unwrap();
        db.sql(EVENTS_DDL).await.unwrap();
        db.sql("CREATE MATERIALIZED VIEW per_page AS SELECT page, count(*) AS n FROM events GROUP BY page")
            .await
            .unwrap();
        db.ingest("events", events_batch(1, 300, 2)).await.unwrap();
        db.compact_views().await.unwrap();
        db.close().unwrap();
    }
    let view_dir = std::fs::read_dir(data.join("views"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let file = std::fs::read_dir(&view_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&file, b"not a parquet file").unwrap();
    let err = Database::open(&data, test_options())
        .err()
        .expect("a damaged segment must fail the open");
    let message = err.to_string();
    assert!(
        message.contains("view state segment") && message.contains(&*file.to_string_lossy()),
        "{message}"
    );
}

/// Reads `(segments, delta_parts)` of view `name` from `tally_views`.
async fn view_runs(db: &Database, name: &str) -> (i64, i64) {
    let batches = db
        .sql(&format!(
            "SELECT segments, delta_parts FROM tally_views WHERE name = '{name}'"
        ))
        .await
        .unwrap();
    let line = batches.iter().flat_map(batch_lines).next().unwrap();
    let (segments, parts) = line.split_once('|').unwrap();
    (segments.parse().unwrap(), parts.parse().unwrap())
}

/// While ingest goes on, each background pass turns a view's new delta parts into a segment;
/// once ingest pauses, the compactor merges the view's segments into one.
#[tokio::test]
async fn an_idle_view_is_merged_into_one_segment() {
    let (_dir, db) = temp_db(tally_engine::Options {
        background_flush: true,
        compaction_interval: std::time::Duration::from_millis(200),
        ..test_options()
    });
    db.sql(EVENTS_DDL).await.unwrap();
    db.sql(
        "CREATE MATERIALIZED VIEW per_page AS SELECT page, count(*) AS n FROM events GROUP BY page",
    )
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    for b in 0..3 {
        db.ingest("events", events_batch(b, 200, 2)).await.unwrap();
        // Ingest again right after a pass made this batch's part a segment: the pass after it
        // finds new parts, so the view never looks idle.
        while view_runs(&db, "per_page").await.1 > 0 {
            assert!(std::time::Instant::now() < deadline, "parts never merged");
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
    let (segments, _) = view_runs(&db, "per_page").await;
    assert!(
        segments >= 2,
        "one segment per pass while ingesting, got {segments}"
    );
    while view_runs(&db, "per_page").await != (1, 0) {
        assert!(
            std::time::Instant::now() < deadline,
            "segments never merged: {:?}",
            view_runs(&db, "per_page").await
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_per_page_is_exact(&db).await;
}

/// The view `per_page` (`page, count(*) AS n` of `events`) equals its recompute.
async fn assert_per_page_is_exact(db: &Database) {
    assert_eq!(
        query_lines(db, "SELECT page, n FROM per_page ORDER BY page").await,
        raw_lines(
            db,
            "SELECT page, count(*) FROM events GROUP BY page ORDER BY page"
        )
        .await
    );
}

/// A view groups -0.0 with 0.0 and every NaN together, as PostgreSQL does, also within one
/// batch, where DataFusion's hash table tells NaNs of different bits apart.
#[tokio::test]
async fn a_float_group_holds_both_zeros() {
    let (_dir, db) = temp_db(test_options());
    db.sql("CREATE TABLE m (ts TIMESTAMP NOT NULL, x DOUBLE PRECISION)")
        .await
        .unwrap();
    db.sql("CREATE MATERIALIZED VIEW by_x AS SELECT x, count(*) AS n FROM m GROUP BY x")
        .await
        .unwrap();
    db.sql(
        "INSERT INTO m VALUES ('2026-01-01', 0.0), ('2026-01-01', -0.0), ('2026-01-01', 1.5), \
         ('2026-01-01', CAST('NaN' AS DOUBLE PRECISION)), ('2026-01-01', -CAST('NaN' AS DOUBLE PRECISION))",
    )
    .await
    .unwrap();
    let lines = query_lines(&db, "SELECT n FROM by_x ORDER BY x").await;
    assert_eq!(lines, vec!["2", "1", "2"], "groups of 0, 1.5, NaN");
}
