//! Mergeable partial aggregate states and their stored encoding (one value per group in delta
//! parts and state segments). Documented byte by byte in `docs/format.md`.
//!
//! A value is `0x01` (encoding version), the number of states as u16 LE, then each state as a
//! tag byte and its payload (little-endian numbers). Merging two values merges their states
//! position by position; merging is associative and commutative, so parts and segments may be
//! combined in any grouping and ingest never reads before it writes.

use std::cmp::Ordering;

use super::key::KeyValue;
use crate::error::{Error, Result};
use crate::sketch::{DistinctSet, Hll, Quantiles, Theta, TopK};

/// Encoding version of a state value.
pub(crate) const STATE_VERSION: u8 = 1;

/// The partial state of one aggregate over one group.
#[derive(Debug, Clone, PartialEq)]
pub enum AggState {
    /// `count(*)` / `count(x)`: rows (or non-null values) counted.
    Count(i64),
    /// `sum` of integers (wrapping, like DataFusion's); `None` until a non-null value is seen.
    SumInt(Option<i64>),
    /// `sum` of floats.
    SumFloat(Option<f64>),
    /// `sum` of decimals, in units of the scale.
    SumDecimal(Option<i128>),
    /// `min`: the smallest non-null value.
    Min(Option<KeyValue>),
    /// `max`: the largest non-null value.
    Max(Option<KeyValue>),
    /// `avg`: sum and count of non-null values.
    Avg {
        /// Sum of the values.
        sum: f64,
        /// Number of values.
        count: i64,
    },
    /// `approx_count_distinct`: a HyperLogLog sketch of the values.
    Hll(Hll),
    /// `count(DISTINCT x)`: the exact set of values.
    Distinct(DistinctSet),
    /// `approx_percentile_cont` / `approx_median`: a t-digest of the values, shared by every
    /// percentile of one argument.
    Quantiles(Quantiles),
    /// `approx_top_k(x, k)` / `topk_sketch(x)`: a frequent items sketch of the values' text.
    TopK(TopK),
    /// `theta_sketch(x)`: a theta sketch of the values.
    Theta(Theta),
}

const TAG_COUNT: u8 = 1;
const TAG_SUM_INT: u8 = 2;
const TAG_SUM_FLOAT: u8 = 3;
const TAG_SUM_DECIMAL: u8 = 4;
const TAG_MIN: u8 = 5;
const TAG_MAX: u8 = 6;
const TAG_AVG: u8 = 7;
const TAG_HLL: u8 = 8;
const TAG_DISTINCT: u8 = 9;
const TAG_QUANTILES: u8 = 10;
const TAG_TOP_K: u8 = 11;
const TAG_THETA: u8 = 12;

impl AggState {
    /// Combines another partial state of the same aggregate into this one.
    pub(crate) fn merge(&mut self, other: &AggState) -> Result<()> {
        match (self, other) {
            (AggState::Count(a), AggState::Count(b)) => *a = a.wrapping_add(*b),
            (AggState::SumInt(a), AggState::SumInt(b)) => *a = add_opt(*a, *b, i64::wrapping_add),
            (AggState::SumFloat(a), AggState::SumFloat(b)) => *a = add_opt(*a, *b, |x, y| x + y),
            (AggState::SumDecimal(a), AggState::SumDecimal(b)) => {
                *a = add_opt(*a, *b, i128::wrapping_add)
            }
            (AggState::Min(a), AggState::Min(b)) => keep(a, b, Ordering::Less),
            (AggState::Max(a), AggState::Max(b)) => keep(a, b, Ordering::Greater),
            (AggState::Avg { sum, count }, AggState::Avg { sum: s, count: c }) => {
                *sum += s;
                // Wrapping like `Count`: a stored count near i64::MAX (only a damaged value has
                // one) must not panic inside RocksDB's merge callback.
                *count = count.wrapping_add(*c);
            }
            (AggState::Hll(a), AggState::Hll(b)) => a.merge(b),
            (AggState::Distinct(a), AggState::Distinct(b)) => a.merge(b)?,
            (AggState::Quantiles(a), AggState::Quantiles(b)) => a.merge(b)?,
            (AggState::TopK(a), AggState::TopK(b)) => a.merge(b)?,
            (AggState::Theta(a), AggState::Theta(b)) => a.merge(b),
            (a, b) => {
                return Err(Error::Corrupt(format!(
                    "cannot merge view states {a:?} and {b:?}"
                )));
            }
        }
        Ok(())
    }
}

