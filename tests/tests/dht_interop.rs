//! BEP 5 DHT with real peers (issue test 3). Each test starts its own DHT: libtorrent DHT nodes
//! on 127.0.0.230 and up ([`LocalDht`]), given to every client as its only bootstrap nodes, so no
//! packet goes to the public DHT. The magnets carry no peer (`x.pe`) and no tracker (`tr`): the
//! DHT is the only way the peers can find each other.
//!
//! 1. The ringtorrent CLI downloads a bare magnet from a ringtorrent seeder found in the DHT.
//! 2. libtorrent, given the bare magnet, finds the ringtorrent seeder in the DHT.
//! 3. The ringtorrent CLI finds a libtorrent seeder in the DHT.
//! 4. PORT messages both ways: a libtorrent seeder running a lone DHT node and the ringtorrent
//!    CLI, whose only bootstrap node is dead, tell each other their nodes; libtorrent counts our
//!    PORT and ringtorrent keeps libtorrent's node (its only way to know it) for the next run.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use rt_testkit::dht::LocalDht;
use rt_testkit::libtorrent::{LtSeedOpts, LtSeeder};
use rt_testkit::net::{seeder_ip, LEECHER_IP};
use rt_testkit::proc::{kit_command, Proc};
use rt_testkit::rt_seeder::{RtSeedOpts, RtSeeder};
use rt_testkit::torrent::PayloadFixture;
use rt_testkit::{python, script, Download, PayloadSpec};

const PIECE: u32 = 64 * 1024;
/// Nodes in each test's DHT (fewer than a lookup's 8 closest: every lookup visits them all).
const NODES: usize = 4;
/// How long a seeder may take to appear in the DHT.
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(60);

fn fixture(seed: u64) -> PayloadFixture {
    let spec = PayloadSpec::dir(
        "dht-payload",
        &[("a.bin", 3 << 20), ("sub/b.bin", (1 << 20) + 777)],
        seed,
    );
    PayloadFixture::new(spec, PIECE).unwrap()
}

/// A magnet with the info-hash and a name only.
fn bare_magnet(fx: &PayloadFixture) -> String {
    format!(
        "magnet:?xt=urn:btih:{}&dn=dht-payload",
        fx.meta.info_hash.to_hex()
    )
}

/// A ringtorrent seeder on its own address that announces into `dht`; returns once `dht`
/// lists it.
fn rt_seeder(fx: &PayloadFixture, dht: &mut LocalDht) -> RtSeeder {
    let ip = seeder_ip();
    let mut opts = RtSeedOpts::listen(SocketAddr::from((ip, 0)));
    opts.dht_bootstrap = dht.bootstrap();
    let seeder = RtSeeder::start(&fx.torrent, &fx.seed_dir, &opts).unwrap();
    let found = dht
        .wait_for_peer_on(&fx.meta.info_hash, ip, ANNOUNCE_TIMEOUT)
        .unwrap();
    assert_eq!(
        found,
        seeder.addr(),
        "announced another port than it listens on"
    );
    seeder
}

/// The ringtorrent CLI on the bare magnet, joining only `dht`; checks it found its peer
/// through the DHT and the payload is byte-identical.
fn rt_download_through_dht(fx: &PayloadFixture, dht: &LocalDht) {
    let uri = bare_magnet(fx);
    let mut d = Download::new(Path::new(&uri), &fx.dl_dir).timeout(Duration::from_secs(120));
    d.quiet = false;
    d.extra_args.push("--verbose".into());
    d.dht_bootstrap = dht.bootstrap();
    let out = d.run().unwrap();
    out.ensure_success().unwrap();
    for line in ["DHT: ", "metadata received"] {
        assert!(out.stderr.contains(line), "no {line:?} in:\n{}", out.stderr);
    }
    fx.spec.verify(&fx.dl_dir).unwrap();
    // The routing table is kept for the next run: the test's nodes (and a libtorrent peer's
    // DHT node, if it met one), all on loopback.
    let state = std::fs::read_to_string(fx.dl_dir.join(".ringtorrent").join("dht.dat")).unwrap();
    let nodes = dht.bootstrap_strings();
    let saved: Vec<&str> = state.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(
        saved.iter().any(|s| nodes.iter().any(|n| n == s)),
        "no test node saved:\n{state}"
    );
    for s in saved {
        let addr: SocketAddr = s.parse().unwrap();
        assert!(addr.ip().is_loopback(), "saved {s}, not on loopback");
    }
}

