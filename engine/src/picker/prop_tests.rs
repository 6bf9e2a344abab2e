//! Property tests: several threads drive one picker at once, as shards do, with peers that pick,
//! release, receive (one-shot and two-phase, duplicates in endgame), disconnect and fail hashes.
//! Some peers are on parole (whole pieces of their own) and some failed pieces reopen exclusive.
//! At the end every piece is verified exactly once, every block was won once per piece round,
//! and the quiescent invariants of `tests::check_quiescent` hold.

use super::tests::check_quiescent;
use super::*;
use crate::types::BLOCK_LEN;
use proptest::prelude::*;
use std::sync::Barrier;

/// Outstanding requests per simulated peer.
const PIPELINE: usize = 6;
/// Iterations after which a thread gives up (a stall fails the test).
const MAX_STEPS: usize = 400_000;

#[derive(Debug, Clone)]
struct Case {
    pieces: u32,
    blocks_per_piece: u32,
    /// Bytes cut from the last piece (0..BLOCK_LEN * blocks - 1).
    short_bytes: u32,
    threads: usize,
    peers_per_thread: usize,
    /// Stop every thread after this many steps instead of running to completion.
    stop_after: Option<usize>,
    seed: u64,
}

fn cases() -> impl Strategy<Value = Case> {
    (
        1u32..24,
        1u32..5,
        2usize..5,
        1usize..4,
        any::<u64>(),
        prop::option::of(0usize..300),
    )
        .prop_flat_map(|(pieces, bpp, threads, peers, seed, stop)| {
            (0..bpp * BLOCK_LEN).prop_map(move |short| Case {
                pieces,
                blocks_per_piece: bpp,
                short_bytes: short,
                threads,
                peers_per_thread: peers,
                stop_after: stop,
                seed,
            })
        })
}

/// xorshift64*: a per-thread generator, reproducible from the case seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the threads record, compared with the plan at the end.
struct Tally {
    /// Hash failures planned per piece (0..=2).
    planned_fails: Vec<u32>,
    fails: Vec<AtomicU32>,
    completions: Vec<AtomicU32>,
    verified: Vec<AtomicU32>,
    /// Wins (First/Owner) per block slot.
    wins: Vec<AtomicU32>,
}

struct Peer {
    has: Bitfield,
    outstanding: Vec<BlockRef>,
    connected: bool,
    seed: u32,
    /// Picks with `pick_parole`.
    parole: bool,
    /// Exclusive pieces this peer claimed blocks of (as the peer session tracks them).
    owned: Vec<PieceIndex>,
}

struct Sim<'a> {
    pk: &'a Picker,
    tally: &'a Tally,
    rng: Rng,
    /// Pieces this thread learnt were complete, to be hashed later.
    to_hash: Vec<PieceIndex>,
}

