//! The send side: bytes `write` took, the packets in flight, and what ACKs do to them
//! (BEP 29, "Selective ACK" and "Packet loss").
//!
//! One ring of bytes holds everything written and not yet acked, sent or not; a packet in
//! flight is a range of it (no buffer per packet). Bytes leave the ring when the cumulative
//! ACK passes their packet. A SACKed packet stays until then but no longer counts as in
//! flight.

use std::collections::VecDeque;
use std::time::Instant;

use super::packet::sack_bits;
use super::{seq_lt, MAX_IN_FLIGHT};

/// Where a sent packet stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flight {
    /// Sent, not acked: counts in `bytes_in_flight`.
    Out,
    /// Selectively acked; waits for the cumulative ACK to leave.
    Sacked,
    /// To be sent again (timeout or fast retransmit); not in flight.
    Resend,
}

/// A DATA or FIN packet sent and not cumulatively acked.
#[derive(Clone, Debug)]
pub(super) struct Sent {
    /// Stream offset of its first byte in the ring.
    pub(super) start: u64,
    pub(super) len: usize,
    pub(super) fin: bool,
    pub(super) sent_at: Instant,
    pub(super) transmissions: u32,
    pub(super) state: Flight,
    /// Fast-retransmitted since its last timeout (at most once).
    pub(super) fast_resent: bool,
}

/// What one ACK did.
#[derive(Debug, Default)]
pub(super) struct Acked {
    /// Payload bytes newly acknowledged (cumulatively or selectively).
    pub(super) bytes: usize,
    /// The cumulative ACK moved.
    pub(super) progressed: bool,
    /// The lowest RTT sample among packets acked that were sent once.
    pub(super) rtt: Option<std::time::Duration>,
    /// The first packet marked for fast retransmit.
    pub(super) lost: Option<u16>,
    /// Our FIN was acked.
    pub(super) fin_acked: bool,
}

pub(super) struct SendSide {
    ring: VecDeque<u8>,
    /// Stream offset of `ring[0]`.
    ring_start: u64,
    /// Stream offset of the first byte not yet put in a packet.
    unsent_start: u64,
    /// Packets `acked + 1 ..`, in order.
    pub(super) in_flight: VecDeque<Sent>,
    /// Every packet up to this one is acked.
    pub(super) acked: u16,
    /// The sequence number of the next DATA/FIN.
    pub(super) next_seq: u16,
    pub(super) bytes_in_flight: usize,
    dup_acks: u32,
}

/// ACKs of the same `ack_nr` (or packets SACKed past a hole) that trigger a fast retransmit.
const DUP_ACK_LIMIT: u32 = 3;

impl SendSide {
    /// `next_seq` is the sequence number of our first DATA packet.
    pub(super) fn new(next_seq: u16) -> Self {
        SendSide {
            ring: VecDeque::new(),
            ring_start: 0,
            unsent_start: 0,
            in_flight: VecDeque::new(),
            acked: next_seq.wrapping_sub(1),
            next_seq,
            bytes_in_flight: 0,
            dup_acks: 0,
        }
    }

    pub(super) fn space(&self, cap: usize) -> usize {
        cap.saturating_sub(self.ring.len())
    }

    pub(super) fn write(&mut self, data: &[u8], cap: usize) -> usize {
        let n = data.len().min(self.space(cap));
        self.ring.extend(&data[..n]);
        n
    }

    pub(super) fn unsent(&self) -> usize {
        let end = self.ring_start + self.ring.len() as u64;
        // At most the ring's length, a usize.
        (end - self.unsent_start) as usize
    }

    /// Room for another packet in sequence space (and in the peer's SACK reach).
    pub(super) fn can_add(&self) -> bool {
        self.in_flight.len() < MAX_IN_FLIGHT
    }

    /// The last sequence number we sent (the highest an ACK may name).
    pub(super) fn last_sent(&self) -> u16 {
        self.next_seq.wrapping_sub(1)
    }

    /// Puts the next `len` unsent bytes (or a FIN, `len` 0) in a new packet; returns its index.
    pub(super) fn push(&mut self, len: usize, fin: bool, now: Instant) -> usize {
        let len = len.min(self.unsent());
        self.in_flight.push_back(Sent {
            start: self.unsent_start,
            len,
            fin,
            sent_at: now,
            transmissions: 0,
            state: Flight::Resend,
            fast_resent: false,
        });
        self.unsent_start += len as u64;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.in_flight.len() - 1
    }

    /// Marks packet `i` as (re)sent now; returns its sequence number.
    pub(super) fn mark_sent(&mut self, i: usize, now: Instant) -> u16 {
        let seq = self.seq_of(i);
        if let Some(p) = self.in_flight.get_mut(i) {
            if p.state != Flight::Out {
                self.bytes_in_flight += p.len;
            }
            p.state = Flight::Out;
            p.sent_at = now;
            p.transmissions += 1;
        }
        seq
    }

    pub(super) fn seq_of(&self, i: usize) -> u16 {
        // `i < MAX_IN_FLIGHT`, so it fits a u16.
        self.acked.wrapping_add(1).wrapping_add(i as u16)
    }

