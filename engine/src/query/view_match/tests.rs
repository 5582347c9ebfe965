//! The rule over plans made by a plain DataFusion session: which views answer, which refuse
//! and why, and that a rewritten plan keeps the original's columns.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::LogicalPlan;
use datafusion::optimizer::AnalyzerRule;
use datafusion::prelude::SessionContext;

use super::*;
use crate::catalog::{CATALOG_ENTRY_VERSION, TableDef};
use crate::snapshot::TableState;
use crate::views::ViewData;
use crate::views::definition::compile_for_tests;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("k", DataType::Utf8, true),
        Field::new("x", DataType::Int64, true),
    ]))
}

/// A session with the empty table `t`, as `compile_for_tests` plans views.
fn session() -> SessionContext {
    let ctx = SessionContext::new();
    let table = MemTable::try_new(schema(), vec![vec![]]).expect("an empty table");
    ctx.register_table("t", Arc::new(table))
        .expect("registering t");
    ctx
}

/// `sql` planned and analyzed (type coercion applied), as the rule sees it.
fn analyzed(ctx: &SessionContext, sql: &str) -> LogicalPlan {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let plan = runtime
        .block_on(ctx.state().create_logical_plan(sql))
        .expect("a plannable query");
    ctx.state()
        .analyzer()
        .execute_and_check(plan, ctx.state().config_options(), |_, _| {})
        .expect("an analyzable query")
}

/// A snapshot holding table `t` (id 1) and view `v` over it, in `status`.
fn snapshot(view: &str, status: ViewStatus) -> Snapshot {
    let def = TableDef {
        v: CATALOG_ENTRY_VERSION,
        id: 1,
        name: "t".into(),
        columns: vec![],
        time_column: None,
        bloom_filter_columns: vec![],
        retention_seconds: None,
        rows_removed: false,
    };
    let mut snapshot = Snapshot::default();
    snapshot
        .tables
        .insert("t".into(), Arc::new(TableState::new(def)));
    let entry = ViewEntry {
        view: Arc::new(compile_for_tests(view, &schema(), 2)),
        status,
        data: ViewData::default(),
    };
    snapshot.views.insert("v".into(), Arc::new(entry));
    snapshot
}

/// The rule run over `query` at `snapshot`: the plan and the log.
fn run(snapshot: Snapshot, query: &str) -> (LogicalPlan, LogicalPlan, Vec<String>) {
    let ctx = session();
    let state = ctx.state();
    let any_aggregate = state
        .aggregate_functions()
        .get("count")
        .cloned()
        .expect("count");
    let any_scalar = state.scalar_functions().get("abs").cloned().expect("abs");
    let log = Arc::new(MatchLog::default());
    let rule = ViewMatch::new(
        Arc::new(snapshot),
        true,
        Arc::clone(&log),
        SketchFunctions {
            hll_union: Arc::clone(&any_aggregate),
            hll_cardinality: any_scalar,
            theta_union: any_aggregate,
        },
    );
    let original = analyzed(&ctx, query);
    let rewritten = rule
        .analyze(original.clone(), state.config_options())
        .expect("the rule never fails");
    (original, rewritten, log.lines())
}

const VIEW: &str = "SELECT date_trunc('hour', ts) AS hour, k, count(*) AS n, sum(x) AS s, \
                    min(x) AS lo FROM t GROUP BY 1, 2";

#[test]
fn a_ready_view_answers_with_the_original_columns() {
    let query = "SELECT date_trunc('day', ts) AS day, count(*), sum(x) AS total FROM t \
                 WHERE k = 'a' AND ts >= '2026-01-02' GROUP BY 1";
    let (original, rewritten, log) = run(snapshot(VIEW, ViewStatus::Ready), query);
    assert_eq!(log, ["t: answered from view v (0 groups)"]);
    let shown = rewritten.display_indent().to_string();
    assert!(shown.contains("TableScan: v"), "{shown}");
    assert!(!shown.contains("TableScan: t"), "{shown}");
    let columns = |p: &LogicalPlan| -> Vec<(String, DataType)> {
        p.schema()
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect()
    };
    assert_eq!(columns(&rewritten), columns(&original));
}

