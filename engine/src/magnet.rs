//! Magnet URIs (BEP 9 `xt=urn:btih:`, hex or base32; `dn`, `tr`, `x.pe`, BEP 53 `so`).
//!
//! Sans-IO: a magnet is parsed from a string and printed back ([`Magnet::to_uri`]); nothing is
//! resolved. Rules:
//! - the scheme is `magnet:` (any case) followed by a `?query`; anything else is rejected;
//! - exactly one BitTorrent v1 info-hash: `xt=urn:btih:` with 40 hex digits or 32 base32
//!   characters (RFC 4648 alphabet, either case). Other `xt` kinds (e.g. v2 `urn:btmh:`) are
//!   ignored; two different `btih` hashes are an error;
//! - values are percent-decoded (`+` is a space, as libtorrent reads it) and must be UTF-8;
//! - `x.pe` peers must be `ip:port` or `[ipv6]:port`; a `host:port` is skipped (resolving it
//!   is IO), anything else is an error;
//! - BEP 53 `so=0,2,4-6` lists file indices and inclusive ranges;
//! - unknown parameters are ignored; the whole URI is at most [`MAX_MAGNET_LEN`] bytes, which
//!   bounds every list.

use std::net::SocketAddr;
use std::ops::RangeInclusive;

use crate::types::InfoHash;

/// Longest magnet URI accepted.
pub const MAX_MAGNET_LEN: usize = 64 * 1024;

/// A parsed magnet link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Magnet {
    /// `xt=urn:btih:`: the torrent's v1 info-hash.
    pub info_hash: InfoHash,
    /// `dn`: display name, a hint until the metadata arrives.
    pub name: Option<String>,
    /// `tr`: tracker URLs, in order.
    pub trackers: Vec<String>,
    /// `x.pe`: peers to dial directly.
    pub peers: Vec<SocketAddr>,
    /// BEP 53 `so`: the file indices to download; `None` means all files.
    pub select_only: Option<Vec<RangeInclusive<u32>>>,
}

/// Why a magnet URI was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MagnetError {
    /// The URI is longer than [`MAX_MAGNET_LEN`] (its length in bytes).
    #[error("magnet URI is {0} bytes, more than the {MAX_MAGNET_LEN}-byte limit")]
    TooLong(usize),
    /// It does not start with `magnet:?`.
    #[error("not a magnet URI (expected `magnet:?...`)")]
    NotMagnet,
    /// It has no `xt=urn:btih:` parameter.
    #[error("no BitTorrent info-hash (`xt=urn:btih:...`)")]
    NoInfoHash,
    /// A `urn:btih:` value that is neither 40 hex digits nor 32 base32 characters.
    #[error("bad info-hash {0:?}: expected 40 hex digits or 32 base32 characters")]
    BadInfoHash(String),
    /// Two `urn:btih:` parameters with different hashes.
    #[error("two different info-hashes")]
    ConflictingInfoHash,
    /// The named parameter's value has bad percent-encoding or is not UTF-8.
    #[error("parameter `{0}`: bad percent-encoding or not UTF-8")]
    BadEncoding(String),
    /// An `x.pe` value that is not `ip:port`, `[ipv6]:port` or `host:port`.
    #[error("bad peer address {0:?} in `x.pe`")]
    BadPeer(String),
    /// An `so` value that is not a list of indices and inclusive ranges.
    #[error("bad file selection {0:?} in `so`")]
    BadSelectOnly(String),
}

