//! The upload half of a peer session: BEP 3 REQUEST/CANCEL, BEP 6 REJECT, ALLOWED FAST and
//! SUGGEST PIECE, disk reads gated by the upload rate limits, and applying the torrent
//! choker's decisions.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{PeerError, PeerSession, ALLOWED_FAST_K, MAX_QUEUED_REQUESTS, MAX_READS_IN_FLIGHT};
use crate::choker::{PeerKey, PeerRates};
use crate::torrent::TorrentShared;
use crate::types::{BlockRef, PieceIndex};
use crate::wire::{self, Message};

/// A payload rate estimate: an exponential average over about four seconds, refreshed at most
/// once a second from a running byte total. Sans-IO: the caller passes the time.
#[derive(Clone, Copy, Debug)]
pub struct RateMeter {
    last_total: u64,
    last_at: Instant,
    rate_bytes_per_s: u64,
}

impl RateMeter {
    pub fn new(now: Instant) -> Self {
        RateMeter {
            last_total: 0,
            last_at: now,
            rate_bytes_per_s: 0,
        }
    }

    /// Folds in the running total `total` and returns the current estimate.
    pub fn update(&mut self, now: Instant, total: u64) -> u64 {
        let dt = now.saturating_duration_since(self.last_at);
        if dt >= Duration::from_secs(1) {
            let delta = total.saturating_sub(self.last_total) as u128;
            let inst = (delta * 1_000_000_000 / dt.as_nanos().max(1)) as u64;
            self.rate_bytes_per_s = (self.rate_bytes_per_s / 4) * 3 + inst / 4;
            self.last_total = total;
            self.last_at = now;
        }
        self.rate_bytes_per_s
    }

    pub fn rate_bytes_per_s(&self) -> u64 {
        self.rate_bytes_per_s
    }
}

impl PeerSession {
    /// BEP 6: sends the peer's canonical allowed-fast set (the pieces of it we have) once.
    pub(super) fn send_allowed_fast(&mut self, t: &TorrentShared) {
        let set = super::allowed_fast_set(
            self.addr.ip(),
            &t.info_hash,
            t.lengths.num_pieces(),
            ALLOWED_FAST_K,
        );
        for piece in set {
            let have = t.lengths.piece(piece).is_ok_and(|p| t.picker.have(p));
            if have {
                wire::encode(&Message::AllowedFast { piece }, &mut self.out);
                self.allowed_fast.push(piece);
            }
        }
    }

    /// Whether we told this peer it may fetch `piece` while choked (BEP 6).
    pub fn is_allowed_fast(&self, piece: u32) -> bool {
        self.allowed_fast.contains(&piece)
    }

    /// BEP 3 REQUEST: checked before anything is read from disk.
    pub(super) fn on_request(
        &mut self,
        piece: u32,
        offset: u32,
        len: u32,
        t: &TorrentShared,
    ) -> Result<(), PeerError> {
        let b = t.lengths.block_from_wire(piece, offset, len)?;
        if !t.picker.have(b.piece) {
            return Err(PeerError::RequestedMissing(piece));
        }
        if self.am_choking && !self.is_allowed_fast(piece) {
            // BEP 6: requests while choked are rejected explicitly; BEP 3 peers are ignored.
            // An honest peer stops asking once it hears of the choke: one that goes on would
            // have us queue a REJECT per request (a Fast peer) or burn CPU for nothing.
            self.refused_while_choked += 1;
            if self.refused_while_choked > MAX_QUEUED_REQUESTS {
                return Err(PeerError::RequestFlood);
            }
            self.reject(b);
            return Ok(());
        }
        if self.upload_queue.len() >= MAX_QUEUED_REQUESTS {
            return Err(PeerError::RequestFlood);
        }
        self.upload_queue.push_back(b);
        Ok(())
    }

    /// BEP 3 CANCEL: a queued request is dropped. BEP 6: a Fast peer gets exactly one reply
    /// to each request, so a cancelled one is answered with REJECT REQUEST (a request whose read
    /// is already in flight is answered by its PIECE instead).
    pub(super) fn on_cancel(
        &mut self,
        piece: u32,
        offset: u32,
        len: u32,
        t: &TorrentShared,
    ) -> Result<(), PeerError> {
        let b = t.lengths.block_from_wire(piece, offset, len)?;
        if let Some(i) = self.upload_queue.iter().position(|r| *r == b) {
            self.upload_queue.remove(i);
            self.reject(b);
        }
        Ok(())
    }

