//! The shared, lock-free piece picker: which block to request from which peer.
//!
//! One [`Picker`] per torrent is shared by every shard thread (`Arc<Picker>`). It decides which
//! blocks a peer should be asked for (rarest piece first, endgame duplicates at the end), and it
//! is the one owner of piece state: only it moves a piece between [`PieceState`]s. It does no IO,
//! reads no clock and starts no thread.
//!
//! Blocks are the 16 KiB requests of BEP 3 (REQUEST/PIECE/CANCEL). Rarest-first selection and the
//! endgame mode are the strategies of B. Cohen, "Incentives Build Robustness in BitTorrent"
//! (2003), which BEP 3 leaves to the implementation.
//!
//! # State
//! - per block, one `AtomicU8`: `FREE` (0), the number of outstanding claims
//!   (`1..=MAX_DUPLICATES`), `RECEIVING + k` (one caller is copying the data in, `k` other
//!   claims outstanding) or `RECEIVED`;
//! - per piece, one `AtomicU64` word packing the state, the wanted flag, the count of *unreserved*
//!   free blocks and the count of received blocks, so every piece transition is a single CAS;
//! - per piece, an availability counter (how many connected peers have it), and per 64 pieces a
//!   cached lower bound of it (`rarest.rs`);
//! - three bitmaps indexing the words (wanted+open, wanted+open+high, wanted+partial) so picks
//!   do not scan every piece, and three counters (pieces with a free wanted block, wanted pieces not verified,
//!   verified pieces).
//!
//! Claiming a free block is two steps: reserve `k` blocks from the piece word's free count (one
//! CAS, which also moves an open piece to partial), then CAS `k` block bytes from `FREE` to 1;
//! reservations that find no byte are handed back. Giving a block back is the reverse order: the
//! byte goes to `FREE` first, then the word's count goes up. So the word's free count never
//! exceeds the number of `FREE` bytes, and a piece word never counts a block twice.
//!
//! # Invariants (checked by the tests in `tests.rs` and `prop_tests.rs`)
//! 1. A block is never both free and claimed: each block byte holds exactly one of the states
//!    above, and every change is a CAS on that byte. Received blocks (`RECEIVING`/`RECEIVED`) are
//!    never handed out again, except that [`Picker::piece_failed`] turns every block of a complete
//!    piece back to `FREE` together (the piece is `Resetting` meanwhile, so no one can reserve).
//! 2. A verified piece is never picked again: claims need a reservation, reservations need an
//!    open or partial word, and nothing moves a word out of `Verified`.
//! 3. Releasing a claim loses no block: a byte's claim count goes down by one per release and the
//!    block becomes free (and counted free again) only when the last claim is gone.
//! 4. Exactly one caller per block and piece round wins the data ([`Arrival::First`] or
//!    [`Begin::Owner`]), and exactly one per round learns that the piece is complete: the one
//!    whose CAS moved the word's received count to the piece's block count.
//!
//! The counters are upper bounds while threads are mid-transition (a counter is raised before the
//! CAS that makes its predicate true and lowered after the CAS that makes it false), and exact
//! when the picker is quiescent. So [`Picker::is_complete`] and [`Picker::in_endgame`] are never
//! true too early. A bitmap bit may be set for a piece that no longer qualifies (readers re-check
//! the word), but a piece that qualifies has its bit set once the picker is quiescent.
//!
//! The caller's duties: release each claim at most once, and not after the block arrived from
//! anyone (an arrival consumes every claim on the block: in endgame the other peers CANCEL and
//! forget theirs); pass bitfields of the torrent's length; call `piece_verified`/`piece_failed`
//! only for a piece the picker reported complete. A claim released late, after its piece failed
//! the hash and was picked again, can only free a block early (it is then re-requested), never
//! leave a block claimed by no one.

mod bits;
mod order;
mod rarest;
mod scan;
mod transition;
mod word;

#[cfg(test)]
mod order_tests;
#[cfg(test)]
mod parole_tests;
#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod tests;

