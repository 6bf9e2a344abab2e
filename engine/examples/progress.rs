//! Feeds the engine's alerts into a progress display of one's own: a text bar per torrent on
//! stderr, redrawn on every [`Alert::Stats`], with the list of torrents from
//! [`Engine::torrents`]. Exits when every torrent is complete.
//!
//! ```text
//! cargo run --release -p ringtorrent --example progress -- [--peer IP:PORT]... \
//!     <OUT_DIR> <FILE.torrent|MAGNET>...
//! ```
//!
//! On a terminal the bars are redrawn in place; otherwise (stderr redirected) one line per
//! torrent is printed each second. `--peer` dials a peer for every torrent (repeatable); with
//! it, DHT and local service discovery are off, so a test on one host talks to nobody else.

// Not every example uses every item of `common` (seed, for one, reads no magnet links and waits
// for alerts in its own loop), and each example compiles the module anew.
#[allow(dead_code)]
mod common;

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use common::{addr_value, mib, source_of, Alerts, Next};
use ringtorrent::{AddTorrent, Alert, Engine, TorrentId, TorrentSource, TorrentStats};

const USAGE: &str = "usage: progress [--peer IP:PORT]... <OUT_DIR> <FILE.torrent|MAGNET>...";
/// Characters in a bar.
const BAR_WIDTH: usize = 30;

struct Args {
    peers: Vec<SocketAddr>,
    out_dir: String,
    sources: Vec<TorrentSource>,
}

/// The arguments; `None` for `--help`.
fn parse_args() -> Result<Option<Args>, String> {
    let mut positional = Vec::new();
    let mut peers = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--peer" => peers.push(addr_value("--peer", args.next())?),
            "-h" | "--help" => return Ok(None),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            _ => positional.push(arg),
        }
    }
    let (out_dir, sources) = common::out_dir_and_torrents(positional, source_of)?;
    Ok(Some(Args {
        peers,
        out_dir,
        sources,
    }))
}

#[tokio::main]
async fn main() -> ExitCode {
    common::main(parse_args(), USAGE, run).await
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let (engine, alerts) = common::start_engine(None, !args.peers.is_empty())?;
    let mut ids = Vec::new();
    for source in args.sources {
        let mut add = AddTorrent::new(source, &args.out_dir);
        add.peers = args.peers.clone();
        ids.push(engine.add_torrent(add)?);
    }

    let mut display = Display::new();
    let mut errors: HashMap<TorrentId, String> = HashMap::new();
    let mut alerts = Alerts::new(alerts);
    loop {
        match alerts.next().await {
            Next::Alert(Alert::Stats { .. } | Alert::MetadataProgress { .. }) => {
                display.draw(&engine, &ids, &errors, false)
            }
            Next::Alert(Alert::TorrentError { id, message }) => {
                errors.insert(id, message);
                display.draw(&engine, &ids, &errors, true);
            }
            Next::Alert(Alert::TorrentComplete { .. }) => {
                display.draw(&engine, &ids, &errors, true)
            }
            Next::Alert(_) => continue,
            Next::Interrupted | Next::Closed => break,
        }
        // Done when every torrent completed or failed (a magnet still fetching its metadata is
        // not in `torrents()` yet, so it counts as neither).
        let summaries = engine.torrents();
        let finished = ids.iter().all(|id| {
            errors.contains_key(id) || summaries.iter().any(|t| t.id == *id && t.stats.complete)
        });
        if finished {
            break;
        }
    }
    engine.shutdown().await?;
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("{} of {} torrents failed", errors.len(), ids.len()).into())
    }
}

/// The bars on stderr.
struct Display {
    /// Whether stderr is a terminal (redraw in place) or not (plain lines).
    terminal: bool,
    /// Lines drawn last time, to move back up over them.
    lines: usize,
    last: Option<Instant>,
}

impl Display {
    fn new() -> Self {
        Display {
            terminal: std::io::stderr().is_terminal(),
            lines: 0,
            last: None,
        }
    }

    /// Draws a bar per torrent, at most a few times a second (each torrent's `Stats` alert
    /// arrives once a second) unless `now`.
    fn draw(
        &mut self,
        engine: &Engine,
        ids: &[TorrentId],
        errors: &HashMap<TorrentId, String>,
        now: bool,
    ) {
        let min_gap = if self.terminal {
            Duration::from_millis(200)
        } else {
            Duration::from_millis(950)
        };
        if !now && self.last.is_some_and(|t| t.elapsed() < min_gap) {
            return;
        }
        self.last = Some(Instant::now());
        let summaries = engine.torrents();
        let mut out = String::new();
        if self.terminal && self.lines > 0 {
            // Back to the first bar's line.
            out.push_str(&format!("\x1b[{}A", self.lines));
        }
        for id in ids {
            let line = match (summaries.iter().find(|t| t.id == *id), errors.get(id)) {
                (_, Some(e)) => format!("{id} failed: {e}"),
                (Some(t), None) => bar(&t.name, &t.stats),
                (None, None) => format!("{id} fetching metadata..."),
            };
            if self.terminal {
                out.push_str("\r\x1b[2K");
            }
            out.push_str(&line);
            out.push('\n');
        }
        self.lines = ids.len();
        let _ = std::io::stderr().write_all(out.as_bytes());
    }
}

/// `name [#########.........]  45.2%  3.10 MiB/s  4 peers`.
fn bar(name: &str, s: &TorrentStats) -> String {
    let fraction = if s.wanted_bytes == 0 {
        1.0
    } else {
        s.wanted_verified_bytes as f64 / s.wanted_bytes as f64
    };
    let filled = ((fraction * BAR_WIDTH as f64) as usize).min(BAR_WIDTH);
    let state = if s.complete {
        "done".to_string()
    } else if s.paused {
        "paused".to_string()
    } else {
        format!(
            "{:.2} MiB/s  {} peers",
            mib(s.download_rate_bytes_per_s),
            s.peers
        )
    };
    format!(
        "[{}{}] {:5.1}%  {state}  {name}",
        "#".repeat(filled),
        ".".repeat(BAR_WIDTH - filled),
        fraction * 100.0
    )
}
