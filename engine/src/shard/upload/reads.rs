//! The uploader's reads: each block a peer may have now comes from the shard's message
//! cache, joins a read of it in flight, comes from a piece held whole, or is read: with one
//! O_DIRECT read of the whole piece when the page cache does not hold all of it
//! (`cachestat`); else, when the page cache holds it, it is not read at all: sent with
//! `sendfile` to a peer that gets zero-copy uploads (`ZeroCopyUploads`), or copied by the
//! kernel from a mapping of its file to the others (io_uring backend); else it is read on the
//! shard's own ring straight into a PIECE message, or by the disk pipeline for bytes in the
//! part file. See DESIGN.md, "Anatomy of an upload".

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use uring_disk::{OpenFile, ReadPart};

use std::sync::Arc;

use super::cache::BlockKey;
use super::pieces::{PieceWait, PIECE_BUF_LEN};
use super::{Links, LocalRead, ReadDone, Uploader};
use crate::shard::backend::{Op, Token};
use crate::shard::sendq::{BlockMsg, PieceData};
use crate::torrent::TorrentShared;
use crate::types::BlockRef;

impl Uploader {
    /// Starts the upload reads connection `token` may do now: served from the cache, joined
    /// to a read of the same block already in flight, or sent to the disk pipeline.
    pub(in crate::shard) fn issue_reads(
        &mut self,
        net: &mut Links<'_>,
        token: Token,
        now: Instant,
    ) {
        let mut blocks = std::mem::take(&mut self.scratch_reads);
        blocks.clear();
        let Some(conn) = net.conns[token as usize].as_mut() else {
            return;
        };
        let key = conn.key();
        let Some(t) = conn.take_reads(now, &mut blocks) else {
            self.scratch_reads = blocks;
            return;
        };
        for &b in &blocks {
            let k: BlockKey = (t.id, b.piece.get(), b.offset, b.len);
            if let Some(msg) = self.cache.get(&k) {
                if let Some(conn) = net.conns[token as usize].as_mut() {
                    conn.deliver_read(key, b, Some(&msg));
                }
                continue;
            }
            if let Some(waiters) = self.reads_inflight.get_mut(&k) {
                waiters.push((token, key));
                continue;
            }
            if let Some(piece) = self.pieces.get(t.id, b.piece.get()) {
                if let Some(conn) = net.conns[token as usize].as_mut() {
                    conn.deliver_slice(key, b, &piece);
                }
                continue;
            }
            if let Some(w) = self.piece_reads.waiters(t.id, b.piece.get()) {
                w.push((token, key, b));
                continue;
            }
            if self.read_piece_if_uncached(net, &t, (token, key, b))
                || self.send_from_page_cache(net, &t, token, key, b)
            {
                continue;
            }
            if self.read_locally(net, &t, token, key, b, k) {
                self.reads_inflight.insert(k, Vec::new());
                continue;
            }
            let (tx, waker) = (self.reads_tx.clone(), self.waker.clone());
            let torrent = t.id;
            let reply = Box::new(move |data| {
                let _ = tx.send(ReadDone {
                    token,
                    key,
                    torrent,
                    block: b,
                    data,
                });
                if let Some(w) = waker {
                    w.wake();
                }
            });
            match self
                .disk
                .read(t.disk_slot, b.piece.get(), b.offset, b.len, reply)
            {
                Ok(()) => {
                    self.reads_inflight.insert(k, Vec::new());
                }
                Err(e) => {
                    tracing::warn!("torrent {}: read of {b:?} refused: {e}", t.id);
                    if let Some(conn) = net.conns[token as usize].as_mut() {
                        conn.deliver_read(key, b, None);
                    }
                }
            }
        }
        self.scratch_reads = blocks;
    }

    /// Starts the read of `b` on this shard's own ring, straight into a PIECE message: false
    /// if the block cannot be mapped onto open files (bytes in the part file, or no reader),
    /// in which case the disk pipeline reads it.
    fn read_locally(
        &mut self,
        net: &mut Links<'_>,
        t: &TorrentShared,
        token: Token,
        conn_key: u64,
        b: crate::types::BlockRef,
        key: BlockKey,
    ) -> bool {
        let Some(reader) = t.reader() else {
            return false;
        };
        let mut parts = Vec::new();
        if !matches!(
            reader.parts(b.piece.get(), b.offset, b.len, &mut parts),
            Ok(true)
        ) {
            return false;
        }
        let header = crate::wire::piece_header(b.piece.get(), b.offset, b.len);
        let mut msg = self.msgs.take(&header, b.len as usize);
        for p in &parts {
            if let uring_disk::ReadPart::Zeros { at, len } = *p {
                if let Some(z) = msg.block_mut().get_mut(at as usize..(at + len) as usize) {
                    z.fill(0);
                }
            }
        }
        let tag = self.next_tag;
        self.next_tag = self.next_tag.wrapping_add(1);
        self.local_reads.insert(
            tag,
            LocalRead {
                key,
                token,
                conn_key,
                block: b,
            },
        );
        net.ops.push(Op::ReadFile { tag, parts, msg });
        true
    }

