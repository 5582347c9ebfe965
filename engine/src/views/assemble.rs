//! Output columns of a merge of a view's runs, shared by reads and compaction: stretches of a
//! segment that the merge copies take that segment's finalized columns (slices, or a `take`
//! of chosen rows), and only the groups the merge combined or found in delta parts are
//! finalized from their states.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BinaryBuilder, RecordBatch, UInt32Array};
use arrow::compute::{concat, take};
use arrow::datatypes::SchemaRef;

use super::definition::{CompiledView, OutputSource};
use super::merge::Candidates;
use super::read::Finalizer;
use super::segment::StateSegment;
use super::state::{self, StateRef};
use crate::error::{Error, Result};

/// A stretch of the output: rows of one segment, or groups finalized from merged states.
enum Piece {
    Segment { run: usize, positions: Range<usize> },
    Merged(Range<usize>),
}

/// Collects a merge's output in key order, as pieces, and assembles its columns at the end.
pub(crate) struct Assembly<'v> {
    view: &'v CompiledView,
    projection: Vec<usize>,
    merged: Finalizer<'v>,
    pieces: Vec<Piece>,
}

impl<'v> Assembly<'v> {
    /// An assembly of `view`'s output columns in `projection` (all when `None`).
    pub(crate) fn new(view: &'v CompiledView, projection: Option<&[usize]>) -> Assembly<'v> {
        Assembly {
            view,
            projection: projection
                .map_or_else(|| (0..view.outputs.len()).collect(), <[usize]>::to_vec),
            merged: Finalizer::new(view, projection).without_default_row(),
            pieces: Vec::new(),
        }
    }

    /// Next come candidate `positions` of segment run `run`, as they are.
    pub(crate) fn copy(&mut self, run: usize, positions: Range<usize>) {
        self.pieces.push(Piece::Segment { run, positions });
    }

    /// Next comes one group with its (merged) encoded states, finalized here.
    pub(crate) fn push(&mut self, key: &[u8], states: &[u8]) -> Result<()> {
        let row = self.merged.rows();
        self.merged.push(key, states)?;
        match self.pieces.last_mut() {
            Some(Piece::Merged(r)) if r.end == row => r.end = row + 1,
            _ => self.pieces.push(Piece::Merged(row..row + 1)),
        }
        Ok(())
    }

    /// Replaces the finalizer by one that gives a view without GROUP BY its one row when
    /// nothing was added.
    pub(crate) fn with_default_row(mut self) -> Self {
        if self.pieces.is_empty() {
            self.merged = Finalizer::new(self.view, Some(&self.projection));
        }
        self
    }

    /// The columns, in projection order, and the row count. `segments[run]` and `rows[run]`
    /// are the segment and candidate rows of every run given to [`Assembly::copy`].
    pub(crate) fn finish(
        self,
        segments: &[&StateSegment],
        rows: &[&Candidates],
    ) -> Result<(SchemaRef, Vec<ArrayRef>, usize)> {
        let merged = self.merged.finish()?;
        if let [Piece::Merged(_)] | [] = self.pieces.as_slice() {
            let count = merged.num_rows();
            return Ok((merged.schema(), merged.columns().to_vec(), count));
        }
        let count: usize = self
            .pieces
            .iter()
            .map(|p| match p {
                Piece::Segment { positions, .. } => positions.len(),
                Piece::Merged(r) => r.len(),
            })
            .sum();
        let mut columns = Vec::with_capacity(self.projection.len());
        for (position, &output) in self.projection.iter().enumerate() {
            let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.pieces.len());
            for piece in &self.pieces {
                arrays.push(match piece {
                    Piece::Segment { run, positions } => {
                        segment_column(self.view, segments[*run], rows[*run], positions, output)?
                    }
                    Piece::Merged(r) => merged.column(position).slice(r.start, r.len()),
                });
            }
            columns.push(match arrays.as_slice() {
                [one] => Arc::clone(one),
                _ => {
                    let refs: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
                    concat(&refs).map_err(|e| Error::arrow("assembling a view's rows", e))?
                }
            });
        }
        Ok((merged.schema(), columns, count))
    }
}

/// The merged rows of an assembly as a batch.
pub(crate) fn to_batch(
    view: &CompiledView,
    (schema, columns, rows): (SchemaRef, Vec<ArrayRef>, usize),
) -> Result<RecordBatch> {
    RecordBatch::try_new_with_options(
        schema,
        columns,
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(rows)),
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
                        && let StateRef::Hll(bytes)
                        | StateRef::Quantiles(bytes)
                        | StateRef::TopK(bytes) = s
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
        (None, OutputSource::AvgPart { .. }) => {
            let mut finalizer = Finalizer::new(view, Some(&[output])).without_default_row();
            for row in indices.values() {
                let row = *row as usize;
                finalizer.push(segment.keys.value(row), segment.states.value(row))?;
            }
            Ok(Arc::clone(finalizer.finish()?.column(0)))
        }
        (None, _) => Err(Error::Corrupt(format!(
            "view \"{}\" segment {} lacks output column {output}",
            view.def.name, segment.meta.id
        ))),
    }
}
