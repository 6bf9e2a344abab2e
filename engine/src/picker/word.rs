//! The packed per-piece state word and the per-block byte states.
//!
//! One `AtomicU64` per piece holds everything that must change together: the piece state, the
//! wanted flag, the number of unreserved free blocks and the number of received blocks. Every
//! piece transition is one compare-and-swap of this word, so a piece is never seen half-moved.

/// Block byte: nobody holds a claim and no data has arrived.
pub(super) const FREE: u8 = 0;
/// Block byte: the data is being copied in by the one caller that won [`super::Begin::Owner`];
/// `RECEIVING + k` records `k` other claims still outstanding (endgame), so that an aborted
/// receive gives them back their claims.
pub(super) const RECEIVING: u8 = 0xF0;
/// Block byte: the data is in the piece buffer.
pub(super) const RECEIVED: u8 = 0xFF;

const _: () = assert!(super::MAX_DUPLICATES >= 1 && super::MAX_DUPLICATES < RECEIVED - RECEIVING);

/// The other claims outstanding on a block being received, or `None` if it is not.
pub(super) fn receiving(v: u8) -> Option<u8> {
    (RECEIVING..RECEIVED).contains(&v).then(|| v - RECEIVING)
}

const FREE_BITS: u32 = 22;
const COUNT_MASK: u64 = (1 << FREE_BITS) - 1;
const RECEIVED_SHIFT: u32 = FREE_BITS;
const STATE_SHIFT: u32 = 2 * FREE_BITS;
const STATE_MASK: u64 = 0b111;
const WANTED_BIT: u64 = 1 << (STATE_SHIFT + 3);
const HIGH_BIT: u64 = 1 << (STATE_SHIFT + 4);
const EXCLUSIVE_BIT: u64 = 1 << (STATE_SHIFT + 5);

/// Most blocks a piece may have so that its counts fit the word (2^22 - 1; a `u32` piece length
/// gives at most 2^18 blocks, so every valid [`crate::types::Lengths`] fits).
pub(super) const MAX_BLOCKS_PER_PIECE: u32 = COUNT_MASK as u32;

/// Where a piece is in its life. Only the picker moves a piece between these states.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PieceState {
    /// Nothing claimed or received since the piece was last reset: a candidate for rarest-first.
    Open,
    /// Some block has been claimed or received; free blocks are picked before new pieces.
    Partial,
    /// Every block received; the hasher decides between verified and failed.
    Complete,
    /// A failed piece whose blocks are being reset to free (transient).
    Resetting,
    /// Hash passed and written: never picked again.
    Verified,
}

impl PieceState {
    fn code(self) -> u64 {
        match self {
            PieceState::Open => 0,
            PieceState::Partial => 1,
            PieceState::Complete => 2,
            PieceState::Resetting => 3,
            PieceState::Verified => 4,
        }
    }

    fn from_code(c: u64) -> Self {
        match c {
            0 => PieceState::Open,
            1 => PieceState::Partial,
            2 => PieceState::Complete,
            3 => PieceState::Resetting,
            _ => PieceState::Verified,
        }
    }
}

/// The value of one piece's atomic word.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Word(pub(super) u64);

impl Word {
    /// A fresh word: `free` unreserved free blocks, nothing received.
    pub(super) fn new(state: PieceState, wanted: bool, free: u32, received: u32) -> Word {
        Word(0)
            .with_state(state)
            .with_wanted(wanted)
            .with_free(free)
            .with_received(received)
    }

    /// Free blocks that no caller has reserved yet.
    pub(super) fn free(self) -> u32 {
        (self.0 & COUNT_MASK) as u32
    }
    pub(super) fn received(self) -> u32 {
        ((self.0 >> RECEIVED_SHIFT) & COUNT_MASK) as u32
    }
    pub(super) fn state(self) -> PieceState {
        PieceState::from_code((self.0 >> STATE_SHIFT) & STATE_MASK)
    }
    pub(super) fn wanted(self) -> bool {
        self.0 & WANTED_BIT != 0
    }
    /// The piece overlaps a file of high priority: picked before the others.
    pub(super) fn high(self) -> bool {
        self.0 & HIGH_BIT != 0
    }

    /// This round of the piece is reserved for one peer (see `Picker::pick_parole`): others do
    /// not join it, not even in endgame.
    pub(super) fn exclusive(self) -> bool {
        self.0 & EXCLUSIVE_BIT != 0
    }

