//! The contract on random data and random query shapes: a query answered from a view returns
//! exactly what it returns over the raw table (rewriting off), and a query built only from what
//! the view can give is answered from it.

use proptest::prelude::*;
use tally_engine::{Database, Options};
use tally_tests::*;

use super::{OFF, matching};
use crate::random_rows::{Row, batch, row};

/// A view's group expressions, and for each the coarser expressions a query may group by
/// instead and the predicates on it a view can apply.
const GROUPS: [(&str, &[&str], &[&str]); 3] = [
    (
        "k1",
        &["k1 % 2", "CASE WHEN k1 > 1 THEN 'big' END"],
        &["k1 = 1", "k1 > 1", "k1 IS NULL", "k1 IN (0, 3)"],
    ),
    (
        "k2",
        &["lower(k2)", "k2 || '!'"],
        &["k2 = 'b'", "k2 >= 'B'", "lower(k2) <> 'a'"],
    ),
    (
        "date_trunc('hour', ts)",
        &[
            "date_trunc('day', ts)",
            "date_trunc('hour', ts) + INTERVAL '1 minute'",
        ],
        &[
            "ts >= '2026-01-01 03:00:00'",
            "ts < TIMESTAMP '2026-01-01 05:00:00'",
            "date_trunc('hour', ts) = '2026-01-01 02:00:00'",
            "date_trunc('hour', ts) BETWEEN '2026-01-01 01:00:00' AND '2026-01-01 06:00:00'",
        ],
    ),
];
/// Every aggregate the view keeps.
const VIEW_AGGS: &str = "count(*) AS n, count(x) AS nx, sum(x) AS sx, min(x) AS mnx, \
    max(x) AS mxx, sum(y) AS sy, count(y) AS ny, min(ts) AS first, \
    approx_count_distinct(x) AS dx, approx_count_distinct(k2) AS dk2, \
    count(DISTINCT k1) AS ek1, avg(y) AS ay, theta_sketch(k2) AS tk2";
/// Aggregates a query asks for; `count(DISTINCT …)` only the view's own grouping gives, and
/// `theta_sketch` needs a GROUP BY.
const QUERY_AGGS: [&str; 12] = [
    "count(*)",
    "count(x)",
    "sum(x)",
    "min(x)",
    "max(x)",
    "sum(y)",
    "avg(y)",
    "min(ts)",
    "approx_count_distinct(x)",
    "approx_count_distinct(k2)",
    "theta_sketch(k2)",
    "count(DISTINCT k1)",
];
/// Conjuncts no view of this test can apply (a non-group column; an unaligned bound).
const REFUSED: [&str; 3] = [
    "x > 0",
    "ts >= '2026-01-01 03:30:00'",
    "ts > '2026-01-01 03:00:00'",
];
/// The view's own WHERE, when it has one.
const VIEW_FILTER: &str = "y > 0";

#[derive(Debug, Clone)]
struct Query {
    /// Per view group: 0 keep, 1 and 2 a coarser expression, 3 drop.
    groups: Vec<u8>,
    aggs: Vec<usize>,
    /// Predicates on view groups: (group, predicate) indexes.
    filters: Vec<(usize, usize)>,
    refused: Option<usize>,
    /// Repeat the view's WHERE (when it has one).
    view_filter: bool,
    order_limit: bool,
}

fn query() -> impl Strategy<Value = Query> {
    (
        prop::collection::vec(0u8..4, 3),
        prop::sample::subsequence((0..QUERY_AGGS.len()).collect::<Vec<_>>(), 1..=4),
        prop::collection::vec((0usize..3, 0usize..4), 0..3),
        prop::option::weighted(0.2, 0..REFUSED.len()),
        prop::bool::weighted(0.9),
        any::<bool>(),
    )
        .prop_map(
            |(groups, aggs, filters, refused, view_filter, order_limit)| Query {
                groups,
                aggs,
                filters,
                refused,
                view_filter,
                order_limit,
            },
        )
}

#[derive(Debug, Clone)]
struct Case {
    groups: Vec<usize>,
    filtered: bool,
    before: Vec<Row>,
    after: Vec<Row>,
    flush: bool,
    compact: bool,
    queries: Vec<Query>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::sample::subsequence(vec![0usize, 1, 2], 0..=3),
        prop::bool::weighted(0.25),
        prop::collection::vec(row(), 0..40),
        prop::collection::vec(row(), 0..40),
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(query(), 6),
    )
        .prop_map(
            |(groups, filtered, before, after, flush, compact, queries)| Case {
                groups,
                filtered,
                before,
                after,
                flush,
                compact,
                queries,
            },
        )
}

