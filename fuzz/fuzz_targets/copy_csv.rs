//! COPY … FROM STDIN in the csv format: any input, any schema, any delimiter, quote, escape,
//! NULL string and header option, any message boundaries.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tally_fuzz::check_text(data, true));
