//! One uTP connection's state machine (BEP 29, "Connection setup" and on): the handshake,
//! which packet goes out next, timers, and closing. The send and receive sides and the
//! congestion controller live in `send.rs`, `recv.rs` and `ledbat.rs`.
//!
//! Handshake (as libtorrent, so both interoperate): the initiator's SYN has
//! `seq_nr = rng_seq`, its first DATA `rng_seq + 1`. The acceptor answers with a STATE
//! `seq_nr = rng_seq, ack_nr = syn.seq_nr`, and its first DATA has `seq_nr = rng_seq` (a
//! STATE names the next sequence number without consuming it), so the initiator sets its
//! `ack_nr` to the STATE's `seq_nr - 1`.
//!
//! Closing: our FIN goes out after every written byte, with the next sequence number; STATEs
//! after it carry the FIN's number (libtorrent drops packets numbered past a FIN). The stream
//! is `Closed(Finished)` once our FIN is acked and the peer's FIN delivered. If the last ACK
//! of our FIN is lost and the peer is gone, its RESET (the shard's answer to a stray packet),
//! or [`FIN_RESENDS`] unanswered FINs, end it as `Finished` too.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::ledbat::Ledbat;
use super::packet::{Header, PacketType, MAX_SACK_LEN};
use super::recv::{Data, RecvSide};
use super::send::SendSide;
use super::{micros_since, seq_lt, CloseReason, Config, Event, StreamStats, MAX_IN_FLIGHT};

// `poll_transmit` and packet building; a child module, for the fields.
#[path = "transmit.rs"]
mod transmit;

/// The first SYN resend comes this long after the SYN; each later one twice as long.
const SYN_RESEND: Duration = Duration::from_secs(1);
/// Times our FIN is sent, once everything else is done, before we stop waiting for its ACK.
pub const FIN_RESENDS: u32 = 3;

/// Where the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Outgoing, waiting for the answer to our SYN.
    SynSent {
        syn_seq: u16,
        owed: bool,
        sent_at: Instant,
        sends: u32,
        resend_at: Option<Instant>,
        backoff: Duration,
        give_up_at: Instant,
    },
    Connected,
    Closed(CloseReason),
}

/// One uTP connection. See the module doc of [`crate::utp`] for how the shard drives it.
pub struct Stream {
    cfg: Config,
    epoch: Instant,
    recv_id: u16,
    send_id: u16,
    phase: Phase,
    /// Incoming: the peer's SYN, re-acked when it comes again.
    peer_syn: Option<u16>,
    /// Incoming: our first DATA's seq_nr, the seq_nr of every STATE that answers a SYN.
    first_seq: u16,
    send: SendSide,
    recv: RecvSide,
    cc: Ledbat,
    /// The peer's advertised window.
    peer_wnd: usize,
    /// Our last one-way delay sample of the peer's packets, sent back to it.
    reply_micro: u32,
    /// A STATE is owed: for the peer's SYN (incoming), or for received packets.
    state_owed: bool,
    ack_owed: bool,
    reset_owed: bool,
    /// `close` was called; the FIN goes after every written byte.
    fin_wanted: bool,
    fin_sent: bool,
    fin_acked: bool,
    rto_at: Option<Instant>,
    last_heard: Instant,
    /// One packet may go past a closed window (zero-window probe).
    probe: bool,
    events: VecDeque<Event>,
    stats: StreamStats,
    sack_buf: [u8; MAX_SACK_LEN],
}

impl Stream {
    fn new(cfg: &Config, epoch: Instant, now: Instant, ids: (u16, u16), seqs: (u16, u16)) -> Self {
        let (recv_id, send_id) = ids;
        let (next_seq, ack_nr) = seqs;
        Stream {
            cfg: cfg.clone(),
            epoch,
            recv_id,
            send_id,
            phase: Phase::Connected,
            peer_syn: None,
            first_seq: next_seq,
            send: SendSide::new(next_seq),
            recv: RecvSide::new(ack_nr),
            cc: Ledbat::new(
                cfg.max_payload,
                cfg.send_buffer,
                cfg.target_delay_us,
                next_seq.wrapping_sub(1),
            ),
            peer_wnd: cfg.max_payload,
            reply_micro: 0,
            state_owed: false,
            ack_owed: false,
            reset_owed: false,
            fin_wanted: false,
            fin_sent: false,
            fin_acked: false,
            rto_at: None,
            last_heard: now,
            probe: false,
            events: VecDeque::new(),
            stats: StreamStats::default(),
            sack_buf: [0; MAX_SACK_LEN],
        }
    }

