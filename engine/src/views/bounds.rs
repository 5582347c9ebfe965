//! Filters on a view's group columns, turned into bounds on its keys: comparisons with literals
//! on the leading group columns narrow the RocksDB scan to a key range, and comparisons on any
//! group column are checked on the decoded key before a group's states are decoded.
//!
//! The bounds only ever keep a superset of the matching groups; DataFusion still applies every
//! filter to the rows a view returns (they are pushed down as `Inexact`).

use std::cmp::Ordering;

use arrow::compute::cast;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};

use super::column::Column;
use super::definition::{CompiledView, OutputSource};
use super::key::{KeyValue, encode_value};

/// A comparison of one group column with a value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GroupBound {
    /// Index of the group expression.
    pub group: usize,
    /// How the group value compares with `value` in the rows that pass.
    pub op: Op,
    /// The value, in the group's canonical form (never NULL).
    pub value: KeyValue,
}

/// A comparison operator, read as `group <op> value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

impl Op {
    fn flip(self) -> Op {
        match self {
            Op::Eq => Op::Eq,
            Op::Lt => Op::Gt,
            Op::LtEq => Op::GtEq,
            Op::Gt => Op::Lt,
            Op::GtEq => Op::LtEq,
        }
    }

    fn of(op: &Operator) -> Option<Op> {
        Some(match op {
            Operator::Eq => Op::Eq,
            Operator::Lt => Op::Lt,
            Operator::LtEq => Op::LtEq,
            Operator::Gt => Op::Gt,
            Operator::GtEq => Op::GtEq,
            _ => return None,
        })
    }
}

impl GroupBound {
    /// Whether an encoded group value (see [`super::key`]) passes this bound: the encoding
    /// preserves order, so this compares bytes. NULL (`0x00`) never passes.
    pub(crate) fn admits_encoded(&self, encoded: &[u8], bound: &[u8]) -> bool {
        if encoded.first() != Some(&1) {
            return false;
        }
        let ordering = encoded.cmp(bound);
        match self.op {
            Op::Eq => ordering == Ordering::Equal,
            Op::Lt => ordering == Ordering::Less,
            Op::LtEq => ordering != Ordering::Greater,
            Op::Gt => ordering == Ordering::Greater,
            Op::GtEq => ordering != Ordering::Less,
        }
    }

    /// The encoded form of this bound's value.
    pub(crate) fn encoded(&self) -> Vec<u8> {
        let mut out = Vec::new();
        encode_value(&mut out, &self.value);
        out
    }
}

/// The bounds that `filter` puts on `view`'s group columns (none when it is not a comparison
/// of a group column with a literal).
pub(crate) fn bounds_of(view: &CompiledView, filter: &Expr) -> Vec<GroupBound> {
    match filter {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let Some(op) = Op::of(op) else {
                return vec![];
            };
            match (left.as_ref(), right.as_ref()) {
                (column, Expr::Literal(value, _)) => bound(view, column, op, value),
                (Expr::Literal(value, _), column) => bound(view, column, op.flip(), value),
                _ => None,
            }
            .into_iter()
            .collect()
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) => match (low.as_ref(), high.as_ref()) {
            (Expr::Literal(low, _), Expr::Literal(high, _)) => [
                bound(view, expr, Op::GtEq, low),
                bound(view, expr, Op::LtEq, high),
            ]
            .into_iter()
            .flatten()
            .collect(),
            _ => vec![],
        },
        _ => vec![],
    }
}

/// `column <op> literal` as a bound, if `column` is a group column of the view and the literal
/// converts to the group's type.
fn bound(
    view: &CompiledView,
    column: &Expr,
    op: Op,
    literal: &datafusion::common::ScalarValue,
) -> Option<GroupBound> {
    let Expr::Column(column) = column else {
        return None;
    };
    let index = view.schema.index_of(&column.name).ok()?;
    let OutputSource::Group(group) = *view.outputs.get(index)? else {
        return None;
    };
    if literal.is_null() {
        return None;
    }
    let group_def = &view.groups[group];
    let array = literal.to_array().ok()?;
    let array = if array.data_type() == &group_def.output_type {
        array
    } else {
        // Only casts that keep the value exactly (a lossy cast could drop matching groups).
        let converted = cast(&array, &group_def.output_type).ok()?;
        let back = cast(&converted, array.data_type()).ok()?;
        if back.as_ref() != array.as_ref() {
            return None;
        }
        converted
    };
    let value = match Column::new(array, group_def.kind).ok()?.get(0) {
        KeyValue::Null => return None,
        // Group keys hold one zero and one NaN; compare with the same.
        KeyValue::Float(v) => KeyValue::Float(if v == 0.0 {
            0.0
        } else if v.is_nan() {
            f64::NAN
        } else {
            v
        }),
        other => other,
    };
    Some(GroupBound { group, op, value })
}

