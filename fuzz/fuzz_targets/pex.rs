//! libFuzzer entry point; the body and what it checks: `ringtorrent_fuzz::pex`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringtorrent_fuzz::pex(data));
