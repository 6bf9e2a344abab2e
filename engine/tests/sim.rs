//! In-memory simulation of the peer state machine: sans-IO leecher sessions wired to sans-IO
//! seeder sessions through byte pipes with latency, a fake clock, a seeder that disappears
//! mid-download and one that serves corrupt blocks. No sockets and no threads: the only real
//! object is a disk pipeline used to obtain a torrent slot; pieces are verified in memory.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringtorrent::metainfo::build::TorrentBuilder;
use ringtorrent::metainfo::Metainfo;
use ringtorrent::peer::{PeerError, PeerSession};
use ringtorrent::picker::Picker;
use ringtorrent::torrent::{TorrentShared, Waste};
use ringtorrent::types::{Bitfield, BlockRef, PieceIndex};
use ringtorrent::wire;
use ringtorrent::PeerId;
use uring_disk::{BufferPool, DiskPipeline, SharedPiece, Storage, StorageFile, StorageOptions};

mod common;

const PIECE: u32 = 32 * 1024;

struct Fixture {
    piece: u32,
    content: Vec<u8>,
    meta: Arc<Metainfo>,
    disk: DiskPipeline,
    _dir: tempfile::TempDir,
}

fn fixture(len: usize) -> Fixture {
    fixture_with(len, PIECE)
}

fn fixture_with(len: usize, piece: u32) -> Fixture {
    let content = common::pseudo_random(len, 0x2545_f491);
    let hashes = content
        .chunks(piece as usize)
        .map(uring_disk::hash::sha1)
        .collect();
    let (_, meta) = TorrentBuilder::single_file("sim.bin", len as u64, piece)
        .piece_hashes(hashes)
        .build()
        .unwrap();
    let disk = DiskPipeline::start(uring_disk::DiskConfig {
        hash_threads: 1,
        ..Default::default()
    })
    .unwrap();
    Fixture {
        piece,
        content,
        meta: Arc::new(meta),
        disk,
        _dir: tempfile::tempdir().unwrap(),
    }
}

fn shared(f: &Fixture, id: u64, have_all: bool) -> Arc<TorrentShared> {
    shared_with_pool(f, id, have_all, 64)
}

fn shared_with_pool(f: &Fixture, id: u64, have_all: bool, buffers: usize) -> Arc<TorrentShared> {
    let info = &f.meta.info;
    let n = info.lengths.num_pieces();
    let have = if have_all {
        Bitfield::full(n)
    } else {
        Bitfield::new(n)
    };
    let picker = Picker::new(info.lengths, &have, &Bitfield::full(n)).unwrap();
    let dir = f._dir.path().join(id.to_string());
    let files = vec![StorageFile {
        rel_path: "sim.bin".into(),
        length: info.lengths.total_length(),
        padding: false,
    }];
    let storage = Storage::open(&dir, files, f.piece, StorageOptions::default()).unwrap();
    let slot = f
        .disk
        .add_torrent(storage, info.pieces.clone().into(), Arc::new(|_| {}))
        .unwrap();
    let pool = BufferPool::new(f.piece as usize, buffers);
    Arc::new(TorrentShared::new(
        id,
        f.meta.clone(),
        PeerId::generate(),
        picker,
        pool,
        slot,
        64,
    ))
}

/// A one-way byte pipe with a fixed latency.
#[derive(Default)]
struct Pipe {
    q: VecDeque<(Duration, Vec<u8>)>,
}

impl Pipe {
    fn send(&mut self, now: Duration, latency: Duration, bytes: &mut Vec<u8>) {
        if !bytes.is_empty() {
            self.q.push_back((now + latency, std::mem::take(bytes)));
        }
    }
    fn due(&mut self, now: Duration) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while self.q.front().is_some_and(|(t, _)| *t <= now) {
            out.push(self.q.pop_front().unwrap().1);
        }
        out
    }
}

struct Link {
    leech: PeerSession,
    seed: PeerSession,
    leech_reader: wire::Reader,
    seed_reader: wire::Reader,
    up: Pipe,
    down: Pipe,
    corrupt: bool,
    /// Extra one-way delay of this link on top of the sim's latency.
    extra_latency: Duration,
    alive: bool,
    error: Option<String>,
}

fn feed(
    reader: &mut wire::Reader,
    s: &mut PeerSession,
    bytes: &[u8],
    now: Instant,
    t: &TorrentShared,
) -> Result<(), String> {
    reader
        .feed(bytes, |ev| s.on_event(ev, now, t))
        .map_err(|e| e.to_string())
}

