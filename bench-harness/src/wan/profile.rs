//! The WAN profiles of `swarm --wan`: which seeders a swarm has, and the path to each (round
//! trip, upload cap, whether it chokes now and then or drops connections), drawn from a seeded
//! generator so that every run of one profile and seed meets the same swarm.

use std::time::Duration;

use serde::Serialize;

use crate::seeders::SeederKind;

/// See the `--wan` option of `swarm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WanProfile {
    /// 60 seeders of mixed real clients, 20-250 ms, 0.5-20 MB/s each, some choking, some
    /// dropping: what a popular Linux ISO's swarm looks like from a home line.
    Ubuntu,
    /// 8 libtorrent seeders at 40 ms, 100 MB/s each: a few fast servers.
    Fat,
}

/// One seeder and the path to it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PathPlan {
    pub kind: SeederKind,
    pub rtt_ms: u32,
    /// Up to this much extra delay per chunk, each way (order is kept).
    pub jitter_ms: u32,
    /// The seeder's upload: the cap of the path towards the leecher, bytes/s.
    pub cap_bytes_per_s: u64,
    /// A libtorrent seeder that chokes every peer for a while now and then ([`CHOKE_CYCLE`]).
    pub chokes: bool,
    /// The path resets each connection after a life drawn from [`DROP_AFTER`].
    pub drops: bool,
}

/// `ubuntu`: how many seeders of each kind (48 of 60 are not ringtorrent).
const UBUNTU_MIX: [(SeederKind, usize); 4] = [
    (SeederKind::Libtorrent, 24),
    (SeederKind::Transmission, 12),
    (SeederKind::Aria2, 12),
    (SeederKind::Ringtorrent, 12),
];
/// `ubuntu`: round trips are drawn uniformly from this range (ms).
const UBUNTU_RTT_MS: (u32, u32) = (20, 250);
/// `ubuntu`: upload caps are drawn log-uniformly from this range (bytes/s): many slow
/// seeders, a few fast ones, as in a real swarm.
const UBUNTU_CAP: (f64, f64) = (0.5e6, 20e6);
/// `ubuntu`: the share of seeders that choke now and then (libtorrent ones), and that drop.
const UBUNTU_CHOKING: f64 = 0.10;
const UBUNTU_DROPPING: f64 = 0.05;

/// (unchoked, choked) spans of a choking seeder.
pub const CHOKE_CYCLE: (Duration, Duration) = (Duration::from_secs(8), Duration::from_secs(4));
/// A dropping path resets each connection after a life drawn uniformly from this range.
pub const DROP_AFTER: (Duration, Duration) = (Duration::from_secs(3), Duration::from_secs(10));

/// The swarm of `profile`, drawn with `seed`.
pub fn plan(profile: WanProfile, seed: u64) -> Vec<PathPlan> {
    match profile {
        WanProfile::Fat => (0..8)
            .map(|_| PathPlan {
                kind: SeederKind::Libtorrent,
                rtt_ms: 40,
                jitter_ms: 0,
                cap_bytes_per_s: 100_000_000,
                chokes: false,
                drops: false,
            })
            .collect(),
        WanProfile::Ubuntu => ubuntu(seed),
    }
}

fn ubuntu(seed: u64) -> Vec<PathPlan> {
    // Mixed with a constant, so `ubuntu` does not draw what other users of a seed draw.
    let mut rng = SplitMix64(seed ^ 0x7562_756e_7475);
    let mut kinds: Vec<SeederKind> = UBUNTU_MIX
        .iter()
        .flat_map(|&(k, n)| std::iter::repeat_n(k, n))
        .collect();
    // Fisher-Yates, so kinds and paths are not correlated.
    for i in (1..kinds.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        kinds.swap(i, j);
    }
    let n = kinds.len();
    let mut out: Vec<PathPlan> = kinds
        .into_iter()
        .map(|kind| {
            let (lo, hi) = UBUNTU_RTT_MS;
            let rtt_ms = lo + rng.below(u64::from(hi - lo) + 1) as u32;
            let (clo, chi) = UBUNTU_CAP;
            let cap = (clo.ln() + rng.unit() * (chi.ln() - clo.ln())).exp();
            PathPlan {
                kind,
                rtt_ms,
                // Up to a tenth of the one-way delay.
                jitter_ms: rtt_ms / 20,
                cap_bytes_per_s: (cap / 1000.0).round() as u64 * 1000,
                chokes: false,
                drops: false,
            }
        })
        .collect();
    let choking = (n as f64 * UBUNTU_CHOKING).round() as usize;
    for p in out
        .iter_mut()
        .filter(|p| p.kind == SeederKind::Libtorrent)
        .take(choking)
    {
        p.chokes = true;
    }
    let dropping = (n as f64 * UBUNTU_DROPPING).round() as usize;
    for p in out.iter_mut().filter(|p| !p.chokes).rev().take(dropping) {
        p.drops = true;
    }
    out
}

/// The sum of the caps: the most the swarm can deliver.
pub fn cap_sum(plan: &[PathPlan]) -> u64 {
    plan.iter().map(|p| p.cap_bytes_per_s).sum()
}

/// A small deterministic generator (SplitMix64).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is negligible for these small n).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ubuntu_is_the_swarm_the_issue_describes() {
        let p = plan(WanProfile::Ubuntu, 1);
        assert_eq!(p.len(), 60);
        let rt = p
            .iter()
            .filter(|p| p.kind == SeederKind::Ringtorrent)
            .count();
        assert!(rt * 2 <= p.len(), "at least half not ringtorrent: {rt}");
        for k in [
            SeederKind::Libtorrent,
            SeederKind::Transmission,
            SeederKind::Aria2,
        ] {
            assert!(p.iter().any(|p| p.kind == k), "{k:?} missing");
        }
        assert!(p.iter().all(|p| (20..=250).contains(&p.rtt_ms)));
        assert!(p
            .iter()
            .all(|p| (500_000..=20_000_000).contains(&p.cap_bytes_per_s)));
        assert_eq!(p.iter().filter(|p| p.chokes).count(), 6);
        assert!(p
            .iter()
            .filter(|p| p.chokes)
            .all(|p| p.kind == SeederKind::Libtorrent));
        assert_eq!(p.iter().filter(|p| p.drops).count(), 3);
        assert!(!p.iter().any(|p| p.chokes && p.drops));
        // Spread out, not all alike: both ends of each range are used.
        assert!(p.iter().any(|p| p.rtt_ms < 80) && p.iter().any(|p| p.rtt_ms > 190));
        assert!(p.iter().any(|p| p.cap_bytes_per_s < 2_000_000));
        assert!(p.iter().any(|p| p.cap_bytes_per_s > 10_000_000));
    }

    #[test]
    fn a_seed_draws_the_same_swarm_and_another_seed_another() {
        assert_eq!(plan(WanProfile::Ubuntu, 7), plan(WanProfile::Ubuntu, 7));
        assert_ne!(plan(WanProfile::Ubuntu, 7), plan(WanProfile::Ubuntu, 8));
    }

    #[test]
    fn fat_is_eight_fast_seeders() {
        let p = plan(WanProfile::Fat, 1);
        assert_eq!(p.len(), 8);
        assert_eq!(cap_sum(&p), 800_000_000);
        assert!(p.iter().all(|p| p.rtt_ms == 40 && !p.chokes && !p.drops));
    }
}
