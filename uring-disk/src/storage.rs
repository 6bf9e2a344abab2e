//! The files of one torrent on disk.
//!
//! [`Storage::open_selected`] creates directories and the files of the selection (padding files
//! and unselected files excepted), reserves their full size and opens each stored file twice:
//! with `O_DIRECT` when the filesystem allows it, for page-aligned transfers that bypass the
//! page cache, and buffered, for unaligned heads and tails. Mixing both on one file is coherent:
//! the kernel flushes and invalidates cached pages around a direct transfer, and a page shared by
//! two pieces is never fully inside either, so only buffered IO ever touches it.
//!
//! # Unselected files and the part file
//! A file that is not selected and does not exist yet is *parked*: it is never created. A wanted
//! piece can still straddle it (its first or last bytes belong to a wanted file); those bytes go
//! to the torrent's *part file* (`Selection::part_file`, e.g.
//! `<root>/.ringtorrent/<infohash>.parts`), a sparse file in which every byte sits at its offset
//! in the whole torrent. [`Storage::spans`] redirects such parts there, so the disk pipeline
//! writes, serves and syncs them like any other file, and [`Storage::check_pieces`] hashes them
//! from there. When a parked file is selected ([`FileSelector::select`], any thread) the disk
//! thread, before planning its next operation, creates it, copies the part file's data in its
//! range into it and syncs it, and only then stops redirecting. Opening storage likewise fills
//! each file it creates from the part file, and removes the part file once no file is parked.
//! A file is built under a temporary name and renamed into place once its bytes are synced, so
//! a file that exists never lacks bytes the part file had: the part file is authoritative for a
//! file's range only while the file does not exist (its blocks hold zeros for the neighbours').
//!
//! Invariants:
//! - `handles[i]` is set exactly for stored files: never for padding files, never while file `i`
//!   is parked, and once set it stays (a file is never parked again).
//! - The bytes of a parked file are read and written only in the part file, at their torrent
//!   offset; the part file is opened by the first span that needs it.
//! - A file leaves the parked set only on the thread that plans operations, before it computes
//!   spans, and only with no part-file operation in flight (each op holds an `Arc` of the part
//!   file's handle, so its strong count is then 1): no write can land in the part file after
//!   its range was copied out. Part-file data is kept until no file is parked, so a stale read
//!   still finds its bytes.
//! - Every path is inside `root` (relative, plain components, checked here even if the engine
//!   checked already) and no two files share a path.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crate::error::{IoOp, StorageError};
use crate::hash::files::check_layout;
use crate::layout::{check_rel_path, resolve_paths, Layout, Parked, Spans, StorageFile};
use crate::ops::fallocate::{reserve, Reserved};
pub use mapped::MappedRange;
use parts::Parts;
pub use reader::{BlockReader, DirectPiece, OpenFile, ReadPart};

mod mapped;
mod parts;
#[cfg(test)]
mod parts_tests;
mod reader;
#[cfg(test)]
mod tests;

/// How [`Storage::open`] prepares files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageOptions {
    /// Reserve every file's blocks up front (fallocate); otherwise files are sparse.
    pub preallocate: bool,
    /// Use O_DIRECT for aligned transfers where the filesystem supports it.
    pub direct_io: bool,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            preallocate: true,
            direct_io: true,
        }
    }
}

/// Which files to create, and where the bytes of the others that share a wanted piece go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Per file in torrent order: create it. Missing entries are `true`.
    pub wanted: Vec<bool>,
    /// The part file, relative to the download root (e.g. `.ringtorrent/<infohash>.parts`).
    pub part_file: PathBuf,
}

/// Open descriptors of one stored file.
#[derive(Debug)]
pub(crate) struct FileHandle {
    pub(crate) path: PathBuf,
    pub(crate) buffered: File,
    direct: Option<File>,
    /// Cleared when a direct transfer is refused (EINVAL), so later ones go buffered.
    direct_ok: AtomicBool,
    /// Written since the last sync.
    dirty: AtomicBool,
    /// A mapping of the whole file for sends, made on first use (`OpenFile::mapping`).
    mapping: OnceLock<Option<MappedRange>>,
}

