//! BEP 11 peer exchange (`ut_pex`), sans IO: the message codec and the per-connection state
//! that decides what to tell a peer and when, and what to take from it.
//!
//! A PEX message is a bencoded dictionary of compact address lists: `added` / `added.f` (IPv4
//! addresses and one flag byte each), `added6` / `added6.f` (IPv6), `dropped`, `dropped6`.
//!
//! Limits on what a peer supplies: a payload of at most [`MAX_PEX_LEN`] bytes; at most
//! [`MAX_ACCEPTED`] added addresses are taken from one message (the rest are ignored); a
//! message that comes sooner than [`MIN_INCOMING_INTERVAL`] after the last one is ignored
//! whole. What we send: nothing before [`FIRST_DELAY`], then at most one message per
//! [`SEND_INTERVAL`], each with at most [`MAX_ADDED`] added and [`MAX_DROPPED`] dropped.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::bencode::{self, Dict, Value};

/// Largest PEX payload accepted (50 + 50 entries of each family need under 3 KiB).
pub const MAX_PEX_LEN: usize = 16 * 1024;
/// Added addresses taken from one incoming message.
pub const MAX_ACCEPTED: usize = 100;
/// Added / dropped addresses per outgoing message (BEP 11's usual cap).
pub const MAX_ADDED: usize = 50;
pub const MAX_DROPPED: usize = 50;
/// Our first message goes out this long after the peer said it speaks PEX.
pub const FIRST_DELAY: Duration = Duration::from_secs(3);
/// At most one message per peer per minute, both ways.
pub const SEND_INTERVAL: Duration = Duration::from_secs(60);
/// Incoming messages closer together than this are ignored (some slack below a minute for
/// timer jitter on the sender's side).
pub const MIN_INCOMING_INTERVAL: Duration = Duration::from_secs(45);
/// Addresses remembered as told to one peer.
const MAX_TOLD: usize = 1000;

/// BEP 11 flags of an added peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct PexFlags(pub u8);

impl PexFlags {
    pub const PREFERS_ENCRYPTION: u8 = 0x01;
    pub const SEED: u8 = 0x02;
    pub const UTP: u8 = 0x04;
    pub const HOLEPUNCH: u8 = 0x08;
    pub const REACHABLE: u8 = 0x10;

    pub fn is_seed(self) -> bool {
        self.0 & Self::SEED != 0
    }
}

/// One added peer: where it listens, and what the sender knows of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PexPeer {
    pub addr: SocketAddr,
    pub flags: PexFlags,
}

/// A decoded `ut_pex` message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PexMessage {
    pub added: Vec<PexPeer>,
    pub dropped: Vec<SocketAddr>,
}

/// A malformed PEX message: the peer's fault.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PexError {
    #[error("PEX message of {0} bytes (limit {MAX_PEX_LEN})")]
    TooLarge(usize),
    #[error("PEX message is not bencode: {0}")]
    Bencode(#[from] bencode::DecodeError),
    #[error("PEX message is not a dictionary")]
    NotADict,
    #[error("PEX field {0:?} is not a string of whole compact addresses")]
    BadField(&'static str),
}

impl PexMessage {
    /// Parses a `ut_pex` payload (the bytes after the extended message id). Addresses with
    /// port 0, or unspecified, multicast or broadcast IPs, are left out; flags missing or short
    /// for an added list read as 0.
    pub fn parse(payload: &[u8]) -> Result<PexMessage, PexError> {
        if payload.len() > MAX_PEX_LEN {
            return Err(PexError::TooLarge(payload.len()));
        }
        let root = bencode::decode(payload)?;
        let d = root.as_dict().ok_or(PexError::NotADict)?;
        let mut msg = PexMessage::default();
        for (key, flags_key, len) in [("added", "added.f", 6), ("added6", "added6.f", 18)] {
            let addrs = compact(d, key, len)?;
            let flags = d
                .get(flags_key.as_bytes())
                .and_then(|v| v.as_bytes())
                .unwrap_or(&[]);
            for (i, addr) in addrs.into_iter().enumerate() {
                let f = PexFlags(flags.get(i).copied().unwrap_or(0));
                if let Some(addr) = addr {
                    msg.added.push(PexPeer { addr, flags: f });
                }
            }
        }
        for (key, len) in [("dropped", 6), ("dropped6", 18)] {
            msg.dropped
                .extend(compact(d, key, len)?.into_iter().flatten());
        }
        Ok(msg)
    }

    /// Appends the bencoded message. IPv4-mapped IPv6 addresses go in the IPv4 lists.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (mut a4, mut f4, mut a6, mut f6) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for p in &self.added {
            if push_compact(p.addr, &mut a4, &mut a6) {
                f4.push(p.flags.0);
            } else {
                f6.push(p.flags.0);
            }
        }
        let (mut d4, mut d6) = (Vec::new(), Vec::new());
        for &a in &self.dropped {
            push_compact(a, &mut d4, &mut d6);
        }
        let d = Dict::new()
            .with(b"added", Value::bytes(&a4))
            .with(b"added.f", Value::bytes(&f4))
            .with(b"added6", Value::bytes(&a6))
            .with(b"added6.f", Value::bytes(&f6))
            .with(b"dropped", Value::bytes(&d4))
            .with(b"dropped6", Value::bytes(&d6));
        Value::dict(d).encode_to(out);
    }
}