impl Sim<'_> {
    fn slot(&self, b: BlockRef) -> usize {
        b.piece.idx() * self.pk.stride + b.block_in_piece() as usize
    }

    fn completed(&mut self, b: BlockRef) {
        self.tally.completions[b.piece.idx()].fetch_add(1, SeqCst);
        self.to_hash.push(b.piece);
    }

    fn hash_some(&mut self) {
        while !self.to_hash.is_empty() && self.rng.below(3) != 0 {
            let i = self.rng.below(self.to_hash.len() as u64) as usize;
            let p = self.to_hash.swap_remove(i);
            let t = self.tally;
            if t.fails[p.idx()].load(SeqCst) < t.planned_fails[p.idx()] {
                t.fails[p.idx()].fetch_add(1, SeqCst);
                let failed = if self.rng.below(2) == 0 {
                    self.pk.piece_failed_exclusive(p)
                } else {
                    self.pk.piece_failed(p)
                };
                assert!(failed, "complete piece {p} refused to fail");
            } else {
                assert!(
                    self.pk.piece_verified(p),
                    "complete piece {p} refused to verify"
                );
                t.verified[p.idx()].fetch_add(1, SeqCst);
            }
        }
    }

    fn pick(&mut self, peer: &mut Peer) {
        let max = PIPELINE - peer.outstanding.len();
        let pk = self.pk;
        peer.owned
            .retain(|&p| pk.state(p) == PieceState::Partial && pk.is_exclusive(p));
        let mut hint: Vec<PieceIndex> = peer.outstanding.iter().map(|b| b.piece).collect();
        hint.extend(&peer.owned);
        let mut out = Vec::new();
        let mine = &peer.outstanding;
        let n = if peer.parole {
            pk.pick_parole(
                &peer.has,
                &hint,
                max,
                peer.seed,
                &|b| mine.contains(&b),
                &|_| true,
                &mut out,
            )
        } else {
            pk.pick(
                &peer.has,
                &hint,
                max,
                true,
                peer.seed,
                &|b| mine.contains(&b),
                &|_| true,
                &mut out,
            )
        };
        for b in &out {
            if pk.is_exclusive(b.piece) && !peer.owned.contains(&b.piece) {
                peer.owned.push(b.piece);
            }
        }
        assert_eq!(n, out.len());
        assert!(n <= max);
        for (i, b) in out.iter().enumerate() {
            assert!(peer.has.get(b.piece), "picked a piece the peer lacks");
            assert!(
                !mine.contains(b) && !out[..i].contains(b),
                "block claimed twice by one peer"
            );
        }
        peer.outstanding.extend(out);
    }

    /// A claim can only have vanished by the hash failure of an earlier round of its piece: its
    /// block arrived from another peer (consuming this claim), then the piece was reset.
    fn stale(&self, b: BlockRef) {
        let fails = self.tally.fails[b.piece.idx()].load(SeqCst);
        assert!(fails > 0, "claimed block {b:?} came back unrequested");
    }

    /// Resolves one outstanding block: release, one-shot arrival or two-phase arrival.
    fn resolve(&mut self, peer: &mut Peer) {
        if peer.outstanding.is_empty() {
            return;
        }
        let i = self.rng.below(peer.outstanding.len() as u64) as usize;
        let b = peer.outstanding.swap_remove(i);
        match self.rng.below(10) {
            0 => self.pk.release(b),
            1..=4 => match self.pk.block_arrived(b) {
                Arrival::First { piece_complete } => {
                    self.tally.wins[self.slot(b)].fetch_add(1, SeqCst);
                    if piece_complete {
                        self.completed(b);
                    }
                }
                Arrival::Duplicate => {}
                Arrival::Unrequested => self.stale(b),
            },
            _ => match self.pk.begin_block(b) {
                Begin::Owner if self.rng.below(8) == 0 => self.pk.abort_block(b),
                Begin::Owner => {
                    self.tally.wins[self.slot(b)].fetch_add(1, SeqCst);
                    std::thread::yield_now();
                    match self.pk.finish_block(b) {
                        Some(true) => self.completed(b),
                        Some(false) => {}
                        None => panic!("owner of {b:?} could not finish"),
                    }
                }
                Begin::Duplicate => {}
                Begin::Unrequested => self.stale(b),
            },
        }
    }

    fn disconnect(&mut self, peer: &mut Peer) {
        for b in peer.outstanding.drain(..) {
            self.pk.release(b);
        }
        for p in peer.owned.drain(..) {
            self.pk.end_exclusive(p);
        }
        self.pk.remove_peer_bitfield(&peer.has);
        peer.connected = false;
    }

    fn run(&mut self, peers: &mut [Peer], stop_after: Option<usize>) {
        let limit = stop_after.unwrap_or(MAX_STEPS);
        for _ in 0..limit {
            if stop_after.is_none() && self.pk.is_complete() {
                break;
            }
            let i = self.rng.below(peers.len() as u64) as usize;
            let peer = &mut peers[i];
            if !peer.connected {
                self.pk.add_peer_bitfield(&peer.has);
                peer.connected = true;
            }
            match self.rng.below(20) {
                0 => self.disconnect(peer),
                1..=7 => self.pick(peer),
                _ => self.resolve(peer),
            }
            self.hash_some();
        }
        for peer in peers.iter_mut().filter(|p| p.connected) {
            self.disconnect(peer);
        }
        if stop_after.is_none() {
            // Hash what this thread still holds so that the torrent can complete.
            while !self.to_hash.is_empty() {
                self.hash_some();
            }
        }
    }
}

