//! Rate limits on loopback: a ringtorrent seeder and leecher, real sockets and files. Timing
//! is asserted only as a loose lower bound (the limit holds), never as a speed.

use std::path::Path;
use std::time::{Duration, Instant};

use common::config;
use ringtorrent::{AddTorrent, Alert, Config, Engine, TorrentSource};

mod common;

const PIECE: u32 = 64 * 1024;
const SIZE: usize = 4 << 20;
const LIMIT: u64 = 1 << 20;

/// A 4 MiB file of pseudo-random bytes and its torrent.
fn make_content(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let data = common::pseudo_random(SIZE, 0x9e37_79b9);
    let bytes = common::single_file_torrent(dir, "blob", &data, PIECE);
    (bytes, data)
}

async fn wait_complete(alerts: &mut tokio::sync::mpsc::UnboundedReceiver<Alert>, secs: u64) {
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(end, alerts.recv()).await {
            Ok(Some(Alert::TorrentComplete { .. })) => return,
            Ok(Some(Alert::TorrentError { message, .. })) => panic!("torrent error: {message}"),
            Ok(Some(_)) => {}
            Ok(None) => panic!("alert stream closed"),
            Err(_) => panic!("not complete after {secs} s"),
        }
    }
}

/// Seeds the content with `seeder_cfg`/`seed_up` and downloads it with `leech_cfg`/`leech_down`;
/// returns how long the download took, after checking the bytes.
async fn transfer(
    seeder_cfg: Config,
    seed_up: u64,
    leech_cfg: Config,
    leech_down: u64,
) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let (torrent, data) = make_content(dir.path());
    let seeder = Engine::start(seeder_cfg).unwrap();
    let mut add = AddTorrent::new(TorrentSource::Bytes(torrent.clone()), dir.path());
    add.check_existing = true;
    add.upload_rate_limit = seed_up;
    let sid = seeder.add_torrent(add).unwrap();
    assert!(seeder.stats(sid).unwrap().complete);

    let leecher = Engine::start(leech_cfg).unwrap();
    let mut alerts = leecher.alerts().unwrap();
    let out = dir.path().join("out");
    let mut add = AddTorrent::new(TorrentSource::Bytes(torrent), &out);
    add.peers = vec![seeder.listen_addr()];
    add.download_rate_limit = leech_down;
    let started = Instant::now();
    leecher.add_torrent(add).unwrap();
    wait_complete(&mut alerts, 60).await;
    let took = started.elapsed();
    assert!(
        std::fs::read(out.join("blob")).unwrap() == data,
        "content differs"
    );
    took
}

/// 4 MiB at 1 MiB/s, minus the first burst (a quarter second): at least 3 s.
fn assert_limited(took: Duration) {
    assert!(
        took >= Duration::from_secs(3),
        "4 MiB at {LIMIT} B/s took only {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_download_limit_holds() {
    let mut leech = config([127, 0, 0, 1]);
    leech.download_rate_limit = LIMIT;
    assert_limited(transfer(config([127, 0, 0, 2]), 0, leech, 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_torrent_upload_limit_holds() {
    assert_limited(transfer(config([127, 0, 0, 3]), LIMIT, config([127, 0, 0, 1]), 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_upload_and_per_torrent_download_limits_hold() {
    let mut seed = config([127, 0, 0, 4]);
    seed.upload_rate_limit = LIMIT;
    assert_limited(transfer(seed, 0, config([127, 0, 0, 1]), LIMIT).await);
}
