//! `bench-harness bulk`: a batch of torrents with a concurrency limit, ringtorrent against aria2.
//! Both clients get the same list file (one .torrent path a line) and keep at most `--jobs`
//! torrents downloading at once: `ringtorrent download -i LIST -j N` and `aria2c -i LIST
//! --max-concurrent-downloads=N`.
//!
//! Setup: `--torrents` generated payloads (every other one multi-file, sizes off piece
//! boundaries), cached under `bench-cache/` with their libtorrent-made torrents; one opentracker
//! on 127.0.0.1 serves every info-hash and the torrents announce to it (aria2 has no option to
//! add a peer by address); `--seeders` libtorrent processes (`scripts/lt_bulk_seed.py`, one
//! session each on its own 127.0.0.x) split the torrents between them. Each run downloads into
//! a fresh empty directory with a fresh listen port on 127.0.0.1, is measured with `wait4`, and
//! counts only if every torrent matches its payload byte for byte. Rounds alternate the order
//! (A B, B A, ...). The seeders' CPU comes from `/proc/<pid>/stat` around the run, their upload
//! (sum of `all_time_upload`) from their status lines before and after, once two fresh lines
//! show libtorrent's one-second tick has counted everything.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use rt_testkit::net::{free_port, seeder_ip, LEECHER_IP};
use rt_testkit::payload::{self, PayloadSpec};
use rt_testkit::proc::kit_command;
use rt_testkit::torrent::{make_torrent_libtorrent, write_with_announce, TorrentMeta};
use rt_testkit::tracker::Opentracker;
use rt_testkit::wait::wait_for;
use rt_testkit::{python, ringtorrent_bin, Proc};
use serde::Serialize;

use crate::measure::{proc_cpu_s, run_measured, Sample};
use crate::size::{format_size, parse_size};

mod report;
use report::{describe, report};

const SEEDER_READY: Duration = Duration::from_secs(180);
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// aria2's flags besides -j, address, port and directory: nothing leaves loopback (as in
/// rt_testkit::aria2), no preallocation, exit once everything is complete (no seeding).
const ARIA2_ARGS: &str = "--enable-dht=false --enable-dht6=false --bt-enable-lpd=false \
    --enable-peer-exchange=false --disable-ipv6=true --enable-color=false \
    --bt-save-metadata=false --auto-file-renaming=false --file-allocation=none \
    --bt-hash-check-seed=false --seed-time=0 --summary-interval=0 --console-log-level=warn";

#[derive(Debug, Clone, Args, Serialize)]
pub struct BulkArgs {
    /// Number of torrents in the list.
    #[arg(long, default_value_t = 20)]
    pub torrents: u32,
    /// Size of the first payload; payload i is this plus i * 40961 bytes.
    #[arg(long, default_value = "8MiB", value_parser = parse_size)]
    pub size: u64,
    #[arg(long, default_value = "256KiB", value_parser = parse_size)]
    pub piece_length: u64,
    /// At most this many torrents downloading at once (both clients' -j).
    #[arg(short = 'j', long, default_value_t = 4)]
    pub jobs: u32,
    /// libtorrent seeder processes; torrent i is seeded by process i % seeders.
    #[arg(long, default_value_t = 2)]
    pub seeders: u32,
    /// Runs of each client.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Clients, in the first round's order (known: ringtorrent, aria2).
    #[arg(long, value_delimiter = ',', default_value = "ringtorrent,aria2")]
    pub clients: Vec<String>,
    #[arg(long, default_value = "bench-cache")]
    pub cache: PathBuf,
    /// A run taking longer than this is killed and counted as failed.
    #[arg(long, default_value_t = 600)]
    pub timeout_s: u64,
    #[arg(long, default_value_t = 1)]
    pub payload_seed: u64,
    /// Append the results to this file as one JSON line.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Client {
    Ringtorrent,
    Aria2,
}

