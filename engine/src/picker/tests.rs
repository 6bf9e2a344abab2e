//! Unit tests of the picker, single-threaded, plus `check_quiescent`, the full invariant check
//! shared with the property tests.

use super::word::{receiving, FREE, RECEIVED};
use super::*;
use crate::types::BLOCK_LEN;
use std::collections::HashSet;

/// Checks every invariant that must hold when no call is in progress: word counts match the
/// block bytes, states match the counts, counters and bitmaps match the words.
pub(super) fn check_quiescent(pk: &Picker) {
    let l = pk.lengths;
    let mut expect = [0u32; 3];
    let (mut open, mut partial) = (HashSet::new(), HashSet::new());
    pk.open.for_each_from(0, |p| {
        open.insert(p);
        true
    });
    pk.partial.for_each_from(0, |p| {
        partial.insert(p);
        true
    });
    for p in l.pieces() {
        let w = pk.word(p.idx()).unwrap();
        let n = l.blocks_in_piece(p);
        let bytes: Vec<u8> = pk.block_slots(p).map(|b| b.load(SeqCst)).collect();
        let count = |v: u8| bytes.iter().filter(|&&b| b == v).count() as u32;
        assert_eq!(bytes.len() as u32, n);
        let busy = bytes.iter().any(|&v| receiving(v).is_some());
        assert!(!busy, "piece {p}: a block is still being received");
        assert_eq!(w.received(), count(RECEIVED), "piece {p}: received count");
        match w.state() {
            PieceState::Open => {
                assert_eq!(
                    count(FREE),
                    n,
                    "open piece {p} has a claimed or received block"
                )
            }
            PieceState::Partial => assert!(w.received() < n, "partial piece {p} is complete"),
            PieceState::Complete | PieceState::Verified => {
                assert_eq!(w.received(), n, "piece {p} done with missing blocks")
            }
            PieceState::Resetting => panic!("piece {p} left resetting"),
        }
        if w.in_play() {
            assert_eq!(w.free(), count(FREE), "piece {p}: word free count vs bytes");
        } else {
            assert_eq!(w.free(), 0, "piece {p}: free count outside play");
        }
        for (e, pred) in expect.iter_mut().zip(COUNTED) {
            *e += pred(w) as u32;
        }
        if w.open() {
            assert!(
                open.contains(&p.idx()),
                "open piece {p} missing from the open bitmap"
            );
        }
        if w.partial() {
            assert!(
                partial.contains(&p.idx()),
                "partial piece {p} missing from its bitmap"
            );
        }
    }
    for (i, e) in expect.iter().enumerate() {
        assert_eq!(pk.counters[i].load(SeqCst), *e, "counter {i}");
    }
}

fn geometry(total: u64, piece_len: u32) -> Lengths {
    Lengths::new(total, piece_len).unwrap()
}

fn all_wanted(l: Lengths) -> Picker {
    let n = l.num_pieces();
    Picker::new(l, &Bitfield::new(n), &Bitfield::full(n)).unwrap()
}

fn set(n: u32, pieces: &[u32]) -> Bitfield {
    let l = geometry(n as u64, 1);
    let mut b = Bitfield::new(n);
    for &p in pieces {
        b.set(l.piece(p).unwrap());
    }
    b
}

pub(super) fn pick(
    pk: &Picker,
    has: &Bitfield,
    hint: &[PieceIndex],
    max: usize,
    endgame: bool,
) -> Vec<BlockRef> {
    let mut out = Vec::new();
    let n = pk.pick(has, hint, max, endgame, 7, &|_| false, &|_| true, &mut out);
    assert_eq!(n, out.len());
    assert!(n <= max);
    out
}

fn pieces_of(blocks: &[BlockRef]) -> Vec<u32> {
    let mut v: Vec<u32> = blocks.iter().map(|b| b.piece.get()).collect();
    v.dedup();
    v
}

/// Receives and verifies every block in `blocks`.
pub(super) fn receive_all(pk: &Picker, blocks: &[BlockRef]) {
    for b in blocks {
        if let Arrival::First {
            piece_complete: true,
        } = pk.block_arrived(*b)
        {
            assert!(pk.piece_verified(b.piece));
        }
    }
}

