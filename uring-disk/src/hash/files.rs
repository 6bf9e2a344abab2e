//! Hashing whole files from disk: `ringtorrent create` ([`hash_pieces`]) and rechecks
//! ([`check_pieces`]).
//!
//! Work is cut into chunks of consecutive pieces that `threads` workers take from an atomic
//! counter, so reads stay nearly sequential. Each worker streams its pieces through one reused
//! read buffer small enough to stay in the CPU cache between `pread` and SHA-1.
//!
//! Reads use plain `pread`, because io_uring did not pay here: streaming SHA-1 of a 2 GiB file
//! on one thread measured 1.46 GB/s with `pread` against 1.47 GB/s with io_uring reads kept 4
//! deep (warm page cache), and 1.12-1.14 against 1.09-1.28 GB/s after dropping the page cache
//! (kernel readahead already overlaps the disk with hashing). On a warm cache the copy out of
//! the page cache is the same work either way. `hash_pieces` with 2 threads measured
//! 3.0-3.25 GB/s on a warm cache (256 KiB pieces, 2 vCPU, SHA-NI).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::PieceHasher;
use crate::error::{IoOp, StorageError};
use crate::layout::{resolve_paths, Layout, StorageFile};

/// Size of one read: large enough to amortise the syscall, small enough to stay in L2.
const READ_LEN: usize = 1048576;
/// A worker takes about this many bytes of consecutive pieces at a time.
const CHUNK_BYTES: u64 = 16 * 1024 * 1024;
/// Progress is reported in increments of about this size.
const PROGRESS_STEP: u64 = 4 * 1024 * 1024;

