//! The extension messages: the BEP 10 extension handshake and the BEP 9 `ut_metadata`
//! messages (the payloads of EXTENDED frames, after the extended id byte).
//!
//! The whole input goes to both parsers. Properties checked, besides "never panics":
//! - what either parser accepts encodes to a payload that parses back to the same message;
//! - an accepted handshake obeys the limits of `ringtorrent::ext` (extension count, sorted
//!   names, client-name length, no zero port or queue, metadata size in 1..=16 MiB);
//! - an accepted metadata `Data` message carries exactly its piece's length, which is in range
//!   for its `total_size`.

use ringtorrent::ext::{
    metadata_piece_len, ExtHandshake, MetadataMsg, MAX_CLIENT_NAME_LEN, MAX_EXTENSIONS,
    MAX_METADATA_SIZE,
};

pub fn ext(data: &[u8]) {
    if let Ok(h) = ExtHandshake::parse(data) {
        check_handshake(&h);
        let mut out = Vec::new();
        h.encode(&mut out);
        assert_eq!(ExtHandshake::parse(&out).as_ref(), Ok(&h));
    }
    if let Ok(msg) = MetadataMsg::parse(data) {
        if let MetadataMsg::Data {
            piece,
            total_size,
            data,
        } = msg
        {
            assert!((1..=MAX_METADATA_SIZE).contains(&total_size));
            assert_eq!(
                metadata_piece_len(total_size, piece),
                Some(data.len() as u32)
            );
        }
        let mut out = Vec::new();
        msg.encode(&mut out);
        assert_eq!(MetadataMsg::parse(&out).as_ref(), Ok(&msg));
    }
}

fn check_handshake(h: &ExtHandshake) {
    assert!(h.m.len() <= MAX_EXTENSIONS);
    assert!(h.m.windows(2).all(|w| w[0].0 < w[1].0), "`m` not sorted");
    assert!(h.v.as_ref().is_none_or(|v| v.len() <= MAX_CLIENT_NAME_LEN));
    assert_ne!(h.p, Some(0));
    assert_ne!(h.reqq, Some(0));
    assert!(h
        .metadata_size
        .is_none_or(|s| (1..=MAX_METADATA_SIZE).contains(&s)));
}
