//! Downloads several torrents into one directory with at most N of them active at once: a
//! queue in the program starts the next torrent each time one completes (or fails).
//!
//! ```text
//! cargo run --release -p ringtorrent --example bulk -- [-j N] [--peer IP:PORT]... \
//!     <OUT_DIR> <FILE.torrent|MAGNET>...
//! ```
//!
//! `-j` is how many torrents download at once (default 2). A completed torrent is removed
//! from the engine with its data kept ([`Engine::remove_torrent`] with [`RemoveData::Keep`]),
//! so that only the active ones hold connections; an application that wants to seed them
//! would leave them in (or [`Engine::pause`] them) instead. `--peer` dials a peer for every
//! torrent (repeatable); with it, DHT and local service discovery are off, so a test on one
//! host talks to nobody else. Exits with status 1 if any torrent failed.

// Not every example uses every item of `common` (seed, for one, reads no magnet links and waits
// for alerts in its own loop), and each example compiles the module anew.
#[allow(dead_code)]
mod common;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use common::{addr_value, mib, percent, Alerts};
use ringtorrent::{AddTorrent, Alert, Engine, RemoveData, TorrentId, TorrentSource};

const USAGE: &str = "usage: bulk [-j N] [--peer IP:PORT]... <OUT_DIR> <FILE.torrent|MAGNET>...";

struct Args {
    jobs: usize,
    peers: Vec<SocketAddr>,
    out_dir: PathBuf,
    /// What to download: a label for messages and the source.
    torrents: Vec<(String, TorrentSource)>,
}

/// The arguments; `None` for `--help`.
fn parse_args() -> Result<Option<Args>, String> {
    let mut positional = Vec::new();
    let mut peers = Vec::new();
    let mut jobs = 2;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-j" | "--jobs" => {
                let v = args.next().ok_or("-j needs a number")?;
                jobs = v.parse().ok().filter(|j| *j > 0).ok_or_else(|| {
                    format!("-j {v:?}: expected a number of torrents, at least 1")
                })?;
            }
            "--peer" => peers.push(addr_value("--peer", args.next())?),
            "-h" | "--help" => return Ok(None),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            _ => positional.push(arg),
        }
    }
    let (out_dir, torrents) = common::out_dir_and_torrents(positional, source_of)?;
    Ok(Some(Args {
        jobs,
        peers,
        out_dir: PathBuf::from(out_dir),
        torrents,
    }))
}

/// A magnet link, or else the path of a .torrent file; with a label for messages.
fn source_of(arg: &str) -> Result<(String, TorrentSource), String> {
    let source = common::source_of(arg)?;
    let label = match &source {
        TorrentSource::Magnet(magnet) => magnet
            .name
            .clone()
            .unwrap_or_else(|| magnet.info_hash.to_hex()),
        _ => arg.to_string(),
    };
    Ok((label, source))
}

#[tokio::main]
async fn main() -> ExitCode {
    common::init_tracing();
    common::main(parse_args(), USAGE, run).await
}

/// The queue of torrents not started yet, those downloading, and how each ended.
struct Bulk {
    engine: Engine,
    peers: Vec<SocketAddr>,
    out_dir: PathBuf,
    jobs: usize,
    queue: VecDeque<(String, TorrentSource)>,
    active: HashMap<TorrentId, String>,
    /// Label, then `None` if it completed or the error.
    finished: Vec<(String, Option<String>)>,
}

impl Bulk {
    /// Starts queued torrents until `jobs` are active or the queue is empty.
    fn fill(&mut self) {
        while self.active.len() < self.jobs {
            let Some((label, source)) = self.queue.pop_front() else {
                return;
            };
            let mut add = AddTorrent::new(source, &self.out_dir);
            add.peers = self.peers.clone();
            match self.engine.add_torrent(add) {
                Ok(id) => {
                    println!("{id} started: {label}");
                    self.active.insert(id, label);
                }
                Err(e) => {
                    println!("failed to add {label}: {e}");
                    self.finished.push((label, Some(e.to_string())));
                }
            }
        }
    }

    /// Takes `id` out of the engine (its data stays), records how it ended and starts the
    /// next torrent.
    async fn finish(&mut self, id: TorrentId, error: Option<String>) {
        let Some(label) = self.active.remove(&id) else {
            return;
        };
        match &error {
            None => println!("{id} complete: {label}"),
            Some(e) => println!("{id} failed: {label}: {e}"),
        }
        // `remove_torrent` waits for the torrent's queued writes: keep it off the async threads.
        let engine = self.engine.clone();
        let removed =
            tokio::task::spawn_blocking(move || engine.remove_torrent(id, RemoveData::Keep))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
        if let Err(e) = removed {
            println!("{id}: removing it failed: {e}");
        }
        self.finished.push((label, error));
        self.fill();
    }
}

/// Downloads everything; `Ok(false)` if some torrent failed.
async fn run(args: Args) -> Result<bool, Box<dyn std::error::Error>> {
    let (engine, alerts) = common::start_engine(None, !args.peers.is_empty())?;
    let total = args.torrents.len();
    let mut bulk = Bulk {
        engine: engine.clone(),
        peers: args.peers,
        out_dir: args.out_dir,
        jobs: args.jobs,
        queue: args.torrents.into(),
        active: HashMap::new(),
        finished: Vec::new(),
    };
    bulk.fill();

    let mut alerts = Alerts::new(alerts);
    while !bulk.active.is_empty() {
        let Some(alert) = alerts.next_or_interrupted().await else {
            break;
        };
        match alert {
            Alert::TorrentAdded { id, name, .. } => {
                // A better label than a path or a hash, now that the metainfo is known.
                if let Some(label) = bulk.active.get_mut(&id) {
                    *label = name;
                }
            }
            Alert::Stats { id, stats } => {
                if let Some(label) = bulk.active.get(&id) {
                    let pct = percent(stats.wanted_verified_bytes, stats.wanted_bytes);
                    println!(
                        "{id} {pct:5.1}%  {:7.2} MiB/s  {:3} peers  {label}",
                        mib(stats.download_rate_bytes_per_s),
                        stats.peers,
                    );
                }
            }
            Alert::TorrentComplete { id } => bulk.finish(id, None).await,
            Alert::TorrentError { id, message } => bulk.finish(id, Some(message)).await,
            _ => {}
        }
    }
    engine.shutdown().await?;

    let failed = bulk.finished.iter().filter(|(_, e)| e.is_some()).count();
    let done = bulk.finished.len() - failed;
    println!(
        "{done} complete, {failed} failed, {} not finished (of {total})",
        total - bulk.finished.len()
    );
    for (label, error) in &bulk.finished {
        if let Some(e) = error {
            println!("  failed: {label}: {e}");
        }
    }
    Ok(failed == 0 && bulk.finished.len() == total)
}
