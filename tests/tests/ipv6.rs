//! IPv6 on loopback (`::1`) with libtorrent, both ways: ringtorrent downloads from a libtorrent
//! seeder listening on `[::1]`, and a libtorrent leecher on `[::1]` downloads from a ringtorrent
//! seeder listening there.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use rt_testkit::libtorrent::{LtSeedOpts, LtSeeder};
use rt_testkit::proc::{kit_command, Proc};
use rt_testkit::rt_seeder::{RtSeedOpts, RtSeeder};
use rt_testkit::torrent::PayloadFixture;
use rt_testkit::{python, script, Download, PayloadSpec};

const LOOPBACK6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

fn fixture(seed: u64) -> PayloadFixture {
    let spec = PayloadSpec::dir(
        "v6-payload",
        &[("a.bin", 9 << 20), ("b.bin", 3 << 20 | 123)],
        seed,
    );
    PayloadFixture::new(spec, 64 * 1024).unwrap()
}

#[test]
fn ringtorrent_downloads_from_a_libtorrent_seeder_on_ipv6_loopback() {
    let fx = fixture(191);
    let opts = LtSeedOpts {
        ip: Some(LOOPBACK6),
        ..Default::default()
    };
    let seeder = LtSeeder::start(&fx.torrent, &fx.seed_dir, &opts).unwrap();
    assert!(seeder.addr().is_ipv6(), "seeder on {}", seeder.addr());
    let mut d = Download::new(&fx.torrent, &fx.dl_dir).timeout(Duration::from_secs(60));
    d.listen = Some(SocketAddr::new(LOOPBACK6, 0));
    d.peers = vec![seeder.addr()];
    d.quiet = false;
    d.extra_args.push("--verbose".into());
    let out = d.run().unwrap();
    out.ensure_success().unwrap();
    fx.spec.verify(&fx.dl_dir).unwrap();
    assert!(
        out.stderr
            .contains(&format!("peer {} connected", seeder.addr())),
        "{}",
        out.stderr
    );
}

#[test]
fn a_libtorrent_leecher_downloads_from_a_ringtorrent_seeder_on_ipv6_loopback() {
    let fx = fixture(192);
    let seeder = RtSeeder::start(
        &fx.torrent,
        &fx.seed_dir,
        &RtSeedOpts::listen(SocketAddr::new(LOOPBACK6, 0)),
    )
    .unwrap();
    assert!(seeder.addr().is_ipv6(), "seeder on {}", seeder.addr());
    rt_testkit::require::require(rt_testkit::require::Tool::Libtorrent).unwrap();
    let mut cmd = kit_command(python());
    cmd.arg(script("lt_leech.py"))
        .arg("--torrent")
        .arg(&fx.torrent)
        .arg("--save")
        .arg(&fx.dl_dir)
        .arg("--listen")
        .arg("[::1]:0")
        .arg("--peer")
        .arg(seeder.addr().to_string())
        .arg("--timeout")
        .arg("60");
    let mut leecher = Proc::spawn_fresh("libtorrent-leecher-v6", cmd).unwrap();
    let status = leecher.wait_exit(Duration::from_secs(90)).unwrap();
    assert!(status.success(), "libtorrent failed:\n{}", leecher.log());
    fx.spec.verify(&fx.dl_dir).unwrap();
}
