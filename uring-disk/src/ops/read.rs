//! Read part of a piece from one file into a read buffer (`IORING_OP_READ` / `pread`).

use std::sync::Arc;

use io_uring::{opcode, squeue, types};

use super::retry_eintr;
use crate::pool::PooledBuf;
use crate::storage::FileHandle;

/// The buffer a multi-file read fills; each of its ops holds an `Arc` to it and writes a
/// disjoint range. When every op has completed, the job takes it back with `Arc::into_inner`.
pub(crate) struct ReadTarget {
    buf: PooledBuf,
}

impl ReadTarget {
    pub(crate) fn new(buf: PooledBuf) -> ReadTarget {
        ReadTarget { buf }
    }

    pub(crate) fn addr(&self) -> usize {
        self.buf.raw() as usize
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Zero-fills `[at, at + len)` (padding files). Only before any op on this range exists.
    pub(crate) fn zero(&mut self, at: usize, len: usize) {
        self.buf.as_mut_slice()[at..at + len].fill(0);
    }

    pub(crate) fn into_buf(self) -> PooledBuf {
        self.buf
    }
}

/// Reads `len` bytes at `file_offset` of a file into `buf_offset` of a [`ReadTarget`].
pub(crate) struct ReadOp {
    pub(crate) file: Arc<FileHandle>,
    pub(crate) direct: bool,
    pub(crate) dst: Arc<ReadTarget>,
    pub(crate) buf_offset: u32,
    pub(crate) len: u32,
    pub(crate) file_offset: u64,
    pub(crate) job: usize,
}

impl ReadOp {
    /// Builds the op; `None` if the range does not fit the buffer (a bug upstream).
    pub(crate) fn new(
        file: Arc<FileHandle>,
        direct: bool,
        dst: Arc<ReadTarget>,
        buf_offset: u32,
        len: u32,
        file_offset: u64,
        job: usize,
    ) -> Option<ReadOp> {
        let end = buf_offset.checked_add(len)?;
        let ok = end as usize <= dst.len() && (!direct || file.direct_fd().is_some());
        ok.then_some(ReadOp {
            file,
            direct,
            dst,
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

    fn ptr(&self) -> *mut u8 {
        (self.dst.addr() + self.buf_offset as usize) as *mut u8
    }

    pub(crate) fn entry(&self) -> squeue::Entry {
        opcode::Read::new(types::Fd(self.fd()), self.ptr(), self.len)
            .offset(self.file_offset)
            .build()
    }

    pub(crate) fn run_blocking(&self) -> i32 {
        let (fd, ptr, len) = (self.fd(), self.ptr(), self.len as usize);
        let off = self.file_offset as libc::off_t;
        // SAFETY: `ptr..ptr+len` is inside the target buffer (checked in `new`), a range no
        // other op of the job writes and no one reads until every op is done; `self.dst`
        // keeps the buffer alive and `self.file` the descriptor.
        retry_eintr(|| unsafe { libc::pread(fd, ptr.cast(), len, off) })
    }

    /// After a short read of `done` bytes: the rest, buffered.
    pub(crate) fn advance(&mut self, done: u32) {
        self.buf_offset += done;
        self.file_offset += u64::from(done);
        self.len -= done;
        self.direct = false;
    }
}
