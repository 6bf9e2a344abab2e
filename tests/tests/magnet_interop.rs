//! Magnet links (BEP 9) with real peers on loopback: ringtorrent fetching metadata from
//! libtorrent (found by `x.pe` or by a tracker), libtorrent fetching it from ringtorrent, and
//! peers that lie about the metadata.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use rt_testkit::hostile::{MetadataLiar, MetadataLie};
use rt_testkit::libtorrent::{LtSeedOpts, LtSeeder};
use rt_testkit::proc::{kit_command, Proc};
use rt_testkit::rt_seeder::{RtSeedOpts, RtSeeder};
use rt_testkit::torrent::{write_with_announce, PayloadFixture};
use rt_testkit::tracker::Opentracker;
use rt_testkit::{python, script, Download, PayloadSpec, TorrentMeta};

const PIECE: u32 = 64 * 1024;

fn fixture(seed: u64) -> PayloadFixture {
    // 20 MiB in 320 pieces: an info dictionary of 6.4 KB of hashes plus the file list.
    let spec = PayloadSpec::dir(
        "magnet-payload",
        &[("a.bin", 12 << 20), ("sub/b.bin", 8 << 20), ("c.txt", 1000)],
        seed,
    );
    PayloadFixture::new(spec, PIECE).unwrap()
}

fn magnet(fx: &PayloadFixture, extra: &str) -> String {
    format!(
        "magnet:?xt=urn:btih:{}&dn=magnet-payload{extra}",
        fx.meta.info_hash.to_hex()
    )
}

fn download(fx: &PayloadFixture, uri: &str) -> Download {
    let mut d = Download::new(Path::new(uri), &fx.dl_dir).timeout(Duration::from_secs(60));
    d.quiet = false;
    d.extra_args.push("--verbose".into());
    d
}

/// 1. `x.pe` names a libtorrent seeder: the metadata comes from it, the payload is
///    byte-identical, and `--save-torrent` writes a torrent with the same info-hash.
#[test]
fn magnet_with_x_pe_from_a_libtorrent_seeder() {
    let fx = fixture(151);
    let seeder = LtSeeder::start(&fx.torrent, &fx.seed_dir, &LtSeedOpts::default()).unwrap();
    let saved = fx.dir.path().join("saved.torrent");
    let uri = magnet(&fx, &format!("&x.pe={}", seeder.addr()));
    let mut d = download(&fx, &uri);
    d.extra_args.push("--save-torrent".into());
    d.extra_args.push(saved.display().to_string());
    let out = d.run().unwrap();
    out.ensure_success().unwrap();
    assert!(
        out.stderr.contains("metadata received"),
        "no metadata line:\n{}",
        out.stderr
    );
    fx.spec.verify(&fx.dl_dir).unwrap();
    let meta = TorrentMeta::read(&saved).unwrap();
    assert_eq!(meta.info_hash, fx.meta.info_hash);
    // The engine kept the metadata for a restart: a second run needs no peer for it.
    let kept = fx
        .dl_dir
        .join(".ringtorrent")
        .join(format!("{}.torrent", fx.meta.info_hash.to_hex()));
    assert_eq!(
        TorrentMeta::read(&kept).unwrap().info_hash,
        fx.meta.info_hash
    );
    let again = download(&fx, &magnet(&fx, "")).run().unwrap();
    again.ensure_success().unwrap();
    assert!(
        !again.stderr.contains("metadata received"),
        "fetched the metadata again:\n{}",
        again.stderr
    );
}

/// 2. Only a `tr` tracker (opentracker on loopback): the seeder is found through it.
#[test]
fn magnet_with_only_a_tracker() {
    let fx = fixture(152);
    let tracker = Opentracker::start(&[fx.meta.info_hash]).unwrap();
    let url = tracker.announce_url();
    let torrent = fx.dir.path().join("tracked.torrent");
    write_with_announce(&fx.torrent, &torrent, Some(&url)).unwrap();
    let opts = LtSeedOpts {
        tracker: Some(url.clone()),
        ..Default::default()
    };
    let _seeder = LtSeeder::start(&torrent, &fx.seed_dir, &opts).unwrap();
    tracker
        .wait_for_seeders(&fx.meta.info_hash, 1, Duration::from_secs(20))
        .unwrap();
    let uri = magnet(
        &fx,
        &format!("&tr={}", rt_testkit::net::url_encode(url.as_bytes())),
    );
    let out = download(&fx, &uri).run().unwrap();
    out.ensure_success().unwrap();
    fx.spec.verify(&fx.dl_dir).unwrap();
}

