//! `ringtorrent download` against real seeders (libtorrent, Transmission, aria2) on loopback.
//!
//! Each test builds its own payload, torrent and peers, is bounded (< 90 s), and checks the
//! download byte for byte against the payload's generator. Peers are killed when the test ends;
//! if it fails, their logs are printed (see `rt_testkit::proc`).

use std::path::PathBuf;
use std::time::Duration;

use rt_testkit::aria2::{Aria2SeedOpts, Aria2Seeder};
use rt_testkit::libtorrent::{LtSeedOpts, LtSeeder};
use rt_testkit::payload::{copy_content, corrupt_pieces};
use rt_testkit::torrent::{write_with_announce, PayloadFixture};
use rt_testkit::tracker::Opentracker;
use rt_testkit::transmission::TransmissionSeeder;
use rt_testkit::{wait_until, Download, PayloadSpec};

const PIECE: u32 = 256 * 1024;

/// A payload on disk, its torrent (no tracker) and an empty download directory.
struct Fixture(PayloadFixture);

impl std::ops::Deref for Fixture {
    type Target = PayloadFixture;
    fn deref(&self) -> &PayloadFixture {
        &self.0
    }
}

impl Fixture {
    fn new(spec: PayloadSpec) -> Self {
        Fixture(PayloadFixture::new(spec, PIECE).unwrap())
    }

    /// The same torrent announcing to `url`.
    fn torrent_with_tracker(&self, url: &str) -> PathBuf {
        let path = self.dir.path().join("tracked.torrent");
        write_with_announce(&self.torrent, &path, Some(url)).unwrap();
        path
    }

    /// A download into the fixture's empty directory; `--verbose` puts peer and hash events on
    /// stderr, which a failing test prints.
    fn download(&self, torrent: &std::path::Path) -> Download {
        let mut d = Download::new(torrent, &self.dl_dir).timeout(Duration::from_secs(60));
        d.extra_args.push("--verbose".into());
        d
    }
}

/// 1. A multi-file torrent (empty, 1-byte, unaligned and > 3-piece files) from one libtorrent
///    seeder given with `--peer`.
#[test]
fn multi_file_from_one_libtorrent_seeder() {
    let fx = Fixture::new(PayloadSpec::interop_multi(PIECE, 101));
    let seeder = LtSeeder::start(&fx.torrent, &fx.seed_dir, &LtSeedOpts::default()).unwrap();
    let out = fx.download(&fx.torrent).peer(seeder.addr()).run().unwrap();
    out.ensure_success().unwrap();
    fx.spec.verify(&fx.dl_dir).unwrap();
}

/// 2. The same payload from three different clients found through opentracker. Transmission
///    drops loopback peers it learns from a tracker, so it only seeds; it still announces, so we
///    find it there.
#[test]
fn multi_file_from_three_clients_via_opentracker() {
    let fx = Fixture::new(PayloadSpec::interop_multi(PIECE, 102));
    let tracker = Opentracker::start(&[fx.meta.info_hash]).unwrap();
    let url = tracker.announce_url();
    let torrent = fx.torrent_with_tracker(&url);

    let lt = LtSeeder::start(&torrent, &fx.seed_dir, &LtSeedOpts::default()).unwrap();
    let tr = TransmissionSeeder::start(&torrent, &fx.seed_dir, None).unwrap();
    let aria = Aria2Seeder::start(
        &torrent,
        &fx.seed_dir,
        &Aria2SeedOpts {
            tracker: Some(url),
            ..Default::default()
        },
    )
    .unwrap();
    let h = fx.meta.info_hash;
    tracker
        .wait_for_seeders(&h, 3, Duration::from_secs(30))
        .unwrap();
    let listed = tracker.peers(&h).unwrap();
    for (who, addr) in [
        ("libtorrent", lt.addr()),
        ("transmission", tr.addr()),
        ("aria2", aria.addr()),
    ] {
        assert!(
            listed.contains(&addr),
            "tracker does not list {who} at {addr}: {listed:?}"
        );
    }

    let out = fx.download(&torrent).run().unwrap();
    out.ensure_success().unwrap();
    fx.spec.verify(&fx.dl_dir).unwrap();
}

