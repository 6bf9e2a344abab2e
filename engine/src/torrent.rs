//! State of one torrent shared by every shard: the picker, the table of pieces being filled,
//! the logs shards read to broadcast HAVEs and to blame peers for hash failures, and the
//! counters behind stats. No IO happens here.
//!
//! Invariants:
//! - A piece in play has one entry in the in-flight table (`inflight[p]`, see
//!   [`InflightPiece`]): `Filling` with its buffer from the claim of its first block, then
//!   `Verifying` once the single writer whose block completed it took the buffer out and
//!   submitted it to the disk pipeline, until the verdict. The entry alone says who supplied
//!   the piece (for blame), so a piece has at most one buffer.
//! - `verified_log` only ever receives indices taken from a `VerifiedPiece` witness, after the
//!   piece's bytes were written: a HAVE is never sent for unverified or unwritten data.
//! - Upload slots are the [`ChokeBoard`]'s alone (see `torrent/choke.rs`); rate limits are
//!   the torrent's `RateLimits` and the engine's global ones, both charged by every grant.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use uring_disk::{BlockWriter, BufferPool, SharedPiece, VerifiedPiece};

mod choke;
mod dht_link;
pub use choke::ChokeBoard;
pub use dht_link::DhtLink;

use crate::choker::ChokerConfig;
use crate::handshake::{Handshake, DHT as DHT_BIT};
use crate::metainfo::Metainfo;
use crate::picker::{Begin, Picker};
use crate::ratelimit::{self, RateLimits};
use crate::types::{Bitfield, BlockRef, InfoHash, Lengths, PeerId, PieceIndex, BLOCK_LEN};

/// A piece in play, from the claim of its first block until the disk's verdict: the one
/// place that knows its buffer and who supplied its blocks.
pub enum InflightPiece {
    /// Blocks land in `buf`; `contributors` are the sessions that wrote into it.
    Filling {
        buf: Arc<SharedPiece>,
        contributors: Vec<u64>,
    },
    /// Complete and handed to the disk pipeline (hash, then write), which owns the buffer
    /// now; the contributors wait here for the verdict (blamed if the hash fails).
    Verifying { contributors: Vec<u64> },
}

/// A piece that failed its hash and the peers that supplied its blocks.
#[derive(Clone, Debug)]
pub struct FailedPiece {
    pub piece: PieceIndex,
    pub contributors: Vec<u64>,
}

/// Why payload bytes that arrived were not kept. Every received byte is either written as part
/// of a verified piece, still in a piece buffer, or counted under one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waste {
    /// Another peer's copy of the block landed first (endgame duplicates), or our claim was
    /// consumed by it before our copy came.
    Duplicate = 0,
    /// We had cancelled or given up the request (timeout, snub, choke, endgame CANCEL) and the
    /// block came anyway (BEP 3: a CANCEL may cross the block on the wire).
    Late = 1,
    /// A block we never asked this peer for.
    Unrequested = 2,
    /// We own the block but its piece had no buffer to land in. Claims are only made for
    /// pieces with a buffer, so this stays 0; it is counted to show that.
    NoBuffer = 3,
    /// The piece the bytes went into failed its hash check.
    HashFailed = 4,
}

impl Waste {
    pub const ALL: [Waste; 5] = [
        Waste::Duplicate,
        Waste::Late,
        Waste::Unrequested,
        Waste::NoBuffer,
        Waste::HashFailed,
    ];
}

/// Byte and event counters, updated with relaxed atomics.
#[derive(Default)]
pub struct Counters {
    pub downloaded_bytes: AtomicU64,
    pub uploaded_bytes: AtomicU64,
    /// Received payload not kept, by [`Waste`] reason (indexed by its discriminant).
    waste: [AtomicU64; 5],
    pub verified_bytes: AtomicU64,
    pub hash_failures: AtomicU32,
    pub peers: AtomicU32,
    /// BEP 6 SUGGEST PIECE messages sent to peers and received from them.
    pub suggests_sent: AtomicU32,
    pub suggests_received: AtomicU32,
    /// Pieces read whole with O_DIRECT for uploads.
    pub direct_piece_reads: AtomicU32,
    /// Blocks sent from the page cache with `sendfile`.
    pub page_cache_sends: AtomicU64,
    /// Blocks sent from a mapping of their file (one copy, by the kernel).
    pub mapped_sends: AtomicU64,
}

