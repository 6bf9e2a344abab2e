//! SplitMix64: the small seeded generator behind the kit's impairments (the UDP relay's loss
//! and reordering, the TCP shaper's jitter and connection lifetimes). Seeded so that a run
//! with the same traffic makes the same choices; not for anything that needs real randomness.

use std::time::Duration;

/// SplitMix64 (Steele, Lea, Flood 2014): one add and two multiply-xorshifts per draw.
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `p` (0 never, 1 always).
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// Uniform in `0..=max`. The modulo bias is below `max / 2^64`: nothing for the spans of
    /// nanoseconds the kit draws (at most days).
    pub(crate) fn up_to(&mut self, max: u64) -> u64 {
        match max.checked_add(1) {
            Some(span) => self.next_u64() % span,
            None => self.next_u64(),
        }
    }

    /// Uniform in `lo..=hi` (`lo` if `hi < lo`), to the nanosecond.
    pub(crate) fn duration_between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = u64::try_from(hi.saturating_sub(lo).as_nanos()).unwrap_or(u64::MAX);
        lo + Duration::from_nanos(self.up_to(span))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chance_follows_the_rate() {
        let mut r = SplitMix64::new(7);
        let hits = (0..100_000).filter(|_| r.chance(0.2)).count();
        assert!((19_000..21_000).contains(&hits), "{hits}");
        assert!(!(0..1000).any(|_| r.chance(0.0)));
        assert!((0..1000).all(|_| r.chance(1.0)));
    }

    #[test]
    fn draws_stay_in_their_range_and_cover_it() {
        let mut r = SplitMix64::new(3);
        let draws: Vec<u64> = (0..10_000).map(|_| r.up_to(9)).collect();
        assert!(draws.iter().all(|d| *d <= 9));
        assert!((0..=9).all(|v| draws.contains(&v)));
        assert_eq!(r.up_to(0), 0);
        let (lo, hi) = (Duration::from_millis(5), Duration::from_millis(7));
        for _ in 0..1000 {
            let d = r.duration_between(lo, hi);
            assert!(lo <= d && d <= hi, "{d:?}");
        }
        assert_eq!(r.duration_between(hi, lo), hi);
    }
}
