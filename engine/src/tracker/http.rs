//! HTTP tracker messages: the announce URL (BEP 3) and the bencoded reply (BEP 3, compact
//! peers BEP 23, IPv6 peers BEP 7). No IO: the announcer sends the URL and hands the body here.
//!
//! Invariants: binary parameters (`info_hash`, `peer_id`, `trackerid`) are percent-encoded byte
//! for byte, every byte outside RFC 3986's unreserved set as `%XX`; an existing query string in
//! the announce URL is kept and our parameters follow it; a reply is parsed only if it is at
//! most `MAX_REPLY_BYTES` long, and the result obeys the limits in the [`super`] module doc.

use std::net::{IpAddr, SocketAddr};

use super::{
    clamp_interval, message_from_bytes, push_compact_peers, AnnounceReply, AnnounceRequest,
    TrackerError, DEFAULT_INTERVAL, MAX_PEERS_PER_REPLY, MAX_REPLY_BYTES, MAX_TRACKER_ID_BYTES,
};
use crate::bencode::{self, Dict, Kind, Value};

/// The full announce URL for `req` (BEP 3 "Trackers"): `announce` plus our query parameters.
/// A fragment in `announce` is dropped (it is never sent anyway).
pub fn announce_url(announce: &str, req: &AnnounceRequest) -> Result<String, TrackerError> {
    let base = announce.split('#').next().unwrap_or(announce);
    let lower = base.get(..8).unwrap_or(base).to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(TrackerError::BadUrl("not an http:// or https:// URL"));
    }
    let sep = match base.find('?') {
        None => "?",
        Some(_) if base.ends_with('?') || base.ends_with('&') => "",
        Some(_) => "&",
    };
    let mut url = String::with_capacity(base.len() + 256);
    url.push_str(base);
    url.push_str(sep);
    url.push_str("info_hash=");
    percent_encode(&req.info_hash.0, &mut url);
    url.push_str("&peer_id=");
    percent_encode(&req.peer_id.0, &mut url);
    url.push_str(&format!(
        "&port={}&uploaded={}&downloaded={}&left={}&compact={}&key={:08x}",
        req.port, req.uploaded, req.downloaded, req.left, req.compact as u8, req.key
    ));
    if let Some(e) = req.event {
        url.push_str("&event=");
        url.push_str(e.as_str());
    }
    if let Some(n) = req.numwant {
        url.push_str(&format!("&numwant={n}"));
    }
    if let Some(id) = &req.tracker_id {
        url.push_str("&trackerid=");
        percent_encode(id, &mut url);
    }
    Ok(url)
}

/// Appends `bytes` percent-encoded: RFC 3986 unreserved characters as they are, every other
/// byte as `%XX` (upper-case hex).
pub fn percent_encode(bytes: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
}

/// Parses the body of an HTTP announce reply (BEP 3): a bencoded dictionary with either
/// `failure reason`, or `interval` and `peers` (compact string, BEP 23, or a list of
/// dictionaries), plus optional `peers6` (BEP 7), `min interval`, `tracker id`, `complete`,
/// `incomplete` and `warning message`. Trailing whitespace after the dictionary is tolerated.
pub fn parse_announce_reply(body: &[u8]) -> Result<AnnounceReply, TrackerError> {
    if body.len() > MAX_REPLY_BYTES {
        return Err(TrackerError::TooLarge {
            limit: MAX_REPLY_BYTES,
        });
    }
    let (root, used) = bencode::decode_prefix(body)?;
    if !body[used..].iter().all(u8::is_ascii_whitespace) {
        return Err(TrackerError::Malformed("bytes after the reply dictionary"));
    }
    let d = root
        .as_dict()
        .ok_or(TrackerError::Malformed("reply is not a dictionary"))?;
    if let Some(reason) = opt_bytes(d, b"failure reason", "failure reason is not a string")? {
        return Err(TrackerError::Failure(message_from_bytes(reason)));
    }
    let warning = opt_bytes(d, b"warning message", "warning message is not a string")?;
    let interval = opt_secs(d, b"interval")?.map_or(DEFAULT_INTERVAL, clamp_interval);
    let min_interval = opt_secs(d, b"min interval")?.map(|s| clamp_interval(s).min(interval));
    // An over-long tracker id is dropped (not stored, not sent back), not an error.
    let tracker_id = opt_bytes(d, b"tracker id", "tracker id is not a string")?
        .filter(|id| id.len() <= MAX_TRACKER_ID_BYTES)
        .map(<[u8]>::to_vec);

    let mut peers = Vec::new();
    match d.get(b"peers").map(|v| &v.kind) {
        None => {}
        Some(Kind::Bytes(b)) => push_compact_peers(b, false, &mut peers)?,
        Some(Kind::List(l)) => push_dict_peers(l, &mut peers)?,
        Some(_) => {
            return Err(TrackerError::Malformed(
                "peers is neither a string nor a list",
            ))
        }
    }
    if let Some(b) = opt_bytes(d, b"peers6", "peers6 is not a string")? {
        push_compact_peers(b, true, &mut peers)?;
    }
    Ok(AnnounceReply {
        interval,
        min_interval,
        tracker_id,
        seeders: opt_count(d, b"complete")?,
        leechers: opt_count(d, b"incomplete")?,
        peers,
        warning: warning.map(message_from_bytes),
    })
}

