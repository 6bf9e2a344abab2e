//! `bench-harness swarm --wan PROFILE`: downloads from a swarm shaped like the ones users join,
//! on loopback. Each seeder (real clients: libtorrent, Transmission, aria2, ringtorrent) sits
//! behind a userspace path shaper ([`rt_testkit::shaper`]) that adds its round trip and caps
//! its upload; the leechers find the shapers through opentracker. The kernel here has no
//! `sch_netem`, so this replaces `--rtt-ms`.
//!
//! What a shaper cannot do: it delays bytes after the leecher's loopback TCP socket, so the
//! leecher's own TCP sees no round trip (no slow start over the delay, no loss). What it does
//! show is what decides speed in such a swarm at the BitTorrent layer: finding and dialing
//! peers, request pipelines deep enough for bandwidth x delay, choked and dropped peers.
//!
//! Every download is measured from the network side too, uniformly for every client: the
//! shapers count the bytes they delivered and the connections open, sampled every
//! [`SAMPLE_EVERY`]. From that series: time to the first piece's worth of bytes, the rate
//! between 20% and 90% of the payload ("ramped up") over the sum of the caps, and the plot.

mod paths;
pub mod profile;
mod report;
mod svg;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use rt_testkit::clients::{Client, LeechJob};
use rt_testkit::net::{free_port, LEECHER_IP};
use rt_testkit::payload::PayloadSpec;
use rt_testkit::torrent::{write_with_announce, TorrentMeta};
use rt_testkit::tracker::Opentracker;
use serde::Serialize;

use crate::measure::{run_measured, Sample};
use crate::report::ClientRuns;
use crate::seeders;
use crate::size::format_size;
use crate::swarm::{self, SwarmArgs};
use profile::WanProfile;

/// How often the shapers' counters are sampled during a download.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// One sample of the shapers during a download.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Point {
    /// Seconds since the downloader started.
    pub t_s: f64,
    /// Bytes the shapers delivered to leechers since it started.
    pub bytes: u64,
    /// Connections open through the shapers.
    pub open: u64,
}

/// One download through the shaped swarm.
#[derive(Debug, Clone, Serialize)]
pub struct WanSample {
    pub download: Sample,
    /// Time until the shapers had delivered one piece's worth of bytes.
    pub first_piece_s: Option<f64>,
    /// Delivered bytes/s between 20% and 90% of the payload.
    pub ramped_bytes_per_s: Option<f64>,
    /// Bytes the shapers delivered (payload and protocol) during the download.
    pub received_bytes: u64,
    pub seeders_cpu_s: f64,
    pub shapers_cpu_s: f64,
    pub connections_dropped: u64,
    pub series: Vec<Point>,
}

/// One client's runs through the shaped swarm.
pub type WanRuns = crate::report::ClientRuns<WanSample>;

#[derive(Serialize)]
struct JsonReport<'a> {
    params: &'a SwarmArgs,
    profile: WanProfile,
    paths: &'a [profile::PathPlan],
    cap_sum_bytes_per_s: u64,
    payload_bytes: u64,
    clients: &'a [WanRuns],
    summary: &'a [report::WanSummary],
    notes: &'a [String],
}

