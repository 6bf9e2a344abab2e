//! The extension handshake (BEP 10) in the peer session: a handshake of the wrong shape costs
//! the peer its extensions only; one over our limits drops it.

use std::time::Instant;

use super::test_torrent::test_torrent;
use super::*;

fn ext_handshake(s: &mut PeerSession, body: &str, t: &TorrentShared) -> Result<(), PeerError> {
    let m = Message::Extended {
        id: crate::ext::EXT_HANDSHAKE_ID,
        payload: body.as_bytes(),
    };
    s.on_message(m, Instant::now(), t)
}

#[test]
fn an_over_limit_extension_handshake_drops_the_peer_a_misshapen_one_does_not() {
    let f = test_torrent(false);
    let now = Instant::now();
    let mut s = PeerSession::new(1, "127.0.0.9:6881".parse().unwrap(), true, true, &f.t, now);
    // `m` is a string, not a dictionary: a buggy client keeps its connection.
    assert!(ext_handshake(&mut s, "d1:m3:abce", &f.t).is_ok());
    // A 1 TiB metadata size is no client's honest claim.
    let huge = format!("d1:md11:ut_metadatai3ee13:metadata_sizei{}ee", 1u64 << 40);
    assert!(matches!(
        ext_handshake(&mut s, &huge, &f.t),
        Err(PeerError::Extension(
            crate::ext::ExtError::MetadataTooLarge(_)
        ))
    ));
}
