//! Per-batch maintenance: evaluate a view's filter, group keys and aggregate arguments on an
//! Arrow batch and pre-aggregate it into one partial state per group (a commit's delta part).

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Decimal128Array, Float64Array, Int64Array,
    RecordBatch, StringArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Decimal128Type, Float64Type, Int64Type};
use datafusion::common::HashMap;
use datafusion::physical_expr::PhysicalExpr;

use super::definition::{AggKind, CompiledView};
use super::key::{KeyKind, KeyValue, encode_bytes, encode_value};
use super::part::{DeltaPart, Groups};
use super::state::AggState;
use crate::error::{Error, Result};
use crate::sketch::{DistinctSet, Hll};

/// The delta part that `batches` contribute to `view` (its id is assigned at commit).
pub(crate) fn delta_part<'b>(
    view: &CompiledView,
    batches: impl IntoIterator<Item = &'b RecordBatch>,
) -> Result<DeltaPart> {
    let mut groups = Groups::default();
    for batch in batches {
        accumulate(view, batch, &mut groups)?;
    }
    Ok(DeltaPart::from_groups(groups))
}

/// Partial states of `batch` per group key (without the view prefix), merged into `into`.
pub(crate) fn accumulate(
    view: &CompiledView,
    batch: &RecordBatch,
    into: &mut Groups,
) -> Result<()> {
    let groups = partial_states(view, batch)?;
    if into.is_empty() {
        *into = groups;
        return Ok(());
    }
    for (key, states) in groups {
        match into.get_mut(&key) {
            Some(existing) => {
                for (a, b) in existing.iter_mut().zip(&states) {
                    a.merge(b)?;
                }
            }
            None => {
                into.insert(key, states);
            }
        }
    }
    Ok(())
}

/// Pre-aggregates `batch` into one partial state per group key (without the view prefix).
///
/// Two passes: rows are first assigned group numbers (encoding each row's key once), then each
/// aggregate updates its per-group states in a loop over its argument column.
fn partial_states(
    view: &CompiledView,
    batch: &RecordBatch,
) -> Result<HashMap<Vec<u8>, Vec<AggState>>> {
    let rows = batch.num_rows();
    if rows == 0 {
        return Ok(HashMap::new());
    }
    let selected = match &view.filter {
        Some(f) => Some(evaluate_mask(f, batch)?),
        None => None,
    };
    let groups: Vec<Column> = view
        .groups
        .iter()
        .map(|g| Column::new(evaluate(&g.expr, batch)?, g.kind))
        .collect::<Result<_>>()?;

    const SKIPPED: u32 = u32::MAX;
    let mut numbers: HashMap<Vec<u8>, u32> = HashMap::new();
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut group_of_row: Vec<u32> = Vec::with_capacity(rows);
    let mut key = Vec::with_capacity(32);
    for row in 0..rows {
        if let Some(mask) = &selected
            && !passes(mask, row)
        {
            group_of_row.push(SKIPPED);
            continue;
        }
        key.clear();
        for g in &groups {
            g.encode_key(row, &mut key);
        }
        let number = match numbers.get(key.as_slice()) {
            Some(&n) => n,
            None => {
                let n = keys.len() as u32;
                numbers.insert(key.clone(), n);
                keys.push(key.clone());
                n
            }
        };
        group_of_row.push(number);
    }

    let mut states_by_agg: Vec<Vec<AggState>> = Vec::with_capacity(view.aggs.len());
    for agg in &view.aggs {
        let arg = Column::new(evaluate(&agg.arg, batch)?, agg.arg_kind)?;
        let mask = agg
            .filter
            .as_ref()
            .map(|f| evaluate_mask(f, batch))
            .transpose()?;
        let mut states = vec![initial_state(agg.kind, agg.arg_kind); keys.len()];
        for (row, &group) in group_of_row.iter().enumerate() {
            if group == SKIPPED {
                continue;
            }
            if let Some(mask) = &mask
                && !passes(mask, row)
            {
                continue;
            }
            let state = &mut states[group as usize];
            match (state, &arg) {
                // Text and bytes are hashed in place, without copying the value.
                (AggState::Hll(hll), Column::Text(a)) if a.is_valid(row) => {
                    hll.insert_bytes(a.value(row).as_bytes())
                }
                (AggState::Hll(hll), Column::Bytes(a)) if a.is_valid(row) => {
                    hll.insert_bytes(a.value(row))
                }
                (state, arg) => update(state, agg.kind, arg.get(row)),
            }
        }
        states_by_agg.push(states);
    }

    let mut by_group: HashMap<Vec<u8>, Vec<AggState>> = HashMap::with_capacity(keys.len());
    let mut columns: Vec<std::vec::IntoIter<AggState>> =
        states_by_agg.into_iter().map(Vec::into_iter).collect();
    for key in keys {
        let states = columns
            .iter_mut()
            .map(|c| c.next().expect("one state per group"))
            .collect();
        by_group.insert(key, states);
    }
    Ok(by_group)
}

fn passes(mask: &BooleanArray, row: usize) -> bool {
    mask.is_valid(row) && mask.value(row)
}

