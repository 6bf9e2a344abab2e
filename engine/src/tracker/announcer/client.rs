//! One announce over the network: HTTP(S) with reqwest, `udp://` with a tokio socket driving the
//! sans-IO [`UdpAnnounce`]. This file and `announcer/mod.rs` are the only tracker code that does IO.
//!
//! Invariants: an HTTP body is read chunk by chunk and abandoned as soon as it would pass
//! `MAX_REPLY_BYTES` (a `Content-Length` above it fails before reading); UDP datagrams land in
//! one 64 KiB buffer per announce; every announce is bounded by the caller's timeout.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use crate::tracker::udp::{ConnectionId, Family, UdpAnnounce, UdpConfig};
use crate::tracker::{http, AnnounceReply, AnnounceRequest, TrackerError, MAX_REPLY_BYTES};

/// Largest UDP payload there is; a bigger buffer could never fill.
const UDP_BUF_LEN: usize = 65_536;
/// Redirects an HTTP tracker may send us through.
const MAX_REDIRECTS: usize = 5;

/// Announces once to `url` (`http://`, `https://` or `udp://host:port`) and waits at most
/// `timeout` for the reply. Builds a fresh HTTP client each call: for repeated announces use
/// [`super::Announcer`], which keeps one.
pub async fn announce_once(
    url: &str,
    req: &AnnounceRequest,
    timeout: Duration,
) -> Result<AnnounceReply, TrackerError> {
    Transport::new(UdpConfig::default())?
        .announce(url, req, timeout)
        .await
}

/// What survives between announces: the HTTP client (connection pool) and the UDP connection
/// ids, per tracker URL.
pub(crate) struct Transport {
    http: reqwest::Client,
    udp_ids: HashMap<String, ConnectionId>,
    udp_config: UdpConfig,
}

impl Transport {
    /// `udp_config.family` is ignored: each announce uses the family of the tracker's address.
    pub(crate) fn new(udp_config: UdpConfig) -> Result<Self, TrackerError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("ringtorrent/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
            // Trackers are contacted directly: a proxy from the environment would change who
            // sees our announces, which is the user's choice to make explicitly.
            .no_proxy()
            .build()
            .map_err(|e| TrackerError::Io(std::io::Error::other(e)))?;
        Ok(Transport {
            http,
            udp_ids: HashMap::new(),
            udp_config,
        })
    }

    /// Announces to `url`, giving up after `timeout`.
    pub(crate) async fn announce(
        &mut self,
        url: &str,
        req: &AnnounceRequest,
        timeout: Duration,
    ) -> Result<AnnounceReply, TrackerError> {
        let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
        let fut = async {
            if lower.starts_with("udp://") {
                self.udp(url, req).await
            } else if lower.starts_with("http://") || lower.starts_with("https://") {
                self.http(url, req).await
            } else {
                Err(TrackerError::BadUrl("scheme is not http, https or udp"))
            }
        };
        tokio::time::timeout(timeout, fut)
            .await
            .unwrap_or(Err(TrackerError::Timeout))
    }

