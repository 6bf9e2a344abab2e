//! Two streams over an in-memory link with a virtual clock (quinn-proto's `Pair`, in
//! miniature): loss, reordering, duplication and delay from a seeded PRNG. No sockets, no
//! threads; time only moves when both sides wait.

use std::time::{Duration, Instant};

use super::packet::{reset_for, Packet};
use super::{CloseReason, Config, Event, Stream};

/// xorshift64*: enough randomness for link faults, the same on every run.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// True with probability `per_mille / 1000`.
    pub(super) fn chance(&mut self, per_mille: u64) -> bool {
        self.next() % 1000 < per_mille
    }
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// How one direction of the link misbehaves.
#[derive(Clone, Copy, Default)]
pub(super) struct Faults {
    pub(super) loss_per_mille: u64,
    pub(super) dup_per_mille: u64,
    /// Each datagram is delayed by `delay` plus up to `jitter` (jitter reorders).
    pub(super) delay: Duration,
    pub(super) jitter: Duration,
    /// Extra one-way delay growing by this much per second of virtual time (a filling queue).
    pub(super) delay_growth_per_s: Duration,
}

pub(super) struct Side {
    /// `None` on the accepting side until the SYN arrives.
    pub(super) stream: Option<Stream>,
    pub(super) to_send: Vec<u8>,
    pub(super) written: usize,
    pub(super) received: Vec<u8>,
    pub(super) events: Vec<Event>,
    /// Close once everything is written.
    pub(super) close_when_done: bool,
    /// Packets from the peer are dropped (a peer that went silent).
    pub(super) deaf: bool,
}

impl Side {
    fn new(stream: Option<Stream>) -> Side {
        Side {
            stream,
            to_send: Vec::new(),
            written: 0,
            received: Vec::new(),
            events: Vec::new(),
            close_when_done: false,
            deaf: false,
        }
    }

    pub(super) fn closed(&self) -> Option<CloseReason> {
        self.events.iter().find_map(|e| match e {
            Event::Closed(r) => Some(*r),
            _ => None,
        })
    }

    pub(super) fn s(&self) -> &Stream {
        self.stream.as_ref().expect("stream exists")
    }
}

pub(super) struct Sim {
    pub(super) cfg: Config,
    pub(super) now: Instant,
    pub(super) start: Instant,
    pub(super) epoch: Instant,
    pub(super) sides: [Side; 2],
    /// In flight towards side `i`: (arrival, order, datagram).
    links: [Vec<(Instant, u64, Vec<u8>)>; 2],
    /// Faults of the link towards side `i`.
    pub(super) faults: [Faults; 2],
    rng: Rng,
    order: u64,
    accept_seq: u16,
    /// Datagrams sent by side `i`.
    pub(super) sent: [u64; 2],
    /// RESETs the sim answered stray packets with (as the shard does).
    pub(super) resets_answered: u64,
    /// Drop the n-th datagram (counting from 0) towards side `i`, once.
    pub(super) drop_nth: [Option<u64>; 2],
    pushed: [u64; 2],
}

pub(super) fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    (0..len).map(|_| rng.next() as u8).collect()
}

impl Sim {
    /// Side 0 connects (initial seq `seqs.0`), side 1 accepts the first SYN that arrives
    /// (initial seq `seqs.1`).
    pub(super) fn new(cfg: &Config, seed: u64, seqs: (u16, u16)) -> Sim {
        let epoch = Instant::now();
        let now = epoch + Duration::from_secs(1);
        let a = Stream::connect(7, now, epoch, cfg, seqs.0);
        Sim {
            cfg: cfg.clone(),
            now,
            start: now,
            epoch,
            sides: [Side::new(Some(a)), Side::new(None)],
            links: [Vec::new(), Vec::new()],
            faults: [Faults::default(); 2],
            rng: Rng::new(seed),
            order: 0,
            accept_seq: seqs.1,
            sent: [0; 2],
            resets_answered: 0,
            drop_nth: [None; 2],
            pushed: [0; 2],
        }
    }

