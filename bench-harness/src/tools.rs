//! `bench-harness recheck` and `bench-harness create`: a full hash check of complete data, and
//! making a .torrent, timed for ringtorrent and the other tools over the same cached payload
//! (warm page cache: the payload was just generated or read), in turn run by run.
//!
//! - recheck: `ringtorrent seed --recheck --seed-time 0` (checks with every core, prints the time its
//!   check took, exits), libtorrent (`scripts/lt_recheck.py`), aria2 `--check-integrity`.
//! - create: `ringtorrent create`, mktorrent (2 threads), libtorrent `create_torrent`.
//!
//! GB/s is the payload over the check's own reported time where the tool reports one
//! (ringtorrent, libtorrent: no process start-up), otherwise over the wall time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use clap::{Args, ValueEnum};
use rt_testkit::net::{free_port, LEECHER_IP};
use rt_testkit::proc::on_path;
use rt_testkit::ringtorrent::ringtorrent_bin;
use rt_testkit::TorrentMeta;
use serde::Serialize;

use crate::measure::{run_measured, Sample};
use crate::report::{spread_table, Row, Spread};
use crate::size::format_size;
use crate::swarm::prepare_payload;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tool {
    Ringtorrent,
    Libtorrent,
    Aria2,
    Mktorrent,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Ringtorrent => "ringtorrent",
            Tool::Libtorrent => "libtorrent",
            Tool::Aria2 => "aria2",
            Tool::Mktorrent => "mktorrent",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Job {
    Recheck,
    Create,
}

#[derive(Debug, Clone, Args, Serialize)]
pub struct ToolArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: crate::bench_args::BenchArgs,
    /// Tools to compare, in run order (default: ringtorrent,libtorrent,aria2 for recheck;
    /// ringtorrent,mktorrent,libtorrent for create).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub tools: Vec<Tool>,
}

/// One timed run; `own_s` is the time the tool itself reported, if it does.
#[derive(Debug, Clone, Serialize)]
pub struct ToolSample {
    pub process: Sample,
    pub own_s: Option<f64>,
}

