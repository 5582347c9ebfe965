//! Finalizing a view's group states (avg = sum / count, sketch estimates …) into Arrow columns
//! of its output schema.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, BinaryBuilder, BooleanArray, Decimal128Array, Float64Array, Int64Array,
    RecordBatch, StringArray,
};
use arrow::compute::cast;
use arrow::datatypes::DataType;

use super::definition::{AggKind, AvgPart, CompiledView, OutputSource};
use super::key::{self, KeyKind, KeyValue, ValueRef};
use super::state::{self, AggState, StateRef};
use crate::error::{Error, Result};
use crate::sketch::{DistinctSet, Hll, Quantiles, TopK};

/// Builds a view's output rows (or the `projection` of them) from its stored `(key, state)`
/// entries, one entry at a time and without copying them: group values are decoded straight
/// into columns, and only the selected aggregates are decoded, sketches left serialized unless
/// an estimate is wanted.
pub(crate) struct Finalizer<'v> {
    view: &'v CompiledView,
    projection: Vec<usize>,
    kinds: Vec<KeyKind>,
    /// Per group column: its values, when projected.
    groups: Vec<Option<GroupColumn>>,
    /// Per aggregate: its states, when its value is projected.
    aggs: Vec<Option<AggColumn>>,
    /// Per aggregate: its serialized sketches, when `<column>_sketch` is projected.
    sketches: Vec<Option<BinaryBuilder>>,
    /// The projected percentile columns, each read from its aggregate's sketch.
    percentiles: Vec<PercentileColumn>,
    /// Per aggregate: the sums and counts of its averages, when `<column>_sum` or
    /// `<column>_count` is projected.
    avg_parts: Vec<Option<AvgParts>>,
    rows: usize,
    scratch: Vec<u8>,
    /// Whether a view without GROUP BY gets its one row even when nothing was pushed.
    default_row: bool,
}

/// The sums and counts of an average's states.
#[derive(Default)]
struct AvgParts {
    sums: Vec<Option<f64>>,
    counts: Vec<i64>,
}

impl AvgParts {
    fn push(&mut self, state: &StateRef<'_>) {
        let (sum, count) = match state {
            StateRef::Avg { sum, count } => (*sum, *count),
            _ => (0.0, 0),
        };
        // A sum over no values is NULL, as SQL's sum is.
        self.sums.push((count > 0).then_some(sum));
        self.counts.push(count);
    }

    /// One part as a column.
    fn column(&self, part: AvgPart) -> ArrayRef {
        match part {
            AvgPart::Sum => Arc::new(Float64Array::from(self.sums.clone())),
            AvgPart::Count => Arc::new(Int64Array::from(self.counts.clone())),
        }
    }
}

/// The values of one group column, built as entries arrive.
enum GroupColumn {
    /// Text and bytes, unescaped straight into the array's buffer.
    Bytes(BinaryBuilder),
    Values(Vec<KeyValue>),
}

impl GroupColumn {
    fn finish(self, kind: KeyKind, output: &DataType) -> Result<ArrayRef> {
        match self {
            GroupColumn::Values(values) => build(&values, kind, output),
            GroupColumn::Bytes(mut builder) => {
                let bytes = builder.finish();
                if matches!(
                    output,
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                ) {
                    let text = StringArray::try_from_binary(bytes).map_err(|e| {
                        Error::Corrupt(format!("view text value is not UTF-8: {e}"))
                    })?;
                    to_type(Arc::new(text), output)
                } else {
                    to_type(Arc::new(bytes), output)
                }
            }
        }
    }
}

/// The values of one projected percentile column, built as entries arrive.
struct PercentileColumn {
    /// The aggregate holding the sketch.
    agg: usize,
    p: f64,
    values: Vec<Option<f64>>,
}

/// The finalized values of one aggregate, built as entries arrive.
enum AggColumn {
    Empty,
    Int(Vec<i64>),
    OptInt(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Decimal(Vec<Option<i128>>),
    Values(Vec<KeyValue>),
    /// `approx_top_k(x, k)`: the JSON text of each group's top `k`.
    TopK(usize, Vec<String>),
    /// Sketches read as BYTEA (`topk_sketch`, `theta_sketch`).
    Bytes(BinaryBuilder),
}

impl AggColumn {
    /// The empty column of an aggregate of `kind`.
    fn of(kind: AggKind) -> AggColumn {
        match kind {
            AggKind::TopK(k) => AggColumn::TopK(k, Vec::new()),
            AggKind::TopKSketch | AggKind::Theta => AggColumn::Bytes(BinaryBuilder::new()),
            _ => AggColumn::Empty,
        }
    }