impl Counters {
    /// Counts `bytes` of received payload as wasted for `why`.
    pub fn add_waste(&self, why: Waste, bytes: u64) {
        self.waste[why as usize].fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes wasted for `why`.
    pub fn waste(&self, why: Waste) -> u64 {
        self.waste[why as usize].load(Ordering::Relaxed)
    }

    /// Bytes wasted for any reason.
    pub fn wasted_bytes(&self) -> u64 {
        Waste::ALL.iter().map(|&w| self.waste(w)).sum()
    }
}

/// A handshaken peer of a torrent, in the registry every shard shares.
#[derive(Debug, Clone, Copy)]
struct ConnectedPeer {
    /// Where it accepts connections, if known (PEX hands it out).
    listen: Option<SocketAddr>,
    /// It has every piece.
    seed: bool,
}

/// Everything about a torrent that shards share.
pub struct TorrentShared {
    pub id: u64,
    pub meta: Arc<Metainfo>,
    pub info_hash: InfoHash,
    pub lengths: Lengths,
    pub our_id: PeerId,
    pub picker: Picker,
    pub pool: Arc<BufferPool>,
    pub disk_slot: uring_disk::TorrentSlot,
    inflight: Vec<Mutex<Option<InflightPiece>>>,
    verified_log: Vec<AtomicU32>,
    verified_len: AtomicUsize,
    failed: Mutex<Vec<FailedPiece>>,
    failed_len: AtomicUsize,
    pub banned: Mutex<HashSet<IpAddr>>,
    /// Sessions banned for corrupt data: later failures they shared in are put down to them.
    culprits: Mutex<HashSet<u64>>,
    /// Trackers announced to: the torrent's, the resume file's and the user's, merged once at
    /// add time ([`Self::set_trackers`]); the torrent's own until then.
    trackers: OnceLock<Vec<Vec<String>>>,
    /// Maps blocks onto the torrent's open files, for the shards' own upload reads
    /// ([`Self::set_reader`]); without it uploads are read by the disk pipeline.
    reader: OnceLock<uring_disk::BlockReader>,
    /// Handshaken peers, with the address each accepts connections on once known (the
    /// dialed address, or the source address with BEP 10 `p`): what PEX tells others.
    connected: Mutex<HashMap<PeerId, ConnectedPeer>>,
    /// Our listen port, told to peers in the extension handshake.
    listen_port: OnceLock<u16>,
    pex_off: AtomicBool,
    /// The engine's DHT node, for public torrents while the DHT is on (handshake bit, PORT).
    dht: OnceLock<Arc<DhtLink>>,
    pub counters: Counters,
    /// Set when the torrent stops (pause, error, shutdown): shards close its peers.
    pub stopped: AtomicBool,
    pub complete: AtomicBool,
    pub max_peers: u32,
    /// The torrent's choker, shared by the shards (see `torrent/choke.rs`).
    pub choke: ChokeBoard,
    /// This torrent's rate limits (`AddTorrent`), 0 = none.
    pub limits: RateLimits,
    /// The engine's global limits, attached by the shards when the torrent arrives.
    global_limits: OnceLock<Arc<RateLimits>>,
}

/// Why a buffer for a new piece could not be had.
#[derive(Debug, PartialEq, Eq)]
pub enum NoBuffer {
    /// Every pooled buffer is in use: downloads wait for the disk (backpressure).
    PoolEmpty,
    /// The pool's buffers do not fit this piece (an engine bug, reported, never a panic).
    WrongSize,
    /// The piece is complete and being verified: no block of it is claimable.
    Verifying,
}

impl TorrentShared {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: u64,
        meta: Arc<Metainfo>,
        our_id: PeerId,
        picker: Picker,
        pool: Arc<BufferPool>,
        disk_slot: uring_disk::TorrentSlot,
        max_peers: u32,
    ) -> TorrentShared {
        let lengths = meta.info.lengths;
        let n = lengths.num_pieces() as usize;
        TorrentShared {
            id,
            info_hash: meta.info_hash,
            meta,
            lengths,
            our_id,
            picker,
            pool,
            disk_slot,
            inflight: (0..n).map(|_| Mutex::new(None)).collect(),
            verified_log: (0..n).map(|_| AtomicU32::new(0)).collect(),
            verified_len: AtomicUsize::new(0),
            failed: Mutex::new(Vec::new()),
            failed_len: AtomicUsize::new(0),
            banned: Mutex::new(HashSet::new()),
            culprits: Mutex::new(HashSet::new()),
            trackers: OnceLock::new(),
            reader: OnceLock::new(),
            connected: Mutex::new(HashMap::new()),
            listen_port: OnceLock::new(),
            pex_off: AtomicBool::new(false),
            dht: OnceLock::new(),
            counters: Counters::default(),
            stopped: AtomicBool::new(false),
            complete: AtomicBool::new(false),
            max_peers,
            choke: ChokeBoard::new(ChokerConfig::default(), id ^ 0x9e37_79b9_7f4a_7c15),
            limits: RateLimits::default(),
            global_limits: OnceLock::new(),
        }
    }

