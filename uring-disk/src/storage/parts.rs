//! The part file: where the bytes of parked (unselected, not created) files go when a wanted
//! piece straddles them, and how they move into the real file once it is selected. See the
//! module doc of `storage` for the invariants; this file keeps them.
//!
//! The part file is sparse: a byte at torrent offset `x` lives at offset `x` of the part file,
//! so no index has to be kept (or made crash-safe) and any range of any parked file can be
//! stored, including whole pieces that were deselected while in flight. Only written ranges take
//! disk space; `SEEK_DATA`/`SEEK_HOLE` find them when data moves out.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::{open_file, FileHandle, Inner, StorageOptions};
use crate::error::{IoOp, StorageError};
use crate::hash::PieceHasher;

/// Size of one copy or hash read.
const CHUNK: usize = 1 << 20;

#[derive(Debug)]
pub(super) struct Parts {
    /// Absolute path; `None` when storage was opened without a selection (nothing is parked).
    path: Option<PathBuf>,
    /// Per file: parked. Cleared only by [`Parts::run_pending`] (on the thread that plans
    /// operations) or at open and drop; read from any thread.
    parked: Box<[AtomicBool]>,
    handle: OnceLock<Arc<FileHandle>>,
    /// Files selected but still parked: moved by the planning thread or at drop.
    pending: Mutex<Vec<usize>>,
    has_pending: AtomicBool,
}

impl Parts {
    pub(super) fn new(path: Option<PathBuf>, parked: Vec<bool>) -> Parts {
        Parts {
            path,
            parked: parked.into_iter().map(AtomicBool::new).collect(),
            handle: OnceLock::new(),
            pending: Mutex::new(Vec::new()),
            has_pending: AtomicBool::new(false),
        }
    }

    /// The parked flags (one per file).
    pub(super) fn flags(&self) -> &[AtomicBool] {
        &self.parked
    }

    pub(super) fn is_parked(&self, file: usize) -> bool {
        self.parked
            .get(file)
            .is_some_and(|p| p.load(Ordering::Acquire))
    }

    pub(super) fn any_parked(&self) -> bool {
        self.parked.iter().any(|p| p.load(Ordering::Acquire))
    }

    pub(super) fn handle(&self) -> Option<&Arc<FileHandle>> {
        self.handle.get()
    }

    /// Some operation in flight holds the part file.
    fn busy(&self) -> bool {
        self.handle.get().is_some_and(|h| Arc::strong_count(h) > 1)
    }

    /// Opens (creating it sparse, as long as the torrent) the part file.
    pub(super) fn ensure_open(&self, inner: &Inner) -> Result<(), StorageError> {
        if self.handle.get().is_some() {
            return Ok(());
        }
        let Some(path) = &self.path else {
            return Err(StorageError::BadLayout(
                "a file is parked but there is no part file",
            ));
        };
        let opts = StorageOptions {
            preallocate: false,
            direct_io: inner.opts.direct_io,
        };
        let h = open_file(&inner.root, path, inner.layout.total(), opts)?;
        // Only the planning thread opens it; a lost race would just drop a duplicate handle.
        let _ = self.handle.set(Arc::new(h));
        Ok(())
    }

    /// At open: true if a part file from an earlier run exists (files about to be created
    /// must then take their bytes from it, see [`create_from_part`]).
    pub(super) fn exists(&self) -> bool {
        self.path.as_ref().is_some_and(|p| p.exists())
    }

    /// At open, after the files were created: removes the part file if no file is parked.
    pub(super) fn tidy(&self) {
        if let Some(path) = self.path.as_ref().filter(|p| p.exists()) {
            if !self.any_parked() {
                remove(path);
            }
        }
    }