struct Sim {
    f: Fixture,
    leecher: Arc<TorrentShared>,
    seeder: Arc<TorrentShared>,
    links: Vec<Link>,
    t0: Instant,
    latency: Duration,
    hash_failures: u32,
    /// How long a completed piece holds its buffer before it is verified ("written"): a slow
    /// disk, so that the pool runs dry.
    disk_delay: Duration,
    /// Completed pieces waiting for the disk, with the time they are done.
    disk_queue: VecDeque<(Duration, PieceIndex, Arc<SharedPiece>)>,
}

impl Sim {
    fn new(len: usize, seeders: usize, latency_ms: u64) -> Sim {
        Sim::with_fixture(fixture(len), seeders, latency_ms)
    }

    fn with_fixture(f: Fixture, seeders: usize, latency_ms: u64) -> Sim {
        let leecher = shared(&f, 1, false);
        let seeder = shared(&f, 2, true);
        let t0 = Instant::now();
        let n = f.meta.info.lengths.num_pieces();
        let links = (0..seeders)
            .map(|i| {
                let addr = SocketAddr::from(([127, 0, 0, 2 + i as u8], 6881));
                Link {
                    leech: PeerSession::new(10 + i as u64, addr, true, true, &leecher, t0),
                    seed: PeerSession::new(
                        100 + i as u64,
                        SocketAddr::from(([127, 0, 0, 1], 1)),
                        true,
                        true,
                        &seeder,
                        t0,
                    ),
                    leech_reader: wire::Reader::new(n),
                    seed_reader: wire::Reader::new(n),
                    up: Pipe::default(),
                    down: Pipe::default(),
                    corrupt: false,
                    extra_latency: Duration::ZERO,
                    alive: true,
                    error: None,
                }
            })
            .collect();
        Sim {
            f,
            leecher,
            seeder,
            links,
            t0,
            latency: Duration::from_millis(latency_ms),
            hash_failures: 0,
            disk_delay: Duration::ZERO,
            disk_queue: VecDeque::new(),
        }
    }

    /// New leecher sessions for every link (after the leecher's torrent was replaced).
    fn relink(&mut self) {
        for (i, link) in self.links.iter_mut().enumerate() {
            link.leech = PeerSession::new(
                10 + i as u64,
                link.leech.addr,
                true,
                true,
                &self.leecher,
                self.t0,
            );
        }
    }

    /// One virtual millisecond.
    fn step(&mut self, ms: u64) {
        let v = Duration::from_millis(ms);
        let now = self.t0 + v;
        let slow = ms.is_multiple_of(50);
        for link in self.links.iter_mut().filter(|l| l.alive) {
            for bytes in link.up.due(v) {
                if let Err(e) = feed(
                    &mut link.seed_reader,
                    &mut link.seed,
                    &bytes,
                    now,
                    &self.seeder,
                ) {
                    panic!("seeder rejected our leecher's bytes: {e}");
                }
            }
            // The seeder's disk: reads are answered from memory (corrupted for a bad seeder).
            let mut reads: Vec<BlockRef> = Vec::new();
            link.seed.next_reads(&mut reads);
            for b in reads {
                let start =
                    self.f.meta.info.lengths.piece_offset(b.piece) as usize + b.offset as usize;
                let mut data = self.f.content[start..start + b.len as usize].to_vec();
                if link.corrupt {
                    data[0] ^= 0xff;
                }
                link.seed.on_read(b, Some(&data), &self.seeder);
            }
            for bytes in link.down.due(v) {
                if let Err(e) = feed(
                    &mut link.leech_reader,
                    &mut link.leech,
                    &bytes,
                    now,
                    &self.leecher,
                ) {
                    link.error = Some(e);
                }
            }
            let polled = if slow {
                link.leech.poll(now, &self.leecher)
            } else {
                link.leech.top_up(now, &self.leecher);
                Ok(())
            };
            if slow {
                let _ = link.seed.poll(now, &self.seeder);
            }
            if let Err(e) = polled {
                link.error = Some(e.to_string());
            }
            // Pieces completed are hashed even if the peer is being dropped (as the shard does).
            for (p, buf) in link.leech.completed.drain(..) {
                self.disk_queue.push_back((v + self.disk_delay, p, buf));
            }
            if link.error.is_some() {
                link.alive = false;
                link.leech.on_disconnect(&self.leecher);
                link.seed.on_disconnect(&self.seeder);
                continue;
            }
            let latency = self.latency + link.extra_latency;
            link.up.send(v, latency, &mut link.leech.out);
            link.down.send(v, latency, &mut link.seed.out);
        }
    }

