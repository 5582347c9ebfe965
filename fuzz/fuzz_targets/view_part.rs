//! A stored delta part of a materialized view (`view_parts` column family): the part codec that
//! `Database::open` runs over every stored part. Any input must decode or be refused, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tally_engine::fuzzing::decode_delta_part;

fuzz_target!(|data: &[u8]| {
    let _ = decode_delta_part(data);
});
