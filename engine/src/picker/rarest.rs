//! Rarest first: availability counters, and the walk that finds the rarest open pieces a peer has.
//!
//! The walk visits the open-piece bitmap 64 pieces (one word) at a time. Each word has a cached
//! lower bound on the availability of its open pieces, tagged with the generation it was computed
//! in. Every event that can lower a true minimum (an availability decrement, a piece becoming
//! open) bumps the generation after it happens, so a bound of the current generation is a true
//! lower bound (events concurrent with a walk may or may not be seen by it, as if the walk came
//! first). Once the walk holds its quota of candidates, it skips every word whose bound is no lower
//! than its worst candidate: such a word holds no piece that would enter the list, so the result
//! is exactly rarest first, and a steady-state walk over 16,384 pieces reads 256 words instead of
//! 16,384 counters. Words it does read get a fresh bound.

use std::sync::atomic::{
    AtomicU32, AtomicU64,
    Ordering::{Relaxed, SeqCst},
};

use super::bits::AtomicBits;
use super::word::Word;
use super::Picker;
use crate::types::{Bitfield, PieceIndex};

/// Most new pieces one walk of the open bitmap proposes.
pub(super) const CANDIDATES: usize = 16;

pub(super) struct Availability {
    counts: Box<[AtomicU32]>,
    /// Per word of the open bitmap: `generation << 32 | bound`.
    bounds: Box<[AtomicU64]>,
    generation: AtomicU32,
}

impl Availability {
    pub(super) fn new(pieces: usize) -> Self {
        Availability {
            counts: (0..pieces).map(|_| AtomicU32::new(0)).collect(),
            // Generation 0 never matches: every bound starts stale.
            bounds: (0..pieces.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
            generation: AtomicU32::new(1),
        }
    }

    fn get(&self, p: usize) -> u32 {
        self.counts.get(p).map_or(0, |a| a.load(Relaxed))
    }

    /// Call after anything that may lower the availability of an open piece: marks every cached
    /// bound stale.
    pub(super) fn lowered(&self) {
        self.generation.fetch_add(1, SeqCst);
    }
}

impl Picker {
    /// A peer's BITFIELD (or HAVE_ALL, BEP 6): every piece it has becomes one more available.
    /// A bitfield of the wrong length is ignored.
    pub fn add_peer_bitfield(&self, peer_has: &Bitfield) {
        if peer_has.len() == self.lengths.num_pieces() {
            for p in peer_has.iter() {
                self.add_peer_have(p);
            }
        }
    }

    /// Undoes [`Self::add_peer_bitfield`] plus every [`Self::add_peer_have`] of a peer that
    /// disconnects: pass its final bitfield.
    pub fn remove_peer_bitfield(&self, peer_has: &Bitfield) {
        if peer_has.len() != self.lengths.num_pieces() {
            return;
        }
        for p in peer_has.iter() {
            if let Some(a) = self.avail.counts.get(p.idx()) {
                // Saturating: a caller's double removal must not wrap to "everyone has it".
                let _ = a.fetch_update(Relaxed, Relaxed, |v| v.checked_sub(1));
            }
        }
        self.avail.lowered();
    }

    /// A HAVE message (BEP 3) for a piece the peer did not have before.
    pub fn add_peer_have(&self, p: PieceIndex) {
        if let Some(a) = self.avail.counts.get(p.idx()) {
            a.fetch_add(1, Relaxed);
        }
    }

    /// How many connected peers have the piece.
    pub fn availability(&self, p: PieceIndex) -> u32 {
        self.avail.get(p.idx())
    }

    /// Fills `cands` with the rarest open pieces the peer has; among equals, the first seen
    /// walking from piece `start`.
    pub(super) fn rarest(&self, start: usize, peer_has: &Bitfield, cands: &mut Candidates) {
        self.rarest_in(Walk::Open, start, peer_has, cands);
    }

    /// [`Self::rarest`] over the open pieces of high priority only. The cached bounds are read
    /// (a bound of all open pieces is a bound of any subset) but never written: a minimum over
    /// the subset is not a bound of the whole.
    pub(super) fn rarest_high(&self, start: usize, peer_has: &Bitfield, cands: &mut Candidates) {
        self.rarest_in(Walk::OpenHigh, start, peer_has, cands);
    }

