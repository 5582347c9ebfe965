//! Percentiles in materialized views and ad hoc: views keep one t-digest per group and
//! argument, answer within the documented rank error (1%) through many commits, flushes,
//! compaction and reopen, roll up through `quantile_union_agg`, and refuse what they cannot
//! keep.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use tally_engine::{Database, ErrorKind};
use tally_tests::*;

/// The rank error every percentile is held to (docs/sql.md, "Percentiles").
const RANK_ERROR: f64 = 0.01;

const HITS_DDL: &str = "CREATE TABLE hits (ts TIMESTAMP NOT NULL, page TEXT, latency DOUBLE PRECISION) \
                        WITH (time_column = 'ts')";

/// `rows` hits over two days, on three pages, with lognormal latencies (median about 20 ms, a
/// long right tail) and a few NULLs.
fn hits(start: u64, rows: u64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("page", DataType::Utf8, true),
        Field::new("latency", DataType::Float64, true),
    ]));
    let uniform = |i: u64, salt: u64| {
        let h = (i ^ salt).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let range = start..start + rows;
    let ts = range
        .clone()
        .map(|i| JAN_1_2026_US + (i * 7_919 % (2 * 86_400)) as i64 * 1_000_000);
    let page = range
        .clone()
        .map(|i| ["/a", "/b", "/c"][(uniform(i, 5) * 3.0) as usize]);
    let latency = range.map(|i| {
        // Box–Muller: a standard normal from two uniforms.
        let (u, v) = (uniform(i, 1), uniform(i, 2));
        let normal = (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos();
        (i % 101 != 0).then(|| (3.0 + normal).exp())
    });
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(TimestampMicrosecondArray::from_iter_values(ts)),
            Arc::new(StringArray::from_iter_values(page)),
            Arc::new(Float64Array::from_iter(latency)),
        ],
    )
    .unwrap()
}

/// The latencies of each group that `sql` selects as `key|latency` rows, sorted.
async fn exact_values(db: &Database, sql: &str) -> BTreeMap<String, Vec<f64>> {
    let mut groups: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for line in query_lines(db, sql).await {
        let (key, value) = line.rsplit_once('|').unwrap();
        groups
            .entry(key.to_string())
            .or_default()
            .push(value.parse().unwrap());
    }
    for values in groups.values_mut() {
        values.sort_by(f64::total_cmp);
    }
    groups
}

/// Asserts that `estimate` lies within the rank error of the `p` quantile of `sorted`: its rank
/// among the values is within [`RANK_ERROR`] of `p`, an answer between two adjacent values
/// counting as either (t-digests interpolate between centroids: on values with many ties the
/// answer can fall in the gap between two of them).
fn assert_within_rank_error(sorted: &[f64], p: f64, estimate: f64, what: &str) {
    let n = sorted.len() as f64;
    // The adjacent values around the estimate (the estimate itself when it is one).
    let after = sorted.partition_point(|x| *x < estimate);
    let low = if after < sorted.len() && sorted[after] == estimate {
        estimate
    } else {
        sorted[after.saturating_sub(1)]
    };
    let high = sorted[after.min(sorted.len() - 1)];
    let below = sorted.partition_point(|x| *x < low) as f64 / n;
    let at_or_below = sorted.partition_point(|x| *x <= high) as f64 / n;
    assert!(
        below - RANK_ERROR <= p && p <= at_or_below + RANK_ERROR,
        "{what}: p{p} estimate {estimate} (between {low} and {high}) has ranks {below}..{at_or_below} among {n} values"
    );
}

/// Checks every `key|p50|p95|p99|median` line of `lines` against the exact values.
fn assert_lines_within_rank_error(lines: &[String], exact: &BTreeMap<String, Vec<f64>>) {
    assert_eq!(lines.len(), exact.len(), "{lines:?}");
    for line in lines {
        let fields: Vec<&str> = line.rsplitn(5, '|').collect();
        let key = fields[4];
        let sorted = &exact[key];
        for (p, field) in [(0.99, fields[1]), (0.95, fields[2]), (0.5, fields[3])] {
            assert_within_rank_error(sorted, p, field.parse().unwrap(), line);
        }
        assert_within_rank_error(sorted, 0.5, fields[0].parse().unwrap(), line);
    }
}

