//! Read-only shared mappings of stored files, whose addresses are handed to the kernel for
//! sends that copy straight out of the page cache.
//!
//! A seeder that reads a cached block into a message and then sends the message copies it
//! twice (page cache to message, message to socket buffer). Sending from a mapping of the
//! file copies it once: `sendmsg` takes its bytes from the mapped page cache pages. Each
//! stored file gets one mapping of all of it, on first use ([`super::OpenFile::mapping`]),
//! kept while the file is open: mapping and unmapping windows as a seeder streams through a
//! file cost it 17% of its CPU (`perf`: half in `munmap`, half in page faults), while a kept
//! mapping takes the faults once. Pages the kernel touched through it count in the process's
//! resident size (as page cache shared with everyone, which the kernel can still reclaim).
//!
//! The bytes of a [`MappedRange`] are never read in user space: the type hands out addresses
//! only ([`MappedRange::iovec`]), as raw `iovec`s for system calls. So a file truncated under
//! the mapping cannot raise SIGBUS here: the kernel's copy from a page past the end of the
//! file fails with EFAULT (the send fails, and the connection with it), and no Rust reference
//! ever points at bytes another process may change.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// `len` bytes of a file from `start`, mapped read-only and shared; unmapped on drop.
#[derive(Debug)]
pub struct MappedRange {
    start: u64,
    addr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is only ever an address range handed to system calls (nothing here reads
// or writes through it), valid until drop wherever the value is; sharing or moving it between
// threads changes nothing about that.
unsafe impl Send for MappedRange {}
// SAFETY: as above; every method takes `&self` and only computes addresses.
unsafe impl Sync for MappedRange {}

impl MappedRange {
    /// Maps `[start, start + len)` of `file` (`start` a multiple of the page size, `len` not
    /// 0). Bytes past the end of the file may be mapped; sends from them fail (EFAULT).
    pub(crate) fn map(file: &File, start: u64, len: usize) -> io::Result<MappedRange> {
        if len == 0 || !start.is_multiple_of(crate::ALIGN as u64) {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        let offset = libc::off_t::try_from(start).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: a new mapping at an address the kernel chooses, so no existing memory is
        // affected; the descriptor is open for the call. The mapping outlives the descriptor
        // only as the kernel allows (it holds its own reference to the file).
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                offset,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(MappedRange { start, addr, len })
    }

    /// Where the mapping starts in the file.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Where the mapping ends in the file.
    pub fn end(&self) -> u64 {
        self.start + self.len as u64
    }

    /// Whether `[off, off + len)` of the file is inside the mapping.
    pub fn covers(&self, off: u64, len: u64) -> bool {
        off >= self.start && off.checked_add(len).is_some_and(|e| e <= self.end())
    }

    /// The address and length of `[off, off + len)` of the file, for a system call to read
    /// while this value lives; `None` unless [`Self::covers`].
    pub fn iovec(&self, off: u64, len: usize) -> Option<libc::iovec> {
        if !self.covers(off, len as u64) {
            return None;
        }
        let at = usize::try_from(off - self.start).ok()?;
        Some(libc::iovec {
            iov_base: self.addr.wrapping_byte_add(at),
            iov_len: len,
        })
    }
}

impl Drop for MappedRange {
    fn drop(&mut self) {
        // SAFETY: `addr`/`len` are exactly the mapping `map` made, unmapped only here; no
        // reference into it exists (the bytes are never read in user space), and callers keep
        // the value (its file's handle) alive until the system calls given its addresses
        // completed.
        unsafe {
            libc::munmap(self.addr, self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(bytes: &[u8]) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        File::create(&path).unwrap().write_all(bytes).unwrap();
        let f = File::open(&path).unwrap();
        (dir, f)
    }

    /// Copies what an iovec points at the way a send does, with `writev` into a pipe, so the
    /// test too reads the mapping only through the kernel.
    fn through_kernel(v: libc::iovec) -> io::Result<Vec<u8>> {
        use std::os::fd::{FromRawFd, OwnedFd};
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into the array, which we then own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned by nothing else.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: F_SETPIPE_SZ on a pipe we own.
        unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
        // SAFETY: `v` points into a live mapping (the caller holds it); writev only reads it.
        let n = unsafe { libc::writev(w.as_raw_fd(), &v, 1) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        drop(w);
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut std::fs::File::from(r), &mut out)?;
        Ok(out)
    }

    #[test]
    fn a_range_of_the_mapping_gives_the_files_bytes_to_the_kernel() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let (_dir, f) = file_with(&data);
        let m = MappedRange::map(&f, 4096 * 8, 128 * 1024).unwrap();
        assert!(m.covers(4096 * 8, 128 * 1024));
        assert!(!m.covers(4096 * 8 - 1, 10));
        assert!(!m.covers(4096 * 8 + 128 * 1024 - 5, 10));
        let v = m.iovec(40_000, 16_384).unwrap();
        assert_eq!(through_kernel(v).unwrap(), &data[40_000..56_384]);
        assert!(m.iovec(4096 * 8 + 128 * 1024, 1).is_none());
        assert!(m.iovec(u64::MAX - 3, 10).is_none());
    }

    #[test]
    fn a_stored_file_is_mapped_whole_once() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 13) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        File::create(&path).unwrap().write_all(&data).unwrap();
        let f = crate::OpenFile::open_read_only(&path).unwrap();
        let m = f.mapping().unwrap();
        assert_eq!((m.start(), m.end()), (0, 100_000));
        assert!(std::ptr::eq(m, f.clone().mapping().unwrap()), "one mapping");
        let v = m.iovec(99_000, 1000).unwrap();
        assert_eq!(through_kernel(v).unwrap(), &data[99_000..]);
        let empty = dir.path().join("e");
        File::create(&empty).unwrap();
        assert!(crate::OpenFile::open_read_only(&empty)
            .unwrap()
            .mapping()
            .is_none());
    }

    #[test]
    fn bad_ranges_are_refused_and_bytes_past_the_end_fail_in_the_kernel() {
        let (_dir, f) = file_with(&[7u8; 10_000]);
        assert!(MappedRange::map(&f, 100, 4096).is_err(), "unaligned start");
        assert!(MappedRange::map(&f, 0, 0).is_err(), "empty");
        // Mapping past the end is allowed; the kernel refuses to copy the missing bytes
        // (EFAULT) instead of a signal killing the process.
        let m = MappedRange::map(&f, 0, 64 * 1024).unwrap();
        let inside = m.iovec(0, 10_000).unwrap();
        assert_eq!(through_kernel(inside).unwrap(), vec![7u8; 10_000]);
        let past = m.iovec(16 * 1024, 4096).unwrap();
        let err = through_kernel(past).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EFAULT), "{err}");
    }
}
