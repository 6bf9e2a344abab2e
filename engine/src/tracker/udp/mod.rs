//! The UDP tracker protocol (BEP 15) as a sans-IO state machine.
//!
//! One [`UdpAnnounce`] performs one announce: connect (unless a connection id younger than a
//! minute is supplied), then announce. The caller owns the socket and the clock:
//!
//! ```text
//! loop {
//!     while let Some(d) = sm.poll_transmit(now) { socket.send(&d) }
//!     if let Some(r) = sm.result() { break r }
//!     wait for a datagram (sm.handle_datagram(&d, now)) or until sm.poll_timeout()
//! }
//! ```
//!
//! Invariants:
//! - a datagram is only acted on when it is at least 8 bytes and carries the transaction id of
//!   the request in flight; anything else is reported and ignored, the announce goes on;
//! - a connection id is used only while younger than `CONNECTION_ID_LIFETIME` (BEP 15: "valid
//!   for one minute"); an expired one sends us back to the connect step;
//! - the n-th timeout (n from 0) fires `base_timeout * 2^n` after the transmission (BEP 15:
//!   15 * 2^n seconds); after `max_retries` retransmissions the announce fails with `Timeout`.
//!   `n` counts over the whole announce, so the total wait is bounded.

use std::time::{Duration, Instant};

mod codec;

pub use codec::{
    encode_announce, encode_connect, parse_announce_response, Family, ANNOUNCE_REQUEST_LEN,
    PROTOCOL_ID,
};

use super::{AnnounceReply, AnnounceRequest, TrackerError};
use codec::{read_u32, read_u64, ACTION_ANNOUNCE, ACTION_CONNECT, ACTION_ERROR};

/// BEP 15: a connection id may be used for one minute after it was received.
pub const CONNECTION_ID_LIFETIME: Duration = Duration::from_secs(60);

/// Timeouts and the socket family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpConfig {
    pub family: Family,
    /// First retransmission timeout (BEP 15: 15 s). Tests pass something shorter.
    pub base_timeout: Duration,
    /// Retransmissions before giving up (BEP 15: n goes up to 8).
    pub max_retries: u32,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            family: Family::V4,
            base_timeout: Duration::from_secs(15),
            max_retries: 8,
        }
    }
}

/// A connection id and when we received it; cache it per tracker between announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionId {
    pub id: u64,
    pub obtained: Instant,
}

impl ConnectionId {
    /// Still usable at `now` (younger than a minute).
    pub fn is_valid(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.obtained) < CONNECTION_ID_LIFETIME
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Connect,
    Announce(u64),
}

/// One BEP 15 announce in progress. See the module doc for the driving loop.
#[derive(Debug)]
pub struct UdpAnnounce {
    req: AnnounceRequest,
    config: UdpConfig,
    step: Step,
    connection: Option<ConnectionId>,
    transaction_id: u32,
    /// Timeouts so far (the n of 15 * 2^n).
    timeouts: u32,
    /// Set while a request is in flight: when it times out.
    deadline: Option<Instant>,
    /// Set once the announce is over; `result` may have been taken since.
    finished: bool,
    result: Option<Result<AnnounceReply, TrackerError>>,
}

impl UdpAnnounce {
    /// An announce over IPv4 with BEP 15's timeouts and no cached connection id.
    pub fn new(req: AnnounceRequest, now: Instant) -> Self {
        Self::with_config(req, now, UdpConfig::default(), None)
    }

    /// An announce with the given config, reusing `cached` if it is still valid at `now`.
    pub fn with_config(
        req: AnnounceRequest,
        now: Instant,
        config: UdpConfig,
        cached: Option<ConnectionId>,
    ) -> Self {
        let connection = cached.filter(|c| c.is_valid(now));
        UdpAnnounce {
            req,
            config,
            step: match connection {
                Some(c) => Step::Announce(c.id),
                None => Step::Connect,
            },
            connection,
            transaction_id: rand::random(),
            timeouts: 0,
            deadline: None,
            finished: false,
            result: None,
        }
    }