#[tokio::test]
async fn percentile_views_stay_within_the_rank_error_through_commits_compaction_and_reopen() {
    let (dir, db) = temp_db(test_options());
    db.sql(HITS_DDL).await.unwrap();
    db.ingest("hits", hits(0, 5_000)).await.unwrap();
    db.sql(
        "CREATE MATERIALIZED VIEW page_hourly AS SELECT date_trunc('hour', ts) AS hour, page, \
         approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY latency) AS p50, \
         approx_percentile_cont(0.95) WITHIN GROUP (ORDER BY latency) AS p95, \
         approx_percentile_cont(latency, 0.99) AS p99, approx_median(latency) AS median, \
         count(*) AS n FROM hits GROUP BY 1, 2",
    )
    .await
    .unwrap();
    db.sql(
        "CREATE MATERIALIZED VIEW page_daily AS SELECT date_trunc('day', ts) AS day, page, \
         approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY latency) AS p50, \
         approx_percentile_cont(0.95) WITHIN GROUP (ORDER BY latency) AS p95, \
         approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY latency) AS p99, \
         approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY latency DESC) AS median \
         FROM hits GROUP BY 1, 2",
    )
    .await
    .unwrap();
    let hourly = "SELECT hour, page, p50, p95, p99, median FROM page_hourly ORDER BY 1, 2";
    let daily = "SELECT day, page, p50, p95, p99, median FROM page_daily ORDER BY 1, 2";
    let hourly_exact =
        "SELECT date_trunc('hour', ts), page, latency FROM hits WHERE latency IS NOT NULL";
    let daily_exact =
        "SELECT date_trunc('day', ts), page, latency FROM hits WHERE latency IS NOT NULL";
    let ad_hoc = "SELECT date_trunc('day', ts) AS day, page, \
                  approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY latency), \
                  approx_percentile_cont(latency, 0.95), approx_percentile_cont(latency, 0.99), \
                  approx_median(latency) FROM hits GROUP BY 1, 2 ORDER BY 1, 2";
    for b in 1..16u64 {
        db.ingest("hits", hits(b * 5_000, 5_000)).await.unwrap();
        if b == 6 {
            db.flush().await.unwrap();
        }
        if b == 10 {
            db.compact_views().await.unwrap();
        }
    }
    let check = |db: Database| async move {
        let exact = exact_values(&db, hourly_exact).await;
        assert_lines_within_rank_error(&query_lines(&db, hourly).await, &exact);
        let exact = exact_values(&db, daily_exact).await;
        assert_lines_within_rank_error(&query_lines(&db, daily).await, &exact);
        assert_lines_within_rank_error(&query_lines(&db, ad_hoc).await, &exact);
        db
    };
    let db = check(db).await;
    // The four percentiles of one argument share one sketch.
    assert_eq!(
        query_lines(
            &db,
            "SELECT count(*) FROM page_daily WHERE p50_sketch = p99_sketch AND p95_sketch = median_sketch"
        )
        .await,
        query_lines(&db, "SELECT count(*) FROM page_daily").await
    );
    // Their sketch columns are hidden from `*`.
    let mut star = db.execute("SELECT * FROM page_daily").await.unwrap();
    let fields: Vec<String> = star
        .pop()
        .unwrap()
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(fields, ["day", "page", "p50", "p95", "p99", "median"]);
    db.compact_views().await.unwrap();
    db.close().unwrap();
    let db = Database::open(dir.path().join("data"), test_options()).unwrap();
    let db = check(db).await;

    // p95 per day from the hourly view: the union of its sketches.
    let rollup = "SELECT date_trunc('day', hour) AS day, page, \
                  sketch_quantile(quantile_union_agg(p95_sketch), 0.5), \
                  sketch_quantile(quantile_union_agg(p95_sketch), 0.95), \
                  sketch_quantile(quantile_union_agg(p95_sketch), 0.99), \
                  sketch_quantile(quantile_union_agg(p50_sketch), 0.5) \
                  FROM page_hourly GROUP BY 1, 2 ORDER BY 1, 2";
    let exact = exact_values(&db, daily_exact).await;
    assert_lines_within_rank_error(&query_lines(&db, rollup).await, &exact);
    let one_pass = "SELECT date_trunc('day', ts), page, \
                    sketch_quantile(quantile_sketch(latency), 0.5), \
                    sketch_quantile(quantile_sketch(latency), 0.95), \
                    sketch_quantile(quantile_sketch(latency), 0.99), \
                    sketch_quantile(quantile_sketch(latency), 0.5) AS again FROM hits GROUP BY 1, 2 ORDER BY 1, 2";
    assert_lines_within_rank_error(&query_lines(&db, one_pass).await, &exact);
    // sketch_rank is the inverse: the rank of the estimated p95 is about 0.95.
    for line in query_lines(
        &db,
        "SELECT sketch_rank(p95_sketch, p95) FROM page_daily ORDER BY day, page",
    )
    .await
    {
        let rank: f64 = line.parse().unwrap();
        assert!((rank - 0.95).abs() < RANK_ERROR, "{line}");
    }
}

