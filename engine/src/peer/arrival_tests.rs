//! Tests of the block arrival path, sans-IO: blocks are fed to a session as the wire reader
//! would stream them. The only real object is a disk pipeline, for a torrent slot.

use std::time::Instant;

use super::test_torrent::{test_torrent, PIECES};
use super::*;

fn session(t: &TorrentShared, now: Instant) -> PeerSession {
    let addr = "127.0.0.9:6881".parse().unwrap();
    let mut s = PeerSession::new(1, addr, false, false, t, now);
    let bf = Bitfield::full(PIECES).to_wire();
    s.on_message(Message::Bitfield(&bf), now, t).unwrap();
    s.on_message(Message::Unchoke, now, t).unwrap();
    s.am_interested = true;
    s
}

#[test]
fn cancelled_blocks_that_arrive_late_are_not_unrequested() {
    let fx = test_torrent(false);
    let t = fx.t.clone();
    let now = Instant::now();
    let mut s = session(&t, now);
    // Requests given up on (a snub, or endgame cancels) many times over.
    let mut given_up = Vec::new();
    while given_up.len() < 100 {
        s.fill_requests(now, &t);
        assert!(!s.requests.is_empty(), "nothing requested");
        given_up.extend(s.requests.iter().copied());
        s.release_all(&t);
    }
    let data = vec![0u8; 16384];
    for b in &given_up {
        let chunk = &data[..b.len as usize];
        s.on_block_chunk(b.piece.get(), b.offset, b.len, 0, chunk, now, &t)
            .expect("a late block after a cancel is not a violation");
    }
    assert_eq!(s.unrequested, 0);
    assert_eq!(
        t.counters.wasted_bytes(),
        16384 * given_up.len() as u64,
        "late blocks are discarded, never written"
    );
    // Blocks that were never requested still count, and 65 of them drop the peer.
    let never = (0..PIECES)
        .flat_map(|p| [0, 16384].map(|offset| (p, offset)))
        .find(|&(p, offset)| {
            !given_up
                .iter()
                .any(|b| b.piece.get() == p && b.offset == offset)
        })
        .expect("some block was never requested");
    let res: Result<Vec<()>, PeerError> = (0..65)
        .map(|_| s.on_block_chunk(never.0, never.1, 16384, 0, &data, now, &t))
        .collect();
    assert!(matches!(res, Err(PeerError::Unrequested(65))), "{res:?}");
}

#[test]
fn data_for_a_claim_consumed_elsewhere_is_not_written() {
    // Endgame: our claim on a block is consumed by another peer's copy; that piece then fails
    // and is reset, and only then does our copy arrive. The picker says nobody claims the block,
    // so the data must not land in the piece buffer (it would be counted there but not in the
    // picker, and the piece could never complete).
    let fx = test_torrent(false);
    let t = fx.t.clone();
    let now = Instant::now();
    let mut s = session(&t, now);
    s.fill_requests(now, &t);
    let b = *s.requests.front().expect("requests");
    // Someone else takes the block's only claim and gives it up: the block is free again.
    assert_eq!(t.picker.begin_block(b), crate::picker::Begin::Owner);
    t.picker.abort_block(b);
    let data = vec![7u8; b.len as usize];
    s.on_block_chunk(b.piece.get(), b.offset, b.len, 0, &data, now, &t)
        .expect("a stale block is not a violation");
    assert!(
        !t.block_done(b),
        "stale data was written into the piece buffer"
    );
    assert_eq!(t.counters.wasted_bytes(), u64::from(b.len));
    // The block is free for the next claimant.
    let mut again = Vec::new();
    let all = Bitfield::full(PIECES);
    t.picker.pick(
        &all,
        &[b.piece],
        64,
        false,
        0,
        &|_| false,
        &|_| true,
        &mut again,
    );
    assert!(again.contains(&b), "the block was lost: {again:?}");
}

#[test]
fn a_request_the_peer_skipped_is_cancelled_and_asked_again() {
    let fx = test_torrent(false);
    let t = fx.t.clone();
    let t0 = Instant::now();
    let mut s = session(&t, t0);
    s.fill_requests(t0, &t);
    let sent: Vec<BlockRef> = s.requests.iter().copied().collect();
    assert!(sent.len() >= 3);
    let skipped = sent[0];
    // The peer answers the second request and not the first.
    let later = sent[1];
    let data = vec![1u8; later.len as usize];
    s.on_block_chunk(later.piece.get(), later.offset, later.len, 0, &data, t0, &t)
        .unwrap();
    s.out.clear();
    // Within the grace period: still waiting (peers may reorder their disk reads a little).
    s.poll(t0 + Duration::from_secs(5), &t).unwrap();
    assert!(s.requests.contains(&skipped));
    // After it: a CANCEL goes out and the claim is back with the picker.
    s.out.clear();
    let late = t0 + outstanding::SKIP_GRACE + Duration::from_secs(1);
    s.poll(late, &t).unwrap();
    let request = wire::request_bytes(skipped.piece.get(), skipped.offset, skipped.len).to_vec();
    let mut cancel = request.clone();
    cancel[4] = 8; // CANCEL has REQUEST's layout with id 8
    let at = |m: &[u8]| s.out.windows(m.len()).position(|w| w == m);
    let cancelled_at = at(&cancel).expect("no CANCEL for the skipped block");
    // Asked again at once (its piece is in progress): a fresh REQUEST after the CANCEL.
    if s.requests.contains(&skipped) {
        let again = s.out[cancelled_at..]
            .windows(request.len())
            .any(|w| w == request);
        assert!(again, "outstanding without a new REQUEST");
    }
    // The block arriving after all is late, not unrequested.
    let data = vec![2u8; skipped.len as usize];
    s.on_block_chunk(
        skipped.piece.get(),
        skipped.offset,
        skipped.len,
        0,
        &data,
        late,
        &t,
    )
    .unwrap();
    assert_eq!(s.unrequested, 0);
}