/// BEP 3's original peer list: dictionaries with `ip` (an address or a DNS name) and `port`.
/// DNS names are skipped (resolving is IO, and rare in practice); port 0 is dropped.
fn push_dict_peers(list: &[Value<'_>], out: &mut Vec<SocketAddr>) -> Result<(), TrackerError> {
    for entry in list {
        if out.len() >= MAX_PEERS_PER_REPLY {
            break;
        }
        let e = entry
            .as_dict()
            .ok_or(TrackerError::Malformed("peer is not a dictionary"))?;
        let ip = e
            .get(b"ip")
            .and_then(Value::as_bytes)
            .ok_or(TrackerError::Malformed("peer without a string ip"))?;
        let port = e
            .get(b"port")
            .and_then(Value::as_int)
            .and_then(|p| u16::try_from(p).ok())
            .ok_or(TrackerError::Malformed("peer without a port in 0..=65535"))?;
        let ip = std::str::from_utf8(ip)
            .ok()
            .map(|s| s.trim_start_matches('[').trim_end_matches(']'));
        match ip.and_then(|s| s.parse::<IpAddr>().ok()) {
            Some(ip) if port != 0 => out.push(SocketAddr::new(ip, port)),
            _ => {}
        }
    }
    Ok(())
}

fn opt_bytes<'a>(
    d: &Dict<'a>,
    key: &[u8],
    wrong: &'static str,
) -> Result<Option<&'a [u8]>, TrackerError> {
    d.get(key)
        .map(|v| v.as_bytes().ok_or(TrackerError::Malformed(wrong)))
        .transpose()
}

/// A non-negative integer number of seconds.
fn opt_secs(d: &Dict<'_>, key: &[u8]) -> Result<Option<u64>, TrackerError> {
    match d.get(key).map(Value::as_int) {
        None => Ok(None),
        Some(None) => Err(TrackerError::Malformed("interval is not an integer")),
        Some(Some(s)) => u64::try_from(s)
            .map(Some)
            .map_err(|_| TrackerError::Malformed("negative interval")),
    }
}

/// A swarm count; out-of-range values (negative, above u32) are treated as unknown.
fn opt_count(d: &Dict<'_>, key: &[u8]) -> Result<Option<u32>, TrackerError> {
    match d.get(key).map(Value::as_int) {
        None => Ok(None),
        Some(None) => Err(TrackerError::Malformed(
            "complete/incomplete is not an integer",
        )),
        Some(Some(n)) => Ok(u32::try_from(n).ok()),
    }
}

#[cfg(test)]
mod url_tests {
    use super::*;
    use crate::tracker::Event;
    use crate::types::{InfoHash, PeerId};

    fn req() -> AnnounceRequest {
        let mut ih = [0u8; 20];
        ih[..8].copy_from_slice(&[0x12, 0xab, b'a', b'-', 0xff, b' ', b'~', b'%']);
        AnnounceRequest {
            info_hash: InfoHash(ih),
            peer_id: PeerId(*b"-RT0100-abc.def_~/+&"),
            port: 6881,
            uploaded: 10,
            downloaded: 20,
            left: 30,
            event: None,
            numwant: None,
            compact: true,
            key: 0x0a0b_0c0d,
            tracker_id: None,
        }
    }

    const IH: &str = "%12%ABa-%FF%20~%25%00%00%00%00%00%00%00%00%00%00%00%00";
    const PID: &str = "-RT0100-abc.def_~%2F%2B%26";

    #[test]
    fn encodes_binary_fields_byte_exact() {
        let url = announce_url("http://127.0.0.1:6969/announce", &req()).unwrap();
        let want = format!(
            "http://127.0.0.1:6969/announce?info_hash={IH}&peer_id={PID}&port=6881&uploaded=10\
             &downloaded=20&left=30&compact=1&key=0a0b0c0d"
        );
        assert_eq!(url, want);
    }

