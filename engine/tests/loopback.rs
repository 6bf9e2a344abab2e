//! Loopback integration: real engines, real sockets, real files. A ringtorrent seeder and a
//! ringtorrent leecher in one process, on both ring backends, plus misbehaving raw peers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ringtorrent::handshake::Handshake;
use ringtorrent::metainfo::build::{BuildFile, TorrentBuilder};
use ringtorrent::metainfo::Metainfo;
use ringtorrent::{AddTorrent, Backend, Config, Engine, PeerId, TorrentSource};

mod common;

const PIECE: u32 = 32 * 1024;

/// Files of 0 bytes, 1 byte, unaligned, and one larger than three pieces.
fn make_content(dir: &Path) -> (Vec<u8>, Metainfo) {
    // In mktorrent's order (byte order of the joined path), which the builder keeps.
    let sizes: [(&str, usize); 5] = [
        ("big", 3 * PIECE as usize + 777),
        ("empty", 0),
        ("odd", 50_001),
        ("one", 1),
        ("sub/x", 20_000),
    ];
    let root = dir.join("set");
    let mut files = Vec::new();
    for (i, (name, size)) in sizes.into_iter().enumerate() {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let data = common::pseudo_random(size, 0x1234_5678 + i as u32);
        std::fs::write(&path, &data).unwrap();
        files.push((
            path,
            size as u64,
            name.split('/').map(String::from).collect::<Vec<_>>(),
        ));
    }
    let list: Vec<(std::path::PathBuf, u64)> =
        files.iter().map(|(p, s, _)| (p.clone(), *s)).collect();
    let hashes = uring_disk::hash_pieces(&list, PIECE, 2, &|_| {}).unwrap();
    let build: Vec<BuildFile> = files
        .iter()
        .map(|(_, s, c)| BuildFile {
            path: c.clone(),
            length: *s,
        })
        .collect();
    let (bytes, meta) = TorrentBuilder::multi_file("set", build, PIECE)
        .piece_hashes(hashes)
        .build()
        .unwrap();
    (bytes, meta)
}

/// Both backends; seeders here send cached blocks with `sendfile` even to these loopback
/// peers (`ZeroCopyUploads::Always`), so that path runs on both.
fn config(force_portable: bool, ip: [u8; 4]) -> Config {
    Config {
        force_portable,
        zero_copy_uploads: ringtorrent::ZeroCopyUploads::Always,
        ..common::config(ip)
    }
}

