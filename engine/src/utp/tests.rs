//! Unit tests: the codec against byte fixtures, and single streams fed crafted packets.

use std::time::{Duration, Instant};

use super::packet::{
    encode, reset_for, sack_bits, sack_set, Header, Packet, PacketError, PacketType, HEADER_LEN,
    MAX_SACK_LEN,
};
use super::tests_sim::Rng;
use super::{seq_lt, Config, Event, Stream};

fn header(ty: PacketType, connection_id: u16, seq_nr: u16, ack_nr: u16) -> Header {
    Header {
        ty,
        connection_id,
        timestamp_us: 1000,
        timestamp_diff_us: 0,
        wnd_size: 1 << 20,
        seq_nr,
        ack_nr,
    }
}

fn dgram(h: &Header, sack: Option<&[u8]>, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode(h, sack, payload, &mut out);
    out
}

/// Feeds one datagram; returns the payloads delivered.
fn feed(s: &mut Stream, mut d: Vec<u8>, now: Instant) -> Vec<Vec<u8>> {
    let pkt = Packet::parse(&d).expect("a valid test packet");
    let (hdr, off, sack) = (
        pkt.header,
        pkt.payload_offset(),
        pkt.sack.map(<[u8]>::to_vec),
    );
    let mut got = Vec::new();
    s.on_packet(&mut d, &hdr, sack.as_deref(), off, now, &mut |b| {
        got.push(b.to_vec())
    });
    got
}

/// Everything the stream sends now, parsed: (header, sack, payload).
fn drain(s: &mut Stream, now: Instant) -> Vec<(Header, Option<Vec<u8>>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut v = Vec::new();
    while s.poll_transmit(now, &mut out) {
        let p = Packet::parse(&out).expect("we send valid packets");
        v.push((p.header, p.sack.map(<[u8]>::to_vec), p.payload.to_vec()));
    }
    v
}

/// An accepted stream for a SYN with `seq_nr = syn_seq` and connection id 50, its STATE
/// drained. Our packets to it carry connection id 51.
fn accepted(cfg: &Config, syn_seq: u16) -> (Stream, Instant) {
    let epoch = Instant::now();
    let now = epoch + Duration::from_secs(1);
    let syn = header(PacketType::Syn, 50, syn_seq, 0);
    let mut s = Stream::accept(&syn, now, epoch, cfg, 500);
    assert_eq!(s.recv_id(), 51);
    let sent = drain(&mut s, now);
    assert_eq!(sent.len(), 1);
    let (h, _, _) = &sent[0];
    assert_eq!(
        (h.ty, h.connection_id, h.seq_nr, h.ack_nr),
        (PacketType::State, 50, 500, syn_seq)
    );
    (s, now)
}

fn data_to(seq: u16, payload: &[u8]) -> Vec<u8> {
    // ack_nr 499: nothing of ours acked (our first DATA would be 500).
    dgram(&header(PacketType::Data, 51, seq, 499), None, payload)
}

#[test]
fn header_round_trip_fixture() {
    let h = Header {
        ty: PacketType::State,
        connection_id: 0x1234,
        timestamp_us: 0x0102_0304,
        timestamp_diff_us: 0x0a0b_0c0d,
        wnd_size: 0x0010_0000,
        seq_nr: 0xfffe,
        ack_nr: 0x0001,
    };
    let d = dgram(&h, Some(&[1, 0, 0, 0x80]), b"xy");
    let want: &[u8] = &[
        0x21, 1, 0x12, 0x34, 1, 2, 3, 4, 0x0a, 0x0b, 0x0c, 0x0d, 0, 0x10, 0, 0, 0xff, 0xfe, 0, 1,
        0, 4, 1, 0, 0, 0x80, b'x', b'y',
    ];
    assert_eq!(d, want);
    let p = Packet::parse(&d).unwrap();
    assert_eq!(p.header, h);
    assert_eq!(p.sack, Some(&[1, 0, 0, 0x80][..]));
    assert_eq!(p.payload, b"xy");
    assert_eq!(p.payload_offset(), HEADER_LEN + 6);
}

