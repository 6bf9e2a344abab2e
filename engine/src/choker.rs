//! The choker (BEP 3 "choking and optimistic unchoking"), sans-IO: rates and time in, choke and
//! unchoke decisions out. The caller calls [`Choker::tick`] about once a second with every
//! connected peer of one torrent and sends CHOKE/UNCHOKE for the decisions it returns.
//!
//! Rules:
//! - Leeching (tit-for-tat): every `recompute_interval` (10 s) the `upload_slots` (4) regular
//!   slots go to the interested peers that give us the most data. A peer that is snubbing us
//!   (we have been interested for `snub_timeout`, 60 s, and it sent no block in that time)
//!   ranks after every other peer, so it loses its regular slot to anyone who wants it.
//! - Seeding: slots go by turns. An unchoked peer keeps its slot for `seed_turn` (30 s); then
//!   interested peers that wait, longest-waiting first, take it. Upload rate orders peers inside
//!   a group, so fast peers are kept when slots are short and hold slots nobody else wants.
//! - Both modes: `optimistic_slots` (1) extra unchokes, drawn at random among the other
//!   interested peers every `optimistic_interval` (30 s), with peers connected for less than
//!   `new_peer_window` three times as likely (they have nothing to trade yet).
//! - Between recomputes a tick only fills free slots (so a new interested peer does not wait up
//!   to 10 s when nobody else wants the slot) and chokes peers that lost interest.
//!
//! Invariants: at most `upload_slots + optimistic_slots` peers are unchoked after a tick; only
//! interested peers are unchoked; peers start choked (as connections do, BEP 3); the choker
//! forgets a peer as soon as it is missing from a tick.
//!
//! The file runs past 500 lines only because of its tests (about half of it).
//!
//! Wired in through [`crate::torrent::ChokeBoard`] (one choker per torrent, shared by shards).

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rand::Rng;

/// The caller's handle for a peer connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey(pub u64);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChokerConfig {
    pub upload_slots: usize,
    pub optimistic_slots: usize,
    pub recompute_interval: Duration,
    pub optimistic_interval: Duration,
    pub snub_timeout: Duration,
    pub seed_turn: Duration,
    pub new_peer_window: Duration,
}

impl Default for ChokerConfig {
    fn default() -> Self {
        ChokerConfig {
            upload_slots: 4,
            optimistic_slots: 1,
            recompute_interval: Duration::from_secs(10),
            optimistic_interval: Duration::from_secs(30),
            snub_timeout: Duration::from_secs(60),
            seed_turn: Duration::from_secs(30),
            new_peer_window: Duration::from_secs(90),
        }
    }
}

/// What the choker needs to know about one peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerRates {
    pub key: PeerKey,
    /// The peer is interested in us (only interested peers are unchoked).
    pub peer_interested: bool,
    /// Payload rate from the peer to us.
    pub download_rate_bytes_per_s: u64,
    /// Payload rate from us to the peer.
    pub upload_rate_bytes_per_s: u64,
    /// Since when we are interested in the peer; `None` while we are not.
    pub am_interested_since: Option<Instant>,
    /// When the last block from this peer arrived.
    pub last_block_at: Option<Instant>,
    pub connected_at: Instant,
}

/// Send CHOKE (`unchoke == false`) or UNCHOKE to `peer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChokeDecision {
    pub peer: PeerKey,
    pub unchoke: bool,
}

#[derive(Clone, Copy, Debug)]
struct Memo {
    unchoked: bool,
    optimistic: bool,
    /// When `unchoked` last changed (connection time for a peer never unchoked).
    since: Instant,
}

#[derive(Debug)]
pub struct Choker {
    cfg: ChokerConfig,
    memo: HashMap<PeerKey, Memo>,
    next_recompute: Option<Instant>,
    next_optimistic: Option<Instant>,
    seeding: bool,
}

impl Choker {
    pub fn new(cfg: ChokerConfig) -> Self {
        Choker {
            cfg,
            memo: HashMap::new(),
            next_recompute: None,
            next_optimistic: None,
            seeding: false,
        }
    }

    /// Changes the number of regular slots; takes effect at the next recompute.
    pub fn set_upload_slots(&mut self, slots: usize) {
        self.cfg.upload_slots = slots;
    }

