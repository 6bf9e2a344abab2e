//! The one way a piece changes: [`Picker::transition`], a CAS of the piece word that keeps the
//! counters and bitmaps in step (see the module doc of `picker` for the rules that make them
//! exact at rest and safe while threads are mid-transition), and the block-byte moves built on it.

use std::sync::atomic::{
    AtomicU8,
    Ordering::{AcqRel, Acquire, SeqCst},
};

use super::bits::AtomicBits;
use super::word::{self, Word, FREE, RECEIVED, RECEIVING};
use super::{Begin, Picker, PieceState, COUNTED};

impl Picker {
    /// Takes ownership of a claimed block's data: to `RECEIVING` (keeping count of the other
    /// claims) if `two_phase`, else straight to `RECEIVED`. An arrival that loses consumes one
    /// of the other claims of a block being received.
    pub(super) fn take_block(&self, cell: &AtomicU8, two_phase: bool) -> Begin {
        let mut v = cell.load(Acquire);
        loop {
            let (to, won) = match (v, word::receiving(v)) {
                (FREE, _) => return Begin::Unrequested,
                (RECEIVED, _) => return Begin::Duplicate,
                (_, Some(0)) => return Begin::Duplicate,
                (_, Some(_)) => (v - 1, Begin::Duplicate),
                (c, None) if two_phase => (RECEIVING + c - 1, Begin::Owner),
                (_, None) => (RECEIVED, Begin::Owner),
            };
            match cell.compare_exchange_weak(v, to, AcqRel, Acquire) {
                Ok(_) => return won,
                Err(cur) => v = cur,
            }
        }
    }

    /// One more block of piece `p` received; true if that completed the piece.
    pub(super) fn count_received(&self, p: usize) -> bool {
        let Ok(pi) = self.lengths.piece(p as u32) else {
            return false;
        };
        let n = self.lengths.blocks_in_piece(pi);
        let moved = self.transition(p, |w| {
            let r = w.received() + 1;
            let w = w.with_received(r.min(n));
            Some(if r >= n {
                w.with_state(PieceState::Complete)
            } else {
                w
            })
        });
        matches!(moved, Some((old, _)) if old.received() + 1 == n)
    }

    /// Returns `k` blocks whose bytes are already `FREE` to the word's free count.
    pub(super) fn unreserve(&self, p: usize, k: u32) {
        self.transition(p, |w| Some(w.with_free(w.free() + k)));
    }

    /// The one way a piece word changes: CAS `f(old)` in, keeping counters and bitmaps in step.
    /// Returns the old and new word, or `None` if `f` declined.
    pub(super) fn transition(
        &self,
        p: usize,
        mut f: impl FnMut(Word) -> Option<Word>,
    ) -> Option<(Word, Word)> {
        let cell = self.words.get(p)?;
        let mut old = Word(cell.load(Acquire));
        loop {
            let new = f(old)?;
            let rises = COUNTED.map(|pred| !pred(old) && pred(new));
            // Raise before the CAS so that a counter never reads below the truth.
            for (c, _) in self.counters.iter().zip(rises).filter(|(_, r)| *r) {
                c.fetch_add(1, SeqCst);
            }
            match cell.compare_exchange_weak(old.0, new.0, SeqCst, Acquire) {
                Ok(_) => {
                    self.publish(p, old, new);
                    return Some((old, new));
                }
                Err(cur) => {
                    for (c, _) in self.counters.iter().zip(rises).filter(|(_, r)| *r) {
                        c.fetch_sub(1, SeqCst);
                    }
                    old = Word(cur);
                }
            }
        }
    }

    /// After a successful CAS: lower counters whose predicate fell, and set or clear bitmap bits.
    fn publish(&self, p: usize, old: Word, new: Word) {
        for (c, pred) in self.counters.iter().zip(COUNTED) {
            if pred(old) && !pred(new) {
                c.fetch_sub(1, SeqCst);
            }
        }
        for (bits, pred) in [
            (&self.open, Word::open as fn(Word) -> bool),
            (&self.open_high, Word::open_high),
            (&self.partial, Word::partial),
        ] {
            if pred(new) && !pred(old) {
                bits.set(p);
                if !std::ptr::eq(bits, &self.partial) {
                    // A piece (re)opening can lower the rarest-first bounds of its word.
                    self.avail.lowered();
                }
            } else if pred(old) && !pred(new) {
                self.clear_bit(bits, p, pred);
            }
        }
    }

    /// Clears a bitmap bit, then sets it again if the word qualifies after all. With bits set
    /// only after the CAS that makes a predicate true, a qualifying piece cannot end up unset.
    pub(super) fn clear_bit(&self, bits: &AtomicBits, p: usize, pred: fn(Word) -> bool) {
        bits.clear(p);
        if self
            .words
            .get(p)
            .is_some_and(|w| pred(Word(w.load(SeqCst))))
        {
            bits.set(p);
        }
    }
}
