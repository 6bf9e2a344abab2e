//! The peer wire codec: the message stream after the handshake (BEP 3, BEP 6 and BEP 10
//! framing).
//!
//! The first input byte picks a chunk size; the rest is the stream. Properties checked,
//! besides "never panics":
//! - the stream decodes to the same frames, or fails with the same error, however the input is
//!   cut into chunks;
//! - every decoded frame re-encodes to exactly the bytes it was decoded from;
//! - block chunks arrive in order, non-empty, and cover their block exactly.

use ringtorrent::wire::{encode, DecodeError, Event, Message, ReadError, Reader};

pub fn wire(data: &[u8]) {
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
}

/// A PIECE being reassembled from its chunks: piece, offset, announced length, data so far.
type Partial = (u32, u32, u32, Vec<u8>);

/// Decodes `input` in chunks of `step` bytes; returns the re-encoded frames.
fn decode(input: &[u8], step: usize) -> Result<Vec<Vec<u8>>, DecodeError> {
    let mut reader = Reader::new(1000);
    let mut frames = Vec::new();
    let mut block: Option<Partial> = None;
    for chunk in input.chunks(step) {
        let r = reader.feed(chunk, |ev| {
            on_event(ev, &mut block, &mut frames);
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

/// Re-encodes one event into `frames`; a PIECE once its last chunk is in.
fn on_event(ev: Event<'_>, block: &mut Option<Partial>, frames: &mut Vec<Vec<u8>>) {
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
                    let m = Message::Piece {
                        piece,
                        offset,
                        data: &data,
                    };
                    encode(&m, &mut f);
                    frames.push(f);
                }
            }
        }
    }
}
