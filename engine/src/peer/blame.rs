//! Blame for hash failures, and parole.
//!
//! A failed piece lists the peers whose blocks went into it. A sole supplier is certainly at
//! fault and is banned at once. With several suppliers nobody can be named: each goes on
//! parole (as libtorrent does), which means it downloads only whole pieces of its own
//! ([`crate::picker::Picker::pick_parole`]): its next bad piece has it as sole supplier, and its
//! first good one ends the parole. The failed piece itself is reopened exclusive, so its next
//! round has one supplier too. A failure that a peer already banned for corruption shared in is
//! put down to that peer: blocks it sent before the ban can still sit in partial pieces that
//! honest peers complete.

use super::{PeerError, PeerSession};
use crate::torrent::TorrentShared;
use crate::types::PieceIndex;

/// Exclusive pieces a peer on parole works on at once: its picks are cut so that it starts no
/// more (the list is also bounded by the request window, as every owned piece had a claim).
pub(super) const MAX_OWNED: usize = 64;

impl PeerSession {
    /// Reads the failures logged since the last call; bans this peer or puts it on parole.
    pub(super) fn check_blame(&mut self, t: &TorrentShared) -> Result<(), PeerError> {
        self.scratch_failed.clear();
        self.failed_cursor = t.failed_since(self.failed_cursor, &mut self.scratch_failed);
        for f in &self.scratch_failed {
            if !f.contributors.contains(&self.key) {
                continue;
            }
            if f.contributors.len() == 1 {
                t.ban_culprit(self.key, self.addr.ip());
                return Err(PeerError::HashFailures);
            }
            let others_known_bad = f
                .contributors
                .iter()
                .any(|&k| k != self.key && t.is_culprit(k));
            if !others_known_bad {
                self.parole = true;
            }
        }
        Ok(())
    }

    /// True while this peer downloads only whole pieces of its own.
    pub fn on_parole(&self) -> bool {
        self.parole
    }

    /// Forgets exclusive pieces that are no longer in progress. One that was verified ends the
    /// parole: this peer supplied a good piece alone.
    pub(super) fn prune_owned(&mut self, t: &TorrentShared) {
        let picker = &t.picker;
        let mut cleared = false;
        self.owned.retain(|&p| {
            if picker.have(p) {
                cleared = true;
                return false;
            }
            picker.state(p) != crate::picker::PieceState::Open && picker.is_exclusive(p)
        });
        if cleared {
            self.parole = false;
        }
    }

    /// Records the exclusive pieces among this call's new claims (`scratch_blocks`).
    pub(super) fn note_owned(&mut self, t: &TorrentShared) {
        let mut last = None;
        for b in &self.scratch_blocks {
            // Claims come a piece at a time: look at each piece once.
            if last == Some(b.piece) {
                continue;
            }
            last = Some(b.piece);
            if !self.owned.contains(&b.piece) && t.picker.is_exclusive(b.piece) {
                self.owned.push(b.piece);
            }
        }
    }

    /// Gives up every exclusive piece (the peer choked us, snubbed us or left): others may
    /// finish them.
    pub(super) fn end_owned(&mut self, t: &TorrentShared) {
        for p in self.owned.drain(..) {
            t.picker.end_exclusive(p);
        }
    }

    /// How many blocks a pick on parole may claim: enough for the owned pieces' free blocks
    /// and new pieces up to [`MAX_OWNED`].
    pub(super) fn parole_budget(&self, free: usize, t: &TorrentShared) -> usize {
        let pieces = MAX_OWNED.max(self.owned.len());
        free.min(pieces * t.lengths.max_blocks_per_piece() as usize)
    }

    /// The hint for a pick: pieces with outstanding requests, then the exclusive ones we own.
    pub(super) fn hint_pieces(&mut self) {
        self.scratch_pieces.clear();
        for r in self.requests.iter() {
            if self.scratch_pieces.last() != Some(&r.piece) {
                self.scratch_pieces.push(r.piece);
            }
        }
        for &p in &self.owned {
            if !self.scratch_pieces.contains(&p) {
                self.scratch_pieces.push(p);
            }
        }
    }

    /// Owned exclusive pieces (tests).
    pub fn owned_pieces(&self) -> &[PieceIndex] {
        &self.owned
    }
}
