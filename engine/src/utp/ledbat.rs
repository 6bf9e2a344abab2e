//! Congestion control and round-trip time: LEDBAT (BEP 29, "Congestion control"; RFC 6817)
//! with a slow start as libtorrent has, and the RTO of BEP 29 ("Timeouts").
//!
//! - `our_delay = timestamp_diff − base_delay`, the base being the lowest sample of the last
//!   two minutes (a ring of per-minute minima), so a clock offset between the hosts cancels.
//! - On each ACK: `cwnd += MAX_CWND_INCREASE_BYTES_PER_RTT · off_target/target ·
//!   bytes_acked/cwnd`, `off_target = target − our_delay` (negative above target: cwnd
//!   shrinks). In slow start the gain is at least `bytes_acked` (doubling per RTT) until the
//!   delay reaches the target, a loss, or `ssthresh`.
//! - The window only grows while the sender fills it (an application-limited sender would
//!   otherwise inflate it without testing the path).
//! - Loss (fast retransmit): halve, at most once per RTT (only for a packet sent after the
//!   last cut). Timeout: one packet. Always within `[max_payload, send_buffer]`.

use std::time::{Duration, Instant};

use super::seq_lt;

/// BEP 29's MAX_CWND_INCREASE_BYTES_PER_RTT.
const MAX_CWND_INCREASE_BYTES_PER_RTT: i64 = 3000;
/// How long one slot of the base delay history covers.
const BASE_DELAY_SLOT: Duration = Duration::from_secs(60);
/// Slots kept: the current minute and the one before (a 2-minute history).
const BASE_DELAY_SLOTS: usize = 2;
/// RTO before the first sample (BEP 29).
const INITIAL_RTO: Duration = Duration::from_secs(1);
/// The lowest RTO (BEP 29).
const MIN_RTO: Duration = Duration::from_millis(500);
/// The highest RTO, backoff included.
const MAX_RTO: Duration = Duration::from_secs(60);
/// Initial congestion window, packets.
const INITIAL_CWND_PACKETS: usize = 2;

/// `a` is below `b` on the wrapping 32-bit timestamp circle.
fn ts_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

pub(super) struct Ledbat {
    cwnd: usize,
    min_cwnd: usize,
    max_cwnd: usize,
    /// Leave slow start before the window passes this (0: no threshold yet).
    ssthresh: usize,
    slow_start: bool,
    target_us: u32,
    /// Per-minute minima of the delay samples, `[0]` the current minute.
    base_slots: [Option<u32>; BASE_DELAY_SLOTS],
    slot_started: Option<Instant>,
    /// The window is cut for a loss only of a packet after this one (once per RTT).
    loss_seq: u16,
    /// The last queuing delay measured, µs.
    our_delay_us: u32,
    /// Smoothed RTT and its variance, µs; `rtt_us == 0` before the first sample.
    rtt_us: u32,
    rtt_var_us: u32,
    /// Timeouts since the last RTT sample (the RTO doubles with each).
    backoff: u32,
}

impl Ledbat {
    pub(super) fn new(max_payload: usize, send_buffer: usize, target_us: u32, seq: u16) -> Self {
        let min_cwnd = max_payload.max(1);
        let max_cwnd = send_buffer.max(min_cwnd);
        Ledbat {
            cwnd: (INITIAL_CWND_PACKETS * min_cwnd).min(max_cwnd),
            min_cwnd,
            max_cwnd,
            ssthresh: 0,
            slow_start: true,
            target_us: target_us.max(1),
            base_slots: [None; BASE_DELAY_SLOTS],
            slot_started: None,
            loss_seq: seq,
            our_delay_us: 0,
            rtt_us: 0,
            rtt_var_us: 0,
            backoff: 0,
        }
    }

    pub(super) fn cwnd(&self) -> usize {
        self.cwnd
    }

    pub(super) fn rtt_us(&self) -> u32 {
        self.rtt_us
    }

