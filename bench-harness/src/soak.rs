//! `soak`: one engine (in this process) downloads and seeds in a loop for `--minutes` (issue 14
//! §6). Each round: the torrent is added and downloaded from a libtorrent seeder, verified on
//! disk, then seeded to a fresh libtorrent leecher until it has everything, then removed with
//! its data. After each round this process's RSS and open descriptors are sampled.
//!
//! Reported: rounds, the peak RSS and descriptor count over the `--warmup` rounds after
//! warm-up and over the last `--warmup` rounds, their growth, and every error alert
//! (`TorrentError`; there is no tracker). The verdict follows the issue: RSS and descriptors within 10% of the warm-up
//! figure, and no error alert.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ringtorrent::{AddTorrent, Alert, Engine, RemoveData, TorrentSource};
use rt_testkit::libtorrent::{LtLeecher, LtSeedOpts, LtSeeder};
use rt_testkit::torrent::PayloadFixture;
use rt_testkit::PayloadSpec;

#[derive(clap::Args)]
pub struct SoakArgs {
    /// How long to run, in minutes.
    #[arg(long, default_value_t = 30.0)]
    pub minutes: f64,
    /// Payload size in MiB.
    #[arg(long, default_value_t = 64)]
    pub size_mib: u64,
    /// Rounds of warm-up; the baseline is the peak of the next as many rounds, compared with
    /// the peak of the last as many.
    #[arg(long, default_value_t = 10)]
    pub warmup: u32,
}

