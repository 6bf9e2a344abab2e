//! MSE/PE (message stream encryption) against clients no one here wrote, on loopback (issue
//! 17 §2): libtorrent with RC4 forced both ways (`out_enc_policy`/`in_enc_policy` forced,
//! `allowed_enc_level` RC4) and Transmission with `-er`, downloading from them and seeding
//! to them; a plaintext-only libtorrent with our default policy; and `--encryption require`
//! refusing that plaintext-only peer with a clear reason.
//!
//! A peer that allows only RC4 refuses every plaintext handshake, so a byte-identical
//! transfer with it is one that went through our MSE handshake and RC4 stream.

use std::net::SocketAddr;
use std::time::Duration;

use rt_testkit::libtorrent::{leech_command, LtEncryption, LtLeecher, LtSeedOpts, LtSeeder};
use rt_testkit::net::{free_port, LEECHER_IP};
use rt_testkit::rt_seeder::{RtSeedOpts, RtSeeder};
use rt_testkit::torrent::PayloadFixture;
use rt_testkit::transmission::{TransmissionLeecher, TransmissionSeeder};
use rt_testkit::{Download, PayloadSpec};

const PIECE: u32 = 256 * 1024;

fn fixture(seed: u64) -> PayloadFixture {
    PayloadFixture::new(PayloadSpec::interop_multi(PIECE, seed), PIECE).unwrap()
}

fn lt_seeder(fx: &PayloadFixture, encryption: LtEncryption) -> LtSeeder {
    let opts = LtSeedOpts {
        encryption,
        ..Default::default()
    };
    LtSeeder::start(&fx.torrent, &fx.seed_dir, &opts).unwrap()
}

/// A verbose download (peer events on stderr) with `args` added.
fn download(fx: &PayloadFixture, peer: SocketAddr, args: &[&str], secs: u64) -> Download {
    let mut d = Download::new(&fx.torrent, &fx.dl_dir)
        .timeout(Duration::from_secs(secs))
        .peer(peer);
    d.extra_args.push("--verbose".into());
    d.extra_args.extend(args.iter().map(|a| a.to_string()));
    d
}

fn fresh_listen() -> SocketAddr {
    SocketAddr::from((LEECHER_IP, free_port(LEECHER_IP).unwrap()))
}

/// 1. Our default policy (`prefer`) downloads from a libtorrent that allows only RC4: the
///    plain handshake is refused, the redial encrypts.
#[test]
fn download_from_libtorrent_requiring_rc4() {
    let fx = fixture(171);
    let seeder = lt_seeder(&fx, LtEncryption::Forced);
    let out = download(&fx, seeder.addr(), &[], 60).run().unwrap();
    out.ensure_success().unwrap();
    fx.spec.verify(&fx.dl_dir).unwrap();
}

/// 2. With `--encryption require` the same download opens encrypted from the first dial.
#[test]
fn download_with_encryption_required_from_libtorrent() {
    let fx = fixture(172);
    let seeder = lt_seeder(&fx, LtEncryption::Forced);
    let out = download(&fx, seeder.addr(), &["--encryption", "require"], 60)
        .run()
        .unwrap();
    out.ensure_success().unwrap();
    fx.spec.verify(&fx.dl_dir).unwrap();
    assert!(
        !out.stderr
            .contains("closed the connection during the encrypted"),
        "an RC4-only peer took our encrypted handshake:\n{}",
        out.stderr
    );
}

/// 3. A libtorrent leecher that allows only RC4 dials our seeder: the incoming MSE handshake
///    is detected, RC4 selected, and every block goes out encrypted.
#[test]
fn seed_to_libtorrent_requiring_rc4() {
    let fx = fixture(173);
    let seeder = RtSeeder::start(
        &fx.torrent,
        &fx.seed_dir,
        &RtSeedOpts::listen(fresh_listen()),
    )
    .unwrap();
    let port = free_port(LEECHER_IP).unwrap();
    let timeout = Duration::from_secs(60);
    let mut cmd = leech_command(
        &fx.torrent,
        &fx.dl_dir,
        port,
        None,
        &[seeder.addr()],
        timeout,
    );
    LtEncryption::Forced.apply(&mut cmd);
    let mut leecher = LtLeecher::spawn(cmd).unwrap();
    let st = leecher.wait(timeout + Duration::from_secs(10)).unwrap();
    assert!(st.success(), "libtorrent leecher: {st}");
    fx.spec.verify(&fx.dl_dir).unwrap();
}