    /// Whether we currently unchoke `peer` (as of the last tick).
    pub fn is_unchoked(&self, peer: PeerKey) -> bool {
        self.memo.get(&peer).is_some_and(|m| m.unchoked)
    }

    /// Whether `peer` holds an optimistic slot.
    #[cfg(test)]
    pub fn is_optimistic(&self, peer: PeerKey) -> bool {
        self.memo.get(&peer).is_some_and(|m| m.optimistic)
    }

    /// Decides who is unchoked now. `peers` is every connected peer of the torrent (a key that
    /// appears twice counts once); `rng` draws the optimistic unchokes. Returns only changes.
    pub fn tick(
        &mut self,
        now: Instant,
        peers: &[PeerRates],
        seeding: bool,
        rng: &mut impl Rng,
    ) -> Vec<ChokeDecision> {
        let mut seen = HashSet::with_capacity(peers.len());
        let peers: Vec<&PeerRates> = peers.iter().filter(|p| seen.insert(p.key)).collect();
        self.memo.retain(|k, _| seen.contains(k));
        for p in &peers {
            self.memo.entry(p.key).or_insert(Memo {
                unchoked: false,
                optimistic: false,
                since: p.connected_at,
            });
        }
        let full = seeding != self.seeding || self.next_recompute.is_none_or(|t| now >= t);
        self.seeding = seeding;
        let regular = if full {
            self.next_recompute = Some(now + self.cfg.recompute_interval);
            let mut r = self.ranked(now, &peers);
            r.truncate(self.cfg.upload_slots);
            r
        } else {
            self.keep_and_fill(now, &peers)
        };
        let optimistic = self.optimistic(now, &peers, &regular, rng);
        self.apply(now, &peers, &regular, &optimistic)
    }

    /// Between recomputes: regular peers still interested keep their slots, free ones go to
    /// the best ranked waiting peers.
    fn keep_and_fill(&self, now: Instant, peers: &[&PeerRates]) -> Vec<PeerKey> {
        let mut regular: Vec<PeerKey> = peers
            .iter()
            .filter(|p| p.peer_interested)
            .filter(|p| {
                self.memo
                    .get(&p.key)
                    .is_some_and(|m| m.unchoked && !m.optimistic)
            })
            .map(|p| p.key)
            .collect();
        regular.truncate(self.cfg.upload_slots);
        let free = self.cfg.upload_slots - regular.len();
        let fill: Vec<PeerKey> = self
            .ranked(now, peers)
            .into_iter()
            .filter(|k| !self.memo.get(k).is_some_and(|m| m.unchoked))
            .take(free)
            .collect();
        regular.extend(fill);
        regular
    }

    /// Interested peers, best candidate for a regular slot first.
    fn ranked(&self, now: Instant, peers: &[&PeerRates]) -> Vec<PeerKey> {
        let mut cands: Vec<&PeerRates> = peers
            .iter()
            .copied()
            .filter(|p| p.peer_interested)
            .collect();
        if self.seeding {
            cands.sort_by_key(|p| {
                let m = self.memo.get(&p.key);
                let since = m.map_or(p.connected_at, |m| m.since);
                let unchoked = m.is_some_and(|m| m.unchoked);
                let turn_over = now.saturating_duration_since(since) >= self.cfg.seed_turn;
                let group = match (unchoked, turn_over) {
                    (true, false) => 0, // within its turn
                    (false, _) => 1,    // waiting
                    (true, true) => 2,  // turn over: keeps the slot only if nobody waits
                };
                // Waiting peers: longest wait first. Others: fastest first.
                let wait_order = if unchoked { now } else { since };
                (group, wait_order, Reverse(p.upload_rate_bytes_per_s), p.key)
            });
        } else {
            cands.sort_by_key(|p| {
                (
                    self.snubbed(now, p),
                    Reverse(p.download_rate_bytes_per_s),
                    Reverse(p.upload_rate_bytes_per_s),
                    p.key,
                )
            });
        }
        cands.into_iter().map(|p| p.key).collect()
    }

    /// Anti-snubbing: interested in the peer for `snub_timeout` with no block in that time.
    fn snubbed(&self, now: Instant, p: &PeerRates) -> bool {
        let Some(since) = p.am_interested_since else {
            return false;
        };
        let last = p.last_block_at.map_or(since, |b| b.max(since));
        now.saturating_duration_since(last) >= self.cfg.snub_timeout
    }

