//! BEP 15 datagrams: connect and announce requests, the announce response.
//!
//! Layouts (all integers big-endian):
//! - connect request: protocol id (u64), action 0, transaction id (16 bytes);
//! - connect response: action 0, transaction id, connection id (16 bytes);
//! - announce request: connection id, action 1, transaction id, info hash, peer id, downloaded,
//!   left, uploaded, event, IP (0), key, num_want, port (98 bytes);
//! - announce response: action 1, transaction id, interval, leechers, seeders, then 6-byte
//!   (IPv4) or 18-byte (IPv6) peers, by the family of the socket;
//! - error: action 3, transaction id, message.

use crate::tracker::{
    clamp_interval, push_compact_peers, AnnounceReply, AnnounceRequest, Event, TrackerError,
};

/// BEP 15: the magic constant that opens a connect request.
pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;
pub(super) const ACTION_CONNECT: u32 = 0;
pub(super) const ACTION_ANNOUNCE: u32 = 1;
pub(super) const ACTION_ERROR: u32 = 3;
/// Bytes in an announce request (BEP 15, "IPv4 announce request"; the IPv6 one is the same).
pub const ANNOUNCE_REQUEST_LEN: usize = 98;

/// Address family of the socket the announce goes over: it decides the peer format in the
/// announce response (BEP 15: 6-byte IPv4 or 18-byte IPv6 entries).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// BEP 15 connect request: protocol id, action 0, transaction id.
pub fn encode_connect(transaction_id: u32) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&PROTOCOL_ID.to_be_bytes());
    out[8..12].copy_from_slice(&ACTION_CONNECT.to_be_bytes());
    out[12..].copy_from_slice(&transaction_id.to_be_bytes());
    out
}

/// BEP 15 announce request (98 bytes). The IP field is 0 (the tracker uses the source address).
pub fn encode_announce(
    connection_id: u64,
    transaction_id: u32,
    req: &AnnounceRequest,
) -> [u8; ANNOUNCE_REQUEST_LEN] {
    let event: u32 = match req.event {
        None => 0,
        Some(Event::Completed) => 1,
        Some(Event::Started) => 2,
        Some(Event::Stopped) => 3,
    };
    // BEP 15: num_want is an int32, -1 for the tracker's default.
    let numwant: i32 = req
        .numwant
        .map_or(-1, |n| i32::try_from(n).unwrap_or(i32::MAX));
    let mut out = [0u8; ANNOUNCE_REQUEST_LEN];
    out[0..8].copy_from_slice(&connection_id.to_be_bytes());
    out[8..12].copy_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
    out[12..16].copy_from_slice(&transaction_id.to_be_bytes());
    out[16..36].copy_from_slice(&req.info_hash.0);
    out[36..56].copy_from_slice(&req.peer_id.0);
    out[56..64].copy_from_slice(&req.downloaded.to_be_bytes());
    out[64..72].copy_from_slice(&req.left.to_be_bytes());
    out[72..80].copy_from_slice(&req.uploaded.to_be_bytes());
    out[80..84].copy_from_slice(&event.to_be_bytes());
    // 84..88: IP address, 0 = the sender's.
    out[88..92].copy_from_slice(&req.key.to_be_bytes());
    out[92..96].copy_from_slice(&numwant.to_be_bytes());
    out[96..98].copy_from_slice(&req.port.to_be_bytes());
    out
}

/// BEP 15 announce response: action, transaction id, interval, leechers, seeders, then compact
/// peers of the socket's family. The caller has checked action and transaction id.
pub fn parse_announce_response(d: &[u8], family: Family) -> Result<AnnounceReply, TrackerError> {
    let short = TrackerError::Malformed("UDP announce response shorter than 20 bytes");
    let (Some(interval), Some(leechers), Some(seeders)) =
        (read_u32(d, 8), read_u32(d, 12), read_u32(d, 16))
    else {
        return Err(short);
    };
    let interval = i32::from_be_bytes(interval.to_be_bytes());
    if interval < 0 {
        return Err(TrackerError::Malformed("negative interval"));
    }
    let count = |v: u32| i32::try_from(v).ok().and_then(|v| u32::try_from(v).ok());
    let mut peers = Vec::new();
    push_compact_peers(&d[20..], family == Family::V6, &mut peers)?;
    Ok(AnnounceReply {
        interval: clamp_interval(interval as u64),
        min_interval: None,
        tracker_id: None,
        seeders: count(seeders),
        leechers: count(leechers),
        peers,
        warning: None,
    })
}