/// 1. ringtorrent to ringtorrent: the seeder announces, the CLI finds it from a bare magnet.
#[test]
fn ringtorrent_downloads_a_bare_magnet_from_a_seeder_found_in_the_dht() {
    let fx = fixture(301);
    let mut dht = LocalDht::start(NODES).unwrap();
    let _seeder = rt_seeder(&fx, &mut dht);
    rt_download_through_dht(&fx, &dht);
}

/// 2. libtorrent (its DHT bootstrapped from the test's nodes only) finds the ringtorrent seeder
///    from the bare magnet: metadata and payload come from it.
#[test]
fn libtorrent_finds_a_ringtorrent_seeder_in_the_dht() {
    let fx = fixture(302);
    let mut dht = LocalDht::start(NODES).unwrap();
    let _seeder = rt_seeder(&fx, &mut dht);
    rt_testkit::require::require(rt_testkit::require::Tool::Libtorrent).unwrap();
    let mut cmd = kit_command(python());
    cmd.arg(script("lt_leech.py"))
        .arg("--magnet")
        .arg(bare_magnet(&fx))
        .arg("--save")
        .arg(&fx.dl_dir)
        .arg("--listen")
        .arg(format!("{LEECHER_IP}:0"))
        .arg("--timeout")
        .arg("120");
    for n in dht.bootstrap() {
        cmd.arg("--dht-bootstrap").arg(n.to_string());
    }
    let mut leecher = Proc::spawn_fresh("libtorrent-dht-leecher", cmd).unwrap();
    let status = leecher.wait_exit(Duration::from_secs(150)).unwrap();
    assert!(status.success(), "libtorrent failed:\n{}", leecher.log());
    fx.spec.verify(&fx.dl_dir).unwrap();
}

/// 3. A libtorrent seeder announces into the DHT; the ringtorrent CLI finds it from a bare
///    magnet.
#[test]
fn ringtorrent_finds_a_libtorrent_seeder_in_the_dht() {
    let fx = fixture(303);
    let mut dht = LocalDht::start(NODES).unwrap();
    let ip: Ipv4Addr = seeder_ip();
    let opts = LtSeedOpts {
        ip: Some(ip.into()),
        dht_bootstrap: dht.bootstrap(),
        ..Default::default()
    };
    let seeder = LtSeeder::start(&fx.torrent, &fx.seed_dir, &opts).unwrap();
    let found = dht.wait_for_peer_on(&fx.meta.info_hash, ip, ANNOUNCE_TIMEOUT);
    let found = found.unwrap_or_else(|e| panic!("{e:#}\nseeder log:\n{}", seeder.proc.log()));
    assert_eq!(found, seeder.addr(), "libtorrent announced another port");
    rt_download_through_dht(&fx, &dht);
}

/// 4. The handshake's DHT bit and PORT messages, both ways (BEP 5).
#[test]
fn peers_exchange_dht_ports() {
    let fx = fixture(304);
    let opts = LtSeedOpts {
        dht: true,
        ..Default::default()
    };
    let seeder = LtSeeder::start(&fx.torrent, &fx.seed_dir, &opts).unwrap();
    let mut d = Download::new(&fx.torrent, &fx.dl_dir).peer(seeder.addr());
    d.quiet = false;
    d.extra_args.push("--verbose".into());
    // Our node answers queries from the start: only then is it told to peers.
    d.extra_args.push("--dht-server".into());
    // Nothing answers there: the node runs (so the bit is set) but its table stays empty.
    d.dht_bootstrap = vec![SocketAddr::from(([127, 0, 0, 1], 9))];
    let out = d.run().unwrap();
    out.ensure_success().unwrap();
    fx.spec.verify(&fx.dl_dir).unwrap();

    // libtorrent's DHT node listens on its peer port: that is what its PORT message says.
    let state = std::fs::read_to_string(fx.dl_dir.join(".ringtorrent").join("dht.dat"))
        .unwrap_or_else(|e| panic!("no DHT state saved ({e}); CLI log:\n{}", out.stderr));
    let lt_node = seeder.addr().to_string();
    assert!(
        state.lines().any(|l| l == lt_node),
        "libtorrent's node {lt_node} (from its PORT message) not saved:\n{state}"
    );

    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let got = seeder.dht_ports_received();
        if got.is_some_and(|n| n >= 1) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "libtorrent received no PORT message from us (counter {got:?}):\n{}",
            seeder.proc.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}