    /// Keeps the optimistic peers that are still eligible until the rotation is due, then
    /// draws new ones, weighting recently connected peers 3:1.
    fn optimistic(
        &mut self,
        now: Instant,
        peers: &[&PeerRates],
        regular: &[PeerKey],
        rng: &mut impl Rng,
    ) -> Vec<PeerKey> {
        let rotate = self.next_optimistic.is_none_or(|t| now >= t);
        if rotate {
            self.next_optimistic = Some(now + self.cfg.optimistic_interval);
        }
        let eligible = |p: &&&PeerRates| p.peer_interested && !regular.contains(&p.key);
        let mut chosen: Vec<PeerKey> = if rotate {
            Vec::new()
        } else {
            peers
                .iter()
                .filter(eligible)
                .filter(|p| self.memo.get(&p.key).is_some_and(|m| m.optimistic))
                .map(|p| p.key)
                .collect()
        };
        chosen.truncate(self.cfg.optimistic_slots);
        let mut pool: Vec<(PeerKey, u32)> = peers
            .iter()
            .filter(eligible)
            .filter(|p| !chosen.contains(&p.key))
            .map(|p| {
                let new = now.saturating_duration_since(p.connected_at) < self.cfg.new_peer_window;
                (p.key, if new { 3 } else { 1 })
            })
            .collect();
        while chosen.len() < self.cfg.optimistic_slots && !pool.is_empty() {
            let total: u32 = pool.iter().map(|&(_, w)| w).sum();
            let mut pick = rng.random_range(0..total);
            let i = pool
                .iter()
                .position(|&(_, w)| {
                    let hit = pick < w;
                    pick = pick.saturating_sub(w);
                    hit
                })
                .unwrap_or(pool.len() - 1);
            chosen.push(pool.swap_remove(i).0);
        }
        chosen
    }