/// A compact address list: `None` entries for addresses no one can connect to.
fn compact(
    d: &Dict<'_>,
    key: &'static str,
    len: usize,
) -> Result<Vec<Option<SocketAddr>>, PexError> {
    let Some(v) = d.get(key.as_bytes()) else {
        return Ok(Vec::new());
    };
    let b = v.as_bytes().ok_or(PexError::BadField(key))?;
    if b.len() % len != 0 {
        return Err(PexError::BadField(key));
    }
    Ok(b.chunks_exact(len).map(decode_addr).collect())
}

fn decode_addr(c: &[u8]) -> Option<SocketAddr> {
    let (ip, port) = c.split_at(c.len() - 2);
    let port = u16::from_be_bytes([port[0], port[1]]);
    let ip = match ip.len() {
        4 => IpAddr::V4(Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3])),
        // An IPv4-mapped address in `added6` is the IPv4 peer (and judged as one).
        _ => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(ip).ok()?)).to_canonical(),
    };
    usable(SocketAddr::new(ip, port)).then_some(SocketAddr::new(ip, port))
}

/// Whether an address can be dialled at all.
fn usable(a: SocketAddr) -> bool {
    let ip = a.ip();
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    a.port() != 0 && !ip.is_unspecified() && !ip.is_multicast() && !broadcast
}

/// Writes `a` to the IPv4 list (true) or the IPv6 list (false).
fn push_compact(a: SocketAddr, v4: &mut Vec<u8>, v6: &mut Vec<u8>) -> bool {
    let ip = match a.ip() {
        IpAddr::V6(ip) => ip
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(ip)),
        ip => ip,
    };
    match ip {
        IpAddr::V4(ip) => {
            v4.extend_from_slice(&ip.octets());
            v4.extend_from_slice(&a.port().to_be_bytes());
            true
        }
        IpAddr::V6(ip) => {
            v6.extend_from_slice(&ip.octets());
            v6.extend_from_slice(&a.port().to_be_bytes());
            false
        }
    }
}

/// PEX with one peer: what we told it, when we last sent and received.
#[derive(Debug)]
pub struct PexState {
    started: Instant,
    last_sent: Option<Instant>,
    last_received: Option<Instant>,
    told: HashSet<SocketAddr>,
}

impl PexState {
    /// Starts PEX with a peer that offered `ut_pex` in its extension handshake at `now`.
    pub fn new(now: Instant) -> PexState {
        PexState {
            started: now,
            last_sent: None,
            last_received: None,
            told: HashSet::new(),
        }
    }

    /// Whether a message may go out at `now` (ask before building the peer list).
    pub fn is_due(&self, now: Instant) -> bool {
        match self.last_sent {
            None => now.duration_since(self.started) >= FIRST_DELAY,
            Some(t) => now.duration_since(t) >= SEND_INTERVAL,
        }
    }

    /// The message to send at `now`, given the peers we are connected to (by listen address);
    /// `recipient` (the peer's own addresses) is never told about itself. `None` when it is
    /// not yet time, or when there is nothing new after the first message.
    pub fn outgoing(
        &mut self,
        now: Instant,
        recipient: &[SocketAddr],
        connected: &[PexPeer],
    ) -> Option<PexMessage> {
        if !self.is_due(now) {
            return None;
        }
        let first = self.last_sent.is_none();
        let current: HashSet<SocketAddr> = connected
            .iter()
            .map(|p| p.addr)
            .filter(|a| !recipient.contains(a) && usable(*a))
            .collect();
        let mut msg = PexMessage::default();
        for p in connected {
            if msg.added.len() >= MAX_ADDED || self.told.len() >= MAX_TOLD {
                break;
            }
            if current.contains(&p.addr) && self.told.insert(p.addr) {
                msg.added.push(*p);
            }
        }
        let gone: Vec<SocketAddr> = self
            .told
            .iter()
            .filter(|a| !current.contains(a))
            .take(MAX_DROPPED)
            .copied()
            .collect();
        for a in gone {
            self.told.remove(&a);
            msg.dropped.push(a);
        }
        if msg.added.is_empty() && msg.dropped.is_empty() && !first {
            return None;
        }
        self.last_sent = Some(now);
        Some(msg)
    }

    /// An incoming `ut_pex` payload at `now`: the peers to try (at most [`MAX_ACCEPTED`]), or
    /// `None` when it came too soon after the previous one and was ignored.
    pub fn incoming(
        &mut self,
        now: Instant,
        payload: &[u8],
    ) -> Result<Option<Vec<PexPeer>>, PexError> {
        if self
            .last_received
            .is_some_and(|t| now.duration_since(t) < MIN_INCOMING_INTERVAL)
        {
            return Ok(None);
        }
        let mut msg = PexMessage::parse(payload)?;
        self.last_received = Some(now);
        msg.added.truncate(MAX_ACCEPTED);
        Ok(Some(msg.added))
    }
}

#[cfg(test)]
mod tests;
