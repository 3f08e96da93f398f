//! cargo-fuzz target `http1_request`: see `uringreplay::fuzzing::http1_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| uringreplay::fuzzing::http1_request(data));
