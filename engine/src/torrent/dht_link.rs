//! What the peer connections of public torrents share with the engine's DHT node (BEP 5).
//!
//! - Its presence: a torrent holding the link sets the DHT bit in its handshakes (we use the
//!   DHT, so peers send us their PORT), from the start, while the node may still be starting.
//! - The node's UDP port while it also answers queries (server mode), 0 otherwise: peers
//!   that set the DHT bit get a PORT message with it. A node that only asks is not told to
//!   peers: they could not use it.
//! - Nodes that peers announced with their PORT messages, at most [`MAX_LEARNED_NODES`] (the
//!   oldest go first). The DHT node owns what happens to them (see `engine/dht.rs`): they
//!   bootstrap a node whose table is empty and are saved with the routing table.
//!
//! One link per engine; torrents hold it only when the DHT is on and they are not private
//! (BEP 27), so a private torrent never sets the bit nor passes a node on.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Mutex;

/// Most nodes remembered from peers' PORT messages.
pub const MAX_LEARNED_NODES: usize = 256;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct DhtLink {
    port: AtomicU16,
    learned: Mutex<VecDeque<SocketAddr>>,
    /// Bumped by every node added: tells the DHT node there is something new.
    generation: AtomicU64,
}

impl DhtLink {
    pub fn new() -> Self {
        Self::default()
    }

    /// Our node answers queries on UDP `port` (0: it does not).
    pub fn set_port(&self, port: u16) {
        self.port.store(port, Ordering::Release);
    }

    /// Our node's UDP port while it answers queries: what our PORT message says.
    pub fn port(&self) -> Option<u16> {
        Some(self.port.load(Ordering::Acquire)).filter(|&p| p != 0)
    }

    /// A peer at `peer` said its DHT node listens on `port`. Nonsense (port 0, an unspecified
    /// or IPv6 address: the node is IPv4 only) is ignored; a known node is not added twice.
    pub fn node_seen(&self, peer: SocketAddr, port: u16) {
        let ip = peer.ip().to_canonical();
        if port == 0 || ip.is_unspecified() || ip.is_multicast() || !ip.is_ipv4() {
            return;
        }
        let addr = SocketAddr::new(ip, port);
        let mut learned = self.learned.lock().unwrap_or_else(|e| e.into_inner());
        if learned.contains(&addr) {
            return;
        }
        if learned.len() >= MAX_LEARNED_NODES {
            learned.pop_front();
        }
        learned.push_back(addr);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The nodes learned so far, oldest first.
    pub fn learned(&self) -> Vec<SocketAddr> {
        self.learned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect()
    }

    /// How many nodes were ever added (a change means new ones).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn port_is_none_until_set_and_after_reset() {
        let l = DhtLink::new();
        assert_eq!(l.port(), None);
        l.set_port(6881);
        assert_eq!(l.port(), Some(6881));
        l.set_port(0);
        assert_eq!(l.port(), None);
    }

    #[test]
    fn nodes_are_checked_deduplicated_and_bounded() {
        let l = DhtLink::new();
        l.node_seen(a("127.0.0.2:5000"), 6881);
        l.node_seen(a("127.0.0.2:5001"), 6881); // same node, other connection
        l.node_seen(a("[::ffff:127.0.0.3]:5000"), 7000); // v4-mapped: canonical
        l.node_seen(a("127.0.0.4:5000"), 0);
        l.node_seen(a("0.0.0.0:5000"), 1);
        l.node_seen(a("[::1]:5000"), 1);
        l.node_seen(a("224.0.0.1:5000"), 1);
        assert_eq!(l.learned(), vec![a("127.0.0.2:6881"), a("127.0.0.3:7000")]);
        assert_eq!(l.generation(), 2);
        for p in 1..=(MAX_LEARNED_NODES as u16 + 10) {
            l.node_seen(a("10.0.0.1:1"), p);
        }
        let learned = l.learned();
        assert_eq!(learned.len(), MAX_LEARNED_NODES);
        assert_eq!(
            learned.last(),
            Some(&a(&format!("10.0.0.1:{}", MAX_LEARNED_NODES + 10)))
        );
        assert!(!learned.contains(&a("127.0.0.2:6881")), "oldest dropped");
    }
}
