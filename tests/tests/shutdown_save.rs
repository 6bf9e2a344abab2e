//! The final resume save is part of a successful exit: when it fails (here the resume
//! directory is replaced by a plain file while the download runs), `ringtorrent download`
//! must not exit 0 as if the state were saved. The data it verified stays on disk.

use std::time::Duration;

use rt_testkit::rt_seeder::{RtSeedOpts, RtSeeder};
use rt_testkit::torrent::PayloadFixture;
use rt_testkit::{wait_until, Download, PayloadSpec};

const PIECE: u32 = 256 * 1024;

#[test]
fn a_failed_final_resume_save_fails_the_run() {
    let fx = PayloadFixture::new(PayloadSpec::single("unsaved.bin", 16 << 20, 31), PIECE).unwrap();
    let ip = rt_testkit::net::seeder_ip();
    let listen = std::net::SocketAddr::from((ip, rt_testkit::net::free_port(ip).unwrap()));
    let mut opts = RtSeedOpts::listen(listen);
    // Slow enough (about 4 s) that the directory can be replaced mid-download.
    opts.extra_args = vec!["--max-upload-rate".into(), "4M".into()];
    let seeder = RtSeeder::start(&fx.torrent, &fx.seed_dir, &opts).unwrap();
    let mut d = Download::new(&fx.torrent, &fx.dl_dir)
        .peer(seeder.addr())
        .timeout(Duration::from_secs(60));
    d.extra_args = vec!["--no-trackers".into()];
    let mut run = d.start().unwrap();
    let resume_dir = fx.dl_dir.join(".ringtorrent");
    wait_until(Duration::from_secs(20), "the resume directory", || {
        resume_dir.is_dir()
    })
    .unwrap();
    assert!(run.is_running(), "the download ended before the fault");
    std::fs::remove_dir_all(&resume_dir).unwrap();
    std::fs::write(&resume_dir, b"not a directory").unwrap();
    let out = run.wait().unwrap();
    let code = out.status.and_then(|s| s.code());
    assert_eq!(
        code,
        Some(1),
        "exit {code:?} although the resume file could not be saved:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stderr.contains("saving resume data"),
        "the error does not say what failed:\n{}",
        out.stderr
    );
    // Verified data is not lost: the payload is all there.
    fx.spec.verify(&fx.dl_dir).unwrap();
}
