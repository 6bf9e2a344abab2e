//! What a connection sends: PIECE messages read straight into shard-owned buffers, interleaved
//! with the session's other bytes, sent as one vectored send.
//!
//! A [`BlockMsg`] is a whole PIECE message (13-byte header, then the block) in one reusable
//! buffer: the shard reads the block from disk right after the header, so the block is never
//! copied in user space, and the same message is lent (`Rc`) to every peer that asked for the
//! block and to the shard's read cache. A [`SendBuf`] is a list of segments (the session's
//! bytes, messages) sent in order by one vectored send; buffers come back with its `Sent`
//! completion and return to the shard's [`MsgPool`].

use std::rc::Rc;

use crate::types::BLOCK_LEN;
use crate::wire::PIECE_HEADER_LEN;

/// Bytes of the largest PIECE message we send (header and a 16 KiB block).
pub const MSG_CAPACITY: usize = PIECE_HEADER_LEN + BLOCK_LEN as usize;
/// Free message buffers a shard keeps for reuse (4 MiB); more are dropped.
const POOL_KEEP: usize = 256;
/// Segments handed to one send at most (the rest go in the next one).
pub const MAX_IOVECS: usize = 64;

/// A PIECE message: `buf[..len]` is header and block. `buf` always has [`MSG_CAPACITY`]
/// bytes (touched once, when it was allocated) so reuse never clears or grows it.
#[derive(Debug)]
pub struct BlockMsg {
    buf: Vec<u8>,
    len: usize,
}

impl BlockMsg {
    /// The message's bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The block's bytes, after the header.
    pub fn block_mut(&mut self) -> &mut [u8] {
        &mut self.buf[PIECE_HEADER_LEN..self.len]
    }

    /// Where the block starts in memory, and its length (for reads into it).
    pub fn block_ptr(&mut self) -> (*mut u8, usize) {
        let block = self.block_mut();
        (block.as_mut_ptr(), block.len())
    }
}

/// Reusable message buffers of one shard.
#[derive(Default)]
pub struct MsgPool {
    free: Vec<Vec<u8>>,
    /// Buffers allocated since the start (for tests and stats).
    pub allocated: u64,
}

impl MsgPool {
    /// A message for a block of `block_len` bytes (at most 16 KiB) with its PIECE header
    /// written; the block's bytes are whatever the buffer held before and must be filled.
    pub fn take(&mut self, header: &[u8; PIECE_HEADER_LEN], block_len: usize) -> BlockMsg {
        let mut buf = self.free.pop().unwrap_or_else(|| {
            self.allocated += 1;
            vec![0u8; MSG_CAPACITY]
        });
        buf[..PIECE_HEADER_LEN].copy_from_slice(header);
        BlockMsg {
            buf,
            len: PIECE_HEADER_LEN + block_len.min(BLOCK_LEN as usize),
        }
    }

    /// Takes a message back (kept if the pool is not full).
    pub fn put(&mut self, msg: BlockMsg) {
        if self.free.len() < POOL_KEEP && msg.buf.len() == MSG_CAPACITY {
            self.free.push(msg.buf);
        }
    }

    /// Takes a shared message back if nobody else holds it.
    pub fn put_shared(&mut self, msg: Rc<BlockMsg>) {
        if let Ok(m) = Rc::try_unwrap(msg) {
            self.put(m);
        }
    }
}

/// A whole piece read with O_DIRECT into an aligned pooled buffer (back to its pool when the
/// last holder drops it): blocks are sent as slices of it, after a header in the byte stream.
#[derive(Debug)]
pub struct PieceData {
    buf: uring_disk::PooledBuf,
    len: usize,
}

impl PieceData {
    /// The first `len` bytes of `buf` are the piece (checked by the caller against its length).
    pub fn new(buf: uring_disk::PooledBuf, len: usize) -> PieceData {
        let len = len.min(buf.len());
        PieceData { buf, len }
    }

    /// Bytes of the buffer holding the piece.
    pub fn buf_len(&self) -> usize {
        self.buf.len()
    }

    /// Bytes `[off, off + len)` of the piece, if inside it.
    pub fn get(&self, off: u32, len: u32) -> Option<&[u8]> {
        let (off, len) = (off as usize, len as usize);
        self.buf.as_slice()[..self.len].get(off..off.checked_add(len)?)
    }
}

