//! `ringtorrent download`: download torrents through the engine with a progress display.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use ringtorrent::{AddTorrent, Alert, Config, Engine, TorrentId, TorrentSource};

/// Arguments of `download`.
#[derive(clap::Args, Debug)]
pub struct DownloadArgs {
    /// .torrent files to download.
    #[arg(required = true)]
    pub torrents: Vec<PathBuf>,
    /// Directory to download into.
    #[arg(short = 'o', long = "output", default_value = ".")]
    pub output: PathBuf,
    /// A peer to connect to (repeatable), e.g. 127.0.0.2:6881.
    #[arg(long = "peer")]
    pub peers: Vec<SocketAddr>,
    /// Address to accept peers on.
    #[arg(long, default_value = "0.0.0.0:0")]
    pub listen: SocketAddr,
    /// Shard threads (default: one per core).
    #[arg(long)]
    pub shards: Option<usize>,
    /// Do not contact the torrents' trackers.
    #[arg(long)]
    pub no_trackers: bool,
    /// Use the epoll backend instead of io_uring.
    #[arg(long)]
    pub no_uring: bool,
    /// No progress output, only the final summary.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print peer and piece events.
    #[arg(short, long)]
    pub verbose: bool,
    /// After completing, keep seeding until uploaded / size reaches this ratio (aria2's
    /// semantics; 0 = do not seed). With --seed-time, whichever comes first ends seeding.
    #[arg(long, default_value_t = 0.0)]
    pub seed_ratio: f64,
    /// After completing, keep seeding for this many minutes (0 = do not seed).
    #[arg(long, default_value_t = 0.0)]
    pub seed_time: f64,
    /// Give up after this many seconds without completing (0 = never).
    #[arg(long, default_value_t = 0)]
    pub timeout: u64,
}

struct Progress {
    name: String,
    bar: Option<ProgressBar>,
    done: bool,
    total: u64,
    verified: u64,
    rate: u64,
    peers: u32,
}

/// Runs the download; `Ok(true)` when every torrent completed.
pub fn run(args: DownloadArgs) -> anyhow::Result<i32> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(download(args))
}