impl FileHandle {
    /// A handle with no O_DIRECT descriptor.
    pub(crate) fn read_only(path: PathBuf, buffered: File) -> FileHandle {
        FileHandle {
            path,
            buffered,
            direct: None,
            direct_ok: AtomicBool::new(false),
            dirty: AtomicBool::new(false),
            mapping: OnceLock::new(),
        }
    }

    /// The mapping of the whole file as long as it was when first asked for; `None` if the
    /// file was empty or could not be mapped.
    pub(crate) fn mapping(&self) -> Option<&MappedRange> {
        self.mapping
            .get_or_init(|| {
                let len = usize::try_from(self.buffered.metadata().ok()?.len()).ok()?;
                MappedRange::map(&self.buffered, 0, len)
                    .inspect_err(
                        |e| tracing::debug!(path = %self.path.display(), "mapping failed: {e}"),
                    )
                    .ok()
            })
            .as_ref()
    }

    /// The O_DIRECT descriptor, if there is one and it still works.
    pub(crate) fn direct(&self) -> Option<&File> {
        self.direct
            .as_ref()
            .filter(|_| self.direct_ok.load(Ordering::Relaxed))
    }

    /// The O_DIRECT descriptor even if disabled since (for an op already planned on it).
    pub(crate) fn direct_fd(&self) -> Option<RawFd> {
        self.direct.as_ref().map(AsRawFd::as_raw_fd)
    }

    pub(crate) fn buffered_fd(&self) -> RawFd {
        self.buffered.as_raw_fd()
    }

    pub(crate) fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// True (and cleared) if the file was written since the last call.
    pub(crate) fn take_dirty(&self) -> bool {
        self.dirty.swap(false, Ordering::Relaxed)
    }

    pub(crate) fn disable_direct(&self) {
        if self.direct_ok.swap(false, Ordering::Relaxed) {
            tracing::debug!(path = %self.path.display(), "O_DIRECT refused, using buffered IO");
        }
    }
}

/// The files of one torrent, opened and sized.
#[derive(Debug)]
pub struct Storage {
    inner: Arc<Inner>,
}

/// What [`Storage`] and its [`FileSelector`]s share.
#[derive(Debug)]
struct Inner {
    root: PathBuf,
    files: Vec<StorageFile>,
    paths: Vec<Option<PathBuf>>,
    layout: Layout,
    opts: StorageOptions,
    handles: Vec<OnceLock<Arc<FileHandle>>>,
    parts: Parts,
}

/// Selects parked files of a [`Storage`] from another thread while the disk pipeline owns it.
#[derive(Clone, Debug)]
pub struct FileSelector {
    inner: Arc<Inner>,
}

impl Storage {
    /// Creates (or reopens) every file under `root` and reserves its size. Existing data is
    /// kept; a file longer than its torrent length is left as it is.
    pub fn open(
        root: &Path,
        files: Vec<StorageFile>,
        piece_length: u32,
        opts: StorageOptions,
    ) -> Result<Storage, StorageError> {
        Self::open_inner(root, files, piece_length, opts, Vec::new(), None)
    }

    /// Like [`Storage::open`], but files not in `selection` that do not exist yet are parked
    /// (see the module doc): not created, their bytes of wanted pieces kept in the part file.
    pub fn open_selected(
        root: &Path,
        files: Vec<StorageFile>,
        piece_length: u32,
        opts: StorageOptions,
        selection: Selection,
    ) -> Result<Storage, StorageError> {
        check_rel_path(&selection.part_file)?;
        let part = root.join(&selection.part_file);
        Self::open_inner(
            root,
            files,
            piece_length,
            opts,
            selection.wanted,
            Some(part),
        )
    }