/// SHA-1 of every piece of `files` concatenated in order (BEP 3 `pieces`), for torrent creation.
///
/// Each file must be at least as long as its given length (only that many bytes are read); a
/// missing or shorter file is an error naming it. Pieces span file boundaries. `progress` is
/// called from the worker threads with byte increments that sum to the total length.
pub fn hash_pieces(
    files: &[(PathBuf, u64)],
    piece_length: u32,
    threads: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<[u8; 20]>, StorageError> {
    let layout = Layout::new(files.iter().map(|(_, len)| (*len, false)), piece_length)?;
    for (path, len) in files {
        let meta =
            std::fs::metadata(path).map_err(|e| StorageError::from_io(IoOp::Stat, path, e))?;
        if meta.len() < *len {
            return Err(StorageError::ShortFile {
                path: path.clone(),
                expected: *len,
                actual: meta.len(),
            });
        }
    }
    let paths: Vec<Option<PathBuf>> = files.iter().map(|(p, _)| Some(p.clone())).collect();
    let (hashes, _) = run(&layout, &paths, Mode::Strict, threads, progress)?;
    Ok(hashes)
}

/// Rechecks the files of a torrent under `root` against `hashes`: `true` for each piece whose
/// data matches. Missing or short files only fail the pieces they touch; padding files (BEP 47)
/// count as zeros. Errors are for a bad layout or path, or a hash count that does not match.
pub fn check_pieces(
    root: &Path,
    files: &[StorageFile],
    piece_length: u32,
    hashes: &[[u8; 20]],
    threads: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<bool>, StorageError> {
    let layout = Layout::new(files.iter().map(|f| (f.length, f.padding)), piece_length)?;
    let paths = resolve_paths(root, files)?;
    check_layout(&layout, &paths, hashes, threads, progress)
}

/// [`check_pieces`] over an already built layout (used by [`crate::Storage`]).
pub(crate) fn check_layout(
    layout: &Layout,
    paths: &[Option<PathBuf>],
    hashes: &[[u8; 20]],
    threads: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<bool>, StorageError> {
    if hashes.len() != layout.piece_count() as usize {
        return Err(StorageError::BadLayout(
            "hash count differs from piece count",
        ));
    }
    let (got, bad) = run(layout, paths, Mode::Lenient, threads, progress)?;
    Ok(got
        .iter()
        .zip(&bad)
        .zip(hashes)
        .map(|((g, b), want)| !b && g == want)
        .collect())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Any missing data is an error.
    Strict,
    /// Missing data reads as zeros and marks its piece bad.
    Lenient,
}

struct Job<'a> {
    layout: &'a Layout,
    paths: &'a [Option<PathBuf>],
    mode: Mode,
    progress: &'a (dyn Fn(u64) + Sync),
    chunk_pieces: u32,
    chunks: u32,
    next_chunk: AtomicU32,
    stop: AtomicBool,
}

/// Hashes every piece with `threads` workers; returns the digests and which pieces had missing
/// data (always all `false` in strict mode).
fn run(
    layout: &Layout,
    paths: &[Option<PathBuf>],
    mode: Mode,
    threads: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(Vec<[u8; 20]>, Vec<bool>), StorageError> {
    let count = layout.piece_count();
    let chunk_pieces =
        u32::try_from((CHUNK_BYTES / u64::from(layout.piece_length())).max(1)).unwrap_or(u32::MAX);
    let chunks = count.div_ceil(chunk_pieces);
    let job = Job {
        layout,
        paths,
        mode,
        progress,
        chunk_pieces,
        chunks,
        next_chunk: AtomicU32::new(0),
        stop: AtomicBool::new(false),
    };
    let workers = threads.clamp(1, chunks.max(1) as usize);
    let results: Vec<Result<Vec<Done>, StorageError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers).map(|_| s.spawn(|| worker(&job))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut hashes = vec![[0u8; 20]; count as usize];
    let mut bad = vec![false; count as usize];
    for r in results {
        for done in r? {
            hashes[done.piece as usize] = done.hash;
            bad[done.piece as usize] = done.missing;
        }
    }
    Ok((hashes, bad))
}

struct Done {
    piece: u32,
    hash: [u8; 20],
    missing: bool,
}

fn worker(job: &Job<'_>) -> Result<Vec<Done>, StorageError> {
    let mut buf = vec![0u8; READ_LEN];
    let mut reader = Reader {
        layout: job.layout,
        paths: job.paths,
        mode: job.mode,
        open: None,
    };
    let mut hasher = PieceHasher::default();
    let mut out = Vec::new();
    let mut unreported = 0u64;
    while !job.stop.load(Ordering::Relaxed) {
        let chunk = job.next_chunk.fetch_add(1, Ordering::Relaxed);
        if chunk >= job.chunks {
            break;
        }
        let first = chunk * job.chunk_pieces;
        let last = first
            .saturating_add(job.chunk_pieces)
            .min(job.layout.piece_count());
        for piece in first..last {
            let done = hash_one(job, &mut reader, &mut hasher, &mut buf, piece);
            let done = done.inspect_err(|_| job.stop.store(true, Ordering::Relaxed))?;
            unreported += u64::from(job.layout.piece_len(piece).unwrap_or(0));
            if unreported >= PROGRESS_STEP {
                (job.progress)(unreported);
                unreported = 0;
            }
            out.push(done);
        }
    }
    if unreported > 0 {
        (job.progress)(unreported);
    }
    Ok(out)
}

fn hash_one(
    job: &Job<'_>,
    reader: &mut Reader<'_>,
    hasher: &mut PieceHasher,
    buf: &mut [u8],
    piece: u32,
) -> Result<Done, StorageError> {
    // INVARIANT: `piece` comes from 0..piece_count.
    let piece_len = job.layout.piece_len(piece).unwrap() as usize;
    let piece_start = u64::from(piece) * u64::from(job.layout.piece_length());
    let mut missing = false;
    let mut off = 0usize;
    while off < piece_len {
        let n = (piece_len - off).min(buf.len());
        missing |= !reader.read(piece_start + off as u64, &mut buf[..n])?;
        hasher.update(&buf[..n]);
        off += n;
    }
    Ok(Done {
        piece,
        hash: hasher.finish(),
        missing,
    })
}

/// Reads ranges of the concatenated files, keeping the last opened file.
struct Reader<'a> {
    layout: &'a Layout,
    paths: &'a [Option<PathBuf>],
    mode: Mode,
    open: Option<(usize, Option<File>)>,
}

impl Reader<'_> {
    /// Fills `buf` from absolute offset `start`. Returns `Ok(false)` when data was missing (only
    /// in lenient mode; the gap is zero-filled).
    fn read(&mut self, start: u64, buf: &mut [u8]) -> Result<bool, StorageError> {
        // INVARIANT: callers read inside one piece, whose length is a u32.
        let len = u32::try_from(buf.len()).unwrap();
        let mut complete = true;
        for span in self.layout.spans_at(start, len) {
            let lo = span.buf_offset as usize;
            let part = &mut buf[lo..lo + span.len as usize];
            match &self.paths[span.file] {
                Some(path) if !span.padding => {
                    complete &= self.read_file(span.file, path, span.file_offset, part)?;
                }
                _ => part.fill(0),
            }
        }
        Ok(complete)
    }

    fn read_file(
        &mut self,
        file: usize,
        path: &Path,
        offset: u64,
        part: &mut [u8],
    ) -> Result<bool, StorageError> {
        let strict = self.mode == Mode::Strict;
        if self.open.as_ref().map(|(i, _)| *i) != Some(file) {
            let opened = match File::open(path) {
                Ok(f) => {
                    advise_sequential(&f);
                    Some(f)
                }
                Err(e) if strict => return Err(StorageError::from_io(IoOp::Open, path, e)),
                Err(_) => None,
            };
            self.open = Some((file, opened));
        }
        let Some((_, Some(f))) = &self.open else {
            part.fill(0);
            return Ok(false);
        };
        let mut got = 0;
        while got < part.len() {
            match f.read_at(&mut part[got..], offset + got as u64) {
                Ok(0) if strict => {
                    return Err(StorageError::ShortFile {
                        path: path.to_path_buf(),
                        expected: self.layout.file_len(file),
                        actual: offset + got as u64,
                    })
                }
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if strict => return Err(StorageError::from_io(IoOp::Read, path, e)),
                Err(_) => break,
            }
        }
        part[got..].fill(0);
        Ok(got == part.len())
    }
}

/// Tells the kernel to read ahead aggressively; a hint only, failure is harmless.
fn advise_sequential(f: &File) {
    // SAFETY: plain syscall on a valid, open fd; no memory is passed.
    let _ = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL) };
}

#[cfg(test)]
mod tests;
