//! Byte-fixture tests of the wire codec, both directions, at every split of the stream.

use super::*;
use proptest::prelude::*;

/// Every message with its exact frame, written out by hand from BEP 3 / BEP 6 / BEP 10.
fn fixtures() -> Vec<(Message<'static>, Vec<u8>)> {
    vec![
        (Message::KeepAlive, vec![0, 0, 0, 0]),
        (Message::Choke, vec![0, 0, 0, 1, 0]),
        (Message::Unchoke, vec![0, 0, 0, 1, 1]),
        (Message::Interested, vec![0, 0, 0, 1, 2]),
        (Message::NotInterested, vec![0, 0, 0, 1, 3]),
        (
            Message::Have { piece: 0x0102_0304 },
            vec![0, 0, 0, 5, 4, 1, 2, 3, 4],
        ),
        (
            Message::Bitfield(&[0xff, 0x80]),
            vec![0, 0, 0, 3, 5, 0xff, 0x80],
        ),
        (
            Message::Request {
                piece: 1,
                offset: 0x4000,
                len: 0x4000,
            },
            vec![0, 0, 0, 13, 6, 0, 0, 0, 1, 0, 0, 0x40, 0, 0, 0, 0x40, 0],
        ),
        (
            Message::Piece {
                piece: 2,
                offset: 0x4000,
                data: &[0xaa, 0xbb, 0xcc],
            },
            vec![0, 0, 0, 12, 7, 0, 0, 0, 2, 0, 0, 0x40, 0, 0xaa, 0xbb, 0xcc],
        ),
        (
            Message::Cancel {
                piece: 7,
                offset: 0,
                len: 5,
            },
            vec![0, 0, 0, 13, 8, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 5],
        ),
        (Message::Port(6881), vec![0, 0, 0, 3, 9, 0x1a, 0xe1]),
        (
            Message::SuggestPiece { piece: 9 },
            vec![0, 0, 0, 5, 0x0d, 0, 0, 0, 9],
        ),
        (Message::HaveAll, vec![0, 0, 0, 1, 0x0e]),
        (Message::HaveNone, vec![0, 0, 0, 1, 0x0f]),
        (
            Message::RejectRequest {
                piece: 3,
                offset: 0x8000,
                len: 0x10,
            },
            vec![0, 0, 0, 13, 0x10, 0, 0, 0, 3, 0, 0, 0x80, 0, 0, 0, 0, 0x10],
        ),
        (
            Message::AllowedFast { piece: 0xffff_ffff },
            vec![0, 0, 0, 5, 0x11, 0xff, 0xff, 0xff, 0xff],
        ),
        (
            Message::Extended {
                id: 0,
                payload: b"d1:md11:ut_metadatai3eee",
            },
            [&[0, 0, 0, 26, 20, 0][..], b"d1:md11:ut_metadatai3eee"].concat(),
        ),
        (
            Message::Extended {
                id: 3,
                payload: b"",
            },
            vec![0, 0, 0, 2, 20, 3],
        ),
    ]
}

