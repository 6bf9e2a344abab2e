//! Options every payload benchmark (`swarm`, `seed`, `recheck`, `create`) takes.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use crate::size::parse_size;

/// The payload, how often to run, and where results and caches go.
#[derive(Debug, Clone, Args, Serialize)]
pub struct BenchArgs {
    /// Payload size.
    #[arg(long, default_value = "4GiB", value_parser = parse_size)]
    pub size: u64,
    #[arg(long, default_value = "256KiB", value_parser = parse_size)]
    pub piece_length: u64,
    /// Number of files the payload is split into (1 = a single-file torrent).
    #[arg(long, default_value_t = 1)]
    pub files: u32,
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// Also write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Cache for payloads, torrents and download directories.
    #[arg(long, default_value = "bench-cache")]
    pub cache: PathBuf,
    /// A run taking longer than this is killed and counted as failed.
    #[arg(long, default_value_t = 900)]
    pub timeout_s: u64,
    /// Seed of the payload generator.
    #[arg(long, default_value_t = 1)]
    pub payload_seed: u64,
}
