//! `ringtorrent seed` against leechers no one here wrote: libtorrent, Transmission and aria2 each
//! download a multi-file torrent of awkward sizes byte for byte (issue 5, "Tests with real peers"
//! 1); and two misbehaving raw-socket peers (one asks for a piece the seeder lacks, one floods
//! 2,500 requests) are disconnected while a real libtorrent leecher completes (3).
//!
//! The seeders listen on their own 127.0.0.x addresses with trackers off; aria2, which cannot be
//! told a peer, learns the seeder from a fixed-peer tracker; Transmission ignores loopback peers
//! it is told about, so the seeder dials it (shared/INTEROP.md).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use rt_testkit::aria2::Aria2Leecher;
use rt_testkit::fixed_tracker::FixedTracker;
use rt_testkit::libtorrent::LtLeecher;
use rt_testkit::net::{connect_from, free_port, seeder_ip, LEECHER_IP};
use rt_testkit::payload::corrupt_pieces;
use rt_testkit::proc::Proc;
use rt_testkit::ringtorrent_bin;
use rt_testkit::rt_seeder::{parse_ready_line, parse_uploaded_mib, seed_command};
use rt_testkit::rt_seeder::{RtSeedOpts, RtSeeder, READY_TIMEOUT};
use rt_testkit::torrent::{make_torrent_ringtorrent, write_with_announce};
use rt_testkit::transmission::TransmissionLeecher;
use rt_testkit::{PayloadSpec, TorrentMeta};

const PIECE: u32 = 64 * 1024;
const BLOCK: u32 = 16 * 1024;

/// Several files of mixed, unaligned sizes: empty ones, a 1-byte one, files ending one byte
/// short of a piece and off block boundaries, a nested directory, one spanning 40 pieces.
fn multi_spec(seed: u64) -> PayloadSpec {
    let p = PIECE as u64;
    PayloadSpec::dir(
        "multi",
        &[
            ("a-empty.bin", 0),
            ("b-one-byte.bin", 1),
            ("c-unaligned.bin", 3 * p + 12_345),
            ("d/e-large.bin", 40 * p + 777),
            ("d/f-empty.bin", 0),
            ("d/g/h-short.bin", p - 1),
            ("i-middle.bin", 17 * p + 54_321),
            ("j-tail.bin", 7_777),
        ],
        seed,
    )
}

/// Generates `spec` under `<dir>/seed` and makes its torrent; returns (torrent, data dir, meta).
fn setup(dir: &Path, spec: &PayloadSpec) -> (std::path::PathBuf, std::path::PathBuf, TorrentMeta) {
    let seed_dir = dir.join("seed");
    spec.generate(&seed_dir).unwrap();
    let torrent = dir.join("t.torrent");
    let meta =
        make_torrent_ringtorrent(&spec.content_path(&seed_dir), &torrent, PIECE, None).unwrap();
    (torrent, seed_dir, meta)
}

