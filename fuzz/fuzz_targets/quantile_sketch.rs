//! Quantile sketches (DataSketches t-digests of doubles) as views store them (state tag 10)
//! and as `sketch_quantile`, `sketch_rank` and `quantile_union_agg` read them from BYTEA.
//!
//! Input: a one-byte split point, then the bytes cut in two sketches at that point; each is
//! read, queried and written back, and the two are merged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tally_engine::fuzzing::check_quantile_sketches;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, data)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).min(data.len());
    let (a, b) = data.split_at(cut);
    check_quantile_sketches(a, b);
    check_quantile_sketches(data, data);
});
