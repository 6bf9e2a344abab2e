//! BEP 6 "Allowed Fast": the canonical set of pieces a peer may download from us while choked.
//!
//! The set depends only on the peer's IPv4 address (its /24 network), the info-hash and the
//! number of pieces, so every client computes the same set for the same peer. BEP 6 defines it
//! for IPv4 only; IPv6 peers get no set.

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

#[cfg(test)]
mod tests {
    use super::*;

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
