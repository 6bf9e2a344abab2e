//! The seeders a benchmark starts: ringtorrent (`ringtorrent seed`), libtorrent, aria2 or
//! Transmission, each a
//! guarded process on loopback that is killed when dropped, and what they spent: CPU (any
//! kind, from `/proc`) and payload bytes uploaded (libtorrent only, from its status lines).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use clap::ValueEnum;
use rt_testkit::aria2::{Aria2SeedOpts, Aria2Seeder};
use rt_testkit::libtorrent::{LtEncryption, LtSeedOpts, LtSeeder, LtTransport};
use rt_testkit::net::{free_port, seeder_ip};
use rt_testkit::rt_seeder::{RtSeedOpts, RtSeeder};
use rt_testkit::transmission::TransmissionSeeder;
use rt_testkit::wait::wait_for;
use rt_testkit::Proc;
use serde::Serialize;

use crate::measure::proc_cpu_s;

/// The start of the status line `lt_seed.py` prints every 2 s (`... uploaded <all_time_upload>`).
const LT_STATUS_PREFIX: &str = "status: peers ";

/// Status lines each libtorrent seeder must print after a download before its upload counter is
/// read. libtorrent adds a connection's payload to the torrent's `all_time_upload` on its
/// once-a-second tick, so the first line after the download may still miss the last second;
/// the second is printed at least 2 s after the download ended.
const LT_STATUS_LINES_TO_SETTLE: usize = 2;

/// Longest wait for those lines: 2 lines 2 s apart, with room for a loaded machine.
const LT_SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SeederKind {
    Ringtorrent,
    Libtorrent,
    Aria2,
    /// transmission-cli 3.00. It announces to the torrent's trackers itself; it drops 127.x
    /// peers it learns from them (shared/INTEROP.md), but accepts their connections.
    Transmission,
}

impl SeederKind {
    pub fn name(self) -> &'static str {
        match self {
            SeederKind::Libtorrent => "libtorrent",
            SeederKind::Aria2 => "aria2",
            SeederKind::Ringtorrent => "ringtorrent",
            SeederKind::Transmission => "transmission",
        }
    }
}

/// How the seeder finds its leechers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery<'a> {
    /// Announce to this tracker URL; leechers learn the seeder from it.
    Tracker(&'a str),
    /// Announce nowhere: leechers are told the seeder's address.
    None,
}

/// A running seeder of any kind.
pub enum Seeder {
    Lt(LtSeeder),
    Aria2(Aria2Seeder),
    Rt(RtSeeder),
    Tr(TransmissionSeeder),
}

impl Seeder {
    /// Starts a `kind` seeder of `torrent` over the content in `save_dir`; returns once it seeds.
    pub fn start(
        kind: SeederKind,
        torrent: &Path,
        save_dir: &Path,
        discovery: Discovery<'_>,
    ) -> Result<Seeder> {
        Self::start_with(
            kind,
            torrent,
            save_dir,
            discovery,
            &[],
            (LtEncryption::Default, LtTransport::Tcp),
        )
    }

    /// [`Seeder::start`], with `rt_args` appended to a ringtorrent seeder's command line and
    /// `lt` as a libtorrent seeder's MSE/PE policy and transports.
    pub fn start_with(
        kind: SeederKind,
        torrent: &Path,
        save_dir: &Path,
        discovery: Discovery<'_>,
        rt_args: &[String],
        (lt_encryption, lt_transport): (LtEncryption, LtTransport),
    ) -> Result<Seeder> {
        let tracker = match discovery {
            Discovery::Tracker(url) => Some(url.to_string()),
            Discovery::None => None,
        };
        Ok(match kind {
            SeederKind::Libtorrent => {
                let opts = LtSeedOpts {
                    tracker,
                    encryption: lt_encryption,
                    transport: lt_transport,
                    ..Default::default()
                };
                Seeder::Lt(LtSeeder::start(torrent, save_dir, &opts)?)
            }
            SeederKind::Aria2 => {
                let opts = Aria2SeedOpts {
                    tracker,
                    ..Default::default()
                };
                Seeder::Aria2(Aria2Seeder::start(torrent, save_dir, &opts)?)
            }
            SeederKind::Ringtorrent => {
                // With a tracker: `ringtorrent seed` announces over HTTP from 127.0.0.1, the
                // address opentracker hands out, so it listens there (each on its own port).
                let ip = match discovery {
                    Discovery::Tracker(_) => Ipv4Addr::LOCALHOST,
                    Discovery::None => seeder_ip(),
                };
                let port = free_port(ip)?;
                let mut opts = RtSeedOpts::listen(SocketAddr::from((ip, port)));
                opts.trackers = tracker.is_some();
                opts.extra_args = rt_args.to_vec();
                Seeder::Rt(RtSeeder::start(torrent, save_dir, &opts)?)
            }
            SeederKind::Transmission => {
                Seeder::Tr(TransmissionSeeder::start(torrent, save_dir, None)?)
            }
        })
    }

