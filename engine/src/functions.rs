//! SQL functions Tally adds to DataFusion, so that ad-hoc queries and materialized views share
//! one implementation:
//!
//! - `approx_count_distinct(x)` (also `approx_distinct`): the HyperLogLog estimate of the number
//!   of distinct non-null values, as BIGINT — the same estimate a view's column gives;
//! - `hll_sketch(x)`: the HyperLogLog sketch of the values, as BYTEA;
//! - `hll_union_agg(sketch)`: the union of BYTEA sketches, as BYTEA (like PostgreSQL's `hll`);
//! - `hll_cardinality(sketch)`: the estimate of one BYTEA sketch, as BIGINT;
//! - `approx_percentile_cont`, `approx_median`, `quantile_sketch`, `quantile_union_agg`,
//!   `sketch_quantile` and `sketch_rank` over t-digests (see [`quantiles`]);
//! - the top-k (`approx_top_k`, `topk_sketch`, `topk_union_agg`, `sketch_top_k`) and theta
//!   (`theta_sketch`, `theta_union_agg`, `theta_intersect_agg`, `theta_estimate`,
//!   `theta_intersect`, `theta_a_not_b`) sketch families (see [`sketches`]);
//! - `length(bytea)` and `octet_length(bytea)`: the number of bytes (see [`bytea`]);
//! - `uuid_in(text)`, `uuid_out(uuid)` (see [`uuid`]) and the JSON accessors behind `->`,
//!   `->>`, `#>`, `#>>` and `json_extract_path_text` (see [`json`]);
//! - the types `UUID`, `JSON` and `JSONB` in casts, and text read as those types where
//!   PostgreSQL reads an untyped literal so (see [`types`]).

mod bytea;
mod json;
mod quantiles;
pub(crate) mod sketches;
mod types;
mod uuid;

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, Int64Array};
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{ScalarValue, exec_err, plan_err};
use datafusion::error::Result as DfResult;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, TypeSignature, Volatility,
};

use crate::error::to_datafusion;
use crate::sketch::Hll;
use crate::views::column::Column;
use crate::views::definition::kind_of;

/// Registers Tally's functions on a session being built (replacing DataFusion's own
/// `approx_distinct`, whose hash is not stable across versions, and its t-digest percentiles,
/// whose state no view can keep).
pub(crate) fn register(builder: &mut SessionStateBuilder) {
    let aggregates = builder.aggregate_functions().get_or_insert_with(Vec::new);
    aggregates.retain(|f| {
        !matches!(
            f.name(),
            "approx_distinct" | "approx_percentile_cont" | "approx_median"
        )
    });
    for kind in [
        quantiles::Kind::Percentile,
        quantiles::Kind::Median,
        quantiles::Kind::Sketch,
        quantiles::Kind::Union,
    ] {
        aggregates.push(Arc::new(AggregateUDF::from(
            quantiles::QuantileAggregate::new(kind),
        )));
    }
    aggregates.push(Arc::new(AggregateUDF::from(HllAggregate::new(
        "approx_distinct",
        &["approx_count_distinct"],
        Input::Values,
        Output::Estimate,
    ))));
    aggregates.push(Arc::new(AggregateUDF::from(HllAggregate::new(
        "hll_sketch",
        &[],
        Input::Values,
        Output::Sketch,
    ))));
    aggregates.push(Arc::new(AggregateUDF::from(HllAggregate::new(
        "hll_union_agg",
        &[],
        Input::Sketches,
        Output::Sketch,
    ))));
    aggregates.extend(sketches::aggregates());
    let scalars = builder.scalar_functions().get_or_insert_with(Vec::new);
    scalars.extend(sketches::scalars());
    scalars.push(Arc::new(ScalarUDF::from(HllCardinality::new())));
    scalars.push(Arc::new(ScalarUDF::from(quantiles::SketchRead::new(
        quantiles::Read::Quantile,
    ))));
    scalars.push(Arc::new(ScalarUDF::from(quantiles::SketchRead::new(
        quantiles::Read::Rank,
    ))));
    scalars.push(Arc::new(ScalarUDF::from(bytea::ByteLength::length())));
    scalars.push(Arc::new(ScalarUDF::from(bytea::ByteLength::octet_length())));
    let mut typed = json::functions();
    typed.push(Arc::new(ScalarUDF::from(uuid::UuidIn::new())));
    typed.push(Arc::new(ScalarUDF::from(uuid::UuidOut::new())));
    scalars.extend(typed.iter().cloned());
    // The JSON operators come before DataFusion's planners, which would refuse them.
    let planners = builder.expr_planners().get_or_insert_with(Vec::new);
    planners.insert(0, Arc::new(json::JsonOperators::new(&typed)));
    *builder.type_planner() = Some(Arc::new(types::TallyTypes));
    let mut analyzer = builder.analyzer().take().unwrap_or_default();
    analyzer.add_function_rewrite(Arc::new(types::TypedText::new(&typed)));
    *builder.analyzer() = Some(analyzer);
}

/// What an HLL aggregate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Input {
    /// Values to hash.
    Values,
    /// Serialized sketches to union.
    Sketches,
}

/// What an HLL aggregate returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Output {
    /// The estimate, as BIGINT.
    Estimate,
    /// The sketch, as BYTEA.
    Sketch,
}

