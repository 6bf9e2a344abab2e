//! Tests of file priorities, sequential mode and runtime selection (`order.rs`, `set_wanted`).

use std::collections::HashSet;
use std::sync::atomic::Ordering::SeqCst;

use super::tests::check_quiescent;
use super::*;
use crate::types::BLOCK_LEN;

fn picker(pieces: u32, blocks_per_piece: u32, wanted: &[u32]) -> Picker {
    let l = Lengths::new(
        pieces as u64 * blocks_per_piece as u64 * BLOCK_LEN as u64,
        blocks_per_piece * BLOCK_LEN,
    )
    .unwrap();
    let mut w = Bitfield::new(pieces);
    for &p in wanted {
        w.set(l.piece(p).unwrap());
    }
    Picker::new(l, &Bitfield::new(pieces), &w).unwrap()
}

fn all(pieces: u32) -> Vec<u32> {
    (0..pieces).collect()
}

fn piece(pk: &Picker, p: u32) -> PieceIndex {
    pk.lengths().piece(p).unwrap()
}

/// Picks up to `max` blocks for a seeder with the given seed; returns them.
fn pick(pk: &Picker, max: usize, seed: u32) -> Vec<BlockRef> {
    let has = Bitfield::full(pk.lengths().num_pieces());
    let mut out = Vec::new();
    pk.pick(&has, &[], max, false, seed, &|_| false, &|_| true, &mut out);
    out
}

fn receive(pk: &Picker, blocks: &[BlockRef]) {
    for b in blocks {
        if let Arrival::First {
            piece_complete: true,
        } = pk.block_arrived(*b)
        {
            assert!(pk.piece_verified(b.piece));
        }
    }
}

/// The open-high bitmap holds every open high piece once quiescent.
fn check_high_bitmap(pk: &Picker) {
    let mut set = HashSet::new();
    pk.open_high.for_each_from(0, |p| {
        set.insert(p);
        true
    });
    for p in pk.lengths().pieces() {
        let w = pk.word(p.idx()).unwrap();
        if w.open_high() {
            assert!(set.contains(&p.idx()), "open high piece {p} not in bitmap");
        }
    }
}

/// Gives availabilities that make rarest-first disagree with index order.
fn skew_availability(pk: &Picker) {
    let n = pk.lengths().num_pieces();
    // Strictly rarer as the index grows: 2 * (n - p) + p % 2 peers.
    for p in 0..n {
        for _ in 0..(2 * (n - p) + p % 2) {
            pk.add_peer_have(piece(pk, p));
        }
    }
}

#[test]
fn sequential_picks_in_index_order() {
    let pk = picker(20, 2, &all(20));
    skew_availability(&pk);
    pk.set_sequential(true);
    assert!(pk.is_sequential());
    let mut order = Vec::new();
    for round in 0..20 {
        let got = pick(&pk, 2, round * 7919);
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|b| b.piece == got[0].piece));
        order.push(got[0].piece.get());
        receive(&pk, &got);
    }
    assert_eq!(order, all(20));
    assert!(pk.is_complete());
    check_quiescent(&pk);
}

#[test]
fn sequential_finishes_lowest_partial_piece_first() {
    let pk = picker(10, 4, &all(10));
    pk.set_sequential(true);
    // Two peers take half of pieces 0 and 1 each, then give them back.
    let a = pick(&pk, 2, 1);
    let b = pick(&pk, 6, 2);
    assert_eq!(a.iter().map(|x| x.piece.get()).collect::<Vec<_>>(), [0, 0]);
    let b_pieces: Vec<u32> = b.iter().map(|x| x.piece.get()).collect();
    assert_eq!(b_pieces, [0, 0, 1, 1, 1, 1]);
    receive(&pk, &a);
    for x in &b {
        pk.release(*x);
    }
    // Next peer: piece 0's two free blocks first, then piece 1.
    let c = pick(&pk, 3, 99);
    let c_pieces: Vec<u32> = c.iter().map(|x| x.piece.get()).collect();
    assert_eq!(c_pieces, [0, 0, 1]);
}

#[test]
fn rarest_first_without_sequential_is_not_index_order() {
    // The control for the test above: the same availabilities give another order.
    let pk = picker(20, 2, &all(20));
    skew_availability(&pk);
    let first = pick(&pk, 2, 3);
    assert_ne!(first[0].piece.get(), 0);
}

