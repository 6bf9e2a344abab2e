//! [`Picker::pick`]: which blocks to claim for one peer.
//!
//! Order of preference: (1) free blocks of the pieces the peer is already working on (`hint`),
//! (2) free blocks of other partial pieces, (3) new pieces, rarest first (fewest connected peers
//! have them; ties broken from a seed-dependent start so peers spread out), high-priority pieces
//! before the others, or in index order in sequential mode (`order.rs`), (4) in endgame only,
//! blocks claimed by other peers but not received, up to [`MAX_DUPLICATES`] claims per block.
//!
//! Exclusive pieces (parole): a piece round may be reserved for the one peer that started it,
//! so that a hash failure has a single suspect. [`Picker::pick_parole`] serves a peer on parole
//! (it shared a failed piece with others): only its own exclusive pieces (`hint`) and new
//! pieces, which become exclusive as it starts them; no joining, no endgame duplicates. Every
//! pick skips the exclusive pieces of others in steps 2 and 4; a failed piece can be reopened
//! exclusive ([`Picker::piece_failed_exclusive`]), and then whoever starts it owns it. The
//! owner gives a piece back with [`Picker::end_exclusive`] when it stops working on it.
//!
//! Cost: steps 2 and 4 walk the partial-piece bitmap (few pieces); step 3 walks the open-piece
//! bitmap once per call (see `rarest.rs`, which skips most of it) and keeps the rarest few
//! candidates, so one call claims several whole pieces for the price of one walk.

use std::sync::atomic::Ordering::{AcqRel, Relaxed, SeqCst};

use super::word::{Word, FREE};
use super::{Picker, PieceState, MAX_DUPLICATES, PICKABLE};
use crate::types::{Bitfield, BlockRef, PieceIndex};

/// Which pick: a normal one, or one for a peer on parole.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Normal { allow_endgame: bool },
    Parole,
}

/// The arguments of one [`Picker::pick`] call.
pub(super) struct Pick<'a> {
    pub(super) peer_has: &'a Bitfield,
    already_requested: &'a dyn Fn(BlockRef) -> bool,
    /// Asked once per piece before any block of it is claimed (see [`Picker::pick`]).
    admit: &'a dyn Fn(PieceIndex) -> bool,
    out: &'a mut Vec<BlockRef>,
    /// Length of `out` when the call began: `out[first..]` are this call's claims.
    first: usize,
    /// Blocks still to claim.
    pub(super) left: usize,
    /// A peer on parole: only whole pieces of its own (see the module doc).
    parole: bool,
}

impl<'a> Pick<'a> {
    fn new(
        peer_has: &'a Bitfield,
        already_requested: &'a dyn Fn(BlockRef) -> bool,
        admit: &'a dyn Fn(PieceIndex) -> bool,
        out: &'a mut Vec<BlockRef>,
        max: usize,
    ) -> Pick<'a> {
        Pick {
            peer_has,
            already_requested,
            admit,
            first: out.len(),
            out,
            left: max,
            parole: false,
        }
    }
}

impl Picker {
    /// Claims up to `max` blocks that the peer has and we need, appending them to `out`, in the
    /// order of preference of the module doc. `hint`: the pieces this peer is already working
    /// on. `seed`: any per-peer (or per-call) number, spreads peers over equally rare pieces.
    /// `already_requested`: blocks this peer has outstanding, never claimed again for it.
    /// Step (4), endgame duplicates, runs only when `allow_endgame` and no free block remains in
    /// any wanted piece. Returns how many blocks were claimed; a bitfield of the wrong length
    /// claims nothing.
    ///
    /// `admit` is asked about a piece right before the first block of it would be claimed in
    /// this call; `false` skips the piece. The engine passes "this piece has a buffer (one is
    /// taken from the pool if needed)", so no block is ever claimed for a piece that has no
    /// buffer to land in: backpressure happens here, before a claim, never by discarding data
    /// that arrives for a claim without a buffer.
    #[allow(clippy::too_many_arguments)]
    pub fn pick(
        &self,
        peer_has: &Bitfield,
        hint: &[PieceIndex],
        max: usize,
        allow_endgame: bool,
        seed: u32,
        already_requested: &dyn Fn(BlockRef) -> bool,
        admit: &dyn Fn(PieceIndex) -> bool,
        out: &mut Vec<BlockRef>,
    ) -> usize {
        let mode = Mode::Normal { allow_endgame };
        self.pick_in(
            mode,
            Pick::new(peer_has, already_requested, admit, out, max),
            hint,
            seed,
        )
    }

