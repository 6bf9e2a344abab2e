//! Reserving a file's full size when a torrent is opened.
//!
//! This runs once per file in [`crate::Storage::open`], before the disk thread and its ring
//! exist, so it is a plain `fallocate(2)` call rather than a ring operation.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Outcome of [`reserve`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reserved {
    /// Blocks are allocated and the file is `len` bytes long.
    Allocated,
    /// The filesystem cannot preallocate (EOPNOTSUPP); the caller sets the length instead.
    Unsupported,
}

/// Allocates blocks for `[0, len)` of `file` and extends its size to `len` (mode 0).
pub(crate) fn reserve(file: &File, len: u64) -> io::Result<Reserved> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    loop {
        // SAFETY: plain syscall on an open fd owned by `file`; no memory is passed.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
        if rc == 0 {
            return Ok(Reserved::Allocated);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EOPNOTSUPP) => return Ok(Reserved::Unsupported),
            _ => return Err(err),
        }
    }
}
