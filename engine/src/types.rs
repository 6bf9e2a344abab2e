//! Newtypes shared by every layer: hashes, ids and the piece/block geometry of a torrent.
//!
//! Indices are never plain integers: a [`PieceIndex`] or a [`BlockRef`] is only built by
//! checking it against the torrent's [`Lengths`], so code that holds one may index with it.

use std::fmt;

/// The standard block (request) size, 16 KiB (BEP 3).
pub const BLOCK_LEN: u32 = 16 * 1024;

/// SHA-1 of the bencoded `info` dictionary, exactly as it appeared in the metainfo file.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHash(pub [u8; 20]);

impl InfoHash {
    /// Lower-case hex, 40 characters.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses 40 hex digits (either case).
    pub fn from_hex(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 40 {
            return None;
        }
        let mut out = [0u8; 20];
        for (i, pair) in b.chunks_exact(2).enumerate() {
            out[i] = (hex_val(pair[0])? << 4) | hex_val(pair[1])?;
        }
        Some(InfoHash(out))
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({})", self.to_hex())
    }
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A peer's 20-byte id from the handshake.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerId(pub [u8; 20]);

impl PeerId {
    /// An Azureus-style id, `-RT0100-` followed by 12 random printable bytes.
    pub fn generate() -> Self {
        use rand::Rng;
        let mut id = *b"-RT0100-000000000000";
        let mut rng = rand::rng();
        for b in id[8..].iter_mut() {
            *b = b"0123456789abcdefghijklmnopqrstuvwxyz"[rng.random_range(0..36)];
        }
        PeerId(id)
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", String::from_utf8_lossy(&self.0))
    }
}

/// Index of a piece, known to be below the torrent's piece count.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct PieceIndex(u32);

impl PieceIndex {
    /// The raw index as it goes on the wire.
    pub fn get(self) -> u32 {
        self.0
    }
    /// As a `usize`, for indexing tables sized by the piece count.
    pub fn idx(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for PieceIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One block: a piece, a byte offset inside it and a length, all checked against [`Lengths`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct BlockRef {
    /// The piece the block is in.
    pub piece: PieceIndex,
    /// Byte offset of the block inside the piece.
    pub offset: u32,
    /// Length in bytes (1..=16 KiB).
    pub len: u32,
}

impl BlockRef {
    /// Index of this block inside its piece (offset / 16 KiB).
    pub fn block_in_piece(&self) -> u32 {
        self.offset / BLOCK_LEN
    }
}

/// Why a piece index or block from outside does not fit the torrent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeometryError {
    /// A piece index (first) at or past the piece count (second).
    #[error("piece index {0} out of range (torrent has {1} pieces)")]
    PieceOutOfRange(u32, u32),
    /// A block that does not lie inside its piece, or has a bad length.
    #[error("block at offset {offset} with length {len} does not fit piece {piece}")]
    BadBlock {
        /// The piece index.
        piece: u32,
        /// The block's byte offset in the piece.
        offset: u32,
        /// The block's length.
        len: u32,
    },
    /// Lengths no torrent can have (the reason).
    #[error("invalid torrent geometry: {0}")]
    Invalid(&'static str),
}

/// The geometry of a torrent: total length, piece length and the derived counts.
///
/// Computed once from the metainfo; every index from outside is parsed through it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Lengths {
    total_length: u64,
    piece_length: u32,
    num_pieces: u32,
    last_piece_length: u32,
}

impl Lengths {
    /// Checks that the piece length is a positive multiple of... nothing in particular (BEP 3 only
    /// asks for a power of two by convention), that the torrent is non-empty and that the piece
    /// count fits in `u32`.
    pub fn new(total_length: u64, piece_length: u32) -> Result<Self, GeometryError> {
        if piece_length == 0 {
            return Err(GeometryError::Invalid("piece length is 0"));
        }
        if total_length == 0 {
            return Err(GeometryError::Invalid("total length is 0"));
        }
        let n = total_length.div_ceil(piece_length as u64);
        let num_pieces =
            u32::try_from(n).map_err(|_| GeometryError::Invalid("more than 2^32 pieces"))?;
        let rem = (total_length % piece_length as u64) as u32;
        let last_piece_length = if rem == 0 { piece_length } else { rem };
        Ok(Lengths {
            total_length,
            piece_length,
            num_pieces,
            last_piece_length,
        })
    }

    /// Total content size in bytes.
    pub fn total_length(&self) -> u64 {
        self.total_length
    }
    /// Bytes per piece (every piece but possibly the last).
    pub fn piece_length(&self) -> u32 {
        self.piece_length
    }
    /// Number of pieces.
    pub fn num_pieces(&self) -> u32 {
        self.num_pieces
    }
    /// Bytes in a bitfield message for this torrent: ceil(pieces / 8).
    pub fn bitfield_len(&self) -> usize {
        self.num_pieces.div_ceil(8) as usize
    }

    /// Parses a piece index from the wire.
    pub fn piece(&self, index: u32) -> Result<PieceIndex, GeometryError> {
        if index < self.num_pieces {
            Ok(PieceIndex(index))
        } else {
            Err(GeometryError::PieceOutOfRange(index, self.num_pieces))
        }
    }

    /// All piece indices in order.
    pub fn pieces(&self) -> impl Iterator<Item = PieceIndex> {
        (0..self.num_pieces).map(PieceIndex)
    }

    /// Length of a given piece (the last one may be shorter).
    pub fn piece_len(&self, p: PieceIndex) -> u32 {
        if p.0 + 1 == self.num_pieces {
            self.last_piece_length
        } else {
            self.piece_length
        }
    }

    /// Byte offset of the piece in the torrent's concatenated content.
    pub fn piece_offset(&self, p: PieceIndex) -> u64 {
        p.0 as u64 * self.piece_length as u64
    }

    /// Number of 16 KiB blocks in the piece.
    pub fn blocks_in_piece(&self, p: PieceIndex) -> u32 {
        self.piece_len(p).div_ceil(BLOCK_LEN)
    }

    /// Blocks in a full-length piece (the largest block count of any piece).
    pub fn max_blocks_per_piece(&self) -> u32 {
        self.piece_length.div_ceil(BLOCK_LEN)
    }

    /// The `i`-th standard block of a piece. `i` must be below [`Self::blocks_in_piece`].
    pub fn block(&self, p: PieceIndex, i: u32) -> Result<BlockRef, GeometryError> {
        let plen = self.piece_len(p);
        let offset =
            i.checked_mul(BLOCK_LEN)
                .filter(|o| *o < plen)
                .ok_or(GeometryError::BadBlock {
                    piece: p.0,
                    offset: i.saturating_mul(BLOCK_LEN),
                    len: BLOCK_LEN,
                })?;
        Ok(BlockRef {
            piece: p,
            offset,
            len: BLOCK_LEN.min(plen - offset),
        })
    }

    /// Parses a block from a REQUEST/PIECE/CANCEL message: the offset must be block-aligned is
    /// *not* required (BEP 3 allows any), but the span must lie inside the piece and the length
    /// must be 1..=16 KiB.
    pub fn block_from_wire(
        &self,
        index: u32,
        offset: u32,
        len: u32,
    ) -> Result<BlockRef, GeometryError> {
        let piece = self.piece(index)?;
        let plen = self.piece_len(piece);
        let bad = GeometryError::BadBlock {
            piece: index,
            offset,
            len,
        };
        if len == 0 || len > BLOCK_LEN {
            return Err(bad);
        }
        match offset.checked_add(len) {
            Some(end) if end <= plen => Ok(BlockRef { piece, offset, len }),
            _ => Err(bad),
        }
    }

    /// Like [`Self::block_from_wire`], but additionally requires the block to be exactly one of
    /// our standard 16 KiB blocks (what we request, so what a PIECE answer must match).
    pub fn standard_block(
        &self,
        index: u32,
        offset: u32,
        len: u32,
    ) -> Result<BlockRef, GeometryError> {
        let b = self.block_from_wire(index, offset, len)?;
        if !offset.is_multiple_of(BLOCK_LEN) || self.block(b.piece, offset / BLOCK_LEN)? != b {
            return Err(GeometryError::BadBlock {
                piece: index,
                offset,
                len,
            });
        }
        Ok(b)
    }
}

/// Lower-case hex of a byte slice.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_of_uneven_torrent() {
        let l = Lengths::new(3 * 262_144 + 5, 262_144).unwrap();
        assert_eq!(l.num_pieces(), 4);
        let last = l.piece(3).unwrap();
        assert_eq!(l.piece_len(last), 5);
        assert_eq!(l.blocks_in_piece(last), 1);
        assert_eq!(l.block(last, 0).unwrap().len, 5);
        assert!(l.block(last, 1).is_err());
        assert!(l.piece(4).is_err());
        assert_eq!(l.bitfield_len(), 1);
    }

