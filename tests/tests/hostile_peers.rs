//! Adversarial peers (issue 14 §4): each attack from `rt_testkit::adversary` while a libtorrent
//! seeder also serves the torrent. Every time the engine stays up, its memory stays under the
//! bound below, the attacker is dropped with the typed reason the test names (from
//! `Alert::PeerDisconnected` or, before a handshake, `Alert::ConnectionFailed`), and the
//! download completes byte-identical.
//!
//! The cases run one at a time (a lock), so the process's peak RSS, reset before each case
//! through `/proc/self/clear_refs`, is the engine's doing.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ringtorrent::{
    AddTorrent, Alert, Config, DisconnectReason, Engine, Fault, TorrentId, TorrentSource,
};
use rt_testkit::adversary::{request_flood, Attack, HostilePeer, Storm, Target};
use rt_testkit::libtorrent::{LtSeedOpts, LtSeeder};
use rt_testkit::ringtorrent::loopback_config;
use rt_testkit::torrent::PayloadFixture;
use rt_testkit::PayloadSpec;

const PIECE: u32 = 64 * 1024;
const SIZE: u64 = 8 << 20;
/// Its pieces.
const PIECES: u32 = (SIZE / PIECE as u64) as u32;
/// Piece buffers the engine may hold (set in its config).
const POOL: usize = 32 << 20;
/// What the engine may grow by in a case: its piece buffers, its receive buffer rings
/// (2 shards x 128 x 64 KiB) and 64 MiB for everything else (tables, send queues, threads).
const MEMORY_BOUND: u64 = POOL as u64 + (16 << 20) + (64 << 20);

static SERIAL: Mutex<()> = Mutex::new(());

fn status_kib(field: &str) -> u64 {
    rt_testkit::proc::status_kib(None, field).unwrap()
}

/// A case: fixture, good seeder, engine and the bookkeeping of what happened.
struct Case {
    fx: PayloadFixture,
    _good: LtSeeder,
    engine: Engine,
    alerts: tokio::sync::mpsc::UnboundedReceiver<Alert>,
    id: Option<TorrentId>,
    rss_base: u64,
    completed: bool,
    /// Disconnects seen: (address, reason, before the handshake).
    dropped: Vec<(SocketAddr, DisconnectReason, bool)>,
    hash_failures: u32,
    started: Instant,
}

impl Case {
    /// An 8 MiB torrent and a libtorrent seeder limited to `rate` bytes/s (so attackers get
    /// their turn before the download ends).
    fn new(seed: u64, rate: u64) -> Case {
        let fx =
            PayloadFixture::new(PayloadSpec::single("hostile.bin", SIZE, seed), PIECE).unwrap();
        let good = LtSeeder::start(
            &fx.torrent,
            &fx.seed_dir,
            &LtSeedOpts {
                upload_rate_limit_bytes_per_s: rate,
                ..Default::default()
            },
        )
        .unwrap();
        // Peak RSS from here on (writing 5 resets VmHWM to the current RSS).
        std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS");
        let rss_base = status_kib("VmRSS:");
        let engine = Engine::start(Config {
            buffer_pool_bytes: POOL,
            ..loopback_config(false)
        })
        .unwrap();
        let alerts = engine.alerts().unwrap();
        Case {
            fx,
            _good: good,
            engine,
            alerts,
            id: None,
            rss_base,
            completed: false,
            dropped: Vec::new(),
            hash_failures: 0,
            started: Instant::now(),
        }
    }

    fn good(&self) -> SocketAddr {
        self._good.addr()
    }

    fn target(&self) -> Target {
        Target::of(&self.fx.meta)
    }

    fn add(&mut self, peers: &[SocketAddr]) {
        let mut a = AddTorrent::new(
            TorrentSource::File(self.fx.torrent.clone()),
            &self.fx.dl_dir,
        );
        a.peers = peers.to_vec();
        self.id = Some(self.engine.add_torrent(a).unwrap());
    }

