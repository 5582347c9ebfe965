//! Expressions over a table rewritten over a view's group columns: the query's group
//! expressions and its WHERE conjuncts. An expression can be rewritten when every part of it
//! that reads the table is one of the view's group expressions, or a coarser `date_trunc` of
//! one; a bound on a raw time column is rewritten when it is aligned to the view's grain.

use arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, DataFusionError, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, Volatility};

use super::Refusal;
use crate::views::logical::LogicalView;

/// A view's group expressions, as a target for rewriting.
pub(super) struct Groups<'a> {
    view: &'a LogicalView,
    /// The table's columns, for their types.
    table: &'a DFSchema,
}

impl<'a> Groups<'a> {
    pub(super) fn new(view: &'a LogicalView, table: &'a DFSchema) -> Self {
        Groups { view, table }
    }

    /// `expr` (over the table) rewritten over the view's columns, or why it cannot be.
    pub(super) fn rewrite(&self, expr: &Expr) -> Result<Expr, Refusal> {
        if let Some(column) = self.column_of(expr) {
            return Ok(view_column(column));
        }
        if let Some(coarser) = self.coarser_trunc(expr) {
            return Ok(coarser);
        }
        match expr {
            Expr::Column(c) => {
                return Err(Refusal(format!(
                    "column {} is not a group column of the view",
                    c.name
                )));
            }
            Expr::ScalarFunction(f) if f.func.signature().volatility == Volatility::Volatile => {
                return Err(Refusal(format!(
                    "{}() gives a new value for every row",
                    f.func.name()
                )));
            }
            Expr::ScalarSubquery(_)
            | Expr::Exists(_)
            | Expr::InSubquery(_)
            | Expr::SetComparison(_)
            | Expr::OuterReferenceColumn(..)
            | Expr::AggregateFunction(_)
            | Expr::WindowFunction(_)
            | Expr::GroupingSet(_)
            | Expr::Unnest(_) => {
                return Err(Refusal(format!("{expr} cannot be computed from a view")));
            }
            _ => {}
        }
        expr.clone()
            .map_children(|child| {
                self.rewrite(&child)
                    .map(Transformed::yes)
                    .map_err(|r| DataFusionError::External(Box::new(r)))
            })
            .map(|t| t.data)
            .map_err(Refusal::from_datafusion)
    }

    /// A WHERE conjunct over the table rewritten as a predicate on the view's groups.
    pub(super) fn rewrite_filter(&self, conjunct: &Expr) -> Result<Expr, Refusal> {
        if let Some(bound) = self.time_bound(conjunct) {
            return bound;
        }
        self.rewrite(conjunct).map_err(|r| {
            Refusal(format!(
                "the filter {conjunct} is not on its groups: {}",
                r.0
            ))
        })
    }

