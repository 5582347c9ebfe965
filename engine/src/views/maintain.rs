//! Per-batch maintenance: evaluate a view's filter, group keys and aggregate arguments on an
//! Arrow batch and pre-aggregate it into one partial state per group (a commit's delta part).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryBuilder, BooleanArray, RecordBatch};
use arrow::buffer::NullBuffer;
use arrow::compute::filter_record_batch;
use arrow::datatypes::{Field, Schema};
use datafusion::logical_expr::EmitTo;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::aggregates::group_values::new_group_values;
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use super::column::Column;
use super::definition::{AggKind, CompiledView};
use super::key::{KeyKind, KeyValue};
use super::part::{DeltaPart, Entry, Groups};
use super::state::{self, AggState};
use crate::error::{Error, Result};
use crate::sketch::{DistinctSet, Hll, Quantiles, Theta, TopK};

/// The delta part that `batches` contribute to `view` (its id is assigned at commit).
pub(crate) fn delta_part<'b>(
    view: &CompiledView,
    batches: impl IntoIterator<Item = &'b RecordBatch>,
) -> Result<DeltaPart> {
    let mut batches = batches.into_iter();
    let Some(first) = batches.next() else {
        return BatchGroups::default().into_part();
    };
    let first = partial_states(view, first)?;
    let Some(second) = batches.next() else {
        // One batch (every library ingest and INSERT): sorted from its columns directly.
        return first.into_part();
    };
    // The groups of every batch in one list, sorted and merged by key once: no hash map per
    // commit (a group in several batches of the commit is merged in batch order).
    let mut entries = first.into_entries();
    for batch in std::iter::once(second).chain(batches) {
        entries.extend(partial_states(view, batch)?.into_entries());
    }
    DeltaPart::from_entries(entries)
}

/// Partial states of `batch` per group key (without the view prefix), merged into `into`
/// (bulk loads and backfills, which gather many batches before writing a part).
pub(crate) fn accumulate(
    view: &CompiledView,
    batch: &RecordBatch,
    into: &mut Groups,
) -> Result<()> {
    let entries = partial_states(view, batch)?.into_entries();
    into.reserve(entries.len());
    for (key, states) in entries {
        merge_group(into, key, states)?;
    }
    Ok(())
}

/// One batch pre-aggregated, column by column: each group's key (memcomparable, without the
/// view prefix) in one buffer, in order of first appearance, and per aggregate each group's
/// state. A key may appear twice (values DataFusion tells apart that encode alike, such as
/// NaNs of different bits): consumers merge by key.
#[derive(Default)]
struct BatchGroups {
    key_bytes: Vec<u8>,
    /// End of each group's key in `key_bytes`.
    key_ends: Vec<usize>,
    /// Per aggregate, one state per group.
    states_by_agg: Vec<Vec<AggState>>,
}

impl BatchGroups {
    fn len(&self) -> usize {
        self.key_ends.len()
    }

    fn key(&self, group: usize) -> &[u8] {
        let start = if group == 0 {
            0
        } else {
            self.key_ends[group - 1]
        };
        &self.key_bytes[start..self.key_ends[group]]
    }

    /// The groups as (key, states) entries, in order of first appearance.
    fn into_entries(self) -> Vec<Entry> {
        let keys: Vec<Vec<u8>> = (0..self.len()).map(|g| self.key(g).to_vec()).collect();
        let mut columns: Vec<std::vec::IntoIter<AggState>> =
            self.states_by_agg.into_iter().map(Vec::into_iter).collect();
        keys.into_iter()
            .map(|key| {
                let states: Vec<AggState> = columns
                    .iter_mut()
                    .map(|c| c.next().expect("one state per group"))
                    .collect();
                (key, states)
            })
            .collect()
    }

