//! Proves the test kit against real clients only (no ringtorrent involved): if these fail, the
//! interop tests' failures say nothing about the engine.

use std::time::Duration;

use rt_testkit::aria2::Aria2Leecher;
use rt_testkit::libtorrent::{LtSeedOpts, LtSeeder};
use rt_testkit::net::LEECHER_IP;
use rt_testkit::torrent::{make_torrent_libtorrent, make_torrent_mktorrent, write_with_announce};
use rt_testkit::tracker::Opentracker;
use rt_testkit::transmission::TransmissionSeeder;
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
