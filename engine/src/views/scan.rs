//! Reading a view at one snapshot: choose each run's rows (a key range by binary search, a
//! lookup in a segment's secondary order for an equality on a non-leading group column), merge
//! the runs, and assemble the output from slices of the segments' finalized columns plus the
//! groups that deltas touched, finalized afresh. Served to DataFusion as a table.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BinaryBuilder, RecordBatch, RecordBatchOptions, UInt32Array};
use arrow::compute::{concat, take};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

use super::ViewStatus;
use super::bounds::{GroupBound, Op, bounds_of, key_range};
use super::definition::{CompiledView, OutputSource};
use super::key::{self, KeyKind};
use super::merge::{Candidates, Run, Step, lower_bound, merge};
use super::read::Finalizer;
use super::segment::StateSegment;
use super::state::{self, StateRef};
use super::{ViewData, part::DeltaPart};
use crate::error::{Error, Result, to_datafusion};
use crate::snapshot::ViewEntry;

/// Which groups a read wants.
pub(crate) enum Selection<'a> {
    /// Groups whose values pass every bound (all groups when empty).
    Bounds(&'a [GroupBound]),
    /// Exactly these group keys, ascending.
    Keys(&'a [Vec<u8>]),
}

/// A stretch of the output: rows of one segment, or groups finalized from merged states.
enum Piece {
    Segment { run: usize, positions: Range<usize> },
    Merged(Range<usize>),
}

/// The rows of `view` (its `projection`, all columns when `None`) whose groups `selection`
/// picks, from `data`, in group-key order.
pub(crate) fn read(
    view: &CompiledView,
    data: &ViewData,
    selection: Selection<'_>,
    projection: Option<&[usize]>,
) -> Result<RecordBatch> {
    let kinds = view.group_kinds();
    let picker = Picker::new(view, &kinds, &selection);
    let segments: Vec<&StateSegment> = data.segments.iter().map(|s| s.as_ref()).collect();
    let mut runs: Vec<Run<'_>> = Vec::with_capacity(segments.len() + data.parts.len());
    for segment in &segments {
        runs.push(Run {
            keys: &segment.keys,
            states: &segment.states,
            rows: picker.segment_rows(segment),
            finalized: true,
        });
    }
    for part in &data.parts {
        runs.push(Run {
            keys: &part.keys,
            states: &part.states,
            rows: picker.part_rows(part),
            finalized: false,
        });
    }
    let mut merged = Finalizer::new(view, projection).without_default_row();
    let mut pieces: Vec<Piece> = Vec::new();
    merge(&runs, |step| {
        match step {
            Step::Rows { run, positions } => pieces.push(Piece::Segment { run, positions }),
            Step::Group { key, states } => {
                let row = merged.rows();
                match states.as_slice() {
                    [one] => merged.push(key, one)?,
                    [first, rest @ ..] => {
                        merged.push(key, &state::merge_values(first, rest.iter().copied())?)?
                    }
                    [] => unreachable!("a merged group has at least one state"),
                }
                match pieces.last_mut() {
                    Some(Piece::Merged(r)) if r.end == row => r.end = row + 1,
                    _ => pieces.push(Piece::Merged(row..row + 1)),
                }
            }
        }
        Ok(())
    })?;
    if pieces.is_empty() && kinds.is_empty() && matches!(selection, Selection::Bounds(_)) {
        // Without GROUP BY a view has exactly one row, even before any row matched.
        merged = Finalizer::new(view, projection);
    }
    let merged = merged.finish()?;
    if let [Piece::Merged(_)] | [] = pieces.as_slice() {
        return Ok(merged);
    }
    let projection: Vec<usize> =
        projection.map_or_else(|| (0..view.outputs.len()).collect(), <[usize]>::to_vec);
    let rows: usize = pieces
        .iter()
        .map(|p| match p {
            Piece::Segment { positions, .. } => positions.len(),
            Piece::Merged(r) => r.len(),
        })
        .sum();
    let mut columns = Vec::with_capacity(projection.len());
    for (position, &output) in projection.iter().enumerate() {
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(pieces.len());
        for piece in &pieces {
            arrays.push(match piece {
                Piece::Segment { run, positions } => {
                    let segment = segments[*run];
                    segment_column(view, segment, &runs[*run].rows, positions, output)?
                }
                Piece::Merged(r) => merged.column(position).slice(r.start, r.len()),
            });
        }
        columns.push(match arrays.as_slice() {
            [one] => Arc::clone(one),
            _ => {
                let refs: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
                concat(&refs).map_err(|e| Error::arrow("reading a view", e))?
            }
        });
    }
    RecordBatch::try_new_with_options(
        merged.schema(),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .map_err(|e| Error::arrow(format!("reading view \"{}\"", view.def.name), e))
}

/// Output column `output` of the candidate `positions` of a segment's `rows`.
fn segment_column(
    view: &CompiledView,
    segment: &StateSegment,
    rows: &Candidates,
    positions: &Range<usize>,
    output: usize,
) -> Result<ArrayRef> {
    let indices: UInt32Array = match rows {
        Candidates::Range(r) => {
            let start = r.start + positions.start;
            if let Some(column) = &segment.finalized[output] {
                return Ok(column.slice(start, positions.len()));
            }
            UInt32Array::from_iter_values((start..start + positions.len()).map(|i| i as u32))
        }
        Candidates::Rows(list) => UInt32Array::from(list[positions.clone()].to_vec()),
    };
    match (&segment.finalized[output], view.outputs[output]) {
        (Some(column), _) => {
            take(column.as_ref(), &indices, None).map_err(|e| Error::arrow("reading a view", e))
        }
        (None, OutputSource::Sketch(agg)) => {
            let mut sketches = BinaryBuilder::new();
            for row in indices.values() {
                let mut found = false;
                state::visit(segment.states.value(*row as usize), |i, s| {
                    if i == agg
                        && let StateRef::Hll(bytes) = s
                    {
                        sketches.append_value(bytes);
                        found = true;
                    }
                    Ok(())
                })?;
                if !found {
                    sketches.append_null();
                }
            }
            Ok(Arc::new(sketches.finish()))
        }
        (None, _) => Err(Error::Corrupt(format!(
            "view \"{}\" segment {} lacks output column {output}",
            view.def.name, segment.meta.id
        ))),
    }
}

/// Chooses each run's rows for a selection.
struct Picker<'s> {
    kinds: &'s [KeyKind],
    selection: &'s Selection<'s>,
    /// Bounds, encoded.
    encoded: Vec<Vec<u8>>,
    /// The key range every selected group lies in (lower inclusive, upper exclusive).
    range: (Vec<u8>, Vec<u8>),
    /// An equality on a non-leading group column (group, encoded value), when no equality on
    /// the leading column narrows the range.
    lookup: Option<(usize, Vec<u8>)>,
}

impl<'s> Picker<'s> {
    fn new(view: &CompiledView, kinds: &'s [KeyKind], selection: &'s Selection<'s>) -> Self {
        let bounds: &[GroupBound] = match selection {
            Selection::Bounds(b) => b,
            Selection::Keys(_) => &[],
        };
        let encoded: Vec<Vec<u8>> = bounds.iter().map(GroupBound::encoded).collect();
        let range = key_range(&[], view.groups.len(), bounds);
        let lookup = if bounds.iter().any(|b| b.group == 0 && b.op == Op::Eq) {
            None
        } else {
            bounds
                .iter()
                .zip(&encoded)
                .find(|(b, _)| b.group > 0 && b.op == Op::Eq)
                .map(|(b, e)| (b.group, e.clone()))
        };
        Picker {
            kinds,
            selection,
            encoded,
            range,
            lookup,
        }
    }

    fn bounds(&self) -> &[GroupBound] {
        match self.selection {
            Selection::Bounds(b) => b,
            Selection::Keys(_) => &[],
        }
    }

    /// Whether a group key passes every bound (a malformed key passes, so that decoding
    /// reports it).
    fn admits(&self, group_key: &[u8]) -> bool {
        let bounds = self.bounds();
        bounds.is_empty()
            || key::split(group_key, self.kinds).is_none_or(|values| {
                bounds
                    .iter()
                    .zip(&self.encoded)
                    .all(|(b, e)| b.admits_encoded(values[b.group], e))
            })
    }

    fn keyed(&self, keys: &arrow::array::BinaryArray) -> Option<Candidates> {
        let Selection::Keys(wanted) = self.selection else {
            return None;
        };
        let rows = wanted
            .iter()
            .filter_map(|k| {
                let i = lower_bound(keys, k);
                (i < keys.len() && keys.value(i) == k.as_slice()).then_some(i as u32)
            })
            .collect();
        Some(Candidates::Rows(rows))
    }

    /// Rows of the key range that pass the bounds.
    fn ranged(&self, keys: &arrow::array::BinaryArray) -> Candidates {
        let start = lower_bound(keys, &self.range.0);
        let end = lower_bound(keys, &self.range.1).max(start);
        if self.bounds().is_empty() {
            return Candidates::Range(start..end);
        }
        Candidates::Rows(
            (start..end)
                .filter(|&i| self.admits(keys.value(i)))
                .map(|i| i as u32)
                .collect(),
        )
    }

    fn part_rows(&self, part: &DeltaPart) -> Candidates {
        self.keyed(&part.keys)
            .unwrap_or_else(|| self.ranged(&part.keys))
    }

    fn segment_rows(&self, segment: &StateSegment) -> Candidates {
        if let Some(rows) = self.keyed(&segment.keys) {
            return rows;
        }
        let Some((group, value)) = &self.lookup else {
            return self.ranged(&segment.keys);
        };
        let Some(Some(order)) = segment.by_group.get(*group) else {
            return self.ranged(&segment.keys);
        };
        // The rows whose column `group` equals `value` are one stretch of the secondary order.
        let value_of = |row: u32| {
            key::split(segment.keys.value(row as usize), self.kinds)
                .map(|parts| parts[*group].to_vec())
                .unwrap_or_default()
        };
        let order = order.values();
        let first = order.partition_point(|&row| value_of(row).as_slice() < value.as_slice());
        let last = first
            + order[first..].partition_point(|&row| value_of(row).as_slice() <= value.as_slice());
        let mut rows: Vec<u32> = order[first..last]
            .iter()
            .copied()
            .filter(|&row| self.admits(segment.keys.value(row as usize)))
            .collect();
        rows.sort_unstable();
        Candidates::Rows(rows)
    }
}

/// A view as DataFusion sees it, at one snapshot.
pub(crate) struct ViewTable {
    entry: Arc<ViewEntry>,
}

impl ViewTable {
    pub(crate) fn new(entry: Arc<ViewEntry>) -> Self {
        ViewTable { entry }
    }

    /// The rows of the view whose groups pass `bounds`, projected.
    pub(crate) fn read(
        &self,
        bounds: &[GroupBound],
        projection: Option<&[usize]>,
    ) -> Result<RecordBatch> {
        if self.entry.status != ViewStatus::Ready {
            return Err(Error::NotSupported(format!(
                "materialized view \"{}\" is still being backfilled; it can be read once complete",
                self.entry.view.def.name
            )));
        }
        read(
            &self.entry.view,
            &self.entry.data,
            Selection::Bounds(bounds),
            projection,
        )
    }
}

impl fmt::Debug for ViewTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ViewTable({})", self.entry.view.def.name)
    }
}

#[async_trait]
impl TableProvider for ViewTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.entry.view.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Comparisons on group columns narrow the scan; DataFusion still checks every row.
        Ok(filters
            .iter()
            .map(|f| {
                if bounds_of(&self.entry.view, f).is_empty() {
                    TableProviderFilterPushDown::Unsupported
                } else {
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let bounds: Vec<GroupBound> = filters
            .iter()
            .flat_map(|f| bounds_of(&self.entry.view, f))
            .collect();
        let batch = self
            .read(&bounds, projection.map(Vec::as_slice))
            .map_err(to_datafusion)?;
        let source = MemorySourceConfig::try_new(&[vec![batch.clone()]], batch.schema(), None)?;
        Ok(DataSourceExec::from_data_source(source))
    }
}
