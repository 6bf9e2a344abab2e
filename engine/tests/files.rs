//! File selection through the real engine on loopback: only the selected files are created,
//! bytes of straddled pieces sit in the part file, a file selected at runtime completes (and a
//! file fully inside verified pieces is moved out of the part file), and sequential mode
//! completes verified.

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::config;
use ringtorrent::files::part_file_name;
use ringtorrent::metainfo::build::{BuildFile, TorrentBuilder};
use ringtorrent::metainfo::Metainfo;
use ringtorrent::{AddTorrent, Alert, Engine, FilePriority, TorrentId, TorrentSource};

mod common;

const PIECE: u32 = 32 * 1024;

/// a: pieces 0-1; b: 1-2; c: inside piece 2; d: 2-4; e: 4-5. 191,000 bytes, 6 pieces.
const FILES: [(&str, usize); 5] = [
    ("a", 40_000),
    ("b", 50_000),
    ("c", 1_000),
    ("d", 70_000),
    ("e", 30_000),
];

fn make_content(dir: &Path) -> (Vec<u8>, Metainfo, Vec<u8>) {
    let root = dir.join("set");
    std::fs::create_dir_all(&root).unwrap();
    let total = FILES.iter().map(|(_, s)| s).sum();
    let all = common::pseudo_random(total, 0x9e37_79b9);
    let mut list = Vec::new();
    let mut at = 0;
    for (name, size) in FILES {
        let data = &all[at..at + size];
        at += size;
        std::fs::write(root.join(name), data).unwrap();
        list.push((root.join(name), size as u64));
    }
    let hashes = uring_disk::hash_pieces(&list, PIECE, 2, &|_| {}).unwrap();
    let build = FILES
        .iter()
        .map(|(n, s)| BuildFile {
            path: vec![n.to_string()],
            length: *s as u64,
        })
        .collect();
    let (bytes, meta) = TorrentBuilder::multi_file("set", build, PIECE)
        .piece_hashes(hashes)
        .build()
        .unwrap();
    (bytes, meta, all)
}

async fn wait_complete(alerts: &mut tokio::sync::mpsc::UnboundedReceiver<Alert>) -> Vec<u32> {
    let mut verified = Vec::new();
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(end, alerts.recv()).await {
            Ok(Some(Alert::TorrentComplete { .. })) => return verified,
            Ok(Some(Alert::PieceVerified { piece, .. })) => verified.push(piece),
            Ok(Some(Alert::TorrentError { message, .. })) => panic!("torrent error: {message}"),
            Ok(Some(_)) => {}
            Ok(None) => panic!("alert stream closed"),
            Err(_) => panic!("not complete after 30 s; verified {verified:?}"),
        }
    }
}

fn file_range(i: usize) -> std::ops::Range<usize> {
    let start: usize = FILES[..i].iter().map(|f| f.1).sum();
    start..start + FILES[i].1
}

fn assert_file(out: &Path, i: usize, all: &[u8]) {
    let got = std::fs::read(out.join("set").join(FILES[i].0))
        .unwrap_or_else(|e| panic!("{}: {e}", FILES[i].0));
    assert!(got == all[file_range(i)], "{} differs", FILES[i].0);
}

async fn seeder(dir: &Path, bytes: &[u8]) -> Engine {
    let seeder = Engine::start(config([127, 0, 0, 2])).unwrap();
    let mut add = AddTorrent::new(TorrentSource::Bytes(bytes.to_vec()), dir);
    add.check_existing = true;
    let sid = seeder.add_torrent(add).unwrap();
    assert!(seeder.stats(sid).unwrap().complete);
    seeder
}