#[test]
fn rarest_piece_first() {
    let l = geometry(4 * 2 * BLOCK_LEN as u64, 2 * BLOCK_LEN);
    let pk = all_wanted(l);
    // Availability: piece 0 by 3 peers, 1 by 2, 2 by 1, 3 by 3.
    pk.add_peer_bitfield(&set(4, &[0, 1, 2, 3]));
    pk.add_peer_bitfield(&set(4, &[0, 1, 3]));
    pk.add_peer_bitfield(&set(4, &[0, 3]));
    assert_eq!(pk.availability(l.piece(2).unwrap()), 1);
    let seed = Bitfield::full(4);
    assert_eq!(pieces_of(&pick(&pk, &seed, &[], 2, false)), vec![2]);
    assert_eq!(pieces_of(&pick(&pk, &seed, &[], 2, false)), vec![1]);
    let rest = pick(&pk, &seed, &[], 10, false);
    assert_eq!(rest.len(), 4);
    assert_eq!(
        pk.pick(
            &seed,
            &[],
            1,
            false,
            0,
            &|_| false,
            &|_| true,
            &mut Vec::new()
        ),
        0
    );
    // A disconnect lowers availability, never below zero.
    pk.remove_peer_bitfield(&set(4, &[0, 3]));
    pk.remove_peer_bitfield(&set(4, &[2]));
    pk.remove_peer_bitfield(&set(4, &[2]));
    assert_eq!(pk.availability(l.piece(0).unwrap()), 2);
    assert_eq!(pk.availability(l.piece(2).unwrap()), 0);
    check_quiescent(&pk);
}

#[test]
fn one_call_claims_several_pieces_and_only_what_the_peer_has() {
    let l = geometry(6 * 2 * BLOCK_LEN as u64, 2 * BLOCK_LEN);
    let pk = all_wanted(l);
    let has = set(6, &[1, 3, 4]);
    pk.add_peer_bitfield(&has);
    let got = pick(&pk, &has, &[], 100, false);
    assert_eq!(got.len(), 6);
    let mut ps = pieces_of(&got);
    ps.sort();
    assert_eq!(ps, vec![1, 3, 4]);
    assert!(pk.is_interesting(&set(6, &[0])));
    assert!(!pk.is_interesting(&Bitfield::new(6)));
    check_quiescent(&pk);
}

#[test]
fn equal_availability_spreads_peers_by_seed() {
    let l = geometry(64 * BLOCK_LEN as u64, BLOCK_LEN);
    let full = Bitfield::full(64);
    let mut firsts = HashSet::new();
    for seed in 0..8 {
        let pk = all_wanted(l);
        let mut out = Vec::new();
        pk.pick(&full, &[], 1, false, seed, &|_| false, &|_| true, &mut out);
        firsts.insert(out[0].piece.get());
    }
    assert!(firsts.len() >= 4, "seeds chose only {firsts:?}");
}

#[test]
fn hint_then_partial_pieces_before_new_ones() {
    let l = geometry(4 * 4 * BLOCK_LEN as u64, 4 * BLOCK_LEN);
    let pk = all_wanted(l);
    let full = Bitfield::full(4);
    // Piece 3 is the rarest; piece 0 is common.
    pk.add_peer_bitfield(&full);
    pk.add_peer_bitfield(&set(4, &[0, 1, 2]));
    let a = pick(&pk, &full, &[], 1, false);
    let b = pick(&pk, &full, &[], 5, false);
    assert_eq!(pieces_of(&a), vec![3]);
    // Peer b finishes the partial piece 3 before starting another piece.
    assert_eq!(pieces_of(&b[..3]), vec![3]);
    assert_ne!(b[3].piece.get(), 3);
    let started = b[3].piece;
    pk.release(b[0]);
    // A peer working on `started` gets its free blocks before the free block of piece 3.
    let c = pick(&pk, &full, &[started], 3, false);
    assert_eq!(pieces_of(&c), vec![started.get(), 3]);
    check_quiescent(&pk);
}

#[test]
fn endgame_duplicates_up_to_the_limit() {
    let l = geometry(2 * 2 * BLOCK_LEN as u64, 2 * BLOCK_LEN);
    let pk = all_wanted(l);
    let full = Bitfield::full(2);
    let a = pick(&pk, &full, &[], 4, true);
    assert_eq!(a.len(), 4, "free blocks are taken before endgame");
    assert!(pk.in_endgame());
    assert!(
        pick(&pk, &full, &[], 4, false).is_empty(),
        "endgame not allowed"
    );
    // The peer holding a block is never given it twice.
    let mine: HashSet<BlockRef> = a[..2].iter().copied().collect();
    let mut out = Vec::new();
    pk.pick(
        &full,
        &[],
        4,
        true,
        1,
        &|b| mine.contains(&b),
        &|_| true,
        &mut out,
    );
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|b| !mine.contains(b)));
    let third = pick(&pk, &full, &[], 4, true);
    assert_eq!(third.len(), 2, "only blocks below {MAX_DUPLICATES} claims");
    assert!(pick(&pk, &full, &[], 4, true).is_empty());
    assert_eq!(pk.snapshot().claims, 8);
    // First arrival wins, the other claim of the block is consumed.
    assert_eq!(
        pk.block_arrived(a[0]),
        Arrival::First {
            piece_complete: false
        }
    );
    assert_eq!(pk.block_arrived(a[0]), Arrival::Duplicate);
    pk.release(a[0]);
    // A released duplicate leaves the other claim in place.
    pk.release(a[1]);
    assert_eq!(pk.snapshot().blocks_free, 0);
    pk.release(a[1]);
    assert_eq!(pk.snapshot().blocks_free, 1);
    assert!(!pk.in_endgame(), "a free block ends endgame");
    check_quiescent(&pk);
}

