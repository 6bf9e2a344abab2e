//! When to announce next and with which event (BEP 3), with no clock of its own.
//!
//! Invariants:
//! - the first announce is due at once and carries `started`; until one succeeds, every retry
//!   carries `started` again;
//! - `completed` is sent at most once per session, and never before `started` got through;
//! - after a success the next regular announce is due `interval` later; an early request
//!   ([`Schedule::announce_soon`]) never comes before `min interval` (or `MIN_INTERVAL` when the
//!   tracker gave none) after the last success;
//! - after failures the retry delay doubles from `retry_base`, up to the current interval;
//! - `stopped` is due on shutdown only if a `started` got through ([`Schedule::needs_stopped`]).

use std::time::{Duration, Instant};

use super::{AnnounceReply, Event, DEFAULT_INTERVAL, MIN_INTERVAL};

/// The announce timetable of one torrent.
#[derive(Clone, Debug)]
pub struct Schedule {
    next_at: Instant,
    pending: Option<Event>,
    started_ok: bool,
    completed_requested: bool,
    /// `completed` asked for while `started` had not gone through yet.
    completed_after_started: bool,
    interval: Duration,
    min_interval: Option<Duration>,
    last_success: Option<Instant>,
    failures: u32,
    retry_base: Duration,
}

impl Schedule {
    /// A schedule whose first announce (`started`) is due at `now`. Failed rounds are retried
    /// after `retry_base`, doubling.
    pub fn new(now: Instant, retry_base: Duration) -> Self {
        Schedule {
            next_at: now,
            pending: Some(Event::Started),
            started_ok: false,
            completed_requested: false,
            completed_after_started: false,
            interval: DEFAULT_INTERVAL,
            min_interval: None,
            last_success: None,
            failures: 0,
            retry_base,
        }
    }

    /// When the next announce is due.
    pub fn due_at(&self) -> Instant {
        self.next_at
    }

    /// The event the next announce carries.
    pub fn event(&self) -> Option<Event> {
        self.pending
    }

    /// The interval the last reply asked for (`DEFAULT_INTERVAL` before any).
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Consecutive failed rounds.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// An announce round succeeded at `now` with `reply`.
    pub fn on_success(&mut self, now: Instant, reply: &AnnounceReply) {
        self.interval = reply.interval;
        self.min_interval = reply.min_interval;
        self.last_success = Some(now);
        self.failures = 0;
        self.next_at = now + self.interval;
        match self.pending.take() {
            Some(Event::Started) => {
                self.started_ok = true;
                if self.completed_after_started {
                    self.pending = Some(Event::Completed);
                    self.next_at = now;
                }
            }
            Some(Event::Completed) | Some(Event::Stopped) | None => {}
        }
    }

    /// Every tracker failed in the round that ran at `now`: retry later, same event.
    pub fn on_failure(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        let factor = 1u32.checked_shl(self.failures - 1).unwrap_or(u32::MAX);
        let delay = self.retry_base.saturating_mul(factor).min(self.interval);
        self.next_at = now + delay;
    }

    /// The download finished: announce `completed` now (once per session, after `started`).
    pub fn completed(&mut self, now: Instant) {
        if self.completed_requested {
            return;
        }
        self.completed_requested = true;
        if self.started_ok {
            self.pending = Some(Event::Completed);
            self.next_at = now;
        } else {
            self.completed_after_started = true;
        }
    }

    /// The user asked for an announce now (`Engine::force_reannounce`): bring the next one
    /// forward to `now`, whatever the tracker's `min interval` (libtorrent's
    /// `force_reannounce` with `ignore_min_interval`). A retry after failures is moved too.
    pub fn announce_now(&mut self, now: Instant) {
        self.next_at = self.next_at.min(now);
    }

    /// We want peers sooner: bring the next announce forward, but not before the tracker's
    /// `min interval` since the last success. Does nothing before the first success.
    pub fn announce_soon(&mut self, now: Instant) {
        let Some(last) = self.last_success else {
            return;
        };
        let earliest = last + self.min_interval.unwrap_or(MIN_INTERVAL);
        self.next_at = self.next_at.min(earliest.max(now));
    }

