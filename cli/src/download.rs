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
    /// .torrent files and magnet links (`magnet:?xt=urn:btih:...`) to download.
    #[arg(required = true, value_name = "TORRENT_OR_MAGNET")]
    pub torrents: Vec<String>,
    /// For magnet links: write the fetched .torrent to this file, or into this directory as
    /// `<name>.torrent`.
    #[arg(long, value_name = "PATH")]
    pub save_torrent: Option<PathBuf>,
    /// Directory to download into.
    #[arg(short = 'o', long = "output", default_value = ".")]
    pub output: PathBuf,
    /// A peer to connect to (repeatable), e.g. 127.0.0.2:6881.
    #[arg(long = "peer")]
    pub peers: Vec<SocketAddr>,
    /// Address to accept peers on; `[::]` takes IPv6 and IPv4 peers (IPv4 only where IPv6
    /// is off).
    #[arg(long, default_value = "[::]:0")]
    pub listen: SocketAddr,
    /// Shard threads (default: one per core).
    #[arg(long)]
    pub shards: Option<usize>,
    /// Do not contact the torrents' trackers.
    #[arg(long)]
    pub no_trackers: bool,
    /// Do not exchange peers with peers (BEP 11 PEX).
    #[arg(long)]
    pub no_pex: bool,
    /// Do not use local service discovery (BEP 14 multicast on the local network).
    #[arg(long)]
    pub no_lsd: bool,
    /// Also announce to this tracker (repeatable); remembered in the resume file.
    #[arg(long = "tracker", value_name = "URL", value_parser = crate::util::parse_tracker)]
    pub trackers: Vec<String>,
    /// Use the epoll backend instead of io_uring.
    #[arg(long)]
    pub no_uring: bool,
    /// Which peers get cached blocks with `sendfile` while seeding: `remote` (peers on other
    /// hosts), `always`, `never`.
    #[arg(long, default_value = "remote")]
    pub zero_copy: ringtorrent::ZeroCopyUploads,
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
    #[command(flatten)]
    pub rates: crate::util::RateArgs,
    /// Hash-check existing data even if the resume file
    /// (`<output>/.ringtorrent/<infohash>.resume`) matches it.
    #[arg(long)]
    pub recheck: bool,
    /// Give up after this many seconds without completing (0 = never).
    #[arg(long, default_value_t = 0)]
    pub timeout: u64,
    #[command(flatten)]
    pub select: crate::select::SelectArgs,
    /// Memory for pieces being downloaded, per torrent (e.g. `96MiB`, the default). When it is
    /// all in use, no new piece is requested until the disk catches up.
    #[arg(long, value_name = "SIZE", value_parser = crate::util::parse_size)]
    pub buffer_pool: Option<u64>,
    #[command(flatten)]
    pub dht: crate::util::DhtArgs,
}

struct Progress {
    name: String,
    bar: Option<ProgressBar>,
    done: bool,
    total: u64,
    verified: u64,
    rate: u64,
    peers: u32,
    downloaded: u64,
    /// Received payload that was not kept, by reason.
    waste: ringtorrent::WasteStats,
    /// How long adding took (a recheck happens there).
    add_secs: f64,
    /// Paused by a command (or by a storage error).
    paused: bool,
}

/// SIGINT and SIGTERM, as the exit code a shell gives a process they kill (128 + signal).
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            int: signal(SignalKind::interrupt()).context("cannot catch SIGINT")?,
            term: signal(SignalKind::terminate()).context("cannot catch SIGTERM")?,
        })
    }

    /// Waits for either; 130 for SIGINT, 143 for SIGTERM.
    async fn recv(&mut self) -> i32 {
        tokio::select! {
            _ = self.int.recv() => 130,
            _ = self.term.recv() => 143,
        }
    }
}

/// Runs the download; `Ok(true)` when every torrent completed.
pub fn run(args: DownloadArgs) -> anyhow::Result<i32> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(download(args))
}

