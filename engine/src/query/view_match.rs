//! View matching: an aggregate over a table (the whole query or any subquery of it) is
//! answered from a materialized view of that table when the view's groups give the query's
//! groups and filters and its aggregates give the query's, with the answer the table would
//! give. [`ViewMatch`] is an analyzer rule, added to each statement's session with the
//! statement's snapshot: it runs after type coercion, before DataFusion's optimizer (which then
//! pushes the remaining filters into the view scan). See `docs/sql.md`, "Queries answered from
//! views", for what is supported and what is refused.
//!
//! Every view considered and the reason it was not used go to the statement's [`MatchLog`],
//! which EXPLAIN returns as `view matching` rows.

mod aggregates;
mod groups;

use std::sync::{Arc, Mutex};

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, DataFusionError, Result as DfResult, TableReference};
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{
    Aggregate, Cast, Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder,
};
use datafusion::optimizer::AnalyzerRule;

pub(crate) use aggregates::SketchFunctions;
use aggregates::{Aggregates, Mode, inner_column};
use groups::{Groups, view_column};

use super::catalog::{CATALOG, SCHEMA};
use crate::snapshot::{Snapshot, ViewEntry};
use crate::views::ViewStatus;
use crate::views::logical::{LogicalView, normalize};
use crate::views::provider::ViewTable;
use crate::views::scan::estimate_rows;

/// Why a view cannot answer a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal(pub String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}

impl Refusal {
    /// The refusal a rewrite of children carried through DataFusion's tree walk.
    fn from_datafusion(e: DataFusionError) -> Refusal {
        match e {
            DataFusionError::External(inner) => match inner.downcast::<Refusal>() {
                Ok(refusal) => *refusal,
                Err(other) => Refusal(other.to_string()),
            },
            other => Refusal(other.strip_backtrace()),
        }
    }
}

/// What view matching did for one statement, in order: one line per view considered for each
/// aggregate over a table with views. EXPLAIN shows it.
#[derive(Debug, Default)]
pub(crate) struct MatchLog(Mutex<Vec<String>>);

impl MatchLog {
    fn push(&self, line: String) {
        let mut lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // The analyzer may run more than once over one statement (a Describe, then the run).
        if !lines.contains(&line) {
            lines.push(line);
        }
    }

