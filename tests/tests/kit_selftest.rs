//! Proves the test kit against real clients only (no ringtorrent involved): if these fail, the
//! interop tests' failures say nothing about the engine.

// The TCP path shaper's tests (their own file: this one is long enough).
#[path = "kit_selftest/shaper.rs"]
mod shaper;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rt_testkit::aria2::Aria2Leecher;
use rt_testkit::libtorrent::{LtLeecher, LtSeedOpts, LtSeeder, LtTransport};
use rt_testkit::net::{seeder_ip, LEECHER_IP};
use rt_testkit::torrent::{make_torrent_libtorrent, make_torrent_mktorrent, write_with_announce};
use rt_testkit::tracker::Opentracker;
use rt_testkit::transmission::TransmissionSeeder;
use rt_testkit::udp_relay::{RelayOpts, UdpRelay};
use rt_testkit::wait::wait_for;
use rt_testkit::{PayloadSpec, TorrentMeta};

const PIECE: u32 = 64 * 1024;

/// A libtorrent seeder feeds an aria2 leecher that learns of it only through opentracker; the
/// download must match the payload byte for byte.
#[test]
fn libtorrent_seeder_feeds_aria2_through_opentracker() {
    let dir = tempfile::tempdir().unwrap();
    let (seed_dir, dl_dir) = (dir.path().join("seed"), dir.path().join("dl"));
    let spec = PayloadSpec::interop_multi(PIECE, 11);
    spec.generate(&seed_dir).unwrap();
    let bare = dir.path().join("bare.torrent");
    let meta = make_torrent_libtorrent(&spec.content_path(&seed_dir), &bare, PIECE, None).unwrap();
    assert_eq!(meta.total_len(), spec.total_len());

    let tracker = Opentracker::start(&[meta.info_hash]).unwrap();
    let torrent = dir.path().join("t.torrent");
    let with = write_with_announce(&bare, &torrent, Some(&tracker.announce_url())).unwrap();
    assert_eq!(
        with.info_hash, meta.info_hash,
        "rewriting the announce keeps the info-hash"
    );

    let seeder = LtSeeder::start(&torrent, &seed_dir, &LtSeedOpts::default()).unwrap();
    tracker
        .wait_for_seeders(&meta.info_hash, 1, Duration::from_secs(20))
        .unwrap();
    let peers = tracker.peers(&meta.info_hash).unwrap();
    assert!(
        peers.contains(&seeder.addr()),
        "{peers:?} lacks {}",
        seeder.addr()
    );

    std::fs::create_dir_all(&dl_dir).unwrap();
    let mut leecher = Aria2Leecher::start(&torrent, &dl_dir, None).unwrap();
    let status = leecher.wait(Duration::from_secs(45)).unwrap();
    assert!(
        status.success(),
        "aria2 exited {status}:\n{}",
        leecher.proc.log_tail()
    );
    spec.verify(&dl_dir).unwrap();
}

