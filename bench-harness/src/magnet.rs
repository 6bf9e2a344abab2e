//! `bench-harness magnet`: the cost of starting from a magnet link. One libtorrent seeder on
//! 127.0.0.x serves a generated payload; each client gets only
//! `magnet:?xt=urn:btih:<hex>&x.pe=<seeder>` and downloads into an empty directory, N times,
//! clients interleaved (A B C A B C ...). Every download is checked byte for byte.
//!
//! Per run, on the harness's clock from spawning the client process (so the interpreter's start
//! counts for libtorrent, as the binary's start does for the others): (a) metadata received,
//! (b) first verified piece, (c) complete, the client's own "all pieces in" signal, and the
//! process exit; plus payload bytes received where the client reports them. How each client is
//! observed is in [`Kind::observation`]; the seeder's CPU during the run comes from `/proc`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use rt_testkit::net::{free_port, http_get, LEECHER_IP};
use rt_testkit::proc::{kit_command, on_path};
use rt_testkit::torrent::TorrentMeta;
use rt_testkit::{python, ringtorrent_bin, script};

use crate::report::{spread_table, Row, Spread};
use crate::seeders::{self, Discovery, Seeder, SeederKind};
use crate::size::{format_size, parse_size};

/// How often rqbit's HTTP API is polled (its log has no per-piece line at the info level).
const RQBIT_POLL: Duration = Duration::from_millis(10);
const RQBIT_CARGO_BIN: &str = "/root/.cargo/bin/rqbit";

#[derive(Debug, Clone, Args)]
pub struct MagnetArgs {
    /// Payload size (one file).
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    pub size: u64,
    #[arg(long, default_value = "256KiB", value_parser = parse_size)]
    pub piece_length: u64,
    #[arg(long, default_value_t = 5)]
    pub runs: u32,
    /// Clients, in run order; one that cannot run here is reported as missing.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ringtorrent,libtorrent,rqbit"
    )]
    pub clients: Vec<String>,
    /// Cache for the payload, its torrent and the download directories.
    #[arg(long, default_value = "bench-cache")]
    pub cache: PathBuf,
    /// A run taking longer than this is killed and counted as failed.
    #[arg(long, default_value_t = 300)]
    pub timeout_s: u64,
    #[arg(long, default_value_t = 1)]
    pub payload_seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ringtorrent,
    Libtorrent,
    Rqbit,
}

impl Kind {
    fn parse(s: &str) -> Result<Kind> {
        Ok(match s.trim() {
            "ringtorrent" => Kind::Ringtorrent,
            "libtorrent" => Kind::Libtorrent,
            "rqbit" => Kind::Rqbit,
            other => bail!("unknown client {other:?} (known: ringtorrent, libtorrent, rqbit)"),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Ringtorrent => "ringtorrent",
            Kind::Libtorrent => "libtorrent",
            Kind::Rqbit => "rqbit",
        }
    }

    /// How the seeder is given and how the events are observed (for the report's notes).
    fn observation(self) -> &'static str {
        match self {
            Kind::Ringtorrent => {
                "`ringtorrent download <magnet> --verbose --no-dht --no-lsd`, seeder from x.pe; \
                 stderr lines `metadata received in`, `piece N verified` (complete = the last \
                 piece's line), stdout `downloaded N payload bytes`"
            }
            Kind::Libtorrent => {
                "python3 tests/scripts/lt_magnet_ttfb.py (libtorrent, DHT/LSD/UPnP/NAT-PMP off), \
                 seeder from x.pe; metadata_received_alert, first piece_finished_alert, \
                 torrent_finished_alert, total_payload_download; times include the interpreter \
                 start and `import libtorrent`"
            }
            Kind::Rqbit => {
                "`rqbit download` (no -e), DHT/LSD/UPnP off, IPv4 on 127.0.0.1; rqbit ignores \
                 x.pe, so the seeder is also passed as --initial-peers; metadata = first \
                 `will download`/`added torrent` log line or first API answer; first piece = \
                 downloaded_and_checked_bytes > 0 from its HTTP API on 127.0.0.1 polled every \
                 10 ms; complete = its `torrent finished downloading` line (or the API's \
                 finished); received = fetched_bytes; killed once complete (no exit time)"
            }
        }
    }

    /// The program to run, or why it cannot run here.
    fn locate(self) -> Result<PathBuf> {
        match self {
            Kind::Ringtorrent => ringtorrent_bin(),
            Kind::Libtorrent => {
                rt_testkit::require::require(rt_testkit::require::Tool::Libtorrent)?;
                Ok(PathBuf::from(python()))
            }
            Kind::Rqbit if on_path("rqbit") => Ok(PathBuf::from("rqbit")),
            Kind::Rqbit if Path::new(RQBIT_CARGO_BIN).is_file() => Ok(RQBIT_CARGO_BIN.into()),
            Kind::Rqbit => {
                bail!("rqbit missing: not on PATH nor at {RQBIT_CARGO_BIN}")
            }
        }
    }
}

