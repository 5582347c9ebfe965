//! The top-k and theta sketch functions, named like the `hll_*` family:
//!
//! - `approx_top_k(x, k)`: the `k` most frequent values of `x` with their estimated counts, as
//!   JSON text `[{"value": "/home", "count": 1234}, …]` (values as JSON strings, their text
//!   form; highest count first, equal counts by value);
//! - `topk_sketch(x)` → BYTEA, `topk_union_agg(sketch)` → BYTEA, `sketch_top_k(sketch, k)` →
//!   the JSON text `approx_top_k` gives;
//! - `theta_sketch(x)` → BYTEA, `theta_union_agg(sketch)` and `theta_intersect_agg(sketch)` →
//!   BYTEA, `theta_estimate(sketch)` → DOUBLE, `theta_intersect(a, b)` and
//!   `theta_a_not_b(a, b)` → BYTEA.
//!
//! Sketches are DataSketches' portable serialized forms ([`TopK`], [`Theta`]). A damaged
//! sketch given to these functions is an invalid argument (SQLSTATE 22023), never a panic.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, Float64Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{ScalarValue, exec_err, plan_err};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, ReturnFieldArgs,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::physical_expr::expressions::Literal;

use crate::error::{Error, Result, to_datafusion};
use crate::sketch::{Theta, TopK};
use crate::types::ColumnType;
use crate::views::column::Column;
use crate::views::definition::kind_of;

/// The aggregates of this module.
pub(super) fn aggregates() -> Vec<Arc<AggregateUDF>> {
    use SketchAgg::*;
    [
        ApproxTopK,
        TopKSketch,
        TopKUnion,
        ThetaSketch,
        ThetaUnion,
        ThetaIntersect,
    ]
    .into_iter()
    .map(|kind| Arc::new(AggregateUDF::from(SketchAggregate::new(kind))))
    .collect()
}

/// The scalar functions of this module.
pub(super) fn scalars() -> Vec<Arc<ScalarUDF>> {
    use SketchFn::*;
    [SketchTopK, ThetaEstimate, ThetaIntersect, ThetaANotB]
        .into_iter()
        .map(|kind| Arc::new(ScalarUDF::from(SketchScalar::new(kind))))
        .collect()
}

/// The `k` of `approx_top_k(x, k)` or `sketch_top_k(s, k)`: a positive integer.
pub(crate) fn top_k_limit(value: &ScalarValue) -> Result<usize> {
    let k = match value.cast_to(&DataType::Int64) {
        Ok(ScalarValue::Int64(Some(k))) if value.data_type().is_integer() => k,
        _ => {
            return Err(Error::InvalidArgument(format!(
                "the k of a top-k must be a positive integer, got {value}"
            )));
        }
    };
    if k <= 0 {
        return Err(Error::InvalidArgument(format!(
            "the k of a top-k must be a positive integer, got {k}"
        )));
    }
    Ok(usize::try_from(k).unwrap_or(usize::MAX))
}

/// A sketch given by the user that does not read is an invalid argument, not corruption.
fn given<T>(read: Result<T>) -> DfResult<T> {
    read.map_err(|e| match e {
        Error::Corrupt(why) => to_datafusion(Error::InvalidArgument(why)),
        other => to_datafusion(other),
    })
}

/// The JSON text field `approx_top_k` and `sketch_top_k` return.
fn json_field(name: &str) -> Field {
    ColumnType::Json.field(name, true)
}

fn is_binary_or_null(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::Null
    )
}

/// `array` as BYTEA values (`None` for an all-NULL argument).
fn binary(array: &ArrayRef) -> DfResult<Option<BinaryArray>> {
    if array.data_type() == &DataType::Null {
        return Ok(None);
    }
    Ok(Some(
        cast(array, &DataType::Binary)?.as_binary::<i32>().clone(),
    ))
}

/// Which aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SketchAgg {
    ApproxTopK,
    TopKSketch,
    TopKUnion,
    ThetaSketch,
    ThetaUnion,
    ThetaIntersect,
}

