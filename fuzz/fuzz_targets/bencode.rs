//! libFuzzer entry point; the body and what it checks: `ringtorrent_fuzz::bencode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringtorrent_fuzz::bencode(data));