    fn slot(&self, p: PieceIndex) -> std::sync::MutexGuard<'_, Option<InflightPiece>> {
        // A poisoned slot only means another shard panicked mid-update of a plain Option;
        // the data (an Arc and a Vec) is still consistent.
        self.inflight[p.idx()]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Makes sure piece `p` has a buffer, taking one from the pool if it has none.
    pub fn ensure_buffer(&self, p: PieceIndex) -> Result<(), NoBuffer> {
        let mut slot = self.slot(p);
        match *slot {
            Some(InflightPiece::Filling { .. }) => return Ok(()),
            Some(InflightPiece::Verifying { .. }) => return Err(NoBuffer::Verifying),
            None => {}
        }
        let buf = self.pool.try_take().ok_or(NoBuffer::PoolEmpty)?;
        let piece = SharedPiece::new(buf, p.get(), self.lengths.piece_len(p), BLOCK_LEN)
            .map_err(|_| NoBuffer::WrongSize)?;
        *slot = Some(InflightPiece::Filling {
            buf: Arc::new(piece),
            contributors: Vec::new(),
        });
        Ok(())
    }

    /// Piece `p` is being filled (has a buffer in the in-flight table).
    pub fn has_buffer(&self, p: PieceIndex) -> bool {
        matches!(*self.slot(p), Some(InflightPiece::Filling { .. }))
    }

    /// The buffer of a piece in flight, recording `peer` as a contributor.
    pub fn buffer_for(&self, p: PieceIndex, peer: u64) -> Option<Arc<SharedPiece>> {
        let mut slot = self.slot(p);
        let Some(InflightPiece::Filling { buf, contributors }) = slot.as_mut() else {
            return None;
        };
        if !contributors.contains(&peer) {
            contributors.push(peer);
        }
        Some(buf.clone())
    }

    /// The first bytes of `block` arrived from peer `peer`, which requested it: decides who
    /// writes the block. The picker's block byte decides (exactly one owner per block and round,
    /// `Picker::begin_block`); the owner gets the writer of the block in the piece's buffer.
    /// Both always agree, because a block is only claimed once its piece has a buffer (the
    /// `admit` gate of `Picker::pick`), the buffer leaves the table only when every block of
    /// the round is received, and an owner that gives up drops its writer before the picker
    /// hears of it. `Err` says why the bytes are to be skipped.
    pub fn begin_write(
        &self,
        block: BlockRef,
        peer: u64,
    ) -> Result<(BlockWriter, Arc<SharedPiece>), Waste> {
        match self.picker.begin_block(block) {
            Begin::Owner => {}
            // Someone else's copy is landing or landed (endgame), or our claim was consumed
            // by it and the piece reset since: not ours to write.
            Begin::Duplicate | Begin::Unrequested => return Err(Waste::Duplicate),
        }
        let writer = self
            .buffer_for(block.piece, peer)
            .and_then(|buf| Some((buf.begin_block(block.block_in_piece())?, buf)));
        debug_assert!(
            writer.is_some(),
            "picker owner of {block:?} without a buffer block"
        );
        if writer.is_none() {
            self.picker.abort_block(block);
        }
        writer.ok_or(Waste::NoBuffer)
    }

    /// The owner of `block` copied all of it: the block is marked done in the buffer, then
    /// received in the picker. The picker's count decides which finisher completed the piece
    /// (exactly one per round); that one takes the piece out of the table and gets it back to
    /// submit to the disk. Each block is done in the buffer before the picker counts it, so
    /// the buffer is whole when the picker says the piece is complete. (Deciding by the
    /// buffer's own count instead let two shards that finished a piece's last two blocks at
    /// once disagree: the buffer's completer submitted the piece, and it could be hashed and
    /// written before the other shard's count moved it to `Complete`; `piece_verified` then
    /// refused it and the download stalled one piece short.)
    pub fn finish_write(
        &self,
        block: BlockRef,
        writer: BlockWriter,
    ) -> Result<Option<Arc<SharedPiece>>, Waste> {
        if writer.finish().is_err() {
            // Not all of it was written (cannot happen with an in-order reader): the buffer
            // block went back to empty with the writer, so the picker's claim goes back too.
            self.picker.abort_block(block);
            return Err(Waste::NoBuffer);
        }
        let received = self.picker.finish_block(block);
        debug_assert!(
            received.is_some(),
            "{block:?} finished without being received"
        );
        match received {
            Some(true) => {
                let taken = self.take_complete(block.piece);
                debug_assert!(
                    taken.as_ref().is_some_and(|b| b.is_complete()),
                    "picker completed {block:?} but the buffer is not whole"
                );
                Ok(taken)
            }
            Some(false) | None => Ok(None),
        }
    }