/// The key range (within the view's prefix) that holds every group passing `bounds`:
/// equalities on the leading group columns extend the prefix, then a range on the next one
/// bounds it. Returns `(lower inclusive, upper exclusive)`.
pub(crate) fn key_range(prefix: &[u8], groups: usize, bounds: &[GroupBound]) -> (Vec<u8>, Vec<u8>) {
    let mut fixed = prefix.to_vec();
    for group in 0..groups {
        let here: Vec<&GroupBound> = bounds.iter().filter(|b| b.group == group).collect();
        if let Some(eq) = here.iter().find(|b| b.op == Op::Eq) {
            encode_value(&mut fixed, &eq.value);
            continue;
        }
        if here.is_empty() {
            break;
        }
        let mut lower = fixed.clone();
        let mut upper = prefix_end(&fixed);
        for b in here {
            let mut key = fixed.clone();
            encode_value(&mut key, &b.value);
            match b.op {
                Op::Gt => lower = lower.max(prefix_end(&key)),
                Op::GtEq => lower = lower.max(key),
                Op::Lt => upper = upper.min(key),
                Op::LtEq => upper = upper.min(prefix_end(&key)),
                Op::Eq => unreachable!("handled above"),
            }
        }
        // NULL group values (presence byte 0) never pass a comparison.
        let mut non_null = fixed.clone();
        non_null.push(1);
        lower = lower.max(non_null);
        return (lower, upper);
    }
    let upper = prefix_end(&fixed);
    (fixed, upper)
}

/// The smallest key greater than every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return end;
        }
    }
    // Only reachable for an all-0xFF prefix, which view prefixes never are.
    vec![0xFF; prefix.len() + 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(values: &[KeyValue]) -> Vec<u8> {
        let mut k = vec![0, 0, 0, 0, 0, 0, 0, 7];
        for v in values {
            encode_value(&mut k, v);
        }
        k
    }

    fn inside(range: &(Vec<u8>, Vec<u8>), k: &[u8]) -> bool {
        range.0.as_slice() <= k && k < range.1.as_slice()
    }

    #[test]
    fn ranges_hold_exactly_the_bounded_keys() {
        let prefix = [0, 0, 0, 0, 0, 0, 0, 7];
        let text = |s: &str| KeyValue::Bytes(s.as_bytes().to_vec());
        let bounds = vec![
            GroupBound {
                group: 0,
                op: Op::Eq,
                value: text("b"),
            },
            GroupBound {
                group: 1,
                op: Op::Gt,
                value: KeyValue::Int(10),
            },
            GroupBound {
                group: 1,
                op: Op::LtEq,
                value: KeyValue::Int(20),
            },
        ];
        let range = key_range(&prefix, 2, &bounds);
        for (values, expected) in [
            (vec![text("b"), KeyValue::Int(11)], true),
            (vec![text("b"), KeyValue::Int(20)], true),
            (vec![text("b"), KeyValue::Int(10)], false),
            (vec![text("b"), KeyValue::Int(21)], false),
            (vec![text("b"), KeyValue::Null], false),
            (vec![text("bb"), KeyValue::Int(15)], false),
            (vec![text("a"), KeyValue::Int(15)], false),
            (vec![KeyValue::Null, KeyValue::Int(15)], false),
        ] {
            assert_eq!(inside(&range, &key(&values)), expected, "{values:?}");
        }
        let everything = key_range(&prefix, 2, &[]);
        assert!(inside(&everything, &key(&[KeyValue::Null, KeyValue::Null])));
        assert!(!inside(&everything, &[0, 0, 0, 0, 0, 0, 0, 8]));
    }
}