use std::sync::atomic::{
    AtomicBool, AtomicU32, AtomicU64, AtomicU8,
    Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst},
};

use crate::types::{Bitfield, BlockRef, Lengths, PieceIndex};
use bits::AtomicBits;
use rarest::Availability;
pub use word::PieceState;
use word::{Word, FREE, MAX_BLOCKS_PER_PIECE, RECEIVED, RECEIVING};

/// Most peers that may hold a claim on the same block at once (endgame duplicates).
pub const MAX_DUPLICATES: u8 = 2;
/// Most pieces a picker accepts (4 Mi pieces: 80 MiB of hashes in the metainfo).
pub const MAX_PIECES: u32 = 1 << 22;
/// Most block slots (pieces x blocks per full piece) a picker accepts: 2 TiB of content, 128 MiB
/// of block bytes.
pub const MAX_BLOCK_SLOTS: u64 = 1 << 27;

/// What became of a block whose data arrived ([`Picker::block_arrived`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Arrival {
    /// This caller owns the data: copy it into the piece buffer. `piece_complete` is true for the
    /// one block per piece round whose arrival made every block of the piece received.
    First { piece_complete: bool },
    /// Someone else already got this block: drop the data (in endgame, CANCEL the other claims).
    Duplicate,
    /// Nobody holds a claim on this block (or it is not one of our standard blocks).
    Unrequested,
}

/// What became of the first chunk of a block ([`Picker::begin_block`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Begin {
    /// This caller owns the block: copy its data, then call [`Picker::finish_block`] (or
    /// [`Picker::abort_block`] if the data never completes).
    Owner,
    /// Someone else is receiving or has received it: drop the data.
    Duplicate,
    /// Nobody holds a claim on this block (or it is not one of our standard blocks).
    Unrequested,
}

/// One block's state in the picker ([`Picker::block_state`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BlockState {
    Free,
    /// This many outstanding claims, no data yet.
    Claimed(u8),
    /// One owner is copying the data in; this many other claims are outstanding.
    Receiving(u8),
    Received,
}

/// Why a picker could not be built (the caller supplied resume data or geometry that does not fit).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickerError {
    #[error("{which} bitfield covers {got} pieces, the torrent has {expected}")]
    BitfieldLength {
        which: &'static str,
        got: u32,
        expected: u32,
    },
    #[error("torrent too large for the picker: {pieces} pieces of {blocks_per_piece} blocks")]
    TooLarge { pieces: u32, blocks_per_piece: u32 },
}

/// Counts for statistics and tests, read one atomic at a time (not a consistent cut unless the
/// picker is quiescent).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct PickerSnapshot {
    pub pieces_open: u32,
    pub pieces_partial: u32,
    pub pieces_complete: u32,
    pub pieces_verified: u32,
    /// Blocks of unverified pieces with no claim and no data.
    pub blocks_free: u64,
    /// Blocks with at least one outstanding claim.
    pub blocks_claimed: u64,
    /// Outstanding claims (more than `blocks_claimed` in endgame).
    pub claims: u64,
    /// Blocks whose data is being copied in.
    pub blocks_receiving: u64,
    /// Blocks received in pieces not yet verified.
    pub blocks_received: u64,
    /// Blocks of verified pieces.
    pub blocks_verified: u64,
}

/// Counters kept in step with the piece words, each with its predicate.
const PICKABLE: usize = 0;
const MISSING: usize = 1;
const HAVE: usize = 2;
const COUNTED: [fn(Word) -> bool; 3] = [Word::pickable, Word::missing, Word::verified];

/// The piece picker of one torrent. `Send + Sync`; share it as `Arc<Picker>`.
pub struct Picker {
    lengths: Lengths,
    /// Block slots per piece: the block count of a full piece.
    stride: usize,
    words: Box<[AtomicU64]>,
    blocks: Box<[AtomicU8]>,
    avail: Availability,
    open: AtomicBits,
    /// The subset of `open` of high priority (file priorities), walked first.
    open_high: AtomicBits,
    partial: AtomicBits,
    counters: [AtomicU32; 3],
    /// Pick new pieces in index order instead of rarest first (streaming).
    sequential: AtomicBool,
    /// Some piece was ever marked high: only then is the high bitmap walked.
    any_high: AtomicBool,
}

