//! Theta sketches for set operations on distinct values (union, intersection, A-not-B):
//! Apache DataSketches' theta sketch, serialized in its compact portable form.
//!
//! Values are hashed as DataSketches' C++, Java and Python libraries hash them (MurmurHash3
//! x64-128, seed 9001), so a sketch Python's `update_theta_sketch` builds from the same values
//! unions with Tally's: integers (and dates as days, timestamps as microseconds since the epoch)
//! as the library's `update(int64)` hashes them, the 8 little-endian bytes; floats as its
//! `update(double)`, the 8 bytes of the double with `-0.0` as `0.0` and one NaN; text as its
//! `update(str)`, the UTF-8 bytes, with the empty string skipped as the libraries skip it;
//! bytea as its bytes. Decimals and booleans hash their Tally canonical bytes
//! ([`super::canonical_bytes`]), which no other library produces.

use datasketches::hash::value::raw_bytes;
use datasketches::theta::{
    CompactThetaSketch, ThetaANotB, ThetaIntersection, ThetaSketch, ThetaSketchBuilder, ThetaUnion,
    ThetaUnionBuilder,
};

use crate::error::{Error, Result};
use crate::views::key::KeyValue;

/// log2 of the sketch's nominal number of retained hashes: 4096, DataSketches' default (so a
/// default Python sketch is of the same size). Estimates are exact up to 4096 distinct values;
/// beyond, the relative standard error of a union's estimate is about `1/√4096 ≈ 1.6%`, and
/// an intersection's error grows as the intersection gets smaller against the union.
pub const THETA_LG_K: u8 = 12;

/// DataSketches' default hash seed (its libraries refuse sketches of another seed).
const SEED: u64 = 9001;

/// A theta sketch of the distinct values of one aggregate over one group: an update sketch
/// for values added here, and the compact union of the sketches merged into it.
pub struct Theta {
    building: Option<ThetaSketch>,
    merged: Option<CompactThetaSketch>,
}

impl Theta {
    /// An empty sketch.
    pub fn new() -> Theta {
        Theta {
            building: None,
            merged: None,
        }
    }

    fn builder() -> ThetaSketch {
        ThetaSketchBuilder::default()
            .lg_k(THETA_LG_K)
            .seed(SEED)
            .build()
            .expect("THETA_LG_K and the default seed are valid")
    }

    fn union() -> ThetaUnion {
        ThetaUnionBuilder::default()
            .lg_k(THETA_LG_K)
            .seed(SEED)
            .build()
            .expect("THETA_LG_K and the default seed are valid")
    }

    /// Adds one non-null value (see the module documentation for how each kind is hashed).
    pub fn insert(&mut self, value: &KeyValue) {
        let mut buf = [0u8; 16];
        let bytes = super::canonical_bytes(value, &mut buf);
        if let KeyValue::Bytes(_) = value {
            self.insert_text(bytes);
        } else {
            self.insert_bytes(bytes);
        }
    }