    /// Checks that the picker and the piece buffers agree on every block of every piece in
    /// play (for the simulation tests; call between steps, never concurrently with arrivals):
    /// a claimed or receiving block has a buffer; the buffer holds exactly the blocks the
    /// picker counts as received, and is being written exactly where the picker has an owner.
    /// Returns the first disagreement found.
    pub fn check_agreement(&self) -> Result<(), String> {
        use crate::picker::BlockState;
        for p in self.lengths.pieces() {
            let buf = match self.slot(p).as_ref() {
                Some(InflightPiece::Filling { buf, .. }) => Some(buf.clone()),
                Some(InflightPiece::Verifying { .. }) | None => None,
            };
            let state = self.picker.state(p);
            for i in 0..self.lengths.blocks_in_piece(p) {
                let Ok(b) = self.lengths.block(p, i) else {
                    return Err(format!("piece {p} block {i}: no such block"));
                };
                let Some(st) = self.picker.block_state(b) else {
                    return Err(format!("{b:?}: unknown to the picker"));
                };
                let in_play = matches!(st, BlockState::Claimed(_) | BlockState::Receiving(_));
                let Some(buf) = &buf else {
                    if in_play {
                        return Err(format!("{b:?} is {st:?} but piece {p} has no buffer"));
                    }
                    continue;
                };
                let (done, writing) = (buf.is_block_done(i), buf.is_block_writing(i));
                let agree = match st {
                    BlockState::Received => done,
                    BlockState::Receiving(_) => writing,
                    BlockState::Free | BlockState::Claimed(_) => !done && !writing,
                };
                if !agree {
                    return Err(format!(
                        "{b:?}: picker {st:?} ({state:?}), buffer done {done} writing {writing}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// True if the block's data is already in memory or the piece is no longer in flight
    /// (completed, verified or reset): a request for it can be cancelled.
    pub fn block_done(&self, b: BlockRef) -> bool {
        match self.slot(b.piece).as_ref() {
            Some(InflightPiece::Filling { buf, .. }) => buf.is_block_done(b.block_in_piece()),
            Some(InflightPiece::Verifying { .. }) | None => true,
        }
    }

    /// Our verified pieces as a bitfield (for the opening BITFIELD message).
    pub fn have_bitfield(&self) -> Bitfield {
        let mut bf = Bitfield::new(self.lengths.num_pieces());
        for p in self.lengths.pieces() {
            if self.picker.have(p) {
                bf.set(p);
            }
        }
        bf
    }

    /// Takes a completed piece's buffer out of the table (for the disk pipeline); the piece
    /// stays in it as `Verifying`, with who supplied it, until the hash result comes back.
    pub fn take_complete(&self, p: PieceIndex) -> Option<Arc<SharedPiece>> {
        let mut slot = self.slot(p);
        match slot.take() {
            Some(InflightPiece::Filling { buf, contributors }) => {
                *slot = Some(InflightPiece::Verifying { contributors });
                Some(buf)
            }
            other => {
                // Already verifying, or not in play: taken once only.
                *slot = other;
                None
            }
        }
    }

    /// The disk wrote a verified piece.
    pub fn on_verified(&self, v: &VerifiedPiece) -> Option<PieceIndex> {
        let p = self.lengths.piece(v.piece()).ok()?;
        self.take_blame(p);
        self.picker.piece_verified(p);
        let i = self.verified_len.load(Ordering::Acquire);
        if i < self.verified_log.len() {
            self.verified_log[i].store(p.get(), Ordering::Relaxed);
            self.verified_len.store(i + 1, Ordering::Release);
        }
        self.counters
            .verified_bytes
            .fetch_add(self.lengths.piece_len(p) as u64, Ordering::Relaxed);
        Some(p)
    }

    /// The piece failed its hash check (or could not be written): its blocks become free again.
    pub fn on_failed(&self, p: PieceIndex, hash_failure: bool) {
        let contributors = self.take_blame(p).unwrap_or_default();
        if hash_failure && contributors.len() > 1 {
            // Several suppliers: the next round comes from one, so it has one suspect.
            self.picker.piece_failed_exclusive(p);
        } else {
            self.picker.piece_failed(p);
        }
        if hash_failure {
            self.counters.hash_failures.fetch_add(1, Ordering::Relaxed);
            self.counters
                .add_waste(Waste::HashFailed, u64::from(self.lengths.piece_len(p)));
            let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
            failed.push(FailedPiece {
                piece: p,
                contributors,
            });
            self.failed_len.store(failed.len(), Ordering::Release);
        }
    }

    /// Ends a verifying piece's stay in the table (before the picker hears the verdict, so a
    /// failed piece's next round finds an empty slot): who supplied it.
    fn take_blame(&self, p: PieceIndex) -> Option<Vec<u64>> {
        let mut slot = self.slot(p);
        match slot.take() {
            Some(InflightPiece::Verifying { contributors }) => Some(contributors),
            other => {
                // Not verifying (the disk reported on a piece it was never given): leave it.
                *slot = other;
                None
            }
        }
    }

    /// Verified pieces logged at or after `cursor`, and the new cursor.
    pub fn verified_since(&self, cursor: usize, out: &mut Vec<PieceIndex>) -> usize {
        let end = self.verified_len.load(Ordering::Acquire);
        for slot in &self.verified_log[cursor.min(end)..end] {
            if let Ok(p) = self.lengths.piece(slot.load(Ordering::Relaxed)) {
                out.push(p);
            }
        }
        end
    }

    /// How many hash failures are logged (a new session's starting cursor).
    pub fn failed_len(&self) -> usize {
        self.failed_len.load(Ordering::Acquire)
    }

    /// Hash failures logged at or after `cursor`, and the new cursor.
    pub fn failed_since(&self, cursor: usize, out: &mut Vec<FailedPiece>) -> usize {
        if self.failed_len.load(Ordering::Acquire) <= cursor {
            return cursor;
        }
        let failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        out.extend(failed[cursor.min(failed.len())..].iter().cloned());
        failed.len()
    }

    pub fn is_banned(&self, ip: IpAddr) -> bool {
        self.banned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&ip)
    }

    pub fn ban(&self, ip: IpAddr) {
        self.banned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ip);
    }

    /// The tracker tiers to announce to and to save in the resume file.
    pub fn trackers(&self) -> &[Vec<String>] {
        self.trackers.get().unwrap_or(&self.meta.trackers)
    }

    /// Sets the merged tracker list (once, before announcing starts).
    pub fn set_trackers(&self, tiers: Vec<Vec<String>>) {
        let _ = self.trackers.set(tiers);
    }

    /// Sets the block reader the shards use to read uploads on their own rings (once).
    pub fn set_reader(&self, reader: uring_disk::BlockReader) {
        let _ = self.reader.set(reader);
    }

    /// The block reader, if one was set.
    pub fn reader(&self) -> Option<&uring_disk::BlockReader> {
        self.reader.get()
    }

    /// Bans the peer (session `key`, address `ip`) that alone supplied a piece that failed.
    pub fn ban_culprit(&self, key: u64, ip: IpAddr) {
        self.ban(ip);
        self.culprits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key);
    }

    /// The session `key` was banned for supplying a bad piece alone.
    pub fn is_culprit(&self, key: u64) -> bool {
        self.culprits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&key)
    }

    /// Registers a handshaken peer id, with its listen address if known; false for ourselves
    /// or a duplicate connection.
    pub fn register_peer(&self, id: PeerId, listen: Option<SocketAddr>) -> bool {
        if id == self.our_id {
            return false;
        }
        let mut c = self.connected.lock().unwrap_or_else(|e| e.into_inner());
        if c.contains_key(&id) {
            return false;
        }
        c.insert(
            id,
            ConnectedPeer {
                listen,
                seed: false,
            },
        );
        true
    }

    /// A connected peer turned out to have every piece: PEX tells others it is a seed, so a
    /// seed that hears of it does not dial it (BEP 11 flag 0x02).
    pub fn set_peer_seed(&self, id: &PeerId) {
        if let Some(p) = self
            .connected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(id)
        {
            p.seed = true;
        }
    }

    /// A peer's listen address learned after the handshake (BEP 10 `p`).
    pub fn set_peer_listen_addr(&self, id: &PeerId, addr: SocketAddr) {
        if let Some(a) = self
            .connected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(id)
        {
            a.listen = Some(addr);
        }
    }

    pub fn unregister_peer(&self, id: &PeerId) {
        self.connected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// The connected peers' listen addresses (for PEX, BEP 11).
    pub fn pex_peers(&self) -> Vec<SocketAddr> {
        self.pex_peers_flagged()
            .into_iter()
            .map(|p| p.addr)
            .collect()
    }

    /// [`TorrentShared::pex_peers`], each flagged as a seed if it has every piece.
    pub fn pex_peers_flagged(&self) -> Vec<crate::pex::PexPeer> {
        self.connected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter_map(|p| {
                p.listen.map(|addr| crate::pex::PexPeer {
                    addr,
                    flags: crate::pex::PexFlags(if p.seed {
                        crate::pex::PexFlags::SEED
                    } else {
                        0
                    }),
                })
            })
            .collect()
    }

    /// Turns PEX off for this torrent (the engine's `Config::pex`), before any peer connects.
    pub fn disable_pex(&self) {
        self.pex_off.store(true, Ordering::Relaxed);
    }

    /// Whether peers may be exchanged on this torrent (BEP 11; never private, BEP 27).
    pub fn pex_allowed(&self) -> bool {
        !self.meta.info.private && !self.pex_off.load(Ordering::Relaxed)
    }

    /// Links this torrent to the engine's DHT node; refused (ignored) for private torrents
    /// (BEP 27).
    pub fn set_dht(&self, link: Arc<DhtLink>) {
        if !self.meta.info.private {
            let _ = self.dht.set(link);
        }
    }

    /// Our DHT node's UDP port, while it answers queries and this torrent may use it.
    pub fn dht_port(&self) -> Option<u16> {
        self.dht.get().and_then(|l| l.port())
    }

    /// Our handshake for this torrent: the extension protocol, Fast, and the DHT bit when
    /// the engine's DHT is on and this torrent may use it (BEP 5).
    pub fn our_handshake(&self) -> Handshake {
        let mut hs = Handshake::ours(self.info_hash, self.our_id);
        if self.dht.get().is_some() {
            hs.reserved[DHT_BIT.0] |= DHT_BIT.1;
        }
        hs
    }

    /// A peer at `peer` announced its DHT node on `port` (a PORT message).
    pub fn dht_node_seen(&self, peer: SocketAddr, port: u16) {
        if let Some(l) = self.dht.get() {
            l.node_seen(peer, port);
        }
    }

    pub fn set_listen_port(&self, port: u16) {
        let _ = self.listen_port.set(port);
    }

    /// Our listen port, if the engine set it (not in unit tests).
    pub fn listen_port(&self) -> Option<u16> {
        self.listen_port.get().copied().filter(|&p| p != 0)
    }

    /// Attaches the engine's global rate limits (the first caller wins; every shard passes
    /// the same ones) and its number of upload slots.
    pub fn attach_engine(&self, global: &Arc<RateLimits>, upload_slots: usize) {
        let _ = self.global_limits.set(global.clone());
        self.choke.set_upload_slots(upload_slots);
    }

    /// How many of `want` blocks may be sent now under the upload limits (charged here).
    pub fn grant_upload(&self, now: Instant, want: u64) -> u64 {
        match self.global_limits.get() {
            Some(g) => ratelimit::grant(
                &[&g.upload, &self.limits.upload],
                now,
                want,
                BLOCK_LEN as u64,
            ),
            None => ratelimit::grant(&[&self.limits.upload], now, want, BLOCK_LEN as u64),
        }
    }

    /// Gives back download grants that were not used.
    pub fn refund_download(&self, unused: u64) {
        if unused == 0 {
            return;
        }
        match self.global_limits.get() {
            Some(g) => ratelimit::refund(
                &[&g.download, &self.limits.download],
                unused,
                BLOCK_LEN as u64,
            ),
            None => ratelimit::refund(&[&self.limits.download], unused, BLOCK_LEN as u64),
        }
    }

    /// How many of `want` blocks may be requested now under the download limits (charged).
    pub fn grant_download(&self, now: Instant, want: u64) -> u64 {
        match self.global_limits.get() {
            Some(g) => ratelimit::grant(
                &[&g.download, &self.limits.download],
                now,
                want,
                BLOCK_LEN as u64,
            ),
            None => ratelimit::grant(&[&self.limits.download], now, want, BLOCK_LEN as u64),
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }
}
