//! COPY … FROM STDIN in PostgreSQL's binary format: any input, any schema, any message
//! boundaries.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tally_fuzz::check_binary(data));