async fn wait_exists(path: &Path) {
    for _ in 0..100 {
        if path.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} never appeared", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selected_files_only_then_more_at_runtime() {
    use FilePriority::{High, Normal, Skip};
    let dir = tempfile::tempdir().unwrap();
    let (bytes, meta, all) = make_content(dir.path());
    let seeder = seeder(dir.path(), &bytes).await;
    let leecher = Engine::start(config([127, 0, 0, 1])).unwrap();
    let mut alerts = leecher.alerts().unwrap();
    let out = dir.path().join("out");
    let mut add = AddTorrent::new(TorrentSource::Bytes(bytes), &out);
    add.peers = vec![seeder.listen_addr()];
    add.file_priorities = vec![Normal, Skip, Skip, Normal, Skip];
    let id: TorrentId = leecher.add_torrent(add).unwrap();
    wait_complete(&mut alerts).await;

    let stats = leecher.stats(id).unwrap();
    assert!(stats.complete);
    assert_eq!(
        stats.pieces_have, 5,
        "pieces 0-4 are wanted, piece 5 is not"
    );
    assert_file(&out, 0, &all);
    assert_file(&out, 3, &all);
    for skipped in ["b", "c", "e"] {
        assert!(!out.join("set").join(skipped).exists(), "{skipped} created");
    }
    // Straddled bytes of b, c and e are in the part file, at their torrent offsets.
    let part: PathBuf = out.join(part_file_name(&meta.info_hash));
    let parts = std::fs::read(&part).expect("part file");
    let p = PIECE as usize;
    for (what, range) in [
        ("b in piece 1", file_range(1).start..2 * p),
        ("b in piece 2", 2 * p..file_range(1).end),
        ("c", file_range(2)),
        ("e in piece 4", file_range(4).start..5 * p),
    ] {
        assert!(
            parts[range.clone()] == all[range],
            "{what} not in the part file"
        );
    }
    assert_eq!(leecher.file_priorities(id).unwrap()[1], Skip);

    // c lies inside verified piece 2: selecting it only moves its bytes out of the part file.
    leecher.set_file_priority(id, 2, Normal).unwrap();
    wait_exists(&out.join("set/c")).await;
    assert!(leecher.stats(id).unwrap().complete);
    // e needs piece 5: the torrent is incomplete again until it arrives.
    leecher.set_file_priority(id, 4, High).unwrap();
    assert!(!leecher.stats(id).unwrap().complete);
    assert!(leecher.set_file_priority(id, 5, Normal).is_err());
    // The seeder may have been dropped as redundant while we were complete.
    leecher.add_peers(id, &[seeder.listen_addr()]).unwrap();
    wait_complete(&mut alerts).await;
    leecher.shutdown().await.unwrap();
    seeder.shutdown().await.unwrap();
    for i in [0, 2, 3, 4] {
        assert_file(&out, i, &all);
    }
    assert!(!out.join("set/b").exists(), "b is still skipped");
    assert!(part.exists(), "b's bytes stay in the part file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_download_completes_verified() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, meta, all) = make_content(dir.path());
    let seeder = seeder(dir.path(), &bytes).await;
    let leecher = Engine::start(config([127, 0, 0, 1])).unwrap();
    let mut alerts = leecher.alerts().unwrap();
    let out = dir.path().join("out");
    let mut add = AddTorrent::new(TorrentSource::Bytes(bytes), &out);
    add.peers = vec![seeder.listen_addr()];
    add.sequential = true;
    leecher.add_torrent(add).unwrap();
    let verified = wait_complete(&mut alerts).await;
    leecher.shutdown().await.unwrap();
    seeder.shutdown().await.unwrap();
    for i in 0..FILES.len() {
        assert_file(&out, i, &all);
    }
    let mut sorted = verified.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (0..meta.info.lengths.num_pieces()).collect::<Vec<_>>()
    );
    assert!(!out.join(part_file_name(&meta.info_hash)).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_wanted_is_complete_at_once_and_creates_nothing() {
    use FilePriority::{Normal, Skip};
    let dir = tempfile::tempdir().unwrap();
    let (bytes, meta, _) = make_content(dir.path());
    let engine = Engine::start(config([127, 0, 0, 1])).unwrap();
    let mut alerts = engine.alerts().unwrap();
    let out = dir.path().join("out");
    let mut add = AddTorrent::new(TorrentSource::Bytes(bytes.clone()), &out);
    add.file_priorities = vec![Skip; FILES.len()];
    let id = engine.add_torrent(add).unwrap();
    assert!(wait_complete(&mut alerts).await.is_empty());
    assert!(engine.stats(id).unwrap().complete);
    assert!(!out.join("set").exists(), "no file created");
    assert!(!out.join(part_file_name(&meta.info_hash)).exists());
    // Wanting a file makes it incomplete; skipping it again completes it, with an alert.
    engine.set_file_priority(id, 1, Normal).unwrap();
    assert!(!engine.stats(id).unwrap().complete);
    wait_exists(&out.join("set/b")).await;
    assert!(
        !out.join(part_file_name(&meta.info_hash)).exists(),
        "nothing straddled was ever written: no part file"
    );
    engine.set_file_priority(id, 1, Skip).unwrap();
    wait_complete(&mut alerts).await;
    assert!(engine.stats(id).unwrap().complete);
    engine.shutdown().await.unwrap();
}
