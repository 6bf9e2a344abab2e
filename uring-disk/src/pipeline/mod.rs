//! The disk pipeline: the engine's only interface to disk and hashing.
//!
//! Anatomy of a piece: a shard fills a [`SharedPiece`], which hashes its blocks as they land
//! (see `piece.rs`), and calls [`DiskPipeline::submit_piece`]. If every block was hashed
//! already, the digest is compared right there; otherwise a hashing thread takes the piece and
//! hashes the rest from memory. On a match a [`VerifiedPiece`] is minted and the piece goes
//! to the disk thread, which writes it with one submission of per-file writes (O_DIRECT
//! for page-aligned middles, buffered for unaligned heads and tails) and, once every write has
//! completed, calls the torrent's sink with [`DiskEvent::PieceWritten`]. The piece's buffer goes
//! back to its pool when the last reference (the writes' or the engine's) is dropped.
//!
//! Threads: `hash_threads` hashing threads and one disk thread, which owns the io_uring (or, if
//! io_uring is unavailable, performs the same operations with blocking syscalls: same API,
//! same events). Sinks and read/sync replies run on the disk thread: they must be short and must
//! not block on the pipeline.
//!
//! Invariants:
//! - `queued_bytes` counts every submitted piece until its final event (written, hash failed,
//!   write failed): it is added in `submit_piece` and subtracted by the disk thread only, just
//!   before the event is delivered.
//! - Each torrent's `outstanding` counts its pieces, reads and syncs not yet answered; a
//!   removed torrent's storage is closed only when it reaches 0.
//! - Every submitted piece gets exactly one event while its torrent is registered.

mod disk;
mod hasher;
mod plan;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Once, PoisonError, RwLock};
use std::thread::{JoinHandle, ThreadId};

use crossbeam_channel::Sender;

use crate::driver::{Backend, Waker};
use crate::error::{StorageError, SubmitError};
use crate::hash::VerifiedPiece;
use crate::piece::SharedPiece;
use crate::pool::PooledBuf;
use crate::probe::uring_available;
use crate::storage::Storage;

/// Settings of a [`DiskPipeline`].
#[derive(Clone, Debug)]
pub struct DiskConfig {
    /// Hashing threads (at least 1).
    pub hash_threads: usize,
    /// The engine should stop claiming new pieces while [`DiskPipeline::queued_bytes`] is above
    /// this ([`DiskPipeline::is_congested`]).
    pub queue_limit_bytes: u64,
    /// io_uring submission queue size; also the limit of disk ops in flight.
    pub ring_entries: u32,
    /// Longest read accepted by [`DiskPipeline::read`].
    pub max_read_len: u32,
    /// Pooled, pre-touched read buffers (beyond these, reads allocate).
    pub read_buffers: usize,
    /// Use blocking syscalls even if io_uring is available.
    pub force_blocking: bool,
}

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig {
            hash_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            queue_limit_bytes: 64 << 20,
            ring_entries: 256,
            max_read_len: 128 << 10,
            read_buffers: 32,
            force_blocking: false,
        }
    }
}

/// What happened to a submitted piece; delivered to the torrent's sink on the disk thread.
#[derive(Debug)]
pub enum DiskEvent {
    /// The piece hashed correctly and is on disk (not necessarily synced; see
    /// [`DiskPipeline::sync`]).
    PieceWritten {
        /// Piece index.
        piece: u32,
        /// The witness that the data matched its hash.
        verified: VerifiedPiece,
    },
    /// The data did not match the piece's hash; nothing was written.
    HashFailed {
        /// Piece index.
        piece: u32,
    },
    /// The data was correct but could not be written; it is not marked verified.
    WriteFailed {
        /// Piece index.
        piece: u32,
        /// Why (see [`StorageError::is_no_space`]).
        error: StorageError,
    },
}

/// Receives a torrent's [`DiskEvent`]s, on the disk thread.
pub type Sink = Arc<dyn Fn(DiskEvent) + Send + Sync>;
/// Receives the outcome of [`DiskPipeline::read`].
pub type ReadReply = Box<dyn FnOnce(Result<ReadBuf, StorageError>) + Send>;
/// Receives the outcome of [`DiskPipeline::sync`].
pub type SyncReply = Box<dyn FnOnce(Result<(), StorageError>) + Send>;

/// A torrent registered with the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TorrentSlot(u32);

/// Data read for seeding: derefs to the bytes asked for. Its buffer returns to the pipeline's
/// read pool on drop.
pub struct ReadBuf {
    buf: PooledBuf,
    start: usize,
    len: usize,
}