    #[test]
    fn wire_blocks_are_checked() {
        let l = Lengths::new(40_000, 32_768).unwrap();
        assert!(l.block_from_wire(0, 0, 16_384).is_ok());
        assert!(l.block_from_wire(0, 0, 0).is_err());
        assert!(l.block_from_wire(0, 0, 16_385).is_err());
        assert!(l.block_from_wire(1, 0, 7_233).is_err());
        assert!(l.block_from_wire(1, 0, 7_232).is_ok());
        assert!(l.block_from_wire(0, u32::MAX, 2).is_err());
        assert!(l.standard_block(0, 16_384, 16_384).is_ok());
        assert!(l.standard_block(0, 1, 16_384).is_err());
        assert!(l.standard_block(1, 0, 7_232).is_ok());
    }

    #[test]
    fn info_hash_hex_round_trip() {
        let h = InfoHash([0xab; 20]);
        assert_eq!(InfoHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(InfoHash::from_hex("zz"), None);
    }
}

/// A set of pieces (a peer's bitfield, or ours), one bit per piece.
///
/// Wire order is BEP 3's: the high bit of the first byte is piece 0. Spare bits at the end of a
/// wire bitfield must be zero.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Bitfield {
    words: Vec<u64>,
    len: u32,
    count: u32,
}

impl Bitfield {
    /// An empty set over `len` pieces.
    pub fn new(len: u32) -> Self {
        Bitfield {
            words: vec![0; (len as usize).div_ceil(64)],
            len,
            count: 0,
        }
    }

