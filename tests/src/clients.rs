//! The downloaders the benchmark compares, as commands: each downloads one torrent into an empty
//! directory on 127.0.0.1, finds its peers through the torrent's tracker (plus any given peers
//! for the clients that can dial one), and exits 0 when the download is complete.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::net::{free_port, LEECHER_IP};
use crate::proc::{kit_command, on_path};
use crate::ringtorrent::{ringtorrent_bin, Download};
use crate::{aria2, libtorrent};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Client {
    Ringtorrent,
    /// A second ringtorrent build, from [`BIN_B_ENV`], for A/B runs of two builds side by side.
    RingtorrentB,
    Rqbit,
    Aria2,
    Libtorrent,
}

/// One download to run.
#[derive(Debug, Clone)]
pub struct LeechJob<'a> {
    pub torrent: &'a Path,
    pub out_dir: &'a Path,
    /// A fresh port for this run (a libtorrent seeder may not re-dial a port it saw leave).
    pub listen_port: u16,
    pub peers: &'a [SocketAddr],
    pub timeout: Duration,
}

impl Client {
    pub const ALL: [Client; 5] = [
        Client::Ringtorrent,
        Client::RingtorrentB,
        Client::Rqbit,
        Client::Aria2,
        Client::Libtorrent,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Client::Ringtorrent => "ringtorrent",
            Client::RingtorrentB => "ringtorrent-b",
            Client::Rqbit => "rqbit",
            Client::Aria2 => "aria2",
            Client::Libtorrent => "libtorrent",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == s.trim())
    }

    /// `Ok` if the client can run here; otherwise why not (for a "skipped" note).
    pub fn check_installed(self) -> Result<()> {
        match self {
            Client::Ringtorrent => ringtorrent_bin().map(|_| ()),
            Client::RingtorrentB => bin_b().map(|_| ()),
            Client::Rqbit if on_path("rqbit") => Ok(()),
            Client::Rqbit => {
                bail!("rqbit is not on PATH (cargo install rqbit --version 9.1.0 --locked)")
            }
            Client::Aria2 => crate::require::require(crate::require::Tool::Aria2),
            Client::Libtorrent => crate::require::require(crate::require::Tool::Libtorrent),
        }
    }

    /// The command that performs `job`.
    pub fn leech_command(self, job: &LeechJob<'_>) -> Result<Command> {
        Ok(match self {
            Client::Ringtorrent | Client::RingtorrentB => {
                let mut d = Download::new(job.torrent, job.out_dir).timeout(job.timeout);
                d.peers = job.peers.to_vec();
                d.listen = Some(SocketAddr::from((LEECHER_IP, job.listen_port)));
                let bin = if self == Client::RingtorrentB {
                    bin_b()?
                } else {
                    ringtorrent_bin()?
                };
                d.command(&bin)?
            }
            Client::Aria2 => aria2::leech_command(job.torrent, job.out_dir, job.listen_port, None),
            Client::Libtorrent => libtorrent::leech_command(
                job.torrent,
                job.out_dir,
                job.listen_port,
                None,
                job.peers,
                job.timeout,
            ),
            Client::Rqbit => rqbit_command(job)?,
        })
    }
}

/// Where [`Client::RingtorrentB`]'s binary is named.
pub const BIN_B_ENV: &str = "RINGTORRENT_BIN_B";

/// The binary of [`Client::RingtorrentB`]: `$RINGTORRENT_BIN_B`, which must exist.
fn bin_b() -> Result<std::path::PathBuf> {
    let Some(p) = std::env::var_os(BIN_B_ENV) else {
        bail!("{BIN_B_ENV} is not set (the path of the second ringtorrent build)");
    };
    let p = std::path::PathBuf::from(p);
    anyhow::ensure!(p.is_file(), "{BIN_B_ENV}={} is not a file", p.display());
    Ok(p)
}

/// rqbit (checked against 9.1.0's command line): `download -e` exits when done; DHT, LSD and
/// UPnP off, IPv4 only; peers come from the torrent's tracker (and `--initial-peers`); its HTTP
/// API gets a port of its own so two runs never talk to each other.
/// rqbit's global options for a leecher confined to loopback: no DHT (nor its state file), no
/// UPnP, no LSD, IPv4 only, listening on [`LEECHER_IP`]`:listen_port`, its HTTP API on `api`.
/// The subcommand follows.
pub fn rqbit_loopback_args(listen_port: u16, api: SocketAddr) -> Vec<String> {
    let mut args: Vec<String> = [
        "--disable-dht",
        "--disable-dht-persistence",
        "--disable-upnp-port-forward",
        "--disable-lsd",
        "--ipv4-only",
        "--listen-ip",
    ]
    .map(String::from)
    .to_vec();
    args.push(LEECHER_IP.to_string());
    args.push("--listen-port".into());
    args.push(listen_port.to_string());
    args.push("--http-api-listen-addr".into());
    args.push(api.to_string());
    args
}

fn rqbit_command(job: &LeechJob<'_>) -> Result<Command> {
    let api = SocketAddr::from((LEECHER_IP, free_port(LEECHER_IP)?));
    let mut cmd = kit_command("rqbit");
    cmd.args(rqbit_loopback_args(job.listen_port, api))
        .arg("download")
        .arg("-e")
        .arg("-o")
        .arg(job.out_dir);
    if !job.peers.is_empty() {
        let list: Vec<String> = job.peers.iter().map(|p| p.to_string()).collect();
        cmd.arg("--initial-peers").arg(list.join(","));
    }
    cmd.arg(job.torrent);
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Client::ALL {
            assert_eq!(Client::parse(c.name()), Some(c));
        }
        assert_eq!(Client::parse("qbittorrent"), None);
    }
}