async fn download(args: DownloadArgs) -> anyhow::Result<i32> {
    let paths: Vec<PathBuf> = args
        .torrents
        .iter()
        .filter(|s| !crate::magnet::is_magnet(s))
        .map(PathBuf::from)
        .collect();
    let magnets = args
        .torrents
        .iter()
        .filter(|s| crate::magnet::is_magnet(s))
        .map(|s| crate::magnet::parse(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(code) = crate::select::preflight(&paths, &args.select)? {
        return Ok(code);
    }
    // A file-size limit (RLIMIT_FSIZE) must make writes fail with EFBIG, which stops the
    // torrent with a clear error, instead of SIGXFSZ killing the process: catch the signal.
    let _xfsz =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(libc::SIGXFSZ))
            .context("cannot catch SIGXFSZ")?;
    let mut config = Config {
        listen: args.listen,
        use_trackers: !args.no_trackers,
        pex: !args.no_pex,
        lsd: !args.no_lsd,
        force_portable: args.no_uring,
        zero_copy_uploads: args.zero_copy,
        upload_rate_limit: args.rates.max_upload_rate,
        download_rate_limit: args.rates.max_download_rate,
        // The routing table is kept beside the resume files.
        dht: args.dht.config(Some(&args.output.join(".ringtorrent"))),
        ..Config::default()
    };
    if let Some(bytes) = args.buffer_pool {
        config.buffer_pool_bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
    }
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
    // Alerts that came while torrents were being added, handled once all are known.
    let mut held = Vec::new();
    let deadline = (args.timeout > 0).then(|| Instant::now() + Duration::from_secs(args.timeout));
    let mut ids = Vec::new();
    for path in &paths {
        let meta = crate::info::load_torrent(path)?;
        let priorities = args.select.priorities(&meta.info)?;
        // Data from an earlier run: the engine trusts its resume file if the files match it,
        // else hash-checks what exists and keeps the pieces that verify (only verified pieces
        // are ever written, so the check finds exactly what is left to fetch).
        let existing = args.output.join(&meta.info.name).exists();
        if (existing || args.recheck) && !args.quiet {
            eprintln!("{}: looking at existing data", meta.info.name);
        }
        let name = meta.info.name.clone();
        let piece_length = u64::from(meta.info.piece_length);
        let mut add = AddTorrent::new(TorrentSource::Metainfo(Box::new(meta)), &args.output);
        add.check_existing = existing;
        add.recheck = args.recheck;
        add.peers = args.peers.clone();
        add.file_priorities = priorities;
        add.sequential = args.select.sequential;
        add.trackers = args.trackers.clone();
        let add_started = Instant::now();
        let display = crate::progress::CheckDisplay::for_stderr(args.quiet);
        let id = crate::progress::add_showing_check(
            &engine,
            add,
            &name,
            piece_length,
            &mut alerts,
            &mut held,
            display,
        )
        .await?
        .with_context(|| format!("{}", path.display()))?;
        ids.push((id, add_started.elapsed().as_secs_f64()));
    }
    for m in magnets {
        let name = crate::magnet::display_name(&m);
        let mut add = AddTorrent::new(TorrentSource::Magnet(Box::new(m)), &args.output);
        add.recheck = args.recheck;
        add.peers = args.peers.clone();
        add.sequential = args.select.sequential;
        add.trackers = args.trackers.clone();
        let add_started = Instant::now();
        let id = crate::magnet::add_and_wait(
            &engine,
            add,
            &name,
            &mut alerts,
            &mut held,
            crate::magnet::WaitOpts {
                quiet: args.quiet,
                verbose: args.verbose,
                deadline,
            },
        )
        .await?;
        if args.select.is_selective() {
            let meta = engine.metainfo(id).context("torrent vanished")?;
            for (i, p) in args.select.priorities(&meta.info)?.into_iter().enumerate() {
                engine.set_file_priority(id, i, p)?;
            }
        }
        if let Some(dest) = &args.save_torrent {
            crate::magnet::save_torrent(&engine, id, dest)?;
        }
        ids.push((id, add_started.elapsed().as_secs_f64()));
    }
    for (id, add_secs) in ids {
        let meta = engine.metainfo(id).context("torrent vanished")?;
        // The bar counts the selected pieces only (all of them unless files are skipped).
        let stats = engine.stats(id).context("torrent vanished")?;
        let total = stats.wanted_bytes;
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
            b.set_position(stats.wanted_verified_bytes);
            b
        });
        progress.insert(
            id,
            Progress {
                name: meta.info.name.clone(),
                bar,
                done: false,
                total,
                verified: stats.wanted_verified_bytes,
                rate: 0,
                peers: 0,
                downloaded: 0,
                waste: Default::default(),
                add_secs,
                paused: false,
            },
        );
    }
    let started = Instant::now();
    let mut last_line = Instant::now();
    let mut failure: Option<String> = None;
    for alert in held {
        handle_alert(alert, &mut progress, &mut failure, &args);
    }
    let mut signals = Signals::new()?;
    let mut interrupted: Option<i32> = None;
    // Keys on a terminal (p: pause/resume, q: quit), lines otherwise (see `control.rs`).
    let (mut commands, raw_terminal) = crate::control::start(tty);
    let mut commands_open = true;
    if raw_terminal.is_some() {
        multi.println("keys: p pause/resume, q quit").ok();
    }
    while progress.values().any(|p| !p.done) && failure.is_none() {
        let alert = tokio::select! {
            a = alerts.recv() => a,
            code = signals.recv() => { interrupted = Some(code); break; }
            c = commands.recv(), if commands_open => {
                match c {
                    Some(crate::control::Command::Quit) => { interrupted = Some(130); break; }
                    Some(c) => apply_command(&engine, c, &mut progress, &multi, args.quiet),
                    None => commands_open = false,
                }
                None
            }
            _ = tokio::time::sleep(Duration::from_millis(500)) => None,
        };
        if let Some(alert) = alert {
            handle_alert(alert, &mut progress, &mut failure, &args);
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            failure = Some(format!("timed out after {} s", args.timeout));
        }
        if !tty && !args.quiet && last_line.elapsed() >= Duration::from_secs(2) {
            last_line = Instant::now();
            for p in progress.values() {
                eprintln!(
                    "{}: {:.1}% {:.1} MiB/s {} peers{}",
                    p.name,
                    100.0 * p.verified as f64 / p.total.max(1) as f64,
                    p.rate as f64 / 1048576.0,
                    p.peers,
                    if p.paused { " (paused)" } else { "" }
                );
            }
        }
    }
    let elapsed = started.elapsed();
    for (id, p) in progress.iter_mut() {
        if let Some(s) = engine.stats(*id) {
            p.downloaded = s.downloaded_bytes;
            p.waste = s.waste;
        }
    }
    if interrupted.is_none() && failure.is_none() {
        interrupted =
            seed_after_download(&engine, &mut alerts, &progress, &args, &mut signals).await;
    }
    if interrupted.is_some() && !args.quiet {
        eprintln!("stopping: saving resume data");
    }
    // Graceful stop: queued pieces are written and synced, and the resume file saved, so the
    // same command continues without a recheck.
    engine.shutdown().await.context("shutdown")?;
    for p in progress.values() {
        if let Some(b) = &p.bar {
            b.finish();
        }
    }
    if let Some(code) = interrupted {
        eprintln!("interrupted; run the same command again to continue");
        return Ok(code);
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
    let downloaded: u64 = progress.values().map(|p| p.downloaded).sum();
    println!("downloaded {downloaded} payload bytes this session");
    let w = progress
        .values()
        .fold(ringtorrent::WasteStats::default(), |a, p| {
            ringtorrent::WasteStats {
                duplicate: a.duplicate + p.waste.duplicate,
                late: a.late + p.waste.late,
                unrequested: a.unrequested + p.waste.unrequested,
                no_buffer: a.no_buffer + p.waste.no_buffer,
                hash_failed: a.hash_failed + p.waste.hash_failed,
            }
        });
    println!("{}", waste_line(downloaded, &w));
    Ok(0)
}

