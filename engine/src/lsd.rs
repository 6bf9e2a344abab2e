//! BEP 14 local service discovery, sans IO: the `BT-SEARCH` announce codec and the schedule
//! that decides which torrents to announce when and which announces heard to act on.
//!
//! An announce is an HTTP-like datagram sent to the multicast group 239.192.152.143:6771:
//!
//! ```text
//! BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 6881\r\n
//! Infohash: <40 hex digits>\r\n(more Infohash lines)cookie: <ours>\r\n\r\n\r\n
//! ```
//!
//! The sender is the peer: its source IP with the `Port` header. The `cookie` tells our own
//! announces (looped back to us) apart.
//!
//! Limits on what others send: a datagram of at most [`MAX_LSD_LEN`] bytes, at most
//! [`MAX_INFOHASHES`] info-hashes and [`MAX_HEADERS`] header lines in one, and one accepted
//! announce per source address and torrent per [`MIN_HEARD_INTERVAL`]. What we send: each
//! torrent when it is added and then every [`ANNOUNCE_INTERVAL`].

use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use crate::types::InfoHash;

/// The IPv4 multicast group and port of BEP 14.
pub const LSD_GROUP_V4: SocketAddrV4 =
    SocketAddrV4::new(std::net::Ipv4Addr::new(239, 192, 152, 143), 6771);
/// Largest datagram read.
pub const MAX_LSD_LEN: usize = 1400;
/// Info-hashes read from one announce (the rest are ignored), and put in one we send.
pub const MAX_INFOHASHES: usize = 20;
/// Header lines read from one announce before it is rejected.
pub const MAX_HEADERS: usize = 40;
/// Longest cookie kept.
pub const MAX_COOKIE_LEN: usize = 64;
/// How often each torrent is announced.
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// The same source announcing the same torrent sooner than this is ignored.
pub const MIN_HEARD_INTERVAL: Duration = Duration::from_secs(60);
/// (source, torrent) pairs remembered for rate limiting.
const MAX_HEARD: usize = 4096;

/// A decoded announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LsdAnnounce {
    pub port: u16,
    pub info_hashes: Vec<InfoHash>,
    pub cookie: Option<String>,
}

/// A datagram that is not a usable announce: the sender's fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LsdError {
    #[error("LSD datagram of {0} bytes (limit {MAX_LSD_LEN})")]
    TooLarge(usize),
    #[error("not a BT-SEARCH announce")]
    NotAnAnnounce,
    #[error("more than {MAX_HEADERS} header lines")]
    TooManyHeaders,
    #[error("missing or bad Port header")]
    BadPort,
    #[error("no valid Infohash header")]
    NoInfoHash,
}

impl LsdAnnounce {
    /// Parses a datagram. Header names are case-insensitive; info-hashes that are not 40 hex
    /// digits are skipped.
    pub fn parse(datagram: &[u8]) -> Result<LsdAnnounce, LsdError> {
        if datagram.len() > MAX_LSD_LEN {
            return Err(LsdError::TooLarge(datagram.len()));
        }
        let text = std::str::from_utf8(datagram).map_err(|_| LsdError::NotAnAnnounce)?;
        let mut lines = text.split("\r\n");
        let first = lines.next().unwrap_or_default();
        if !first.starts_with("BT-SEARCH * HTTP/1.") {
            return Err(LsdError::NotAnAnnounce);
        }
        let (mut port, mut info_hashes, mut cookie) = (None, Vec::new(), None);
        for (n, line) in lines.take_while(|l| !l.is_empty()).enumerate() {
            if n >= MAX_HEADERS {
                return Err(LsdError::TooManyHeaders);
            }
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "port" => {
                    let p = value.parse::<u16>().ok().filter(|&p| p != 0);
                    port = Some(p.ok_or(LsdError::BadPort)?);
                }
                "infohash" if info_hashes.len() < MAX_INFOHASHES => {
                    if let Some(ih) = InfoHash::from_hex(value) {
                        info_hashes.push(ih);
                    }
                }
                "cookie" if value.len() <= MAX_COOKIE_LEN => cookie = Some(value.to_owned()),
                _ => {}
            }
        }
        let port = port.ok_or(LsdError::BadPort)?;
        if info_hashes.is_empty() {
            return Err(LsdError::NoInfoHash);
        }
        Ok(LsdAnnounce {
            port,
            info_hashes,
            cookie,
        })
    }

    /// The datagram, addressed to `host` (the group, `239.192.152.143:6771`).
    pub fn encode(&self, host: SocketAddr) -> Vec<u8> {
        let mut s = format!(
            "BT-SEARCH * HTTP/1.1\r\nHost: {host}\r\nPort: {}\r\n",
            self.port
        );
        for ih in self.info_hashes.iter().take(MAX_INFOHASHES) {
            s.push_str(&format!("Infohash: {}\r\n", ih.to_hex()));
        }
        if let Some(c) = &self.cookie {
            s.push_str(&format!("cookie: {c}\r\n"));
        }
        s.push_str("\r\n\r\n");
        s.into_bytes()
    }
}

