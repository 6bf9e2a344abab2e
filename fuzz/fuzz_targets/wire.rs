//! Fuzz target for the peer wire codec, the handshake and the BEP 10 / BEP 9 parsers.
//!
//! Properties checked on arbitrary input, besides "never panics":
//! - the message stream decodes to the same frames, or fails with the same error, however the
//!   input is cut into chunks (the first input byte picks the chunk size);
//! - every decoded frame re-encodes to exactly the bytes it was decoded from;
//! - block chunks arrive in order, non-empty, and cover their block exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringtorrent::ext::{ExtHandshake, MetadataMsg};
use ringtorrent::handshake::{Handshake, HandshakeState};
use ringtorrent::wire::{encode, DecodeError, Event, Message, ReadError, Reader};

/// Decodes `input` in chunks of `step` bytes; returns the re-encoded frames.
fn decode(input: &[u8], step: usize) -> Result<Vec<Vec<u8>>, DecodeError> {
    let mut reader = Reader::new(1000);
    let mut frames = Vec::new();
    let mut block: Option<(u32, u32, u32, Vec<u8>)> = None;
    for chunk in input.chunks(step) {
        let r = reader.feed(chunk, |ev| {
            match ev {
                Event::Msg(m) => {
                    assert!(block.is_none(), "message inside a block");
                    assert!(!matches!(m, Message::Piece { .. }));
                    let mut f = Vec::new();
                    encode(&m, &mut f);
                    frames.push(f);
                }
                Event::BlockChunk {
                    piece,
                    offset,
                    len,
                    at,
                    data,
                } => {
                    assert!(!data.is_empty());
                    let b = block.get_or_insert_with(|| (piece, offset, len, Vec::new()));
                    assert_eq!((b.0, b.1, b.2), (piece, offset, len));
                    assert_eq!(at as usize, b.3.len());
                    b.3.extend_from_slice(data);
                    assert!(b.3.len() <= len as usize);
                    if b.3.len() == len as usize {
                        if let Some((piece, offset, _, data)) = block.take() {
                            let mut f = Vec::new();
                            encode(
                                &Message::Piece {
                                    piece,
                                    offset,
                                    data: &data,
                                },
                                &mut f,
                            );
                            frames.push(f);
                        }
                    }
                }
            }
            Ok::<(), ()>(())
        });
        match r {
            Ok(()) => {}
            Err(ReadError::Decode(e)) => return Err(e),
            Err(e) => panic!("unexpected reader error {e:?}"),
        }
    }
    Ok(frames)
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, input)) = data.split_first() else {
        return;
    };
    let whole = decode(input, input.len().max(1));
    let split = decode(input, step as usize + 1);
    assert_eq!(whole, split);
    if let Ok(frames) = whole {
        assert!(
            input.starts_with(&frames.concat()),
            "re-encoding differs from the input"
        );
    }

    if let Ok(h) = Handshake::parse(input) {
        assert_eq!(&h.to_bytes()[..], input);
    }
    let mut hs = HandshakeState::new(None);
    let mut used = 0;
    for chunk in input.chunks(step as usize + 1) {
        match hs.feed(chunk) {
            Ok(n) => used += n,
            Err(_) => break,
        }
    }
    if let Some(h) = hs.finished() {
        assert_eq!(used, 68);
        assert_eq!(Handshake::parse(&input[..68]), Ok(h));
    }

    if let Ok(ext) = ExtHandshake::parse(input) {
        let mut out = Vec::new();
        ext.encode(&mut out);
        assert_eq!(ExtHandshake::parse(&out).as_ref(), Ok(&ext));
    }
    if let Ok(msg) = MetadataMsg::parse(input) {
        let mut out = Vec::new();
        msg.encode(&mut out);
        assert_eq!(MetadataMsg::parse(&out).as_ref(), Ok(&msg));
    }
});
