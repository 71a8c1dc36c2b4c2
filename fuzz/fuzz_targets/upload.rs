#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| actionhost_fuzz_targets::upload(data));
