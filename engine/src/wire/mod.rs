//! The peer wire protocol (BEP 3), with the Fast extension (BEP 6) and the extension
//! protocol envelope (BEP 10). Sans-IO: bytes in, messages out.
//!
//! OWNER: helper B. The `Message` shape below is the contract the peer state machine uses.

/// One peer wire message after the handshake. Piece/offset/length fields are raw wire values;
/// the peer state machine parses them against the torrent's `Lengths`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have { piece: u32 },
    /// Raw bitfield bytes (length checked by the caller against ceil(pieces/8)).
    Bitfield(&'a [u8]),
    Request { piece: u32, offset: u32, len: u32 },
    /// A block; `data` borrows the receive buffer.
    Piece { piece: u32, offset: u32, data: &'a [u8] },
    Cancel { piece: u32, offset: u32, len: u32 },
    Port(u16),
    // BEP 6
    SuggestPiece { piece: u32 },
    HaveAll,
    HaveNone,
    RejectRequest { piece: u32, offset: u32, len: u32 },
    AllowedFast { piece: u32 },
    /// BEP 10: extended message id and its bencoded payload (plus trailing data for ut_metadata).
    Extended { id: u8, payload: &'a [u8] },
}