    /// The "disk": pieces whose delay is over are verified and their buffers freed.
    fn drain_disk(&mut self, v: Duration) {
        while self.disk_queue.front().is_some_and(|(due, ..)| *due <= v) {
            let Some((_, p, buf)) = self.disk_queue.pop_front() else {
                break;
            };
            let data = buf
                .as_slice()
                .expect("INVARIANT: completed pieces are whole");
            match uring_disk::hash::verify(p.get(), data, self.f.meta.info.piece_hash(p)) {
                Some(v) => {
                    self.leecher.on_verified(&v);
                }
                None => {
                    self.hash_failures += 1;
                    self.leecher.on_failed(p, true);
                }
            }
        }
    }

    fn run(&mut self, max_ms: u64, mut at: impl FnMut(&mut Sim, u64)) -> u64 {
        for ms in 1..=max_ms {
            at(self, ms);
            self.step(ms);
            self.drain_disk(Duration::from_millis(ms));
            // The picker and the piece buffers never disagree about a block.
            if let Err(e) = self.leecher.check_agreement() {
                panic!("at {ms} virtual ms: {e}");
            }
            if self.leecher.picker.is_complete() {
                return ms;
            }
        }
        panic!(
            "not complete after {max_ms} virtual ms; links: {:?}",
            self.links.iter().map(|l| &l.error).collect::<Vec<_>>()
        );
    }
}

#[test]
fn two_seeders_with_latency_deliver_every_piece() {
    let mut sim = Sim::new(40 * PIECE as usize + 1234, 2, 20);
    let ms = sim.run(20_000, |_, _| {});
    assert_eq!(
        sim.leecher.picker.num_have(),
        sim.f.meta.info.lengths.num_pieces()
    );
    assert_eq!(sim.hash_failures, 0);
    assert!(
        sim.links.iter().all(|l| l.alive),
        "{:?}",
        sim.links.iter().map(|l| &l.error).collect::<Vec<_>>()
    );
    // Both seeders were used: requests spread over peers.
    assert!(sim.links.iter().all(|l| l.leech.downloaded_bytes > 0));
    assert!(ms < 20_000);
}

#[test]
fn a_seeder_that_vanishes_mid_download_loses_no_block() {
    let mut sim = Sim::new(60 * PIECE as usize, 2, 5);
    sim.run(30_000, |sim, ms| {
        if ms == 40 {
            let l = &mut sim.links[0];
            l.alive = false;
            l.leech.on_disconnect(&sim.leecher);
            l.seed.on_disconnect(&sim.seeder);
        }
    });
    assert!(!sim.links[0].alive);
    assert_eq!(sim.leecher.picker.num_have(), 60);
}

#[test]
fn a_corrupting_seeder_is_banned_and_the_good_one_finishes() {
    let mut sim = Sim::new(30 * PIECE as usize, 2, 5);
    sim.links[0].corrupt = true;
    let done = sim.run(30_000, |_, _| {});
    // Blame is applied on the sessions' next slow tick.
    for ms in done + 1..=done + 100 {
        sim.step(ms);
    }
    assert!(sim.hash_failures > 0, "corruption must be detected");
    assert!(!sim.links[0].alive, "the corrupting peer must be dropped");
    let why = sim.links[0].error.clone().unwrap_or_default();
    assert!(
        why.contains(&PeerError::HashFailures.to_string()),
        "dropped for: {why}"
    );
    assert!(sim.leecher.is_banned(sim.links[0].leech.addr.ip()));
    assert!(
        sim.links[1]
            .error
            .as_deref()
            .is_none_or(|e| e.contains("both sides are seeders")),
        "good seeder dropped: {:?}",
        sim.links[1].error
    );
}