#[test]
fn high_pieces_come_first() {
    let pk = picker(12, 2, &all(12));
    skew_availability(&pk);
    for p in [2, 3, 7] {
        pk.set_high(piece(&pk, p), true);
    }
    assert!(pk.is_high(piece(&pk, 7)) && !pk.is_high(piece(&pk, 11)));
    check_high_bitmap(&pk);
    let mut first = Vec::new();
    for round in 0..3 {
        let got = pick(&pk, 2, round);
        first.push(got[0].piece.get());
        receive(&pk, &got);
    }
    first.sort_unstable();
    assert_eq!(first, [2, 3, 7]);
    // Then rarest first among the rest: piece 11 has the fewest peers.
    let next = pick(&pk, 2, 5);
    assert_eq!(next[0].piece.get(), 11);
    check_quiescent(&pk);
    check_high_bitmap(&pk);
}

#[test]
fn high_and_sequential_take_high_pieces_in_order() {
    let pk = picker(12, 1, &all(12));
    pk.set_sequential(true);
    for p in [9, 4, 6] {
        pk.set_high(piece(&pk, p), true);
    }
    let got: Vec<u32> = pick(&pk, 5, 0).iter().map(|b| b.piece.get()).collect();
    assert_eq!(got, [4, 6, 9, 0, 1]);
}

#[test]
fn unwanted_high_pieces_are_not_picked() {
    let pk = picker(6, 1, &[0, 1]);
    pk.set_high(piece(&pk, 4), true);
    let got: Vec<u32> = pick(&pk, 10, 0).iter().map(|b| b.piece.get()).collect();
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [0, 1]);
}

#[test]
fn complete_means_every_wanted_piece_verified() {
    let pk = picker(6, 1, &[1, 4]);
    assert!(!pk.is_complete());
    let got = pick(&pk, 10, 0);
    assert_eq!(got.len(), 2);
    receive(&pk, &got);
    assert!(pk.is_complete(), "unwanted pieces do not count");
    assert_eq!(pk.num_have(), 2);
    // Selecting more at runtime makes it incomplete again, and those pieces get picked.
    pk.set_wanted(piece(&pk, 5), true);
    assert!(!pk.is_complete());
    let more = pick(&pk, 10, 0);
    assert_eq!(more.iter().map(|b| b.piece.get()).collect::<Vec<_>>(), [5]);
    receive(&pk, &more);
    assert!(pk.is_complete());
    check_quiescent(&pk);
}

#[test]
fn deselected_piece_with_claims_still_completes() {
    let pk = picker(4, 2, &all(4));
    let got = pick(&pk, 2, 0);
    let p = got[0].piece;
    pk.set_wanted(p, false);
    // Not picked again, but the outstanding claims are honoured.
    assert!(pick(&pk, 100, 0).iter().all(|b| b.piece != p));
    receive(&pk, &got);
    assert!(pk.have(p));
}

/// Threads claim, receive and release while another toggles the wanted flag and priority of
/// every piece; at rest the invariants hold and no block is lost or doubly owned.
#[test]
fn set_wanted_races_with_claims() {
    let pk = picker(64, 4, &all(64));
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0u32;
            while !stop.load(SeqCst) {
                let p = piece(&pk, i % 64);
                pk.set_wanted(p, !i.is_multiple_of(3));
                pk.set_high(p, i.is_multiple_of(5));
                pk.set_sequential(i.is_multiple_of(7));
                i = i.wrapping_add(13);
            }
        });
        let workers: Vec<_> = (0..3u32)
            .map(|t| {
                let pk = &pk;
                s.spawn(move || {
                    for round in 0..300u32 {
                        let got = pick(pk, 6, t * 1000 + round);
                        let (keep, give) = got.split_at(got.len() / 2);
                        receive(pk, keep);
                        for b in give {
                            pk.release(*b);
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        stop.store(true, SeqCst);
    });
    // Want everything again and finish the download single-threaded.
    for p in pk.lengths().pieces() {
        pk.set_wanted(p, true);
    }
    check_quiescent(&pk);
    check_high_bitmap(&pk);
    for _ in 0..1000 {
        if pk.is_complete() {
            break;
        }
        let got = pick(&pk, 64, 0);
        receive(&pk, &got);
    }
    assert!(pk.is_complete());
    assert_eq!(pk.num_have(), 64);
    check_quiescent(&pk);
}