    /// Records a one-way delay sample (the peer's `timestamp_diff`) and returns the queuing
    /// delay it shows over the base delay.
    pub(super) fn delay_sample(&mut self, sample_us: u32, now: Instant) -> u32 {
        let started = *self.slot_started.get_or_insert(now);
        if now.saturating_duration_since(started) >= BASE_DELAY_SLOT {
            self.base_slots.rotate_right(1);
            self.base_slots[0] = None;
            self.slot_started = Some(now);
        }
        let slot = &mut self.base_slots[0];
        if slot.is_none_or(|m| ts_lt(sample_us, m)) {
            *slot = Some(sample_us);
        }
        let base = self
            .base_slots
            .iter()
            .flatten()
            .copied()
            .reduce(|a, b| if ts_lt(a, b) { a } else { b })
            .unwrap_or(sample_us);
        self.our_delay_us = sample_us.wrapping_sub(base).min(i32::MAX as u32);
        self.our_delay_us
    }

    /// `acked` bytes newly acknowledged, when `in_flight` bytes were outstanding before.
    pub(super) fn on_ack(&mut self, acked: usize, in_flight: usize) {
        if acked == 0 {
            return;
        }
        let target = i64::from(self.target_us);
        let delay = i64::from(self.our_delay_us);
        if delay >= target && self.slow_start {
            self.ssthresh = self.cwnd / 2;
            self.slow_start = false;
        }
        let saturated = in_flight + self.min_cwnd > self.cwnd;
        if !saturated {
            return;
        }
        let acked = acked as i64;
        let cwnd = self.cwnd as i64;
        let linear = MAX_CWND_INCREASE_BYTES_PER_RTT * (target - delay) / target * acked / cwnd;
        let mut gain = linear;
        if self.slow_start {
            if self.ssthresh != 0 && self.cwnd + acked as usize > self.ssthresh {
                self.slow_start = false;
            } else {
                gain = gain.max(acked);
            }
        }
        let next = (cwnd + gain).clamp(self.min_cwnd as i64, self.max_cwnd as i64);
        // In range: clamped between two usize values.
        self.cwnd = next as usize;
    }

    /// A packet was lost (fast retransmit); `next_seq` is the next sequence number to send.
    pub(super) fn on_loss(&mut self, lost_seq: u16, next_seq: u16) {
        if !seq_lt(self.loss_seq, lost_seq) {
            return;
        }
        self.loss_seq = next_seq.wrapping_sub(1);
        self.cwnd = (self.cwnd / 2).max(self.min_cwnd);
        self.ssthresh = self.cwnd;
        self.slow_start = false;
    }

    /// The retransmission timer fired: one packet, back off the RTO, slow start again.
    pub(super) fn on_timeout(&mut self, next_seq: u16) {
        self.ssthresh = (self.cwnd / 2).max(2 * self.min_cwnd);
        self.cwnd = self.min_cwnd;
        self.slow_start = true;
        self.loss_seq = next_seq.wrapping_sub(1);
        self.backoff = self.backoff.saturating_add(1);
    }

    /// A round-trip sample from a packet sent once (Karn), BEP 29's filter.
    pub(super) fn rtt_sample(&mut self, sample: Duration) {
        let s = u32::try_from(sample.as_micros()).unwrap_or(u32::MAX / 2);
        if self.rtt_us == 0 {
            self.rtt_us = s.max(1);
            self.rtt_var_us = s / 2;
        } else {
            let delta = self.rtt_us.abs_diff(s);
            let var =
                i64::from(self.rtt_var_us) + (i64::from(delta) - i64::from(self.rtt_var_us)) / 4;
            let rtt = i64::from(self.rtt_us) + (i64::from(s) - i64::from(self.rtt_us)) / 8;
            self.rtt_var_us = u32::try_from(var.max(0)).unwrap_or(u32::MAX);
            self.rtt_us = u32::try_from(rtt.max(1)).unwrap_or(u32::MAX);
        }
        self.backoff = 0;
    }

    /// The current retransmission timeout, backoff included.
    pub(super) fn rto(&self) -> Duration {
        let base = match self.rtt_us {
            0 => INITIAL_RTO,
            rtt => {
                Duration::from_micros(u64::from(rtt) + 4 * u64::from(self.rtt_var_us)).max(MIN_RTO)
            }
        };
        base.saturating_mul(1 << self.backoff.min(8)).min(MAX_RTO)
    }
}
