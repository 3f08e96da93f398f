//! cargo-fuzz target `tnetstring`: see `uringreplay::fuzzing::tnetstring`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| uringreplay::fuzzing::tnetstring(data));