    /// Outgoing. `recv_id` is chosen by the caller; `send_id = recv_id + 1`. The SYN is queued
    /// (the first `poll_transmit` returns it). Timestamps count from `epoch`.
    pub fn connect(
        recv_id: u16,
        now: Instant,
        epoch: Instant,
        cfg: &Config,
        rng_seq: u16,
    ) -> Stream {
        let ids = (recv_id, recv_id.wrapping_add(1));
        let mut s = Stream::new(cfg, epoch, now, ids, (rng_seq.wrapping_add(1), 0));
        s.phase = Phase::SynSent {
            syn_seq: rng_seq,
            owed: true,
            sent_at: now,
            sends: 0,
            resend_at: None,
            backoff: SYN_RESEND,
            give_up_at: now + cfg.connect_timeout,
        };
        s
    }

    /// Incoming, from a SYN: `recv_id = syn.connection_id + 1`, `send_id =
    /// syn.connection_id`. Queues the STATE that answers it; `rng_seq` is our first seq_nr.
    pub fn accept(
        syn: &Header,
        now: Instant,
        epoch: Instant,
        cfg: &Config,
        rng_seq: u16,
    ) -> Stream {
        let ids = (syn.connection_id.wrapping_add(1), syn.connection_id);
        let mut s = Stream::new(cfg, epoch, now, ids, (rng_seq, syn.seq_nr));
        s.peer_syn = Some(syn.seq_nr);
        s.state_owed = true;
        s.note_heard(syn, now);
        s
    }

    /// The connection id the peer's packets carry (what the shard keys the stream by).
    pub fn recv_id(&self) -> u16 {
        self.recv_id
    }

    fn note_heard(&mut self, hdr: &Header, now: Instant) {
        self.last_heard = now;
        self.reply_micro = micros_since(now, self.epoch).wrapping_sub(hdr.timestamp_us);
        self.peer_wnd = usize::try_from(hdr.wnd_size).unwrap_or(usize::MAX);
    }

    /// A packet from the peer (already matched by `recv_id`); `datagram` is the whole
    /// datagram and `payload_off` where `hdr`'s payload starts in it. In-order payload is
    /// handed to `deliver`, lent from `datagram`, then any buffered packets it unblocked, in
    /// stream order. Never panics on any input.
    pub fn on_packet(
        &mut self,
        datagram: &mut [u8],
        hdr: &Header,
        sack: Option<&[u8]>,
        payload_off: usize,
        now: Instant,
        deliver: &mut dyn FnMut(&mut [u8]),
    ) {
        if self.is_closed() {
            return;
        }
        self.stats.packets_received += 1;
        let Some(payload) = datagram.get_mut(payload_off..) else {
            return;
        };
        if let Phase::SynSent {
            syn_seq,
            sent_at,
            sends,
            ..
        } = self.phase
        {
            // Only a STATE tells where the peer's DATA starts (its seq_nr): a DATA that
            // overtook it may not be the first, so it waits for a resend.
            match hdr.ty {
                _ if hdr.ack_nr != syn_seq => return,
                PacketType::Reset => return self.finish(CloseReason::Reset),
                PacketType::State => {}
                _ => return,
            }
            if sends == 1 {
                self.cc.rtt_sample(now.saturating_duration_since(sent_at));
            }
            self.phase = Phase::Connected;
            self.recv = RecvSide::new(hdr.seq_nr.wrapping_sub(1));
            self.events.push_back(Event::Connected);
        }
        self.on_connected_packet(payload, hdr, sack, now, deliver);
    }

    fn on_connected_packet(
        &mut self,
        payload: &mut [u8],
        hdr: &Header,
        sack: Option<&[u8]>,
        now: Instant,
        deliver: &mut dyn FnMut(&mut [u8]),
    ) {
        match hdr.ty {
            PacketType::Syn => {
                if self.peer_syn == Some(hdr.seq_nr) {
                    self.note_heard(hdr, now);
                    self.state_owed = true;
                }
                return;
            }
            PacketType::Reset => {
                let gone_after_close = self.fin_sent && self.recv.remote_closed;
                return self.finish(match gone_after_close {
                    true => CloseReason::Finished,
                    false => CloseReason::Reset,
                });
            }
            _ => {}
        }
        // An ACK of a packet we never sent, or far behind: forged or stale, ignored.
        let oldest = self.send.acked.wrapping_sub(MAX_IN_FLIGHT as u16);
        if seq_lt(self.send.last_sent(), hdr.ack_nr) || seq_lt(hdr.ack_nr, oldest) {
            return;
        }
        self.note_heard(hdr, now);
        if hdr.timestamp_diff_us != 0 {
            self.cc.delay_sample(hdr.timestamp_diff_us, now);
        }
        let in_flight = self.send.bytes_in_flight;
        let acked = self
            .send
            .on_ack(hdr.ack_nr, sack, hdr.ty == PacketType::State, now);
        if let Some(rtt) = acked.rtt {
            self.cc.rtt_sample(rtt);
        }
        self.cc.on_ack(acked.bytes, in_flight);
        if let Some(lost) = acked.lost {
            self.cc.on_loss(lost, self.send.next_seq);
        }
        if acked.progressed {
            self.rto_at = (!self.send.in_flight.is_empty()).then(|| now + self.cc.rto());
        }
        self.fin_acked |= acked.fin_acked;
        let was_closed = self.recv.remote_closed;
        match hdr.ty {
            PacketType::Data => {
                self.ack_owed = true;
                if let Data::Delivered(n) =
                    self.recv.on_data(hdr.seq_nr, payload, &self.cfg, deliver)
                {
                    self.stats.bytes_received += n as u64;
                }
            }
            PacketType::Fin => {
                self.ack_owed = true;
                if let Err(what) = self.recv.on_fin(hdr.seq_nr) {
                    self.reset_owed = true;
                    return self.finish(CloseReason::Protocol(what));
                }
            }
            _ => {}
        }
        if self.recv.remote_closed && !was_closed {
            self.events.push_back(Event::RemoteClosed);
        }
        if self.fin_acked && self.recv.remote_closed {
            self.finish(CloseReason::Finished);
        }
    }