    /// Takes the alerts that arrived; panics on a torrent error.
    fn pump(&mut self) {
        while let Ok(a) = self.alerts.try_recv() {
            match a {
                Alert::TorrentError { message, .. } => panic!("torrent error: {message}"),
                Alert::TorrentComplete { .. } => self.completed = true,
                Alert::HashFailed { .. } => self.hash_failures += 1,
                Alert::PeerDisconnected { addr, reason, .. } => {
                    self.dropped.push((addr, reason, false))
                }
                Alert::ConnectionFailed { addr, reason, .. } => {
                    self.dropped.push((addr, reason, true))
                }
                _ => {}
            }
        }
    }

    /// Waits up to `secs` for `done`, pumping alerts.
    fn wait(&mut self, secs: u64, what: &str, mut done: impl FnMut(&Case) -> bool) {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            self.pump();
            if done(self) {
                return;
            }
            assert!(
                Instant::now() < end,
                "not within {secs} s: {what}; dropped so far: {:?}",
                self.dropped
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The reasons `addr` was dropped for.
    fn reasons(&self, addr: SocketAddr) -> Vec<&DisconnectReason> {
        self.dropped
            .iter()
            .filter(|d| d.0 == addr)
            .map(|d| &d.1)
            .collect()
    }

    /// The download completes byte-identical, the engine still answers, and its memory grew
    /// by less than the bound.
    fn finish(mut self) {
        self.wait(90, "the download completes", |c| c.completed);
        self.fx.spec.verify(&self.fx.dl_dir).unwrap();
        let id = self.id.unwrap();
        assert!(self.engine.stats(id).is_some(), "the engine answers");
        let peak = status_kib("VmHWM:");
        let grew = peak.saturating_sub(self.rss_base) << 10;
        assert!(
            grew < MEMORY_BOUND,
            "peak RSS grew by {} MiB (bound {} MiB)",
            grew >> 20,
            MEMORY_BOUND >> 20
        );
        eprintln!(
            "peak RSS growth {} MiB; case took {:.1} s",
            grew >> 20,
            self.started.elapsed().as_secs_f64()
        );
        let engine = self.engine;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(engine.shutdown()).unwrap();
    }
}

/// The engine dials an attacker (listed first) and the good seeder; the attacker must be
/// dropped for a reason `expected` accepts.
fn dialed_attacker(
    attack: Attack,
    seed: u64,
    rate: u64,
    secs: u64,
    expected: impl Fn(&DisconnectReason) -> bool,
) -> Case {
    let mut c = Case::new(seed, rate);
    let bad = HostilePeer::start(c.target(), attack).unwrap();
    let good = c.good();
    c.add(&[bad.addr(), good]);
    c.wait(secs, &format!("{attack:?} peer dropped"), |c| {
        c.reasons(bad.addr()).iter().any(|r| expected(r))
    });
    assert!(bad.accepted() >= 1);
    for r in c.reasons(bad.addr()) {
        assert_eq!(r.fault(), Fault::Peer, "{r}");
    }
    assert!(
        c.reasons(good).is_empty(),
        "the good seeder was dropped: {:?}",
        c.reasons(good)
    );
    c
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn wrong_info_hash() {
    let _l = lock();
    dialed_attacker(Attack::WrongInfoHash, 501, 0, 20, |r| {
        *r == DisconnectReason::WrongInfoHash
    })
    .finish();
}

#[test]
fn a_4_gib_length_prefix() {
    let _l = lock();
    dialed_attacker(Attack::HugeLengthPrefix, 502, 0, 20, |r| {
        matches!(
            r,
            DisconnectReason::Malformed(ringtorrent::wire::DecodeError::TooLong {
                id: 7,
                len: u32::MAX,
                ..
            })
        )
    })
    .finish();
}

#[test]
fn a_bitfield_of_the_wrong_length() {
    let _l = lock();
    dialed_attacker(Attack::BadBitfieldLength, 503, 0, 20, |r| {
        let expected = PIECES as usize / 8;
        *r == DisconnectReason::BadBitfield {
            got: expected - 3,
            expected,
        }
    })
    .finish();
}

#[test]
fn have_out_of_range() {
    let _l = lock();
    dialed_attacker(Attack::HaveOutOfRange, 504, 0, 20, |r| {
        *r == DisconnectReason::BadGeometry(ringtorrent::types::GeometryError::PieceOutOfRange(
            PIECES + 7,
            PIECES,
        ))
    })
    .finish();
}

#[test]
fn piece_data_never_requested() {
    let _l = lock();
    dialed_attacker(
        Attack::UnrequestedPieces,
        505,
        0,
        20,
        |r| matches!(r, DisconnectReason::Unrequested(n) if *n > 64),
    )
    .finish();
}

#[test]
fn corrupt_piece_data_is_fetched_again_and_the_peer_banned() {
    let _l = lock();
    // The good seeder at 2 MiB/s: the attacker, which answers at once, supplies whole pieces.
    let mut c = Case::new(506, 2 << 20);
    let bad = HostilePeer::start(c.target(), Attack::CorruptData).unwrap();
    let good = c.good();
    c.add(&[bad.addr(), good]);
    c.wait(30, "the corrupting peer banned", |c| {
        c.reasons(bad.addr())
            .contains(&&DisconnectReason::HashFailures)
    });
    assert!(c.hash_failures >= 1, "no piece failed its hash check");
    assert!(bad.blocks_sent() > 0);
    // Banned: not dialed again.
    let accepted = bad.accepted();
    c.wait(90, "the download completes", |c| c.completed);
    assert_eq!(bad.accepted(), accepted, "a banned peer was dialed again");
    c.finish();
}

#[test]
fn a_request_flood() {
    let _l = lock();
    let mut c = Case::new(507, 2 << 20);
    let good = c.good();
    c.add(&[good]);
    let flood = request_flood(
        c.engine.listen_addr(),
        c.target(),
        5000,
        Duration::from_secs(30),
    )
    .unwrap();
    let report = flood.join().unwrap().unwrap();
    assert!(
        report.closed,
        "the engine kept the flooding peer: {report:?}"
    );
    c.wait(20, "the flooding peer dropped", |c| {
        c.dropped
            .iter()
            .any(|d| d.1 == DisconnectReason::RequestFlood(2000))
    });
    c.finish();
}

#[test]
fn a_silent_peer_and_a_trickling_one_time_out_in_the_handshake() {
    let _l = lock();
    let mut c = Case::new(508, 2 << 20);
    let silent = HostilePeer::start(c.target(), Attack::Silent).unwrap();
    let trickle = HostilePeer::start(c.target(), Attack::TrickleHandshake).unwrap();
    let good = c.good();
    c.add(&[silent.addr(), trickle.addr(), good]);
    c.wait(40, "both dropped in the handshake", |c| {
        [silent.addr(), trickle.addr()].iter().all(|a| {
            c.dropped
                .iter()
                .any(|d| d.0 == *a && d.1 == DisconnectReason::HandshakeTimeout && d.2)
        })
    });
    c.finish();
}

#[test]
fn absurd_extension_messages() {
    let _l = lock();
    dialed_attacker(Attack::HugeExtensionMessage, 509, 0, 20, |r| {
        matches!(
            r,
            DisconnectReason::Malformed(ringtorrent::wire::DecodeError::TooLong { id: 20, .. })
        )
    })
    .finish();
    dialed_attacker(Attack::AbsurdMetadataSize, 510, 0, 20, |r| {
        matches!(
            r,
            DisconnectReason::Extension(ringtorrent::ext::ExtError::MetadataTooLarge(_))
        )
    })
    .finish();
}

#[test]
fn a_thousand_connections_at_once() {
    let _l = lock();
    let mut c = Case::new(511, 2 << 20);
    let good = c.good();
    c.add(&[good]);
    let mut storm = Storm::open(c.engine.listen_addr(), 1000).unwrap();
    // The ones that named a torrent the engine does not have are turned away at once.
    let unknown = storm.unknown_torrent;
    c.wait(20, "every unknown-torrent handshake refused", |c| {
        c.dropped
            .iter()
            .filter(|d| d.1 == DisconnectReason::UnknownTorrent && d.2)
            .count()
            >= unknown
    });
    assert!(storm.closed_by_engine() >= unknown);
    c.finish();
    drop(storm);
}
