//! cargo-fuzz target `flow_reader`: see `uringreplay::fuzzing::flow_reader`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| uringreplay::fuzzing::flow_reader(data));