#[test]
fn a_bitfield_after_haves_is_merged_not_fatal() {
    // aria2 announces pieces with HAVE before its BITFIELD; the session must keep the peer and
    // learn every piece from both.
    let f = fixture(20 * PIECE as usize);
    let t = shared(&f, 1, false);
    let t0 = Instant::now();
    let addr: SocketAddr = "127.0.0.1:6881".parse().unwrap();
    let mut s = PeerSession::new(7, addr, false, false, &t, t0);
    s.on_message(wire::Message::Have { piece: 3 }, t0, &t)
        .expect("have");
    let n = t.lengths.num_pieces();
    let full = Bitfield::full(n).to_wire();
    s.on_message(wire::Message::Bitfield(&full), t0, &t)
        .expect("a late bitfield is merged");
    s.on_message(wire::Message::Unchoke, t0, &t)
        .expect("unchoke");
    s.poll(t0, &t).expect("poll");
    // One piece is two blocks here: more outstanding requests than piece 3 alone can explain
    // means the bitfield's pieces reached the picker.
    assert!(s.outstanding() > 2, "outstanding {}", s.outstanding());
    // A malformed late bitfield is still an error.
    assert!(s
        .on_message(wire::Message::Bitfield(&full[..1]), t0, &t)
        .is_err());
}

#[test]
fn peers_sharing_bad_pieces_go_on_parole_and_only_the_corrupter_is_banned() {
    // Three seeders, one corrupting every block. The corrupter vanishes mid-download, before
    // any blame is read, leaving bad blocks in partial pieces that the honest peers complete:
    // those failures are shared, so the honest peers go on parole (whole pieces of their own)
    // and must finish the download, never be banned.
    let piece = 80 * 1024;
    let mut sim = Sim::with_fixture(fixture_with(400 * piece as usize, piece), 3, 5);
    sim.links[1].corrupt = true;
    // The corrupter does not speak the Fast extension: the pieces a Fast seeder allows while
    // choking are fetched from it alone, which would get it banned for solo failures before
    // the shared failures this test is about.
    let l = &mut sim.links[1];
    l.leech = PeerSession::new(11, l.leech.addr, false, true, &sim.leecher, sim.t0);
    let seed_side = SocketAddr::from(([127, 0, 0, 1], 1));
    l.seed = PeerSession::new(101, seed_side, false, true, &sim.seeder, sim.t0);
    let mut vanished = false;
    sim.run(60_000, |sim, ms| {
        let l = &mut sim.links[1];
        if !vanished && !ms.is_multiple_of(50) && l.leech.downloaded_bytes >= 2 << 20 {
            vanished = true;
            l.alive = false;
            l.leech.on_disconnect(&sim.leecher);
            l.seed.on_disconnect(&sim.seeder);
        }
    });
    let mut failed = Vec::new();
    sim.leecher.failed_since(0, &mut failed);
    assert!(vanished);
    assert!(
        failed.iter().filter(|f| f.contributors.len() > 1).count() >= 3,
        "the scenario needs failures shared by several peers: {failed:?}"
    );
    for i in [0, 2] {
        let l = &sim.links[i];
        assert!(l.error.is_none(), "good seeder {i} dropped: {:?}", l.error);
        assert!(
            !sim.leecher.is_banned(l.leech.addr.ip()),
            "seeder {i} banned"
        );
    }
}

#[test]
fn a_slow_disk_and_a_small_pool_fetch_each_block_once() {
    // Four seeders with deep request queues, eight piece buffers, and a disk that holds each
    // completed piece for 30 ms: the pool is empty most of the time. Every block must be
    // fetched once (plus endgame duplicates), and the picker and the buffers must agree at
    // every step (checked by `run`).
    let f = fixture(200 * PIECE as usize);
    let mut sim = Sim::with_fixture(f, 4, 2);
    sim.leecher = shared_with_pool(&sim.f, 1, false, 8);
    sim.relink();
    sim.disk_delay = Duration::from_millis(30);
    let mut dry = 0u32;
    sim.run(60_000, |sim, _| {
        if sim.leecher.pool.available() == 0 {
            dry += 1;
        }
    });
    assert!(
        dry > 100,
        "the pool was empty for only {dry} ms: the scenario proves nothing"
    );
    let payload = sim.f.meta.info.lengths.total_length();
    let received: u64 = sim.links.iter().map(|l| l.leech.downloaded_bytes).sum();
    let c = &sim.leecher.counters;
    // Every received byte is kept or counted as waste.
    assert_eq!(received, payload + c.wasted_bytes());
    // The only waste is endgame duplicates, at most one extra copy of what fits in the pool.
    assert_eq!(
        c.wasted_bytes(),
        c.waste(Waste::Duplicate),
        "waste other than endgame duplicates"
    );
    let in_flight = 8 * PIECE as u64;
    assert!(
        c.waste(Waste::Duplicate) <= in_flight,
        "received {received} bytes for {payload}: {} duplicate",
        c.waste(Waste::Duplicate)
    );
}
