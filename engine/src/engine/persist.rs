//! Resume files on disk: loading one when a torrent is added, and saving them durably every
//! few seconds, on pause and on shutdown. The format is in [`super::resume`].
//!
//! Where: `<resume_dir>/<infohash-hex>.resume`, `resume_dir` defaulting to
//! `<download_dir>/.ringtorrent` (next to the part file).
//!
//! Durability invariant (why a resume file never claims a piece whose bytes are not on disk):
//! a save (1) snapshots the picker's verified pieces; each one's `PieceWritten` was delivered,
//! so its writes completed; (2) asks the disk pipeline to `fdatasync` every file written since
//! the last sync, which covers every piece whose `PieceWritten` was delivered before the
//! request, so all of the snapshot; (3) only after that sync succeeded, writes the snapshot to
//! a temp file, `fdatasync`s it, renames it over the resume file and `fsync`s the directory.
//! A failed sync or write leaves the previous resume file, which claimed less, in place.
//! Saves of one torrent are serialised by [`ResumeState::lock`].
//!
//! Disk full: the temp file is kept allocated between saves (zeros, about twice the resume
//! file's size) and overwritten in place, so the save that records a torrent stopped by
//! ENOSPC needs no new space on that same full disk.
//!
//! Stamps: the file sizes and modification times saved are read after the sync. A piece
//! written later changes a file's mtime, so after a crash the stamps do not match and the
//! engine rechecks everything: slower, never wrong. After a clean stop (everything written
//! before the last save) they match and no recheck is needed.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::{Inner, TorrentId};
use crate::metainfo::Metainfo;
use crate::resume::{FileStamp, ResumeData, ResumeError, MAX_RESUME_LEN};
use crate::torrent::TorrentShared;