    fn rarest_in(&self, walk: Walk, start: usize, peer_has: &Bitfield, cands: &mut Candidates) {
        let (bitmap, pred) = match walk {
            Walk::Open => (&self.open, Word::open as fn(Word) -> bool),
            Walk::OpenHigh => (&self.open_high, Word::open_high as fn(Word) -> bool),
        };
        let nw = bitmap.num_words();
        if nw == 0 {
            return;
        }
        let g = self.avail.generation.load(SeqCst);
        let start = start % (nw * 64);
        let (sw, high) = (start / 64, u64::MAX << (start % 64));
        for k in 0..nw {
            let wi = (sw + k) % nw;
            let bits = bitmap.load_word(wi);
            if bits == 0 {
                continue;
            }
            let Some(bound) = self.avail.bounds.get(wi) else {
                continue;
            };
            if let Some(worst) = cands.worst() {
                let b = bound.load(Relaxed);
                if (b >> 32) as u32 == g && b as u32 >= worst {
                    continue;
                }
            }
            // The starting word: its pieces from `start` first, then the ones before it.
            let parts = if k == 0 {
                [bits & high, bits & !high]
            } else {
                [bits, 0]
            };
            let mut min = u32::MAX;
            for mut w in parts {
                while w != 0 {
                    let p = wi * 64 + w.trailing_zeros() as usize;
                    w &= w - 1;
                    let a = self.avail.get(p);
                    min = min.min(a);
                    if cands.would_take(a) {
                        self.offer(p, a, peer_has, cands, bitmap, pred);
                    }
                }
            }
            if walk == Walk::Open {
                bound.store((g as u64) << 32 | min as u64, Relaxed);
            }
        }
    }

    fn offer(
        &self,
        p: usize,
        a: u32,
        peer_has: &Bitfield,
        cands: &mut Candidates,
        bitmap: &AtomicBits,
        pred: fn(Word) -> bool,
    ) {
        let Ok(piece) = self.lengths.piece(p as u32) else {
            return;
        };
        if peer_has.get(piece) {
            match self.word(p) {
                Some(w) if pred(w) => cands.insert(a, p),
                _ => self.clear_bit(bitmap, p, pred),
            }
        }
    }
}

/// Which bitmap a rarest-first walk visits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Walk {
    Open,
    OpenHigh,
}

/// The `cap` rarest pieces seen so far, ascending by availability; among equals, the first seen.
pub(super) struct Candidates {
    items: [(u32, usize); CANDIDATES],
    len: usize,
    cap: usize,
}

impl Candidates {
    pub(super) fn new(cap: usize) -> Self {
        Candidates {
            items: [(0, 0); CANDIDATES],
            len: 0,
            cap: cap.clamp(1, CANDIDATES),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pieces, rarest first.
    pub(super) fn pieces(&self) -> impl Iterator<Item = usize> + '_ {
        self.items[..self.len].iter().map(|&(_, p)| p)
    }

    /// The availability a piece must beat to enter a full list; `None` while not full.
    fn worst(&self) -> Option<u32> {
        (self.len == self.cap).then(|| self.items[self.len - 1].0)
    }

    /// Whether a piece of availability `a` would make the list.
    fn would_take(&self, a: u32) -> bool {
        self.worst().is_none_or(|w| a < w)
    }

    fn insert(&mut self, a: u32, p: usize) {
        if !self.would_take(a) {
            return;
        }
        let at = self.items[..self.len].partition_point(|&(x, _)| x <= a);
        let end = self.len.min(self.cap - 1);
        self.items.copy_within(at..end, at + 1);
        self.items[at] = (a, p);
        self.len = (self.len + 1).min(self.cap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_keep_the_rarest_first_seen() {
        let mut c = Candidates::new(3);
        for (a, p) in [(5, 0), (3, 1), (5, 2), (3, 3), (9, 4), (1, 5), (3, 6)] {
            c.insert(a, p);
        }
        assert_eq!(c.pieces().collect::<Vec<_>>(), vec![5, 1, 3]);
        assert_eq!(c.worst(), Some(3));
        assert!(!c.would_take(3));
        assert!(c.would_take(2));
        let mut one = Candidates::new(1);
        assert!(one.is_empty() && one.worst().is_none());
        one.insert(4, 7);
        one.insert(4, 8);
        one.insert(2, 9);
        assert_eq!(one.pieces().collect::<Vec<_>>(), vec![9]);
    }
}