/// The query's SQL, and whether the view must answer it.
fn sql(case: &Case, q: &Query) -> (String, bool) {
    let mut expect = true;
    let mut groups = Vec::new();
    let mut same = !case.groups.is_empty();
    for (i, g) in case.groups.iter().enumerate() {
        let (expr, coarser, _) = GROUPS[*g];
        match q.groups[i] {
            0 => groups.push(expr.to_string()),
            c @ (1 | 2) => {
                same = false;
                groups.push(coarser[usize::from(c) - 1].to_string());
            }
            _ => same = false,
        }
    }
    let mut conjuncts = Vec::new();
    if case.filtered {
        if q.view_filter {
            conjuncts.push(VIEW_FILTER.to_string());
        } else {
            expect = false;
        }
    }
    for (g, p) in &q.filters {
        let Some(&group) = case.groups.get(*g) else {
            continue;
        };
        let predicates = GROUPS[group].2;
        conjuncts.push(predicates[p % predicates.len()].to_string());
    }
    if let Some(r) = q.refused {
        conjuncts.push(REFUSED[r].to_string());
        expect = false;
    }
    let aggs: Vec<&str> = q.aggs.iter().map(|a| QUERY_AGGS[*a]).collect();
    if aggs.contains(&"count(DISTINCT k1)") && !same {
        expect = false;
    }
    if aggs.contains(&"theta_sketch(k2)") && groups.is_empty() {
        expect = false;
    }
    // The table's statistics count its rows.
    if groups.is_empty() && conjuncts.is_empty() && aggs.iter().all(|a| *a == "count(*)") {
        expect = false;
    }
    let items: Vec<String> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| format!("{g} AS g{i}"))
        .chain(aggs.iter().enumerate().map(|(i, a)| format!("{a} AS a{i}")))
        .collect();
    let mut sql = format!("SELECT {} FROM t", items.join(", "));
    if !conjuncts.is_empty() {
        sql.push_str(&format!(" WHERE {}", conjuncts.join(" AND ")));
    }
    if !groups.is_empty() {
        sql.push_str(&format!(" GROUP BY {}", groups.join(", ")));
    }
    if q.order_limit {
        let all: Vec<String> = (1..=items.len()).map(|i| i.to_string()).collect();
        sql.push_str(&format!(" ORDER BY {} LIMIT 5", all.join(", ")));
    }
    (sql, expect)
}

async fn sorted(db: &Database, sql: &str) -> Vec<String> {
    let mut rows = query_lines(db, sql).await;
    rows.sort();
    rows
}

async fn run(case: Case) {
    let (_dir, db) = temp_db(Options {
        row_group_rows: 16,
        ..test_options()
    });
    db.sql("CREATE TABLE t (ts TIMESTAMP NOT NULL, k1 INT, k2 TEXT, x BIGINT, y DOUBLE PRECISION) WITH (time_column = 'ts')")
        .await
        .unwrap();
    db.ingest("t", batch(&case.before)).await.unwrap();
    let groups: Vec<&str> = case.groups.iter().map(|g| GROUPS[*g].0).collect();
    let mut view = format!(
        "SELECT {}",
        groups.iter().map(|g| format!("{g}, ")).collect::<String>()
    );
    view.push_str(&format!("{VIEW_AGGS} FROM t"));
    if case.filtered {
        view.push_str(&format!(" WHERE {VIEW_FILTER}"));
    }
    if !groups.is_empty() {
        view.push_str(&format!(" GROUP BY {}", groups.join(", ")));
    }
    db.sql(&format!("CREATE MATERIALIZED VIEW v AS {view}"))
        .await
        .unwrap_or_else(|e| panic!("{view}: {e}"));
    db.ingest("t", batch(&case.after)).await.unwrap();
    if case.flush {
        db.flush().await.unwrap();
    }
    if case.compact {
        db.compact_views().await.unwrap();
    }
    for q in &case.queries {
        let (sql, expect) = sql(&case, q);
        let lines = matching(&db, &sql).await;
        let answered = lines
            .iter()
            .any(|l| l.starts_with("t: answered from view v "));
        assert_eq!(answered, expect, "{sql} over view {view}: {lines:#?}");
        let rewritten = sorted(&db, &sql).await;
        let raw = OFF.scope(sorted(&db, &sql)).await;
        assert_eq!(rewritten, raw, "{sql} over view {view}: {lines:#?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(16),
        ..ProptestConfig::default()
    })]

    #[test]
    fn queries_answered_from_views_equal_the_raw_answer(case in case()) {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run(case));
    }
}
