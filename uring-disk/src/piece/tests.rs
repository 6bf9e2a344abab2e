use std::sync::atomic::AtomicUsize;

use proptest::prelude::*;

use super::*;
use crate::pool::BufferPool;

fn piece(piece_len: u32, block_len: u32) -> Arc<SharedPiece> {
    let pool = BufferPool::new(piece_len as usize, 1);
    let buf = pool.try_take().unwrap();
    Arc::new(SharedPiece::new(buf, 7, piece_len, block_len).unwrap())
}

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn whole_block_writes_complete_once() {
    let p = piece(40_000, 16384);
    let data = content(40_000);
    assert_eq!(p.block_count(), 3);
    assert_eq!(p.block_range(2), Some((32768, 40_000 - 32768)));
    assert!(p.as_slice().is_none());
    assert_eq!(
        p.write(16384, &data[16384..32768]),
        WriteOutcome::Written {
            piece_complete: false
        }
    );
    assert_eq!(p.write(16384, &data[16384..32768]), WriteOutcome::Duplicate);
    assert_eq!(
        p.write(32768, &data[32768..]),
        WriteOutcome::Written {
            piece_complete: false
        }
    );
    assert_eq!(
        p.write(0, &data[..16384]),
        WriteOutcome::Written {
            piece_complete: true
        }
    );
    assert_eq!(p.as_slice(), Some(&data[..]));
}

#[test]
fn bad_writes_are_refused_not_panics() {
    let p = piece(40_000, 16384);
    let data = content(40_000);
    for (off, len) in [
        (1, 16384),
        (0, 16383),
        (0, 16385),
        (32768, 16384),
        (49152, 1),
    ] {
        assert!(
            matches!(p.write(off, &data[..len]), WriteOutcome::Invalid(_)),
            "{off} {len}"
        );
    }
    assert!(p.begin_block(3).is_none());
    let mut w = p.begin_block(0).unwrap();
    assert!(matches!(w.write_at(1, b"x"), Err(BlockError::Gap { .. })));
    assert!(matches!(
        w.write_at(0, &data[..16385]),
        Err(BlockError::TooLong { .. })
    ));
    assert!(matches!(
        w.write_at(u32::MAX, b""),
        Err(BlockError::Gap { .. })
    ));
    w.write_at(0, &data[..100]).unwrap();
    assert!(matches!(w.finish(), Err(BlockError::Incomplete { .. })));
    assert!(!p.is_block_done(0));
    assert!(
        p.begin_block(0).is_some(),
        "an incomplete finish frees the block"
    );
}

#[test]
fn bad_geometry_is_refused() {
    let pool = BufferPool::new(4096, 4);
    for (len, block) in [(0, 16384), (100, 0), (4097, 16384)] {
        let buf = pool.try_take().unwrap();
        assert!(matches!(
            SharedPiece::new(buf, 0, len, block),
            Err(BlockError::BadGeometry { .. })
        ));
    }
    assert_eq!(pool.available(), 4, "refused buffers go back to the pool");
}

#[test]
fn chunks_abort_and_retry() {
    let p = piece(16384 * 2, 16384);
    let data = content(16384 * 2);
    let mut w = p.begin_block(1).unwrap();
    assert!(p.begin_block(1).is_none(), "held by another writer");
    w.write_at(0, &data[16384..20000]).unwrap();
    w.abort();
    let mut w = p.begin_block(1).unwrap();
    for c in data[16384..].chunks(1000).enumerate() {
        w.write_at(c.0 as u32 * 1000, c.1).unwrap();
    }
    // Rewriting an already written part is allowed.
    w.write_at(0, &data[16384..16400]).unwrap();
    assert_eq!(
        w.finish().unwrap(),
        BlockDone {
            piece_complete: false
        }
    );
    assert!(p.begin_block(1).is_none(), "done is final");
    let w = p.begin_block(0).unwrap();
    drop(w);
    assert!(!p.is_block_done(0));
    assert_eq!(
        p.write(0, &data[..16384]),
        WriteOutcome::Written {
            piece_complete: true
        }
    );
    assert_eq!(p.as_slice(), Some(&data[..]));
}