    #[test]
    fn keeps_an_existing_query_and_drops_the_fragment() {
        let url = announce_url("https://127.0.0.1/a?passkey=x%2Fy#frag", &req()).unwrap();
        assert!(
            url.starts_with(&format!(
                "https://127.0.0.1/a?passkey=x%2Fy&info_hash={IH}&"
            )),
            "{url}"
        );
        assert!(!url.contains('#'));
        for base in ["http://127.0.0.1/a?", "http://127.0.0.1/a?k=v&"] {
            let url = announce_url(base, &req()).unwrap();
            assert!(url.starts_with(&format!("{base}info_hash=")), "{url}");
        }
    }

    #[test]
    fn optional_parameters() {
        let mut r = req();
        r.event = Some(Event::Completed);
        r.numwant = Some(50);
        r.compact = false;
        r.tracker_id = Some(vec![0, b'z', 0xfe]);
        let url = announce_url("HTTP://127.0.0.1/announce", &r).unwrap();
        assert!(
            url.ends_with("&compact=0&key=0a0b0c0d&event=completed&numwant=50&trackerid=%00z%FE"),
            "{url}"
        );
        for e in [Event::Started, Event::Stopped] {
            r.event = Some(e);
            let url = announce_url("http://127.0.0.1/announce", &r).unwrap();
            assert!(url.contains(&format!("&event={}&", e.as_str())));
        }
    }

    #[test]
    fn rejects_non_http_urls() {
        for bad in ["udp://127.0.0.1:6969", "ftp://127.0.0.1/", "", "http:/x"] {
            assert!(
                matches!(announce_url(bad, &req()), Err(TrackerError::BadUrl(_))),
                "{bad}"
            );
        }
    }
}

