//! Pieces a shard read whole with O_DIRECT for uploads: the few it keeps (blocks asked for
//! next are sent as slices of them), and the reads in flight with the blocks waiting for them.
//!
//! A piece is read whole only when the page cache does not hold all of it (`cachestat(2)`,
//! checked about once per piece): one 256 KiB direct read costs the guest a fraction of
//! sixteen buffered 16 KiB reads (measured with dd on this machine: 0.08 against 0.2 CPU-s/GiB
//! and more when the pages are new), and the data lands in buffers touched once instead of in
//! new page-cache pages. (A buffered `RWF_NOWAIT` probe was tried first: a miss starts the
//! kernel's readahead anyway, so the file was read twice.)

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use crate::shard::backend::Token;
use crate::shard::sendq::PieceData;
use crate::types::BlockRef;

/// Longest piece read whole; longer pieces are read block by block.
pub const PIECE_BUF_LEN: usize = 1 << 20;
/// Bytes of piece buffers per shard and buffer size (allocated and touched on first use).
const POOL_BYTES: usize = 8 << 20;
/// Buffer bytes of the pieces kept after their read: half the pool, so a read can start
/// while sends still hold older pieces.
const KEEP_BYTES: usize = POOL_BYTES / 2;

/// A shard's aligned piece buffers, one pool per size (a power of two, 64 KiB to 1 MiB).
#[derive(Default)]
pub struct PiecePools {
    pools: HashMap<usize, Arc<uring_disk::BufferPool>>,
}

impl PiecePools {
    /// A buffer for `len` bytes, if the piece is short enough and one is free.
    pub fn take(&mut self, len: usize) -> Option<uring_disk::PooledBuf> {
        let size = len.next_power_of_two().max(64 << 10);
        if size > PIECE_BUF_LEN {
            return None;
        }
        self.pools
            .entry(size)
            .or_insert_with(|| uring_disk::BufferPool::new(size, POOL_BYTES / size))
            .try_take()
    }
}

/// The pieces kept, oldest first.
pub struct PieceCache {
    kept: VecDeque<((u64, u32), Rc<PieceData>)>,
    limit: usize,
}

impl Default for PieceCache {
    fn default() -> Self {
        PieceCache::with_limit(KEEP_BYTES)
    }
}

impl PieceCache {
    /// Keeps pieces whose buffers add up to at most `limit` bytes (at least one).
    pub fn with_limit(limit: usize) -> PieceCache {
        PieceCache {
            kept: VecDeque::new(),
            limit,
        }
    }

    pub fn get(&self, torrent: u64, piece: u32) -> Option<Rc<PieceData>> {
        self.kept
            .iter()
            .find(|(k, _)| *k == (torrent, piece))
            .map(|(_, p)| Rc::clone(p))
    }

    /// Keeps `data` as the newest, dropping the oldest beyond the limit.
    pub fn insert(&mut self, torrent: u64, piece: u32, data: Rc<PieceData>) {
        self.kept.retain(|(k, _)| *k != (torrent, piece));
        self.kept.push_back(((torrent, piece), data));
        let mut bytes: usize = self.kept.iter().map(|(_, d)| d.buf_len()).sum();
        while bytes > self.limit && self.kept.len() > 1 {
            if let Some((_, d)) = self.kept.pop_front() {
                bytes -= d.buf_len();
            }
        }
    }

    /// Forgets a torrent's pieces.
    pub fn forget_torrent(&mut self, torrent: u64) {
        self.kept.retain(|((t, _), _)| *t != torrent);
    }
}

/// A whole-piece read in flight.
pub struct PieceWait {
    pub torrent: u64,
    pub piece: u32,
    /// The piece's length (the read may ask for more, rounded up).
    pub len: u32,
    /// Its file (O_DIRECT is turned off for it if the read is refused).
    pub file: uring_disk::OpenFile,
    /// Blocks to send when it lands: connection, its key, block.
    pub blocks: Vec<(Token, u64, BlockRef)>,
}

/// Whole-piece reads in flight, by tag and by piece.
#[derive(Default)]
pub struct PieceReads {
    by_tag: HashMap<u32, PieceWait>,
    by_piece: HashMap<(u64, u32), u32>,
}

impl PieceReads {
    pub fn start(&mut self, tag: u32, wait: PieceWait) {
        self.by_piece.insert((wait.torrent, wait.piece), tag);
        self.by_tag.insert(tag, wait);
    }

    /// The waiting list of a read in flight for this piece, to join it.
    pub fn waiters(
        &mut self,
        torrent: u64,
        piece: u32,
    ) -> Option<&mut Vec<(Token, u64, BlockRef)>> {
        let tag = self.by_piece.get(&(torrent, piece))?;
        self.by_tag.get_mut(tag).map(|w| &mut w.blocks)
    }

    pub fn finish(&mut self, tag: u32) -> Option<PieceWait> {
        let w = self.by_tag.remove(&tag)?;
        self.by_piece.remove(&(w.torrent, w.piece));
        Some(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(byte: u8) -> Rc<PieceData> {
        let mut buf = uring_disk::PooledBuf::new_unpooled(4096);
        buf.as_mut_slice().fill(byte);
        Rc::new(PieceData::new(buf, 100))
    }

    /// A stored file, held open (its storage is dropped, the descriptor stays).
    fn some_file() -> uring_disk::OpenFile {
        let dir = tempfile::tempdir().unwrap();
        let files = vec![uring_disk::StorageFile {
            rel_path: "f".into(),
            length: 4096,
            padding: false,
        }];
        let s = uring_disk::Storage::open(dir.path(), files, 4096, Default::default()).unwrap();
        let mut parts = Vec::new();
        assert!(s.reader().parts(0, 0, 4096, &mut parts).unwrap());
        match parts.pop() {
            Some(uring_disk::ReadPart::File { file, .. }) => file,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn keeps_the_newest_pieces_and_tracks_reads() {
        let mut c = PieceCache::with_limit(3 * 4096);
        for p in 0..5u32 {
            c.insert(1, p, data(p as u8));
        }
        assert!(
            c.get(1, 0).is_none() && c.get(1, 1).is_none(),
            "oldest dropped"
        );
        assert!(c.get(1, 2).is_some(), "three buffers' worth kept");
        let last = c.get(1, 4).unwrap();
        assert_eq!(last.get(0, 100).unwrap()[99], 4);
        assert!(last.get(1, 100).is_none(), "past the piece's length");
        c.forget_torrent(1);
        assert!(c.get(1, 4).is_none());
        let mut pools = PiecePools::default();
        assert_eq!(pools.take(256 << 10).unwrap().len(), 256 << 10);
        assert_eq!(pools.take(5000).unwrap().len(), 64 << 10, "at least 64 KiB");
        assert!(
            pools.take(PIECE_BUF_LEN + 1).is_none(),
            "too long to read whole"
        );

        let mut r = PieceReads::default();
        r.start(
            7,
            PieceWait {
                torrent: 1,
                piece: 3,
                len: 100,
                file: some_file(),
                blocks: Vec::new(),
            },
        );
        assert!(r.waiters(1, 4).is_none());
        assert!(r.waiters(1, 3).is_some_and(|w| w.is_empty()));
        let w = r.finish(7).unwrap();
        assert_eq!((w.torrent, w.piece, w.len), (1, 3, 100));
        assert!(r.waiters(1, 3).is_none() && r.finish(7).is_none());
    }
}