fn evaluate(expr: &std::sync::Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> Result<ArrayRef> {
    expr.evaluate(batch)
        .and_then(|v| v.into_array(batch.num_rows()))
        .map_err(Error::Query)
}

fn evaluate_mask(
    expr: &std::sync::Arc<dyn PhysicalExpr>,
    batch: &RecordBatch,
) -> Result<BooleanArray> {
    let array = evaluate(expr, batch)?;
    array.as_boolean_opt().cloned().ok_or_else(|| {
        Error::InvalidDefinition(format!(
            "view filter returned {}, not boolean",
            array.data_type()
        ))
    })
}

/// The empty state of an aggregate.
pub(crate) fn initial_state(kind: AggKind, arg: KeyKind) -> AggState {
    match kind {
        AggKind::Count => AggState::Count(0),
        AggKind::Sum => match arg {
            KeyKind::Float => AggState::SumFloat(None),
            KeyKind::Decimal => AggState::SumDecimal(None),
            _ => AggState::SumInt(None),
        },
        AggKind::Min => AggState::Min(None),
        AggKind::Max => AggState::Max(None),
        AggKind::Avg => AggState::Avg { sum: 0.0, count: 0 },
        AggKind::ApproxDistinct => AggState::Hll(Hll::new()),
        AggKind::CountDistinct => AggState::Distinct(DistinctSet::default()),
    }
}

fn update(state: &mut AggState, kind: AggKind, value: KeyValue) {
    if value == KeyValue::Null {
        return;
    }
    match (state, kind) {
        (AggState::Count(n), _) => *n += 1,
        (AggState::SumInt(s), _) => {
            if let KeyValue::Int(v) = value {
                *s = Some(s.unwrap_or(0).wrapping_add(v));
            }
        }
        (AggState::SumFloat(s), _) => {
            if let KeyValue::Float(v) = value {
                *s = Some(s.unwrap_or(0.0) + v);
            }
        }
        (AggState::SumDecimal(s), _) => {
            if let KeyValue::Decimal(v) = value {
                *s = Some(s.unwrap_or(0).wrapping_add(v));
            }
        }
        (state @ (AggState::Min(_) | AggState::Max(_)), _) => {
            let delta = match state {
                AggState::Min(_) => AggState::Min(Some(value)),
                _ => AggState::Max(Some(value)),
            };
            state.merge(&delta).expect("same kind of state");
        }
        (AggState::Avg { sum, count }, _) => {
            let v = match value {
                KeyValue::Int(v) => v as f64,
                KeyValue::Float(v) => v,
                _ => return,
            };
            *sum += v;
            *count += 1;
        }
        (AggState::Hll(hll), _) => hll.insert(&value),
        (AggState::Distinct(set), _) => set.insert(&value),
    }
}

/// A column of group values or aggregate arguments in its canonical representation.
pub(crate) enum Column {
    Int(Int64Array),
    Float(Float64Array),
    Decimal(Decimal128Array),
    Bool(BooleanArray),
    Text(StringArray),
    Bytes(BinaryArray),
    Null,
}

impl Column {
    /// Casts `array` to the canonical representation of `kind`.
    pub(crate) fn new(array: ArrayRef, kind: KeyKind) -> Result<Column> {
        if array.data_type() == &DataType::Null {
            return Ok(Column::Null);
        }
        let canon =
            |to: &DataType| cast(&array, to).map_err(|e| Error::arrow("evaluating a view", e));
        Ok(match kind {
            KeyKind::Int => {
                let ints = match array.data_type() {
                    DataType::Date32 => canon(&DataType::Int32).and_then(|a| {
                        cast(&a, &DataType::Int64).map_err(|e| Error::arrow("evaluating a view", e))
                    })?,
                    _ => canon(&DataType::Int64)?,
                };
                Column::Int(ints.as_primitive::<Int64Type>().clone())
            }
            KeyKind::Float => Column::Float(
                canon(&DataType::Float64)?
                    .as_primitive::<Float64Type>()
                    .clone(),
            ),
            KeyKind::Decimal => Column::Decimal(array.as_primitive::<Decimal128Type>().clone()),
            KeyKind::Bool => Column::Bool(array.as_boolean().clone()),
            KeyKind::Bytes => match array.data_type() {
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                    Column::Text(canon(&DataType::Utf8)?.as_string::<i32>().clone())
                }
                _ => Column::Bytes(canon(&DataType::Binary)?.as_binary::<i32>().clone()),
            },
        })
    }

    /// Appends the memcomparable encoding of row `i`'s value to a group key (as
    /// [`encode_value`] of [`Column::get`] would, without copying text).
    fn encode_key(&self, i: usize, key: &mut Vec<u8>) {
        match self {
            Column::Text(a) if a.is_valid(i) => encode_bytes(key, a.value(i).as_bytes()),
            Column::Bytes(a) if a.is_valid(i) => encode_bytes(key, a.value(i)),
            other => encode_value(key, &other.get(i)),
        }
    }

    /// The value at row `i`.
    pub(crate) fn get(&self, i: usize) -> KeyValue {
        match self {
            Column::Null => KeyValue::Null,
            Column::Int(a) => {
                if a.is_null(i) {
                    KeyValue::Null
                } else {
                    KeyValue::Int(a.value(i))
                }
            }
            Column::Float(a) => {
                if a.is_null(i) {
                    KeyValue::Null
                } else {
                    KeyValue::Float(a.value(i))
                }
            }
            Column::Decimal(a) => {
                if a.is_null(i) {
                    KeyValue::Null
                } else {
                    KeyValue::Decimal(a.value(i))
                }
            }
            Column::Bool(a) => {
                if a.is_null(i) {
                    KeyValue::Null
                } else {
                    KeyValue::Bool(a.value(i))
                }
            }
            Column::Text(a) => {
                if a.is_null(i) {
                    KeyValue::Null
                } else {
                    KeyValue::Bytes(a.value(i).as_bytes().to_vec())
                }
            }
            Column::Bytes(a) => {
                if a.is_null(i) {
                    KeyValue::Null
                } else {
                    KeyValue::Bytes(a.value(i).to_vec())
                }
            }
        }
    }
}