/// 3. Two rate-limited seeders; one is killed mid-download and the other finishes the job.
#[test]
fn survives_a_seeder_killed_mid_download() {
    const RATE_BYTES_PER_S: u64 = 12 << 20;
    let fx = Fixture::new(PayloadSpec::single("big.bin", 200 << 20, 103));
    let opts = LtSeedOpts {
        upload_rate_limit_bytes_per_s: RATE_BYTES_PER_S,
        ..Default::default()
    };
    let mut doomed = LtSeeder::start(&fx.torrent, &fx.seed_dir, &opts).unwrap();
    let survivor = LtSeeder::start(&fx.torrent, &fx.seed_dir, &opts).unwrap();
    let mut run = fx
        .download(&fx.torrent)
        .peer(doomed.addr())
        .peer(survivor.addr())
        .timeout(Duration::from_secs(80))
        .start()
        .unwrap();
    // Both seeders together need ~8 s for 200 MiB: kill one once it has served something.
    wait_until(
        Duration::from_secs(20),
        "the doomed seeder to upload",
        || doomed.uploaded_bytes().unwrap_or(0) > 0 || !run.is_running(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        run.is_running(),
        "download ended before the kill: the test proves nothing"
    );
    doomed.kill();
    let killed_at = run.elapsed();
    let out = run.wait().unwrap();
    out.ensure_success().unwrap();
    assert!(out.wall > killed_at, "finished after the kill");
    fx.spec.verify(&fx.dl_dir).unwrap();
}

/// 4. One seeder serves a copy with a flipped byte in every block of every third piece
///    (libtorrent in seed mode with hash checks off serves it as is); a slower good seeder has
///    everything. The result must be byte-identical, and `--verbose` must report the hash
///    failures.
#[test]
fn recovers_from_a_seeder_sending_corrupt_pieces() {
    let fx = Fixture::new(PayloadSpec::split("corrupt", (24 << 20) + 12_345, 3, 104));
    let bad_dir = fx.dir.path().join("bad");
    copy_content(&fx.meta, &fx.seed_dir, &bad_dir).unwrap();
    let bad_pieces: Vec<u32> = (0..fx.meta.num_pieces).step_by(3).collect();
    corrupt_pieces(&fx.meta, &bad_dir, &bad_pieces).unwrap();
    assert!(
        fx.spec.verify(&bad_dir).is_err(),
        "the bad copy must differ"
    );

    let bad_opts = LtSeedOpts {
        seed_mode: true,
        ..Default::default()
    };
    let bad = LtSeeder::start(&fx.torrent, &bad_dir, &bad_opts).unwrap();
    let good_opts = LtSeedOpts {
        upload_rate_limit_bytes_per_s: 6 << 20,
        ..Default::default()
    };
    let good = LtSeeder::start(&fx.torrent, &fx.seed_dir, &good_opts).unwrap();
    let out = fx
        .download(&fx.torrent)
        .peer(bad.addr())
        .peer(good.addr())
        .timeout(Duration::from_secs(80))
        .run()
        .unwrap();
    out.ensure_success().unwrap();
    fx.spec.verify(&fx.dl_dir).unwrap();
    // The scenario only means something if the bad seeder actually served data.
    wait_until(
        Duration::from_secs(5),
        "the bad seeder to report an upload",
        || bad.uploaded_bytes().unwrap_or(0) > 0,
    )
    .unwrap();
    assert!(
        out.stderr.contains("hash failed"),
        "no `hash failed` line on stderr although the bad seeder uploaded {:?} bytes:\n{}",
        bad.uploaded_bytes(),
        rt_testkit::proc::tail(&out.stderr, 4000)
    );
}

/// The summary's `received/kept R: wasted W bytes (duplicate .., no buffer N, ..)` line.
fn waste_figures(stdout: &str) -> Option<(f64, u64, u64)> {
    let line = stdout.lines().find(|l| l.starts_with("received/kept "))?;
    let ratio = line
        .strip_prefix("received/kept ")?
        .split(':')
        .next()?
        .trim()
        .parse()
        .ok()?;
    let after = |key: &str| -> Option<u64> {
        let rest = &line[line.find(key)? + key.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .find(|w| !w.is_empty())?
            .parse()
            .ok()
    };
    Some((ratio, after("wasted ")?, after("no buffer ")?))
}

/// 5. Four libtorrent seeders and a piece-buffer pool that runs dry all the time (the disk is
///    "behind"): every block is fetched once. Before claims were gated on a buffer, blocks of
///    new pieces were requested while the pool was empty and their data thrown away: 1.5-2x
///    the payload came in from libtorrent seeders.
#[test]
fn four_libtorrent_seeders_and_a_dry_pool_fetch_each_block_once() {
    let fx = Fixture::new(PayloadSpec::single("dry.bin", 96 << 20, 105));
    let started = std::time::Instant::now();
    let seeders: Vec<LtSeeder> = (0..4)
        .map(|_| LtSeeder::start(&fx.torrent, &fx.seed_dir, &LtSeedOpts::default()).unwrap())
        .collect();
    eprintln!("seeders ready after {:?}", started.elapsed());
    let mut d = fx.download(&fx.torrent).timeout(Duration::from_secs(80));
    for s in &seeders {
        d = d.peer(s.addr());
    }
    // 8 pieces in flight at most (the engine's floor), for four peers that each want more.
    d.extra_args.extend(["--buffer-pool".into(), "2MiB".into()]);
    let started = std::time::Instant::now();
    let out = d.run().unwrap();
    eprintln!("download took {:?}:\n{}", started.elapsed(), out.stdout);
    out.ensure_success().unwrap();
    fx.spec.verify(&fx.dl_dir).unwrap();
    let (ratio, wasted, no_buffer) = waste_figures(&out.stdout)
        .unwrap_or_else(|| panic!("no waste line in the summary:\n{}", out.stdout));
    assert_eq!(
        no_buffer, 0,
        "blocks owned without a buffer:\n{}",
        out.stdout
    );
    assert!(
        ratio <= 1.01,
        "received {ratio}x the payload ({wasted} bytes wasted):\n{}",
        out.stdout
    );
    // The seeders' own count agrees: at most 1% more than the payload left them.
    std::thread::sleep(Duration::from_millis(2500));
    let served: u64 = seeders.iter().filter_map(|s| s.uploaded_bytes()).sum();
    let payload = fx.spec.total_len();
    assert!(
        served as f64 <= payload as f64 * 1.01,
        "seeders uploaded {served} bytes for a {payload}-byte payload"
    );
}
