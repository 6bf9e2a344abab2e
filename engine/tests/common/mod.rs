//! Helpers shared by the engine's integration tests: deterministic payloads, torrents made
//! from them, and an engine configuration sized for small loopback tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::path::Path;

use ringtorrent::metainfo::build::TorrentBuilder;
use ringtorrent::Config;

/// `len` pseudo-random bytes (xorshift32 from `seed`): the same for the same arguments.
pub fn pseudo_random(len: usize, seed: u32) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

/// Writes `data` to `dir/name` and returns the bencoded single-file torrent of it.
pub fn single_file_torrent(dir: &Path, name: &str, data: &[u8], piece: u32) -> Vec<u8> {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    let hashes = uring_disk::hash_pieces(&[(path, data.len() as u64)], piece, 2, &|_| {}).unwrap();
    let (bytes, _) = TorrentBuilder::single_file(name, data.len() as u64, piece)
        .piece_hashes(hashes)
        .build()
        .unwrap();
    bytes
}

/// Two shards, two hash threads, a 4 MiB pool, no trackers, no DHT, no LSD (engines of other
/// tests must not find these), listening on `ip`.
pub fn config(ip: [u8; 4]) -> Config {
    Config {
        shards: 2,
        hash_threads: 2,
        listen: SocketAddr::from((ip, 0)),
        buffer_pool_bytes: 4 << 20,
        recv_buffers: 16,
        use_trackers: false,
        // Never the public DHT routers from a test.
        dht: ringtorrent::DhtConfig::disabled(),
        lsd: false,
        ..Config::default()
    }
}

/// Waits for `TorrentComplete`; returns the alerts seen before it. Panics on a torrent error,
/// or after `secs` with the alerts seen.
pub async fn wait_complete(
    alerts: &mut tokio::sync::mpsc::UnboundedReceiver<ringtorrent::Alert>,
    secs: u64,
) -> Vec<ringtorrent::Alert> {
    use ringtorrent::Alert;
    let mut seen = Vec::new();
    let end = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(end, alerts.recv()).await {
            Ok(Some(Alert::TorrentComplete { .. })) => return seen,
            Ok(Some(Alert::TorrentError { message, .. })) => panic!("torrent error: {message}"),
            Ok(Some(a)) => seen.push(a),
            Ok(None) => panic!("alert stream closed"),
            Err(_) => panic!("not complete after {secs} s; alerts: {seen:?}"),
        }
    }
}
