//! The encoded states of a materialized view group (in delta parts and state segments): the codec,
//! the borrowed walk view reads use, the sketches inside, and the merge compaction runs.
//!
//! Input: a one-byte split point, then the bytes cut in two values at that point; each is
//! decoded as a whole value, and the two are merged as compaction and reads do.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tally_engine::fuzzing::visit_view_state;
use tally_engine::internals::{AggState, decode_states, encode_states, merge_encoded_values};

/// Decodes `bytes`; when it decodes, checks the walk agrees and the encoding round-trips.
fn check(bytes: &[u8]) -> Option<Vec<AggState>> {
    let walked = visit_view_state(bytes);
    let states = decode_states(bytes);
    if let Ok(states) = &states {
        assert_eq!(walked.ok(), Some(states.len()), "walk and decode disagree");
    }
    let states = states.ok()?;
    for state in &states {
        match state {
            AggState::Hll(hll) => {
                let _ = hll.estimate();
            }
            AggState::Distinct(set) => {
                let _ = set.count();
            }
            AggState::Quantiles(sketch) => {
                let _ = sketch.clone().quantile(0.99).expect("0.99 is a fraction");
            }
            _ => {}
        }
    }
    // What decodes encodes to bytes that decode to the same states. (Not always to the same
    // bytes: DataSketches writes a SET-mode HLL's coupons in its hash table's order, which
    // depends on the table size the input declared; the sketch and its estimate are the same.)
    let encoded = encode_states(&states);
    let again = decode_states(&encoded).expect("an encoded value decodes");
    assert_eq!(
        summary(&again),
        summary(&states),
        "a round trip changes the states"
    );
    let twice = decode_states(&encode_states(&again)).expect("an encoded value decodes");
    assert_eq!(
        summary(&twice),
        summary(&states),
        "a second round trip changes the states"
    );
    Some(states)
}

/// The states as comparable text: sketches by their estimate, everything else as is.
fn summary(states: &[AggState]) -> Vec<String> {
    states
        .iter()
        .map(|state| match state {
            AggState::Hll(hll) => format!("hll ~{}", hll.estimate()),
            other => format!("{other:?}"),
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, data)) = data.split_first() else {
        return;
    };
    check(data);
    let cut = usize::from(cut).min(data.len());
    let (a, b) = data.split_at(cut);
    let (Some(_), Some(_)) = (check(a), check(b)) else {
        return;
    };
    // Merging is what RocksDB runs on these values; it may refuse states of other kinds but
    // must not panic, and a merged value decodes.
    if let Ok(merged) = merge_encoded_values(a, &[b]) {
        check(&merged).expect("a merged value decodes");
        let swapped = merge_encoded_values(b, &[a]).expect("merge succeeds both ways");
        check(&swapped).expect("a merged value decodes");
    }
    let _ = merge_encoded_values(a, &[a, b, a]);
});
