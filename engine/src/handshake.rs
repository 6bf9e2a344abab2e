//! The BitTorrent handshake (BEP 3), sans-IO.
//!
//! 68 bytes: `19`, `"BitTorrent protocol"`, 8 reserved bytes, the 20-byte info-hash, the
//! 20-byte peer id. The reserved bytes advertise extensions: BEP 10 (extension protocol),
//! BEP 6 (Fast) and BEP 5 (DHT) each set one bit.
//!
//! [`HandshakeState`] accumulates a handshake from a byte stream. It fails as soon as the
//! protocol string is wrong (an encrypted or non-BitTorrent stream is rejected early), reports the
//! info-hash once the first 48 bytes are in (BEP 3: the receiving side answers as soon as it
//! knows the info-hash, before the peer id), and tells the caller how many bytes it consumed so
//! that the rest, the start of the message stream, goes to [`crate::wire::Reader`].
//!
//! OWNER: helper B.

use crate::types::{InfoHash, PeerId};

/// Length of a handshake.
pub const HANDSHAKE_LEN: usize = 68;

/// `pstrlen` and `pstr` (BEP 3).
const PROTOCOL: &[u8; 20] = b"\x13BitTorrent protocol";

/// Offsets of the reserved bytes and of the info-hash.
const RESERVED_AT: usize = 20;
const INFO_HASH_AT: usize = 28;
const PEER_ID_AT: usize = 48;

/// A bit of the reserved bytes: (byte index, mask).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReservedBit(pub usize, pub u8);

/// BEP 10: extension protocol, reserved byte 5, 0x10.
pub const EXTENSION_PROTOCOL: ReservedBit = ReservedBit(5, 0x10);
/// BEP 6: Fast extension, reserved byte 7, 0x04.
pub const FAST: ReservedBit = ReservedBit(7, 0x04);
/// BEP 5: DHT, reserved byte 7, 0x01.
pub const DHT: ReservedBit = ReservedBit(7, 0x01);

/// Reserved bytes with the given bits set.
pub fn reserved_with(bits: &[ReservedBit]) -> [u8; 8] {
    let mut r = [0u8; 8];
    for b in bits {
        r[b.0] |= b.1;
    }
    r
}

/// A malformed or unexpected handshake. All are the peer's fault: drop the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("not a BitTorrent handshake (wrong protocol string)")]
    BadProtocol,
    #[error("handshake of {0} bytes, expected 68")]
    WrongLength(usize),
    #[error("peer answered with info-hash {got}, we asked for {expected}")]
    InfoHashMismatch { expected: InfoHash, got: InfoHash },
}

/// A parsed handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handshake {
    pub reserved: [u8; 8],
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
}

impl Handshake {
    /// Our handshake, advertising the extension protocol and Fast (what the engine supports).
    pub fn ours(info_hash: InfoHash, peer_id: PeerId) -> Self {
        Handshake {
            reserved: reserved_with(&[EXTENSION_PROTOCOL, FAST]),
            info_hash,
            peer_id,
        }
    }

    pub fn to_bytes(&self) -> [u8; HANDSHAKE_LEN] {
        let mut b = [0u8; HANDSHAKE_LEN];
        b[..RESERVED_AT].copy_from_slice(PROTOCOL);
        b[RESERVED_AT..INFO_HASH_AT].copy_from_slice(&self.reserved);
        b[INFO_HASH_AT..PEER_ID_AT].copy_from_slice(&self.info_hash.0);
        b[PEER_ID_AT..].copy_from_slice(&self.peer_id.0);
        b
    }

    /// Parses exactly 68 bytes.
    pub fn parse(b: &[u8]) -> Result<Handshake, HandshakeError> {
        let b: &[u8; HANDSHAKE_LEN] = b
            .try_into()
            .map_err(|_| HandshakeError::WrongLength(b.len()))?;
        if &b[..RESERVED_AT] != PROTOCOL {
            return Err(HandshakeError::BadProtocol);
        }
        let mut reserved = [0u8; 8];
        reserved.copy_from_slice(&b[RESERVED_AT..INFO_HASH_AT]);
        let mut ih = [0u8; 20];
        ih.copy_from_slice(&b[INFO_HASH_AT..PEER_ID_AT]);
        let mut id = [0u8; 20];
        id.copy_from_slice(&b[PEER_ID_AT..]);
        Ok(Handshake {
            reserved,
            info_hash: InfoHash(ih),
            peer_id: PeerId(id),
        })
    }

