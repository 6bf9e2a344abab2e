//! Bencode decoder: never panics; what it accepts re-encodes canonically and decodes back to
//! the same value; `decode_prefix` agrees with `decode`.

use ringtorrent::bencode::{decode, decode_prefix};

pub fn bencode(data: &[u8]) {
    if let Ok((v, used)) = decode_prefix(data) {
        assert!(used <= data.len());
        assert_eq!(v.raw(), &data[..used]);
        assert_eq!(decode(data).is_ok(), used == data.len());
        let canonical = v.encode();
        let again = decode(&canonical).expect("a canonical encoding decodes");
        assert_eq!(again.encode(), canonical);
    }
}