#[test]
fn short_last_piece() {
    // Three pieces of 2 blocks, the last one 1 block + 5 bytes long.
    let total = 2 * 2 * BLOCK_LEN as u64 + BLOCK_LEN as u64 + 5;
    let l = geometry(total, 2 * BLOCK_LEN);
    let pk = all_wanted(l);
    let got = pick(&pk, &set(3, &[2]), &[], 10, false);
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].offset, got[0].len), (0, BLOCK_LEN));
    assert_eq!((got[1].offset, got[1].len), (BLOCK_LEN, 5));
    assert_eq!(
        pk.block_arrived(got[0]),
        Arrival::First {
            piece_complete: false
        }
    );
    assert_eq!(
        pk.block_arrived(got[1]),
        Arrival::First {
            piece_complete: true
        }
    );
    assert_eq!(pk.state(got[0].piece), PieceState::Complete);
    assert!(pk.piece_verified(got[0].piece));
    assert_eq!(pk.snapshot().blocks_verified, 2);
    // A full-length block at the short piece's second offset is not ours.
    let wrong = BlockRef {
        len: BLOCK_LEN,
        ..got[1]
    };
    assert_eq!(pk.block_arrived(wrong), Arrival::Unrequested);
    check_quiescent(&pk);
}

#[test]
fn piece_rounds_complete_once_and_failures_free_every_block() {
    let l = geometry(3 * BLOCK_LEN as u64, 3 * BLOCK_LEN);
    let pk = all_wanted(l);
    let full = Bitfield::full(1);
    let p = l.piece(0).unwrap();
    for round in 0..2 {
        let got = pick(&pk, &full, &[], 3, false);
        assert_eq!(got.len(), 3, "round {round}");
        let completions = got
            .iter()
            .filter(|b| {
                pk.block_arrived(**b)
                    == Arrival::First {
                        piece_complete: true,
                    }
            })
            .count();
        assert_eq!(completions, 1);
        assert!(got
            .iter()
            .all(|b| pk.block_arrived(*b) == Arrival::Duplicate));
        assert!(
            pick(&pk, &full, &[], 3, true).is_empty(),
            "complete piece is not picked"
        );
        check_quiescent(&pk);
        if round == 0 {
            assert!(pk.piece_failed(p));
            assert!(!pk.piece_failed(p), "only a complete piece can fail");
            assert_eq!(pk.snapshot().blocks_free, 3);
            assert_eq!(pk.state(p), PieceState::Open);
        }
    }
    assert!(pk.piece_verified(p));
    assert!(!pk.piece_verified(p));
    assert!(!pk.piece_failed(p), "a verified piece stays verified");
    assert!(pk.have(p) && pk.is_complete() && !pk.in_endgame());
    assert_eq!(pk.num_have(), 1);
    assert!(pick(&pk, &full, &[p], 3, true).is_empty());
    check_quiescent(&pk);
}

#[test]
fn two_phase_arrival() {
    let l = geometry(2 * BLOCK_LEN as u64, 2 * BLOCK_LEN);
    let pk = all_wanted(l);
    let full = Bitfield::full(1);
    let got = pick(&pk, &full, &[], 2, false);
    assert_eq!(pk.begin_block(got[0]), Begin::Owner);
    assert_eq!(pk.begin_block(got[0]), Begin::Duplicate);
    assert_eq!(pk.block_arrived(got[0]), Arrival::Duplicate);
    pk.release(got[0]);
    assert_eq!(
        pk.snapshot().blocks_receiving,
        1,
        "release leaves a block being received"
    );
    // The owner gives up: the block is free again and picked anew.
    pk.abort_block(got[0]);
    assert_eq!(pk.finish_block(got[0]), None);
    assert_eq!(pick(&pk, &full, &[], 2, false), vec![got[0]]);
    assert_eq!(pk.begin_block(got[1]), Begin::Owner);
    assert_eq!(pk.begin_block(got[0]), Begin::Owner);
    assert_eq!(pk.finish_block(got[1]), Some(false));
    assert_eq!(pk.finish_block(got[1]), None);
    assert_eq!(pk.finish_block(got[0]), Some(true));
    check_quiescent(&pk);
}

