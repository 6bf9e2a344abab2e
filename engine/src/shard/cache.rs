//! A shard's small cache of blocks recently read for uploads, so several peers asking for the
//! same block cost one disk read.
//!
//! Two mechanisms, both per shard (no locking):
//! - in-flight coalescing: a request for a block whose read is already in flight waits for that
//!   read instead of starting another one (free: the reply is lent to every waiter);
//! - a FIFO ring of [`CACHE_BLOCKS`] block copies for requests that come a little later (a swarm
//!   of leechers on the same rarest pieces). The ring's buffers are allocated once and reused;
//!   the shard only copies a block in when the torrent has more than one peer, so a lone
//!   leecher costs no extra copy.
//!
//! Invariant: an entry's bytes are exactly what the disk returned for its key (torrent, piece,
//! offset, len); a key is in `index` only while its slot holds those bytes.

use std::collections::HashMap;

/// Blocks kept per shard (16 KiB each: 2 MiB).
pub const CACHE_BLOCKS: usize = 128;

/// A block of one torrent: (torrent id, piece, offset, length).
pub type BlockKey = (u64, u32, u32, u32);

#[derive(Default)]
pub struct ReadCache {
    index: HashMap<BlockKey, usize>,
    slots: Vec<(BlockKey, Vec<u8>)>,
    next: usize,
    pub hits: u64,
}

impl ReadCache {
    /// The cached bytes of `key`, if any.
    pub fn get(&mut self, key: &BlockKey) -> Option<&[u8]> {
        let i = *self.index.get(key)?;
        self.hits += 1;
        Some(&self.slots[i].1)
    }

    /// Copies `data` in as `key`, evicting the oldest entry when full.
    pub fn insert(&mut self, key: BlockKey, data: &[u8]) {
        if self.index.contains_key(&key) {
            return;
        }
        if self.slots.len() < CACHE_BLOCKS {
            self.index.insert(key, self.slots.len());
            self.slots.push((key, data.to_vec()));
            return;
        }
        let i = self.next;
        self.next = (self.next + 1) % CACHE_BLOCKS;
        let (old, buf) = &mut self.slots[i];
        if self.index.get(old) == Some(&i) {
            self.index.remove(old);
        }
        *old = key;
        buf.clear();
        buf.extend_from_slice(data);
        self.index.insert(key, i);
    }

    /// Forgets every block of a torrent (removed torrents).
    pub fn forget_torrent(&mut self, torrent: u64) {
        self.index.retain(|k, _| k.0 != torrent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_and_evicts_oldest_first() {
        let mut c = ReadCache::default();
        for i in 0..CACHE_BLOCKS as u32 {
            c.insert((1, i, 0, 4), &i.to_be_bytes());
        }
        assert_eq!(c.get(&(1, 5, 0, 4)), Some(&5u32.to_be_bytes()[..]));
        assert_eq!(c.get(&(2, 5, 0, 4)), None, "another torrent");
        c.insert((1, 1000, 0, 4), b"new!");
        assert_eq!(c.get(&(1, 0, 0, 4)), None, "the oldest went first");
        assert_eq!(c.get(&(1, 1000, 0, 4)), Some(&b"new!"[..]));
        assert_eq!(c.get(&(1, 1, 0, 4)), Some(&1u32.to_be_bytes()[..]));
        c.forget_torrent(1);
        assert_eq!(c.get(&(1, 1, 0, 4)), None);
        assert_eq!(c.hits, 3);
    }
}