/// One piece of a [`SendBuf`].
#[derive(Debug)]
pub enum Seg {
    Bytes(Vec<u8>),
    Msg(Rc<BlockMsg>),
    /// `len` bytes at `off` of a piece (a block, its header sent before it).
    Slice {
        piece: Rc<PieceData>,
        off: u32,
        len: u32,
    },
    /// `len` bytes at `off` of a file the page cache holds (a block, its header sent before
    /// it), sent by the kernel from the page cache (`sendfile`), never read into memory here.
    File {
        file: uring_disk::OpenFile,
        off: u64,
        len: u32,
    },
    /// `len` bytes at `off` of a file the page cache holds, sent from a mapping of it: the
    /// kernel copies them from the page cache into the socket (one copy, none here). Its
    /// address goes to the ring's `sendmsg`; [`flush_nonblocking`] sends it like a file
    /// segment.
    ///
    /// [`flush_nonblocking`]: super::flush::flush_nonblocking
    Mapped {
        file: uring_disk::OpenFile,
        off: u64,
        len: u32,
    },
}

impl Seg {
    /// The segment's bytes, if they are in memory (empty for a file segment).
    fn as_slice(&self) -> &[u8] {
        match self {
            Seg::Bytes(b) => b,
            Seg::Msg(m) => m.as_slice(),
            Seg::Slice { piece, off, len } => piece.get(*off, *len).unwrap_or(&[]),
            Seg::File { .. } | Seg::Mapped { .. } => &[],
        }
    }

    fn len(&self) -> usize {
        match self {
            Seg::File { len, .. } | Seg::Mapped { len, .. } => *len as usize,
            s => s.as_slice().len(),
        }
    }

    /// Whether the bytes are not in this process's memory ([`Seg::File`], [`Seg::Mapped`]).
    fn in_file(&self) -> bool {
        matches!(self, Seg::File { .. } | Seg::Mapped { .. })
    }

    /// The segment's bytes in memory from `skip` on (empty for a segment in a file).
    fn tail(&self, skip: usize) -> &[u8] {
        let b = self.as_slice();
        &b[skip.min(b.len())..]
    }

    /// The address and length of the segment's bytes from `skip` on, for a system call.
    fn iovec(&self, skip: usize) -> libc::iovec {
        if let Seg::Mapped { file, off, len } = self {
            let left = (*len as usize).saturating_sub(skip);
            // `push_mapped` checked that the mapping covers the segment.
            if let Some(v) = file
                .mapping()
                .and_then(|m| m.iovec(off + skip as u64, left))
            {
                return v;
            }
        }
        let b = self.tail(skip);
        libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        }
    }
}

/// The next bytes of a [`SendBuf`] that are in a file: `len` bytes at `off` of `file`.
pub struct FileRun<'a> {
    pub file: &'a std::fs::File,
    pub off: u64,
    pub len: usize,
}

/// Segments to send in order; `sent` bytes of them went out already.
#[derive(Debug, Default)]
pub struct SendBuf {
    segs: Vec<Seg>,
    len: usize,
    sent: usize,
    /// Whether any segment is a file segment (such buffers are sent with `sendfile`).
    files: bool,
    /// Index of the first segment not completely sent, and bytes of it sent.
    cursor: (usize, usize),
}

impl SendBuf {
    /// A buffer of plain bytes.
    #[cfg(test)]
    pub fn from_bytes(bytes: Vec<u8>) -> SendBuf {
        let mut b = SendBuf::default();
        b.push_bytes(bytes);
        b
    }

