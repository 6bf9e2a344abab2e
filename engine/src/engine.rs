//! Public engine API. OWNER: lead.
pub struct Engine;
pub struct AddTorrent;
pub enum Alert {}
pub struct Config;
#[derive(Debug, thiserror::Error)]
pub enum EngineError {}
pub struct TorrentId;
pub enum TorrentSource {}
pub struct TorrentStats;