    fn push(&mut self, state: &StateRef<'_>, rows: usize) -> Result<()> {
        if let AggColumn::Empty = self {
            *self = match state {
                StateRef::Count(_) | StateRef::Hll(_) | StateRef::Distinct(_) => {
                    AggColumn::Int(Vec::with_capacity(rows))
                }
                StateRef::SumInt(_) => AggColumn::OptInt(Vec::with_capacity(rows)),
                StateRef::SumFloat(_) | StateRef::Avg { .. } | StateRef::Quantiles(_) => {
                    AggColumn::Float(Vec::with_capacity(rows))
                }
                StateRef::SumDecimal(_) => AggColumn::Decimal(Vec::with_capacity(rows)),
                StateRef::Min(_) | StateRef::Max(_) => AggColumn::Values(Vec::with_capacity(rows)),
                StateRef::TopK(_) | StateRef::Theta(_) => AggColumn::Bytes(BinaryBuilder::new()),
            };
        }
        match (self, state) {
            (AggColumn::Int(c), StateRef::Count(n)) => c.push(*n),
            (AggColumn::Int(c), StateRef::Hll(bytes)) => c.push(Hll::from_bytes(bytes)?.estimate()),
            (AggColumn::Int(c), StateRef::Distinct(bytes)) => {
                c.push(DistinctSet::from_bytes(bytes)?.count())
            }
            (AggColumn::OptInt(c), StateRef::SumInt(v)) => c.push(*v),
            (AggColumn::Float(c), StateRef::SumFloat(v)) => c.push(*v),
            (AggColumn::Float(c), StateRef::Avg { sum, count }) => {
                c.push((*count > 0).then(|| sum / *count as f64))
            }
            (AggColumn::Decimal(c), StateRef::SumDecimal(v)) => c.push(*v),
            (AggColumn::Values(c), StateRef::Min(v) | StateRef::Max(v)) => {
                c.push(v.clone().unwrap_or(KeyValue::Null))
            }
            (AggColumn::TopK(k, c), StateRef::TopK(bytes)) => {
                c.push(TopK::from_bytes(bytes)?.top_json(*k))
            }
            (AggColumn::Bytes(c), StateRef::TopK(bytes) | StateRef::Theta(bytes)) => {
                c.append_value(bytes)
            }
            (_, state) => {
                return Err(Error::Corrupt(format!(
                    "view states of different kinds in one column ({state:?})"
                )));
            }
        }
        Ok(())
    }

