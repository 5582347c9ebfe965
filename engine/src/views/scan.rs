//! Reading a view at one snapshot: choose each run's rows (a key range by binary search, a
//! lookup in a segment's secondary order for an equality on a non-leading group column), merge
//! the runs, and assemble the output from slices of the segments' finalized columns plus the
//! groups that deltas touched, finalized afresh. DataFusion reaches it through
//! [`super::provider`].

use arrow::array::{Array, RecordBatch};

use super::assemble::{self, Assembly};
use super::bounds::{GroupBound, Op, key_range};
use super::definition::CompiledView;
use super::key::{self, KeyKind};
use super::merge::{Candidates, Run, Step, lower_bound, merge};
use super::segment::StateSegment;
use super::state;
use super::{ViewData, part::DeltaPart};
use crate::error::Result;

/// Which groups a read wants.
pub(crate) enum Selection<'a> {
    /// Groups whose values pass every bound (all groups when empty).
    Bounds(&'a [GroupBound]),
    /// Exactly these group keys, ascending.
    Keys(&'a [Vec<u8>]),
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
    let mut assembly = Assembly::new(view, projection);
    merge(&runs, |step| match step {
        Step::Rows { run, positions } => {
            assembly.copy(run, positions);
            Ok(())
        }
        Step::Group { key, states } => match states.as_slice() {
            [one] => assembly.push(key, one),
            [first, rest @ ..] => {
                assembly.push(key, &state::merge_values(first, rest.iter().copied())?)
            }
            [] => unreachable!("a merged group has at least one state"),
        },
    })?;
    if kinds.is_empty() && matches!(selection, Selection::Bounds(_)) {
        // Without GROUP BY a view has exactly one row, even before any row matched.
        assembly = assembly.with_default_row();
    }
    let rows: Vec<&Candidates> = runs.iter().map(|r| &r.rows).collect();
    assemble::to_batch(view, assembly.finish(&segments, &rows)?)
}

/// An upper bound on the rows [`read`] returns for `bounds` (a group in several runs counts
/// once per run), from the same binary searches but without decoding anything: the row
/// estimate a planner needs.
pub(crate) fn estimate_rows(view: &CompiledView, data: &ViewData, bounds: &[GroupBound]) -> usize {
    let kinds = view.group_kinds();
    if kinds.is_empty() {
        return 1;
    }
    let selection = Selection::Bounds(bounds);
    let picker = Picker::new(view, &kinds, &selection);
    let segments: usize = data
        .segments
        .iter()
        .map(|s| picker.segment_rows(s).len())
        .sum();
    let parts: usize = data.parts.iter().map(|p| picker.part_rows(p).len()).sum();
    segments + parts
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