    /// A read on the shard's ring finished.
    pub(in crate::shard) fn local_read_done(
        &mut self,
        net: &mut Links<'_>,
        tag: u32,
        msg: BlockMsg,
        result: std::io::Result<()>,
    ) {
        let Some(r) = self.local_reads.remove(&tag) else {
            self.msgs.put(msg);
            return;
        };
        let msg = match result {
            Ok(()) => Some(Rc::new(msg)),
            Err(e) => {
                tracing::warn!("torrent {}: read of {:?} failed: {e}", r.key.0, r.block);
                self.msgs.put(msg);
                None
            }
        };
        self.finish_read(net, r.key, (r.token, r.conn_key), r.block, msg);
    }

    /// A disk pipeline read came back: its bytes are copied after a PIECE header.
    pub(super) fn read_done(&mut self, net: &mut Links<'_>, done: ReadDone) {
        let b = done.block;
        let k: BlockKey = (done.torrent, b.piece.get(), b.offset, b.len);
        let msg = match &done.data {
            Ok(buf) if buf.len() == b.len as usize => {
                let header = crate::wire::piece_header(b.piece.get(), b.offset, b.len);
                let mut m = self.msgs.take(&header, buf.len());
                m.block_mut().copy_from_slice(buf);
                Some(Rc::new(m))
            }
            Ok(_) => {
                tracing::warn!("torrent {}: read of {b:?} came back short", done.torrent);
                None
            }
            Err(e) => {
                tracing::warn!("torrent {}: read of {b:?} failed: {e}", done.torrent);
                None
            }
        };
        self.finish_read(net, k, (done.token, done.key), b, msg);
    }

    /// A block was read (`msg`) or could not be (`None`): to the connection that asked, every
    /// connection that waited for the same block, and the cache when the torrent has several
    /// peers.
    fn finish_read(
        &mut self,
        net: &mut Links<'_>,
        k: BlockKey,
        first: (Token, u64),
        b: crate::types::BlockRef,
        msg: Option<Rc<BlockMsg>>,
    ) {
        let waiters = self.reads_inflight.remove(&k).unwrap_or_default();
        for (token, key) in std::iter::once(first).chain(waiters) {
            if let Some(Some(conn)) = net.conns.get_mut(token as usize) {
                conn.deliver_read(key, b, msg.as_ref());
            }
        }
        let Some(msg) = msg else {
            return;
        };
        if !net.has_other_peers(k.0) {
            self.msgs.put_shared(msg);
            return;
        }
        if let Some(old) = self.cache.insert(k, msg) {
            self.msgs.put_shared(old);
        }
        if b.offset == 0 {
            // The piece's first block is now in the cache: point the torrent's other peers
            // on this shard at it (BEP 6 SUGGEST), so that their requests hit the cache.
            net.suggest_to_others(k.0, b.piece, first.0);
        }
    }

    /// If `block`'s piece can be read whole with O_DIRECT and is not all in the page cache,
    /// starts that read with `block` waiting for it (true). Pieces found cached are
    /// remembered for a while, so the check (`cachestat`) runs about once per piece.
    fn read_piece_if_uncached(
        &mut self,
        net: &mut Links<'_>,
        t: &Arc<TorrentShared>,
        block: (Token, u64, BlockRef),
    ) -> bool {
        let piece = block.2.piece.get();
        if self.cache_state(t.id, piece).is_some() {
            return false;
        }
        let Some(d) = t
            .reader()
            .and_then(|r| r.direct_piece(piece, PIECE_BUF_LEN as u32))
        else {
            return false;
        };
        // A kernel that cannot tell (before 6.5) keeps to the page cache, read on the ring.
        let cached = d.file.is_cached(d.file_offset, u64::from(d.len));
        if cached != Some(false) {
            if self.cached_pieces.len() >= 64 {
                self.cached_pieces.pop_front();
            }
            self.cached_pieces
                .push_back((t.id, piece, cached == Some(true)));
            return false;
        }
        let Some(buf) = self.piece_pools.take(d.read_len as usize) else {
            return false;
        };
        t.counters
            .direct_piece_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = self.next_tag;
        self.next_tag = self.next_tag.wrapping_add(1);
        self.piece_reads.start(
            tag,
            PieceWait {
                torrent: t.id,
                piece,
                len: d.len,
                file: d.file.clone(),
                blocks: vec![block],
            },
        );
        net.ops.push(Op::ReadPiece {
            tag,
            file: d.file,
            offset: d.file_offset,
            len: d.read_len,
            buf,
        });
        true
    }

    /// What the last check of `piece`'s page cache state found (see `cached_pieces`).
    fn cache_state(&self, torrent: u64, piece: u32) -> Option<bool> {
        self.cached_pieces
            .iter()
            .find(|&&(t, p, _)| t == torrent && p == piece)
            .map(|&(_, _, all)| all)
    }