    /// Adds one text value by its UTF-8 bytes; the empty string is skipped, as DataSketches'
    /// `update(str)` skips it.
    pub fn insert_text(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.insert_bytes(bytes);
        }
    }

    /// Adds one value by the bytes it hashes from (8 little-endian bytes for an integer).
    pub fn insert_bytes(&mut self, bytes: &[u8]) {
        self.building
            .get_or_insert_with(Theta::builder)
            .update(raw_bytes::from_slice(bytes));
    }

    /// The sketch as one compact sketch (ordered, as DataSketches serializes by default).
    ///
    /// Values added here go through a DataSketches union, which keeps the `2^THETA_LG_K`
    /// smallest hashes: an update sketch keeps up to 15/16 of twice as many, and where it
    /// drops them depends on the order values came in. After the union the sketch is a
    /// function of the set of values alone, so one built in one pass (an ad-hoc
    /// `theta_sketch`) and a view's, merged from many commits in any order, are the same bytes.
    pub fn compact(&self) -> CompactThetaSketch {
        match (&self.building, &self.merged) {
            (None, Some(merged)) => merged.clone(),
            (None, None) => Theta::builder().compact(true),
            (building, merged) => {
                let mut union = Theta::union();
                if let Some(b) = building {
                    union.update(b).expect("one seed");
                }
                if let Some(m) = merged {
                    union.update(m).expect("one seed");
                }
                union.to_sketch(true)
            }
        }
    }

    fn of(sketch: CompactThetaSketch) -> Theta {
        Theta {
            building: None,
            merged: Some(sketch),
        }
    }

    /// Combines another sketch into this one (set union).
    pub fn merge(&mut self, other: &Theta) {
        *self = Theta::union_all([&*self, other]);
    }

    /// The union of `sketches`, through one DataSketches union.
    pub fn union_all<'a>(sketches: impl IntoIterator<Item = &'a Theta>) -> Theta {
        let mut union = Theta::union();
        for sketch in sketches {
            if let Some(b) = &sketch.building {
                union.update(b).expect("one seed");
            }
            if let Some(m) = &sketch.merged {
                union.update(m).expect("one seed");
            }
        }
        Theta::of(union.to_sketch(true))
    }

    /// The intersection of `sketches`; `None` when there are none.
    pub fn intersect_all<'a>(sketches: impl IntoIterator<Item = &'a Theta>) -> Option<Theta> {
        let mut intersection = ThetaIntersection::with_seed(SEED).expect("the default seed");
        for sketch in sketches {
            intersection
                .update(&sketch.compact())
                .expect("sketches of one seed");
        }
        intersection.to_sketch(true).map(Theta::of)
    }

    /// The values of `self` that are not in `other`.
    pub fn a_not_b(&self, other: &Theta) -> Theta {
        let a_not_b = ThetaANotB::with_seed(SEED).expect("the default seed");
        let result = a_not_b
            .compute(&self.compact(), &other.compact(), true)
            .expect("sketches of one seed");
        Theta::of(result)
    }

    /// The estimated number of distinct values (exact while the sketch is not in estimation
    /// mode).
    pub fn estimate(&self) -> f64 {
        match (&self.building, &self.merged) {
            (None, Some(m)) => m.estimate(),
            (None, None) => 0.0,
            _ => self.compact().estimate(),
        }
    }

    /// An estimate of the memory the sketch holds, in bytes.
    pub fn memory_size(&self) -> usize {
        std::mem::size_of::<Theta>()
            + self
                .building
                .as_ref()
                .map_or(0, ThetaSketch::estimated_size)
            + self
                .merged
                .as_ref()
                .map_or(0, CompactThetaSketch::estimated_size)
    }

    /// Whether the sketch is exact (holds every distinct value's hash).
    pub fn is_exact(&self) -> bool {
        !self.compact().is_estimation_mode()
    }

    /// Whether no value was added.
    pub fn is_empty(&self) -> bool {
        self.building.as_ref().is_none_or(ThetaSketch::is_empty)
            && self
                .merged
                .as_ref()
                .is_none_or(CompactThetaSketch::is_empty)
    }

    /// The DataSketches compact serialized form (ordered, uncompressed).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.compact().serialize()
    }

    /// Reads a compact sketch written by [`Theta::to_bytes`] or by another DataSketches library
    /// (seed 9001). Its hashes must be below its theta and, when it says it is ordered, in
    /// ascending order without repeats.
    pub fn from_bytes(bytes: &[u8]) -> Result<Theta> {
        let invalid = |why: &str| Error::Corrupt(format!("invalid theta sketch: {why}"));
        let sketch = CompactThetaSketch::deserialize_with_seed(bytes, SEED)
            .map_err(|e| invalid(&e.to_string()))?;
        let theta = sketch.theta64();
        let mut hashes: Vec<u64> = sketch.iter().map(|e| e.hash()).collect();
        if hashes.iter().any(|&h| h == 0 || h >= theta) {
            return Err(invalid("a retained hash is not below theta"));
        }
        let ordered = hashes.windows(2).all(|w| w[0] < w[1]);
        if sketch.is_ordered() && !ordered {
            return Err(invalid("it says it is ordered, but its hashes are not"));
        }
        hashes.sort_unstable();
        if hashes.windows(2).any(|w| w[0] == w[1]) {
            return Err(invalid("a hash is retained twice"));
        }
        Ok(Theta::of(sketch))
    }
}

impl Clone for Theta {
    /// The clone holds the compact form (DataSketches' update sketch cannot be cloned).
    fn clone(&self) -> Self {
        if self.building.is_none() && self.merged.is_none() {
            // The initial state of every group of a batch: nothing to compact.
            return Theta::new();
        }
        Theta::of(self.compact())
    }
}

impl Default for Theta {
    fn default() -> Self {
        Theta::new()
    }
}

impl std::fmt::Debug for Theta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Theta(~{})", self.estimate())
    }
}