/// Longest wait for the disk pipeline to sync a torrent's files.
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a resume file was not saved; the previous one stays.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("syncing the torrent's files failed: {0}")]
    Sync(#[from] uring_disk::StorageError),
    #[error("the disk pipeline did not answer the sync")]
    SyncLost,
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What the engine keeps per torrent to save its resume file.
pub(crate) struct ResumeState {
    /// The resume file.
    pub path: PathBuf,
    /// Every torrent file (None for BEP 47 padding), then the part file.
    stamp_paths: Vec<Option<PathBuf>>,
    /// Directories the torrent's paths make under the download directory, deepest first.
    data_dirs: Vec<PathBuf>,
    /// Totals of earlier sessions (from the resume file).
    base_uploaded: u64,
    base_downloaded: u64,
    /// Trackers the resume file listed (merged with the torrent's at add time).
    pub trackers: Vec<Vec<String>>,
    /// Verified pieces at the last successful save (u32::MAX: never saved).
    saved_have: AtomicU32,
    /// The next save syncs every file, not only those written since the last sync (set when
    /// pieces were found by a recheck: see [`uring_disk::DiskPipeline::sync_all`]).
    pub sync_all: AtomicBool,
    /// Held for a whole save.
    lock: Mutex<()>,
}

/// What [`ResumeState::load`] found.
pub(crate) enum Loaded {
    /// No resume file: recheck whatever exists.
    None,
    /// A resume file that matches the files on disk: trust it.
    Trusted(ResumeData),
    /// A resume file we do not trust (why): recheck.
    Distrusted(String),
}

impl ResumeState {
    /// Paths for a torrent about to be opened under `download_dir`.
    pub fn new(meta: &Metainfo, download_dir: &Path, resume_dir: Option<&Path>) -> Self {
        let dir = resume_dir.map_or_else(|| download_dir.join(".ringtorrent"), Path::to_path_buf);
        let info = &meta.info;
        let mut stamp_paths: Vec<Option<PathBuf>> = (0..info.files.len())
            .map(|i| (!info.files[i].padding).then(|| download_dir.join(info.file_path(i))))
            .collect();
        stamp_paths.push(Some(
            download_dir.join(crate::files::part_file_name(&meta.info_hash)),
        ));
        let mut data_dirs: Vec<PathBuf> = (0..info.files.len())
            .flat_map(|i| {
                let rel = info.file_path(i);
                let parts: Vec<_> = rel.components().collect();
                (1..parts.len())
                    .map(|k| download_dir.join(parts[..k].iter().collect::<PathBuf>()))
                    .collect::<Vec<_>>()
            })
            .collect();
        data_dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        data_dirs.dedup();
        ResumeState {
            path: dir.join(format!("{}.resume", meta.info_hash.to_hex())),
            stamp_paths,
            data_dirs,
            base_uploaded: 0,
            base_downloaded: 0,
            trackers: Vec::new(),
            saved_have: AtomicU32::new(u32::MAX),
            sync_all: AtomicBool::new(false),
            lock: Mutex::new(()),
        }
    }

    /// Current size and mtime of every file (call before opening storage, which may create
    /// or extend files).
    pub fn stamps(&self) -> Vec<FileStamp> {
        self.stamp_paths
            .iter()
            .map(|p| p.as_deref().map_or(FileStamp::Missing, stamp))
            .collect()
    }

    /// Reserves space for saves (see [`reserve`]); call once the download directory exists.
    pub fn reserve_space(&self, meta: &Metainfo) {
        reserve(&self.path, initial_reserve_len(meta));
    }

    /// Reads and checks the resume file against `meta` and the files on disk now.
    pub fn load(&mut self, meta: &Metainfo) -> Loaded {
        let bytes = match read_limited(&self.path) {
            Ok(Some(b)) => b,
            Ok(None) => return Loaded::None,
            Err(why) => return Loaded::Distrusted(why),
        };
        let n = meta.info.lengths.num_pieces();
        let data = match ResumeData::decode(&bytes, &meta.info_hash, n, self.stamp_paths.len()) {
            Ok(d) => d,
            Err(e) => return Loaded::Distrusted(e.to_string()),
        };
        // The totals and trackers carry over even when the pieces are rechecked.
        self.base_uploaded = data.uploaded_bytes;
        self.base_downloaded = data.downloaded_bytes;
        self.trackers = data.trackers.clone();
        match data.check_files(&self.stamps()) {
            Ok(()) => Loaded::Trusted(data),
            Err(m) => Loaded::Distrusted(m.to_string()),
        }
    }

    /// True if pieces were verified since the last save.
    pub fn is_dirty(&self, t: &TorrentShared) -> bool {
        self.saved_have.load(Ordering::Relaxed) != t.picker.num_have()
    }

    /// Saves `t`'s resume file durably (see the module doc).
    pub fn save(&self, inner: &Inner, t: &TorrentShared) -> Result<(), SaveError> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let have = t.have_bitfield();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let reply: uring_disk::SyncReply = Box::new(move |r| {
            let _ = tx.send(r);
        });
        let all = self.sync_all.load(Ordering::Acquire);
        if all {
            inner.disk.sync_all(t.disk_slot, reply)?;
        } else {
            inner.disk.sync(t.disk_slot, reply)?;
        }
        rx.recv_timeout(SYNC_TIMEOUT)
            .map_err(|_| SaveError::SyncLost)??;
        if all {
            self.sync_all.store(false, Ordering::Release);
        }
        let c = &t.counters;
        let data = ResumeData {
            info_hash: t.info_hash,
            files: self.stamps(),
            trackers: t.trackers().to_vec(),
            uploaded_bytes: self
                .base_uploaded
                .saturating_add(c.uploaded_bytes.load(Ordering::Relaxed)),
            downloaded_bytes: self
                .base_downloaded
                .saturating_add(c.downloaded_bytes.load(Ordering::Relaxed)),
            have,
        };
        write_atomic(&self.path, &data.encode()).map_err(|source| SaveError::Write {
            path: self.path.clone(),
            source,
        })?;
        self.saved_have.store(data.have.count(), Ordering::Relaxed);
        Ok(())
    }

    /// Removes the resume file (after a full recheck found it wrong, so that a crash before
    /// the next save cannot bring it back).
    pub fn discard(&self) {
        let _ = std::fs::remove_file(&self.path);
    }

    /// Deletes what the torrent put on disk ([`super::RemoveData::Delete`]): its files, its
    /// part file, the directories its paths made if they are now empty, the resume file and
    /// a magnet's saved metadata. Only paths derived from the torrent under its download
    /// directory (already checked not to escape it) are touched. Returns the first failure
    /// other than "not there".
    pub fn delete_data(&self, meta: &Metainfo) -> std::io::Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let saved = self
            .path
            .with_file_name(format!("{}.torrent", meta.info_hash.to_hex()));
        let files = self.stamp_paths.iter().flatten();
        let mut first_err = None;
        for path in files.chain([&self.path, &saved]) {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    first_err.get_or_insert(e);
                }
                _ => {}
            }
        }
        for dir in &self.data_dirs {
            // Not empty (files of someone else's) or already gone: leave it.
            let _ = std::fs::remove_dir(dir);
        }
        first_err.map_or(Ok(()), Err)
    }
}

