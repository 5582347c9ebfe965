//! Frequent items ("top-k") sketches: Apache DataSketches' frequent items sketch over the text
//! form of values, in its portable serialized form (the one the Python `frequent_strings_sketch`
//! reads and writes).
//!
//! Items are strings: a view or query casts every value to text first (integers as `42`,
//! timestamps as Arrow writes them), so one sketch format serves every key kind and a sketch
//! built anywhere from the same text unions with Tally's.

use datasketches::frequencies::{ErrorType, FrequentItemsSketch};

use crate::error::{Error, Result};

/// log2 of the sketch's maximum map size: 1024 slots, of which 768 hold items. Counts are
/// exact while a group has at most 768 distinct values; beyond that every estimate is within
/// `3.5 / 1024 ≈ 0.34%` of the group's row count of the true count (the sketch's a priori
/// bound), and usually much closer.
pub const TOPK_LG_MAX_MAP_SIZE: u8 = 10;

/// The largest map a stored or given sketch may declare (2^20 slots): what reading one may
/// allocate is bounded, whatever its bytes say.
const LG_MAP_SIZE_LIMIT: u8 = 20;

/// The largest total weight a sketch may hold: counts are returned as BIGINT, and the sum of
/// two sketches' weights must not overflow the sketch's u64 arithmetic.
const MAX_WEIGHT: u64 = i64::MAX as u64;

/// A frequent items sketch of the (text form of the) values of one aggregate over one group.
#[derive(Clone)]
pub struct TopK(FrequentItemsSketch<String>);

/// One of the most frequent values, with its estimated count and bounds on the true count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopItem {
    /// The value's text form.
    pub value: String,
    /// The estimated count (the upper bound: never below the true count).
    pub count: u64,
    /// The true count is at least this.
    pub lower_bound: u64,
}

impl TopK {
    /// An empty sketch of [`TOPK_LG_MAX_MAP_SIZE`].
    pub fn new() -> TopK {
        TopK(
            FrequentItemsSketch::new(1 << TOPK_LG_MAX_MAP_SIZE)
                .expect("TOPK_LG_MAX_MAP_SIZE is a valid map size"),
        )
    }

    /// Counts one value (its text form).
    pub fn insert(&mut self, value: &str) {
        if self.0.total_weight() >= MAX_WEIGHT {
            return;
        }
        self.0.update_ref(value);
    }

    /// An estimate of the memory the sketch holds, in bytes.
    pub fn memory_size(&self) -> usize {
        self.0.estimated_size()
    }

    /// Whether no value was counted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The number of values counted.
    pub fn total(&self) -> u64 {
        self.0.total_weight()
    }

    /// The largest amount by which an estimated count may exceed the true count (0 while the
    /// sketch is exact).
    pub fn maximum_error(&self) -> u64 {
        self.0.maximum_error()
    }

    /// Adds another sketch's counts to this one. An error when the two together would count
    /// more than `i64::MAX` values (only damaged sketches do).
    pub fn merge(&mut self, other: &TopK) -> Result<()> {
        let total = self.0.total_weight().checked_add(other.0.total_weight());
        if total.is_none_or(|t| t > MAX_WEIGHT) {
            return Err(Error::Corrupt(
                "frequent items sketches count more than 2^63 values together".into(),
            ));
        }
        self.0.merge(&other.0);
        Ok(())
    }

