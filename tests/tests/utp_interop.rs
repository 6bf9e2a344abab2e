//! uTP (BEP 29) against libtorrent 2.0 on loopback: downloading from and seeding to a
//! libtorrent that speaks uTP only (`RT_LT_TRANSPORT=utp`: uTP on both ways, TCP off both
//! ways), on a clean path and through [`UdpRelay`] with 2% loss and reordering both ways, and
//! `--transport tcp` failing against such a peer with the reason named.
//!
//! CLI contract (`ringtorrent download` and `ringtorrent seed`): `--transport tcp|utp|both`,
//! default `both` (TCP first, then uTP if TCP cannot connect); incoming uTP is always
//! accepted on the listen port (UDP, same number as TCP).
//!
//! What a uTP-only libtorrent 2.0 looks like from outside (found here): it still listens on
//! TCP, accepts a TCP connection and closes it at once (a reset, not a refusal). Behind the
//! relay, which carries UDP only, nothing listens on TCP at all: a TCP dial is refused.
//!
//! A byte-identical transfer with a uTP-only peer is one that went through our uTP stack:
//! libtorrent closes every TCP connection, and the relay carries no TCP.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rt_testkit::libtorrent::{LtLeecher, LtSeedOpts, LtSeeder, LtTransport};
use rt_testkit::net::{free_tcp_udp_port, seeder_ip};
use rt_testkit::rt_seeder::{RtSeedOpts, RtSeeder};
use rt_testkit::torrent::{make_torrent_libtorrent, PayloadFixture};
use rt_testkit::udp_relay::{RelayOpts, UdpRelay};
use rt_testkit::{Download, DownloadOutcome, PayloadSpec};

const PIECE: u32 = 256 * 1024;
/// Payload of the clean-path tests.
const CLEAN_BYTES: u64 = 16 << 20;
/// Payload of the lossy-path tests (uTP slows down on loss: smaller keeps them bounded).
const LOSSY_BYTES: u64 = 8 << 20;
/// Wall time of a clean-path transfer (2 cores shared with the peer).
const CLEAN_SECS: u64 = 120;
/// Wall time of a lossy-path transfer.
const LOSSY_SECS: u64 = 240;
/// The engine's connection log: names why each connection closed (`peer ADDR closing:
/// REASON`), refused dials included, which `--verbose` leaves out as routine.
const CONN_LOG: &str = "warn,ringtorrent::shard=debug";

/// Three files of `bytes` in all (boundaries off piece edges), and their torrent, made by
/// libtorrent (so the download tests also run against the libtorrent stand-in for our CLI,
/// `tests/scripts/lt_as_ringtorrent.sh`, which maps `--transport`).
fn fixture(bytes: u64, seed: u64) -> PayloadFixture {
    let spec = PayloadSpec::split("utp", bytes, 3, seed);
    let dir = tempfile::tempdir().unwrap();
    let (seed_dir, dl_dir) = (dir.path().join("seed"), dir.path().join("dl"));
    spec.generate(&seed_dir).unwrap();
    std::fs::create_dir_all(&dl_dir).unwrap();
    let torrent = dir.path().join("utp.torrent");
    let meta =
        make_torrent_libtorrent(&spec.content_path(&seed_dir), &torrent, PIECE, None).unwrap();
    PayloadFixture {
        dir,
        spec,
        seed_dir,
        dl_dir,
        torrent,
        meta,
    }
}

/// A libtorrent seeder of `fx` that speaks uTP only.
fn utp_seeder(fx: &PayloadFixture) -> LtSeeder {
    let opts = LtSeedOpts {
        transport: LtTransport::Utp,
        ..Default::default()
    };
    LtSeeder::start(&fx.torrent, &fx.seed_dir, &opts).unwrap()
}

/// 2% loss each way and 1% of datagrams held back 10 ms (overtaken by later ones).
fn lossy(seed: u64) -> RelayOpts {
    RelayOpts::lossy(0.02, seed)
}

/// A relay on its own 127.0.0.x address to `target`.
fn relay_to(target: SocketAddr, opts: RelayOpts) -> UdpRelay {
    UdpRelay::start(IpAddr::from(seeder_ip()), target, opts).unwrap()
}

/// A verbose download from `peer` with `args` added.
fn download(fx: &PayloadFixture, peer: SocketAddr, args: &[&str], secs: u64) -> Download {
    let mut d = Download::new(&fx.torrent, &fx.dl_dir)
        .timeout(Duration::from_secs(secs))
        .peer(peer);
    d.extra_args.push("--verbose".into());
    d.extra_args.extend(args.iter().map(|a| a.to_string()));
    d
}

