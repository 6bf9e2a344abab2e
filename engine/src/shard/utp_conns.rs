//! A shard's uTP connections: the carrier under a [`super::conn::Conn`] whose peer is reached
//! over uTP instead of a TCP socket.
//!
//! A uTP connection looks to the loop exactly like a TCP one: the same [`Op`]s go in (the loop
//! hands this module the ops of uTP tokens instead of the backend) and the same
//! [`Completion`]s come out (`Connected`, `Data`, `Sent`, `RecvEnded`, `Closed`), so `Conn`, its
//! transport (MSE) and the wire reader do not know which carrier they are on. Underneath, each
//! connection is a sans-IO [`crate::utp::Stream`] keyed by the peer's address and the
//! connection id its packets carry; datagrams come from the shard's UDP socket
//! ([`Completion::Datagram`]) and go out through [`Datagrams`].
//!
//! Received payload that arrives in order is handed to the connection from the datagram's own
//! buffer (no copy before the wire reader); a send is copied once, into uTP packets.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use super::backend::{Completion, Op, Token};
use super::sendq::SendBuf;
use super::udp::{Datagrams, UtpIds};
use crate::utp::packet::{self, Packet, PacketType};
use crate::utp::{CloseReason, Config, Event, Stream};

/// Bytes held for a connection whose receive has not started yet (an outgoing connection
/// between its `Connected` and its `Recv`): a peer cannot make us hold more.
const MAX_EARLY_BYTES: usize = 1 << 20;
/// Longest selective-ACK extension a packet may carry (the parser's limit).
const MAX_SACK: usize = 128;
/// How long a stream whose connection closed may linger for its FIN exchange: a peer that
/// acks our FIN but never sends its own would otherwise keep it forever.
const MAX_LINGER: std::time::Duration = std::time::Duration::from_secs(30);

type Key = (SocketAddr, u16);

/// A completion owed to the loop, delivered after the backend's (see [`UtpConns::take_owed`]).
pub(super) enum Owed {
    Connected {
        token: Token,
        result: io::Result<()>,
    },
    Data {
        token: Token,
        bytes: Vec<u8>,
    },
    Sent {
        token: Token,
        buf: SendBuf,
        result: io::Result<()>,
    },
    RecvEnded {
        token: Token,
        result: io::Result<()>,
    },
    Closed {
        token: Token,
    },
}

impl Owed {
    /// Hands the completion to `on`.
    pub(super) fn complete(self, on: &mut dyn FnMut(Completion<'_>)) {
        match self {
            Owed::Connected { token, result } => on(Completion::Connected { token, result }),
            Owed::Data { token, mut bytes } => on(Completion::Data {
                token,
                data: &mut bytes,
            }),
            Owed::Sent { token, buf, result } => on(Completion::Sent { token, buf, result }),
            Owed::RecvEnded { token, result } => on(Completion::RecvEnded { token, result }),
            Owed::Closed { token } => on(Completion::Closed { token }),
        }
    }
}

struct Entry {
    stream: Stream,
    /// The connection on it; `None` once the loop closed it (the stream finishes its FIN).
    token: Option<Token>,
    /// The send in flight (a connection has one at a time).
    sending: Option<SendBuf>,
    /// The loop asked for data (`Op::Recv`).
    recv: bool,
    /// Payload that came before `recv`.
    early: Vec<u8>,
    /// `Connected` was reported (an incoming stream is connected from its SYN).
    connected: bool,
    /// `RecvEnded` was reported.
    ended: bool,
    /// Queued for `poll_transmit`.
    dirty: bool,
    /// When the loop closed the connection (the stream lingers for its FIN).
    closed_at: Option<Instant>,
}

/// An incoming connection the loop should adopt ([`UtpConns::adopt`]).
pub(super) struct Incoming {
    pub from: SocketAddr,
    stream: Stream,
}

/// Counters of a shard's uTP traffic (logged when the shard stops).
#[derive(Default, Debug)]
pub(super) struct UtpCounters {
    pub datagrams_in: u64,
    pub malformed: u64,
    pub strays: u64,
}

/// See the module doc.
pub(super) struct UtpConns {
    cfg: Config,
    epoch: Instant,
    ids: UtpIds,
    /// State of the generator of initial sequence numbers.
    seq_rng: u64,
    streams: HashMap<Key, Entry>,
    by_token: HashMap<Token, Key>,
    owed: Vec<Owed>,
    dirty: Vec<Key>,
    pub out: Datagrams,
    pub counters: UtpCounters,
}

impl UtpConns {
    pub fn new(ids: UtpIds, now: Instant, seed: u64) -> UtpConns {
        UtpConns {
            cfg: Config::default(),
            epoch: now,
            ids,
            seq_rng: seed | 1,
            streams: HashMap::new(),
            by_token: HashMap::new(),
            owed: Vec::new(),
            dirty: Vec::new(),
            out: Datagrams::default(),
            counters: UtpCounters::default(),
        }
    }