fn rss_kib() -> u64 {
    rt_testkit::proc::status_kib(None, "VmRSS:").unwrap_or(0)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// The alerts of the current round (but stats), printed when a round stalls.
const RECENT: usize = 64;

/// Waits for `done` among the alerts, collecting error alerts and keeping the round's recent
/// alerts in `recent`; fails after `secs`.
fn wait(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Alert>,
    secs: u64,
    errors: &mut Vec<String>,
    recent: &mut VecDeque<String>,
    mut done: impl FnMut(&Alert) -> bool,
) -> Result<()> {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        match rx.try_recv() {
            Ok(a) => {
                if let Alert::TorrentError { message, .. } = &a {
                    errors.push(message.clone());
                }
                if !matches!(a, Alert::Stats { .. }) {
                    if recent.len() == RECENT {
                        recent.pop_front();
                    }
                    recent.push_back(format!("{a:?}"));
                }
                if done(&a) {
                    return Ok(());
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    bail!("nothing within {secs} s")
}

pub fn run(args: &SoakArgs) -> Result<()> {
    let fx = PayloadFixture::new(
        PayloadSpec::single("soak.bin", args.size_mib << 20, 91),
        256 * 1024,
    )?;
    // The kit's seeder stops itself after 15 minutes unless told otherwise: that stop was the
    // "stall" of the first soaks (every one at about 900 s, connection refused).
    let opts = LtSeedOpts {
        max_run: Some(Duration::from_secs_f64(args.minutes * 60.0 + 600.0)),
        ..LtSeedOpts::default()
    };
    let mut seeder = LtSeeder::start(&fx.torrent, &fx.seed_dir, &opts)?;
    let engine = Engine::start(rt_testkit::ringtorrent::loopback_config(false))?;
    let mut rx = engine.alerts().context("alerts")?;
    let end = Instant::now() + Duration::from_secs_f64(args.minutes * 60.0);
    let started = Instant::now();
    let mut errors = Vec::new();
    let mut recent = VecDeque::new();
    let mut samples: Vec<(u32, f64, u64, usize)> = Vec::new();
    let mut round = 0u32;
    while Instant::now() < end {
        round += 1;
        let dir = fx.dir.path().join(format!("round{round}"));
        let mut add = AddTorrent::new(TorrentSource::File(fx.torrent.clone()), &dir);
        add.peers = vec![seeder.addr()];
        let id = engine.add_torrent(add)?;
        recent.clear();
        if let Err(e) = wait(
            &mut rx,
            120,
            &mut errors,
            &mut recent,
            |a| matches!(a, Alert::TorrentComplete { id: i } if *i == id),
        ) {
            // What a stall looks like from both sides, for whoever reads the report.
            println!(
                "round {round}: download stalled; stats {:?}",
                engine.stats(id)
            );
            println!("peers: {:?}", engine.peers(id));
            if let Err(e) = seeder.proc.check_alive() {
                println!("the libtorrent seeder is gone: {e:#}");
            }
            println!("this round's alerts:");
            for a in &recent {
                println!("  {a}");
            }
            println!("libtorrent seeder log (tail):\n{}", seeder.proc.log_tail());
            return Err(e).with_context(|| format!("round {round}: download"));
        }
        fx.spec
            .verify(&dir)
            .with_context(|| format!("round {round}: verify"))?;
        let leech_dir = fx.dir.path().join(format!("leech{round}"));
        let mut leecher = LtLeecher::start(
            &fx.torrent,
            &leech_dir,
            None,
            &[engine.listen_addr()],
            Duration::from_secs(120),
        )?;
        let st = leecher.wait(Duration::from_secs(130))?;
        if !st.success() {
            bail!("round {round}: the libtorrent leecher failed ({st})");
        }
        fx.spec
            .verify(&leech_dir)
            .with_context(|| format!("round {round}: what we seeded"))?;
        std::fs::remove_dir_all(&leech_dir)?;
        engine.remove_torrent(id, RemoveData::Delete)?;
        wait(
            &mut rx,
            30,
            &mut errors,
            &mut recent,
            |a| matches!(a, Alert::TorrentRemoved { id: i, .. } if *i == id),
        )
        .with_context(|| format!("round {round}: remove"))?;
        let s = (
            round,
            started.elapsed().as_secs_f64(),
            rss_kib(),
            open_fds(),
        );
        println!(
            "round {:>4} at {:>7.1} s: RSS {:>6} KiB, {:>4} open fds",
            s.0, s.1, s.2, s.3
        );
        samples.push(s);
    }
    // Peaks over windows, not single samples: RSS moves with what the buffer pools hold at
    // the moment. Baseline: the `warmup` rounds after warm-up; end: the last `warmup` rounds.
    let w = args.warmup.max(1) as usize;
    anyhow::ensure!(
        samples.len() >= 3 * w,
        "too few rounds ({}) for the windows",
        samples.len()
    );
    let peak = |s: &[(u32, f64, u64, usize)]| {
        (
            s.iter().map(|x| x.2).max().unwrap_or(0),
            s.iter().map(|x| x.3).max().unwrap_or(0),
        )
    };
    let base = peak(&samples[w..2 * w]);
    let last = peak(&samples[samples.len() - w..]);
    let grow = |a: f64, b: f64| if a > 0.0 { (b - a) / a * 100.0 } else { 0.0 };
    let rss_g = grow(base.0 as f64, last.0 as f64);
    let fd_g = grow(base.1 as f64, last.1 as f64);
    println!(
        "soak: {round} rounds ({} MiB down and up each) in {:.1} min",
        args.size_mib,
        started.elapsed().as_secs_f64() / 60.0
    );
    println!(
        "peak of rounds {}..={}: RSS {} KiB, {} fds; peak of the last {w} rounds: RSS {} KiB \
         ({rss_g:+.1}%), {} fds ({fd_g:+.1}%); error alerts: {}",
        w + 1,
        2 * w,
        base.0,
        base.1,
        last.0,
        last.1,
        errors.len()
    );
    for e in &errors {
        println!("  error alert: {e}");
    }
    let ok = rss_g < 10.0 && fd_g < 10.0 && errors.is_empty();
    println!("verdict: {}", if ok { "flat" } else { "NOT flat" });
    if !ok {
        bail!("the soak did not stay flat");
    }
    Ok(())
}
