//! rt-testkit: what the integration tests, the interop tests and the benchmark need to run real
//! BitTorrent peers next to ringtorrent on loopback.
//!
//! - [`payload`]: deterministic payloads (single file or awkward multi-file trees), byte-exact
//!   verification by regenerating the stream, a cache for large ones, deliberate corruption.
//! - [`torrent`]: torrents made by libtorrent and mktorrent, read back by the kit's own
//!   [`bencode`] reader (independent of the engine's), announce URLs rewritten in place.
//! - Real peers, each a [`proc::Proc`] guard that kills its process group on drop and prints its
//!   log if the test panics: [`libtorrent`] seeder/leecher, [`aria2`] seeder/leecher,
//!   [`transmission`] seeder and leecher, [`tracker::Opentracker`], [`fixed_tracker`] (fixed
//!   peer list), [`rt_seeder`] (`ringtorrent seed`), and [`dht::LocalDht`], a DHT of
//!   `mainline` nodes on 127.0.0.x for DHT tests.
//! - [`udp_relay::UdpRelay`]: a UDP relay that drops and reorders datagrams, for uTP over a
//!   lossy path.
//! - [`shaper::Shaper`]: a TCP relay that adds latency, jitter and bandwidth caps (and can
//!   reset connections mid-transfer), for WAN-like benchmarks without `sch_netem`.
//! - [`ringtorrent`]: builds and runs the `ringtorrent` binary under test.
//! - [`clients`]: the downloaders the benchmark compares, as commands.
//!
//! Invariants: every address is in 127.0.0.0/8 (leechers 127.0.0.1, seeders 127.0.0.2 and up,
//! see [`net`]); every wait is bounded ([`wait`]); every process has an owner that kills it.
//! Facts about the real clients on this machine: shared/INTEROP.md.

pub mod adversary;
pub mod aria2;
pub mod bencode;
pub mod clients;
pub mod dht;
pub mod fixed_tracker;
pub mod hostile;
pub mod hostile_tracker;
pub mod libtorrent;
pub mod net;
pub mod payload;
pub mod proc;
pub mod require;
pub mod ringtorrent;
mod rng;
pub mod rt_seeder;
pub mod shaper;
pub mod torrent;
pub mod tracker;
pub mod transmission;
pub mod udp_relay;
pub mod wait;

use std::path::PathBuf;

pub use payload::PayloadSpec;
pub use proc::Proc;
pub use ringtorrent::{ringtorrent_bin, run_download, Download, DownloadOutcome, RunningDownload};
pub use torrent::TorrentMeta;
pub use wait::wait_until;

/// The interpreter with the Debian `python3-libtorrent` bindings.
pub fn python() -> &'static str {
    "/usr/bin/python3"
}

/// A helper script from `tests/scripts/`.
pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}