    /// The view column holding exactly `expr`.
    fn column_of(&self, expr: &Expr) -> Option<&'a str> {
        self.view
            .groups
            .iter()
            .find(|g| g.expr == *expr)
            .and_then(|g| g.column.as_deref())
    }

    /// `date_trunc(coarse, x)` from a view column `date_trunc(fine, x)` whose buckets nest in
    /// the coarser ones: `date_trunc('day', hour)`.
    fn coarser_trunc(&self, expr: &Expr) -> Option<Expr> {
        let (function, coarse, arg) = date_trunc(expr)?;
        self.view.groups.iter().find_map(|g| {
            let (_, fine, view_arg) = date_trunc(&g.expr)?;
            let column = g.column.as_deref()?;
            (view_arg == arg && nests(&fine, &coarse)).then(|| {
                let Expr::ScalarFunction(f) = expr else {
                    unreachable!("date_trunc returned a function")
                };
                Expr::ScalarFunction(ScalarFunction::new_udf(
                    std::sync::Arc::clone(&function),
                    vec![f.args[0].clone(), view_column(column)],
                ))
            })
        })
    }

    /// `x >= t` or `x < t` on a raw time column `x` of a view grouped by `date_trunc(unit, x)`,
    /// with `t` a constant on a bucket boundary: the same rows as `bucket >= t` (`< t`). `None`
    /// when the conjunct is not a comparison of such a column with a constant.
    fn time_bound(&self, conjunct: &Expr) -> Option<Result<Expr, Refusal>> {
        let Expr::BinaryExpr(BinaryExpr { left, op, right }) = conjunct else {
            return None;
        };
        let (column, op, bound) = match (self.time_column(left), self.time_column(right)) {
            (Some(c), None) if constant(right).is_some() => (c, *op, right.as_ref()),
            (None, Some(c)) if constant(left).is_some() => (c, op.swap()?, left.as_ref()),
            _ => return None,
        };
        if self.column_of(&Expr::Column(column.clone())).is_some() {
            return None;
        }
        let (unit, view_column_name) = self.view.groups.iter().find_map(|g| {
            let (_, unit, arg) = date_trunc(&g.expr)?;
            (arg == Expr::Column(column.clone())).then_some((unit, g.column.as_deref()?))
        })?;
        let refuse = |why: &str| {
            Some(Err(Refusal(format!(
                "the bound {conjunct} on {} is not on the view's {unit} buckets: {why}",
                column.name
            ))))
        };
        if !matches!(op, Operator::GtEq | Operator::Lt) {
            return refuse("only >= and < a bucket boundary select whole buckets");
        }
        let value = constant(bound);
        let Some(nanos) = value.as_ref().and_then(utc_nanos) else {
            return refuse("the bound is not a UTC timestamp");
        };
        // The bound in the column's own type (type coercion may have cast both sides to
        // nanoseconds), so that the view scan narrows its read by it.
        let Some(literal) = self
            .column_type(column)
            .and_then(|t| value.and_then(|v| v.cast_to(&t).ok()))
            .filter(|v| utc_nanos(v) == Some(nanos))
        else {
            return refuse("the bound does not fit the column's type");
        };
        match aligned(&unit, nanos) {
            Some(true) => Some(Ok(Expr::BinaryExpr(BinaryExpr::new(
                Box::new(view_column(view_column_name)),
                op,
                Box::new(Expr::Literal(literal, None)),
            )))),
            Some(false) => refuse("it is not a bucket boundary"),
            None => refuse("only second to week buckets are supported"),
        }
    }

    /// A timestamp column of the table, as it is or cast losslessly to a finer unit (type
    /// coercion compares a timestamp with a string in nanoseconds).
    fn time_column<'e>(&self, expr: &'e Expr) -> Option<&'e Column> {
        match expr {
            Expr::Column(c) => matches!(self.column_type(c)?, DataType::Timestamp(..)).then_some(c),
            Expr::Cast(cast) => {
                let Expr::Column(c) = cast.expr.as_ref() else {
                    return None;
                };
                let (DataType::Timestamp(from, from_tz), DataType::Timestamp(to, to_tz)) =
                    (self.column_type(c)?, cast.field.data_type())
                else {
                    return None;
                };
                let finer = |u: &arrow::datatypes::TimeUnit| {
                    use arrow::datatypes::TimeUnit::*;
                    match u {
                        Second => 0,
                        Millisecond => 1,
                        Microsecond => 2,
                        Nanosecond => 3,
                    }
                };
                (finer(to) >= finer(&from) && from_tz.is_none() == to_tz.is_none()).then_some(c)
            }
            _ => None,
        }
    }

    fn column_type(&self, column: &Column) -> Option<DataType> {
        self.table
            .field_with_unqualified_name(&column.name)
            .ok()
            .map(|f| f.data_type().clone())
    }
}