/// The summary's waste line: received bytes over the bytes kept, and what was not kept.
fn waste_line(received: u64, w: &ringtorrent::WasteStats) -> String {
    let kept = received.saturating_sub(w.total());
    format!(
        "received/kept {:.4}: wasted {} bytes (duplicate {}, late {}, unrequested {}, no buffer {}, hash failed {})",
        received as f64 / kept.max(1) as f64,
        w.total(),
        w.duplicate,
        w.late,
        w.unrequested,
        w.no_buffer,
        w.hash_failed
    )
}

/// Keeps seeding after the download until `--seed-ratio` or `--seed-time` is reached; true if
/// interrupted meanwhile.
/// Pauses or resumes every torrent of the session (pausing saves each resume file).
fn apply_command(
    engine: &Engine,
    c: crate::control::Command,
    progress: &mut HashMap<TorrentId, Progress>,
    multi: &MultiProgress,
    quiet: bool,
) {
    use crate::control::Command;
    let pause = match c {
        Command::Pause => true,
        Command::Resume => false,
        Command::Toggle => !progress.values().all(|p| p.paused),
        Command::Quit => return,
    };
    for (id, p) in progress.iter_mut().filter(|(_, p)| !p.done) {
        let res = if pause {
            engine.pause(*id)
        } else {
            engine.resume(*id)
        };
        let word = if pause { "paused" } else { "resumed" };
        let line = match res {
            Ok(()) => {
                p.paused = pause;
                if let Some(b) = &p.bar {
                    b.set_prefix(if pause { "paused" } else { "" });
                }
                format!("{}: {word}", p.name)
            }
            Err(e) => format!("{}: could not be {word}: {e}", p.name),
        };
        if p.bar.is_some() {
            multi.println(line).ok();
        } else if !quiet {
            eprintln!("{line}");
        }
    }
}

