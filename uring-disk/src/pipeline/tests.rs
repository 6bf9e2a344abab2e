//! Pipeline tests on real files in temporary directories, each run on both backends.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crossbeam_channel::Receiver;

use super::*;
use crate::hash::sha1;
use crate::layout::StorageFile;
use crate::pool::BufferPool;
use crate::storage::StorageOptions;

const BLOCK: u32 = 16384;
const WAIT: Duration = Duration::from_secs(20);

/// One config per backend: io_uring (falls back by itself when unavailable) and blocking.
fn configs() -> Vec<DiskConfig> {
    [false, true]
        .into_iter()
        .map(|force_blocking| DiskConfig {
            hash_threads: 2,
            ring_entries: 8, // small, so the in-flight limit and the backlog are exercised
            read_buffers: 2,
            force_blocking,
            ..DiskConfig::default()
        })
        .collect()
}

fn bytes(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

struct Torrent {
    files: Vec<StorageFile>,
    data: Vec<u8>,
    piece_length: u32,
    hashes: Arc<[[u8; 20]]>,
}

/// A torrent of `lens` (with `padding` marking padding files, whose data is zeros).
fn torrent(lens: &[(u64, bool)], piece_length: u32) -> Torrent {
    let mut data = Vec::new();
    let files = lens
        .iter()
        .enumerate()
        .map(|(i, &(len, padding))| {
            if padding {
                data.resize(data.len() + len as usize, 0);
            } else {
                data.extend(bytes(len as usize, i as u32 + 1));
            }
            StorageFile {
                rel_path: if padding {
                    PathBuf::from(format!(".pad/{i}"))
                } else {
                    PathBuf::from(format!("d{}/f{i}", i % 2))
                },
                length: len,
                padding,
            }
        })
        .collect();
    let hashes = data.chunks(piece_length as usize).map(sha1).collect();
    Torrent {
        files,
        data,
        piece_length,
        hashes,
    }
}

struct Run {
    pipeline: DiskPipeline,
    slot: TorrentSlot,
    events: Receiver<DiskEvent>,
    pool: Arc<BufferPool>,
}

fn start(t: &Torrent, root: &Path, config: DiskConfig, opts: StorageOptions) -> Run {
    let pipeline = DiskPipeline::start(config).unwrap();
    let storage = Storage::open(root, t.files.clone(), t.piece_length, opts).unwrap();
    let (tx, events) = crossbeam_channel::unbounded();
    let sink: Sink = Arc::new(move |e| {
        let _ = tx.send(e);
    });
    let slot = pipeline
        .add_torrent(storage, Arc::clone(&t.hashes), sink)
        .unwrap();
    Run {
        pipeline,
        slot,
        events,
        pool: BufferPool::new(t.piece_length as usize, 4),
    }
}

/// A complete piece buffer holding `data` (the piece's bytes, possibly wrong ones).
fn filled(run: &Run, piece: u32, data: &[u8]) -> Arc<SharedPiece> {
    let buf = loop {
        match run.pool.try_take() {
            Some(b) => break b,
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    };
    let p = Arc::new(SharedPiece::new(buf, piece, data.len() as u32, BLOCK).unwrap());
    for (i, block) in data.chunks(BLOCK as usize).enumerate() {
        let w = p.write(i as u32 * BLOCK, block);
        assert!(matches!(w, crate::WriteOutcome::Written { .. }), "{w:?}");
    }
    p
}

fn piece_data(t: &Torrent, piece: u32) -> &[u8] {
    let start = piece as usize * t.piece_length as usize;
    let end = (start + t.piece_length as usize).min(t.data.len());
    &t.data[start..end]
}

/// Submits every piece and checks that each gets `PieceWritten` with its own witness.
fn write_all(run: &Run, t: &Torrent) {
    let count = t.hashes.len() as u32;
    let mut seen = vec![false; count as usize];
    for piece in 0..count {
        let buf = filled(run, piece, piece_data(t, piece));
        run.pipeline.submit_piece(run.slot, piece, buf).unwrap();
    }
    for _ in 0..count {
        match run.events.recv_timeout(WAIT).unwrap() {
            DiskEvent::PieceWritten { piece, verified } => {
                assert_eq!(verified.piece(), piece);
                assert!(!seen[piece as usize], "two events for piece {piece}");
                seen[piece as usize] = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(seen.iter().all(|&s| s));
    assert_eq!(run.pipeline.queued_bytes(), 0);
}

fn check_files(t: &Torrent, root: &Path) {
    let mut pos = 0usize;
    for f in &t.files {
        let len = f.length as usize;
        let path = root.join(&f.rel_path);
        if f.padding {
            assert!(!path.exists(), "padding file {path:?} created");
        } else {
            let on_disk = std::fs::read(&path).unwrap();
            assert!(on_disk == t.data[pos..pos + len], "content of {path:?}");
        }
        pos += len;
    }
}

fn read(run: &Run, piece: u32, offset: u32, len: u32) -> Result<Vec<u8>, StorageError> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    run.pipeline.read(
        run.slot,
        piece,
        offset,
        len,
        Box::new(move |r| {
            let _ = tx.send(r.map(|b| b.to_vec()));
        }),
    )?;
    rx.recv_timeout(WAIT).unwrap()
}

fn sync(run: &Run) -> Result<(), StorageError> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    run.pipeline.sync(
        run.slot,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    )?;
    rx.recv_timeout(WAIT).unwrap()
}

/// `sync_all`: every open file, dirty or not (after a recheck).
fn sync_all(run: &Run) -> Result<(), StorageError> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    run.pipeline.sync_all(
        run.slot,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    )?;
    rx.recv_timeout(WAIT).unwrap()
}

/// Writes, checks the files, reads back a few ranges of every piece, syncs.
fn roundtrip(lens: &[(u64, bool)], piece_length: u32) {
    roundtrip_in(std::env::temp_dir().as_path(), lens, piece_length);
}

fn roundtrip_in(base: &Path, lens: &[(u64, bool)], piece_length: u32) {
    let t = torrent(lens, piece_length);
    for config in configs() {
        let dir = tempfile::tempdir_in(base).unwrap();
        let run = start(&t, dir.path(), config, StorageOptions::default());
        write_all(&run, &t);
        check_files(&t, dir.path());
        for piece in 0..t.hashes.len() as u32 {
            let want = piece_data(&t, piece);
            let len = want.len() as u32;
            for (off, n) in [(0, len.min(BLOCK)), (len - 1, 1), (len / 3, len - len / 3)] {
                let n = n.min(run.pipeline.config.max_read_len);
                let got = read(&run, piece, off, n).unwrap();
                assert!(
                    got == want[off as usize..(off + n) as usize],
                    "piece {piece} @{off}+{n}"
                );
            }
        }
        sync(&run).unwrap();
        sync(&run).unwrap();
        sync_all(&run).unwrap();
    }
}

#[test]
fn single_file_aligned_and_unaligned_end() {
    roundtrip(&[(BLOCK as u64 * 8, false)], BLOCK * 2);
    roundtrip(&[(100_001, false)], 32768);
}

#[test]
fn single_tiny_files() {
    roundtrip(&[(1, false)], BLOCK);
    roundtrip(&[(0, false), (1, false), (0, false)], BLOCK);
}

#[test]
fn multi_file_not_aligned_to_pieces() {
    // Piece 0 spans f0, f1 (1 byte), f3 after an empty f2: a piece over 3+ files.
    roundtrip(
        &[
            (5000, false),
            (1, false),
            (0, false),
            (BLOCK as u64 * 3 + 7, false),
            (1, false),
            (70_000, false),
        ],
        BLOCK * 2,
    );
}

#[test]
fn padding_files_are_skipped_and_read_as_zeros() {
    let pl = BLOCK * 2;
    roundtrip(
        &[
            (100, false),
            (u64::from(pl) - 100, true),
            (u64::from(pl) * 2 + 5, false),
            (u64::from(pl) - 5, true),
            (9000, false),
        ],
        pl,
    );
}

#[test]
fn tmpfs_works_with_or_without_o_direct() {
    let shm = Path::new("/dev/shm");
    // Passing without a tmpfs would have checked nothing: fail with the reason instead.
    assert!(shm.is_dir(), "no /dev/shm: this test needs the tmpfs there");
    roundtrip_in(
        shm,
        &[(5000, false), (BLOCK as u64 * 5 + 1, false)],
        BLOCK * 2,
    );
}

#[test]
fn remove_from_a_sink_is_refused_not_a_deadlock() {
    let t = torrent(&[(BLOCK as u64, false)], BLOCK);
    for config in configs() {
        let dir = tempfile::tempdir().unwrap();
        let pipeline = Arc::new(DiskPipeline::start(config).unwrap());
        let storage = Storage::open(
            dir.path(),
            t.files.clone(),
            BLOCK,
            StorageOptions::default(),
        );
        let cell: Arc<std::sync::OnceLock<(std::sync::Weak<DiskPipeline>, TorrentSlot)>> =
            Arc::default();
        let (tx, rx) = crossbeam_channel::bounded(1);
        let sink_cell = Arc::clone(&cell);
        let sink: Sink = Arc::new(move |_| {
            let (weak, slot) = sink_cell.get().unwrap();
            let r = weak.upgrade().unwrap().remove_torrent(*slot);
            let _ = tx.send(matches!(r, Err(StorageError::WouldDeadlock)));
        });
        let slot = pipeline
            .add_torrent(storage.unwrap(), Arc::clone(&t.hashes), sink)
            .unwrap();
        cell.set((Arc::downgrade(&pipeline), slot)).unwrap();
        let pool = BufferPool::new(BLOCK as usize, 1);
        let p = Arc::new(SharedPiece::new(pool.try_take().unwrap(), 0, BLOCK, BLOCK).unwrap());
        let _ = p.write(0, &t.data);
        pipeline.submit_piece(slot, 0, p).unwrap();
        assert!(rx.recv_timeout(WAIT).unwrap());
        pipeline.remove_torrent(slot).unwrap();
    }
}

#[test]
fn hash_failure_writes_nothing() {
    let t = torrent(&[(BLOCK as u64 * 4, false)], BLOCK * 2);
    for config in configs() {
        let dir = tempfile::tempdir().unwrap();
        let run = start(&t, dir.path(), config, StorageOptions::default());
        let mut bad = piece_data(&t, 1).to_vec();
        bad[77] ^= 1;
        let buf = filled(&run, 1, &bad);
        run.pipeline.submit_piece(run.slot, 1, buf).unwrap();
        match run.events.recv_timeout(WAIT).unwrap() {
            DiskEvent::HashFailed { piece } => assert_eq!(piece, 1),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(run.pipeline.queued_bytes(), 0);
        let on_disk = std::fs::read(dir.path().join(&t.files[0].rel_path)).unwrap();
        assert!(on_disk.iter().all(|&b| b == 0), "nothing written");
        assert_eq!(run.pool.available(), 4, "buffer returned to its pool");
    }
}

#[test]
fn bad_submissions_are_refused_without_events() {
    let t = torrent(&[(BLOCK as u64 * 3, false)], BLOCK * 2);
    let dir = tempfile::tempdir().unwrap();
    let run = start(
        &t,
        dir.path(),
        configs().remove(0),
        StorageOptions::default(),
    );
    let p0 = filled(&run, 0, piece_data(&t, 0));
    let p1 = filled(&run, 1, piece_data(&t, 1));
    let unknown = TorrentSlot(999);
    assert_eq!(
        run.pipeline.submit_piece(unknown, 0, Arc::clone(&p0)),
        Err(SubmitError::UnknownTorrent)
    );
    assert!(matches!(
        run.pipeline.submit_piece(run.slot, 2, Arc::clone(&p0)),
        Err(SubmitError::PieceOutOfRange { piece: 2, count: 2 })
    ));
    assert!(matches!(
        run.pipeline.submit_piece(run.slot, 1, Arc::clone(&p0)),
        Err(SubmitError::Mismatch { .. })
    ));
    // Right index, wrong length (piece 1 is one block).
    let wrong_len = filled(&run, 1, piece_data(&t, 0));
    assert!(matches!(
        run.pipeline.submit_piece(run.slot, 1, wrong_len),
        Err(SubmitError::Mismatch { .. })
    ));
    let buf = run.pool.try_take().unwrap();
    let partial = Arc::new(SharedPiece::new(buf, 0, BLOCK * 2, BLOCK).unwrap());
    let _ = partial.write(0, &piece_data(&t, 0)[..BLOCK as usize]);
    assert_eq!(
        run.pipeline.submit_piece(run.slot, 0, partial),
        Err(SubmitError::Incomplete(0))
    );
    assert!(run.events.recv_timeout(Duration::from_millis(100)).is_err());
    assert_eq!(run.pipeline.queued_bytes(), 0);
    run.pipeline.submit_piece(run.slot, 1, p1).unwrap();
    assert!(matches!(
        run.events.recv_timeout(WAIT).unwrap(),
        DiskEvent::PieceWritten { piece: 1, .. }
    ));
}

#[test]
fn bad_reads_are_refused() {
    let t = torrent(&[(BLOCK as u64 * 3, false)], BLOCK * 2);
    let dir = tempfile::tempdir().unwrap();
    let run = start(
        &t,
        dir.path(),
        configs().remove(1),
        StorageOptions::default(),
    );
    let max = run.pipeline.config.max_read_len;
    for (piece, off, len) in [
        (2, 0, 1),
        (1, 0, BLOCK + 1),
        (1, BLOCK, 1),
        (0, 0, 0),
        (0, 0, max + 1),
    ] {
        assert!(
            matches!(
                read(&run, piece, off, len),
                Err(StorageError::OutOfRange { .. })
            ),
            "{piece} {off} {len}"
        );
    }
    let noop: ReadReply = Box::new(|_| {});
    assert!(matches!(
        run.pipeline.read(TorrentSlot(77), 0, 0, 1, noop),
        Err(StorageError::UnknownTorrent)
    ));
    // Reading unwritten (preallocated) data gives zeros, not an error.
    assert_eq!(read(&run, 0, 0, 100).unwrap(), vec![0; 100]);
}

#[test]
fn short_file_on_read_is_an_error() {
    let t = torrent(&[(BLOCK as u64 * 2, false)], BLOCK * 2);
    for config in configs() {
        let dir = tempfile::tempdir().unwrap();
        let run = start(&t, dir.path(), config, StorageOptions::default());
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join(&t.files[0].rel_path))
            .unwrap();
        f.set_len(100).unwrap();
        assert!(matches!(
            read(&run, 0, 0, BLOCK),
            Err(StorageError::ShortFile { .. })
        ));
    }
}

#[test]
fn remove_waits_for_queued_writes_and_many_pieces_flow() {
    let t = torrent(
        &[(BLOCK as u64 * 40 + 3, false), (BLOCK as u64 * 9, false)],
        BLOCK,
    );
    for config in configs() {
        let dir = tempfile::tempdir().unwrap();
        let mut run = start(&t, dir.path(), config, StorageOptions::default());
        run.pool = BufferPool::new(BLOCK as usize, t.hashes.len());
        for piece in 0..t.hashes.len() as u32 {
            let buf = filled(&run, piece, piece_data(&t, piece));
            run.pipeline.submit_piece(run.slot, piece, buf).unwrap();
        }
        run.pipeline.remove_torrent(run.slot).unwrap();
        assert_eq!(run.events.try_iter().count(), t.hashes.len());
        assert_eq!(run.pipeline.queued_bytes(), 0);
        assert_eq!(run.pool.available(), t.hashes.len());
        check_files(&t, dir.path());
        assert!(matches!(
            run.pipeline.remove_torrent(run.slot),
            Err(StorageError::UnknownTorrent)
        ));
        let buf = filled(&run, 0, piece_data(&t, 0));
        assert_eq!(
            run.pipeline.submit_piece(run.slot, 0, buf),
            Err(SubmitError::UnknownTorrent)
        );
    }
}

#[test]
fn writes_complete_under_a_flood_of_reads() {
    let t = torrent(&[(BLOCK as u64 * 32, false)], BLOCK * 2);
    for config in configs() {
        let dir = tempfile::tempdir().unwrap();
        let mut run = start(&t, dir.path(), config, StorageOptions::default());
        run.pool = BufferPool::new((BLOCK * 2) as usize, t.hashes.len());
        let replies = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        std::thread::scope(|s| {
            let (pipeline, slot) = (&run.pipeline, run.slot);
            let (replies2, stop2) = (Arc::clone(&replies), Arc::clone(&stop));
            let reader = s.spawn(move || {
                let mut sent = 0u64;
                while !stop2.load(Ordering::Relaxed) {
                    // Keep up to 64 reads queued, as an engine's per-peer limits would.
                    if sent - replies2.load(Ordering::Relaxed) >= 64 {
                        std::thread::yield_now();
                        continue;
                    }
                    let r = Arc::clone(&replies2);
                    let reply: ReadReply = Box::new(move |res| {
                        assert!(res.is_ok());
                        r.fetch_add(1, Ordering::Relaxed);
                    });
                    pipeline
                        .read(slot, (sent % 16) as u32, 0, BLOCK, reply)
                        .unwrap();
                    sent += 1;
                }
                sent
            });
            write_all(&run, &t);
            stop.store(true, Ordering::Relaxed);
            let sent = reader.join().unwrap();
            run.pipeline.remove_torrent(run.slot).unwrap();
            assert_eq!(replies.load(Ordering::Relaxed), sent);
        });
        check_files(&t, dir.path());
    }
}

#[test]
fn wrong_hash_count_is_refused() {
    let t = torrent(&[(100, false)], BLOCK);
    let dir = tempfile::tempdir().unwrap();
    let pipeline = DiskPipeline::start(configs().remove(1)).unwrap();
    let storage = Storage::open(
        dir.path(),
        t.files.clone(),
        BLOCK,
        StorageOptions::default(),
    );
    let r = pipeline.add_torrent(storage.unwrap(), Arc::from(vec![]), Arc::new(|_| {}));
    assert!(matches!(r, Err(StorageError::BadLayout(_))));
}

#[test]
fn backend_matches_probe() {
    let [uring, blocking] = <[DiskConfig; 2]>::try_from(configs()).ok().unwrap();
    let p = DiskPipeline::start(blocking).unwrap();
    assert_eq!(p.backend(), Backend::Blocking);
    let p = DiskPipeline::start(uring).unwrap();
    let want = if crate::probe::uring_available().is_ok() {
        Backend::Uring
    } else {
        Backend::Blocking
    };
    assert_eq!(p.backend(), want);
}

#[path = "tests_nospace.rs"]
mod nospace;
