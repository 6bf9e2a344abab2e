//! The BitTorrent handshake (BEP 3): `Handshake::parse` and the streaming `HandshakeState`.
//!
//! The first input byte picks a chunk size; the rest is the stream. Properties checked,
//! besides "never panics":
//! - a handshake `Handshake::parse` accepts prints back to exactly its input;
//! - `HandshakeState` fed the stream in chunks uses exactly 68 bytes when it finishes, and
//!   finishes with what `Handshake::parse` makes of those 68 bytes;
//! - it reports the info-hash once (and only once) 48 bytes are in;
//! - told to expect the info-hash the stream carries, it behaves as without an expectation;
//!   told to expect another one, it fails by the time 48 bytes are in.

use ringtorrent::handshake::{Handshake, HandshakeState, HANDSHAKE_LEN};
use ringtorrent::types::InfoHash;

/// Where the info-hash sits in a handshake, and the length of everything before the peer id.
const INFO_HASH_AT: usize = 28;
const PEER_ID_AT: usize = 48;

pub fn handshake(data: &[u8]) {
    let Some((&step, input)) = data.split_first() else {
        return;
    };
    if let Ok(h) = Handshake::parse(input) {
        assert_eq!(&h.to_bytes()[..], input);
    }
    let step = step as usize + 1;
    let plain = feed(input, step, None);
    if let Some(h) = &plain.finished {
        assert_eq!(plain.used, HANDSHAKE_LEN);
        assert_eq!(Handshake::parse(&input[..HANDSHAKE_LEN]).as_ref(), Ok(h));
    }
    let Some(carried) = input.get(INFO_HASH_AT..PEER_ID_AT) else {
        return;
    };
    let mut hash = [0u8; 20];
    hash.copy_from_slice(carried);
    assert_eq!(feed(input, step, Some(InfoHash(hash))), plain);
    hash[0] ^= 1;
    let other = feed(input, step, Some(InfoHash(hash)));
    assert!(other.failed, "a foreign info-hash was accepted");
}

/// What feeding a stream to a `HandshakeState` came to.
#[derive(Debug, PartialEq)]
struct Outcome {
    used: usize,
    failed: bool,
    finished: Option<Handshake>,
}

fn feed(input: &[u8], step: usize, expected: Option<InfoHash>) -> Outcome {
    let mut hs = HandshakeState::new(expected);
    let mut used = 0;
    let mut failed = false;
    for chunk in input.chunks(step) {
        match hs.feed(chunk) {
            Ok(n) => used += n,
            Err(_) => {
                failed = true;
                break;
            }
        }
        assert!(used <= HANDSHAKE_LEN);
        assert_eq!(hs.info_hash().is_some(), used >= PEER_ID_AT);
        if let Some((_, ih)) = hs.info_hash() {
            assert_eq!(&ih.0[..], &input[INFO_HASH_AT..PEER_ID_AT]);
        }
    }
    Outcome {
        used,
        failed,
        finished: hs.finished(),
    }
}