async fn seed_after_download(
    engine: &Engine,
    alerts: &mut tokio::sync::mpsc::UnboundedReceiver<Alert>,
    progress: &HashMap<TorrentId, Progress>,
    args: &DownloadArgs,
    signals: &mut Signals,
) -> Option<i32> {
    if !(args.seed_ratio > 0.0 || args.seed_time > 0.0) {
        return None;
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
            return None;
        }
        tokio::select! {
            code = signals.recv() => return Some(code),
            _ = alerts.recv() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

fn handle_alert(
    alert: Alert,
    progress: &mut HashMap<TorrentId, Progress>,
    failure: &mut Option<String>,
    args: &DownloadArgs,
) {
    let verbose = args.verbose;
    let name = |id: &TorrentId| {
        progress
            .get(id)
            .map_or("torrent".to_string(), |p| p.name.clone())
    };
    match alert {
        Alert::ResumeAccepted { id, pieces } if !args.quiet => {
            eprintln!(
                "{}: resume data matches the files: {pieces} pieces, no recheck",
                name(&id)
            )
        }
        Alert::Rechecked { id, reason, pieces } if !args.quiet => {
            let (secs, total) = progress
                .get(&id)
                .map_or((0.0, 0), |p| (p.add_secs, p.total));
            eprintln!(
                "{}: rechecked ({reason}): {pieces} pieces verified in {secs:.2} s ({:.2} GB/s)",
                name(&id),
                total as f64 / secs.max(1e-6) / 1e9
            )
        }
        Alert::PieceVerified { id, piece } if verbose => {
            eprintln!("{id}: piece {piece} verified")
        }
        Alert::Stats { id, stats } => {
            if let Some(p) = progress.get_mut(&id) {
                p.verified = stats.wanted_verified_bytes;
                p.total = stats.wanted_bytes;
                p.rate = stats.download_rate_bytes_per_s;
                p.peers = stats.peers;
                p.downloaded = stats.downloaded_bytes;
                p.paused = stats.paused;
                if let Some(b) = &p.bar {
                    b.set_length(stats.wanted_bytes);
                    b.set_position(stats.wanted_verified_bytes);
                    if stats.paused {
                        b.set_prefix("paused");
                    } else {
                        b.set_prefix(format!("{} peers", stats.peers));
                    }
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
            *failure = Some(format!(
                "{}: {message} (verified data is kept; free space and run again)",
                name(&id)
            ));
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
        Alert::DhtPeers { id, peers } if verbose => eprintln!("{id}: DHT: {peers} peers"),
        Alert::TrackerReply { id, url, peers } if verbose => {
            eprintln!("{id}: tracker {url}: {peers} peers")
        }
        _ => {}
    }
}
