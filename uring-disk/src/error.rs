//! Errors of the storage layer, grouped by who is at fault.
//!
//! - The disk or filesystem: [`StorageError::Io`], [`StorageError::NoSpace`],
//!   [`StorageError::ShortFile`]. The engine pauses the torrent and keeps its data.
//! - The caller (a torrent description or request that does not fit the layout):
//!   [`StorageError::BadPath`], [`StorageError::BadLayout`], [`StorageError::OutOfRange`],
//!   [`StorageError::TooManyFiles`],
//!   [`StorageError::UnknownTorrent`], [`SubmitError`].
//! - The pipeline itself: [`StorageError::Closed`] after shutdown, [`StorageError::Setup`],
//!   [`StorageError::WouldDeadlock`].
//!
//! Every IO error names the file and the operation, so a log line says what went wrong where.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// What the storage layer was doing when an IO error happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoOp {
    /// Creating a directory.
    CreateDir,
    /// Opening or creating a file.
    Open,
    /// Reading the size of a file.
    Stat,
    /// Reserving a file's full size.
    Fallocate,
    /// Setting a file's size.
    SetLen,
    /// Reading data.
    Read,
    /// Writing data.
    Write,
    /// `fdatasync`.
    Sync,
}

impl fmt::Display for IoOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            IoOp::CreateDir => "create directory",
            IoOp::Open => "open",
            IoOp::Stat => "stat",
            IoOp::Fallocate => "fallocate",
            IoOp::SetLen => "set length of",
            IoOp::Read => "read",
            IoOp::Write => "write",
            IoOp::Sync => "fdatasync",
        };
        f.write_str(s)
    }
}

/// An error from storage, hashing or the disk pipeline.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The filesystem is full (ENOSPC, EDQUOT).
    #[error("no space left to {op} {path}")]
    NoSpace {
        /// The file being written or allocated.
        path: PathBuf,
        /// The operation that failed.
        op: IoOp,
    },
    /// The file would pass the process's file-size limit (EFBIG, RLIMIT_FSIZE) or the
    /// filesystem's largest file.
    #[error("file too large to {op} {path}: the file-size limit (ulimit -f) or the filesystem's maximum")]
    TooLarge {
        /// The file being written or allocated.
        path: PathBuf,
        /// The operation that failed.
        op: IoOp,
    },
    /// Any other IO error.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The operation that failed.
        op: IoOp,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A file is shorter on disk than the torrent says it is.
    #[error("{path} is {actual} bytes, expected {expected}")]
    ShortFile {
        /// The file.
        path: PathBuf,
        /// Length the torrent gives it.
        expected: u64,
        /// Length found on disk (or read before end of file).
        actual: u64,
    },
    /// A file path that is absolute, empty or escapes the download directory.
    #[error("refusing path {path}: {reason}")]
    BadPath {
        /// The offending path, as given.
        path: PathBuf,
        /// Why it was refused.
        reason: &'static str,
    },
    /// More files to keep open than the process may open (every file of a torrent stays
    /// open while it runs).
    #[error(
        "{files} files to open, over the open-file limit of {limit} (every file of a torrent is \
         kept open: raise `ulimit -n`, or select fewer files)"
    )]
    TooManyFiles {
        /// Files the torrent would open.
        files: usize,
        /// What the open-file limit leaves for them.
        limit: u64,
    },
    /// A layout that cannot describe a torrent (zero piece length, too many pieces...).
    #[error("bad storage layout: {0}")]
    BadLayout(&'static str),
    /// A read or write outside the torrent.
    #[error("piece {piece} offset {offset} length {len} is outside the torrent")]
    OutOfRange {
        /// Piece index.
        piece: u32,
        /// Offset in the piece.
        offset: u32,
        /// Length asked for.
        len: u32,
    },
    /// The torrent slot is not (or no longer) registered with the pipeline.
    #[error("torrent slot is not registered")]
    UnknownTorrent,
    /// The disk pipeline has shut down.
    #[error("disk pipeline is shut down")]
    Closed,
    /// The pipeline could not start (eventfd, thread spawn).
    #[error("cannot start the disk pipeline ({what}): {source}")]
    Setup {
        /// What failed.
        what: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `remove_torrent` called from a sink or reply callback, which run on the disk thread
    /// and would wait for themselves.
    #[error("remove_torrent called on the disk thread")]
    WouldDeadlock,
}

impl StorageError {
    /// Builds the error for `op` on `path`, telling a full disk apart from other failures.
    pub fn from_io(op: IoOp, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => StorageError::NoSpace { path, op },
            Some(libc::EFBIG) => StorageError::TooLarge { path, op },
            _ => StorageError::Io { path, op, source },
        }
    }

    /// Same as [`StorageError::from_io`] from a negative errno (an io_uring completion).
    pub fn from_errno(op: IoOp, path: impl Into<PathBuf>, errno: i32) -> Self {
        Self::from_io(op, path, io::Error::from_raw_os_error(errno))
    }

    /// True for a full filesystem or a file-size limit.
    pub fn is_no_space(&self) -> bool {
        matches!(
            self,
            StorageError::NoSpace { .. } | StorageError::TooLarge { .. }
        )
    }
}

/// A piece handed to [`crate::DiskPipeline::submit_piece`] that cannot be taken (caller's fault).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    /// The slot is not registered.
    #[error("torrent slot is not registered")]
    UnknownTorrent,
    /// The piece index is not below the torrent's piece count.
    #[error("piece {piece} is out of range (torrent has {count} pieces)")]
    PieceOutOfRange {
        /// The index given.
        piece: u32,
        /// The torrent's piece count.
        count: u32,
    },
    /// The buffer was built for another piece or another length.
    #[error("buffer holds piece {buf_piece} of {buf_len} bytes, expected piece {piece} of {len}")]
    Mismatch {
        /// The piece submitted.
        piece: u32,
        /// Its length in this torrent.
        len: u32,
        /// The piece the buffer was built for.
        buf_piece: u32,
        /// The buffer's piece length.
        buf_len: u32,
    },
    /// Not every block of the piece has been written.
    #[error("piece {0} is not complete")]
    Incomplete(u32),
    /// The pipeline has shut down.
    #[error("disk pipeline is shut down")]
    Closed,
}

/// Why io_uring cannot be used (the pipeline then runs on pwrite/pread).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// `RINGTORRENT_NO_URING=1` is set.
    #[error("io_uring disabled by RINGTORRENT_NO_URING")]
    DisabledByEnv,
    /// `/proc/sys/kernel/io_uring_disabled` is not 0.
    #[error("io_uring disabled by kernel.io_uring_disabled = {0}")]
    DisabledBySysctl(u32),
    /// `io_uring_setup` failed (ENOSYS on old kernels, EPERM under seccomp...).
    #[error("io_uring_setup failed: {0}")]
    Setup(#[source] io::Error),
    /// The kernel lacks an operation the pipeline needs.
    #[error("io_uring lacks the {0} operation")]
    MissingOp(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_classes_name_their_cause() {
        let e = |n| StorageError::from_errno(IoOp::Write, "/d/f", n);
        assert!(matches!(e(libc::ENOSPC), StorageError::NoSpace { .. }));
        assert!(matches!(e(libc::EDQUOT), StorageError::NoSpace { .. }));
        let big = e(libc::EFBIG);
        assert!(matches!(big, StorageError::TooLarge { .. }));
        assert!(big.is_no_space(), "both stop the torrent the same way");
        assert!(big.to_string().contains("file too large"), "{big}");
        let io = e(libc::EIO);
        assert!(matches!(io, StorageError::Io { .. }) && !io.is_no_space());
    }
}