    fn push(&mut self, to: usize, dgram: Vec<u8>) {
        let f = self.faults[to];
        let nth = self.pushed[to];
        self.pushed[to] += 1;
        if self.drop_nth[to] == Some(nth) || self.rng.chance(f.loss_per_mille) {
            return;
        }
        let copies = if self.rng.chance(f.dup_per_mille) {
            2
        } else {
            1
        };
        let elapsed = self.now.saturating_duration_since(self.start).as_secs_f64();
        let growth = f.delay_growth_per_s.mul_f64(elapsed);
        for _ in 0..copies {
            let jitter = Duration::from_micros(self.rng.below(f.jitter.as_micros() as u64 + 1));
            self.order += 1;
            let at = self.now + f.delay + growth + jitter;
            self.links[to].push((at, self.order, dgram.clone()));
        }
    }

    /// Lets side `i` write, then drains what it sends.
    fn pump(&mut self, i: usize) {
        let mut out = Vec::new();
        let now = self.now;
        let side = &mut self.sides[i];
        let Some(s) = side.stream.as_mut() else {
            return;
        };
        if side.written < side.to_send.len() {
            side.written += s.write(&side.to_send[side.written..]);
        }
        if side.close_when_done && side.written == side.to_send.len() {
            s.close();
        }
        let mut sent = Vec::new();
        while s.poll_transmit(now, &mut out) {
            sent.push(out.clone());
        }
        while let Some(e) = s.poll_event() {
            side.events.push(e);
        }
        self.sent[i] += sent.len() as u64;
        for d in sent {
            self.push(1 - i, d);
        }
    }

    /// Hands side `to` one datagram; a closed or absent stream answers with a RESET (as the
    /// shard does for strays), except to a RESET.
    fn arrive(&mut self, to: usize, mut dgram: Vec<u8>) {
        if self.sides[to].deaf {
            return;
        }
        let Ok(pkt) = Packet::parse(&dgram) else {
            panic!("the stream sent an unparsable datagram");
        };
        let (hdr, off) = (pkt.header, pkt.payload_offset());
        let sack = pkt.sack.map(<[u8]>::to_vec);
        let now = self.now;
        let side = &mut self.sides[to];
        if side.stream.is_none() && hdr.ty == super::packet::PacketType::Syn {
            side.stream = Some(Stream::accept(
                &hdr,
                now,
                self.epoch,
                &self.cfg,
                self.accept_seq,
            ));
        }
        match side.stream.as_mut() {
            Some(s) if !s.is_closed() => {
                let received = &mut side.received;
                s.on_packet(&mut dgram, &hdr, sack.as_deref(), off, now, &mut |b| {
                    received.extend_from_slice(b)
                });
            }
            _ if hdr.ty != super::packet::PacketType::Reset => {
                let mut out = Vec::new();
                reset_for(&hdr, 0, &mut out);
                self.resets_answered += 1;
                self.push(1 - to, out);
            }
            _ => {}
        }
    }

    /// Runs until both sides are closed or `limit` of virtual time passed; returns false on
    /// the limit.
    pub(super) fn run(&mut self, limit: Duration) -> bool {
        let end = self.now + limit;
        // Steps without time moving: a timer that fires and stays due would spin forever.
        let mut still = 0;
        loop {
            self.pump(0);
            self.pump(1);
            let done = |s: &Side| s.stream.as_ref().is_some_and(Stream::is_closed);
            if done(&self.sides[0]) && done(&self.sides[1]) && self.links.iter().all(Vec::is_empty)
            {
                return true;
            }
            let mut next: Option<Instant> = None;
            let mut consider = |t: Option<Instant>| {
                if let Some(t) = t {
                    next = Some(next.map_or(t, |n| n.min(t)));
                }
            };
            for l in &self.links {
                consider(l.iter().map(|d| d.0).min());
            }
            for s in &self.sides {
                consider(s.stream.as_ref().and_then(Stream::poll_timeout));
            }
            let Some(next) = next else {
                return done(&self.sides[0]) && done(&self.sides[1]);
            };
            if next > end {
                self.now = end;
                return false;
            }
            still = if next > self.now { 0 } else { still + 1 };
            assert!(
                still < 100_000,
                "stuck: a timer stays due at {:?}",
                self.now - self.start
            );
            self.now = self.now.max(next);
            self.step();
        }
    }