/// Decodes the chunks and re-encodes every message, reassembling blocks from their chunks while
/// checking the chunk guarantees. Returns one frame per message.
fn decode_frames<'c>(
    cfg: ReaderConfig,
    chunks: impl IntoIterator<Item = &'c [u8]>,
) -> Result<Vec<Vec<u8>>, ReadError<()>> {
    let mut r = Reader::with_config(cfg);
    let mut frames = Vec::new();
    let mut block: Option<(u32, u32, u32, Vec<u8>)> = None;
    for chunk in chunks {
        r.feed(chunk, |ev| {
            match ev {
                Event::Msg(m) => {
                    assert!(block.is_none(), "message in the middle of a block");
                    assert_ne!(
                        std::mem::discriminant(&m),
                        std::mem::discriminant(&Message::Piece {
                            piece: 0,
                            offset: 0,
                            data: &[]
                        })
                    );
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
                    assert!(!data.is_empty(), "empty chunk");
                    let b = block.get_or_insert_with(|| (piece, offset, len, Vec::new()));
                    assert_eq!(
                        (b.0, b.1, b.2),
                        (piece, offset, len),
                        "chunk of another block"
                    );
                    assert_eq!(at as usize, b.3.len(), "chunk out of order");
                    b.3.extend_from_slice(data);
                    assert!(b.3.len() <= len as usize, "chunks overrun the block");
                    if b.3.len() == len as usize {
                        let (piece, offset, _, data) = block.take().unwrap();
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
            Ok(())
        })?;
    }
    assert!(block.is_none() || !r.at_boundary());
    Ok(frames)
}

fn stream() -> (Vec<u8>, Vec<Vec<u8>>) {
    let frames: Vec<Vec<u8>> = fixtures().into_iter().map(|(_, b)| b).collect();
    (frames.concat(), frames)
}

#[test]
fn encode_matches_fixtures() {
    for (msg, bytes) in fixtures() {
        let mut out = Vec::new();
        encode(&msg, &mut out);
        assert_eq!(out, bytes, "{msg:?}");
    }
}

#[test]
fn decode_matches_fixtures() {
    for (msg, bytes) in fixtures() {
        let mut r = Reader::default();
        let mut got = Vec::new();
        r.feed(&bytes, |ev| {
            got.push(format!("{ev:?}"));
            Ok::<_, ()>(())
        })
        .unwrap();
        let want = match msg {
            Message::Piece {
                piece,
                offset,
                data,
            } => format!(
                "{:?}",
                Event::BlockChunk {
                    piece,
                    offset,
                    len: data.len() as u32,
                    at: 0,
                    data
                }
            ),
            m => format!("{:?}", Event::Msg(m)),
        };
        assert_eq!(got, vec![want]);
        assert!(r.at_boundary());
    }
}

#[test]
fn fixed_frame_helpers() {
    assert_eq!(request_bytes(1, 0x4000, 0x4000).to_vec(), fixtures()[7].1);
    let h = piece_header(2, 0x4000, 3);
    assert_eq!(h.to_vec(), fixtures()[8].1[..13].to_vec());
}

#[test]
fn every_single_split_point() {
    let (s, frames) = stream();
    for i in 0..=s.len() {
        let got = decode_frames(ReaderConfig::default(), [&s[..i], &s[i..]]).unwrap();
        assert_eq!(got, frames, "split at {i}");
    }
}

#[test]
fn one_byte_at_a_time() {
    let (s, frames) = stream();
    let got = decode_frames(ReaderConfig::default(), s.chunks(1)).unwrap();
    assert_eq!(got, frames);
}

proptest! {
    #[test]
    fn random_splits(cuts in proptest::collection::vec(0usize..200, 0..40)) {
        let (s, frames) = stream();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (s.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut prev = 0;
        for c in cuts.into_iter().chain([s.len()]) {
            chunks.push(&s[prev..c]);
            prev = c;
        }
        prop_assert_eq!(decode_frames(ReaderConfig::default(), chunks).unwrap(), frames);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), step in 1usize..40) {
        let whole = decode_frames(ReaderConfig::default(), [&bytes[..]]);
        let split = decode_frames(ReaderConfig::default(), bytes.chunks(step));
        // Same frames or the same error, however the input is cut (before the error point).
        match (whole, split) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            (a, b) => prop_assert!(false, "whole {:?} vs split {:?}", a, b),
        }
    }
}

#[test]
fn big_block_streams_in_chunks() {
    let data: Vec<u8> = (0..BLOCK).map(|i| (i * 7) as u8).collect();
    let mut frame = Vec::new();
    encode(
        &Message::Piece {
            piece: 5,
            offset: 16384,
            data: &data,
        },
        &mut frame,
    );
    let mut r = Reader::default();
    let mut ats = Vec::new();
    for chunk in frame.chunks(5000) {
        r.feed(chunk, |ev| {
            if let Event::BlockChunk {
                at, len, data: d, ..
            } = ev
            {
                assert_eq!(len, BLOCK);
                assert_eq!(d, &data[at as usize..at as usize + d.len()]);
                ats.push(at);
            }
            Ok::<_, ()>(())
        })
        .unwrap();
        // Block data is never buffered: at most the 13 header bytes are held.
        assert!(r.buffered() <= 13);
    }
    // Chunk boundaries at 5000-byte steps, minus the 13 header bytes of the first chunk.
    assert_eq!(ats, vec![0, 4987, 9987, 14987]);
}
const BLOCK: u32 = 16384;

fn first_error(cfg: ReaderConfig, bytes: &[u8]) -> DecodeError {
    match Reader::with_config(cfg).feed(bytes, |_| Ok::<_, ()>(())) {
        Err(ReadError::Decode(e)) => e,
        other => panic!("expected a decode error, got {other:?}"),
    }
}

#[test]
fn wrong_fixed_lengths_are_rejected() {
    let cfg = ReaderConfig::default();
    let cases: &[(&[u8], u8, u32)] = &[
        (&[0, 0, 0, 9, 4], 4, 9),   // HAVE of length 9
        (&[0, 0, 0, 4, 4], 4, 4),   // HAVE of length 4
        (&[0, 0, 0, 12, 6], 6, 12), // short REQUEST
        (&[0, 0, 0, 14, 6], 6, 14), // long REQUEST
        (&[0, 0, 0, 14, 8], 8, 14), // long CANCEL
        (&[0, 0, 0, 14, 0x10], 0x10, 14),
        (&[0, 0, 0, 2, 0], 0, 2), // CHOKE with a payload
        (&[0, 0, 0, 2, 0x0e], 0x0e, 2),
        (&[0, 0, 0, 4, 9], 9, 4), // PORT of length 4
        (&[0, 0, 0, 6, 0x11], 0x11, 6),
        (&[0, 0, 0, 1, 5], 5, 1),                         // empty BITFIELD
        (&[0, 0, 0, 1, 20], 20, 1),                       // EXTENDED without an extended id
        (&[0, 0, 0, 9, 7, 0, 0, 0, 0, 0, 0, 0, 0], 7, 9), // zero-length block
        (&[0, 0, 0, 5, 7], 7, 5),                         // PIECE shorter than its header
    ];
    for &(bytes, id, len) in cases {
        assert_eq!(
            first_error(cfg, bytes),
            DecodeError::BadLength { id, len },
            "{bytes:?}"
        );
    }
}

#[test]
fn limits_are_checked_on_the_prefix() {
    let cfg = ReaderConfig::default().for_pieces(20);
    assert_eq!(Reader::new(20).config(), &cfg);
    // BITFIELD for 20 pieces: at most 3 bytes of payload.
    assert_eq!(
        first_error(cfg, &[0, 0, 0, 5, 5]),
        DecodeError::TooLong {
            id: 5,
            len: 5,
            max: 4
        }
    );
    assert!(decode_frames(cfg, [&[0, 0, 0, 4, 5, 0xff, 0xff, 0xf0][..]]).is_ok());
    // PIECE: 16 KiB + 9.
    assert_eq!(
        first_error(cfg, &[0, 0, 0x40, 0x0a, 7]),
        DecodeError::TooLong {
            id: 7,
            len: 16384 + 10,
            max: 16384 + 9
        }
    );
    // EXTENDED: 1 MiB of payload by default, configurable.
    let small = ReaderConfig {
        max_extended_len: 100,
        ..cfg
    };
    assert_eq!(
        first_error(small, &[0, 0, 0, 102, 20]),
        DecodeError::TooLong {
            id: 20,
            len: 102,
            max: 101
        }
    );
    assert_eq!(
        first_error(cfg, &[0, 0x10, 0, 2, 20]),
        DecodeError::TooLong {
            id: 20,
            len: 0x10_0002,
            max: 0x10_0001
        }
    );
}

#[test]
fn huge_prefix_fails_at_once() {
    for id in [5u8, 7, 20] {
        let mut r = Reader::default();
        let e = r.feed(&[0xff, 0xff, 0xff, 0xff, id, 1, 2, 3], |_| Ok::<_, ()>(()));
        assert!(matches!(
            e,
            Err(ReadError::Decode(DecodeError::TooLong {
                len: u32::MAX,
                ..
            }))
        ));
        assert!(r.buffered() <= 5, "nothing of the body was buffered");
    }
}

#[test]
fn unknown_ids_are_reported() {
    for id in [10u8, 11, 12, 0x12, 19, 21, 255] {
        assert_eq!(
            first_error(ReaderConfig::default(), &[0, 0, 0, 1, id]),
            DecodeError::UnknownId { id }
        );
    }
    // Reported as soon as the id byte arrives, not after the body.
    assert_eq!(
        first_error(ReaderConfig::default(), &[0xff, 0xff, 0xff, 0xff, 42]),
        DecodeError::UnknownId { id: 42 }
    );
}

#[test]
fn reader_is_poisoned_after_an_error() {
    let mut r = Reader::default();
    assert!(r.feed(&[0, 0, 0, 9, 4], |_| Ok::<_, ()>(())).is_err());
    assert_eq!(
        r.feed(&[0, 0, 0, 0], |_| Ok::<_, ()>(())),
        Err(ReadError::Poisoned)
    );
}

#[test]
fn handler_error_stops_the_feed() {
    let mut r = Reader::default();
    let mut seen = 0;
    // choke, unchoke, interested: the handler fails on the second.
    let e = r.feed(&[0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 2], |_| {
        seen += 1;
        if seen == 2 {
            Err("stop")
        } else {
            Ok(())
        }
    });
    assert_eq!(e, Err(ReadError::Handler("stop")));
    assert_eq!(seen, 2);
}

#[test]
fn straddling_extended_message_is_assembled() {
    let payload: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let mut frame = Vec::new();
    encode(
        &Message::Extended {
            id: 2,
            payload: &payload,
        },
        &mut frame,
    );
    let mut r = Reader::default();
    let mut got = None;
    for chunk in frame.chunks(65536) {
        r.feed(chunk, |ev| {
            if let Event::Msg(Message::Extended { id, payload }) = ev {
                got = Some((id, payload.to_vec()));
            }
            Ok::<_, ()>(())
        })
        .unwrap();
    }
    assert_eq!(got, Some((2, payload)));
    assert!(r.at_boundary());
    assert_eq!(r.buffered(), 0);
}
