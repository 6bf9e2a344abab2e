//! libtorrent 2.0 peers (the Debian `python3-libtorrent` bindings) driven by the scripts in
//! `tests/scripts/`: a seeder that can serve corrupted data on purpose, and a leecher.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::net::{seeder_ip, LEECHER_IP};
use crate::proc::{kit_command, Proc};
use crate::{python, script};

/// How long a seeder may take to check its data and listen.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Options for [`LtSeeder::start`].
#[derive(Debug, Clone, Default)]
pub struct LtSeedOpts {
    /// Skip the hash check and turn hash checks off: the data is served as it is on disk,
    /// corrupted or not. This is how tests get a peer that sends wrong blocks.
    pub seed_mode: bool,
    /// Announce URL to add to the torrent (besides any it carries).
    pub tracker: Option<String>,
    /// Upload limit in bytes per second (0 = none).
    pub upload_rate_limit_bytes_per_s: u64,
    /// Peers to dial once seeding.
    pub peers: Vec<SocketAddr>,
    /// Address to listen on; a fresh 127.0.0.x seeder address when `None`.
    pub ip: Option<IpAddr>,
    /// Loopback DHT nodes to bootstrap from and announce to ([`crate::dht::LocalDht`]); the
    /// DHT is off when empty.
    pub dht_bootstrap: Vec<SocketAddr>,
    /// Run the DHT even without bootstrap nodes (a lone node peers learn of by PORT).
    pub dht: bool,
    /// More torrents the same session seeds: (torrent, directory holding its content).
    pub also: Vec<(PathBuf, PathBuf)>,
    /// MSE/PE policy of the session.
    pub encryption: LtEncryption,
    /// Transports the session accepts and dials (TCP only by default).
    pub transport: LtTransport,
    /// The seeder stops itself after this long (its watchdog); 900 s when `None`.
    pub max_run: Option<Duration>,
    /// (unchoked, choked): once seeding, the seeder chokes every peer for the second span
    /// after each first span (its unchoke slots drop to 0), as a seeder out of slots does.
    pub choke_cycle: Option<(Duration, Duration)>,
}

/// libtorrent's MSE/PE policy in a kit session (`RT_LT_ENCRYPTION` for `lt_common.py`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LtEncryption {
    /// libtorrent's defaults: outgoing tries MSE first, both accepted, plaintext preferred.
    #[default]
    Default,
    /// RC4 only, both directions (`out_enc_policy`/`in_enc_policy` forced,
    /// `allowed_enc_level` RC4).
    Forced,
    /// Plaintext only.
    Disabled,
}

impl LtEncryption {
    /// Sets the policy for a kit script started by `cmd`.
    pub fn apply(self, cmd: &mut Command) {
        let v = match self {
            LtEncryption::Default => "default",
            LtEncryption::Forced => "forced",
            LtEncryption::Disabled => "disabled",
        };
        cmd.env("RT_LT_ENCRYPTION", v);
    }
}

/// Peer transports of a kit session (`RT_LT_TRANSPORT` for `lt_common.py`). Both share the
/// listen port: TCP on it, uTP (BEP 29) on the UDP socket of the same number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LtTransport {
    /// TCP only, both ways (uTP off).
    #[default]
    Tcp,
    /// uTP only, both ways (`enable_incoming_tcp`/`enable_outgoing_tcp` off). libtorrent 2.0
    /// still listens on TCP, but closes every connection it accepts there at once: a TCP dial
    /// connects and is reset, it is not refused.
    Utp,
    /// Both, libtorrent's default.
    Both,
}

impl LtTransport {
    /// Sets the transports for a kit script started by `cmd`.
    pub fn apply(self, cmd: &mut Command) {
        let v = match self {
            LtTransport::Tcp => "tcp",
            LtTransport::Utp => "utp",
            LtTransport::Both => "both",
        };
        cmd.env("RT_LT_TRANSPORT", v);
    }
}

/// A libtorrent seeder process; killed on drop.
pub struct LtSeeder {
    pub proc: Proc,
    addr: SocketAddr,
}