    /// Whether the peer set a reserved bit.
    pub fn has(&self, bit: ReservedBit) -> bool {
        self.reserved[bit.0] & bit.1 != 0
    }

    /// BEP 10 extension protocol.
    pub fn supports_extensions(&self) -> bool {
        self.has(EXTENSION_PROTOCOL)
    }

    /// BEP 6 Fast extension.
    pub fn supports_fast(&self) -> bool {
        self.has(FAST)
    }

    /// BEP 5 DHT (the PORT message).
    pub fn supports_dht(&self) -> bool {
        self.has(DHT)
    }
}

/// Accumulates one handshake from a byte stream.
#[derive(Clone, Debug)]
pub struct HandshakeState {
    buf: [u8; HANDSHAKE_LEN],
    have: usize,
    expected: Option<InfoHash>,
}

impl HandshakeState {
    /// `expected`: the info-hash we dialled for (outgoing connections); `None` for incoming
    /// ones, where the caller looks the info-hash up once [`Self::info_hash`] returns it.
    pub fn new(expected: Option<InfoHash>) -> Self {
        HandshakeState {
            buf: [0; HANDSHAKE_LEN],
            have: 0,
            expected,
        }
    }

    /// Takes bytes from `input` until the handshake is complete and returns how many it used;
    /// `input[used..]` belongs to the message stream. Errors as soon as the bytes seen so far
    /// cannot start a valid handshake. Feeding a finished state consumes nothing.
    pub fn feed(&mut self, input: &[u8]) -> Result<usize, HandshakeError> {
        let before = self.have;
        let take = (HANDSHAKE_LEN - self.have).min(input.len());
        self.buf[self.have..self.have + take].copy_from_slice(&input[..take]);
        self.have += take;
        let proto_seen = self.have.min(RESERVED_AT);
        if before < RESERVED_AT && self.buf[..proto_seen] != PROTOCOL[..proto_seen] {
            return Err(HandshakeError::BadProtocol);
        }
        if let (Some(expected), Some((_, got))) = (self.expected, self.info_hash()) {
            if got != expected {
                return Err(HandshakeError::InfoHashMismatch { expected, got });
            }
        }
        Ok(take)
    }

    /// The reserved bytes and info-hash, once the first 48 bytes are in.
    pub fn info_hash(&self) -> Option<([u8; 8], InfoHash)> {
        if self.have < PEER_ID_AT {
            return None;
        }
        let mut reserved = [0u8; 8];
        reserved.copy_from_slice(&self.buf[RESERVED_AT..INFO_HASH_AT]);
        let mut ih = [0u8; 20];
        ih.copy_from_slice(&self.buf[INFO_HASH_AT..PEER_ID_AT]);
        Some((reserved, InfoHash(ih)))
    }