/// What one run saw, in seconds from spawning the client.
#[derive(Debug, Default, Clone)]
struct Timeline {
    metadata: Option<f64>,
    first_piece: Option<f64>,
    complete: Option<f64>,
    exit: Option<f64>,
    received: Option<u64>,
    seeder_cpu_s: f64,
}

struct Job<'a> {
    kind: Kind,
    program: &'a Path,
    magnet: &'a str,
    seeder: SocketAddr,
    info_hash: &'a str,
    num_pieces: u32,
    out_dir: &'a Path,
    log: &'a Path,
    timeout: Duration,
    /// rqbit's HTTP API (a fresh port on 127.0.0.1 per run); `None` for the others.
    api: Option<SocketAddr>,
}

pub fn run(args: &MagnetArgs) -> Result<()> {
    ensure!(args.runs >= 1, "--runs must be at least 1");
    ensure!(args.size > 0, "--size must be positive");
    let cache = std::path::absolute(&args.cache)?;
    let (spec, save_dir, bare) =
        crate::swarm::prepare_payload(&cache, args.size, 1, args.piece_length, args.payload_seed)?;
    let meta = TorrentMeta::read(&bare)?;
    let mut notes = Vec::new();
    let mut clients = Vec::new();
    let mut missing = Vec::new();
    for name in args.clients.iter().filter(|n| !n.trim().is_empty()) {
        let kind = Kind::parse(name)?;
        match kind.locate() {
            Ok(p) if !clients.iter().any(|(k, _)| *k == kind) => clients.push((kind, p)),
            Ok(_) => {}
            Err(e) => {
                notes.push(format!("{} NOT RUN: {e:#}", kind.name()));
                missing.push(kind);
            }
        }
    }
    for n in &notes {
        eprintln!("{n}");
    }
    let mut seeder = Seeder::start(SeederKind::Libtorrent, &bare, &save_dir, Discovery::None)?;
    let seeder_addr = seeder.addr();
    let info_hash = meta.info_hash.to_hex();
    let magnet = format!("magnet:?xt=urn:btih:{info_hash}&x.pe={seeder_addr}");
    eprintln!("libtorrent seeder at {seeder_addr}; magnet {magnet}");
    let run_dir = cache.join("run-magnet");
    std::fs::create_dir_all(&run_dir)?;

    let mut results: Vec<(Kind, Vec<Timeline>, Vec<String>)> = clients
        .iter()
        .map(|(k, _)| (*k, Vec::new(), Vec::new()))
        .collect();
    for run in 0..args.runs {
        for ((kind, program), (_, samples, failures)) in clients.iter().zip(results.iter_mut()) {
            seeder.check_alive()?;
            let out_dir = run_dir.join(format!("dl-{}", kind.name()));
            if out_dir.exists() {
                std::fs::remove_dir_all(&out_dir)?;
            }
            std::fs::create_dir_all(&out_dir)?;
            let log = run_dir.join(format!("{}-run{}.log", kind.name(), run + 1));
            let job = Job {
                kind: *kind,
                program,
                magnet: &magnet,
                seeder: seeder_addr,
                info_hash: &info_hash,
                num_pieces: meta.num_pieces,
                out_dir: &out_dir,
                log: &log,
                timeout: Duration::from_secs(args.timeout_s),
                api: match kind {
                    Kind::Rqbit => Some(SocketAddr::from((LEECHER_IP, free_port(LEECHER_IP)?))),
                    _ => None,
                },
            };
            let cpu_before = seeders::total_cpu_s(std::slice::from_mut(&mut seeder))?;
            let outcome = one_run(&job).and_then(|mut t| {
                t.seeder_cpu_s =
                    seeders::total_cpu_s(std::slice::from_mut(&mut seeder))? - cpu_before;
                spec.verify(&out_dir)
                    .context("download differs from the payload")?;
                Ok(t)
            });
            std::fs::remove_dir_all(&out_dir)?;
            match outcome.with_context(|| format!("log: {}", log.display())) {
                Ok(t) => {
                    eprintln!("  {} run {}: {}", kind.name(), run + 1, describe(&t));
                    samples.push(t);
                }
                Err(e) => {
                    eprintln!("  {} run {}: FAILED: {e:#}", kind.name(), run + 1);
                    failures.push(format!("run {}: {e:#}", run + 1));
                }
            }
        }
    }

    let argv: Vec<String> = std::env::args().skip(1).collect();
    println!(
        "## magnet: {} in 1 file, piece {}, 1 libtorrent seeder on {}, {} run(s)\n",
        format_size(args.size),
        format_size(args.piece_length),
        seeder_addr.ip(),
        args.runs
    );
    println!("command: bench-harness {}\n", argv.join(" "));
    print!("{}", table(&results, &missing));
    println!("Seconds from spawning the client process; median (min–max) over successful runs.");
    for (kind, _) in &clients {
        println!("- {}: {}", kind.name(), kind.observation());
    }
    for (kind, _, failures) in &results {
        for f in failures {
            notes.push(format!("{} failed {f}", kind.name()));
        }
    }
    for n in &notes {
        println!("- {n}");
    }
    Ok(())
}

