//! The seeders a benchmark starts: ringtorrent (`ringtorrent seed`), libtorrent or aria2, each a
//! guarded process on loopback that is killed when dropped.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use anyhow::Result;
use clap::ValueEnum;
use rt_testkit::aria2::{Aria2SeedOpts, Aria2Seeder};
use rt_testkit::libtorrent::{LtSeedOpts, LtSeeder};
use rt_testkit::net::{free_port, seeder_ip};
use rt_testkit::rt_seeder::{RtSeedOpts, RtSeeder};
use rt_testkit::Proc;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SeederKind {
    Ringtorrent,
    Libtorrent,
    Aria2,
}

impl SeederKind {
    pub fn name(self) -> &'static str {
        match self {
            SeederKind::Libtorrent => "libtorrent",
            SeederKind::Aria2 => "aria2",
            SeederKind::Ringtorrent => "ringtorrent",
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
}

impl Seeder {
    /// Starts a `kind` seeder of `torrent` over the content in `save_dir`; returns once it seeds.
    pub fn start(
        kind: SeederKind,
        torrent: &Path,
        save_dir: &Path,
        discovery: Discovery<'_>,
    ) -> Result<Seeder> {
        Self::start_with(kind, torrent, save_dir, discovery, &[])
    }

    /// [`Seeder::start`], with `rt_args` appended to a ringtorrent seeder's command line.
    pub fn start_with(
        kind: SeederKind,
        torrent: &Path,
        save_dir: &Path,
        discovery: Discovery<'_>,
        rt_args: &[String],
    ) -> Result<Seeder> {
        let tracker = match discovery {
            Discovery::Tracker(url) => Some(url.to_string()),
            Discovery::None => None,
        };
        Ok(match kind {
            SeederKind::Libtorrent => {
                let opts = LtSeedOpts {
                    tracker,
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
        })
    }

    pub fn proc(&mut self) -> &mut Proc {
        match self {
            Seeder::Lt(s) => &mut s.proc,
            Seeder::Aria2(s) => &mut s.proc,
            Seeder::Rt(s) => &mut s.proc,
        }
    }

    pub fn check_alive(&mut self) -> Result<()> {
        self.proc().check_alive()
    }

    pub fn pid(&mut self) -> u32 {
        self.proc().pid()
    }

    /// The address leechers dial (127.0.0.1 for a ringtorrent seeder bound to 0.0.0.0).
    pub fn addr(&self) -> SocketAddr {
        let a = match self {
            Seeder::Lt(s) => s.addr(),
            Seeder::Aria2(s) => s.addr(),
            Seeder::Rt(s) => s.addr(),
        };
        if a.ip().is_unspecified() {
            SocketAddr::from((Ipv4Addr::LOCALHOST, a.port()))
        } else {
            a
        }
    }
}