async fn download(args: DownloadArgs) -> anyhow::Result<i32> {
    let mut config = Config {
        listen: args.listen,
        use_trackers: !args.no_trackers,
        force_portable: args.no_uring,
        ..Config::default()
    };
    if let Some(n) = args.shards {
        if n == 0 {
            bail!("--shards must be at least 1");
        }
        config.shards = n;
    }
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("cannot create {}", args.output.display()))?;
    let engine = Engine::start(config).context("cannot start the engine")?;
    let mut alerts = engine.alerts().context("alert stream already taken")?;
    let tty = std::io::stderr().is_terminal() && !args.quiet;
    let multi = MultiProgress::new();
    let mut progress: HashMap<TorrentId, Progress> = HashMap::new();
    for path in &args.torrents {
        let meta = crate::info::load_torrent(path)?;
        // Data from an earlier, interrupted run is hash-checked and kept: only verified pieces
        // were ever written, so the check finds exactly what is left to fetch.
        let resume = args.output.join(&meta.info.name).exists();
        if resume && !args.quiet {
            eprintln!("{}: checking existing data", meta.info.name);
        }
        let mut add = AddTorrent::new(TorrentSource::Metainfo(Box::new(meta)), &args.output);
        add.check_existing = resume;
        add.peers = args.peers.clone();
        let id = engine
            .add_torrent(add)
            .with_context(|| format!("{}", path.display()))?;
        let meta = engine.metainfo(id).context("torrent vanished")?;
        let total = meta.info.lengths.total_length();
        let bar = tty.then(|| {
            let b = multi.add(ProgressBar::new(total));
            b.set_style(
                ProgressStyle::with_template(
                    "{msg:20!} [{bar:30}] {percent:>3}% {binary_bytes_per_sec:>12} ETA {eta:>4} {prefix}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_message(meta.info.name.clone());
            b
        });
        progress.insert(
            id,
            Progress {
                name: meta.info.name.clone(),
                bar,
                done: false,
                total,
                verified: 0,
                rate: 0,
                peers: 0,
            },
        );
    }
    let started = Instant::now();
    let mut last_line = Instant::now();
    let mut failure: Option<String> = None;
    let deadline = (args.timeout > 0).then(|| started + Duration::from_secs(args.timeout));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut interrupted = false;
    while progress.values().any(|p| !p.done) && failure.is_none() {
        let alert = tokio::select! {
            a = alerts.recv() => a,
            _ = &mut ctrl_c => { interrupted = true; break; }
            _ = tokio::time::sleep(Duration::from_millis(500)) => None,
        };
        if let Some(alert) = alert {
            handle_alert(alert, &mut progress, &mut failure, args.verbose);
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            failure = Some(format!("timed out after {} s", args.timeout));
        }
        if !tty && !args.quiet && last_line.elapsed() >= Duration::from_secs(2) {
            last_line = Instant::now();
            for p in progress.values() {
                eprintln!(
                    "{}: {:.1}% {:.1} MiB/s {} peers",
                    p.name,
                    100.0 * p.verified as f64 / p.total.max(1) as f64,
                    p.rate as f64 / 1048576.0,
                    p.peers
                );
            }
        }
    }
    let elapsed = started.elapsed();
    if !interrupted && failure.is_none() {
        interrupted = seed_after_download(&engine, &mut alerts, &progress, &args).await;
    }
    engine.shutdown().await.context("shutdown")?;
    for p in progress.values() {
        if let Some(b) = &p.bar {
            b.finish();
        }
    }
    if interrupted {
        eprintln!("interrupted");
        return Ok(130);
    }
    if let Some(f) = failure {
        eprintln!("error: {f}");
        return Ok(1);
    }
    let total: u64 = progress.values().map(|p| p.total).sum();
    let secs = elapsed.as_secs_f64().max(1e-6);
    println!(
        "complete: {} torrent(s), {:.1} MiB in {:.2} s ({:.1} MiB/s), all pieces verified",
        progress.len(),
        total as f64 / 1048576.0,
        secs,
        total as f64 / 1048576.0 / secs
    );
    Ok(0)
}

/// Keeps seeding after the download until `--seed-ratio` or `--seed-time` is reached; true if
/// interrupted meanwhile.
async fn seed_after_download(
    engine: &Engine,
    alerts: &mut tokio::sync::mpsc::UnboundedReceiver<Alert>,
    progress: &HashMap<TorrentId, Progress>,
    args: &DownloadArgs,
) -> bool {
    if !(args.seed_ratio > 0.0 || args.seed_time > 0.0) {
        return false;
    }
    let ratio = if args.seed_ratio > 0.0 {
        args.seed_ratio
    } else {
        f64::INFINITY
    };
    let until = (args.seed_time > 0.0)
        .then(|| Instant::now() + Duration::from_secs_f64(args.seed_time * 60.0));
    if !args.quiet {
        eprintln!(
            "seeding (ratio {}, time {} min)",
            args.seed_ratio, args.seed_time
        );
    }
    loop {
        let reached = progress.keys().all(|id| {
            engine
                .stats(*id)
                .is_none_or(|s| s.uploaded_bytes as f64 >= ratio * s.total_bytes as f64)
        });
        if reached || until.is_some_and(|u| Instant::now() >= u) {
            return false;
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return true,
            _ = alerts.recv() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

fn handle_alert(
    alert: Alert,
    progress: &mut HashMap<TorrentId, Progress>,
    failure: &mut Option<String>,
    verbose: bool,
) {
    match alert {
        Alert::Stats { id, stats } => {
            if let Some(p) = progress.get_mut(&id) {
                p.verified = stats.verified_bytes;
                p.rate = stats.download_rate_bytes_per_s;
                p.peers = stats.peers;
                if let Some(b) = &p.bar {
                    b.set_position(stats.verified_bytes);
                    b.set_prefix(format!("{} peers", stats.peers));
                }
            }
        }
        Alert::TorrentComplete { id } => {
            if let Some(p) = progress.get_mut(&id) {
                p.done = true;
                p.verified = p.total;
                if let Some(b) = &p.bar {
                    b.set_position(p.total);
                }
            }
        }
        Alert::TorrentError { id, message } => {
            let name = progress
                .get(&id)
                .map_or("torrent".to_string(), |p| p.name.clone());
            *failure = Some(format!("{name}: {message}"));
        }
        Alert::HashFailed { id, piece } if verbose => {
            eprintln!("{id}: hash failed for piece {piece}")
        }
        Alert::PeerConnected { id, addr, .. } if verbose => {
            eprintln!("{id}: peer {addr} connected")
        }
        Alert::PeerDisconnected { id, addr, reason } if verbose => {
            eprintln!("{id}: peer {addr} disconnected: {reason}")
        }
        Alert::TrackerError { id, url, message } if verbose => {
            eprintln!("{id}: tracker {url}: {message}")
        }
        Alert::TrackerReply { id, url, peers } if verbose => {
            eprintln!("{id}: tracker {url}: {peers} peers")
        }
        _ => {}
    }
}