    fn open_inner(
        root: &Path,
        files: Vec<StorageFile>,
        piece_length: u32,
        opts: StorageOptions,
        wanted: Vec<bool>,
        part: Option<PathBuf>,
    ) -> Result<Storage, StorageError> {
        let layout = Layout::new(files.iter().map(|f| (f.length, f.padding)), piece_length)?;
        let paths = resolve_paths(root, &files)?;
        let mut seen = HashSet::new();
        for (f, p) in files.iter().zip(&paths) {
            if p.is_some() && !seen.insert(&f.rel_path) {
                return Err(StorageError::BadPath {
                    path: f.rel_path.clone(),
                    reason: "two files with the same path",
                });
            }
        }
        let parked: Vec<bool> = paths
            .iter()
            .enumerate()
            .map(|(i, p)| {
                p.as_ref()
                    .is_some_and(|p| !wanted.get(i).copied().unwrap_or(true) && !p.exists())
            })
            .collect();
        let to_open = paths
            .iter()
            .zip(&parked)
            .filter(|(p, parked)| p.is_some() && !**parked)
            .count();
        let limit = open_file_budget();
        if to_open as u64 > limit {
            return Err(StorageError::TooManyFiles {
                files: to_open,
                limit,
            });
        }
        std::fs::create_dir_all(root)
            .map_err(|e| StorageError::from_io(IoOp::CreateDir, root, e))?;
        let inner = Inner {
            root: root.to_path_buf(),
            handles: files.iter().map(|_| OnceLock::new()).collect(),
            parts: Parts::new(part.clone(), parked.clone()),
            files,
            paths,
            layout,
            opts,
        };
        let adopt = inner.parts.exists();
        for (i, p) in inner.paths.iter().enumerate() {
            let Some(path) = p.as_ref().filter(|_| !parked[i]) else {
                continue;
            };
            let h = if adopt && !path.exists() {
                parts::create_from_part(&inner, part.as_deref(), i, path)?
            } else {
                open_file(root, path, inner.files[i].length, opts)?
            };
            let _ = inner.handles[i].set(Arc::new(h));
        }
        inner.parts.tidy();
        Ok(Storage {
            inner: Arc::new(inner),
        })
    }

    /// Splits `len` bytes at `offset` in `piece` at file boundaries (padding spans included,
    /// flagged); parts in parked files are redirected to the part file (see [`crate::Span`]).
    /// Errors if the range is outside the piece or the part file cannot be opened.
    pub fn spans(&self, piece: u32, offset: u32, len: u32) -> Result<Spans<'_>, StorageError> {
        let inner = &*self.inner;
        self.apply_selections();
        let spans = inner.layout.spans(piece, offset, len)?;
        let parts = &inner.parts;
        if !parts.any_parked() {
            return Ok(spans);
        }
        let touches = inner
            .layout
            .spans(piece, offset, len)?
            .any(|s| !s.padding && parts.is_parked(s.file));
        if touches {
            parts.ensure_open(inner)?;
        }
        Ok(spans.redirect(Parked {
            flags: parts.flags(),
            part_file: inner.files.len(),
        }))
    }

    /// Creates the files selected since the last call (see [`FileSelector::select`]) if no
    /// part-file operation is in flight. [`Storage::spans`] calls it; only the thread that plans
    /// operations from spans may call it.
    pub(crate) fn apply_selections(&self) {
        self.inner.parts.run_pending(&self.inner);
    }

    /// Rechecks the data on disk against `hashes` (see [`crate::check_pieces`]); the bytes of
    /// parked files are read from the part file.
    pub fn check_pieces(
        &self,
        hashes: &[[u8; 20]],
        threads: usize,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Vec<bool>, StorageError> {
        let inner = &*self.inner;
        let mut ok = check_layout(&inner.layout, &inner.paths, hashes, threads, progress)?;
        inner.parts.check_parked(inner, hashes, &mut ok)?;
        Ok(ok)
    }

    /// Maps blocks onto the open files, for reads on other threads' rings.
    pub fn reader(&self) -> BlockReader {
        BlockReader::new(Arc::clone(&self.inner))
    }

    /// A handle to select parked files later, from any thread.
    pub fn selector(&self) -> FileSelector {
        FileSelector {
            inner: Arc::clone(&self.inner),
        }
    }

    /// True if file `file` is parked: not created, its bytes kept in the part file.
    pub fn is_parked(&self, file: usize) -> bool {
        self.inner.parts.is_parked(file)
    }

    /// The download directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The files, as given to `open`.
    pub fn files(&self) -> &[StorageFile] {
        &self.inner.files
    }

    /// Number of pieces.
    pub fn piece_count(&self) -> u32 {
        self.inner.layout.piece_count()
    }

    /// Nominal piece length.
    pub fn piece_length(&self) -> u32 {
        self.inner.layout.piece_length()
    }

    /// Length of `piece` (the last may be short), `None` past the end.
    pub fn piece_len(&self, piece: u32) -> Option<u32> {
        self.inner.layout.piece_len(piece)
    }

    /// Sum of all file lengths.
    pub fn total_len(&self) -> u64 {
        self.inner.layout.total()
    }

    /// The open handle of file `file`, or of the part file for `file == files().len()` once it
    /// is open; `None` for padding and parked files.
    pub(crate) fn handle(&self, file: usize) -> Option<&Arc<FileHandle>> {
        match self.inner.handles.get(file) {
            Some(h) => h.get(),
            None if file == self.inner.files.len() => self.inner.parts.handle(),
            None => None,
        }
    }

    /// Every open handle: the stored files, then the part file if it is open (for syncs).
    pub(crate) fn open_handles(&self) -> impl Iterator<Item = &Arc<FileHandle>> {
        (0..=self.inner.files.len()).filter_map(|i| self.handle(i))
    }
}

