//! aria2c (1.36) peers with the loopback settings from shared/INTEROP.md. aria2 has no option to
//! dial a peer by address: it finds peers only through a tracker (`--bt-tracker`).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::Duration;

use anyhow::Result;

use crate::libtorrent::READY_TIMEOUT;
use crate::net::{free_port, seeder_ip, LEECHER_IP};
use crate::proc::{kit_command, Proc};

/// Flags every aria2 process gets: nothing leaves loopback, no colour codes in logs.
fn base_command(ip: Ipv4Addr, port: u16, tracker: Option<&str>) -> Command {
    let mut cmd = kit_command("aria2c");
    cmd.args([
        "--enable-dht=false",
        "--enable-dht6=false",
        "--bt-enable-lpd=false",
        "--enable-peer-exchange=false",
        "--disable-ipv6=true",
        "--enable-color=false",
        "--bt-save-metadata=false",
        "--auto-file-renaming=false",
        "--file-allocation=none",
    ])
    .arg(format!("--interface={ip}"))
    .arg(format!("--listen-port={port}"));
    if let Some(t) = tracker {
        cmd.arg("--bt-exclude-tracker=*")
            .arg(format!("--bt-tracker={t}"));
    }
    cmd
}

/// Options for [`Aria2Seeder::start`].
#[derive(Debug, Clone, Default)]
pub struct Aria2SeedOpts {
    /// Tracker to announce to instead of the torrent's own.
    pub tracker: Option<String>,
    /// Serve the data without checking it (`--bt-seed-unverified`), e.g. a corrupted copy.
    pub seed_unverified: bool,
    pub ip: Option<Ipv4Addr>,
}

/// An aria2 seeder; killed on drop.
pub struct Aria2Seeder {
    pub proc: Proc,
    addr: SocketAddr,
}

impl Aria2Seeder {
    /// Seeds `torrent` from `save_dir`; returns once aria2 has checked the data and seeds.
    pub fn start(torrent: &Path, save_dir: &Path, opts: &Aria2SeedOpts) -> Result<Self> {
        crate::require::require(crate::require::Tool::Aria2)?;
        let ip = opts.ip.unwrap_or_else(seeder_ip);
        let port = free_port(ip)?;
        let mut cmd = base_command(ip, port, opts.tracker.as_deref());
        cmd.arg("--seed-ratio=0.0")
            .arg("--summary-interval=1")
            .arg("--console-log-level=notice")
            .arg(format!("--dir={}", save_dir.display()));
        if opts.seed_unverified {
            cmd.arg("--bt-seed-unverified=true");
        } else {
            cmd.arg("--check-integrity=true");
        }
        cmd.arg(torrent);
        let mut proc = Proc::spawn_fresh("aria2-seeder", cmd)?;
        proc.wait_for_log("listening on TCP port", READY_TIMEOUT)?;
        proc.wait_for_log("SEED(", READY_TIMEOUT)?;
        Ok(Aria2Seeder {
            proc,
            addr: SocketAddr::from((ip, port)),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// A command that downloads `torrent` into `save_dir` with aria2 and exits when done
/// (`--seed-time=0`). Peers come only from the tracker.
pub fn leech_command(
    torrent: &Path,
    save_dir: &Path,
    listen_port: u16,
    tracker: Option<&str>,
) -> Command {
    let mut cmd = base_command(LEECHER_IP, listen_port, tracker);
    cmd.arg("--seed-time=0")
        .arg("--summary-interval=0")
        .arg("--console-log-level=warn")
        .arg("--bt-hash-check-seed=false")
        .arg(format!("--dir={}", save_dir.display()))
        .arg(torrent);
    cmd
}

/// An aria2 leecher; killed on drop.
pub struct Aria2Leecher {
    pub proc: Proc,
}

impl Aria2Leecher {
    pub fn start(torrent: &Path, save_dir: &Path, tracker: Option<&str>) -> Result<Self> {
        crate::require::require(crate::require::Tool::Aria2)?;
        let port = free_port(LEECHER_IP)?;
        let cmd = leech_command(torrent, save_dir, port, tracker);
        Ok(Aria2Leecher {
            proc: Proc::spawn_fresh("aria2-leecher", cmd)?,
        })
    }

    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.proc.wait_exit(timeout)
    }
}