impl Magnet {
    /// Parses a magnet URI. See the module doc for the rules.
    pub fn parse(uri: &str) -> Result<Magnet, MagnetError> {
        if uri.len() > MAX_MAGNET_LEN {
            return Err(MagnetError::TooLong(uri.len()));
        }
        let query = uri
            .get(..7)
            .filter(|s| s.eq_ignore_ascii_case("magnet:"))
            .and_then(|_| uri[7..].strip_prefix('?'))
            .ok_or(MagnetError::NotMagnet)?;
        let mut info_hash = None;
        let mut m = Magnet {
            info_hash: InfoHash([0; 20]),
            name: None,
            trackers: Vec::new(),
            peers: Vec::new(),
            select_only: None,
        };
        for param in query.split('&').filter(|p| !p.is_empty()) {
            let (key, raw) = param.split_once('=').unwrap_or((param, ""));
            let value = percent_decode(raw).ok_or_else(|| MagnetError::BadEncoding(key.into()))?;
            match key {
                "xt" => {
                    if let Some(h) = parse_xt(&value)? {
                        if info_hash.is_some_and(|old| old != h) {
                            return Err(MagnetError::ConflictingInfoHash);
                        }
                        info_hash = Some(h);
                    }
                }
                "dn" => m.name = Some(value),
                "tr" if !value.is_empty() => m.trackers.push(value),
                "x.pe" => m.peers.extend(parse_peer(&value)?),
                "so" => m.select_only = Some(parse_select_only(&value)?),
                _ => {}
            }
        }
        m.info_hash = info_hash.ok_or(MagnetError::NoInfoHash)?;
        Ok(m)
    }

    /// The magnet URI: `xt` in hex, then `dn`, `tr`, `x.pe`, `so`, values percent-encoded.
    /// [`Magnet::parse`] of it gives back an equal `Magnet`.
    pub fn to_uri(&self) -> String {
        let mut s = format!("magnet:?xt=urn:btih:{}", self.info_hash.to_hex());
        if let Some(n) = &self.name {
            s.push_str("&dn=");
            percent_encode(n, &mut s);
        }
        for t in &self.trackers {
            s.push_str("&tr=");
            percent_encode(t, &mut s);
        }
        for p in &self.peers {
            s.push_str("&x.pe=");
            percent_encode(&p.to_string(), &mut s);
        }
        if let Some(so) = &self.select_only {
            let items: Vec<String> = so
                .iter()
                .map(|r| match r.start() == r.end() {
                    true => r.start().to_string(),
                    false => format!("{}-{}", r.start(), r.end()),
                })
                .collect();
            s.push_str("&so=");
            s.push_str(&items.join(","));
        }
        s
    }

    /// Whether BEP 53 `so` selects file `file_idx` (true for every file when there is no `so`).
    pub fn selects(&self, file_idx: u32) -> bool {
        self.select_only
            .as_ref()
            .is_none_or(|so| so.iter().any(|r| r.contains(&file_idx)))
    }
}

/// `urn:btih:<hash>` gives the hash; other `xt` kinds give `None`.
fn parse_xt(value: &str) -> Result<Option<InfoHash>, MagnetError> {
    let prefix = "urn:btih:";
    let Some(hash) = value
        .get(..prefix.len())
        .filter(|p| p.eq_ignore_ascii_case(prefix))
        .map(|_| &value[prefix.len()..])
    else {
        return Ok(None);
    };
    let parsed = match hash.len() {
        40 => InfoHash::from_hex(hash),
        32 => base32_decode(hash).map(InfoHash),
        _ => None,
    };
    parsed
        .map(Some)
        .ok_or_else(|| MagnetError::BadInfoHash(hash.into()))
}

/// RFC 4648 base32 without padding: 32 characters, exactly 160 bits.
fn base32_decode(s: &str) -> Option<[u8; 20]> {
    let mut out = [0u8; 20];
    let mut acc: u64 = 0;
    let mut bits = 0;
    let mut n = 0;
    for c in s.bytes() {
        let v = match c.to_ascii_uppercase() {
            c @ b'A'..=b'Z' => c - b'A',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | v as u64;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            *out.get_mut(n)? = (acc >> bits) as u8;
            n += 1;
        }
    }
    (n == 20 && bits == 0).then_some(out)
}