#[tokio::test]
async fn percentiles_of_nothing_are_null_and_bad_arguments_are_refused() {
    let (_dir, db) = temp_db(test_options());
    db.sql(HITS_DDL).await.unwrap();
    db.ingest("hits", hits(0, 1_000)).await.unwrap();
    db.sql(
        "CREATE MATERIALIZED VIEW nothing AS SELECT approx_median(latency) AS m, \
         approx_percentile_cont(latency, 0.9) FILTER (WHERE page = '/a') AS p90a, count(*) AS n \
         FROM hits WHERE latency < 0",
    )
    .await
    .unwrap();
    assert_eq!(
        query_lines(&db, "SELECT m, p90a, n, m_sketch IS NULL FROM nothing").await,
        vec!["||0|false"]
    );
    assert_eq!(
        query_lines(
            &db,
            "SELECT approx_median(latency), sketch_quantile(NULL, 0.5), \
             quantile_sketch(latency) IS NULL FROM hits WHERE latency < 0"
        )
        .await,
        vec!["||false"]
    );
    assert_eq!(
        query_lines(
            &db,
            "SELECT sketch_quantile(quantile_union_agg(m_sketch), 0.5) FROM nothing"
        )
        .await,
        vec![""]
    );
    // Integers are read as doubles; small groups are exact at the ends.
    assert_eq!(
        query_lines(
            &db,
            "SELECT approx_percentile_cont(0) WITHIN GROUP (ORDER BY x), approx_percentile_cont(x, 1), \
             approx_median(x) FROM (VALUES (3), (1), (2)) AS t(x)"
        )
        .await,
        vec!["1.0|3.0|2.0"]
    );

    let refused = [
        (
            "SELECT page, percentile_cont(0.5) WITHIN GROUP (ORDER BY latency) FROM hits GROUP BY 1",
            "approx_percentile_cont(p) WITHIN GROUP",
        ),
        (
            "SELECT page, median(latency) FROM hits GROUP BY 1",
            "approx_median(x)",
        ),
        (
            "SELECT page, approx_percentile_cont(latency, 0.5, 100) FROM hits GROUP BY 1",
            "t-digest size",
        ),
    ];
    for (query, hint) in refused {
        let err = db
            .sql(&format!("CREATE MATERIALIZED VIEW v AS {query}"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotSupported, "{query}: {err}");
        assert!(err.to_string().contains(hint), "{query}: {err}");
    }
    for p in ["1.5", "-0.1"] {
        let view = format!(
            "CREATE MATERIALIZED VIEW v AS SELECT approx_percentile_cont({p}) WITHIN GROUP (ORDER BY latency) FROM hits"
        );
        let err = db.sql(&view).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{view}: {err}");
        let ad_hoc = format!("SELECT approx_percentile_cont(latency, {p}) FROM hits");
        let err = db.sql(&ad_hoc).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{ad_hoc}: {err}");
        let read = format!("SELECT sketch_quantile(quantile_sketch(latency), {p}) FROM hits");
        let err = db.sql(&read).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{read}: {err}");
    }
    assert!(db.view_names().iter().all(|v| v == "nothing"));
    let err = db
        .sql("SELECT sketch_quantile(page::bytea, 0.5) FROM hits")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("quantile sketch"), "{err}");
    let err = db
        .sql("SELECT quantile_union_agg(page::bytea) FROM hits")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("quantile sketch"), "{err}");
    let err = db
        .sql("SELECT approx_percentile_cont(page, 0.5) FROM hits")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("must be a number"), "{err}");
}

/// The view property for percentiles on groups large enough that t-digests compress (up to
/// 20,000 values): whatever the batches, flushes and compactions (also racing the commits),
/// every percentile of the view, and of the query recomputed ad hoc, lies within the rank
/// error of the exact percentile of its group.
mod property {
    use arrow::array::Int32Array;
    use proptest::prelude::*;
    use tally_engine::Options;

    use super::*;

    const PERCENTILES: [f64; 7] = [0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 1.0];

