//! A query's aggregates computed from a view's columns: read as they are when each query group
//! is one view row, or re-aggregated from mergeable states when the query's groups are
//! coarser (counts and sums add, minimums and maximums of minimums and maximums, averages from
//! the sums and counts an average keeps, or a sum and a count of the same argument, distinct
//! counts by a union of HLL sketches, theta sketches by their union).

use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::functions::core::expr_fn::{coalesce, nullif};
use datafusion::functions_aggregate::expr_fn::{max, min, sum};
use datafusion::logical_expr::expr::{AggregateFunction, ScalarFunction};
use datafusion::logical_expr::{AggregateUDF, Cast, Expr, ScalarUDF};

use super::Refusal;
use super::groups::view_column;
use crate::views::logical::{LogicalView, ViewAggregate, is_approx_distinct};

/// The functions a rollup calls that are Tally's own.
#[derive(Debug, Clone)]
pub(crate) struct SketchFunctions {
    /// `hll_union_agg(sketch)`.
    pub hll_union: Arc<AggregateUDF>,
    /// `hll_cardinality(sketch)`.
    pub hll_cardinality: Arc<ScalarUDF>,
    /// `theta_union_agg(sketch)`.
    pub theta_union: Arc<AggregateUDF>,
}

/// How the query's aggregates are read from a view.
pub(super) enum Mode {
    /// One view row per query group: the view's columns as they are.
    Rows,
    /// Re-aggregated: the calls (over the view's columns) an aggregate over the view computes.
    Rollup(Vec<Expr>),
}

/// Where aggregates of a rollup find the inner aggregate `i`: the column `__vm_a{i}`.
pub(super) fn inner_column(i: usize) -> String {
    format!("__vm_a{i}")
}

/// Derives each query aggregate from a view.
pub(super) struct Aggregates<'a> {
    pub view: &'a LogicalView,
    /// The table's columns (the input of the query's aggregate), for nullability.
    pub table: &'a DFSchema,
    pub functions: &'a SketchFunctions,
    /// Whether the query has a GROUP BY (so no group is empty).
    pub grouped: bool,
}

impl Aggregates<'_> {
    /// The expression giving `query` (a normalized aggregate call) from the view, in `mode`
    /// (adding to a rollup's inner aggregates).
    pub(super) fn derive(&self, query: &Expr, mode: &mut Mode) -> Result<Expr, Refusal> {
        let Expr::AggregateFunction(call) = query else {
            return Err(Refusal(format!("{query} is not an aggregate call")));
        };
        let name = call.func.name();
        let params = &call.params;
        let exact = self.view.aggs.iter().find(|a| a.expr == *query);
        if !exact_in_views(call) {
            return Err(match exact {
                Some(_) => Refusal(format!(
                    "{name} of a view may differ from {name} over the raw rows (a sketch \
                     merged in another order)"
                )),
                None => self.missing(query),
            });
        }
        if !params.order_by.is_empty() || params.null_treatment.is_some() {
            return Err(Refusal(format!(
                "{name} with ORDER BY or IGNORE NULLS is not kept by views"
            )));
        }
        match (mode, exact) {
            (Mode::Rows, Some(agg)) => {
                let column = view_column(&agg.column);
                // Counts are never NULL: keep them so for the query's schema.
                Ok(if is_count_like(call) {
                    coalesce(vec![column, zero()])
                } else {
                    column
                })
            }
            (Mode::Rows, None) if name == "avg" => {
                let (s, c) = self.sum_and_count(call)?;
                Ok(average(view_column(&s.column), view_column(&c.column)))
            }
            (Mode::Rows, None) => Err(self.missing(query)),
            (Mode::Rollup(inner), exact) => self.rollup(call, query, exact, inner),
        }
    }

    fn rollup(
        &self,
        call: &AggregateFunction,
        query: &Expr,
        exact: Option<&ViewAggregate>,
        inner: &mut Vec<Expr>,
    ) -> Result<Expr, Refusal> {
        let name = call.func.name();
        let mut add = |e: Expr| {
            inner.push(e);
            view_column(&inner_column(inner.len() - 1))
        };
        if name == "avg" {
            // The view's own average keeps its sum and count; else its sum(x) and count(x).
            let (s, c) = match exact.and_then(|a| a.avg_parts.as_ref()) {
                Some((s, c)) => (s.as_str(), c.as_str()),
                None => {
                    let (s, c) = self.sum_and_count(call)?;
                    (s.column.as_str(), c.column.as_str())
                }
            };
            let s = add(sum(view_column(s)));
            let c = add(sum(view_column(c)));
            return Ok(average(s, c));
        }
        let Some(agg) = exact else {
            return Err(self.missing(query));
        };
        let column = view_column(&agg.column);
        Ok(match name {
            "count" if call.params.distinct => {
                return Err(Refusal(
                    "count(DISTINCT …) cannot be re-aggregated: a view keeps the count of each \
                     group, not its set of values"
                        .into(),
                ));
            }
            "count" => coalesce(vec![add(sum(column)), zero()]),
            "sum" => add(sum(column)),
            "min" => add(min(column)),
            "max" => add(max(column)),
            "approx_distinct" if is_approx_distinct(query) => {
                let sketch = agg
                    .sketch
                    .as_deref()
                    .ok_or_else(|| Refusal("the view exposes no sketch".into()))?;
                let union = add(Expr::AggregateFunction(AggregateFunction::new_udf(
                    Arc::clone(&self.functions.hll_union),
                    vec![view_column(sketch)],
                    false,
                    None,
                    vec![],
                    None,
                )));
                let estimate = Expr::ScalarFunction(ScalarFunction::new_udf(
                    Arc::clone(&self.functions.hll_cardinality),
                    vec![union],
                ));
                coalesce(vec![estimate, zero()])
            }
            // A theta sketch is a function of its set of values, so the union of the groups'
            // sketches is the sketch of their rows; over no groups at all, though, the union
            // is NULL where theta_sketch gives the empty sketch.
            "theta_sketch" if self.grouped => {
                add(Expr::AggregateFunction(AggregateFunction::new_udf(
                    Arc::clone(&self.functions.theta_union),
                    vec![column],
                    false,
                    None,
                    vec![],
                    None,
                )))
            }
            other => {
                return Err(Refusal(format!(
                    "{other} cannot be re-aggregated to coarser groups{}",
                    if other == "theta_sketch" {
                        " without GROUP BY"
                    } else {
                        ""
                    }
                )));
            }
        })
    }

    /// The view's `sum(x)` and `count(x)` (or `count(*)` when `x` is a NOT NULL column) with
    /// the argument and filter of `avg(x)`.
    fn sum_and_count(
        &self,
        avg: &AggregateFunction,
    ) -> Result<(&ViewAggregate, &ViewAggregate), Refusal> {
        let params = &avg.params;
        let refuse = || {
            Refusal(format!(
                "avg({}) over coarser groups needs the view's avg, or its sum and count, of the \
                 same argument",
                params
                    .args
                    .first()
                    .map(|a| uncast(a, self.table).to_string())
                    .unwrap_or_default()
            ))
        };
        let [arg] = params.args.as_slice() else {
            return Err(refuse());
        };
        if params.distinct {
            return Err(Refusal("avg(DISTINCT …) is not kept by views".into()));
        }
        let arg = uncast(arg, self.table);
        let same = |agg: &&ViewAggregate, name: &str| {
            let Expr::AggregateFunction(f) = &agg.expr else {
                return false;
            };
            f.func.name() == name
                && !f.params.distinct
                && f.params.filter == params.filter
                && matches!(f.params.args.as_slice(), [a] if uncast(a, self.table) == arg)
        };
        let not_null = match arg {
            Expr::Column(c) => self
                .table
                .field_with_unqualified_name(&c.name)
                .is_ok_and(|f| !f.is_nullable()),
            _ => false,
        };
        let sum = self.view.aggs.iter().find(|a| same(a, "sum"));
        let count = self
            .view
            .aggs
            .iter()
            .find(|a| same(a, "count"))
            .or_else(|| {
                not_null
                    .then(|| {
                        self.view.aggs.iter().find(|a| {
                            matches!(&a.expr, Expr::AggregateFunction(f)
                            if is_count_star(f) && f.params.filter == params.filter)
                        })
                    })
                    .flatten()
            });
        match (sum, count) {
            (Some(s), Some(c)) => Ok((s, c)),
            _ => Err(refuse()),
        }
    }

    fn missing(&self, query: &Expr) -> Refusal {
        Refusal(format!("the view has no {query}"))
    }
}

