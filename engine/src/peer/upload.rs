//! The upload half of a peer session: BEP 3 REQUEST/CANCEL, BEP 6 REJECT, disk reads, and the
//! first-version choking policy (interested peers get one of the torrent's upload slots).

use std::sync::atomic::Ordering;

use super::{PeerError, PeerSession, MAX_QUEUED_REQUESTS, MAX_READS_IN_FLIGHT};
use crate::torrent::TorrentShared;
use crate::types::BlockRef;
use crate::wire::{self, Message};

impl PeerSession {
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
        if self.am_choking {
            // BEP 6: requests while choked are rejected explicitly; BEP 3 peers are ignored.
            if self.fast {
                wire::encode(
                    &Message::RejectRequest { piece, offset, len },
                    &mut self.out,
                );
            }
            return Ok(());
        }
        if self.upload_queue.len() >= MAX_QUEUED_REQUESTS {
            return Err(PeerError::RequestFlood);
        }
        self.upload_queue.push_back(b);
        Ok(())
    }

    /// Blocks to read from disk now for this peer (bounded per peer).
    pub fn next_reads(&mut self, out: &mut Vec<BlockRef>) {
        while self.reads_in_flight < MAX_READS_IN_FLIGHT {
            let Some(b) = self.upload_queue.pop_front() else {
                break;
            };
            self.reads_in_flight += 1;
            out.push(b);
        }
    }

    /// A disk read for this peer finished; `data` is `None` if it failed.
    pub fn on_read(&mut self, b: BlockRef, data: Option<&[u8]>, t: &TorrentShared) {
        self.reads_in_flight = self.reads_in_flight.saturating_sub(1);
        let Some(data) = data.filter(|d| d.len() == b.len as usize) else {
            self.reject(b);
            return;
        };
        if self.am_choking {
            return;
        }
        self.out
            .extend_from_slice(&wire::piece_header(b.piece.get(), b.offset, b.len));
        self.out.extend_from_slice(data);
        self.uploaded_bytes += b.len as u64;
        t.counters
            .uploaded_bytes
            .fetch_add(b.len as u64, Ordering::Relaxed);
    }

    /// Unchokes interested peers while the torrent has upload slots; chokes uninterested ones.
    pub(super) fn update_choke(&mut self, t: &TorrentShared) {
        if self.am_choking && self.peer_interested && t.take_upload_slot() {
            self.am_choking = false;
            wire::encode(&Message::Unchoke, &mut self.out);
        } else if !self.am_choking && !self.peer_interested {
            self.choke(t);
        }
    }

    fn choke(&mut self, t: &TorrentShared) {
        if self.am_choking {
            return;
        }
        self.am_choking = true;
        t.return_upload_slot();
        wire::encode(&Message::Choke, &mut self.out);
        for b in std::mem::take(&mut self.upload_queue) {
            self.reject(b);
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
