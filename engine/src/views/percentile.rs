//! Percentile aggregates in view definitions: `approx_percentile_cont(p) WITHIN GROUP (ORDER
//! BY x)`, `approx_percentile_cont(x, p)` and `approx_median(x)` are read here into the
//! argument and fraction they ask for, so that every percentile of one argument shares one
//! t-digest state; the exact `percentile_cont` and `median` are refused with a hint.

use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::{Expr, ExprSchemable};

use super::definition::{check_deterministic, unalias};
use crate::error::{Error, Result};

/// One percentile a view column asks for.
#[derive(Debug)]
pub(crate) struct Percentile {
    /// The value whose distribution is sketched.
    pub arg: Expr,
    /// `FILTER (WHERE …)`.
    pub filter: Option<Expr>,
    /// The fraction, in [0, 1] (`1 - p` for `WITHIN GROUP (ORDER BY x DESC)`).
    pub p: f64,
}

/// The percentile that `expr` computes, `None` when it is another aggregate; an error for a
/// percentile a view cannot maintain.
pub(crate) fn of(expr: &Expr, input_schema: &DFSchema) -> Result<Option<Percentile>> {
    let Expr::AggregateFunction(function) = unalias(expr) else {
        return Ok(None);
    };
    let name = function.func.name().to_lowercase();
    let params = &function.params;
    match name.as_str() {
        "approx_percentile_cont" | "approx_median" => {}
        "percentile_cont" | "quantile_cont" => {
            return Err(Error::NotSupported(
                "percentile_cont is exact: it needs every value of a group, so a materialized view cannot maintain it; use approx_percentile_cont(p) WITHIN GROUP (ORDER BY x), which keeps a t-digest per group (rank error under 1%)".into(),
            ));
        }
        "median" => {
            return Err(Error::NotSupported(
                "median is exact: it needs every value of a group, so a materialized view cannot maintain it; use approx_median(x), which keeps a t-digest per group (rank error under 1%)".into(),
            ));
        }
        _ => return Ok(None),
    }
    if params.distinct {
        return Err(Error::NotSupported(format!(
            "{name}(DISTINCT …) cannot be maintained incrementally"
        )));
    }
    let (arg, p) = match (name.as_str(), params.args.as_slice()) {
        ("approx_median", [arg]) => (arg, 0.5),
        ("approx_percentile_cont", [arg, p]) => (arg, fraction(p)?),
        ("approx_percentile_cont", [_, _, _]) => {
            return Err(Error::NotSupported(format!(
                "{name} with a t-digest size cannot be maintained: a view keeps t-digests of k = {}; drop the third argument",
                crate::sketch::TDIGEST_K
            )));
        }
        (_, args) => {
            return Err(Error::NotSupported(format!(
                "{name} with {} arguments cannot be maintained",
                args.len()
            )));
        }
    };
    let descending = match params.order_by.as_slice() {
        [] => false,
        [sort] if unalias(&sort.expr) == unalias(arg) => !sort.asc,
        _ => {
            return Err(Error::NotSupported(format!(
                "{name}(… ORDER BY …) cannot be maintained incrementally unless it orders by its argument"
            )));
        }
    };
    check_deterministic(arg)?;
    let arg_type = arg.get_type(input_schema).map_err(Error::Query)?;
    if !arg_type.is_numeric() && !arg_type.is_null() {
        return Err(Error::NotSupported(format!(
            "{name} of {arg_type} is not supported in materialized views; percentiles take numbers"
        )));
    }
    let filter = params
        .filter
        .as_deref()
        .map(|f| check_deterministic(f).map(|()| f.clone()))
        .transpose()?;
    Ok(Some(Percentile {
        arg: unalias(arg).clone(),
        filter,
        p: if descending { 1.0 - p } else { p },
    }))
}

/// The fraction a percentile's second argument gives: a number literal in [0, 1].
fn fraction(expr: &Expr) -> Result<f64> {
    let literal = match unalias(expr) {
        Expr::Literal(value, _) => Some(value.clone()),
        Expr::Cast(cast) => match unalias(&cast.expr) {
            Expr::Literal(value, _) => Some(value.clone()),
            _ => None,
        },
        _ => None,
    };
    let p = literal
        .and_then(|v| v.cast_to(&arrow::datatypes::DataType::Float64).ok())
        .and_then(|v| match v {
            ScalarValue::Float64(p) => p,
            _ => None,
        })
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "the percentile of approx_percentile_cont must be a number between 0 and 1, got {expr}"
            ))
        })?;
    crate::sketch::check_fraction(p)?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema};

    use crate::views::definition::{AggKind, OutputSource, compile_for_tests};

    /// p50, p95 and p99 of one argument (in either syntax, and the median) keep one sketch; a
    /// percentile of another argument or under another filter keeps its own.
    #[test]
    fn percentiles_of_one_argument_share_one_state() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("x", DataType::Float64, true),
            Field::new("y", DataType::Int64, true),
        ]));
        let view = compile_for_tests(
            "SELECT k, approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY x) AS p50, \
             approx_percentile_cont(x, 0.95) AS p95, count(*) AS n, \
             approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY x DESC) AS p01, \
             approx_median(x) AS m, approx_median(y) AS my, \
             approx_median(x) FILTER (WHERE y > 0) AS mf FROM t GROUP BY k",
            &schema,
            1,
        );
        let kinds: Vec<AggKind> = view.aggs.iter().map(|a| a.kind).collect();
        assert_eq!(
            kinds,
            [
                AggKind::Quantiles,
                AggKind::Count,
                AggKind::Quantiles,
                AggKind::Quantiles
            ]
        );
        let percentiles: Vec<(usize, f64)> = view
            .outputs
            .iter()
            .filter_map(|o| match o {
                OutputSource::Percentile { agg, p } => Some((*agg, (p * 100.0).round())),
                _ => None,
            })
            .collect();
        assert_eq!(
            percentiles,
            [
                (0, 50.0),
                (0, 95.0),
                (0, 1.0),
                (0, 50.0),
                (2, 50.0),
                (3, 50.0)
            ]
        );
        let names: Vec<&str> = view
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(
            names,
            [
                "k",
                "p50",
                "p95",
                "n",
                "p01",
                "m",
                "my",
                "mf",
                "p50_sketch",
                "p95_sketch",
                "p01_sketch",
                "m_sketch",
                "my_sketch",
                "mf_sketch"
            ]
        );
    }
}