    /// Queues `b` to be sent from the page cache if it lies in one stored file and the page
    /// cache holds it (its piece was found all cached, or else `cachestat` says so for the
    /// block): by the kernel with `sendfile` (no read, no copy here) to a peer that gets
    /// zero-copy uploads, else copied by the kernel from a mapping of the file into the
    /// socket (no read here), if the backend sends from mappings. False otherwise (it is
    /// read), so that the shard thread never waits for the disk inside a send.
    fn send_from_page_cache(
        &mut self,
        net: &mut Links<'_>,
        t: &TorrentShared,
        token: Token,
        key: u64,
        b: BlockRef,
    ) -> bool {
        let (mode, own) = self.zero_copy;
        let Some(Some(conn)) = net.conns.get(token as usize) else {
            return false;
        };
        // An encrypted stream needs the bytes in memory, and so does uTP (it packetizes them).
        if !conn.transport.passes_through() || conn.utp {
            return false;
        }
        let zero_copy = mode.allows(conn.addr.ip(), own);
        if !zero_copy && !self.mapped_sends {
            return false;
        }
        let Some((file, off)) = self.one_file_part(t, b) else {
            return false;
        };
        let cached = match self.cache_state(t.id, b.piece.get()) {
            Some(all) => all,
            None => file.is_cached(off, u64::from(b.len)) == Some(true),
        };
        if !cached {
            return false;
        }
        let counter = if zero_copy {
            &t.counters.page_cache_sends
        } else if file
            .mapping()
            .is_some_and(|m| m.covers(off, u64::from(b.len)))
        {
            &t.counters.mapped_sends
        } else {
            return false;
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(Some(conn)) = net.conns.get_mut(token as usize) {
            conn.deliver_cached(key, b, (file, off), !zero_copy);
        }
        if b.offset == 0 && net.has_other_peers(t.id) {
            // The piece is in the page cache: point the torrent's other peers here at it.
            net.suggest_to_others(t.id, b.piece, token);
        }
        true
    }

    /// The file and offset of `b` if all of it lies in one stored file.
    fn one_file_part(&mut self, t: &TorrentShared, b: BlockRef) -> Option<(OpenFile, u64)> {
        let reader = t.reader()?;
        let mut parts = std::mem::take(&mut self.scratch_parts);
        parts.clear();
        let mapped = reader.parts(b.piece.get(), b.offset, b.len, &mut parts);
        let one = match (mapped, parts.as_slice()) {
            (
                Ok(true),
                [ReadPart::File {
                    file,
                    file_offset,
                    len,
                    ..
                }],
            ) if *len == b.len => Some((file.clone(), *file_offset)),
            _ => None,
        };
        parts.clear();
        self.scratch_parts = parts;
        one
    }

    /// Reads `blocks` through the page cache (their piece could not be read whole).
    fn reread_buffered(
        &mut self,
        net: &mut Links<'_>,
        t: &Arc<TorrentShared>,
        blocks: Vec<(Token, u64, BlockRef)>,
    ) {
        for (token, key, b) in blocks {
            let k: BlockKey = (t.id, b.piece.get(), b.offset, b.len);
            if let Some(w) = self.reads_inflight.get_mut(&k) {
                w.push((token, key));
            } else if self.read_locally(net, t, token, key, b, k) {
                self.reads_inflight.insert(k, Vec::new());
            } else if let Some(Some(conn)) = net.conns.get_mut(token as usize) {
                conn.deliver_read(key, b, None);
            }
        }
    }

    /// A whole-piece read finished: its waiting blocks go out as slices of it, and the piece
    /// is kept for the blocks asked for next.
    pub(in crate::shard) fn piece_read_done(
        &mut self,
        net: &mut Links<'_>,
        tag: u32,
        buf: uring_disk::PooledBuf,
        result: std::io::Result<usize>,
    ) {
        let Some(w) = self.piece_reads.finish(tag) else {
            return;
        };
        let piece = match result {
            Ok(n) if n >= w.len as usize => Rc::new(PieceData::new(buf, w.len as usize)),
            other => {
                tracing::debug!(
                    "torrent {}: O_DIRECT read of piece {} gave {other:?}; reading blocks buffered",
                    w.torrent,
                    w.piece
                );
                if other
                    .as_ref()
                    .is_err_and(|e| e.raw_os_error() == Some(libc::EINVAL))
                {
                    w.file.refuse_direct();
                }
                if let Some(t) = net.torrents.get(&w.torrent).cloned() {
                    self.reread_buffered(net, &t, w.blocks);
                }
                return;
            }
        };
        let first = w.blocks.first().map(|&(token, _, b)| (token, b.piece));
        for (token, key, b) in w.blocks {
            if let Some(Some(conn)) = net.conns.get_mut(token as usize) {
                conn.deliver_slice(key, b, &piece);
            }
        }
        self.pieces.insert(w.torrent, w.piece, piece);
        if let (Some((from, index)), true) = (first, net.has_other_peers(w.torrent)) {
            // The whole piece is in memory now: point the torrent's other peers here at it.
            net.suggest_to_others(w.torrent, index, from);
        }
    }
}
