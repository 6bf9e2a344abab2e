//! BEP 5 in the peer session: the handshake's DHT bit, our PORT message, and the peer's PORT
//! handed to the engine's DHT node through the torrent's [`DhtLink`]; none of it on a private
//! torrent (BEP 27).

use std::sync::Arc;
use std::time::Instant;

use super::test_torrent::{test_torrent_with, TestTorrent};
use super::*;
use crate::torrent::DhtLink;

const PEER: &str = "127.0.0.9:6881";

/// A session of a peer that set the DHT bit, as the shard opens it.
fn open(fx: &TestTorrent, now: Instant) -> PeerSession {
    let mut s = PeerSession::new(1, PEER.parse().unwrap(), true, false, &fx.t, now);
    s.send_dht_port(&fx.t);
    s
}

fn port_messages(out: &[u8]) -> Vec<u16> {
    let mut ports = Vec::new();
    let mut r = wire::Reader::new(super::test_torrent::PIECES);
    r.feed(out, |ev| {
        if let wire::Event::Msg(Message::Port(p)) = ev {
            ports.push(p);
        }
        Ok::<(), ()>(())
    })
    .unwrap();
    ports
}

#[test]
fn a_running_node_sets_the_bit_sends_port_and_takes_the_peers() {
    let fx = test_torrent_with(false, false);
    assert!(!fx.t.our_handshake().supports_dht(), "no DHT: no bit");
    let link = Arc::new(DhtLink::new());
    fx.t.set_dht(link.clone());
    let now = Instant::now();

    // Starting, or only asking: the bit (send us your PORT), but no PORT of ours.
    assert!(fx.t.our_handshake().supports_dht());
    assert!(port_messages(&open(&fx, now).out).is_empty());

    link.set_port(7001);
    assert!(fx.t.our_handshake().supports_dht());
    let mut s = open(&fx, now);
    assert_eq!(port_messages(&s.out), vec![7001]);

    s.on_message(Message::Port(6999), now, &fx.t).unwrap();
    assert_eq!(link.learned(), vec!["127.0.0.9:6999".parse().unwrap()]);
}

#[test]
fn a_node_that_starts_answering_after_the_handshake_still_sends_port_once() {
    let fx = test_torrent_with(false, false);
    let link = Arc::new(DhtLink::new());
    fx.t.set_dht(link.clone());
    let now = Instant::now();
    let mut s = open(&fx, now);
    assert!(port_messages(&s.out).is_empty(), "no port yet");
    s.poll(now, &fx.t).unwrap();
    assert!(port_messages(&s.out).is_empty(), "still no port");
    link.set_port(7002);
    s.out.clear();
    s.poll(now, &fx.t).unwrap();
    assert_eq!(
        port_messages(&s.out),
        vec![7002],
        "sent once the node answers"
    );
    s.out.clear();
    s.poll(now, &fx.t).unwrap();
    assert!(port_messages(&s.out).is_empty(), "and only once");
}

#[test]
fn a_private_torrent_never_uses_the_dht() {
    let fx = test_torrent_with(false, true);
    let link = Arc::new(DhtLink::new());
    link.set_port(7001);
    fx.t.set_dht(link.clone());
    assert!(!fx.t.our_handshake().supports_dht());
    let now = Instant::now();
    let mut s = open(&fx, now);
    assert!(port_messages(&s.out).is_empty());
    s.on_message(Message::Port(6999), now, &fx.t).unwrap();
    assert!(link.learned().is_empty());
}
