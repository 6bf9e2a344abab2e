//! Tests of the upload half of the session, sans-IO: messages are fed in and the bytes the
//! session queues are decoded back. The only real object is a disk pipeline, for a torrent
//! slot; nothing is read from disk.

use std::net::SocketAddr;

use super::*;
use crate::peer::allowed_fast_set;

const BLOCK: u32 = 16 * 1024;

#[test]
fn rate_meter_converges_and_decays() {
    let t0 = Instant::now();
    let mut m = RateMeter::new(t0);
    let mut total = 0;
    for s in 1..=20 {
        total += 1_000_000;
        m.update(t0 + Duration::from_secs(s), total);
    }
    let r = m.rate_bytes_per_s();
    assert!((990_000..=1_000_000).contains(&r), "{r}");
    // Less than a second later: unchanged.
    assert_eq!(m.update(t0 + Duration::from_millis(20_500), total + 5), r);
    for s in 21..=40 {
        m.update(t0 + Duration::from_secs(s), total);
    }
    assert!(m.rate_bytes_per_s() < 10_000);
}

use super::super::test_torrent::{test_torrent as fixture, PIECES};

/// What the session sent, reduced to what these tests look at.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    Choke,
    Reject(u32, u32),
    Suggest(u32),
    Request(u32),
    Other,
}

/// Decodes and clears the session's queued output.
fn sent(s: &mut PeerSession) -> Vec<Sent> {
    let mut r = wire::Reader::new(PIECES);
    let mut got = Vec::new();
    let bytes = std::mem::take(&mut s.out);
    r.feed(&bytes, |ev| {
        got.push(match ev {
            wire::Event::Msg(Message::Choke) => Sent::Choke,
            wire::Event::Msg(Message::RejectRequest { piece, offset, .. }) => {
                Sent::Reject(piece, offset)
            }
            wire::Event::Msg(Message::SuggestPiece { piece }) => Sent::Suggest(piece),
            wire::Event::Msg(Message::Request { piece, .. }) => Sent::Request(piece),
            _ => Sent::Other,
        });
        Ok::<(), ()>(())
    })
    .unwrap();
    got
}

fn peer(fast: bool, t: &TorrentShared, now: Instant) -> PeerSession {
    let addr: SocketAddr = "127.0.0.1:6881".parse().unwrap();
    let mut s = PeerSession::new(3, addr, fast, false, t, now);
    sent(&mut s);
    s
}

/// The allowed-fast set for 127.0.0.1 and a piece outside it.
fn fast_and_other(t: &TorrentShared) -> (u32, u32) {
    let set = allowed_fast_set("127.0.0.1".parse().unwrap(), &t.info_hash, PIECES, 10);
    let other = (0..PIECES).find(|p| !set.contains(p)).unwrap();
    (set[0], other)
}

fn request(s: &mut PeerSession, piece: u32, offset: u32, t: &TorrentShared, now: Instant) {
    let m = Message::Request {
        piece,
        offset,
        len: BLOCK,
    };
    s.on_message(m, now, t).expect("a valid request");
}

#[test]
fn requests_while_choked_are_rejected_for_fast_peers_only() {
    let f = fixture(true);
    let now = Instant::now();
    let (fast_piece, other) = fast_and_other(&f.t);
    let mut s = peer(true, &f.t, now);
    request(&mut s, other, 0, &f.t, now);
    request(&mut s, fast_piece, BLOCK, &f.t, now);
    assert_eq!(sent(&mut s), vec![Sent::Reject(other, 0)]);
    // The allowed-fast request is queued for a read, the other is not.
    let mut reads = Vec::new();
    s.next_reads(&mut reads);
    assert_eq!(reads.len(), 1);
    assert_eq!(reads[0].piece.get(), fast_piece);

    // A BEP 3 peer gets no REJECT (it may not understand one) and nothing is queued.
    let mut plain = peer(false, &f.t, now);
    request(&mut plain, other, 0, &f.t, now);
    assert_eq!(sent(&mut plain), vec![]);
    plain.next_reads(&mut reads);
    assert_eq!(reads.len(), 1);
}

#[test]
fn choking_rejects_the_queue_but_keeps_allowed_fast_requests() {
    let f = fixture(true);
    let now = Instant::now();
    let (fast_piece, other) = fast_and_other(&f.t);
    let mut s = peer(true, &f.t, now);
    s.am_choking = false;
    request(&mut s, other, 0, &f.t, now);
    request(&mut s, other, BLOCK, &f.t, now);
    request(&mut s, fast_piece, 0, &f.t, now);
    assert_eq!(sent(&mut s), vec![]);
    s.choke();
    // CHOKE first, then a REJECT for each dropped request (BEP 6: so the peer does not
    // re-request them before it hears of the choke).
    assert_eq!(
        sent(&mut s),
        vec![
            Sent::Choke,
            Sent::Reject(other, 0),
            Sent::Reject(other, BLOCK)
        ]
    );
    let mut reads = Vec::new();
    s.next_reads(&mut reads);
    assert_eq!(
        reads.iter().map(|b| b.piece.get()).collect::<Vec<_>>(),
        vec![fast_piece]
    );
}

