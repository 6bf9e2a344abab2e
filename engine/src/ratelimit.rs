//! Rate limits as token buckets, sans-IO: the time is a parameter, never read here.
//!
//! A [`TokenBucket`] refills at `rate_bytes_per_s` up to `burst_bytes`. Data is granted in
//! units (a block): a grant may take the bucket below zero by less than one unit, so a block
//! larger than the burst is never starved; the debt is paid back by the next refills before
//! anything else is granted. Over any interval the bytes granted are at most
//! `burst + rate x interval + one unit`.
//!
//! [`RateLimiter`] wraps a bucket for sharing between shard threads (a mutex held for a few
//! arithmetic operations; a limiter with rate 0 takes no lock at all). [`grant`] takes from
//! several limiters at once (the engine's global one and the torrent's).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::types::BLOCK_LEN;

/// The shortest burst: a few blocks, so limits near the block size still move data.
const MIN_BURST_BYTES: u64 = 4 * BLOCK_LEN as u64;

/// A token bucket. `rate_bytes_per_s == 0` means unlimited.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate_bytes_per_s: u64,
    burst_bytes: u64,
    /// May be negative by less than one unit after a grant (see the module doc).
    tokens: i64,
    last: Option<Instant>,
}

impl TokenBucket {
    /// A bucket starting full; the burst is a quarter second of the rate (at least 4 blocks).
    pub fn new(rate_bytes_per_s: u64) -> Self {
        let burst_bytes = (rate_bytes_per_s / 4).max(MIN_BURST_BYTES);
        TokenBucket {
            rate_bytes_per_s,
            burst_bytes,
            tokens: burst_bytes as i64,
            last: None,
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.rate_bytes_per_s == 0
    }

    fn refill(&mut self, now: Instant) {
        let Some(last) = self.last else {
            self.last = Some(now);
            return;
        };
        let elapsed = now.saturating_duration_since(last);
        let add = (elapsed.as_nanos() * self.rate_bytes_per_s as u128 / 1_000_000_000) as u64;
        if add == 0 {
            // Keep `last` so small steps accumulate instead of rounding to nothing.
            return;
        }
        self.last = Some(now);
        let cap = self.burst_bytes as i64;
        self.tokens = self
            .tokens
            .saturating_add(add.min(i64::MAX as u64) as i64)
            .min(cap);
    }

    /// How many units of `unit_bytes` may be granted now (unbounded: `u64::MAX`).
    pub fn available_units(&mut self, now: Instant, unit_bytes: u64) -> u64 {
        if self.is_unlimited() {
            return u64::MAX;
        }
        self.refill(now);
        if self.tokens <= 0 {
            return 0;
        }
        (self.tokens as u64).div_ceil(unit_bytes.max(1))
    }

    /// Spends `bytes` (call after [`Self::available_units`] allowed them).
    pub fn consume(&mut self, bytes: u64) {
        if !self.is_unlimited() {
            self.tokens = self
                .tokens
                .saturating_sub(bytes.min(i64::MAX as u64) as i64);
        }
    }

    /// Gives back `bytes` granted but not used (never above the burst).
    pub fn refund(&mut self, bytes: u64) {
        if !self.is_unlimited() {
            let add = bytes.min(self.burst_bytes) as i64;
            self.tokens = self.tokens.saturating_add(add).min(self.burst_bytes as i64);
        }
    }
}

/// A token bucket shared between threads; its rate can change at run time.
#[derive(Debug)]
pub struct RateLimiter {
    rate_bytes_per_s: AtomicU64,
    bucket: Mutex<TokenBucket>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new(0)
    }
}

impl RateLimiter {
    pub fn new(rate_bytes_per_s: u64) -> Self {
        RateLimiter {
            rate_bytes_per_s: AtomicU64::new(rate_bytes_per_s),
            bucket: Mutex::new(TokenBucket::new(rate_bytes_per_s)),
        }
    }

    /// Sets the rate (0 = none); the bucket starts over full.
    pub fn set_rate(&self, rate_bytes_per_s: u64) {
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        *b = TokenBucket::new(rate_bytes_per_s);
        self.rate_bytes_per_s
            .store(rate_bytes_per_s, Ordering::Release);
    }

    pub fn rate_bytes_per_s(&self) -> u64 {
        self.rate_bytes_per_s.load(Ordering::Acquire)
    }

    pub fn is_unlimited(&self) -> bool {
        self.rate_bytes_per_s() == 0
    }

    fn bucket(&self) -> std::sync::MutexGuard<'_, TokenBucket> {
        // A poisoned bucket holds plain numbers: still usable.
        self.bucket.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An upload and a download limiter: the engine's global pair, or one torrent's.
#[derive(Debug, Default)]
pub struct RateLimits {
    pub upload: RateLimiter,
    pub download: RateLimiter,
}

impl RateLimits {
    pub fn new(upload_bytes_per_s: u64, download_bytes_per_s: u64) -> Self {
        RateLimits {
            upload: RateLimiter::new(upload_bytes_per_s),
            download: RateLimiter::new(download_bytes_per_s),
        }
    }

