//! cargo-fuzz target `http2_conn`: see `uringreplay::fuzzing::http2_conn`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| uringreplay::fuzzing::http2_conn(data));
