//! Tests of blame and parole, sans-IO, against the zero-hash test torrent (every complete piece
//! fails). Failures are logged the way the disk path does: a piece's buffer is taken complete,
//! with the sessions that wrote into it as contributors, then reported failed.

use std::time::Instant;

use super::test_torrent::{test_torrent, PIECES};
use super::*;

fn session(key: u64, t: &TorrentShared, now: Instant) -> PeerSession {
    session_having(key, &Bitfield::full(PIECES), t, now)
}

fn session_having(key: u64, has: &Bitfield, t: &TorrentShared, now: Instant) -> PeerSession {
    let addr = SocketAddr::from(([127, 0, 0, key as u8], 6881));
    let mut s = PeerSession::new(key, addr, false, false, t, now);
    let bf = has.to_wire();
    s.on_message(Message::Bitfield(&bf), now, t).unwrap();
    s.on_message(Message::Unchoke, now, t).unwrap();
    s.am_interested = true;
    s
}

/// Logs a hash failure of piece `p` supplied by `keys`.
fn fail(t: &TorrentShared, p: u32, keys: &[u64]) {
    let p = t.lengths.piece(p).unwrap();
    t.ensure_buffer(p).unwrap();
    for &k in keys {
        t.buffer_for(p, k).unwrap();
    }
    t.take_complete(p).unwrap();
    t.on_failed(p, true);
}

fn pieces_of(s: &PeerSession) -> Vec<PieceIndex> {
    let mut v: Vec<_> = s.requests.iter().map(|b| b.piece).collect();
    v.dedup();
    v
}

#[test]
fn the_sole_supplier_of_a_bad_piece_is_banned() {
    let fx = test_torrent(false);
    let t = fx.t.clone();
    let now = Instant::now();
    let mut a = session(1, &t, now);
    let mut b = session(2, &t, now);
    fail(&t, 5, &[1]);
    assert!(matches!(a.poll(now, &t), Err(PeerError::HashFailures)));
    assert!(t.is_banned(a.addr.ip()));
    assert!(t.is_culprit(1));
    // Someone else's failure is not ours.
    b.poll(now, &t).expect("not a contributor");
    assert!(!b.on_parole() && !t.is_banned(b.addr.ip()));
}

#[test]
fn a_shared_failure_means_parole_not_a_ban() {
    let fx = test_torrent(false);
    let t = fx.t.clone();
    let now = Instant::now();
    let mut a = session(1, &t, now);
    let mut c = session(3, &t, now);
    fail(&t, 30, &[1, 2]);
    // `c` starts three two-block pieces, the last one half: a partial piece with a free block.
    c.peer_reqq = 5;
    a.peer_reqq = 6;
    c.fill_requests(now, &t);
    let c_pieces = pieces_of(&c);
    assert_eq!(c_pieces.len(), 3);
    a.poll(now, &t).expect("a shared failure is not a ban");
    assert!(a.on_parole());
    assert!(!t.is_banned(a.addr.ip()));
    // On parole: only new pieces, each reserved for `a`; none of `c`'s partial pieces.
    let a_pieces = pieces_of(&a);
    assert!(!a_pieces.is_empty(), "a peer on parole still downloads");
    for p in &a_pieces {
        assert!(!c_pieces.contains(p), "joined piece {p:?} that c started");
        assert!(t.picker.is_exclusive(*p));
        assert!(a.owned_pieces().contains(p));
    }
    // Nobody else joins `a`'s pieces, even once `a` has no request left in one of them.
    let p0 = a_pieces[0];
    a.requests.retain(|b| {
        if b.piece == p0 {
            t.picker.release(*b);
        }
        b.piece != p0
    });
    c.release_all(&t);
    c.fill_requests(now, &t);
    assert!(!pieces_of(&c).contains(&p0), "c joined an exclusive piece");
    // `a` itself finishes what it started: the owned piece comes back through the hint.
    a.fill_requests(now, &t);
    assert!(pieces_of(&a).contains(&p0));
    // `a` drops us: its pieces are open to everyone again.
    a.on_disconnect(&t);
    for p in &a_pieces {
        assert!(!t.picker.is_exclusive(*p));
    }
}

#[test]
fn a_failure_shared_with_a_banned_peer_is_put_down_to_it() {
    let fx = test_torrent(false);
    let t = fx.t.clone();
    let now = Instant::now();
    let mut a = session(1, &t, now);
    t.ban_culprit(7, "127.0.0.7".parse().unwrap());
    fail(&t, 12, &[7, 1]);
    a.poll(now, &t).expect("not our fault");
    assert!(!a.on_parole());
}

#[test]
fn a_piece_that_several_peers_spoiled_is_redone_by_one() {
    let fx = test_torrent(false);
    let t = fx.t.clone();
    let now = Instant::now();
    // Piece 9 complete with blocks from two peers, then it fails.
    let p = t.lengths.piece(9).unwrap();
    let mut blocks = Vec::new();
    let all = Bitfield::full(PIECES);
    let hint = [p];
    t.picker
        .pick(&all, &hint, 2, false, 0, &|_| false, &|_| true, &mut blocks);
    assert!(blocks.iter().all(|b| b.piece == p) && blocks.len() == 2);
    for b in &blocks {
        assert_eq!(t.picker.begin_block(*b), crate::picker::Begin::Owner);
        t.picker.finish_block(*b);
    }
    fail(&t, 9, &[1, 2]);
    assert!(t.picker.is_exclusive(p), "reopened exclusive");
    // The first to claim it owns it, even a peer not on parole; another peer does not join.
    let mut only_9 = Bitfield::new(PIECES);
    only_9.set(p);
    let mut a = session_having(1, &only_9, &t, now);
    a.fill_requests(now, &t);
    assert_eq!(pieces_of(&a), vec![p]);
    assert!(!a.on_parole() && a.owned_pieces().contains(&p));
    // Give one block back: the piece is partial with a free block only `a` may take.
    let first = a.requests.pop_front().unwrap();
    t.picker.release(first);
    let mut c = session(3, &t, now);
    c.fill_requests(now, &t);
    assert!(!pieces_of(&c).is_empty());
    assert!(!pieces_of(&c).contains(&p), "c joined a's exclusive piece");
    a.fill_requests(now, &t);
    assert!(
        a.requests.contains(&first),
        "the owner takes its block again"
    );
}

#[test]
fn a_piece_keeps_one_in_flight_entry_from_its_first_claim_to_the_verdict() {
    // The in-flight table alone knows who supplied a piece: after its buffer went to the disk
    // the entry stays (verifying, no buffer, nothing claimable) until the hash result, and a
    // failed piece's next round starts from an empty entry.
    let fx = test_torrent(false);
    let t = fx.t.clone();
    let p = t.lengths.piece(3).unwrap();
    t.ensure_buffer(p).unwrap();
    t.buffer_for(p, 7).unwrap();
    assert!(t.has_buffer(p));
    t.take_complete(p).expect("the buffer, for the disk");
    assert!(!t.has_buffer(p), "the buffer is the disk's now");
    assert!(t.take_complete(p).is_none(), "taken once");
    assert_eq!(t.ensure_buffer(p), Err(crate::torrent::NoBuffer::Verifying));
    assert!(
        t.buffer_for(p, 8).is_none(),
        "no one writes into a verifying piece"
    );
    t.on_failed(p, true);
    let mut failed = Vec::new();
    t.failed_since(0, &mut failed);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].contributors, vec![7], "blame from the entry");
    t.ensure_buffer(p).expect("a new round gets a new buffer");
    assert!(t.has_buffer(p));
}