    /// The delta part of these groups: an order of group numbers sorted by key (stably, so
    /// that equal keys merge in the order they appeared), each group's states encoded straight
    /// from their columns. No key or state list is allocated per group.
    fn into_part(self) -> Result<DeltaPart> {
        let n = self.len();
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_by(|&a, &b| self.key(a as usize).cmp(self.key(b as usize)));
        let mut keys = BinaryBuilder::with_capacity(n, self.key_bytes.len());
        let mut states = BinaryBuilder::with_capacity(n, n * 16);
        let mut scratch = Vec::new();
        let mut i = 0;
        while i < n {
            let first = order[i] as usize;
            let key = self.key(first);
            let mut end = i + 1;
            while end < n && self.key(order[end] as usize) == key {
                end += 1;
            }
            scratch.clear();
            if end == i + 1 {
                state::encode_into(self.states_by_agg.iter().map(|c| &c[first]), &mut scratch);
            } else {
                let mut merged: Vec<AggState> = self
                    .states_by_agg
                    .iter()
                    .map(|c| c[first].clone())
                    .collect();
                for &group in &order[i + 1..end] {
                    for (state, column) in merged.iter_mut().zip(&self.states_by_agg) {
                        state.merge(&column[group as usize])?;
                    }
                }
                state::encode_into(merged.iter(), &mut scratch);
            }
            keys.append_value(key);
            states.append_value(&scratch);
            i = end;
        }
        Ok(DeltaPart {
            id: 0,
            keys: keys.finish(),
            states: states.finish(),
        })
    }
}

/// Adds one group's states to `groups`: merged into the group's states if it has some.
fn merge_group(groups: &mut Groups, key: Vec<u8>, states: Vec<AggState>) -> Result<()> {
    match groups.get_mut(&key) {
        Some(existing) => {
            for (a, b) in existing.iter_mut().zip(&states) {
                a.merge(b)?;
            }
        }
        None => {
            groups.insert(key, states);
        }
    }
    Ok(())
}

/// Pre-aggregates `batch` into partial states per group.
///
/// Vectorized in three steps: the view's filter selects rows (Arrow's filter kernel), the
/// group columns are interned by DataFusion's `GroupValues` (the hash table its own
/// `GROUP BY` uses) into a group number per row, and each aggregate then updates its
/// per-group states in a loop over its argument column. Group keys are encoded once per
/// group, not per row.
fn partial_states(view: &CompiledView, batch: &RecordBatch) -> Result<BatchGroups> {
    let filtered;
    let batch = match &view.filter {
        Some(f) => {
            let mask = evaluate_mask(f, batch)?;
            filtered = filter_record_batch(batch, &mask)
                .map_err(|e| Error::arrow("filtering rows for a view", e))?;
            &filtered
        }
        None => batch,
    };
    if batch.num_rows() == 0 {
        return Ok(BatchGroups::default());
    }
    let (group_of_row, key_bytes, key_ends) = assign_groups(view, batch)?;

    let mut states_by_agg: Vec<Vec<AggState>> = Vec::with_capacity(view.aggs.len());
    for agg in &view.aggs {
        let arg = Column::new(evaluate(&agg.arg, batch)?, agg.arg_kind)?;
        let mask = agg
            .filter
            .as_ref()
            .map(|f| evaluate_mask(f, batch))
            .transpose()?;
        let mut states = vec![initial_state(agg.kind, agg.arg_kind); key_ends.len()];
        update_states(&mut states, agg.kind, &arg, &group_of_row, mask.as_ref());
        states_by_agg.push(states);
    }
    Ok(BatchGroups {
        key_bytes,
        key_ends,
        states_by_agg,
    })
}

/// Numbers the groups of `batch`'s rows: the group of each row, and each group's key (the
/// memcomparable encoding of its group values) in order of first appearance, as one buffer
/// and the end of each key in it.
fn assign_groups(
    view: &CompiledView,
    batch: &RecordBatch,
) -> Result<(Vec<usize>, Vec<u8>, Vec<usize>)> {
    let rows = batch.num_rows();
    if view.groups.is_empty() {
        return Ok((vec![0; rows], Vec::new(), vec![0]));
    }
    let mut arrays = Vec::with_capacity(view.groups.len());
    for g in &view.groups {
        arrays.push(Column::new(evaluate(&g.expr, batch)?, g.kind)?.into_array(rows));
    }
    let fields: Vec<Field> = arrays
        .iter()
        .enumerate()
        .map(|(i, a)| Field::new(format!("g{i}"), a.data_type().clone(), true))
        .collect();
    let grouping = |e| Error::Query(e);
    let mut values =
        new_group_values(Arc::new(Schema::new(fields)), &GroupOrdering::None).map_err(grouping)?;
    let mut group_of_row = Vec::with_capacity(rows);
    values
        .intern(&arrays, &mut group_of_row)
        .map_err(grouping)?;
    let distinct = values.emit(EmitTo::All).map_err(grouping)?;
    let count = distinct.first().map_or(0, |a| a.len());
    let columns: Vec<Column> = distinct
        .into_iter()
        .zip(&view.groups)
        .map(|(array, g)| Column::new(array, g.kind))
        .collect::<Result<_>>()?;
    let mut key_bytes = Vec::with_capacity(count * 16);
    let mut key_ends = Vec::with_capacity(count);
    for group in 0..count {
        for column in &columns {
            column.encode_key(group, &mut key_bytes);
        }
        key_ends.push(key_bytes.len());
    }
    Ok((group_of_row, key_bytes, key_ends))
}

