//! libFuzzer entry point; the body and what it checks: `ringtorrent_fuzz::utp`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringtorrent_fuzz::utp(data));
