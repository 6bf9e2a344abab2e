//! Peer exchange (BEP 11) with libtorrent on loopback, both ways: ringtorrent learns seeders
//! from a libtorrent peer it was given, and a libtorrent leecher learns a peer from a
//! ringtorrent seeder.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use rt_testkit::libtorrent::{LtSeedOpts, LtSeeder};
use rt_testkit::net::seeder_ip;
use rt_testkit::proc::{kit_command, Proc};
use rt_testkit::rt_seeder::{RtSeedOpts, RtSeeder};
use rt_testkit::torrent::PayloadFixture;
use rt_testkit::wait::wait_for;
use rt_testkit::{python, script, Download, PayloadSpec};

const PIECE: u32 = 64 * 1024;

fn fixture(seed: u64) -> PayloadFixture {
    let spec = PayloadSpec::single("pex-payload.bin", 24 << 20, seed);
    PayloadFixture::new(spec, PIECE).unwrap()
}

/// A libtorrent leecher with PEX on, limited to `rate` bytes per second so it stays in the
/// swarm (and connected to its peers) for the length of the test.
fn lt_leecher(fx: &PayloadFixture, ip: Ipv4Addr, peers: &[SocketAddr], rate: u64) -> Proc {
    rt_testkit::require::require(rt_testkit::require::Tool::Libtorrent).unwrap();
    let save = fx.dir.path().join(format!("lt-{ip}"));
    std::fs::create_dir_all(&save).unwrap();
    let mut cmd = kit_command(python());
    cmd.arg(script("lt_leech.py"))
        .arg("--torrent")
        .arg(&fx.torrent)
        .arg("--save")
        .arg(&save)
        .arg("--listen")
        .arg(format!("{ip}:0"))
        .arg("--pex")
        .arg("--download-rate-limit")
        .arg(rate.to_string())
        .arg("--timeout")
        .arg("120");
    for p in peers {
        cmd.arg("--peer").arg(p.to_string());
    }
    Proc::spawn_fresh(&format!("libtorrent-leecher-{ip}"), cmd).unwrap()
}

/// Whether a libtorrent log shows a connection to or from `ip`.
fn connected_with(log: &str, ip: Ipv4Addr) -> bool {
    let needle = format!("{ip}:");
    log.lines().any(|l| {
        l.contains(&needle)
            && (l.contains("peer_connect_alert") || l.contains("incoming_connection"))
    })
}

/// 4a. ringtorrent is given one libtorrent peer, a slow leecher connected to two seeders; it
///     learns the seeders from that peer's PEX, connects to them and completes (the given
///     peer alone has too little of the payload to finish from).
#[test]
fn ringtorrent_learns_seeders_from_a_libtorrent_peer() {
    let fx = fixture(171);
    let s1 = LtSeeder::start(&fx.torrent, &fx.seed_dir, &LtSeedOpts::default()).unwrap();
    let s2 = LtSeeder::start(&fx.torrent, &fx.seed_dir, &LtSeedOpts::default()).unwrap();
    let hub_ip = seeder_ip();
    let mut hub = lt_leecher(&fx, hub_ip, &[s1.addr(), s2.addr()], 64 * 1024);
    let line = hub
        .wait_for_log("listening on port", Duration::from_secs(30))
        .unwrap();
    let port: u16 = line
        .rsplit(' ')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap();
    let hub_addr = SocketAddr::from((hub_ip, port));
    // The hub has dialled both seeders before we join.
    wait_for(
        Duration::from_secs(30),
        "the hub to reach both seeders",
        || {
            let log = hub.log();
            hub.check_alive()?;
            Ok(([s1.addr(), s2.addr()].iter().all(|s| {
                log.lines()
                    .any(|l| l.contains("peer_connect_alert") && l.contains(&s.to_string()))
            }))
            .then_some(()))
        },
    )
    .unwrap();

    let mut d = Download::new(&fx.torrent, &fx.dl_dir).timeout(Duration::from_secs(90));
    d.quiet = false;
    d.peers = vec![hub_addr];
    d.extra_args.push("--verbose".into());
    let out = d.run().unwrap();
    out.ensure_success().unwrap();
    fx.spec.verify(&fx.dl_dir).unwrap();
    // Both seeders are learned, but the download may finish from the first one before the
    // second connection is up: at least one, which only PEX could name, must have served.
    let met: Vec<SocketAddr> = [s1.addr(), s2.addr()]
        .into_iter()
        .filter(|s| out.stderr.contains(&format!("peer {s} connected")))
        .collect();
    assert!(
        !met.is_empty(),
        "never connected to a seeder, which only PEX could name:\n{}",
        rt_testkit::proc::tail(&out.stderr, 4000)
    );
}

/// A ringtorrent seeder (PEX on or off) and two slow libtorrent leechers, each given only the
/// seeder, the second started once the first is connected.
struct Trio {
    _seeder: RtSeeder,
    _first: Proc,
    first_ip: Ipv4Addr,
    second: Proc,
    /// Last: fields drop in order, so the files outlive the processes using them.
    _fx: PayloadFixture,
}

fn trio(seed: u64, pex: bool) -> Trio {
    let fx = fixture(seed);
    let listen: SocketAddr = (seeder_ip(), 0).into();
    let mut opts = RtSeedOpts::listen(listen);
    if !pex {
        opts.extra_args.push("--no-pex".into());
    }
    let seeder = RtSeeder::start(&fx.torrent, &fx.seed_dir, &opts).unwrap();
    let first_ip = seeder_ip();
    let mut first = lt_leecher(&fx, first_ip, &[seeder.addr()], 64 * 1024);
    first
        .wait_for_log("peer_connect_alert", Duration::from_secs(30))
        .unwrap();
    let second = lt_leecher(&fx, seeder_ip(), &[seeder.addr()], 64 * 1024);
    Trio {
        _seeder: seeder,
        _first: first,
        first_ip,
        second,
        _fx: fx,
    }
}

/// 4b. A ringtorrent seeder serves two slow libtorrent leechers; the second, given only the
///     seeder, learns the first from the seeder's PEX and connects to it.
#[test]
fn a_libtorrent_leecher_learns_a_peer_from_a_ringtorrent_seeder() {
    // Bound whole: the seeder, the first leecher and the files live to the end of the test.
    let mut t = trio(172, true);
    let (first_ip, second) = (t.first_ip, &mut t.second);
    let found = wait_for(Duration::from_secs(40), "the leechers to meet", || {
        second.check_alive()?;
        Ok(connected_with(&second.log(), first_ip).then_some(()))
    });
    assert!(
        found.is_ok(),
        "the second leecher never met {first_ip}:\n{}",
        rt_testkit::proc::tail(&second.log(), 6000)
    );
}

/// The same swarm without PEX from us: the leechers never meet. Shows that the meeting above
/// comes from our PEX messages, not from libtorrent finding peers some other way.
#[test]
fn without_our_pex_the_libtorrent_leechers_do_not_meet() {
    // Bound whole: the seeder, the first leecher and the files live to the end of the test.
    let mut t = trio(173, false);
    let (first_ip, second) = (t.first_ip, &mut t.second);
    std::thread::sleep(Duration::from_secs(15));
    second.check_alive().unwrap();
    assert!(
        !connected_with(&second.log(), first_ip),
        "met without PEX:\n{}",
        rt_testkit::proc::tail(&second.log(), 6000)
    );
}