    fn next_seq(&mut self) -> u16 {
        // xorshift64: initial sequence numbers need only differ, not be secret.
        let mut x = self.seq_rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.seq_rng = x;
        (x >> 24) as u16
    }

    /// Whether `op` is for a connection carried by uTP.
    #[cfg(test)]
    pub fn owns_op(&self, op: &Op) -> bool {
        match op {
            Op::Recv { token } | Op::Send { token, .. } | Op::Close { token } => {
                self.by_token.contains_key(token)
            }
            _ => false,
        }
    }

    /// Whether completions are owed (the loop must not sleep before delivering them).
    pub fn has_owed(&self) -> bool {
        !self.owed.is_empty()
    }

    pub fn take_owed(&mut self) -> Vec<Owed> {
        std::mem::take(&mut self.owed)
    }

    /// Opens an outgoing connection for `token` to `addr`; `Connected` follows.
    pub fn connect(&mut self, token: Token, addr: SocketAddr, now: Instant) {
        let mut id = self.ids.next_id();
        while self.streams.contains_key(&(addr, id)) {
            id = self.ids.next_id();
        }
        let seq = self.next_seq();
        let stream = Stream::connect(id, now, self.epoch, &self.cfg, seq);
        self.insert(token, (addr, id), stream, false);
    }

    /// Takes the incoming connection under `token` (its receive starts with the loop's
    /// `Op::Recv`, as for an accepted TCP socket).
    pub fn adopt(&mut self, token: Token, inc: Incoming) {
        let key = (inc.from, inc.stream.recv_id());
        self.insert(token, key, inc.stream, true);
    }

    fn insert(&mut self, token: Token, key: Key, stream: Stream, connected: bool) {
        self.by_token.insert(token, key);
        self.streams.insert(
            key,
            Entry {
                stream,
                token: Some(token),
                sending: None,
                recv: false,
                early: Vec::new(),
                connected,
                ended: false,
                dirty: false,
                closed_at: None,
            },
        );
        self.mark(key);
    }

