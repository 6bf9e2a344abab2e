//! libFuzzer entry point; the body and what it checks: `ringtorrent_fuzz::mse`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringtorrent_fuzz::mse(data));