    /// BEP 6 SUGGEST PIECE from the peer: counted, and kept (a few at a time) as a hint for
    /// what to request from it next.
    pub(super) fn on_suggest(&mut self, piece: u32, t: &TorrentShared) -> Result<(), PeerError> {
        if !self.fast {
            return Err(PeerError::FastNotNegotiated);
        }
        // A bad index is the peer's fault, as in HAVE. Pieces we have by the time we pick are
        // dropped from the hints then.
        t.lengths.piece(piece)?;
        self.suggest.on_received(piece);
        t.counters
            .suggests_received
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// SUGGEST PIECE messages this peer sent.
    pub fn suggests_received(&self) -> u32 {
        self.suggest.received()
    }

    /// Adds the pieces the peer suggested, that it has and we still want, to the picking hint
    /// in `scratch_pieces` (after the pieces already being fetched from it). Not in
    /// sequential mode, whose order is the user's.
    pub(super) fn add_suggested_hints(&mut self, t: &TorrentShared) {
        // Nothing to do (and no allocation) for the peers that never suggest.
        if self.suggest.is_empty() || t.picker.is_sequential() {
            return;
        }
        let mut hint: Vec<u32> = self.scratch_pieces.iter().map(|p| p.get()).collect();
        let before = hint.len();
        let peer_has = &self.peer_has;
        self.suggest.hints(&mut hint, |q| {
            t.lengths
                .piece(q)
                .is_ok_and(|p| !t.picker.have(p) && peer_has.get(p))
        });
        for &q in &hint[before..] {
            if let Ok(p) = t.lengths.piece(q) {
                self.scratch_pieces.push(p);
            }
        }
    }

    /// BEP 6: suggests `piece` to this peer (SUGGEST PIECE) if it is a Fast peer that lacks
    /// it, we have it and have not suggested it lately. For a seeder to point peers at pieces
    /// it holds in its read cache. True if a message was queued.
    pub fn suggest_piece(&mut self, piece: PieceIndex, t: &TorrentShared) -> bool {
        if !self.fast || self.peer_has.get(piece) || !t.picker.have(piece) {
            return false;
        }
        if !self.suggest.should_suggest(piece.get()) {
            return false;
        }
        wire::encode(&Message::SuggestPiece { piece: piece.get() }, &mut self.out);
        t.counters
            .suggests_sent
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        true
    }

    /// Blocks to read from disk now for this peer (bounded per peer), without rate limits.
    pub fn next_reads(&mut self, out: &mut Vec<BlockRef>) {
        self.next_reads_limited(u64::MAX, out);
    }

    /// Blocks to read now, gated by the torrent's and the engine's upload rate limits: a block
    /// is charged when its read starts, so its PIECE message goes out within the limit.
    pub fn next_reads_at(&mut self, now: Instant, t: &TorrentShared, out: &mut Vec<BlockRef>) {
        let free = MAX_READS_IN_FLIGHT.saturating_sub(self.reads_in_flight) as usize;
        let want = free.min(self.upload_queue.len()) as u64;
        if want == 0 {
            return;
        }
        let granted = t.grant_upload(now, want);
        self.next_reads_limited(granted, out);
    }

    fn next_reads_limited(&mut self, mut budget: u64, out: &mut Vec<BlockRef>) {
        while self.reads_in_flight < MAX_READS_IN_FLIGHT && budget > 0 {
            let Some(b) = self.upload_queue.pop_front() else {
                break;
            };
            self.reads_in_flight += 1;
            budget -= 1;
            out.push(b);
        }
    }

    /// A disk read for this peer finished; `data` is `None` if it failed.
    pub fn on_read(&mut self, b: BlockRef, data: Option<&[u8]>, t: &TorrentShared) {
        let Some(data) = data.filter(|d| d.len() == b.len as usize) else {
            self.reads_in_flight = self.reads_in_flight.saturating_sub(1);
            self.reject(b);
            return;
        };
        if self.piece_ready(b, t) {
            self.out
                .extend_from_slice(&wire::piece_header(b.piece.get(), b.offset, b.len));
            self.out.extend_from_slice(data);
        }
    }

    /// Accounts for a finished read of `b`: true if its PIECE message is to be sent now, right
    /// after what `out` holds (the shard sends the message it read the block into, header
    /// included). False (and a REJECT if due) otherwise.
    pub fn piece_ready(&mut self, b: BlockRef, t: &TorrentShared) -> bool {
        self.reads_in_flight = self.reads_in_flight.saturating_sub(1);
        if self.am_choking && !self.is_allowed_fast(b.piece.get()) {
            // Choked while the read was in flight: choke() already rejected the queue.
            self.reject(b);
            return false;
        }
        self.uploaded_bytes += b.len as u64;
        t.counters
            .uploaded_bytes
            .fetch_add(b.len as u64, Ordering::Relaxed);
        true
    }

    /// What the choker needs to know about this peer now.
    pub fn rates(&mut self, now: Instant) -> PeerRates {
        let down = self.down_meter.update(now, self.downloaded_bytes);
        let up = self.up_meter.update(now, self.uploaded_bytes);
        PeerRates {
            key: PeerKey(self.key),
            peer_interested: self.peer_interested,
            download_rate_bytes_per_s: down,
            upload_rate_bytes_per_s: up,
            am_interested_since: self.am_interested_since,
            last_block_at: (self.downloaded_bytes > 0).then_some(self.last_block),
            connected_at: self.connected_at,
        }
    }

    /// Reports to the torrent's choker and applies its decision (BEP 3 choking).
    pub(super) fn update_choke(&mut self, now: Instant, t: &TorrentShared) {
        let rates = self.rates(now);
        let seeding = t.picker.is_complete();
        let unchoke = t.choke.report(rates, seeding, now);
        if unchoke && self.am_choking {
            self.am_choking = false;
            self.refused_while_choked = 0;
            wire::encode(&Message::Unchoke, &mut self.out);
        } else if !unchoke && !self.am_choking {
            self.choke();
        }
    }

    fn choke(&mut self) {
        if self.am_choking {
            return;
        }
        self.am_choking = true;
        wire::encode(&Message::Choke, &mut self.out);
        // BEP 6: allowed-fast requests survive a choke; the rest are rejected.
        let queue = std::mem::take(&mut self.upload_queue);
        for b in queue {
            if self.is_allowed_fast(b.piece.get()) {
                self.upload_queue.push_back(b);
            } else {
                self.reject(b);
            }
        }
    }

    /// BEP 6 REJECT REQUEST for a request we will not serve (nothing for BEP 3 peers).
    fn reject(&mut self, b: BlockRef) {
        if self.fast {
            let m = Message::RejectRequest {
                piece: b.piece.get(),
                offset: b.offset,
                len: b.len,
            };
            wire::encode(&m, &mut self.out);
        }
    }
}

#[cfg(test)]
mod tests;