impl Picker {
    /// `have`: pieces already verified (resume/recheck); `wanted`: pieces to download (file
    /// selection). Both must cover exactly the torrent's pieces.
    pub fn new(
        lengths: Lengths,
        have: &Bitfield,
        wanted: &Bitfield,
    ) -> Result<Picker, PickerError> {
        let pieces = lengths.num_pieces();
        for (which, bf) in [("have", have), ("wanted", wanted)] {
            if bf.len() != pieces {
                return Err(PickerError::BitfieldLength {
                    which,
                    got: bf.len(),
                    expected: pieces,
                });
            }
        }
        let bpp = lengths.max_blocks_per_piece();
        if pieces > MAX_PIECES
            || bpp > MAX_BLOCKS_PER_PIECE
            || pieces as u64 * bpp as u64 > MAX_BLOCK_SLOTS
        {
            return Err(PickerError::TooLarge {
                pieces,
                blocks_per_piece: bpp,
            });
        }
        let picker = Picker {
            lengths,
            stride: bpp as usize,
            words: (0..pieces).map(|_| AtomicU64::new(0)).collect(),
            blocks: (0..pieces as usize * bpp as usize)
                .map(|_| AtomicU8::new(FREE))
                .collect(),
            avail: Availability::new(pieces as usize),
            open: AtomicBits::new(pieces as usize),
            open_high: AtomicBits::new(pieces as usize),
            partial: AtomicBits::new(pieces as usize),
            counters: Default::default(),
            sequential: AtomicBool::new(false),
            any_high: AtomicBool::new(false),
        };
        for p in lengths.pieces() {
            let n = lengths.blocks_in_piece(p);
            let w = if have.get(p) {
                picker
                    .block_slots(p)
                    .for_each(|b| b.store(RECEIVED, Relaxed));
                Word::new(PieceState::Verified, wanted.get(p), 0, n)
            } else {
                Word::new(PieceState::Open, wanted.get(p), n, 0)
            };
            picker.words[p.idx()].store(w.0, Relaxed);
            if w.open() {
                picker.open.set(p.idx());
            }
            for (c, pred) in picker.counters.iter().zip(COUNTED) {
                if pred(w) {
                    c.fetch_add(1, Relaxed);
                }
            }
        }
        Ok(picker)
    }

    pub fn lengths(&self) -> &Lengths {
        &self.lengths
    }

    // ---- claims and data ----

    /// A claim given back without data (timeout, choke, reject, disconnect). Blocks that are not
    /// claimed (free, being received, received) are left alone.
    pub fn release(&self, b: BlockRef) {
        let Some((p, cell)) = self.slot(b) else {
            return;
        };
        let mut v = cell.load(Acquire);
        loop {
            let to = match (v, word::receiving(v)) {
                (1..=MAX_DUPLICATES, _) => v - 1,
                // Another claim on a block someone is receiving.
                (_, Some(others)) if others > 0 => v - 1,
                _ => return,
            };
            match cell.compare_exchange_weak(v, to, AcqRel, Acquire) {
                Ok(_) if to == FREE => return self.unreserve(p, 1),
                Ok(_) => return,
                Err(cur) => v = cur,
            }
        }
    }

    /// Data for a whole block arrived and the caller will copy it only if it gets `First`.
    /// Exactly one caller per block and round gets `First`. Note that `piece_complete` can be
    /// reported while another `First` caller of the same piece is still copying; callers on
    /// several threads use [`Self::begin_block`]/[`Self::finish_block`] instead.
    pub fn block_arrived(&self, b: BlockRef) -> Arrival {
        let Some((p, cell)) = self.slot(b) else {
            return Arrival::Unrequested;
        };
        match self.take_block(cell, false) {
            Begin::Owner => Arrival::First {
                piece_complete: self.count_received(p),
            },
            Begin::Duplicate => Arrival::Duplicate,
            Begin::Unrequested => Arrival::Unrequested,
        }
    }