    pub fn proc(&mut self) -> &mut Proc {
        match self {
            Seeder::Lt(s) => &mut s.proc,
            Seeder::Aria2(s) => &mut s.proc,
            Seeder::Rt(s) => &mut s.proc,
            Seeder::Tr(s) => &mut s.proc,
        }
    }

    pub fn check_alive(&mut self) -> Result<()> {
        self.proc().check_alive()
    }

    pub fn pid(&mut self) -> u32 {
        self.proc().pid()
    }

    /// Payload bytes uploaded since the seeder started, as of its latest status line: only a
    /// libtorrent seeder reports it (`None` for other kinds, and before its first line).
    pub fn uploaded_bytes(&self) -> Option<u64> {
        match self {
            Seeder::Lt(s) => s.uploaded_bytes(),
            Seeder::Aria2(_) | Seeder::Rt(_) | Seeder::Tr(_) => None,
        }
    }

    /// How many status lines a libtorrent seeder has printed; `None` for other kinds.
    fn status_lines(&self) -> Option<usize> {
        match self {
            Seeder::Lt(s) => Some(
                s.proc
                    .log()
                    .lines()
                    .filter(|l| l.starts_with(LT_STATUS_PREFIX))
                    .count(),
            ),
            Seeder::Aria2(_) | Seeder::Rt(_) | Seeder::Tr(_) => None,
        }
    }

    /// The address leechers dial (127.0.0.1 for a ringtorrent seeder bound to 0.0.0.0).
    pub fn addr(&self) -> SocketAddr {
        let a = match self {
            Seeder::Lt(s) => s.addr(),
            Seeder::Aria2(s) => s.addr(),
            Seeder::Rt(s) => s.addr(),
            Seeder::Tr(s) => s.addr(),
        };
        if a.ip().is_unspecified() {
            SocketAddr::from((Ipv4Addr::LOCALHOST, a.port()))
        } else {
            a
        }
    }
}

/// CPU seconds (user + system, all threads) all `seeders` have used since they started.
pub fn total_cpu_s(seeders: &mut [Seeder]) -> Result<f64> {
    let mut total = 0.0;
    for s in seeders {
        total += proc_cpu_s(s.pid())?;
    }
    Ok(total)
}

/// Payload bytes all `seeders` have uploaded; `None` unless every one of them reports it.
pub fn total_uploaded_bytes(seeders: &[Seeder]) -> Option<u64> {
    seeders
        .iter()
        .map(Seeder::uploaded_bytes)
        .try_fold(0u64, |sum, b| Some(sum.saturating_add(b?)))
}

/// Waits until every libtorrent seeder has printed `lines` status lines after this call, so
/// [`total_uploaded_bytes`] then counts every byte they sent before it. A no-op for other kinds.
pub fn wait_for_status(seeders: &mut [Seeder], lines: usize) -> Result<()> {
    // Marks first, for all: the lines waited for are then newer than this call for each seeder,
    // and the seeders' 2 s periods run in parallel.
    let marks: Vec<Option<usize>> = seeders.iter().map(Seeder::status_lines).collect();
    for (s, mark) in seeders.iter_mut().zip(marks) {
        let Some(mark) = mark else {
            continue;
        };
        wait_for(
            LT_SETTLE_TIMEOUT,
            "a libtorrent seeder's status line",
            || {
                s.check_alive()?;
                Ok((s.status_lines().unwrap_or(0) >= mark + lines).then_some(()))
            },
        )?;
    }
    Ok(())
}

/// [`wait_for_status`] with the lines a finished download needs (see
/// [`LT_STATUS_LINES_TO_SETTLE`]).
pub fn settle_upload_counters(seeders: &mut [Seeder]) -> Result<()> {
    wait_for_status(seeders, LT_STATUS_LINES_TO_SETTLE)
}