#[test]
fn racing_threads_never_share_a_block_and_complete_once() {
    for round in 0..20 {
        let p = piece(16384 * 64 + 5, 16384);
        let data = content(16384 * 64 + 5);
        let completions = AtomicUsize::new(0);
        let wins: Vec<AtomicUsize> = (0..p.block_count()).map(|_| AtomicUsize::new(0)).collect();
        std::thread::scope(|s| {
            for t in 0..4 {
                let (p, data, completions, wins) = (&p, &data, &completions, &wins);
                s.spawn(move || {
                    // Each thread walks the blocks in a different order, in small chunks.
                    let n = p.block_count();
                    for k in 0..n {
                        let idx = (k * (2 * t + 1) + round) % n;
                        let Some(mut w) = p.begin_block(idx) else {
                            continue;
                        };
                        wins[idx as usize].fetch_add(1, Ordering::Relaxed);
                        let (start, len) = (w.offset() as usize, w.len() as usize);
                        for (i, c) in data[start..start + len].chunks(4000).enumerate() {
                            w.write_at(i as u32 * 4000, c).unwrap();
                        }
                        if w.finish().unwrap().piece_complete {
                            completions.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert!(wins.iter().all(|w| w.load(Ordering::Relaxed) == 1));
        assert_eq!(completions.load(Ordering::Relaxed), 1);
        assert_eq!(p.as_slice(), Some(&data[..]));
    }
}

proptest! {
    /// Random interleavings of claim, chunked writes, aborts and finishes: whatever happens,
    /// completion fires once, exactly when every block is done, with the right bytes.
    #[test]
    fn any_schedule_keeps_the_invariants(
        piece_len in 1u32..100_000,
        ops in proptest::collection::vec((0u32..8, 1usize..20_000, any::<bool>()), 1..200),
    ) {
        let p = piece(piece_len, 16384);
        let data = content(piece_len as usize);
        let mut completions = 0;
        for (idx, chunk, abort) in ops {
            let Some(mut w) = p.begin_block(idx) else {
                prop_assert!(idx >= p.block_count() || p.is_block_done(idx));
                continue;
            };
            let (start, len) = (w.offset() as usize, w.len() as usize);
            for (i, c) in data[start..start + len].chunks(chunk).enumerate() {
                w.write_at((i * chunk) as u32, c).unwrap();
            }
            if abort {
                w.abort();
                prop_assert!(!p.is_block_done(idx));
            } else if w.finish().unwrap().piece_complete {
                completions += 1;
            }
        }
        for idx in 0..p.block_count() {
            if let Some(mut w) = p.begin_block(idx) {
                let (start, len) = (w.offset() as usize, w.len() as usize);
                w.write_at(0, &data[start..start + len]).unwrap();
                if w.finish().unwrap().piece_complete {
                    completions += 1;
                }
            }
        }
        prop_assert_eq!(completions, 1);
        prop_assert_eq!(p.as_slice(), Some(&data[..]));
    }
}

fn write_blocks(p: &Arc<SharedPiece>, data: &[u8], order: &[u32]) {
    for &idx in order {
        let (start, len) = p.block_range(idx).unwrap();
        let out = p.write(start, &data[start as usize..(start + len) as usize]);
        assert!(matches!(out, WriteOutcome::Written { .. }), "{out:?}");
    }
}

#[test]
fn streamed_hash_verifies_in_order_and_out_of_order() {
    let data = content(40_000);
    let expected = crate::hash::sha1(&data);
    for order in [[0, 1, 2], [1, 0, 2], [2, 1, 0]] {
        let p = piece(40_000, 16384);
        write_blocks(&p, &data, &order);
        // Every block was hashed as it (or the gap before it) landed.
        assert!(p.is_streamed(), "{order:?}");
        assert_eq!(p.verify(&expected).map(|w| w.piece()), Some(7), "{order:?}");
        assert!(p.verify(&expected).is_none(), "one witness per piece");
    }
}

#[test]
fn streamed_hash_refuses_bad_or_incomplete_pieces() {
    let data = content(40_000);
    let expected = crate::hash::sha1(&data);
    let p = piece(40_000, 16384);
    write_blocks(&p, &data, &[0, 2]);
    assert!(!p.is_streamed(), "block 2 waits for the gap before it");
    assert!(p.verify(&expected).is_none(), "incomplete");
    let mut bad = data.clone();
    bad[20_000] ^= 1;
    let p = piece(40_000, 16384);
    write_blocks(&p, &bad, &[0, 1, 2]);
    assert!(p.verify(&expected).is_none(), "a flipped byte");
}

#[test]
fn streamed_hash_with_concurrent_writers() {
    // Blocks finished by several threads in any order: the stream still covers each once.
    let data = Arc::new(content(1 << 20));
    let expected = crate::hash::sha1(&data);
    for _ in 0..20 {
        let p = piece(1 << 20, 16384);
        let threads: Vec<_> = (0..4u32)
            .map(|t| {
                let (p, data) = (Arc::clone(&p), Arc::clone(&data));
                std::thread::spawn(move || {
                    let order: Vec<u32> = (0..64).filter(|i| i % 4 == t).collect();
                    write_blocks(&p, &data, &order);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(p.is_complete());
        assert_eq!(p.verify(&expected).map(|w| w.piece()), Some(7));
    }
}