    /// Delivers what has arrived by now, then fires due timers.
    fn step(&mut self) {
        for to in 0..2 {
            let mut due: Vec<_> = Vec::new();
            let now = self.now;
            self.links[to].retain(|d| {
                let arrived = d.0 <= now;
                if arrived {
                    due.push(d.clone());
                }
                !arrived
            });
            due.sort_by_key(|d| (d.0, d.1));
            for (_, _, dgram) in due {
                self.arrive(to, dgram);
            }
        }
        for i in 0..2 {
            let now = self.now;
            if let Some(s) = self.sides[i].stream.as_mut() {
                if s.poll_timeout().is_some_and(|t| t <= now) {
                    s.on_timeout(now);
                }
            }
        }
    }
}

fn both_ways(cfg: &Config, seed: u64, seqs: (u16, u16), faults: Faults, len: usize) -> Sim {
    let mut sim = Sim::new(cfg, seed, seqs);
    sim.faults = [faults; 2];
    for (i, side) in sim.sides.iter_mut().enumerate() {
        side.to_send = data(len, seed * 10 + i as u64);
        side.close_when_done = true;
    }
    assert!(sim.run(Duration::from_secs(600)), "did not finish");
    for i in 0..2 {
        let side = &sim.sides[i];
        let want = &sim.sides[1 - i].to_send;
        let diff = side.received.iter().zip(want).position(|(a, b)| a != b);
        assert!(
            side.received == *want,
            "side {i}: bytes differ: {} vs {} bytes, first difference at {diff:?}",
            side.received.len(),
            want.len()
        );
        assert_eq!(side.closed(), Some(CloseReason::Finished), "side {i}");
        assert!(side.events.contains(&Event::RemoteClosed), "side {i}");
    }
    assert!(sim.sides[0].events.contains(&Event::Connected));
    sim
}

const MIB: usize = 1 << 20;

#[test]
fn transfer_4_mib_both_ways_and_close() {
    let faults = Faults {
        delay: Duration::from_millis(10),
        ..Faults::default()
    };
    let sim = both_ways(&Config::default(), 1, (100, 30000), faults, 4 * MIB);
    // A clean link: nothing resent, and slow start took it well past a few packets.
    for side in &sim.sides {
        assert_eq!(side.s().stats().retransmits, 0);
        assert!(side.s().stats().cwnd > 64 * 1400, "{:?}", side.s().stats());
    }
    assert!(
        sim.now - sim.start < Duration::from_secs(5),
        "{:?}",
        sim.now - sim.start
    );
}

#[test]
fn transfer_with_loss_reordering_and_duplicates() {
    let faults = Faults {
        loss_per_mille: 20,
        dup_per_mille: 20,
        delay: Duration::from_millis(20),
        jitter: Duration::from_millis(15),
        delay_growth_per_s: Duration::ZERO,
    };
    // Sequence numbers start near the wrap, so both directions cross 65535 -> 0.
    for (seed, seqs) in [(11, (65_500, 65_000)), (12, (3, 65_535)), (13, (40_000, 1))] {
        let sim = both_ways(&Config::default(), seed, seqs, faults, 4 * MIB);
        let st = sim.sides[0].s().stats();
        assert!(st.retransmits > 0, "seed {seed}: no loss seen? {st:?}");
    }
}

#[test]
fn syn_lost_is_resent() {
    let mut sim = Sim::new(&Config::default(), 3, (1, 2));
    sim.drop_nth[1] = Some(0);
    assert!(!sim.run(Duration::from_millis(900)));
    assert!(sim.sides[1].stream.is_none(), "the first SYN was dropped");
    assert!(!sim.run(Duration::from_millis(200)));
    assert!(sim.sides[1].stream.is_some(), "a second SYN after 1 s");
    assert_eq!(sim.sides[0].s().stats().retransmits, 1);
    assert!(sim.sides[0].events.contains(&Event::Connected));
}

