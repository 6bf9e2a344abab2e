//! SHA-1 of pieces (BEP 3: the `pieces` key holds the SHA-1 of every piece) and the
//! [`VerifiedPiece`] witness.
//!
//! Invariant: a [`VerifiedPiece`] exists only for a piece whose bytes hashed to the expected
//! SHA-1. Its field is private and the only constructor, [`verify`], lives in this module, so
//! no code outside this file (not even the rest of the crate) can mint one for unchecked data.

pub(crate) mod files;

pub use files::{check_pieces, hash_pieces};

use sha1::{Digest, Sha1};

/// Proof that a piece's data matched its SHA-1 from the metainfo.
///
/// Only this crate's hashing code can create one (the field is private and the constructor is
/// private to the hashing module). The engine requires it to mark a piece as had and to send
/// HAVE, so unverified data can never be announced. It is deliberately neither `Clone` nor
/// `Copy`: one hash check gives one witness.
#[derive(Debug, PartialEq, Eq)]
pub struct VerifiedPiece {
    piece: u32,
}

impl VerifiedPiece {
    /// The index of the verified piece.
    pub fn piece(&self) -> u32 {
        self.piece
    }
}

/// SHA-1 of `data`.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    Sha1::digest(data).into()
}

/// Hashes `data` and mints the witness if it equals `expected`.
pub fn verify(piece: u32, data: &[u8], expected: &[u8; 20]) -> Option<VerifiedPiece> {
    (sha1(data) == *expected).then_some(VerifiedPiece { piece })
}

/// SHA-1 of a piece fed in order while its blocks are received (by `SharedPiece`), so each
/// block is hashed while it is still in cache instead of long after, from DRAM. It can mint a
/// witness only through [`StreamHasher::verify`], and only once it was fed exactly the piece's
/// length.
#[derive(Default)]
pub(crate) struct StreamHasher {
    sha: Sha1,
    fed: u64,
}

impl StreamHasher {
    /// Feeds the next bytes of the piece (the caller feeds the piece front to back, once).
    pub(crate) fn update(&mut self, data: &[u8]) {
        self.sha.update(data);
        self.fed += data.len() as u64;
    }

    /// Bytes fed so far.
    #[cfg(test)]
    pub(crate) fn fed(&self) -> u64 {
        self.fed
    }

    /// Finishes the stream: the witness if exactly `piece_len` bytes were fed and they hash to
    /// `expected`. The stream is reset either way (a second call cannot mint a second witness
    /// for the same bytes).
    pub(crate) fn verify(
        &mut self,
        piece: u32,
        piece_len: u32,
        expected: &[u8; 20],
    ) -> Option<VerifiedPiece> {
        let complete = self.fed == u64::from(piece_len);
        let digest: [u8; 20] = std::mem::take(self).sha.finalize().into();
        (complete && digest == *expected).then_some(VerifiedPiece { piece })
    }
}

/// An incremental SHA-1 for data that arrives in several reads.
#[derive(Default)]
pub(crate) struct PieceHasher(Sha1);

impl PieceHasher {
    pub(crate) fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// Returns the digest and resets the hasher for the next piece.
    pub(crate) fn finish(&mut self) -> [u8; 20] {
        self.0.finalize_reset().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_known_vector() {
        // FIPS 180-1 test vector "abc".
        let expected = [
            0xa9, 0x99, 0x3e, 0x36, 0x47, 0x06, 0x81, 0x6a, 0xba, 0x3e, 0x25, 0x71, 0x78, 0x50,
            0xc2, 0x6c, 0x9c, 0xd0, 0xd8, 0x9d,
        ];
        assert_eq!(sha1(b"abc"), expected);
    }

    #[test]
    fn verify_mints_only_on_match() {
        let data = vec![7u8; 1000];
        let good = sha1(&data);
        let w = verify(3, &data, &good);
        assert_eq!(w.map(|w| w.piece()), Some(3));
        let mut bad = good;
        bad[0] ^= 1;
        assert!(verify(3, &data, &bad).is_none());
    }

    #[test]
    fn stream_mints_only_for_the_whole_piece() {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i * 7) as u8).collect();
        let good = sha1(&data);
        let mut s = StreamHasher::default();
        for c in data.chunks(16384) {
            s.update(c);
        }
        assert_eq!(s.fed(), data.len() as u64);
        assert_eq!(s.verify(9, 50_000, &good).map(|w| w.piece()), Some(9));
        assert_eq!(s.fed(), 0, "verify resets");
        assert!(
            s.verify(9, 50_000, &good).is_none(),
            "an empty stream mints nothing"
        );
        // A short stream is refused even if the caller names the shorter length's digest.
        let mut s = StreamHasher::default();
        s.update(&data[..16384]);
        assert!(s.verify(9, 50_000, &sha1(&data[..16384])).is_none());
        let mut s = StreamHasher::default();
        s.update(&data);
        let mut bad = good;
        bad[19] ^= 1;
        assert!(s.verify(9, 50_000, &bad).is_none());
    }

    #[test]
    fn incremental_equals_one_shot() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 31) as u8).collect();
        let mut h = PieceHasher::default();
        for c in data.chunks(777) {
            h.update(c);
        }
        assert_eq!(h.finish(), sha1(&data));
        h.update(b"abc");
        assert_eq!(h.finish(), sha1(b"abc"), "finish resets the state");
    }
}
