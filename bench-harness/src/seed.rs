//! `bench-harness seed`: upload throughput and CPU per GiB uploaded of a ringtorrent seeder
//! against a libtorrent seeder (and aria2, by flag), feeding the same real leechers in the same
//! run.
//!
//! Setup: one seeder of each kind runs for the whole benchmark on its own 127.0.0.x address,
//! announcing nowhere. A fixed-peer tracker hands each leecher exactly one seeder (switched
//! before every download), so every byte a leecher gets, that seeder uploaded. Order per run:
//! for each leecher, each seeder in turn, the seeders' order reversed every other round (A B,
//! B A), counting the `--warmup` uncounted rounds that come first. The seeder's CPU is read from
//! `/proc/<pid>/stat` before and after each download; the leecher's from `wait4`.
//!
//! Before every download the payload is read through the page cache (not timed), so each
//! seeder starts from the same state: the data in memory, as on a box with memory to spare.
//! Our VMs evict cold page cache on their own (a 4 GiB payload was found 2.3 GiB resident
//! with 19 GiB free), and a seeder that reads with O_DIRECT leaves it cold for the next one
//! while one that maps the file warms it. `--page-cache as-is` skips this.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use rt_testkit::clients::{Client, LeechJob};
use rt_testkit::fixed_tracker::FixedTracker;
use rt_testkit::net::{free_port, LEECHER_IP};
use rt_testkit::payload::PayloadSpec;
use rt_testkit::torrent::write_with_announce;
use serde::Serialize;

use crate::measure::{proc_cpu_s, run_measured, Sample};
use crate::report::{spread_table, Row, Spread};
use crate::seeders::{Discovery, Seeder, SeederKind};
use crate::size::format_size;
use crate::swarm::{pick_clients, prepare_payload};

#[derive(Debug, Clone, Args, Serialize)]
pub struct SeedArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: crate::bench_args::BenchArgs,
    /// Seeders to compare, in run order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "ringtorrent,libtorrent"
    )]
    pub seeders: Vec<SeederKind>,
    /// Leechers that download from each seeder.
    #[arg(long, value_delimiter = ',', default_value = "rqbit,aria2")]
    pub leechers: Vec<String>,
    /// Round-trip time between peers (see `swarm --rtt-ms`).
    #[arg(long, default_value_t = 0)]
    pub rtt_ms: u32,
    /// `warm`: read the payload through the page cache before every download; `as-is`:
    /// leave the page cache as the last run left it.
    #[arg(long, value_enum, default_value = "warm")]
    pub page_cache: PageCache,
    /// `ringtorrent seed --zero-copy` for our seeder: `remote` (its default: the loopback
    /// leechers here get copies), `always` (`sendfile` to them too), `never`.
    #[arg(long, default_value = "remote")]
    pub ringtorrent_zero_copy: String,
    /// Downloads per leecher and seeder before the measured runs, not counted.
    #[arg(long, default_value_t = 1)]
    pub warmup: u32,
}

/// A round of downloads: every leecher from every seeder once.
#[derive(Debug, Clone, Copy)]
enum Round {
    WarmUp(u32),
    Measured(u32),
}

impl std::fmt::Display for Round {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Round::WarmUp(i) => write!(f, "warm-up {}", i + 1),
            Round::Measured(i) => write!(f, "run {}", i + 1),
        }
    }
}

/// The page cache state each download starts from (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PageCache {
    Warm,
    AsIs,
}

/// Reads every file under `path` through the page cache.
fn warm(path: &Path) -> Result<()> {
    use std::io::Read;
    if path.is_dir() {
        for e in std::fs::read_dir(path)? {
            warm(&e?.path())?;
        }
        return Ok(());
    }
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {path:?}"))?;
    let mut buf = vec![0u8; 4 << 20];
    while f.read(&mut buf)? > 0 {}
    Ok(())
}