    fn finish(self, arg_kind: KeyKind, output: &DataType) -> Result<ArrayRef> {
        let array: ArrayRef = match self {
            AggColumn::Empty => return Ok(arrow::array::new_empty_array(output)),
            AggColumn::Int(v) => Arc::new(Int64Array::from(v)),
            AggColumn::OptInt(v) => Arc::new(Int64Array::from(v)),
            AggColumn::Float(v) => Arc::new(Float64Array::from(v)),
            AggColumn::Decimal(v) => return decimal(Decimal128Array::from(v), output),
            AggColumn::Values(v) => return build(&v, arg_kind, output),
            AggColumn::TopK(_, v) => Arc::new(StringArray::from(v)),
            AggColumn::Bytes(mut b) => Arc::new(b.finish()),
        };
        to_type(array, output)
    }
}

impl<'v> Finalizer<'v> {
    /// A finalizer of `view`'s output columns in `projection` (all when `None`).
    pub(crate) fn new(view: &'v CompiledView, projection: Option<&[usize]>) -> Finalizer<'v> {
        let projection: Vec<usize> =
            projection.map_or_else(|| (0..view.outputs.len()).collect(), <[usize]>::to_vec);
        let mut groups: Vec<Option<GroupColumn>> = view.groups.iter().map(|_| None).collect();
        let mut aggs: Vec<Option<AggColumn>> = view.aggs.iter().map(|_| None).collect();
        let mut sketches: Vec<Option<BinaryBuilder>> = view.aggs.iter().map(|_| None).collect();
        let mut percentiles = Vec::new();
        let mut avg_parts: Vec<Option<AvgParts>> = view.aggs.iter().map(|_| None).collect();
        for &i in &projection {
            match view.outputs[i] {
                OutputSource::Group(g) => {
                    groups[g] = Some(match view.groups[g].kind {
                        KeyKind::Bytes => GroupColumn::Bytes(BinaryBuilder::new()),
                        _ => GroupColumn::Values(Vec::new()),
                    })
                }
                OutputSource::Agg(a) => aggs[a] = Some(AggColumn::of(view.aggs[a].kind)),
                OutputSource::Sketch(a) => sketches[a] = Some(BinaryBuilder::new()),
                OutputSource::AvgPart { agg, .. } => {
                    avg_parts[agg].get_or_insert_with(AvgParts::default);
                }
                OutputSource::Percentile { agg, p } => percentiles.push(PercentileColumn {
                    agg,
                    p,
                    values: Vec::new(),
                }),
            }
        }
        Finalizer {
            view,
            projection,
            kinds: view.group_kinds(),
            groups,
            aggs,
            sketches,
            percentiles,
            avg_parts,
            rows: 0,
            scratch: Vec::new(),
            default_row: true,
        }
    }

    /// This finalizer without the implicit row of a view without GROUP BY (for pieces of a
    /// read, whose other pieces may hold it).
    pub(crate) fn without_default_row(mut self) -> Self {
        self.default_row = false;
        self
    }

    /// Rows pushed so far.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Adds one group: its key and encoded states.
    pub(crate) fn push(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let corrupt = || Error::Corrupt("malformed view group key".into());
        let parts = key::split(key, &self.kinds).ok_or_else(corrupt)?;
        for ((column, part), kind) in self.groups.iter_mut().zip(&parts).zip(&self.kinds) {
            let Some(column) = column else { continue };
            let value = key::decode_one(part, *kind, &mut self.scratch)?;
            match (column, value) {
                (GroupColumn::Bytes(b), ValueRef::Bytes(v)) => b.append_value(v),
                (GroupColumn::Bytes(b), _) => b.append_null(),
                (GroupColumn::Values(c), value) => c.push(value.to_value()),
            }
        }
        let mut states = 0;
        let rows = self.rows;
        let (aggs, sketches, percentiles, avg_parts) = (
            &mut self.aggs,
            &mut self.sketches,
            &mut self.percentiles,
            &mut self.avg_parts,
        );
        state::visit(value, |i, state| {
            states += 1;
            if let StateRef::Quantiles(bytes) = state
                && percentiles.iter().any(|c| c.agg == i)
            {
                // One decode for every percentile of this sketch.
                let mut sketch = Quantiles::from_bytes(bytes)?;
                for column in percentiles.iter_mut().filter(|c| c.agg == i) {
                    column.values.push(sketch.quantile(column.p)?);
                }
            }
            if let Some(Some(parts)) = avg_parts.get_mut(i) {
                parts.push(&state);
            }
            if let Some(Some(column)) = aggs.get_mut(i) {
                column.push(&state, rows)?;
            }
            if let Some(Some(builder)) = sketches.get_mut(i) {
                match state {
                    StateRef::Hll(bytes) | StateRef::Quantiles(bytes) | StateRef::TopK(bytes) => {
                        builder.append_value(bytes)
                    }
                    _ => builder.append_null(),
                }
            }
            Ok(())
        })?;
        if states != self.view.aggs.len()
            || self.percentiles.iter().any(|c| c.values.len() != rows + 1)
        {
            return Err(Error::Corrupt(format!(
                "view \"{}\" has states of another definition",
                self.view.def.name
            )));
        }
        self.rows += 1;
        Ok(())
    }

    /// The batch of every entry pushed.
    pub(crate) fn finish(mut self) -> Result<RecordBatch> {
        let view = self.view;
        if self.default_row && self.kinds.is_empty() && self.rows == 0 {
            // Without GROUP BY a view has exactly one row, even before any row matched.
            let initial: Vec<AggState> = view
                .aggs
                .iter()
                .map(|agg| super::maintain::initial_state(agg.kind, agg.arg_kind))
                .collect();
            self.push(&[], &state::encode(&initial))?;
        }
        let mut columns = Vec::with_capacity(self.projection.len());
        let mut next_percentile = 0;
        let mut finished_sketches: Vec<Option<ArrayRef>> = vec![None; view.aggs.len()];
        for &index in &self.projection {
            let array = match view.outputs[index] {
                OutputSource::Group(i) => self.groups[i]
                    .take()
                    .unwrap_or(GroupColumn::Values(Vec::new()))
                    .finish(view.groups[i].kind, &view.groups[i].output_type)?,
                OutputSource::Agg(i) => self.aggs[i]
                    .take()
                    .unwrap_or(AggColumn::Empty)
                    .finish(view.aggs[i].arg_kind, &view.aggs[i].output_type)?,
                OutputSource::Percentile { .. } => {
                    // Percentile columns were made in projection order.
                    let column = &mut self.percentiles[next_percentile];
                    next_percentile += 1;
                    to_type(
                        Arc::new(Float64Array::from(std::mem::take(&mut column.values))),
                        &view.schema.fields()[index].data_type().clone(),
                    )?
                }
                OutputSource::AvgPart { agg, part } => self.avg_parts[agg]
                    .as_ref()
                    .map_or_else(|| AvgParts::default().column(part), |p| p.column(part)),
                OutputSource::Sketch(i) => {
                    // Percentile columns of one argument share a sketch: finished once.
                    if let Some(done) = &finished_sketches[i] {
                        Arc::clone(done)
                    } else {
                        let array: ArrayRef =
                            Arc::new(self.sketches[i].as_mut().map_or_else(
                                || BinaryBuilder::new().finish(),
                                BinaryBuilder::finish,
                            ));
                        finished_sketches[i] = Some(Arc::clone(&array));
                        array
                    }
                }
            };
            columns.push(array);
        }
        let schema = view
            .schema
            .project(&self.projection)
            .map_err(|e| Error::arrow("reading a view", e))?;
        RecordBatch::try_new_with_options(
            Arc::new(schema),
            columns,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(self.rows)),
        )
        .map_err(|e| Error::arrow(format!("reading view \"{}\"", view.def.name), e))
    }
}

/// Builds an array of `output` type from canonical values of `kind`.
fn build(values: &[KeyValue], kind: KeyKind, output: &DataType) -> Result<ArrayRef> {
    let array: ArrayRef = match kind {
        KeyKind::Int => {
            let ints = Int64Array::from_iter(values.iter().map(|v| {
                if let KeyValue::Int(x) = v {
                    Some(*x)
                } else {
                    None
                }
            }));
            if matches!(output, DataType::Date32) {
                let narrow =
                    cast(&ints, &DataType::Int32).map_err(|e| Error::arrow("reading a view", e))?;
                return cast(&narrow, output).map_err(|e| Error::arrow("reading a view", e));
            }
            Arc::new(ints)
        }
        KeyKind::Float => Arc::new(Float64Array::from_iter(values.iter().map(|v| {
            if let KeyValue::Float(x) = v {
                Some(*x)
            } else {
                None
            }
        }))),
        KeyKind::Decimal => {
            let values = values.iter().map(|v| {
                if let KeyValue::Decimal(x) = v {
                    Some(*x)
                } else {
                    None
                }
            });
            return decimal(Decimal128Array::from_iter(values), output);
        }
        KeyKind::Bool => Arc::new(BooleanArray::from_iter(values.iter().map(|v| {
            if let KeyValue::Bool(x) = v {
                Some(*x)
            } else {
                None
            }
        }))),
        KeyKind::Bytes => {
            let bytes = values.iter().map(|v| {
                if let KeyValue::Bytes(x) = v {
                    Some(x.as_slice())
                } else {
                    None
                }
            });
            if matches!(
                output,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            ) {
                let texts = bytes
                    .map(|b| b.map(std::str::from_utf8).transpose())
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| Error::Corrupt(format!("view text value is not UTF-8: {e}")))?;
                Arc::new(StringArray::from(texts))
            } else {
                Arc::new(BinaryArray::from_iter(bytes))
            }
        }
    };
    to_type(array, output)
}

fn decimal(array: Decimal128Array, output: &DataType) -> Result<ArrayRef> {
    let DataType::Decimal128(p, s) = output else {
        return to_type(Arc::new(array), output);
    };
    Ok(Arc::new(
        array
            .with_precision_and_scale(*p, *s)
            .map_err(|e| Error::arrow("reading a view", e))?,
    ))
}

pub(crate) fn to_type(array: ArrayRef, output: &DataType) -> Result<ArrayRef> {
    if array.data_type() == output {
        return Ok(array);
    }
    cast(&array, output).map_err(|e| Error::arrow("reading a view", e))
}
