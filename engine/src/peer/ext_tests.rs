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

#[test]
fn pex_flags_the_peers_known_to_be_seeds() {
    use crate::pex::PexFlags;
    use crate::PeerId;
    let tt = test_torrent(false);
    let t = &tt.t;
    let (a, b) = (PeerId([1; 20]), PeerId([2; 20]));
    let (addr_a, addr_b) = (
        "127.0.0.2:6881".parse().unwrap(),
        "127.0.0.3:6881".parse().unwrap(),
    );
    assert!(t.register_peer(a, Some(addr_a)));
    assert!(t.register_peer(b, None));
    t.set_peer_listen_addr(&b, addr_b);
    t.set_peer_seed(&a);
    let mut peers = t.pex_peers_flagged();
    peers.sort_by_key(|p| p.addr);
    assert_eq!(peers.len(), 2);
    assert_eq!((peers[0].addr, peers[0].flags.is_seed()), (addr_a, true));
    assert_eq!((peers[1].addr, peers[1].flags.is_seed()), (addr_b, false));
    assert_eq!(peers[1].flags, PexFlags(0));
    let mut addrs = t.pex_peers();
    addrs.sort();
    assert_eq!(addrs, vec![addr_a, addr_b]);
}
