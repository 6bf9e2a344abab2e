//! Local service discovery (BEP 14) on the loopback interface: two ringtorrent engines, each
//! given no peers and no trackers, find each other through the multicast announces alone.

use std::net::SocketAddr;
use std::time::Duration;

use rt_testkit::net::seeder_ip;
use rt_testkit::rt_seeder::{RtSeedOpts, RtSeeder};
use rt_testkit::torrent::PayloadFixture;
use rt_testkit::{Download, PayloadSpec};

fn fixture(seed: u64) -> PayloadFixture {
    let spec = PayloadSpec::single("lsd-payload.bin", 6 << 20, seed);
    PayloadFixture::new(spec, 64 * 1024).unwrap()
}

fn seeder(fx: &PayloadFixture, lsd: bool) -> RtSeeder {
    let listen: SocketAddr = (seeder_ip(), 0).into();
    let mut opts = RtSeedOpts::listen(listen);
    opts.lsd = lsd;
    RtSeeder::start(&fx.torrent, &fx.seed_dir, &opts).unwrap()
}

fn download(fx: &PayloadFixture, lsd: bool, timeout: Duration) -> Download {
    let mut d = Download::new(&fx.torrent, &fx.dl_dir).timeout(timeout);
    d.listen = Some((seeder_ip(), 0).into());
    d.quiet = false;
    d.lsd = lsd;
    d.extra_args.push("--verbose".into());
    d
}

#[test]
fn two_engines_find_each_other_through_lsd() {
    let fx = fixture(181);
    let seeder = seeder(&fx, true);
    let out = download(&fx, true, Duration::from_secs(60)).run().unwrap();
    out.ensure_success().unwrap();
    fx.spec.verify(&fx.dl_dir).unwrap();
    assert!(
        out.stderr
            .contains(&format!("peer {} connected", seeder.addr())),
        "no connection to the seeder:\n{}",
        rt_testkit::proc::tail(&out.stderr, 3000)
    );
}

/// The same pair with LSD off on either side finds nothing: the success above is LSD's.
#[test]
fn without_lsd_on_both_sides_they_do_not_meet() {
    for (seeder_lsd, leecher_lsd) in [(true, false), (false, true)] {
        let fx = fixture(182);
        let _seeder = seeder(&fx, seeder_lsd);
        let mut d = download(&fx, leecher_lsd, Duration::from_secs(8));
        d.extra_args.push("--timeout".into());
        d.extra_args.push("5".into());
        let out = d.run().unwrap();
        assert!(
            !out.success(),
            "downloaded with LSD only on the {} side:\n{}",
            if seeder_lsd { "seeder" } else { "leecher" },
            out.stderr
        );
        assert!(!out.stderr.contains(" connected"), "{}", out.stderr);
    }
}