    /// The sketch holding the counts of all `sketches`.
    pub fn union_all<'a>(sketches: impl IntoIterator<Item = &'a TopK>) -> Result<TopK> {
        let mut union = TopK::new();
        for sketch in sketches {
            union.merge(sketch)?;
        }
        Ok(union)
    }

    /// The (at most) `k` most frequent values, by estimated count, highest first; equal counts
    /// in ascending order of value, so that the answer depends on the counts alone.
    pub fn top(&self, k: usize) -> Vec<TopItem> {
        let mut rows: Vec<TopItem> = self
            .0
            .frequent_items_with_threshold(ErrorType::NoFalseNegatives, 0)
            .into_iter()
            .map(|row| TopItem {
                value: row.item().clone(),
                count: row.estimate(),
                lower_bound: row.lower_bound(),
            })
            .collect();
        rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
        rows.truncate(k);
        rows
    }

    /// The `k` most frequent values as a JSON array of `{"value": text, "count": integer}`
    /// objects, highest count first (`[]` when nothing was counted).
    pub fn top_json(&self, k: usize) -> String {
        let mut out = String::from("[");
        for (i, item) in self.top(k).iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str("{\"value\": ");
            json_string(&mut out, &item.value);
            out.push_str(", \"count\": ");
            out.push_str(&item.count.to_string());
            out.push('}');
        }
        out.push(']');
        out
    }

    /// The DataSketches serialized form (strings items: u32 LE length and UTF-8 bytes), in
    /// one canonical layout: items in ascending byte order, and the smallest current map size
    /// that holds them. DataSketches writes items in its hash table's order, which depends on
    /// the order they arrived in; this form depends only on the counts, so a view's sketch
    /// merged from many commits has the bytes of one built in one pass. Every DataSketches
    /// library reads it (they do not require an item order).
    pub fn to_bytes(&self) -> Vec<u8> {
        if self.0.is_empty() {
            return self.0.serialize();
        }
        let mut items: Vec<(String, u64)> = self
            .0
            .frequent_items_with_threshold(ErrorType::NoFalseNegatives, 0)
            .into_iter()
            .map(|row| (row.item().clone(), row.lower_bound()))
            .collect();
        items.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let lg_max = self.0.lg_max_map_size();
        // The map of 2^lg slots holds 3/4 of them; at least 2^3 slots.
        let lg_cur = (3..lg_max)
            .find(|lg| (1usize << lg) * 3 / 4 >= items.len())
            .unwrap_or(lg_max);
        let size: usize = items.iter().map(|(v, _)| 12 + v.len()).sum();
        let mut out = Vec::with_capacity(32 + size);
        // Preamble longs, serial version, family (10: frequent items), map sizes, flags.
        out.extend_from_slice(&[4, 1, 10, lg_max, lg_cur, 0, 0, 0]);
        out.extend_from_slice(&(items.len() as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&self.0.total_weight().to_le_bytes());
        out.extend_from_slice(&self.0.maximum_error().to_le_bytes());
        for (_, count) in &items {
            out.extend_from_slice(&count.to_le_bytes());
        }
        for (value, _) in &items {
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(value.as_bytes());
        }
        out
    }

    /// Reads a sketch written by [`TopK::to_bytes`] or by another DataSketches library's
    /// frequent strings sketch.
    pub fn from_bytes(bytes: &[u8]) -> Result<TopK> {
        let invalid = |why: String| Error::Corrupt(format!("invalid frequent items sketch: {why}"));
        // Bytes 3 and 4 declare the map sizes; a huge one would allocate before any check.
        if bytes.len() >= 5 && bytes[3].max(bytes[4]) > LG_MAP_SIZE_LIMIT {
            return Err(invalid(format!(
                "a map of 2^{} slots is larger than the 2^{LG_MAP_SIZE_LIMIT} Tally reads",
                bytes[3].max(bytes[4])
            )));
        }
        let sketch = FrequentItemsSketch::<String>::deserialize(bytes)
            .map_err(|e| invalid(e.to_string()))?;
        if sketch.total_weight() > MAX_WEIGHT || sketch.maximum_error() > sketch.total_weight() {
            return Err(invalid(
                "its error offset or total weight is out of range".into(),
            ));
        }
        Ok(TopK(sketch))
    }
}

/// Appends `text` to `out` as a JSON string.
fn json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

impl Default for TopK {
    fn default() -> Self {
        TopK::new()
    }
}

impl std::fmt::Debug for TopK {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TopK({})", self.top_json(3))
    }
}