#[test]
fn a_read_that_finishes_after_a_choke_is_rejected_not_sent() {
    let f = fixture(true);
    let now = Instant::now();
    let (_, other) = fast_and_other(&f.t);
    let mut s = peer(true, &f.t, now);
    s.am_choking = false;
    request(&mut s, other, 0, &f.t, now);
    let mut reads = Vec::new();
    s.next_reads(&mut reads);
    assert_eq!(reads.len(), 1);
    s.choke();
    assert_eq!(sent(&mut s), vec![Sent::Choke]);
    assert!(
        !s.piece_ready(reads[0], &f.t),
        "a PIECE went to a choked peer"
    );
    assert_eq!(sent(&mut s), vec![Sent::Reject(other, 0)]);
    // A failed read is rejected as well.
    s.am_choking = false;
    request(&mut s, other, BLOCK, &f.t, now);
    reads.clear();
    s.next_reads(&mut reads);
    s.on_read(reads[0], None, &f.t);
    assert_eq!(sent(&mut s), vec![Sent::Reject(other, BLOCK)]);
}

#[test]
fn a_cancelled_request_is_answered_with_reject_for_fast_peers() {
    let f = fixture(true);
    let now = Instant::now();
    let (_, other) = fast_and_other(&f.t);
    let cancel = |offset| Message::Cancel {
        piece: other,
        offset,
        len: BLOCK,
    };
    let mut s = peer(true, &f.t, now);
    s.am_choking = false;
    request(&mut s, other, 0, &f.t, now);
    request(&mut s, other, BLOCK, &f.t, now);
    s.on_message(cancel(0), now, &f.t).unwrap();
    assert_eq!(sent(&mut s), vec![Sent::Reject(other, 0)]);
    // Cancelling what is not queued (never asked, or already being read) sends nothing.
    s.on_message(cancel(0), now, &f.t).unwrap();
    assert_eq!(sent(&mut s), vec![]);
    let mut reads = Vec::new();
    s.next_reads(&mut reads);
    assert_eq!(reads.len(), 1, "the cancelled request was still read");

    let mut plain = peer(false, &f.t, now);
    plain.am_choking = false;
    request(&mut plain, other, 0, &f.t, now);
    plain.on_message(cancel(0), now, &f.t).unwrap();
    assert_eq!(sent(&mut plain), vec![]);
    reads.clear();
    plain.next_reads(&mut reads);
    assert!(reads.is_empty());
}

#[test]
fn a_seeder_suggests_a_piece_once_and_only_to_fast_peers_that_lack_it() {
    let f = fixture(true);
    let now = Instant::now();
    let p = |i| f.t.lengths.piece(i).unwrap();
    let mut s = peer(true, &f.t, now);
    s.on_message(Message::Have { piece: 2 }, now, &f.t).unwrap();
    assert!(s.suggest_piece(p(5), &f.t));
    assert!(!s.suggest_piece(p(5), &f.t), "suggested twice");
    assert!(!s.suggest_piece(p(2), &f.t), "the peer has piece 2");
    assert_eq!(sent(&mut s), vec![Sent::Suggest(5)]);
    let mut plain = peer(false, &f.t, now);
    assert!(!plain.suggest_piece(p(5), &f.t));
    assert_eq!(sent(&mut plain), vec![]);
}

#[test]
fn a_suggested_piece_is_requested_first() {
    let f = fixture(false);
    let now = Instant::now();
    let mut s = peer(true, &f.t, now);
    s.on_message(Message::HaveAll, now, &f.t).unwrap();
    s.on_message(Message::SuggestPiece { piece: 33 }, now, &f.t)
        .unwrap();
    s.on_message(Message::Unchoke, now, &f.t).unwrap();
    s.poll(now, &f.t).unwrap();
    let requests: Vec<Sent> = sent(&mut s)
        .into_iter()
        .filter(|m| matches!(m, Sent::Request(_)))
        .collect();
    assert!(requests.len() >= 2, "{requests:?}");
    // Both blocks of the suggested piece come before anything else.
    assert_eq!(requests[..2], [Sent::Request(33), Sent::Request(33)]);
    assert_eq!(s.suggests_received(), 1);
}

#[test]
fn suggest_piece_needs_fast_and_a_valid_index() {
    let f = fixture(false);
    let now = Instant::now();
    let mut plain = peer(false, &f.t, now);
    let m = Message::SuggestPiece { piece: 1 };
    assert!(matches!(
        plain.on_message(m, now, &f.t),
        Err(PeerError::FastNotNegotiated)
    ));
    let mut s = peer(true, &f.t, now);
    let m = Message::SuggestPiece { piece: PIECES };
    assert!(s.on_message(m, now, &f.t).is_err());
}

#[test]
fn a_peer_that_keeps_asking_while_choked_is_a_flood() {
    let f = fixture(true);
    let now = Instant::now();
    let (_, other) = fast_and_other(&f.t);
    for fast in [true, false] {
        let mut s = peer(fast, &f.t, now);
        for _ in 0..MAX_QUEUED_REQUESTS {
            request(&mut s, other, 0, &f.t, now);
        }
        let m = Message::Request {
            piece: other,
            offset: 0,
            len: BLOCK,
        };
        assert!(
            matches!(s.on_message(m, now, &f.t), Err(PeerError::RequestFlood)),
            "fast {fast}"
        );
    }
}
