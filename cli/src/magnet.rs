//! Magnet links in the CLI: `download 'magnet:?...'` (fetch the metadata, then download as from
//! a .torrent) and `info 'magnet:?...' --fetch`.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ringtorrent::magnet::Magnet;
use ringtorrent::{AddTorrent, Alert, Engine, TorrentId, TorrentSource};
use tokio::sync::mpsc::UnboundedReceiver;

/// Whether a command-line source is a magnet URI rather than a path.
pub fn is_magnet(source: &str) -> bool {
    source
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("magnet:"))
}

pub fn parse(source: &str) -> anyhow::Result<Magnet> {
    Magnet::parse(source).with_context(|| format!("bad magnet link {source:?}"))
}

/// A name to show before the metadata is known: `dn`, else the info-hash.
pub fn display_name(m: &Magnet) -> String {
    m.name.clone().unwrap_or_else(|| m.info_hash.to_hex())
}

/// How `add_and_wait` reports and how long it waits.
#[derive(Clone, Copy)]
pub struct WaitOpts {
    pub quiet: bool,
    pub verbose: bool,
    /// Give up fetching the metadata after this instant.
    pub deadline: Option<Instant>,
}

/// Adds a magnet and waits until its torrent is set up, showing "fetching metadata (n peers)".
/// Alerts of other torrents are kept in `held`.
pub async fn add_and_wait(
    engine: &Engine,
    add: AddTorrent,
    name: &str,
    alerts: &mut UnboundedReceiver<Alert>,
    held: &mut Vec<Alert>,
    opts: WaitOpts,
) -> anyhow::Result<TorrentId> {
    let WaitOpts {
        quiet,
        verbose,
        deadline,
    } = opts;
    let id = engine.add_torrent(add)?;
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal() && !quiet;
    let mut last_line: Option<Instant> = None;
    loop {
        let a = tokio::select! {
            a = alerts.recv() => a.context("the engine stopped")?,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                if deadline.is_some_and(|d| Instant::now() > d) {
                    bail!("{name}: timed out fetching the metadata");
                }
                continue;
            }
        };
        match a {
            Alert::MetadataProgress {
                id: i,
                peers,
                connecting,
            } if i == id => {
                let due = last_line.is_none_or(|t| t.elapsed() >= Duration::from_secs(2));
                if !quiet && (tty || due) {
                    last_line = Some(Instant::now());
                    let line = format!(
                        "{name}: fetching metadata ({peers} peers, {connecting} connections)"
                    );
                    if tty {
                        eprint!("\r{line}\x1b[K");
                    } else {
                        eprintln!("{line}");
                    }
                }
            }
            Alert::MetadataReceived { id: i, name: n, .. } if i == id => {
                if !quiet {
                    if tty {
                        eprint!("\r\x1b[K");
                    }
                    eprintln!(
                        "{n}: metadata received in {:.2} s",
                        started.elapsed().as_secs_f64()
                    );
                }
            }
            Alert::PeerDisconnected {
                id: i,
                addr,
                reason,
            } if i == id && verbose => {
                eprintln!("{id}: peer {addr} disconnected: {reason}");
            }
            Alert::DhtPeers { id: i, peers } if i == id && verbose => {
                eprintln!("{id}: DHT: {peers} peers");
            }
            Alert::TorrentAdded { id: i, .. } if i == id => return Ok(id),
            Alert::TorrentError { id: i, message } if i == id => bail!("{name}: {message}"),
            other => held.push(other),
        }
    }
}

/// Writes the torrent's .torrent file to `dest` (a file, or a directory: `<name>.torrent`).
pub fn save_torrent(engine: &Engine, id: TorrentId, dest: &Path) -> anyhow::Result<()> {
    let bytes = engine.torrent_file(id).context("torrent vanished")?;
    let path = if dest.is_dir() {
        let meta = engine.metainfo(id).context("torrent vanished")?;
        dest.join(format!("{}.torrent", safe_file_name(&meta.info.name)))
    } else {
        dest.to_path_buf()
    };
    std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// A torrent's name as one file name component.
fn safe_file_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| if c == '/' || c == '\0' { '_' } else { c })
        .collect();
    if s.is_empty() || s == "." || s == ".." {
        "torrent".into()
    } else {
        s
    }
}

/// `info --fetch`: fetch a magnet's metadata with a short-lived engine and return the
/// .torrent bytes (nothing is downloaded: the engine stops as soon as the metadata is in).
pub fn fetch_torrent_file(
    magnet: &Magnet,
    peers: &[SocketAddr],
    timeout: Duration,
    dht: &crate::util::DhtArgs,
) -> anyhow::Result<Vec<u8>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let dir = tempfile::tempdir().context("cannot make a temporary directory")?;
        let config = ringtorrent::Config {
            listen: "0.0.0.0:0".parse().context("listen address")?,
            // A one-off engine: no state file.
            dht: dht.config(None),
            ..ringtorrent::Config::default()
        };
        let engine = Engine::start(config).context("cannot start the engine")?;
        let mut alerts = engine.alerts().context("alert stream already taken")?;
        let mut add = AddTorrent::new(TorrentSource::Magnet(Box::new(magnet.clone())), dir.path());
        add.peers = peers.to_vec();
        let deadline = Instant::now() + timeout;
        let res = add_and_wait(
            &engine,
            add,
            &display_name(magnet),
            &mut alerts,
            &mut Vec::new(),
            WaitOpts {
                quiet: true,
                verbose: false,
                deadline: Some(deadline),
            },
        )
        .await;
        let bytes = res.and_then(|id| engine.torrent_file(id).context("torrent vanished"));
        engine.shutdown().await.ok();
        bytes
    })
}
