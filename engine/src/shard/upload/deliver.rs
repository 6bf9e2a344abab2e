//! Handing the uploader's blocks to a connection: the session is asked whether the block is
//! still wanted (it may have been cancelled, or the peer choked), then the PIECE message, a
//! slice of a piece held whole, or a file range the kernel sends, joins the connection's next
//! send after the session's bytes.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::shard::conn::{Conn, Phase, SEND_HIGH_WATER};
use crate::shard::sendq::{BlockMsg, PieceData, SendBuf};
use crate::torrent::TorrentShared;

impl Conn {
    /// Blocks this peer requested that may be read now (upload rate limits applied), and the
    /// torrent they belong to.
    pub fn take_reads(
        &mut self,
        now: Instant,
        out: &mut Vec<crate::types::BlockRef>,
    ) -> Option<Arc<TorrentShared>> {
        let (Phase::Active { session, .. }, Some(t)) = (&mut self.phase, &self.torrent) else {
            return None;
        };
        if self.failed.is_some() {
            return None;
        }
        let backlog = self.out.len() + self.pending.len() + self.sending_bytes;
        if backlog < SEND_HIGH_WATER {
            session.next_reads_at(now, t, out);
        }
        Some(t.clone())
    }

    /// Whether `block`'s bytes may be queued now: the connection (`key`) is the one that asked
    /// and is not failing, and the session still wants the block sent. With `have_bytes`
    /// false (the read failed) the session is told instead (a REJECT for Fast peers). Either
    /// way the session's bytes are taken for the next send.
    fn block_ready(&mut self, key: u64, block: crate::types::BlockRef, have_bytes: bool) -> bool {
        if key != self.key || self.failed.is_some() {
            return false;
        }
        let (Phase::Active { session, .. }, Some(t)) = (&mut self.phase, &self.torrent) else {
            return false;
        };
        let ready = if have_bytes {
            session.piece_ready(block, t)
        } else {
            session.on_read(block, None, t);
            false
        };
        self.out.append(&mut session.out);
        ready
    }

    /// Puts `block`'s PIECE header at the end of the byte stream.
    fn push_header(&mut self, block: crate::types::BlockRef) {
        self.out.extend_from_slice(&crate::wire::piece_header(
            block.piece.get(),
            block.offset,
            block.len,
        ));
    }

    /// Queues `bytes` after the byte stream: as the shared segment `share` pushes (not
    /// copied), or, under a transport that changes the bytes (an encrypted stream needs bytes
    /// of its own), copied into the stream.
    fn queue_shared(&mut self, bytes: &[u8], share: impl FnOnce(&mut SendBuf)) {
        if self.transport.passes_through() {
            self.move_out();
            share(&mut self.pending);
        } else {
            self.out.extend_from_slice(bytes);
        }
    }

    /// A disk read (or a cache hit) for this connection: `msg` is the block's PIECE message,
    /// queued as it is (shared, not copied, on plain TCP), or `None` if the read failed.
    pub fn deliver_read(
        &mut self,
        key: u64,
        block: crate::types::BlockRef,
        msg: Option<&Rc<BlockMsg>>,
    ) {
        if let (true, Some(m)) = (self.block_ready(key, block, msg.is_some()), msg) {
            self.queue_shared(m.as_slice(), |p| p.push_msg(Rc::clone(m)));
        }
    }

    /// A block served from a piece read whole: its PIECE header goes into the byte stream and
    /// the block as a slice of the piece (not copied, on plain TCP).
    pub fn deliver_slice(
        &mut self,
        key: u64,
        block: crate::types::BlockRef,
        piece: &Rc<PieceData>,
    ) {
        let bytes = piece.get(block.offset, block.len);
        if let (true, Some(b)) = (self.block_ready(key, block, bytes.is_some()), bytes) {
            self.push_header(block);
            self.queue_shared(b, |p| {
                p.push_slice(Rc::clone(piece), block.offset, block.len)
            });
        }
    }

    /// A block the page cache holds at `off` of `file`: its PIECE header goes into the byte
    /// stream, and the kernel sends the block from the page cache (not read here): with
    /// `sendfile`, or copied into the socket from the file's mapping (`mapped`; the caller
    /// checked that the mapping covers it).
    pub fn deliver_cached(
        &mut self,
        key: u64,
        block: crate::types::BlockRef,
        (file, off): (uring_disk::OpenFile, u64),
        mapped: bool,
    ) {
        if self.block_ready(key, block, true) {
            self.push_header(block);
            self.move_out();
            if mapped {
                self.pending.push_mapped(file, off, block.len);
            } else {
                self.pending.push_file(file, off, block.len);
            }
        }
    }

    /// Suggests `piece` (BEP 6) to this peer if it is interested in us, speaks Fast, lacks the
    /// piece and was not told before (`PeerSession::suggest_piece`).
    pub fn suggest(&mut self, piece: crate::types::PieceIndex) {
        if self.failed.is_some() {
            return;
        }
        let (Phase::Active { session, .. }, Some(t)) = (&mut self.phase, &self.torrent) else {
            return;
        };
        // Only a peer we unchoke can act on a suggestion (its allowed-fast pieces it knows):
        // suggesting to every interested peer cost a seeder with 500 of them 3 CPU-s per GiB.
        if session.peer_interested && !session.am_choking && session.suggest_piece(piece, t) {
            self.out.append(&mut session.out);
        }
    }
}