    /// The whole handshake, once 68 bytes are in.
    pub fn finished(&self) -> Option<Handshake> {
        if self.have < HANDSHAKE_LEN {
            return None;
        }
        Handshake::parse(&self.buf).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handshake written out by hand from BEP 3, with the BEP 10 and BEP 6 bits set.
    fn fixture() -> Vec<u8> {
        let mut b = vec![19];
        b.extend_from_slice(b"BitTorrent protocol");
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0x04]);
        b.extend_from_slice(&[0xab; 20]);
        b.extend_from_slice(b"-RT0100-abcdefghijkl");
        b
    }

    #[test]
    fn round_trip_with_fixture() {
        let h = Handshake::parse(&fixture()).unwrap();
        assert_eq!(h.info_hash, InfoHash([0xab; 20]));
        assert_eq!(&h.peer_id.0, b"-RT0100-abcdefghijkl");
        assert!(h.supports_extensions() && h.supports_fast() && !h.supports_dht());
        assert_eq!(h.to_bytes().to_vec(), fixture());
        let ours = Handshake::ours(h.info_hash, h.peer_id);
        assert_eq!(ours.to_bytes().to_vec(), fixture());
    }

    #[test]
    fn reserved_bits_are_where_the_beps_say() {
        assert_eq!(
            reserved_with(&[EXTENSION_PROTOCOL]),
            [0, 0, 0, 0, 0, 0x10, 0, 0]
        );
        assert_eq!(reserved_with(&[FAST, DHT]), [0, 0, 0, 0, 0, 0, 0, 0x05]);
        let mut b = fixture();
        b[20..28].copy_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xef, 0xff, 0xfa]);
        let h = Handshake::parse(&b).unwrap();
        assert!(!h.supports_extensions() && !h.supports_fast() && !h.supports_dht());
    }

    #[test]
    fn bad_handshakes() {
        let f = fixture();
        assert_eq!(
            Handshake::parse(&f[..67]),
            Err(HandshakeError::WrongLength(67))
        );
        assert_eq!(
            Handshake::parse(&[&f[..], &[0]].concat()),
            Err(HandshakeError::WrongLength(69))
        );
        assert_eq!(Handshake::parse(&[]), Err(HandshakeError::WrongLength(0)));
        let mut b = f.clone();
        b[0] = 18;
        assert_eq!(Handshake::parse(&b), Err(HandshakeError::BadProtocol));
        let mut b = f.clone();
        b[11] = b'p'; // "bittorrent Protocol" casing
        assert_eq!(Handshake::parse(&b), Err(HandshakeError::BadProtocol));
    }

    #[test]
    fn state_returns_surplus_at_every_split() {
        let mut stream = fixture();
        stream.extend_from_slice(&[0, 0, 0, 1, 2]); // INTERESTED follows
        for i in 0..=stream.len() {
            let mut st = HandshakeState::new(Some(InfoHash([0xab; 20])));
            let mut rest = Vec::new();
            for part in [&stream[..i], &stream[i..]] {
                let used = st.feed(part).unwrap();
                rest.extend_from_slice(&part[used..]);
            }
            assert_eq!(rest, [0, 0, 0, 1, 2], "split at {i}");
            assert_eq!(st.finished(), Handshake::parse(&fixture()).ok());
        }
    }

    #[test]
    fn info_hash_is_known_before_the_peer_id() {
        let f = fixture();
        let mut st = HandshakeState::new(None);
        assert_eq!(st.feed(&f[..47]), Ok(47));
        assert_eq!(st.info_hash(), None);
        assert_eq!(st.feed(&f[47..48]), Ok(1));
        assert_eq!(st.info_hash().map(|x| x.1), Some(InfoHash([0xab; 20])));
        assert_eq!(st.finished(), None);
        assert_eq!(st.feed(&f[48..]), Ok(20));
        assert!(st.finished().is_some());
        assert_eq!(st.feed(&[1, 2, 3]), Ok(0));
    }

    #[test]
    fn state_fails_early() {
        // An HTTP request (or an MSE-encrypted stream) is rejected on its first byte.
        let mut st = HandshakeState::new(None);
        assert_eq!(st.feed(b"GET /"), Err(HandshakeError::BadProtocol));
        let mut st = HandshakeState::new(None);
        assert_eq!(st.feed(b"\x13BitTorrent"), Ok(11));
        assert_eq!(st.feed(b" Protocol"), Err(HandshakeError::BadProtocol));
        // The wrong info-hash is reported before the peer id arrives.
        let mut st = HandshakeState::new(Some(InfoHash([1; 20])));
        let e = st.feed(&fixture()[..48]);
        assert_eq!(
            e,
            Err(HandshakeError::InfoHashMismatch {
                expected: InfoHash([1; 20]),
                got: InfoHash([0xab; 20]),
            })
        );
    }
}
