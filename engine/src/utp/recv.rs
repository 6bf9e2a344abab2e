//! The receive side: in-order delivery, the reorder buffer, the peer's FIN, and the SACK we
//! send (BEP 29, "Selective ACK").
//!
//! A packet that arrives in order is handed to `deliver` straight from the datagram; only a
//! packet ahead of a hole is copied, into a buffer that is reused once delivered. The reorder
//! buffer holds at most `max_reorder` packets and `recv_window` bytes; beyond, packets are
//! dropped (the peer resends them).

use std::collections::VecDeque;

use super::packet::{sack_set, MAX_SACK_LEN};
use super::{seq_lt, Config};

/// Spare reorder buffers kept for reuse.
const SPARE_BUFFERS: usize = 64;

/// What became of a DATA packet.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Data {
    /// Delivered, with what it unblocked: payload bytes handed out in all.
    Delivered(usize),
    /// Ahead of a hole: kept for later.
    Buffered,
    /// Already had (or after the peer's FIN): nothing done.
    Duplicate,
    /// Past the reorder buffer's bounds: dropped.
    Dropped,
}

pub(super) struct RecvSide {
    /// The last packet received in order.
    pub(super) ack_nr: u16,
    /// `reorder[i]` is packet `ack_nr + 1 + i`; `reorder[0]` is always `None`.
    reorder: VecDeque<Option<Vec<u8>>>,
    pub(super) buffered: usize,
    /// The peer's FIN, once seen.
    pub(super) eof: Option<u16>,
    /// Everything up to the FIN was delivered.
    pub(super) remote_closed: bool,
    spare: Vec<Vec<u8>>,
}

impl RecvSide {
    /// `ack_nr`: the packet before the peer's first DATA (its SYN, or its STATE's seq - 1).
    pub(super) fn new(ack_nr: u16) -> Self {
        RecvSide {
            ack_nr,
            reorder: VecDeque::new(),
            buffered: 0,
            eof: None,
            remote_closed: false,
            spare: Vec::new(),
        }
    }

    /// The window we advertise: all of `recv_window`, because every in-order byte is handed
    /// on at once. Out-of-order bytes held here are not subtracted: the sender still counts
    /// them as in flight until the hole before them is acked, so subtracting them too would
    /// count them twice, and with the buffer full behind one lost packet the window would
    /// close on the retransmission that fills the hole (libtorrent then waits for the window
    /// and the connection stalls; seen on a lossy loopback path). Their memory is bounded by
    /// `on_data` instead.
    pub(super) fn window(&self, cfg: &Config) -> u32 {
        u32::try_from(cfg.recv_window).unwrap_or(u32::MAX)
    }

    /// A DATA packet: delivers it (and what it unblocks) or buffers it.
    pub(super) fn on_data(
        &mut self,
        seq: u16,
        payload: &mut [u8],
        cfg: &Config,
        deliver: &mut dyn FnMut(&mut [u8]),
    ) -> Data {
        if !seq_lt(self.ack_nr, seq) || self.eof.is_some_and(|e| !seq_lt(seq, e)) {
            return Data::Duplicate;
        }
        let ahead = usize::from(seq.wrapping_sub(self.ack_nr)) - 1;
        if ahead > 0 {
            return self.buffer(ahead, payload, cfg);
        }
        self.reorder.pop_front();
        self.ack_nr = seq;
        if !payload.is_empty() {
            deliver(payload);
        }
        let mut total = payload.len();
        while let Some(Some(_)) = self.reorder.front() {
            let Some(Some(mut buf)) = self.reorder.pop_front() else {
                break;
            };
            self.ack_nr = self.ack_nr.wrapping_add(1);
            self.buffered -= buf.len();
            total += buf.len();
            if !buf.is_empty() {
                deliver(&mut buf);
            }
            if self.spare.len() < SPARE_BUFFERS {
                buf.clear();
                self.spare.push(buf);
            }
        }
        self.check_eof();
        Data::Delivered(total)
    }

    fn buffer(&mut self, ahead: usize, payload: &[u8], cfg: &Config) -> Data {
        if ahead >= usize::from(cfg.max_reorder) {
            return Data::Dropped;
        }
        if self.reorder.get(ahead).is_some_and(Option::is_some) {
            return Data::Duplicate;
        }
        if self.buffered + payload.len() > cfg.recv_window {
            return Data::Dropped;
        }
        if self.reorder.len() <= ahead {
            self.reorder.resize(ahead + 1, None);
        }
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.extend_from_slice(payload);
        self.buffered += buf.len();
        self.reorder[ahead] = Some(buf);
        Data::Buffered
    }

    /// The peer's FIN. An error if it moves a FIN already seen.
    pub(super) fn on_fin(&mut self, seq: u16) -> Result<(), &'static str> {
        match self.eof {
            Some(e) if e != seq => return Err("FIN sequence number changed"),
            Some(_) => return Ok(()),
            None => {}
        }
        if !seq_lt(self.ack_nr, seq) {
            // At or before what we already delivered: stale or forged, ignored (as libtorrent).
            return Ok(());
        }
        self.eof = Some(seq);
        // Drop anything buffered at or after the FIN.
        let keep = usize::from(seq.wrapping_sub(self.ack_nr)) - 1;
        for b in self.reorder.drain(keep.min(self.reorder.len())..).flatten() {
            self.buffered -= b.len();
        }
        self.check_eof();
        Ok(())
    }

    /// Everything before the FIN delivered: the FIN counts as received in order.
    fn check_eof(&mut self) {
        if let Some(e) = self.eof {
            if !self.remote_closed && self.ack_nr.wrapping_add(1) == e {
                self.ack_nr = e;
                self.reorder.pop_front();
                self.remote_closed = true;
            }
        }
    }

    /// Fills `mask` with the SACK of the packets held; returns its length (0: none to send).
    pub(super) fn sack(&self, mask: &mut [u8; MAX_SACK_LEN]) -> usize {
        if self.reorder.len() < 2 {
            return 0;
        }
        let bits = (self.reorder.len() - 1).min(MAX_SACK_LEN * 8);
        let len = bits.div_ceil(32) * 4;
        mask[..len].fill(0);
        for (i, p) in self.reorder.iter().skip(1).take(bits).enumerate() {
            if p.is_some() {
                sack_set(&mut mask[..len], i);
            }
        }
        len
    }
}