impl ReadBuf {
    /// The bytes read.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf.as_slice()[self.start..self.start + self.len]
    }
}

impl std::ops::Deref for ReadBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::fmt::Debug for ReadBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadBuf").field("len", &self.len).finish()
    }
}

/// What every thread knows of a torrent.
pub(crate) struct TorrentInfo {
    hashes: Arc<[[u8; 20]]>,
    piece_length: u32,
    total: u64,
    outstanding: AtomicU64,
}

impl TorrentInfo {
    fn piece_len(&self, piece: u32) -> Option<u32> {
        let start = u64::from(piece) * u64::from(self.piece_length);
        if (piece as usize) >= self.hashes.len() || start >= self.total {
            return None;
        }
        // INVARIANT: at most piece_length, a u32.
        Some(u32::try_from((self.total - start).min(u64::from(self.piece_length))).unwrap())
    }
}

/// State shared by the API, the hashing threads and the disk thread.
pub(crate) struct Shared {
    torrents: RwLock<HashMap<u32, Arc<TorrentInfo>>>,
    queued_bytes: AtomicU64,
    next_slot: AtomicU32,
    waker: Waker,
    disk_thread: std::sync::OnceLock<ThreadId>,
}

/// Commands to the disk thread.
pub(crate) enum Cmd {
    Add {
        slot: u32,
        storage: Storage,
        info: Arc<TorrentInfo>,
        sink: Sink,
    },
    Remove {
        slot: u32,
        done: Sender<()>,
    },
    Hashed {
        slot: u32,
        buf: Arc<SharedPiece>,
        verified: Option<VerifiedPiece>,
    },
    Read {
        slot: u32,
        piece: u32,
        offset: u32,
        len: u32,
        reply: ReadReply,
    },
    Sync {
        slot: u32,
        all: bool,
        done: SyncReply,
    },
    Shutdown,
}

/// A piece waiting for a hashing thread.
pub(crate) struct HashJob {
    slot: u32,
    buf: Arc<SharedPiece>,
    expected: [u8; 20],
}

/// Hashing threads plus one disk thread; see the module docs.
pub struct DiskPipeline {
    shared: Arc<Shared>,
    cmd_tx: Sender<Cmd>,
    hash_tx: Option<Sender<HashJob>>,
    hash_threads: Vec<JoinHandle<()>>,
    disk_thread: Option<JoinHandle<()>>,
    backend: Backend,
    config: DiskConfig,
}

static FALLBACK_WARNING: Once = Once::new();

