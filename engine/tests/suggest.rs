//! BEP 6 SUGGEST PIECE from a seeder, with real engines on loopback: when a piece's first block
//! is read into the seeder's cache for one leecher (or, with the file not in the page cache,
//! the whole piece is read with O_DIRECT), the torrent's other leechers on that shard that lack
//! it are told, so their requests for it can hit the cache.

use std::time::{Duration, Instant};

use ringtorrent::{AddTorrent, Alert, Config, Engine, TorrentId, TorrentSource};

mod common;

const PIECE: u32 = 64 * 1024;

fn engine(ip: [u8; 4], download_rate_limit: u64) -> Engine {
    Engine::start(Config {
        shards: 1,
        download_rate_limit,
        ..common::config(ip)
    })
    .unwrap()
}

async fn wait_complete(
    e: &Engine,
    id: TorrentId,
    alerts: &mut tokio::sync::mpsc::UnboundedReceiver<Alert>,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !e.stats(id).unwrap().complete {
        assert!(Instant::now() < deadline, "not complete in 60 s");
        let _ = tokio::time::timeout(Duration::from_millis(200), alerts.recv()).await;
    }
}

/// Drops the file's clean pages from the page cache; false if O_DIRECT does not work here.
fn evict(path: &std::path::Path) -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::File::open(path).unwrap();
    f.sync_all().unwrap();
    rustix::fs::fadvise(f.as_fd(), 0, None, rustix::fs::Advice::DontNeed).unwrap();
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeder_suggests_cached_pieces_to_its_other_leechers() {
    suggests(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeder_suggests_pieces_it_read_whole_from_disk() {
    suggests(true).await;
}

async fn suggests(cold: bool) {
    let dir = tempfile::tempdir().unwrap();
    let data = common::pseudo_random(8 << 20, 0x5a5a);
    let torrent = common::single_file_torrent(dir.path(), "s.bin", &data, PIECE);
    let seeder = engine([127, 0, 0, 2], 0);
    let mut add = AddTorrent::new(TorrentSource::Bytes(torrent.clone()), dir.path());
    add.check_existing = true;
    let sid = seeder.add_torrent(add).unwrap();
    assert!(seeder.stats(sid).unwrap().complete);
    let direct = cold && evict(&dir.path().join("s.bin"));

    // Two leechers at 3 MiB/s each, so that both are downloading at the same time.
    let mut leechers = Vec::new();
    for (i, ip) in [[127, 0, 0, 3], [127, 0, 0, 4]].into_iter().enumerate() {
        let e = engine(ip, 3 << 20);
        let alerts = e.alerts().unwrap();
        let mut add = AddTorrent::new(
            TorrentSource::Bytes(torrent.clone()),
            dir.path().join(format!("l{i}")),
        );
        add.peers = vec![seeder.listen_addr()];
        let id = e.add_torrent(add).unwrap();
        leechers.push((e, alerts, id));
    }
    for (e, alerts, id) in &mut leechers {
        wait_complete(e, *id, alerts).await;
    }
    let sent = seeder.stats(sid).unwrap().suggests_sent;
    let received: u32 = leechers
        .iter()
        .map(|(e, _, id)| e.stats(*id).unwrap().suggests_received)
        .sum();
    assert!(sent > 0, "the seeder suggested nothing");
    assert!(received > 0, "no leecher got a suggestion (sent {sent})");
    assert!(received <= sent);
    if direct {
        assert!(
            seeder.stats(sid).unwrap().direct_piece_reads > 0,
            "the evicted file was not read with O_DIRECT"
        );
    }
    for (i, (e, _, _)) in leechers.into_iter().enumerate() {
        let got = std::fs::read(dir.path().join(format!("l{i}")).join("s.bin")).unwrap();
        assert!(got == data, "leecher {i} content differs");
        e.shutdown().await.unwrap();
    }
    seeder.shutdown().await.unwrap();
}
