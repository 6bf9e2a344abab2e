//! BEP 5 DHT through the real engine, on a local DHT made of `mainline` test nodes bound to
//! 127.0.0.1 (checked below): a torrent one engine announces is found and downloaded by another
//! engine that was given no peer and no tracker; a private torrent (BEP 27) is never announced;
//! the routing table saved at shutdown is enough to bootstrap the next engine.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use ringtorrent::metainfo::build::TorrentBuilder;
use ringtorrent::{AddTorrent, Alert, Config, DhtConfig, Engine, InfoHash, TorrentSource};

mod common;

const PIECE: u32 = 64 * 1024;

/// A torrent of `data` (written to `dir/name`), private or not; returns its bytes and hash.
fn torrent(dir: &Path, name: &str, data: &[u8], private: bool) -> (Vec<u8>, InfoHash) {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    let hashes = uring_disk::hash_pieces(&[(path, data.len() as u64)], PIECE, 2, &|_| {}).unwrap();
    let (bytes, meta) = TorrentBuilder::single_file(name, data.len() as u64, PIECE)
        .piece_hashes(hashes)
        .private(private)
        .build()
        .unwrap();
    (bytes, meta.info_hash)
}

/// The test config on `ip` with a DHT joined only through `bootstrap`.
fn config(ip: [u8; 4], bootstrap: &[String], state_file: &Path) -> Config {
    for b in bootstrap {
        let a: SocketAddr = b.parse().unwrap();
        assert!(
            a.ip().is_loopback(),
            "a test may only join loopback nodes: {a}"
        );
    }
    Config {
        dht: DhtConfig {
            state_file: Some(state_file.to_path_buf()),
            ..DhtConfig::with_bootstrap(bootstrap.to_vec())
        },
        ..common::config(ip)
    }
}

/// Asks the test DHT (from one of its own nodes) who announced `ih`.
async fn peers_in_dht(node: &mainline::Dht, ih: InfoHash) -> Vec<SocketAddr> {
    use futures_lite::StreamExt as _;
    let id = mainline::Id::from_bytes(ih.0).unwrap();
    let mut lookup = node.clone().as_async().get_peers(id);
    let mut peers = Vec::new();
    while let Some(batch) = lookup.next().await {
        peers.extend(batch.into_iter().map(SocketAddr::V4));
    }
    peers
}

/// Waits for `TorrentComplete`; returns how many peers `DhtPeers` alerts reported on the way.
async fn wait_complete(
    alerts: &mut tokio::sync::mpsc::UnboundedReceiver<Alert>,
    secs: u64,
) -> usize {
    let mut dht_peers = 0;
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(end, alerts.recv()).await {
            Ok(Some(Alert::TorrentComplete { .. })) => return dht_peers,
            Ok(Some(Alert::DhtPeers { peers, .. })) => dht_peers += peers,
            Ok(Some(_)) => {}
            Ok(None) => panic!("alert stream closed"),
            Err(_) => panic!("not complete after {secs} s (DHT peers seen: {dht_peers})"),
        }
    }
}

