//! bench-harness: benchmarks of ringtorrent against real clients in a local swarm on loopback.
//!
//! `cargo run --release -p bench-harness -- swarm [--size 4GiB] [--piece-length 256KiB]
//! [--files 1] [--seeders 4] [--seeder libtorrent|aria2|ringtorrent]
//! [--clients ringtorrent,rqbit,aria2,libtorrent] [--runs 3] [--json out.json]`
//!
//! The criterion micro-benchmarks live in `benches/`. The only `unsafe` here is the `wait4` call
//! in [`measure`], which the kernel's per-process accounting needs.
#![deny(unsafe_code)]

mod measure;
mod report;
mod size;
mod swarm;

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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Swarm(args) => swarm::run(&args),
    }
}
