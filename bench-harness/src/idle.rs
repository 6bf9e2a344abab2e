//! `idle`: what an engine costs when little or nothing happens, and what one connection and
//! one torrent cost (issue 18 §3). The engine runs in this process (the library, as the CLI
//! uses it), so its threads are read from `/proc/self/task` by name and its shard wake-ups
//! from [`Engine::shard_stats`]; the harness's own threads sleep while a window is measured.
//!
//! Phases, each measured over `--secs`:
//! 1. `empty`: the engine with no torrent;
//! 2. `seeding`: `--torrents` small torrents, complete, seeded to nobody;
//! 3. `idle conns`: `--idle-conns` plain TCP peers (127.0.1.x) that handshake with the first
//!    torrent and then stay silent (no bitfield, not interested: the engine owes them nothing
//!    but keep-alives);
//! 4. `conns`: as many more as make `--conns`.
//!
//! Reported per phase: CPU in % of one core (the whole process), shard wake-ups per second
//! (the shards' loop counter), context switches per second of all threads, RSS. Then memory
//! per torrent (phase 2 against 1), per connection (phase 4 against 2) and CPU per connection.
//! `--shards-compare` adds a download on loopback with 1 and with 2 shards (`idle_shards.rs`).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ringtorrent::metainfo::build::TorrentBuilder;
use ringtorrent::{AddTorrent, Engine, InfoHash, TorrentId, TorrentSource};
use rt_testkit::adversary::handshake;
use serde::Serialize;

use crate::threads::{self, GroupDelta};

#[derive(clap::Args)]
pub struct IdleArgs {
    /// Seconds each phase is measured.
    #[arg(long, default_value_t = 10)]
    pub secs: u64,
    /// Torrents seeded to nobody.
    #[arg(long, default_value_t = 100)]
    pub torrents: usize,
    /// Size of each of them, in KiB.
    #[arg(long, default_value_t = 1024)]
    pub torrent_kib: u64,
    /// Idle connections of phase 3.
    #[arg(long, default_value_t = 200)]
    pub idle_conns: usize,
    /// Connections of phase 4 (in all).
    #[arg(long, default_value_t = 500)]
    pub conns: usize,
    /// Shard threads (default: one per core).
    #[arg(long)]
    pub shards: Option<usize>,
    /// Also download `--size-mib` with 1 and with 2 shards from local ringtorrent seeders.
    #[arg(long)]
    pub shards_compare: bool,
    /// Payload of the shard comparison, in MiB.
    #[arg(long, default_value_t = 1024)]
    pub size_mib: u64,
    /// Write the results as JSON here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

/// One measured window.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub phase: String,
    pub secs: f64,
    /// CPU of the whole process, in % of one core.
    pub cpu_pct: f64,
    /// Shard loop wake-ups per second (all shards).
    pub shard_wakeups_per_s: f64,
    /// Of those, per second, the ones at the 10 ms tick (work in progress).
    pub shard_busy_wakeups_per_s: f64,
    /// Context switches per second, all threads.
    pub switches_per_s: f64,
    pub rss_kib: u64,
    /// Of `rss_kib`, anonymous memory (heap, stacks, buffer pools): the rest is file pages
    /// mapped (torrent data read through mappings, shared with the page cache).
    pub rss_anon_kib: u64,
    /// By thread group.
    pub groups: BTreeMap<String, GroupDelta>,
}

fn rss_kib() -> u64 {
    rt_testkit::proc::status_kib(None, "VmRSS:").unwrap_or(0)
}

