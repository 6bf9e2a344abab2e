//! bench-harness: benchmarks of ringtorrent against real clients in a local swarm on loopback.
//!
//! - `swarm [--size 4GiB] [--piece-length 256KiB] [--files 1] [--seeders 4]
//!   [--seeder libtorrent|ringtorrent|aria2] [--clients ringtorrent,rqbit,aria2,libtorrent]
//!   [--runs 3] [--rtt-ms 0] [--json out.json]`: download speed and cost per
//!   client, and the seeders' upload over the payload and CPU per GiB. With `--wan
//!   ubuntu|fat`: a WAN-shaped swarm of real seeders behind userspace path shapers.
//! - `seed [--seeders ringtorrent,libtorrent] [--leechers rqbit,aria2] ...`: upload speed and
//!   seeder CPU per GiB uploaded.
//! - `recheck [--tools ringtorrent,libtorrent,aria2]`, `create [--tools
//!   ringtorrent,mktorrent,libtorrent]`: hash-check and torrent-creation speed.
//! - `magnet [--size 256MiB] [--runs 5] [--clients ringtorrent,libtorrent,rqbit]`: starting from
//!   a magnet link: time to metadata, to the first verified piece and to completion.
//! - `bulk [--torrents 20] [--size 8MiB] [-j 4] [--seeders 2] [--rounds 3]`: a list of torrents
//!   with at most N downloading at once, `ringtorrent download -i LIST -j N` against
//!   `aria2c -i LIST -j N`, from libtorrent seeders found through opentracker.
//! - `load [--connections 500] [--size-mib 256] [--hold 10] [--active 10]`: one `ringtorrent
//!   seed` under many leecher connections: RSS and CPU per connection, upload under load.
//! - `soak [--minutes 30] [--size-mib 64]`: one engine downloads from a libtorrent seeder and
//!   seeds to a libtorrent leecher in a loop; RSS and open descriptors must stay flat.
//! - `idle [--torrents 100] [--idle-conns 200] [--conns 500] [--secs 10] [--shards-compare]`:
//!   an in-process engine seeding to nobody, then holding idle connections: CPU, shard
//!   wake-ups per second, memory per torrent and per connection; 1 against 2 shards.
//!
//! The criterion micro-benchmarks live in `benches/`. The only `unsafe` here is in [`measure`]
//! (`wait4`, `sysconf`), which the kernel's per-process accounting needs.
#![deny(unsafe_code)]

mod bench_args;
mod bulk;
mod idle;
mod idle_shards;
mod load;
mod magnet;
mod measure;
mod netns;
mod report;
mod seed;
mod seeders;
mod size;
mod soak;
mod swarm;
mod threads;
mod tools;
mod wan;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Local-swarm benchmarks of ringtorrent against real clients")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Download one payload from a local swarm with each client and compare them.
    Swarm(swarm::SwarmArgs),
    /// Upload: a ringtorrent and a libtorrent seeder each feed the same real leechers.
    Seed(seed::SeedArgs),
    /// Full hash check of complete data: ringtorrent against libtorrent and aria2.
    Recheck(tools::ToolArgs),
    /// Making a .torrent: ringtorrent create against mktorrent and libtorrent.
    Create(tools::ToolArgs),
    /// From a magnet link (x.pe = one libtorrent seeder): time to metadata, first piece, done.
    Magnet(magnet::MagnetArgs),
    /// A list of torrents, at most -j at once: `ringtorrent download -i` against `aria2c -i`.
    Bulk(bulk::BulkArgs),
    /// Many leecher connections to one `ringtorrent seed`: memory and CPU per connection.
    Load(load::LoadArgs),
    /// Download and seed in a loop for a long time: RSS and descriptors must stay flat.
    Soak(soak::SoakArgs),
    /// Idle cost (no peers, idle connections), memory per torrent and connection, 1 vs 2 shards.
    Idle(idle::IdleArgs),
}

fn main() -> anyhow::Result<()> {
    let cmd = Cli::parse().cmd;
    // The in-process engine's log (`soak`, `load`, `idle`), to stderr, per RUST_LOG (default: warnings).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let rtt_ms = match &cmd {
        Cmd::Swarm(a) => a.rtt_ms,
        Cmd::Seed(a) => a.rtt_ms,
        _ => 0,
    };
    if rtt_ms > 0 && !netns::inside() {
        if let Some(code) = netns::rerun_inside(rtt_ms)? {
            std::process::exit(code);
        }
        return Ok(());
    }
    match cmd {
        Cmd::Swarm(args) => swarm::run(&args),
        Cmd::Seed(args) => seed::run(&args),
        Cmd::Recheck(args) => tools::run(tools::Job::Recheck, &args),
        Cmd::Create(args) => tools::run(tools::Job::Create, &args),
        Cmd::Magnet(args) => magnet::run(&args),
        Cmd::Bulk(args) => bulk::run(&args),
        Cmd::Load(args) => load::run(&args),
        Cmd::Soak(args) => soak::run(&args),
        Cmd::Idle(args) => idle::run(&args),
    }
}
