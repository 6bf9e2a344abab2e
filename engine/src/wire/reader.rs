//! The streaming receive decoder.
//!
//! State machine over the byte stream: `Header` collects the 4-byte length prefix, the id and,
//! for PIECE, the 8 bytes of piece index and offset (at most 13 bytes, in a fixed array);
//! `Payload` assembles a non-PIECE payload that straddles input chunks in `buf`; `Block` passes
//! PIECE data through as it arrives. A payload that lies whole inside one input chunk is
//! decoded in place, without touching `buf`.

use super::{id, DecodeError, Event, Message, ReadError, PIECE_HEADER_LEN};
use crate::ext::MAX_METADATA_SIZE;
use crate::types::BLOCK_LEN;

/// Per-message-id length limits, checked on the length prefix before anything is buffered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReaderConfig {
    /// Largest block a PIECE may carry.
    pub max_block_len: u32,
    /// Largest BITFIELD payload, in bytes. Exactly ceil(pieces/8) once the piece count is known
    /// ([`ReaderConfig::for_pieces`]); the caller still checks the exact length.
    pub max_bitfield_len: u32,
    /// Largest EXTENDED payload (extended id byte included).
    pub max_extended_len: u32,
}

/// Largest bitfield of any torrent whose metadata we accept (BEP 9 limit / 20-byte hashes).
const MAX_PIECES: u32 = MAX_METADATA_SIZE / 20;

/// A drained `buf` larger than this is freed rather than kept for the next message.
const RETAIN_BUF_CAP: usize = 64 * 1024;

impl Default for ReaderConfig {
    fn default() -> Self {
        ReaderConfig {
            max_block_len: BLOCK_LEN,
            max_bitfield_len: MAX_PIECES.div_ceil(8),
            max_extended_len: 1024 * 1024,
        }
    }
}

