//! The per-peer state machine after the handshake (BEP 3, with BEP 6 Fast messages).
//! Sans-IO: wire events and the time come in; bytes to send accumulate in `out`, and the
//! caller learns which pieces were completed and when to disconnect.
//!
//! Downloading: requests are pipelined up to [`pipeline::Pipeline::target`] (bandwidth x delay,
//! with slow start); blocks are claimed from the shared picker, and their bytes are copied once
//! from the receive buffer into the piece's shared buffer. The peer remembers nothing about
//! block state beyond its own outstanding requests: the picker is the single owner.
//!
//! Invariants:
//! - Every claim this peer took from the picker is either in `requests`, or was released, or
//!   its block arrived. `release_all` (on disconnect, choke, snub) gives every claim back.
//! - Unrequested data is never written anywhere.

// The download half lives here (about 640 lines with its state); blame and parole are in
// `blame.rs`, the upload half in `upload.rs` (with the rate meter), BEP 6 allowed-fast sets in
// `fast.rs`, the request window in `pipeline.rs`.
#[cfg(test)]
mod arrival_tests;
mod blame;
#[cfg(test)]
mod blame_tests;
#[cfg(test)]
mod dht_tests;
#[cfg(test)]
mod ext_tests;
mod extensions;
mod fast;
mod info;
mod outstanding;
mod pipeline;
#[cfg(test)]
mod test_torrent;
mod upload;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use uring_disk::{BlockWriter, SharedPiece};

use crate::torrent::{FailedPiece, TorrentShared, Waste};
use crate::types::{Bitfield, BlockRef, GeometryError, PieceIndex};
use crate::wire::{self, Message};
use outstanding::Outstanding;

pub use fast::{allowed_fast_set, ALLOWED_FAST_K};
pub use info::PeerInfo;
pub use pipeline::Pipeline;
pub use upload::RateMeter;

/// Close a peer that sent nothing for this long (BEP 3 suggests two minutes).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Send a keep-alive after this long without sending anything.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(90);
/// Requests outstanding with no block arriving for this long: the peer is snubbing us.
pub const SNUB_TIMEOUT: Duration = Duration::from_secs(20);
/// Requests a peer may have queued with us; more is a flood and the peer is dropped.
pub const MAX_QUEUED_REQUESTS: usize = 2000;
/// Disk reads in flight per peer while uploading.
pub const MAX_READS_IN_FLIGHT: u32 = 16;
/// In endgame, a peer with fewer than this many requests outstanding asks for duplicates, up
/// to this many in flight.
const ENDGAME_MAX_OUTSTANDING: usize = 2;
/// In endgame, a peer asks for duplicates only after it has been short of work this long: a
/// holder that is merely slow for a moment (a seeder descheduled on a busy host) delivers its
/// queue before then, and a duplicate of a block already on its way wastes the seeder's upload.
pub const ENDGAME_PATIENCE: Duration = Duration::from_secs(1);
/// Most BEP 6 allowed-fast pieces we keep from one peer (it sends about 10).
pub const MAX_ALLOWED_FAST_IN: usize = 64;
/// Blocks we cancelled or gave up on, remembered so that their late arrival (BEP 3: a CANCEL
/// may cross the block on the wire) is not counted as unrequested data.
const CANCELLED_CAP: usize = 1024;

