//! A piece buffer that several shard threads fill concurrently, block by block.
//!
//! Each block (16 KiB, the last one may be shorter) has an atomic state:
//! `EMPTY -> WRITING` by a compare-and-swap in [`SharedPiece::begin_block`], which hands the
//! winner a [`BlockWriter`]; `WRITING -> DONE` by [`BlockWriter::finish`];
//! `WRITING -> EMPTY` by [`BlockWriter::abort`] or dropping the writer.
//!
//! Invariants:
//! - at most one `BlockWriter` exists per block, so no two threads write the same bytes;
//! - `DONE` is final: once a block is done no writer can be created for it;
//! - the done-counter reaches the block count exactly once, and the finisher that makes it so is
//!   the only one told `piece_complete: true`;
//! - [`SharedPiece::as_slice`] exists only when every block is `DONE`, so reads never overlap a
//!   write. The counter's increments (release) and the check (acquire) order the bytes.
//!
//! Hashing while hot: the thread that finishes a block also feeds the SHA-1 stream of the piece
//! with every `DONE` block from the stream's position on, in order (blocks of a piece normally
//! land in order from one peer, so each block is hashed right after it was copied in, from
//! cache). A block that lands out of order waits until the gap before it fills. Only `DONE`
//! blocks are read, so hashing never overlaps a write; the stream is behind a mutex that the
//! finishers only `try_lock` (a finisher that finds it busy leaves its block to the holder or
//! the next finisher). [`SharedPiece::verify`] feeds whatever is left and mints the witness
//! only if the stream covered the whole piece.

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::hash::{StreamHasher, VerifiedPiece};
use crate::pool::PooledBuf;

const EMPTY: u8 = 0;
const WRITING: u8 = 1;
const DONE: u8 = 2;

/// Why a piece buffer or block write was refused (the caller's mistake, never a panic).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// `piece_len` or `block_len` is 0, or the buffer is shorter than the piece.
    #[error(
        "piece of {piece_len} bytes in blocks of {block_len} does not fit a {buf_len}-byte buffer"
    )]
    BadGeometry {
        /// Piece length asked for.
        piece_len: u32,
        /// Block length asked for.
        block_len: u32,
        /// Buffer length.
        buf_len: usize,
    },
    /// Block index past the end of the piece.
    #[error("block {0} is past the end of the piece")]
    BadIndex(u32),
    /// Offset not at a block start, or data not exactly one block.
    #[error("write at {offset} of {len} bytes is not one whole block")]
    NotABlock {
        /// Offset in the piece.
        offset: u32,
        /// Length given.
        len: usize,
    },
    /// A chunk would leave a hole before it (chunks must extend the written prefix).
    #[error("chunk at {at} leaves a gap after {filled} written bytes")]
    Gap {
        /// Offset in the block.
        at: u32,
        /// Bytes written so far.
        filled: u32,
    },
    /// A chunk runs past the end of the block.
    #[error("chunk at {at} of {len} bytes runs past the {block_len}-byte block")]
    TooLong {
        /// Offset in the block.
        at: u32,
        /// Chunk length.
        len: usize,
        /// Block length.
        block_len: u32,
    },
    /// `finish` before the whole block was written; the block went back to empty.
    #[error("block finished after {filled} of {block_len} bytes")]
    Incomplete {
        /// Bytes written.
        filled: u32,
        /// Block length.
        block_len: u32,
    },
}

/// Result of [`SharedPiece::write`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The block was stored; `piece_complete` is true for exactly one block of the piece.
    Written {
        /// This write completed the piece.
        piece_complete: bool,
    },
    /// The block is done or another writer holds it; the data was dropped.
    Duplicate,
    /// The write does not describe a block of this piece.
    Invalid(BlockError),
}

/// Returned by [`BlockWriter::finish`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockDone {
    /// This block was the last one missing: the piece is ready to submit.
    pub piece_complete: bool,
}

/// A piece buffer shared by the shard threads (wrap it in an `Arc`).
pub struct SharedPiece {
    buf: PooledBuf,
    piece: u32,
    piece_len: u32,
    block_len: u32,
    states: Box<[AtomicU8]>,
    done: AtomicU32,
    stream: Mutex<Stream>,
}

/// The piece's SHA-1 so far: blocks `0..next` have been fed, in order.
#[derive(Default)]
struct Stream {
    hasher: StreamHasher,
    next: u32,
}

// SAFETY: the buffer's bytes are written only through a BlockWriter, which exists once per
// block (CAS EMPTY->WRITING) and only touches its block's range; they are read only through
// `as_slice`, which requires every block DONE, a state no writer can leave or re-enter.
unsafe impl Sync for SharedPiece {}