    /// The first chunk of a block arrived: decides who owns the block's data. The owner copies
    /// it and then calls [`Self::finish_block`] (or [`Self::abort_block`]).
    pub fn begin_block(&self, b: BlockRef) -> Begin {
        match self.slot(b) {
            Some((_, cell)) => self.take_block(cell, true),
            None => Begin::Unrequested,
        }
    }

    /// The owner finished copying the block. Returns `Some(piece_complete)`, true for exactly one
    /// block per piece round; `None` if the block was not being received (a caller bug).
    pub fn finish_block(&self, b: BlockRef) -> Option<bool> {
        let (p, cell) = self.slot(b)?;
        // Other claims still outstanding are consumed: their data will be a duplicate.
        cell.fetch_update(AcqRel, Acquire, |v| word::receiving(v).map(|_| RECEIVED))
            .ok()?;
        Some(self.count_received(p))
    }

    /// The owner could not complete the block (the peer left mid-block): the other claims on it
    /// (endgame) stand, and with none it becomes free.
    pub fn abort_block(&self, b: BlockRef) {
        let Some((p, cell)) = self.slot(b) else {
            return;
        };
        if let Ok(v) = cell.fetch_update(AcqRel, Acquire, word::receiving) {
            if v == RECEIVING {
                self.unreserve(p, 1);
            }
        }
    }

    // ---- hashing ----

    /// Hash passed and the piece is written: it is never picked again. Returns false (and does
    /// nothing) unless the piece was complete.
    pub fn piece_verified(&self, p: PieceIndex) -> bool {
        self.transition(p.idx(), |w| {
            (w.state() == PieceState::Complete).then(|| w.with_state(PieceState::Verified))
        })
        .is_some()
    }

    /// Hash failed: every block of the piece goes back to free. Returns false (and does
    /// nothing) unless the piece was complete.
    pub fn piece_failed(&self, p: PieceIndex) -> bool {
        self.reset_failed(p, false)
    }

    /// [`Self::piece_failed`], and the next round of the piece is exclusive: the first peer to
    /// claim it supplies all of it (several peers supplied the failed round, so a second
    /// failure must have one suspect).
    pub fn piece_failed_exclusive(&self, p: PieceIndex) -> bool {
        self.reset_failed(p, true)
    }

    fn reset_failed(&self, p: PieceIndex, exclusive: bool) -> bool {
        let i = p.idx();
        let resetting = self.transition(i, |w| {
            (w.state() == PieceState::Complete).then(|| w.with_state(PieceState::Resetting))
        });
        if resetting.is_none() {
            return false;
        }
        // Every byte is RECEIVED and nothing changes a RECEIVED byte: plain stores suffice, and
        // the CAS below publishes them before anyone can reserve.
        self.block_slots(p).for_each(|b| b.store(FREE, Release));
        let n = self.lengths.blocks_in_piece(p);
        self.transition(i, |w| {
            Some(
                w.with_state(PieceState::Open)
                    .with_free(n)
                    .with_received(0)
                    .with_exclusive(exclusive),
            )
        });
        true
    }

    // ---- file selection and queries ----

    /// Selects or deselects a piece. Outstanding claims of a deselected piece stay valid: their
    /// data is still accepted, hashed and written, and the piece may become verified; it is just
    /// not picked any more. Safe at any time, from any thread, concurrently with claims: it is
    /// one CAS of the piece word, and every reader of the wanted flag re-reads the word.
    pub fn set_wanted(&self, p: PieceIndex, wanted: bool) {
        self.transition(p.idx(), |w| {
            (w.wanted() != wanted).then(|| w.with_wanted(wanted))
        });
    }