    fn mark(&mut self, key: Key) {
        if let Some(e) = self.streams.get_mut(&key) {
            if !e.dirty {
                e.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    /// Takes an op of a uTP connection; any other op (another token's, or one this carrier
    /// has no use for) comes back for the ring.
    pub fn op(&mut self, op: Op, now: Instant) -> Option<Op> {
        let token = match &op {
            Op::Recv { token } | Op::Send { token, .. } | Op::Close { token } => *token,
            _ => return Some(op),
        };
        let Some(&key) = self.by_token.get(&token) else {
            return Some(op);
        };
        let e = self.streams.get_mut(&key)?;
        match op {
            Op::Recv { .. } => {
                e.recv = true;
                if !e.early.is_empty() {
                    let bytes = std::mem::take(&mut e.early);
                    self.owed.push(Owed::Data { token, bytes });
                }
            }
            Op::Send { buf, .. } => {
                if e.stream.is_closed() {
                    self.owed.push(Owed::Sent {
                        token,
                        buf,
                        result: Err(io::ErrorKind::NotConnected.into()),
                    });
                } else {
                    e.sending = Some(buf);
                    pump(token, e, &mut self.owed);
                }
            }
            Op::Close { .. } => {
                if let Some(buf) = e.sending.take() {
                    self.owed.push(Owed::Sent {
                        token,
                        buf,
                        result: Err(io::ErrorKind::ConnectionAborted.into()),
                    });
                }
                e.token = None;
                e.closed_at = Some(now);
                e.stream.close();
                self.by_token.remove(&token);
                self.owed.push(Owed::Closed { token });
            }
            _ => {}
        }
        self.mark(key);
        None
    }

    /// A datagram from the shard's UDP socket. In-order payload goes to `deliver` with the
    /// connection's token; a SYN for a new connection comes back as an [`Incoming`] if
    /// `accepting` (else it is refused with a RESET).
    pub fn on_datagram(
        &mut self,
        from: SocketAddr,
        data: &mut [u8],
        now: Instant,
        accepting: bool,
        deliver: &mut dyn FnMut(Token, &mut [u8]),
    ) -> Option<Incoming> {
        self.counters.datagrams_in += 1;
        let (hdr, sack_buf, sack_len, off) = match Packet::parse(data) {
            Ok(p) => {
                let mut sack = [0u8; MAX_SACK];
                let len = p.sack.map_or(0, |s| s.len().min(MAX_SACK));
                if let Some(s) = p.sack {
                    sack[..len].copy_from_slice(&s[..len]);
                }
                (p.header, sack, p.sack.map(|_| len), p.payload_offset())
            }
            Err(e) => {
                self.counters.malformed += 1;
                tracing::trace!("malformed uTP datagram from {from}: {e}");
                return None;
            }
        };
        tracing::trace!(
            "uTP in  {from} {:?} id {} seq {} ack {} wnd {} sack {:?} len {}",
            hdr.ty,
            hdr.connection_id,
            hdr.seq_nr,
            hdr.ack_nr,
            hdr.wnd_size,
            sack_len.map(|n| &sack_buf[..n]),
            data.len() - off
        );
        let key = if hdr.ty == PacketType::Syn {
            (from, hdr.connection_id.wrapping_add(1))
        } else {
            (from, hdr.connection_id)
        };
        let Some(e) = self.streams.get_mut(&key) else {
            return self.unknown(from, &hdr, now, accepting);
        };
        let sack = sack_len.map(|n| &sack_buf[..n]);
        let Entry {
            stream,
            token,
            recv,
            early,
            ..
        } = e;
        let mut overflow = false;
        stream.on_packet(data, &hdr, sack, off, now, &mut |bytes| match *token {
            Some(t) if *recv => deliver(t, bytes),
            Some(_) if early.len() + bytes.len() <= MAX_EARLY_BYTES => {
                early.extend_from_slice(bytes)
            }
            _ => overflow |= token.is_some(),
        });
        if overflow {
            e.stream.reset();
        }
        self.after_stream_work(key);
        None
    }

    /// A packet for no connection of ours: a SYN opens one, anything else but a RESET is
    /// answered with a RESET.
    fn unknown(
        &mut self,
        from: SocketAddr,
        hdr: &packet::Header,
        now: Instant,
        accepting: bool,
    ) -> Option<Incoming> {
        if hdr.ty == PacketType::Syn && accepting {
            let seq = self.next_seq();
            let stream = Stream::accept(hdr, now, self.epoch, &self.cfg, seq);
            return Some(Incoming { from, stream });
        }
        if hdr.ty != PacketType::Reset {
            self.counters.strays += 1;
            let mut buf = self.out.buffer();
            packet::reset_for(hdr, micros(now, self.epoch), &mut buf);
            self.out.push(from, buf);
        }
        None
    }

    /// Events, sends that found room, and the transmit queue after `key`'s stream moved.
    fn after_stream_work(&mut self, key: Key) {
        let Some(e) = self.streams.get_mut(&key) else {
            return;
        };
        while let Some(ev) = e.stream.poll_event() {
            let Some(token) = e.token else { continue };
            match ev {
                Event::Connected => {
                    e.connected = true;
                    self.owed.push(Owed::Connected {
                        token,
                        result: Ok(()),
                    });
                }
                Event::RemoteClosed => {
                    if !e.ended {
                        e.ended = true;
                        if !e.early.is_empty() {
                            let bytes = std::mem::take(&mut e.early);
                            self.owed.push(Owed::Data { token, bytes });
                        }
                        self.owed.push(Owed::RecvEnded {
                            token,
                            result: Ok(()),
                        });
                    }
                }
                Event::Closed(reason) => {
                    let err = io::Error::from(error_kind(reason));
                    if !e.connected {
                        e.connected = true;
                        self.owed.push(Owed::Connected {
                            token,
                            result: Err(err),
                        });
                        continue;
                    }
                    if let Some(buf) = e.sending.take() {
                        self.owed.push(Owed::Sent {
                            token,
                            buf,
                            result: Err(error_kind(reason).into()),
                        });
                    }
                    if !e.ended {
                        e.ended = true;
                        let result = match reason {
                            CloseReason::Finished => Ok(()),
                            _ => Err(err),
                        };
                        self.owed.push(Owed::RecvEnded { token, result });
                    }
                }
            }
        }
        if let Some(token) = e.token {
            pump(token, e, &mut self.owed);
        }
        self.mark(key);
    }

    /// The earliest timer of any stream (retransmit, connect, idle) or end of a linger: when
    /// [`UtpConns::on_timers`] has work next.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.streams
            .values()
            .filter_map(|e| {
                let linger = e.closed_at.map(|at| at + MAX_LINGER);
                match (e.stream.poll_timeout(), linger) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            })
            .min()
    }

    /// Runs the streams' timers that are due, and drops streams that lingered too long after
    /// their connection closed.
    pub fn on_timers(&mut self, now: Instant) {
        self.streams.retain(|_, e| {
            e.closed_at
                .is_none_or(|at| now.duration_since(at) < MAX_LINGER)
        });
        let due: Vec<Key> = self
            .streams
            .iter()
            .filter(|(_, e)| e.stream.poll_timeout().is_some_and(|t| t <= now))
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            if let Some(e) = self.streams.get_mut(&key) {
                e.stream.on_timeout(now);
            }
            self.after_stream_work(key);
        }
    }

    /// Collects the datagrams of every stream that moved into [`UtpConns::out`], and drops
    /// streams that are over and have no connection left.
    pub fn transmit(&mut self, now: Instant) {
        for key in std::mem::take(&mut self.dirty) {
            let Some(e) = self.streams.get_mut(&key) else {
                continue;
            };
            e.dirty = false;
            let mut buf = self.out.buffer();
            while e.stream.poll_transmit(now, &mut buf) {
                if tracing::enabled!(tracing::Level::TRACE) {
                    if let Ok(p) = Packet::parse(&buf) {
                        let h = p.header;
                        tracing::trace!(
                            "uTP out {} {:?} id {} seq {} ack {} wnd {} sack {:?} len {}",
                            key.0,
                            h.ty,
                            h.connection_id,
                            h.seq_nr,
                            h.ack_nr,
                            h.wnd_size,
                            p.sack,
                            p.payload.len()
                        );
                    }
                }
                self.out.push(key.0, buf);
                buf = self.out.buffer();
            }
            self.out.recycle(buf);
            if e.token.is_none() && e.stream.is_closed() {
                tracing::debug!("uTP {} id {}: done, {:?}", key.0, key.1, e.stream.stats());
                self.streams.remove(&key);
            }
        }
    }
}

/// Moves the send in flight into the stream as far as it has room; reports it sent once all
/// of it was taken.
fn pump(token: Token, e: &mut Entry, owed: &mut Vec<Owed>) {
    let Some(buf) = e.sending.as_mut() else {
        return;
    };
    while e.stream.send_space() > 0 && !buf.is_done() {
        let Some(seg) = buf.unsent().find(|s| !s.is_empty()) else {
            break;
        };
        let n = e.stream.write(seg);
        if n == 0 {
            break;
        }
        buf.advance(n);
    }
    if buf.is_done() {
        if let Some(buf) = e.sending.take() {
            owed.push(Owed::Sent {
                token,
                buf,
                result: Ok(()),
            });
        }
    }
}

fn error_kind(reason: CloseReason) -> io::ErrorKind {
    match reason {
        CloseReason::Finished => io::ErrorKind::NotConnected,
        CloseReason::Reset => io::ErrorKind::ConnectionReset,
        CloseReason::ConnectTimedOut | CloseReason::TimedOut => io::ErrorKind::TimedOut,
        CloseReason::Protocol(..) => io::ErrorKind::InvalidData,
    }
}

/// Microseconds since `epoch`, as uTP timestamps count them (wrapping).
fn micros(now: Instant, epoch: Instant) -> u32 {
    now.saturating_duration_since(epoch).as_micros() as u32
}

#[cfg(test)]
#[path = "utp_conns_tests.rs"]
mod tests;