    pub(super) fn with_free(self, free: u32) -> Word {
        debug_assert!(free <= MAX_BLOCKS_PER_PIECE);
        Word((self.0 & !COUNT_MASK) | (free as u64 & COUNT_MASK))
    }
    pub(super) fn with_received(self, received: u32) -> Word {
        debug_assert!(received <= MAX_BLOCKS_PER_PIECE);
        let field = COUNT_MASK << RECEIVED_SHIFT;
        Word((self.0 & !field) | ((received as u64 & COUNT_MASK) << RECEIVED_SHIFT))
    }
    pub(super) fn with_state(self, s: PieceState) -> Word {
        let field = STATE_MASK << STATE_SHIFT;
        Word((self.0 & !field) | (s.code() << STATE_SHIFT))
    }
    pub(super) fn with_wanted(self, wanted: bool) -> Word {
        if wanted {
            Word(self.0 | WANTED_BIT)
        } else {
            Word(self.0 & !WANTED_BIT)
        }
    }

    pub(super) fn with_high(self, high: bool) -> Word {
        if high {
            Word(self.0 | HIGH_BIT)
        } else {
            Word(self.0 & !HIGH_BIT)
        }
    }

    pub(super) fn with_exclusive(self, exclusive: bool) -> Word {
        if exclusive {
            Word(self.0 | EXCLUSIVE_BIT)
        } else {
            Word(self.0 & !EXCLUSIVE_BIT)
        }
    }

    /// Open or partial: blocks may still be claimed.
    pub(super) fn in_play(self) -> bool {
        matches!(self.state(), PieceState::Open | PieceState::Partial)
    }

    /// Predicate of the `pickable` counter: a wanted piece with an unreserved free block.
    pub(super) fn pickable(self) -> bool {
        self.wanted() && self.in_play() && self.free() > 0
    }
    /// Predicate of the `open` bitmap: a wanted piece nobody has started.
    pub(super) fn open(self) -> bool {
        self.wanted() && self.state() == PieceState::Open
    }
    /// Predicate of the `open_high` bitmap: an open piece of high priority.
    pub(super) fn open_high(self) -> bool {
        self.open() && self.high()
    }
    /// Predicate of the `partial` bitmap: a wanted piece in progress.
    pub(super) fn partial(self) -> bool {
        self.wanted() && self.state() == PieceState::Partial
    }
    /// Predicate of the `missing` counter: wanted and not verified.
    pub(super) fn missing(self) -> bool {
        self.wanted() && self.state() != PieceState::Verified
    }
    pub(super) fn verified(self) -> bool {
        self.state() == PieceState::Verified
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_do_not_overlap() {
        let w = Word::new(PieceState::Complete, true, MAX_BLOCKS_PER_PIECE, 7);
        assert_eq!(w.free(), MAX_BLOCKS_PER_PIECE);
        assert_eq!(w.received(), 7);
        assert_eq!(w.state(), PieceState::Complete);
        assert!(w.wanted());
        let w = w
            .with_free(0)
            .with_received(MAX_BLOCKS_PER_PIECE)
            .with_wanted(false);
        assert_eq!(w.free(), 0);
        assert_eq!(w.received(), MAX_BLOCKS_PER_PIECE);
        assert_eq!(w.state(), PieceState::Complete);
        assert!(!w.wanted());
        assert!(!w.high() && w.with_high(true).high());
        assert_eq!(w.with_high(true).with_high(false), w);
        assert_eq!(w.with_high(true).state(), PieceState::Complete);
        let x = w.with_high(true).with_exclusive(true);
        assert!(x.exclusive() && x.high() && x.with_exclusive(false).high());
        assert_eq!(x.with_exclusive(false).with_high(false), w);
        assert_eq!(x.state(), PieceState::Complete);
        for s in [
            PieceState::Open,
            PieceState::Partial,
            PieceState::Complete,
            PieceState::Resetting,
            PieceState::Verified,
        ] {
            assert_eq!(w.with_state(s).state(), s);
            assert_eq!(w.with_state(s).received(), MAX_BLOCKS_PER_PIECE);
        }
    }

    #[test]
    fn predicates() {
        let open = Word::new(PieceState::Open, true, 4, 0);
        assert!(open.pickable() && open.open() && !open.partial() && open.missing());
        assert!(!open.with_wanted(false).pickable());
        assert!(!open.with_wanted(false).missing());
        let busy = open.with_state(PieceState::Partial).with_free(0);
        assert!(!busy.pickable() && busy.partial());
        let done = busy.with_state(PieceState::Verified);
        assert!(done.verified() && !done.missing() && !done.partial());
    }
}