impl SharedPiece {
    /// Prepares `buf` to receive `piece` (of `piece_len` bytes) in blocks of `block_len`.
    pub fn new(
        buf: PooledBuf,
        piece: u32,
        piece_len: u32,
        block_len: u32,
    ) -> Result<SharedPiece, BlockError> {
        if piece_len == 0 || block_len == 0 || piece_len as usize > buf.len() {
            return Err(BlockError::BadGeometry {
                piece_len,
                block_len,
                buf_len: buf.len(),
            });
        }
        let blocks = piece_len.div_ceil(block_len);
        Ok(SharedPiece {
            buf,
            piece,
            piece_len,
            block_len,
            states: (0..blocks).map(|_| AtomicU8::new(EMPTY)).collect(),
            done: AtomicU32::new(0),
            stream: Mutex::new(Stream::default()),
        })
    }

    /// The piece index this buffer is for.
    pub fn piece(&self) -> u32 {
        self.piece
    }

    /// Length of the piece in bytes.
    pub fn piece_len(&self) -> u32 {
        self.piece_len
    }

    /// Nominal block length.
    pub fn block_len(&self) -> u32 {
        self.block_len
    }

    /// Number of blocks.
    pub fn block_count(&self) -> u32 {
        // INVARIANT: built from a u32 count in `new`.
        u32::try_from(self.states.len()).unwrap()
    }

    /// Offset and length of block `idx`, `None` past the end.
    pub fn block_range(&self, idx: u32) -> Option<(u32, u32)> {
        if idx >= self.block_count() {
            return None;
        }
        let start = idx * self.block_len;
        Some((start, self.block_len.min(self.piece_len - start)))
    }

    /// True once block `idx` is written and finished.
    pub fn is_block_done(&self, idx: u32) -> bool {
        self.states
            .get(idx as usize)
            .is_some_and(|s| s.load(Ordering::Acquire) == DONE)
    }

    /// True while a [`BlockWriter`] holds block `idx`.
    pub fn is_block_writing(&self, idx: u32) -> bool {
        self.states
            .get(idx as usize)
            .is_some_and(|s| s.load(Ordering::Acquire) == WRITING)
    }

    /// True when every block is done.
    pub fn is_complete(&self) -> bool {
        self.done.load(Ordering::Acquire) == self.block_count()
    }

    /// Claims block `idx` for writing: `None` if it is done, held by another writer, or out of
    /// range.
    pub fn begin_block(self: &Arc<Self>, idx: u32) -> Option<BlockWriter> {
        let (start, len) = self.block_range(idx)?;
        self.claim(idx).then(|| BlockWriter {
            piece: Arc::clone(self),
            idx,
            start,
            len,
            filled: 0,
            open: true,
        })
    }

    /// Writes one whole block in one call: `offset` is a block start and `data` its full length.
    /// For a block that arrives in chunks, use [`SharedPiece::begin_block`].
    pub fn write(&self, offset: u32, data: &[u8]) -> WriteOutcome {
        let idx = offset / self.block_len;
        match self.block_range(idx) {
            Some((start, len)) if start == offset && len as usize == data.len() => {}
            _ => {
                return WriteOutcome::Invalid(BlockError::NotABlock {
                    offset,
                    len: data.len(),
                })
            }
        }
        if !self.claim(idx) {
            return WriteOutcome::Duplicate;
        }
        // SAFETY: we hold block `idx` (claimed above) and `data` is exactly its length.
        unsafe { self.copy_in(offset as usize, data) };
        WriteOutcome::Written {
            piece_complete: self.mark_done(idx),
        }
    }

    /// CAS `EMPTY -> WRITING`; true if the caller now owns the block.
    fn claim(&self, idx: u32) -> bool {
        self.states.get(idx as usize).is_some_and(|s| {
            s.compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        })
    }