    /// A full set over `len` pieces.
    pub fn full(len: u32) -> Self {
        let mut b = Self::new(len);
        for i in 0..len {
            b.set(PieceIndex(i));
        }
        b
    }

    /// Parses a BITFIELD payload: exactly ceil(len/8) bytes, spare bits zero.
    pub fn from_wire(bytes: &[u8], len: u32) -> Option<Self> {
        if bytes.len() != (len as usize).div_ceil(8) {
            return None;
        }
        let mut b = Self::new(len);
        for (i, byte) in bytes.iter().enumerate() {
            for bit in 0..8u32 {
                if byte & (0x80 >> bit) != 0 {
                    let idx = i as u32 * 8 + bit;
                    if idx >= len {
                        return None;
                    }
                    b.set(PieceIndex(idx));
                }
            }
        }
        Some(b)
    }

    /// The BITFIELD payload.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = vec![0u8; (self.len as usize).div_ceil(8)];
        for p in self.iter() {
            out[p.idx() / 8] |= 0x80 >> (p.get() % 8);
        }
        out
    }

    /// Number of pieces the set is over (not the number in it: see [`Self::count`]).
    pub fn len(&self) -> u32 {
        self.len
    }
    /// Whether the set is over zero pieces.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Number of pieces in the set.
    pub fn count(&self) -> u32 {
        self.count
    }
    /// Whether every piece is in the set.
    pub fn is_full(&self) -> bool {
        self.count == self.len
    }
    /// Whether piece `p` is in the set.
    pub fn get(&self, p: PieceIndex) -> bool {
        self.words[p.idx() / 64] & (1 << (p.idx() % 64)) != 0
    }
    /// Adds a piece; returns true if it was not there.
    pub fn set(&mut self, p: PieceIndex) -> bool {
        let (i, m) = (p.idx() / 64, 1u64 << (p.idx() % 64));
        if self.words[i] & m != 0 {
            return false;
        }
        self.words[i] |= m;
        self.count += 1;
        true
    }
    /// Removes a piece; returns true if it was there.
    pub fn clear(&mut self, p: PieceIndex) -> bool {
        let (i, m) = (p.idx() / 64, 1u64 << (p.idx() % 64));
        if self.words[i] & m == 0 {
            return false;
        }
        self.words[i] &= !m;
        self.count -= 1;
        true
    }
    /// Pieces in the set, ascending.
    pub fn iter(&self) -> impl Iterator<Item = PieceIndex> + '_ {
        self.words.iter().enumerate().flat_map(|(wi, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let bit = w.trailing_zeros();
                w &= w - 1;
                Some(PieceIndex(wi as u32 * 64 + bit))
            })
        })
    }
}

#[cfg(test)]
mod bitfield_tests {
    use super::*;

    #[test]
    fn wire_round_trip_and_spare_bits() {
        let mut b = Bitfield::new(10);
        b.set(PieceIndex(0));
        b.set(PieceIndex(9));
        assert_eq!(b.to_wire(), vec![0x80, 0x40]);
        assert_eq!(Bitfield::from_wire(&[0x80, 0x40], 10), Some(b.clone()));
        assert_eq!(
            Bitfield::from_wire(&[0x80, 0x60], 10),
            None,
            "spare bit set"
        );
        assert_eq!(Bitfield::from_wire(&[0x80], 10), None, "short");
        assert_eq!(Bitfield::from_wire(&[0x80, 0x40, 0], 10), None, "long");
        assert_eq!(b.count(), 2);
        assert_eq!(b.iter().map(|p| p.get()).collect::<Vec<_>>(), vec![0, 9]);
        assert!(b.clear(PieceIndex(0)));
        assert_eq!(b.count(), 1);
    }
}