#[test]
fn parse_rejects_malformed() {
    let good = dgram(&header(PacketType::Data, 1, 2, 3), None, b"p");
    assert_eq!(Packet::parse(&good[..19]), Err(PacketError::TooShort(19)));
    assert_eq!(Packet::parse(&[]), Err(PacketError::TooShort(0)));
    let mut bad = good.clone();
    bad[0] = 0x02;
    assert_eq!(Packet::parse(&bad), Err(PacketError::BadVersion(2)));
    bad[0] = 0x51;
    assert_eq!(Packet::parse(&bad), Err(PacketError::UnknownType(5)));
    // An extension announced but absent, and one longer than the datagram.
    let mut ext = good[..HEADER_LEN].to_vec();
    ext[1] = 1;
    assert_eq!(Packet::parse(&ext), Err(PacketError::TruncatedExtension));
    ext.extend_from_slice(&[0, 8, 0, 0, 0, 0]);
    assert_eq!(Packet::parse(&ext), Err(PacketError::TruncatedExtension));
    // SACK lengths: 0 and past MAX_SACK_LEN are refused; any other is taken (libtorrent 2.0
    // sends 1, 5, 9... bytes, seen on loopback).
    for len in [1usize, 3, 5, 9] {
        let mut d = good[..HEADER_LEN].to_vec();
        d[1] = 1;
        d.extend_from_slice(&[0, len as u8]);
        d.resize(d.len() + len, 0xff);
        assert_eq!(
            Packet::parse(&d).map(|p| p.sack.map(<[u8]>::len)),
            Ok(Some(len))
        );
    }
    for len in [0usize, MAX_SACK_LEN + 4] {
        let mut d = good[..HEADER_LEN].to_vec();
        d[1] = 1;
        d.extend_from_slice(&[0, len as u8]);
        d.resize(d.len() + len, 0xff);
        assert_eq!(
            Packet::parse(&d),
            Err(PacketError::BadSackLen(len)),
            "len {len}"
        );
    }
    // Two SACKs.
    let mut d = good[..HEADER_LEN].to_vec();
    d[1] = 1;
    d.extend_from_slice(&[1, 4, 1, 0, 0, 0, 0, 4, 1, 0, 0, 0]);
    assert_eq!(Packet::parse(&d), Err(PacketError::DuplicateSack));
    // A chain of unknown extensions that goes on (each names another): bounded.
    let mut d = good[..HEADER_LEN].to_vec();
    d[1] = 9;
    for _ in 0..20 {
        d.extend_from_slice(&[9, 0]);
    }
    assert_eq!(Packet::parse(&d), Err(PacketError::TooManyExtensions));
    // Unknown extensions within the bound are skipped.
    let mut d = good[..HEADER_LEN].to_vec();
    d[1] = 7;
    d.extend_from_slice(&[0, 2, 0xaa, 0xbb, b'z']);
    let p = Packet::parse(&d).unwrap();
    assert_eq!((p.sack, p.payload), (None, &b"z"[..]));
}

#[test]
fn reset_for_a_stray() {
    let stray = header(PacketType::Data, 77, 10, 20);
    let mut out = Vec::new();
    reset_for(&stray, 5000, &mut out);
    let p = Packet::parse(&out).unwrap();
    assert_eq!(p.header.ty, PacketType::Reset);
    assert_eq!(
        (
            p.header.connection_id,
            p.header.ack_nr,
            p.header.timestamp_diff_us
        ),
        (77, 10, 4000)
    );
}

#[test]
fn seq_comparison_wraps() {
    assert!(seq_lt(65_535, 0));
    assert!(seq_lt(65_000, 100));
    assert!(!seq_lt(100, 65_000));
    assert!(!seq_lt(5, 5));
}