fn describe(t: &Timeline) -> String {
    let s = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}s"));
    format!(
        "metadata {}, first piece {}, complete {}, exit {}, received {}, seeder {:.2} CPU-s",
        s(t.metadata),
        s(t.first_piece),
        s(t.complete),
        s(t.exit),
        t.received.map_or("-".into(), |b| b.to_string()),
        t.seeder_cpu_s
    )
}

fn table(results: &[(Kind, Vec<Timeline>, Vec<String>)], missing: &[Kind]) -> String {
    let mut rows: Vec<Row> = results
        .iter()
        .map(|(kind, samples, failures)| {
            let col = |f: &dyn Fn(&Timeline) -> Option<f64>| {
                Spread::of(&samples.iter().filter_map(f).collect::<Vec<_>>())
            };
            Row {
                lead: vec![
                    kind.name().into(),
                    format!("{}/{}", samples.len(), failures.len()),
                ],
                spreads: vec![
                    col(&|t| t.metadata),
                    col(&|t| t.first_piece),
                    col(&|t| t.complete),
                    col(&|t| t.exit),
                    col(&|t| t.received.map(|b| b as f64 / (1 << 20) as f64)),
                    col(&|t| Some(t.seeder_cpu_s)),
                ],
                tail: vec![],
            }
        })
        .collect();
    rows.extend(missing.iter().map(|k| Row {
        lead: vec![k.name().into(), "NOT RUN (see below)".into()],
        spreads: vec![None; 6],
        tail: vec![],
    }));
    spread_table(
        &[
            "client",
            "runs ok/failed",
            "metadata s",
            "first piece s",
            "complete s",
            "exit s",
            "received MiB",
            "seeder CPU-s",
        ],
        &rows,
        &[3, 3, 3, 3, 1, 2],
    )
}

/// The client's command line for `job`.
fn command(job: &Job<'_>) -> Result<Command> {
    let listen_port = free_port(LEECHER_IP)?;
    let mut cmd = kit_command(job.program);
    match job.kind {
        Kind::Ringtorrent => {
            cmd.arg("download")
                .arg(job.magnet)
                .arg("-o")
                .arg(job.out_dir)
                .arg("--listen")
                .arg(format!("{LEECHER_IP}:{listen_port}"))
                .args(["--no-dht", "--no-lsd", "--verbose"])
                .arg("--timeout")
                .arg(job.timeout.as_secs().to_string());
        }
        Kind::Libtorrent => {
            cmd.arg(script("lt_magnet_ttfb.py"))
                .arg("--magnet")
                .arg(job.magnet)
                .arg("--save")
                .arg(job.out_dir)
                .arg("--listen")
                .arg(format!("{LEECHER_IP}:{listen_port}"))
                .arg("--timeout")
                .arg(job.timeout.as_secs().to_string());
        }
        Kind::Rqbit => {
            let api = job.api.context("no API address")?;
            cmd.args(rt_testkit::clients::rqbit_loopback_args(listen_port, api))
                .arg("download")
                .arg("-o")
                .arg(job.out_dir)
                .arg("--initial-peers")
                .arg(job.seeder.to_string())
                .arg(job.magnet);
        }
    }
    Ok(cmd)
}

/// Sends each line of `r` with the instant it was read.
fn forward_lines(r: impl Read + Send + 'static, tx: mpsc::Sender<(Instant, String)>) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut buf = Vec::new();
        while matches!(r.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
            let line = String::from_utf8_lossy(&buf).trim_end().to_string();
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
            buf.clear();
        }
    });
}

/// Runs one download and returns what was seen; errors if it did not complete.
fn one_run(job: &Job<'_>) -> Result<Timeline> {
    let mut cmd = command(job)?;
    let mut log =
        std::fs::File::create(job.log).with_context(|| format!("creating {:?}", job.log))?;
    writeln!(log, "$ {cmd:?}")?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let guard = KillOnDrop(&mut child);
    let (tx, rx) = mpsc::channel();
    let out = guard.0.stdout.take().context("no stdout pipe")?;
    let err = guard.0.stderr.take().context("no stderr pipe")?;
    forward_lines(out, tx.clone());
    forward_lines(err, tx);
    watch(job, guard, start, &rx, &mut log)
}