/// Runs `d`; fails the test with the engine's and the peers' logs unless it succeeded.
fn run_ok(d: &Download, relay: Option<&UdpRelay>, seeder: &LtSeeder) -> DownloadOutcome {
    let out = d.run().unwrap();
    let path = relay.map_or_else(|| "no relay".into(), |r| r.summary());
    if let Err(e) = out.ensure_success() {
        panic!("{e:#}\n{path}\n--- seeder ---\n{}", seeder.proc.log_tail());
    }
    eprintln!("downloaded in {:?} ({path})", out.wall);
    out
}

/// A fresh listen address on its own 127.0.0.x, free for TCP and UDP.
fn fresh_listen() -> SocketAddr {
    let ip = seeder_ip();
    SocketAddr::from((ip, free_tcp_udp_port(ip).unwrap()))
}

/// Checks the relay really lost and reordered datagrams on the way.
fn assert_lossy(relay: &UdpRelay) {
    let s = relay.summary();
    assert!(relay.forwarded() > 0, "nothing went through the relay: {s}");
    assert!(relay.dropped() > 0, "the relay dropped nothing: {s}");
    assert!(relay.delayed() > 0, "the relay reordered nothing: {s}");
}

/// The `peer ADDR closing: REASON` reasons the engine logged for `addr`.
fn close_reasons(stderr: &str, addr: SocketAddr) -> Vec<String> {
    let needle = format!("peer {addr} closing: ");
    stderr
        .lines()
        .filter_map(|l| Some(l.split_once(&needle)?.1.trim().to_string()))
        .collect()
}

/// 1. `--transport utp` downloads from a uTP-only libtorrent: our uTP dial, handshake and
///    every block over our uTP stack, byte-identical.
#[test]
fn download_from_utp_only_libtorrent_over_utp() {
    let fx = fixture(CLEAN_BYTES, 291);
    let seeder = utp_seeder(&fx);
    let d = download(&fx, seeder.addr(), &["--transport", "utp"], CLEAN_SECS);
    run_ok(&d, None, &seeder);
    fx.spec.verify(&fx.dl_dir).unwrap();
}

/// 2. The default transport downloads from a uTP-only libtorrent. Its TCP port accepts the
///    dial and closes it at once (libtorrent 2.0 with incoming TCP off), so this proves the
///    fallback to uTP also covers a TCP connection reset before the handshake, not only a
///    refused dial (test 2b).
#[test]
fn download_from_utp_only_libtorrent_with_the_default_transport() {
    let fx = fixture(CLEAN_BYTES, 292);
    let seeder = utp_seeder(&fx);
    let d = download(&fx, seeder.addr(), &[], CLEAN_SECS);
    run_ok(&d, None, &seeder);
    fx.spec.verify(&fx.dl_dir).unwrap();
}

/// 2b. The default transport against a peer that refuses TCP outright (the uTP-only seeder
///     behind a clean relay: nothing listens on TCP there) falls back to uTP and downloads.
#[test]
fn default_transport_falls_back_to_utp_when_tcp_is_refused() {
    let fx = fixture(CLEAN_BYTES, 293);
    let seeder = utp_seeder(&fx);
    let relay = relay_to(seeder.addr(), RelayOpts::default());
    let d = download(&fx, relay.addr(), &[], CLEAN_SECS);
    run_ok(&d, Some(&relay), &seeder);
    fx.spec.verify(&fx.dl_dir).unwrap();
    assert!(relay.forwarded() > 0, "{}", relay.summary());
}

/// 3. Our seeder serves a uTP-only libtorrent leecher that dials our listen port: incoming
///    uTP is accepted on the listen port with the default transport, byte-identical.
#[test]
fn seed_to_utp_only_libtorrent() {
    let fx = fixture(CLEAN_BYTES, 294);
    let seeder = RtSeeder::start(
        &fx.torrent,
        &fx.seed_dir,
        &RtSeedOpts::listen(fresh_listen()),
    )
    .unwrap();
    let timeout = Duration::from_secs(CLEAN_SECS);
    let mut leecher = LtLeecher::start_over(
        LtTransport::Utp,
        &fx.torrent,
        &fx.dl_dir,
        &[seeder.addr()],
        timeout,
    )
    .unwrap();
    let st = leecher.wait(timeout + Duration::from_secs(10)).unwrap();
    assert!(
        st.success(),
        "libtorrent leecher: {st}\n{}\n--- seeder ---\n{}",
        leecher.proc.log_tail(),
        seeder.proc.log_tail()
    );
    fx.spec.verify(&fx.dl_dir).unwrap();
}

