//! The session API an embedder (or the CLI's bulk mode) drives, against libtorrent seeders on
//! loopback: listing torrents and their peers, rate limits changed at runtime, pausing one
//! torrent while another goes on, removing torrents keeping or deleting their data, and
//! announcing on request with `left` counting only the wanted bytes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ringtorrent::files::FilePriority;
use ringtorrent::{AddTorrent, Alert, Engine, RemoveData, TorrentId, TorrentSource};
use rt_testkit::libtorrent::{LtSeedOpts, LtSeeder};
use rt_testkit::torrent::{write_with_announce, PayloadFixture};
use rt_testkit::tracker::Opentracker;
use rt_testkit::PayloadSpec;
use tokio::sync::mpsc::UnboundedReceiver;

const PIECE: u32 = 256 * 1024;

/// An engine on 127.0.0.1 that finds peers only where it is told.
fn engine(trackers: bool) -> Engine {
    Engine::start(rt_testkit::ringtorrent::loopback_config(trackers)).unwrap()
}

fn add(e: &Engine, torrent: &Path, dir: &Path, peers: &[SocketAddr]) -> TorrentId {
    let mut a = AddTorrent::new(TorrentSource::File(torrent.to_path_buf()), dir);
    a.peers = peers.to_vec();
    a.check_existing = true;
    e.add_torrent(a).unwrap()
}

/// Waits for an alert `f` accepts (others are dropped); panics after `secs`.
fn wait_alert<T>(
    rx: &mut UnboundedReceiver<Alert>,
    secs: u64,
    what: &str,
    mut f: impl FnMut(&Alert) -> Option<T>,
) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        match rx.try_recv() {
            Ok(Alert::TorrentError { message, .. }) => panic!("torrent error: {message}"),
            Ok(a) => {
                if let Some(v) = f(&a) {
                    return v;
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    panic!("no {what} within {secs} s");
}

fn complete(rx: &mut UnboundedReceiver<Alert>, id: TorrentId, secs: u64) {
    wait_alert(rx, secs, &format!("completion of {id}"), |a| {
        matches!(a, Alert::TorrentComplete { id: i } if *i == id).then_some(())
    });
}

fn verified(e: &Engine, id: TorrentId) -> u64 {
    e.stats(id).map_or(0, |s| s.wanted_verified_bytes)
}

fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "not within {secs} s: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn slow_seeder(fx: &PayloadFixture, rate: u64) -> LtSeeder {
    let opts = LtSeedOpts {
        upload_rate_limit_bytes_per_s: rate,
        ..Default::default()
    };
    LtSeeder::start(&fx.torrent, &fx.seed_dir, &opts).unwrap()
}

#[test]
fn peers_are_listed_and_a_rate_limit_changes_at_runtime() {
    const LIMIT: u64 = 1 << 20;
    let fx =
        PayloadFixture::new(PayloadSpec::single("api-rate.bin", 24 << 20, 401), PIECE).unwrap();
    let seeder = LtSeeder::start(&fx.torrent, &fx.seed_dir, &LtSeedOpts::default()).unwrap();
    let e = engine(false);
    e.set_rate_limits(0, LIMIT);
    assert_eq!(e.rate_limits(), (0, LIMIT));
    let mut rx = e.alerts().unwrap();
    let id = add(&e, &fx.torrent, &fx.dl_dir, &[seeder.addr()]);

    // The torrent is listed with its name; the seeder is listed as a peer.
    let listed = e.torrents();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].id, listed[0].name.as_str()),
        (id, "api-rate.bin")
    );
    assert_eq!(listed[0].info_hash.to_hex(), fx.meta.info_hash.to_hex());
    let mut peers = Vec::new();
    wait_for(10, "the seeder as a peer that sends data", || {
        peers = e.peers(id).unwrap();
        peers.iter().any(|p| p.downloaded_bytes > 0)
    });
    let p = &peers[0];
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert_eq!(p.addr, seeder.addr());
    assert!(p.outgoing && !p.peer_choking && p.am_interested, "{p:?}");
    assert!(
        p.client.to_lowercase().contains("libtorrent") || p.client.starts_with("LT "),
        "client {:?}",
        p.client
    );

    // Limited: about 1 MiB/s (bucket bursts allowed), far from the 24 MiB.
    std::thread::sleep(Duration::from_secs(4));
    let limited = verified(&e, id);
    assert!(
        limited < 8 << 20,
        "{limited} bytes in 4 s with a 1 MiB/s limit"
    );
    // Lifted: the rest comes at loopback speed, not in the ~16 s the limit would need.
    e.set_rate_limits(0, 0);
    let lifted = Instant::now();
    complete(&mut rx, id, 60);
    assert!(
        lifted.elapsed() < Duration::from_secs(10),
        "the rest took {:?} after the limit was lifted",
        lifted.elapsed()
    );
    fx.spec.verify(&fx.dl_dir).unwrap();
}