fn peers_for(thread: usize, case: &Case, rng: &mut Rng) -> Vec<Peer> {
    (0..case.peers_per_thread)
        .map(|k| {
            let mut has = Bitfield::full(case.pieces);
            // Thread 0's first peer is a seed, so every piece stays reachable.
            if thread != 0 || k != 0 {
                for p in 0..case.pieces {
                    if rng.below(3) == 0 {
                        has.clear(
                            Lengths::new(case.pieces as u64, 1)
                                .unwrap()
                                .piece(p)
                                .unwrap(),
                        );
                    }
                }
            }
            Peer {
                has,
                outstanding: Vec::new(),
                connected: false,
                seed: rng.next() as u32,
                parole: rng.below(3) == 0,
                owned: Vec::new(),
            }
        })
        .collect()
}

fn run_case(case: &Case) {
    let piece_len = case.blocks_per_piece * BLOCK_LEN;
    let total = case.pieces as u64 * piece_len as u64 - case.short_bytes as u64;
    let l = Lengths::new(total, piece_len).unwrap();
    let n = l.num_pieces();
    let pk = Picker::new(l, &Bitfield::new(n), &Bitfield::full(n)).unwrap();
    let mut rng = Rng(case.seed | 1);
    let zeros = |k: usize| (0..k).map(|_| AtomicU32::new(0)).collect::<Vec<_>>();
    let tally = Tally {
        planned_fails: (0..n)
            .map(|_| (rng.below(4) as u32).saturating_sub(1))
            .collect(),
        fails: zeros(n as usize),
        completions: zeros(n as usize),
        verified: zeros(n as usize),
        wins: zeros(pk.blocks.len()),
    };
    let barrier = Barrier::new(case.threads);
    let unhashed: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..case.threads)
            .map(|t| {
                let mut peers = peers_for(t, case, &mut rng);
                let mut sim = Sim {
                    pk: &pk,
                    tally: &tally,
                    rng: Rng(rng.next() | 1),
                    to_hash: Vec::new(),
                };
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    sim.run(&mut peers, case.stop_after);
                    sim.to_hash.len()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    check_quiescent(&pk);
    let s = pk.snapshot();
    assert_eq!(
        (s.claims, s.blocks_claimed, s.blocks_receiving),
        (0, 0, 0),
        "{s:?}"
    );
    let blocks: u64 = l.pieces().map(|p| l.blocks_in_piece(p) as u64).sum();
    assert_eq!(
        s.blocks_free + s.blocks_received + s.blocks_verified,
        blocks,
        "{s:?}"
    );
    assert_eq!(s.pieces_complete as usize, unhashed);
    for p in l.pieces() {
        let i = p.idx();
        let rounds = tally.fails[i].load(SeqCst) + tally.verified[i].load(SeqCst);
        assert!(
            tally.verified[i].load(SeqCst) <= 1,
            "piece {p} verified twice"
        );
        assert!(tally.fails[i].load(SeqCst) <= tally.planned_fails[i]);
        let done = rounds + (pk.state(p) == PieceState::Complete) as u32;
        assert_eq!(
            tally.completions[i].load(SeqCst),
            done,
            "piece {p}: completions per round"
        );
        for k in 0..l.blocks_in_piece(p) {
            let wins = tally.wins[i * pk.stride + k as usize].load(SeqCst);
            let received = pk.blocks[i * pk.stride + k as usize].load(SeqCst) == word::RECEIVED;
            assert_eq!(
                wins,
                tally.fails[i].load(SeqCst) + received as u32,
                "piece {p} block {k}"
            );
        }
    }
    if case.stop_after.is_none() {
        let stuck: Vec<_> = l
            .pieces()
            .filter(|&p| !pk.have(p))
            .map(|p| (p, pk.state(p), pk.is_exclusive(p), pk.is_wanted(p)))
            .collect();
        assert!(pk.is_complete(), "stalled: {s:?} {stuck:?}");
        assert_eq!(pk.num_have(), n);
        assert!(!pk.in_endgame());
        for p in l.pieces() {
            assert_eq!(tally.verified[p.idx()].load(SeqCst), 1, "piece {p}");
            assert_eq!(
                tally.fails[p.idx()].load(SeqCst),
                tally.planned_fails[p.idx()]
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn concurrent_peers_download_every_piece_once(case in cases()) {
        run_case(&case);
    }
}

#[test]
fn four_threads_one_big_torrent() {
    run_case(&Case {
        pieces: 200,
        blocks_per_piece: 4,
        short_bytes: 1000,
        threads: 4,
        peers_per_thread: 3,
        stop_after: None,
        seed: 0x5eed,
    });
}