fn assert_same_tree(a: &Path, b: &Path) {
    for name in ["empty", "one", "odd", "big", "sub/x"] {
        let x = std::fs::read(a.join(name)).unwrap();
        let y = std::fs::read(b.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(x == y, "{name} differs");
    }
}

/// A seeder and a leecher on `backend`; fails if either engine runs on the other one (a
/// silent fallback from io_uring to epoll would otherwise pass as an io_uring run).
async fn swarm(backend: Backend) {
    let force_portable = backend == Backend::Epoll;
    let dir = tempfile::tempdir().unwrap();
    let (bytes, _) = make_content(dir.path());
    let seeder = Engine::start(config(force_portable, [127, 0, 0, 2])).unwrap();
    assert_eq!(seeder.backend(), backend, "the seeder's shards");
    let mut add = AddTorrent::new(TorrentSource::Bytes(bytes.clone()), dir.path());
    add.check_existing = true;
    let sid = seeder.add_torrent(add).unwrap();
    assert!(
        seeder.stats(sid).unwrap().complete,
        "seeder must verify its data"
    );

    let leecher = Engine::start(config(force_portable, [127, 0, 0, 1])).unwrap();
    assert_eq!(leecher.backend(), backend, "the leecher's shards");
    let mut alerts = leecher.alerts().unwrap();
    let out = dir.path().join("out");
    let mut add = AddTorrent::new(TorrentSource::Bytes(bytes), &out);
    add.peers = vec![seeder.listen_addr()];
    leecher.add_torrent(add).unwrap();
    common::wait_complete(&mut alerts, 30).await;
    leecher.shutdown().await.unwrap();
    let uploaded = seeder.stats(sid).unwrap().uploaded_bytes;
    seeder.shutdown().await.unwrap();
    assert_same_tree(&dir.path().join("set"), &out.join("set"));
    assert!(
        uploaded >= 3 * PIECE as u64,
        "seeder counted {uploaded} bytes uploaded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ringtorrent_to_ringtorrent_over_io_uring() {
    swarm(Backend::IoUring).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ringtorrent_to_ringtorrent_over_epoll_fallback() {
    swarm(Backend::Epoll).await;
}

/// Connects to `addr` as a raw peer, handshakes for `meta`, sends `bytes` and waits up to five
/// seconds for the engine to close the connection. `Ok` when it did (end of stream or a reset);
/// `Err` says what happened instead.
fn raw_peer_is_dropped(addr: SocketAddr, meta: &Metainfo, bytes: &[u8]) -> Result<(), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let hs = Handshake::ours(meta.info_hash, PeerId(*b"-XX0001-badpeerbadpe"));
    s.write_all(&hs.to_bytes())
        .map_err(|e| format!("send handshake: {e}"))?;
    // The engine may already have closed (a refused handshake): a failed write is fine.
    let _ = s.write_all(bytes);
    let mut buf = [0u8; 65536];
    let mut got = 0usize;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // The read timed out: the engine kept the connection open.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!("still open after {got} bytes read: {e}"));
            }
            // A reset (the engine closed with our bytes unread) or any other end of the
            // connection.
            Err(_) => return Ok(()),
        }
    }
    Err(format!("still open after {got} bytes read and 5 s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_peers_are_dropped_and_the_seeder_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, meta) = make_content(dir.path());
    let seeder = Engine::start(config(false, [127, 0, 0, 4])).unwrap();
    let mut add = AddTorrent::new(TorrentSource::Bytes(bytes.clone()), dir.path());
    add.check_existing = true;
    seeder.add_torrent(add).unwrap();
    let addr = seeder.listen_addr();
    let n = meta.info.lengths.num_pieces();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("4 GiB length prefix", vec![0xff, 0xff, 0xff, 0xff, 7]),
        ("short bitfield", [&[0, 0, 0, 1, 5][..]].concat()),
        ("unknown message id", vec![0, 0, 0, 1, 99]),
        (
            "have out of range",
            [&[0, 0, 0, 5, 4][..], &n.to_be_bytes()].concat(),
        ),
        ("request for a piece beyond the torrent", {
            let mut m = vec![0, 0, 0, 1, 2, 0, 0, 0, 13, 6];
            m.extend_from_slice(&(n + 1).to_be_bytes());
            m.extend_from_slice(&0u32.to_be_bytes());
            m.extend_from_slice(&16384u32.to_be_bytes());
            m
        }),
        ("a ut_pex message that is not bencode", {
            // Our extension handshake offers ut_pex on id 1; then a PEX message on the id the
            // engine chose for it, with garbage for a dictionary.
            let mut m = Vec::new();
            let hs = b"d1:md6:ut_pexi1eee";
            m.extend_from_slice(&(2 + hs.len() as u32).to_be_bytes());
            m.extend_from_slice(&[20, 0]);
            m.extend_from_slice(hs);
            let junk = b"d5:added6:";
            m.extend_from_slice(&(2 + junk.len() as u32).to_be_bytes());
            m.extend_from_slice(&[20, ringtorrent::ext::OUR_UT_PEX_ID]);
            m.extend_from_slice(junk);
            m
        }),
        ("request longer than 16 KiB", {
            let mut m = vec![0, 0, 0, 13, 6];
            m.extend_from_slice(&0u32.to_be_bytes());
            m.extend_from_slice(&0u32.to_be_bytes());
            m.extend_from_slice(&(1u32 << 20).to_be_bytes());
            m
        }),
    ];
    for (what, msg) in &cases {
        if let Err(e) = raw_peer_is_dropped(addr, &meta, msg) {
            panic!("{what}: peer was not dropped: {e}");
        }
    }
    // A wrong info-hash is refused at the handshake.
    let mut other = meta.clone();
    other.info_hash.0[0] ^= 1;
    if let Err(e) = raw_peer_is_dropped(addr, &other, &[]) {
        panic!("wrong info-hash accepted: {e}");
    }

    // And the seeder still serves a well-behaved leecher.
    let leecher = Engine::start(config(false, [127, 0, 0, 1])).unwrap();
    let mut alerts = leecher.alerts().unwrap();
    let out = dir.path().join("out");
    let mut add = AddTorrent::new(TorrentSource::Bytes(bytes), &out);
    add.peers = vec![addr];
    leecher.add_torrent(add).unwrap();
    common::wait_complete(&mut alerts, 30).await;
    leecher.shutdown().await.unwrap();
    seeder.shutdown().await.unwrap();
    assert_same_tree(&dir.path().join("set"), &out.join("set"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_escaping_the_download_dir_are_refused() {
    // A hand-made torrent whose file path climbs out with `..`.
    let info = b"d5:filesld6:lengthi5e4:pathl2:..4:evileee4:name3:set12:piece lengthi32768e6:pieces20:aaaaaaaaaaaaaaaaaaaae";
    let torrent = [&b"d4:info"[..], &info[..], &b"e"[..]].concat();
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::start(config(false, [127, 0, 0, 1])).unwrap();
    let err = engine
        .add_torrent(AddTorrent::new(
            TorrentSource::Bytes(torrent),
            dir.path().join("dl"),
        ))
        .expect_err("a path with .. must be refused");
    assert!(
        err.to_string().contains(".."),
        "error does not name the path: {err}"
    );
    assert!(!dir.path().join("evil").exists());
    engine.shutdown().await.unwrap();
}

/// The shards' connection log (`ringtorrent::shard::conn` at debug), of every engine in this
/// test binary: each closed connection leaves a line `peer <addr> closing: <reason>`.
static CONN_LOG: Mutex<String> = Mutex::new(String::new());

struct ConnLogWriter;

impl Write for ConnLogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CONN_LOG
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_str(&String::from_utf8_lossy(buf));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts capturing [`CONN_LOG`] (once per test binary).
fn capture_conn_log() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        tracing_subscriber::fmt()
            .with_env_filter("ringtorrent::shard::conn=debug")
            .with_writer(|| ConnLogWriter)
            .with_ansi(false)
            .without_time()
            .try_init()
            .expect("no other tracing subscriber in this test binary");
    });
}

