//! COPY … FROM STDIN in the text format: any input, any schema, any message boundaries.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tally_fuzz::check_text(data, false));
