//! The peer wire protocol (BEP 3), with the Fast extension (BEP 6) and the extension
//! protocol envelope (BEP 10). Sans-IO: bytes in, messages out.
//!
//! After the handshake (see [`crate::handshake`]) the stream is a sequence of frames, each a
//! 4-byte big-endian length prefix followed by that many bytes: a one-byte message id and its
//! payload. A zero length is a keep-alive (BEP 3).
//!
//! - Receiving: [`Reader`] is fed whatever chunks the socket produced and calls back with an
//!   [`Event`] per message. PIECE payloads are not reassembled: they come out as
//!   [`Event::BlockChunk`]s that borrow the caller's input, so a block is copied once, straight
//!   into its piece buffer.
//! - Sending: [`encode()`] appends any message to a buffer; [`piece_header`] and
//!   [`request_bytes`] build the fixed-size frames the data path sends most, without allocating.
//!
//! Invariants:
//! - Every length prefix is checked against the per-id limit of [`ReaderConfig`] *before* a byte
//!   of the message is buffered; the internal buffer never exceeds the largest allowed frame.
//! - Fixed-size messages must have exactly their size (a HAVE of length 9 is an error).
//! - The chunks of one block are delivered in order, are non-empty and cover the block exactly.
//!
//! OWNER: helper B. The `Message` shape below is the contract the peer state machine uses.

mod encode;
mod reader;

#[cfg(test)]
mod tests;

pub use encode::{encode, piece_header, request_bytes};
pub use reader::{Reader, ReaderConfig};

/// Message ids (BEP 3, BEP 6, BEP 10).
pub mod id {
    pub const CHOKE: u8 = 0;
    pub const UNCHOKE: u8 = 1;
    pub const INTERESTED: u8 = 2;
    pub const NOT_INTERESTED: u8 = 3;
    pub const HAVE: u8 = 4;
    pub const BITFIELD: u8 = 5;
    pub const REQUEST: u8 = 6;
    pub const PIECE: u8 = 7;
    pub const CANCEL: u8 = 8;
    /// BEP 5 (DHT port).
    pub const PORT: u8 = 9;
    /// BEP 6 (Fast extension).
    pub const SUGGEST_PIECE: u8 = 0x0D;
    pub const HAVE_ALL: u8 = 0x0E;
    pub const HAVE_NONE: u8 = 0x0F;
    pub const REJECT_REQUEST: u8 = 0x10;
    pub const ALLOWED_FAST: u8 = 0x11;
    /// BEP 10 (extension protocol).
    pub const EXTENDED: u8 = 20;
}

/// Bytes of a PIECE frame before the block: length prefix, id, piece index, offset.
pub const PIECE_HEADER_LEN: usize = 13;

/// One peer wire message after the handshake. Piece/offset/length fields are raw wire values;
/// the peer state machine parses them against the torrent's `Lengths`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have {
        piece: u32,
    },
    /// Raw bitfield bytes (length checked by the caller against ceil(pieces/8)).
    Bitfield(&'a [u8]),
    Request {
        piece: u32,
        offset: u32,
        len: u32,
    },
    /// A block; `data` borrows the receive buffer.
    Piece {
        piece: u32,
        offset: u32,
        data: &'a [u8],
    },
    Cancel {
        piece: u32,
        offset: u32,
        len: u32,
    },
    Port(u16),
    // BEP 6
    SuggestPiece {
        piece: u32,
    },
    HaveAll,
    HaveNone,
    RejectRequest {
        piece: u32,
        offset: u32,
        len: u32,
    },
    AllowedFast {
        piece: u32,
    },
    /// BEP 10: extended message id and its bencoded payload (plus trailing data for ut_metadata).
    Extended {
        id: u8,
        payload: &'a [u8],
    },
}

/// What [`Reader::feed`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// Any message but PIECE (the reader never produces [`Message::Piece`]).
    Msg(Message<'a>),
    /// Part of a PIECE payload. `offset`/`len` describe the whole block as the header announced
    /// it; `at` is where `data` starts inside the block. Chunks of a block arrive in order,
    /// are never empty and end exactly at `len`.
    BlockChunk {
        piece: u32,
        offset: u32,
        len: u32,
        at: u32,
        data: &'a [u8],
    },
}

/// A malformed message stream. Every variant is the peer's fault: drop the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown message id {id}")]
    UnknownId { id: u8 },
    #[error("message id {id} with invalid length {len}")]
    BadLength { id: u8, len: u32 },
    #[error("message id {id} with length {len} over the limit of {max}")]
    TooLong { id: u8, len: u32, max: u32 },
}

/// Why [`Reader::feed`] stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError<E> {
    /// The peer sent a malformed stream.
    #[error(transparent)]
    Decode(DecodeError),
    /// The event handler returned an error; the rest of the input was not read.
    #[error("{0}")]
    Handler(E),
    /// `feed` was called again after it had returned an error (a bug in the caller): the
    /// stream position is lost, so the connection must be dropped.
    #[error("reader fed again after an error")]
    Poisoned,
}