    /// Appends packet `i`'s payload to `out`.
    pub(super) fn copy_payload(&self, i: usize, out: &mut Vec<u8>) {
        let Some(p) = self.in_flight.get(i) else {
            return;
        };
        // The packet's bytes are in the ring: the ring only drops acked packets' bytes.
        let from = (p.start - self.ring_start) as usize;
        let (a, b) = self.ring.as_slices();
        let to = from + p.len;
        if from < a.len() {
            out.extend_from_slice(&a[from..to.min(a.len())]);
        }
        if to > a.len() {
            out.extend_from_slice(&b[from.saturating_sub(a.len())..to - a.len()]);
        }
    }

    /// The first packet awaiting a resend.
    pub(super) fn next_resend(&self) -> Option<usize> {
        self.in_flight
            .iter()
            .position(|p| p.state == Flight::Resend)
    }

    /// The retransmission timer fired: every packet out is to be resent.
    pub(super) fn on_timeout(&mut self) {
        for p in &mut self.in_flight {
            if p.state == Flight::Out {
                p.state = Flight::Resend;
            }
            p.fast_resent = false;
        }
        self.bytes_in_flight = 0;
    }

    /// Applies an ACK; `ack_nr` was checked to name a packet we sent.
    pub(super) fn on_ack(
        &mut self,
        ack_nr: u16,
        sack: Option<&[u8]>,
        is_state: bool,
        now: Instant,
    ) -> Acked {
        let mut out = Acked::default();
        if seq_lt(self.acked, ack_nr) {
            let n = usize::from(ack_nr.wrapping_sub(self.acked)).min(self.in_flight.len());
            for p in self.in_flight.drain(..n) {
                out.fin_acked |= p.fin;
                match p.state {
                    Flight::Out => {
                        self.bytes_in_flight -= p.len;
                        out.bytes += p.len;
                    }
                    Flight::Resend => out.bytes += p.len,
                    Flight::Sacked => {}
                }
                if p.state != Flight::Sacked && p.transmissions == 1 {
                    let s = now.saturating_duration_since(p.sent_at);
                    out.rtt = Some(out.rtt.map_or(s, |r| r.min(s)));
                }
            }
            self.trim_ring();
            self.acked = ack_nr;
            self.dup_acks = 0;
            out.progressed = true;
        } else if ack_nr == self.acked && is_state && !self.in_flight.is_empty() {
            self.dup_acks += 1;
        }
        if ack_nr == self.acked {
            if let Some(mask) = sack {
                self.apply_sack(mask, now, &mut out);
            }
            if self.dup_acks >= DUP_ACK_LIMIT {
                self.dup_acks = 0;
                self.fast_resend(0, &mut out);
            }
        }
        out
    }

    /// Drops the acked bytes at the front of the ring.
    fn trim_ring(&mut self) {
        let keep_from = match self.in_flight.front() {
            Some(p) => p.start,
            None => self.unsent_start,
        };
        // Packets are consecutive ranges of the ring, so `keep_from` is inside it.
        let n = (keep_from.saturating_sub(self.ring_start)).min(self.ring.len() as u64);
        self.ring.drain(..n as usize);
        self.ring_start += n;
    }

    /// Marks SACKed packets (bit `i`: packet `acked + 2 + i`, index `1 + i`) and fast
    /// retransmits a packet once `DUP_ACK_LIMIT` packets after it were SACKed.
    fn apply_sack(&mut self, mask: &[u8], now: Instant, out: &mut Acked) {
        let mut highest = None;
        for bit in sack_bits(mask) {
            let Some(p) = self.in_flight.get_mut(bit + 1) else {
                break;
            };
            highest = Some(bit + 1);
            match p.state {
                Flight::Sacked => continue,
                Flight::Out => {
                    self.bytes_in_flight -= p.len;
                    out.bytes += p.len;
                }
                Flight::Resend => out.bytes += p.len,
            }
            if p.transmissions == 1 {
                let s = now.saturating_duration_since(p.sent_at);
                out.rtt = Some(out.rtt.map_or(s, |r| r.min(s)));
            }
            p.state = Flight::Sacked;
        }
        let Some(highest) = highest else {
            return;
        };
        let mut sacked_after = 0;
        for i in (0..=highest).rev() {
            if self.in_flight[i].state == Flight::Sacked {
                sacked_after += 1;
            } else if sacked_after >= DUP_ACK_LIMIT {
                self.fast_resend(i, out);
            }
        }
    }

    /// Queues packet `i` for a fast retransmit, unless it was already since its last timeout.
    fn fast_resend(&mut self, i: usize, out: &mut Acked) {
        let seq = self.seq_of(i);
        let Some(p) = self.in_flight.get_mut(i) else {
            return;
        };
        if p.fast_resent || p.state != Flight::Out {
            return;
        }
        p.fast_resent = true;
        p.state = Flight::Resend;
        self.bytes_in_flight -= p.len;
        out.lost = Some(
            out.lost
                .map_or(seq, |l| if seq_lt(seq, l) { seq } else { l }),
        );
    }
}
