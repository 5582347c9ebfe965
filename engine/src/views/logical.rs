//! A view's definition as logical expressions, kept for view matching
//! ([`crate::query::view_match`]): its group expressions, aggregates and WHERE conjuncts as
//! DataFusion's analyzer leaves them (types coerced), with column qualifiers removed, so that
//! they compare equal to the same expressions in an ad-hoc query over the view's table.

use datafusion::common::Column;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Expr, LogicalPlan};

use arrow::datatypes::Field;

use super::definition::SKETCH_SUFFIX;
use super::hidden_columns::{COUNT_SUFFIX, SUM_SUFFIX};

/// A view's groups, aggregates and filter, normalized by [`normalize`].
#[derive(Debug, Clone)]
pub(crate) struct LogicalView {
    /// Group expressions in key order.
    pub groups: Vec<ViewGroup>,
    /// Aggregates, one per aggregate output column.
    pub aggs: Vec<ViewAggregate>,
    /// The conjuncts of the view's WHERE (empty without one).
    pub filter: Vec<Expr>,
}

/// One group expression of a view.
#[derive(Debug, Clone)]
pub(crate) struct ViewGroup {
    /// The expression over the table's columns.
    pub expr: Expr,
    /// The view column holding its value (`None` when the view groups by it without
    /// returning it).
    pub column: Option<String>,
}

/// One aggregate output column of a view.
#[derive(Debug, Clone)]
pub(crate) struct ViewAggregate {
    /// The aggregate call over the table's columns (`Expr::AggregateFunction`).
    pub expr: Expr,
    /// The view column holding its finalized value.
    pub column: String,
    /// The hidden BYTEA column holding its sketch, for `approx_count_distinct`.
    pub sketch: Option<String>,
    /// The hidden columns holding the sum and the count of an `avg`.
    pub avg_parts: Option<(String, String)>,
}

impl LogicalView {
    /// The matching shape of a planned view query (`plan` as the SQL planner made it), or
    /// `None` if the analyzer cannot take it (such a view is then never used to answer
    /// queries; its maintenance does not depend on this).
    /// `fields` are the view's columns, hidden ones included.
    pub(crate) fn of(
        plan: &LogicalPlan,
        state: &SessionState,
        fields: &[Field],
    ) -> Option<LogicalView> {
        let exists = |name: &String| fields.iter().any(|f| f.name() == name);
        let analyzed = state
            .analyzer()
            .execute_and_check(plan.clone(), state.config_options(), |_, _| {})
            .ok()?;
        let LogicalPlan::Projection(projection) = &analyzed else {
            return None;
        };
        let LogicalPlan::Aggregate(aggregate) = projection.input.as_ref() else {
            return None;
        };
        let filter = filter_conjuncts(aggregate.input.as_ref())?;
        let group_count = aggregate.group_expr.len();
        let mut groups: Vec<ViewGroup> = aggregate
            .group_expr
            .iter()
            .map(|e| ViewGroup {
                expr: normalize(e),
                column: None,
            })
            .collect();
        let mut aggs = Vec::new();
        for (i, expr) in projection.expr.iter().enumerate() {
            let Expr::Column(column) = super::definition::unalias(expr) else {
                return None;
            };
            let index = aggregate.schema.index_of_column(column).ok()?;
            let name = analyzed.schema().field(i).name().clone();
            if index < group_count {
                groups[index].column.get_or_insert(name);
                continue;
            }
            let expr = normalize(aggregate.aggr_expr.get(index - group_count)?);
            let sketch = is_approx_distinct(&expr)
                .then(|| format!("{name}{SKETCH_SUFFIX}"))
                .filter(exists);
            let avg_parts = is_avg(&expr)
                .then(|| {
                    (
                        format!("{name}{SUM_SUFFIX}"),
                        format!("{name}{COUNT_SUFFIX}"),
                    )
                })
                .filter(|(s, c)| exists(s) && exists(c));
            aggs.push(ViewAggregate {
                expr,
                column: name,
                sketch,
                avg_parts,
            });
        }
        Some(LogicalView {
            groups,
            aggs,
            filter,
        })
    }
}

/// The WHERE conjuncts below a view's aggregate: Filter* → [SubqueryAlias] → TableScan.
fn filter_conjuncts(mut input: &LogicalPlan) -> Option<Vec<Expr>> {
    let mut conjuncts = Vec::new();
    loop {
        match input {
            LogicalPlan::Filter(f) => {
                conjuncts.extend(split_conjunction(&f.predicate).into_iter().map(normalize));
                input = f.input.as_ref();
            }
            LogicalPlan::SubqueryAlias(a) => input = a.input.as_ref(),
            LogicalPlan::TableScan(scan) if scan.filters.is_empty() && scan.fetch.is_none() => {
                return Some(conjuncts);
            }
            _ => return None,
        }
    }
}

/// Whether an aggregate call is `approx_count_distinct` (`approx_distinct`), whose sketch a view
/// exposes.
pub(crate) fn is_approx_distinct(expr: &Expr) -> bool {
    matches!(expr, Expr::AggregateFunction(f) if f.func.name() == "approx_distinct")
}

/// Whether an aggregate call is `avg`.
fn is_avg(expr: &Expr) -> bool {
    matches!(expr, Expr::AggregateFunction(f) if f.func.name() == "avg")
}

/// `expr` without aliases and with every column unqualified: a view and a query over one
/// table name its columns alike whatever alias either gave the table.
pub(crate) fn normalize(expr: &Expr) -> Expr {
    expr.clone()
        .transform_up(|e| {
            Ok(match e {
                Expr::Alias(alias) => Transformed::yes(*alias.expr),
                Expr::Column(c) if c.relation.is_some() => {
                    Transformed::yes(Expr::Column(Column::new_unqualified(c.name)))
                }
                other => Transformed::no(other),
            })
        })
        .map(|t| t.data)
        .unwrap_or_else(|_| expr.clone())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    use crate::views::definition::compile_for_tests;

    #[test]
    fn a_view_keeps_its_groups_aggregates_and_filter_unqualified() {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("k", DataType::Int32, true),
            Field::new("x", DataType::Int64, true),
        ]));
        let view = compile_for_tests(
            "SELECT date_trunc('hour', ts) AS hour, count(*) AS n, sum(x) AS s FROM t AS a \
             WHERE k > 1 GROUP BY 1, k",
            &schema,
            1,
        );
        let logical = view.logical.as_ref().expect("a matchable view");
        assert_eq!(logical.groups.len(), 2);
        assert_eq!(logical.groups[0].column.as_deref(), Some("hour"));
        assert_eq!(
            logical.groups[1].column, None,
            "k is grouped by, not returned"
        );
        assert_eq!(logical.groups[1].expr.to_string(), "k");
        let columns: Vec<&str> = logical.aggs.iter().map(|a| a.column.as_str()).collect();
        assert_eq!(columns, ["n", "s"]);
        assert_eq!(logical.aggs[1].expr.to_string(), "sum(x)");
        assert_eq!(logical.filter.len(), 1);
        assert!(
            !logical.filter[0].to_string().contains("a."),
            "{}",
            logical.filter[0]
        );
    }
}
