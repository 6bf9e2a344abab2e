//! Torrents of one engine share piece buffers: one pool per piece length, not one each (a
//! batch of 20 torrents once pre-touched 20 pools of 96 MiB).

use std::sync::Arc;

use super::{AddTorrent, Config, Engine, TorrentSource};
use crate::metainfo::build::TorrentBuilder;

fn torrent(dir: &std::path::Path, name: &str, piece: u32) -> Vec<u8> {
    let data = vec![name.len() as u8; 300_000];
    let path = dir.join(name);
    std::fs::write(&path, &data).unwrap();
    let hashes = uring_disk::hash_pieces(&[(path, data.len() as u64)], piece, 1, &|_| {}).unwrap();
    TorrentBuilder::single_file(name, data.len() as u64, piece)
        .piece_hashes(hashes)
        .build()
        .unwrap()
        .0
}

#[test]
fn torrents_with_the_same_piece_length_share_one_pool() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(Config {
        shards: 1,
        hash_threads: 1,
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        buffer_pool_bytes: 1 << 20,
        use_trackers: false,
        dht: super::DhtConfig::disabled(),
        lsd: false,
        ..Config::default()
    })
    .unwrap();
    for (name, piece) in [("a", 16384), ("bb", 16384), ("ccc", 32768)] {
        let bytes = torrent(dir.path(), name, piece);
        let mut add = AddTorrent::new(TorrentSource::Bytes(bytes), dir.path());
        add.check_existing = true;
        e.add_torrent(add).unwrap();
    }
    let pools: Vec<_> = {
        let t = e.inner.torrents.lock().unwrap();
        t.iter().map(|e| e.shared.pool.clone()).collect()
    };
    assert!(Arc::ptr_eq(&pools[0], &pools[1]), "same piece length");
    assert!(!Arc::ptr_eq(&pools[0], &pools[2]), "another piece length");
    assert_eq!(pools[0].capacity_bytes(), 1 << 20);
    assert_eq!(e.inner.pools.lock().unwrap().len(), 2);
}