#[test]
fn bad_input_is_refused_without_panic() {
    let l = geometry(4 * BLOCK_LEN as u64, 2 * BLOCK_LEN);
    let pk = all_wanted(l);
    let p0 = l.piece(0).unwrap();
    let free = l.block(p0, 0).unwrap();
    assert_eq!(pk.block_arrived(free), Arrival::Unrequested);
    assert_eq!(pk.begin_block(free), Begin::Unrequested);
    pk.release(free);
    pk.abort_block(free);
    let odd = l.block_from_wire(0, 100, 1000).unwrap();
    assert_eq!(pk.block_arrived(odd), Arrival::Unrequested);
    // A block of another torrent's geometry, beyond our pieces.
    let big = geometry(100 * BLOCK_LEN as u64, BLOCK_LEN);
    let foreign = big.block(big.piece(50).unwrap(), 0).unwrap();
    assert_eq!(pk.block_arrived(foreign), Arrival::Unrequested);
    pk.release(foreign);
    assert!(!pk.piece_verified(foreign.piece));
    assert!(!pk.have(foreign.piece));
    pk.add_peer_have(foreign.piece);
    pk.set_wanted(foreign.piece, false);
    // Bitfields of the wrong length claim nothing and are ignored.
    let wrong = Bitfield::full(3);
    assert!(pick(&pk, &wrong, &[], 4, true).is_empty());
    assert!(!pk.is_interesting(&wrong));
    pk.add_peer_bitfield(&wrong);
    assert_eq!(pk.availability(p0), 0);
    assert!(!pk.piece_verified(p0), "an open piece cannot be verified");
    assert_eq!(
        Picker::new(l, &Bitfield::new(3), &Bitfield::full(2)).err(),
        Some(PickerError::BitfieldLength {
            which: "have",
            got: 3,
            expected: 2
        })
    );
    let huge = geometry(1 << 40, BLOCK_LEN);
    let n = huge.num_pieces();
    assert!(matches!(
        Picker::new(huge, &Bitfield::new(n), &Bitfield::new(n)),
        Err(PickerError::TooLarge { .. })
    ));
    check_quiescent(&pk);
}

#[test]
fn resume_data_and_file_selection() {
    let l = geometry(4 * BLOCK_LEN as u64, BLOCK_LEN);
    let pk = Picker::new(l, &set(4, &[0]), &set(4, &[0, 1, 2])).unwrap();
    check_quiescent(&pk);
    assert_eq!(pk.num_have(), 1);
    assert!(pk.have(l.piece(0).unwrap()));
    assert!(
        !pk.is_interesting(&set(4, &[0, 3])),
        "has only what we have or skip"
    );
    let full = Bitfield::full(4);
    let mut got = pick(&pk, &full, &[], 10, true);
    got.sort_by_key(|b| b.piece);
    assert_eq!(pieces_of(&got), vec![1, 2]);
    let p2 = l.piece(2).unwrap();
    pk.set_wanted(p2, false);
    assert!(!pk.is_wanted(p2));
    receive_all(&pk, &got[..1]);
    assert!(pk.is_complete(), "deselected piece 2 is not waited for");
    assert!(!pk.in_endgame());
    // Reselecting it brings it back; its outstanding claim is still valid.
    pk.set_wanted(p2, true);
    assert!(!pk.is_complete());
    assert!(pk.in_endgame());
    receive_all(&pk, &got[1..]);
    assert!(pk.is_complete());
    assert_eq!(pk.num_have(), 3);
    let p3 = l.piece(3).unwrap();
    pk.set_wanted(p3, true);
    assert!(!pk.is_complete());
    let last = pick(&pk, &full, &[], 10, true);
    assert_eq!(
        last.len(),
        1,
        "a block claimed in step 3 is not duplicated in step 4"
    );
    assert_eq!(pieces_of(&last), vec![3]);
    check_quiescent(&pk);
}

