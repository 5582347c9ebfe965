//! The k-way merge of a view's sorted runs (state segments and delta parts) by group key, shared
//! by reads and compaction. Stretches of one segment that no other run touches come out as row
//! ranges, found by binary search, so that disjoint segments (time-ordered data) merge in
//! O(runs · log groups) and their finalized columns are copied, not recomputed; a group present
//! in several runs, or only in a delta part, comes out with all of its encoded states to merge.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::Range;

use arrow::array::{Array, BinaryArray};

use crate::error::Result;

/// The rows of a run that take part in a merge, in key order.
#[derive(Debug, Clone)]
pub(crate) enum Candidates {
    /// A contiguous range of rows.
    Range(Range<usize>),
    /// Selected rows, ascending.
    Rows(Vec<u32>),
}

impl Candidates {
    /// How many rows.
    pub(crate) fn len(&self) -> usize {
        match self {
            Candidates::Range(r) => r.len(),
            Candidates::Rows(r) => r.len(),
        }
    }

    /// The row at candidate position `i`.
    pub(crate) fn row(&self, i: usize) -> usize {
        match self {
            Candidates::Range(r) => r.start + i,
            Candidates::Rows(r) => r[i] as usize,
        }
    }
}

/// One sorted run taking part in a merge.
pub(crate) struct Run<'a> {
    /// Group keys, strictly ascending.
    pub keys: &'a BinaryArray,
    /// Encoded states, one per key.
    pub states: &'a BinaryArray,
    /// The rows to merge.
    pub rows: Candidates,
    /// Whether the run has finalized columns (a segment) whose rows may be copied as they are.
    pub finalized: bool,
}

/// What the merge yields, in key order.
pub(crate) enum Step<'a> {
    /// Candidate positions `positions` of run `run`: groups found in that run only, which has
    /// finalized columns.
    Rows {
        /// Index of the run.
        run: usize,
        /// Candidate positions (see [`Candidates::row`]).
        positions: Range<usize>,
    },
    /// One group and its encoded states from every run that holds it (a single state when it
    /// is only in a delta part).
    Group {
        /// The group key.
        key: &'a [u8],
        /// Its states, oldest run first in the order of `runs`.
        states: Vec<&'a [u8]>,
    },
}

/// Merges `runs` by key, calling `f` with each step.
///
/// The runs' current keys sit in a min-heap, so a step costs O(log runs): compaction merges
/// hundreds of delta parts at once, and reads right after a burst of commits see as many.
pub(crate) fn merge<'a>(runs: &[Run<'a>], mut f: impl FnMut(Step<'a>) -> Result<()>) -> Result<()> {
    let key_at = |run: usize, pos: usize| -> &'a [u8] {
        let r = &runs[run];
        r.keys.value(r.rows.row(pos))
    };
    let mut positions = vec![0usize; runs.len()];
    // (key, run): equal keys come out in run order, oldest run first.
    let mut heap: BinaryHeap<Reverse<(&'a [u8], usize)>> = runs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.rows.len() > 0)
        .map(|(run, _)| Reverse((key_at(run, 0), run)))
        .collect();
    let mut ties: Vec<usize> = Vec::with_capacity(runs.len());
    while let Some(Reverse((key, first))) = heap.pop() {
        ties.clear();
        ties.push(first);
        while let Some(Reverse((k, run))) = heap.peek().copied()
            && k == key
        {
            heap.pop();
            ties.push(run);
        }
        // The next larger key elsewhere bounds a stretch of a single run.
        let next_other = heap.peek().map(|Reverse((k, _))| *k);
        if let [run] = ties[..] {
            let r = &runs[run];
            if r.finalized {
                let start = positions[run];
                let end = match next_other {
                    None => r.rows.len(),
                    Some(bound) => {
                        start + partition_point(start..r.rows.len(), |p| key_at(run, p) < bound)
                    }
                };
                positions[run] = end;
                if end < r.rows.len() {
                    heap.push(Reverse((key_at(run, end), run)));
                }
                f(Step::Rows {
                    run,
                    positions: start..end,
                })?;
                continue;
            }
        }
        let states = ties
            .iter()
            .map(|&run| runs[run].states.value(runs[run].rows.row(positions[run])))
            .collect();
        for &run in &ties {
            positions[run] += 1;
            if positions[run] < runs[run].rows.len() {
                heap.push(Reverse((key_at(run, positions[run]), run)));
            }
        }
        f(Step::Group { key, states })?;
    }
    Ok(())
}