/// A peer from `x.pe`: `Some` for an IP address, `None` for a host name (skipped).
fn parse_peer(value: &str) -> Result<Option<SocketAddr>, MagnetError> {
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok(Some(addr));
    }
    let bad = || MagnetError::BadPeer(value.into());
    let (host, port) = value.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = !host.is_empty()
        && host.bytes().any(|b| b.is_ascii_alphabetic())
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if host_ok && port.parse::<u16>().is_ok() {
        Ok(None)
    } else {
        Err(bad())
    }
}

/// BEP 53: `0,2,4-6`.
fn parse_select_only(value: &str) -> Result<Vec<RangeInclusive<u32>>, MagnetError> {
    let bad = || MagnetError::BadSelectOnly(value.into());
    value
        .split(',')
        .map(|item| {
            let (a, b) = item.split_once('-').unwrap_or((item, item));
            let a: u32 = a.parse().map_err(|_| bad())?;
            let b: u32 = b.parse().map_err(|_| bad())?;
            if a > b {
                return Err(bad());
            }
            Ok(a..=b)
        })
        .collect()
}

/// Percent-decoding of a query value; `+` is a space. `None` for a bad escape or non-UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hi = (hex[0] as char).to_digit(16)?;
                let lo = (hex[1] as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The same 20 bytes in hex and in base32 (from Python's base64.b32encode).
    const HEX: &str = "75123676bf356c0422b5db813cd5b2110501433e";
    const B32: &str = "OUJDM5V7GVWAIIVV3OATZVNSCECQCQZ6";

    #[test]
    fn full_magnet() {
        let uri = format!(
            "magnet:?xt=urn:btih:{HEX}&dn=My+File%20%C3%A9&tr=http%3A%2F%2Ft.test%2Fa&tr=udp://u.test:80\
             &x.pe=127.0.0.1:6881&x.pe=[::1]:7000&x.pe=peer.test:1&so=0,2,4-6&foo=bar&ws=x"
        );
        let m = Magnet::parse(&uri).unwrap();
        assert_eq!(m.info_hash.to_hex(), HEX);
        assert_eq!(m.name.as_deref(), Some("My File é"));
        assert_eq!(m.trackers, vec!["http://t.test/a", "udp://u.test:80"]);
        let peers: Vec<String> = m.peers.iter().map(|p| p.to_string()).collect();
        assert_eq!(peers, vec!["127.0.0.1:6881", "[::1]:7000"]);
        assert_eq!(m.select_only, Some(vec![0..=0, 2..=2, 4..=6]));
        assert!(m.selects(5) && !m.selects(3) && !m.selects(7));
    }

    #[test]
    fn base32_and_hex_agree() {
        let a = Magnet::parse(&format!("magnet:?xt=urn:btih:{B32}")).unwrap();
        let b = Magnet::parse(&format!("MAGNET:?xt=URN:BTIH:{}", HEX.to_uppercase())).unwrap();
        let c = Magnet::parse(&format!("magnet:?xt=urn:btih:{}", B32.to_lowercase())).unwrap();
        assert_eq!(a.info_hash.to_hex(), HEX);
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert!(a.name.is_none() && a.trackers.is_empty() && a.select_only.is_none());
        assert!(a.selects(12345));
    }

    #[test]
    fn to_uri_round_trips() {
        let uri = format!(
            "magnet:?xt=urn:btih:{B32}&dn=a+b%2Bc%26d&tr=http://t/a?x=1%26y=2&x.pe=[::1]:1&so=3,1-2"
        );
        let m = Magnet::parse(&uri).unwrap();
        assert_eq!(m.name.as_deref(), Some("a b+c&d"));
        assert_eq!(m.trackers, vec!["http://t/a?x=1&y=2"]);
        let again = Magnet::parse(&m.to_uri()).unwrap();
        assert_eq!(again, m);
        assert!(m
            .to_uri()
            .starts_with(&format!("magnet:?xt=urn:btih:{HEX}")));
    }

    #[test]
    fn other_xt_kinds_are_ignored_but_conflicts_are_not() {
        let v2 = "urn:btmh:1220caf1e1c30e81cb361b9ee167c4aa64228a7fa4fa9f6105232b28ad099f3a302e";
        let m = Magnet::parse(&format!("magnet:?xt={v2}&xt=urn:btih:{HEX}")).unwrap();
        assert_eq!(m.info_hash.to_hex(), HEX);
        assert_eq!(
            Magnet::parse(&format!("magnet:?xt={v2}")),
            Err(MagnetError::NoInfoHash)
        );
        let same = format!("magnet:?xt=urn:btih:{HEX}&xt=urn:btih:{B32}");
        assert!(Magnet::parse(&same).is_ok());
        let other = format!("magnet:?xt=urn:btih:{HEX}&xt=urn:btih:{}", "0".repeat(40));
        assert_eq!(Magnet::parse(&other), Err(MagnetError::ConflictingInfoHash));
    }

    #[test]
    fn bad_schemes_are_rejected() {
        for uri in [
            "http://x/?xt=urn:btih:00",
            "magnet:",
            "magnet:xt=urn:btih:",
            "",
            "magnet",
        ] {
            assert_eq!(Magnet::parse(uri), Err(MagnetError::NotMagnet), "{uri}");
        }
        assert_eq!(Magnet::parse("magnet:?dn=x"), Err(MagnetError::NoInfoHash));
        let long = format!(
            "magnet:?xt=urn:btih:{HEX}&dn={}",
            "a".repeat(MAX_MAGNET_LEN)
        );
        assert!(matches!(Magnet::parse(&long), Err(MagnetError::TooLong(_))));
    }

    #[test]
    fn bad_hashes_are_rejected() {
        let bad = [
            "zz123676bf356c0422b5db813cd5b2110501433e", // hex with non-hex digits
            "75123676bf356c0422b5db813cd5b2110501433",  // 39 hex digits
            "OUJDM5V7GVWAIIVV3OATZVNSCECQCQZ1",         // base32 with a `1`
            "OUJDM5V7GVWAIIVV3OATZVNSCECQCQZ",          // 31 characters
            "OUJDM5V7GVWAIIVV3OATZVNSCECQCQ=6",         // padding inside
            "",
        ];
        for h in bad {
            let r = Magnet::parse(&format!("magnet:?xt=urn:btih:{h}"));
            assert_eq!(r, Err(MagnetError::BadInfoHash(h.into())), "{h}");
        }
    }

    #[test]
    fn bad_values_are_rejected() {
        let base = format!("magnet:?xt=urn:btih:{HEX}");
        for (extra, want) in [
            ("&dn=%zz", MagnetError::BadEncoding("dn".into())),
            ("&dn=%4", MagnetError::BadEncoding("dn".into())),
            ("&tr=%ff%fe", MagnetError::BadEncoding("tr".into())),
            ("&x.pe=1.2.3.4", MagnetError::BadPeer("1.2.3.4".into())),
            ("&x.pe=[::1]", MagnetError::BadPeer("[::1]".into())),
            (
                "&x.pe=1.2.3.4:99999",
                MagnetError::BadPeer("1.2.3.4:99999".into()),
            ),
            ("&x.pe=ho_st:1", MagnetError::BadPeer("ho_st:1".into())),
            ("&so=", MagnetError::BadSelectOnly("".into())),
            ("&so=3-1", MagnetError::BadSelectOnly("3-1".into())),
            ("&so=1,,2", MagnetError::BadSelectOnly("1,,2".into())),
            ("&so=-1", MagnetError::BadSelectOnly("-1".into())),
            (
                "&so=99999999999",
                MagnetError::BadSelectOnly("99999999999".into()),
            ),
        ] {
            assert_eq!(
                Magnet::parse(&format!("{base}{extra}")),
                Err(want),
                "{extra}"
            );
        }
    }
}