#[test]
fn one_torrent_paused_while_another_completes() {
    let a = PayloadFixture::new(PayloadSpec::single("api-a.bin", 12 << 20, 402), PIECE).unwrap();
    let b = PayloadFixture::new(PayloadSpec::single("api-b.bin", 6 << 20, 403), PIECE).unwrap();
    let (sa, sb) = (slow_seeder(&a, 2 << 20), slow_seeder(&b, 2 << 20));
    let e = engine(false);
    let mut rx = e.alerts().unwrap();
    let ia = add(&e, &a.torrent, &a.dl_dir, &[sa.addr()]);
    let ib = add(&e, &b.torrent, &b.dl_dir, &[sb.addr()]);
    wait_for(15, "a first piece of A", || verified(&e, ia) > 0);
    e.pause(ia).unwrap();
    assert!(e.stats(ia).unwrap().paused);
    // Pieces already on their way to the disk may still land; then nothing more.
    std::thread::sleep(Duration::from_secs(1));
    let frozen = verified(&e, ia);
    complete(&mut rx, ib, 60);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(verified(&e, ia), frozen, "A grew while paused");
    assert!(e.peers(ia).unwrap().is_empty(), "A kept connections");
    assert!(frozen < a.spec.total_len(), "A finished before the pause");
    b.spec.verify(&b.dl_dir).unwrap();
    e.resume(ia).unwrap();
    complete(&mut rx, ia, 60);
    a.spec.verify(&a.dl_dir).unwrap();
}

fn resume_file(dir: &Path, ih: &str) -> PathBuf {
    dir.join(".ringtorrent").join(format!("{ih}.resume"))
}