impl ToolSample {
    fn seconds(&self) -> f64 {
        self.own_s.unwrap_or(self.process.wall_s)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ToolRuns {
    pub tool: String,
    pub samples: Vec<ToolSample>,
    pub failures: Vec<String>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    job: Job,
    params: &'a ToolArgs,
    payload_bytes: u64,
    tools: &'a [ToolRuns],
    notes: &'a [String],
}

pub fn run(job: Job, args: &ToolArgs) -> Result<()> {
    ensure!(args.common.runs >= 1, "--runs must be at least 1");
    let cache = std::path::absolute(&args.common.cache)?;
    let (spec, save_dir, bare) = prepare_payload(
        &cache,
        args.common.size,
        args.common.files,
        args.common.piece_length,
        args.common.payload_seed,
    )?;
    let meta = TorrentMeta::read(&bare)?;
    let mut notes = Vec::new();
    let tools = pick_tools(job, &args.tools, &mut notes)?;
    let work = cache.join(match job {
        Job::Recheck => "run-recheck",
        Job::Create => "run-create",
    });
    std::fs::create_dir_all(&work)?;
    let content = spec.content_path(&save_dir);
    let mut results: Vec<ToolRuns> = tools
        .iter()
        .map(|t| ToolRuns {
            tool: t.name().into(),
            samples: Vec::new(),
            failures: Vec::new(),
        })
        .collect();
    let timeout = Duration::from_secs(args.common.timeout_s);
    for run in 0..args.common.runs {
        for (tool, out) in tools.iter().zip(results.iter_mut()) {
            let log = work.join(format!("{}.log", tool.name()));
            let r = match job {
                Job::Recheck => recheck_once(*tool, &bare, &save_dir, &meta, &log, timeout),
                Job::Create => create_once(*tool, args, &content, &work, &meta, &log, timeout),
            };
            match r {
                Ok(s) => {
                    eprintln!(
                        "  {} run {}: {:.2}s wall, {:.2}s timed, {:.2} GB/s",
                        tool.name(),
                        run + 1,
                        s.process.wall_s,
                        s.seconds(),
                        spec.total_len() as f64 / 1e9 / s.seconds()
                    );
                    out.samples.push(s);
                }
                Err(e) => {
                    eprintln!("  {} run {}: FAILED: {e:#}", tool.name(), run + 1);
                    out.failures.push(format!("run {}: {e:#}", run + 1));
                    notes.push(format!("{} run {} failed: {e:#}", tool.name(), run + 1));
                }
            }
        }
    }
    let name = match job {
        Job::Recheck => "recheck",
        Job::Create => "create",
    };
    println!(
        "## {name}: {} in {} file(s), piece {}, {} run(s), warm page cache\n",
        format_size(args.common.size),
        args.common.files.max(1),
        format_size(args.common.piece_length),
        args.common.runs
    );
    print!("{}", table(&results, spec.total_len(), &notes));
    if let Some(path) = &args.common.json {
        let j = JsonReport {
            job,
            params: args,
            payload_bytes: spec.total_len(),
            tools: &results,
            notes: &notes,
        };
        std::fs::write(path, serde_json::to_string_pretty(&j)?)
            .with_context(|| format!("writing {path:?}"))?;
    }
    Ok(())
}

fn pick_tools(job: Job, asked: &[Tool], notes: &mut Vec<String>) -> Result<Vec<Tool>> {
    let defaults: &[Tool] = match job {
        Job::Recheck => &[Tool::Ringtorrent, Tool::Libtorrent, Tool::Aria2],
        Job::Create => &[Tool::Ringtorrent, Tool::Mktorrent, Tool::Libtorrent],
    };
    let asked = if asked.is_empty() { defaults } else { asked };
    let mut out = Vec::new();
    for &t in asked {
        let missing = match (job, t) {
            (Job::Create, Tool::Aria2) | (Job::Recheck, Tool::Mktorrent) => {
                Some(format!("{} cannot {job:?}", t.name()))
            }
            (_, Tool::Ringtorrent) => ringtorrent_bin().err().map(|e| format!("{e:#}")),
            (_, Tool::Libtorrent) => rt_testkit::clients::Client::Libtorrent
                .check_installed()
                .err()
                .map(|e| format!("{e:#}")),
            (_, Tool::Aria2) => (!on_path("aria2c")).then(|| "aria2c is not installed".into()),
            (_, Tool::Mktorrent) => {
                (!on_path("mktorrent")).then(|| "mktorrent is not installed".into())
            }
        };
        match missing {
            Some(why) => {
                eprintln!("{} skipped: {why}", t.name());
                notes.push(format!("{} skipped: {why}", t.name()));
            }
            None if !out.contains(&t) => out.push(t),
            None => {}
        }
    }
    ensure!(!out.is_empty(), "none of the requested tools can run here");
    Ok(out)
}

fn measured_ok(cmd: Command, log: &Path, timeout: Duration) -> Result<Sample> {
    let s = run_measured(cmd, log, timeout)?;
    if s.timed_out {
        bail!("timed out after {timeout:?} (log {})", log.display());
    }
    if s.exit_code != Some(0) {
        bail!("exit {:?} (log {})", s.exit_code, log.display());
    }
    Ok(s)
}

fn recheck_once(
    tool: Tool,
    torrent: &Path,
    save_dir: &Path,
    meta: &TorrentMeta,
    log: &Path,
    timeout: Duration,
) -> Result<ToolSample> {
    let mut cmd;
    match tool {
        Tool::Ringtorrent => {
            cmd = Command::new(ringtorrent_bin()?);
            cmd.arg("seed")
                .arg(torrent)
                .arg(save_dir)
                .arg("--no-trackers")
                .arg("--no-dht")
                .arg("--no-lsd")
                // Else the resume file the first run saves is trusted and nothing is checked.
                .arg("--recheck")
                .arg("--seed-time")
                .arg("0")
                .arg("--listen")
                .arg(format!("{LEECHER_IP}:{}", free_port(LEECHER_IP)?));
        }
        Tool::Libtorrent => {
            cmd = Command::new(rt_testkit::python());
            cmd.arg(script("lt_recheck.py"))
                .arg("--torrent")
                .arg(torrent)
                .arg("--save")
                .arg(save_dir);
        }
        Tool::Aria2 => {
            cmd = Command::new("aria2c");
            cmd.args([
                "--enable-dht=false",
                "--enable-dht6=false",
                "--bt-enable-lpd=false",
                "--enable-peer-exchange=false",
                "--check-integrity=true",
                "--seed-time=0",
                "--file-allocation=none",
                "--console-log-level=warn",
                "--summary-interval=0",
            ])
            .arg(format!("--interface={LEECHER_IP}"))
            .arg(format!("--listen-port={}", free_port(LEECHER_IP)?))
            .arg(format!("--dir={}", save_dir.display()))
            .arg(torrent);
        }
        Tool::Mktorrent => bail!("mktorrent cannot recheck"),
    }
    let process = measured_ok(cmd, log, timeout)?;
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let own_s = match tool {
        Tool::Ringtorrent => Some(parse_checked(
            &text,
            "pieces verified in ",
            meta.num_pieces,
        )?),
        Tool::Libtorrent => Some(parse_checked(&text, "pieces in ", meta.num_pieces)?),
        _ => None,
    };
    Ok(ToolSample { process, own_s })
}

/// From a line `... N/M <marker>S s ...`: checks N == M == `pieces` and returns S.
fn parse_checked(log: &str, marker: &str, pieces: u32) -> Result<f64> {
    let line = log
        .lines()
        .find(|l| l.contains(marker))
        .with_context(|| format!("no line with {marker:?} in the log"))?;
    let (before, after) = line.split_once(marker).context("marker vanished")?;
    let counts = before.split_whitespace().last().unwrap_or("");
    let want = format!("{pieces}/{pieces}");
    ensure!(counts == want, "not every piece verified: {line:?}");
    let secs = after.split_whitespace().next().unwrap_or("");
    secs.parse().with_context(|| format!("no time in {line:?}"))
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

fn create_once(
    tool: Tool,
    args: &ToolArgs,
    content: &Path,
    work: &Path,
    meta: &TorrentMeta,
    log: &Path,
    timeout: Duration,
) -> Result<ToolSample> {
    let out = work.join(format!("{}.torrent", tool.name()));
    let _ = std::fs::remove_file(&out); // mktorrent refuses to overwrite
    let piece = args.common.piece_length;
    let mut cmd;
    match tool {
        Tool::Ringtorrent => {
            cmd = Command::new(ringtorrent_bin()?);
            cmd.arg("create")
                .arg(content)
                .arg("-o")
                .arg(&out)
                .arg("--piece-length")
                .arg(piece.to_string())
                .arg("--force");
        }
        Tool::Mktorrent => {
            ensure!(
                piece.is_power_of_two(),
                "mktorrent needs a power-of-two piece length"
            );
            cmd = Command::new("mktorrent");
            cmd.arg("-t2")
                .arg(format!("-l{}", piece.trailing_zeros()))
                .arg("-ahttp://127.0.0.1:9/announce")
                .arg("-o")
                .arg(&out)
                .arg(content);
        }
        Tool::Libtorrent => {
            cmd = Command::new(rt_testkit::python());
            cmd.arg(rt_testkit::script("lt_make_torrent.py"))
                .arg(content)
                .arg("-o")
                .arg(&out)
                .arg("--piece-length")
                .arg(piece.to_string());
        }
        Tool::Aria2 => bail!("aria2 cannot create torrents"),
    }
    let process = measured_ok(cmd, log, timeout)?;
    let made = TorrentMeta::read(&out).with_context(|| format!("reading {out:?}"))?;
    ensure!(
        made.num_pieces == meta.num_pieces && made.total_len() == meta.total_len(),
        "{} made {} pieces of {} bytes, want {} of {}",
        tool.name(),
        made.num_pieces,
        made.total_len(),
        meta.num_pieces,
        meta.total_len()
    );
    Ok(ToolSample {
        process,
        own_s: None,
    })
}

fn table(results: &[ToolRuns], bytes: u64, notes: &[String]) -> String {
    let gib = bytes as f64 / (1u64 << 30) as f64;
    let secs = |r: &ToolRuns| {
        Spread::of(
            &r.samples
                .iter()
                .map(ToolSample::seconds)
                .collect::<Vec<_>>(),
        )
    };
    let base = results
        .iter()
        .find(|r| r.tool == "ringtorrent")
        .and_then(secs)
        .map(|s| s.median);
    let rows: Vec<Row> = results
        .iter()
        .map(|r| {
            let s = &r.samples;
            let wall = Spread::of(&s.iter().map(|x| x.process.wall_s).collect::<Vec<_>>());
            let own = Spread::of(&s.iter().filter_map(|x| x.own_s).collect::<Vec<_>>());
            let gbs = Spread::of(
                &s.iter()
                    .map(|x| bytes as f64 / 1e9 / x.seconds())
                    .collect::<Vec<_>>(),
            );
            let cpu = Spread::of(
                &s.iter()
                    .map(|x| x.process.cpu_s() / gib)
                    .collect::<Vec<_>>(),
            );
            let ratio = match (secs(r), base) {
                (Some(t), Some(b)) if b > 0.0 => format!("{:.2}x", t.median / b),
                _ => "-".into(),
            };
            Row {
                lead: vec![r.tool.clone(), format!("{}/{}", s.len(), r.failures.len())],
                spreads: vec![wall, own, gbs, cpu],
                tail: vec![ratio],
            }
        })
        .collect();
    let mut t = spread_table(
        &[
            "tool",
            "runs ok/failed",
            "wall s",
            "own s",
            "GB/s",
            "CPU-s/GiB",
            "time vs ringtorrent",
        ],
        &rows,
        &[2, 2, 2, 2],
    );
    for n in notes {
        t.push_str(&format!("- {n}\n"));
    }
    t.push_str("\nMedian (min–max) over runs. \"own s\" is the time the tool reports for the work itself (no start-up); GB/s uses it where present, else wall time. CPU is the process's own (wait4 rusage).\n");
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_check_lines() {
        let rt = "seeding on 127.0.0.1:5: 16/16 pieces verified in 0.25 s (300 MiB/s check)";
        assert_eq!(parse_checked(rt, "pieces verified in ", 16).unwrap(), 0.25);
        let lt = "CHECKED 16/16 pieces in 1.500 s";
        assert_eq!(parse_checked(lt, "pieces in ", 16).unwrap(), 1.5);
        assert!(parse_checked("CHECKED 15/16 pieces in 1 s", "pieces in ", 16).is_err());
        assert!(parse_checked("nothing", "pieces in ", 16).is_err());
    }
}