    /// Appends bytes (ignored if empty).
    pub fn push_bytes(&mut self, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            self.len += bytes.len();
            self.segs.push(Seg::Bytes(bytes));
        }
    }

    /// Appends a slice of a piece (ignored if outside it).
    pub fn push_slice(&mut self, piece: Rc<PieceData>, off: u32, len: u32) {
        if piece.get(off, len).is_some() {
            self.len += len as usize;
            self.segs.push(Seg::Slice { piece, off, len });
        }
    }

    /// Appends `len` bytes at `off` of `file` (the caller checked that the page cache holds
    /// them, so sending does not wait for the disk).
    pub fn push_file(&mut self, file: uring_disk::OpenFile, off: u64, len: u32) {
        if len > 0 {
            self.len += len as usize;
            self.files = true;
            self.segs.push(Seg::File { file, off, len });
        }
    }

    /// Appends `len` bytes at `off` of `file`, to be sent from its mapping (ignored unless
    /// the mapping covers them; the caller checked that the page cache holds them, so the
    /// kernel's copy does not wait for the disk).
    pub fn push_mapped(&mut self, file: uring_disk::OpenFile, off: u64, len: u32) {
        let covered = file
            .mapping()
            .is_some_and(|m| m.covers(off, u64::from(len)));
        if len > 0 && covered {
            self.len += len as usize;
            self.segs.push(Seg::Mapped { file, off, len });
        }
    }

    /// Whether some bytes are sent with `sendfile` (see [`Seg::File`]).
    pub fn has_files(&self) -> bool {
        self.files
    }

    /// Appends a PIECE message.
    pub fn push_msg(&mut self, msg: Rc<BlockMsg>) {
        self.len += msg.as_slice().len();
        self.segs.push(Seg::Msg(msg));
    }

    /// Total bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes still to send.
    pub fn remaining(&self) -> usize {
        self.len - self.sent
    }

    /// True when everything went out.
    pub fn is_done(&self) -> bool {
        self.sent >= self.len
    }

    /// The next unsent bytes as at most [`MAX_IOVECS`] addresses and lengths, in order, for a
    /// `sendmsg`: mapped segments included, up to the next [`Seg::File`] (none if the next
    /// bytes are a file's). Valid while the buffer lives and is not advanced.
    pub fn unsent_iovecs(&self) -> impl Iterator<Item = libc::iovec> + '_ {
        let (first, skip) = self.cursor;
        self.segs
            .iter()
            .skip(first)
            .take(MAX_IOVECS)
            .take_while(|s| !matches!(s, Seg::File { .. }))
            .enumerate()
            .map(move |(i, s)| s.iovec(if i == 0 { skip } else { 0 }))
    }

    /// The next unsent bytes in memory as at most [`MAX_IOVECS`] slices, in order: up to the
    /// next segment in a file (nothing if the next bytes are a file's, see
    /// [`Self::file_run`]).
    pub fn unsent(&self) -> impl Iterator<Item = &[u8]> {
        let (first, skip) = self.cursor;
        self.segs
            .iter()
            .skip(first)
            .take(MAX_IOVECS)
            .take_while(|s| !s.in_file())
            .enumerate()
            .map(move |(i, s)| s.tail(if i == 0 { skip } else { 0 }))
    }

    /// The next unsent bytes if they are in a file (a [`Seg::File`], or a [`Seg::Mapped`]
    /// sent the same way).
    pub fn file_run(&self) -> Option<FileRun<'_>> {
        let (seg, skip) = self.cursor;
        let (file, off, len) = match self.segs.get(seg)? {
            Seg::File { file, off, len } => (file, *off, *len),
            Seg::Mapped { file, off, len } => (file, *off, *len),
            _ => return None,
        };
        Some(FileRun {
            file: file.file(),
            off: off + skip as u64,
            len: (len as usize).saturating_sub(skip),
        })
    }

    /// Whether a segment in a file comes right after the bytes [`Self::unsent`] gives now.
    pub fn file_follows(&self) -> bool {
        self.segs
            .iter()
            .skip(self.cursor.0)
            .take(MAX_IOVECS + 1)
            .any(Seg::in_file)
    }

    /// Records that `n` more bytes went out.
    pub fn advance(&mut self, mut n: usize) {
        n = n.min(self.remaining());
        self.sent += n;
        let (mut seg, mut off) = self.cursor;
        while n > 0 {
            let Some(s) = self.segs.get(seg) else { break };
            let left = s.len() - off;
            if n < left {
                off += n;
                n = 0;
            } else {
                n -= left;
                seg += 1;
                off = 0;
            }
        }
        self.cursor = (seg, off);
    }

    /// Empties the buffer: messages go back to `pool`, the first byte buffer is returned
    /// (cleared) for reuse.
    pub fn recycle(self, pool: &mut MsgPool) -> Option<Vec<u8>> {
        let mut spare = None;
        for s in self.segs {
            match s {
                Seg::Msg(m) => pool.put_shared(m),
                Seg::Bytes(mut b) if spare.is_none() => {
                    b.clear();
                    spare = Some(b);
                }
                Seg::Bytes(_) | Seg::Slice { .. } | Seg::File { .. } | Seg::Mapped { .. } => {}
            }
        }
        spare
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(pool: &mut MsgPool, fill: u8, len: usize) -> Rc<BlockMsg> {
        let mut m = pool.take(&[fill; PIECE_HEADER_LEN], len);
        m.block_mut().fill(fill);
        Rc::new(m)
    }

    fn concat(b: &SendBuf) -> Vec<u8> {
        b.unsent().flat_map(|s| s.to_vec()).collect()
    }

    #[test]
    fn segments_go_out_in_order_across_partial_sends() {
        let mut pool = MsgPool::default();
        let mut b = SendBuf::from_bytes(vec![1, 2, 3]);
        b.push_msg(msg(&mut pool, 9, 5));
        b.push_bytes(vec![4]);
        b.push_bytes(Vec::new());
        assert_eq!(b.len(), 3 + 13 + 5 + 1);
        let all = concat(&b);
        assert_eq!(&all[..3], &[1, 2, 3]);
        assert!(all[3..21].iter().all(|&x| x == 9));
        assert_eq!(all[21], 4);
        // Partial sends: within a segment, exactly to its end, across two.
        let mut sent = Vec::new();
        for n in [2, 1, 10, 9] {
            let now = concat(&b);
            sent.extend_from_slice(&now[..n]);
            b.advance(n);
        }
        assert!(b.is_done());
        assert_eq!(sent, all);
        assert_eq!(b.unsent().map(|s| s.len()).sum::<usize>(), 0);
    }

    #[test]
    fn a_mapped_segment_is_an_address_in_its_mapping_and_files_end_the_iovecs() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&[5u8; 100_000])
            .unwrap();
        let file = uring_disk::OpenFile::open_read_only(&path).unwrap();
        let base = file
            .mapping()
            .unwrap()
            .iovec(16384, 16384)
            .unwrap()
            .iov_base as usize;
        let mut b = SendBuf::from_bytes(vec![1, 2, 3, 4]);
        b.push_mapped(file.clone(), 16384, 16384);
        b.push_mapped(file.clone(), 100_000, 1); // outside the mapping: ignored
        b.push_bytes(vec![9; 3]);
        b.push_file(file, 0, 10);
        b.push_bytes(vec![7]);
        assert_eq!(b.len(), 4 + 16384 + 3 + 10 + 1);
        assert!(b.has_files());
        let v: Vec<_> = b
            .unsent_iovecs()
            .map(|v| (v.iov_base as usize, v.iov_len))
            .collect();
        assert_eq!(v.len(), 3, "up to the file segment");
        assert_eq!(v[1], (base, 16384));
        assert_eq!(v[2].1, 3);
        assert_eq!(
            b.unsent().count(),
            1,
            "in-memory slices stop at the mapped segment"
        );
        assert!(b.file_follows());
        b.advance(4 + 100);
        let v: Vec<_> = b
            .unsent_iovecs()
            .map(|v| (v.iov_base as usize, v.iov_len))
            .collect();
        assert_eq!(
            v[0],
            (base + 100, 16284),
            "a partial send moves into the mapping"
        );
        let run = b.file_run().unwrap();
        assert_eq!((run.off, run.len), (16384 + 100, 16284));
        b.advance(16284 + 3);
        assert_eq!(b.unsent_iovecs().count(), 0, "a file segment is next");
        assert_eq!(b.file_run().unwrap().len, 10);
    }

    #[test]
    fn at_most_max_iovecs_per_send_and_buffers_come_back() {
        let mut pool = MsgPool::default();
        let mut b = SendBuf::default();
        let shared = msg(&mut pool, 1, 16);
        for _ in 0..MAX_IOVECS + 5 {
            b.push_msg(Rc::clone(&shared));
        }
        assert_eq!(b.unsent().count(), MAX_IOVECS);
        b.advance(29 * MAX_IOVECS);
        assert_eq!(b.unsent().count(), 5);
        drop(shared);
        assert_eq!(b.recycle(&mut pool), None);
        assert_eq!(
            pool.free.len(),
            1,
            "the shared message returned once, when last held"
        );
        let again = pool.take(&[0; PIECE_HEADER_LEN], 100);
        assert_eq!(pool.allocated, 1, "reused, not allocated");
        assert_eq!(again.as_slice().len(), PIECE_HEADER_LEN + 100);
    }
}
