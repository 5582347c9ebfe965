//! Prepared queries keep their physical plans and run them again at later snapshots: the rows
//! are always those of the snapshot the run reads, a plan that depends on the moment it was
//! made (`now()`, a table's segment list) is never kept, and a view dropped and created again
//! is planned afresh.

use tally_engine::reexports::datafusion::common::ScalarValue;
use tally_engine::{Database, Prepared};
use tally_tests::*;

async fn setup() -> (tempfile::TempDir, Database) {
    let (dir, db) = temp_db(test_options());
    db.sql("CREATE TABLE t (k TEXT NOT NULL, x BIGINT NOT NULL)")
        .await
        .unwrap();
    db.sql(
        "CREATE MATERIALIZED VIEW v AS SELECT k, count(*) AS n, sum(x) AS total FROM t GROUP BY k",
    )
    .await
    .unwrap();
    db.sql("INSERT INTO t VALUES ('a', 1), ('a', 2), ('b', 10)")
        .await
        .unwrap();
    (dir, db)
}

fn text(s: &str) -> ScalarValue {
    ScalarValue::Utf8(Some(s.into()))
}

async fn run(db: &Database, prepared: &Prepared, params: Vec<ScalarValue>) -> Vec<String> {
    let result = db.execute_prepared(prepared, params).await.unwrap();
    result.batches.iter().flat_map(batch_lines).collect()
}

/// The view recomputed from the table, as `run` prints it.
async fn recomputed(db: &Database, sql: &str) -> Vec<String> {
    raw_lines(db, sql).await
}

#[tokio::test]
async fn a_kept_plan_reads_the_snapshot_of_each_run() {
    let (_dir, db) = setup().await;
    let by_key = db
        .prepare("SELECT k, n, total FROM v WHERE k = $1")
        .await
        .unwrap();
    assert_eq!(run(&db, &by_key, vec![text("a")]).await, ["a|2|3"]);
    assert_eq!(by_key.cached_plans(), 1, "a view read is kept");
    db.sql("INSERT INTO t VALUES ('a', 5), ('c', 1)")
        .await
        .unwrap();
    assert_eq!(run(&db, &by_key, vec![text("a")]).await, ["a|3|8"]);
    assert_eq!(
        by_key.cached_plans(),
        1,
        "the same plan served the second run"
    );
    assert_eq!(run(&db, &by_key, vec![text("c")]).await, ["c|1|1"]);
    assert_eq!(by_key.cached_plans(), 2, "one plan per parameter values");
    // A dashboard cycling through a few dozen values keeps a plan for each.
    for round in 0..2 {
        for i in 0..30 {
            let key = format!("k{i}");
            assert!(
                run(&db, &by_key, vec![text(&key)]).await.is_empty(),
                "{round}"
            );
        }
    }
    assert_eq!(by_key.cached_plans(), 32);
    // A flush and the compaction of the view's parts change where the rows live, not them.
    db.flush().await.unwrap();
    db.sql("INSERT INTO t VALUES ('c', 4)").await.unwrap();
    assert_eq!(run(&db, &by_key, vec![text("c")]).await, ["c|2|5"]);
    assert_eq!(
        run(&db, &by_key, vec![text("a")]).await,
        recomputed(
            &db,
            "SELECT k, count(*), sum(x) FROM t WHERE k = 'a' GROUP BY k"
        )
        .await
    );
}

/// `count(*)` over a view must not be answered from the statistics of the snapshot the plan
/// was made at: a later run counts the groups it sees.
#[tokio::test]
async fn a_kept_count_counts_again() {
    let (_dir, db) = setup().await;
    let count = db.prepare("SELECT count(*) FROM v").await.unwrap();
    assert_eq!(run(&db, &count, vec![]).await, ["2"]);
    assert_eq!(count.cached_plans(), 1);
    db.sql("INSERT INTO t VALUES ('c', 1), ('d', 1)")
        .await
        .unwrap();
    assert_eq!(run(&db, &count, vec![]).await, ["4"]);
    let top = db
        .prepare("SELECT k, total FROM v ORDER BY total DESC LIMIT 2")
        .await
        .unwrap();
    assert_eq!(run(&db, &top, vec![]).await, ["b|10", "a|3"]);
    db.sql("INSERT INTO t VALUES ('d', 50), ('a', 20)")
        .await
        .unwrap();
    assert_eq!(run(&db, &top, vec![]).await, ["d|51", "a|23"]);
    assert_eq!(run(&db, &top, vec![]).await, ["d|51", "a|23"]);
}