/// Measures `secs` of whatever the engine does now.
pub fn window(engine: &Engine, phase: &str, secs: u64) -> Window {
    let wake = |e: &Engine| {
        e.shard_stats()
            .iter()
            .fold((0, 0), |(a, b), s| (a + s.wakeups, b + s.busy_wakeups))
    };
    let (w0, t0, s0) = (wake(engine), Instant::now(), threads::sample());
    std::thread::sleep(Duration::from_secs(secs));
    let (w1, s1) = (wake(engine), threads::sample());
    let el = t0.elapsed().as_secs_f64();
    let groups = threads::delta(&s0, &s1);
    let cpu: f64 = groups.values().map(|g| g.cpu_s).sum();
    let sw: u64 = groups.values().map(|g| g.switches).sum();
    Window {
        phase: phase.to_string(),
        secs: el,
        cpu_pct: cpu / el * 100.0,
        shard_wakeups_per_s: (w1.0 - w0.0) as f64 / el,
        shard_busy_wakeups_per_s: (w1.1 - w0.1) as f64 / el,
        switches_per_s: sw as f64 / el,
        rss_kib: rss_kib(),
        rss_anon_kib: rt_testkit::proc::status_kib(None, "RssAnon:").unwrap_or(0),
        groups,
    }
}

/// Writes a pseudo-random file of `len` bytes as `dir/name` and returns its torrent.
fn make_torrent(dir: &Path, name: &str, len: usize, seed: u32) -> Result<Vec<u8>> {
    let mut state = seed | 1;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, &data)?;
    let piece = 256 * 1024;
    let hashes = uring_disk::hash_pieces(&[(path, len as u64)], piece, 2, &|_| {})?;
    let (bytes, _) = TorrentBuilder::single_file(name, len as u64, piece)
        .piece_hashes(hashes)
        .build()?;
    Ok(bytes)
}