impl PartialEq for TopK {
    /// Two sketches are equal when they give the same counts for the same values.
    fn eq(&self, other: &TopK) -> bool {
        self.total() == other.total()
            && self.maximum_error() == other.maximum_error()
            && self.top(usize::MAX) == other.top(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sketch(values: &[&str]) -> TopK {
        let mut s = TopK::new();
        for v in values {
            s.insert(v);
        }
        s
    }

    #[test]
    fn counts_are_exact_below_the_map_capacity_and_ties_sort_by_value() {
        let s = sketch(&["b", "a", "b", "c", "a", "b", "d"]);
        assert_eq!(
            s.top_json(3),
            r#"[{"value": "b", "count": 3}, {"value": "a", "count": 2}, {"value": "c", "count": 1}]"#
        );
        assert_eq!(s.top(10).len(), 4);
        assert_eq!(TopK::new().top_json(5), "[]");
        assert_eq!(
            sketch(&["q\"\\\n"]).top_json(1),
            r#"[{"value": "q\"\\\n", "count": 1}]"#
        );
    }

    #[test]
    fn merged_pieces_count_like_one_pass_and_round_trip() {
        let values: Vec<String> = (0..5000).map(|i| format!("v{}", i % 300)).collect();
        let mut one = TopK::new();
        let mut pieces = [TopK::new(), TopK::new(), TopK::new()];
        for (i, v) in values.iter().enumerate() {
            one.insert(v);
            pieces[i % 3].insert(v);
        }
        let stored: Vec<TopK> = pieces
            .iter()
            .map(|p| TopK::from_bytes(&p.to_bytes()).unwrap())
            .collect();
        let merged = TopK::union_all(&stored).unwrap();
        assert_eq!(merged, one);
        assert_eq!(merged.to_bytes(), one.to_bytes(), "one canonical form");
        // DataSketches' own layout reads as the same sketch.
        let theirs = TopK::from_bytes(&one.0.serialize()).unwrap();
        assert_eq!(theirs.to_bytes(), one.to_bytes());
        assert_eq!(merged.top(5), one.top(5));
        assert_eq!(TopK::from_bytes(&merged.to_bytes()).unwrap(), merged);
    }

    #[test]
    fn beyond_capacity_estimates_stay_within_the_bound() {
        let mut s = TopK::new();
        let mut truth = std::collections::HashMap::new();
        for i in 0u64..200_000 {
            // A skewed stream: a few heavy values and a long tail.
            let v = if i % 3 == 0 {
                format!("heavy{}", i % 7)
            } else {
                format!("tail{}", i % 50_000)
            };
            *truth.entry(v.clone()).or_insert(0u64) += 1;
            s.insert(&v);
        }
        assert!(s.maximum_error() > 0);
        let bound = (s.total() as f64 * 3.5 / 1024.0).ceil() as u64;
        for item in s.top(10) {
            let t = truth[&item.value];
            assert!(item.lower_bound <= t && t <= item.count, "{item:?} vs {t}");
            assert!(item.count - t <= bound, "{item:?} vs {t}");
        }
        assert!(s.top(7).iter().all(|i| i.value.starts_with("heavy")));
    }

    #[test]
    fn damaged_sketches_are_refused() {
        assert!(TopK::from_bytes(b"nonsense").is_err());
        assert!(TopK::from_bytes(&[]).is_err());
        let mut bytes = sketch(&["a", "b"]).to_bytes();
        bytes[3] = 30;
        assert!(TopK::from_bytes(&bytes).is_err());
        let good = sketch(&["a", "b"]).to_bytes();
        for cut in 0..good.len() {
            assert!(TopK::from_bytes(&good[..cut]).is_err(), "cut at {cut}");
        }
        // An offset (bytes 24..32) above the total weight.
        let mut bytes = good.clone();
        bytes[24..32].copy_from_slice(&100u64.to_le_bytes());
        assert!(TopK::from_bytes(&bytes).is_err());
    }
}