    /// Copies `data` to `offset` in the piece.
    ///
    /// # Safety
    /// The caller owns (has claimed and not released) the block that contains
    /// `[offset, offset + data.len())`, and that range is inside the piece.
    unsafe fn copy_in(&self, offset: usize, data: &[u8]) {
        // SAFETY: by the caller's contract, no other thread touches this range, which lies
        // inside the buffer (piece_len <= buffer length, checked in `new`); no `&[u8]` to the
        // buffer exists while a block is WRITING (`as_slice` needs every block DONE).
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.buf.raw().add(offset), data.len());
        }
    }

    /// `WRITING -> DONE`, then hashes what is hashable; true for the one call that completes
    /// the piece.
    fn mark_done(&self, idx: u32) -> bool {
        self.states[idx as usize].store(DONE, Ordering::Release);
        let complete = self.done.fetch_add(1, Ordering::AcqRel) + 1 == self.block_count();
        self.advance_hash();
        complete
    }

    /// Feeds the stream with the `DONE` blocks at its position, unless another thread is at it.
    fn advance_hash(&self) {
        loop {
            let Ok(mut stream) = self.stream.try_lock() else {
                return;
            };
            self.feed_done_blocks(&mut stream);
            let next = stream.next;
            drop(stream);
            // A block finished while we held the lock found it busy and left: look again.
            if !self.is_block_done(next) {
                return;
            }
        }
    }

    fn feed_done_blocks(&self, stream: &mut Stream) {
        while let Some((start, len)) = self.block_range(stream.next) {
            if !self.is_block_done(stream.next) {
                return;
            }
            // SAFETY: the block is DONE (acquire load above, pairing with the release store in
            // `mark_done`), a final state: no BlockWriter exists or can be created for it, so
            // nothing writes these bytes while the slice lives; the range is inside the buffer.
            let bytes = unsafe {
                std::slice::from_raw_parts(self.buf.raw().add(start as usize), len as usize)
            };
            stream.hasher.update(bytes);
            stream.next += 1;
        }
    }

    /// True if every block has been hashed already: [`SharedPiece::verify`] is then only a
    /// comparison.
    pub fn is_streamed(&self) -> bool {
        let stream = self.stream.lock().unwrap_or_else(PoisonError::into_inner);
        stream.next == self.block_count()
    }

    /// Hashes the blocks the stream has not covered yet and mints the witness if the whole
    /// piece matches `expected`. `None` if the piece is not complete or does not match; a
    /// piece is verified at most once (the stream is consumed).
    pub(crate) fn verify(&self, expected: &[u8; 20]) -> Option<VerifiedPiece> {
        if !self.is_complete() {
            return None;
        }
        let mut stream = self.stream.lock().unwrap_or_else(PoisonError::into_inner);
        self.feed_done_blocks(&mut stream);
        stream.hasher.verify(self.piece, self.piece_len, expected)
    }

    /// `WRITING -> EMPTY`.
    fn release(&self, idx: u32) {
        self.states[idx as usize].store(EMPTY, Ordering::Release);
    }

    /// The piece's bytes, once every block is done.
    pub fn as_slice(&self) -> Option<&[u8]> {
        self.is_complete()
            .then(|| &self.buf.as_slice()[..self.piece_len as usize])
    }

    /// Start of the piece's memory, for handing a complete piece to the kernel.
    pub(crate) fn data_ptr(&self) -> *const u8 {
        self.buf.raw()
    }

    /// Gives the buffer back (for reuse with another piece).
    pub fn into_buf(self) -> PooledBuf {
        self.buf
    }
}

impl std::fmt::Debug for SharedPiece {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedPiece")
            .field("piece", &self.piece)
            .field("piece_len", &self.piece_len)
            .field("done_blocks", &self.done.load(Ordering::Relaxed))
            .finish()
    }
}

/// Exclusive right to write one block; the block returns to empty if dropped unfinished.
pub struct BlockWriter {
    piece: Arc<SharedPiece>,
    idx: u32,
    start: u32,
    len: u32,
    filled: u32,
    open: bool,
}

impl BlockWriter {
    /// Index of the block.
    pub fn block(&self) -> u32 {
        self.idx
    }

    /// Offset of the block in the piece.
    pub fn offset(&self) -> u32 {
        self.start
    }

    /// Length of the block.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Always false: blocks are never empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes written so far (a prefix of the block).
    pub fn filled(&self) -> u32 {
        self.filled
    }

    /// Copies `chunk` to offset `at` of the block. Chunks must extend the written prefix
    /// (`at <= filled`), as a block's chunks do when they come off a socket in order.
    pub fn write_at(&mut self, at: u32, chunk: &[u8]) -> Result<(), BlockError> {
        if at > self.filled {
            return Err(BlockError::Gap {
                at,
                filled: self.filled,
            });
        }
        let too_long = BlockError::TooLong {
            at,
            len: chunk.len(),
            block_len: self.len,
        };
        let end = u32::try_from(chunk.len())
            .ok()
            .and_then(|n| at.checked_add(n))
            .filter(|&end| end <= self.len)
            .ok_or(too_long)?;
        // SAFETY: this writer owns the block (claimed in begin_block, released only on drop or
        // finish), and at + chunk.len() <= len keeps the range inside it.
        unsafe { self.piece.copy_in((self.start + at) as usize, chunk) };
        self.filled = self.filled.max(end);
        Ok(())
    }

    /// Marks the block done. Fails (and returns the block to empty) if it is not fully written.
    pub fn finish(mut self) -> Result<BlockDone, BlockError> {
        if self.filled < self.len {
            return Err(BlockError::Incomplete {
                filled: self.filled,
                block_len: self.len,
            });
        }
        self.open = false;
        Ok(BlockDone {
            piece_complete: self.piece.mark_done(self.idx),
        })
    }

    /// Gives the block up; another writer may claim it.
    pub fn abort(self) {}
}

impl Drop for BlockWriter {
    fn drop(&mut self) {
        if self.open {
            self.piece.release(self.idx);
        }
    }
}

#[cfg(test)]
mod tests;
