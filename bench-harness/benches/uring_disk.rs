//! Criterion benchmarks of the `uring-disk` data path.
//!
//! - `disk_write`: 32 MiB of verified 256 KiB pieces through the [`DiskPipeline`] (SHA-1 on the
//!   hashing threads, O_DIRECT writes from the pooled buffers), on io_uring and on the blocking
//!   fallback, against a single thread doing plain vectored writes (`writev` of the same
//!   buffers) through the page cache and with O_DIRECT, without hashing.
//! - `sha1`: batched SHA-1 of 256 KiB pieces from memory, one thread and two.
//!
//! Files go to a temporary directory under `$TMPDIR` (ext4 here; on tmpfs O_DIRECT falls back
//! to buffered writes and the numbers mean something else).

use std::fs::{File, OpenOptions};
use std::io::{IoSlice, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use uring_disk::{
    hash::sha1, BufferPool, DiskConfig, DiskEvent, DiskPipeline, SharedPiece, Storage, StorageFile,
    StorageOptions,
};

const PIECE: usize = 256 * 1024;
const PIECES: usize = 128;
const TOTAL: usize = PIECE * PIECES;

/// Complete pieces of varied content, in pre-touched pooled buffers. They can be submitted
/// again and again: a complete piece is immutable.
fn pieces() -> (Arc<BufferPool>, Vec<Arc<SharedPiece>>, Vec<[u8; 20]>) {
    let pool = BufferPool::new(PIECE, PIECES);
    let mut hashes = Vec::new();
    let pieces = (0..PIECES)
        .map(|i| {
            let buf = pool.try_take().expect("pool sized for every piece");
            let p =
                Arc::new(SharedPiece::new(buf, i as u32, PIECE as u32, 16384).expect("geometry"));
            let data: Vec<u8> = (0..PIECE)
                .map(|j| (j * 31 + i * 7 + j / 4093) as u8)
                .collect();
            for (b, block) in data.chunks(16384).enumerate() {
                let _ = p.write(b as u32 * 16384, block);
            }
            hashes.push(sha1(&data));
            p
        })
        .collect();
    (pool, pieces, hashes)
}

fn bench_pipeline(
    c: &mut Criterion,
    name: &str,
    force_blocking: bool,
    pieces: &[Arc<SharedPiece>],
    hashes: &[[u8; 20]],
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = vec![StorageFile {
        rel_path: "data".into(),
        length: TOTAL as u64,
        padding: false,
    }];
    let storage =
        Storage::open(dir.path(), files, PIECE as u32, StorageOptions::default()).expect("storage");
    let config = DiskConfig {
        hash_threads: 2,
        force_blocking,
        queue_limit_bytes: TOTAL as u64 * 2,
        ..DiskConfig::default()
    };
    let pipeline = DiskPipeline::start(config).expect("pipeline");
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = Arc::new(move |e: DiskEvent| {
        let ok = matches!(e, DiskEvent::PieceWritten { .. });
        let _ = tx.send(ok);
    });
    let slot = pipeline
        .add_torrent(storage, Arc::from(hashes.to_vec()), sink)
        .expect("add torrent");
    let mut g = c.benchmark_group("disk_write");
    g.throughput(Throughput::Bytes(TOTAL as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    g.bench_function(format!("pipeline_{name}_{:?}", pipeline.backend()), |b| {
        b.iter(|| {
            for (i, p) in pieces.iter().enumerate() {
                pipeline
                    .submit_piece(slot, i as u32, Arc::clone(p))
                    .expect("submit");
            }
            for _ in 0..PIECES {
                assert!(rx.recv().expect("event"), "piece not written");
            }
        })
    });
    g.finish();
}

fn writev_all(file: &mut File, pieces: &[Arc<SharedPiece>]) {
    file.seek(SeekFrom::Start(0)).expect("seek");
    let mut slices: Vec<IoSlice<'_>> = pieces
        .iter()
        .map(|p| IoSlice::new(p.as_slice().expect("complete piece")))
        .collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = file.write_vectored(rest).expect("writev");
        IoSlice::advance_slices(&mut rest, n);
    }
}

fn bench_writev(c: &mut Criterion, pieces: &[Arc<SharedPiece>]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut g = c.benchmark_group("disk_write");
    g.throughput(Throughput::Bytes(TOTAL as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    for (name, flags) in [("writev_buffered", 0), ("writev_odirect", libc::O_DIRECT)] {
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(flags)
            .open(dir.path().join(name))
            .expect("open");
        file.set_len(TOTAL as u64).expect("set_len");
        g.bench_function(name, |b| b.iter(|| writev_all(&mut file, pieces)));
    }
    g.finish();
}

fn bench_sha1(c: &mut Criterion, pieces: &[Arc<SharedPiece>]) {
    let data: Vec<&[u8]> = pieces
        .iter()
        .map(|p| p.as_slice().expect("complete"))
        .collect();
    let mut g = c.benchmark_group("sha1");
    g.throughput(Throughput::Bytes(TOTAL as u64));
    g.sample_size(10);
    g.bench_function("256KiB_pieces_1_thread", |b| {
        b.iter(|| data.iter().map(|d| sha1(d)[0]).fold(0u8, |a, x| a ^ x))
    });
    g.bench_function("256KiB_pieces_2_threads", |b| {
        b.iter(|| {
            let (left, right) = data.split_at(data.len() / 2);
            std::thread::scope(|s| {
                let h = s.spawn(|| left.iter().map(|d| sha1(d)[0]).fold(0u8, |a, x| a ^ x));
                let r = right.iter().map(|d| sha1(d)[0]).fold(0u8, |a, x| a ^ x);
                r ^ h.join().expect("hash thread")
            })
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let (_pool, pieces, hashes) = pieces();
    bench_sha1(c, &pieces);
    bench_writev(c, &pieces);
    bench_pipeline(c, "odirect", false, &pieces, &hashes);
    bench_pipeline(c, "odirect", true, &pieces, &hashes);
}

criterion_group!(uring_disk_benches, benches);
criterion_main!(uring_disk_benches);