impl Client {
    fn parse(s: &str) -> Result<Client> {
        Ok(match s.trim() {
            "ringtorrent" => Client::Ringtorrent,
            "aria2" | "aria2c" => Client::Aria2,
            other => bail!("unknown client {other:?} (known: ringtorrent, aria2)"),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Client::Ringtorrent => "ringtorrent",
            Client::Aria2 => "aria2",
        }
    }

    /// The client's command line; `rt_bin` is the ringtorrent binary.
    fn command(self, list: &Path, out: &Path, args: &BulkArgs, rt_bin: &Path) -> Result<Command> {
        let port = free_port(LEECHER_IP)?;
        let listen = format!("{LEECHER_IP}:{port}");
        let jobs = args.jobs.to_string();
        let mut cmd;
        match self {
            Client::Ringtorrent => {
                cmd = kit_command(rt_bin);
                cmd.args(["download", "-i"])
                    .arg(list)
                    .args(["-j", &jobs, "-o"])
                    .arg(out);
                cmd.args([
                    "--listen",
                    &listen,
                    "--no-dht",
                    "--no-lsd",
                    "--quiet",
                    "--timeout",
                ])
                .arg(args.timeout_s.to_string());
            }
            Client::Aria2 => {
                rt_testkit::require::require(rt_testkit::require::Tool::Aria2)?;
                cmd = kit_command("aria2c");
                cmd.args(ARIA2_ARGS.split_whitespace())
                    .arg(format!("--max-concurrent-downloads={jobs}"))
                    .arg(format!("--interface={LEECHER_IP}"))
                    .arg(format!("--listen-port={port}"))
                    .arg(format!("--dir={}", out.display()))
                    .arg("-i")
                    .arg(list);
            }
        }
        Ok(cmd)
    }
}

/// One libtorrent session seeding a share of the torrents.
struct BulkSeeder {
    proc: Proc,
    addr: SocketAddr,
}

impl BulkSeeder {
    fn start(torrents: &[(PathBuf, PathBuf)], max_seconds: u64) -> Result<BulkSeeder> {
        rt_testkit::require::require(rt_testkit::require::Tool::Libtorrent)?;
        let mut cmd = kit_command(python());
        cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/lt_bulk_seed.py"))
            .arg("--listen")
            .arg(format!("{}:0", seeder_ip()))
            .arg("--max-seconds")
            .arg(max_seconds.to_string());
        for (t, d) in torrents {
            cmd.arg("--torrent")
                .arg(format!("{}={}", t.display(), d.display()));
        }
        let mut proc = Proc::spawn_fresh("lt-bulk-seeder", cmd)?;
        let line = proc.wait_for_log("READY ", SEEDER_READY)?;
        let addr = line
            .trim()
            .strip_prefix("READY ")
            .and_then(|a| a.parse().ok())
            .with_context(|| format!("bad READY line {line:?}"))?;
        Ok(BulkSeeder { proc, addr })
    }