    /// Records the new state and returns what changed, in the order of `peers`.
    fn apply(
        &mut self,
        now: Instant,
        peers: &[&PeerRates],
        regular: &[PeerKey],
        optimistic: &[PeerKey],
    ) -> Vec<ChokeDecision> {
        let mut out = Vec::new();
        for p in peers {
            let unchoke = regular.contains(&p.key) || optimistic.contains(&p.key);
            let Some(m) = self.memo.get_mut(&p.key) else {
                continue;
            };
            m.optimistic = optimistic.contains(&p.key);
            if m.unchoked != unchoke {
                m.unchoked = unchoke;
                m.since = now;
                out.push(ChokeDecision {
                    peer: p.key,
                    unchoke,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn peer(key: u64, t0: Instant, down: u64, up: u64) -> PeerRates {
        PeerRates {
            key: PeerKey(key),
            peer_interested: true,
            download_rate_bytes_per_s: down,
            upload_rate_bytes_per_s: up,
            am_interested_since: Some(t0),
            last_block_at: None,
            connected_at: t0,
        }
    }

    fn unchoked(c: &Choker, peers: &[PeerRates]) -> Vec<u64> {
        peers
            .iter()
            .filter(|p| c.is_unchoked(p.key))
            .map(|p| p.key.0)
            .collect()
    }

    fn no_optimistic() -> ChokerConfig {
        ChokerConfig {
            optimistic_slots: 0,
            ..ChokerConfig::default()
        }
    }

    #[test]
    fn leeching_unchokes_the_best_uploaders_plus_one_optimistic() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(1);
        let peers: Vec<PeerRates> = (0..7).map(|k| peer(k, t0, k * 1000, 0)).collect();
        let mut c = Choker::new(ChokerConfig::default());
        let d = c.tick(t0, &peers, false, &mut rng);
        assert_eq!(d.len(), 5);
        assert!(d.iter().all(|d| d.unchoke));
        for k in [6, 5, 4, 3] {
            assert!(c.is_unchoked(PeerKey(k)) && !c.is_optimistic(PeerKey(k)));
        }
        let opt: Vec<u64> = (0..3).filter(|&k| c.is_optimistic(PeerKey(k))).collect();
        assert_eq!(opt.len(), 1);
        assert_eq!(unchoked(&c, &peers).len(), 5);
    }

    #[test]
    fn rates_are_reconsidered_every_ten_seconds_only() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(2);
        let mut peers: Vec<PeerRates> = (0..6).map(|k| peer(k, t0, k * 1000, 0)).collect();
        let mut c = Choker::new(no_optimistic());
        c.tick(t0, &peers, false, &mut rng);
        assert_eq!(unchoked(&c, &peers), vec![2, 3, 4, 5]);
        peers[0].download_rate_bytes_per_s = 1_000_000;
        let d = c.tick(t0 + Duration::from_secs(9), &peers, false, &mut rng);
        assert!(d.is_empty(), "{d:?}");
        let d = c.tick(t0 + Duration::from_secs(10), &peers, false, &mut rng);
        assert_eq!(
            d,
            vec![
                ChokeDecision {
                    peer: PeerKey(0),
                    unchoke: true
                },
                ChokeDecision {
                    peer: PeerKey(2),
                    unchoke: false
                },
            ]
        );
    }

    #[test]
    fn snubbing_peer_loses_its_regular_slot() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(3);
        let mut peers: Vec<PeerRates> = (0..5).map(|k| peer(k, t0, 100 + k, 0)).collect();
        // Peer 4 has the best rate, but its last block is 60 s old while we are interested.
        let t = t0 + Duration::from_secs(70);
        for p in &mut peers {
            p.last_block_at = Some(t - Duration::from_secs(5));
        }
        peers[4].last_block_at = Some(t - Duration::from_secs(60));
        let mut c = Choker::new(no_optimistic());
        c.tick(t, &peers, false, &mut rng);
        assert_eq!(unchoked(&c, &peers), vec![0, 1, 2, 3]);
        // With nobody else wanting the slot it still gets one.
        let few = &peers[2..];
        let mut c = Choker::new(no_optimistic());
        c.tick(t, few, false, &mut rng);
        assert_eq!(unchoked(&c, few), vec![2, 3, 4]);
        // Not snubbing if we were not interested, or became interested recently.
        peers[4].am_interested_since = None;
        let mut c = Choker::new(no_optimistic());
        c.tick(t, &peers, false, &mut rng);
        assert!(c.is_unchoked(PeerKey(4)));
        peers[4].am_interested_since = Some(t - Duration::from_secs(10));
        let mut c = Choker::new(no_optimistic());
        c.tick(t, &peers, false, &mut rng);
        assert!(c.is_unchoked(PeerKey(4)));
    }

    #[test]
    fn optimistic_slot_rotates_every_thirty_seconds() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(4);
        let peers: Vec<PeerRates> = (0..12).map(|k| peer(k, t0, 1000 + k, 0)).collect();
        let mut c = Choker::new(ChokerConfig::default());
        let mut history = Vec::new();
        for s in 0..300u64 {
            c.tick(t0 + Duration::from_secs(s), &peers, false, &mut rng);
            let opt: Vec<u64> = peers
                .iter()
                .filter(|p| c.is_optimistic(p.key))
                .map(|p| p.key.0)
                .collect();
            assert_eq!(opt.len(), 1);
            assert!(opt[0] < 8, "optimistic peer is not one of the regular ones");
            assert_eq!(unchoked(&c, &peers).len(), 5);
            history.push(opt[0]);
        }
        for (s, w) in history.windows(2).enumerate() {
            if (s + 1) % 30 != 0 {
                assert_eq!(w[0], w[1], "changed at {}s", s + 1);
            }
        }
        let distinct: HashSet<u64> = history.iter().copied().collect();
        assert!(distinct.len() >= 4, "{distinct:?}");
    }

    #[test]
    fn new_peers_are_three_times_as_likely_to_be_drawn() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(600);
        let mut peers: Vec<PeerRates> = (0..4).map(|k| peer(k, t0, 0, 0)).collect();
        peers[3].connected_at = now - Duration::from_secs(5);
        let cfg = ChokerConfig {
            upload_slots: 0,
            ..ChokerConfig::default()
        };
        let mut rng = StdRng::seed_from_u64(5);
        let mut new_drawn = 0;
        for _ in 0..3000 {
            let mut c = Choker::new(cfg);
            c.tick(now, &peers, false, &mut rng);
            new_drawn += c.is_optimistic(PeerKey(3)) as u32;
        }
        // Expected share 3/6.
        assert!((1300..1700).contains(&new_drawn), "{new_drawn}");
    }