/// One download from one seeder.
#[derive(Debug, Clone, Serialize)]
pub struct UploadSample {
    pub leecher: Sample,
    pub seeder_cpu_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Pair {
    pub seeder: String,
    pub leecher: String,
    pub samples: Vec<UploadSample>,
    pub failures: Vec<String>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    params: &'a SeedArgs,
    payload_bytes: u64,
    pairs: &'a [Pair],
    notes: &'a [String],
}

pub fn run(args: &SeedArgs) -> Result<()> {
    ensure!(args.common.runs >= 1, "--runs must be at least 1");
    ensure!(!args.seeders.is_empty(), "--seeders is empty");
    let cache = std::path::absolute(&args.common.cache)?;
    let (spec, save_dir, bare) = prepare_payload(
        &cache,
        args.common.size,
        args.common.files,
        args.common.piece_length,
        args.common.payload_seed,
    )?;
    let mut notes = Vec::new();
    let leechers = pick_clients(&args.leechers, &mut notes)?;

    let tracker = FixedTracker::start(&[])?;
    let run_dir = cache.join("run-seed");
    std::fs::create_dir_all(&run_dir)?;
    let torrent = run_dir.join("seed.torrent");
    write_with_announce(&bare, &torrent, Some(&tracker.announce_url()))?;
    let mut seeders = Vec::new();
    for kind in &args.seeders {
        // The seeders get the torrent without a tracker: they only wait to be dialled.
        let rt_args = [
            "--zero-copy".to_string(),
            args.ringtorrent_zero_copy.clone(),
        ];
        let s = Seeder::start_with(
            *kind,
            &bare,
            &save_dir,
            Discovery::None,
            &rt_args,
            (
                rt_testkit::libtorrent::LtEncryption::Default,
                rt_testkit::libtorrent::LtTransport::Tcp,
            ),
        )
        .with_context(|| format!("starting the {} seeder", kind.name()))?;
        eprintln!("{} seeder on {}", kind.name(), s.addr());
        seeders.push((*kind, s));
    }

    let seeders_len = seeders.len();
    let mut pairs: Vec<Pair> = Vec::new();
    for l in &leechers {
        for (k, _) in &seeders {
            pairs.push(Pair {
                seeder: k.name().into(),
                leecher: l.name().into(),
                samples: Vec::new(),
                failures: Vec::new(),
            });
        }
    }
    // Warm-up downloads first (not counted): the first download after the harness starts was
    // up to 1.9x slower, with 2.5x the leecher's kernel time, whichever seeder served it (this
    // VM's memory is slow on first touch, and a 4 GiB download takes 4 GiB of fresh pages).
    let rounds = (0..args.warmup).map(Round::WarmUp);
    for (n, round) in rounds
        .chain((0..args.common.runs).map(Round::Measured))
        .enumerate()
    {
        // Seeders take turns going first, so neither always follows the same one.
        let mut order: Vec<usize> = (0..seeders.len()).collect();
        if n % 2 == 1 {
            order.reverse();
        }
        for (li, leecher) in leechers.iter().enumerate() {
            for &si in &order {
                let (kind, seeder) = &mut seeders[si];
                seeder.check_alive()?;
                let SocketAddr::V4(addr) = seeder.addr() else {
                    bail!("seeder {} is not on IPv4", kind.name());
                };
                tracker.set_peers(&[addr]);
                if args.page_cache == PageCache::Warm {
                    warm(&spec.content_path(&save_dir))?;
                }
                let what = format!("{} <- {} {round}", leecher.name(), kind.name());
                let pair = &mut pairs[li * seeders_len + si];
                match one_upload(args, *leecher, seeder, &torrent, &run_dir, &spec) {
                    Ok(s) => {
                        eprintln!(
                            "  {what}: {:.2}s, {:.1} MB/s, seeder {:.2} CPU-s",
                            s.leecher.wall_s,
                            spec.total_len() as f64 / 1e6 / s.leecher.wall_s,
                            s.seeder_cpu_s
                        );
                        if let Round::Measured(_) = round {
                            pair.samples.push(s);
                        }
                    }
                    Err(e) => {
                        eprintln!("  {what}: FAILED: {e:#}");
                        pair.failures.push(format!("{round}: {e:#}"));
                    }
                }
            }
        }
    }
    for p in &pairs {
        for f in &p.failures {
            notes.push(format!("{} from {} failed {f}", p.leecher, p.seeder));
        }
    }
    println!(
        "## seed: {} in {} file(s), piece {}, {} run(s) after {} warm-up(s){}, ringtorrent --zero-copy {}, page cache {:?}\n",
        format_size(args.common.size),
        args.common.files.max(1),
        format_size(args.common.piece_length),
        args.common.runs,
        args.warmup,
        rtt_note(args.rtt_ms),
        args.ringtorrent_zero_copy,
        args.page_cache,
    );
    print!("{}", table(&pairs, spec.total_len(), &notes));
    if let Some(path) = &args.common.json {
        let j = JsonReport {
            params: args,
            payload_bytes: spec.total_len(),
            pairs: &pairs,
            notes: &notes,
        };
        std::fs::write(path, serde_json::to_string_pretty(&j)?)
            .with_context(|| format!("writing {path:?}"))?;
    }
    Ok(())
}

pub fn rtt_note(rtt_ms: u32) -> String {
    if rtt_ms == 0 {
        String::new()
    } else {
        format!(", {rtt_ms} ms RTT")
    }
}

/// One leecher download from `seeder` (the only peer the tracker hands out), verified.
fn one_upload(
    args: &SeedArgs,
    client: Client,
    seeder: &mut Seeder,
    torrent: &Path,
    run_dir: &Path,
    spec: &PayloadSpec,
) -> Result<UploadSample> {
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
    let cmd = client.leech_command(&job)?;
    let log = run_dir.join(format!("{}.log", client.name()));
    let pid = seeder.pid();
    let cpu_before = proc_cpu_s(pid)?;
    let sample = run_measured(cmd, &log, timeout)?;
    let seeder_cpu_s = proc_cpu_s(pid)? - cpu_before;
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
    Ok(UploadSample {
        leecher: sample,
        seeder_cpu_s,
    })
}

/// The Markdown table: one row per (leecher, seeder), ratios to the ringtorrent seeder feeding
/// the same leecher.
fn table(pairs: &[Pair], bytes: u64, notes: &[String]) -> String {
    let gib = bytes as f64 / (1u64 << 30) as f64;
    let stats = |p: &Pair| {
        let mbs: Vec<f64> = p
            .samples
            .iter()
            .map(|s| bytes as f64 / 1e6 / s.leecher.wall_s)
            .collect();
        let cpu: Vec<f64> = p.samples.iter().map(|s| s.seeder_cpu_s / gib).collect();
        (Spread::of(&mbs), Spread::of(&cpu))
    };
    let rows: Vec<Row> = pairs
        .iter()
        .map(|p| {
            let (mbs, cpu) = stats(p);
            let base = pairs
                .iter()
                .find(|b| b.leecher == p.leecher && b.seeder == "ringtorrent")
                .map(stats);
            let ratio = match (base, mbs, cpu) {
                (Some((Some(bm), Some(bc))), Some(m), Some(c))
                    if bm.median > 0.0 && bc.median > 0.0 =>
                {
                    format!(
                        "{:.2}x / {:.2}x",
                        m.median / bm.median,
                        c.median / bc.median
                    )
                }
                _ => "-".into(),
            };
            Row {
                lead: vec![
                    format!("{} → {}", p.seeder, p.leecher),
                    format!("{}/{}", p.samples.len(), p.failures.len()),
                ],
                spreads: vec![mbs, cpu],
                tail: vec![ratio],
            }
        })
        .collect();
    let mut t = spread_table(
        &[
            "seeder → leecher",
            "runs ok/failed",
            "upload MB/s",
            "seeder CPU-s/GiB",
            "MB/s, CPU vs ringtorrent",
        ],
        &rows,
        &[1, 2],
    );
    for n in notes {
        t.push_str(&format!("- {n}\n"));
    }
    t.push_str("\nMedian (min–max) over runs. Upload MB/s is the payload over the leecher's wall time (one seeder, one leecher); CPU is the seeder process's own (/proc/<pid>/stat, all threads).\n");
    t
}
