//! `idle --shards-compare`: the same download on loopback with 1 and with 2 shards, from two
//! `ringtorrent seed` processes (one shard each; outgoing connections are handed to the
//! shards round-robin, so with 2 shards each shard carries one seeder). Measured in this
//! process per thread group: CPU seconds per GiB downloaded, of each shard and of the rest
//! (disk thread, hashing threads, control), and the throughput. These are the per-shard CPU
//! figures DESIGN.md extrapolates from ("Shard wake-ups, idle cost and the 16-core model").
//!
//! On a 2-core machine the seeders share the cores with the downloader, so the throughput
//! says little about 2 shards on a bigger machine; the CPU per GiB of each thread does.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use ringtorrent::{AddTorrent, Alert, Engine, TorrentSource};
use rt_testkit::net::{free_port, seeder_ip};
use rt_testkit::rt_seeder::{RtSeedOpts, RtSeeder};
use rt_testkit::torrent::PayloadFixture;
use rt_testkit::PayloadSpec;
use serde::Serialize;

use crate::threads::{self, GroupDelta};

/// One download.
#[derive(Debug, Serialize)]
pub struct ShardRun {
    pub shards: usize,
    pub wall_s: f64,
    pub mib_per_s: f64,
    /// CPU seconds per GiB, the whole engine (every thread of this process).
    pub cpu_s_per_gib: f64,
    /// CPU seconds per GiB by thread group (each shard apart).
    pub groups_cpu_s_per_gib: BTreeMap<String, f64>,
    pub shard_wakeups_per_s: f64,
}

fn download(
    fx: &PayloadFixture,
    seeders: &[SocketAddr],
    shards: usize,
    round: usize,
) -> Result<ShardRun> {
    let mut cfg = rt_testkit::ringtorrent::loopback_config(false);
    cfg.shards = shards;
    let engine = Engine::start(cfg)?;
    let Some(mut rx) = engine.alerts() else {
        bail!("no alert stream")
    };
    let dir = fx.dir.path().join(format!("dl-{shards}-{round}"));
    let mut add = AddTorrent::new(TorrentSource::File(fx.torrent.clone()), &dir);
    add.peers = seeders.to_vec();
    let wake = |e: &Engine| e.shard_stats().iter().map(|s| s.wakeups).sum::<u64>();
    let (s0, w0, t0) = (threads::sample(), wake(&engine), Instant::now());
    let id = engine.add_torrent(add)?;
    let end = t0 + Duration::from_secs(600);
    loop {
        match rx.try_recv() {
            Ok(Alert::TorrentComplete { id: i }) if i == id => break,
            Ok(Alert::TorrentError { message, .. }) => bail!("torrent error: {message}"),
            Ok(_) => {}
            Err(_) if Instant::now() > end => bail!("download not done in 600 s"),
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    let wall_s = t0.elapsed().as_secs_f64();
    let (s1, w1) = (threads::sample(), wake(&engine));
    crate::idle::shutdown(engine)?;
    fx.spec.verify(&dir)?;
    std::fs::remove_dir_all(&dir)?;
    let gib = fx.spec.total_len() as f64 / (1u64 << 30) as f64;
    let groups: BTreeMap<String, GroupDelta> = threads::delta(&s0, &s1);
    let cpu: f64 = groups.values().map(|g| g.cpu_s).sum();
    Ok(ShardRun {
        shards,
        wall_s,
        mib_per_s: fx.spec.total_len() as f64 / (1 << 20) as f64 / wall_s,
        cpu_s_per_gib: cpu / gib,
        groups_cpu_s_per_gib: groups
            .into_iter()
            .filter(|(k, _)| k != "other")
            .map(|(k, g)| (k, g.cpu_s / gib))
            .collect(),
        shard_wakeups_per_s: (w1 - w0) as f64 / wall_s,
    })
}

/// Downloads `size_mib` with 1, 2, 1, 2 shards (alternating, so drift hits both) and
/// prints the table.
pub fn compare(size_mib: u64) -> Result<Vec<ShardRun>> {
    let fx = PayloadFixture::new(
        PayloadSpec::single("shards.bin", size_mib << 20, 18),
        256 * 1024,
    )?;
    let mut seeders = Vec::new();
    for _ in 0..2 {
        let ip = seeder_ip();
        let mut opts = RtSeedOpts::listen(SocketAddr::from((ip, free_port(ip)?)));
        opts.extra_args = vec!["--shards".into(), "1".into()];
        seeders.push(RtSeeder::start(&fx.torrent, &fx.seed_dir, &opts)?);
    }
    let addrs: Vec<SocketAddr> = seeders.iter().map(|s| s.addr()).collect();
    let mut runs = Vec::new();
    for (round, shards) in [1, 2, 1, 2].into_iter().enumerate() {
        runs.push(download(&fx, &addrs, shards, round)?);
    }
    println!(
        "\nshards, a {size_mib} MiB download from 2 local ringtorrent seeders (1 shard each):\n"
    );
    println!(
        "| shards | MiB/s | CPU-s/GiB, engine | per thread group, CPU-s/GiB | shard wake-ups/s |"
    );
    println!("|---:|---:|---:|---|---:|");
    for r in &runs {
        let g: Vec<String> = r
            .groups_cpu_s_per_gib
            .iter()
            .filter(|(_, v)| **v >= 0.005)
            .map(|(k, v)| format!("{k} {v:.2}"))
            .collect();
        println!(
            "| {} | {:.0} | {:.2} | {} | {:.0} |",
            r.shards,
            r.mib_per_s,
            r.cpu_s_per_gib,
            g.join(", "),
            r.shard_wakeups_per_s
        );
    }
    Ok(runs)
}