/// Waits up to `secs` for a connection to `addr` to close for a reason `why` accepts.
async fn wait_closed(addr: SocketAddr, secs: u64, what: &str, why: impl Fn(&str) -> bool) {
    let prefix = format!("peer {addr} closing: ");
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let lines: Vec<String> = {
            let log = CONN_LOG.lock().unwrap_or_else(|e| e.into_inner());
            log.lines()
                .filter_map(|l| l.split_once(&prefix).map(|(_, reason)| reason.to_string()))
                .collect()
        };
        if lines.iter().any(|r| why(r)) {
            return;
        }
        assert!(
            Instant::now() < end,
            "no {what} within {secs} s; connections to {addr} closed for: {lines:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_is_not_up_yet_is_dialed_again() {
    // The leecher is told of a seeder before it listens (connection refused), and the seeder
    // then listens before it has the torrent (handshake dropped): both are retried with backoff.
    // Each step waits for the leecher's log line saying its dial ended that way.
    capture_conn_log();
    let dir = tempfile::tempdir().unwrap();
    let (bytes, _) = make_content(dir.path());
    let port = std::net::TcpListener::bind("127.0.0.2:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let seed_addr = SocketAddr::from(([127, 0, 0, 2], port));
    let leecher = Engine::start(config(false, [127, 0, 0, 1])).unwrap();
    let mut alerts = leecher.alerts().unwrap();
    let out = dir.path().join("out");
    let mut add = AddTorrent::new(TorrentSource::Bytes(bytes.clone()), &out);
    add.peers = vec![seed_addr];
    leecher.add_torrent(add).unwrap();
    let refused = |r: &str| r.starts_with("connect failed");
    wait_closed(seed_addr, 10, "refused dial", refused).await;
    let mut cfg = config(false, [127, 0, 0, 2]);
    cfg.listen = seed_addr;
    let seeder = Engine::start(cfg).unwrap();
    // A dial that got through TCP: the seeder closed it at the handshake (no such torrent).
    let dropped = |r: &str| !r.starts_with("connect");
    wait_closed(seed_addr, 15, "dial dropped at the handshake", dropped).await;
    let mut add = AddTorrent::new(TorrentSource::Bytes(bytes), dir.path());
    add.check_existing = true;
    seeder.add_torrent(add).unwrap();
    common::wait_complete(&mut alerts, 30).await;
    leecher.shutdown().await.unwrap();
    seeder.shutdown().await.unwrap();
    assert_same_tree(&dir.path().join("set"), &out.join("set"));
}
