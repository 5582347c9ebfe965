//! Percentile functions over t-digests ([`crate::sketch::Quantiles`]), the same sketch a view
//! keeps, so that an ad-hoc query and a view over the same rows answer alike:
//!
//! - `approx_percentile_cont(p) WITHIN GROUP (ORDER BY x)`, `approx_percentile_cont(x, p)` and
//!   `approx_percentile_cont(x, p, k)` (a t-digest of compression k), replacing DataFusion's;
//! - `approx_median(x)`, replacing DataFusion's;
//! - `quantile_sketch(x)` and `quantile_union_agg(sketch)`: the t-digest as BYTEA;
//! - `sketch_quantile(sketch, p)` and `sketch_rank(sketch, x)`: read one BYTEA sketch.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{ScalarValue, exec_err, plan_err};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Literal;

use crate::error::{Error, to_datafusion};
use crate::sketch::{Quantiles, check_fraction};

/// What one of the percentile aggregates reads and returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    /// `approx_percentile_cont`: values in, the percentile out.
    Percentile,
    /// `approx_median`: values in, the median out.
    Median,
    /// `quantile_sketch`: values in, the sketch out.
    Sketch,
    /// `quantile_union_agg`: sketches in, their union out.
    Union,
}

/// One of the percentile aggregates.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct QuantileAggregate {
    kind: Kind,
    signature: Signature,
}

impl QuantileAggregate {
    /// The aggregate of `kind`.
    pub(super) fn new(kind: Kind) -> Self {
        QuantileAggregate {
            kind,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for QuantileAggregate {
    fn name(&self) -> &str {
        match self.kind {
            Kind::Percentile => "approx_percentile_cont",
            Kind::Median => "approx_median",
            Kind::Sketch => "quantile_sketch",
            Kind::Union => "quantile_union_agg",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        let number = |t: &DataType, what: &str| {
            if t.is_numeric() || t.is_null() {
                Ok(DataType::Float64)
            } else {
                plan_err!("{}: {what} must be a number, got {t}", self.name())
            }
        };
        match (self.kind, arg_types) {
            (Kind::Percentile, [x, p]) => Ok(vec![number(x, "the value")?, number(p, "p")?]),
            (Kind::Percentile, [x, p, k]) if k.is_integer() || k.is_null() => Ok(vec![
                number(x, "the value")?,
                number(p, "p")?,
                DataType::Int64,
            ]),
            (Kind::Median | Kind::Sketch, [x]) => Ok(vec![number(x, "the value")?]),
            (
                Kind::Union,
                [
                    DataType::Binary
                    | DataType::Null
                    | DataType::LargeBinary
                    | DataType::BinaryView,
                ],
            ) => Ok(vec![DataType::Binary]),
            _ => plan_err!(
                "{} takes {}, got ({})",
                self.name(),
                match self.kind {
                    Kind::Percentile => "(x, p) or (x, p, k), or (p) WITHIN GROUP (ORDER BY x)",
                    Kind::Median | Kind::Sketch => "one number",
                    Kind::Union => "one BYTEA sketch",
                },
                arg_types
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(match self.kind {
            Kind::Percentile | Kind::Median => DataType::Float64,
            Kind::Sketch | Kind::Union => DataType::Binary,
        })
    }

    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        let p = match self.kind {
            Kind::Percentile => {
                let p = literal_f64(args.exprs.get(1), "p")?;
                check_fraction(p).map_err(to_datafusion)?;
                let descending = args.order_bys.first().is_some_and(|s| s.options.descending);
                if descending { 1.0 - p } else { p }
            }
            _ => 0.5,
        };
        let sketch = match args.exprs.get(2) {
            Some(k) if self.kind == Kind::Percentile => {
                let k = literal_f64(Some(k), "the t-digest size k")?;
                let k = u16::try_from(k as i64).map_err(|_| {
                    to_datafusion(Error::InvalidArgument(format!(
                        "the t-digest size k must be between 10 and 65535, got {k}"
                    )))
                })?;
                Quantiles::with_k(k).map_err(to_datafusion)?
            }
            _ => Quantiles::new(),
        };
        Ok(Box::new(QuantileAccumulator {
            sketch,
            kind: self.kind,
            p,
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[tdigest]", args.name),
            DataType::Binary,
            true,
        ))])
    }

    fn supports_within_group_clause(&self) -> bool {
        self.kind == Kind::Percentile
    }

    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        // WITHIN GROUP (ORDER BY x) names the value; the sketch does not need it sorted.
        AggregateOrderSensitivity::Insensitive
    }
}

/// The value of a literal argument, as a double.
fn literal_f64(expr: Option<&Arc<dyn PhysicalExpr>>, what: &str) -> DfResult<f64> {
    let value = expr
        .and_then(|e| e.downcast_ref::<Literal>())
        .and_then(|l| l.value().cast_to(&DataType::Float64).ok());
    match value {
        Some(ScalarValue::Float64(Some(v))) => Ok(v),
        _ => Err(to_datafusion(Error::InvalidArgument(format!(
            "{what} of approx_percentile_cont must be a constant number"
        )))),
    }
}

/// Accumulates one group's t-digest.
#[derive(Debug)]
struct QuantileAccumulator {
    sketch: Quantiles,
    kind: Kind,
    /// The fraction `Percentile` and `Median` return.
    p: f64,
}

impl QuantileAccumulator {
    fn union(&mut self, sketches: &ArrayRef) -> DfResult<()> {
        if sketches.data_type() == &DataType::Null {
            return Ok(());
        }
        let Some(binary) = sketches.as_binary_opt::<i32>() else {
            return exec_err!("expected BYTEA sketches, got {}", sketches.data_type());
        };
        let read = binary
            .iter()
            .flatten()
            .map(Quantiles::from_bytes)
            .collect::<crate::error::Result<Vec<_>>>()
            .map_err(to_datafusion)?;
        let all = std::iter::once(&self.sketch).chain(&read);
        self.sketch = Quantiles::union_all(all).map_err(to_datafusion)?;
        Ok(())
    }
}

impl Accumulator for QuantileAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let Some(array) = values.first() else {
            return Ok(());
        };
        if self.kind == Kind::Union {
            return self.union(array);
        }
        if array.data_type() == &DataType::Null {
            return Ok(());
        }
        let floats = cast(array, &DataType::Float64)?;
        let floats = floats.as_primitive::<Float64Type>();
        for v in floats.iter().flatten() {
            self.sketch.insert(v);
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        match states.first() {
            Some(sketches) => self.union(sketches),
            None => Ok(()),
        }
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Binary(Some(self.sketch.to_bytes()))])
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        Ok(match self.kind {
            Kind::Percentile | Kind::Median => {
                ScalarValue::Float64(self.sketch.quantile(self.p).map_err(to_datafusion)?)
            }
            Kind::Union if self.sketch.is_empty() => ScalarValue::Binary(None),
            Kind::Sketch | Kind::Union => ScalarValue::Binary(Some(self.sketch.to_bytes())),
        })
    }