fn stamp(path: &Path) -> FileStamp {
    match std::fs::metadata(path) {
        Ok(m) => FileStamp::Present {
            size: m.len(),
            mtime_s: m.mtime(),
            mtime_ns: u32::try_from(m.mtime_nsec()).unwrap_or(0),
        },
        Err(_) => FileStamp::Missing,
    }
}

/// The file's bytes; None if it does not exist; an error if unreadable or over the limit
/// (checked from its length before reading).
fn read_limited(path: &Path) -> Result<Option<Vec<u8>>, String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    if meta.len() > MAX_RESUME_LEN {
        return Err(ResumeError::TooLarge(meta.len()).to_string());
    }
    std::fs::read(path)
        .map(Some)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Makes sure `<resume>.tmp` holds at least `len` bytes of allocated space (zeros), so that a
/// save still works when the disk is full: the save overwrites this reserved space in place
/// instead of allocating. Best effort; a failure only means a later save may need space.
pub(crate) fn reserve(path: &Path, len: u64) {
    let tmp = tmp_path(path);
    if std::fs::metadata(&tmp).is_ok_and(|m| m.len() >= len) {
        return;
    }
    let result = (|| {
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
        locked(path, || {
            let mut f = std::fs::File::create(&tmp)?;
            // Zeros written, not a sparse `set_len`: the blocks must really be allocated.
            f.write_all(&vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)])?;
            f.sync_data()
        })
    })();
    if let Err(e) = result {
        tracing::debug!("cannot reserve space for {}: {e}", tmp.display());
        let _ = std::fs::remove_file(&tmp);
    }
}

/// Space to reserve for a resume file of `len` bytes: room to grow, whole pages.
fn reserve_len(len: usize) -> u64 {
    ((len as u64) * 2 + 8192).next_multiple_of(4096)
}

/// Runs `f` holding an exclusive `flock` on `<resume>.lock`: two processes that seed the same
/// data directory (the demo's seeders do) share the resume file and its `.tmp`, and without
/// the lock one's rename could take the other's half-written temp file away.
fn locked<T>(path: &Path, f: impl FnOnce() -> std::io::Result<T>) -> std::io::Result<T> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path.with_file_name(name))?;
    lock.lock()?;
    let result = f();
    let _ = lock.unlock();
    result
}

/// Writes `<path>.tmp` (over its reserved space if any), fdatasyncs it, renames it over
/// `path`, fsyncs the directory; then reserves the next temp file.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    locked(path, || write_atomic_locked(path, bytes))?;
    reserve(path, reserve_len(bytes.len()));
    Ok(())
}

