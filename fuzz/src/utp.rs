//! uTP (BEP 29): `utp::packet::Packet::parse`, and a `utp::Stream` fed the packets.
//!
//! Input: a mode byte (bit 0: 0 drives a stream that dialled, 1 one that accepted
//! [`UTP_SYN`]), then records `[ms to wait][length u16 BE][datagram]`. Properties checked,
//! besides "never panics":
//! - a datagram that parses encodes back (header, SACK, payload) to one that parses the
//!   same;
//! - everything the stream sends parses, carries its connection id, and SACKs are valid;
//! - the stream never accepts more than its send buffer, and a closed stream has no timer.

use std::time::{Duration, Instant};

use ringtorrent::utp::packet::{encode, Header, Packet, PacketType};
use ringtorrent::utp::{Config, Stream};

/// The dialling stream's recv id: the peer's packets carry it.
pub const UTP_RECV_ID: u16 = 7;
/// The dialling stream's SYN seq_nr.
pub const UTP_SYN_SEQ: u16 = 1000;
/// The accepting stream's first seq_nr (its STATE's).
pub const UTP_ACCEPT_SEQ: u16 = 500;
/// The SYN the accepting stream answers: the peer's packets then carry id 51.
pub const UTP_SYN: Header = Header {
    ty: PacketType::Syn,
    connection_id: 50,
    timestamp_us: 1000,
    timestamp_diff_us: 0,
    wnd_size: 1 << 20,
    seq_nr: 2000,
    ack_nr: 0,
};

fn config() -> Config {
    Config {
        send_buffer: 64 * 1024,
        recv_window: 64 * 1024,
        max_reorder: 64,
        ..Config::default()
    }
}

pub fn utp(data: &[u8]) {
    round_trip(data);
    let [mode, records @ ..] = data else {
        return;
    };
    let mut rest = records;
    let cfg = config();
    let epoch = Instant::now();
    let mut now = epoch + Duration::from_secs(1);
    let accept = mode & 1 == 1;
    let mut s = match accept {
        true => Stream::accept(&UTP_SYN, now, epoch, &cfg, UTP_ACCEPT_SEQ),
        false => Stream::connect(UTP_RECV_ID, now, epoch, &cfg, UTP_SYN_SEQ),
    };
    let send_id = match accept {
        true => UTP_SYN.connection_id,
        false => UTP_RECV_ID.wrapping_add(1),
    };
    let mut out = Vec::new();
    let filler = [0x42u8; 3000];
    while let &[wait, hi, lo, ref tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([hi, lo])).min(tail.len());
        let (dgram, next) = tail.split_at(len);
        rest = next;
        now += Duration::from_millis(u64::from(wait) * 8);
        if s.poll_timeout().is_some_and(|t| t <= now) {
            s.on_timeout(now);
        }
        if let Ok(p) = Packet::parse(dgram) {
            let (hdr, off, sack) = (p.header, p.payload_offset(), p.sack.map(<[u8]>::to_vec));
            let mut dgram = dgram.to_vec();
            s.on_packet(&mut dgram, &hdr, sack.as_deref(), off, now, &mut |b| {
                assert!(!b.is_empty());
            });
        }
        if wait & 1 == 1 {
            let space = s.send_space();
            assert!(space <= cfg.send_buffer);
            assert!(s.write(&filler) <= space);
        }
        if wait == 0xff {
            s.close();
        }
        while s.poll_transmit(now, &mut out) {
            let p = Packet::parse(&out).expect("the stream sends valid packets");
            let id = match p.header.ty {
                PacketType::Syn => UTP_RECV_ID,
                _ => send_id,
            };
            assert_eq!(p.header.connection_id, id);
        }
        while s.poll_event().is_some() {}
        if s.is_closed() {
            assert!(s.poll_timeout().is_none());
        }
    }
}

/// Parse, encode, parse: the same packet.
fn round_trip(data: &[u8]) {
    let Ok(p) = Packet::parse(data) else {
        return;
    };
    let mut again = Vec::new();
    encode(&p.header, p.sack, p.payload, &mut again);
    let q = Packet::parse(&again).expect("an encoded packet parses");
    assert_eq!((p.header, p.sack, p.payload), (q.header, q.sack, q.payload));
}
