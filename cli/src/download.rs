//! `ringtorrent download`: download torrents through the engine with a progress display.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::MultiProgress;
use ringtorrent::{Alert, Config, Engine, TorrentId};

use crate::tracked::{
    apply_command, handle_alert, table_rows, totals_line, track, waste_line, Progress,
};

/// Arguments of `download`.
#[derive(clap::Args, Debug)]
pub struct DownloadArgs {
    /// .torrent files and magnet links (`magnet:?xt=urn:btih:...`) to download.
    #[arg(
        required_unless_present = "input_file",
        value_name = "TORRENT_OR_MAGNET"
    )]
    pub torrents: Vec<String>,
    /// Also download the torrents listed in FILE (`-` for stdin): one path or magnet link a
    /// line, `#` comments, and indented `dir=`, `select=`, `seed-ratio=`,
    /// `max-download-rate=` lines for the entry above them.
    #[arg(short = 'i', long = "input-file", value_name = "FILE")]
    pub input_file: Option<PathBuf>,
    /// At most N torrents downloading at once; the rest wait in order (0: no limit).
    #[arg(
        short = 'j',
        long = "max-active",
        value_name = "N",
        default_value_t = 0
    )]
    pub max_active: usize,
    /// Run CMD (through `sh -c`) for each torrent that completes, with RINGTORRENT_NAME,
    /// RINGTORRENT_INFO_HASH and RINGTORRENT_PATH in its environment.
    #[arg(long, value_name = "CMD")]
    pub on_complete: Option<String>,
    /// Print one JSON object a line on stdout for every event (see README); the progress
    /// display and the summary go to stderr.
    #[arg(long)]
    pub json: bool,
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
    /// Most peers connected per torrent (default 64).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_peers: Option<u32>,
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
    /// MSE/PE encryption: `prefer` (accept both; dial plain, and encrypted if a peer closes a
    /// plain handshake), `require` (RC4 only, both ways), `disable` (plain only).
    #[arg(long, default_value = "prefer")]
    pub encryption: ringtorrent::EncryptionPolicy,
    /// Carriers of outgoing connections: `tcp`, `utp` (BEP 29), or `both` (TCP first, uTP
    /// for a peer that does not take TCP). Incoming uTP is accepted on the listen port
    /// whatever this says.
    #[arg(long, default_value = "both")]
    pub transport: ringtorrent::TransportMode,
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
    /// When stderr is not a terminal: a plain progress line per active torrent and a total
    /// line every this many seconds (0 = none)
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    pub summary_interval: f64,
    #[command(flatten)]
    pub select: crate::select::SelectArgs,
    /// Memory for pieces being downloaded, per torrent (e.g. `96MiB`, the default). When it is
    /// all in use, no new piece is requested until the disk catches up.
    #[arg(long, value_name = "SIZE", value_parser = crate::util::parse_size)]
    pub buffer_pool: Option<u64>,
    #[command(flatten)]
    pub dht: crate::util::DhtArgs,
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
    let json = crate::batch::Json { on: args.json };
    let mut entries = crate::inputs::from_args(&args.torrents);
    // Entries that could not be started: (what, why), for the table and the exit code.
    let mut failed: Vec<(String, anyhow::Error)> = Vec::new();
    if let Some(list) = &args.input_file {
        let (listed, strays) = crate::inputs::read_list(list)?;
        entries.extend(listed);
        for s in strays {
            eprintln!("error: {}: {}", s.origin, s.message);
            json.input_error(&s.origin, "", &s.message);
            failed.push((s.origin, anyhow::anyhow!(s.message)));
        }
    }
    let paths: Vec<PathBuf> = entries
        .iter()
        .filter(|e| e.error.is_none() && !crate::magnet::is_magnet(&e.input))
        .map(|e| PathBuf::from(&e.input))
        .collect();
    if let Some(code) = crate::select::preflight(&paths, &args.select)? {
        return Ok(code);
    }
    // A file-size limit (RLIMIT_FSIZE) must make writes fail with EFBIG, which stops the
    // torrent with a clear error, instead of SIGXFSZ killing the process: catch the signal.
    let _xfsz =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(libc::SIGXFSZ))
            .context("cannot catch SIGXFSZ")?;
    let config = engine_config(&args)?;
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("cannot create {}", args.output.display()))?;
    let engine = Engine::start(config).context("cannot start the engine")?;
    let mut alerts = engine.alerts().context("alert stream already taken")?;
    let tty = std::io::stderr().is_terminal() && !args.quiet;
    let multi = MultiProgress::new();
    // A batch on a terminal: a total line above the torrents' bars.
    let total_bar = (tty && entries.len() + failed.len() > 1).then(|| {
        let b = multi.add(indicatif::ProgressBar::new_spinner());
        b.set_style(
            indicatif::ProgressStyle::with_template("{msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        b
    });
    let mut progress: HashMap<TorrentId, Progress> = HashMap::new();
    let mut queue: std::collections::VecDeque<crate::inputs::Entry> = entries.into();
    let max_active = if args.max_active == 0 {
        usize::MAX
    } else {
        args.max_active
    };
    let single = queue.len() == 1 && failed.is_empty();
    // The summary's time covers adding too: torrents download while later ones are added.
    let started = Instant::now();
    let starter = Starter {
        engine: &engine,
        args: &args,
        json: &json,
        tty,
        multi: &multi,
        max_active,
    };
    starter
        .fill(&mut queue, &mut progress, &mut failed, &mut alerts)
        .await;
    if single && !failed.is_empty() {
        // One torrent and it could not start: the error is the whole story.
        let (_, why) = failed.remove(0);
        engine.shutdown().await.context("shutdown")?;
        return Err(why);
    }
    let mut last_line = Instant::now();
    let mut signals = Signals::new()?;
    let mut interrupted: Option<i32> = None;
    // Keys on a terminal (p: pause/resume, q: quit), lines otherwise (see `control.rs`).
    let (mut commands, raw_terminal) = crate::control::start(tty);
    let mut commands_open = true;
    let mut hooks = Vec::new();
    if raw_terminal.is_some() {
        multi.println("keys: p pause/resume, q quit").ok();
    }
    while progress.values().any(|p| p.running()) || !queue.is_empty() {
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
            handle_alert(alert, &mut progress, &args, &json);
        }
        let now = Instant::now();
        for (id, p) in progress.iter_mut() {
            if p.running() && p.deadline.is_some_and(|d| now > d) {
                p.failed = Some(format!("timed out after {} s", args.timeout));
                let _ = engine.pause(*id);
            }
            if p.failed.is_some() && !p.reported {
                p.reported = true;
                let why = p.failed.clone().unwrap_or_default();
                json.event("error", &p.info_hash, &[("message", why.as_str().into())]);
                if !single {
                    eprintln!("error: {}: {why}", p.name);
                }
            }
            if p.done && !p.reported {
                p.reported = true;
                json.event("complete", &p.info_hash, &[]);
                if let Some(cmd) = &args.on_complete {
                    hooks.extend(crate::batch::on_complete(cmd, &p.started, None));
                }
            }
        }
        if !queue.is_empty() {
            starter
                .fill(&mut queue, &mut progress, &mut failed, &mut alerts)
                .await;
        }
        if let Some(b) = &total_bar {
            b.set_message(totals_line(&progress, &queue, &failed));
        }
        let every = Duration::try_from_secs_f64(args.summary_interval).unwrap_or(Duration::ZERO);
        if !tty && !args.quiet && !every.is_zero() && last_line.elapsed() >= every {
            last_line = Instant::now();
            for p in progress.values().filter(|p| p.running()) {
                eprintln!(
                    "{}: {:.1}% {:.1} MiB/s {} peers{}",
                    p.name,
                    100.0 * p.verified as f64 / p.total.max(1) as f64,
                    p.rate as f64 / 1048576.0,
                    p.peers,
                    if p.paused { " (paused)" } else { "" }
                );
            }
            if !single {
                eprintln!("{}", totals_line(&progress, &queue, &failed));
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
    let any_failed = !failed.is_empty() || progress.values().any(|p| p.failed.is_some());
    if interrupted.is_none() && !any_failed {
        interrupted =
            seed_after_download(&engine, &mut alerts, &progress, &args, &mut signals).await;
    }
    if interrupted.is_some() && !args.quiet {
        eprintln!("stopping: saving resume data");
    }
    // Graceful stop: queued pieces are written and synced, and the resume file saved, so the
    // same command continues without a recheck. When a torrent already failed, that failure is
    // the story (a full disk also fails the resume save): the shutdown error is only a warning.
    let shut = engine.shutdown().await.context("shutdown");
    match shut {
        Err(e) if any_failed => eprintln!("warning: {e:#}"),
        other => other?,
    }
    for p in progress.values_mut() {
        if let Some(b) = p.bar.take() {
            b.finish();
        }
    }
    if let Some(b) = total_bar {
        // A batch ends with its table, which replaces the bars (drawn again below it
        // otherwise, when the last of them is dropped).
        b.finish_and_clear();
        let _ = multi.clear();
    }
    let running = hooks.iter().filter(|h| !h.is_finished()).count();
    if running > 0 && !args.quiet {
        eprintln!("waiting for {running} --on-complete command(s)");
    }
    for h in hooks {
        let _ = h.join();
    }
    if let Some(code) = interrupted {
        eprintln!("interrupted; run the same command again to continue");
        return Ok(code);
    }
    if !single {
        eprint!("{}", crate::batch::table(&table_rows(&progress, &failed)));
    }
    if any_failed {
        if single {
            if let Some(p) = progress.values().find(|p| p.failed.is_some()) {
                eprintln!("error: {}: {}", p.name, p.failed.as_deref().unwrap_or(""));
            }
        } else {
            let n = failed.len() + progress.values().filter(|p| p.failed.is_some()).count();
            eprintln!(
                "error: {n} of {} torrent(s) failed",
                n + progress.values().filter(|p| p.done).count()
            );
        }
        return Ok(1);
    }
    let total: u64 = progress.values().map(|p| p.total).sum();
    let secs = elapsed.as_secs_f64().max(1e-6);
    let summary = format!(
        "complete: {} torrent(s), {:.1} MiB in {:.2} s ({:.1} MiB/s), all pieces verified",
        progress.len(),
        total as f64 / 1048576.0,
        secs,
        total as f64 / 1048576.0 / secs
    );
    let downloaded: u64 = progress.values().map(|p| p.downloaded).sum();
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
    let lines = [
        summary,
        format!("downloaded {downloaded} payload bytes this session"),
        waste_line(downloaded, &w),
    ];
    for l in lines {
        // stdout is the JSON stream with --json.
        if args.json {
            eprintln!("{l}");
        } else {
            println!("{l}");
        }
    }
    Ok(0)
}

/// Starts queued entries while fewer than `max_active` torrents are downloading; an entry
/// that cannot start is reported and recorded in `failed`.
/// What starting a queued entry needs besides the batch's state.
struct Starter<'a> {
    engine: &'a Engine,
    args: &'a DownloadArgs,
    json: &'a crate::batch::Json,
    tty: bool,
    multi: &'a MultiProgress,
    max_active: usize,
}

impl Starter<'_> {
    async fn fill(
        &self,
        queue: &mut std::collections::VecDeque<crate::inputs::Entry>,
        progress: &mut HashMap<TorrentId, Progress>,
        failed: &mut Vec<(String, anyhow::Error)>,
        alerts: &mut tokio::sync::mpsc::UnboundedReceiver<Alert>,
    ) {
        // Alerts that came while a torrent was being added, handled once it is tracked.
        let mut held = Vec::new();
        let Starter {
            engine,
            args,
            json,
            tty,
            multi,
            max_active,
        } = *self;
        while progress.values().filter(|p| p.running()).count() < max_active {
            let Some(entry) = queue.pop_front() else {
                break;
            };
            match crate::batch::start_entry(engine, &entry, args, alerts, &mut held, json).await {
                Ok(started) => {
                    let p = track(engine, started, args, tty, multi);
                    progress.insert(p.started.id, p);
                }
                Err(e) => {
                    if queue.len() + progress.len() + failed.len() > 0 {
                        eprintln!("error: {} ({}): {e:#}", entry.origin, entry.input);
                    }
                    json.input_error(&entry.origin, &entry.input, &format!("{e:#}"));
                    failed.push((entry.label(), e));
                }
            }
        }
        for alert in held {
            handle_alert(alert, progress, args, json);
        }
    }
}

/// Keeps seeding after the download until `--seed-ratio` or `--seed-time` is reached; the
/// exit code if interrupted meanwhile.
async fn seed_after_download(
    engine: &Engine,
    alerts: &mut tokio::sync::mpsc::UnboundedReceiver<Alert>,
    progress: &HashMap<TorrentId, Progress>,
    args: &DownloadArgs,
    signals: &mut Signals,
) -> Option<i32> {
    // Each torrent's ratio: its list entry's `seed-ratio=`, else --seed-ratio; 0 = none.
    let seeding = progress.values().any(|p| p.started.seed_ratio > 0.0);
    if !(seeding || args.seed_time > 0.0) {
        return None;
    }
    let until = (args.seed_time > 0.0)
        .then(|| Instant::now() + Duration::from_secs_f64(args.seed_time * 60.0));
    if !args.quiet {
        eprintln!(
            "seeding (ratio {}, time {} min)",
            args.seed_ratio, args.seed_time
        );
    }
    loop {
        let reached = progress.iter().all(|(id, p)| {
            let ratio = if p.started.seed_ratio > 0.0 {
                p.started.seed_ratio
            } else if args.seed_time > 0.0 {
                f64::INFINITY
            } else {
                0.0
            };
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

/// The engine's settings from `download`'s (and `tui`'s) arguments.
pub(crate) fn engine_config(args: &DownloadArgs) -> anyhow::Result<Config> {
    let mut config = Config {
        listen: args.listen,
        use_trackers: !args.no_trackers,
        pex: !args.no_pex,
        lsd: !args.no_lsd,
        force_portable: args.no_uring,
        zero_copy_uploads: args.zero_copy,
        encryption: args.encryption,
        transports: args.transport,
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
    if let Some(n) = args.max_peers {
        config.max_peers_per_torrent = n;
    }
    Ok(config)
}
