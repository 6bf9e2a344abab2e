//! `bench-harness swarm`: downloads one deterministic payload from a local swarm with each
//! client in turn and compares wall time, throughput, CPU per GiB and peak RSS, and what the
//! seeders spent on it: bytes uploaded over the payload size (waste) and CPU per GiB.
//!
//! Setup: the payload and its torrent are cached under `bench-cache/` by parameters; opentracker
//! serves the info-hash on 127.0.0.1; N seeders (libtorrent by default) on 127.0.0.2.. announce
//! to it; every downloader finds them through the tracker, starts in a fresh empty directory on
//! 127.0.0.1 with a fresh port, and is measured with `wait4`. `--warmup` uncounted rounds come
//! first (every client once; default 1: the first download on a fresh machine pays for page
//! cache and first-touch memory), then the measured runs, the client order reversed every
//! other round (A B, B A) so that no client always follows the same one; every download is
//! checked byte for byte before it counts.
//!
//! The seeders' CPU is read from `/proc/<pid>/stat` just before and after each download. Their
//! upload counters (libtorrent's only) are read before it and after every libtorrent seeder has
//! printed two more status lines (see `seeders::settle_upload_counters`), which adds up to 4 s
//! between downloads; nothing else downloads meanwhile, so the delta is this download's.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use rt_testkit::clients::{Client, LeechJob};
use rt_testkit::libtorrent::{LtEncryption, LtTransport};
use rt_testkit::net::{free_port, LEECHER_IP};
use rt_testkit::payload::{self, PayloadSpec};
use rt_testkit::torrent::{make_torrent_libtorrent, write_with_announce, TorrentMeta};
use rt_testkit::tracker::Opentracker;
use serde::Serialize;

use crate::measure::run_measured;
use crate::report::{self, ClientRuns, SwarmSample};
use crate::seeders::{self, Discovery, Seeder, SeederKind};
use crate::size::format_size;

#[derive(Debug, Clone, Args, Serialize)]
pub struct SwarmArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: crate::bench_args::BenchArgs,
    #[arg(long, default_value_t = 4)]
    pub seeders: u32,
    /// What the seeders are. libtorrent by default: a reference no one here wrote, and the one
    /// kind that reports its upload (the received/payload column).
    #[arg(long, value_enum, default_value = "libtorrent")]
    pub seeder: SeederKind,
    /// Downloaders to compare, in run order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ringtorrent,rqbit,aria2,libtorrent"
    )]
    pub clients: Vec<String>,
    /// MSE/PE in the swarm: `default` (every client's defaults: plaintext payload), or `rc4`
    /// (the libtorrent seeders allow only RC4 both ways; ringtorrent downloads with
    /// `--encryption require`, libtorrent with RC4 forced, aria2 with ARC4 required; rqbit,
    /// which has no MSE, is skipped).
    #[arg(long, value_enum, default_value = "default")]
    pub encryption: SwarmEncryption,
    /// The carrier in the swarm: `tcp`, or `utp` (the libtorrent seeders speak uTP only, TCP
    /// off both ways; ringtorrent downloads with `--transport utp`, libtorrent with TCP off;
    /// clients without uTP (aria2, rqbit's CLI) are skipped).
    #[arg(long, value_enum, default_value = "tcp")]
    pub transport: SwarmTransport,
    /// Rounds before the measured runs (every client once each), not counted.
    #[arg(long, default_value_t = 1)]
    pub warmup: u32,
    /// Round-trip time added between all peers (netem on the loopback of a network namespace
    /// the harness creates; needs root). 0 = plain loopback.
    #[arg(long, default_value_t = 0)]
    pub rtt_ms: u32,
    /// A WAN-shaped swarm instead of `--seeders`/`--seeder`: `ubuntu` (60 mixed real seeders,
    /// 20-250 ms, 0.5-20 MB/s each, some choking, some dropping) or `fat` (8 libtorrent
    /// seeders at 40 ms, 100 MB/s each), each behind a userspace path shaper (see `wan`).
    #[arg(long, value_enum)]
    pub wan: Option<crate::wan::profile::WanProfile>,
    /// Seed of the `--wan` swarm's draw (round trips, caps, who chokes and drops).
    #[arg(long, default_value_t = 1)]
    pub wan_seed: u64,
    /// Multiplies every `--wan` path's upload cap. On a real WAN the seeders run on other
    /// machines; here they share two cores with the downloader, so a swarm whose caps sum to
    /// more than this box can serve and receive at once measures the box, not the client.
    /// A scale below 1 keeps the shapes (round trips, mix, spread of caps) with a sum the box
    /// can carry.
    #[arg(long, default_value_t = 1.0)]
    pub wan_cap_scale: f64,
}

