//! An idle engine sleeps: a seeding torrent with no peers, then with idle peers connected,
//! must not wake its shards every 10 ms (issue 18 §3). The test counts wake-ups (the shards'
//! loop counter) against the time that passed; it never asserts how long anything took, so
//! a loaded machine only makes the count smaller. The 10 ms tick woke each shard about 100
//! times a second; an idle shard now wakes about 4 times a second (`shard::idle::IDLE_WAIT`),
//! so the bound (25 per shard-second) has room on both sides.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ringtorrent::handshake::Handshake;
use ringtorrent::{AddTorrent, Engine, PeerId, TorrentSource};

mod common;

/// Most wake-ups per shard and second an idle shard may have.
const MAX_WAKEUPS_PER_SHARD_S: f64 = 25.0;

/// Wake-ups of all shards per shard-second over `window`.
fn wakeup_rate(engine: &Engine, window: Duration) -> f64 {
    let count = |e: &Engine| e.shard_stats().iter().map(|s| s.wakeups).sum::<u64>();
    let (before, t0) = (count(engine), Instant::now());
    std::thread::sleep(window);
    let woke = count(engine) - before;
    let shards = engine.shard_stats().len().max(1) as f64;
    let rate = woke as f64 / shards / t0.elapsed().as_secs_f64();
    eprintln!("{woke} wake-ups: {rate:.1} per shard-second");
    rate
}

/// A peer that handshakes for `info_hash` and then says nothing.
fn idle_peer(engine: &Engine, hs: &Handshake) -> TcpStream {
    let mut c = TcpStream::connect(engine.listen_addr()).unwrap();
    c.write_all(&hs.to_bytes()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut theirs = [0u8; 68];
    c.read_exact(&mut theirs).unwrap();
    c
}

#[test]
fn an_idle_seeding_engine_sleeps() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::pseudo_random(600_000, 18);
    let bytes = common::single_file_torrent(dir.path(), "idle.bin", &data, 65536);
    let engine = Engine::start(common::config([127, 0, 0, 1])).unwrap();
    let mut add = AddTorrent::new(TorrentSource::Bytes(bytes.clone()), dir.path());
    add.check_existing = true;
    let id = engine.add_torrent(add).unwrap();
    let end = Instant::now() + Duration::from_secs(60);
    while !engine.stats(id).is_some_and(|s| s.complete) {
        assert!(Instant::now() < end, "the torrent never verified");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(engine.shard_stats().len(), 2);

    let alone = wakeup_rate(&engine, Duration::from_millis(1500));
    assert!(
        alone <= MAX_WAKEUPS_PER_SHARD_S,
        "no peers: {alone:.1} wake-ups per shard-second (a 10 ms tick is 100)"
    );

    let meta = ringtorrent::metainfo::Metainfo::from_bytes(&bytes).unwrap();
    let peers: Vec<TcpStream> = (0..8)
        .map(|_| {
            idle_peer(
                &engine,
                &Handshake::ours(meta.info_hash, PeerId::generate()),
            )
        })
        .collect();
    let end = Instant::now() + Duration::from_secs(20);
    while engine.stats(id).map_or(0, |s| s.peers) < peers.len() as u32 {
        assert!(Instant::now() < end, "the peers were not all taken");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The handshakes' aftermath (opening messages, the choker's first round) settles.
    std::thread::sleep(Duration::from_millis(300));
    let with_peers = wakeup_rate(&engine, Duration::from_millis(1500));
    assert!(
        with_peers <= MAX_WAKEUPS_PER_SHARD_S,
        "idle peers: {with_peers:.1} wake-ups per shard-second (a 10 ms tick is 100)"
    );
    // Still answering: the peers are listed at once (a command wakes the shards).
    assert_eq!(engine.peers(id).unwrap().len(), peers.len());
    drop(peers);
}
