//! `load`: many peer connections to one engine (issue 14 §6). A `ringtorrent seed` process
//! serves one torrent; this process opens `--connections` leecher connections to it from
//! 127.0.1.x (200 per source address), each a thread speaking BEP 3 with the Fast extension.
//!
//! Phases, each measured on the seeder from `/proc/<pid>` (RSS, CPU seconds):
//! 1. baseline: seeding, no peers;
//! 2. idle: every connection handshaken and interested, nothing requested, for `--hold` s;
//! 3. active: every unchoked connection keeps 16 block requests in flight for `--active` s
//!    (the engine unchokes a few at a time, as it should); bytes served are counted.
//!
//! Reported: connections the engine accepted, RSS and CPU per connection while idle, and the
//! upload rate and CPU per GiB while active. Blocks received are not verified here (the tests
//! do that); only their length is counted.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use rt_testkit::adversary::{frame, handshake, read_frame, Target};
use rt_testkit::rt_seeder::{RtSeedOpts, RtSeeder};
use rt_testkit::torrent::PayloadFixture;
use rt_testkit::PayloadSpec;

use crate::measure::proc_cpu_s;

#[derive(clap::Args)]
pub struct LoadArgs {
    /// Leecher connections opened to the engine.
    #[arg(long, default_value_t = 500)]
    pub connections: usize,
    /// Payload size in MiB.
    #[arg(long, default_value_t = 256)]
    pub size_mib: u64,
    /// Seconds every connection stays idle (handshaken, interested).
    #[arg(long, default_value_t = 10)]
    pub hold: u64,
    /// Seconds every unchoked connection downloads.
    #[arg(long, default_value_t = 10)]
    pub active: u64,
    /// Shard threads of the seeder (default: one per core).
    #[arg(long)]
    pub shards: Option<usize>,
}

fn rss_kib(pid: u32) -> Result<u64> {
    rt_testkit::proc::status_kib(Some(pid), "VmRSS:")
}

/// Shared by the connection threads.
struct Load {
    target: Target,
    engine: SocketAddr,
    /// Phase 3 has begun: request blocks when unchoked.
    active: AtomicBool,
    stop: AtomicBool,
    handshaken: AtomicU64,
    unchoked: AtomicU64,
    bytes: AtomicU64,
}