pub fn run(args: &SwarmArgs, wan: WanProfile) -> Result<()> {
    ensure!(
        args.rtt_ms == 0,
        "--wan shapes each path itself: leave --rtt-ms at 0"
    );
    let cache = std::path::absolute(&args.common.cache)?;
    let (spec, save_dir, bare) = swarm::prepare_payload(
        &cache,
        args.common.size,
        args.common.files,
        args.common.piece_length,
        args.common.payload_seed,
    )?;
    let mut notes = vec![
        "transmission (as a downloader) skipped: Transmission 3.00 drops 127.x peers learned from a tracker (shared/INTEROP.md), so it cannot find this swarm".to_string(),
    ];
    let clients = swarm::pick_clients(&args.clients, &mut notes)?;
    ensure!(
        (0.01..=10.0).contains(&args.wan_cap_scale),
        "--wan-cap-scale must be 0.01..=10"
    );
    let mut plan = profile::plan(wan, args.wan_seed);
    for p in &mut plan {
        p.cap_bytes_per_s = (p.cap_bytes_per_s as f64 * args.wan_cap_scale) as u64;
    }
    let cap_sum = profile::cap_sum(&plan);
    let meta = TorrentMeta::read(&bare)?;
    let tracker = Opentracker::start(&[meta.info_hash])?;
    let run_dir = cache.join("run");
    std::fs::create_dir_all(&run_dir)?;
    let torrent = run_dir.join("wan.torrent");
    write_with_announce(&bare, &torrent, Some(&tracker.announce_url()))?;

    let t0 = Instant::now();
    let mut paths = paths::start(&plan, &bare, &save_dir, args.wan_seed)?;
    paths.announce(&tracker, &meta.info_hash)?;
    tracker.wait_for_seeders(&meta.info_hash, plan.len() as u64, Duration::from_secs(30))?;
    eprintln!(
        "{} seeders behind shapers ({}), caps summing to {:.1} MB/s, ready in {:.1}s",
        plan.len(),
        report::mix(&plan),
        cap_sum as f64 / 1e6,
        t0.elapsed().as_secs_f64()
    );

    let mut results: Vec<WanRuns> = clients
        .iter()
        .map(|c| ClientRuns {
            client: c.name().into(),
            samples: Vec::new(),
            failures: Vec::new(),
        })
        .collect();
    for round in swarm::rounds(args.warmup, args.common.runs, clients.len()) {
        let (measured, label) = (round.measured, &round.label);
        for &i in &round.order {
            for s in paths.seeders.iter_mut() {
                s.check_alive()?;
            }
            // Re-announced before each download: opentracker forgets peers after a while.
            paths.announce(&tracker, &meta.info_hash)?;
            let ctx = Download {
                args,
                client: clients[i],
                label,
                torrent: &torrent,
                run_dir: &run_dir,
                spec: &spec,
            };
            let out = ctx.run(&mut paths);
            match (measured, out) {
                (Some(_), Ok(s)) => results[i].samples.push(s),
                (Some(run), Err(e)) => {
                    eprintln!("  {} run {}: FAILED: {e:#}", clients[i].name(), run + 1);
                    results[i].failures.push(format!("run {}: {e:#}", run + 1));
                }
                (None, Ok(_)) => {}
                (None, Err(e)) => eprintln!("  {} {label}: FAILED: {e:#}", clients[i].name()),
            }
        }
    }
    for r in &results {
        for f in &r.failures {
            notes.push(format!("{} failed {f}", r.client));
        }
    }

    let payload = spec.total_len();
    let summary = report::summarize(&results, payload, cap_sum);
    println!(
        "## swarm --wan {}{}: {} in {} file(s), piece {}, {} seeders ({}), caps summing to {:.1} MB/s, {} run(s) after {} warm-up round(s), order alternating\n",
        report::profile_name(wan),
        if args.wan_cap_scale == 1.0 {
            String::new()
        } else {
            format!(" --wan-cap-scale {}", args.wan_cap_scale)
        },
        format_size(args.common.size),
        args.common.files.max(1),
        format_size(args.common.piece_length),
        plan.len(),
        report::mix(&plan),
        cap_sum as f64 / 1e6,
        args.common.runs,
        args.warmup,
    );
    print!("{}", report::markdown(&summary, &notes));

    let json_path = match &args.common.json {
        Some(p) => p.clone(),
        None => cache.join(format!("wan-{}.json", report::profile_name(wan))),
    };
    let j = JsonReport {
        params: args,
        profile: wan,
        paths: &plan,
        cap_sum_bytes_per_s: cap_sum,
        payload_bytes: payload,
        clients: &results,
        summary: &summary,
        notes: &notes,
    };
    std::fs::write(&json_path, serde_json::to_string_pretty(&j)?)
        .with_context(|| format!("writing {json_path:?}"))?;
    let svg_path = json_path.with_extension("svg");
    let lines: Vec<svg::Line<'_>> = results
        .iter()
        .filter_map(|r| {
            r.samples.first().map(|s| svg::Line {
                client: &r.client,
                points: &s.series,
            })
        })
        .collect();
    let title = format!(
        "swarm --wan {}: first measured run of each client",
        report::profile_name(wan)
    );
    std::fs::write(&svg_path, svg::plot(&title, &lines))
        .with_context(|| format!("writing {svg_path:?}"))?;
    println!(
        "JSON: {}\nplot: {}",
        json_path.display(),
        svg_path.display()
    );
    Ok(())
}

