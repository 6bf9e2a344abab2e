//! `fdatasync` one file (`IORING_OP_FSYNC` with `DATASYNC` / `fdatasync`).

use std::sync::Arc;

use io_uring::{opcode, squeue, types};

use super::retry_eintr;
use crate::storage::FileHandle;

/// Flushes a file's data (and the metadata needed to read it back) to stable storage. Syncing
/// through the buffered descriptor also covers O_DIRECT writes: both reach the same inode.
pub(crate) struct FsyncOp {
    pub(crate) file: Arc<FileHandle>,
    pub(crate) job: usize,
}

impl FsyncOp {
    pub(crate) fn entry(&self) -> squeue::Entry {
        opcode::Fsync::new(types::Fd(self.file.buffered_fd()))
            .flags(types::FsyncFlags::DATASYNC)
            .build()
    }

    pub(crate) fn run_blocking(&self) -> i32 {
        let fd = self.file.buffered_fd();
        // SAFETY: plain syscall on a descriptor kept open by `self.file`.
        retry_eintr(|| unsafe { libc::fdatasync(fd) } as isize)
    }
}