    pub fn is_wanted(&self, p: PieceIndex) -> bool {
        self.word(p.idx()).is_some_and(Word::wanted)
    }

    pub fn state(&self, p: PieceIndex) -> PieceState {
        self.word(p.idx()).map_or(PieceState::Open, Word::state)
    }

    /// The piece is verified.
    pub fn have(&self, p: PieceIndex) -> bool {
        self.word(p.idx()).is_some_and(Word::verified)
    }

    /// Verified pieces (wanted or not).
    pub fn num_have(&self) -> u32 {
        self.counters[HAVE].load(SeqCst)
    }

    /// Every wanted piece is verified.
    pub fn is_complete(&self) -> bool {
        self.counters[MISSING].load(SeqCst) == 0
    }

    /// No free block is left among wanted, unverified pieces, but some are not verified yet.
    pub fn in_endgame(&self) -> bool {
        self.counters[PICKABLE].load(SeqCst) == 0 && !self.is_complete()
    }

    /// The peer has a wanted piece we have not verified.
    pub fn is_interesting(&self, peer_has: &Bitfield) -> bool {
        peer_has.len() == self.lengths.num_pieces()
            && peer_has
                .iter()
                .any(|p| self.word(p.idx()).is_some_and(Word::missing))
    }

    /// The state of one block (`None` for a block that is not one of ours).
    pub fn block_state(&self, b: BlockRef) -> Option<BlockState> {
        let (_, cell) = self.slot(b)?;
        let v = cell.load(Acquire);
        Some(match (v, word::receiving(v)) {
            (FREE, _) => BlockState::Free,
            (RECEIVED, _) => BlockState::Received,
            (_, Some(others)) => BlockState::Receiving(others),
            (c, None) => BlockState::Claimed(c),
        })
    }

    /// Counts of pieces and blocks by state (a scan of every block: for stats and tests).
    pub fn snapshot(&self) -> PickerSnapshot {
        let mut s = PickerSnapshot::default();
        for p in self.lengths.pieces() {
            let Some(w) = self.word(p.idx()) else {
                continue;
            };
            let n = self.lengths.blocks_in_piece(p) as u64;
            match w.state() {
                PieceState::Open => s.pieces_open += 1,
                PieceState::Partial => s.pieces_partial += 1,
                PieceState::Complete | PieceState::Resetting => s.pieces_complete += 1,
                PieceState::Verified => {
                    s.pieces_verified += 1;
                    s.blocks_verified += n;
                    continue;
                }
            }
            for b in self.block_slots(p) {
                let v = b.load(Acquire);
                match (v, word::receiving(v)) {
                    (FREE, _) => s.blocks_free += 1,
                    (RECEIVED, _) => s.blocks_received += 1,
                    (_, Some(others)) => {
                        s.blocks_receiving += 1;
                        s.claims += others as u64;
                    }
                    (c, None) => {
                        s.blocks_claimed += 1;
                        s.claims += c as u64;
                    }
                }
            }
        }
        s
    }

    // ---- internals ----

    fn word(&self, p: usize) -> Option<Word> {
        self.words.get(p).map(|w| Word(w.load(Acquire)))
    }

    /// The block bytes of a piece.
    fn block_slots(&self, p: PieceIndex) -> impl Iterator<Item = &AtomicU8> {
        let n = self.lengths.blocks_in_piece(p) as usize;
        let base = p.idx() * self.stride;
        self.blocks.iter().skip(base).take(n)
    }

    /// The piece index and byte of one of our standard blocks; `None` for anything else.
    fn slot(&self, b: BlockRef) -> Option<(usize, &AtomicU8)> {
        let p = self.lengths.piece(b.piece.get()).ok()?;
        let i = b.block_in_piece();
        if self.lengths.block(p, i).ok()? != b {
            return None;
        }
        let cell = self.blocks.get(p.idx() * self.stride + i as usize)?;
        Some((p.idx(), cell))
    }
}
