#![no_main]
//! libFuzzer entry for [`nodelocaldns::fuzzing::corefile`]; the checks live in the library so
//! the corpus replay test runs the very same code.

libfuzzer_sys::fuzz_target!(|data: &[u8]| nodelocaldns::fuzzing::corefile(data));
