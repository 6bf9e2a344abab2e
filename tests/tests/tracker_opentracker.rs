//! Our tracker client against a real opentracker (Debian's whitelist build) on 127.0.0.1:
//! two peers announce over HTTP and over UDP with `announce_once` and must see each other, and
//! the announcer's started / completed / stopped sequence must show up in the tracker's swarm.
//!
//! opentracker chroots into its `-d` directory and then drops to user `nobody`, so that
//! directory and the whitelist in it (`-w`, relative to the chroot) must be world-readable. The
//! list loads asynchronously: each test retries a first announce until the tracker accepts it.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ringtorrent::tracker::{
    announce_once, AnnounceReply, AnnounceRequest, Announcer, AnnouncerParams, Event, TrackerError,
    TrackerEvent, TrackerList, Transfer,
};
use ringtorrent::types::{InfoHash, PeerId};

const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running opentracker; killed and reaped on drop.
struct OpenTracker {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl OpenTracker {
    fn start(hashes: &[InfoHash]) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("rt-opentracker-")
            .tempdir()?;
        let list: String = hashes.iter().map(|h| format!("{h}\n")).collect();
        let whitelist = dir.path().join("whitelist");
        std::fs::write(&whitelist, list)?;
        // Readable by `nobody`, which opentracker becomes after the chroot.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        std::fs::set_permissions(&whitelist, std::fs::Permissions::from_mode(0o644))?;
        let port = free_tcp_udp_port()?;
        let mut cmd = if std::path::Path::new("/usr/bin/setpriv").exists() {
            // Dies with the test process even if the Drop guard never runs.
            let mut c = Command::new("/usr/bin/setpriv");
            c.args(["--pdeathsig", "KILL", "--", "opentracker"]);
            c
        } else {
            Command::new("opentracker")
        };
        let p = port.to_string();
        cmd.args([
            "-i",
            "127.0.0.1",
            "-p",
            &p,
            "-P",
            &p,
            "-w",
            "whitelist",
            "-d",
        ])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .context("starting opentracker (Debian package `opentracker`)")?;
        Ok(OpenTracker {
            child,
            port,
            _dir: dir,
        })
    }

    fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}/announce", self.port)
    }

    fn udp_url(&self) -> String {
        format!("udp://127.0.0.1:{}", self.port)
    }
}