#[test]
fn syn_unanswered_times_out() {
    let cfg = Config::default();
    let mut sim = Sim::new(&cfg, 4, (1, 2));
    sim.sides[1].deaf = true;
    sim.run(Duration::from_secs(60));
    assert_eq!(sim.sides[0].closed(), Some(CloseReason::ConnectTimedOut));
    assert_eq!(sim.now - sim.start, cfg.connect_timeout);
    // SYNs at 0 s, 1 s, 3 s (the next would be at 7 s).
    assert_eq!(sim.sent[0], 3);
}

#[test]
fn one_lost_packet_is_fast_retransmitted() {
    let mut sim = Sim::new(&Config::default(), 5, (65_530, 9));
    sim.faults = [Faults {
        delay: Duration::from_millis(10),
        ..Faults::default()
    }; 2];
    sim.sides[0].to_send = data(200_000, 5);
    // Towards the receiver: 0 is the SYN, then DATA; lose the 12th DATA packet.
    sim.drop_nth[1] = Some(12);
    // Less than the minimum RTO (500 ms): only a fast retransmit can repair the hole in time.
    sim.run(Duration::from_millis(450));
    assert!(
        sim.sides[1].received == sim.sides[0].to_send,
        "{} bytes",
        sim.sides[1].received.len()
    );
    assert_eq!(sim.sides[0].s().stats().retransmits, 1);
}

#[test]
fn silent_peer_times_out_with_backoff() {
    let cfg = Config {
        send_buffer: 64 * 1024,
        ..Config::default()
    };
    let mut sim = Sim::new(&cfg, 6, (1, 2));
    sim.faults = [Faults {
        delay: Duration::from_millis(10),
        ..Faults::default()
    }; 2];
    sim.sides[0].to_send = data(16 * MIB, 6);
    assert!(!sim.run(Duration::from_millis(300)));
    assert!(!sim.sides[1].received.is_empty(), "the transfer started");
    sim.sides[1].deaf = true;
    sim.sides[0].deaf = true;
    let (silent_at, sent_before) = (sim.now, sim.sent[0]);
    let retransmits_before = sim.sides[0].s().stats().retransmits;
    sim.run(Duration::from_secs(120));
    assert_eq!(
        sim.sides[0].closed(),
        Some(CloseReason::TimedOut),
        "{:?} after {:?}, timer {:?}",
        sim.sides[0].s().stats(),
        sim.now - silent_at,
        sim.sides[0].s().poll_timeout().map(|t| t - silent_at)
    );
    let took = sim.now - silent_at;
    assert!(
        took <= cfg.max_idle && took > cfg.max_idle - Duration::from_secs(1),
        "{took:?}"
    );
    // Whatever was in flight, then a resend at each RTO (0.5 s+, doubling): a handful, not
    // one per packet per timeout.
    let resends = sim.sides[0].s().stats().retransmits - retransmits_before;
    let timeouts = resends.min(sim.sent[0] - sent_before);
    assert!(
        (4..=10).contains(&timeouts),
        "{timeouts} resends in {took:?}"
    );
}

#[test]
fn ledbat_grows_at_low_delay_and_shrinks_above_target() {
    let cfg = Config {
        send_buffer: 64 * 1024,
        ..Config::default()
    };
    let mut sim = Sim::new(&cfg, 7, (1, 2));
    sim.faults = [Faults {
        delay: Duration::from_millis(10),
        ..Faults::default()
    }; 2];
    sim.sides[0].to_send = data(64 * MIB, 7);
    sim.run(Duration::from_millis(25));
    let early = sim.sides[0].s().stats().cwnd;
    sim.run(Duration::from_millis(1975));
    let grown = sim.sides[0].s().stats().cwnd;
    assert!(grown > 4 * early, "low delay: cwnd {early} -> {grown}");
    // The data direction's queue fills: +150 ms of one-way delay per second.
    sim.faults[1].delay_growth_per_s = Duration::from_millis(150);
    sim.start = sim.now;
    sim.run(Duration::from_secs(4));
    let shrunk = sim.sides[0].s().stats().cwnd;
    assert!(
        shrunk < grown / 2,
        "delay above target: cwnd {grown} -> {shrunk}"
    );
}
