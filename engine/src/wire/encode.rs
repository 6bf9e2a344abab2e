//! Encoding of peer wire frames (BEP 3 framing; BEP 6 and BEP 10 ids).

use super::{id, Message, PIECE_HEADER_LEN};

/// Appends the frame of `msg` (length prefix included) to `out`.
///
/// Payload sizes are the caller's (they are ours, not a peer's); a payload longer than the
/// 4-byte length prefix can express is a bug and panics.
pub fn encode(msg: &Message<'_>, out: &mut Vec<u8>) {
    match *msg {
        Message::KeepAlive => out.extend_from_slice(&0u32.to_be_bytes()),
        Message::Choke => empty(out, id::CHOKE),
        Message::Unchoke => empty(out, id::UNCHOKE),
        Message::Interested => empty(out, id::INTERESTED),
        Message::NotInterested => empty(out, id::NOT_INTERESTED),
        Message::HaveAll => empty(out, id::HAVE_ALL),
        Message::HaveNone => empty(out, id::HAVE_NONE),
        Message::Have { piece } => one_u32(out, id::HAVE, piece),
        Message::SuggestPiece { piece } => one_u32(out, id::SUGGEST_PIECE, piece),
        Message::AllowedFast { piece } => one_u32(out, id::ALLOWED_FAST, piece),
        Message::Request { piece, offset, len } => {
            out.extend_from_slice(&request_bytes(piece, offset, len))
        }
        Message::Cancel { piece, offset, len } => {
            out.extend_from_slice(&triple(id::CANCEL, piece, offset, len))
        }
        Message::RejectRequest { piece, offset, len } => {
            out.extend_from_slice(&triple(id::REJECT_REQUEST, piece, offset, len))
        }
        Message::Port(port) => {
            out.extend_from_slice(&3u32.to_be_bytes());
            out.push(id::PORT);
            out.extend_from_slice(&port.to_be_bytes());
        }
        Message::Bitfield(bits) => {
            frame_header(out, id::BITFIELD, bits.len());
            out.extend_from_slice(bits);
        }
        Message::Piece {
            piece,
            offset,
            data,
        } => {
            // INVARIANT: blocks we send are at most 16 KiB; anything near 4 GiB is a bug.
            let len = u32::try_from(data.len()).expect("block longer than 4 GiB");
            out.extend_from_slice(&piece_header(piece, offset, len));
            out.extend_from_slice(data);
        }
        Message::Extended { id: ext, payload } => {
            frame_header(out, id::EXTENDED, payload.len() + 1);
            out.push(ext);
            out.extend_from_slice(payload);
        }
    }
}

/// The 13 bytes that precede a `len`-byte block in a PIECE frame (BEP 3): send them and the
/// block in one vectored write, no copy of the block.
pub fn piece_header(piece: u32, offset: u32, len: u32) -> [u8; PIECE_HEADER_LEN] {
    let mut h = [0u8; PIECE_HEADER_LEN];
    // INVARIANT: a block is at most a few KiB, far from u32::MAX - 9.
    let frame_len = len
        .checked_add(9)
        .expect("block length overflows the frame");
    h[0..4].copy_from_slice(&frame_len.to_be_bytes());
    h[4] = id::PIECE;
    h[5..9].copy_from_slice(&piece.to_be_bytes());
    h[9..13].copy_from_slice(&offset.to_be_bytes());
    h
}

/// A whole REQUEST frame (BEP 3).
pub fn request_bytes(piece: u32, offset: u32, len: u32) -> [u8; 17] {
    triple(id::REQUEST, piece, offset, len)
}

fn triple(msg_id: u8, piece: u32, offset: u32, len: u32) -> [u8; 17] {
    let mut f = [0u8; 17];
    f[0..4].copy_from_slice(&13u32.to_be_bytes());
    f[4] = msg_id;
    f[5..9].copy_from_slice(&piece.to_be_bytes());
    f[9..13].copy_from_slice(&offset.to_be_bytes());
    f[13..17].copy_from_slice(&len.to_be_bytes());
    f
}

fn empty(out: &mut Vec<u8>, msg_id: u8) {
    out.extend_from_slice(&1u32.to_be_bytes());
    out.push(msg_id);
}

fn one_u32(out: &mut Vec<u8>, msg_id: u8, v: u32) {
    out.extend_from_slice(&5u32.to_be_bytes());
    out.push(msg_id);
    out.extend_from_slice(&v.to_be_bytes());
}

/// Length prefix and id of a frame whose id + payload is `body_len` bytes.
fn frame_header(out: &mut Vec<u8>, msg_id: u8, payload_len: usize) {
    // INVARIANT: our own payloads (bitfields, extension dicts) are far below 4 GiB.
    let frame_len = u32::try_from(payload_len + 1).expect("payload longer than 4 GiB");
    out.extend_from_slice(&frame_len.to_be_bytes());
    out.push(msg_id);
}