/// transmission-cli starts with its own config, seeds and answers a BitTorrent handshake for
/// the right info-hash.
#[test]
fn transmission_seeder_accepts_a_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let spec = PayloadSpec::single("tr.bin", 5 * PIECE as u64 + 3, 12);
    spec.generate(dir.path()).unwrap();
    let torrent = dir.path().join("tr.torrent");
    let meta =
        make_torrent_libtorrent(&spec.content_path(dir.path()), &torrent, PIECE, None).unwrap();
    let seeder = TransmissionSeeder::start(&torrent, dir.path(), None).unwrap();
    // Transmission sometimes resets a connection from an address it just saw (one connection
    // per IP): retry a few times, bounded.
    let mut last_err = None;
    let reply = wait_for(
        Duration::from_secs(15),
        "a handshake reply from transmission",
        || match handshake(seeder.addr(), &meta) {
            Ok(r) => Ok(Some(r)),
            Err(e) => {
                last_err = Some(e);
                std::thread::sleep(Duration::from_millis(500));
                Ok(None)
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}: last error {last_err:?}"));
    assert_eq!(
        &reply[28..48],
        &meta.info_hash.0,
        "transmission answered for another torrent"
    );
}

/// mktorrent and libtorrent read the same single file the same way: same info-hash.
#[test]
fn mktorrent_and_libtorrent_agree_on_a_single_file() {
    let dir = tempfile::tempdir().unwrap();
    let spec = PayloadSpec::single("same.bin", 3 * PIECE as u64 + 17, 13);
    spec.generate(dir.path()).unwrap();
    let content = spec.content_path(dir.path());
    let a = make_torrent_libtorrent(&content, &dir.path().join("a.torrent"), PIECE, None).unwrap();
    let b = make_torrent_mktorrent(&content, &dir.path().join("b.torrent"), PIECE, None).unwrap();
    assert_eq!(a.info_hash, b.info_hash);
    assert_eq!(b.announce, None);
    assert_eq!(b.num_pieces, 4);
    let multi = PayloadSpec::interop_multi(PIECE, 14);
    multi.generate(dir.path()).unwrap();
    let m = make_torrent_mktorrent(
        &multi.content_path(dir.path()),
        &dir.path().join("m.torrent"),
        PIECE,
        Some("http://127.0.0.1:6969/announce"),
    )
    .unwrap();
    assert_eq!(m.total_len(), multi.total_len());
    assert_eq!(TorrentMeta::read(&dir.path().join("m.torrent")).unwrap(), m);
}

/// Sends a BEP 3 handshake and reads the 68-byte reply.
fn handshake(addr: std::net::SocketAddr, meta: &TorrentMeta) -> anyhow::Result<Vec<u8>> {
    use std::io::{Read, Write};
    // From 127.0.0.1: Transmission resets a connection that seems to come from its own address.
    let mut s = rt_testkit::net::connect_from(LEECHER_IP, addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    let mut hs = vec![19u8];
    hs.extend_from_slice(b"BitTorrent protocol");
    hs.extend_from_slice(&[0; 8]);
    hs.extend_from_slice(&meta.info_hash.0);
    hs.extend_from_slice(b"-RT0100-kitselftest0");
    s.write_all(&hs)?;
    let mut reply = vec![0u8; 68];
    s.read_exact(&mut reply)?;
    anyhow::ensure!(
        &reply[..20] == b"\x13BitTorrent protocol",
        "not a BitTorrent handshake"
    );
    Ok(reply)
}

/// Datagrams a [`UdpPeer`] received: (source, payload), in arrival order.
type Received = Vec<(SocketAddr, Vec<u8>)>;

/// A UDP server on a fresh seeder address that records each datagram's source and payload,
/// and echoes it back if `echo`; stops when dropped.
struct UdpPeer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Received>>,
}

impl UdpPeer {
    fn start(echo: bool) -> UdpPeer {
        let sock = UdpSocket::bind((seeder_ip(), 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let (mut seen, mut buf) = (Vec::new(), [0u8; 2048]);
            while !flag.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if echo {
                    sock.send_to(&buf[..n], from).unwrap();
                }
                seen.push((from, buf[..n].to_vec()));
            }
            seen
        });
        UdpPeer {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the server; what it received, in order.
    fn finish(mut self) -> Received {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for UdpPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn client() -> UdpSocket {
    let c = UdpSocket::bind((LEECHER_IP, 0)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    c
}

/// The relay carries datagrams both ways on a clean path: each client gets its own upstream
/// address on the relay's IP, and the target's replies come back to the right client from the
/// relay's listening address.
#[test]
fn relay_forwards_both_ways() {
    let echo = UdpPeer::start(true);
    let relay = UdpRelay::start(seeder_ip().into(), echo.addr, RelayOpts::default()).unwrap();
    let (a, b) = (client(), client());
    let mut buf = [0u8; 64];
    for i in 0u32..100 {
        for (name, c) in [(b'a', &a), (b'b', &b)] {
            let msg = [&[name][..], &i.to_be_bytes()].concat();
            c.send_to(&msg, relay.addr()).unwrap();
            let (n, from) = c.recv_from(&mut buf).unwrap();
            assert_eq!(
                from,
                relay.addr(),
                "the reply comes from the relay's address"
            );
            assert_eq!(&buf[..n], &msg[..], "{}", relay.summary());
        }
    }
    // The relay counts a datagram after sending it: the last count may trail the reply.
    rt_testkit::wait_until(Duration::from_secs(2), "400 forwarded", || {
        relay.forwarded() == 400
    })
    .unwrap_or_else(|e| panic!("{e:#}: {}", relay.summary()));
    assert_eq!((relay.dropped(), relay.delayed()), (0, 0));
    let seen = echo.finish();
    let mut sources: Vec<SocketAddr> = seen.iter().map(|(s, _)| *s).collect();
    sources.sort();
    sources.dedup();
    assert_eq!(
        sources.len(),
        2,
        "one upstream address per client: {sources:?}"
    );
    for s in &sources {
        assert_eq!(
            s.ip(),
            relay.addr().ip(),
            "upstream sockets live on the relay's IP"
        );
        assert!(*s != a.local_addr().unwrap() && *s != b.local_addr().unwrap());
    }
}

/// With a 20% drop rate over 2000 datagrams the relay drops 15-25% of them, and with
/// reordering on, some arrive after datagrams sent later. Everything not dropped arrives.
#[test]
fn relay_drops_and_reorders() {
    let sink = UdpPeer::start(false);
    let opts = RelayOpts {
        drop_rate: 0.2,
        reorder_rate: 0.1,
        reorder_delay: Duration::from_millis(5),
        seed: 42,
    };
    let relay = UdpRelay::start(seeder_ip().into(), sink.addr, opts).unwrap();
    let c = client();
    const SENT: u32 = 2000;
    for i in 0..SENT {
        c.send_to(&i.to_be_bytes(), relay.addr()).unwrap();
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(1)); // paced: no socket buffer overflows
        }
    }
    rt_testkit::wait_until(Duration::from_secs(10), "the relay to settle", || {
        relay.forwarded() + relay.dropped() + relay.send_failed() == u64::from(SENT)
    })
    .unwrap_or_else(|e| panic!("{e:#}: {}", relay.summary()));
    std::thread::sleep(Duration::from_millis(100)); // the last forwarded ones reach the sink
    let got: Vec<u32> = sink
        .finish()
        .iter()
        .map(|(_, d)| u32::from_be_bytes(d[..4].try_into().unwrap()))
        .collect();
    let summary = relay.summary();
    eprintln!("{summary}");
    let dropped = relay.dropped();
    assert!(
        (300..=500).contains(&dropped),
        "dropped {dropped} of {SENT}, wanted 15-25%: {summary}"
    );
    assert_eq!(relay.send_failed(), 0, "{summary}");
    assert_eq!(got.len() as u64, relay.forwarded(), "{summary}");
    assert!(relay.delayed() > 0, "{summary}");
    let overtaken = got.windows(2).filter(|w| w[1] < w[0]).count();
    assert!(overtaken > 0, "nothing arrived out of order: {summary}");
}

/// A uTP-only libtorrent seeder and a uTP-only libtorrent leecher (TCP off both ways, uTP on,
/// `RT_LT_TRANSPORT=utp`) move a 4 MiB torrent byte-identical through the relay with 2% loss
/// and reordering: the relay and the kit's uTP settings work here, so a failing uTP interop
/// test is about the engine.
#[test]
fn libtorrent_utp_only_through_a_lossy_relay() {
    let dir = tempfile::tempdir().unwrap();
    let (seed_dir, dl_dir) = (dir.path().join("seed"), dir.path().join("dl"));
    let spec = PayloadSpec::single("utp.bin", 4 << 20, 15);
    spec.generate(&seed_dir).unwrap();
    let torrent = dir.path().join("utp.torrent");
    make_torrent_libtorrent(&spec.content_path(&seed_dir), &torrent, PIECE, None).unwrap();
    std::fs::create_dir_all(&dl_dir).unwrap();

    let opts = LtSeedOpts {
        transport: LtTransport::Utp,
        ..Default::default()
    };
    let seeder = LtSeeder::start(&torrent, &seed_dir, &opts).unwrap();
    let relay = UdpRelay::start(
        seeder_ip().into(),
        seeder.addr(),
        RelayOpts::lossy(0.02, 16),
    )
    .unwrap();
    let timeout = Duration::from_secs(90);
    let mut leecher = LtLeecher::start_over(
        LtTransport::Utp,
        &torrent,
        &dl_dir,
        &[relay.addr()],
        timeout,
    )
    .unwrap();
    let status = leecher.wait(timeout + Duration::from_secs(10)).unwrap();
    eprintln!("{}", relay.summary());
    assert!(
        status.success(),
        "libtorrent leecher exited {status}: {}\n{}\n--- seeder ---\n{}",
        relay.summary(),
        leecher.proc.log_tail(),
        seeder.proc.log_tail()
    );
    spec.verify(&dl_dir).unwrap();
    assert!(
        relay.dropped() > 0 && relay.delayed() > 0,
        "the path was not lossy: {}",
        relay.summary()
    );
}