    #[test]
    fn free_slots_are_filled_without_waiting_for_a_recompute() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(6);
        let mut peers: Vec<PeerRates> = (0..3).map(|k| peer(k, t0, 10, 0)).collect();
        peers[2].peer_interested = false;
        let mut c = Choker::new(no_optimistic());
        c.tick(t0, &peers, false, &mut rng);
        assert_eq!(unchoked(&c, &peers), vec![0, 1]);
        peers[2].peer_interested = true;
        let d = c.tick(t0 + Duration::from_secs(1), &peers, false, &mut rng);
        assert_eq!(
            d,
            vec![ChokeDecision {
                peer: PeerKey(2),
                unchoke: true
            }]
        );
        // Losing interest frees the slot at once; a disconnected peer is forgotten.
        peers[0].peer_interested = false;
        let d = c.tick(t0 + Duration::from_secs(2), &peers, false, &mut rng);
        assert_eq!(
            d,
            vec![ChokeDecision {
                peer: PeerKey(0),
                unchoke: false
            }]
        );
        let d = c.tick(t0 + Duration::from_secs(3), &peers[1..], false, &mut rng);
        assert!(d.is_empty());
        assert!(!c.is_unchoked(PeerKey(0)) && c.memo.len() == 2);
    }

    #[test]
    fn seeding_gives_every_interested_peer_a_turn() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(7);
        let peers: Vec<PeerRates> = (0..14)
            .map(|k| PeerRates {
                am_interested_since: None,
                ..peer(k, t0, 0, 1000 * (k + 1))
            })
            .collect();
        let mut c = Choker::new(ChokerConfig::default());
        let mut last_unchoked = vec![t0; peers.len()];
        let mut ever = HashSet::new();
        for s in 0..600u64 {
            let now = t0 + Duration::from_secs(s);
            c.tick(now, &peers, true, &mut rng);
            let u = unchoked(&c, &peers);
            assert!(u.len() <= 5);
            for k in u {
                ever.insert(k);
                last_unchoked[k as usize] = now;
            }
            // Nobody waits more than a bounded time: 14 peers over 4 turn slots of 30 s plus
            // recompute granularity.
            for (k, t) in last_unchoked.iter().enumerate() {
                assert!(
                    now.duration_since(*t) <= Duration::from_secs(150),
                    "peer {k} starved at {s}s"
                );
            }
        }
        assert_eq!(ever.len(), peers.len());
    }

    #[test]
    fn seeding_with_spare_slots_keeps_everyone_unchoked() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(8);
        let peers: Vec<PeerRates> = (0..3).map(|k| peer(k, t0, 0, 10 * k)).collect();
        let mut c = Choker::new(ChokerConfig::default());
        assert_eq!(c.tick(t0, &peers, true, &mut rng).len(), 3);
        for s in 1..200 {
            let d = c.tick(t0 + Duration::from_secs(s), &peers, true, &mut rng);
            assert!(d.is_empty(), "flapped at {s}s: {d:?}");
        }
    }

    #[test]
    fn seeding_prefers_fast_peers_within_their_turn() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(9);
        let mut peers: Vec<PeerRates> = (0..6).map(|k| peer(k, t0, 0, 0)).collect();
        let cfg = ChokerConfig {
            upload_slots: 2,
            optimistic_slots: 0,
            ..ChokerConfig::default()
        };
        let mut c = Choker::new(cfg);
        c.tick(t0, &peers, false, &mut rng);
        let before = unchoked(&c, &peers);
        assert_eq!(before, vec![0, 1]);
        // Switching to seeding forces a recompute; 2 slots, shrink to 1: the faster one stays.
        peers[1].upload_rate_bytes_per_s = 500;
        c.cfg.upload_slots = 1;
        c.tick(t0 + Duration::from_secs(1), &peers, true, &mut rng);
        assert_eq!(unchoked(&c, &peers), vec![1]);
    }

    #[test]
    fn duplicate_keys_count_once_and_uninterested_stay_choked() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(10);
        let mut p = peer(1, t0, 5, 5);
        let mut c = Choker::new(ChokerConfig::default());
        let d = c.tick(t0, &[p, p, p], false, &mut rng);
        assert_eq!(
            d,
            vec![ChokeDecision {
                peer: PeerKey(1),
                unchoke: true
            }]
        );
        p.key = PeerKey(2);
        p.peer_interested = false;
        let d = c.tick(t0 + Duration::from_secs(30), &[p], false, &mut rng);
        assert!(d.is_empty() && !c.is_unchoked(PeerKey(2)));
    }
}
