//! Two shards' uTP carriers talking through datagrams carried by hand: the ops a connection
//! gives and the completions it gets back, as the loop sees them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::shard::udp::UtpIds;

const A: Token = 7;
const B: Token = 9;

struct Pair {
    a: UtpConns,
    b: UtpConns,
    a_addr: SocketAddr,
    b_addr: SocketAddr,
    /// Payload the b side's connection received.
    got: Vec<u8>,
}

impl Pair {
    /// `a` dials `b`; `b` adopts the connection under token `B` and starts receiving.
    fn connected(now: Instant) -> Pair {
        let mut p = Pair {
            a: UtpConns::new(UtpIds::new(0, 1, 100), now, 1),
            b: UtpConns::new(UtpIds::new(0, 1, 200), now, 2),
            a_addr: "127.0.0.1:6881".parse().unwrap(),
            b_addr: "127.0.0.2:6881".parse().unwrap(),
            got: Vec::new(),
        };
        p.a.connect(A, p.b_addr, now);
        let inc = p.a_to_b(now).expect("the SYN opens a connection");
        assert_eq!(inc.from, p.a_addr);
        p.b.adopt(B, inc);
        assert!(p.b.op(Op::Recv { token: B }, now).is_none());
        p.b_to_a(now);
        let owed = p.a.take_owed();
        assert!(
            matches!(
                owed[..],
                [Owed::Connected {
                    token: A,
                    result: Ok(())
                }]
            ),
            "{:?}",
            owed.len()
        );
        assert!(p.a.op(Op::Recv { token: A }, now).is_none());
        p
    }

    fn a_to_b(&mut self, now: Instant) -> Option<Incoming> {
        self.a.transmit(now);
        let mut inc = None;
        for (to, mut d) in self.a.out.take_queue() {
            assert_eq!(to, self.b_addr);
            let got = &mut self.got;
            let r = self
                .b
                .on_datagram(self.a_addr, &mut d, now, true, &mut |t, bytes| {
                    assert_eq!(t, B);
                    got.extend_from_slice(bytes);
                });
            inc = inc.or(r);
        }
        inc
    }

    fn b_to_a(&mut self, now: Instant) {
        self.b.transmit(now);
        for (to, mut d) in self.b.out.take_queue() {
            assert_eq!(to, self.a_addr);
            let inc = self
                .a
                .on_datagram(self.b_addr, &mut d, now, true, &mut |_, _| {});
            assert!(inc.is_none());
        }
    }
}

#[test]
fn a_send_crosses_as_a_byte_stream_and_both_sides_close() {
    let now = Instant::now();
    let mut p = Pair::connected(now);
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let send = Op::Send {
        token: A,
        buf: SendBuf::from_bytes(payload.clone()),
    };
    assert!(p.a.op(send, now).is_none());
    // The stream takes all of it at once (1 MiB send buffer): the send is reported done.
    assert!(matches!(
        p.a.take_owed()[..],
        [Owed::Sent {
            token: A,
            result: Ok(()),
            ..
        }]
    ));
    for _ in 0..2000 {
        if p.got.len() == payload.len() {
            break;
        }
        p.a_to_b(now);
        p.b_to_a(now);
    }
    assert!(
        p.got == payload,
        "received {} of {} bytes",
        p.got.len(),
        payload.len()
    );
    // a closes: a's connection is released at once, b's read side ends.
    assert!(p.a.op(Op::Close { token: A }, now).is_none());
    assert!(matches!(p.a.take_owed()[..], [Owed::Closed { token: A }]));
    assert!(
        !p.a.owns_op(&Op::Recv { token: A }),
        "the token is free for reuse"
    );
    p.a_to_b(now);
    assert!(matches!(
        p.b.take_owed()[..],
        [Owed::RecvEnded {
            token: B,
            result: Ok(())
        }]
    ));
    assert!(p.b.op(Op::Close { token: B }, now).is_none());
    for _ in 0..10 {
        p.b_to_a(now);
        p.a_to_b(now);
    }
    assert!(
        p.a.streams.is_empty() && p.b.streams.is_empty(),
        "both streams finished"
    );
}

#[test]
fn a_closed_stream_whose_peer_never_finishes_is_dropped_after_lingering() {
    let now = Instant::now();
    let mut p = Pair::connected(now);
    assert!(p.a.op(Op::Close { token: A }, now).is_none());
    // Our FIN goes out and is acked; the peer never closes its side.
    p.a_to_b(now);
    p.b_to_a(now);
    p.a.on_timers(now + Duration::from_secs(29));
    assert_eq!(p.a.streams.len(), 1, "lingering for the peer's FIN");
    p.a.on_timers(now + MAX_LINGER + Duration::from_secs(1));
    assert!(p.a.streams.is_empty(), "dropped after {MAX_LINGER:?}");
}

#[test]
fn a_stray_packet_is_answered_with_a_reset_and_junk_is_counted() {
    let now = Instant::now();
    let mut p = Pair::connected(now);
    let from: SocketAddr = "127.0.0.9:1".parse().unwrap();
    let mut junk = vec![0xffu8; 30];
    assert!(p
        .b
        .on_datagram(from, &mut junk, now, true, &mut |_, _| panic!(
            "delivered junk"
        ))
        .is_none());
    assert_eq!(p.b.counters.malformed, 1);
    // A STATE for a connection id nobody has.
    let mut stray = Vec::new();
    let h = packet::Header {
        ty: PacketType::State,
        connection_id: 4242,
        timestamp_us: 0,
        timestamp_diff_us: 0,
        wnd_size: 0,
        seq_nr: 1,
        ack_nr: 1,
    };
    packet::encode(&h, None, &[], &mut stray);
    assert!(p
        .b
        .on_datagram(from, &mut stray, now, true, &mut |_, _| panic!(
            "delivered a stray"
        ))
        .is_none());
    assert_eq!(p.b.counters.strays, 1);
    let q = p.b.out.take_queue();
    let reset = q
        .iter()
        .find(|(to, _)| *to == from)
        .expect("a RESET to the stray's sender");
    let parsed = Packet::parse(&reset.1).unwrap();
    assert_eq!(parsed.header.ty, PacketType::Reset);
    // A SYN while not accepting is refused the same way, and opens nothing.
    let mut syn = Vec::new();
    packet::encode(
        &packet::Header {
            ty: PacketType::Syn,
            ..h
        },
        None,
        &[],
        &mut syn,
    );
    assert!(p
        .b
        .on_datagram(from, &mut syn, now, false, &mut |_, _| {})
        .is_none());
}
