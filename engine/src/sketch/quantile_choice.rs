//! The measurement behind the choice of t-digest over KLL for percentiles (docs/benchmarks.md,
//! "Quantile sketches: t-digest or KLL"). Run it optimized:
//! `cargo test -p tally-engine --release --lib quantile_choice -- --ignored --nocapture`.

use std::time::Instant;

use datasketches::common::SearchCriteria;
use datasketches::kll::{KllFloat, KllSketch};
use datasketches::tdigest::TDigestMut;

/// A candidate sketch, built and read as a view builds and reads its states.
enum Sketch {
    Kll(KllSketch<KllFloat<f64>>),
    TDigest(TDigestMut),
}

impl Sketch {
    fn new(candidate: (bool, u16)) -> Sketch {
        match candidate {
            (true, k) => Sketch::Kll(KllSketch::new(k).expect("a valid k")),
            (false, k) => Sketch::TDigest(TDigestMut::new(k).expect("a valid k")),
        }
    }

    fn update(&mut self, v: f64) {
        match self {
            Sketch::Kll(s) => s.update(KllFloat::<f64>::new(v).expect("not NaN")),
            Sketch::TDigest(s) => s.update(v),
        }
    }

    fn merge(&mut self, other: &Sketch) {
        match (self, other) {
            (Sketch::Kll(a), Sketch::Kll(b)) => a.merge(b).expect("weights fit"),
            (Sketch::TDigest(a), Sketch::TDigest(b)) => a.merge(b),
            _ => unreachable!("one kind per run"),
        }
    }

    fn quantile(&mut self, p: f64) -> f64 {
        match self {
            Sketch::Kll(s) => s
                .quantile(p, SearchCriteria::Inclusive)
                .expect("p in [0, 1]")
                .expect("not empty")
                .into_inner(),
            Sketch::TDigest(s) => s.quantile(p).expect("p in [0, 1]").expect("not empty"),
        }
    }

    fn bytes(&mut self) -> usize {
        match self {
            Sketch::Kll(s) => s.serialize().len(),
            Sketch::TDigest(s) => s.serialize().len(),
        }
    }
}

/// xorshift64: the same values on every run.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// `percentile_cont`: linear interpolation between the closest ranks.
fn exact(sorted: &[f64], p: f64) -> f64 {
    let pos = p * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[test]
#[ignore = "a measurement: run optimized with --ignored --nocapture"]
fn measure_tdigest_against_kll() {
    let candidates = [(true, 200u16), (true, 400), (false, 100), (false, 200)];
    let ps = [0.5, 0.95, 0.99];
    for (dist, pareto) in [("lognormal(3, 1)", false), ("Pareto(1.5, 10)", true)] {
        for (n, pieces, groups) in [
            (1_000usize, 20usize, 40),
            (20_000, 24, 40),
            (200_000, 24, 5),
        ] {
            println!("\n{dist}, {n} values per group merged from {pieces} pieces, {groups} groups");
            println!(
                "sketch | max value error p50 / p95 / p99 | max rank error p99 | bytes | ns per value"
            );
            for candidate in candidates {
                let (mut errors, mut rank99, mut bytes, mut ns) = ([0f64; 3], 0f64, 0, 0f64);
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
                for _ in 0..groups {
                    let values: Vec<f64> = (0..n)
                        .map(|_| {
                            if pareto {
                                10.0 / rng.uniform().powf(1.0 / 1.5)
                            } else {
                                (3.0 + rng.normal()).exp()
                            }
                        })
                        .collect();
                    let start = Instant::now();
                    let mut total = Sketch::new(candidate);
                    for chunk in values.chunks(n / pieces) {
                        let mut piece = Sketch::new(candidate);
                        for &v in chunk {
                            piece.update(v);
                        }
                        total.merge(&piece);
                    }
                    ns += start.elapsed().as_nanos() as f64 / n as f64;
                    let mut sorted = values;
                    sorted.sort_by(f64::total_cmp);
                    for (i, &p) in ps.iter().enumerate() {
                        let (e, a) = (exact(&sorted, p), total.quantile(p));
                        errors[i] = errors[i].max(((a - e) / e).abs() * 100.0);
                        if p == 0.99 {
                            let rank = sorted.partition_point(|x| *x < a) as f64 / n as f64;
                            rank99 = rank99.max((rank - p).abs());
                        }
                    }
                    bytes += total.bytes();
                }
                let name = if candidate.0 { "KLL" } else { "t-digest" };
                println!(
                    "{name} k={} | {:.2}% / {:.2}% / {:.2}% | {:.4} | {} | {:.0}",
                    candidate.1,
                    errors[0],
                    errors[1],
                    errors[2],
                    rank99,
                    bytes / groups,
                    ns / groups as f64
                );
            }
        }
    }
}