#[test]
fn sack_round_trip_across_the_wrap() {
    let cfg = Config::default();
    // The peer's first DATA is 65531; it loses 65531 and sends 65532 ..= 65535, 0 ..= 5
    // except 2.
    let (mut s, now) = accepted(&cfg, 65_530);
    let sent: Vec<u16> = (65_532..=65_535).chain([0, 1, 3, 4, 5]).collect();
    for &seq in &sent {
        assert!(feed(&mut s, data_to(seq, b"abcd"), now).is_empty());
    }
    let acks = drain(&mut s, now);
    assert_eq!(acks.len(), 1, "one STATE for the batch");
    let (h, sack, _) = &acks[0];
    assert_eq!(h.ack_nr, 65_530);
    // Held out-of-order bytes do not close the window (the sender counts them in flight).
    assert_eq!(h.wnd_size as usize, cfg.recv_window);
    let sack = sack.as_ref().expect("a SACK while holding packets");
    assert_eq!(sack.len() % 4, 0);
    let acked: Vec<u16> = sack_bits(sack)
        .map(|i| h.ack_nr.wrapping_add(2).wrapping_add(i as u16))
        .collect();
    assert_eq!(acked, sent);
    // The codec alone: set bits, encode, parse, read them back.
    let mut mask = [0u8; 8];
    for i in [0, 7, 8, 31, 63] {
        sack_set(&mut mask, i);
    }
    let d = dgram(&header(PacketType::State, 1, 0, 65_535), Some(&mask), &[]);
    let p = Packet::parse(&d).unwrap();
    assert_eq!(
        sack_bits(p.sack.unwrap()).collect::<Vec<_>>(),
        [0, 7, 8, 31, 63]
    );
    // Filling the hole delivers everything in order, across the wrap.
    let got = feed(&mut s, data_to(65_531, b"0000"), now);
    assert_eq!(got.len(), 7, "65531 and the 6 buffered up to 1");
    let (h, sack, _) = &drain(&mut s, now)[0];
    assert_eq!(h.ack_nr, 1);
    let left: Vec<u16> = sack_bits(sack.as_deref().unwrap())
        .map(|i| h.ack_nr.wrapping_add(2).wrapping_add(i as u16))
        .collect();
    assert_eq!(left, [3, 4, 5]);
}

#[test]
fn far_ahead_dropped_and_duplicates_not_redelivered() {
    let cfg = Config {
        max_reorder: 16,
        recv_window: 64 * 1024,
        ..Config::default()
    };
    let (mut s, now) = accepted(&cfg, 1000);
    // Past max_reorder, and far ahead: dropped, nothing buffered, full window advertised.
    for seq in [1001 + 16, 1001 + 5000, 40_000] {
        assert!(feed(&mut s, data_to(seq, &[7; 1000]), now).is_empty());
    }
    let (h, sack, _) = drain(&mut s, now).pop().unwrap();
    assert_eq!((h.wnd_size as usize, sack), (cfg.recv_window, None));
    // Within max_reorder but past the receive window's bytes: dropped after the window fills.
    for seq in 1002..1001 + 16 {
        feed(&mut s, data_to(seq, &[7; 5000]), now);
    }
    let (h, sack, _) = drain(&mut s, now).pop().unwrap();
    assert_eq!(h.wnd_size as usize, cfg.recv_window);
    let held = sack.map_or(0, |m| sack_bits(&m).count());
    assert_eq!(
        held, 13,
        "13 packets of 5000 bytes fit in 64 KiB, the 14th is dropped"
    );
    // In order: delivered once; the same packet again is re-acked, not delivered.
    let (mut s, now) = accepted(&cfg, 1000);
    assert_eq!(
        feed(&mut s, data_to(1001, b"once"), now),
        [b"once".to_vec()]
    );
    assert_eq!(drain(&mut s, now).len(), 1);
    assert!(feed(&mut s, data_to(1001, b"once"), now).is_empty());
    let again = drain(&mut s, now);
    assert_eq!(again.len(), 1, "a duplicate is acked again");
    assert_eq!(again[0].0.ack_nr, 1001);
    // A buffered duplicate is not delivered twice either.
    feed(&mut s, data_to(1003, b"c"), now);
    feed(&mut s, data_to(1003, b"c"), now);
    assert_eq!(
        feed(&mut s, data_to(1002, b"b"), now),
        [b"b".to_vec(), b"c".to_vec()]
    );
}

#[test]
fn in_order_payload_is_lent_from_the_datagram() {
    let (mut s, now) = accepted(&Config::default(), 7);
    let mut d = data_to(8, b"zero copy");
    let pkt = Packet::parse(&d).unwrap();
    let (hdr, off) = (pkt.header, pkt.payload_offset());
    let range = d.as_ptr() as usize..d.as_ptr() as usize + d.len();
    let mut calls = 0;
    s.on_packet(&mut d, &hdr, None, off, now, &mut |b| {
        calls += 1;
        assert_eq!(b, b"zero copy");
        assert!(
            range.contains(&(b.as_ptr() as usize)),
            "a copy was delivered"
        );
        b[0] = b'Z'; // the caller lends it mutably (in-place decryption)
    });
    assert_eq!(calls, 1);
    assert_eq!(&d[off..off + 4], b"Zero");
}

