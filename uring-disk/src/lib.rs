//! io_uring storage and hashing for ringtorrent.
//!
//! This crate and the engine's shard ring driver are the only places where `unsafe` is
//! allowed; every `unsafe` block carries a `// SAFETY:` line and the public API is safe. It does
//! not depend on the engine: piece indices are plain `u32` here, checked against each torrent's
//! layout.
//!
//! Components:
//! - [`hash`]: SHA-1 of pieces (BEP 3), the [`VerifiedPiece`] witness that only this crate's
//!   hashing code can mint, [`hash_pieces`] for torrent creation and [`check_pieces`] for
//!   rechecks (multi-threaded, streaming `pread`).
//! - [`BufferPool`] / [`PooledBuf`]: page-aligned buffers, touched once, reused forever.
//! - [`SharedPiece`]: a piece buffer that shard threads fill block by block, with per-block
//!   atomic ownership ([`BlockWriter`]).
//! - [`Storage`]: a torrent's files (BEP 47 padding files are never stored), opened buffered
//!   and O_DIRECT, and how a piece maps onto them ([`Span`]).
//! - [`DiskPipeline`]: hashing threads plus a disk thread driving io_uring (or blocking
//!   syscalls when [`uring_available`] refuses); the engine's only interface to disk.
//!
//! Internals: `ops/` holds one file per disk operation (write, read, fsync, fallocate), each
//! owning its descriptor and buffer until its completion; `driver` runs them on the ring or
//! with blocking syscalls; `pipeline/` turns pieces, reads and syncs into operations.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod driver;
mod error;
pub mod hash;
mod layout;
mod ops;
mod piece;
mod pipeline;
mod pool;
mod probe;
mod storage;

pub use driver::Backend;
pub use error::{IoOp, ProbeError, StorageError, SubmitError};
pub use hash::{check_pieces, hash_pieces, VerifiedPiece};
pub use layout::{Span, Spans, StorageFile};
pub use piece::{BlockDone, BlockError, BlockWriter, SharedPiece, WriteOutcome};
pub use pipeline::{
    DiskConfig, DiskEvent, DiskPipeline, ReadBuf, ReadReply, Sink, SyncReply, TorrentSlot,
};
pub use pool::{BufferPool, PoolError, PooledBuf, ALIGN};
pub use probe::{uring_available, NO_URING_ENV};
pub use storage::{
    BlockReader, DirectPiece, FileSelector, MappedRange, OpenFile, ReadPart, Selection, Storage,
    StorageOptions,
};