/// 4. Transmission with encryption required (`-er`) as the seeder.
#[test]
fn download_from_transmission_requiring_encryption() {
    let fx = fixture(174);
    let seeder = TransmissionSeeder::start_with(&fx.torrent, &fx.seed_dir, None, true).unwrap();
    let out = download(&fx, seeder.addr(), &[], 60).run().unwrap();
    out.ensure_success().unwrap();
    fx.spec.verify(&fx.dl_dir).unwrap();
}

/// 5. Transmission with encryption required as the leecher; our seeder dials it (it ignores
///    loopback peers it is told of). It never exits: done when its files match.
#[test]
fn seed_to_transmission_requiring_encryption() {
    let fx = fixture(175);
    let mut leecher = TransmissionLeecher::start_with(&fx.torrent, &fx.dl_dir, true).unwrap();
    let mut opts = RtSeedOpts::listen(fresh_listen());
    opts.peers.push(leecher.addr());
    let seeder = RtSeeder::start(&fx.torrent, &fx.seed_dir, &opts).unwrap();
    let took = leecher
        .wait_complete(&fx.spec, &fx.dl_dir, Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("{e:#}\n--- seeder ---\n{}", seeder.proc.log_tail()));
    eprintln!("Transmission finished in {took:?}");
}

/// 6. A plaintext-only libtorrent: our default policy downloads from it (plain handshake).
#[test]
fn plaintext_only_peer_works_with_the_default_policy() {
    let fx = fixture(176);
    let seeder = lt_seeder(&fx, LtEncryption::Disabled);
    let out = download(&fx, seeder.addr(), &[], 60).run().unwrap();
    out.ensure_success().unwrap();
    fx.spec.verify(&fx.dl_dir).unwrap();
}

/// 7. `--encryption require` refuses the plaintext-only peer, and says why: nothing is
///    downloaded, and the peer's close during our encrypted handshake is named.
#[test]
fn require_refuses_a_plaintext_only_peer_with_a_reason() {
    let fx = fixture(177);
    let seeder = lt_seeder(&fx, LtEncryption::Disabled);
    let out = download(&fx, seeder.addr(), &["--encryption", "require"], 12)
        .run()
        .unwrap();
    assert!(!out.success(), "downloaded from a plaintext-only peer");
    assert!(
        out.stderr
            .contains("closed the connection during the encrypted handshake"),
        "no reason given:\n{}",
        out.stderr
    );
    assert!(fx.spec.verify(&fx.dl_dir).is_err());
}

/// 3b. Our seeder dials a libtorrent leecher that allows only RC4 (we initiate the MSE
///     handshake while seeding).
#[test]
fn seed_by_dialing_libtorrent_requiring_rc4() {
    let fx = fixture(178);
    let port = free_port(LEECHER_IP).unwrap();
    let timeout = Duration::from_secs(60);
    let mut cmd = leech_command(&fx.torrent, &fx.dl_dir, port, None, &[], timeout);
    LtEncryption::Forced.apply(&mut cmd);
    let mut leecher = LtLeecher::spawn(cmd).unwrap();
    // A seeder does not redial a refused connection: dial once the leecher listens.
    leecher
        .proc
        .wait_for_log("listening on port", Duration::from_secs(30))
        .unwrap();
    let mut opts = RtSeedOpts::listen(fresh_listen());
    opts.peers.push(SocketAddr::from((LEECHER_IP, port)));
    let _seeder = RtSeeder::start(&fx.torrent, &fx.seed_dir, &opts).unwrap();
    let st = leecher.wait(timeout + Duration::from_secs(10)).unwrap();
    assert!(st.success(), "libtorrent leecher: {st}");
    fx.spec.verify(&fx.dl_dir).unwrap();
}