fn connection(load: &Load, src: Ipv4Addr, n: u64) -> Result<()> {
    let mut c = rt_testkit::net::connect_from(src, load.engine, Duration::from_secs(10))?;
    c.write_all(&handshake(&load.target.info_hash, false, true))?;
    let mut theirs = [0u8; 68];
    std::io::Read::read_exact(&mut c, &mut theirs)?;
    c.write_all(&frame(2, &[]))?; // interested
    load.handshaken.fetch_add(1, Ordering::Relaxed);
    c.set_read_timeout(Some(Duration::from_millis(200)))?;
    let (mut unchoked, mut in_flight, mut next) = (false, 0u32, n * 7919);
    let blocks = u64::from(load.target.piece_length / 16384).max(1);
    let pieces = u64::from(load.target.num_pieces.saturating_sub(1)).max(1);
    while !load.stop.load(Ordering::Relaxed) {
        if unchoked && load.active.load(Ordering::Relaxed) {
            let mut batch = Vec::new();
            while in_flight < 16 {
                // Whole 16 KiB blocks of any piece but the (possibly short) last one.
                let piece = (next / blocks % pieces) as u32;
                let offset = (next % blocks) as u32 * 16384;
                next += 1;
                let mut m = piece.to_be_bytes().to_vec();
                m.extend_from_slice(&offset.to_be_bytes());
                m.extend_from_slice(&16384u32.to_be_bytes());
                batch.extend_from_slice(&frame(6, &m));
                in_flight += 1;
            }
            if !batch.is_empty() {
                c.write_all(&batch)?;
            }
        }
        let msg = match read_frame(&mut c) {
            Ok(Some(m)) => m,
            Ok(None) => continue,
            Err(e) => match e.downcast_ref::<std::io::Error>().map(|e| e.kind()) {
                Some(std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
                _ => return Err(e),
            },
        };
        match msg[0] {
            0 => {
                unchoked = false;
                in_flight = 0;
            }
            1 => {
                if !unchoked {
                    load.unchoked.fetch_add(1, Ordering::Relaxed);
                }
                unchoked = true;
            }
            7 => {
                in_flight = in_flight.saturating_sub(1);
                load.bytes
                    .fetch_add(msg.len().saturating_sub(9) as u64, Ordering::Relaxed);
            }
            16 => in_flight = in_flight.saturating_sub(1), // reject
            _ => {}
        }
    }
    Ok(())
}

pub fn run(args: &LoadArgs) -> Result<()> {
    let fx = PayloadFixture::new(
        PayloadSpec::single("load.bin", args.size_mib << 20, 77),
        256 * 1024,
    )?;
    let ip = rt_testkit::net::seeder_ip();
    let listen = SocketAddr::from((ip, rt_testkit::net::free_port(ip)?));
    let mut extra = vec![
        "--max-peers".to_string(),
        (args.connections + 16).to_string(),
    ];
    if let Some(n) = args.shards {
        extra.extend(["--shards".to_string(), n.to_string()]);
    }
    let seeder = RtSeeder::start(
        &fx.torrent,
        &fx.seed_dir,
        &RtSeedOpts {
            extra_args: extra,
            ..RtSeedOpts::listen(listen)
        },
    )?;
    let pid = seeder.proc.pid();
    std::thread::sleep(Duration::from_secs(2));
    let (rss0, cpu0) = (rss_kib(pid)?, proc_cpu_s(pid)?);

    let load = Arc::new(Load {
        target: Target::of(&fx.meta),
        engine: seeder.addr(),
        active: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        handshaken: AtomicU64::new(0),
        unchoked: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    });
    let opened = Instant::now();
    let mut threads = Vec::new();
    for i in 0..args.connections {
        let l = load.clone();
        let src = Ipv4Addr::new(127, 0, 1, 1 + (i / 200) as u8);
        threads.push(
            std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(move || connection(&l, src, i as u64))?,
        );
    }
    let end = Instant::now() + Duration::from_secs(30);
    while (load.handshaken.load(Ordering::Relaxed) as usize) < args.connections
        && Instant::now() < end
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let up_in = opened.elapsed();
    let handshaken = load.handshaken.load(Ordering::Relaxed);
    let cpu1 = proc_cpu_s(pid)?;
    std::thread::sleep(Duration::from_secs(args.hold));
    let (rss_idle, cpu2) = (rss_kib(pid)?, proc_cpu_s(pid)?);

    load.active.store(true, Ordering::Relaxed);
    let t_active = Instant::now();
    std::thread::sleep(Duration::from_secs(args.active));
    let (rss_active, cpu3) = (rss_kib(pid)?, proc_cpu_s(pid)?);
    let served = load.bytes.load(Ordering::Relaxed);
    let secs = t_active.elapsed().as_secs_f64();
    load.stop.store(true, Ordering::Relaxed);
    let mut failed = 0;
    for t in threads {
        if !matches!(t.join(), Ok(Ok(()))) {
            failed += 1;
        }
    }

    let n = handshaken.max(1) as f64;
    println!("load: {} connections asked, {handshaken} handshaken in {:.2} s, {failed} ended with an error", args.connections, up_in.as_secs_f64());
    println!(
        "seeder RSS: {} MiB baseline, {} MiB with all idle, {} MiB active",
        rss0 >> 10,
        rss_idle >> 10,
        rss_active >> 10
    );
    println!(
        "per connection: {:.1} KiB RSS; {:.2} ms CPU to accept and handshake; {:.3} ms CPU per second idle",
        rss_idle.saturating_sub(rss0) as f64 / n,
        (cpu1 - cpu0) * 1000.0 / n,
        (cpu2 - cpu1) * 1000.0 / n / args.hold.max(1) as f64
    );
    let gib = served as f64 / (1u64 << 30) as f64;
    println!(
        "active: {} connections unchoked at some point, {:.1} MiB/s served, seeder {:.2} CPU-s per GiB",
        load.unchoked.load(Ordering::Relaxed),
        served as f64 / 1048576.0 / secs,
        if gib > 0.0 { (cpu3 - cpu2) / gib } else { f64::NAN }
    );
    Ok(())
}
