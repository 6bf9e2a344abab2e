//! Where the bytes of a stored block are, for threads that read them on their own ring.
//!
//! Shards serve uploads by reading verified blocks with their own io_uring (no hop to the
//! disk thread). [`BlockReader`] maps a block onto the open files of a [`Storage`]; each
//! [`ReadPart::File`] holds its file open (an `Arc` of the handle) until the read is done, so a
//! torrent removed meanwhile cannot close a descriptor under an operation in flight.
//!
//! A block with bytes in a parked file (kept in the part file) is not mapped: the part file
//! belongs to the disk thread, which moves its bytes out when the file is selected, so such
//! blocks are read through [`crate::DiskPipeline::read`]. A stored file's handle is set only
//! once its bytes are complete (see the storage module doc), so a mapped part never reads a
//! file that is still being built.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use super::{FileHandle, Inner};
use crate::error::StorageError;

/// Maps blocks of a torrent onto its open files; cheap to clone, usable from any thread.
#[derive(Clone, Debug)]
pub struct BlockReader {
    inner: Arc<Inner>,
}

/// A stored file held open for a read in flight.
#[derive(Clone, Debug)]
pub struct OpenFile(Arc<FileHandle>);

impl OpenFile {
    /// The buffered (page cache) descriptor; valid as long as this value lives.
    pub fn fd(&self) -> RawFd {
        self.0.buffered.as_raw_fd()
    }

    /// The buffered descriptor as a file (for blocking reads).
    pub fn file(&self) -> &std::fs::File {
        &self.0.buffered
    }
}

/// One part of a block: bytes of one file, or zeros (a BEP 47 padding file).
#[derive(Clone, Debug)]
pub enum ReadPart {
    /// `len` bytes at `file_offset` of `file`, for offset `at` of the block.
    File {
        /// The file, held open.
        file: OpenFile,
        /// Where in the file.
        file_offset: u64,
        /// Where in the block.
        at: u32,
        /// How many bytes (never 0).
        len: u32,
    },
    /// `len` zero bytes at offset `at` of the block.
    Zeros {
        /// Where in the block.
        at: u32,
        /// How many bytes (never 0).
        len: u32,
    },
}

impl BlockReader {
    pub(super) fn new(inner: Arc<Inner>) -> BlockReader {
        BlockReader { inner }
    }

    /// Fills `out` with the parts of `len` bytes at `offset` in `piece` and returns true, or
    /// returns false (with `out` cleared) when a part lies in a file that is not open (parked:
    /// read it through the disk pipeline). Errors if the range is outside the piece.
    pub fn parts(
        &self,
        piece: u32,
        offset: u32,
        len: u32,
        out: &mut Vec<ReadPart>,
    ) -> Result<bool, StorageError> {
        out.clear();
        for s in self.inner.layout.spans(piece, offset, len)? {
            if s.padding {
                out.push(ReadPart::Zeros {
                    at: s.buf_offset,
                    len: s.len,
                });
                continue;
            }
            let Some(h) = self.inner.handles.get(s.file).and_then(|h| h.get()) else {
                out.clear();
                return Ok(false);
            };
            out.push(ReadPart::File {
                file: OpenFile(Arc::clone(h)),
                file_offset: s.file_offset,
                at: s.buf_offset,
                len: s.len,
            });
        }
        Ok(true)
    }
}
