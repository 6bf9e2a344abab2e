//! Seeds a torrent from data already on disk: hash-checks it, then prints the connected peers
//! and the upload rate every few seconds until Ctrl-C, then shuts the engine down.
//!
//! ```text
//! cargo run --release -p ringtorrent --example seed -- <FILE.torrent> <DATA_DIR> \
//!     [--listen IP:PORT] [--every SECS]
//! ```
//!
//! `DATA_DIR` holds the content as a download into it would have left it: the file itself for
//! a single-file torrent, the torrent's directory for a multi-file one. `--listen` is where
//! peers reach us (default `[::]:0`, any free port; the address is printed). With `--listen`,
//! DHT and local service discovery are off, so a test on one host talks to nobody else.
//! `--every` sets the report interval (default 5 s).

// Not every example uses every item of `common` (seed, for one, reads no magnet links and waits
// for alerts in its own loop), and each example compiles the module anew.
#[allow(dead_code)]
mod common;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use common::{addr_value, mib};
use ringtorrent::{AddTorrent, Alert, Engine, TorrentId, TorrentSource};

const USAGE: &str = "usage: seed <FILE.torrent> <DATA_DIR> [--listen IP:PORT] [--every SECS]";

struct Args {
    torrent: String,
    data_dir: String,
    listen: Option<SocketAddr>,
    every: Duration,
}

/// The arguments; `None` for `--help`.
fn parse_args() -> Result<Option<Args>, String> {
    let mut positional = Vec::new();
    let mut listen = None;
    let mut every = Duration::from_secs(5);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = Some(addr_value("--listen", args.next())?),
            "--every" => {
                let v = args.next().ok_or("--every needs a number of seconds")?;
                let secs: u64 =
                    v.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                        format!("--every {v:?}: expected whole seconds, at least 1")
                    })?;
                every = Duration::from_secs(secs);
            }
            "-h" | "--help" => return Ok(None),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            _ => positional.push(arg),
        }
    }
    let [torrent, data_dir] = common::two_positional(positional)?;
    Ok(Some(Args {
        torrent,
        data_dir,
        listen,
        every,
    }))
}

#[tokio::main]
async fn main() -> ExitCode {
    common::init_tracing();
    common::main(parse_args(), USAGE, run).await
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let (engine, mut alerts) = common::start_engine(args.listen, args.listen.is_some())?;

    let mut add = AddTorrent::new(TorrentSource::File(args.torrent.into()), &args.data_dir);
    // Hash the data first and keep the pieces that verify. This blocks until the check is done
    // (`Alert::CheckProgress` reports it meanwhile).
    add.check_existing = true;
    let id = engine.add_torrent(add)?;
    let stats = engine.stats(id).ok_or("the torrent vanished")?;
    println!(
        "seeding {} of {} pieces, listening on {}",
        stats.pieces_have,
        stats.pieces_total,
        engine.listen_addr()
    );
    if !stats.complete {
        println!("warning: the data is incomplete; the missing pieces are downloaded from peers");
    }

    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut report = tokio::time::interval(args.every);
    report.tick().await; // The first tick is immediate.
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            _ = report.tick() => print_report(&engine, id).await?,
            alert = alerts.recv() => match alert {
                Some(Alert::TorrentError { message, .. }) => eprintln!("torrent error: {message}"),
                Some(Alert::TorrentComplete { .. }) => println!("every piece is verified"),
                Some(_) => {}
                None => break,
            },
        }
    }
    println!("shutting down");
    engine.shutdown().await?;
    Ok(())
}

/// One report: the torrent's upload rate and total, then a line per connected peer.
async fn print_report(engine: &Engine, id: TorrentId) -> Result<(), Box<dyn std::error::Error>> {
    let stats = engine.stats(id).ok_or("the torrent vanished")?;
    println!(
        "upload {:.2} MiB/s, {:.1} MiB sent in all, {} peers",
        mib(stats.upload_rate_bytes_per_s),
        mib(stats.uploaded_bytes),
        stats.peers
    );
    // `peers` asks every shard and may block for a moment: keep it off the async threads.
    let e = engine.clone();
    let peers = tokio::task::spawn_blocking(move || e.peers(id)).await??;
    for p in peers {
        println!(
            "  {:<40} {:<20} {:8.2} MiB/s up  {:8.1} MiB sent  has {}/{}",
            p.addr.to_string(),
            if p.client.is_empty() { "?" } else { &p.client },
            mib(p.upload_rate_bytes_per_s),
            mib(p.uploaded_bytes),
            p.pieces,
            p.pieces_total
        );
    }
    Ok(())
}