    /// [`Self::pick`] for a peer on parole: free blocks of the exclusive pieces it works on
    /// (`hint`; other hint pieces are left to drain), then new pieces, each reserved for it. A
    /// hash failure of such a piece has one suspect. If that finds nothing, it joins pieces in
    /// progress after all (steps 2 and 4 of a normal pick), so parole never stalls a download
    /// whose last pieces are partial. `admit` as for [`Self::pick`].
    #[allow(clippy::too_many_arguments)]
    pub fn pick_parole(
        &self,
        peer_has: &Bitfield,
        hint: &[PieceIndex],
        max: usize,
        seed: u32,
        already_requested: &dyn Fn(BlockRef) -> bool,
        admit: &dyn Fn(PieceIndex) -> bool,
        out: &mut Vec<BlockRef>,
    ) -> usize {
        let mut pk = Pick::new(peer_has, already_requested, admit, out, max);
        pk.parole = true;
        self.pick_in(Mode::Parole, pk, hint, seed)
    }

    /// The steps of both picks (see the module doc), in the order `mode` gives them.
    fn pick_in(&self, mode: Mode, mut pk: Pick<'_>, hint: &[PieceIndex], seed: u32) -> usize {
        let max = pk.left;
        if max == 0 || pk.peer_has.len() != self.lengths.num_pieces() {
            return 0;
        }
        for p in hint {
            if pk.left == 0 {
                break;
            }
            self.claim_free(p.idx(), true, &mut pk);
        }
        // Sequential mode finishes the lowest partial pieces first (see `order.rs`).
        let start = if self.is_sequential() {
            0
        } else {
            self.spread(seed)
        };
        let allow_endgame = match mode {
            Mode::Normal { allow_endgame } => {
                if pk.left > 0 {
                    self.claim_partial(start, &mut pk);
                }
                if pk.left > 0 {
                    self.claim_new(start, &mut pk);
                }
                allow_endgame
            }
            Mode::Parole => {
                if pk.left > 0 {
                    self.claim_new(start, &mut pk);
                }
                if pk.left < max {
                    return max - pk.left;
                }
                // Nothing of its own to take: join pieces in progress rather than stall.
                pk.parole = false;
                self.claim_partial(start, &mut pk);
                true
            }
        };
        if pk.left > 0 && allow_endgame && self.counters[PICKABLE].load(SeqCst) == 0 {
            self.claim_duplicates(start, &mut pk);
        }
        max - pk.left
    }

    /// True if the current round of piece `p` is reserved for one peer.
    pub fn is_exclusive(&self, p: PieceIndex) -> bool {
        self.word(p.idx()).is_some_and(Word::exclusive)
    }

    /// The owner of an exclusive piece stops working on it (it left, choked us or was snubbed):
    /// anyone may now join.
    pub fn end_exclusive(&self, p: PieceIndex) {
        self.transition(p.idx(), |w| w.exclusive().then(|| w.with_exclusive(false)));
    }

    /// A piece index in `0..num_pieces` derived from `seed`.
    fn spread(&self, seed: u32) -> usize {
        // A 32-bit finalizer (murmur3's) so that consecutive seeds land far apart.
        let mut h = seed;
        h ^= h >> 16;
        h = h.wrapping_mul(0x85eb_ca6b);
        h ^= h >> 13;
        h = h.wrapping_mul(0xc2b2_ae35);
        h ^= h >> 16;
        ((h as u64 * self.lengths.num_pieces() as u64) >> 32) as usize
    }