    fn finish(&mut self, reason: CloseReason) {
        if self.is_closed() {
            return;
        }
        self.phase = Phase::Closed(reason);
        self.rto_at = None;
        self.events.push_back(Event::Closed(reason));
    }

    /// Bytes `write` would accept now (send buffer minus queued and unacked bytes).
    pub fn send_space(&self) -> usize {
        match self.is_closed() || self.fin_wanted {
            true => 0,
            false => self.send.space(self.cfg.send_buffer),
        }
    }

    /// Queues application bytes; returns how many were taken (at most `send_space()`).
    pub fn write(&mut self, data: &[u8]) -> usize {
        match self.is_closed() || self.fin_wanted {
            true => 0,
            false => self.send.write(data, self.cfg.send_buffer),
        }
    }

    /// Close our side: a FIN goes out after every queued byte.
    pub fn close(&mut self) {
        self.fin_wanted = true;
    }

    /// Abort: queue a RESET; the stream is `Closed(Reset)` at once.
    pub fn reset(&mut self) {
        if !self.is_closed() {
            self.reset_owed = true;
            self.finish(CloseReason::Reset);
        }
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed(_))
    }

    /// Counters for stats and benchmarks.
    pub fn stats(&self) -> StreamStats {
        StreamStats {
            rtt_us: self.cc.rtt_us(),
            cwnd: self.cc.cwnd(),
            ..self.stats
        }
    }

    /// Waiting for the peer: something unacked or unsent.
    fn waiting(&self) -> bool {
        !self.send.in_flight.is_empty()
            || self.send.unsent() > 0
            || (self.fin_wanted && !self.fin_acked)
    }

    /// When `on_timeout` should next be called (None: no timer).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Closed(_) => None,
            Phase::SynSent {
                resend_at,
                give_up_at,
                ..
            } => Some(resend_at.map_or(give_up_at, |r| r.min(give_up_at))),
            Phase::Connected => {
                let idle = self.waiting().then(|| self.last_heard + self.cfg.max_idle);
                match (self.rto_at, idle) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
        }
    }

    /// Timers: SYN resend and connect timeout; the RTO (resend, cwnd to one packet, RTO
    /// doubles); giving up after `max_idle` without a packet from the peer.
    pub fn on_timeout(&mut self, now: Instant) {
        match &mut self.phase {
            Phase::Closed(_) => {}
            Phase::SynSent {
                owed,
                resend_at,
                give_up_at,
                ..
            } => {
                if now >= *give_up_at {
                    self.finish(CloseReason::ConnectTimedOut);
                } else if resend_at.is_some_and(|r| now >= r) {
                    *owed = true;
                    *resend_at = None;
                }
            }
            Phase::Connected => self.on_connected_timeout(now),
        }
    }

    fn on_connected_timeout(&mut self, now: Instant) {
        if self.waiting() && now >= self.last_heard + self.cfg.max_idle {
            return self.finish(CloseReason::TimedOut);
        }
        if self.rto_at.is_none_or(|at| now < at) {
            return;
        }
        let only_fin = self.send.in_flight.len() == 1
            && self
                .send
                .in_flight
                .front()
                .is_some_and(|p| p.fin && p.transmissions >= FIN_RESENDS);
        if only_fin && self.recv.remote_closed {
            return self.finish(CloseReason::Finished);
        }
        if !self.send.in_flight.is_empty() {
            self.send.on_timeout();
            self.cc.on_timeout(self.send.next_seq);
            self.rto_at = Some(now + self.cc.rto());
        } else if self.send.unsent() > 0 {
            self.probe = true;
            self.rto_at = Some(now + self.cc.rto());
        } else {
            self.rto_at = None;
        }
    }
}
