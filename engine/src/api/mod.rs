//! Types shared by the engine's public API (`engine`) and its shard runtime (`shard`): the
//! alerts and the id they name torrents by, stats snapshots, why a connection ended, and the
//! settings a shard reads. Both import this module and neither imports the other's types
//! through it: `engine` drives `shard` (commands), `shard` reports through [`AlertSink`].

mod alert;
mod disconnect;
mod settings;
mod stats;

pub use alert::{Alert, AlertSink, TorrentId};
pub use disconnect::{DisconnectReason, Fault};
pub use settings::{Backend, TransportMode, ZeroCopyUploads};
pub use stats::{ShardStats, TorrentStats, WasteStats};