impl SketchAgg {
    fn name(self) -> &'static str {
        match self {
            SketchAgg::ApproxTopK => "approx_top_k",
            SketchAgg::TopKSketch => "topk_sketch",
            SketchAgg::TopKUnion => "topk_union_agg",
            SketchAgg::ThetaSketch => "theta_sketch",
            SketchAgg::ThetaUnion => "theta_union_agg",
            SketchAgg::ThetaIntersect => "theta_intersect_agg",
        }
    }

    /// Whether it reads BYTEA sketches (not values).
    fn reads_sketches(self) -> bool {
        matches!(
            self,
            SketchAgg::TopKUnion | SketchAgg::ThetaUnion | SketchAgg::ThetaIntersect
        )
    }

    fn is_top_k(self) -> bool {
        matches!(
            self,
            SketchAgg::ApproxTopK | SketchAgg::TopKSketch | SketchAgg::TopKUnion
        )
    }
}

/// One of the sketch aggregates.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SketchAggregate {
    kind: SketchAgg,
    signature: Signature,
}

impl SketchAggregate {
    fn new(kind: SketchAgg) -> Self {
        let arity = if kind == SketchAgg::ApproxTopK { 2 } else { 1 };
        SketchAggregate {
            kind,
            signature: Signature::any(arity, Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for SketchAggregate {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        let name = self.kind.name();
        let Some(t) = arg_types.first() else {
            return plan_err!("{name} takes an argument");
        };
        if self.kind.reads_sketches() {
            if !is_binary_or_null(t) {
                return plan_err!("{name}({t}) is not supported: it takes BYTEA sketches");
            }
        } else if kind_of(t).is_none() {
            return plan_err!("{name}({t}) is not supported");
        } else if self.kind.is_top_k() && is_binary_or_null(t) && t != &DataType::Null {
            // Items are text: bytes that are not UTF-8 have no text form.
            return plan_err!("{name}({t}) is not supported; count encode(x, 'hex') instead");
        }
        if self.kind == SketchAgg::ApproxTopK
            && let Some(k) = arg_types.get(1)
            && !k.is_integer()
        {
            return plan_err!("approx_top_k(x, k) takes an integer k, not {k}");
        }
        Ok(match self.kind {
            SketchAgg::ApproxTopK => DataType::Utf8,
            _ => DataType::Binary,
        })
    }

    fn return_field(&self, arg_fields: &[FieldRef]) -> DfResult<FieldRef> {
        let types: Vec<DataType> = arg_fields.iter().map(|f| f.data_type().clone()).collect();
        let data_type = self.return_type(&types)?;
        Ok(Arc::new(if self.kind == SketchAgg::ApproxTopK {
            json_field(self.name())
        } else {
            Field::new(self.name(), data_type, true)
        }))
    }

    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        let input_type = args
            .exprs
            .first()
            .map(|e| e.data_type(args.schema))
            .transpose()?
            .unwrap_or(DataType::Null);
        let k = if self.kind == SketchAgg::ApproxTopK {
            let literal = args.exprs.get(1).and_then(|e| e.downcast_ref::<Literal>());
            let Some(literal) = literal else {
                return exec_err!("approx_top_k(x, k) takes a constant k");
            };
            top_k_limit(literal.value()).map_err(to_datafusion)?
        } else {
            0
        };
        let state = if self.kind.is_top_k() {
            Sketch::TopK(TopK::new())
        } else if self.kind == SketchAgg::ThetaIntersect {
            Sketch::Intersection(None)
        } else {
            Sketch::Theta(Theta::new())
        };
        Ok(Box::new(SketchAccumulator {
            kind: self.kind,
            k,
            input_type,
            state,
            seen: false,
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[sketch]", args.name),
            DataType::Binary,
            true,
        ))])
    }

    fn default_value(&self, _data_type: &DataType) -> DfResult<ScalarValue> {
        Ok(match self.kind {
            SketchAgg::ApproxTopK => ScalarValue::Utf8(Some("[]".into())),
            _ => ScalarValue::Binary(None),
        })
    }
}

/// What an accumulator holds.
#[derive(Debug)]
enum Sketch {
    TopK(TopK),
    Theta(Theta),
    /// The intersection so far; `None` before the first sketch (the intersection of nothing).
    Intersection(Option<Theta>),
}

/// Accumulates one group's sketch.
#[derive(Debug)]
struct SketchAccumulator {
    kind: SketchAgg,
    k: usize,
    input_type: DataType,
    state: Sketch,
    /// Whether a sketch was merged (a union of no sketches is NULL).
    seen: bool,
}

impl SketchAccumulator {
    fn merge_sketches(&mut self, sketches: &ArrayRef) -> DfResult<()> {
        let Some(sketches) = binary(sketches)? else {
            return Ok(());
        };
        for bytes in sketches.iter().flatten() {
            self.seen = true;
            match &mut self.state {
                Sketch::TopK(s) => s
                    .merge(&given(TopK::from_bytes(bytes))?)
                    .map_err(to_datafusion)?,
                Sketch::Theta(s) => s.merge(&given(Theta::from_bytes(bytes))?),
                Sketch::Intersection(s) => {
                    let other = given(Theta::from_bytes(bytes))?;
                    *s = Some(match s.take() {
                        None => other,
                        Some(so_far) => {
                            Theta::intersect_all([&so_far, &other]).expect("two sketches intersect")
                        }
                    });
                }
            }
        }
        Ok(())
    }