fn add_opt<T: Copy>(a: Option<T>, b: Option<T>, add: impl Fn(T, T) -> T) -> Option<T> {
    match (a, b) {
        (Some(x), Some(y)) => Some(add(x, y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Keeps in `a` whichever of `a` and `b` compares as `want` (Less for min, Greater for max).
fn keep(a: &mut Option<KeyValue>, b: &Option<KeyValue>, want: Ordering) {
    if let Some(b) = b
        && a.as_ref().is_none_or(|a| compare(b, a) == want)
    {
        *a = Some(b.clone());
    }
}

/// Orders two values of the same kind the way DataFusion's min/max do.
pub(crate) fn compare(a: &KeyValue, b: &KeyValue) -> Ordering {
    match (a, b) {
        (KeyValue::Int(x), KeyValue::Int(y)) => x.cmp(y),
        (KeyValue::Float(x), KeyValue::Float(y)) => x.total_cmp(y),
        (KeyValue::Decimal(x), KeyValue::Decimal(y)) => x.cmp(y),
        (KeyValue::Bool(x), KeyValue::Bool(y)) => x.cmp(y),
        (KeyValue::Bytes(x), KeyValue::Bytes(y)) => x.cmp(y),
        _ => Ordering::Equal,
    }
}

/// Encodes the states of one group.
pub(crate) fn encode(states: &[AggState]) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 + states.len() * 10);
    encode_into(states.iter(), &mut out);
    out
}

/// Appends the encoding of the states of one group to `out`.
pub(crate) fn encode_into<'a>(
    states: impl ExactSizeIterator<Item = &'a AggState>,
    out: &mut Vec<u8>,
) {
    let out = &mut *out;
    out.push(STATE_VERSION);
    out.extend_from_slice(&(states.len() as u16).to_le_bytes());
    for state in states {
        match state {
            AggState::Count(n) => {
                out.push(TAG_COUNT);
                out.extend_from_slice(&n.to_le_bytes());
            }
            AggState::SumInt(v) => {
                out.push(TAG_SUM_INT);
                opt(out, v.map(|v| v.to_le_bytes()));
            }
            AggState::SumFloat(v) => {
                out.push(TAG_SUM_FLOAT);
                opt(out, v.map(|v| v.to_le_bytes()));
            }
            AggState::SumDecimal(v) => {
                out.push(TAG_SUM_DECIMAL);
                opt(out, v.map(|v| v.to_le_bytes()));
            }
            AggState::Min(v) | AggState::Max(v) => {
                out.push(if matches!(state, AggState::Min(_)) {
                    TAG_MIN
                } else {
                    TAG_MAX
                });
                match v {
                    None => out.push(0),
                    Some(v) => {
                        out.push(1);
                        encode_scalar(out, v);
                    }
                }
            }
            AggState::Avg { sum, count } => {
                out.push(TAG_AVG);
                out.extend_from_slice(&sum.to_le_bytes());
                out.extend_from_slice(&count.to_le_bytes());
            }
            AggState::Hll(hll) => {
                out.push(TAG_HLL);
                blob(out, &hll.to_bytes());
            }
            AggState::Distinct(set) => {
                out.push(TAG_DISTINCT);
                blob(out, &set.to_bytes());
            }
            AggState::Quantiles(sketch) => {
                out.push(TAG_QUANTILES);
                blob(out, &sketch.to_bytes());
            }
            AggState::TopK(sketch) => {
                out.push(TAG_TOP_K);
                blob(out, &sketch.to_bytes());
            }
            AggState::Theta(sketch) => {
                out.push(TAG_THETA);
                blob(out, &sketch.to_bytes());
            }
        }
    }
}

fn blob(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn opt<const N: usize>(out: &mut Vec<u8>, bytes: Option<[u8; N]>) {
    match bytes {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            out.extend_from_slice(&b);
        }
    }
}

fn encode_scalar(out: &mut Vec<u8>, v: &KeyValue) {
    match v {
        KeyValue::Null => out.push(0),
        KeyValue::Int(x) => {
            out.push(1);
            out.extend_from_slice(&x.to_le_bytes());
        }
        KeyValue::Float(x) => {
            out.push(2);
            out.extend_from_slice(&x.to_le_bytes());
        }
        KeyValue::Decimal(x) => {
            out.push(3);
            out.extend_from_slice(&x.to_le_bytes());
        }
        KeyValue::Bool(x) => {
            out.push(4);
            out.push(u8::from(*x));
        }
        KeyValue::Bytes(x) => {
            out.push(5);
            out.extend_from_slice(&(x.len() as u32).to_le_bytes());
            out.extend_from_slice(x);
        }
    }
}

/// Reads the states of one group.
pub(crate) fn decode(bytes: &[u8]) -> Result<Vec<AggState>> {
    let mut states = Vec::new();
    visit(bytes, |_, state| {
        states.push(state.to_owned()?);
        Ok(())
    })?;
    Ok(states)
}

/// One stored state, borrowed from its encoded value: sketches and sets stay serialized until
/// [`StateRef::to_owned`] (or the caller) decodes them.
#[derive(Debug)]
pub(crate) enum StateRef<'a> {
    Count(i64),
    SumInt(Option<i64>),
    SumFloat(Option<f64>),
    SumDecimal(Option<i128>),
    Min(Option<KeyValue>),
    Max(Option<KeyValue>),
    Avg {
        sum: f64,
        count: i64,
    },
    /// A serialized HLL sketch (the bytes `hll_sketch` returns).
    Hll(&'a [u8]),
    /// A serialized exact distinct set.
    Distinct(&'a [u8]),
    /// A serialized t-digest (the bytes `quantile_sketch` returns).
    Quantiles(&'a [u8]),
    /// A serialized frequent items sketch (the bytes `topk_sketch` returns).
    TopK(&'a [u8]),
    /// A serialized theta sketch (the bytes `theta_sketch` returns).
    Theta(&'a [u8]),
}

impl StateRef<'_> {
    /// The state, decoded.
    pub(crate) fn to_owned(&self) -> Result<AggState> {
        Ok(match self {
            StateRef::Count(n) => AggState::Count(*n),
            StateRef::SumInt(v) => AggState::SumInt(*v),
            StateRef::SumFloat(v) => AggState::SumFloat(*v),
            StateRef::SumDecimal(v) => AggState::SumDecimal(*v),
            StateRef::Min(v) => AggState::Min(v.clone()),
            StateRef::Max(v) => AggState::Max(v.clone()),
            StateRef::Avg { sum, count } => AggState::Avg {
                sum: *sum,
                count: *count,
            },
            StateRef::Hll(bytes) => AggState::Hll(Hll::from_bytes(bytes)?),
            StateRef::Distinct(bytes) => AggState::Distinct(DistinctSet::from_bytes(bytes)?),
            StateRef::Quantiles(bytes) => AggState::Quantiles(Quantiles::from_bytes(bytes)?),
            StateRef::TopK(bytes) => AggState::TopK(TopK::from_bytes(bytes)?),
            StateRef::Theta(bytes) => AggState::Theta(Theta::from_bytes(bytes)?),
        })
    }
}

/// Calls `f` with the position and borrowed form of each state of one encoded group value,
/// checking the encoding as it goes.
pub(crate) fn visit<'a>(
    bytes: &'a [u8],
    mut f: impl FnMut(usize, StateRef<'a>) -> Result<()>,
) -> Result<()> {
    let mut r = Reader(bytes);
    let version = r.u8()?;
    if version != STATE_VERSION {
        return Err(Error::Corrupt(format!(
            "view state has encoding version {version}, expected {STATE_VERSION}"
        )));
    }
    let n = u16::from_le_bytes(r.array()?);
    for i in 0..n as usize {
        let state = match r.u8()? {
            TAG_COUNT => StateRef::Count(i64::from_le_bytes(r.array()?)),
            TAG_SUM_INT => StateRef::SumInt(r.opt()?.map(i64::from_le_bytes)),
            TAG_SUM_FLOAT => StateRef::SumFloat(r.opt()?.map(f64::from_le_bytes)),
            TAG_SUM_DECIMAL => StateRef::SumDecimal(r.opt()?.map(i128::from_le_bytes)),
            tag @ (TAG_MIN | TAG_MAX) => {
                let value = if r.u8()? == 0 {
                    None
                } else {
                    Some(r.scalar()?)
                };
                if tag == TAG_MIN {
                    StateRef::Min(value)
                } else {
                    StateRef::Max(value)
                }
            }
            TAG_AVG => StateRef::Avg {
                sum: f64::from_le_bytes(r.array()?),
                count: i64::from_le_bytes(r.array()?),
            },
            TAG_HLL => StateRef::Hll(r.blob()?),
            TAG_DISTINCT => StateRef::Distinct(r.blob()?),
            TAG_QUANTILES => StateRef::Quantiles(r.blob()?),
            TAG_TOP_K => StateRef::TopK(r.blob()?),
            TAG_THETA => StateRef::Theta(r.blob()?),
            tag => return Err(Error::Corrupt(format!("unknown view state tag {tag}"))),
        };
        f(i, state)?;
    }
    if !r.0.is_empty() {
        return Err(Error::Corrupt("trailing bytes after view state".into()));
    }
    Ok(())
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(Error::Corrupt("truncated view state".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    fn blob(&mut self) -> Result<&'a [u8]> {
        let len = u32::from_le_bytes(self.array()?) as usize;
        self.take(len)
    }

    fn opt<const N: usize>(&mut self) -> Result<Option<[u8; N]>> {
        match self.u8()? {
            0 => Ok(None),
            _ => Ok(Some(self.array()?)),
        }
    }

    fn scalar(&mut self) -> Result<KeyValue> {
        Ok(match self.u8()? {
            1 => KeyValue::Int(i64::from_le_bytes(self.array()?)),
            2 => KeyValue::Float(f64::from_le_bytes(self.array()?)),
            3 => KeyValue::Decimal(i128::from_le_bytes(self.array()?)),
            4 => KeyValue::Bool(self.u8()? != 0),
            5 => {
                let len = u32::from_le_bytes(self.array()?) as usize;
                KeyValue::Bytes(self.take(len)?.to_vec())
            }
            kind => {
                return Err(Error::Corrupt(format!(
                    "unknown value kind {kind} in view state"
                )));
            }
        })
    }
}

/// Merges encoded values into one: decodes `first`, merges each of `rest` into it state by
/// state, and encodes the result.
pub(crate) fn merge_values<'a>(
    first: &[u8],
    rest: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<u8>> {
    let mut states = decode(first)?;
    let others = rest
        .into_iter()
        .map(decode)
        .collect::<Result<Vec<Vec<AggState>>>>()?;
    if others.iter().any(|o| o.len() != states.len()) {
        return Err(Error::Corrupt("view states of different lengths".into()));
    }
    for (i, state) in states.iter_mut().enumerate() {
        match state {
            // One union for all the sketches of this state, not one per pair.
            AggState::Hll(hll) => {
                let sketches = same_kind(i, &*hll, &others, |s| match s {
                    AggState::Hll(h) => Some(h),
                    _ => None,
                })?;
                *hll = Hll::union_all(sketches);
            }
            AggState::Quantiles(sketch) => {
                let sketches = same_kind(i, &*sketch, &others, |s| match s {
                    AggState::Quantiles(q) => Some(q),
                    _ => None,
                })?;
                *sketch = Quantiles::union_all(sketches)?;
            }
            AggState::Theta(theta) => {
                let sketches = same_kind(i, &*theta, &others, |s| match s {
                    AggState::Theta(t) => Some(t),
                    _ => None,
                })?;
                *theta = Theta::union_all(sketches);
            }
            _ => {
                for other in &others {
                    state.merge(&other[i])?;
                }
            }
        }
    }
    Ok(encode(&states))
}

/// `first` and the state at position `i` of each of `others`, all of the kind `pick` accepts.
fn same_kind<'a, T: std::fmt::Debug>(
    i: usize,
    first: &'a T,
    others: &'a [Vec<AggState>],
    pick: impl Fn(&'a AggState) -> Option<&'a T>,
) -> Result<Vec<&'a T>> {
    let mut all = Vec::with_capacity(1 + others.len());
    all.push(first);
    for other in others {
        match pick(&other[i]) {
            Some(s) => all.push(s),
            None => {
                return Err(Error::Corrupt(format!(
                    "cannot merge view states {first:?} and {:?}",
                    other[i]
                )));
            }
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_merge() {
        let a = vec![
            AggState::Count(3),
            AggState::SumInt(None),
            AggState::SumFloat(Some(1.5)),
            AggState::SumDecimal(Some(-7)),
            AggState::Min(Some(KeyValue::Bytes(b"m".to_vec()))),
            AggState::Max(Some(KeyValue::Int(4))),
            AggState::Avg { sum: 3.0, count: 2 },
        ];
        let b = vec![
            AggState::Count(2),
            AggState::SumInt(Some(5)),
            AggState::SumFloat(None),
            AggState::SumDecimal(Some(10)),
            AggState::Min(Some(KeyValue::Bytes(b"a".to_vec()))),
            AggState::Max(None),
            AggState::Avg { sum: 1.0, count: 1 },
        ];
        assert_eq!(decode(&encode(&a)).unwrap(), a);
        let merged = decode(&merge_values(&encode(&a), [encode(&b).as_slice()]).unwrap()).unwrap();
        assert_eq!(
            merged,
            vec![
                AggState::Count(5),
                AggState::SumInt(Some(5)),
                AggState::SumFloat(Some(1.5)),
                AggState::SumDecimal(Some(3)),
                AggState::Min(Some(KeyValue::Bytes(b"a".to_vec()))),
                AggState::Max(Some(KeyValue::Int(4))),
                AggState::Avg { sum: 4.0, count: 3 },
            ]
        );
        assert!(decode(&encode(&a)[..5]).is_err());
        assert!(merge_values(&encode(&a), [encode(&b[..2]).as_slice()]).is_err());
        assert!(merge_values(&encode(&b[..2]), [encode(&a).as_slice()]).is_err());
    }

    #[test]
    fn sketch_states_round_trip_merge_and_refuse_damage() {
        let state = |values: std::ops::Range<i64>| {
            let mut top = TopK::new();
            let mut theta = Theta::new();
            for v in values {
                top.insert(&(v % 7).to_string());
                theta.insert(&KeyValue::Int(v));
            }
            vec![AggState::TopK(top), AggState::Theta(theta)]
        };
        let (a, b) = (state(0..100), state(50..300));
        assert_eq!(decode(&encode(&a)).unwrap(), a);
        let merged = merge_values(&encode(&a), [encode(&b).as_slice()]).unwrap();
        let swapped = merge_values(&encode(&b), [encode(&a).as_slice()]).unwrap();
        assert_eq!(
            merged, swapped,
            "merging in either order gives the same bytes"
        );
        let merged = decode(&merged).unwrap();
        let (AggState::TopK(top), AggState::Theta(theta)) = (&merged[0], &merged[1]) else {
            panic!("{merged:?}");
        };
        assert_eq!(top.total(), 350);
        assert_eq!(theta.estimate(), 300.0);
        // A damaged sketch inside a well-formed value is refused, never a panic.
        let mut damaged = encode(&a);
        let at = damaged.len() - 20;
        damaged[at] ^= 0xff;
        damaged[8] ^= 0xff;
        assert!(decode(&damaged).is_err());
        assert!(merge_values(&encode(&a[..1]), [encode(&b[1..]).as_slice()]).is_err());
    }

    /// Found by fuzzing (fuzz/fuzz_targets/view_state.rs): merging two stored `avg` states
    /// whose counts overflow i64 panicked (with overflow checks) instead of wrapping as `count`
    /// does.
    #[test]
    fn avg_counts_wrap_like_counts() {
        let big = AggState::Avg {
            sum: 1.0,
            count: i64::MAX,
        };
        let merged =
            merge_values(&encode(std::slice::from_ref(&big)), [&encode(&[big])[..]]).unwrap();
        assert_eq!(
            decode(&merged).unwrap(),
            vec![AggState::Avg {
                sum: 2.0,
                count: -2
            }]
        );
    }
}
