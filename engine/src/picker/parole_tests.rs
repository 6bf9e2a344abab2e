//! Unit tests of exclusive pieces: parole picks, exclusive reopening after a shared failure,
//! and the ways an exclusive piece is given back.

use super::tests::{check_quiescent, pick, receive_all};
use super::*;
use crate::types::BLOCK_LEN;

/// Four pieces of four blocks, all wanted, one peer with everything known to the picker.
fn four_by_four() -> (Picker, Bitfield) {
    let l = Lengths::new(16 * BLOCK_LEN as u64, 4 * BLOCK_LEN).unwrap();
    let pk = Picker::new(l, &Bitfield::new(4), &Bitfield::full(4)).unwrap();
    let all = Bitfield::full(4);
    pk.add_peer_bitfield(&all);
    (pk, all)
}

/// A normal pick, endgame allowed.
fn normal(pk: &Picker, has: &Bitfield, hint: &[PieceIndex], max: usize) -> Vec<BlockRef> {
    pick(pk, has, hint, max, true)
}

fn parole(pk: &Picker, has: &Bitfield, hint: &[PieceIndex], max: usize) -> Vec<BlockRef> {
    let mut out = Vec::new();
    let n = pk.pick_parole(has, hint, max, 5, &|_| false, &|_| true, &mut out);
    assert_eq!(n, out.len());
    out
}

fn pieces(blocks: &[BlockRef]) -> Vec<PieceIndex> {
    let mut v: Vec<_> = blocks.iter().map(|b| b.piece).collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn a_peer_on_parole_starts_its_own_pieces_and_no_one_joins_them() {
    let (pk, all) = four_by_four();
    // Someone else is halfway through a piece.
    let other = normal(&pk, &all, &[], 2);
    let theirs = pieces(&other)[0];
    // Parole: six blocks means one whole new piece and half of another, never `theirs`.
    let mine = parole(&pk, &all, &[], 6);
    assert_eq!(mine.len(), 6);
    let my_pieces = pieces(&mine);
    assert_eq!(my_pieces.len(), 2);
    assert!(!my_pieces.contains(&theirs));
    assert!(my_pieces.iter().all(|&p| pk.is_exclusive(p)));
    assert!(!pk.is_exclusive(theirs));
    // Others join `theirs` but not our half-claimed piece; in endgame they duplicate only
    // non-exclusive blocks.
    let next = normal(&pk, &all, &[], 16);
    for b in &next {
        assert!(
            !my_pieces.contains(&b.piece),
            "joined an exclusive piece: {b:?}"
        );
    }
    check_quiescent(&pk);
    // We continue our own piece through the hint.
    let more = parole(&pk, &all, &my_pieces, 16);
    assert_eq!(
        more.len(),
        2,
        "the two free blocks of our half piece: {more:?}"
    );
    assert!(more.iter().all(|b| my_pieces.contains(&b.piece)));
    receive_all(&pk, &mine);
    receive_all(&pk, &more);
    receive_all(&pk, &other);
    receive_all(&pk, &next);
    check_quiescent(&pk);
    assert!(pk.is_complete());
}

#[test]
fn ending_exclusivity_lets_others_finish_the_piece() {
    let (pk, all) = four_by_four();
    let mine = parole(&pk, &all, &[], 2);
    let p = mine[0].piece;
    receive_all(&pk, &mine[..1]);
    pk.release(mine[1]);
    // Half received, half free, and we are gone: nobody may join until we give it back.
    assert!(!normal(&pk, &all, &[], 16).iter().any(|b| b.piece == p));
    pk.end_exclusive(p);
    let after = normal(&pk, &all, &[], 16);
    assert_eq!(after.iter().filter(|b| b.piece == p).count(), 3);
    check_quiescent(&pk);
}

#[test]
fn a_shared_failure_reopens_the_piece_for_one_supplier() {
    let (pk, all) = four_by_four();
    let a = normal(&pk, &all, &[], 2);
    let p = a[0].piece;
    let b = normal(&pk, &all, &[p], 2);
    assert!(b.iter().all(|x| x.piece == p), "{b:?}");
    for x in a.iter().chain(&b) {
        pk.block_arrived(*x);
    }
    assert_eq!(pk.state(p), PieceState::Complete);
    assert!(pk.piece_failed_exclusive(p));
    assert!(pk.is_exclusive(p) && pk.state(p) == PieceState::Open);
    // The first to take a block of it, even a normal pick, owns the round.
    let only_p = {
        let mut bf = Bitfield::new(4);
        bf.set(p);
        bf
    };
    let first = normal(&pk, &only_p, &[], 1);
    assert_eq!(pieces(&first), vec![p]);
    assert!(
        normal(&pk, &only_p, &[], 4).is_empty(),
        "a second peer joined"
    );
    assert_eq!(
        normal(&pk, &only_p, &[p], 4).len(),
        3,
        "the owner continues"
    );
    check_quiescent(&pk);
    // A plain failure reopens it for anyone.
    let rest = normal(&pk, &all, &[], 16);
    receive_all(&pk, &first);
    receive_all(&pk, &rest);
    let mut again = normal(&pk, &only_p, &[p], 4);
    again.retain(|x| x.piece == p);
    assert!(again.is_empty(), "piece verified, nothing left");
    check_quiescent(&pk);
}

#[test]
fn an_untouched_exclusive_piece_is_open_to_all() {
    let (pk, all) = four_by_four();
    let mine = parole(&pk, &all, &[], 4);
    let p = mine[0].piece;
    assert_eq!(pieces(&mine), vec![p]);
    // Every claim given back, nothing received: the piece is as good as new.
    for b in &mine {
        pk.release(*b);
    }
    assert!(pk.is_exclusive(p) && pk.state(p) == PieceState::Partial);
    let mut only_p = Bitfield::new(4);
    only_p.set(p);
    assert_eq!(normal(&pk, &only_p, &[], 4).len(), 4);
    check_quiescent(&pk);
}

#[test]
fn parole_joins_pieces_in_progress_when_nothing_new_is_left() {
    let (pk, all) = four_by_four();
    // Others hold three blocks of every piece.
    let others = normal(&pk, &all, &[], 16);
    let keep: Vec<_> = others.iter().filter(|b| b.offset != 0).copied().collect();
    for b in others.iter().filter(|b| b.offset == 0) {
        pk.release(*b);
    }
    // No new piece exists: a peer on parole takes the free blocks rather than stall (and then,
    // in endgame, duplicates of the others' claims).
    let mine = parole(&pk, &all, &[], 16);
    assert_eq!(mine.iter().filter(|b| b.offset == 0).count(), 4, "{mine:?}");
    receive_all(&pk, &keep);
    receive_all(&pk, &mine);
    assert!(pk.is_complete());
    check_quiescent(&pk);
}