fn write_atomic_locked(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = tmp_path(path);
    let result = (|| {
        // Not truncated first: the reserved blocks are overwritten, then the rest cut off.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.set_len(bytes.len() as u64)?;
        f.sync_data()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A generous first reservation for `meta`'s resume file, before any save.
pub(crate) fn initial_reserve_len(meta: &Metainfo) -> u64 {
    let trackers: usize = meta.trackers.iter().flatten().map(|u| u.len() + 8).sum();
    let estimate = meta.info.lengths.num_pieces() as usize / 8 + 64 * (meta.info.files.len() + 1);
    reserve_len(estimate + trackers + 256)
}

/// Every `period`, saves the resume file of each torrent that verified pieces since its last
/// save. Runs on its own thread until `stop` is dropped or sent to.
pub(crate) fn spawn_saver(
    inner: std::sync::Weak<Inner>,
    period: Duration,
    stop: std::sync::mpsc::Receiver<()>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("rt-resume".into())
        .spawn(move || loop {
            match stop.recv_timeout(period) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
            let Some(inner) = inner.upgrade() else { return };
            for (t, st) in super::torrent_states(&inner) {
                if st.is_dirty(&t) {
                    if let Err(e) = st.save(&inner, &t) {
                        // A torrent removed since the snapshot has no files to sync: its
                        // resume file goes with it, nothing to report.
                        if inner.with_torrent(TorrentId(t.id), |_| ()).is_err() {
                            tracing::debug!("torrent {}: removed during a resume save: {e}", t.id);
                            continue;
                        }
                        tracing::warn!("torrent {}: saving resume data failed: {e}", t.id);
                    }
                }
            }
        })
}

/// How a torrent's verified pieces were found when it was added.
pub(crate) enum Start {
    /// Nothing checked: no resume file and no recheck asked.
    Fresh,
    /// From a resume file that matched the files on disk.
    Accepted,
    /// By a full recheck, for this reason.
    Rechecked(String),
}

impl Start {
    /// The alert announcing it, for a torrent that starts with `pieces`.
    pub fn alert(self, id: super::TorrentId, pieces: u32) -> Option<super::Alert> {
        match self {
            Start::Fresh => None,
            Start::Accepted => Some(super::Alert::ResumeAccepted { id, pieces }),
            Start::Rechecked(reason) => Some(super::Alert::Rechecked { id, reason, pieces }),
        }
    }
}

/// The pieces a torrent starts with: the resume file's if it is trusted (and no recheck is
/// forced), else a full recheck if asked (`check_existing`, `recheck`) or if an untrusted
/// resume file shows an earlier session, else none. `check` is (check_existing, recheck,
/// hashing threads); `progress` hears the bytes hashed, from the hashing threads.
pub(crate) fn initial_have(
    storage: &uring_disk::Storage,
    meta: &Metainfo,
    resume: &ResumeState,
    loaded: Loaded,
    check: (bool, bool, usize),
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(crate::types::Bitfield, Start), uring_disk::StorageError> {
    let (check_existing, recheck, threads) = check;
    let info = &meta.info;
    let reason = match loaded {
        Loaded::Trusted(data) if !recheck => return Ok((data.have, Start::Accepted)),
        _ if recheck => "recheck asked".to_string(),
        Loaded::Distrusted(why) => format!("resume data not used: {why}"),
        Loaded::None if check_existing => "no resume data".to_string(),
        Loaded::None | Loaded::Trusted(_) => {
            return Ok((
                crate::types::Bitfield::new(info.lengths.num_pieces()),
                Start::Fresh,
            ))
        }
    };
    let ok = storage.check_pieces(&info.pieces, threads.max(1), progress)?;
    let mut have = crate::types::Bitfield::new(info.lengths.num_pieces());
    for (p, good) in info.lengths.pieces().zip(ok) {
        if good {
            have.set(p);
        }
    }
    // The old file may claim pieces the recheck refuted: never let it be read again. What the
    // recheck found may be only in the page cache: the first save syncs every file.
    resume.discard();
    resume.sync_all.store(true, Ordering::Release);
    Ok((have, Start::Rechecked(reason)))
}
