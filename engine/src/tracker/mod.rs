//! Trackers: HTTP (BEP 3, BEP 23, BEP 7) and UDP (BEP 15) message formats, tiers (BEP 12),
//! and the announcer runtime. OWNER: helper D.
//!
//! Layout (the IO boundary is the directory boundary):
//! - sans-IO: [`http`] (announce URL, bencoded reply), [`udp`] (BEP 15 codec and a retrying
//!   state machine driven with `now: Instant`), [`tiers`] (BEP 12 order), [`schedule`] (when to
//!   announce next and with which event). None of them reads a clock or touches a socket.
//! - IO: [`announcer`] only. It owns the reqwest client and the UDP sockets, runs on a tokio
//!   runtime that the engine provides, and drives the sans-IO pieces above.
//!
//! Invariants of every [`AnnounceReply`] produced here, whatever the tracker sent:
//! - `peers.len() <= MAX_PEERS_PER_REPLY`, and no peer has port 0;
//! - `interval` lies in `MIN_INTERVAL..=MAX_INTERVAL`, and `min_interval`, when present,
//!   lies in the same range and is not above `interval`;
//! - strings (`warning`, failure reasons) are at most `MAX_MESSAGE_BYTES` bytes, and
//!   `tracker_id` at most `MAX_TRACKER_ID_BYTES`.

pub mod announcer;
pub mod http;
pub mod schedule;
pub mod tiers;
pub mod udp;

use std::net::SocketAddr;
use std::time::Duration;

use crate::types::{InfoHash, PeerId};

pub use announcer::{
    announce_once, Announcer, AnnouncerHandle, AnnouncerParams, TrackerEvent, Transfer,
};
pub use tiers::TrackerList;

/// Largest HTTP reply body we read; the body is cut off (and the announce fails) beyond it.
pub const MAX_REPLY_BYTES: usize = 4 * 1024 * 1024;
/// Peers kept from one reply (compact IPv4, compact IPv6 and dictionary peers together).
pub const MAX_PEERS_PER_REPLY: usize = 5_000;
/// Shortest re-announce interval we accept from a tracker.
pub const MIN_INTERVAL: Duration = Duration::from_secs(60);
/// Longest re-announce interval we accept from a tracker.
pub const MAX_INTERVAL: Duration = Duration::from_secs(3 * 3600);
/// Interval used when a reply carries none.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30 * 60);
/// Longest failure reason or warning message kept (longer ones are truncated).
pub const MAX_MESSAGE_BYTES: usize = 1024;
/// Longest `tracker id` we store and send back.
pub const MAX_TRACKER_ID_BYTES: usize = 256;

/// The `event` of an announce (BEP 3). Absent on regular re-announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Started,
    Completed,
    Stopped,
}

impl Event {
    /// The value of the HTTP `event` parameter (BEP 3).
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Started => "started",
            Event::Completed => "completed",
            Event::Stopped => "stopped",
        }
    }
}

/// One announce: what we tell the tracker about ourselves and this torrent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceRequest {
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    /// Our listening port.
    pub port: u16,
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
    pub event: Option<Event>,
    /// Peers wanted; `None` lets the tracker choose (UDP sends -1).
    pub numwant: Option<u32>,
    /// Ask for the compact peer list (BEP 23). HTTP only; UDP replies are always compact.
    pub compact: bool,
    /// A random number that stays the same for the session, so the tracker can recognise us
    /// when our address changes.
    pub key: u32,
    /// The `tracker id` from this tracker's previous reply, sent back verbatim.
    pub tracker_id: Option<Vec<u8>>,
}

impl AnnounceRequest {
    /// A request with compact on, no event, tracker-chosen numwant and a random key.
    pub fn new(info_hash: InfoHash, peer_id: PeerId, port: u16) -> Self {
        AnnounceRequest {
            info_hash,
            peer_id,
            port,
            uploaded: 0,
            downloaded: 0,
            left: 0,
            event: None,
            numwant: None,
            compact: true,
            key: rand::random(),
            tracker_id: None,
        }
    }
}

/// A successful announce, already checked against the limits in the module doc.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceReply {
    /// When to announce again, clamped to `MIN_INTERVAL..=MAX_INTERVAL`.
    pub interval: Duration,
    /// The tracker's `min interval`: do not announce sooner (clamped like `interval`).
    pub min_interval: Option<Duration>,
    /// To send back on the next announce to this tracker.
    pub tracker_id: Option<Vec<u8>>,
    /// Peers with the whole torrent (`complete`), when the tracker says.
    pub seeders: Option<u32>,
    /// Peers still downloading (`incomplete`), when the tracker says.
    pub leechers: Option<u32>,
    /// At most `MAX_PEERS_PER_REPLY`, no port 0. May include ourselves.
    pub peers: Vec<SocketAddr>,
    /// A `warning message`: the announce worked, but show this.
    pub warning: Option<String>,
}

/// Why an announce failed, grouped by who is at fault.
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    // --- the tracker's fault (it answered, but with a refusal or garbage) ---
    /// The tracker refused: HTTP `failure reason` or a UDP error (action 3).
    #[error("tracker failure: {0}")]
    Failure(String),
    /// The reply does not follow the protocol.
    #[error("malformed tracker reply: {0}")]
    Malformed(&'static str),
    /// The HTTP reply is not valid bencode.
    #[error("tracker reply: {0}")]
    Bencode(#[from] crate::bencode::DecodeError),
    /// The reply is larger than `MAX_REPLY_BYTES`.
    #[error("tracker reply larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// A UDP datagram answered a transaction we did not send (ignored; the announce goes on).
    #[error(
        "UDP tracker reply with unknown transaction id {got:#010x} (expected {expected:#010x})"
    )]
    BadTransactionId { expected: u32, got: u32 },

    // --- transport (network, timeouts, HTTP layer) ---
    #[error("tracker I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("tracker did not answer in time")]
    Timeout,
    /// The HTTP tracker redirected more times than we follow (a loop, most likely).
    #[error("tracker redirected too many times (more than {0})")]
    TooManyRedirects(usize),
    /// The HTTP tracker answered with a non-success status and no `failure reason`.
    #[error("tracker HTTP status {0}")]
    Http(u16),

    // --- ours (the announce URL from the metainfo or the user) ---
    #[error("unusable tracker URL: {0}")]
    BadUrl(&'static str),
}

