//! Loopback: a seeder whose data is not in the page cache reads whole pieces with O_DIRECT
//! (its first `RWF_NOWAIT` read of each piece says "not cached") and serves their blocks as
//! slices of them; the leecher gets every byte right. Then the same with the data cached:
//! no direct piece read, blocks sent from the page cache with `sendfile` when zero-copy
//! uploads are on for every peer, and for a peer on this host by default copied by the
//! kernel from a mapping of the file (io_uring backend) or read (epoll backend).

use std::os::fd::AsFd;
use std::time::Duration;

use ringtorrent::{AddTorrent, Alert, Config, Engine, TorrentId, TorrentSource, ZeroCopyUploads};

mod common;

const PIECE: u32 = 256 * 1024;

/// Drops the file's pages from the page cache (they are clean: written and synced).
fn evict(path: &std::path::Path) {
    let f = std::fs::File::open(path).unwrap();
    f.sync_all().unwrap();
    rustix::fs::fadvise(f.as_fd(), 0, None, rustix::fs::Advice::DontNeed).unwrap();
}

/// Whether the filesystem under `path` takes O_DIRECT (tmpfs before Linux 6.6 does not).
fn direct_io_works(path: &std::path::Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .is_ok()
}

/// Why the file at `path` cannot be out of the page cache and read with O_DIRECT, if so.
fn cannot_be_cold(path: &std::path::Path) -> Option<&'static str> {
    if !direct_io_works(path) {
        return Some("its filesystem refuses O_DIRECT");
    }
    let fs = rustix::fs::statfs(path).unwrap();
    // tmpfs takes O_DIRECT (Linux 6.6 and later), but its pages are the data: never evicted.
    if fs.f_type as i64 == libc::TMPFS_MAGIC {
        return Some("it is on tmpfs, whose pages cannot be evicted");
    }
    None
}

/// A seeder with `config` over the torrent's data in `dir` (checked first).
fn start_seeder(config: Config, dir: &std::path::Path, bytes: &[u8]) -> (Engine, TorrentId) {
    let seeder = Engine::start(config).unwrap();
    let mut add = AddTorrent::new(TorrentSource::Bytes(bytes.to_vec()), dir);
    add.check_existing = true;
    let id = seeder.add_torrent(add).unwrap();
    (seeder, id)
}

fn zero_copy_always(ip: [u8; 4]) -> Config {
    Config {
        zero_copy_uploads: ZeroCopyUploads::Always,
        ..common::config(ip)
    }
}

/// Downloads the torrent from `seeder` into `out` and checks that file `name` is `data`.
async fn download_and_compare(
    seeder: &Engine,
    bytes: &[u8],
    out: &std::path::Path,
    name: &str,
    data: &[u8],
) {
    let leecher = Engine::start(common::config([127, 0, 0, 1])).unwrap();
    let mut alerts = leecher.alerts().unwrap();
    let mut add = AddTorrent::new(TorrentSource::Bytes(bytes.to_vec()), out);
    add.peers = vec![seeder.listen_addr()];
    leecher.add_torrent(add).unwrap();
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(end, alerts.recv()).await {
            Ok(Some(Alert::TorrentComplete { .. })) => break,
            Ok(Some(Alert::TorrentError { message, .. })) => panic!("torrent error: {message}"),
            Ok(Some(_)) => {}
            other => panic!("not complete: {other:?}"),
        }
    }
    leecher.shutdown().await.unwrap();
    assert!(
        std::fs::read(out.join(name)).unwrap() == data,
        "data differs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncached_pieces_are_read_whole_with_o_direct_and_served_right() {
    let dir = tempfile::tempdir().unwrap();
    // Not a whole number of pieces: the last piece's direct read ends at the end of file.
    let data = common::pseudo_random(6 * PIECE as usize + 5000, 0xc01d_5eed);
    let bytes = common::single_file_torrent(dir.path(), "cold", &data, PIECE);
    // The point of this test is the O_DIRECT path: where the data cannot be uncached or read
    // with O_DIRECT, only the fallback would run, and passing would hide that.
    if let Some(why) = cannot_be_cold(&dir.path().join("cold")) {
        panic!(
            "{:?}: {why}, so the O_DIRECT read path cannot be tested; run with TMPDIR on a \
             disk filesystem (ext4, xfs, btrfs)",
            dir.path()
        );
    }
    let (seeder, id) = start_seeder(zero_copy_always([127, 0, 0, 8]), dir.path(), &bytes);
    evict(&dir.path().join("cold"));

    download_and_compare(&seeder, &bytes, &dir.path().join("out1"), "cold", &data).await;
    let cold = seeder.stats(id).unwrap().direct_piece_reads;
    assert!(
        cold >= 1,
        "no piece was read with O_DIRECT although none was cached"
    );

    seeder.shutdown().await.unwrap();

    // Cached now (read it through the page cache), and a new seeder (whose shards hold no
    // piece read whole): blocks go out from the page cache (sendfile), none read O_DIRECT.
    let _ = std::fs::read(dir.path().join("cold")).unwrap();
    let (seeder, id) = start_seeder(zero_copy_always([127, 0, 0, 8]), dir.path(), &bytes);
    download_and_compare(&seeder, &bytes, &dir.path().join("out2"), "cold", &data).await;
    let stats = seeder.stats(id).unwrap();
    assert_eq!(
        stats.direct_piece_reads, 0,
        "a cached piece was read with O_DIRECT"
    );
    assert!(
        stats.page_cache_sends > 0,
        "no block was sent from the page cache"
    );
    seeder.shutdown().await.unwrap();
}

/// Seeds cached data to a peer on this host with `config` and returns the seeder's stats.
async fn seed_cached_locally(config: Config, seed: u32) -> ringtorrent::TorrentStats {
    let dir = tempfile::tempdir().unwrap();
    let data = common::pseudo_random(3 * PIECE as usize + 777, seed);
    let bytes = common::single_file_torrent(dir.path(), "local", &data, PIECE);
    let (seeder, id) = start_seeder(config, dir.path(), &bytes);
    let _ = std::fs::read(dir.path().join("local")).unwrap();
    download_and_compare(&seeder, &bytes, &dir.path().join("out"), "local", &data).await;
    let stats = seeder.stats(id).unwrap();
    seeder.shutdown().await.unwrap();
    assert!(stats.uploaded_bytes >= data.len() as u64, "{stats:?}");
    assert_eq!(stats.page_cache_sends, 0, "a loopback peer got sendfile");
    stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_on_this_host_is_sent_copies_from_a_mapping_by_default() {
    // The mapping is the io_uring backend's; without io_uring the engine runs on epoll, which
    // reads blocks (tested below), and this test would check nothing.
    if let Err(e) = uring_disk::uring_available() {
        panic!("io_uring is unavailable here ({e}), so the mapped sends cannot be tested");
    }
    let stats = seed_cached_locally(common::config([127, 0, 0, 10]), 0x10ca_1000).await;
    // Every block of the cached file lies in one file: all go out from the mapping.
    assert!(
        stats.mapped_sends >= stats.uploaded_bytes / 16384,
        "blocks were read instead of sent from the mapping: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_epoll_backend_reads_blocks_for_a_peer_on_this_host() {
    let config = Config {
        force_portable: true,
        ..common::config([127, 0, 0, 11])
    };
    let stats = seed_cached_locally(config, 0x10ca_2000).await;
    assert_eq!(stats.mapped_sends, 0, "{stats:?}");
}