impl ReaderConfig {
    /// The same limits, with the bitfield limit set to ceil(`num_pieces`/8).
    pub fn for_pieces(self, num_pieces: u32) -> Self {
        ReaderConfig {
            max_bitfield_len: num_pieces.div_ceil(8),
            ..self
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum State {
    Header,
    Payload {
        id: u8,
        len: u32,
    },
    Block {
        piece: u32,
        offset: u32,
        len: u32,
        at: u32,
    },
}

/// Streaming decoder of the message stream that follows the handshake. See the module docs of
/// [`crate::wire`] for the framing and the guarantees.
#[derive(Debug)]
pub struct Reader {
    cfg: ReaderConfig,
    state: State,
    hdr: [u8; PIECE_HEADER_LEN],
    hdr_have: usize,
    buf: Vec<u8>,
    poisoned: bool,
}

impl Default for Reader {
    /// Default limits, for a torrent whose piece count is not known yet (magnet links).
    fn default() -> Self {
        Self::with_config(ReaderConfig::default())
    }
}

impl Reader {
    /// Default limits, with BITFIELD limited to ceil(`num_pieces`/8) bytes.
    pub fn new(num_pieces: u32) -> Self {
        Self::with_config(ReaderConfig::default().for_pieces(num_pieces))
    }

    pub fn with_config(cfg: ReaderConfig) -> Self {
        Reader {
            cfg,
            state: State::Header,
            hdr: [0; PIECE_HEADER_LEN],
            hdr_have: 0,
            buf: Vec::new(),
            poisoned: false,
        }
    }

    /// The limits in force; changes apply from the next length prefix read.
    pub fn config(&self) -> &ReaderConfig {
        &self.cfg
    }

    /// Replaces the limits (e.g. once the metadata of a magnet link gives the piece count).
    pub fn set_config(&mut self, cfg: ReaderConfig) {
        self.cfg = cfg;
    }

    /// True between messages (no partial frame held).
    pub fn at_boundary(&self) -> bool {
        matches!(self.state, State::Header) && self.hdr_have == 0
    }

    /// Bytes of an incomplete message held in the internal buffers.
    pub fn buffered(&self) -> usize {
        self.hdr_have + self.buf.len()
    }

    /// Decodes `input`, the next bytes of the stream, calling `on` for each message or block
    /// chunk completed by it. Events borrow `input` or the reader's buffer for the call only.
    ///
    /// After an error the stream position is lost: drop the connection. Feeding again returns
    /// [`ReadError::Poisoned`].
    pub fn feed<E>(
        &mut self,
        input: &[u8],
        mut on: impl FnMut(Event<'_>) -> Result<(), E>,
    ) -> Result<(), ReadError<E>> {
        if self.poisoned {
            return Err(ReadError::Poisoned);
        }
        let r = self.feed_inner(input, &mut on);
        self.poisoned = r.is_err();
        r
    }

    fn feed_inner<E>(
        &mut self,
        mut input: &[u8],
        on: &mut impl FnMut(Event<'_>) -> Result<(), E>,
    ) -> Result<(), ReadError<E>> {
        while !input.is_empty() {
            match self.state {
                State::Header => self.header(&mut input, on)?,
                State::Payload { id, len } => self.payload(id, len, &mut input, on)?,
                State::Block {
                    piece,
                    offset,
                    len,
                    at,
                } => {
                    let take = (len - at).min(clamp_u32(input.len()));
                    let (data, rest) = input.split_at(take as usize);
                    input = rest;
                    self.state = if at + take == len {
                        State::Header
                    } else {
                        State::Block {
                            piece,
                            offset,
                            len,
                            at: at + take,
                        }
                    };
                    let ev = Event::BlockChunk {
                        piece,
                        offset,
                        len,
                        at,
                        data,
                    };
                    on(ev).map_err(ReadError::Handler)?;
                }
            }
        }
        Ok(())
    }

    /// Copies header bytes until `want` are held; false if the input ran out first.
    fn fill_header(&mut self, input: &mut &[u8], want: usize) -> bool {
        let take = want.saturating_sub(self.hdr_have).min(input.len());
        self.hdr[self.hdr_have..self.hdr_have + take].copy_from_slice(&input[..take]);
        self.hdr_have += take;
        *input = &input[take..];
        self.hdr_have >= want
    }

    fn header<E>(
        &mut self,
        input: &mut &[u8],
        on: &mut impl FnMut(Event<'_>) -> Result<(), E>,
    ) -> Result<(), ReadError<E>> {
        if !self.fill_header(input, 4) {
            return Ok(());
        }
        let frame_len = be32(&self.hdr[0..4]);
        if frame_len == 0 {
            self.hdr_have = 0;
            return on(Event::Msg(Message::KeepAlive)).map_err(ReadError::Handler);
        }
        let first_id_byte = self.hdr_have == 4;
        if !self.fill_header(input, 5) {
            return Ok(());
        }
        let msg_id = self.hdr[4];
        if first_id_byte {
            // BEP 3 framing: limit checked on the prefix, before any payload is buffered.
            self.check_len(msg_id, frame_len)
                .map_err(ReadError::Decode)?;
        }
        if msg_id == id::PIECE {
            if !self.fill_header(input, PIECE_HEADER_LEN) {
                return Ok(());
            }
            self.hdr_have = 0;
            self.state = State::Block {
                piece: be32(&self.hdr[5..9]),
                offset: be32(&self.hdr[9..13]),
                len: frame_len - 9,
                at: 0,
            };
            return Ok(());
        }
        self.hdr_have = 0;
        let len = frame_len - 1;
        if len == 0 {
            let msg = parse(msg_id, &[]).map_err(ReadError::Decode)?;
            return on(Event::Msg(msg)).map_err(ReadError::Handler);
        }
        self.state = State::Payload { id: msg_id, len };
        Ok(())
    }

    fn payload<E>(
        &mut self,
        msg_id: u8,
        len: u32,
        input: &mut &[u8],
        on: &mut impl FnMut(Event<'_>) -> Result<(), E>,
    ) -> Result<(), ReadError<E>> {
        let len = len as usize;
        if self.buf.is_empty() && input.len() >= len {
            // Fast path: the whole payload is in this chunk; decode in place.
            let (payload, rest) = input.split_at(len);
            *input = rest;
            self.state = State::Header;
            let msg = parse(msg_id, payload).map_err(ReadError::Decode)?;
            return on(Event::Msg(msg)).map_err(ReadError::Handler);
        }
        if self.buf.is_empty() {
            // `len` was checked against the configured limit in `check_len`.
            self.buf.reserve_exact(len);
        }
        let take = (len - self.buf.len()).min(input.len());
        self.buf.extend_from_slice(&input[..take]);
        *input = &input[take..];
        if self.buf.len() < len {
            return Ok(());
        }
        self.state = State::Header;
        let r = match parse(msg_id, &self.buf) {
            Ok(msg) => on(Event::Msg(msg)).map_err(ReadError::Handler),
            Err(e) => Err(ReadError::Decode(e)),
        };
        self.buf.clear();
        if self.buf.capacity() > RETAIN_BUF_CAP {
            self.buf = Vec::new();
        }
        r
    }

    /// The length rules per id: fixed sizes exactly, variable ones within the config limits.
    fn check_len(&self, msg_id: u8, frame_len: u32) -> Result<(), DecodeError> {
        let bad = DecodeError::BadLength {
            id: msg_id,
            len: frame_len,
        };
        let (min, max) = match msg_id {
            id::CHOKE | id::UNCHOKE | id::INTERESTED | id::NOT_INTERESTED => (1, 1),
            id::HAVE_ALL | id::HAVE_NONE => (1, 1),
            id::HAVE | id::SUGGEST_PIECE | id::ALLOWED_FAST => (5, 5),
            id::REQUEST | id::CANCEL | id::REJECT_REQUEST => (13, 13),
            id::PORT => (3, 3),
            id::BITFIELD => (2, self.cfg.max_bitfield_len.saturating_add(1)),
            // 8 bytes of index and offset, then at least one byte of block.
            id::PIECE => (10, self.cfg.max_block_len.saturating_add(9)),
            id::EXTENDED => (2, self.cfg.max_extended_len.saturating_add(1)),
            _ => return Err(DecodeError::UnknownId { id: msg_id }),
        };
        if frame_len < min || (min == max && frame_len != min) {
            return Err(bad);
        }
        if frame_len > max {
            return Err(DecodeError::TooLong {
                id: msg_id,
                len: frame_len,
                max,
            });
        }
        Ok(())
    }
}

/// Decodes the payload of a non-PIECE message whose length `check_len` accepted. Returns an
/// error rather than panicking if a length slipped through anyway.
fn parse(msg_id: u8, p: &[u8]) -> Result<Message<'_>, DecodeError> {
    let bad = || DecodeError::BadLength {
        id: msg_id,
        len: clamp_u32(p.len()).saturating_add(1),
    };
    let u32_at =
        |i: usize| -> Result<u32, DecodeError> { p.get(i..i + 4).map(be32).ok_or_else(bad) };
    let exact = |n: usize| if p.len() == n { Ok(()) } else { Err(bad()) };
    let msg = match msg_id {
        id::CHOKE => exact(0).map(|_| Message::Choke)?,
        id::UNCHOKE => exact(0).map(|_| Message::Unchoke)?,
        id::INTERESTED => exact(0).map(|_| Message::Interested)?,
        id::NOT_INTERESTED => exact(0).map(|_| Message::NotInterested)?,
        id::HAVE_ALL => exact(0).map(|_| Message::HaveAll)?,
        id::HAVE_NONE => exact(0).map(|_| Message::HaveNone)?,
        id::HAVE => exact(4)
            .and(u32_at(0))
            .map(|piece| Message::Have { piece })?,
        id::SUGGEST_PIECE => exact(4)
            .and(u32_at(0))
            .map(|piece| Message::SuggestPiece { piece })?,
        id::ALLOWED_FAST => exact(4)
            .and(u32_at(0))
            .map(|piece| Message::AllowedFast { piece })?,
        id::REQUEST | id::CANCEL | id::REJECT_REQUEST => {
            exact(12)?;
            let (piece, offset, len) = (u32_at(0)?, u32_at(4)?, u32_at(8)?);
            match msg_id {
                id::REQUEST => Message::Request { piece, offset, len },
                id::CANCEL => Message::Cancel { piece, offset, len },
                _ => Message::RejectRequest { piece, offset, len },
            }
        }
        id::PORT => match *p {
            [a, b] => Message::Port(u16::from_be_bytes([a, b])),
            _ => return Err(bad()),
        },
        id::BITFIELD if !p.is_empty() => Message::Bitfield(p),
        id::EXTENDED => match p.split_first() {
            Some((&ext, payload)) => Message::Extended { id: ext, payload },
            None => return Err(bad()),
        },
        id::BITFIELD => return Err(bad()),
        _ => return Err(DecodeError::UnknownId { id: msg_id }),
    };
    Ok(msg)
}

/// Big-endian u32 from the first 4 bytes of `b`.
fn be32(b: &[u8]) -> u32 {
    // INVARIANT: every caller passes a slice of exactly 4 bytes (header array ranges or
    // `get(i..i + 4)`), so the copy cannot go out of bounds.
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

fn clamp_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_allocation_for_a_rejected_or_unfinished_prefix() {
        let mut r = Reader::default();
        let e = r.feed(&[0xff, 0xff, 0xff, 0xfe, id::EXTENDED, 0], |_| {
            Ok::<_, ()>(())
        });
        assert!(e.is_err());
        assert_eq!(r.buf.capacity(), 0);
        // An accepted prefix reserves the announced payload only once bytes of it arrive.
        let mut r = Reader::default();
        r.feed(&[0, 0, 0x01, 0, id::EXTENDED], |_| Ok::<_, ()>(()))
            .unwrap();
        assert_eq!(r.buf.capacity(), 0);
        r.feed(&[7], |_| Ok::<_, ()>(())).unwrap();
        assert_eq!(r.buf.capacity(), 255);
    }

    #[test]
    fn large_buffer_is_released_after_use() {
        let mut r = Reader::default();
        let len = 200_000u32;
        let mut frame = (len + 1).to_be_bytes().to_vec();
        frame.push(id::EXTENDED);
        frame.resize(4 + len as usize + 1, 9);
        let mut n = 0;
        for c in frame.chunks(65_536) {
            r.feed(c, |_| {
                n += 1;
                Ok::<_, ()>(())
            })
            .unwrap();
        }
        assert_eq!(n, 1);
        assert_eq!(r.buf.capacity(), 0);
    }
}
