//! BEP 6 "Allowed Fast": the canonical set of pieces a peer may download from us while choked,
//! and the bookkeeping of SUGGEST PIECE.
//!
//! The set depends only on the peer's IPv4 address (its /24 network), the info-hash and the
//! number of pieces, so every client computes the same set for the same peer. BEP 6 defines it
//! for IPv4 only; IPv6 peers get no set.

use std::collections::VecDeque;
use std::net::IpAddr;

use sha1::{Digest, Sha1};

use crate::types::InfoHash;

/// How many pieces we allow fast (BEP 6 suggests 10).
pub const ALLOWED_FAST_K: usize = 10;

/// BEP 6's allowed-fast set of `k` pieces for a peer at `ip`, in generation order.
/// Fewer than `k` only when the torrent has fewer pieces; empty for IPv6 or no pieces.
pub fn allowed_fast_set(ip: IpAddr, info_hash: &InfoHash, num_pieces: u32, k: usize) -> Vec<u32> {
    let IpAddr::V4(v4) = ip else {
        return Vec::new();
    };
    let k = k.min(num_pieces as usize);
    let mut set = Vec::with_capacity(k);
    // x = (ip & 0xffffff00) || info-hash, then x = SHA1(x) repeatedly; each digest yields five
    // big-endian 32-bit words, each taken modulo the piece count (BEP 6).
    let mut x = Vec::with_capacity(24);
    x.extend_from_slice(&(u32::from(v4) & 0xffff_ff00).to_be_bytes());
    x.extend_from_slice(&info_hash.0);
    while set.len() < k {
        let digest = Sha1::digest(&x);
        x.clear();
        x.extend_from_slice(&digest);
        for word in digest.chunks_exact(4) {
            if set.len() >= k {
                break;
            }
            let y = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
            let index = y % num_pieces;
            if !set.contains(&index) {
                set.push(index);
            }
        }
    }
    set
}

/// At most this many pieces a peer suggested are kept as picking hints; older ones are
/// forgotten (BEP 6 sets no limit, so we do).
pub const MAX_SUGGESTED_BY_PEER: usize = 8;
/// We remember this many pieces suggested to a peer, so as not to suggest one twice.
pub const MAX_SUGGESTED_TO_PEER: usize = 64;

/// BEP 6 SUGGEST PIECE with one peer, both ways: the pieces it suggested to us (hints for the
/// picker, bounded) and the ones we suggested to it. Plain state, no IO.
#[derive(Debug, Default)]
pub struct Suggestions {
    /// Pieces the peer suggested, oldest first.
    from_peer: VecDeque<u32>,
    /// SUGGEST PIECE messages received in all (kept or not).
    received: u32,
    /// Pieces we suggested to the peer, oldest first.
    to_peer: VecDeque<u32>,
}

impl Suggestions {
    /// Notes a SUGGEST PIECE from the peer; false if it was not kept as a hint (a repeat).
    pub fn on_received(&mut self, piece: u32) -> bool {
        self.received = self.received.saturating_add(1);
        if self.from_peer.contains(&piece) {
            return false;
        }
        if self.from_peer.len() >= MAX_SUGGESTED_BY_PEER {
            self.from_peer.pop_front();
        }
        self.from_peer.push_back(piece);
        true
    }

    /// True if no suggested piece is kept as a hint.
    pub fn is_empty(&self) -> bool {
        self.from_peer.is_empty()
    }

    /// SUGGEST PIECE messages received so far.
    pub fn received(&self) -> u32 {
        self.received
    }

    /// Appends to `hint` the suggested pieces still `useful` (newest first), dropping the rest
    /// for good; pieces already in `hint` are not repeated.
    pub fn hints(&mut self, hint: &mut Vec<u32>, useful: impl Fn(u32) -> bool) {
        self.from_peer.retain(|&p| useful(p));
        for &p in self.from_peer.iter().rev() {
            if !hint.contains(&p) {
                hint.push(p);
            }
        }
    }

    /// Whether to suggest `piece` to the peer now: not if we already did (recently).
    pub fn should_suggest(&mut self, piece: u32) -> bool {
        if self.to_peer.contains(&piece) {
            return false;
        }
        if self.to_peer.len() >= MAX_SUGGESTED_TO_PEER {
            self.to_peer.pop_front();
        }
        self.to_peer.push_back(piece);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_from_a_peer_are_bounded_and_pruned() {
        let mut s = Suggestions::default();
        for p in 0..20 {
            assert!(s.on_received(p));
        }
        assert!(!s.on_received(19), "a repeat is not kept twice");
        assert_eq!(s.received(), 21);
        let mut hint = vec![19];
        s.hints(&mut hint, |p| p % 2 == 1);
        // The last eight kept (12..20), only odd ones useful, newest first, 19 not repeated.
        assert_eq!(hint, vec![19, 17, 15, 13]);
        // Pieces found useless are forgotten.
        let mut hint = Vec::new();
        s.hints(&mut hint, |_| true);
        assert_eq!(hint, vec![19, 17, 15, 13]);
    }

    #[test]
    fn a_piece_is_suggested_to_a_peer_once() {
        let mut s = Suggestions::default();
        assert!(s.should_suggest(5));
        assert!(!s.should_suggest(5));
        for p in 100..100 + MAX_SUGGESTED_TO_PEER as u32 {
            assert!(s.should_suggest(p));
        }
        // 5 was forgotten once 64 newer ones were suggested.
        assert!(s.should_suggest(5));
    }

    fn aa() -> InfoHash {
        InfoHash([0xaa; 20])
    }

    /// The example in BEP 6: 80.4.4.200, info-hash of twenty 0xAA bytes, 1313 pieces.
    #[test]
    fn bep6_example_vectors() {
        let ip: IpAddr = "80.4.4.200".parse().unwrap();
        assert_eq!(
            allowed_fast_set(ip, &aa(), 1313, 7),
            vec![1059, 431, 808, 1217, 287, 376, 1188]
        );
        assert_eq!(
            allowed_fast_set(ip, &aa(), 1313, 9),
            vec![1059, 431, 808, 1217, 287, 376, 1188, 353, 508]
        );
    }

    #[test]
    fn same_slash_24_same_set() {
        let a: IpAddr = "80.4.4.200".parse().unwrap();
        let b: IpAddr = "80.4.4.1".parse().unwrap();
        let c: IpAddr = "80.4.5.200".parse().unwrap();
        let sa = allowed_fast_set(a, &aa(), 1313, ALLOWED_FAST_K);
        assert_eq!(sa, allowed_fast_set(b, &aa(), 1313, ALLOWED_FAST_K));
        assert_ne!(sa, allowed_fast_set(c, &aa(), 1313, ALLOWED_FAST_K));
    }

    #[test]
    fn small_torrents_and_ipv6_terminate() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let mut s = allowed_fast_set(ip, &aa(), 3, ALLOWED_FAST_K);
        s.sort_unstable();
        assert_eq!(s, vec![0, 1, 2]);
        assert!(allowed_fast_set(ip, &aa(), 0, ALLOWED_FAST_K).is_empty());
        let v6: IpAddr = "::1".parse().unwrap();
        assert!(allowed_fast_set(v6, &aa(), 1313, ALLOWED_FAST_K).is_empty());
    }
}