    /// Queues file `file` to leave the parked set; true if it was parked.
    pub(super) fn select(&self, file: usize) -> bool {
        if !self.is_parked(file) {
            return false;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if !pending.contains(&file) {
            pending.push(file);
        }
        self.has_pending.store(true, Ordering::Release);
        true
    }

    /// Moves queued selections if no part-file operation is in flight. Called only by the
    /// thread that plans operations, before it plans (or at open and drop, when none can be):
    /// so no operation can be planned against the old mapping once a flag is cleared.
    pub(super) fn run_pending(&self, inner: &Inner) {
        if !self.has_pending.load(Ordering::Acquire) || self.busy() {
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.retain(|&f| {
            if !self.is_parked(f) {
                return false;
            }
            match self.materialize(inner, f) {
                Ok(()) => {
                    self.parked[f].store(false, Ordering::Release);
                    false
                }
                Err(e) => {
                    tracing::warn!(
                        "cannot create a selected file: {e}; its data stays in the part file"
                    );
                    true
                }
            }
        });
        self.has_pending
            .store(!pending.is_empty(), Ordering::Release);
    }

    /// Creates file `file` with its bytes from the part file, then publishes its handle. The
    /// caller has checked that no part-file operation is in flight.
    fn materialize(&self, inner: &Inner, file: usize) -> Result<(), StorageError> {
        let Some(path) = &inner.paths[file] else {
            return Ok(());
        };
        let h = create_from_part(inner, self.path.as_deref(), file, path)?;
        let _ = inner.handles[file].set(Arc::new(h));
        Ok(())
    }

    /// At drop: moves what is still pending and removes the part file if nothing is parked.
    pub(super) fn finish(&self, inner: &Inner) {
        self.run_pending(inner);
        if let Some(path) = &self.path {
            if path.exists() && !self.any_parked() {
                remove(path);
            }
        }
    }

    /// Recheck of the pieces that overlap parked files: their parked bytes come from the part
    /// file. Sets `ok[p]` for each such piece.
    pub(super) fn check_parked(
        &self,
        inner: &Inner,
        hashes: &[[u8; 20]],
        ok: &mut [bool],
    ) -> Result<(), StorageError> {
        let parked: Vec<bool> = self
            .parked
            .iter()
            .map(|p| p.load(Ordering::Acquire))
            .collect();
        if !parked.contains(&true) {
            return Ok(());
        }
        let part = self
            .path
            .as_deref()
            .and_then(|p| File::open(p).ok().map(|f| (f, p)));
        let mut pieces: Vec<u32> = (0..parked.len())
            .filter(|&f| parked[f])
            .flat_map(|f| inner.layout.file_pieces(f))
            .collect();
        pieces.sort_unstable();
        pieces.dedup();
        let mut hasher = PieceHasher::default();
        let mut buf = vec![0u8; CHUNK];
        for p in pieces {
            let (Some(slot), Some(want)) = (ok.get_mut(p as usize), hashes.get(p as usize)) else {
                continue;
            };
            *slot = match &part {
                Some(part) => hash_piece(inner, &parked, part, p, &mut hasher, &mut buf)?
                    .is_some_and(|h| h == *want),
                None => false,
            };
        }
        Ok(())
    }
}

/// SHA-1 of piece `p` with parked bytes read from `part`; `None` if a parked part of it holds
/// no data at all (never written) or a stored file is short.
fn hash_piece(
    inner: &Inner,
    parked: &[bool],
    (part, part_path): &(File, &Path),
    p: u32,
    hasher: &mut PieceHasher,
    buf: &mut [u8],
) -> Result<Option<[u8; 20]>, StorageError> {
    let Some(len) = inner.layout.piece_len(p) else {
        return Ok(None);
    };
    for s in inner.layout.spans(p, 0, len)? {
        let (mut done, end) = (0u64, u64::from(s.len));
        while done < end {
            let n = (end - done).min(buf.len() as u64) as usize;
            let chunk = &mut buf[..n];
            let at = s.file_offset + done;
            let full = if s.padding {
                chunk.fill(0);
                true
            } else if parked[s.file] {
                let abs = inner.layout.file_start(s.file) + at;
                if done == 0 && next_data(part, part_path, abs)?.is_none_or(|d| d >= abs + end) {
                    return Ok(None);
                }
                read_full(part, chunk, abs)
            } else {
                match inner.handles[s.file].get() {
                    Some(h) => read_full(&h.buffered, chunk, at),
                    None => false,
                }
            };
            if !full {
                return Ok(None);
            }
            hasher.update(chunk);
            done += n as u64;
        }
    }
    Ok(Some(hasher.finish()))
}

/// Fills `buf` from `f` at `offset`; false on a short read or an error.
fn read_full(f: &File, buf: &mut [u8], offset: u64) -> bool {
    f.read_exact_at(buf, offset).is_ok()
}

/// Creates file `file` at `path` holding its bytes from the part file: built under a temporary
/// name, synced, then renamed into place, so a file that exists is complete. The part file is
/// authoritative for a file's range only while that file does not exist (its blocks also hold
/// zeros for bytes of neighbouring files), so only a file being created takes bytes from it.
pub(super) fn create_from_part(
    inner: &Inner,
    part: Option<&Path>,
    file: usize,
    path: &Path,
) -> Result<FileHandle, StorageError> {
    let len = inner.files[file].length;
    let Some(part_path) = part.filter(|p| p.exists()) else {
        return open_file(&inner.root, path, len, inner.opts);
    };
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(".rt-new");
    let tmp = path.with_file_name(name);
    let h = open_file(&inner.root, &tmp, len, inner.opts)?;
    let part =
        File::open(part_path).map_err(|e| StorageError::from_io(IoOp::Open, part_path, e))?;
    copy_range(inner, &part, part_path, file, &h)?;
    h.buffered
        .sync_data()
        .map_err(|e| StorageError::from_io(IoOp::Sync, &tmp, e))?;
    drop(h);
    std::fs::rename(&tmp, path).map_err(|e| StorageError::from_io(IoOp::Open, path, e))?;
    if let Some(dir) = path.parent().and_then(|d| File::open(d).ok()) {
        let _ = dir.sync_all(); // the rename's durability; best effort
    }
    open_file(&inner.root, path, len, inner.opts)
}

/// Copies the part file's data in file `file`'s torrent range into `h`.
fn copy_range(
    inner: &Inner,
    part: &File,
    part_path: &Path,
    file: usize,
    h: &FileHandle,
) -> Result<(), StorageError> {
    let (start, len) = (inner.layout.file_start(file), inner.layout.file_len(file));
    let end = start + len;
    let mut buf = vec![0u8; CHUNK];
    let mut pos = start;
    while pos < end {
        let Some(data) = next_data(part, part_path, pos)?.filter(|&d| d < end) else {
            break;
        };
        let stop = next_hole(part, part_path, data)?.min(end);
        let mut at = data;
        while at < stop {
            let n = (stop - at).min(CHUNK as u64) as usize;
            let got = part
                .read_at(&mut buf[..n], at)
                .map_err(|e| StorageError::from_io(IoOp::Read, part_path, e))?;
            if got == 0 {
                break; // end of the part file
            }
            h.buffered
                .write_all_at(&buf[..got], at - start)
                .map_err(|e| StorageError::from_io(IoOp::Write, &h.path, e))?;
            at += got as u64;
        }
        pos = stop.max(data + 1);
    }
    Ok(())
}

/// The first data offset at or after `pos` (`SEEK_DATA`), `None` if only a hole follows.
fn next_data(f: &File, path: &Path, pos: u64) -> Result<Option<u64>, StorageError> {
    seek(f, path, pos, libc::SEEK_DATA)
}

/// The first hole at or after `pos` (`SEEK_HOLE`; the end of the file counts as one).
fn next_hole(f: &File, path: &Path, pos: u64) -> Result<u64, StorageError> {
    Ok(seek(f, path, pos, libc::SEEK_HOLE)?.unwrap_or(u64::MAX))
}

fn seek(f: &File, path: &Path, pos: u64, whence: libc::c_int) -> Result<Option<u64>, StorageError> {
    let off =
        libc::off_t::try_from(pos).map_err(|_| StorageError::BadLayout("offset too large"))?;
    // SAFETY: plain syscall on an open fd owned by `f`; no memory is passed. The file offset it
    // moves is not used by this crate (all IO is positional).
    let rc = unsafe { libc::lseek(f.as_raw_fd(), off, whence) };
    if rc >= 0 {
        return Ok(Some(rc as u64));
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ENXIO) => Ok(None),
        _ => Err(StorageError::from_io(IoOp::Read, path, err)),
    }
}

/// Removes the part file and its directory if that is now empty; failures only leave litter.
fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        tracing::debug!(path = %path.display(), "cannot remove part file: {e}");
    }
    if let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir(dir); // fails unless empty, as intended
    }
}
