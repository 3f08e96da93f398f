//! cargo-fuzz target `http1_conn`: see `uringreplay::fuzzing::http1_conn`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| uringreplay::fuzzing::http1_conn(data));
