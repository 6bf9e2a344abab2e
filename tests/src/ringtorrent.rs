//! The `ringtorrent` binary under test: built once per test process with the same profile as the
//! test itself, then run as `ringtorrent download` with a bounded wall time.
//!
//! CLI contract: `ringtorrent download <file.torrent> -o DIR [--peer IP:PORT]... [--listen
//! IP:PORT] [--shards N] [--quiet] [--no-dht | --dht-bootstrap IP:PORT...] [--transport
//! tcp|utp|both]`, exit 0 only when every piece is verified and on disk. Runs get `--no-dht`
//! unless a test gives loopback DHT nodes ([`Download::dht_bootstrap`]): no test ever
//! contacts the public DHT routers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::net::{free_tcp_udp_port, LEECHER_IP};
use crate::proc::{kit_command, Proc};
use crate::wait::wait_for;

/// Overrides the binary the kit runs (skips the build); a relative path is taken from the
/// workspace root. `tests/scripts/lt_as_ringtorrent.sh` is a libtorrent stand-in that checks
/// the interop tests themselves.
pub const BIN_ENV: &str = "RINGTORRENT_BIN";

/// The workspace root (the parent of the `tests/` crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Path of the `ringtorrent` binary, building `ringtorrent-cli` first (once per process) with
/// the profile of the running executable, into the same target directory.
pub fn ringtorrent_bin() -> Result<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| build_bin().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn build_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(BIN_ENV) {
        // Relative to the workspace root (tests run with the package directory as cwd).
        return Ok(workspace_root().join(p));
    }
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().context("executable without a directory")?;
    if dir
        .file_name()
        .is_some_and(|n| n == "deps" || n == "examples")
    {
        dir = dir.parent().context("deps without a parent")?;
    }
    let profile_dir = dir.to_path_buf();
    let target_dir = profile_dir
        .parent()
        .context("profile dir without a parent")?;
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_string(),
        Some(p) => p.to_string(),
        None => bail!("cannot tell the cargo profile from {exe:?}"),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(&cargo)
        .current_dir(workspace_root())
        .args([
            "build",
            "-p",
            "ringtorrent-cli",
            "--bin",
            "ringtorrent",
            "--profile",
            &profile,
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .stdin(Stdio::null())
        .output()
        .context("running cargo build")?;
    if !out.status.success() {
        bail!(
            "cargo build -p ringtorrent-cli failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let bin = profile_dir.join("ringtorrent");
    if !bin.is_file() {
        bail!("built ringtorrent-cli but {bin:?} is missing");
    }
    Ok(bin)
}

/// One `ringtorrent download` run.
#[derive(Debug, Clone)]
pub struct Download {
    pub torrent: PathBuf,
    pub out_dir: PathBuf,
    pub peers: Vec<SocketAddr>,
    /// `--listen`; a fresh 127.0.0.1 port when `None`.
    pub listen: Option<SocketAddr>,
    pub shards: Option<u32>,
    pub quiet: bool,
    /// More arguments, appended as given (e.g. `--verbose`).
    pub extra_args: Vec<String>,
    /// The run is killed after this long.
    pub timeout: Duration,
    /// Stdin is a pipe for session commands ([`RunningDownload::command`]) instead of null.
    pub commands: bool,
    /// DHT nodes (on loopback) to join through, as `--dht-bootstrap`; empty: `--no-dht`.
    pub dht_bootstrap: Vec<SocketAddr>,
    /// Local service discovery on (multicast on loopback); off (`--no-lsd`) by default, so
    /// that engines of unrelated tests never find each other.
    pub lsd: bool,
    /// Environment variables for the run (e.g. `RUST_LOG`).
    pub env: Vec<(String, String)>,
}

impl Download {
    pub fn new(torrent: &Path, out_dir: &Path) -> Self {
        Download {
            torrent: torrent.to_path_buf(),
            out_dir: out_dir.to_path_buf(),
            peers: Vec::new(),
            listen: None,
            shards: None,
            quiet: true,
            extra_args: Vec::new(),
            timeout: Duration::from_secs(60),
            commands: false,
            dht_bootstrap: Vec::new(),
            lsd: false,
            env: Vec::new(),
        }
    }

    pub fn peer(mut self, p: SocketAddr) -> Self {
        self.peers.push(p);
        self
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// The full command line for `bin`, with a concrete listen address (free for TCP and for
    /// UDP, which uTP listens on).
    pub fn command(&self, bin: &Path) -> Result<Command> {
        let listen = match self.listen {
            Some(l) => l,
            None => SocketAddr::from((LEECHER_IP, free_tcp_udp_port(LEECHER_IP)?)),
        };
        let mut cmd = kit_command(bin);
        cmd.arg("download")
            .arg(&self.torrent)
            .arg("-o")
            .arg(&self.out_dir)
            .arg("--listen")
            .arg(listen.to_string());
        for p in &self.peers {
            cmd.arg("--peer").arg(p.to_string());
        }
        if let Some(n) = self.shards {
            cmd.arg("--shards").arg(n.to_string());
        }
        if self.quiet {
            cmd.arg("--quiet");
        }
        cmd.args(dht_args(&self.dht_bootstrap));
        if !self.lsd {
            cmd.arg("--no-lsd");
        }
        cmd.args(&self.extra_args);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        Ok(cmd)
    }

    /// Starts the download; see [`RunningDownload::wait`].
    pub fn start(&self) -> Result<RunningDownload> {
        let bin = ringtorrent_bin()?;
        let cmd = self.command(&bin)?;
        let work = tempfile::Builder::new()
            .prefix("rt-ringtorrent-")
            .tempdir()?;
        let proc = if self.commands {
            Proc::spawn_split_piped("ringtorrent", cmd, work)?
        } else {
            Proc::spawn_split("ringtorrent", cmd, work)?
        };
        Ok(RunningDownload {
            proc,
            started: Instant::now(),
            timeout: self.timeout,
        })
    }

    /// Runs the download to its end (or its timeout).
    pub fn run(&self) -> Result<DownloadOutcome> {
        self.start()?.wait()
    }
}

/// A `ringtorrent download` in progress; killed on drop.
pub struct RunningDownload {
    pub proc: Proc,
    started: Instant,
    timeout: Duration,
}

impl RunningDownload {
    pub fn is_running(&mut self) -> bool {
        self.proc.is_running()
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Types a session command (`pause`, `resume`, `quit`); needs [`Download::commands`].
    pub fn command(&mut self, line: &str) -> Result<()> {
        self.proc.send_line(line)
    }

    /// Waits for the exit, killing the process at the download's timeout.
    pub fn wait(mut self) -> Result<DownloadOutcome> {
        let left = self.timeout.saturating_sub(self.started.elapsed());
        let status = wait_for(left, "ringtorrent to exit", || self.proc.try_status()).ok();
        let wall = self.started.elapsed();
        self.proc.kill();
        Ok(DownloadOutcome {
            status,
            stdout: self.proc.stdout().unwrap_or_default(),
            stderr: self.proc.stderr(),
            wall,
        })
    }
}

/// How a download run ended.
#[derive(Debug)]
pub struct DownloadOutcome {
    /// `None` if the run hit its timeout and was killed.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub wall: Duration,
}

impl DownloadOutcome {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Errors with the exit status and output unless the run exited 0.
    pub fn ensure_success(&self) -> Result<()> {
        if self.success() {
            return Ok(());
        }
        let how = match self.status {
            Some(s) => format!("exited with {s}"),
            None => format!("was killed at its timeout after {:?}", self.wall),
        };
        bail!(
            "ringtorrent download {how}; stderr:\n{}\nstdout:\n{}",
            crate::proc::tail(&self.stderr, 8000),
            crate::proc::tail(&self.stdout, 2000)
        )
    }
}

/// The CLI's DHT arguments: `--no-dht`, or `--dht-bootstrap` for each of `bootstrap` (which
/// must be on loopback).
pub fn dht_args(bootstrap: &[SocketAddr]) -> Vec<String> {
    assert!(
        bootstrap.iter().all(|a| a.ip().is_loopback()),
        "tests join loopback DHT nodes only: {bootstrap:?}"
    );
    if bootstrap.is_empty() {
        return vec!["--no-dht".into()];
    }
    bootstrap
        .iter()
        .flat_map(|a| ["--dht-bootstrap".to_string(), a.to_string()])
        .collect()
}

/// `ringtorrent download` with `peers`, bounded by `timeout`.
pub fn run_download(
    torrent: &Path,
    out_dir: &Path,
    peers: &[SocketAddr],
    timeout: Duration,
) -> Result<DownloadOutcome> {
    let mut d = Download::new(torrent, out_dir).timeout(timeout);
    d.peers = peers.to_vec();
    d.run()
}

/// Pieces a `download --verbose` run reported verified (`#1: piece N verified` on stderr).
pub fn verified_pieces(stderr: &str) -> std::collections::HashSet<u32> {
    stderr
        .lines()
        .filter_map(|l| l.split_once(": piece ")?.1.strip_suffix(" verified"))
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// An engine config for tests and benchmarks on loopback: listens on 127.0.0.1 (any port),
/// 2 shards and 2 hash threads, and finds peers only where it is told (no DHT, LSD or PEX;
/// trackers as asked).
pub fn loopback_config(trackers: bool) -> ringtorrent::Config {
    ringtorrent::Config {
        shards: 2,
        hash_threads: 2,
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        use_trackers: trackers,
        dht: ringtorrent::DhtConfig::disabled(),
        lsd: false,
        pex: false,
        ..ringtorrent::Config::default()
    }
}
