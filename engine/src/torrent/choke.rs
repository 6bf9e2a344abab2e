//! How one torrent's choker runs across shards.
//!
//! A torrent's peers live on several shard threads, but the choker must see all of them at
//! once (the slots are per torrent). Each torrent therefore has one [`ChokeBoard`]: a small
//! table of the latest [`PeerRates`] per peer and the sans-IO [`Choker`], behind one mutex.
//!
//! - Every peer session reports its rates on its slow poll (every 50 ms while its shard
//!   transfers, at most 250 ms apart on an idle one) and reads back, in the
//!   same call, whether it should be unchoked; it then sends CHOKE/UNCHOKE itself. Only the
//!   owning shard ever writes to its socket.
//! - Whichever report finds the choker due runs [`Choker::tick`] over the whole table: once a
//!   second (the choker itself recomputes every 10 s and rotates the optimistic slot every 30 s;
//!   ticks in between only fill free slots and drop uninterested peers), or sooner, at most
//!   every [`MIN_TICK_GAP`], when a peer's interest changed or a peer left, so an interested
//!   peer does not wait a second for a free slot.
//! - A disconnecting session removes its row.
//!
//! The lock is held for a table update, and once a second for a tick over at most
//! `max_peers` rows: contention is negligible next to the shards' IO.
//!
//! Invariant: a peer is unchoked on the wire only while the choker counts it as unchoked, up
//! to one poll of delay; so at most `upload_slots + 1` peers hold slots, across all shards.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::choker::{Choker, ChokerConfig, PeerKey, PeerRates};

/// Regular ticks of the choker.
pub const TICK_INTERVAL: Duration = Duration::from_secs(1);
/// Earliest tick after a peer's interest changed.
pub const MIN_TICK_GAP: Duration = Duration::from_millis(100);

struct Board {
    choker: Choker,
    peers: HashMap<u64, PeerRates>,
    last_tick: Option<Instant>,
    dirty: bool,
    rng: StdRng,
}

/// See the module doc.
pub struct ChokeBoard {
    inner: Mutex<Board>,
}

impl ChokeBoard {
    pub fn new(cfg: ChokerConfig, seed: u64) -> Self {
        ChokeBoard {
            inner: Mutex::new(Board {
                choker: Choker::new(cfg),
                peers: HashMap::new(),
                last_tick: None,
                dirty: false,
                rng: StdRng::seed_from_u64(seed),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Board> {
        // A poisoned board holds plain state; the next tick makes it consistent again.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the number of regular upload slots (from the engine's `Config`).
    pub fn set_upload_slots(&self, slots: usize) {
        self.lock().choker.set_upload_slots(slots);
    }

    /// Records a peer's rates, runs the choker if it is due, and says whether the peer should
    /// be unchoked now.
    pub fn report(&self, rates: PeerRates, seeding: bool, now: Instant) -> bool {
        let mut b = self.lock();
        let prev = b.peers.insert(rates.key.0, rates);
        if prev.is_none_or(|p| p.peer_interested != rates.peer_interested) {
            b.dirty = true;
        }
        let since = b.last_tick.map(|t| now.saturating_duration_since(t));
        let due = match since {
            None => true,
            Some(d) => d >= TICK_INTERVAL || (b.dirty && d >= MIN_TICK_GAP),
        };
        if due {
            b.last_tick = Some(now);
            b.dirty = false;
            let Board {
                choker, peers, rng, ..
            } = &mut *b;
            let all: Vec<PeerRates> = peers.values().copied().collect();
            choker.tick(now, &all, seeding, rng);
        }
        b.choker.is_unchoked(rates.key)
    }

    /// The peer left: its slot frees at the next tick.
    pub fn remove(&self, key: u64) {
        let mut b = self.lock();
        if b.peers.remove(&key).is_some() {
            b.dirty = true;
        }
    }

    /// Peers the choker currently unchokes.
    pub fn unchoked_count(&self) -> usize {
        let b = self.lock();
        b.peers
            .keys()
            .filter(|k| b.choker.is_unchoked(PeerKey(**k)))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(key: u64, t0: Instant, interested: bool, down: u64) -> PeerRates {
        PeerRates {
            key: PeerKey(key),
            peer_interested: interested,
            download_rate_bytes_per_s: down,
            upload_rate_bytes_per_s: 0,
            am_interested_since: None,
            last_block_at: None,
            connected_at: t0,
        }
    }

    #[test]
    fn slots_are_shared_by_every_reporter() {
        let board = ChokeBoard::new(ChokerConfig::default(), 1);
        let t0 = Instant::now();
        // Ten interested peers report, as if from different shards, over a few polls.
        let mut unchoked = 0;
        for round in 0..3u32 {
            let now = t0 + MIN_TICK_GAP * (round + 1);
            unchoked = (0..10)
                .filter(|&k| board.report(rates(k, t0, true, k * 100), false, now))
                .count();
        }
        assert_eq!(unchoked, 5, "4 regular slots + 1 optimistic");
        assert_eq!(board.unchoked_count(), 5);
    }

    #[test]
    fn leaving_frees_a_slot_soon() {
        let board = ChokeBoard::new(ChokerConfig::default(), 2);
        let t0 = Instant::now();
        let mut now = t0;
        for _ in 0..3 {
            now += MIN_TICK_GAP;
            for k in 0..6 {
                board.report(rates(k, t0, true, 1000 * (k + 1)), false, now);
            }
        }
        assert_eq!(board.unchoked_count(), 5);
        let choked: Vec<u64> = (0..6)
            .filter(|&k| !board.report(rates(k, t0, true, 1000 * (k + 1)), false, now))
            .collect();
        assert_eq!(choked.len(), 1);
        // A slot holder leaves: the choked peer gets a slot within one tick gap.
        let gone = (0..6).find(|k| !choked.contains(k)).unwrap();
        board.remove(gone);
        now += MIN_TICK_GAP;
        assert!(board.report(rates(choked[0], t0, true, 1), false, now));
    }

    #[test]
    fn uninterested_peers_are_not_unchoked() {
        let board = ChokeBoard::new(ChokerConfig::default(), 3);
        let t0 = Instant::now();
        assert!(!board.report(rates(1, t0, false, 0), true, t0));
        assert!(board.report(rates(1, t0, true, 0), true, t0 + MIN_TICK_GAP));
        assert!(!board.report(rates(1, t0, false, 0), true, t0 + MIN_TICK_GAP * 2));
    }
}

#[cfg(test)]
mod stress {
    use super::*;

    #[test]
    fn never_more_than_five_unchoked_while_peers_arrive() {
        for seed in 0..50u64 {
            let board = ChokeBoard::new(ChokerConfig::default(), seed);
            let t0 = Instant::now();
            for step in 0..60u64 {
                let now = t0 + Duration::from_millis(50 * step + seed);
                for k in 0..7u64 {
                    if step < k {
                        continue;
                    }
                    let interested = step > k + (seed % 3);
                    let r = PeerRates {
                        key: PeerKey((k % 2) << 48 | k),
                        peer_interested: interested,
                        download_rate_bytes_per_s: 0,
                        upload_rate_bytes_per_s: 0,
                        am_interested_since: None,
                        last_block_at: None,
                        connected_at: t0 + Duration::from_millis(50 * k),
                    };
                    board.report(r, true, now);
                }
                assert!(board.unchoked_count() <= 5, "seed {seed} step {step}");
            }
        }
    }
}