/// 4. `--transport utp` downloads from a uTP-only libtorrent through a path that drops 2% of
///    datagrams and reorders some, both ways: our uTP retransmits, reorders and acks
///    selectively enough to finish byte-identical, and the path really was lossy.
#[test]
fn download_over_utp_through_a_lossy_path() {
    let fx = fixture(LOSSY_BYTES, 295);
    let seeder = utp_seeder(&fx);
    let relay = relay_to(seeder.addr(), lossy(295));
    let d = download(&fx, relay.addr(), &["--transport", "utp"], LOSSY_SECS);
    run_ok(&d, Some(&relay), &seeder);
    fx.spec.verify(&fx.dl_dir).unwrap();
    assert_lossy(&relay);
}

/// 5. Our seeder serves a uTP-only libtorrent leecher through the lossy path (the leecher
///    dials the relay, the relay our listen port): our uTP sender recovers from loss and
///    reordering, byte-identical.
#[test]
fn seed_over_utp_through_a_lossy_path() {
    let fx = fixture(LOSSY_BYTES, 296);
    let seeder = RtSeeder::start(
        &fx.torrent,
        &fx.seed_dir,
        &RtSeedOpts::listen(fresh_listen()),
    )
    .unwrap();
    let relay = relay_to(seeder.addr(), lossy(296));
    let timeout = Duration::from_secs(LOSSY_SECS);
    let mut leecher = LtLeecher::start_over(
        LtTransport::Utp,
        &fx.torrent,
        &fx.dl_dir,
        &[relay.addr()],
        timeout,
    )
    .unwrap();
    let st = leecher.wait(timeout + Duration::from_secs(10)).unwrap();
    assert!(
        st.success(),
        "libtorrent leecher: {st}\n{}\n{}\n--- seeder ---\n{}",
        relay.summary(),
        leecher.proc.log_tail(),
        seeder.proc.log_tail()
    );
    fx.spec.verify(&fx.dl_dir).unwrap();
    assert_lossy(&relay);
}

/// 6. `--transport tcp` cannot download from a uTP-only peer, and says why. The peer is the
///    uTP-only seeder behind a clean relay, which carries UDP only: the TCP dial is refused,
///    the engine logs `peer RELAY closing: connect failed: connection refused`, no datagram
///    is sent (no uTP fallback), and nothing is downloaded.
#[test]
fn transport_tcp_is_refused_by_a_utp_only_peer() {
    let fx = fixture(4 << 20, 297);
    let seeder = utp_seeder(&fx);
    let relay = relay_to(seeder.addr(), RelayOpts::default());
    let mut d = download(&fx, relay.addr(), &["--transport", "tcp"], 15);
    d.env.push(("RUST_LOG".into(), CONN_LOG.into()));
    d.env.push(("NO_COLOR".into(), "1".into()));
    let out = d.run().unwrap();
    assert!(!out.success(), "downloaded from a uTP-only peer over TCP");
    let reasons = close_reasons(&out.stderr, relay.addr());
    assert!(
        reasons
            .iter()
            .any(|r| r == "connect failed: connection refused"),
        "no refused dial named for {}: {reasons:?}\n{}",
        relay.addr(),
        rt_testkit::proc::tail(&out.stderr, 6000)
    );
    assert_eq!(relay.forwarded(), 0, "uTP was tried: {}", relay.summary());
    assert!(fx.spec.verify(&fx.dl_dir).is_err());
}

/// 6b. `--transport tcp` straight at a uTP-only libtorrent: its TCP port accepts and closes
///     every connection, so the download fails and each close the engine logs for the peer
///     is the network's doing (closed or reset by the peer), never a protocol fault of ours.
#[test]
fn transport_tcp_is_closed_by_a_utp_only_libtorrent() {
    let fx = fixture(4 << 20, 298);
    let seeder = utp_seeder(&fx);
    let mut d = download(&fx, seeder.addr(), &["--transport", "tcp"], 15);
    d.env.push(("RUST_LOG".into(), CONN_LOG.into()));
    d.env.push(("NO_COLOR".into(), "1".into()));
    let out = d.run().unwrap();
    assert!(!out.success(), "downloaded from a uTP-only peer over TCP");
    let reasons = close_reasons(&out.stderr, seeder.addr());
    let by_peer = |r: &String| {
        r.starts_with("peer closed the connection")
            || r.ends_with("connection reset")
            || r.ends_with("broken pipe")
    };
    assert!(
        !reasons.is_empty() && reasons.iter().all(by_peer),
        "closes of {} not named as the peer's closing: {reasons:?}\n{}",
        seeder.addr(),
        rt_testkit::proc::tail(&out.stderr, 6000)
    );
    assert!(fx.spec.verify(&fx.dl_dir).is_err());
}
