//! `ringtorrent seed` as a guarded process: started, parsed and stopped the way a user would.
//!
//! CLI contract: `ringtorrent seed <file.torrent> <data> --listen ADDR [--peer ADDR]...
//! [--no-trackers] [--no-dht | --dht-bootstrap ADDR...]` first prints `seeding on ADDR: N/M pieces verified ...` on stdout, and on
//! SIGTERM stops and prints `uploaded X MiB` (one decimal).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::proc::{kit_command, Proc};
use crate::ringtorrent::ringtorrent_bin;

/// How long the seeder may take to check its data and print its first line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Options for [`RtSeeder::start`].
#[derive(Debug, Clone)]
pub struct RtSeedOpts {
    pub listen: SocketAddr,
    /// Peers to dial (e.g. a Transmission leecher, which ignores loopback peers it is told of).
    pub peers: Vec<SocketAddr>,
    /// Announce to the torrent's trackers.
    pub trackers: bool,
    /// More arguments, appended as given.
    pub extra_args: Vec<String>,
    /// DHT nodes (on loopback) to join and announce to; empty: `--no-dht`.
    pub dht_bootstrap: Vec<SocketAddr>,
    /// Local service discovery on; off (`--no-lsd`) by default.
    pub lsd: bool,
}

impl RtSeedOpts {
    pub fn listen(listen: SocketAddr) -> Self {
        RtSeedOpts {
            listen,
            peers: Vec::new(),
            trackers: false,
            extra_args: Vec::new(),
            dht_bootstrap: Vec::new(),
            lsd: false,
        }
    }
}

/// A running `ringtorrent seed`; killed on drop, or stopped gracefully by [`RtSeeder::stop`].
pub struct RtSeeder {
    pub proc: Proc,
    addr: SocketAddr,
    pieces_ok: u32,
    pieces_total: u32,
}

/// The `seed` command line for `bin`.
pub fn seed_command(bin: &Path, torrent: &Path, data: &Path, opts: &RtSeedOpts) -> Command {
    let mut cmd = kit_command(bin);
    cmd.arg("seed")
        .arg(torrent)
        .arg(data)
        .arg("--listen")
        .arg(opts.listen.to_string());
    for p in &opts.peers {
        cmd.arg("--peer").arg(p.to_string());
    }
    if !opts.trackers {
        cmd.arg("--no-trackers");
    }
    cmd.args(crate::ringtorrent::dht_args(&opts.dht_bootstrap));
    if !opts.lsd {
        cmd.arg("--no-lsd");
    }
    cmd.args(&opts.extra_args);
    cmd
}

/// Parses `seeding on ADDR: N/M pieces verified ...` into (ADDR, N, M).
pub fn parse_ready_line(line: &str) -> Option<(SocketAddr, u32, u32)> {
    let rest = line.trim().strip_prefix("seeding on ")?;
    let (addr, rest) = rest.split_once(": ")?;
    let (counts, _) = rest.split_once(" pieces verified")?;
    let (have, total) = counts.split_once('/')?;
    Some((addr.parse().ok()?, have.parse().ok()?, total.parse().ok()?))
}

/// Parses the `uploaded X MiB` line out of the seeder's stdout.
pub fn parse_uploaded_mib(stdout: &str) -> Option<f64> {
    stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("uploaded "))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

impl RtSeeder {
    /// Starts seeding and returns once the data is checked and the seeder listens.
    pub fn start(torrent: &Path, data: &Path, opts: &RtSeedOpts) -> Result<Self> {
        let cmd = seed_command(&ringtorrent_bin()?, torrent, data, opts);
        let work = tempfile::Builder::new()
            .prefix("rt-ringtorrent-seed-")
            .tempdir()?;
        let mut proc = Proc::spawn_split("ringtorrent-seed", cmd, work)?;
        let line = proc.wait_for_log("seeding on ", READY_TIMEOUT)?;
        let (addr, pieces_ok, pieces_total) =
            parse_ready_line(&line).with_context(|| format!("bad first line {line:?}"))?;
        Ok(RtSeeder {
            proc,
            addr,
            pieces_ok,
            pieces_total,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// (verified, total) pieces from the seeder's first line.
    pub fn pieces_verified(&self) -> (u32, u32) {
        (self.pieces_ok, self.pieces_total)
    }

    /// Sends SIGTERM, waits for the exit, and returns the MiB the seeder says it uploaded.
    pub fn stop(mut self) -> Result<f64> {
        let pid = self.proc.pid() as i32;
        if let Some(pid) = rustix::process::Pid::from_raw(pid).filter(|_| pid > 1) {
            // Our own child (the guard has not reaped it), so the pid is still ours.
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let status = self.proc.wait_exit(Duration::from_secs(20))?;
        let out = self.proc.stdout().unwrap_or_default();
        let Some(mib) = parse_uploaded_mib(&out) else {
            bail!(
                "seeder exited ({status}) without an upload figure; log:\n{}",
                self.proc.log_tail()
            );
        };
        Ok(mib)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_first_line() {
        let l = "seeding on 127.0.0.5:4000: 9/10 pieces verified in 0.01 s (3.0 MiB/s check)";
        assert_eq!(
            parse_ready_line(l),
            Some(("127.0.0.5:4000".parse().unwrap(), 9, 10))
        );
        assert_eq!(
            parse_ready_line("seeding on nowhere: 1/2 pieces verified"),
            None
        );
        assert_eq!(parse_ready_line("warning: 1 pieces failed"), None);
    }

    #[test]
    fn parses_the_upload_figure() {
        assert_eq!(parse_uploaded_mib("x\nuploaded 12.5 MiB\n"), Some(12.5));
        assert_eq!(parse_uploaded_mib("uploaded lots"), None);
    }
}