/// See [`SwarmArgs::encryption`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SwarmEncryption {
    Default,
    Rc4,
}

/// See [`SwarmArgs::transport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SwarmTransport {
    Tcp,
    Utp,
}

/// Makes `client`'s download command use uTP only (see [`SwarmArgs::transport`]).
fn use_utp(client: Client, cmd: &mut std::process::Command) -> Result<()> {
    match client {
        Client::Ringtorrent | Client::RingtorrentB => {
            cmd.arg("--transport").arg("utp");
        }
        Client::Libtorrent => LtTransport::Utp.apply(cmd),
        Client::Aria2 => bail!("aria2 has no uTP"),
        Client::Rqbit => bail!("rqbit's CLI here dials TCP only"),
    }
    Ok(())
}

/// Makes `client`'s download command use RC4 (see [`SwarmArgs::encryption`]).
fn require_rc4(client: Client, cmd: &mut std::process::Command) -> Result<()> {
    match client {
        Client::Ringtorrent | Client::RingtorrentB => {
            cmd.arg("--encryption").arg("require");
        }
        Client::Libtorrent => LtEncryption::Forced.apply(cmd),
        Client::Aria2 => {
            cmd.arg("--bt-require-crypto=true")
                .arg("--bt-min-crypto-level=arc4");
        }
        Client::Rqbit => bail!("rqbit has no MSE/PE encryption"),
    }
    Ok(())
}

/// Everything the JSON file holds.
#[derive(Serialize)]
struct JsonReport<'a> {
    params: &'a SwarmArgs,
    payload_bytes: u64,
    info_hash: String,
    clients: &'a [ClientRuns],
    summary: &'a [report::Summary],
    notes: &'a [String],
}

pub fn run(args: &SwarmArgs) -> Result<()> {
    check_args(args)?;
    if let Some(profile) = args.wan {
        ensure!(
            args.encryption == SwarmEncryption::Default && args.transport == SwarmTransport::Tcp,
            "--wan runs with the clients' default encryption over TCP"
        );
        return crate::wan::run(args, profile);
    }
    let cache = std::path::absolute(&args.common.cache)?;
    let (spec, save_dir, bare) = prepare_payload(
        &cache,
        args.common.size,
        args.common.files,
        args.common.piece_length,
        args.common.payload_seed,
    )?;

    let mut notes = Vec::new();
    let mut clients = pick_clients(&args.clients, &mut notes)?;
    if args.encryption == SwarmEncryption::Rc4 && clients.contains(&Client::Rqbit) {
        let note = "rqbit skipped: it has no MSE/PE encryption".to_string();
        eprintln!("{note}");
        notes.push(note);
        clients.retain(|c| *c != Client::Rqbit);
        ensure!(!clients.is_empty(), "no client left that speaks MSE/PE");
    }

    if args.transport == SwarmTransport::Utp {
        for c in [Client::Aria2, Client::Rqbit] {
            if clients.contains(&c) {
                let note = format!("{} skipped: no uTP", c.name());
                eprintln!("{note}");
                notes.push(note);
                clients.retain(|x| *x != c);
            }
        }
        ensure!(!clients.is_empty(), "no client left that speaks uTP");
    }

    let meta = TorrentMeta::read(&bare)?;
    let tracker = Opentracker::start(&[meta.info_hash])?;
    let run_dir = cache.join("run");
    std::fs::create_dir_all(&run_dir)?;
    let torrent = run_dir.join("swarm.torrent");
    write_with_announce(&bare, &torrent, Some(&tracker.announce_url()))?;
    let mut seeders = start_seeders(args, &torrent, &save_dir, &tracker.announce_url())?;
    tracker.wait_for_seeders(
        &meta.info_hash,
        args.seeders as u64,
        Duration::from_secs(120),
    )?;
    eprintln!(
        "{} {} seeder(s) announced",
        args.seeders,
        args.seeder.name()
    );
    // A first status line from each libtorrent seeder: the first download's starting count.
    seeders::wait_for_status(&mut seeders, 1)?;

    let mut results: Vec<ClientRuns> = clients
        .iter()
        .map(|c| ClientRuns {
            client: c.name().into(),
            samples: Vec::new(),
            failures: Vec::new(),
        })
        .collect();
    for round in rounds(args.warmup, args.common.runs, clients.len()) {
        let (measured, label) = (round.measured, &round.label);
        for &i in &round.order {
            let client = clients[i];
            for s in seeders.iter_mut() {
                s.check_alive()?;
            }
            let out = one_download(args, client, label, &mut seeders, &torrent, &run_dir, &spec);
            let Some(run) = measured else {
                if let Err(e) = out {
                    eprintln!("  {} {label}: FAILED: {e:#}", client.name());
                }
                continue;
            };
            match out {
                Ok(sample) => results[i].samples.push(sample),
                Err(e) => {
                    eprintln!("  {} run {}: FAILED: {e:#}", client.name(), run + 1);
                    results[i].failures.push(format!("run {}: {e:#}", run + 1));
                }
            }
        }
    }
    for r in &results {
        for f in &r.failures {
            notes.push(format!("{} failed {f}", r.client));
        }
    }

    let summary = report::summarize(&results, spec.total_len());
    println!(
        "## swarm: {} in {} file(s), piece {}, {} {} seeder(s), {} run(s) after {} warm-up round(s), order alternating{}\n",
        format_size(args.common.size),
        args.common.files.max(1),
        format_size(args.common.piece_length),
        args.seeders,
        args.seeder.name(),
        args.common.runs,
        args.warmup,
        crate::seed::rtt_note(args.rtt_ms)
    );
    print!("{}", report::markdown(&summary, &notes));
    if let Some(path) = &args.common.json {
        let j = JsonReport {
            params: args,
            payload_bytes: spec.total_len(),
            info_hash: meta.info_hash.to_hex(),
            clients: &results,
            summary: &summary,
            notes: &notes,
        };
        std::fs::write(path, serde_json::to_string_pretty(&j)?)
            .with_context(|| format!("writing {path:?}"))?;
    }
    Ok(())
}