    fn to_bytes(&self) -> Option<Vec<u8>> {
        match &self.state {
            Sketch::TopK(s) => Some(s.to_bytes()),
            Sketch::Theta(s) => Some(s.to_bytes()),
            Sketch::Intersection(s) => s.as_ref().map(Theta::to_bytes),
        }
    }
}

impl Accumulator for SketchAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let Some(array) = values.first() else {
            return Ok(());
        };
        if self.kind.reads_sketches() {
            return self.merge_sketches(array);
        }
        if array.data_type() == &DataType::Null {
            return Ok(());
        }
        match &mut self.state {
            Sketch::TopK(sketch) => {
                // Every kind of value is counted by its text form (see `TopK`).
                let text = cast(array, &DataType::Utf8)?;
                let text: &StringArray = text.as_string::<i32>();
                for value in text.iter().flatten() {
                    sketch.insert(value);
                }
            }
            Sketch::Theta(sketch) => {
                let Some(kind) = kind_of(&self.input_type) else {
                    return exec_err!("cannot hash values of type {}", self.input_type);
                };
                let column = Column::new(Arc::clone(array), kind).map_err(to_datafusion)?;
                for row in 0..array.len() {
                    if array.is_valid(row) {
                        sketch.insert(&column.get(row));
                    }
                }
            }
            Sketch::Intersection(_) => {}
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        match states.first() {
            Some(sketches) => self.merge_sketches(sketches),
            None => Ok(()),
        }
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        if self.kind.reads_sketches() && !self.seen {
            return Ok(vec![ScalarValue::Binary(None)]);
        }
        Ok(vec![ScalarValue::Binary(self.to_bytes())])
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        Ok(match (&self.state, self.kind) {
            (Sketch::TopK(s), SketchAgg::ApproxTopK) => ScalarValue::Utf8(Some(s.top_json(self.k))),
            _ if self.kind.reads_sketches() && !self.seen => ScalarValue::Binary(None),
            _ => ScalarValue::Binary(self.to_bytes()),
        })
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + match &self.state {
                Sketch::TopK(s) => s.memory_size(),
                Sketch::Theta(s) => s.memory_size(),
                Sketch::Intersection(s) => s.as_ref().map_or(0, Theta::memory_size),
            }
    }
}

/// Which scalar function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SketchFn {
    SketchTopK,
    ThetaEstimate,
    ThetaIntersect,
    ThetaANotB,
}

impl SketchFn {
    fn name(self) -> &'static str {
        match self {
            SketchFn::SketchTopK => "sketch_top_k",
            SketchFn::ThetaEstimate => "theta_estimate",
            SketchFn::ThetaIntersect => "theta_intersect",
            SketchFn::ThetaANotB => "theta_a_not_b",
        }
    }
}

