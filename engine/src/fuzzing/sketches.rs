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
