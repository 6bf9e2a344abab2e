//! Write part of a verified piece to one file (`IORING_OP_WRITE` / `pwrite`).

use std::sync::Arc;

use io_uring::{opcode, squeue, types};

use super::retry_eintr;
use crate::piece::SharedPiece;
use crate::storage::FileHandle;

/// Writes `len` bytes at `buf_offset` of a complete piece to `file_offset` of a file.
///
/// Owns an `Arc` to the file (keeps the descriptor open) and to the piece (keeps the memory
/// alive) until the driver hands the completion back.
pub(crate) struct WriteOp {
    pub(crate) file: Arc<FileHandle>,
    pub(crate) direct: bool,
    pub(crate) src: Arc<SharedPiece>,
    pub(crate) buf_offset: u32,
    pub(crate) len: u32,
    pub(crate) file_offset: u64,
    /// The job this op belongs to.
    pub(crate) job: usize,
}

impl WriteOp {
    /// Builds the op; `None` if the range is not inside a complete piece (a bug upstream).
    pub(crate) fn new(
        file: Arc<FileHandle>,
        direct: bool,
        src: Arc<SharedPiece>,
        buf_offset: u32,
        len: u32,
        file_offset: u64,
        job: usize,
    ) -> Option<WriteOp> {
        let end = buf_offset.checked_add(len)?;
        let ok =
            src.is_complete() && end <= src.piece_len() && (!direct || file.direct_fd().is_some());
        ok.then_some(WriteOp {
            file,
            direct,
            src,
            buf_offset,
            len,
            file_offset,
            job,
        })
    }

    fn fd(&self) -> i32 {
        match (self.direct, self.file.direct_fd()) {
            (true, Some(fd)) => fd,
            _ => self.file.buffered_fd(),
        }
    }

    fn ptr(&self) -> *const u8 {
        // SAFETY: buf_offset + len <= piece_len <= buffer length (checked in `new`), so the
        // pointer stays inside the piece's allocation.
        unsafe { self.src.data_ptr().add(self.buf_offset as usize) }
    }

    pub(crate) fn entry(&self) -> squeue::Entry {
        opcode::Write::new(types::Fd(self.fd()), self.ptr(), self.len)
            .offset(self.file_offset)
            .build()
    }

    pub(crate) fn run_blocking(&self) -> i32 {
        let (fd, ptr, len) = (self.fd(), self.ptr(), self.len as usize);
        let off = self.file_offset as libc::off_t;
        // SAFETY: `ptr..ptr+len` is inside a complete piece, which no one writes any more, kept
        // alive by `self.src`; `fd` is open while `self.file` lives.
        retry_eintr(|| unsafe { libc::pwrite(fd, ptr.cast(), len, off) })
    }

    /// After a short write of `done` bytes: the rest, buffered (it may no longer be aligned).
    pub(crate) fn advance(&mut self, done: u32) {
        self.buf_offset += done;
        self.file_offset += u64::from(done);
        self.len -= done;
        self.direct = false;
    }
}