/// Adds the argument values of the rows that pass `mask` to their groups' states. Counts,
/// sums and averages over numbers, and sketches of text, have loops of their own; other
/// aggregates go through [`update`].
fn update_states(
    states: &mut [AggState],
    kind: AggKind,
    arg: &Column,
    group_of_row: &[usize],
    mask: Option<&BooleanArray>,
) {
    match (kind, arg) {
        (_, Column::Null) => {}
        (AggKind::Count, _) => each_value(group_of_row, mask, arg.nulls(), |_, group| {
            if let AggState::Count(n) = &mut states[group] {
                *n += 1;
            }
        }),
        (AggKind::Sum | AggKind::Avg, Column::Int(a)) => {
            let values = a.values();
            each_value(group_of_row, mask, a.nulls(), |row, group| {
                let v = values[row];
                match &mut states[group] {
                    AggState::SumInt(s) => *s = Some(s.unwrap_or(0).wrapping_add(v)),
                    AggState::Avg { sum, count } => {
                        *sum += v as f64;
                        *count += 1;
                    }
                    state => update(state, kind, KeyValue::Int(v)),
                }
            })
        }
        (AggKind::Sum | AggKind::Avg, Column::Float(a)) => {
            let values = a.values();
            each_value(group_of_row, mask, a.nulls(), |row, group| {
                let v = values[row];
                match &mut states[group] {
                    AggState::SumFloat(s) => *s = Some(s.unwrap_or(0.0) + v),
                    AggState::Avg { sum, count } => {
                        *sum += v;
                        *count += 1;
                    }
                    state => update(state, kind, KeyValue::Float(v)),
                }
            })
        }
        // Sketches hash text and bytes in place, integers from their canonical bytes (see
        // `sketch::canonical_bytes`), without building a `KeyValue`.
        (AggKind::ApproxDistinct, Column::Text(a)) => {
            each_value(group_of_row, mask, a.nulls(), |row, group| {
                if let AggState::Hll(hll) = &mut states[group] {
                    hll.insert_bytes(a.value(row).as_bytes());
                }
            })
        }
        (AggKind::ApproxDistinct, Column::Bytes(a)) => {
            each_value(group_of_row, mask, a.nulls(), |row, group| {
                if let AggState::Hll(hll) = &mut states[group] {
                    hll.insert_bytes(a.value(row));
                }
            })
        }
        (AggKind::ApproxDistinct, Column::Int(a)) => {
            let values = a.values();
            each_value(group_of_row, mask, a.nulls(), |row, group| {
                if let AggState::Hll(hll) = &mut states[group] {
                    hll.insert_bytes(&values[row].to_le_bytes());
                }
            })
        }
        (AggKind::Quantiles, Column::Float(a)) => {
            let values = a.values();
            each_value(group_of_row, mask, a.nulls(), |row, group| {
                if let AggState::Quantiles(sketch) = &mut states[group] {
                    sketch.insert(values[row]);
                }
            })
        }
        // Frequent items count text (the view casts its argument to text); theta sketches hash
        // as DataSketches' other libraries do (see `sketch::Theta`).
        (AggKind::TopK(_) | AggKind::TopKSketch, Column::Text(a)) => {
            each_value(group_of_row, mask, a.nulls(), |row, group| {
                if let AggState::TopK(sketch) = &mut states[group] {
                    sketch.insert(a.value(row));
                }
            })
        }
        (AggKind::Theta, Column::Text(a)) => {
            each_value(group_of_row, mask, a.nulls(), |row, group| {
                if let AggState::Theta(theta) = &mut states[group] {
                    theta.insert_text(a.value(row).as_bytes());
                }
            })
        }
        (AggKind::Theta, Column::Int(a)) => {
            let values = a.values();
            each_value(group_of_row, mask, a.nulls(), |row, group| {
                if let AggState::Theta(theta) = &mut states[group] {
                    theta.insert_bytes(&values[row].to_le_bytes());
                }
            })
        }
        (AggKind::Min | AggKind::Max, Column::Int(a)) => {
            let (want, values) = (extreme(kind), a.values());
            each_value(group_of_row, mask, a.nulls(), |row, group| {
                let v = values[row];
                match &mut states[group] {
                    AggState::Min(Some(KeyValue::Int(cur)))
                    | AggState::Max(Some(KeyValue::Int(cur))) => {
                        if v.cmp(cur) == want {
                            *cur = v;
                        }
                    }
                    state => update(state, kind, KeyValue::Int(v)),
                }
            })
        }
        (AggKind::Min | AggKind::Max, Column::Float(a)) => {
            let (want, values) = (extreme(kind), a.values());
            each_value(group_of_row, mask, a.nulls(), |row, group| {
                let v = values[row];
                match &mut states[group] {
                    // The order `state::compare` uses for floats.
                    AggState::Min(Some(KeyValue::Float(cur)))
                    | AggState::Max(Some(KeyValue::Float(cur))) => {
                        if v.total_cmp(cur) == want {
                            *cur = v;
                        }
                    }
                    state => update(state, kind, KeyValue::Float(v)),
                }
            })
        }
        // NULLs are skipped by `update`.
        _ => each_value(group_of_row, mask, None, |row, group| {
            update(&mut states[group], kind, arg.get(row))
        }),
    }
}