    /// The next datagram to send, if any. Also handles an expired timeout: call it once
    /// `now` has reached [`Self::poll_timeout`].
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.finished {
            return None;
        }
        if let Some(deadline) = self.deadline {
            if now < deadline {
                return None;
            }
            self.timeouts += 1;
            if self.timeouts > self.config.max_retries {
                self.finish(Err(TrackerError::Timeout));
                return None;
            }
        }
        if let Step::Announce(_) = self.step {
            if !self.connection.is_some_and(|c| c.is_valid(now)) {
                self.step = Step::Connect;
                self.connection = None;
                self.transaction_id = rand::random();
            }
        }
        // 2^n with n <= max_retries; saturate rather than overflow for silly configs.
        let factor = 1u32.checked_shl(self.timeouts).unwrap_or(u32::MAX);
        self.deadline = Some(now + self.config.base_timeout.saturating_mul(factor));
        Some(match self.step {
            Step::Connect => encode_connect(self.transaction_id).to_vec(),
            Step::Announce(id) => encode_announce(id, self.transaction_id, &self.req).to_vec(),
        })
    }

    /// When [`Self::poll_transmit`] must be called again if no datagram arrives.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.finished {
            None
        } else {
            self.deadline
        }
    }

    /// Feeds one datagram received from the tracker's address. `Err` means the datagram was
    /// ignored (too short, another transaction); the announce goes on. A refusal or a malformed
    /// answer to our transaction ends the announce: see [`Self::result`].
    pub fn handle_datagram(&mut self, d: &[u8], now: Instant) -> Result<(), TrackerError> {
        if self.finished {
            return Ok(());
        }
        let (action, txid) = match (read_u32(d, 0), read_u32(d, 4)) {
            (Some(a), Some(t)) => (a, t),
            _ => {
                return Err(TrackerError::Malformed(
                    "UDP tracker datagram shorter than 8 bytes",
                ))
            }
        };
        if txid != self.transaction_id {
            return Err(TrackerError::BadTransactionId {
                expected: self.transaction_id,
                got: txid,
            });
        }
        match (action, self.step) {
            (ACTION_ERROR, _) => {
                self.finish(Err(TrackerError::Failure(super::message_from_bytes(
                    &d[8..],
                ))));
            }
            (ACTION_CONNECT, Step::Connect) => match read_u64(d, 8) {
                Some(id) => {
                    self.connection = Some(ConnectionId { id, obtained: now });
                    self.step = Step::Announce(id);
                    self.transaction_id = rand::random();
                    self.deadline = None;
                }
                None => self.finish(Err(TrackerError::Malformed(
                    "UDP connect response too short",
                ))),
            },
            (ACTION_ANNOUNCE, Step::Announce(_)) => {
                let reply = parse_announce_response(d, self.config.family);
                self.finish(reply);
            }
            _ => self.finish(Err(TrackerError::Malformed(
                "UDP tracker answered with the wrong action",
            ))),
        }
        Ok(())
    }

    /// The outcome, once the announce is over.
    pub fn result(&self) -> Option<&Result<AnnounceReply, TrackerError>> {
        self.result.as_ref()
    }

    /// Takes the outcome out, once the announce is over.
    pub fn take_result(&mut self) -> Option<Result<AnnounceReply, TrackerError>> {
        self.result.take()
    }

    /// The connection id in use, to cache for the next announce to this tracker.
    pub fn connection_id(&self) -> Option<ConnectionId> {
        self.connection
    }

    fn finish(&mut self, r: Result<AnnounceReply, TrackerError>) {
        self.deadline = None;
        self.finished = true;
        self.result = Some(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::Event;
    use crate::types::{InfoHash, PeerId};

    fn req() -> AnnounceRequest {
        AnnounceRequest {
            info_hash: InfoHash([0x11; 20]),
            peer_id: PeerId(*b"-RT0100-abcdefghijkl"),
            port: 6881,
            uploaded: 1,
            downloaded: 2,
            left: 3,
            event: Some(Event::Started),
            numwant: None,
            compact: true,
            key: 0xdead_beef,
            tracker_id: None,
        }
    }

    fn header(action: u32, txid: u32) -> Vec<u8> {
        [action.to_be_bytes(), txid.to_be_bytes()].concat()
    }

    fn txid_of(packet: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(packet[at..at + 4].try_into().unwrap())
    }

    fn connect_reply(txid: u32, conn: u64) -> Vec<u8> {
        let mut d = header(0, txid);
        d.extend_from_slice(&conn.to_be_bytes());
        d
    }

    fn announce_reply(txid: u32, interval: i32, peers: &[u8]) -> Vec<u8> {
        let mut d = header(1, txid);
        for v in [interval, 5, 7] {
            d.extend_from_slice(&v.to_be_bytes());
        }
        d.extend_from_slice(peers);
        d
    }

    /// Drives a fresh announce through the connect step; returns it and the announce packet.
    fn connected(now: Instant, family: Family) -> (UdpAnnounce, Vec<u8>) {
        let config = UdpConfig {
            family,
            ..UdpConfig::default()
        };
        let mut sm = UdpAnnounce::with_config(req(), now, config, None);
        let c = sm.poll_transmit(now).unwrap();
        assert_eq!(c.len(), 16);
        assert_eq!(c[..8], PROTOCOL_ID.to_be_bytes());
        assert_eq!(txid_of(&c, 8), 0, "action connect");
        assert!(
            sm.poll_transmit(now).is_none(),
            "nothing more until an answer or timeout"
        );
        sm.handle_datagram(&connect_reply(txid_of(&c, 12), 0x0102_0304_0506_0708), now)
            .unwrap();
        let a = sm.poll_transmit(now).unwrap();
        (sm, a)
    }

    #[test]
    fn connect_then_announce_ipv4() {
        let now = Instant::now();
        let (mut sm, a) = connected(now, Family::V4);
        assert_eq!(a.len(), ANNOUNCE_REQUEST_LEN);
        assert_eq!(a[..8], 0x0102_0304_0506_0708u64.to_be_bytes());
        assert_eq!(txid_of(&a, 8), 1, "action announce");
        let peers = [
            127, 0, 0, 1, 0x1a, 0xe1, 127, 0, 0, 2, 0, 0, 127, 0, 0, 3, 0, 80,
        ];
        sm.handle_datagram(&announce_reply(txid_of(&a, 12), 1800, &peers), now)
            .unwrap();
        let reply = sm.take_result().unwrap().unwrap();
        assert_eq!(reply.interval, Duration::from_secs(1800));
        assert_eq!((reply.leechers, reply.seeders), (Some(5), Some(7)));
        let want: Vec<std::net::SocketAddr> = vec![
            "127.0.0.1:6881".parse().unwrap(),
            "127.0.0.3:80".parse().unwrap(),
        ];
        assert_eq!(reply.peers, want, "port 0 dropped");
        assert_eq!(sm.poll_timeout(), None);
        assert!(sm.poll_transmit(now).is_none());
        assert_eq!(
            sm.connection_id().map(|c| c.id),
            Some(0x0102_0304_0506_0708)
        );
    }

    #[test]
    fn short_and_foreign_datagrams_are_ignored() {
        let now = Instant::now();
        let mut sm = UdpAnnounce::new(req(), now);
        let c = sm.poll_transmit(now).unwrap();
        let txid = txid_of(&c, 12);
        assert!(matches!(
            sm.handle_datagram(&[], now),
            Err(TrackerError::Malformed(_))
        ));
        assert!(matches!(
            sm.handle_datagram(&[0; 7], now),
            Err(TrackerError::Malformed(_))
        ));
        let wrong = connect_reply(txid.wrapping_add(1), 9);
        let err = sm.handle_datagram(&wrong, now).unwrap_err();
        assert!(
            matches!(err, TrackerError::BadTransactionId { expected, got } if expected == txid && got == txid.wrapping_add(1))
        );
        assert!(sm.result().is_none(), "still waiting");
        // The right answer still works afterwards.
        sm.handle_datagram(&connect_reply(txid, 9), now).unwrap();
        assert_eq!(sm.connection_id().map(|c| c.id), Some(9));
    }

    #[test]
    fn matching_but_malformed_answers_end_the_announce() {
        let now = Instant::now();
        let mut sm = UdpAnnounce::new(req(), now);
        let c = sm.poll_transmit(now).unwrap();
        sm.handle_datagram(&connect_reply(txid_of(&c, 12), 9)[..12], now)
            .unwrap();
        assert!(
            matches!(sm.result(), Some(Err(TrackerError::Malformed(_)))),
            "short connect"
        );

        let mut sm = UdpAnnounce::new(req(), now);
        let c = sm.poll_transmit(now).unwrap();
        sm.handle_datagram(&announce_reply(txid_of(&c, 12), 60, &[]), now)
            .unwrap();
        assert!(
            matches!(sm.result(), Some(Err(TrackerError::Malformed(_)))),
            "announce while connecting"
        );
    }

    #[test]
    fn error_action_is_a_failure() {
        let now = Instant::now();
        let (mut sm, a) = connected(now, Family::V4);
        let mut d = header(3, txid_of(&a, 12));
        d.extend_from_slice(b"Requested download is not authorized");
        sm.handle_datagram(&d, now).unwrap();
        match sm.result() {
            Some(Err(TrackerError::Failure(m))) => {
                assert_eq!(m, "Requested download is not authorized")
            }
            other => panic!("{other:?}"),
        }
        assert!(sm.poll_transmit(now).is_none());
    }

    #[test]
    fn retransmits_with_doubling_timeouts_then_gives_up() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let config = UdpConfig {
            base_timeout: s(1),
            max_retries: 2,
            ..UdpConfig::default()
        };
        let mut sm = UdpAnnounce::with_config(req(), t0, config, None);
        let first = sm.poll_transmit(t0).unwrap();
        assert_eq!(sm.poll_timeout(), Some(t0 + s(1)));
        assert!(sm.poll_transmit(t0 + Duration::from_millis(999)).is_none());
        assert_eq!(
            sm.poll_transmit(t0 + s(1)).unwrap(),
            first,
            "same request, same transaction"
        );
        assert_eq!(sm.poll_timeout(), Some(t0 + s(3)));
        assert_eq!(sm.poll_transmit(t0 + s(3)).unwrap(), first);
        assert_eq!(sm.poll_timeout(), Some(t0 + s(7)));
        assert!(sm.poll_transmit(t0 + s(7)).is_none());
        assert!(matches!(sm.result(), Some(Err(TrackerError::Timeout))));
        assert_eq!(sm.poll_timeout(), None);
    }

    #[test]
    fn bep15_default_timeouts() {
        let t0 = Instant::now();
        let mut sm = UdpAnnounce::new(req(), t0);
        let mut t = t0;
        let mut waits = Vec::new();
        while sm.poll_transmit(t).is_some() {
            let next = sm.poll_timeout().unwrap();
            waits.push((next - t).as_secs());
            t = next;
        }
        assert_eq!(waits, [15, 30, 60, 120, 240, 480, 960, 1920, 3840]);
        assert!(matches!(sm.result(), Some(Err(TrackerError::Timeout))));
    }

    #[test]
    fn connection_id_is_reused_for_a_minute() {
        let t0 = Instant::now();
        let cached = ConnectionId {
            id: 42,
            obtained: t0,
        };
        let t1 = t0 + Duration::from_secs(59);
        let mut sm = UdpAnnounce::with_config(req(), t1, UdpConfig::default(), Some(cached));
        let a = sm.poll_transmit(t1).unwrap();
        assert_eq!(a.len(), ANNOUNCE_REQUEST_LEN, "no connect step");
        assert_eq!(a[..8], 42u64.to_be_bytes());
        // Its retransmission comes after the id expired: back to connect.
        let c = sm.poll_transmit(sm.poll_timeout().unwrap()).unwrap();
        assert_eq!(c.len(), 16);
        assert_eq!(c[..8], PROTOCOL_ID.to_be_bytes());

        let t2 = t0 + Duration::from_secs(60);
        let mut sm = UdpAnnounce::with_config(req(), t2, UdpConfig::default(), Some(cached));
        assert_eq!(
            sm.poll_transmit(t2).unwrap().len(),
            16,
            "expired id not used"
        );
    }
}