/// One download to run and measure.
struct Download<'a> {
    args: &'a SwarmArgs,
    client: Client,
    label: &'a str,
    torrent: &'a Path,
    run_dir: &'a Path,
    spec: &'a PayloadSpec,
}

impl Download<'_> {
    /// Downloads into a fresh directory while sampling the shapers, verifies, removes it.
    fn run(&self, paths: &mut paths::Paths) -> Result<WanSample> {
        let name = self.client.name();
        let out_dir = self.run_dir.join(format!("dl-{name}"));
        if out_dir.exists() {
            std::fs::remove_dir_all(&out_dir)?;
        }
        std::fs::create_dir_all(&out_dir)?;
        let timeout = Duration::from_secs(self.args.common.timeout_s);
        let job = LeechJob {
            torrent: self.torrent,
            out_dir: &out_dir,
            listen_port: free_port(LEECHER_IP)?,
            peers: &[],
            timeout,
        };
        let cmd = self.client.leech_command(&job)?;
        let log = self
            .run_dir
            .join(format!("wan-{name}-{}.log", self.label.replace(' ', "")));
        let before = paths.stats();
        let seeders_cpu_before = seeders::total_cpu_s(&mut paths.seeders)?;
        let shapers_cpu_before = paths.shapers_cpu_s()?;
        let stop = AtomicBool::new(false);
        let start = Instant::now();
        let (sample, series) = std::thread::scope(|s| {
            let sampler = s.spawn(|| {
                let mut series = Vec::new();
                loop {
                    let st = paths.stats();
                    series.push(Point {
                        t_s: start.elapsed().as_secs_f64(),
                        bytes: st.down_bytes.saturating_sub(before.down_bytes),
                        open: st.open,
                    });
                    if stop.load(Ordering::Relaxed) {
                        break series;
                    }
                    std::thread::sleep(SAMPLE_EVERY);
                }
            });
            let sample = run_measured(cmd, &log, timeout);
            stop.store(true, Ordering::Relaxed);
            let series = sampler.join().unwrap_or_default();
            (sample, series)
        });
        let sample = sample?;
        let seeders_cpu_s = seeders::total_cpu_s(&mut paths.seeders)? - seeders_cpu_before;
        let shapers_cpu_s = paths.shapers_cpu_s()? - shapers_cpu_before;
        let after = paths.stats();
        let verdict = if sample.timed_out {
            Err(anyhow::anyhow!("timed out after {timeout:?}"))
        } else if sample.exit_code != Some(0) {
            Err(anyhow::anyhow!("exit {:?}", sample.exit_code))
        } else {
            self.spec
                .verify(&out_dir)
                .context("download differs from the payload")
        };
        std::fs::remove_dir_all(&out_dir)?;
        verdict.with_context(|| format!("log: {}", log.display()))?;
        let payload = self.spec.total_len();
        let s = WanSample {
            first_piece_s: report::first_piece_s(&series, self.args.common.piece_length),
            ramped_bytes_per_s: report::ramped_rate(&series, payload),
            received_bytes: after.down_bytes.saturating_sub(before.down_bytes),
            seeders_cpu_s,
            shapers_cpu_s,
            connections_dropped: after.dropped.saturating_sub(before.dropped),
            series,
            download: sample,
        };
        let d = &s.download;
        eprintln!(
            "  {name} {}: {:.2}s, {:.1} MB/s (ramped {}), first piece {}, {:.2} CPU-s, peak RSS {} MiB; received/payload {:.3}, peak peers {}, seeders {:.2} CPU-s, shapers {:.2} CPU-s",
            self.label,
            d.wall_s,
            payload as f64 / 1e6 / d.wall_s,
            s.ramped_bytes_per_s
                .map_or("n/a".into(), |r| format!("{:.1} MB/s", r / 1e6)),
            s.first_piece_s.map_or("n/a".into(), |t| format!("{t:.2}s")),
            d.cpu_s(),
            d.max_rss_kib / 1024,
            s.received_bytes as f64 / payload as f64,
            s.series.iter().map(|p| p.open).max().unwrap_or(0),
            s.seeders_cpu_s,
            s.shapers_cpu_s,
        );
        Ok(s)
    }
}