    async fn http(
        &self,
        announce: &str,
        req: &AnnounceRequest,
    ) -> Result<AnnounceReply, TrackerError> {
        let url = http::announce_url(announce, req)?;
        let mut resp = self.http.get(&url).send().await.map_err(from_reqwest)?;
        let status = resp.status();
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_REPLY_BYTES as u64)
        {
            return Err(TrackerError::TooLarge {
                limit: MAX_REPLY_BYTES,
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(from_reqwest)? {
            if body.len() + chunk.len() > MAX_REPLY_BYTES {
                return Err(TrackerError::TooLarge {
                    limit: MAX_REPLY_BYTES,
                });
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            // Some trackers refuse with a 4xx and a bencoded `failure reason`: keep the reason.
            return match http::parse_announce_reply(&body) {
                Err(TrackerError::Failure(m)) => Err(TrackerError::Failure(m)),
                _ => Err(TrackerError::Http(status.as_u16())),
            };
        }
        http::parse_announce_reply(&body)
    }

    async fn udp(
        &mut self,
        announce: &str,
        req: &AnnounceRequest,
    ) -> Result<AnnounceReply, TrackerError> {
        let host_port = udp_host_port(announce)?;
        let addr = tokio::net::lookup_host(host_port)
            .await?
            .next()
            .ok_or(TrackerError::BadUrl("tracker host did not resolve"))?;
        let (bind, family): (SocketAddr, _) = match addr {
            SocketAddr::V4(_) => ((Ipv4Addr::UNSPECIFIED, 0).into(), Family::V4),
            SocketAddr::V6(_) => ((Ipv6Addr::UNSPECIFIED, 0).into(), Family::V6),
        };
        let sock = UdpSocket::bind(bind).await?;
        sock.connect(addr).await?;

        let config = UdpConfig {
            family,
            ..self.udp_config
        };
        let cached = self.udp_ids.get(announce).copied();
        let mut sm = UdpAnnounce::with_config(req.clone(), Instant::now(), config, cached);
        let mut buf = vec![0u8; UDP_BUF_LEN];
        let result = loop {
            let now = Instant::now();
            while let Some(d) = sm.poll_transmit(now) {
                sock.send(&d).await?;
            }
            if let Some(r) = sm.take_result() {
                break r;
            }
            let Some(deadline) = sm.poll_timeout() else {
                // Not reachable: no result means a request is in flight with a deadline.
                break Err(TrackerError::Timeout);
            };
            tokio::select! {
                n = sock.recv(&mut buf) => {
                    if let Err(e) = sm.handle_datagram(&buf[..n?], Instant::now()) {
                        tracing::debug!(tracker = announce, error = %e, "ignored UDP tracker datagram");
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
        };
        match (&result, sm.connection_id()) {
            (Ok(_), Some(id)) => self.udp_ids.insert(announce.to_owned(), id),
            _ => self.udp_ids.remove(announce),
        };
        result
    }
}

/// `udp://host:port[/path]` to `host:port` (BEP 15; a BEP 41 path is not sent).
fn udp_host_port(url: &str) -> Result<&str, TrackerError> {
    let rest = url
        .get(6..)
        .ok_or(TrackerError::BadUrl("not a udp:// URL"))?;
    let host_port = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let has_port = host_port
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0));
    if !has_port {
        return Err(TrackerError::BadUrl("udp:// URL without host:port"));
    }
    Ok(host_port)
}

fn from_reqwest(e: reqwest::Error) -> TrackerError {
    if e.is_timeout() {
        TrackerError::Timeout
    } else if e.is_redirect() {
        TrackerError::TooManyRedirects(MAX_REDIRECTS)
    } else if let Some(s) = e.status() {
        TrackerError::Http(s.as_u16())
    } else {
        TrackerError::Io(std::io::Error::other(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_urls() {
        assert_eq!(
            udp_host_port("udp://127.0.0.1:6969").unwrap(),
            "127.0.0.1:6969"
        );
        assert_eq!(
            udp_host_port("udp://127.0.0.1:6969/announce").unwrap(),
            "127.0.0.1:6969"
        );
        assert_eq!(
            udp_host_port("udp://[::1]:6969/announce?x").unwrap(),
            "[::1]:6969"
        );
        for bad in [
            "udp://127.0.0.1",
            "udp://:80",
            "udp://127.0.0.1:0",
            "udp://h:99999",
            "udp:/",
        ] {
            assert!(
                matches!(udp_host_port(bad), Err(TrackerError::BadUrl(_))),
                "{bad}"
            );
        }
    }
}

/// Against fake trackers on 127.0.0.1 that misbehave in ways opentracker does not.
#[cfg(test)]
mod io_tests {
    use super::*;
    use crate::types::{InfoHash, PeerId};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn req() -> AnnounceRequest {
        AnnounceRequest::new(InfoHash([0xfe; 20]), PeerId(*b"-RT0100-abcdefghijkl"), 6881)
    }

    /// Serves one HTTP connection on 127.0.0.1: reads the request head, sends `head` and `body`,
    /// closes; the task returns the request head it received.
    async fn http_once(head: String, body: Vec<u8>) -> (String, tokio::task::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/announce", l.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(&body).await;
            String::from_utf8_lossy(&got).into_owned()
        });
        (url, task)
    }

    #[tokio::test]
    async fn http_sends_the_exact_query_and_parses_the_reply() {
        let body = b"d8:intervali900e5:peers6:\x7f\x00\x00\x01\x1a\xe1e".to_vec();
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let (url, server) = http_once(head, body).await;
        let reply = announce_once(&url, &req(), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(reply.peers, vec!["127.0.0.1:6881".parse().unwrap()]);
        let seen = server.await.unwrap();
        let line = seen.lines().next().unwrap().to_owned();
        let want = format!("GET /announce?info_hash={}&", "%FE".repeat(20));
        assert!(line.starts_with(&want), "byte-exact on the wire: {line}");
        assert!(
            line.contains("&peer_id=-RT0100-abcdefghijkl&port=6881&"),
            "{line}"
        );
    }

    #[tokio::test]
    async fn http_status_and_refusals() {
        let head =
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned();
        let (url, _s) = http_once(head, Vec::new()).await;
        let err = announce_once(&url, &req(), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, TrackerError::Http(404)), "{err}");

        let body = b"d14:failure reason6:bannede".to_vec();
        let head = format!(
            "HTTP/1.1 403 Forbidden\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let (url, _s) = http_once(head, body).await;
        let err = announce_once(&url, &req(), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, TrackerError::Failure(m) if m == "banned"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn http_body_limit_is_enforced_while_reading() {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_REPLY_BYTES + 1
        );
        let (url, _s) = http_once(head, Vec::new()).await;
        let err = announce_once(&url, &req(), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(err, TrackerError::TooLarge { .. }),
            "declared length: {err}"
        );

        // No length: the body runs until the server closes, past the limit.
        let head = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_owned();
        let (url, _s) = http_once(head, vec![b'x'; MAX_REPLY_BYTES + 4096]).await;
        let err = announce_once(&url, &req(), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(err, TrackerError::TooLarge { .. }),
            "streamed: {err}"
        );
    }

    #[tokio::test]
    async fn http_silence_times_out() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/announce", l.local_addr().unwrap());
        let start = Instant::now();
        let err = announce_once(&url, &req(), Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(err, TrackerError::Timeout), "{err}");
        assert!(start.elapsed() < Duration::from_secs(3));
        drop(l);
    }

    #[tokio::test]
    async fn a_redirect_loop_is_cut_off_and_named() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/announce", l.local_addr().unwrap());
        let back = url.clone();
        let served = Arc::new(AtomicU32::new(0));
        let n = served.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let i = n.fetch_add(1, Ordering::Relaxed);
                let head = format!(
                    "HTTP/1.1 302 Found\r\nLocation: {back}?r={i}\r\nContent-Length: 0\r\n\
                     Connection: close\r\n\r\n"
                );
                let _ = s.write_all(head.as_bytes()).await;
            }
        });
        let err = announce_once(&url, &req(), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, TrackerError::TooManyRedirects(5)), "{err}");
        assert_eq!(served.load(Ordering::Relaxed), 1 + MAX_REDIRECTS as u32);
    }

    /// A UDP tracker that drops the first connect request, then answers properly. Returns its
    /// URL and a counter of connect requests seen.
    async fn lossy_udp_tracker() -> (String, Arc<AtomicU32>) {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let url = format!("udp://{}", sock.local_addr().unwrap());
        let connects = Arc::new(AtomicU32::new(0));
        let seen = connects.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let d = &buf[..n];
                let txid = &d[12..16];
                let out = if n == 16 {
                    if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                        continue;
                    }
                    [&0u32.to_be_bytes()[..], txid, &77u64.to_be_bytes()].concat()
                } else {
                    assert_eq!(d[..8], 77u64.to_be_bytes(), "our connection id");
                    let peer = [127, 0, 0, 1, 0x1a, 0xe1];
                    [
                        &1u32.to_be_bytes()[..],
                        txid,
                        &[0, 0, 7, 8, 0, 0, 0, 1, 0, 0, 0, 2],
                        &peer,
                    ]
                    .concat()
                };
                let _ = sock.send_to(&out, from).await;
            }
        });
        (url, connects)
    }

    #[tokio::test]
    async fn udp_retransmits_and_reuses_the_connection_id() {
        let (url, connects) = lossy_udp_tracker().await;
        let config = UdpConfig {
            base_timeout: Duration::from_millis(50),
            ..UdpConfig::default()
        };
        let mut t = Transport::new(config).unwrap();
        let reply = t
            .announce(&url, &req(), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(reply.peers, vec!["127.0.0.1:6881".parse().unwrap()]);
        assert_eq!((reply.leechers, reply.seeders), (Some(1), Some(2)));
        assert_eq!(reply.interval, Duration::from_secs(0x708));
        assert_eq!(connects.load(Ordering::SeqCst), 2, "one lost, one answered");
        t.announce(&url, &req(), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(
            connects.load(Ordering::SeqCst),
            2,
            "connection id reused within a minute"
        );
    }

    #[tokio::test]
    async fn udp_silence_and_refusal() {
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let url = format!("udp://{}", silent.local_addr().unwrap());
        let err = announce_once(&url, &req(), Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(err, TrackerError::Timeout), "{err}");
        let port = silent.local_addr().unwrap().port();
        drop(silent);
        let err = announce_once(
            &format!("udp://127.0.0.1:{port}"),
            &req(),
            Duration::from_secs(2),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, TrackerError::Io(_)),
            "ICMP port unreachable: {err}"
        );
        let err = announce_once("wss://127.0.0.1/", &req(), Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(matches!(err, TrackerError::BadUrl(_)), "{err}");
    }
}