/// 8. libtorrent, given only a magnet and our address, fetches the metadata from a ringtorrent
///    seeder and downloads the payload byte-identical.
#[test]
fn libtorrent_fetches_the_metadata_from_a_ringtorrent_seeder() {
    let fx = fixture(153);
    let listen: SocketAddr = (rt_testkit::net::seeder_ip(), 0).into();
    let seeder = RtSeeder::start(&fx.torrent, &fx.seed_dir, &RtSeedOpts::listen(listen)).unwrap();
    rt_testkit::require::require(rt_testkit::require::Tool::Libtorrent).unwrap();
    let mut cmd = kit_command(python());
    cmd.arg(script("lt_leech.py"))
        .arg("--magnet")
        .arg(magnet(&fx, ""))
        .arg("--save")
        .arg(&fx.dl_dir)
        .arg("--listen")
        .arg(format!("{}:0", rt_testkit::net::LEECHER_IP))
        .arg("--peer")
        .arg(seeder.addr().to_string())
        .arg("--timeout")
        .arg("60");
    let mut leecher = Proc::spawn_fresh("libtorrent-magnet-leecher", cmd).unwrap();
    let status = leecher.wait_exit(Duration::from_secs(90)).unwrap();
    assert!(status.success(), "libtorrent failed:\n{}", leecher.log());
    fx.spec.verify(&fx.dl_dir).unwrap();
}

/// 5. Peers that lie about the metadata are dropped with a reason. First with only liars (no
///    metadata can come; both reasons show and nothing is saved), then with a good libtorrent
///    seeder beside them (the download completes byte-identical).
#[test]
fn peers_lying_about_the_metadata_are_dropped() {
    let fx = fixture(154);
    let size = std::fs::read(&fx.torrent)
        .ok()
        .and_then(|b| ringtorrent::metainfo::Metainfo::from_bytes(&b).ok())
        .map(|m| m.info_bytes.len() as u32)
        .unwrap();
    let ih = fx.meta.info_hash;
    let wrong = MetadataLiar::start(
        ih,
        MetadataLie::WrongData {
            metadata_size: size,
        },
    )
    .unwrap();
    let huge = MetadataLiar::start(ih, MetadataLie::HugeSize(1 << 30)).unwrap();
    let liars = format!("&x.pe={}&x.pe={}", wrong.addr(), huge.addr());
    let mut d = download(&fx, &magnet(&fx, &liars));
    d.extra_args.push("--timeout".into());
    d.extra_args.push("6".into());
    let out = d.run().unwrap();
    assert!(
        !out.success(),
        "no good peer, yet it succeeded:\n{}",
        out.stderr
    );
    assert!(wrong.pieces_served() > 0, "the liar was never asked");
    for reason in [
        format!(
            "peer {} disconnected: sent metadata that does not match the info-hash",
            wrong.addr()
        ),
        format!(
            "peer {} disconnected: bad extension message: metadata size 1073741824 over the limit",
            huge.addr()
        ),
    ] {
        assert!(
            out.stderr.contains(&reason),
            "no {reason:?} in:\n{}",
            out.stderr
        );
    }
    let kept = fx
        .dl_dir
        .join(".ringtorrent")
        .join(format!("{}.torrent", ih.to_hex()));
    assert!(!kept.exists(), "metadata saved from liars");

    let seeder = LtSeeder::start(&fx.torrent, &fx.seed_dir, &LtSeedOpts::default()).unwrap();
    let all = format!("{liars}&x.pe={}", seeder.addr());
    let out = download(&fx, &magnet(&fx, &all)).run().unwrap();
    out.ensure_success().unwrap();
    fx.spec.verify(&fx.dl_dir).unwrap();
}
