//! Tracker replies: the HTTP announce reply (bencode, BEP 3/23/7), the UDP announce response
//! (BEP 15) and the UDP announce state machine fed arbitrary datagrams.
//!
//! The first input byte picks the mode. Properties checked, besides "never panics":
//! - every accepted reply obeys the limits of `ringtorrent::tracker` (peer count, no port 0,
//!   interval and min interval in range, message and tracker-id lengths);
//! - the state machine only ever emits 16-byte connect or 98-byte announce requests, keeps a
//!   deadline while unfinished, and stays finished once it has a result.

use std::time::{Duration, Instant};

use ringtorrent::tracker::udp::{self, Family, UdpAnnounce, UdpConfig};
use ringtorrent::tracker::{
    http, AnnounceReply, AnnounceRequest, MAX_INTERVAL, MAX_MESSAGE_BYTES, MAX_PEERS_PER_REPLY,
    MAX_TRACKER_ID_BYTES, MIN_INTERVAL,
};
use ringtorrent::types::{InfoHash, PeerId};

fn check(reply: &AnnounceReply) {
    assert!(reply.peers.len() <= MAX_PEERS_PER_REPLY);
    assert!(reply.peers.iter().all(|p| p.port() != 0));
    assert!((MIN_INTERVAL..=MAX_INTERVAL).contains(&reply.interval));
    if let Some(m) = reply.min_interval {
        assert!(m >= MIN_INTERVAL && m <= reply.interval);
    }
    assert!(reply
        .warning
        .as_ref()
        .is_none_or(|w| w.len() <= MAX_MESSAGE_BYTES));
    assert!(reply
        .tracker_id
        .as_ref()
        .is_none_or(|t| t.len() <= MAX_TRACKER_ID_BYTES));
}

/// Feeds datagrams (each prefixed by a length byte and a flag byte) to a UDP announce. When the
/// flag's low bit is set, the datagram's transaction id is replaced by the one in flight, so
/// the fuzzer gets past the random id; bit 1 lets time pass until the next timeout first.
fn drive_udp(mut data: &[u8], family: Family) {
    let mut now = Instant::now();
    let req = AnnounceRequest::new(InfoHash([7; 20]), PeerId(*b"-RT0100-fuzzfuzzfuzz"), 6881);
    let config = UdpConfig {
        family,
        base_timeout: Duration::from_secs(15),
        max_retries: 8,
    };
    let mut sm = UdpAnnounce::with_config(req, now, config, None);
    let mut txid = [0u8; 4];
    let mut finished = false;
    while let [len, flag, rest @ ..] = data {
        while let Some(d) = sm.poll_transmit(now) {
            assert!(d.len() == 16 || d.len() == udp::ANNOUNCE_REQUEST_LEN);
            txid.copy_from_slice(&d[12..16]);
        }
        if finished {
            assert!(sm.poll_timeout().is_none());
        }
        if sm.result().is_some() {
            finished = true;
            if let Some(Ok(r)) = sm.result() {
                check(r);
            }
        } else {
            assert!(sm.poll_timeout().is_some(), "waiting without a deadline");
        }
        let n = (*len as usize).min(rest.len());
        let mut dgram = rest[..n].to_vec();
        data = &rest[n..];
        if flag & 1 != 0 && dgram.len() >= 8 {
            dgram[4..8].copy_from_slice(&txid);
        }
        if flag & 2 != 0 {
            if let Some(t) = sm.poll_timeout() {
                now = t;
            }
        }
        let _ = sm.handle_datagram(&dgram, now);
    }
    if let Some(Ok(r)) = sm.result() {
        check(r);
    }
}

pub fn tracker(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            if let Ok(r) = http::parse_announce_reply(rest) {
                check(&r);
            }
        }
        1 => {
            let family = if mode & 0x80 != 0 {
                Family::V6
            } else {
                Family::V4
            };
            if let Ok(r) = udp::parse_announce_response(rest, family) {
                check(&r);
            }
        }
        2 => drive_udp(rest, Family::V4),
        _ => drive_udp(rest, Family::V6),
    }
}