fn fresh_listen() -> SocketAddr {
    let ip = seeder_ip();
    SocketAddr::from((ip, free_port(ip).unwrap()))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

/// The seeder reports MiB with one decimal.
fn assert_uploaded_at_least(uploaded_mib: f64, bytes: u64) {
    assert!(
        uploaded_mib >= mib(bytes) - 0.06,
        "seeder reported {uploaded_mib} MiB uploaded for {:.2} MiB of content",
        mib(bytes)
    );
}

#[test]
fn libtorrent_leecher_downloads_multi_file_from_ringtorrent() {
    let dir = tempfile::tempdir().unwrap();
    let spec = multi_spec(21);
    let (torrent, seed_dir, meta) = setup(dir.path(), &spec);
    let seeder = RtSeeder::start(&torrent, &seed_dir, &RtSeedOpts::listen(fresh_listen())).unwrap();
    assert_eq!(seeder.pieces_verified(), (meta.num_pieces, meta.num_pieces));
    let out = dir.path().join("lt");
    let timeout = Duration::from_secs(60);
    let mut leecher = LtLeecher::start(&torrent, &out, None, &[seeder.addr()], timeout).unwrap();
    let status = leecher.wait(timeout + Duration::from_secs(10)).unwrap();
    assert!(status.success(), "libtorrent leecher failed: {status}");
    spec.verify(&out).unwrap();
    assert_uploaded_at_least(seeder.stop().unwrap(), spec.total_len());
}

#[test]
fn aria2_leecher_downloads_multi_file_from_ringtorrent() {
    let dir = tempfile::tempdir().unwrap();
    let spec = multi_spec(22);
    let (bare, seed_dir, _) = setup(dir.path(), &spec);
    let seeder = RtSeeder::start(&bare, &seed_dir, &RtSeedOpts::listen(fresh_listen())).unwrap();
    let SocketAddr::V4(seeder_v4) = seeder.addr() else {
        panic!("seeder not on IPv4: {}", seeder.addr());
    };
    let tracker = FixedTracker::start(&[seeder_v4]).unwrap();
    let torrent = dir.path().join("tracked.torrent");
    write_with_announce(&bare, &torrent, Some(&tracker.announce_url())).unwrap();
    let out = dir.path().join("aria2");
    std::fs::create_dir_all(&out).unwrap();
    let mut leecher = Aria2Leecher::start(&torrent, &out, Some(&tracker.announce_url())).unwrap();
    let status = leecher.wait(Duration::from_secs(60)).unwrap();
    assert!(
        status.success(),
        "aria2 failed: {status}\n{}",
        leecher.proc.log_tail()
    );
    assert!(tracker.announces() >= 1, "aria2 never announced");
    spec.verify(&out).unwrap();
    assert_uploaded_at_least(seeder.stop().unwrap(), spec.total_len());
}

#[test]
fn transmission_leecher_downloads_multi_file_from_ringtorrent() {
    let dir = tempfile::tempdir().unwrap();
    let spec = multi_spec(23);
    let (torrent, seed_dir, _) = setup(dir.path(), &spec);
    let out = dir.path().join("transmission");
    let mut leecher = TransmissionLeecher::start(&torrent, &out).unwrap();
    let mut opts = RtSeedOpts::listen(fresh_listen());
    opts.peers = vec![leecher.addr()];
    let seeder = RtSeeder::start(&torrent, &seed_dir, &opts).unwrap();
    // It may wait ~10 s before declaring interest.
    let took = leecher
        .wait_complete(&spec, &out, Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("{e:#}\n--- seeder ---\n{}", seeder.proc.log_tail()));
    eprintln!("Transmission finished in {took:?}");
    assert_uploaded_at_least(seeder.stop().unwrap(), spec.total_len());
}

/// A raw peer: handshake with `info_hash` (no extension bits), then read the answer.
fn raw_peer(addr: SocketAddr, info_hash: &[u8; 20], tag: u8) -> TcpStream {
    let mut s = connect_from(LEECHER_IP, addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut hs = Vec::with_capacity(68);
    hs.push(19u8);
    hs.extend_from_slice(b"BitTorrent protocol");
    hs.extend_from_slice(&[0u8; 8]);
    hs.extend_from_slice(info_hash);
    hs.extend_from_slice(b"-XX0000-badpeer00000");
    hs[67] = tag;
    s.write_all(&hs).unwrap();
    let mut reply = [0u8; 68];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(&reply[28..48], info_hash, "seeder answered another torrent");
    s
}

fn request(piece: u32, begin: u32) -> [u8; 17] {
    let mut m = [0u8; 17];
    m[..4].copy_from_slice(&13u32.to_be_bytes());
    m[4] = 6; // REQUEST (BEP 3)
    m[5..9].copy_from_slice(&piece.to_be_bytes());
    m[9..13].copy_from_slice(&begin.to_be_bytes());
    m[13..17].copy_from_slice(&BLOCK.to_be_bytes());
    m
}

const INTERESTED: [u8; 5] = [0, 0, 0, 1, 2];

/// Reads messages until the peer sends UNCHOKE (true) or `timeout` passes (false).
fn wait_unchoke(s: &mut TcpStream, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let mut len = [0u8; 4];
        if s.read_exact(&mut len).is_err() {
            return false;
        }
        let len = u32::from_be_bytes(len) as usize;
        assert!(len <= (1 << 20), "message of {len} bytes from the seeder");
        let mut body = vec![0u8; len];
        if s.read_exact(&mut body).is_err() {
            return false;
        }
        if body.first() == Some(&1) {
            return true;
        }
    }
    false
}

/// Reads and discards until the seeder closes the connection; the time it took, or `None` if
/// it was still open after `timeout`.
fn time_to_close(s: &mut TcpStream, timeout: Duration) -> Option<Duration> {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    let mut buf = vec![0u8; 64 * 1024];
    while start.elapsed() < timeout {
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

/// How a raw peer's connection ended: its own address (as the seeder sees it) and how long
/// after its offence the seeder closed it (`None`: still open at the timeout).
struct Dropped {
    local: SocketAddr,
    after: Option<Duration>,
}

/// Asks for a block of `lacking`, a piece the seeder does not have.
fn asks_for_a_missing_piece(addr: SocketAddr, info_hash: [u8; 20], lacking: u32) -> Dropped {
    let mut s = raw_peer(addr, &info_hash, b'1');
    let local = s.local_addr().unwrap();
    let after = (|| {
        s.write_all(&INTERESTED).ok()?;
        let unchoked = wait_unchoke(&mut s, Duration::from_secs(10));
        eprintln!("missing-piece peer unchoked: {unchoked}");
        s.write_all(&request(lacking, 0)).ok()?;
        time_to_close(&mut s, Duration::from_secs(20))
    })();
    Dropped { local, after }
}

/// Once unchoked, sends 2,500 valid requests at once (the seeder queues at most 2,000).
fn floods_requests(addr: SocketAddr, info_hash: [u8; 20], pieces: u32, skip: u32) -> Dropped {
    let mut s = raw_peer(addr, &info_hash, b'2');
    let local = s.local_addr().unwrap();
    let after = flood(&mut s, pieces, skip);
    Dropped { local, after }
}

fn flood(s: &mut TcpStream, pieces: u32, skip: u32) -> Option<Duration> {
    s.write_all(&INTERESTED).ok()?;
    // Requests from a choked peer are ignored (BEP 3) and cost nothing; the cap is on the
    // queue an unchoked peer can build.
    let unchoked = wait_unchoke(s, Duration::from_secs(10));
    eprintln!("flooding peer unchoked: {unchoked}");
    let mut flood = Vec::with_capacity(2_500 * 17);
    let blocks_per_piece = PIECE / BLOCK;
    let mut n = 0u32;
    while flood.len() < 2_500 * 17 {
        let piece = n / blocks_per_piece % pieces;
        if piece != skip {
            flood.extend_from_slice(&request(piece, n % blocks_per_piece * BLOCK));
        }
        n += 1;
    }
    let start = Instant::now();
    if s.write_all(&flood).is_err() {
        return Some(start.elapsed()); // dropped while we were still sending
    }
    time_to_close(s, Duration::from_secs(20)).map(|t| t + start.elapsed())
}

/// `ringtorrent seed` like [`RtSeeder`], with the engine's debug log of the connection module
/// on, which names the reason each connection closes: `peer ADDR closing: REASON` (the
/// `seed` command has no `--verbose` that would print `Alert::PeerDisconnected`).
struct LoggingSeeder {
    proc: Proc,
    addr: SocketAddr,
    pieces: (u32, u32),
}

impl LoggingSeeder {
    fn start(torrent: &Path, data: &Path, listen: SocketAddr) -> Self {
        let opts = RtSeedOpts::listen(listen);
        let mut cmd = seed_command(&ringtorrent_bin().unwrap(), torrent, data, &opts);
        cmd.env("RUST_LOG", "warn,ringtorrent::shard::conn=debug")
            .env("NO_COLOR", "1");
        let work = tempfile::Builder::new()
            .prefix("rt-ringtorrent-seed-")
            .tempdir()
            .unwrap();
        let mut proc = Proc::spawn_split("ringtorrent-seed", cmd, work).unwrap();
        let line = proc.wait_for_log("seeding on ", READY_TIMEOUT).unwrap();
        let (addr, have, total) =
            parse_ready_line(&line).unwrap_or_else(|| panic!("bad first line {line:?}"));
        LoggingSeeder {
            proc,
            addr,
            pieces: (have, total),
        }
    }

    /// The reason the seeder gave for closing the connection from `peer`.
    fn close_reason(&mut self, peer: SocketAddr) -> String {
        let needle = format!("peer {peer} closing: ");
        let line = self
            .proc
            .wait_for_log(&needle, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("the seeder logged no reason for closing {peer}: {e:#}"));
        line.split_once(&needle).unwrap().1.trim().to_string()
    }

    /// SIGTERM; the MiB the seeder says it uploaded.
    fn stop(mut self) -> f64 {
        let pid = rustix::process::Pid::from_raw(self.proc.pid() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let status = self.proc.wait_exit(Duration::from_secs(20)).unwrap();
        let out = self.proc.stdout().unwrap_or_default();
        parse_uploaded_mib(&out).unwrap_or_else(|| {
            panic!(
                "seeder exited ({status}) without an upload figure; log:\n{}",
                self.proc.log_tail()
            )
        })
    }
}

#[test]
fn misbehaving_peers_are_dropped_while_libtorrent_completes() {
    let dir = tempfile::tempdir().unwrap();
    let spec = PayloadSpec::single("bad-peers.bin", 16 << 20, 24);
    let (torrent, seed_dir, meta) = setup(dir.path(), &spec);
    let n = meta.num_pieces;
    let lacking = n / 3;
    // Seeder A lacks one piece; seeder B holds only that piece, so the leecher must take
    // everything else from A, the seeder under attack.
    let a_dir = dir.path().join("a");
    rt_testkit::payload::copy_content(&meta, &seed_dir, &a_dir).unwrap();
    corrupt_pieces(&meta, &a_dir, &[lacking]).unwrap();
    let others: Vec<u32> = (0..n).filter(|p| *p != lacking).collect();
    corrupt_pieces(&meta, &seed_dir, &others).unwrap();
    let mut a = LoggingSeeder::start(&torrent, &a_dir, fresh_listen());
    assert_eq!(a.pieces, (n - 1, n), "seeder A should report the bad piece");
    let b = RtSeeder::start(&torrent, &seed_dir, &RtSeedOpts::listen(fresh_listen())).unwrap();
    assert_eq!(b.pieces_verified(), (1, n));

    let (addr, hash) = (a.addr, meta.info_hash.0);
    let missing = std::thread::spawn(move || asks_for_a_missing_piece(addr, hash, lacking));
    let flood = std::thread::spawn(move || floods_requests(addr, hash, n, lacking));
    let out = dir.path().join("lt");
    let timeout = Duration::from_secs(60);
    let mut leecher = LtLeecher::start(&torrent, &out, None, &[a.addr, b.addr()], timeout).unwrap();

    let missing = missing.join().unwrap();
    let flood = flood.join().unwrap();
    let status = leecher.wait(timeout + Duration::from_secs(10)).unwrap();
    let a_log = a.proc.log_tail();
    assert!(
        missing.after.is_some(),
        "a peer asking for a piece the seeder lacks was not dropped; seeder log:\n{a_log}"
    );
    assert!(
        flood.after.is_some(),
        "a peer flooding 2,500 requests was not dropped; seeder log:\n{a_log}"
    );
    // Dropped for what each did, not for something else (a protocol error of the raw peer,
    // an idle timeout): the engine's reasons, `PeerError`'s Display.
    let why = a.close_reason(missing.local);
    assert!(
        why.contains(&format!("requested piece {lacking}, which we do not have")),
        "the missing-piece peer was dropped for {why:?}"
    );
    let why = a.close_reason(flood.local);
    assert!(
        why.contains("more than 2000 requests queued"),
        "the flooding peer was dropped for {why:?}"
    );
    eprintln!(
        "dropped after {:?} (missing piece) and {:?} (flood)",
        missing.after, flood.after
    );
    assert!(status.success(), "libtorrent leecher failed: {status}");
    spec.verify(&out).unwrap();
    // A served all pieces but one to the real leecher, and did not die doing it.
    let piece_bytes = meta.piece_length as u64;
    assert_uploaded_at_least(a.stop(), spec.total_len() - piece_bytes);
    drop(b);
}