#[tokio::test]
async fn plans_that_depend_on_when_they_were_made_are_not_kept() {
    let (_dir, db) = setup().await;
    let over_table = db
        .prepare("SELECT count(*) FROM t WHERE k = $1")
        .await
        .unwrap();
    assert_eq!(run(&db, &over_table, vec![text("a")]).await, ["2"]);
    assert_eq!(over_table.cached_plans(), 0, "a table scan lists its files");
    db.sql("INSERT INTO t VALUES ('a', 1)").await.unwrap();
    assert_eq!(run(&db, &over_table, vec![text("a")]).await, ["3"]);
    // The optimizer answers this one from the table's statistics: no scan is left in the
    // physical plan, yet it depends on the snapshot.
    let rows = db.prepare("SELECT count(*) FROM t").await.unwrap();
    assert_eq!(run(&db, &rows, vec![]).await, ["4"]);
    assert_eq!(rows.cached_plans(), 0);
    db.sql("INSERT INTO t VALUES ('a', 1)").await.unwrap();
    assert_eq!(run(&db, &rows, vec![]).await, ["5"]);

    let clock = db
        .prepare("SELECT k, now() > TIMESTAMP '2000-01-01' FROM v WHERE k = $1")
        .await
        .unwrap();
    assert_eq!(run(&db, &clock, vec![text("a")]).await, ["a|true"]);
    assert_eq!(clock.cached_plans(), 0, "now() is folded at planning");

    // Parameters too large to be worth a cache entry (over 4 KiB) are planned every time.
    let by_key = db.prepare("SELECT n FROM v WHERE k = $1").await.unwrap();
    let huge = "x".repeat(10_000);
    assert!(run(&db, &by_key, vec![text(&huge)]).await.is_empty());
    assert_eq!(by_key.cached_plans(), 0, "a 10 kB parameter is not kept");
    assert_eq!(run(&db, &by_key, vec![text("a")]).await, ["4"]);
    assert_eq!(by_key.cached_plans(), 1);

    let constant = db.prepare("SELECT 1 + 1").await.unwrap();
    assert_eq!(run(&db, &constant, vec![]).await, ["2"]);
    assert_eq!(
        constant.cached_plans(),
        1,
        "a plan that reads nothing is kept"
    );

    let insert = db.prepare("INSERT INTO t VALUES ($1, 1)").await.unwrap();
    db.execute_prepared(&insert, vec![text("z")]).await.unwrap();
    db.execute_prepared(&insert, vec![text("z")]).await.unwrap();
    assert_eq!(insert.cached_plans(), 0, "only queries are kept");
    assert_eq!(query_i64(&db, "SELECT n FROM v WHERE k = 'z'").await, 2);
}

#[tokio::test]
async fn a_view_created_again_is_planned_again() {
    let (_dir, db) = setup().await;
    let read = db.prepare("SELECT k, n FROM v WHERE k = $1").await.unwrap();
    assert_eq!(run(&db, &read, vec![text("a")]).await, ["a|2"]);
    db.sql("DROP MATERIALIZED VIEW v").await.unwrap();
    let gone = db
        .execute_prepared(&read, vec![text("a")])
        .await
        .unwrap_err();
    assert!(gone.to_string().contains("\"v\""), "{gone}");
    // Same name and columns, another definition: `n` now counts rows with x > 1.
    db.sql("CREATE MATERIALIZED VIEW v AS SELECT k, count(*) AS n FROM t WHERE x > 1 GROUP BY k")
        .await
        .unwrap();
    for _ in 0..100 {
        if db
            .execute_prepared(&read, vec![text("a")])
            .await
            .is_ok_and(|r| r.rows > 0)
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(run(&db, &read, vec![text("a")]).await, ["a|1"]);
}

/// Runs of one kept plan may overlap: each starts from a copy with its own operator state.
#[tokio::test]
async fn overlapping_runs_of_a_kept_plan_each_get_every_row() {
    let (_dir, db) = setup().await;
    let values: Vec<String> = (0..3000).map(|i| format!("('k{i}', {i})")).collect();
    db.sql(&format!("INSERT INTO t VALUES {}", values.join(", ")))
        .await
        .unwrap();
    let all = db
        .prepare("SELECT k, total FROM v WHERE total >= $1 ORDER BY total")
        .await
        .unwrap();
    let params = || vec![ScalarValue::Int64(Some(0))];
    let first = run(&db, &all, params()).await;
    assert_eq!(first.len(), 3002);
    let mut streams = Vec::new();
    for _ in 0..4 {
        match db.execute_prepared_streaming(&all, params()).await.unwrap() {
            tally_engine::StreamedResult::Rows(stream) => streams.push(stream),
            other => panic!("expected rows, got {other:?}"),
        }
    }
    assert_eq!(all.cached_plans(), 1);
    for stream in streams {
        let batches = stream.collect_all().await.unwrap();
        let lines: Vec<String> = batches.iter().flat_map(batch_lines).collect();
        assert_eq!(lines, first);
    }
}

/// A view scan reports its row estimate and the optimizer trusts it: a read of a few groups
/// stays in one partition (no round-robin repartition and merge; checked to fail without
/// `use_row_number_estimates_to_optimize_partitioning`). EXPLAIN names the view and its bounds.
#[tokio::test]
async fn a_small_view_read_is_planned_in_one_partition() {
    let (_dir, db) = setup().await;
    db.sql("CREATE MATERIALIZED VIEW w AS SELECT k, x, count(*) AS n FROM t GROUP BY k, x")
        .await
        .unwrap();
    let plan = query_lines(&db, "EXPLAIN SELECT k, n FROM w WHERE x = 1 ORDER BY k")
        .await
        .join("\n");
    assert!(plan.contains("ViewScan: view=w, 1 bound(s)"), "{plan}");
    assert!(!plan.contains("RepartitionExec"), "{plan}");
    assert!(!plan.contains("SortPreservingMergeExec"), "{plan}");
}
