//! ringtorrent: a Linux BitTorrent engine built on io_uring.
//!
//! Layers, from the bottom:
//! - sans-IO protocol code: [`bencode`], [`metainfo`], [`magnet`], [`wire`], [`handshake`],
//!   [`ext`], [`peer`], [`picker`], [`choker`], [`tracker`] message formats. None of these
//!   modules touches a socket, a file or a clock (`tests/sans_io.rs` checks their imports).
//! - the runtime: [`shard`] threads, each driving its own io_uring with a subset of the peer
//!   connections, and the tracker announcer; storage and hashing live in the `uring-disk` crate.
//! - the public API: [`Engine`], [`AddTorrent`], [`Alert`].
//!
//! See DESIGN.md at the repository root for the anatomy of a block fetch and the invariants.
#![deny(unsafe_code)]

pub mod bencode;
pub mod choker;
pub mod engine;
pub mod ext;
pub mod files;
pub mod handshake;
pub mod lsd;
pub mod magnet;
pub mod metadata;
pub mod metainfo;
pub mod peer;
pub mod pex;
pub mod picker;
pub mod ratelimit;
pub mod resume;
pub mod shard;
pub mod torrent;
pub mod tracker;
pub mod types;
pub mod wire;

pub use engine::{
    AddTorrent, Alert, Backend, Config, DhtConfig, Engine, EngineError, RemoveData, TorrentId,
    TorrentSource, TorrentStats, TorrentSummary, WasteStats, ZeroCopyUploads,
};
pub use files::FilePriority;
pub use peer::PeerInfo;
pub use types::{BlockRef, InfoHash, Lengths, PeerId, PieceIndex, BLOCK_LEN};
