//! A shard's uploader: everything that turns the blocks its peers ask for into PIECE
//! messages. It owns the upload state (message cache, reads in flight, pieces read whole,
//! the buffers for them, the page-cache checks) and is called from the shard loop with the
//! loop's connections and op queue ([`Links`]). What a connection may be sent is the peer
//! session's business (`peer/upload.rs`); how the bytes are found is this module's:
//! `reads.rs` (cache, joins, whole-piece reads, `sendfile` and mapped sends, ring reads),
//! `pieces.rs` (pieces held whole), `cache.rs` (recent PIECE messages), `deliver.rs` (handing
//! them to a connection). See DESIGN.md, "Anatomy of an upload".

mod cache;
mod deliver;
mod pieces;
mod reads;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use super::backend::{Op, Token};
use super::conn::Conn;
use super::sendq::MsgPool;
use super::Waker;
use crate::api::ZeroCopyUploads;
use crate::torrent::TorrentShared;
use crate::types::{BlockRef, PieceIndex};
use cache::{BlockKey, ReadCache};

/// A disk read for an upload, finished, on its way back to the shard that asked.
pub struct ReadDone {
    pub token: Token,
    pub key: u64,
    pub torrent: u64,
    pub block: BlockRef,
    pub data: Result<uring_disk::ReadBuf, uring_disk::StorageError>,
}

/// An upload read on the shard's ring: the block, and the connection that asked first.
struct LocalRead {
    key: BlockKey,
    token: Token,
    conn_key: u64,
    block: BlockRef,
}

/// What the uploader borrows from the shard loop for a call: the connections (by token), the
/// op queue of the shard's ring, and the shard's torrents.
pub struct Links<'a> {
    pub conns: &'a mut [Option<Conn>],
    pub ops: &'a mut Vec<Op>,
    pub torrents: &'a HashMap<u64, Arc<TorrentShared>>,
}

impl Links<'_> {
    /// Whether the torrent has more peers than the one being served (worth caching for).
    fn has_other_peers(&self, torrent: u64) -> bool {
        self.torrents
            .get(&torrent)
            .is_some_and(|t| t.counters.peers.load(std::sync::atomic::Ordering::Relaxed) > 1)
    }

    /// Points the torrent's peers on this shard other than `from` at `piece` (BEP 6 SUGGEST).
    fn suggest_to_others(&mut self, torrent: u64, piece: PieceIndex, from: Token) {
        for (i, c) in self.conns.iter_mut().enumerate() {
            if let Some(conn) = c.as_mut() {
                if i as Token != from && conn.torrent_id() == Some(torrent) {
                    conn.suggest(piece);
                }
            }
        }
    }
}

/// The upload state of one shard (see the module doc).
pub struct Uploader {
    disk: Arc<uring_disk::DiskPipeline>,
    /// Which peers get `sendfile`, and the address we listen on (see `ZeroCopyUploads`).
    zero_copy: (ZeroCopyUploads, Option<std::net::IpAddr>),
    /// Whether blocks in the page cache go to the peers that get copies from a mapping of
    /// their file (the backend sends from mappings).
    mapped_sends: bool,
    /// Disk pipeline reads come back here, and wake the shard.
    reads_tx: Sender<ReadDone>,
    reads_rx: Receiver<ReadDone>,
    waker: Option<Arc<Waker>>,
    cache: ReadCache,
    /// Upload reads in flight, with the other connections waiting for the same block.
    reads_inflight: HashMap<BlockKey, Vec<(Token, u64)>>,
    /// Upload reads on this shard's own ring, by tag.
    local_reads: HashMap<u32, LocalRead>,
    next_tag: u32,
    /// PIECE message buffers for reuse (connections return them when sent or dropped).
    pub msgs: MsgPool,
    /// Pieces read whole with O_DIRECT (kept, and in flight), and their buffers.
    pieces: pieces::PieceCache,
    piece_reads: pieces::PieceReads,
    piece_pools: pieces::PiecePools,
    /// Pieces whose page cache state was checked recently, and whether all of the piece was
    /// there (served with `sendfile`) or the kernel could not tell (read buffered).
    cached_pieces: VecDeque<(u64, u32, bool)>,
    scratch_reads: Vec<BlockRef>,
    scratch_parts: Vec<uring_disk::ReadPart>,
}

impl Uploader {
    pub fn new(
        disk: Arc<uring_disk::DiskPipeline>,
        zero_copy: (ZeroCopyUploads, Option<std::net::IpAddr>),
        mapped_sends: bool,
        waker: Option<Arc<Waker>>,
    ) -> Uploader {
        let (reads_tx, reads_rx) = crossbeam_channel::unbounded();
        Uploader {
            disk,
            zero_copy,
            mapped_sends,
            reads_tx,
            reads_rx,
            waker,
            cache: ReadCache::default(),
            reads_inflight: HashMap::new(),
            local_reads: HashMap::new(),
            next_tag: 0,
            msgs: MsgPool::default(),
            pieces: pieces::PieceCache::default(),
            piece_reads: pieces::PieceReads::default(),
            piece_pools: pieces::PiecePools::default(),
            cached_pieces: VecDeque::new(),
            scratch_reads: Vec::new(),
            scratch_parts: Vec::new(),
        }
    }

    /// Drops what is kept for a removed torrent.
    pub fn forget_torrent(&mut self, torrent: u64) {
        self.cache.forget_torrent(torrent);
        self.pieces.forget_torrent(torrent);
    }

    /// Upload reads are in flight (on the ring or the disk pipeline): keep the short tick.
    pub fn is_busy(&self) -> bool {
        !self.reads_inflight.is_empty() || !self.local_reads.is_empty() || !self.reads_rx.is_empty()
    }

    /// Hands out the disk pipeline reads that came back since the last call.
    pub fn drain_replies(&mut self, net: &mut Links<'_>) {
        while let Ok(done) = self.reads_rx.try_recv() {
            self.read_done(net, done);
        }
    }
}