/// Adds `n` complete torrents and waits until all are seeding; returns the first's info-hash.
fn add_seeding(engine: &Engine, dir: &Path, n: usize, kib: u64) -> Result<InfoHash> {
    let mut ids: Vec<TorrentId> = Vec::new();
    let mut first = None;
    for i in 0..n {
        let bytes = make_torrent(dir, &format!("t{i}.bin"), (kib << 10) as usize, i as u32)?;
        let meta = ringtorrent::metainfo::Metainfo::from_bytes(&bytes)?;
        first.get_or_insert(meta.info_hash);
        let mut add = AddTorrent::new(TorrentSource::Bytes(bytes), dir);
        add.check_existing = true;
        ids.push(engine.add_torrent(add)?);
    }
    let end = Instant::now() + Duration::from_secs(120);
    while !ids
        .iter()
        .all(|id| engine.stats(*id).is_some_and(|s| s.complete))
    {
        if Instant::now() > end {
            bail!("the torrents did not all verify as complete");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    first.context("no torrent")
}

/// Opens connections to `addr` until `conns` holds `total`, each handshaken for `ih` and then
/// left silent. 200 per source address (127.0.1.x), as `load` does.
fn open_idle(
    conns: &mut Vec<TcpStream>,
    total: usize,
    addr: SocketAddr,
    ih: &InfoHash,
) -> Result<()> {
    use std::io::{Read, Write};
    while conns.len() < total {
        let n = conns.len();
        let src = Ipv4Addr::new(127, 0, 1, 1 + (n / 200) as u8);
        let mut c = rt_testkit::net::connect_from(src, addr, Duration::from_secs(10))?;
        c.write_all(&handshake(ih, false, true))?;
        c.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut theirs = [0u8; 68];
        c.read_exact(&mut theirs)
            .with_context(|| format!("connection {n}: no handshake back"))?;
        conns.push(c);
    }
    // Let the engine settle what the handshakes started (its opening messages, the choker).
    std::thread::sleep(Duration::from_secs(2));
    Ok(())
}

/// The engine configuration of the idle phases: loopback, nothing that talks to the world.
fn config(shards: Option<usize>) -> ringtorrent::Config {
    let mut c = rt_testkit::ringtorrent::loopback_config(false);
    c.shards = shards.unwrap_or_else(|| ringtorrent::Config::default().shards);
    c.max_peers_per_torrent = 10_000;
    c
}

pub fn shutdown(engine: Engine) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(engine.shutdown())?;
    Ok(())
}

pub fn run(args: &IdleArgs) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let engine = Engine::start(config(args.shards))?;
    let shards = engine.shard_stats().len();
    std::thread::sleep(Duration::from_secs(1));
    let mut windows = vec![window(&engine, "empty", args.secs)];
    let ih = add_seeding(&engine, dir.path(), args.torrents.max(1), args.torrent_kib)?;
    std::thread::sleep(Duration::from_secs(2));
    windows.push(window(&engine, "seeding", args.secs));
    let mut conns = Vec::new();
    open_idle(&mut conns, args.idle_conns, engine.listen_addr(), &ih)?;
    windows.push(window(&engine, "idle conns", args.secs));
    open_idle(
        &mut conns,
        args.conns.max(args.idle_conns),
        engine.listen_addr(),
        &ih,
    )?;
    windows.push(window(&engine, "conns", args.secs));
    let alive = engine.torrents().first().map_or(0, |t| t.stats.peers);
    drop(conns);
    shutdown(engine)?;

    println!(
        "idle: {shards} shard(s), {} torrents of {} KiB, {} s per phase\n",
        args.torrents, args.torrent_kib, args.secs
    );
    println!(
        "| phase | CPU % of a core | shard wake-ups/s (at the 10 ms tick) | context switches/s, \
         all threads | RSS MiB (anonymous) |"
    );
    println!("|---|---:|---:|---:|---:|");
    for w in &windows {
        println!(
            "| {} | {:.3} | {:.1} ({:.1}) | {:.1} | {:.1} ({:.1}) |",
            w.phase,
            w.cpu_pct,
            w.shard_wakeups_per_s,
            w.shard_busy_wakeups_per_s,
            w.switches_per_s,
            w.rss_kib as f64 / 1024.0,
            w.rss_anon_kib as f64 / 1024.0
        );
    }
    println!("\ncontext switches/s by thread group:");
    for w in &windows {
        let parts: Vec<String> = w
            .groups
            .iter()
            .filter(|(_, g)| g.switches > 0)
            .map(|(k, g)| format!("{k} {:.1}", g.switches as f64 / w.secs))
            .collect();
        println!("  {}: {}", w.phase, parts.join(", "));
    }
    let per = |a: &Window, b: &Window, n: usize| {
        (
            (b.rss_kib as f64 - a.rss_kib as f64) / n.max(1) as f64,
            (b.rss_anon_kib as f64 - a.rss_anon_kib as f64) / n.max(1) as f64,
        )
    };
    let n_conns = args.conns.max(args.idle_conns);
    let per_conn_kib = per(&windows[1], &windows[3], n_conns);
    // The first torrent of a piece length allocates and pre-touches the engine's buffer pool
    // for that length (`Config::buffer_pool_bytes`, once): not a cost of each torrent.
    let pool_kib = (config(args.shards).buffer_pool_bytes >> 10) as f64;
    let mut per_torrent_kib = per(&windows[0], &windows[1], args.torrents);
    per_torrent_kib.0 -= pool_kib / args.torrents.max(1) as f64;
    per_torrent_kib.1 -= pool_kib / args.torrents.max(1) as f64;
    let cpu_per_conn = (windows[3].cpu_pct - windows[1].cpu_pct) / n_conns as f64;
    let cpu_per_torrent = (windows[1].cpu_pct - windows[0].cpu_pct) / args.torrents as f64;
    println!(
        "\nper torrent (the one {pool_kib:.0} KiB buffer pool apart): {:.1} KiB RSS ({:.1} \
         anonymous), {cpu_per_torrent:.5} % of a core; per \
         idle connection: {:.1} KiB RSS ({:.1} anonymous), {cpu_per_conn:.5} % of a core \
         ({alive} of {n_conns} connections up at the end)",
        per_torrent_kib.0, per_torrent_kib.1, per_conn_kib.0, per_conn_kib.1
    );
    let mut report = serde_json::json!({
        "shards": shards,
        "windows": windows,
        "per_torrent_rss_kib": per_torrent_kib,
        "per_conn_rss_kib": per_conn_kib,
        "per_conn_cpu_pct": cpu_per_conn,
    });
    if args.shards_compare {
        let runs = crate::idle_shards::compare(args.size_mib)?;
        report["shards_compare"] = serde_json::to_value(&runs)?;
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}
