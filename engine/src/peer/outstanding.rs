//! The requests a peer has not answered yet, oldest first, each with the time it was sent, and
//! the per-request timeout built on them.
//!
//! BEP 3 peers answer requests in order, and libtorrent, Transmission and aria2 do in practice,
//! give or take the reordering of their disk reads. So a request still waiting [`SKIP_GRACE`]
//! after it was sent, while a *later* request of ours was answered, was skipped: dropped by the peer
//! without a REJECT (a peer without BEP 6, or a buggy one). It is given up (CANCEL, the claim
//! back to the picker) so another peer, or this one again, can serve the block. A peer that
//! answers nothing at all is handled by the snub timeout instead.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::types::BlockRef;

/// How long a request may trail a later, answered request before it counts as skipped.
pub const SKIP_GRACE: Duration = Duration::from_secs(10);

/// One request: the block, its place in the order we sent requests, and when.
#[derive(Clone, Copy)]
struct Sent {
    block: BlockRef,
    seq: u64,
    at: Instant,
}

/// Outstanding requests in the order they were sent.
#[derive(Default)]
pub struct Outstanding {
    q: VecDeque<Sent>,
    /// Sequence number of the next request.
    next_seq: u64,
    /// Sequence number of the newest request the peer answered so far.
    newest_answered: Option<u64>,
}

impl Outstanding {
    pub fn len(&self) -> usize {
        self.q.len()
    }

    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    pub fn push_back(&mut self, block: BlockRef, now: Instant) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.q.push_back(Sent {
            block,
            seq,
            at: now,
        });
    }

    pub fn pop_front(&mut self) -> Option<BlockRef> {
        self.q.pop_front().map(|s| s.block)
    }

    #[cfg(test)]
    pub fn front(&self) -> Option<&BlockRef> {
        self.q.front().map(|s| &s.block)
    }

    pub fn contains(&self, b: &BlockRef) -> bool {
        self.q.iter().any(|s| s.block == *b)
    }

    /// The blocks, oldest request first.
    pub fn iter(&self) -> impl Iterator<Item = &BlockRef> + '_ {
        self.q.iter().map(|s| &s.block)
    }

    /// Takes `b` out because its data arrived: remembers when it was asked for.
    pub fn answered(&mut self, b: &BlockRef) -> bool {
        let Some(i) = self.q.iter().position(|s| s.block == *b) else {
            return false;
        };
        if let Some(s) = self.q.remove(i) {
            self.newest_answered = Some(self.newest_answered.map_or(s.seq, |n| n.max(s.seq)));
        }
        true
    }

    /// Takes `b` out without an answer (rejected, cancelled).
    pub fn remove(&mut self, b: &BlockRef) -> bool {
        let Some(i) = self.q.iter().position(|s| s.block == *b) else {
            return false;
        };
        self.q.remove(i);
        true
    }

    /// Keeps the requests for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&BlockRef) -> bool) {
        self.q.retain(|s| keep(&s.block));
    }

    /// Takes out the oldest request if the peer skipped it (see the module doc).
    pub fn pop_skipped(&mut self, now: Instant) -> Option<BlockRef> {
        let oldest = *self.q.front()?;
        let answered_later = self.newest_answered.is_some_and(|n| n > oldest.seq);
        (answered_later && now.saturating_duration_since(oldest.at) > SKIP_GRACE)
            .then(|| self.pop_front())
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Lengths, BLOCK_LEN};

    #[test]
    fn only_requests_answered_around_are_skipped() {
        let l = Lengths::new(u64::from(4 * BLOCK_LEN), 4 * BLOCK_LEN).unwrap();
        let p = l.piece(0).unwrap();
        let b: Vec<BlockRef> = (0..4).map(|i| l.block(p, i).unwrap()).collect();
        let t0 = Instant::now();
        let mut o = Outstanding::default();
        // One batch: sent at the same instant, still ordered.
        for x in &b {
            o.push_back(*x, t0);
        }
        // Nothing answered yet: however old, nothing is skipped (that is the snub timeout's).
        assert_eq!(o.pop_skipped(t0 + Duration::from_secs(60)), None);
        // A later request answered: the earlier one is skipped once the grace is over.
        assert!(o.answered(&b[2]));
        assert_eq!(o.pop_skipped(t0 + SKIP_GRACE), None);
        let late = t0 + SKIP_GRACE + Duration::from_secs(1);
        assert_eq!(o.pop_skipped(late), Some(b[0]));
        assert_eq!(o.pop_skipped(late), Some(b[1]));
        // b[3] was sent after the newest answered request: still waiting its turn.
        assert_eq!(o.pop_skipped(late), None);
        assert_eq!(o.iter().copied().collect::<Vec<_>>(), vec![b[3]]);
        assert!(!o.answered(&b[0]));
        assert!(o.remove(&b[3]) && o.is_empty());
    }
}