    fn size(&self) -> usize {
        // About 2k centroids of 16 bytes once compressed, a buffer of as many values before.
        std::mem::size_of_val(self) + 64 * usize::from(crate::sketch::TDIGEST_K)
    }
}

/// What a sketch-reading scalar returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Read {
    /// `sketch_quantile(sketch, p)`: the value at rank p.
    Quantile,
    /// `sketch_rank(sketch, x)`: the fraction of values at or below x.
    Rank,
}

/// `sketch_quantile(sketch BYTEA, p DOUBLE)` and `sketch_rank(sketch BYTEA, x DOUBLE)`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct SketchRead {
    read: Read,
    signature: Signature,
}

impl SketchRead {
    /// The scalar of `read`.
    pub(super) fn new(read: Read) -> Self {
        SketchRead {
            read,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for SketchRead {
    fn name(&self) -> &str {
        match self.read {
            Read::Quantile => "sketch_quantile",
            Read::Rank => "sketch_rank",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        match arg_types {
            [s, x]
                if matches!(
                    s,
                    DataType::Binary
                        | DataType::LargeBinary
                        | DataType::BinaryView
                        | DataType::Null
                ) && (x.is_numeric() || x.is_null()) =>
            {
                Ok(vec![DataType::Binary, DataType::Float64])
            }
            _ => plan_err!(
                "{} takes (sketch BYTEA, {} DOUBLE PRECISION)",
                self.name(),
                match self.read {
                    Read::Quantile => "p",
                    Read::Rank => "x",
                }
            ),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let [sketches, numbers] = args.args.as_slice() else {
            return exec_err!("{} takes two arguments", self.name());
        };
        let sketches = sketches.to_array(rows)?;
        let numbers = cast(&numbers.to_array(rows)?, &DataType::Float64)?;
        if sketches.data_type() == &DataType::Null {
            return Ok(ColumnarValue::Array(Arc::new(Float64Array::new_null(rows))));
        }
        let sketches = cast(&sketches, &DataType::Binary)?;
        let (sketches, numbers) = (
            sketches.as_binary::<i32>(),
            numbers.as_primitive::<Float64Type>(),
        );
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            if sketches.is_null(row) || numbers.is_null(row) {
                out.push(None);
                continue;
            }
            let mut sketch = Quantiles::from_bytes(sketches.value(row)).map_err(to_datafusion)?;
            let x = numbers.value(row);
            out.push(match self.read {
                Read::Quantile => sketch.quantile(x).map_err(to_datafusion)?,
                Read::Rank => sketch.rank(x),
            });
        }
        Ok(ColumnarValue::Array(Arc::new(Float64Array::from(out))))
    }
}
