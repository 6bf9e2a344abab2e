//! Pause/resume and resume files with real engines on loopback: a paused torrent receives no
//! payload and completes once resumed; a saved resume file spares the recheck; files changed
//! behind the engine's back are rechecked and exactly the damaged pieces downloaded again.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use ringtorrent::{AddTorrent, Alert, Config, Engine, TorrentId, TorrentSource};
use tokio::sync::mpsc::UnboundedReceiver;

mod common;

const PIECE: u32 = 32 * 1024;
const PIECES: u64 = 256; // 8 MiB

/// A single-file payload `data` of PIECES pieces, and its torrent.
fn make_content(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let data = common::pseudo_random((PIECES * PIECE as u64) as usize, 0x9e37_79b9);
    let bytes = common::single_file_torrent(dir, "payload.bin", &data, PIECE);
    (data, bytes)
}

fn config(ip: [u8; 4], download_rate_limit: u64) -> Config {
    Config {
        download_rate_limit,
        ..common::config(ip)
    }
}

fn seeder(dir: &Path, torrent: &[u8]) -> Engine {
    let e = Engine::start(config([127, 0, 0, 2], 0)).unwrap();
    let mut add = AddTorrent::new(TorrentSource::Bytes(torrent.to_vec()), dir);
    add.check_existing = true;
    let id = e.add_torrent(add).unwrap();
    assert!(e.stats(id).unwrap().complete, "seeder must verify its data");
    e
}

/// Waits for an alert matching `f`, failing after `secs`.
async fn wait_for<T>(
    alerts: &mut UnboundedReceiver<Alert>,
    secs: u64,
    mut f: impl FnMut(&Alert) -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, alerts.recv()).await {
            Ok(Some(a)) => {
                if let Some(t) = f(&a) {
                    return t;
                }
            }
            _ => panic!("no matching alert within {secs} s"),
        }
    }
}

async fn wait_complete(alerts: &mut UnboundedReceiver<Alert>) {
    wait_for(alerts, 60, |a| {
        if let Alert::TorrentError { message, .. } = a {
            panic!("torrent error: {message}");
        }
        matches!(a, Alert::TorrentComplete { .. }).then_some(())
    })
    .await
}

/// A leecher engine with the torrent added; returns (engine, alerts, id, how it started).
fn leecher(
    out: &Path,
    torrent: &[u8],
    peer: SocketAddr,
    rate: u64,
    recheck: bool,
) -> (Engine, UnboundedReceiver<Alert>, TorrentId) {
    let e = Engine::start(config([127, 0, 0, 1], rate)).unwrap();
    let alerts = e.alerts().unwrap();
    let mut add = AddTorrent::new(TorrentSource::Bytes(torrent.to_vec()), out);
    add.peers = vec![peer];
    add.recheck = recheck;
    let id = e.add_torrent(add).unwrap();
    (e, alerts, id)
}