#[test]
fn with_the_pool_running_dry_no_block_is_requested_without_a_buffer() {
    // The regression behind fetching up to twice the payload from libtorrent seeders: when the
    // pool ran dry in the middle of a pick, blocks of later new pieces were still requested,
    // and their data, owned by us in the picker but without a buffer, was thrown away.
    let fx = test_torrent(false);
    let t = fx.t.clone();
    let now = Instant::now();
    let mut s = session(&t, now);
    // The disk is behind: every pooled buffer but one is taken.
    let mut held = Vec::new();
    while t.pool.available() > 1 {
        held.push(t.pool.try_take().expect("a buffer"));
    }
    s.fill_requests(now, &t);
    let asked: Vec<BlockRef> = s.requests.iter().copied().collect();
    assert!(!asked.is_empty(), "nothing requested");
    for b in &asked {
        assert!(t.has_buffer(b.piece), "{b:?} requested without a buffer");
    }
    // Every block asked for lands; nothing is wasted.
    let data = vec![3u8; 16384];
    for b in &asked {
        s.on_block_chunk(
            b.piece.get(),
            b.offset,
            b.len,
            0,
            &data[..b.len as usize],
            now,
            &t,
        )
        .unwrap();
    }
    assert_eq!(t.counters.wasted_bytes(), 0, "data was thrown away");
    // Pieces without a buffer got no claim at all.
    let snap = t.picker.snapshot();
    assert_eq!(snap.blocks_claimed, 0, "{snap:?}");
    drop(held);
}

#[test]
fn of_two_shards_finishing_a_piece_the_picker_s_completer_submits_it() {
    // Two threads finish the last two blocks of a piece at once, many times. The one that
    // gets the piece to submit must find it `Complete` in the picker: otherwise the piece can
    // be hashed and written before the picker counts its last block, `piece_verified` refuses
    // it, and the download stalls one piece short (seen with four libtorrent seeders).
    use crate::picker::PieceState;
    use std::sync::Barrier;
    let fx = test_torrent(false);
    let t = fx.t.clone();
    let all = Bitfield::full(PIECES);
    let barrier = Barrier::new(2);
    for round in 0..4000u32 {
        let p = t.lengths.piece(round % PIECES).unwrap();
        let mut blocks = Vec::new();
        let admit = |q: PieceIndex| t.ensure_buffer(q).is_ok();
        t.picker
            .pick(&all, &[p], 2, false, 0, &|_| false, &admit, &mut blocks);
        assert_eq!(blocks.len(), 2, "round {round}: {blocks:?}");
        assert!(blocks.iter().all(|b| b.piece == p));
        let writers: Vec<_> = blocks
            .iter()
            .map(|&b| {
                let (mut w, _) = t.begin_write(b, 1).expect("owner");
                w.write_at(0, &vec![round as u8; b.len as usize]).unwrap();
                (b, w)
            })
            .collect();
        let taken: Vec<bool> = std::thread::scope(|s| {
            let handles: Vec<_> = writers
                .into_iter()
                .map(|(b, w)| {
                    let (t, barrier) = (&t, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        let got = t.finish_write(b, w).expect("whole block");
                        if got.is_some() {
                            assert_eq!(
                                t.picker.state(b.piece),
                                PieceState::Complete,
                                "round {round}: submitted before the picker completed it"
                            );
                        }
                        got.is_some()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(taken.iter().filter(|&&x| x).count(), 1, "round {round}");
        // Next round of the same piece: as after a failed write (the table's entry ends, the
        // picker frees the blocks).
        t.on_failed(p, false);
        assert_eq!(t.picker.state(p), PieceState::Open, "round {round}");
    }
}

#[test]
fn endgame_duplicates_wait_until_the_peer_has_been_idle_a_while() {
    let fx = test_torrent(false);
    let t = fx.t.clone();
    let now = Instant::now();
    // Another peer claims every block: the torrent is in endgame.
    let mut others = Vec::new();
    let all = Bitfield::full(PIECES);
    t.picker.pick(
        &all,
        &[],
        1 << 20,
        false,
        0,
        &|_| false,
        &|_| true,
        &mut others,
    );
    assert!(t.picker.in_endgame());
    let mut s = session(&t, now);
    s.fill_requests(now, &t);
    assert!(
        s.requests.is_empty(),
        "a duplicate was asked for at once: {:?}",
        s.requests.iter().collect::<Vec<_>>()
    );
    s.fill_requests(now + ENDGAME_PATIENCE / 2, &t);
    assert!(s.requests.is_empty(), "asked before the patience ran out");
    s.fill_requests(now + ENDGAME_PATIENCE, &t);
    let dups: Vec<BlockRef> = s.requests.iter().copied().collect();
    assert_eq!(dups.len(), ENDGAME_MAX_OUTSTANDING, "{dups:?}");
    assert!(dups.iter().all(|b| others.contains(b)));
}