/// Aggregates whose view value is what the query over the raw rows gives (exactly, within
/// float rounding for float sums and averages, or as the same sketch). Percentiles and top-k
/// lists depend on the order values were merged in.
fn exact_in_views(call: &AggregateFunction) -> bool {
    matches!(
        call.func.name(),
        "count" | "sum" | "min" | "max" | "avg" | "approx_distinct" | "theta_sketch"
    )
}

/// Aggregates that give 0, never NULL, over no rows.
fn is_count_like(call: &AggregateFunction) -> bool {
    matches!(call.func.name(), "count" | "approx_distinct")
}

/// `count(*)` (planned as a count of a non-null literal).
fn is_count_star(f: &AggregateFunction) -> bool {
    f.func.name() == "count"
        && !f.params.distinct
        && matches!(f.params.args.as_slice(), [Expr::Literal(v, _)] if !v.is_null())
}

/// `sum / count` as DOUBLE PRECISION, NULL for no values.
fn average(sum: Expr, count: Expr) -> Expr {
    let float = |e: Expr| Expr::Cast(Cast::new(Box::new(e), DataType::Float64));
    float(sum) / float(nullif(count, zero()))
}

fn zero() -> Expr {
    Expr::Literal(ScalarValue::Int64(Some(0)), None)
}

/// An argument without the widening cast type coercion put around it (`sum(x)` of an INT reads
/// `CAST(x AS BIGINT)`, `avg(x)` `CAST(x AS DOUBLE)`): only casts of integers and floats to
/// BIGINT or DOUBLE, which keep the value.
fn uncast<'e>(expr: &'e Expr, table: &DFSchema) -> &'e Expr {
    use datafusion::logical_expr::ExprSchemable;
    let Expr::Cast(cast) = expr else {
        return expr;
    };
    let Ok(inner) = cast.expr.get_type(table) else {
        return expr;
    };
    let widening = match cast.field.data_type() {
        DataType::Int64 => {
            inner.is_signed_integer()
                || matches!(inner, DataType::UInt8 | DataType::UInt16 | DataType::UInt32)
        }
        DataType::Float64 => inner.is_integer() || inner.is_floating(),
        _ => false,
    };
    if widening { &cast.expr } else { expr }
}
