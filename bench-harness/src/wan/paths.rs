//! The swarm of a WAN profile on loopback: each planned seeder started quietly (announcing
//! nowhere) and a path shaper in front of it on an address of its own; the shapers are what
//! opentracker hands out, so every byte a leecher gets crosses a shaped path.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use ringtorrent::InfoHash;
use rt_testkit::aria2::{Aria2SeedOpts, Aria2Seeder};
use rt_testkit::libtorrent::{LtSeedOpts, LtSeeder};
use rt_testkit::net::{free_port, seeder_ip};
use rt_testkit::rt_seeder::{RtSeedOpts, RtSeeder};
use rt_testkit::shaper::{Shaper, ShaperOpts, ShaperStats};
use rt_testkit::tracker::Opentracker;
use rt_testkit::transmission::TransmissionSeeder;

use super::profile::{PathPlan, CHOKE_CYCLE, DROP_AFTER};
use crate::seeders::{Seeder, SeederKind};

/// The seeders and their shapers, index for index.
pub struct Paths {
    pub seeders: Vec<Seeder>,
    pub shapers: Vec<Shaper>,
}

/// The address of shaper `i`: one IP each (clients keep one connection per IP), on
/// 127.2.0.0/16, away from the kit's seeder (127.0.0.x) addresses.
fn shaper_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 2, (i / 200) as u8, (i % 200 + 1) as u8)
}

/// Starts every seeder of `plan` over the content in `save_dir` (`torrent` must carry no
/// tracker: the seeders announce nowhere themselves) and a shaper in front of each.
pub fn start(plan: &[PathPlan], torrent: &Path, save_dir: &Path, seed: u64) -> Result<Paths> {
    // One at a time, from this thread: the kit's processes die with the thread that
    // started them (`setpriv --pdeathsig`).
    let seeders = plan
        .iter()
        .enumerate()
        .map(|(i, p)| {
            start_seeder(p, torrent, save_dir)
                .with_context(|| format!("seeder {i} ({})", p.kind.name()))
        })
        .collect::<Result<Vec<_>>>()?;
    let shapers = plan
        .iter()
        .zip(&seeders)
        .enumerate()
        .map(|(i, (p, s))| {
            let one_way = Duration::from_micros(u64::from(p.rtt_ms) * 500);
            let opts = ShaperOpts {
                one_way_delay: one_way,
                jitter: Duration::from_millis(u64::from(p.jitter_ms)),
                down_rate: p.cap_bytes_per_s,
                up_rate: p.cap_bytes_per_s,
                drop_after: p.drops.then_some(DROP_AFTER),
                seed: seed.wrapping_add(i as u64),
            };
            Shaper::start(shaper_ip(i), s.addr(), opts)
                .with_context(|| format!("shaper {i} for {}", s.addr()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Paths { seeders, shapers })
}

fn start_seeder(p: &PathPlan, torrent: &Path, save_dir: &Path) -> Result<Seeder> {
    Ok(match p.kind {
        SeederKind::Libtorrent => {
            let opts = LtSeedOpts {
                // The data is known good: skip libtorrent's check (60 checks of GiBs on two
                // cores would take minutes).
                seed_mode: true,
                choke_cycle: p.chokes.then_some(CHOKE_CYCLE),
                ..Default::default()
            };
            Seeder::Lt(LtSeeder::start(torrent, save_dir, &opts)?)
        }
        SeederKind::Aria2 => {
            let opts = Aria2SeedOpts {
                seed_unverified: true,
                ..Default::default()
            };
            Seeder::Aria2(Aria2Seeder::start(torrent, save_dir, &opts)?)
        }
        SeederKind::Transmission => Seeder::Tr(TransmissionSeeder::start(torrent, save_dir, None)?),
        SeederKind::Ringtorrent => {
            let ip = seeder_ip();
            let opts = RtSeedOpts::listen((ip, free_port(ip)?).into());
            Seeder::Rt(RtSeeder::start(torrent, save_dir, &opts)?)
        }
    })
}

impl Paths {
    /// Announces every shaper to `tracker` as a seeder of `h`, from the shaper's own address.
    pub fn announce(&self, tracker: &Opentracker, h: &InfoHash) -> Result<()> {
        for (i, sh) in self.shapers.iter().enumerate() {
            let mut peer_id = *b"-RTWAN0-000000000000";
            let tag = format!("{i:012}");
            peer_id[8..].copy_from_slice(tag.as_bytes());
            let std::net::SocketAddr::V4(a) = sh.addr() else {
                anyhow::bail!("shaper {i} is not on IPv4");
            };
            tracker.announce_seeder(h, *a.ip(), a.port(), &peer_id)?;
        }
        Ok(())
    }

    /// Every shaper's counters added up.
    pub fn stats(&self) -> ShaperStats {
        self.shapers
            .iter()
            .map(Shaper::stats)
            .fold(ShaperStats::default(), |a, b| ShaperStats {
                down_bytes: a.down_bytes + b.down_bytes,
                up_bytes: a.up_bytes + b.up_bytes,
                accepted: a.accepted + b.accepted,
                open: a.open + b.open,
                dropped: a.dropped + b.dropped,
                failed: a.failed + b.failed,
            })
    }

    /// CPU seconds all shapers have used.
    pub fn shapers_cpu_s(&self) -> Result<f64> {
        self.shapers.iter().map(Shaper::cpu_s).sum()
    }
}