    /// Sets both rates (0 = none).
    pub fn set(&self, upload_bytes_per_s: u64, download_bytes_per_s: u64) {
        self.upload.set_rate(upload_bytes_per_s);
        self.download.set_rate(download_bytes_per_s);
    }
}

/// Grants up to `want` units of `unit_bytes` from every limiter in `limiters` at once and
/// spends them from each; returns how many were granted. Unlimited limiters cost nothing.
pub fn grant(limiters: &[&RateLimiter], now: Instant, want: u64, unit_bytes: u64) -> u64 {
    let active: Vec<&RateLimiter> = limiters
        .iter()
        .copied()
        .filter(|l| !l.is_unlimited())
        .collect();
    if active.is_empty() || want == 0 {
        return want;
    }
    // Locks are taken in the slice's order everywhere (global first), so they cannot deadlock.
    let mut guards: Vec<_> = active.iter().map(|l| l.bucket()).collect();
    let n = guards
        .iter_mut()
        .map(|b| b.available_units(now, unit_bytes))
        .fold(want, u64::min);
    for b in &mut guards {
        b.consume(n * unit_bytes);
    }
    n
}

/// Returns `units` of `unit_bytes` granted by [`grant`] but not used, to every limiter.
pub fn refund(limiters: &[&RateLimiter], units: u64, unit_bytes: u64) {
    for l in limiters.iter().filter(|l| !l.is_unlimited()) {
        l.bucket().refund(units.saturating_mul(unit_bytes));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const B: u64 = BLOCK_LEN as u64;

    #[test]
    fn unlimited_grants_everything() {
        let mut b = TokenBucket::new(0);
        let t0 = Instant::now();
        assert_eq!(b.available_units(t0, B), u64::MAX);
        let l = RateLimiter::new(0);
        assert_eq!(grant(&[&l], t0, 1000, B), 1000);
    }

    #[test]
    fn starts_with_a_burst_then_refills_at_the_rate() {
        let rate = 1 << 20;
        let mut b = TokenBucket::new(rate);
        let t0 = Instant::now();
        let first = b.available_units(t0, B);
        assert_eq!(first, (rate / 4).div_ceil(B));
        b.consume(first * B);
        assert_eq!(b.available_units(t0, B), 0);
        // After one second exactly `rate` bytes more, capped at the burst.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(b.available_units(t1, B), (rate / 4).div_ceil(B));
        b.consume(B);
        let t2 = t1 + Duration::from_millis(125);
        let units = b.available_units(t2, B);
        assert_eq!(units, (rate / 4).div_ceil(B), "capped at the burst");
    }

    #[test]
    fn a_unit_larger_than_the_tokens_is_granted_once_then_repaid() {
        let mut b = TokenBucket::new(1000);
        let t0 = Instant::now();
        // Burst is the 4-block minimum: four blocks, then debt.
        assert_eq!(b.available_units(t0, B), 4);
        b.consume(4 * B + 10);
        assert_eq!(b.available_units(t0, B), 0);
        // 1000 B/s: the 10-byte debt is paid after 10 ms, then one byte allows one unit.
        assert_eq!(b.available_units(t0 + Duration::from_millis(10), B), 0);
        assert_eq!(b.available_units(t0 + Duration::from_millis(11), B), 1);
    }

    #[test]
    fn long_run_rate_holds() {
        // Taking greedily every 10 ms for 10 s never exceeds burst + rate x time + a unit.
        let rate = 300_000;
        let mut b = TokenBucket::new(rate);
        let t0 = Instant::now();
        let mut granted = 0u64;
        for i in 0..=1000 {
            let now = t0 + Duration::from_millis(10 * i);
            let n = b.available_units(now, B);
            b.consume(n * B);
            granted += n * B;
        }
        let bound = rate / 4 + rate * 10 + B;
        assert!(granted <= bound, "{granted} > {bound}");
        assert!(granted >= rate * 10 - B, "{granted} too low");
    }

    #[test]
    fn grant_takes_the_minimum_of_all_limiters() {
        let t0 = Instant::now();
        let global = RateLimiter::new(1 << 20);
        let torrent = RateLimiter::new(100_000);
        let none = RateLimiter::new(0);
        let n = grant(&[&global, &torrent, &none], t0, 1000, B);
        assert_eq!(n, 4, "the torrent's 4-block minimum burst");
        assert_eq!(grant(&[&global, &torrent], t0, 1000, B), 0);
        // The global bucket was charged too.
        let left = global.bucket().available_units(t0, B);
        assert_eq!(left, ((1u64 << 20) / 4 - 4 * B).div_ceil(B));
    }

    #[test]
    fn time_going_backwards_is_harmless() {
        let mut b = TokenBucket::new(1 << 20);
        let t0 = Instant::now() + Duration::from_secs(5);
        let n = b.available_units(t0, B);
        b.consume(n * B);
        assert_eq!(b.available_units(t0 - Duration::from_secs(1), B), 0);
    }

    #[test]
    fn refund_returns_unused_grants_up_to_the_burst() {
        let t0 = Instant::now();
        let l = RateLimiter::new(100_000);
        assert_eq!(grant(&[&l], t0, 100, B), 4);
        refund(&[&l], 3, B);
        assert_eq!(grant(&[&l], t0, 100, B), 3);
        refund(&[&l], 1000, B);
        assert_eq!(grant(&[&l], t0, 100, B), 4, "capped at the burst");
    }

    #[test]
    fn set_rate_resets() {
        let l = RateLimiter::new(0);
        l.set_rate(50_000);
        assert!(!l.is_unlimited());
        assert_eq!(grant(&[&l], Instant::now(), 100, B), 4);
        l.set_rate(0);
        assert_eq!(grant(&[&l], Instant::now(), 100, B), 100);
    }
}