#[test]
fn removing_keeps_or_deletes_the_data() {
    let keep =
        PayloadFixture::new(PayloadSpec::single("api-keep.bin", 12 << 20, 404), PIECE).unwrap();
    let files = [
        ("a/one.bin", 3 << 20),
        ("a/two.bin", 5 << 20),
        ("three.bin", 1 << 20),
    ];
    let del = PayloadFixture::new(PayloadSpec::dir("api-del", &files, 405), PIECE).unwrap();
    let (sk, sd) = (slow_seeder(&keep, 2 << 20), slow_seeder(&del, 2 << 20));
    let e = engine(false);
    let mut rx = e.alerts().unwrap();
    let ik = add(&e, &keep.torrent, &keep.dl_dir, &[sk.addr()]);
    let id = add(&e, &del.torrent, &del.dl_dir, &[sd.addr()]);
    wait_for(15, "a first piece of each", || {
        verified(&e, ik) > 0 && verified(&e, id) > 0
    });
    let (keep_ih, del_ih) = (keep.meta.info_hash.to_hex(), del.meta.info_hash.to_hex());

    e.remove_torrent(ik, RemoveData::Keep).unwrap();
    wait_alert(&mut rx, 5, "TorrentRemoved", |a| {
        matches!(a, Alert::TorrentRemoved { id } if *id == ik).then_some(())
    });
    assert!(e.stats(ik).is_none());
    assert!(e.torrents().iter().all(|t| t.id != ik));
    assert!(matches!(
        e.pause(ik),
        Err(ringtorrent::EngineError::NoSuchTorrent(_))
    ));
    assert!(
        keep.dl_dir.join("api-keep.bin").is_file(),
        "kept data is gone"
    );
    assert!(
        resume_file(&keep.dl_dir, &keep_ih).is_file(),
        "no resume file kept"
    );

    e.remove_torrent(id, RemoveData::Delete).unwrap();
    assert!(
        !del.dl_dir.join("api-del").exists(),
        "the torrent's directory is left"
    );
    assert!(!resume_file(&del.dl_dir, &del_ih).exists());
    assert!(
        del.dl_dir.is_dir(),
        "the download directory itself must stay"
    );
    assert_eq!(e.torrents().len(), 0);

    // Added again, the kept torrent goes on from what it had.
    let again = add(&e, &keep.torrent, &keep.dl_dir, &[sk.addr()]);
    let had = wait_alert(&mut rx, 10, "the re-add's resume or recheck", |a| match a {
        Alert::ResumeAccepted { pieces, .. } | Alert::Rechecked { pieces, .. } => Some(*pieces),
        _ => None,
    });
    assert!(had > 0, "the kept pieces were not found again");
    complete(&mut rx, again, 60);
    keep.spec.verify(&keep.dl_dir).unwrap();
}

/// Two piece-aligned files, only the first wanted: once it is complete we announce `left=0`
/// and opentracker counts us as a seeder (it did not when `left` counted skipped files).
/// Then `force_reannounce` gets an announce through although the tracker asked for 30 min.
#[test]
fn left_counts_wanted_bytes_and_reannounce_on_request() {
    let files = [("wanted.bin", 4 << 20), ("skipped.bin", 4 << 20)];
    let fx = PayloadFixture::new(PayloadSpec::dir("api-left", &files, 406), PIECE).unwrap();
    let ih = fx.meta.info_hash;
    let tracker = Opentracker::start(&[fx.meta.info_hash]).unwrap();
    let url = tracker.announce_url();
    let tracked = fx.dir.path().join("tracked.torrent");
    write_with_announce(&fx.torrent, &tracked, Some(&url)).unwrap();
    let opts = LtSeedOpts {
        tracker: Some(url),
        ..Default::default()
    };
    let _seeder = LtSeeder::start(&tracked, &fx.seed_dir, &opts).unwrap();
    tracker
        .wait_for_seeders(&fx.meta.info_hash, 1, Duration::from_secs(20))
        .unwrap();

    let e = engine(true);
    let mut rx = e.alerts().unwrap();
    let mut a = AddTorrent::new(TorrentSource::File(tracked), &fx.dl_dir);
    a.file_priorities = vec![FilePriority::Normal, FilePriority::Skip];
    let id = e.add_torrent(a).unwrap();
    complete(&mut rx, id, 60);
    let s = e.stats(id).unwrap();
    assert!(s.wanted_bytes < s.total_bytes && s.complete, "{s:?}");
    tracker
        .wait_for_seeders(&fx.meta.info_hash, 2, Duration::from_secs(15))
        .unwrap_or_else(|err| panic!("we are not counted as a seeder: {err:#}"));

    // Every announce so far is answered; now one more, on request.
    std::thread::sleep(Duration::from_secs(1));
    while rx.try_recv().is_ok() {}
    assert!(e.force_reannounce(id).unwrap());
    wait_alert(&mut rx, 10, "a tracker reply after force_reannounce", |a| {
        matches!(a, Alert::TrackerReply { id: i, .. } if *i == id).then_some(())
    });
    assert_eq!(e.torrents()[0].info_hash, ih);
}
