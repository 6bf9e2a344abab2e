//! Which new pieces come first: file priorities and sequential mode.
//!
//! - Priorities: a piece overlapping a file of high priority carries the `high` flag in its
//!   word; new pieces are taken from the open high pieces before any other (rarest first among
//!   them, or in index order in sequential mode). Partial pieces are still finished first.
//! - Sequential mode (for streaming): new pieces in increasing index order, and partial pieces
//!   walked from index 0, so the download advances from the start of the torrent. Every piece
//!   is still hashed before it is written or announced.
//!
//! Both are plain flags read on each pick: changing them at any time (from any thread) only
//! changes the order of later picks, never the state of a piece or a claim.

use std::sync::atomic::Ordering::Relaxed;

use super::bits::AtomicBits;
use super::rarest::{Candidates, CANDIDATES};
use super::scan::Pick;
use super::word::Word;
use super::Picker;
use crate::types::PieceIndex;

/// Most walks of the open bitmaps per call (each is repeated only when other peers took the
/// candidates first, or the peer wants more blocks than the candidates hold).
const MAX_WALKS: usize = 4;

impl Picker {
    /// Marks a piece as high priority (or not). Verified, complete and unwanted pieces keep the
    /// flag but are not picked anyway.
    pub fn set_high(&self, p: PieceIndex, high: bool) {
        if high {
            self.any_high.store(true, Relaxed);
        }
        self.transition(p.idx(), |w| (w.high() != high).then(|| w.with_high(high)));
    }

    pub fn is_high(&self, p: PieceIndex) -> bool {
        self.word(p.idx()).is_some_and(Word::high)
    }

    /// Turns sequential mode on or off (see the module doc).
    pub fn set_sequential(&self, on: bool) {
        self.sequential.store(on, Relaxed);
    }

    pub fn is_sequential(&self) -> bool {
        self.sequential.load(Relaxed)
    }

    /// Step 3 of a pick: new pieces, high priority first, then the rest.
    pub(super) fn claim_new(&self, start: usize, pk: &mut Pick<'_>) {
        let high = self.any_high.load(Relaxed);
        if self.is_sequential() {
            if high {
                self.claim_in_order(&self.open_high, Word::open_high, pk);
            }
            if pk.left > 0 {
                self.claim_in_order(&self.open, Word::open, pk);
            }
            return;
        }
        if high {
            self.claim_rarest(start, true, pk);
        }
        if pk.left > 0 {
            self.claim_rarest(start, false, pk);
        }
    }

    /// New pieces rarest first, from the high bitmap or the whole open one.
    fn claim_rarest(&self, start: usize, high: bool, pk: &mut Pick<'_>) {
        let stride = self.stride.max(1);
        for _ in 0..MAX_WALKS {
            let mut cands = Candidates::new(pk.left.div_ceil(stride).clamp(1, CANDIDATES));
            if high {
                self.rarest_high(start, pk.peer_has, &mut cands);
            } else {
                self.rarest(start, pk.peer_has, &mut cands);
            }
            if cands.is_empty() {
                return;
            }
            for p in cands.pieces() {
                self.claim_free(p, false, pk);
                if pk.left == 0 {
                    return;
                }
            }
        }
    }

    /// New pieces in index order (sequential mode).
    fn claim_in_order(&self, bitmap: &AtomicBits, pred: fn(Word) -> bool, pk: &mut Pick<'_>) {
        bitmap.for_each_from(0, |p| {
            match self.word(p) {
                Some(w) if pred(w) => self.claim_free(p, false, pk),
                _ => self.clear_bit(bitmap, p, pred),
            }
            pk.left > 0
        });
    }
}