/// Kills the client (if still running) and reaps it when the run ends, however it ends.
struct KillOnDrop<'a>(&'a mut Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

fn watch(
    job: &Job<'_>,
    child: KillOnDrop<'_>,
    start: Instant,
    rx: &Receiver<(Instant, String)>,
    log: &mut std::fs::File,
) -> Result<Timeline> {
    let since = |t: Instant| (t - start).as_secs_f64();
    let mut t = Timeline::default();
    let mut verified = 0u32;
    let deadline = start + job.timeout;
    let mut last_poll = start;
    loop {
        let now = Instant::now();
        ensure!(now < deadline, "timed out after {:?}", job.timeout);
        match rx.recv_timeout(RQBIT_POLL) {
            Ok((at, line)) => {
                writeln!(log, "[{:9.4}] {line}", since(at))?;
                parse_line(job, &line, since(at), &mut t, &mut verified);
            }
            Err(RecvTimeoutError::Timeout) => {}
            // Both pipes closed: the process is exiting.
            Err(RecvTimeoutError::Disconnected) => {
                let status = child.0.wait()?;
                t.exit = Some(since(Instant::now()));
                writeln!(log, "[{:9.4}] exit: {status}", since(Instant::now()))?;
                ensure!(status.success(), "exited with {status}");
                break;
            }
        }
        if let Some(api) = job.api.filter(|_| last_poll.elapsed() >= RQBIT_POLL) {
            last_poll = Instant::now();
            if poll_rqbit(api, job.info_hash, since(last_poll), &mut t)? {
                break;
            }
        }
    }
    drop(child);
    ensure!(t.complete.is_some(), "exited without reporting completion");
    Ok(t)
}

/// Updates `t` from one output line of a ringtorrent or libtorrent (or rqbit) client.
fn parse_line(job: &Job<'_>, line: &str, at: f64, t: &mut Timeline, verified: &mut u32) {
    let first = |slot: &mut Option<f64>| {
        slot.get_or_insert(at);
    };
    match job.kind {
        Kind::Ringtorrent => {
            if line.contains(": metadata received in ") {
                first(&mut t.metadata);
            } else if line.contains(": piece ") && line.ends_with(" verified") {
                first(&mut t.first_piece);
                *verified += 1;
                if *verified == job.num_pieces {
                    first(&mut t.complete);
                }
            } else if let Some(rest) = line.strip_prefix("downloaded ") {
                t.received = rest.split_whitespace().next().and_then(|n| n.parse().ok());
            } else if line.starts_with("complete: ") {
                first(&mut t.complete);
            }
        }
        Kind::Libtorrent => {
            if line.starts_with("EVENT metadata ") {
                first(&mut t.metadata);
            } else if line.starts_with("EVENT first_piece ") {
                first(&mut t.first_piece);
            } else if line.starts_with("EVENT finished ") {
                first(&mut t.complete);
            } else if let Some(n) = line.strip_prefix("RECEIVED ") {
                t.received = n.trim().parse().ok();
            }
        }
        Kind::Rqbit => {
            if line.contains("will download") || line.contains("added torrent") {
                first(&mut t.metadata);
            } else if line.contains("torrent finished downloading") {
                first(&mut t.complete);
            }
        }
    }
}

/// One poll of rqbit's stats; true once it reports the torrent finished (received recorded).
fn poll_rqbit(api: SocketAddr, info_hash: &str, at: f64, t: &mut Timeline) -> Result<bool> {
    let path = format!("/torrents/{info_hash}/stats/v1");
    // Refused before the API listens, 404 before the metadata is in: not yet.
    let Ok((200, body)) = http_get(api, &path, Duration::from_secs(2)) else {
        return Ok(false);
    };
    let v: serde_json::Value = serde_json::from_slice(&body).context("rqbit stats are not JSON")?;
    t.metadata.get_or_insert(at);
    let snap = &v["live"]["snapshot"];
    if snap["downloaded_and_checked_bytes"]
        .as_u64()
        .is_some_and(|b| b > 0)
    {
        t.first_piece.get_or_insert(at);
    }
    if let Some(e) = v["error"].as_str() {
        bail!("rqbit reports an error: {e}");
    }
    if v["finished"].as_bool() == Some(true) {
        t.complete.get_or_insert(at);
        t.received = snap["fetched_bytes"].as_u64();
        return Ok(true);
    }
    Ok(false)
}