pub(super) fn read_u32(d: &[u8], at: usize) -> Option<u32> {
    let b = d.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

pub(super) fn read_u64(d: &[u8], at: usize) -> Option<u64> {
    let b: [u8; 8] = d.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{InfoHash, PeerId};

    fn req() -> AnnounceRequest {
        let mut r =
            AnnounceRequest::new(InfoHash([0x11; 20]), PeerId(*b"-RT0100-abcdefghijkl"), 6881);
        r.key = 0xdead_beef;
        r
    }

    fn txid_of(packet: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(packet[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn event_and_numwant_encoding() {
        let mut r = req();
        for (event, code) in [
            (None, 0),
            (Some(Event::Completed), 1),
            (Some(Event::Started), 2),
            (Some(Event::Stopped), 3),
        ] {
            r.event = event;
            r.numwant = Some(u32::MAX);
            let a = encode_announce(1, 2, &r);
            assert_eq!(txid_of(&a, 80), code);
            assert_eq!(a[92..96], i32::MAX.to_be_bytes(), "numwant saturates");
        }
    }

    #[test]
    fn connect_request_layout() {
        let c = encode_connect(0x0102_0304);
        assert_eq!(c[..8], [0, 0, 0x04, 0x17, 0x27, 0x10, 0x19, 0x80]);
        assert_eq!(c[8..], [0, 0, 0, 0, 1, 2, 3, 4]);
    }

    #[test]
    fn short_reads_are_none() {
        assert_eq!(read_u32(&[1, 2, 3], 0), None);
        assert_eq!(read_u32(&[1, 2, 3, 4], 1), None);
        assert_eq!(read_u32(&[0, 0, 0, 9], usize::MAX), None);
        assert_eq!(read_u64(&[0; 15], 8), None);
        assert_eq!(
            read_u64(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9], 8),
            Some(9)
        );
    }

    #[test]
    fn announce_request_layout() {
        let mut r = req();
        (r.uploaded, r.downloaded, r.left) = (1, 2, 3);
        r.event = Some(Event::Started);
        let a = encode_announce(0x0102_0304_0506_0708, 0x0a0b_0c0d, &r);
        assert_eq!(a[..8], 0x0102_0304_0506_0708u64.to_be_bytes());
        assert_eq!(txid_of(&a, 8), ACTION_ANNOUNCE);
        assert_eq!(txid_of(&a, 12), 0x0a0b_0c0d);
        assert_eq!(a[16..36], [0x11; 20]);
        assert_eq!(&a[36..56], b"-RT0100-abcdefghijkl");
        assert_eq!(a[56..64], 2u64.to_be_bytes(), "downloaded");
        assert_eq!(a[64..72], 3u64.to_be_bytes(), "left");
        assert_eq!(a[72..80], 1u64.to_be_bytes(), "uploaded");
        assert_eq!(txid_of(&a, 80), 2, "event started");
        assert_eq!(txid_of(&a, 84), 0, "IP: the sender's");
        assert_eq!(txid_of(&a, 88), 0xdead_beef, "key");
        assert_eq!(a[92..96], (-1i32).to_be_bytes(), "numwant default");
        assert_eq!(a[96..98], 6881u16.to_be_bytes());
    }

    fn response(interval: i32, leechers: i32, seeders: i32, peers: &[u8]) -> Vec<u8> {
        let mut d = [ACTION_ANNOUNCE.to_be_bytes(), 7u32.to_be_bytes()].concat();
        for v in [interval, leechers, seeders] {
            d.extend_from_slice(&v.to_be_bytes());
        }
        d.extend_from_slice(peers);
        d
    }

    #[test]
    fn announce_response_shapes() {
        let mut v6 = [0u8; 18];
        v6[15] = 1;
        v6[16..].copy_from_slice(&6881u16.to_be_bytes());
        let r = parse_announce_response(&response(30, 1, -1, &v6), Family::V6).unwrap();
        assert_eq!(r.peers, vec!["[::1]:6881".parse().unwrap()]);
        assert_eq!(r.interval, crate::tracker::MIN_INTERVAL, "30 s clamped up");
        assert_eq!(
            (r.leechers, r.seeders),
            (Some(1), None),
            "negative count unknown"
        );

        let v4 = [127, 0, 0, 1, 0x1a, 0xe1, 127, 0, 0, 2, 0, 0];
        let r = parse_announce_response(&response(900, 0, 0, &v4), Family::V4).unwrap();
        assert_eq!(
            r.peers,
            vec!["127.0.0.1:6881".parse().unwrap()],
            "port 0 dropped"
        );
        assert_eq!(r.interval, std::time::Duration::from_secs(900));
    }

    #[test]
    fn bad_announce_responses() {
        let bad = |d: &[u8], f| match parse_announce_response(d, f) {
            Err(TrackerError::Malformed(why)) => why,
            other => panic!("{other:?}"),
        };
        assert!(bad(&response(60, 0, 0, &[0; 12]), Family::V6).contains("18"));
        assert!(bad(&response(60, 0, 0, &[0; 7]), Family::V4).contains("6"));
        assert_eq!(
            bad(&response(-5, 0, 0, &[]), Family::V4),
            "negative interval"
        );
        assert!(bad(&response(60, 0, 0, &[])[..19], Family::V4).contains("shorter"));
        assert!(
            bad(&[0; 8], Family::V4).contains("shorter"),
            "opentracker's refusal"
        );
    }
}