    /// A `started` went through, so shutting down owes the tracker a `stopped`.
    pub fn needs_stopped(&self) -> bool {
        self.started_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(interval_s: u64, min_s: Option<u64>) -> AnnounceReply {
        AnnounceReply {
            interval: Duration::from_secs(interval_s),
            min_interval: min_s.map(Duration::from_secs),
            tracker_id: None,
            seeders: None,
            leechers: None,
            peers: Vec::new(),
            warning: None,
        }
    }

    #[test]
    fn started_then_regular_then_completed_once() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, Duration::from_secs(10));
        assert_eq!((s.due_at(), s.event()), (t0, Some(Event::Started)));
        assert!(!s.needs_stopped());
        s.on_success(t0, &reply(900, None));
        assert_eq!(
            (s.due_at(), s.event()),
            (t0 + Duration::from_secs(900), None)
        );
        assert!(s.needs_stopped());

        let t1 = t0 + Duration::from_secs(100);
        s.completed(t1);
        assert_eq!((s.due_at(), s.event()), (t1, Some(Event::Completed)));
        s.on_success(t1, &reply(900, None));
        assert_eq!(s.event(), None);
        s.completed(t1);
        assert_eq!(s.event(), None, "completed only once");
        assert_eq!(s.due_at(), t1 + Duration::from_secs(900));
    }

    #[test]
    fn failures_back_off_and_keep_the_event() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, Duration::from_secs(10));
        let mut delays = Vec::new();
        for _ in 0..12 {
            s.on_failure(t0);
            delays.push(s.due_at() - t0);
            assert_eq!(s.event(), Some(Event::Started));
        }
        assert_eq!(delays[0], Duration::from_secs(10));
        assert_eq!(delays[1], Duration::from_secs(20));
        assert_eq!(delays[2], Duration::from_secs(40));
        assert_eq!(
            *delays.last().unwrap(),
            DEFAULT_INTERVAL,
            "capped at the interval"
        );
        assert_eq!(s.failures(), 12);
        s.on_success(t0, &reply(120, None));
        assert_eq!(s.failures(), 0);
    }

    #[test]
    fn completed_before_started_waits_for_started() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, Duration::from_secs(10));
        s.completed(t0);
        assert_eq!(s.event(), Some(Event::Started));
        s.on_failure(t0);
        assert_eq!(s.event(), Some(Event::Started));
        let t1 = t0 + Duration::from_secs(10);
        s.on_success(t1, &reply(900, None));
        assert_eq!((s.due_at(), s.event()), (t1, Some(Event::Completed)));
    }

    #[test]
    fn announce_soon_respects_min_interval() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, Duration::from_secs(10));
        s.announce_soon(t0);
        assert_eq!(s.due_at(), t0, "nothing changes before the first success");
        s.on_success(t0, &reply(1800, Some(300)));
        s.announce_soon(t0 + Duration::from_secs(5));
        assert_eq!(s.due_at(), t0 + Duration::from_secs(300));
        s.announce_soon(t0 + Duration::from_secs(400));
        assert_eq!(
            s.due_at(),
            t0 + Duration::from_secs(300),
            "never later than before"
        );

        let mut s = Schedule::new(t0, Duration::from_secs(10));
        s.on_success(t0, &reply(1800, None));
        s.announce_soon(t0 + Duration::from_secs(500));
        assert_eq!(s.due_at(), t0 + Duration::from_secs(500));
        s.on_success(t0, &reply(1800, None));
        s.announce_soon(t0);
        assert_eq!(s.due_at(), t0 + MIN_INTERVAL);
    }

    #[test]
    fn announce_now_ignores_min_interval_and_backoff() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, Duration::from_secs(10));
        s.on_success(t0, &reply(1800, Some(300)));
        let t1 = t0 + Duration::from_secs(5);
        s.announce_now(t1);
        assert_eq!(s.due_at(), t1);
        for _ in 0..5 {
            s.on_failure(t1);
        }
        assert!(s.due_at() > t1 + Duration::from_secs(60), "backed off");
        s.announce_now(t1);
        assert_eq!(s.due_at(), t1);
        s.announce_now(t1 + Duration::from_secs(1));
        assert_eq!(s.due_at(), t1, "never later than before");
    }
}
