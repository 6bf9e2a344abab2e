//! One file per disk operation. Each operation owns its file descriptor (an `Arc` to the
//! file's handles) and its buffer (an `Arc` to the memory) until its completion comes back.
//! Operations live in the [`crate::driver::Driver`]'s table from submission to completion, so
//! the kernel never sees freed memory or a closed descriptor; an operation still in flight when
//! its job is abandoned stays with the driver until the kernel is done with it.
//!
//! Every operation can be issued two ways with the same meaning: as an io_uring submission
//! entry (`entry`) or as a blocking syscall (`run_blocking`, for the fallback backend). Both
//! report the result the same way: bytes transferred, or a negative errno.

pub(crate) mod fallocate;
pub(crate) mod fsync;
pub(crate) mod read;
pub(crate) mod write;

use io_uring::squeue;

use crate::pool::ALIGN;

/// A disk operation in flight.
pub(crate) enum Op {
    Write(write::WriteOp),
    Read(read::ReadOp),
    Fsync(fsync::FsyncOp),
}

impl Op {
    /// The io_uring submission for this op (user data not yet set).
    pub(crate) fn entry(&self) -> squeue::Entry {
        match self {
            Op::Write(op) => op.entry(),
            Op::Read(op) => op.entry(),
            Op::Fsync(op) => op.entry(),
        }
    }

    /// Performs the op with a blocking syscall; same result convention as a completion.
    pub(crate) fn run_blocking(&self) -> i32 {
        match self {
            Op::Write(op) => op.run_blocking(),
            Op::Read(op) => op.run_blocking(),
            Op::Fsync(op) => op.run_blocking(),
        }
    }
}

/// Repeats a syscall returning -1/errno while it is interrupted; returns the value or -errno.
pub(crate) fn retry_eintr(mut call: impl FnMut() -> isize) -> i32 {
    loop {
        let rc = call();
        if rc >= 0 {
            // Transfers are at most u32::MAX bytes (op lengths are u32); clamp anyway.
            return i32::try_from(rc).unwrap_or(i32::MAX);
        }
        let errno = std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        if errno != libc::EINTR {
            return -errno;
        }
    }
}

/// One part of a transfer: `len` bytes at `offset` into the span, direct or buffered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Part {
    pub(crate) offset: u32,
    pub(crate) len: u32,
    pub(crate) direct: bool,
}

/// Splits a transfer of `len` bytes between memory address `addr` and `file_offset` into an
/// unaligned head, a middle whose memory address, file offset and length are all multiples of
/// [`ALIGN`] (eligible for O_DIRECT), and an unaligned tail. Empty parts are left out. When the
/// memory and the file are not aligned alike, or `direct` is false, the whole is one buffered
/// part.
pub(crate) fn split_aligned(addr: usize, file_offset: u64, len: u32, direct: bool) -> Vec<Part> {
    let align = ALIGN as u64;
    let whole = if len == 0 {
        Vec::new()
    } else {
        vec![Part {
            offset: 0,
            len,
            direct: false,
        }]
    };
    if !direct || (addr as u64) % align != file_offset % align {
        return whole;
    }
    // INVARIANT: the head is below ALIGN, so it fits a u32.
    let head = u32::try_from((align - file_offset % align) % align)
        .unwrap()
        .min(len);
    let mid = (len - head) / ALIGN as u32 * ALIGN as u32;
    if mid == 0 {
        return whole;
    }
    let tail = len - head - mid;
    [
        Part {
            offset: 0,
            len: head,
            direct: false,
        },
        Part {
            offset: head,
            len: mid,
            direct: true,
        },
        Part {
            offset: head + mid,
            len: tail,
            direct: false,
        },
    ]
    .into_iter()
    .filter(|p| p.len > 0)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_direct_parts_aligned_and_covers_everything() {
        for addr in [0usize, 4096, 100, 8192 + 17] {
            for off in [0u64, 17, 4096, 4096 * 3 - 5, 100] {
                for len in [0u32, 1, 4095, 4096, 4097, 16384, 20000] {
                    let parts = split_aligned(addr, off, len, true);
                    let mut next = 0;
                    for p in &parts {
                        assert_eq!(p.offset, next);
                        assert!(p.len > 0);
                        next += p.len;
                        if p.direct {
                            assert_eq!((addr + p.offset as usize) % ALIGN, 0);
                            assert_eq!((off + u64::from(p.offset)) % ALIGN as u64, 0);
                            assert_eq!(p.len as usize % ALIGN, 0);
                        }
                    }
                    assert_eq!(next, len);
                    assert!(parts.len() <= 3);
                }
            }
        }
    }

    #[test]
    fn split_uses_direct_when_possible() {
        let parts = split_aligned(4096, 8192, 16384, true);
        assert_eq!(
            parts,
            vec![Part {
                offset: 0,
                len: 16384,
                direct: true
            }]
        );
        let parts = split_aligned(4096 + 100, 8192 + 100, 16384, true);
        assert_eq!(parts.iter().filter(|p| p.direct).count(), 1);
        assert_eq!(parts.len(), 3);
        assert!(split_aligned(4096, 8192, 16384, false)
            .iter()
            .all(|p| !p.direct));
        assert!(split_aligned(4096, 8193, 16384, true)
            .iter()
            .all(|p| !p.direct));
    }
}