impl DiskPipeline {
    /// Starts the threads. Uses io_uring unless [`uring_available`] refuses (or
    /// `force_blocking`), in which case one warning is logged and blocking syscalls are used.
    pub fn start(config: DiskConfig) -> Result<DiskPipeline, StorageError> {
        let setup = |what| move |source| StorageError::Setup { what, source };
        let mut want_uring = !config.force_blocking;
        if want_uring {
            if let Err(why) = uring_available() {
                FALLBACK_WARNING.call_once(|| {
                    tracing::warn!(%why, "io_uring unavailable, disk IO uses blocking syscalls");
                });
                want_uring = false;
            }
        }
        let shared = Arc::new(Shared {
            torrents: RwLock::new(HashMap::new()),
            queued_bytes: AtomicU64::new(0),
            next_slot: AtomicU32::new(0),
            waker: Waker::new().map_err(setup("eventfd"))?,
            disk_thread: std::sync::OnceLock::new(),
        });
        let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
        let (hash_tx, hash_rx) = crossbeam_channel::unbounded();
        let (backend_tx, backend_rx) = crossbeam_channel::bounded(1);
        let disk = disk::DiskThread::new(Arc::clone(&shared), &config);
        let entries = config.ring_entries;
        let disk_thread = std::thread::Builder::new()
            .name("rt-disk".into())
            .spawn(move || disk.run(want_uring, entries, cmd_rx, backend_tx))
            .map_err(setup("spawn disk thread"))?;
        let mut pipeline = DiskPipeline {
            shared,
            cmd_tx,
            hash_tx: Some(hash_tx),
            hash_threads: Vec::new(),
            disk_thread: Some(disk_thread),
            backend: Backend::Blocking,
            config,
        };
        pipeline.backend = backend_rx.recv().map_err(|_| StorageError::Closed)?;
        for i in 0..pipeline.config.hash_threads.max(1) {
            let (rx, tx, shared) = (
                hash_rx.clone(),
                pipeline.cmd_tx.clone(),
                Arc::clone(&pipeline.shared),
            );
            let handle = std::thread::Builder::new()
                .name(format!("rt-hash-{i}"))
                .spawn(move || hasher::run(rx, tx, shared))
                .map_err(setup("spawn hash thread"))?;
            pipeline.hash_threads.push(handle);
        }
        Ok(pipeline)
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Registers a torrent whose files are `storage`, with its piece hashes; its events go to
    /// `sink` (called on the disk thread).
    pub fn add_torrent(
        &self,
        storage: Storage,
        piece_hashes: Arc<[[u8; 20]]>,
        sink: Arc<dyn Fn(DiskEvent) + Send + Sync>,
    ) -> Result<TorrentSlot, StorageError> {
        if piece_hashes.len() != storage.piece_count() as usize {
            return Err(StorageError::BadLayout(
                "hash count differs from piece count",
            ));
        }
        let slot = self.shared.next_slot.fetch_add(1, Ordering::Relaxed);
        let info = Arc::new(TorrentInfo {
            hashes: piece_hashes,
            piece_length: storage.piece_length(),
            total: storage.total_len(),
            outstanding: AtomicU64::new(0),
        });
        self.write_registry().insert(slot, Arc::clone(&info));
        self.send(Cmd::Add {
            slot,
            storage,
            info,
            sink,
        })
        .inspect_err(|_| {
            self.write_registry().remove(&slot);
        })?;
        Ok(TorrentSlot(slot))
    }

    /// Unregisters a torrent: waits until its queued pieces, reads and syncs are answered,
    /// then closes its files. Must not be called from a sink or reply (they run on the disk
    /// thread): that returns [`StorageError::WouldDeadlock`].
    pub fn remove_torrent(&self, slot: TorrentSlot) -> Result<(), StorageError> {
        if self.shared.disk_thread.get() == Some(&std::thread::current().id()) {
            return Err(StorageError::WouldDeadlock);
        }
        if self.write_registry().remove(&slot.0).is_none() {
            return Err(StorageError::UnknownTorrent);
        }
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        self.send(Cmd::Remove {
            slot: slot.0,
            done: done_tx,
        })?;
        done_rx.recv().map_err(|_| StorageError::Closed)
    }

    /// Queues a complete piece for hashing and, if it matches, writing. Exactly one
    /// [`DiskEvent`] follows for it. Refused (with no event) if the slot is unknown, the index
    /// out of range, the buffer built for another piece or length, or not complete.
    pub fn submit_piece(
        &self,
        slot: TorrentSlot,
        piece: u32,
        buf: Arc<SharedPiece>,
    ) -> Result<(), SubmitError> {
        let hash_tx = self.hash_tx.as_ref().ok_or(SubmitError::Closed)?;
        let torrents = self.read_registry();
        let info = torrents.get(&slot.0).ok_or(SubmitError::UnknownTorrent)?;
        let count = u32::try_from(info.hashes.len()).unwrap_or(u32::MAX);
        let len = info
            .piece_len(piece)
            .ok_or(SubmitError::PieceOutOfRange { piece, count })?;
        if buf.piece() != piece || buf.piece_len() != len {
            return Err(SubmitError::Mismatch {
                piece,
                len,
                buf_piece: buf.piece(),
                buf_len: buf.piece_len(),
            });
        }
        if !buf.is_complete() {
            return Err(SubmitError::Incomplete(piece));
        }
        let expected = info.hashes[piece as usize];
        // Counted while the registry lock is held, so `remove_torrent` sees it.
        info.outstanding.fetch_add(1, Ordering::AcqRel);
        self.shared
            .queued_bytes
            .fetch_add(u64::from(len), Ordering::AcqRel);
        if buf.is_streamed() {
            // Hashed while it landed: only the comparison is left, no hashing thread needed.
            let verified = buf.verify(&expected);
            let cmd = Cmd::Hashed {
                slot: slot.0,
                buf,
                verified,
            };
            return self.send(cmd).map_err(|_| {
                info.outstanding.fetch_sub(1, Ordering::AcqRel);
                self.shared
                    .queued_bytes
                    .fetch_sub(u64::from(len), Ordering::AcqRel);
                SubmitError::Closed
            });
        }
        let job = HashJob {
            slot: slot.0,
            buf,
            expected,
        };
        if hash_tx.send(job).is_err() {
            info.outstanding.fetch_sub(1, Ordering::AcqRel);
            self.shared
                .queued_bytes
                .fetch_sub(u64::from(len), Ordering::AcqRel);
            return Err(SubmitError::Closed);
        }
        Ok(())
    }

    /// Bytes of pieces submitted whose final event has not been delivered yet.
    pub fn queued_bytes(&self) -> u64 {
        self.shared.queued_bytes.load(Ordering::Acquire)
    }

    /// True while [`DiskPipeline::queued_bytes`] is above the configured limit: the engine
    /// should not claim new pieces.
    pub fn is_congested(&self) -> bool {
        self.queued_bytes() > self.config.queue_limit_bytes
    }

    /// Reads `len` bytes at `offset` in `piece` (for seeding); padding reads as zeros. The
    /// result goes to `reply` on the disk thread. Refused at once (reply dropped) if the slot
    /// is unknown, the range is outside the piece, or `len` is 0 or above `max_read_len`.
    pub fn read(
        &self,
        slot: TorrentSlot,
        piece: u32,
        offset: u32,
        len: u32,
        reply: ReadReply,
    ) -> Result<(), StorageError> {
        let out_of_range = StorageError::OutOfRange { piece, offset, len };
        let torrents = self.read_registry();
        let info = torrents.get(&slot.0).ok_or(StorageError::UnknownTorrent)?;
        let piece_len = info.piece_len(piece).unwrap_or(0);
        if len == 0
            || len > self.config.max_read_len
            || u64::from(offset) + u64::from(len) > u64::from(piece_len)
        {
            return Err(out_of_range);
        }
        info.outstanding.fetch_add(1, Ordering::AcqRel);
        self.send(Cmd::Read {
            slot: slot.0,
            piece,
            offset,
            len,
            reply,
        })
        .inspect_err(|_| {
            info.outstanding.fetch_sub(1, Ordering::AcqRel);
        })
    }

    /// `fdatasync`s every file of the torrent written since its last sync; `done` runs on the
    /// disk thread when all are synced. Covers every piece whose `PieceWritten` was delivered
    /// before this call (writes still in flight are not waited for).
    pub fn sync(&self, slot: TorrentSlot, done: SyncReply) -> Result<(), StorageError> {
        self.sync_inner(slot, false, done)
    }

    /// Like [`DiskPipeline::sync`] but `fdatasync`s every open file of the torrent, written
    /// by us or not: after a recheck, data found on disk may still be only in the page cache
    /// (written by a process that crashed), and must be durable before it is recorded.
    pub fn sync_all(&self, slot: TorrentSlot, done: SyncReply) -> Result<(), StorageError> {
        self.sync_inner(slot, true, done)
    }

    fn sync_inner(
        &self,
        slot: TorrentSlot,
        all: bool,
        done: SyncReply,
    ) -> Result<(), StorageError> {
        let torrents = self.read_registry();
        let info = torrents.get(&slot.0).ok_or(StorageError::UnknownTorrent)?;
        info.outstanding.fetch_add(1, Ordering::AcqRel);
        self.send(Cmd::Sync {
            slot: slot.0,
            all,
            done,
        })
        .inspect_err(|_| {
            info.outstanding.fetch_sub(1, Ordering::AcqRel);
        })
    }

    /// Stops the threads after every queued piece, read and sync is answered.
    pub fn shutdown(self) {}

    fn send(&self, cmd: Cmd) -> Result<(), StorageError> {
        self.cmd_tx.send(cmd).map_err(|_| StorageError::Closed)?;
        self.shared.waker.wake();
        Ok(())
    }

    fn read_registry(&self) -> std::sync::RwLockReadGuard<'_, HashMap<u32, Arc<TorrentInfo>>> {
        self.shared
            .torrents
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write_registry(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u32, Arc<TorrentInfo>>> {
        self.shared
            .torrents
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for DiskPipeline {
    fn drop(&mut self) {
        // Hashing threads drain their queue and exit when the channel closes.
        self.hash_tx = None;
        for h in self.hash_threads.drain(..) {
            let _ = h.join();
        }
        let _ = self.send(Cmd::Shutdown);
        let on_disk_thread = self.shared.disk_thread.get() == Some(&std::thread::current().id());
        if let Some(h) = self.disk_thread.take() {
            // Dropped from a sink (the last owner was a callback): the disk thread finishes
            // its work and exits by itself; joining it from itself would deadlock.
            if !on_disk_thread {
                let _ = h.join();
            }
        }
    }
}
