//! Criterion benchmark of the shared piece picker: how many picks per second 1, 2 and 4 threads
//! get from one `Picker` while downloading a 16,384-piece torrent (256 KiB pieces, 16 blocks each)
//! from start to finish. Each pick claims one whole piece (16 blocks) by rarest first; the blocks
//! then arrive and the piece is verified, as a shard would do it without the network.
//!
//! Measured here (2 vCPU, shared): ~320k picks/s from 1 thread, ~370-390k from 2 and 4 threads
//! (each pick being one whole 256 KiB piece, i.e. far above any disk or network rate). A plain
//! scan of all piece counters per pick gave ~33k picks/s; the cached per-word availability bounds
//! of `picker/rarest.rs` took it to the figures above.

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringtorrent::picker::{Arrival, Picker};
use ringtorrent::types::{Bitfield, Lengths, BLOCK_LEN};

const PIECES: u32 = 16_384;
const BLOCKS_PER_PIECE: u32 = 16;

fn geometry() -> Lengths {
    let piece_len = BLOCKS_PER_PIECE * BLOCK_LEN;
    // INVARIANT: non-zero lengths and a small piece count always make a valid geometry.
    Lengths::new(PIECES as u64 * piece_len as u64, piece_len).unwrap()
}

/// A picker with uneven availability: 8 peers each having a pseudo-random ~half of the pieces.
fn fresh_picker(l: Lengths) -> Picker {
    // INVARIANT: both bitfields are built from the same geometry.
    let pk = Picker::new(l, &Bitfield::new(PIECES), &Bitfield::full(PIECES)).unwrap();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..8 {
        let mut b = Bitfield::new(PIECES);
        for p in l.pieces() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x & 1 == 0 {
                b.set(p);
            }
        }
        pk.add_peer_bitfield(&b);
    }
    pk
}

/// One shard thread downloading from a seed until the picker runs dry. Returns its picks.
fn download(pk: &Picker, seed: u32) -> u64 {
    let full = Bitfield::full(PIECES);
    let mut out = Vec::with_capacity(BLOCKS_PER_PIECE as usize);
    let mut picks = 0;
    loop {
        out.clear();
        let n = pk.pick(
            &full,
            &[],
            BLOCKS_PER_PIECE as usize,
            false,
            seed,
            &|_| false,
            &|_| true,
            &mut out,
        );
        if n == 0 {
            return picks;
        }
        picks += 1;
        for b in &out {
            if let Arrival::First {
                piece_complete: true,
            } = pk.block_arrived(*b)
            {
                pk.piece_verified(b.piece);
            }
        }
    }
}

fn full_download(threads: usize, iters: u64) -> Duration {
    let l = geometry();
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let pk = Arc::new(fresh_picker(l));
        let start = Arc::new(Barrier::new(threads + 1));
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (pk, start) = (pk.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    download(&pk, 0x1234_5678u32.wrapping_mul(t as u32 + 1))
                })
            })
            .collect();
        start.wait();
        let t0 = Instant::now();
        // INVARIANT: the workers do not panic (the picker returns, never panics).
        let picks: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
        total += t0.elapsed();
        assert!(pk.is_complete());
        black_box(picks);
    }
    total
}

fn bench_picker(c: &mut Criterion) {
    let mut g = c.benchmark_group("picker_full_download");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Elements(PIECES as u64));
    for threads in [1usize, 2, 4] {
        g.bench_with_input(BenchmarkId::from_parameter(threads), &threads, |b, &t| {
            b.iter_custom(|iters| full_download(t, iters))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_picker);
criterion_main!(benches);
