//! What a [`Stream`] sends next, and how each packet is built (a child module of `stream`,
//! which owns the fields).
//!
//! Priority: RESET, then our SYN or the STATE owed for the peer's SYN, retransmissions, new
//! DATA within `min(cwnd, peer window)`, our FIN, and last a STATE for received packets.
//! Every packet carries our timestamp, the last delay sample, our window, `ack_nr` and a SACK
//! while we hold out-of-order packets, so any packet settles the ACK owed: at most one STATE
//! goes out per batch of received packets.

use std::time::Instant;

use super::super::packet::{encode, Header, PacketType};
use super::super::{micros_since, CloseReason};
use super::{Phase, Stream};

impl Stream {
    /// Fills `out` (cleared first) with the next datagram to send and returns true, or
    /// false if there is nothing to send now. Drain it after every other call.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> bool {
        out.clear();
        if self.reset_owed {
            self.reset_owed = false;
            self.emit(PacketType::Reset, self.send.next_seq, None, now, out);
            return true;
        }
        match self.phase {
            Phase::Closed(reason) => {
                // The ACK of the peer's FIN that ended the stream still goes out.
                if self.ack_owed && reason == CloseReason::Finished {
                    self.emit(PacketType::State, self.state_seq(), None, now, out);
                    return true;
                }
                false
            }
            Phase::SynSent { .. } => self.transmit_syn(now, out),
            Phase::Connected => {
                if self.state_owed {
                    // The answer to a SYN names our first DATA, even when it is resent late.
                    self.state_owed = false;
                    self.emit(PacketType::State, self.first_seq, None, now, out);
                    return true;
                }
                if self.transmit_data(now, out) {
                    return true;
                }
                if self.ack_owed {
                    self.emit(PacketType::State, self.state_seq(), None, now, out);
                    return true;
                }
                // Data waits behind a closed window: the RTO timer sends a probe.
                if self.rto_at.is_none() && self.send.unsent() > 0 {
                    self.rto_at = Some(now + self.cc.rto());
                }
                false
            }
        }
    }

    fn transmit_syn(&mut self, now: Instant, out: &mut Vec<u8>) -> bool {
        let Phase::SynSent {
            syn_seq,
            owed,
            sent_at,
            sends,
            resend_at,
            backoff,
            ..
        } = &mut self.phase
        else {
            return false;
        };
        if !*owed {
            return false;
        }
        *owed = false;
        *sent_at = now;
        *sends += 1;
        *resend_at = Some(now + *backoff);
        *backoff *= 2;
        let (seq, resend) = (*syn_seq, *sends > 1);
        if resend {
            self.stats.retransmits += 1;
        }
        self.emit(PacketType::Syn, seq, None, now, out);
        true
    }

    /// A retransmission, new DATA or our FIN, if one may go now.
    fn transmit_data(&mut self, now: Instant, out: &mut Vec<u8>) -> bool {
        let window = self.cc.cwnd().min(self.peer_wnd);
        let in_flight = self.send.bytes_in_flight;
        let room = window.saturating_sub(in_flight);
        if let Some(i) = self.send.next_resend() {
            let p = &self.send.in_flight[i];
            // A fast retransmit goes regardless of the window; after a timeout, one at a time.
            if p.fast_resent || in_flight == 0 || p.len <= room {
                self.stats.retransmits += 1;
                return self.emit_in_flight(i, now, out);
            }
            return false;
        }
        let unsent = self.send.unsent();
        if unsent > 0 && self.send.can_add() {
            let want = unsent.min(self.cfg.max_payload);
            let len = if want <= room {
                want
            } else if in_flight == 0 && room > 0 {
                room
            } else if self.probe {
                self.probe = false;
                want
            } else {
                return false;
            };
            let i = self.send.push(len, false, now);
            return self.emit_in_flight(i, now, out);
        }
        if self.fin_wanted && !self.fin_sent && unsent == 0 && self.send.can_add() {
            self.fin_sent = true;
            let i = self.send.push(0, true, now);
            return self.emit_in_flight(i, now, out);
        }
        false
    }

    /// Sends packet `i` of the in-flight queue (again); arms the RTO if it was idle.
    fn emit_in_flight(&mut self, i: usize, now: Instant, out: &mut Vec<u8>) -> bool {
        let seq = self.send.mark_sent(i, now);
        let Some(p) = self.send.in_flight.get(i) else {
            return false;
        };
        let ty = if p.fin {
            PacketType::Fin
        } else {
            PacketType::Data
        };
        self.emit(ty, seq, Some(i), now, out);
        if self.rto_at.is_none() {
            self.rto_at = Some(now + self.cc.rto());
        }
        true
    }

    /// The `seq_nr` of a STATE: the next packet's, or our FIN's once it is sent.
    fn state_seq(&self) -> u16 {
        match self.fin_sent {
            true => self.send.last_sent(),
            false => self.send.next_seq,
        }
    }

    /// Builds one packet into `out`, with packet `payload_of`'s bytes if given.
    fn emit(
        &mut self,
        ty: PacketType,
        seq: u16,
        payload_of: Option<usize>,
        now: Instant,
        out: &mut Vec<u8>,
    ) {
        let syn = ty == PacketType::Syn;
        let sack_len = match syn {
            true => 0,
            false => self.recv.sack(&mut self.sack_buf),
        };
        let header = Header {
            ty,
            connection_id: if syn { self.recv_id } else { self.send_id },
            timestamp_us: micros_since(now, self.epoch),
            timestamp_diff_us: self.reply_micro,
            wnd_size: self.recv.window(&self.cfg),
            seq_nr: seq,
            ack_nr: if syn { 0 } else { self.recv.ack_nr },
        };
        let sack = (sack_len > 0).then(|| &self.sack_buf[..sack_len]);
        encode(&header, sack, &[], out);
        let header_len = out.len();
        if let Some(i) = payload_of {
            self.send.copy_payload(i, out);
        }
        self.ack_owed = false;
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += (out.len() - header_len) as u64;
    }
}