#[test]
fn acks_of_unsent_packets_are_ignored() {
    let (mut s, now) = accepted(&Config::default(), 7);
    assert_eq!(s.write(&[1; 3000]), 3000);
    let sent = drain(&mut s, now);
    // The initial window is two packets: 500 and 501 go, 502 waits.
    assert_eq!(
        sent.iter().map(|p| p.0.seq_nr).collect::<Vec<_>>(),
        [500, 501]
    );
    // Acks 505 (never sent), then FIN/STATE garbage: no panic, nothing acked.
    feed(
        &mut s,
        dgram(&header(PacketType::State, 51, 8, 505), None, &[]),
        now,
    );
    let space = s.send_space();
    feed(
        &mut s,
        dgram(&header(PacketType::State, 51, 8, 501), None, &[]),
        now,
    );
    assert_eq!(
        s.send_space(),
        space + 2800,
        "acking 500 and 501 frees their bytes"
    );
    assert!(s.poll_event().is_none());
}

#[test]
fn peer_reset_closes() {
    let (mut s, now) = accepted(&Config::default(), 7);
    feed(
        &mut s,
        dgram(&header(PacketType::Reset, 51, 8, 499), None, &[]),
        now,
    );
    assert_eq!(
        s.poll_event(),
        Some(Event::Closed(super::CloseReason::Reset))
    );
    assert!(s.is_closed() && s.poll_timeout().is_none());
}

/// Random packets, some near the stream's real numbers, into streams in every phase:
/// never a panic, and everything sent parses (the `utp` fuzz target's logic as a loop).
#[test]
fn random_packet_flood_never_panics() {
    let types = [
        PacketType::Data,
        PacketType::Fin,
        PacketType::State,
        PacketType::Reset,
        PacketType::Syn,
    ];
    for seed in 0..40 {
        let mut rng = Rng::new(seed);
        let cfg = Config {
            max_reorder: 64,
            recv_window: 32 * 1024,
            send_buffer: 64 * 1024,
            ..Config::default()
        };
        let epoch = Instant::now();
        let mut now = epoch;
        let mut s = match seed % 3 {
            0 => Stream::connect(3, now, epoch, &cfg, 65_530),
            _ => accepted(&cfg, 65_500u16.wrapping_add(seed as u16)).0,
        };
        for _ in 0..3000 {
            now += Duration::from_micros(rng.below(200_000));
            let near =
                |rng: &mut Rng, base: u16| base.wrapping_add(rng.below(40) as u16).wrapping_sub(20);
            let h = Header {
                ty: types[rng.below(5) as usize],
                connection_id: if rng.chance(900) {
                    51
                } else {
                    rng.next() as u16
                },
                timestamp_us: rng.next() as u32,
                timestamp_diff_us: if rng.chance(500) {
                    rng.below(300_000) as u32
                } else {
                    rng.next() as u32
                },
                wnd_size: if rng.chance(100) {
                    0
                } else {
                    rng.next() as u32
                },
                seq_nr: if rng.chance(800) {
                    near(&mut rng, 65_500u16.wrapping_add(seed as u16))
                } else {
                    rng.next() as u16
                },
                ack_nr: if rng.chance(800) {
                    near(&mut rng, 500)
                } else {
                    rng.next() as u16
                },
            };
            let mut mask = vec![0u8; 4 * (1 + rng.below(4) as usize)];
            mask.iter_mut().for_each(|b| *b = rng.next() as u8);
            let sack = rng.chance(300).then_some(&mask[..]);
            let payload = vec![0x5a; rng.below(1500) as usize];
            feed(&mut s, dgram(&h, sack, &payload), now);
            if rng.chance(300) {
                s.write(&payload);
            }
            if rng.chance(5) {
                s.close();
            }
            drain(&mut s, now);
            if s.poll_timeout().is_some_and(|t| t <= now) || rng.chance(50) {
                s.on_timeout(now);
                drain(&mut s, now);
            }
            while s.poll_event().is_some() {}
            assert!(s.send_space() <= cfg.send_buffer);
        }
    }
}
