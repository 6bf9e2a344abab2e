//! transmission-cli 3.00 as a seeder. Quirks from shared/INTEROP.md: it drops 127.x peers learned
//! from trackers (so we dial it), it may stall after serving two leechers (so each test gets a
//! fresh one), and it never exits by itself. Its settings go in a config directory of its own.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use crate::libtorrent::READY_TIMEOUT;
use crate::net::{free_port, seeder_ip, wait_port_open};
use crate::proc::{kit_command, Proc};
use crate::wait::wait_for;

/// Pause after Transmission reports seeding before the kit calls it ready.
const SETTLE: Duration = Duration::from_secs(1);

/// A transmission-cli seeder; killed on drop.
pub struct TransmissionSeeder {
    pub proc: Proc,
    addr: SocketAddr,
}

/// Starts `transmission-cli` on `ip:port` for `torrent` in `save_dir`, with its own config
/// directory (`settings_json`); `-U` (no upload limit) for a seeder.
fn spawn_cli(
    name: &str,
    torrent: &Path,
    save_dir: &Path,
    ip: Ipv4Addr,
    port: u16,
    seeder: bool,
    require_encryption: bool,
) -> Result<Proc> {
    let work = tempfile::Builder::new()
        .prefix(&format!("rt-{name}-"))
        .tempdir()?;
    let config = work.path().join("config");
    std::fs::create_dir_all(&config)?;
    std::fs::write(config.join("settings.json"), settings_json(ip, port))?;
    // transmission-cli rewrites its status line with '\r' and block-buffers it when stdout is
    // a file: unbuffer it so its status lines show up in the log.
    let mut cmd = kit_command("stdbuf");
    cmd.arg("-o0")
        .arg("transmission-cli")
        .arg("-g")
        .arg(&config)
        .arg("-w")
        .arg(save_dir)
        .arg("-p")
        .arg(port.to_string())
        .arg("-M");
    if seeder {
        cmd.arg("-U");
    }
    if require_encryption {
        // MSE/PE required: plaintext handshakes are refused (its default prefers encryption).
        cmd.arg("-er");
    }
    cmd.arg(torrent);
    Proc::spawn(name, cmd, work)
}

impl TransmissionSeeder {
    /// Seeds `torrent` from `save_dir` on a fresh 127.0.0.x address (or `ip`); returns once it
    /// has verified the data, reports seeding and accepts TCP connections. Transmission
    /// announces to the torrent's tracker from its bind address.
    pub fn start(torrent: &Path, save_dir: &Path, ip: Option<Ipv4Addr>) -> Result<Self> {
        Self::start_with(torrent, save_dir, ip, false)
    }

    /// [`TransmissionSeeder::start`], with encryption required (`-er`) if asked.
    pub fn start_with(
        torrent: &Path,
        save_dir: &Path,
        ip: Option<Ipv4Addr>,
        require_encryption: bool,
    ) -> Result<Self> {
        crate::require::require(crate::require::Tool::Transmission)?;
        let ip = ip.unwrap_or_else(seeder_ip);
        let port = free_port(ip)?;
        let mut proc = spawn_cli(
            "transmission-seeder",
            torrent,
            save_dir,
            ip,
            port,
            true,
            require_encryption,
        )?;
        // It rejects handshakes until its check is done, and prints "Seeding" even before:
        // wait for the check's debug message and a status line after it.
        proc.wait_for_log("Verification is done", READY_TIMEOUT)?;
        wait_for(Duration::from_secs(10), "transmission to seed", || {
            proc.check_alive()?;
            let log = proc.log();
            let done = log.find("Verification is done").unwrap_or(log.len());
            Ok(log[done..].contains("\nSeeding").then_some(()))
        })?;
        let addr = SocketAddr::from((ip, port));
        wait_port_open(addr, Duration::from_secs(10))?;
        // Seen here: a handshake right after the check is sometimes reset; give it a moment.
        std::thread::sleep(SETTLE);
        Ok(TransmissionSeeder { proc, addr })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// A transmission-cli leecher on a fresh 127.0.0.x address; killed on drop. Transmission drops
/// loopback peers learned from trackers, so the seeder must dial [`TransmissionLeecher::addr`].
/// It never exits by itself: the caller decides it is done by checking the files.
pub struct TransmissionLeecher {
    pub proc: Proc,
    addr: SocketAddr,
}

impl TransmissionLeecher {
    /// Starts downloading `torrent` into `save_dir`; returns once it accepts connections.
    pub fn start(torrent: &Path, save_dir: &Path) -> Result<Self> {
        Self::start_with(torrent, save_dir, false)
    }

    /// [`TransmissionLeecher::start`], with encryption required (`-er`) if asked.
    pub fn start_with(torrent: &Path, save_dir: &Path, require_encryption: bool) -> Result<Self> {
        crate::require::require(crate::require::Tool::Transmission)?;
        let ip = seeder_ip();
        let port = free_port(ip)?;
        std::fs::create_dir_all(save_dir)?;
        let mut proc = spawn_cli(
            "transmission-leecher",
            torrent,
            save_dir,
            ip,
            port,
            false,
            require_encryption,
        )?;
        let addr = SocketAddr::from((ip, port));
        wait_for(READY_TIMEOUT, "transmission to listen", || {
            proc.check_alive()?;
            Ok(
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                    .is_ok()
                    .then_some(()),
            )
        })?;
        std::thread::sleep(SETTLE);
        Ok(TransmissionLeecher { proc, addr })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until the files under `save_dir` match `spec`, empty files aside (Transmission
    /// does not create them), and Transmission still runs (it never exits by itself);
    /// returns how long that took. The error names what still differs and ends with
    /// Transmission's log.
    pub fn wait_complete(
        &mut self,
        spec: &crate::PayloadSpec,
        save_dir: &std::path::Path,
        timeout: Duration,
    ) -> Result<Duration> {
        let started = std::time::Instant::now();
        let done = crate::wait_until(timeout, "Transmission to finish", || {
            spec.verify_except_empty(save_dir).is_ok()
        });
        if let Err(e) = done {
            let last = spec.verify_except_empty(save_dir).err();
            anyhow::bail!(
                "{e:#}: {last:?}\n--- transmission ---\n{}",
                self.proc.log_tail()
            );
        }
        anyhow::ensure!(self.proc.is_running(), "Transmission exited");
        Ok(started.elapsed())
    }
}

/// Settings for a loopback-only session: no DHT, LPD, PEX, uTP or port mapping; bound to `ip`.
fn settings_json(ip: Ipv4Addr, port: u16) -> String {
    serde_json::json!({
        "bind-address-ipv4": ip.to_string(),
        "bind-address-ipv6": "::1",
        "peer-port": port,
        "peer-port-random-on-start": false,
        "port-forwarding-enabled": false,
        "dht-enabled": false,
        "lpd-enabled": false,
        "pex-enabled": false,
        "utp-enabled": false,
        "rpc-enabled": false,
        "encryption": 1,
        "speed-limit-up-enabled": false,
        "speed-limit-down-enabled": false,
        "ratio-limit-enabled": false,
        "idle-seeding-limit-enabled": false,
        "incomplete-dir-enabled": false,
        "peer-limit-global": 200,
        "peer-limit-per-torrent": 100,
        "message-level": 3
    })
    .to_string()
}