impl Drop for OpenTracker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_tcp_udp_port() -> Result<u16> {
    for _ in 0..50 {
        let port = TcpListener::bind((LOOPBACK, 0))?.local_addr()?.port();
        if UdpSocket::bind((LOOPBACK, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no port free for both TCP and UDP on 127.0.0.1")
}

fn request(hash: InfoHash, port: u16, event: Option<Event>) -> AnnounceRequest {
    let mut r = AnnounceRequest::new(hash, PeerId::generate(), port);
    r.left = 1000;
    r.event = event;
    r.numwant = Some(50);
    r
}

/// Announces until the tracker has loaded its whitelist and accepts `req` (bounded).
async fn announce_when_ready(url: &str, req: &AnnounceRequest) -> Result<AnnounceReply> {
    let start = Instant::now();
    loop {
        match announce_once(url, req, REQUEST_TIMEOUT).await {
            Ok(reply) => return Ok(reply),
            // Not whitelisted yet (a refusal; over UDP opentracker sends an empty announce
            // response, which is malformed), or not listening yet.
            Err(e)
                if (e.is_tracker_fault() || matches!(e, TrackerError::Io(_)))
                    && start.elapsed() < READY_TIMEOUT =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e).context(format!("announce to {url}")),
        }
    }
}

fn others(reply: &AnnounceReply, own_port: u16) -> Vec<SocketAddr> {
    reply
        .peers
        .iter()
        .copied()
        .filter(|p| p.port() != own_port)
        .collect()
}

/// Two peers on `url` see each other; returns nothing, fails with context.
async fn two_peers_meet(url: &str, hash: InfoHash) -> Result<()> {
    let (port_a, port_b) = (7001, 7002);
    let a = request(hash, port_a, Some(Event::Started));
    announce_when_ready(url, &a).await?;
    let b = request(hash, port_b, Some(Event::Started));
    let reply_b = announce_once(url, &b, REQUEST_TIMEOUT).await?;
    assert_eq!(
        others(&reply_b, port_b),
        vec![SocketAddr::from((LOOPBACK, port_a))],
        "{url}: B sees A"
    );
    assert_eq!(reply_b.leechers, Some(2), "{url}: two leechers");
    assert!(reply_b.interval >= ringtorrent::tracker::MIN_INTERVAL);

    let reply_a = announce_once(url, &request(hash, port_a, None), REQUEST_TIMEOUT).await?;
    assert_eq!(
        others(&reply_a, port_a),
        vec![SocketAddr::from((LOOPBACK, port_b))],
        "{url}: A sees B"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_announces_see_each_other() -> Result<()> {
    let hash = InfoHash([0x5a; 20]);
    let tracker = OpenTracker::start(&[hash])?;
    two_peers_meet(&tracker.http_url(), hash).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_announces_see_each_other() -> Result<()> {
    let hash = InfoHash([0xa5; 20]);
    let tracker = OpenTracker::start(&[hash])?;
    two_peers_meet(&tracker.udp_url(), hash).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlisted_hash_is_refused() -> Result<()> {
    let listed = InfoHash([0x01; 20]);
    let tracker = OpenTracker::start(&[listed])?;
    announce_when_ready(&tracker.udp_url(), &request(listed, 7001, None)).await?;
    let unlisted = request(InfoHash([0x02; 20]), 7001, None);
    let err = announce_once(&tracker.http_url(), &unlisted, REQUEST_TIMEOUT)
        .await
        .expect_err("hash not in the whitelist");
    assert!(
        matches!(&err, TrackerError::Failure(m) if m.contains("not authorized")),
        "HTTP: {err}"
    );
    // Over UDP opentracker refuses with an 8-byte announce response (no interval, no counts),
    // which BEP 15 does not allow: a tracker fault, reported, not a panic or a hang.
    let err = announce_once(&tracker.udp_url(), &unlisted, REQUEST_TIMEOUT)
        .await
        .expect_err("hash not in the whitelist");
    assert!(err.is_tracker_fault(), "UDP: {err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announcer_started_completed_stopped() -> Result<()> {
    let hash = InfoHash([0x3c; 20]);
    let tracker = OpenTracker::start(&[hash])?;
    // Wait for the whitelist with a throwaway peer that leaves again.
    let probe = request(hash, 7100, None);
    announce_when_ready(&tracker.http_url(), &probe).await?;
    let mut bye = probe.clone();
    bye.event = Some(Event::Stopped);
    announce_once(&tracker.http_url(), &bye, REQUEST_TIMEOUT).await?;

    // Tier 1: a port nobody listens on (UDP: refused at once). Tier 2: the tracker.
    let dead = format!("udp://127.0.0.1:{}", free_tcp_udp_port()?);
    let tiers = vec![vec![dead.clone()], vec![tracker.http_url()]];
    let list = TrackerList::new(tiers, &mut rand::rng());
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let left = Arc::new(std::sync::atomic::AtomicU64::new(500));
    let left_cb = left.clone();
    let our_port = 7200;
    let mut params = AnnouncerParams::new(
        hash,
        PeerId::generate(),
        our_port,
        Arc::new(move || Transfer {
            uploaded: 0,
            downloaded: 0,
            left: left_cb.load(std::sync::atomic::Ordering::Relaxed),
        }),
        Arc::new(move |e| sink.lock().unwrap().push(e)),
    );
    params.request_timeout = REQUEST_TIMEOUT;
    let handle = Announcer::spawn(&tokio::runtime::Handle::current(), list, params);

    let replies = |n: usize| {
        let events = events.clone();
        async move {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                let got = events
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|e| matches!(e, TrackerEvent::Reply { .. }))
                    .count();
                if got >= n {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            bail!(
                "no {n} tracker replies within 10 s: {:?}",
                events.lock().unwrap()
            )
        }
    };
    replies(1).await?;
    {
        let ev = events.lock().unwrap();
        assert!(
            matches!(&ev[0], TrackerEvent::Error { url, .. } if *url == dead),
            "the dead tier-1 tracker is tried first: {ev:?}"
        );
    }
    let watcher = request(hash, 7300, None);
    let seen = announce_once(&tracker.http_url(), &watcher, REQUEST_TIMEOUT).await?;
    assert!(
        seen.peers.contains(&SocketAddr::from((LOOPBACK, our_port))),
        "started reached the tracker"
    );
    assert_eq!((seen.seeders, seen.leechers), (Some(0), Some(2)));

    left.store(0, std::sync::atomic::Ordering::Relaxed);
    handle.completed();
    replies(2).await?;
    let seen = announce_once(&tracker.http_url(), &watcher, REQUEST_TIMEOUT).await?;
    assert_eq!(seen.seeders, Some(1), "completed made us a seeder");

    let stopped_in = Instant::now();
    handle.shutdown().await?;
    assert!(
        stopped_in.elapsed() < Duration::from_secs(3),
        "stopped is bounded"
    );
    let seen = announce_once(&tracker.http_url(), &watcher, REQUEST_TIMEOUT).await?;
    assert!(
        !seen.peers.contains(&SocketAddr::from((LOOPBACK, our_port))),
        "stopped removed us"
    );
    Ok(())
}