/// Why a peer is disconnected: its fault, or a normal end.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("protocol violation: {0}")]
    Decode(#[from] wire::DecodeError),
    #[error("bitfield of {got} bytes, expected {expected}, or spare bits set")]
    BadBitfield { got: usize, expected: usize },
    #[error("have-all/have-none without the fast extension (BEP 6)")]
    FastNotNegotiated,
    #[error("bad block: {0}")]
    BadBlock(#[from] GeometryError),
    #[error("sent {0} blocks we did not request")]
    Unrequested(u32),
    #[error("supplied data for pieces that failed their hash check")]
    HashFailures,
    #[error("no message for {0:?}")]
    Idle(Duration),
    #[error("both sides are seeders")]
    BothSeeding,
    #[error("requested piece {0}, which we do not have")]
    RequestedMissing(u32),
    #[error("more than {MAX_QUEUED_REQUESTS} requests queued")]
    RequestFlood,
    #[error("torrent stopped")]
    Stopped,
    #[error("bad extension message: {0}")]
    Extension(#[from] crate::ext::ExtError),
    #[error("bad PEX message: {0}")]
    Pex(#[from] crate::pex::PexError),
}

/// The block currently streaming in from this peer.
enum Incoming {
    None,
    /// We own this block in the piece buffer; chunks are copied in.
    Writing {
        block: BlockRef,
        writer: BlockWriter,
        buf: Arc<SharedPiece>,
    },
    /// Not ours to write: skip its bytes, counted as waste for this reason.
    Discard(Waste),
}

/// One connected, handshaken peer.
pub struct PeerSession {
    pub key: u64,
    pub addr: SocketAddr,
    pub fast: bool,
    pub peer_has: Bitfield,
    got_first_message: bool,
    pub am_interested: bool,
    pub peer_choking: bool,
    pub peer_interested: bool,
    pub am_choking: bool,
    requests: Outstanding,
    /// Recently cancelled or released requests (at most [`CANCELLED_CAP`]).
    cancelled: VecDeque<BlockRef>,
    pipeline: Pipeline,
    incoming: Incoming,
    last_recv: Instant,
    last_send: Instant,
    last_block: Instant,
    snubbed: bool,
    /// Since when this peer has been short of work in endgame ([`ENDGAME_PATIENCE`]).
    endgame_starved_since: Option<Instant>,
    have_cursor: usize,
    failed_cursor: usize,
    /// Shared a failed piece: downloads only whole pieces of its own (`blame.rs`).
    parole: bool,
    /// Exclusive pieces this peer is supplying alone.
    owned: Vec<PieceIndex>,
    unrequested: u32,
    seed: u32,
    scratch_pieces: Vec<PieceIndex>,
    scratch_blocks: Vec<BlockRef>,
    scratch_failed: Vec<FailedPiece>,
    /// Bytes to send, appended by every call.
    pub out: Vec<u8>,
    /// Pieces this peer's data completed: the caller submits them to the disk pipeline.
    pub completed: Vec<(PieceIndex, Arc<SharedPiece>)>,
    pub downloaded_bytes: u64,
    upload_queue: VecDeque<BlockRef>,
    /// Requests refused because we choke the peer, since we last unchoked it (bounded by
    /// [`MAX_QUEUED_REQUESTS`], as the queue is).
    refused_while_choked: usize,
    reads_in_flight: u32,
    /// The peer's handshake had the DHT bit and it has not been sent our PORT yet (our node
    /// may start answering queries after the handshake).
    port_owed: bool,
    pub uploaded_bytes: u64,
    /// The most requests the peer queues (BEP 10 `reqq`); our window never exceeds it.
    peer_reqq: usize,
    connected_at: Instant,
    am_interested_since: Option<Instant>,
    down_meter: RateMeter,
    up_meter: RateMeter,
    /// BEP 6 pieces this peer may download while choked (the canonical set for its address).
    allowed_fast: Vec<u32>,
    /// BEP 6 SUGGEST PIECE both ways (`fast::Suggestions`).
    suggest: fast::Suggestions,
    /// BEP 6 pieces the peer lets us download while it chokes us (at most
    /// [`MAX_ALLOWED_FAST_IN`]), and which of them it has.
    allowed_fast_in: Vec<PieceIndex>,
    allowed_fast_has: Option<Bitfield>,
    /// BEP 10 extensions: metadata serving, PEX (`extensions.rs`).
    ext: extensions::Extensions,
}

impl PeerSession {
    /// Starts a session and queues our opening message (bitfield, or have-all/none with BEP 6).
    pub fn new(
        key: u64,
        addr: SocketAddr,
        fast: bool,
        ext: bool,
        t: &TorrentShared,
        now: Instant,
    ) -> Self {
        let n = t.lengths.num_pieces();
        let mut s = PeerSession {
            key,
            addr,
            fast,
            peer_has: Bitfield::new(n),
            got_first_message: false,
            am_interested: false,
            peer_choking: true,
            peer_interested: false,
            am_choking: true,
            requests: Outstanding::default(),
            cancelled: VecDeque::new(),
            pipeline: Pipeline::new(now),
            incoming: Incoming::None,
            last_recv: now,
            last_send: now,
            last_block: now,
            snubbed: false,
            endgame_starved_since: None,
            have_cursor: 0,
            failed_cursor: 0,
            parole: false,
            owned: Vec::new(),
            unrequested: 0,
            seed: (key as u32).wrapping_mul(2_654_435_761),
            scratch_pieces: Vec::new(),
            scratch_blocks: Vec::new(),
            scratch_failed: Vec::new(),
            out: Vec::with_capacity(4096),
            completed: Vec::new(),
            downloaded_bytes: 0,
            upload_queue: VecDeque::new(),
            refused_while_choked: 0,
            reads_in_flight: 0,
            port_owed: false,
            uploaded_bytes: 0,
            peer_reqq: pipeline::MAX,
            connected_at: now,
            am_interested_since: None,
            down_meter: RateMeter::new(now),
            up_meter: RateMeter::new(now),
            allowed_fast: Vec::new(),
            suggest: fast::Suggestions::default(),
            allowed_fast_in: Vec::new(),
            allowed_fast_has: None,
            ext: extensions::Extensions::default(),
        };
        // Start the HAVE cursor at the current log end: the bitfield covers what came before.
        let mut ignored = Vec::new();
        s.have_cursor = t.verified_since(usize::MAX, &mut ignored);
        s.failed_cursor = t.failed_len();
        if ext {
            s.send_ext_handshake(t);
        }
        let ours = t.have_bitfield();
        if fast && ours.count() == 0 {
            wire::encode(&Message::HaveNone, &mut s.out);
        } else if fast && ours.is_full() {
            wire::encode(&Message::HaveAll, &mut s.out);
        } else if ours.count() > 0 {
            wire::encode(&Message::Bitfield(&ours.to_wire()), &mut s.out);
        }
        if fast {
            s.send_allowed_fast(t);
        }
        s
    }

    /// BEP 5: tells a peer that set the handshake's DHT bit where our DHT node listens, if it
    /// runs and this torrent may use it.
    /// Sends our DHT node's port (BEP 5) to a peer whose handshake had the DHT bit: now if
    /// the node answers queries, else on a later [`PeerSession::poll`] once it does.
    pub fn send_dht_port(&mut self, t: &TorrentShared) {
        self.port_owed = true;
        self.send_owed_port(t);
    }

    fn send_owed_port(&mut self, t: &TorrentShared) {
        if !self.port_owed {
            return;
        }
        if let Some(port) = t.dht_port() {
            wire::encode(&Message::Port(port), &mut self.out);
            self.port_owed = false;
        }
    }

    /// Number of requests outstanding.
    pub fn outstanding(&self) -> usize {
        self.requests.len()
    }

    /// Handles one complete message (every kind except PIECE payloads).
    pub fn on_message(
        &mut self,
        msg: Message<'_>,
        now: Instant,
        t: &TorrentShared,
    ) -> Result<(), PeerError> {
        self.last_recv = now;
        let first = !self.got_first_message;
        // BEP 10 handshakes (and DHT ports) may precede the bitfield; they do not count.
        if !matches!(
            msg,
            Message::Extended { .. } | Message::Port(_) | Message::KeepAlive
        ) {
            self.got_first_message = true;
        }
        match msg {
            Message::KeepAlive => {}
            Message::Choke => {
                self.peer_choking = true;
                // Without BEP 6 a choke discards every pending request; with it, the peer
                // rejects them one by one (BEP 6), so keep them until then.
                if !self.fast {
                    self.release_all(t);
                }
            }
            Message::Unchoke => self.peer_choking = false,
            Message::Interested => self.peer_interested = true,
            Message::NotInterested => self.peer_interested = false,
            Message::Have { piece } => {
                let p = t.lengths.piece(piece)?;
                if self.peer_has.set(p) {
                    t.picker.add_peer_have(p);
                }
            }
            Message::Bitfield(bytes) => {
                let n = t.lengths.num_pieces();
                let bf = Bitfield::from_wire(bytes, n).ok_or(PeerError::BadBitfield {
                    got: bytes.len(),
                    expected: t.lengths.bitfield_len(),
                })?;
                // Some clients (aria2) send HAVEs before their bitfield: BEP 3 says the
                // bitfield comes first, but merging a late one loses nothing and keeps the peer.
                self.merge_bitfield(bf, first, t);
            }
            Message::HaveAll | Message::HaveNone if !self.fast => {
                return Err(PeerError::FastNotNegotiated);
            }
            Message::HaveAll => {
                self.merge_bitfield(Bitfield::full(t.lengths.num_pieces()), first, t)
            }
            // A peer cannot take pieces back: a late HAVE NONE changes nothing.
            Message::HaveNone => {}
            Message::RejectRequest { piece, offset, len } => {
                let b = t.lengths.block_from_wire(piece, offset, len)?;
                if self.requests.remove(&b) {
                    t.picker.release(b);
                }
            }
            Message::Request { piece, offset, len } => self.on_request(piece, offset, len, t)?,
            Message::Piece {
                piece,
                offset,
                data,
            } => {
                // The reader streams PIECE payloads as chunks; a whole message is one chunk.
                let len = data.len() as u32;
                self.on_block_chunk(piece, offset, len, 0, data, now, t)?;
            }
            Message::Cancel { piece, offset, len } => self.on_cancel(piece, offset, len, t)?,
            Message::SuggestPiece { piece } => self.on_suggest(piece, t)?,
            Message::Extended { id, payload } => self.on_extended(id, payload, now, t)?,
            Message::AllowedFast { piece } => {
                let p = t.lengths.piece(piece)?;
                if self.fast
                    && self.allowed_fast_in.len() < MAX_ALLOWED_FAST_IN
                    && !self.allowed_fast_in.contains(&p)
                {
                    self.allowed_fast_in.push(p);
                    self.allowed_fast_has = None;
                }
            }
            Message::Port(port) => t.dht_node_seen(self.addr, port),
        }
        Ok(())
    }

    /// Dispatches one event from the wire reader.
    pub fn on_event(
        &mut self,
        ev: wire::Event<'_>,
        now: Instant,
        t: &TorrentShared,
    ) -> Result<(), PeerError> {
        match ev {
            wire::Event::Msg(m) => self.on_message(m, now, t),
            wire::Event::BlockChunk {
                piece,
                offset,
                len,
                at,
                data,
            } => self.on_block_chunk(piece, offset, len, at, data, now, t),
        }
    }

    /// Takes the peer's bitfield: whole as its first message, or merged piece by piece into
    /// what HAVEs already told when it comes late.
    fn merge_bitfield(&mut self, bf: Bitfield, first: bool, t: &TorrentShared) {
        if first && self.peer_has.iter().next().is_none() {
            t.picker.add_peer_bitfield(&bf);
            self.peer_has = bf;
            return;
        }
        for p in bf.iter() {
            if self.peer_has.set(p) {
                t.picker.add_peer_have(p);
            }
        }
    }

    /// A chunk of a PIECE payload: `offset`/`len` describe the whole block, `at` where this
    /// chunk starts inside it. Chunks of one block arrive in order.
    #[allow(clippy::too_many_arguments)]
    pub fn on_block_chunk(
        &mut self,
        piece: u32,
        offset: u32,
        len: u32,
        at: u32,
        data: &[u8],
        now: Instant,
        t: &TorrentShared,
    ) -> Result<(), PeerError> {
        self.last_recv = now;
        self.got_first_message = true;
        if at == 0 {
            self.incoming = self.start_block(piece, offset, len, t)?;
        }
        if let Incoming::Writing { writer, block, .. } = &mut self.incoming {
            if writer.write_at(at, data).is_err() {
                // Cannot happen with an in-order reader; never trust the block if it does.
                // The writer goes first, so the next owner finds the buffer block free.
                let block = *block;
                self.incoming = Incoming::Discard(Waste::NoBuffer);
                t.picker.abort_block(block);
            }
        }
        if at as usize + data.len() < len as usize {
            return Ok(());
        }
        // The block is whole.
        self.last_block = now;
        self.snubbed = false;
        self.downloaded_bytes += len as u64;
        t.counters
            .downloaded_bytes
            .fetch_add(len as u64, Ordering::Relaxed);
        self.pipeline.on_block(len, now);
        match std::mem::replace(&mut self.incoming, Incoming::None) {
            Incoming::Writing { block, writer, buf } => match t.finish_write(block, writer) {
                Ok(Some(taken)) => {
                    debug_assert!(Arc::ptr_eq(&taken, &buf));
                    self.completed.push((block.piece, taken));
                }
                Ok(None) => {}
                Err(why) => t.counters.add_waste(why, u64::from(len)),
            },
            Incoming::Discard(why) => t.counters.add_waste(why, u64::from(len)),
            Incoming::None => {}
        }
        Ok(())
    }

    fn start_block(
        &mut self,
        piece: u32,
        offset: u32,
        len: u32,
        t: &TorrentShared,
    ) -> Result<Incoming, PeerError> {
        let block = t.lengths.block_from_wire(piece, offset, len)?;
        if !self.requests.answered(&block) {
            if let Some(i) = self.cancelled.iter().position(|r| *r == block) {
                // Requested once, then cancelled: late, not unrequested.
                self.cancelled.remove(i);
                return Ok(Incoming::Discard(Waste::Late));
            }
            self.unrequested += 1;
            if self.unrequested > 64 {
                return Err(PeerError::Unrequested(self.unrequested));
            }
            return Ok(Incoming::Discard(Waste::Unrequested));
        }
        Ok(match t.begin_write(block, self.key) {
            Ok((writer, buf)) => Incoming::Writing { block, writer, buf },
            Err(why) => Incoming::Discard(why),
        })
    }

    /// Periodic work: HAVE broadcast, blame, interest, requests, timeouts, keep-alives.
    pub fn poll(&mut self, now: Instant, t: &TorrentShared) -> Result<(), PeerError> {
        if t.is_stopped() {
            return Err(PeerError::Stopped);
        }
        self.send_haves(t);
        self.send_owed_port(t);
        self.check_blame(t)?;
        self.prune_owned(t);
        if self.peer_choking && !self.owned.is_empty() {
            // Choked (a Fast peer keeps its requests until it rejects them): let others finish.
            self.end_owned(t);
        }
        if now.duration_since(self.last_recv) > IDLE_TIMEOUT {
            return Err(PeerError::Idle(now.duration_since(self.last_recv)));
        }
        let interesting = t.picker.is_interesting(&self.peer_has);
        if interesting != self.am_interested {
            self.am_interested = interesting;
            self.am_interested_since = interesting.then_some(now);
            let m = if interesting {
                Message::Interested
            } else {
                Message::NotInterested
            };
            wire::encode(&m, &mut self.out);
        }
        self.update_choke(now, t);
        if t.picker.is_complete() && self.peer_has.is_full() {
            return Err(PeerError::BothSeeding);
        }
        if !self.snubbed
            && !self.requests.is_empty()
            && now.duration_since(self.last_block) > SNUB_TIMEOUT
        {
            self.snubbed = true;
            self.release_all(t);
        }
        // Requests the peer skipped (it answered later ones): ask someone again.
        while let Some(b) = self.requests.pop_skipped(now) {
            self.give_up(b, t);
        }
        if t.picker.in_endgame() {
            self.cancel_finished(t);
        }
        self.request_more(now, t);
        self.pex_tick(now, t);
        if !self.out.is_empty() {
            self.last_send = now;
        } else if now.duration_since(self.last_send) > KEEPALIVE_INTERVAL {
            wire::encode(&Message::KeepAlive, &mut self.out);
            self.last_send = now;
        }
        Ok(())
    }

    /// Whether the session has work that wants the shard's short tick rather than the idle
    /// bound: requests in flight either way (pipeline top-ups, request timeouts, rate-limit
    /// refills), or an unchoked interest with nothing requested yet (blocks another peer
    /// releases are picked up on the next poll). A quiet peer (choked, not interesting, or
    /// done) needs only the slow poll's periodic work.
    pub fn needs_tick(&self) -> bool {
        !self.requests.is_empty()
            || !self.upload_queue.is_empty()
            || self.reads_in_flight > 0
            || !self.completed.is_empty()
            || (self.am_interested && (!self.peer_choking || !self.allowed_fast_in.is_empty()))
    }

    /// The fast path after data arrived: keep the request pipeline full.
    pub fn top_up(&mut self, now: Instant, t: &TorrentShared) {
        self.request_more(now, t);
    }

    fn request_more(&mut self, now: Instant, t: &TorrentShared) {
        if !self.am_interested {
            return;
        }
        if !self.peer_choking {
            self.fill_requests(now, t);
        } else if self.fast && !self.allowed_fast_in.is_empty() {
            self.fill_allowed_fast(now, t);
        }
    }

    /// BEP 6: while choked, request blocks of the pieces the peer allowed us. The picker is
    /// shown only those pieces (of the ones the peer has), by swapping the bitfield it reads.
    fn fill_allowed_fast(&mut self, now: Instant, t: &TorrentShared) {
        let n = t.lengths.num_pieces();
        let mut only = self
            .allowed_fast_has
            .take()
            .unwrap_or_else(|| Bitfield::new(n));
        for &p in &self.allowed_fast_in {
            only.clear(p);
            if self.peer_has.get(p) {
                only.set(p);
            }
        }
        if only.count() > 0 {
            std::mem::swap(&mut self.peer_has, &mut only);
            self.fill_requests(now, t);
            std::mem::swap(&mut self.peer_has, &mut only);
        }
        self.allowed_fast_has = Some(only);
    }

    fn send_haves(&mut self, t: &TorrentShared) {
        self.scratch_pieces.clear();
        self.have_cursor = t.verified_since(self.have_cursor, &mut self.scratch_pieces);
        for p in &self.scratch_pieces {
            wire::encode(&Message::Have { piece: p.get() }, &mut self.out);
        }
    }

    /// In endgame, cancel requests for pieces that another peer already completed.
    fn cancel_finished(&mut self, t: &TorrentShared) {
        self.scratch_blocks.clear();
        let done = &mut self.scratch_blocks;
        self.requests.retain(|b| {
            let finished = t.picker.have(b.piece) || t.block_done(*b);
            if finished {
                done.push(*b);
            }
            !finished
        });
        for i in 0..self.scratch_blocks.len() {
            let b = self.scratch_blocks[i];
            self.give_up(b, t);
        }
    }

    /// A request we no longer wait for: CANCEL it, give the claim back, and remember it so
    /// that the block arriving anyway is not taken for unrequested data.
    fn give_up(&mut self, b: BlockRef, t: &TorrentShared) {
        t.picker.release(b);
        self.remember_cancelled(b);
        let m = Message::Cancel {
            piece: b.piece.get(),
            offset: b.offset,
            len: b.len,
        };
        wire::encode(&m, &mut self.out);
    }

    fn fill_requests(&mut self, now: Instant, t: &TorrentShared) {
        // A snubbing peer keeps a single request in flight until it delivers again.
        let target = if self.snubbed {
            1
        } else {
            self.pipeline.target(now).min(self.peer_reqq)
        };
        let mut free = target.saturating_sub(self.requests.len());
        // Batch: top up when a quarter of the window is free, not on every block.
        if free == 0 || (free < target / 4 && !self.requests.is_empty()) {
            return;
        }
        if t.picker.in_endgame() {
            // Every block is claimed: what we would ask for now is a duplicate, a block some
            // peer is already uploading. Only a peer with next to nothing in flight asks, and
            // for a few blocks at a time (libtorrent asks for one busy block at a time), so
            // the tail is covered without fetching a whole window twice.
            free = free.min(ENDGAME_MAX_OUTSTANDING.saturating_sub(self.requests.len()));
            if free == 0 {
                return;
            }
            let since = *self.endgame_starved_since.get_or_insert(now);
            if now.duration_since(since) < ENDGAME_PATIENCE {
                return;
            }
        } else {
            self.endgame_starved_since = None;
        }
        // Download rate limits gate the requests we issue (one block's worth each).
        let free = t.grant_download(now, free as u64) as usize;
        if free == 0 {
            return;
        }
        self.hint_pieces();
        self.add_suggested_hints(t);
        self.seed = self.seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        self.scratch_blocks.clear();
        let requests = &self.requests;
        let already = |b: BlockRef| requests.contains(&b);
        // A piece gets claims only once it has a buffer (taken from the pool here): with the
        // pool empty, new pieces are skipped and we stop asking (backpressure).
        let admit = |p: PieceIndex| t.ensure_buffer(p).is_ok();
        if !self.parole {
            t.picker.pick(
                &self.peer_has,
                &self.scratch_pieces,
                free,
                true,
                self.seed,
                &already,
                &admit,
                &mut self.scratch_blocks,
            );
        } else {
            t.picker.pick_parole(
                &self.peer_has,
                &self.scratch_pieces,
                self.parole_budget(free, t),
                self.seed,
                &already,
                &admit,
                &mut self.scratch_blocks,
            );
        }
        self.note_owned(t);
        for &b in &self.scratch_blocks {
            self.requests.push_back(b, now);
            self.out
                .extend_from_slice(&wire::request_bytes(b.piece.get(), b.offset, b.len));
        }
        let issued = self.scratch_blocks.len();
        t.refund_download(free.saturating_sub(issued) as u64);
    }

    /// Gives every outstanding claim back to the picker. The blocks may still come (a snubbing
    /// peer, a Fast peer's choke): they are remembered as cancelled.
    pub fn release_all(&mut self, t: &TorrentShared) {
        while let Some(b) = self.requests.pop_front() {
            t.picker.release(b);
            self.remember_cancelled(b);
        }
        self.end_owned(t);
    }

    fn remember_cancelled(&mut self, b: BlockRef) {
        if self.cancelled.len() == CANCELLED_CAP {
            self.cancelled.pop_front();
        }
        self.cancelled.push_back(b);
    }

    /// Called once when the connection ends: claims and availability go back.
    pub fn on_disconnect(&mut self, t: &TorrentShared) {
        self.release_all(t);
        if let Incoming::Writing { block, writer, .. } =
            std::mem::replace(&mut self.incoming, Incoming::None)
        {
            // Abort the half-written block first so the next claimant can write it.
            drop(writer);
            t.picker.abort_block(block);
        }
        t.picker.remove_peer_bitfield(&self.peer_has);
        t.choke.remove(self.key);
        self.am_choking = true;
    }
}
