//! cargo-fuzz target `upstream_response`: see `uringreplay::fuzzing::upstream_response`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| uringreplay::fuzzing::upstream_response(data));
