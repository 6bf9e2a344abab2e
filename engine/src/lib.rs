//! ringtorrent: a Linux BitTorrent engine built on io_uring.
//!
//! # Embedding
//!
//! Start an [`Engine`] with a [`Config`], take its [`Alert`] stream once with
//! [`Engine::alerts`], add torrents with [`Engine::add_torrent`] (an [`AddTorrent`] from a
//! .torrent file, its bytes, a parsed [`metainfo::Metainfo`] or a [`magnet::Magnet`]), and
//! stop it with [`Engine::shutdown`]. Progress arrives as [`Alert::Stats`] once a second per
//! torrent, or on demand from [`Engine::stats`] and [`Engine::torrents`].
//!
//! ```no_run
//! use ringtorrent::{AddTorrent, Alert, Config, Engine, TorrentSource};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::start(Config::default())?;
//! let mut alerts = engine.alerts().expect("the first call returns the stream");
//! let id = engine.add_torrent(AddTorrent::new(
//!     TorrentSource::File("file.torrent".into()),
//!     "downloads",
//! ))?;
//! while let Some(alert) = alerts.recv().await {
//!     match alert {
//!         Alert::Stats { id: i, stats } if i == id => {
//!             eprintln!("{} of {} bytes", stats.wanted_verified_bytes, stats.wanted_bytes)
//!         }
//!         Alert::TorrentComplete { id: i } if i == id => break,
//!         _ => {}
//!     }
//! }
//! engine.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! The examples in `engine/examples/` (download, bulk, seed, progress) are complete programs.
//!
//! # Layers
//!
//! From the bottom:
//! - sans-IO protocol code: [`bencode`], [`metainfo`], [`magnet`], and internal modules for the
//!   peer wire protocol, handshakes, extensions, the piece picker, the choker and tracker
//!   message formats. None of these touches a socket, a file or a clock
//!   (`engine/tests/sans_io.rs` checks their imports).
//! - the runtime: shard threads, each driving its own io_uring with a subset of the peer
//!   connections, and the tracker announcer; storage and hashing live in the `uring-disk` crate.
//! - the public API: [`Engine`], [`AddTorrent`], [`Alert`].
//!
//! See DESIGN.md at the repository root for the anatomy of a block fetch and the invariants.
#![deny(unsafe_code)]
#![warn(missing_docs)]

// The API: the engine's types are re-exported below; these modules are what an embedder uses
// besides them (parsing and creating torrents and magnets, file selection, ids and hashes).
pub mod bencode;
pub mod files;
pub mod magnet;
pub mod metainfo;
pub mod types;

// Internals.
mod api;
mod choker;
mod engine;
mod lsd;
mod metadata;
mod ratelimit;
mod shard;

// Not API (no stability promise, hidden from the docs): public only for the fuzz targets,
// benchmarks and integration tests that drive the protocol code directly.
// Not API: used by the fuzz targets (`fuzz/`) and `engine/tests/loopback.rs`.
#[doc(hidden)]
pub mod ext;
// Not API: used by the fuzz targets and `engine/tests/` (choke, loopback, upload_backlog).
#[doc(hidden)]
pub mod handshake;
// Not API yet (no connection speaks it so far): MSE/PE, used by the fuzz targets.
#[doc(hidden)]
pub mod mse;
// Not API (`PeerInfo` is re-exported at the root): used by `engine/tests/` (choke, sim).
#[doc(hidden)]
pub mod peer;
// Not API: used by the fuzz targets.
#[doc(hidden)]
pub mod pex;
// Not API: used by `bench-harness/benches/picker.rs` and `engine/tests/sim.rs`.
#[doc(hidden)]
pub mod picker;
// Not API (the engine reads and writes resume files itself): used by the fuzz targets.
#[doc(hidden)]
pub mod resume;
// Not API: used by `engine/tests/sim.rs`.
#[doc(hidden)]
pub mod torrent;
// Not API: used by the fuzz targets, `tests/tests/tracker_opentracker.rs` and the CLI
// (`tracker::tiers::usable_url`).
#[doc(hidden)]
pub mod tracker;
// Not API: used by the fuzz targets.
#[doc(hidden)]
pub mod utp;
// Not API: used by the fuzz targets, `bench-harness/benches/micro.rs` and `engine/tests/`.
#[doc(hidden)]
pub mod wire;

pub use api::{DisconnectReason, Fault, TransportMode};
pub use engine::{
    AddTorrent, Alert, Backend, Config, DhtConfig, EncryptionPolicy, Engine, EngineError,
    RemoveData, ShardStats, TorrentId, TorrentSource, TorrentStats, TorrentSummary, WasteStats,
    ZeroCopyUploads, DEFAULT_DHT_BOOTSTRAP,
};
pub use files::FilePriority;
pub use peer::PeerInfo;
pub use types::{BlockRef, InfoHash, Lengths, PeerId, PieceIndex, BLOCK_LEN};