/// Calls `f(row, group)` for each row that passes `mask` and is not NULL in `nulls`.
#[inline(always)]
fn each_value(
    group_of_row: &[usize],
    mask: Option<&BooleanArray>,
    nulls: Option<&NullBuffer>,
    mut f: impl FnMut(usize, usize),
) {
    for (row, &group) in group_of_row.iter().enumerate() {
        if mask.is_none_or(|m| passes(m, row)) && nulls.is_none_or(|n| n.is_valid(row)) {
            f(row, group);
        }
    }
}

/// The order a new value must have against the kept one to replace it (min: less).
fn extreme(kind: AggKind) -> std::cmp::Ordering {
    match kind {
        AggKind::Min => std::cmp::Ordering::Less,
        _ => std::cmp::Ordering::Greater,
    }
}

fn passes(mask: &BooleanArray, row: usize) -> bool {
    mask.is_valid(row) && mask.value(row)
}

fn evaluate(expr: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> Result<ArrayRef> {
    expr.evaluate(batch)
        .and_then(|v| v.into_array(batch.num_rows()))
        .map_err(Error::Query)
}

fn evaluate_mask(expr: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> Result<BooleanArray> {
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
        AggKind::ApproxDistinct => AggState::Hll(Hll::for_storage()),
        AggKind::CountDistinct => AggState::Distinct(DistinctSet::default()),
        AggKind::Quantiles => AggState::Quantiles(Quantiles::new()),
        AggKind::TopK(_) | AggKind::TopKSketch => AggState::TopK(TopK::new()),
        AggKind::Theta => AggState::Theta(Theta::new()),
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
        (AggState::Quantiles(sketch), _) => match value {
            KeyValue::Int(v) => sketch.insert(v as f64),
            KeyValue::Float(v) => sketch.insert(v),
            _ => {}
        },
        (AggState::TopK(sketch), _) => {
            if let KeyValue::Bytes(text) = &value {
                sketch.insert(&String::from_utf8_lossy(text));
            }
        }
        (AggState::Theta(theta), _) => theta.insert(&value),
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Float64Array, Int64Array};
    use arrow::datatypes::DataType;

    use super::*;

    /// The states the generic path (`update` of each selected row's value) gives.
    fn generic(
        kind: AggKind,
        arg: &Column,
        groups: &[usize],
        mask: &BooleanArray,
    ) -> Vec<AggState> {
        let mut states = vec![initial_state(kind, KeyKind::Int); 3];
        for (row, &group) in groups.iter().enumerate() {
            if passes(mask, row) {
                update(&mut states[group], kind, arg.get(row));
            }
        }
        states
    }

    /// A one-batch delta part (sorted from the batch's columns) is byte for byte the part of
    /// the same groups as entries, sorted and merged: including keys that appear twice in the
    /// batch (NaNs of different bits, -0.0 and 0.0), which become one group.
    #[test]
    fn a_one_batch_part_equals_the_part_of_its_entries() {
        use arrow::datatypes::{Field, Schema};

        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Float64, true),
            Field::new("x", DataType::Int64, true),
        ]));
        let view = crate::views::definition::compile_for_tests(
            "SELECT k, count(*) AS n, sum(x) AS s, max(x) AS m FROM t GROUP BY k",
            &schema,
            1,
        );
        let negative_nan = f64::from_bits(f64::NAN.to_bits() | (1 << 63));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Float64Array::from(vec![
                    Some(1.5),
                    Some(f64::NAN),
                    Some(negative_nan),
                    Some(0.0),
                    Some(-0.0),
                    None,
                    Some(1.5),
                ])),
                Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5, 6, 7])),
            ],
        )
        .expect("a batch");
        let part = delta_part(&view, [&batch]).expect("a part");
        let expected = DeltaPart::from_entries(
            partial_states(&view, &batch)
                .expect("states")
                .into_entries(),
        )
        .expect("a part");
        assert_eq!(part.len(), 4, "groups NULL, 0, 1.5, NaN");
        assert_eq!(part.keys, expected.keys);
        assert_eq!(part.states, expected.states);
    }

    /// Every typed loop keeps exactly the states of the generic path: NULLs and masked-out
    /// rows skipped, floats ordered as `state::compare` orders them (NaN above infinity, -0.0
    /// below 0.0), integers hashed from their canonical bytes.
    #[test]
    fn typed_loops_keep_the_states_of_the_generic_path() {
        let ints = Column::Int(Int64Array::from(vec![
            Some(5),
            None,
            Some(-3),
            Some(i64::MAX),
            Some(7),
            Some(i64::MIN),
            Some(0),
        ]));
        let floats = Column::Float(Float64Array::from(vec![
            Some(1.5),
            Some(f64::NAN),
            None,
            Some(-0.0),
            Some(0.0),
            Some(f64::NEG_INFINITY),
            Some(f64::INFINITY),
        ]));
        let groups = [0, 1, 0, 2, 1, 2, 0];
        let mask = BooleanArray::from(vec![
            Some(true),
            Some(true),
            Some(true),
            None,
            Some(false),
            Some(true),
            Some(true),
        ]);
        let all = BooleanArray::from(vec![true; 7]);
        for mask in [&mask, &all] {
            for (kind, arg) in [
                (AggKind::Min, &ints),
                (AggKind::Max, &ints),
                (AggKind::Min, &floats),
                (AggKind::Max, &floats),
                (AggKind::ApproxDistinct, &ints),
                (AggKind::Sum, &ints),
                (AggKind::Avg, &floats),
                (AggKind::Count, &floats),
                (AggKind::Quantiles, &floats),
            ] {
                let mut typed = vec![initial_state(kind, KeyKind::Int); 3];
                update_states(&mut typed, kind, arg, &groups, Some(mask));
                let expected = generic(kind, arg, &groups, mask);
                // Debug output, so that NaN compares equal to NaN.
                assert_eq!(format!("{typed:?}"), format!("{expected:?}"), "{kind:?}");
                if kind == AggKind::ApproxDistinct {
                    for (a, b) in typed.iter().zip(&expected) {
                        let (AggState::Hll(a), AggState::Hll(b)) = (a, b) else {
                            panic!("sketch states");
                        };
                        assert_eq!(a.to_bytes(), b.to_bytes());
                    }
                }
            }
        }
    }
}
