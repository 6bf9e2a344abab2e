//! How many requests to keep outstanding with one peer: enough to cover bandwidth x delay.
//!
//! Slow start: the window begins at [`INITIAL`] and grows by one request per block received
//! (doubling per round trip) until the measured rate stops growing; after that it tracks
//! `rate x WINDOW_TIME`, the bytes that arrive in [`WINDOW_TIME`]. Clamped to
//! [`MIN`]..=[`MAX`] requests. No clock is read: time is passed in.

use std::time::{Duration, Instant};

use crate::types::BLOCK_LEN;

pub const INITIAL: usize = 32;
pub const MIN: usize = 8;
pub const MAX: usize = 500;
/// The delay the window must cover: generous, so a loaded peer never idles.
pub const WINDOW_TIME: Duration = Duration::from_millis(500);
const SAMPLE: Duration = Duration::from_millis(250);

/// See the module doc.
#[derive(Debug, Clone)]
pub struct Pipeline {
    window: usize,
    slow_start: bool,
    sample_start: Instant,
    sample_bytes: u64,
    last_rate_bytes_per_s: u64,
}

impl Pipeline {
    pub fn new(now: Instant) -> Self {
        Pipeline {
            window: INITIAL,
            slow_start: true,
            sample_start: now,
            sample_bytes: 0,
            last_rate_bytes_per_s: 0,
        }
    }

    /// A block of `len` bytes arrived.
    pub fn on_block(&mut self, len: u32, now: Instant) {
        self.sample_bytes += len as u64;
        if self.slow_start {
            self.window = (self.window + 1).min(MAX);
        }
        let elapsed = now.saturating_duration_since(self.sample_start);
        if elapsed >= SAMPLE {
            let rate = (self.sample_bytes as f64 / elapsed.as_secs_f64()) as u64;
            // Leave slow start once a sample shows less than 25 % growth.
            if self.slow_start
                && self.last_rate_bytes_per_s > 0
                && rate < self.last_rate_bytes_per_s * 5 / 4
            {
                self.slow_start = false;
            }
            self.last_rate_bytes_per_s = rate;
            self.sample_start = now;
            self.sample_bytes = 0;
            if !self.slow_start {
                let bytes = rate as f64 * WINDOW_TIME.as_secs_f64();
                self.window = ((bytes / BLOCK_LEN as f64) as usize).clamp(MIN, MAX);
            }
        }
    }

    /// The current window in requests.
    pub fn target(&self, _now: Instant) -> usize {
        self.window
    }

    /// The last measured receive rate.
    pub fn rate_bytes_per_s(&self) -> u64 {
        self.last_rate_bytes_per_s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_start_grows_then_tracks_rate() {
        let t0 = Instant::now();
        let mut p = Pipeline::new(t0);
        for _ in 0..100 {
            p.on_block(BLOCK_LEN, t0);
        }
        assert_eq!(p.target(t0), INITIAL + 100);
        // 10 MB/s steady for two samples: the window settles at rate x 0.5 s / 16 KiB = ~305.
        let mut now = t0;
        for _ in 0..4 {
            now += SAMPLE;
            let blocks = (10_000_000.0 * SAMPLE.as_secs_f64() / BLOCK_LEN as f64) as usize;
            for _ in 0..blocks {
                p.on_block(BLOCK_LEN, now);
            }
        }
        assert!(!p.slow_start);
        let w = p.target(now);
        assert!((250..=350).contains(&w), "window {w}");
    }

    #[test]
    fn window_is_clamped() {
        let t0 = Instant::now();
        let mut p = Pipeline::new(t0);
        for _ in 0..10_000 {
            p.on_block(BLOCK_LEN, t0);
        }
        assert_eq!(p.target(t0), MAX);
    }
}