#[cfg(test)]
mod reply_tests {
    use super::*;
    use crate::tracker::{MAX_INTERVAL, MIN_INTERVAL};
    use std::time::Duration;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn malformed(body: &[u8]) -> &'static str {
        match parse_announce_reply(body) {
            Err(TrackerError::Malformed(why)) => why,
            other => panic!("{:?} gave {other:?}", String::from_utf8_lossy(body)),
        }
    }

    #[test]
    fn compact_reply_with_everything() {
        let mut body =
            b"d8:completei3e10:incompletei4e8:intervali1800e12:min intervali300e".to_vec();
        body.extend_from_slice(b"5:peers12:\x7f\x00\x00\x01\x1a\xe1\x7f\x00\x00\x02\x00\x50");
        body.extend_from_slice(
            b"6:peers618:\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x1a\xe2",
        );
        body.extend_from_slice(b"10:tracker id3:\x00ab15:warning message4:slowe");
        let r = parse_announce_reply(&body).unwrap();
        assert_eq!(r.interval, Duration::from_secs(1800));
        assert_eq!(r.min_interval, Some(Duration::from_secs(300)));
        assert_eq!((r.seeders, r.leechers), (Some(3), Some(4)));
        assert_eq!(
            r.peers,
            vec![
                addr("127.0.0.1:6881"),
                addr("127.0.0.2:80"),
                addr("[::1]:6882")
            ]
        );
        assert_eq!(r.tracker_id.as_deref(), Some(&b"\x00ab"[..]));
        assert_eq!(r.warning.as_deref(), Some("slow"));
    }

    #[test]
    fn dictionary_peers() {
        let body = b"d8:intervali900e5:peersl\
            d2:ip9:127.0.0.17:peer id20:-RT0100-abcdefghijkl4:porti6881ee\
            d2:ip3:::14:porti51413ee\
            d2:ip5:[::1]4:porti7eed2:ip9:127.0.0.34:porti0ee\
            d2:ip11:example.org4:porti80eeee";
        let r = parse_announce_reply(body).unwrap();
        assert_eq!(
            r.peers,
            vec![addr("127.0.0.1:6881"), addr("[::1]:51413"), addr("[::1]:7")]
        );
        assert_eq!(r.interval, Duration::from_secs(900));
        assert_eq!((r.seeders, r.leechers, r.min_interval), (None, None, None));

        assert_eq!(malformed(b"d5:peersli1eee"), "peer is not a dictionary");
        assert_eq!(
            malformed(b"d5:peersld4:porti1eeee"),
            "peer without a string ip"
        );
        assert_eq!(
            malformed(b"d5:peersld2:ip9:127.0.0.1eee"),
            "peer without a port in 0..=65535"
        );
        assert_eq!(
            malformed(b"d5:peersld2:ip9:127.0.0.14:porti70000eeee"),
            "peer without a port in 0..=65535"
        );
        assert_eq!(
            malformed(b"d5:peersld2:ip9:127.0.0.14:porti-1eeee"),
            "peer without a port in 0..=65535"
        );
    }

    #[test]
    fn failure_reason_wins() {
        let body = b"d14:failure reason22:torrent not registered8:intervali60ee";
        match parse_announce_reply(body) {
            Err(TrackerError::Failure(m)) => assert_eq!(m, "torrent not registered"),
            other => panic!("{other:?}"),
        }
        let mut long = format!("d14:failure reason{}:", 5000).into_bytes();
        long.extend_from_slice(&[b'x'; 5000]);
        long.push(b'e');
        match parse_announce_reply(&long) {
            Err(TrackerError::Failure(m)) => assert_eq!(m.len(), crate::tracker::MAX_MESSAGE_BYTES),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            malformed(b"d14:failure reasoni1ee"),
            "failure reason is not a string"
        );
    }

    #[test]
    fn intervals_are_clamped_or_defaulted() {
        let r = parse_announce_reply(b"d8:intervali5e12:min intervali1e5:peers0:e").unwrap();
        assert_eq!(
            (r.interval, r.min_interval),
            (MIN_INTERVAL, Some(MIN_INTERVAL))
        );
        let r = parse_announce_reply(b"d8:intervali99999999999e5:peers0:e").unwrap();
        assert_eq!(r.interval, MAX_INTERVAL);
        let r = parse_announce_reply(b"d8:intervali600e12:min intervali7200e5:peers0:e").unwrap();
        assert_eq!(
            r.min_interval,
            Some(Duration::from_secs(600)),
            "min interval not above interval"
        );
        let r = parse_announce_reply(b"d5:peers0:e").unwrap();
        assert_eq!(r.interval, DEFAULT_INTERVAL);
        assert!(r.peers.is_empty());
        assert_eq!(malformed(b"d8:intervali-1e5:peers0:e"), "negative interval");
        assert_eq!(malformed(b"d12:min intervali-60ee"), "negative interval");
        assert_eq!(malformed(b"d8:interval2:60e"), "interval is not an integer");
    }

    #[test]
    fn bad_peer_strings() {
        assert!(malformed(b"d5:peers7:\x7f\x00\x00\x01\x1a\xe1\x00e").contains("multiple of 6"));
        assert!(malformed(b"d6:peers66:\x7f\x00\x00\x01\x1a\xe1e").contains("multiple of 18"));
        assert_eq!(
            malformed(b"d5:peersi3ee"),
            "peers is neither a string nor a list"
        );
        assert_eq!(malformed(b"d6:peers6lee"), "peers6 is not a string");
        assert_eq!(
            malformed(b"d8:complete1:xe"),
            "complete/incomplete is not an integer"
        );
        let r =
            parse_announce_reply(b"d8:completei-1e10:incompletei99999999999e5:peers0:e").unwrap();
        assert_eq!(
            (r.seeders, r.leechers),
            (None, None),
            "out-of-range counts are unknown"
        );
    }

    #[test]
    fn not_a_dictionary_or_not_bencode() {
        assert_eq!(malformed(b"le"), "reply is not a dictionary");
        assert_eq!(malformed(b"i42e"), "reply is not a dictionary");
        assert_eq!(
            malformed(b"d5:peers0:ejunk"),
            "bytes after the reply dictionary"
        );
        assert!(
            parse_announce_reply(b"d5:peers0:e\r\n").is_ok(),
            "trailing whitespace is fine"
        );
        for garbage in [
            &b""[..],
            b"<html>502 Bad Gateway</html>",
            b"d5:peers",
            b"d5:peers99:abce",
            b"di1ei2ee",
        ] {
            assert!(
                matches!(parse_announce_reply(garbage), Err(TrackerError::Bencode(_))),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn limits() {
        let huge = vec![b' '; MAX_REPLY_BYTES + 1];
        assert!(matches!(
            parse_announce_reply(&huge),
            Err(TrackerError::TooLarge { .. })
        ));

        let n = MAX_PEERS_PER_REPLY + 100;
        let mut body = format!("d5:peers{}:", n * 6).into_bytes();
        for i in 0..n {
            body.extend_from_slice(&[127, 0, (i >> 8) as u8, i as u8, 0x1a, 0xe1]);
        }
        body.extend_from_slice(
            b"6:peers618:\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x1a\xe1e",
        );
        assert_eq!(
            parse_announce_reply(&body).unwrap().peers.len(),
            MAX_PEERS_PER_REPLY
        );

        let mut body = b"d5:peersl".to_vec();
        for _ in 0..n {
            body.extend_from_slice(b"d2:ip9:127.0.0.14:porti1ee");
        }
        body.extend_from_slice(b"ee");
        assert_eq!(
            parse_announce_reply(&body).unwrap().peers.len(),
            MAX_PEERS_PER_REPLY
        );

        let id = vec![b'x'; MAX_TRACKER_ID_BYTES + 1];
        let mut body = format!("d10:tracker id{}:", id.len()).into_bytes();
        body.extend_from_slice(&id);
        body.push(b'e');
        assert_eq!(
            parse_announce_reply(&body).unwrap().tracker_id,
            None,
            "over-long id dropped"
        );
    }
}
