//! A shard's small cache of blocks recently read for uploads, so several peers asking for the
//! same block cost one disk read.
//!
//! Two mechanisms, both per shard (no locking):
//! - in-flight coalescing: a request for a block whose read is already in flight waits for that
//!   read instead of starting another one (the message is shared with every waiter);
//! - a FIFO ring of [`CACHE_BLOCKS`] PIECE messages for requests that come a little later (a
//!   swarm of leechers on the same rarest pieces). An entry is the very message that was
//!   sent (`Rc`, no copy); the shard caches blocks only when the torrent has more than one
//!   peer, so a lone leecher's buffers go straight back to the pool.
//!
//! Invariant: an entry's bytes are the PIECE header of its key (torrent, piece, offset, len)
//! and exactly what the disk returned for that block; a key is in `index` only while its slot
//! holds that message.

use std::collections::HashMap;
use std::rc::Rc;

use crate::shard::sendq::BlockMsg;

/// Blocks kept per shard (16 KiB each: 2 MiB).
pub const CACHE_BLOCKS: usize = 128;

/// A block of one torrent: (torrent id, piece, offset, length).
pub type BlockKey = (u64, u32, u32, u32);

#[derive(Default)]
pub struct ReadCache {
    index: HashMap<BlockKey, usize>,
    slots: Vec<(BlockKey, Rc<BlockMsg>)>,
    next: usize,
    pub hits: u64,
}

impl ReadCache {
    /// The cached message of `key`, if any.
    pub fn get(&mut self, key: &BlockKey) -> Option<Rc<BlockMsg>> {
        let i = *self.index.get(key)?;
        self.hits += 1;
        Some(Rc::clone(&self.slots[i].1))
    }

    /// Keeps `msg` as `key`, evicting the oldest entry when full; returns the evicted message
    /// (for the pool).
    pub fn insert(&mut self, key: BlockKey, msg: Rc<BlockMsg>) -> Option<Rc<BlockMsg>> {
        if self.index.contains_key(&key) {
            return None;
        }
        if self.slots.len() < CACHE_BLOCKS {
            self.index.insert(key, self.slots.len());
            self.slots.push((key, msg));
            return None;
        }
        let i = self.next;
        self.next = (self.next + 1) % CACHE_BLOCKS;
        let (old, slot) = &mut self.slots[i];
        if self.index.get(old) == Some(&i) {
            self.index.remove(old);
        }
        *old = key;
        self.index.insert(key, i);
        Some(std::mem::replace(slot, msg))
    }

    /// Forgets every block of a torrent (removed torrents).
    pub fn forget_torrent(&mut self, torrent: u64) {
        self.index.retain(|k, _| k.0 != torrent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::sendq::MsgPool;

    #[test]
    fn hits_and_evicts_oldest_first() {
        let mut pool = MsgPool::default();
        let mut msg = |i: u32| {
            let mut m = pool.take(&[0; 13], 4);
            m.block_mut().copy_from_slice(&i.to_be_bytes());
            Rc::new(m)
        };
        let block = |m: Option<Rc<BlockMsg>>| m.map(|m| m.as_slice()[13..].to_vec());
        let mut c = ReadCache::default();
        for i in 0..CACHE_BLOCKS as u32 {
            assert!(c.insert((1, i, 0, 4), msg(i)).is_none());
        }
        assert_eq!(
            block(c.get(&(1, 5, 0, 4))),
            Some(5u32.to_be_bytes().to_vec())
        );
        assert_eq!(block(c.get(&(2, 5, 0, 4))), None, "another torrent");
        let evicted = c.insert((1, 1000, 0, 4), msg(1000));
        assert_eq!(block(evicted), Some(0u32.to_be_bytes().to_vec()));
        assert_eq!(block(c.get(&(1, 0, 0, 4))), None, "the oldest went first");
        assert_eq!(
            block(c.get(&(1, 1000, 0, 4))),
            Some(1000u32.to_be_bytes().to_vec())
        );
        assert_eq!(
            block(c.get(&(1, 1, 0, 4))),
            Some(1u32.to_be_bytes().to_vec())
        );
        c.forget_torrent(1);
        assert_eq!(block(c.get(&(1, 1, 0, 4))), None);
        assert_eq!(c.hits, 3);
    }
}