impl LtSeeder {
    /// Starts seeding the content of `torrent` found under `save_dir`; returns once the seeder
    /// listens and seeds.
    pub fn start(torrent: &Path, save_dir: &Path, opts: &LtSeedOpts) -> Result<Self> {
        crate::require::require(crate::require::Tool::Libtorrent)?;
        let ip = opts.ip.unwrap_or_else(|| seeder_ip().into());
        let mut cmd = kit_command(python());
        cmd.arg(script("lt_seed.py"))
            .arg("--torrent")
            .arg(torrent)
            .arg("--data")
            .arg(save_dir)
            .arg("--listen")
            .arg(SocketAddr::new(ip, 0).to_string())
            .arg("--upload-rate-limit")
            .arg(opts.upload_rate_limit_bytes_per_s.to_string());
        if opts.seed_mode {
            cmd.arg("--seed-mode");
        }
        if let Some(t) = &opts.tracker {
            cmd.arg("--tracker").arg(t);
        }
        for p in &opts.peers {
            cmd.arg("--peer").arg(p.to_string());
        }
        for n in &opts.dht_bootstrap {
            anyhow::ensure!(n.ip().is_loopback(), "DHT node {n} is not on loopback");
            cmd.arg("--dht-bootstrap").arg(n.to_string());
        }
        if opts.dht {
            cmd.arg("--dht");
        }
        for (torrent, data) in &opts.also {
            let (t, d) = (torrent.display().to_string(), data.display().to_string());
            anyhow::ensure!(!t.contains('='), "torrent path {t:?} has a '='");
            cmd.arg("--also").arg(format!("{t}={d}"));
        }
        opts.encryption.apply(&mut cmd);
        opts.transport.apply(&mut cmd);
        if let Some(d) = opts.max_run {
            cmd.arg("--max-seconds").arg(d.as_secs().to_string());
        }
        if let Some((on, off)) = opts.choke_cycle {
            cmd.arg("--choke-cycle").arg(format!(
                "{:.3},{:.3}",
                on.as_secs_f64(),
                off.as_secs_f64()
            ));
        }
        let mut proc = Proc::spawn_fresh("libtorrent-seeder", cmd)?;
        let line = proc.wait_for_log("READY ", READY_TIMEOUT)?;
        let addr = line
            .trim()
            .strip_prefix("READY ")
            .and_then(|a| a.parse().ok())
            .with_context(|| format!("bad READY line {line:?}"))?;
        Ok(LtSeeder { proc, addr })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// One seeder per fixture, each with `opts`.
    pub fn start_each(
        fixtures: &[crate::torrent::PayloadFixture],
        opts: &LtSeedOpts,
    ) -> Result<Vec<LtSeeder>> {
        fixtures
            .iter()
            .map(|f| LtSeeder::start(&f.torrent, &f.seed_dir, opts))
            .collect()
    }

    /// BEP 5 PORT messages received, from the seeder's latest stats line (every 2 s).
    pub fn dht_ports_received(&self) -> Option<u64> {
        self.proc
            .log()
            .lines()
            .rev()
            .find_map(|l| l.split("stats: incoming_dht_port ").nth(1))
            .and_then(|n| n.trim().parse().ok())
    }

    /// Total bytes uploaded, from the seeder's latest status line (printed every 2 s).
    pub fn uploaded_bytes(&self) -> Option<u64> {
        self.proc
            .log()
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("status: peers "))
            .and_then(|rest| {
                let mut it = rest.split_whitespace();
                it.find(|w| *w == "uploaded")?;
                it.next()?.parse().ok()
            })
    }

    /// Kills the seeder now (a peer that vanishes mid-download).
    pub fn kill(&mut self) {
        self.proc.kill();
    }
}

/// A command that downloads `torrent` into `save_dir` with libtorrent and exits 0 when done.
/// Peers come from the torrent's tracker, `tracker`, and `peers`.
pub fn leech_command(
    torrent: &Path,
    save_dir: &Path,
    listen_port: u16,
    tracker: Option<&str>,
    peers: &[SocketAddr],
    timeout: Duration,
) -> Command {
    let mut cmd = kit_command(python());
    cmd.arg(script("lt_leech.py"))
        .arg("--torrent")
        .arg(torrent)
        .arg("--save")
        .arg(save_dir)
        .arg("--listen")
        .arg(format!("{LEECHER_IP}:{listen_port}"))
        .arg("--timeout")
        .arg(timeout.as_secs().to_string())
        .arg("--quiet");
    if let Some(t) = tracker {
        cmd.arg("--tracker").arg(t);
    }
    for p in peers {
        cmd.arg("--peer").arg(p.to_string());
    }
    cmd
}

/// A libtorrent leecher process; killed on drop.
pub struct LtLeecher {
    pub proc: Proc,
}

impl LtLeecher {
    pub fn start(
        torrent: &Path,
        save_dir: &Path,
        tracker: Option<&str>,
        peers: &[SocketAddr],
        timeout: Duration,
    ) -> Result<Self> {
        crate::require::require(crate::require::Tool::Libtorrent)?;
        let port = crate::net::free_port(LEECHER_IP)?;
        let cmd = leech_command(torrent, save_dir, port, tracker, peers, timeout);
        Ok(LtLeecher {
            proc: Proc::spawn_fresh("libtorrent-leecher", cmd)?,
        })
    }

    /// Starts a leecher that connects to `peers` over `transport` only, on a port free for
    /// both TCP and UDP.
    pub fn start_over(
        transport: LtTransport,
        torrent: &Path,
        save_dir: &Path,
        peers: &[SocketAddr],
        timeout: Duration,
    ) -> Result<Self> {
        let port = crate::net::free_tcp_udp_port(LEECHER_IP)?;
        let mut cmd = leech_command(torrent, save_dir, port, None, peers, timeout);
        transport.apply(&mut cmd);
        LtLeecher::spawn(cmd)
    }

    /// Starts a leecher from a [`leech_command`] the caller adjusted (e.g. its encryption or
    /// transport: [`LtEncryption::apply`], [`LtTransport::apply`]).
    pub fn spawn(cmd: Command) -> Result<Self> {
        crate::require::require(crate::require::Tool::Libtorrent)?;
        Ok(LtLeecher {
            proc: Proc::spawn_fresh("libtorrent-leecher", cmd)?,
        })
    }

    /// Waits for the download to finish; the leecher's own timeout bounds it too.
    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.proc.wait_exit(timeout)
    }
}