/// One of the HLL aggregates.
#[derive(Debug, PartialEq, Eq, Hash)]
struct HllAggregate {
    name: &'static str,
    aliases: Vec<String>,
    input: Input,
    output: Output,
    signature: Signature,
}

impl HllAggregate {
    fn new(name: &'static str, aliases: &[&str], input: Input, output: Output) -> Self {
        let signature = match input {
            Input::Values => Signature::any(1, Volatility::Immutable),
            Input::Sketches => Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Binary]),
                    TypeSignature::Exact(vec![DataType::Null]),
                ],
                Volatility::Immutable,
            ),
        };
        HllAggregate {
            name,
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            input,
            output,
            signature,
        }
    }
}

impl AggregateUDFImpl for HllAggregate {
    fn name(&self) -> &str {
        self.name
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        if self.input == Input::Values
            && let Some(t) = arg_types.first()
            && kind_of(t).is_none()
        {
            return plan_err!("{}({t}) is not supported", self.name);
        }
        Ok(match self.output {
            Output::Estimate => DataType::Int64,
            Output::Sketch => DataType::Binary,
        })
    }

    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        let input_type = args
            .exprs
            .first()
            .map(|e| e.data_type(args.schema))
            .transpose()?
            .unwrap_or(DataType::Null);
        Ok(Box::new(HllAccumulator {
            hll: Hll::new(),
            input: self.input,
            output: self.output,
            input_type,
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[hll]", args.name),
            DataType::Binary,
            true,
        ))])
    }

    fn default_value(&self, _data_type: &DataType) -> DfResult<ScalarValue> {
        Ok(match self.output {
            Output::Estimate => ScalarValue::Int64(Some(0)),
            Output::Sketch => ScalarValue::Binary(None),
        })
    }
}

/// Accumulates one group's sketch.
#[derive(Debug)]
struct HllAccumulator {
    hll: Hll,
    input: Input,
    output: Output,
    input_type: DataType,
}

impl HllAccumulator {
    fn union(&mut self, sketches: &ArrayRef) -> DfResult<()> {
        if sketches.data_type() == &DataType::Null {
            return Ok(());
        }
        let Some(binary) = sketches.as_binary_opt::<i32>() else {
            return exec_err!("expected BYTEA sketches, got {}", sketches.data_type());
        };
        for sketch in binary.iter().flatten() {
            self.hll
                .merge(&Hll::from_bytes(sketch).map_err(to_datafusion)?);
        }
        Ok(())
    }
}

impl Accumulator for HllAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let Some(array) = values.first() else {
            return Ok(());
        };
        if self.input == Input::Sketches {
            return self.union(array);
        }
        let Some(kind) = kind_of(&self.input_type) else {
            return exec_err!("cannot hash values of type {}", self.input_type);
        };
        let column = Column::new(Arc::clone(array), kind).map_err(to_datafusion)?;
        for row in 0..array.len() {
            if array.is_valid(row) {
                self.hll.insert(&column.get(row));
            }
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
        Ok(vec![ScalarValue::Binary(Some(self.hll.to_bytes()))])
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        Ok(match self.output {
            Output::Estimate => ScalarValue::Int64(Some(self.hll.estimate())),
            Output::Sketch if self.hll.is_empty() && self.input == Input::Sketches => {
                ScalarValue::Binary(None)
            }
            Output::Sketch => ScalarValue::Binary(Some(self.hll.to_bytes())),
        })
    }

    fn size(&self) -> usize {
        // A dense sketch holds one byte per register while it is being updated.
        std::mem::size_of_val(self) + (1 << crate::sketch::HLL_LG_K)
    }
}

/// `hll_cardinality(sketch BYTEA) -> BIGINT`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct HllCardinality {
    signature: Signature,
}

impl HllCardinality {
    fn new() -> Self {
        HllCardinality {
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Binary]),
                    TypeSignature::Exact(vec![DataType::Null]),
                ],
                Volatility::Immutable,
            ),
        }
    }
}

impl ScalarUDFImpl for HllCardinality {
    fn name(&self) -> &str {
        "hll_cardinality"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let Some(arg) = args.args.into_iter().next() else {
            return exec_err!("hll_cardinality takes one argument");
        };
        let array = arg.into_array(rows)?;
        if array.data_type() == &DataType::Null {
            return Ok(ColumnarValue::Array(Arc::new(Int64Array::new_null(rows))));
        }
        let sketches: &BinaryArray = array.as_binary_opt::<i32>().ok_or_else(|| {
            datafusion::error::DataFusionError::Execution("expected BYTEA".into())
        })?;
        let estimates = sketches
            .iter()
            .map(|s| {
                s.map(|bytes| Hll::from_bytes(bytes).map(|h| h.estimate()))
                    .transpose()
            })
            .collect::<crate::error::Result<Int64Array>>()
            .map_err(to_datafusion)?;
        Ok(ColumnarValue::Array(Arc::new(estimates)))
    }
}

/// The function named `name` among Tally's registered `functions`. Planners and rewrites hold
/// their functions this way, built from the one list that is registered; a missing name is a
/// bug in that list, not a user error.
fn registered(functions: &[Arc<ScalarUDF>], name: &str) -> Arc<ScalarUDF> {
    let found = functions.iter().find(|f| f.name() == name);
    Arc::clone(found.unwrap_or_else(|| panic!("Tally registers no function {name}")))
}