/// The number of leading positions in `range` for which `pred` holds (it holds for a prefix).
fn partition_point(range: Range<usize>, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (range.start, range.end);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo - range.start
}

/// The first row of `keys` (strictly ascending) whose key is at least `key`.
pub(crate) fn lower_bound(keys: &BinaryArray, key: &[u8]) -> usize {
    partition_point(0..keys.len(), |i| keys.value(i) < key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(values: &[&str]) -> BinaryArray {
        BinaryArray::from_iter_values(values.iter().map(|v| v.as_bytes()))
    }

    /// (run, key) of every group the merge yields, with the runs holding it.
    fn walk(runs: &[Run<'_>]) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        merge(runs, |step| {
            match step {
                Step::Rows { run, positions } => {
                    for p in positions {
                        let k = runs[run].keys.value(runs[run].rows.row(p));
                        out.push((String::from_utf8(k.to_vec()).unwrap(), vec![run]));
                    }
                }
                Step::Group { key, states } => {
                    let owners = states
                        .iter()
                        .map(|s| s[0] as usize - b'0' as usize)
                        .collect();
                    out.push((String::from_utf8(key.to_vec()).unwrap(), owners));
                }
            }
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn merges_runs_in_key_order_and_groups_shared_keys() {
        let (a, b, c) = (
            keys(&["a", "c", "e", "f"]),
            keys(&["b", "c"]),
            keys(&["f", "g"]),
        );
        let sa = BinaryArray::from_iter_values(["0"; 4]);
        let sb = BinaryArray::from_iter_values(["1"; 2]);
        let sc = BinaryArray::from_iter_values(["2"; 2]);
        let runs = [
            Run {
                keys: &a,
                states: &sa,
                rows: Candidates::Range(0..4),
                finalized: true,
            },
            Run {
                keys: &b,
                states: &sb,
                rows: Candidates::Range(0..2),
                finalized: false,
            },
            Run {
                keys: &c,
                states: &sc,
                rows: Candidates::Rows(vec![0, 1]),
                finalized: true,
            },
        ];
        let got = walk(&runs);
        let expected: Vec<(String, Vec<usize>)> = vec![
            ("a".into(), vec![0]),
            ("b".into(), vec![1]),
            ("c".into(), vec![0, 1]),
            ("e".into(), vec![0]),
            ("f".into(), vec![0, 2]),
            ("g".into(), vec![2]),
        ];
        assert_eq!(got, expected);
    }

    #[test]
    fn disjoint_segments_come_out_as_whole_ranges() {
        let (a, b) = (keys(&["a", "b", "c"]), keys(&["d", "e"]));
        let s = BinaryArray::from_iter_values(["0"; 3]);
        let runs = [
            Run {
                keys: &b,
                states: &s,
                rows: Candidates::Range(0..2),
                finalized: true,
            },
            Run {
                keys: &a,
                states: &s,
                rows: Candidates::Range(0..3),
                finalized: true,
            },
        ];
        let mut steps = Vec::new();
        merge(&runs, |step| {
            if let Step::Rows { run, positions } = step {
                steps.push((run, positions));
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(steps, vec![(1, 0..3), (0, 0..2)]);
        assert_eq!(lower_bound(&a, b"b"), 1);
        assert_eq!(lower_bound(&a, b"bb"), 2);
        assert_eq!(lower_bound(&a, b"z"), 3);
    }
}
