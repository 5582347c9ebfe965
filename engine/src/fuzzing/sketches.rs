//! The checks of the `topk_state` and `theta_state` fuzz targets, compiled with the engine so
//! that stable builds and unit tests keep them working: arbitrary bytes read as a stored (or
//! user-given) frequent items or theta sketch must be refused or read, never panic; what reads
//! writes bytes that read back as the same sketch; merges and set operations never panic.

use crate::sketch::{Theta, TopK};

/// Splits `data` at its first byte into two sketch images.
fn split(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&cut, data) = data.split_first()?;
    Some(data.split_at(usize::from(cut).min(data.len())))
}

/// One frequent items sketch read from `bytes`, checked; `None` when refused.
fn top_k(bytes: &[u8]) -> Option<TopK> {
    let sketch = TopK::from_bytes(bytes).ok()?;
    let _ = sketch.top_json(10);
    let written = sketch.to_bytes();
    let again = TopK::from_bytes(&written).expect("a written frequent items sketch reads");
    assert_eq!(again, sketch, "a round trip changes the sketch");
    assert_eq!(again.to_bytes(), written, "the canonical form is stable");
    Some(sketch)
}

/// Checks two frequent items sketches cut from `data` and their merges.
pub fn check_top_k_state(data: &[u8]) {
    let Some((a, b)) = split(data) else { return };
    let (Some(a), Some(b)) = (top_k(a), top_k(b)) else {
        return;
    };
    let mut ab = a.clone();
    if ab.merge(&b).is_ok() {
        let mut ba = b.clone();
        ba.merge(&a).expect("merging succeeds both ways");
        assert_eq!(ab.total(), ba.total());
        top_k(&ab.to_bytes()).expect("a merged sketch reads");
    }
}

/// One theta sketch read from `bytes`, checked; `None` when refused.
fn theta(bytes: &[u8]) -> Option<Theta> {
    let sketch = Theta::from_bytes(bytes).ok()?;
    let _ = sketch.estimate();
    let written = sketch.to_bytes();
    let again = Theta::from_bytes(&written).expect("a written theta sketch reads");
    assert_eq!(again, sketch, "a round trip changes the sketch");
    Some(sketch)
}

/// Checks two theta sketches cut from `data`, their union, intersection and differences.
pub fn check_theta_state(data: &[u8]) {
    let Some((a, b)) = split(data) else { return };
    let (Some(a), Some(b)) = (theta(a), theta(b)) else {
        return;
    };
    let union = Theta::union_all([&a, &b]);
    theta(&union.to_bytes()).expect("a union reads");
    let both = Theta::intersect_all([&a, &b]).expect("two sketches intersect");
    theta(&both.to_bytes()).expect("an intersection reads");
    theta(&a.a_not_b(&b).to_bytes()).expect("a difference reads");
    theta(&b.a_not_b(&a).to_bytes()).expect("a difference reads");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::key::KeyValue;

    /// The checked-in seeds (fuzz/make_seeds.py) are two sketches that read.
    #[test]
    fn the_seed_corpora_hold_sketches_that_read() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        for (target, reads) in [
            (
                "topk_state",
                (|b: &[u8]| TopK::from_bytes(b).is_ok()) as fn(&[u8]) -> bool,
            ),
            ("theta_state", |b: &[u8]| Theta::from_bytes(b).is_ok()),
        ] {
            let dir = std::fs::read_dir(root.join(target)).expect("a seed corpus");
            for seed in dir {
                let data = std::fs::read(seed.expect("a seed").path()).expect("a seed");
                let (a, b) = split(&data).expect("a cut byte");
                assert!(reads(a) && reads(b), "{target}: {data:?}");
            }
        }
    }

    /// The checks pass on real sketches and on their damaged and cut copies.
    #[test]
    fn the_checks_hold_on_real_and_damaged_sketches() {
        let mut top = TopK::new();
        let mut t = Theta::new();
        // Small enough that the cut byte can fall right after the first image.
        for v in 0..20i64 {
            top.insert(&(v % 6).to_string());
            t.insert(&KeyValue::Int(v));
        }
        for image in [top.to_bytes(), t.to_bytes()] {
            assert!(image.len() < 256);
            for cut in [0usize, 7, 8, 24, image.len() / 2, image.len()] {
                let mut data = vec![cut.min(255) as u8];
                data.extend_from_slice(&image);
                data.extend_from_slice(&image);
                check_top_k_state(&data);
                check_theta_state(&data);
                for flip in 1..data.len() {
                    let mut damaged = data.clone();
                    damaged[flip] ^= 0x5a;
                    check_top_k_state(&damaged);
                    check_theta_state(&damaged);
                }
            }
        }
    }
}
#[cfg(test)]
mod stress {
    /// A cheap stand-in for the fuzz targets on stable: small real sketches, cut, spliced and
    /// overwritten at random (300,000 rounds passed once; 20,000 each run).
    #[test]
    fn random_mutations_of_real_sketches_never_panic() {
        use super::*;
        use crate::views::key::KeyValue;
        let mut seeds = Vec::new();
        for n in [0i64, 1, 3, 9, 30] {
            let mut top = TopK::new();
            let mut t = Theta::new();
            for v in 0..n {
                top.insert(&(v % 5).to_string());
                t.insert(&KeyValue::Int(v));
            }
            seeds.push(top.to_bytes());
            seeds.push(t.to_bytes());
        }
        let mut x: u64 = 0x1234_5678;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let a = &seeds[(next() % seeds.len() as u64) as usize];
            let b = &seeds[(next() % seeds.len() as u64) as usize];
            let mut data = vec![a.len().min(255) as u8];
            data.extend_from_slice(a);
            data.extend_from_slice(b);
            for _ in 0..(next() % 4) {
                let at = (next() % data.len() as u64) as usize;
                data[at] = next() as u8;
            }
            if next() % 5 == 0 {
                let len = (next() % data.len() as u64) as usize;
                data.truncate(len.max(1));
            }
            check_top_k_state(&data);
            check_theta_state(&data);
        }
    }
}