impl PartialEq for Theta {
    /// Two sketches are equal when they hold the same hashes under the same theta.
    fn eq(&self, other: &Theta) -> bool {
        self.to_bytes() == other.to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(values: impl IntoIterator<Item = i64>) -> Theta {
        let mut t = Theta::new();
        for v in values {
            t.insert(&KeyValue::Int(v));
        }
        t
    }

    #[test]
    fn exact_below_k_and_merged_pieces_equal_one_pass() {
        let one = ints(0..3000);
        assert_eq!(one.estimate(), 3000.0);
        assert!(one.is_exact());
        let pieces: Vec<Theta> = (0..4)
            .map(|p| Theta::from_bytes(&ints((0..3000).filter(|v| v % 4 == p)).to_bytes()).unwrap())
            .collect();
        let union = Theta::union_all(&pieces);
        assert_eq!(union, one);
        let mut pairwise = Theta::new();
        for p in &pieces {
            pairwise.merge(p);
        }
        assert_eq!(pairwise.estimate(), 3000.0);
        assert!(Theta::new().is_empty());
        assert_eq!(
            Theta::from_bytes(&Theta::new().to_bytes())
                .unwrap()
                .estimate(),
            0.0
        );
    }

    /// Beyond exact mode too, pieces merged in any grouping give the one-pass bytes.
    #[test]
    fn estimates_do_not_depend_on_how_values_were_split() {
        let one = ints(0..60_000);
        assert!(!one.is_exact());
        let pieces: Vec<Theta> = (0..6)
            .map(|p| ints((0..60_000).filter(|v| v % 6 == p)))
            .collect();
        assert_eq!(Theta::union_all(&pieces), one);
        // Unions of unions, as compaction builds them, and pairwise merges in another order.
        let left = Theta::union_all(&pieces[..2]);
        let right = Theta::union_all(&pieces[2..]);
        assert_eq!(Theta::union_all([&right, &left]), one);
        let mut pairwise = Theta::new();
        for p in pieces.iter().rev() {
            pairwise.merge(p);
        }
        assert_eq!(pairwise, one);
        let e = one.estimate();
        assert!((e - 60_000.0).abs() < 60_000.0 * 0.05, "{e}");
        // Exact up to 2^12 values.
        assert!(ints(0..4096).is_exact());
        assert_eq!(ints(0..4096).estimate(), 4096.0);
    }

    #[test]
    fn set_operations() {
        let a = ints(0..1000);
        let b = ints(500..2000);
        assert_eq!(Theta::intersect_all([&a, &b]).unwrap().estimate(), 500.0);
        assert_eq!(a.a_not_b(&b).estimate(), 500.0);
        assert_eq!(b.a_not_b(&a).estimate(), 1000.0);
        assert!(Theta::intersect_all([]).is_none());

        // Estimation mode: within a few percent.
        let big_a = ints(0..100_000);
        let big_b = ints(50_000..150_000);
        let both = Theta::intersect_all([&big_a, &big_b]).unwrap().estimate();
        assert!((both - 50_000.0).abs() < 50_000.0 * 0.1, "{both}");
        let union = Theta::union_all([&big_a, &big_b]).estimate();
        assert!((union - 150_000.0).abs() < 150_000.0 * 0.05, "{union}");
    }

    #[test]
    fn text_skips_the_empty_string_and_values_hash_by_kind() {
        let mut t = Theta::new();
        t.insert(&KeyValue::Bytes(b"".to_vec()));
        t.insert_text(b"");
        assert_eq!(t.estimate(), 0.0);
        t.insert(&KeyValue::Bytes(b"x".to_vec()));
        t.insert_text(b"x");
        t.insert(&KeyValue::Float(0.0));
        t.insert(&KeyValue::Float(-0.0));
        assert_eq!(t.estimate(), 2.0);
    }

    #[test]
    fn damaged_sketches_are_refused() {
        assert!(Theta::from_bytes(b"nonsense").is_err());
        assert!(Theta::from_bytes(&[]).is_err());
        let good = ints(0..10).to_bytes();
        for cut in 1..good.len() {
            assert!(Theta::from_bytes(&good[..cut]).is_err(), "cut at {cut}");
        }
        // Two hashes swapped in an ordered sketch.
        let mut swapped = good.clone();
        let (a, b) = (16, 24);
        let first: [u8; 8] = swapped[a..a + 8].try_into().unwrap();
        let second: [u8; 8] = swapped[b..b + 8].try_into().unwrap();
        swapped[a..a + 8].copy_from_slice(&second);
        swapped[b..b + 8].copy_from_slice(&first);
        assert!(Theta::from_bytes(&swapped).is_err());
    }
}
