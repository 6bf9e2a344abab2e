//! Downloads one torrent (a .torrent file or a magnet link) into a directory, printing its
//! progress from the engine's alerts, and exits when it is complete.
//!
//! ```text
//! cargo run --release -p ringtorrent --example download -- <FILE.torrent|MAGNET> <OUT_DIR> \
//!     [--peer IP:PORT]... [--listen IP:PORT]
//! ```
//!
//! `--peer` dials a peer directly (repeatable); `--listen` is where to accept peers (default
//! `[::]:0`, any free port). With `--peer`, DHT and local service discovery are off, so a test
//! on one host talks to nobody else. Ctrl-C stops early; the resume file is saved, so a rerun
//! continues where this one stopped. `RUST_LOG=ringtorrent=debug` shows the engine's log.

// Not every example uses every item of `common` (seed, for one, reads no magnet links and waits
// for alerts in its own loop), and each example compiles the module anew.
#[allow(dead_code)]
mod common;

use std::net::SocketAddr;
use std::process::ExitCode;

use common::{addr_value, mib, percent, source_of, Alerts};
use ringtorrent::{AddTorrent, Alert, TorrentSource};

const USAGE: &str = "usage: download <FILE.torrent|MAGNET> <OUT_DIR> [--peer IP:PORT]... \
                     [--listen IP:PORT]";

struct Args {
    source: TorrentSource,
    out_dir: String,
    peers: Vec<SocketAddr>,
    listen: Option<SocketAddr>,
}

/// The arguments; `None` for `--help`.
fn parse_args() -> Result<Option<Args>, String> {
    let mut positional = Vec::new();
    let mut peers = Vec::new();
    let mut listen = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--peer" => peers.push(addr_value("--peer", args.next())?),
            "--listen" => listen = Some(addr_value("--listen", args.next())?),
            "-h" | "--help" => return Ok(None),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            _ => positional.push(arg),
        }
    }
    let [torrent, out_dir] = common::two_positional(positional)?;
    Ok(Some(Args {
        source: source_of(&torrent)?,
        out_dir,
        peers,
        listen,
    }))
}

#[tokio::main]
async fn main() -> ExitCode {
    common::init_tracing();
    common::main(parse_args(), USAGE, run).await
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let (engine, alerts) = common::start_engine(args.listen, !args.peers.is_empty())?;
    let mut add = AddTorrent::new(args.source, &args.out_dir);
    add.peers = args.peers;
    let id = engine.add_torrent(add)?;
    println!("listening on {}", engine.listen_addr());

    let mut failed = None;
    let mut alerts = Alerts::new(alerts);
    loop {
        let Some(alert) = alerts.next_or_interrupted().await else {
            break;
        };
        match alert {
            Alert::Stats { id: i, stats } if i == id => println!(
                "{:5.1}%  {:8.2} MiB/s down  {:8.2} MiB/s up  {} peers",
                percent(stats.wanted_verified_bytes, stats.wanted_bytes),
                mib(stats.download_rate_bytes_per_s),
                mib(stats.upload_rate_bytes_per_s),
                stats.peers
            ),
            Alert::MetadataProgress { peers, .. } => {
                println!("fetching metadata: {peers} peers have it")
            }
            Alert::MetadataReceived { name, .. } => println!("metadata received: {name}"),
            Alert::TorrentAdded {
                name, info_hash, ..
            } => println!("added {name} ({info_hash})"),
            Alert::ResumeAccepted { pieces, .. } => {
                println!("resume file accepted: {pieces} pieces already here")
            }
            Alert::Rechecked { reason, pieces, .. } => {
                println!("checked existing data ({reason}): {pieces} pieces verified")
            }
            Alert::PeerConnected { addr, .. } => println!("peer {addr} connected"),
            Alert::PeerDisconnected { addr, reason, .. } => {
                println!("peer {addr} disconnected: {reason}")
            }
            Alert::TrackerError { url, message, .. } => println!("tracker {url}: {message}"),
            Alert::TorrentComplete { id: i } if i == id => {
                let name = engine.torrents().into_iter().find(|t| t.id == id);
                println!("complete: {}", name.map_or(String::new(), |t| t.name));
                break;
            }
            Alert::TorrentError { message, .. } => {
                failed = Some(message);
                break;
            }
            _ => {}
        }
    }
    engine.shutdown().await?;
    match failed {
        Some(message) => Err(message.into()),
        None => Ok(()),
    }
}
