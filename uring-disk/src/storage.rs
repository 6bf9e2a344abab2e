//! The files of one torrent on disk.
//!
//! [`Storage::open`] creates directories and files (padding files excepted), reserves their
//! full size and opens each stored file twice: with `O_DIRECT` when the filesystem allows it,
//! for page-aligned transfers that bypass the page cache, and buffered, for unaligned heads and
//! tails. Mixing both on one file is coherent: the kernel flushes and invalidates cached pages
//! around a direct transfer, and a page shared by two pieces is never fully inside either, so
//! only buffered IO ever touches it.
//!
//! Invariants: `handles[i]` is `Some` exactly for non-padding files; every path is inside
//! `root` (relative, plain components, checked here even if the engine checked already) and no
//! two files share a path.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{IoOp, StorageError};
use crate::hash::files::check_layout;
use crate::layout::{resolve_paths, Layout, Spans, StorageFile};
use crate::ops::fallocate::{reserve, Reserved};

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
}

impl FileHandle {
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
    root: PathBuf,
    files: Vec<StorageFile>,
    paths: Vec<Option<PathBuf>>,
    layout: Layout,
    handles: Vec<Option<Arc<FileHandle>>>,
}

impl Storage {
    /// Creates (or reopens) the files under `root` and reserves their size. Existing data is
    /// kept; a file longer than its torrent length is left as it is.
    pub fn open(
        root: &Path,
        files: Vec<StorageFile>,
        piece_length: u32,
        opts: StorageOptions,
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
        std::fs::create_dir_all(root)
            .map_err(|e| StorageError::from_io(IoOp::CreateDir, root, e))?;
        let handles = files
            .iter()
            .zip(&paths)
            .map(|(f, p)| match p {
                Some(path) => open_file(path, f.length, opts).map(|h| Some(Arc::new(h))),
                None => Ok(None),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Storage {
            root: root.to_path_buf(),
            files,
            paths,
            layout,
            handles,
        })
    }

    /// Splits `len` bytes at `offset` in `piece` at file boundaries (padding spans included,
    /// flagged). Errors if the range is outside the piece.
    pub fn spans(&self, piece: u32, offset: u32, len: u32) -> Result<Spans<'_>, StorageError> {
        self.layout.spans(piece, offset, len)
    }

    /// Rechecks the data on disk against `hashes` (see [`crate::check_pieces`]).
    pub fn check_pieces(
        &self,
        hashes: &[[u8; 20]],
        threads: usize,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Vec<bool>, StorageError> {
        check_layout(&self.layout, &self.paths, hashes, threads, progress)
    }

    /// The download directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The files, as given to `open`.
    pub fn files(&self) -> &[StorageFile] {
        &self.files
    }

    /// Number of pieces.
    pub fn piece_count(&self) -> u32 {
        self.layout.piece_count()
    }

    /// Nominal piece length.
    pub fn piece_length(&self) -> u32 {
        self.layout.piece_length()
    }

    /// Length of `piece` (the last may be short), `None` past the end.
    pub fn piece_len(&self, piece: u32) -> Option<u32> {
        self.layout.piece_len(piece)
    }

    /// Sum of all file lengths.
    pub fn total_len(&self) -> u64 {
        self.layout.total()
    }

    pub(crate) fn handle(&self, file: usize) -> Option<&Arc<FileHandle>> {
        self.handles.get(file).and_then(Option::as_ref)
    }
}

fn open_file(path: &Path, length: u64, opts: StorageOptions) -> Result<FileHandle, StorageError> {
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
            .custom_flags(libc::O_DIRECT)
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(p: &str, length: u64, padding: bool) -> StorageFile {
        StorageFile {
            rel_path: PathBuf::from(p),
            length,
            padding,
        }
    }

    #[test]
    fn creates_files_dirs_and_sizes_but_not_padding() {
        let dir = tempfile::tempdir().unwrap();
        let files = vec![
            file("a/b/one", 5000, false),
            file(".pad/3192", 3192, true),
            file("empty", 0, false),
            file("a/two", 1, false),
        ];
        let s = Storage::open(dir.path(), files, 4096, StorageOptions::default()).unwrap();
        assert_eq!(
            std::fs::metadata(dir.path().join("a/b/one")).unwrap().len(),
            5000
        );
        assert_eq!(
            std::fs::metadata(dir.path().join("empty")).unwrap().len(),
            0
        );
        assert_eq!(
            std::fs::metadata(dir.path().join("a/two")).unwrap().len(),
            1
        );
        assert!(!dir.path().join(".pad").exists());
        assert_eq!(s.piece_count(), 3);
        assert_eq!(s.total_len(), 8193);
        assert!(s.handle(1).is_none() && s.handle(0).is_some());
        let spans: Vec<_> = s.spans(1, 0, 4096).unwrap().collect();
        assert_eq!(spans.len(), 2);
        assert!(!spans[0].padding && spans[1].padding);
    }

    #[test]
    fn keeps_existing_data_and_longer_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x"), b"hello world").unwrap();
        std::fs::write(dir.path().join("y"), b"abc").unwrap();
        let files = vec![file("x", 5, false), file("y", 10, false)];
        let opts = StorageOptions {
            preallocate: false,
            direct_io: false,
        };
        Storage::open(dir.path(), files, 16384, opts).unwrap();
        assert_eq!(std::fs::read(dir.path().join("x")).unwrap(), b"hello world");
        assert_eq!(
            std::fs::read(dir.path().join("y")).unwrap(),
            b"abc\0\0\0\0\0\0\0"
        );
    }

    #[test]
    fn refuses_escaping_and_duplicate_paths() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["../x", "/abs", ""] {
            let r = Storage::open(
                dir.path(),
                vec![file(bad, 1, false)],
                16384,
                StorageOptions::default(),
            );
            assert!(matches!(r, Err(StorageError::BadPath { .. })), "{bad:?}");
        }
        let r = Storage::open(
            dir.path(),
            vec![file("d", 1, false), file("d", 2, false)],
            16384,
            StorageOptions::default(),
        );
        assert!(matches!(r, Err(StorageError::BadPath { .. })));
        assert!(
            !dir.path().join("d").exists(),
            "nothing created before checks pass"
        );
    }

    #[test]
    fn file_in_place_of_directory_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"").unwrap();
        let r = Storage::open(
            dir.path(),
            vec![file("f/g", 1, false)],
            16384,
            StorageOptions::default(),
        );
        match r {
            Err(StorageError::Io { path, op, .. }) => {
                assert_eq!(op, IoOp::CreateDir);
                assert_eq!(path, dir.path().join("f"));
            }
            other => panic!("{other:?}"),
        }
    }
}