impl TrackerError {
    /// True when the tracker answered but the answer was a refusal or not understood.
    pub fn is_tracker_fault(&self) -> bool {
        matches!(
            self,
            TrackerError::Failure(_)
                | TrackerError::Malformed(_)
                | TrackerError::Bencode(_)
                | TrackerError::TooLarge { .. }
                | TrackerError::BadTransactionId { .. }
        )
    }
}

/// Makes a tracker-supplied message valid UTF-8 of at most `MAX_MESSAGE_BYTES` bytes (cut at a
/// character boundary; invalid bytes become U+FFFD).
pub(crate) fn message_from_bytes(b: &[u8]) -> String {
    let cut = &b[..b.len().min(MAX_MESSAGE_BYTES)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if s.len() > MAX_MESSAGE_BYTES {
        let mut end = MAX_MESSAGE_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Clamps a tracker interval in seconds (already known to be non-negative).
pub(crate) fn clamp_interval(secs: u64) -> Duration {
    Duration::from_secs(secs).clamp(MIN_INTERVAL, MAX_INTERVAL)
}

/// Appends compact peers to `out`: 4-byte IPv4 address and 2-byte port each (BEP 23), or a
/// 16-byte IPv6 address and port (BEP 7), both in network byte order. Stops once `out` holds
/// `MAX_PEERS_PER_REPLY` peers and drops port-0 entries.
pub(crate) fn push_compact_peers(
    bytes: &[u8],
    v6: bool,
    out: &mut Vec<SocketAddr>,
) -> Result<(), TrackerError> {
    let entry = if v6 { 18 } else { 6 };
    if !bytes.len().is_multiple_of(entry) {
        return Err(TrackerError::Malformed(if v6 {
            "compact IPv6 peers: length not a multiple of 18"
        } else {
            "compact IPv4 peers: length not a multiple of 6"
        }));
    }
    let room = MAX_PEERS_PER_REPLY.saturating_sub(out.len());
    out.reserve(room.min(bytes.len() / entry));
    for chunk in bytes.chunks_exact(entry) {
        if out.len() >= MAX_PEERS_PER_REPLY {
            break;
        }
        let (ip, port) = chunk.split_at(entry - 2);
        let port = u16::from_be_bytes([port[0], port[1]]);
        if port == 0 {
            continue;
        }
        let ip: std::net::IpAddr = match <[u8; 16]>::try_from(ip) {
            Ok(v6) => std::net::Ipv6Addr::from(v6).into(),
            // INVARIANT: entry is 6 here, so `ip` is exactly 4 bytes.
            Err(_) => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(ip).unwrap()).into(),
        };
        out.push(SocketAddr::new(ip, port));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_peers_v4_v6_limits_and_port_zero() {
        let mut out = Vec::new();
        let v4 = [127, 0, 0, 1, 0x1a, 0xe1, 127, 0, 0, 2, 0, 0];
        push_compact_peers(&v4, false, &mut out).unwrap();
        assert_eq!(out, vec!["127.0.0.1:6881".parse().unwrap()]);
        let mut v6 = [0u8; 18];
        v6[15] = 1;
        v6[16..].copy_from_slice(&51413u16.to_be_bytes());
        push_compact_peers(&v6, true, &mut out).unwrap();
        assert_eq!(out[1], "[::1]:51413".parse().unwrap());
        assert!(matches!(
            push_compact_peers(&v4[..7], false, &mut out),
            Err(TrackerError::Malformed(_))
        ));
        assert!(push_compact_peers(&v6[..17], true, &mut out).is_err());

        let many: Vec<u8> = (0..MAX_PEERS_PER_REPLY as u32 + 10)
            .flat_map(|i| [127, 0, (i >> 8) as u8, i as u8, 0, 1])
            .collect();
        let mut out = Vec::new();
        push_compact_peers(&many, false, &mut out).unwrap();
        assert_eq!(out.len(), MAX_PEERS_PER_REPLY);
    }

    #[test]
    fn intervals_are_clamped_and_errors_grouped() {
        assert_eq!(clamp_interval(0), MIN_INTERVAL);
        assert_eq!(clamp_interval(u64::MAX / 2), MAX_INTERVAL);
        assert_eq!(clamp_interval(900), Duration::from_secs(900));
        assert!(TrackerError::Failure("x".into()).is_tracker_fault());
        assert!(!TrackerError::Timeout.is_tracker_fault());
        assert_eq!(message_from_bytes(&[b'a'; 5000]).len(), MAX_MESSAGE_BYTES);
        let invalid = message_from_bytes(&[0xff; 5000]);
        assert_eq!(invalid.len(), MAX_MESSAGE_BYTES - MAX_MESSAGE_BYTES % 3);
        assert!(invalid.chars().all(|c| c == char::REPLACEMENT_CHARACTER));
        assert_eq!(
            message_from_bytes("é".repeat(600).as_bytes()).len(),
            MAX_MESSAGE_BYTES
        );
    }
}