#[test]
fn rarest_first_sees_availability_drops_and_reopened_pieces() {
    // 256 one-block pieces: four words of the open bitmap, each with a cached bound.
    let l = geometry(256 * BLOCK_LEN as u64, BLOCK_LEN);
    let pk = all_wanted(l);
    let full = Bitfield::full(256);
    pk.add_peer_bitfield(&full);
    pk.add_peer_bitfield(&full);
    let first = pick(&pk, &full, &[], 1, false);
    assert_eq!(pk.availability(first[0].piece), 2);
    // A peer that had only piece 150 leaves: 150 is now the rarest, in a word with a bound.
    pk.add_peer_bitfield(&set(256, &[150]));
    let p150 = l.piece(150).unwrap();
    pk.remove_peer_bitfield(&set(256, &[150]));
    pk.remove_peer_bitfield(&set(256, &[150]));
    assert_eq!(pk.availability(p150), 1);
    let got = pick(&pk, &full, &[], 1, false);
    assert_eq!(pieces_of(&got), vec![150]);
    // While 150 is taken the next rarest is any other piece; the walk refreshes the bounds.
    let other = pick(&pk, &full, &[], 1, false);
    assert_ne!(other[0].piece, p150);
    assert_eq!(
        pk.block_arrived(got[0]),
        Arrival::First {
            piece_complete: true
        }
    );
    assert!(pk.piece_failed(p150));
    assert_eq!(pieces_of(&pick(&pk, &full, &[], 1, false)), vec![150]);
    // Rarer pieces the peer lacks do not hide the ones it has.
    let lacks_150 = {
        let mut b = Bitfield::full(256);
        b.clear(p150);
        b
    };
    pk.release(got[0]);
    let mut out = Vec::new();
    pk.pick(
        &lacks_150,
        &[],
        1,
        false,
        3,
        &|_| false,
        &|_| true,
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert_ne!(out[0].piece, p150);
    check_quiescent(&pk);
}

#[test]
fn late_release_after_a_failed_hash_loses_no_block() {
    let l = geometry(BLOCK_LEN as u64, BLOCK_LEN);
    let pk = all_wanted(l);
    let full = Bitfield::full(1);
    let b = pick(&pk, &full, &[], 1, true)[0];
    assert_eq!(pick(&pk, &full, &[], 1, true), vec![b], "endgame duplicate");
    // The first claim's data completes the piece, which fails its hash.
    assert_eq!(
        pk.block_arrived(b),
        Arrival::First {
            piece_complete: true
        }
    );
    assert!(pk.piece_failed(b.piece));
    let c = pick(&pk, &full, &[], 1, true);
    assert_eq!(c, vec![b]);
    // The second peer's stale claim is released late: the block is free again, never lost.
    pk.release(b);
    assert_eq!(pk.snapshot().blocks_free, 1);
    check_quiescent(&pk);
    assert_eq!(
        pk.block_arrived(b),
        Arrival::Unrequested,
        "the third claim was undone"
    );
    assert_eq!(pick(&pk, &full, &[], 1, true), vec![b]);
    assert_eq!(
        pk.block_arrived(b),
        Arrival::First {
            piece_complete: true
        }
    );
    assert!(pk.piece_verified(b.piece));
    check_quiescent(&pk);
}

#[test]
fn a_piece_not_admitted_gets_no_claim() {
    // `admit` is the engine's buffer check: a piece it refuses is skipped before any block of
    // it is claimed, so its word stays open and nothing has to be handed back.
    let l = geometry(8 * BLOCK_LEN as u64 * 4, 4 * BLOCK_LEN);
    let pk = all_wanted(l);
    let full = Bitfield::full(l.num_pieces());
    let asked = std::sync::Mutex::new(Vec::new());
    let admit = |p: PieceIndex| {
        asked.lock().unwrap().push(p);
        p.get().is_multiple_of(2)
    };
    let mut out = Vec::new();
    pk.pick(&full, &[], 64, true, 7, &|_| false, &admit, &mut out);
    assert_eq!(out.len(), 16, "the four admitted pieces: {out:?}");
    assert!(out.iter().all(|b| b.piece.get() % 2 == 0), "{out:?}");
    for p in l.pieces().filter(|p| p.get() % 2 == 1) {
        assert_eq!(pk.state(p), PieceState::Open, "piece {p} was touched");
        assert!(asked.lock().unwrap().contains(&p), "piece {p} never asked");
    }
    check_quiescent(&pk);
    // Endgame duplicates are gated too.
    let mut dup = Vec::new();
    pk.pick(&full, &[], 64, true, 9, &|_| false, &|_| false, &mut dup);
    assert!(dup.is_empty(), "{dup:?}");
}
