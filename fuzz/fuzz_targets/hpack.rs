//! cargo-fuzz target `hpack`: see `uringreplay::fuzzing::hpack`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| uringreplay::fuzzing::hpack(data));