/// One of the sketch scalar functions.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SketchScalar {
    kind: SketchFn,
    signature: Signature,
}

impl SketchScalar {
    fn new(kind: SketchFn) -> Self {
        let arity = if kind == SketchFn::ThetaEstimate {
            1
        } else {
            2
        };
        SketchScalar {
            kind,
            signature: Signature::any(arity, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for SketchScalar {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        let name = self.kind.name();
        let sketches = if self.kind == SketchFn::SketchTopK {
            &arg_types[..arg_types.len().min(1)]
        } else {
            arg_types
        };
        if let Some(t) = sketches.iter().find(|t| !is_binary_or_null(t)) {
            return plan_err!("{name} takes BYTEA sketches, not {t}");
        }
        if self.kind == SketchFn::SketchTopK
            && let Some(k) = arg_types.get(1)
            && !(k.is_integer() || k == &DataType::Null)
        {
            return plan_err!("sketch_top_k(sketch, k) takes an integer k, not {k}");
        }
        Ok(match self.kind {
            SketchFn::SketchTopK => DataType::Utf8,
            SketchFn::ThetaEstimate => DataType::Float64,
            SketchFn::ThetaIntersect | SketchFn::ThetaANotB => DataType::Binary,
        })
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let types: Vec<DataType> = args
            .arg_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let data_type = self.return_type(&types)?;
        Ok(Arc::new(if self.kind == SketchFn::SketchTopK {
            json_field(self.name())
        } else {
            Field::new(self.name(), data_type, true)
        }))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = args
            .args
            .into_iter()
            .map(|a| a.into_array(rows))
            .collect::<DfResult<Vec<ArrayRef>>>()?;
        let sketches = binary(&arrays[0])?;
        let sketch = |row: usize| {
            sketches
                .as_ref()
                .filter(|s| s.is_valid(row))
                .map(|s| s.value(row))
        };
        let array: ArrayRef = match self.kind {
            SketchFn::SketchTopK => {
                let ks = cast(&arrays[1], &DataType::Int64)?;
                let ks = ks.as_primitive::<arrow::datatypes::Int64Type>();
                let mut out = Vec::with_capacity(rows);
                for row in 0..rows {
                    let (Some(bytes), true) = (sketch(row), ks.is_valid(row)) else {
                        out.push(None);
                        continue;
                    };
                    let k = top_k_limit(&ScalarValue::Int64(Some(ks.value(row))))
                        .map_err(to_datafusion)?;
                    out.push(Some(given(TopK::from_bytes(bytes))?.top_json(k)));
                }
                Arc::new(StringArray::from(out))
            }
            SketchFn::ThetaEstimate => {
                let mut out = Vec::with_capacity(rows);
                for row in 0..rows {
                    out.push(
                        sketch(row)
                            .map(|b| given(Theta::from_bytes(b)).map(|t| t.estimate()))
                            .transpose()?,
                    );
                }
                Arc::new(Float64Array::from(out))
            }
            SketchFn::ThetaIntersect | SketchFn::ThetaANotB => {
                let others = binary(&arrays[1])?;
                let mut out: Vec<Option<Vec<u8>>> = Vec::with_capacity(rows);
                for row in 0..rows {
                    let other = others
                        .as_ref()
                        .filter(|s| s.is_valid(row))
                        .map(|s| s.value(row));
                    let (Some(a), Some(b)) = (sketch(row), other) else {
                        out.push(None);
                        continue;
                    };
                    let (a, b) = (given(Theta::from_bytes(a))?, given(Theta::from_bytes(b))?);
                    let result = if self.kind == SketchFn::ThetaIntersect {
                        Theta::intersect_all([&a, &b]).expect("two sketches intersect")
                    } else {
                        a.a_not_b(&b)
                    };
                    out.push(Some(result.to_bytes()));
                }
                Arc::new(BinaryArray::from_iter(out))
            }
        };
        Ok(ColumnarValue::Array(array))
    }
}