/// How the torrent started: Ok(pieces) from the resume file, Err(pieces) from a recheck.
async fn start_kind(alerts: &mut UnboundedReceiver<Alert>) -> Result<u32, u32> {
    wait_for(alerts, 10, |a| match a {
        Alert::ResumeAccepted { pieces, .. } => Some(Ok(*pieces)),
        Alert::Rechecked { pieces, .. } => Some(Err(*pieces)),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_payload_and_resume_completes() {
    let dir = tempfile::tempdir().unwrap();
    let (data, torrent) = make_content(dir.path());
    let seed = seeder(dir.path(), &torrent);
    let out = dir.path().join("out");
    // 4 MiB/s: the 8 MiB take about two seconds, time enough to pause in the middle.
    let (e, mut alerts, id) = leecher(&out, &torrent, seed.listen_addr(), 4 << 20, false);
    let deadline = Instant::now() + Duration::from_secs(20);
    while e.stats(id).unwrap().verified_bytes < 1 << 20 {
        assert!(Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    e.pause(id).unwrap();
    wait_for(&mut alerts, 10, |a| {
        matches!(a, Alert::TorrentPaused { error: None, .. }).then_some(())
    })
    .await;
    let s = e.stats(id).unwrap();
    assert!(s.paused && !s.complete, "{s:?}");
    // The shards close the connections after the pause returns. A closing connection counts
    // no more payload (`peers` drops once it is closed), so from 0 peers on nothing can arrive.
    let deadline = Instant::now() + Duration::from_secs(10);
    while e.stats(id).unwrap().peers > 0 {
        assert!(
            Instant::now() < deadline,
            "connections still open 10 s after the pause"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = e.stats(id).unwrap();
    // The behaviour under test: 1.5 s paused, and no payload, no new connection.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = e.stats(id).unwrap();
    assert_eq!(after.peers, 0, "a paused torrent keeps no connections");
    assert_eq!(
        before.downloaded_bytes, after.downloaded_bytes,
        "a paused torrent received payload"
    );
    assert!(after.verified_bytes < data.len() as u64);
    // The resume file saved on pause records what was verified.
    let resume_dir = out.join(".ringtorrent");
    assert!(std::fs::read_dir(&resume_dir).unwrap().count() >= 1);

    e.resume(id).unwrap();
    wait_for(&mut alerts, 10, |a| {
        matches!(a, Alert::TorrentResumed { .. }).then_some(())
    })
    .await;
    assert!(!e.stats(id).unwrap().paused);
    wait_complete(&mut alerts).await;
    e.shutdown().await.unwrap();
    assert!(std::fs::read(out.join("payload.bin")).unwrap() == data);

    // A clean stop leaves a resume file that matches: the next start trusts it, no recheck.
    let (e, mut alerts, id) = leecher(&out, &torrent, seed.listen_addr(), 0, false);
    assert_eq!(start_kind(&mut alerts).await, Ok(PIECES as u32));
    assert!(e.stats(id).unwrap().complete);
    e.shutdown().await.unwrap();
    seed.shutdown().await.unwrap();
}

/// Downloads everything once, then damages the copy in `damage` and returns what the next
/// start found and how many payload bytes it downloaded to complete.
async fn redownload_after(
    recheck: bool,
    damage: impl FnOnce(&Path),
) -> (Result<u32, u32>, u64, Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let (data, torrent) = make_content(dir.path());
    let seed = seeder(dir.path(), &torrent);
    let out = dir.path().join("out");
    let (e, mut alerts, _) = leecher(&out, &torrent, seed.listen_addr(), 0, false);
    wait_complete(&mut alerts).await;
    e.shutdown().await.unwrap();
    damage(&out.join("payload.bin"));
    let (e, mut alerts, id) = leecher(&out, &torrent, seed.listen_addr(), 0, recheck);
    let kind = start_kind(&mut alerts).await;
    if !e.stats(id).unwrap().complete {
        wait_complete(&mut alerts).await;
    }
    let downloaded = e.stats(id).unwrap().downloaded_bytes;
    e.shutdown().await.unwrap();
    seed.shutdown().await.unwrap();
    let got = std::fs::read(out.join("payload.bin")).unwrap();
    (kind, downloaded, data, got)
}

fn flip(path: &Path, offset: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 0xff;
    f.write_all_at(&b, offset).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_bytes_are_found_and_only_those_pieces_downloaded() {
    let (kind, downloaded, data, got) = redownload_after(false, |p| {
        flip(p, 5 * PIECE as u64 + 100);
        flip(p, 77 * PIECE as u64);
    })
    .await;
    // The writes changed the file's mtime: the resume file is not trusted.
    assert_eq!(kind, Err(PIECES as u32 - 2));
    assert_eq!(downloaded, 2 * PIECE as u64, "only the two damaged pieces");
    assert!(got == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_file_is_rechecked_and_its_tail_downloaded() {
    let (kind, downloaded, data, got) = redownload_after(false, |p| {
        let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
        f.set_len((PIECES - 3) * PIECE as u64 + 1).unwrap();
    })
    .await;
    // The piece cut in the middle and the two after it are gone.
    assert_eq!(kind, Err(PIECES as u32 - 3));
    assert_eq!(downloaded, 3 * PIECE as u64);
    assert!(got == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_recheck_finds_damage_that_kept_the_mtime() {
    let keep_mtime = |p: &Path| {
        let mtime = std::fs::metadata(p).unwrap().modified().unwrap();
        flip(p, 9 * PIECE as u64);
        let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
        f.set_modified(mtime).unwrap();
    };
    // Same size and mtime: the resume file is trusted, the damage goes unseen...
    let (kind, downloaded, data, got) = redownload_after(false, keep_mtime).await;
    assert_eq!(kind, Ok(PIECES as u32));
    assert_eq!(downloaded, 0);
    assert!(got != data, "a trusted resume file hides same-mtime damage");
    // ...unless a recheck is asked for.
    let (kind, downloaded, data, got) = redownload_after(true, keep_mtime).await;
    assert_eq!(kind, Err(PIECES as u32 - 1));
    assert_eq!(downloaded, PIECE as u64);
    assert!(got == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_resume_file_means_a_recheck() {
    let dir = tempfile::tempdir().unwrap();
    let (data, torrent) = make_content(dir.path());
    let seed = seeder(dir.path(), &torrent);
    let out = dir.path().join("out");
    let (e, mut alerts, _) = leecher(&out, &torrent, seed.listen_addr(), 0, false);
    wait_complete(&mut alerts).await;
    e.shutdown().await.unwrap();
    let file = std::fs::read_dir(out.join(".ringtorrent"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "resume"))
        .expect("a resume file after a clean stop");
    let good = std::fs::read(&file).unwrap();
    let big = vec![b'l'; 40 << 20];
    for bad in [&good[..good.len() / 2], b"garbage", &big[..]] {
        std::fs::write(&file, bad).unwrap();
        let (e, mut alerts, id) = leecher(&out, &torrent, seed.listen_addr(), 0, false);
        // Never trusted, never a panic: a full recheck that finds everything.
        assert_eq!(start_kind(&mut alerts).await, Err(PIECES as u32));
        assert!(e.stats(id).unwrap().complete);
        e.shutdown().await.unwrap();
    }
    seed.shutdown().await.unwrap();
    assert!(std::fs::read(out.join("payload.bin")).unwrap() == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_trackers_are_remembered_by_the_resume_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, torrent) = make_content(dir.path());
    let out = dir.path().join("out");
    let e = Engine::start(config([127, 0, 0, 1], 0)).unwrap();
    let mut add = AddTorrent::new(TorrentSource::Bytes(torrent.clone()), &out);
    add.trackers = vec![
        "http://127.0.0.1:9/announce".into(),
        "gopher://127.0.0.1/nope".into(),
        "udp://127.0.0.1:9".into(),
    ];
    let id = e.add_torrent(add).unwrap();
    let want = vec![
        vec!["http://127.0.0.1:9/announce".to_string()],
        vec!["udp://127.0.0.1:9".to_string()],
    ];
    assert_eq!(e.trackers(id).unwrap(), want, "unusable URLs are dropped");
    e.save_resume(id).unwrap();
    e.shutdown().await.unwrap();
    // Added again without them: the resume file brings them back.
    let e = Engine::start(config([127, 0, 0, 1], 0)).unwrap();
    let id = e
        .add_torrent(AddTorrent::new(TorrentSource::Bytes(torrent), &out))
        .unwrap();
    assert_eq!(e.trackers(id).unwrap(), want);
    e.shutdown().await.unwrap();
}