    /// The lines so far.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The analyzer rule answering aggregates from views, for one statement at one snapshot.
#[derive(Debug)]
pub(crate) struct ViewMatch {
    snapshot: Arc<Snapshot>,
    /// `tally.view_rewrite`: with `false` it only notes that it is off.
    enabled: bool,
    log: Arc<MatchLog>,
    functions: SketchFunctions,
}

impl ViewMatch {
    pub(crate) fn new(
        snapshot: Arc<Snapshot>,
        enabled: bool,
        log: Arc<MatchLog>,
        functions: SketchFunctions,
    ) -> Self {
        ViewMatch {
            snapshot,
            enabled,
            log,
            functions,
        }
    }
}

impl AnalyzerRule for ViewMatch {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let LogicalPlan::Aggregate(aggregate) = &node else {
                return Ok(Transformed::no(node));
            };
            Ok(match self.rewrite(aggregate) {
                Some(rewritten) => Transformed::yes(rewritten),
                None => Transformed::no(node),
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "tally_view_match"
    }
}

/// The query side of a match: an aggregate over Filter* → [SubqueryAlias] → TableScan.
struct QueryAggregate<'a> {
    table: String,
    groups: Vec<Expr>,
    aggs: Vec<Expr>,
    conjuncts: Vec<Expr>,
    /// The table's columns.
    input: &'a DFSchema,
}

impl<'a> QueryAggregate<'a> {
    fn of(aggregate: &'a Aggregate) -> Option<QueryAggregate<'a>> {
        let mut conjuncts = Vec::new();
        let mut input = aggregate.input.as_ref();
        let scan = loop {
            match input {
                LogicalPlan::Filter(f) => {
                    conjuncts.extend(split_conjunction(&f.predicate).into_iter().map(normalize));
                    input = f.input.as_ref();
                }
                LogicalPlan::SubqueryAlias(a) => input = a.input.as_ref(),
                LogicalPlan::TableScan(scan) if scan.filters.is_empty() && scan.fetch.is_none() => {
                    break scan;
                }
                _ => return None,
            }
        };
        let name = &scan.table_name;
        let ours = name.catalog().is_none_or(|c| c == CATALOG)
            && name.schema().is_none_or(|s| s == SCHEMA);
        ours.then(|| QueryAggregate {
            table: name.table().to_string(),
            groups: aggregate.group_expr.iter().map(normalize).collect(),
            aggs: aggregate.aggr_expr.iter().map(normalize).collect(),
            conjuncts,
            input: aggregate.input.schema(),
        })
    }
}

impl QueryAggregate<'_> {
    /// `SELECT count(*) FROM t`: the table's statistics answer it without a scan.
    fn counts_every_row(&self) -> bool {
        self.groups.is_empty()
            && self.conjuncts.is_empty()
            && self.aggs.iter().all(|a| {
                matches!(a, Expr::AggregateFunction(f)
                    if f.func.name() == "count"
                        && f.params.filter.is_none()
                        && !f.params.distinct
                        && matches!(f.params.args.as_slice(), [Expr::Literal(v, _)] if !v.is_null()))
            })
    }
}

/// How a view gives a query's aggregate.
struct Derivation {
    /// Predicates on the view's columns.
    filters: Vec<Expr>,
    /// The query's group expressions over the view's columns.
    groups: Vec<Expr>,
    /// The query's aggregates over the view's columns (over the rollup's inner aggregates).
    aggs: Vec<Expr>,
    mode: Mode,
}

impl ViewMatch {
    /// The aggregate answered from the smallest view that can, noting every view's verdict.
    fn rewrite(&self, aggregate: &Aggregate) -> Option<LogicalPlan> {
        let query = QueryAggregate::of(aggregate)?;
        let table = self.snapshot.tables.get(&query.table)?;
        let views: Vec<&Arc<ViewEntry>> = self.snapshot.views_of(table.def.id).collect();
        if views.is_empty() {
            return None;
        }
        let table_name = &query.table;
        if !self.enabled {
            self.log.push(format!(
                "{table_name}: not answered from a view: tally.view_rewrite is off"
            ));
            return None;
        }
        if query.counts_every_row() {
            self.log.push(format!(
                "{table_name}: not answered from a view: count(*) of a whole table is read from \
                 its statistics"
            ));
            return None;
        }
        let mut candidates = Vec::new();
        let mut refused = Vec::new();
        for entry in views {
            match self.derive(&query, entry) {
                Ok(derivation) => {
                    let size = estimate_rows(&entry.view, &entry.data, &[]);
                    candidates.push((size, entry, derivation));
                }
                Err(reason) => {
                    refused.push(format!("view {} not used: {reason}", entry.view.def.name))
                }
            }
        }
        // The smallest view that can answer does (by name among equals).
        candidates.sort_by(|a, b| (a.0, &a.1.view.def.name).cmp(&(b.0, &b.1.view.def.name)));
        let mut rewritten: Option<(usize, &str, LogicalPlan)> = None;
        for (size, entry, derivation) in candidates {
            let name = entry.view.def.name.as_str();
            if let Some((smallest, chosen, _)) = &rewritten {
                refused.push(format!(
                    "view {name} not used: it can answer, but view {chosen} is smaller \
                     ({smallest} groups, not {size})"
                ));
                continue;
            }
            match build(entry, derivation, aggregate) {
                Ok(plan) => rewritten = Some((size, name, plan)),
                Err(reason) => refused.push(format!("view {name} not used: {reason}")),
            }
        }
        match &rewritten {
            Some((size, name, _)) => self.log.push(format!(
                "{table_name}: answered from view {name} ({size} groups)"
            )),
            None => self
                .log
                .push(format!("{table_name}: not answered from a view")),
        }
        for line in refused {
            self.log.push(format!("{table_name}: {line}"));
        }
        rewritten.map(|(_, _, plan)| plan)
    }
    /// How `entry` answers `query`, or why it cannot.
    fn derive(&self, query: &QueryAggregate, entry: &ViewEntry) -> Result<Derivation, Refusal> {
        if entry.status != ViewStatus::Ready {
            return Err(Refusal("it is still being backfilled".into()));
        }
        if self.snapshot.held_tables.contains(&entry.view.def.table_id) {
            return Err(Refusal(format!(
                "this transaction holds rows of {} that its views count only at COMMIT",
                query.table
            )));
        }
        if self
            .snapshot
            .table_by_id(entry.view.def.table_id)
            .is_some_and(|t| t.def.rows_removed)
        {
            return Err(Refusal(format!(
                "retention removed rows of {} that its views still count",
                query.table
            )));
        }
        let Some(view) = entry.view.logical.as_ref() else {
            return Err(Refusal("its definition cannot be matched".into()));
        };
        derive(query, view, &self.functions)
    }
}

/// How `view` answers `query`, or why it cannot.
fn derive(
    query: &QueryAggregate,
    view: &LogicalView,
    functions: &SketchFunctions,
) -> Result<Derivation, Refusal> {
    if query
        .groups
        .iter()
        .any(|g| matches!(g, Expr::GroupingSet(_)))
    {
        return Err(Refusal(
            "GROUPING SETS, CUBE and ROLLUP are not matched".into(),
        ));
    }
    // The view's WHERE must be implied by the query's: each of its conjuncts is one of the
    // query's. The query's other conjuncts must be predicates on the view's groups.
    if let Some(missing) = view.filter.iter().find(|f| !query.conjuncts.contains(f)) {
        return Err(Refusal(format!(
            "its WHERE condition {missing} is not a condition of the query"
        )));
    }
    let groups = Groups::new(view, query.input);
    let filters = query
        .conjuncts
        .iter()
        .filter(|c| !view.filter.contains(c))
        .map(|c| groups.rewrite_filter(c))
        .collect::<Result<Vec<_>, _>>()?;
    let rewritten_groups = query
        .groups
        .iter()
        .map(|g| {
            groups.rewrite(g).map_err(|r| {
                Refusal(format!(
                    "the group {g} is not derived from its groups: {}",
                    r.0
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Each query group is one view row when the query groups by exactly the view's groups.
    let same = !query.groups.is_empty()
        && view.groups.iter().all(|g| query.groups.contains(&g.expr))
        && query
            .groups
            .iter()
            .all(|q| view.groups.iter().any(|g| g.expr == *q));
    let mut mode = if same {
        Mode::Rows
    } else {
        Mode::Rollup(Vec::new())
    };
    let derive = Aggregates {
        view,
        table: query.input,
        functions,
        grouped: !query.groups.is_empty(),
    };
    let aggs = query
        .aggs
        .iter()
        .map(|a| derive.derive(a, &mut mode))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Derivation {
        filters,
        groups: rewritten_groups,
        aggs,
        mode,
    })
}

/// The plan reading `entry` that yields exactly the columns of `original`, with its names and
/// types.
fn build(
    entry: &Arc<ViewEntry>,
    derivation: Derivation,
    original: &Aggregate,
) -> Result<LogicalPlan, Refusal> {
    let failed = |e: DataFusionError| Refusal(format!("planning the read failed: {e}"));
    let name = TableReference::bare(entry.view.def.name.as_str());
    let source = provider_as_source(Arc::new(ViewTable::new(Arc::clone(entry))));
    let mut builder = LogicalPlanBuilder::scan(name, source, None).map_err(failed)?;
    if let Some(predicate) = conjunction(derivation.filters) {
        builder = builder.filter(predicate).map_err(failed)?;
    }
    let outputs: Vec<Expr> = match derivation.mode {
        Mode::Rows => derivation
            .groups
            .into_iter()
            .chain(derivation.aggs)
            .collect(),
        Mode::Rollup(inner) => {
            let group_names: Vec<String> = (0..derivation.groups.len())
                .map(|i| format!("__vm_g{i}"))
                .collect();
            let grouped = derivation
                .groups
                .into_iter()
                .zip(&group_names)
                .map(|(g, n)| g.alias(n));
            let inner = inner
                .into_iter()
                .enumerate()
                .map(|(i, a)| a.alias(inner_column(i)));
            builder = builder.aggregate(grouped, inner).map_err(failed)?;
            group_names
                .iter()
                .map(|n| view_column(n))
                .chain(derivation.aggs)
                .collect()
        }
    };
    let input = builder.schema().clone();
    let mut projection = Vec::with_capacity(outputs.len());
    for (expr, (qualifier, field)) in outputs.into_iter().zip(original.schema.iter()) {
        let data_type = expr.get_type(&input).map_err(failed)?;
        let expr = if &data_type == field.data_type() {
            expr
        } else if data_type.is_numeric() && field.data_type().is_numeric() {
            Expr::Cast(Cast::new(Box::new(expr), field.data_type().clone()))
        } else {
            return Err(Refusal(format!(
                "column {} would be {data_type}, not {}",
                field.name(),
                field.data_type()
            )));
        };
        projection.push(expr.alias_qualified(qualifier.cloned(), field.name()));
    }
    let plan = builder
        .project(projection)
        .map_err(failed)?
        .build()
        .map_err(failed)?;
    let same_columns = plan.schema().iter().count() == original.schema.iter().count()
        && plan
            .schema()
            .iter()
            .zip(original.schema.iter())
            .all(|((q1, f1), (q2, f2))| {
                q1 == q2 && f1.name() == f2.name() && f1.data_type() == f2.data_type()
            });
    if !same_columns {
        return Err(Refusal("the read's columns differ from the query's".into()));
    }
    Ok(plan)
}

#[cfg(test)]
mod tests;