/// An unqualified reference to a view column.
pub(super) fn view_column(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

/// `date_trunc('<unit>', arg)`: the function, the unit (lower case) and the argument.
fn date_trunc(
    expr: &Expr,
) -> Option<(
    std::sync::Arc<datafusion::logical_expr::ScalarUDF>,
    String,
    Expr,
)> {
    let Expr::ScalarFunction(f) = expr else {
        return None;
    };
    if f.func.name() != "date_trunc" {
        return None;
    }
    let [Expr::Literal(unit, _), arg] = f.args.as_slice() else {
        return None;
    };
    let unit = unit.try_as_str().flatten()?.to_ascii_lowercase();
    Some((f.func.clone(), unit, arg.clone()))
}

/// Whether every `coarse` bucket is a union of whole `fine` buckets (UTC).
fn nests(fine: &str, coarse: &str) -> bool {
    const ORDER: [&str; 10] = [
        "microsecond",
        "millisecond",
        "second",
        "minute",
        "hour",
        "day",
        "week",
        "month",
        "quarter",
        "year",
    ];
    let rank = |u: &str| ORDER.iter().position(|o| *o == u);
    let (Some(f), Some(c)) = (rank(fine), rank(coarse)) else {
        return false;
    };
    // Weeks start on Mondays, months on the 1st: neither nests in the other.
    f <= c && !(fine == "week" && c > 6)
}

/// Whether a UTC instant (nanoseconds) starts a bucket of `unit`; `None` for units whose
/// buckets have no fixed length.
fn aligned(unit: &str, nanos: i128) -> Option<bool> {
    const DAY: i128 = 86_400_000_000_000;
    let size: i128 = match unit {
        "microsecond" => 1_000,
        "millisecond" => 1_000_000,
        "second" => 1_000_000_000,
        "minute" => 60_000_000_000,
        "hour" => 3_600_000_000_000,
        "day" => DAY,
        // 1970-01-01 was a Thursday; weeks start on the Monday after it.
        "week" => return Some((nanos - 4 * DAY).rem_euclid(7 * DAY) == 0),
        _ => return None,
    };
    Some(nanos.rem_euclid(size) == 0)
}

/// The value of a constant expression: a literal under casts (`CAST('2026-01-02' AS
/// TIMESTAMP)`, as type coercion leaves a string compared with a timestamp).
pub(super) fn constant(expr: &Expr) -> Option<ScalarValue> {
    match expr {
        Expr::Literal(value, _) => Some(value.clone()),
        Expr::Cast(cast) => constant(&cast.expr)?.cast_to(cast.field.data_type()).ok(),
        _ => None,
    }
}

/// A timestamp without a time zone or in UTC, as nanoseconds since the epoch.
fn utc_nanos(value: &ScalarValue) -> Option<i128> {
    let utc = |tz: &Option<std::sync::Arc<str>>| {
        tz.as_deref()
            .is_none_or(|z| matches!(z, "UTC" | "+00:00" | "Z"))
    };
    let (v, scale) = match value {
        ScalarValue::TimestampSecond(Some(v), tz) if utc(tz) => (*v, 1_000_000_000),
        ScalarValue::TimestampMillisecond(Some(v), tz) if utc(tz) => (*v, 1_000_000),
        ScalarValue::TimestampMicrosecond(Some(v), tz) if utc(tz) => (*v, 1_000),
        ScalarValue::TimestampNanosecond(Some(v), tz) if utc(tz) => (*v, 1),
        _ => return None,
    };
    Some(i128::from(v) * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finer_buckets_nest_in_coarser_ones_but_weeks_not_in_months() {
        assert!(nests("hour", "day"));
        assert!(nests("hour", "hour"));
        assert!(nests("day", "week"));
        assert!(nests("day", "month"));
        assert!(nests("month", "year"));
        assert!(!nests("day", "hour"));
        assert!(!nests("week", "month"));
        assert!(!nests("week", "year"));
        assert!(!nests("hour", "fortnight"));
    }

    #[test]
    fn bucket_boundaries() {
        const HOUR: i128 = 3_600_000_000_000;
        assert_eq!(aligned("hour", 5 * HOUR), Some(true));
        assert_eq!(aligned("hour", 5 * HOUR + 1_000), Some(false));
        assert_eq!(aligned("day", -24 * HOUR), Some(true));
        assert_eq!(aligned("day", 5 * HOUR), Some(false));
        // 1970-01-05 was a Monday.
        assert_eq!(aligned("week", 4 * 24 * HOUR), Some(true));
        assert_eq!(aligned("week", 0), Some(false));
        assert_eq!(aligned("month", 0), None);
    }

    #[test]
    fn constants_under_casts_are_evaluated() {
        use arrow::datatypes::{DataType, TimeUnit};
        let expr = Expr::Cast(datafusion::logical_expr::Cast::new(
            Box::new(Expr::Literal(
                ScalarValue::from("1970-01-01 01:00:00"),
                None,
            )),
            DataType::Timestamp(TimeUnit::Microsecond, None),
        ));
        let value = constant(&expr).expect("a constant");
        assert_eq!(utc_nanos(&value), Some(3_600_000_000_000));
        let zoned = ScalarValue::TimestampMicrosecond(Some(0), Some("+02:00".into()));
        assert_eq!(utc_nanos(&zoned), None);
    }
}