/// One round of a benchmark: every client once.
pub struct Round {
    /// The measured run's index, `None` for a warm-up round.
    pub measured: Option<u32>,
    /// "run 2", "warm-up 1".
    pub label: String,
    /// The order of the clients.
    pub order: Vec<usize>,
}

/// The rounds of a benchmark: `warmup` uncounted ones, then `runs` measured ones, of `n`
/// clients; the order is reversed every other round (A B, B A), so that no client always
/// follows the same one.
pub fn rounds(warmup: u32, runs: u32, n: usize) -> impl Iterator<Item = Round> {
    (0..warmup + runs).map(move |round| {
        let mut order: Vec<usize> = (0..n).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        let measured = round.checked_sub(warmup);
        let label = match measured {
            Some(run) => format!("run {}", run + 1),
            None => format!("warm-up {}", round + 1),
        };
        Round {
            measured,
            label,
            order,
        }
    })
}

fn check_args(args: &SwarmArgs) -> Result<()> {
    ensure!(args.common.size > 0, "--size must be positive");
    ensure!(
        args.common.piece_length >= 16 * 1024 && args.common.piece_length <= 64 << 20,
        "--piece-length must be 16 KiB ..= 64 MiB"
    );
    ensure!((1..=64).contains(&args.seeders), "--seeders must be 1..=64");
    ensure!(args.common.runs >= 1, "--runs must be at least 1");
    ensure!(
        args.common.files >= 1 && args.common.files as u64 <= args.common.size,
        "--files must be 1..=size"
    );
    Ok(())
}

/// The cached payload (generated once) and its bare torrent (no tracker): (spec, save dir,
/// torrent).
pub fn prepare_payload(
    cache: &Path,
    size: u64,
    files: u32,
    piece_length: u64,
    payload_seed: u64,
) -> Result<(PayloadSpec, PathBuf, PathBuf)> {
    let spec = PayloadSpec::split("swarm-payload", size, files, payload_seed);
    let t0 = Instant::now();
    let save_dir = payload::cached(&cache.join("payloads"), &spec)?;
    let bare = cached_torrent(cache, &spec, &save_dir, piece_length as u32)?;
    eprintln!(
        "payload {} in {} file(s), piece {} ready in {:.1}s",
        format_size(size),
        files.max(1),
        format_size(piece_length),
        t0.elapsed().as_secs_f64()
    );
    Ok((spec, save_dir, bare))
}