    /// Claims free blocks of piece `p` if the peer has it: reserve in the word, then take bytes.
    /// `own`: the peer is already working on `p` (a hint), so it may continue an exclusive piece.
    pub(super) fn claim_free(&self, p: usize, own: bool, pk: &mut Pick<'_>) {
        let (Some(w), Ok(piece)) = (self.word(p), self.lengths.piece(p as u32)) else {
            return;
        };
        if !w.pickable() || !pk.peer_has.get(piece) {
            return;
        }
        // Backpressure before the claim: a piece without a buffer gets no claim at all.
        if !(pk.admit)(piece) {
            return;
        }
        let want = u32::try_from(pk.left).unwrap_or(u32::MAX);
        let parole = pk.parole;
        let n = self.lengths.blocks_in_piece(piece);
        let Some((old, new)) = self.transition(p, |w| {
            // Nothing claimed or received: as good as open (a claim that found no byte, or a
            // round whose owner gave everything back, leaves such a partial piece).
            let fresh = w.state() == PieceState::Open || (w.free() == n && w.received() == 0);
            let allowed = if parole {
                fresh || (own && w.exclusive())
            } else {
                fresh || own || !w.exclusive()
            };
            (w.pickable() && allowed).then(|| {
                let k = want.min(w.free());
                let w = w.with_free(w.free() - k).with_state(PieceState::Partial);
                if parole && fresh {
                    w.with_exclusive(true)
                } else {
                    w
                }
            })
        }) else {
            return;
        };
        let reserved = old.free() - new.free();
        // Normally a free block cannot be among this call's claims, but a late release by a
        // caller (see the module doc of `picker`) can free a block we just claimed.
        let revisit = pk.out[pk.first..].iter().any(|b| b.piece == piece);
        let mut got = 0;
        let base = p * self.stride;
        for i in 0..self.lengths.blocks_in_piece(piece) {
            if got == reserved {
                break;
            }
            let Some(cell) = self.blocks.get(base + i as usize) else {
                break;
            };
            if cell.load(Relaxed) != FREE {
                continue;
            }
            let Ok(b) = self.lengths.block(piece, i) else {
                break;
            };
            if (pk.already_requested)(b) || (revisit && pk.out[pk.first..].contains(&b)) {
                continue;
            }
            if cell.compare_exchange(FREE, 1, AcqRel, Relaxed).is_ok() {
                pk.out.push(b);
                got += 1;
            }
        }
        if got < reserved {
            // Others took the bytes we would have found, or the peer has them outstanding.
            self.unreserve(p, reserved - got);
        }
        pk.left -= got as usize;
    }

    /// Step 2: free blocks of partial pieces.
    fn claim_partial(&self, start: usize, pk: &mut Pick<'_>) {
        self.partial.for_each_from(start, |p| {
            match self.word(p) {
                Some(w) if w.partial() => {
                    // `claim_free` decides on exclusive pieces (only untouched ones are open).
                    if w.free() > 0 {
                        self.claim_free(p, false, pk);
                    }
                }
                _ => self.clear_bit(&self.partial, p, Word::partial),
            }
            pk.left > 0
        });
    }

    /// Step 4 (endgame): one more claim on blocks others have claimed but not received.
    fn claim_duplicates(&self, start: usize, pk: &mut Pick<'_>) {
        self.partial.for_each_from(start, |p| {
            let (Some(w), Ok(piece)) = (self.word(p), self.lengths.piece(p as u32)) else {
                return true;
            };
            if !w.partial() || w.exclusive() || !pk.peer_has.get(piece) || !(pk.admit)(piece) {
                return true;
            }
            let base = p * self.stride;
            for i in 0..self.lengths.blocks_in_piece(piece) {
                let Some(cell) = self.blocks.get(base + i as usize) else {
                    break;
                };
                let v = cell.load(Relaxed);
                if v == FREE || v >= MAX_DUPLICATES {
                    continue;
                }
                let Ok(b) = self.lengths.block(piece, i) else {
                    break;
                };
                // Blocks claimed earlier in this call are not in the caller's set yet.
                if !(pk.already_requested)(b)
                    && !pk.out[pk.first..].contains(&b)
                    && cell.compare_exchange(v, v + 1, AcqRel, Relaxed).is_ok()
                {
                    pk.out.push(b);
                    pk.left -= 1;
                    if pk.left == 0 {
                        return false;
                    }
                }
            }
            true
        });
    }
}