/// Downloads the torrent with an engine on `ip` that knows no peer and no tracker; checks the
/// bytes and shuts the engine down (saving its routing table to `state`).
async fn download_through_dht(
    ip: [u8; 4],
    bootstrap: &[String],
    state: &Path,
    bytes: &[u8],
    out: &Path,
    want: &[u8],
) {
    let leecher = Engine::start(config(ip, bootstrap, state)).unwrap();
    let mut alerts = leecher.alerts().unwrap();
    let add = AddTorrent::new(TorrentSource::Bytes(bytes.to_vec()), out);
    assert!(add.peers.is_empty() && add.trackers.is_empty());
    leecher.add_torrent(add).unwrap();
    let found = wait_complete(&mut alerts, 60).await;
    assert!(found >= 1, "completed without a peer from the DHT");
    assert_eq!(std::fs::read(out.join("public.bin")).unwrap(), want);
    leecher.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torrent_announced_by_one_engine_is_found_through_the_dht_by_another() {
    let testnet = tokio::task::spawn_blocking(|| mainline::Testnet::builder(5).build().unwrap())
        .await
        .unwrap();
    for node in &testnet.nodes {
        let addr = node.clone().as_async().info().await.local_addr();
        assert_eq!(
            addr.ip().octets(),
            [127, 0, 0, 1],
            "test node bound to {addr}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let data = common::pseudo_random(1 << 20, 0xd47);
    let (public, public_ih) = torrent(dir.path(), "public.bin", &data, false);
    let (private, private_ih) = torrent(dir.path(), "private.bin", &data[..300_000], true);

    let seeder_state = dir.path().join("seeder").join("dht.dat");
    // A node that answers queries from the start: only such a node is told to peers (PORT).
    let mut seeder_config = config([127, 0, 0, 2], &testnet.bootstrap, &seeder_state);
    seeder_config.dht.server = true;
    let seeder = Engine::start(seeder_config).unwrap();
    for bytes in [&public, &private] {
        let mut add = AddTorrent::new(TorrentSource::Bytes(bytes.to_vec()), dir.path());
        add.check_existing = true;
        let id = seeder.add_torrent(add).unwrap();
        assert!(seeder.stats(id).unwrap().complete);
    }

    // The seeder's announce reaches the test DHT with its listen address.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !peers_in_dht(&testnet.nodes[0], public_ih)
        .await
        .contains(&seeder.listen_addr())
    {
        assert!(Instant::now() < deadline, "the seeder never announced");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dht_addr = seeder.dht_addr().expect("a DHT node runs");
    assert_eq!(
        dht_addr.ip(),
        seeder.listen_addr().ip(),
        "bound beside the listener"
    );
    // Its private torrent never is (announced at the same time as the public one, if at all).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(peers_in_dht(&testnet.nodes[1], private_ih).await, vec![]);

    let first_state = dir.path().join("first").join("dht.dat");
    let out = dir.path().join("first-out");
    download_through_dht(
        [127, 0, 0, 1],
        &testnet.bootstrap,
        &first_state,
        &public,
        &out,
        &data,
    )
    .await;

    // The first leecher saved its routing table: test nodes only.
    let text = std::fs::read_to_string(&first_state).unwrap();
    let saved: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    assert!(!saved.is_empty(), "no node saved:\n{text}");
    // The seeder's own node too: its PORT message (BEP 5) told the leecher of it.
    let seeder_node = dht_addr.to_string();
    assert!(
        saved.contains(&seeder_node),
        "the seeder's node {seeder_node} not saved:\n{text}"
    );
    for s in &saved {
        assert!(
            testnet.bootstrap.contains(s) || *s == seeder_node,
            "{s} is neither a test node nor the seeder's"
        );
    }
    // A second leecher with no bootstrap node but that state file finds the seeder too.
    let second_state = dir.path().join("second").join("dht.dat");
    std::fs::create_dir_all(second_state.parent().unwrap()).unwrap();
    std::fs::copy(&first_state, &second_state).unwrap();
    let out = dir.path().join("second-out");
    download_through_dht([127, 0, 0, 1], &[], &second_state, &public, &out, &data).await;

    // A leecher whose only bootstrap node is dead joins the DHT through the node its peer
    // (the seeder) announced with a PORT message: its keeper restarts it from that node.
    let third = Engine::start(config(
        [127, 0, 0, 3],
        &["127.0.0.1:9".to_string()],
        &dir.path().join("third").join("dht.dat"),
    ))
    .unwrap();
    let mut add = AddTorrent::new(
        TorrentSource::Bytes(public.clone()),
        dir.path().join("third-out"),
    );
    add.peers = vec![seeder.listen_addr()];
    third.add_torrent(add).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while third.dht_nodes().await == 0 {
        assert!(
            Instant::now() < deadline,
            "never joined the DHT through the seeder's node"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    third.shutdown().await.unwrap();

    seeder.shutdown().await.unwrap();
    assert!(seeder_state.exists(), "the seeder saved no DHT state");
}

/// A DHT that cannot start (IPv6 only here) leaves the engine running without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_whose_dht_cannot_start_runs_without_it() {
    let mut cfg = common::config([127, 0, 0, 1]);
    cfg.dht = DhtConfig::with_bootstrap(vec!["127.0.0.1:9".into()]);
    cfg.dht.bind_ip = Some("::1".parse().unwrap());
    let engine = Engine::start(cfg).unwrap();
    assert_eq!(engine.dht_addr(), None);
    engine.shutdown().await.unwrap();
}
