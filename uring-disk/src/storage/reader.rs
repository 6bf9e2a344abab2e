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

use super::{FileHandle, Inner, MappedRange};
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
    /// A file outside any storage, opened for buffered reads only (tests and tools).
    pub fn open_read_only(path: &std::path::Path) -> std::io::Result<OpenFile> {
        Ok(OpenFile(Arc::new(FileHandle::read_only(
            path.to_path_buf(),
            std::fs::File::open(path)?,
        ))))
    }

    /// Whether both are the same open file of a storage (or the same `open_read_only`).
    pub fn same_file(&self, other: &OpenFile) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// A read-only shared mapping of the whole file (as long as it was when first asked for),
    /// made on first use and kept while the file is open, for sends from the page cache (see
    /// [`MappedRange`]); `None` if the file is empty or cannot be mapped.
    pub fn mapping(&self) -> Option<&MappedRange> {
        self.0.mapping()
    }

    /// The buffered (page cache) descriptor; valid as long as this value lives.
    pub fn fd(&self) -> RawFd {
        self.0.buffered.as_raw_fd()
    }

    /// The O_DIRECT descriptor, if the file has one and direct transfers were not refused.
    pub fn direct_fd(&self) -> Option<RawFd> {
        self.0.direct().map(AsRawFd::as_raw_fd)
    }

    /// Whether every page of `[offset, offset + len)` is in the page cache (`cachestat(2)`,
    /// Linux 6.5+) and the file still reaches `offset + len`; `None` if the kernel cannot tell.
    pub fn is_cached(&self, offset: u64, len: u64) -> Option<bool> {
        #[repr(C)]
        struct Range {
            off: u64,
            len: u64,
        }
        #[repr(C)]
        #[derive(Default)]
        struct Stat {
            nr_cache: u64,
            nr_dirty: u64,
            nr_writeback: u64,
            nr_evicted: u64,
            nr_recently_evicted: u64,
        }
        const SYS_CACHESTAT: libc::c_long = 451;
        let range = Range { off: offset, len };
        let mut stat = Stat::default();
        // SAFETY: cachestat reads `range` and writes `stat`, both live locals of the layouts
        // the kernel expects; the descriptor is open while `self` lives.
        let rc = unsafe {
            libc::syscall(
                SYS_CACHESTAT,
                self.fd(),
                &range as *const Range,
                &mut stat as *mut Stat,
                0u32,
            )
        };
        if rc != 0 {
            return None;
        }
        // cachestat counts pages past the end of file as cached: bytes the file no longer
        // has (truncated by someone) are not.
        match self.0.buffered.metadata() {
            Ok(m) if m.len() >= offset.saturating_add(len) => {}
            _ => return Some(false),
        }
        let pages = (offset + len).div_ceil(4096) - offset / 4096;
        Some(stat.nr_cache >= pages)
    }

    /// Stops using O_DIRECT on this file (the filesystem refused a direct transfer).
    pub fn refuse_direct(&self) {
        self.0.disable_direct();
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

/// A whole piece that can be read with one O_DIRECT read (see [`BlockReader::direct_piece`]).
#[derive(Clone, Debug)]
pub struct DirectPiece {
    /// The file, held open (use [`OpenFile::direct_fd`]).
    pub file: OpenFile,
    /// Where the piece starts in the file (a multiple of [`crate::ALIGN`]).
    pub file_offset: u64,
    /// The piece's length.
    pub len: u32,
    /// Bytes to ask for: `len` rounded up to [`crate::ALIGN`] (the file may end sooner).
    pub read_len: u32,
}

impl BlockReader {
    /// The whole of `piece` as one O_DIRECT read, if it lies in one stored file with a direct
    /// descriptor, starts at an aligned offset, and is at most `max_len` bytes.
    pub fn direct_piece(&self, piece: u32, max_len: u32) -> Option<DirectPiece> {
        let len = self.inner.layout.piece_len(piece)?;
        if len > max_len {
            return None;
        }
        let mut spans = self.inner.layout.spans(piece, 0, len).ok()?;
        let s = spans.next()?;
        if spans.next().is_some() || s.padding || s.file_offset % crate::ALIGN as u64 != 0 {
            return None;
        }
        let h = self.inner.handles.get(s.file)?.get()?;
        h.direct()?;
        Some(DirectPiece {
            file: OpenFile(Arc::clone(h)),
            file_offset: s.file_offset,
            len,
            read_len: u32::try_from((len as usize).next_multiple_of(crate::ALIGN)).ok()?,
        })
    }

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
