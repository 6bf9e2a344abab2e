//! When a shard's loop wakes up. A shard waits in its ring for completions; how long it may
//! wait is decided here from what the last pass found, so that an idle shard sleeps instead
//! of spinning on a fixed tick (issue 18 §3).
//!
//! - **Busy** (a connection with requests in flight either way, a peer we may request from,
//!   upload reads in flight, a closing connection, a command just applied, shutdown): the
//!   loop keeps the [`super::TICK`] of 10 ms, which request pipelines, rate-limit refills and
//!   request timeouts were written for.
//! - **Deadlines** (connect and handshake timeouts, redials, uTP timers, the slow poll owed
//!   to a connection that received bytes since the last one): the wait ends at the earliest.
//! - **Idle** otherwise: at most [`IDLE_WAIT`], which bounds how late the slow poll's periodic
//!   work runs for quiet peers (HAVEs of pieces verified elsewhere, interest, the choker's
//!   report, keep-alives, idle timeouts).
//!
//! Anything another thread hands a shard wakes it through its eventfd: commands
//! ([`super::ShardHandle::send`]) and disk read replies. Without an eventfd the loop keeps
//! the 10 ms tick.
//!
//! Pure logic over `now`: no IO here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Longest wait of a shard with nothing to do (4 wake-ups a second).
pub const IDLE_WAIT: Duration = Duration::from_millis(250);

/// A shard's counters, read by [`crate::Engine::shard_stats`].
#[derive(Debug, Default)]
pub struct ShardCounters {
    /// Passes of the loop: each is one return from the ring's wait.
    pub wakeups: AtomicU64,
    /// Of those, passes whose wait was bounded by the 10 ms tick (work in progress).
    pub busy_wakeups: AtomicU64,
}

impl ShardCounters {
    /// Counts one pass of the loop.
    pub fn count(&self, busy: bool) {
        self.wakeups.fetch_add(1, Ordering::Relaxed);
        if busy {
            self.busy_wakeups.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A snapshot for the API.
    pub fn snapshot(&self, index: usize) -> crate::api::ShardStats {
        crate::api::ShardStats {
            index,
            wakeups: self.wakeups.load(Ordering::Relaxed),
            busy_wakeups: self.busy_wakeups.load(Ordering::Relaxed),
        }
    }
}

/// What the loop's last pass found it must wake up for (see the module doc). Cleared at the
/// start of each pass and filled while it walks its connections.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NextWake {
    busy: bool,
    deadline: Option<Instant>,
}

impl NextWake {
    /// Work in progress: keep the short tick.
    pub fn busy(&mut self) {
        self.busy = true;
    }

    pub fn is_busy(&self) -> bool {
        self.busy
    }

    /// Something is due at `at`.
    pub fn at(&mut self, at: Instant) {
        self.deadline = Some(self.deadline.map_or(at, |d| d.min(at)));
    }

    /// How long the ring may wait from `now`: up to the earliest deadline, at most `tick`
    /// when busy and `idle` otherwise.
    pub fn timeout(&self, now: Instant, tick: Duration, idle: Duration) -> Duration {
        let cap = if self.busy { tick } else { idle };
        self.deadline
            .map_or(cap, |d| d.saturating_duration_since(now).min(cap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(10);

    #[test]
    fn idle_waits_long_busy_waits_a_tick() {
        let now = Instant::now();
        let mut w = NextWake::default();
        assert_eq!(w.timeout(now, TICK, IDLE_WAIT), IDLE_WAIT);
        w.busy();
        assert_eq!(w.timeout(now, TICK, IDLE_WAIT), TICK);
    }

    #[test]
    fn the_earliest_deadline_bounds_the_wait() {
        let now = Instant::now();
        let mut w = NextWake::default();
        w.at(now + Duration::from_millis(100));
        w.at(now + Duration::from_millis(40));
        w.at(now + Duration::from_secs(5));
        assert_eq!(w.timeout(now, TICK, IDLE_WAIT), Duration::from_millis(40));
        // A deadline past is due now; one beyond the cap waits the cap.
        w.at(now - Duration::from_millis(1));
        assert_eq!(w.timeout(now, TICK, IDLE_WAIT), Duration::ZERO);
        let mut far = NextWake::default();
        far.at(now + Duration::from_secs(5));
        assert_eq!(far.timeout(now, TICK, IDLE_WAIT), IDLE_WAIT);
    }

    #[test]
    fn counters_count_passes() {
        let c = ShardCounters::default();
        c.count(false);
        c.count(true);
        let s = c.snapshot(3);
        assert_eq!((s.index, s.wakeups, s.busy_wakeups), (3, 2, 1));
    }
}