/// The torrent for this payload and piece length, made once (hashing GiBs takes seconds).
fn cached_torrent(
    cache: &Path,
    spec: &PayloadSpec,
    save_dir: &Path,
    piece: u32,
) -> Result<PathBuf> {
    let dir = cache.join("torrents");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{}-{piece}.torrent", spec.cache_key()));
    if TorrentMeta::read(&path).is_err() {
        let tmp = path.with_extension("partial");
        make_torrent_libtorrent(&spec.content_path(save_dir), &tmp, piece, None)?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(path)
}

/// Parses `--clients`; clients that cannot run here are skipped with a note.
pub fn pick_clients(names: &[String], notes: &mut Vec<String>) -> Result<Vec<Client>> {
    let mut out = Vec::new();
    for name in names.iter().filter(|n| !n.trim().is_empty()) {
        let Some(c) = Client::parse(name) else {
            bail!("unknown client {name:?} (known: ringtorrent, ringtorrent-b, rqbit, aria2, libtorrent)");
        };
        if out.contains(&c) {
            continue;
        }
        match c.check_installed() {
            Ok(()) => out.push(c),
            Err(e) => {
                let note = format!("{} skipped: {e:#}", c.name());
                eprintln!("{note}");
                notes.push(note);
            }
        }
    }
    ensure!(
        !out.is_empty(),
        "none of the requested clients can run here"
    );
    Ok(out)
}

fn start_seeders(
    args: &SwarmArgs,
    torrent: &Path,
    save_dir: &Path,
    tracker: &str,
) -> Result<Vec<Seeder>> {
    let encryption = match args.encryption {
        SwarmEncryption::Default => LtEncryption::Default,
        SwarmEncryption::Rc4 => {
            ensure!(
                args.seeder == SeederKind::Libtorrent,
                "--encryption rc4 needs libtorrent seeders"
            );
            LtEncryption::Forced
        }
    };
    let transport = match args.transport {
        SwarmTransport::Tcp => LtTransport::Tcp,
        SwarmTransport::Utp => {
            ensure!(
                args.seeder == SeederKind::Libtorrent,
                "--transport utp needs libtorrent seeders"
            );
            LtTransport::Utp
        }
    };
    (0..args.seeders)
        .map(|_| {
            let discovery = Discovery::Tracker(tracker);
            Seeder::start_with(
                args.seeder,
                torrent,
                save_dir,
                discovery,
                &[],
                (encryption, transport),
            )
        })
        .collect()
}

/// One measured download into a fresh directory, verified, then removed; with what the
/// seeders spent meanwhile.
fn one_download(
    args: &SwarmArgs,
    client: Client,
    label: &str,
    seeders: &mut [Seeder],
    torrent: &Path,
    run_dir: &Path,
    spec: &PayloadSpec,
) -> Result<SwarmSample> {
    let out_dir = run_dir.join(format!("dl-{}", client.name()));
    if out_dir.exists() {
        std::fs::remove_dir_all(&out_dir)?;
    }
    std::fs::create_dir_all(&out_dir)?;
    let timeout = Duration::from_secs(args.common.timeout_s);
    let job = LeechJob {
        torrent,
        out_dir: &out_dir,
        listen_port: free_port(LEECHER_IP)?,
        peers: &[],
        timeout,
    };
    let mut cmd = client.leech_command(&job)?;
    if args.encryption == SwarmEncryption::Rc4 {
        require_rc4(client, &mut cmd)?;
    }
    if args.transport == SwarmTransport::Utp {
        use_utp(client, &mut cmd)?;
    }
    let log = run_dir.join(format!("{}-{}.log", client.name(), label.replace(' ', "")));
    let uploaded_before = seeders::total_uploaded_bytes(seeders);
    let cpu_before = seeders::total_cpu_s(seeders)?;
    let sample = run_measured(cmd, &log, timeout)?;
    let seeders_cpu_s = seeders::total_cpu_s(seeders)? - cpu_before;
    seeders::settle_upload_counters(seeders)?;
    let seeders_uploaded_bytes = uploaded_before
        .zip(seeders::total_uploaded_bytes(seeders))
        .map(|(before, after)| after.saturating_sub(before));
    let verdict = if sample.timed_out {
        Err(anyhow::anyhow!("timed out after {timeout:?}"))
    } else if sample.exit_code != Some(0) {
        Err(anyhow::anyhow!("exit {:?}", sample.exit_code))
    } else {
        spec.verify(&out_dir)
            .context("download differs from the payload")
    };
    std::fs::remove_dir_all(&out_dir)?;
    verdict.with_context(|| format!("log: {}", log.display()))?;
    let sample = SwarmSample {
        download: sample,
        seeders_uploaded_bytes,
        seeders_cpu_s,
    };
    let waste = sample
        .received_per_payload(spec.total_len())
        .map_or("n/a".into(), |w| format!("{w:.3}"));
    let d = &sample.download;
    eprintln!(
        "  {} {label}: {:.2}s, {:.1} MB/s, {:.2} CPU-s, peak RSS {} MiB; \
         received/payload {waste}, seeders {:.2} CPU-s",
        client.name(),
        d.wall_s,
        spec.total_len() as f64 / 1e6 / d.wall_s,
        d.cpu_s(),
        d.max_rss_kib / 1024,
        sample.seeders_cpu_s,
    );
    Ok(sample)
}