    #[derive(Debug, Clone)]
    struct Case {
        /// 0 lognormal, 1 Pareto, 2 small integers (many ties).
        distribution: u8,
        seed: u64,
        groups: i32,
        p: [usize; 2],
        /// Each batch's size, and whether to flush the table and compact the view after it.
        batches: Vec<(usize, bool, bool)>,
        eager_compaction: bool,
    }

    fn case() -> impl Strategy<Value = Case> {
        (
            0u8..3,
            any::<u64>(),
            1i32..4,
            [0..PERCENTILES.len(), 0..PERCENTILES.len()],
            prop::collection::vec((1usize..5_000, any::<bool>(), any::<bool>()), 1..5),
            any::<bool>(),
        )
            .prop_map(
                |(distribution, seed, groups, p, batches, eager_compaction)| Case {
                    distribution,
                    seed,
                    groups,
                    p,
                    batches,
                    eager_compaction,
                },
            )
    }

    fn batch(case: &Case, start: u64, rows: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int32, true),
            Field::new("v", DataType::Float64, true),
        ]));
        let uniform = |i: u64, salt: u64| {
            let h = (i ^ salt ^ case.seed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let h = (h ^ (h >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let range = start..start + rows as u64;
        let k = range
            .clone()
            .map(|i| (uniform(i, 3) * f64::from(case.groups)) as i32);
        let v = range.map(|i| {
            let (u, w) = (uniform(i, 1), uniform(i, 2));
            if i % 53 == 0 {
                return None;
            }
            Some(match case.distribution {
                0 => (3.0 + (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * w).cos()).exp(),
                1 => 10.0 / u.powf(1.0 / 1.5),
                _ => (u * 20.0).floor(),
            })
        });
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int32Array::from_iter_values(k)),
                Arc::new(Float64Array::from_iter(v)),
            ],
        )
        .unwrap()
    }

    async fn run(case: Case) {
        let (_dir, db) = temp_db(Options {
            background_flush: case.eager_compaction,
            compaction_interval: std::time::Duration::from_millis(1),
            ..test_options()
        });
        db.sql("CREATE TABLE t (k INT, v DOUBLE PRECISION)")
            .await
            .unwrap();
        let [p0, p1] = case.p.map(|i| PERCENTILES[i]);
        let query = format!(
            "SELECT k, approx_percentile_cont({p0}) WITHIN GROUP (ORDER BY v) AS a0, \
             approx_percentile_cont(v, {p1}) AS a1, \
             approx_percentile_cont({p1}) WITHIN GROUP (ORDER BY v DESC) AS a2, \
             approx_median(v) FILTER (WHERE v > 15) AS a3 FROM t GROUP BY k"
        );
        let mut start = 0;
        for (i, (rows, flush, compact)) in case.batches.iter().enumerate() {
            db.ingest("t", batch(&case, start, *rows)).await.unwrap();
            start += *rows as u64;
            if i == 0 {
                // The first batch is backfilled.
                db.sql(&format!("CREATE MATERIALIZED VIEW v AS {query}"))
                    .await
                    .unwrap();
            }
            if *flush {
                db.flush().await.unwrap();
            }
            if *compact {
                db.compact_views().await.unwrap();
            }
        }
        let all = exact_values(&db, "SELECT k, v FROM t WHERE v IS NOT NULL").await;
        let fast = exact_values(&db, "SELECT k, v FROM t WHERE v > 15").await;
        let read = "SELECT k, a0, a1, a2, a3 FROM v ORDER BY k";
        let recompute = format!("SELECT * FROM ({query}) AS q ORDER BY k");
        for sql in [read, recompute.as_str()] {
            let lines = query_lines(&db, sql).await;
            assert_eq!(lines.len(), all.len(), "{sql}: {lines:?}");
            for line in lines {
                let f: Vec<&str> = line.split('|').collect();
                let values = &all[f[0]];
                let checks = [(p0, f[1]), (p1, f[2]), (1.0 - p1, f[3])];
                for (p, v) in checks {
                    assert_within_rank_error(values, p, v.parse().unwrap(), &line);
                }
                match fast.get(f[0]) {
                    Some(values) => {
                        assert_within_rank_error(values, 0.5, f[4].parse().unwrap(), &line)
                    }
                    None => assert_eq!(f[4], "", "{line}"),
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(24),
            ..ProptestConfig::default()
        })]

        #[test]
        fn percentile_views_stay_within_the_rank_error(case in case()) {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run(case));
        }
    }
}