impl FileSelector {
    /// Selects file `file`. If it is parked, it will be created and its bytes moved from the
    /// part file into it (then synced) by the disk thread before it plans its next operation on
    /// this storage, as soon as no part-file operation is in flight, or at the latest when the
    /// storage is dropped; until then its bytes are read and written in the part file, so
    /// nothing is lost either way. Returns true if the file was parked.
    pub fn select(&self, file: usize) -> Result<bool, StorageError> {
        if file >= self.inner.files.len() {
            return Err(StorageError::BadLayout("no such file"));
        }
        Ok(self.inner.parts.select(file))
    }

    /// True if file `file` is parked (not created yet).
    pub fn is_parked(&self, file: usize) -> bool {
        self.inner.parts.is_parked(file)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.parts.finish(self);
    }
}

/// Descriptors kept back from a torrent's files for sockets, rings and other torrents (or a
/// quarter of the limit, if less).
const FD_RESERVE: u64 = 1024;

/// How many files one torrent may keep open: the soft `RLIMIT_NOFILE` less [`FD_RESERVE`]. (The
/// engine raises the soft limit to the hard one when it starts.)
fn open_file_budget() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a pointer to a live, owned value.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if rc != 0 || lim.rlim_cur == libc::RLIM_INFINITY {
        return u64::MAX;
    }
    let cur: u64 = lim.rlim_cur;
    cur - FD_RESERVE.min(cur / 4)
}

/// Refuses a path under `root` that passes through a symlink below `root` (one planted in the
/// download directory could point anywhere). `root` itself may be a symlink: the user chose it.
/// The last component is also opened with `O_NOFOLLOW`, so a symlink planted between this check
/// and the open fails the open instead of being followed.
fn check_no_symlinks(root: &Path, path: &Path) -> Result<(), StorageError> {
    let Ok(rel) = path.strip_prefix(root) else {
        return Ok(());
    };
    let mut at = root.to_path_buf();
    for c in rel.components() {
        at.push(c);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(StorageError::BadPath {
                    path: at,
                    reason: "a symlink inside the download directory (not followed)",
                })
            }
            Ok(_) => {}
            // Missing (created below), or not a directory, unreadable...: the create or
            // open that follows reports it.
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

fn open_file(
    root: &Path,
    path: &Path,
    length: u64,
    opts: StorageOptions,
) -> Result<FileHandle, StorageError> {
    check_no_symlinks(root, path)?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| StorageError::from_io(IoOp::CreateDir, parent, e))?;
    }
    let buffered = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| StorageError::from_io(IoOp::Open, path, e))?;
    let current = buffered
        .metadata()
        .map_err(|e| StorageError::from_io(IoOp::Stat, path, e))?
        .len();
    if current < length {
        let reserved = if opts.preallocate {
            reserve(&buffered, length)
                .map_err(|e| StorageError::from_io(IoOp::Fallocate, path, e))?
        } else {
            Reserved::Unsupported
        };
        if reserved == Reserved::Unsupported {
            buffered
                .set_len(length)
                .map_err(|e| StorageError::from_io(IoOp::SetLen, path, e))?;
        }
    }
    let direct = if opts.direct_io {
        OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT | libc::O_NOFOLLOW)
            .open(path)
            .ok()
    } else {
        None
    };
    Ok(FileHandle {
        path: path.to_path_buf(),
        buffered,
        direct_ok: AtomicBool::new(direct.is_some()),
        direct,
        dirty: AtomicBool::new(false),
        mapping: OnceLock::new(),
    })
}