#[test]
fn a_view_being_backfilled_never_answers() {
    let query = "SELECT k, count(*) FROM t GROUP BY k";
    let (original, rewritten, log) = run(snapshot(VIEW, ViewStatus::Backfilling), query);
    assert_eq!(rewritten, original);
    assert_eq!(
        log,
        [
            "t: not answered from a view",
            "t: view v not used: it is still being backfilled"
        ]
    );
}

#[test]
fn held_rows_and_removed_rows_rule_the_views_out() {
    let query = "SELECT k, count(*) FROM t GROUP BY k";
    let mut held = snapshot(VIEW, ViewStatus::Ready);
    held.held_tables.insert(1);
    let (original, rewritten, log) = run(held, query);
    assert_eq!(rewritten, original);
    assert!(
        log[1].ends_with("that its views count only at COMMIT"),
        "{log:?}"
    );

    let mut pruned = snapshot(VIEW, ViewStatus::Ready);
    let table = pruned.tables.get_mut("t").expect("t");
    let mut def = TableDef::clone(&table.def);
    def.rows_removed = true;
    Arc::make_mut(table).def = Arc::new(def);
    let (original, rewritten, log) = run(pruned, query);
    assert_eq!(rewritten, original);
    assert!(log[1].contains("retention removed rows of t"), "{log:?}");
}

#[test]
fn refusals_name_their_reason() {
    let cases = [
        (
            "SELECT k, count(*) FROM t WHERE x > 1 GROUP BY k",
            "the filter x > Int64(1) is not on its groups: column x is not a group column of the view",
        ),
        (
            "SELECT k, max(x) FROM t GROUP BY k",
            "the view has no max(x)",
        ),
        (
            "SELECT x, count(*) FROM t GROUP BY x",
            "the group x is not derived from its groups",
        ),
        (
            "SELECT k, count(*) FROM t WHERE ts < '2026-01-02 00:00:01' GROUP BY k",
            "it is not a bucket boundary",
        ),
        (
            "SELECT k, count(*) FROM t WHERE ts <= '2026-01-02' GROUP BY k",
            "only >= and < a bucket boundary select whole buckets",
        ),
    ];
    for (query, reason) in cases {
        let (original, rewritten, log) = run(snapshot(VIEW, ViewStatus::Ready), query);
        assert_eq!(rewritten, original, "{query}");
        assert!(log.iter().any(|l| l.contains(reason)), "{query}: {log:?}");
    }
    // The statistics of the table count its rows.
    let (original, rewritten, log) = run(
        snapshot(VIEW, ViewStatus::Ready),
        "SELECT count(*) AS n FROM t",
    );
    assert_eq!(rewritten, original);
    assert_eq!(
        log,
        ["t: not answered from a view: count(*) of a whole table is read from its statistics"]
    );
    // A view's WHERE must be one of the query's conjuncts.
    let filtered = "SELECT k, count(*) AS n FROM t WHERE x > 0 GROUP BY k";
    let (_, rewritten, log) = run(
        snapshot(filtered, ViewStatus::Ready),
        "SELECT k, count(*) FROM t GROUP BY k",
    );
    assert!(
        !rewritten
            .display_indent()
            .to_string()
            .contains("TableScan: v")
    );
    assert!(
        log[1].contains("its WHERE condition x > Int64(0)"),
        "{log:?}"
    );
    let (_, rewritten, _) = run(
        snapshot(filtered, ViewStatus::Ready),
        "SELECT k, count(*) FROM t WHERE x > 0 AND k = 'a' GROUP BY k",
    );
    assert!(
        rewritten
            .display_indent()
            .to_string()
            .contains("TableScan: v")
    );
}
