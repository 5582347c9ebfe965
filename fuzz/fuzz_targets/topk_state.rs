//! A stored or user-given frequent items (top-k) sketch (view state tag 11, and the BYTEA the SQL
//! functions read): arbitrary bytes are refused or read, never a panic; what reads round-trips;
//! merges never panic.
//!
//! Input: a one-byte split point, then the bytes cut in two sketch images at that point. The
//! checks live in `tally_engine::fuzzing` so stable builds compile them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tally_engine::fuzzing::check_top_k_state;

fuzz_target!(|data: &[u8]| {
    check_top_k_state(data);
});