    /// (status lines so far, payload bytes uploaded as of the latest).
    fn status(&self) -> (usize, Option<u64>) {
        let log = self.proc.log();
        let lines: Vec<&str> = log
            .lines()
            .filter_map(|l| l.strip_prefix("STATUS uploaded "))
            .collect();
        let last = lines.last().and_then(|l| l.split(' ').next()?.parse().ok());
        (lines.len(), last)
    }
}

/// Waits until every seeder has printed `lines` more status lines; returns their total upload.
fn settled_upload(seeders: &mut [BulkSeeder], lines: usize) -> Result<u64> {
    let marks: Vec<usize> = seeders.iter().map(|s| s.status().0).collect();
    let mut total = 0;
    for (s, mark) in seeders.iter_mut().zip(marks) {
        let up = wait_for(SETTLE_TIMEOUT, "a seeder's status line", || {
            s.proc.check_alive()?;
            let (n, up) = s.status();
            Ok(if n >= mark + lines { up } else { None })
        })?;
        total += up;
    }
    Ok(total)
}

fn seeders_cpu_s(seeders: &mut [BulkSeeder]) -> Result<f64> {
    seeders.iter_mut().map(|s| proc_cpu_s(s.proc.pid())).sum()
}

/// One measured batch.
#[derive(Debug, Clone, Serialize)]
struct Run {
    round: u32,
    #[serde(flatten)]
    sample: Sample,
    seeders_cpu_s: f64,
    seeders_uploaded_bytes: u64,
    /// ringtorrent's own "downloaded N payload bytes this session" (aria2 prints no total).
    client_received_bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
struct ClientResult {
    client: Client,
    runs: Vec<Run>,
    failures: Vec<String>,
}

/// Payload i: `bulk-ii`, single-file for even i, 2..12 files for odd i.
fn payload_spec(args: &BulkArgs, i: u32) -> PayloadSpec {
    const FILES: [u32; 5] = [3, 5, 8, 2, 12];
    let files = if i.is_multiple_of(2) {
        1
    } else {
        FILES[(i as usize / 2) % FILES.len()]
    };
    let size = args.size + i as u64 * 40_961;
    PayloadSpec::split(
        &format!("bulk-{i:02}"),
        size,
        files,
        args.payload_seed + i as u64,
    )
}

/// The payload (generated once) and its torrent without tracker (made once by libtorrent).
fn prepare(cache: &Path, spec: &PayloadSpec, piece: u32) -> Result<(PathBuf, PathBuf)> {
    let save_dir = payload::cached(&cache.join("payloads"), spec)?;
    let dir = cache.join("torrents");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{}-{piece}.torrent", spec.cache_key()));
    if TorrentMeta::read(&path).is_err() {
        let tmp = path.with_extension("partial");
        make_torrent_libtorrent(&spec.content_path(&save_dir), &tmp, piece, None)?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok((save_dir, path))
}

pub fn run(args: &BulkArgs) -> Result<()> {
    let ok = args.rounds >= 1 && args.jobs >= 1 && (1..=args.torrents).contains(&args.seeders);
    ensure!(
        ok,
        "need --rounds >= 1, -j >= 1 and 1 <= --seeders <= --torrents"
    );
    let clients: Vec<Client> = args
        .clients
        .iter()
        .filter(|c| !c.trim().is_empty())
        .map(|c| Client::parse(c))
        .collect::<Result<_>>()?;
    ensure!(!clients.is_empty(), "no clients");
    let cache = std::path::absolute(&args.cache)?;
    let run_dir = cache.join("run-bulk");
    std::fs::create_dir_all(run_dir.join("torrents"))?;
    // Built now (not inside the first measured run) and copied: other builds in this target
    // directory may replace target/release/ringtorrent while the rounds run.
    let rt_bin = run_dir.join("ringtorrent");
    if clients.contains(&Client::Ringtorrent) {
        std::fs::copy(ringtorrent_bin()?, &rt_bin).context("copying the ringtorrent binary")?;
    }

    let t0 = Instant::now();
    let specs: Vec<PayloadSpec> = (0..args.torrents).map(|i| payload_spec(args, i)).collect();
    let bare: Vec<(PathBuf, PathBuf)> = specs
        .iter()
        .map(|s| prepare(&cache, s, args.piece_length as u32))
        .collect::<Result<_>>()?;
    let payload_bytes: u64 = specs.iter().map(PayloadSpec::total_len).sum();
    let hashes: Vec<_> = bare
        .iter()
        .map(|(_, t)| Ok(TorrentMeta::read(t)?.info_hash))
        .collect::<Result<_>>()?;
    let tracker = Opentracker::start(&hashes)?;
    let url = tracker.announce_url();
    let mut list = String::new();
    let mut shares = vec![Vec::new(); args.seeders as usize];
    for (i, ((save_dir, t), spec)) in bare.iter().zip(&specs).enumerate() {
        let torrent = run_dir
            .join("torrents")
            .join(format!("{}.torrent", spec.name));
        write_with_announce(t, &torrent, Some(&url))?;
        list.push_str(&format!("{}\n", torrent.display()));
        shares[i % args.seeders as usize].push((torrent, save_dir.clone()));
    }
    let list_file = run_dir.join("list.txt");
    std::fs::write(&list_file, list)?;
    let lifetime = args.timeout_s * (args.rounds as u64 * clients.len() as u64 + 1) + 3600;
    let mut seeders: Vec<BulkSeeder> = shares
        .iter()
        .map(|s| BulkSeeder::start(s, lifetime))
        .collect::<Result<_>>()?;
    for h in &hashes {
        tracker.wait_for_seeders(h, 1, Duration::from_secs(120))?;
    }
    let addrs: Vec<String> = seeders.iter().map(|s| s.addr.to_string()).collect();
    eprintln!(
        "{} torrents ({}) ready in {:.1}s; seeders {}; tracker {url}",
        args.torrents,
        format_size(payload_bytes),
        t0.elapsed().as_secs_f64(),
        addrs.join(", ")
    );

    let job = Job {
        args,
        rt_bin: &rt_bin,
        list: &list_file,
        run_dir: &run_dir,
        specs: &specs,
    };
    let mut uploaded = settled_upload(&mut seeders, 1)?;
    let new = |&client: &Client| ClientResult {
        client,
        runs: vec![],
        failures: vec![],
    };
    let mut results: Vec<ClientResult> = clients.iter().map(new).collect();
    for round in 0..args.rounds {
        let mut order: Vec<usize> = (0..clients.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for ci in order {
            let r = &mut results[ci];
            let out = one_run(&job, r.client, round, &mut seeders);
            let after = settled_upload(&mut seeders, 2)?;
            let served = after.saturating_sub(uploaded);
            uploaded = after;
            let name = r.client.name();
            match out {
                Ok(mut run) => {
                    run.seeders_uploaded_bytes = served;
                    eprintln!(
                        "  {name} round {}: {}",
                        round + 1,
                        describe(&run, payload_bytes)
                    );
                    r.runs.push(run);
                }
                Err(e) => {
                    eprintln!("  {name} round {}: FAILED: {e:#}", round + 1);
                    r.failures.push(format!("round {}: {e:#}", round + 1));
                }
            }
        }
    }
    drop(seeders);
    drop(tracker);
    report(args, &specs, &results)
}

/// What every run of the benchmark shares.
struct Job<'a> {
    args: &'a BulkArgs,
    /// The pinned copy of the ringtorrent binary.
    rt_bin: &'a Path,
    list: &'a Path,
    run_dir: &'a Path,
    specs: &'a [PayloadSpec],
}

/// One measured batch into a fresh directory, every torrent verified, then removed.
fn one_run(job: &Job<'_>, client: Client, round: u32, seeders: &mut [BulkSeeder]) -> Result<Run> {
    for s in seeders.iter_mut() {
        s.proc.check_alive()?;
    }
    let out = job.run_dir.join(format!("dl-{}", client.name()));
    if out.exists() {
        std::fs::remove_dir_all(&out)?;
    }
    std::fs::create_dir_all(&out)?;
    let log = job
        .run_dir
        .join(format!("{}-round{}.log", client.name(), round + 1));
    let timeout = Duration::from_secs(job.args.timeout_s);
    let cmd = client.command(job.list, &out, job.args, job.rt_bin)?;
    let cpu_before = seeders_cpu_s(seeders)?;
    let sample = run_measured(cmd, &log, timeout)?;
    let seeders_cpu_s = seeders_cpu_s(seeders)? - cpu_before;
    let verdict = if sample.timed_out {
        Err(anyhow::anyhow!("timed out after {timeout:?}"))
    } else if sample.exit_code != Some(0) {
        Err(anyhow::anyhow!("exit {:?}", sample.exit_code))
    } else {
        let check = |s: &PayloadSpec| {
            s.verify(&out)
                .with_context(|| format!("{} differs", s.name))
        };
        job.specs.iter().try_for_each(check)
    };
    std::fs::remove_dir_all(&out)?;
    verdict.with_context(|| format!("log: {}", log.display()))?;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let own = |l: &str| {
        l.strip_prefix("downloaded ")?
            .split(' ')
            .next()?
            .parse()
            .ok()
    };
    let client_received_bytes = text.lines().find_map(own);
    Ok(Run {
        round: round + 1,
        sample,
        seeders_cpu_s,
        seeders_uploaded_bytes: 0,
        client_received_bytes,
    })
}