/// LSD for one engine: when each torrent is due, and who was heard recently.
#[derive(Debug)]
pub struct LsdState {
    port: u16,
    cookie: String,
    next: HashMap<InfoHash, Instant>,
    /// When each announced peer (source IP, announced port) was last heard, per torrent: a
    /// second client on the same host is heard too, and a liar on the host cannot mute it.
    heard: HashMap<(SocketAddr, InfoHash), Instant>,
}

impl LsdState {
    /// `port` is where we accept peers; `cookie` marks our own announces.
    pub fn new(port: u16, cookie: String) -> LsdState {
        LsdState {
            port,
            cookie,
            next: HashMap::new(),
            heard: HashMap::new(),
        }
    }

    /// Sets the torrents to announce (public, running ones); new ones are due at once.
    pub fn set_torrents(&mut self, now: Instant, torrents: &[InfoHash]) {
        self.next.retain(|ih, _| torrents.contains(ih));
        for ih in torrents {
            self.next.entry(*ih).or_insert(now);
        }
    }

    /// Announces due at `now`, each with up to [`MAX_INFOHASHES`] torrents.
    pub fn due(&mut self, now: Instant) -> Vec<LsdAnnounce> {
        let mut due: Vec<InfoHash> = self
            .next
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(ih, _)| *ih)
            .collect();
        due.sort_unstable_by_key(|ih| ih.0);
        for ih in &due {
            self.next.insert(*ih, now + ANNOUNCE_INTERVAL);
        }
        due.chunks(MAX_INFOHASHES)
            .map(|c| LsdAnnounce {
                port: self.port,
                info_hashes: c.to_vec(),
                cookie: Some(self.cookie.clone()),
            })
            .collect()
    }

    /// A datagram from `from` at `now`: the peer to dial and the torrents of ours it announced
    /// (`is_ours` tells which info-hashes we have). Our own announces, malformed datagrams and
    /// repeats within [`MIN_HEARD_INTERVAL`] give nothing.
    pub fn on_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        is_ours: impl Fn(&InfoHash) -> bool,
    ) -> Option<(SocketAddr, Vec<InfoHash>)> {
        let a = LsdAnnounce::parse(datagram).ok()?;
        if a.cookie.as_deref() == Some(self.cookie.as_str()) {
            return None;
        }
        if self.heard.len() >= MAX_HEARD {
            self.heard
                .retain(|_, t| now.duration_since(*t) < MIN_HEARD_INTERVAL);
        }
        let peer = SocketAddr::new(from.ip(), a.port);
        let mut fresh = Vec::new();
        for ih in a.info_hashes.into_iter().filter(|ih| is_ours(ih)) {
            let recent = self
                .heard
                .get(&(peer, ih))
                .is_some_and(|t| now.duration_since(*t) < MIN_HEARD_INTERVAL);
            if !recent && self.heard.len() < MAX_HEARD {
                self.heard.insert((peer, ih), now);
                fresh.push(ih);
            }
        }
        (!fresh.is_empty()).then_some((peer, fresh))
    }
}

#[cfg(test)]
mod tests;
