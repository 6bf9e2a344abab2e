//! Seeding: a real libtorrent leecher downloads from `ringtorrent seed`, and a swarm of our own
//! (one ringtorrent seeder, four ringtorrent leechers) trades pieces through a real opentracker.

use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rt_testkit::libtorrent::LtLeecher;
use rt_testkit::net::free_port;
use rt_testkit::ringtorrent::verified_pieces;
use rt_testkit::torrent::{make_torrent_ringtorrent, write_with_announce};
use rt_testkit::tracker::Opentracker;
use rt_testkit::wait::wait_for;
use rt_testkit::{ringtorrent_bin, Download, PayloadSpec};

const PIECE: u32 = 64 * 1024;

/// `ringtorrent seed`, killed (SIGTERM, then SIGKILL) when dropped.
struct Seeder {
    child: Child,
    addr: SocketAddr,
}

impl Seeder {
    fn start(torrent: &Path, data: &Path, listen: &str, trackers: bool) -> Seeder {
        Seeder::start_with(torrent, data, listen, trackers, &[])
    }

    fn start_with(
        torrent: &Path,
        data: &Path,
        listen: &str,
        trackers: bool,
        extra: &[&str],
    ) -> Seeder {
        let mut cmd = Command::new(ringtorrent_bin().unwrap());
        cmd.arg("seed")
            .arg("--no-dht")
            .arg("--no-lsd")
            .arg("--listen")
            .arg(listen)
            .args(extra);
        if !trackers {
            cmd.arg("--no-trackers");
        }
        let mut child = cmd
            .arg(torrent)
            .arg(data)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while out.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
            line.push(b[0]);
        }
        let line = String::from_utf8_lossy(&line).to_string();
        let addr = line
            .strip_prefix("seeding on ")
            .and_then(|r| r.split(": ").next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("seeder did not start: {line:?}"));
        assert!(line.contains(" pieces verified"), "{line}");
        child.stdout = Some(out);
        Seeder { child, addr }
    }

    /// Stops the seeder gracefully and returns what it says it uploaded, in MiB.
    fn stop(mut self) -> f64 {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let mut rest = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            let _ = out.read_to_string(&mut rest);
        }
        let _ = self.child.wait();
        rest.lines()
            .find_map(|l| l.strip_prefix("uploaded "))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no upload figure in {rest:?}"))
    }
}

impl Drop for Seeder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn libtorrent_leecher_downloads_a_multi_file_torrent_from_ringtorrent() {
    let dir = tempfile::tempdir().unwrap();
    let spec = PayloadSpec::interop_multi(PIECE, 11);
    let seed_dir = dir.path().join("seed");
    spec.generate(&seed_dir).unwrap();
    let torrent = dir.path().join("t.torrent");
    make_torrent_ringtorrent(&spec.content_path(&seed_dir), &torrent, PIECE, None).unwrap();
    let seeder = Seeder::start(&torrent, &seed_dir, "127.0.0.6:0", false);
    let out = dir.path().join("lt");
    let mut leecher = LtLeecher::start(
        &torrent,
        &out,
        None,
        &[seeder.addr],
        Duration::from_secs(60),
    )
    .unwrap();
    let status = leecher.wait(Duration::from_secs(70)).unwrap();
    assert!(status.success(), "libtorrent leecher failed: {status}");
    spec.verify(&out).unwrap();
    let uploaded = seeder.stop();
    // The seeder prints MiB with one decimal.
    let size_mib = spec.total_len() as f64 / 1048576.0;
    assert!(
        uploaded >= size_mib - 0.06,
        "seeder reported {uploaded} MiB of {size_mib:.2}"
    );
}

#[test]
fn a_swarm_of_our_own_trades_pieces_through_opentracker() {
    let dir = tempfile::tempdir().unwrap();
    // The seeder is held to 32 MiB/s, far less than four leechers on loopback can take, as a
    // seeder on a real uplink is: unlimited, it sometimes served 3.7x the size on its own
    // before HAVEs spread. Without trading it must upload 4x the size, which takes 16 s; with
    // trading at least 1x (4 s), while the leechers fill each other in.
    let spec = PayloadSpec::single("swarm.bin", 128 << 20, 12);
    let seed_dir = dir.path().join("seed");
    spec.generate(&seed_dir).unwrap();
    let bare = dir.path().join("bare.torrent");
    let meta = make_torrent_ringtorrent(&spec.content_path(&seed_dir), &bare, PIECE, None).unwrap();
    let tracker = Opentracker::start(&[meta.info_hash]).unwrap();
    let torrent = dir.path().join("t.torrent");
    write_with_announce(&bare, &torrent, Some(&tracker.announce_url())).unwrap();

    // The tracker sees announces from 127.0.0.1, so everyone listens there, on its own port.
    let port = free_port(std::net::Ipv4Addr::LOCALHOST).unwrap();
    let seeder = Seeder::start_with(
        &torrent,
        &seed_dir,
        &format!("127.0.0.1:{port}"),
        true,
        &["--max-upload-rate", "32M"],
    );
    tracker
        .wait_for_seeders(&meta.info_hash, 1, Duration::from_secs(20))
        .unwrap();
    let started = Instant::now();
    let leechers: Vec<_> = (0..4)
        .map(|i| {
            let out = dir.path().join(format!("l{i}"));
            Download::new(&torrent, &out)
                .timeout(Duration::from_secs(90))
                .start()
                .unwrap()
        })
        .collect();
    for (i, l) in leechers.into_iter().enumerate() {
        let outcome = l.wait().unwrap();
        outcome
            .ensure_success()
            .unwrap_or_else(|e| panic!("leecher {i}: {e:#}"));
        spec.verify(&dir.path().join(format!("l{i}"))).unwrap();
    }
    let uploaded = seeder.stop();
    let size_mib = spec.total_len() as f64 / 1048576.0;
    eprintln!(
        "seeder uploaded {uploaded:.1} MiB for 4 x {size_mib:.1} MiB in {:?}",
        started.elapsed()
    );
    assert!(
        uploaded < 3.0 * size_mib,
        "leechers did not trade: seeder uploaded {uploaded} MiB"
    );
}

/// N from the summary line `downloaded N payload bytes this session` on stdout.
fn session_download_bytes(stdout: &str) -> Option<u64> {
    stdout.lines().find_map(|l| {
        l.strip_prefix("downloaded ")?
            .strip_suffix(" payload bytes this session")?
            .parse()
            .ok()
    })
}

#[test]
fn a_killed_download_continues_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let spec = PayloadSpec::single("resume.bin", 96 << 20, 13);
    let seed_dir = dir.path().join("seed");
    spec.generate(&seed_dir).unwrap();
    let torrent = dir.path().join("t.torrent");
    make_torrent_ringtorrent(&spec.content_path(&seed_dir), &torrent, PIECE, None).unwrap();
    let seeder = Seeder::start(&torrent, &seed_dir, "127.0.0.7:0", false);
    let out = dir.path().join("dl");
    let total_pieces = spec.total_len().div_ceil(u64::from(PIECE)) as usize;
    // The first run is held to 16 MiB/s (6 s for the whole payload) and killed with SIGKILL
    // (no resume data saved) once it has reported a third of the pieces verified.
    let kill_at = total_pieces / 3;
    let mut first = Download::new(&torrent, &out)
        .peer(seeder.addr)
        .timeout(Duration::from_secs(60));
    first.quiet = false;
    first.extra_args = ["--no-trackers", "--verbose", "--max-download-rate", "16M"]
        .map(String::from)
        .to_vec();
    let mut first = first.start().unwrap();
    let what = format!("the first run to verify {kill_at} of {total_pieces} pieces");
    let verified = wait_for(Duration::from_secs(30), &what, || {
        let verified = verified_pieces(&first.proc.stderr());
        if verified.len() >= kill_at {
            return Ok(Some(verified));
        }
        // Ending by itself (finished or failed) before the kill point fails the wait.
        first.proc.check_alive()?;
        Ok(None)
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    first.proc.kill();
    let status = first.proc.try_status().unwrap();
    assert_eq!(
        status.and_then(|s| s.signal()),
        Some(9),
        "the first run was not killed by SIGKILL: {status:?}"
    );
    drop(first);

    // The second run checks what is there and fetches only the rest: at most the pieces the
    // first run had not reported verified, plus slack for a few in flight at its end.
    let second = Download::new(&torrent, &out)
        .peer(seeder.addr)
        .timeout(Duration::from_secs(60))
        .run()
        .unwrap();
    second.ensure_success().unwrap();
    spec.verify(&out).unwrap();
    let got = session_download_bytes(&second.stdout)
        .unwrap_or_else(|| panic!("no session figure on stdout:\n{}", second.stdout));
    let payload = spec.total_len();
    let missing = (total_pieces - verified.len()) as u64 * u64::from(PIECE);
    let slack = 64 * u64::from(PIECE);
    assert!(
        got <= missing + slack && got + payload / 4 < payload,
        "the second run downloaded {got} of {payload} bytes, although the first had verified \
         {} pieces ({} bytes): it did not continue where the first stopped",
        verified.len(),
        verified.len() as u64 * u64::from(PIECE)
    );
    eprintln!(
        "killed after {} verified pieces; the second run downloaded {got} of {payload} bytes",
        verified.len()
    );
    drop(seeder);
}

#[test]
fn a_finished_download_seeds_until_its_ratio_is_reached() {
    let dir = tempfile::tempdir().unwrap();
    let spec = PayloadSpec::single("ratio.bin", 16 << 20, 14);
    let seed_dir = dir.path().join("seed");
    spec.generate(&seed_dir).unwrap();
    let torrent = dir.path().join("t.torrent");
    make_torrent_ringtorrent(&spec.content_path(&seed_dir), &torrent, PIECE, None).unwrap();
    let seeder = Seeder::start(&torrent, &seed_dir, "127.0.0.8:0", false);
    // A downloads from the seeder and must then upload a full copy before it exits by itself.
    let a_addr = SocketAddr::from((
        [127, 0, 0, 9],
        free_port(std::net::Ipv4Addr::new(127, 0, 0, 9)).unwrap(),
    ));
    let mut a = Download::new(&torrent, &dir.path().join("a"))
        .peer(seeder.addr)
        .timeout(Duration::from_secs(80));
    a.listen = Some(a_addr);
    a.extra_args = vec!["--no-trackers".into(), "--seed-ratio".into(), "1".into()];
    let a = a.start().unwrap();
    // B knows only A: every byte it gets, A uploaded.
    let mut b = Download::new(&torrent, &dir.path().join("b"))
        .peer(a_addr)
        .timeout(Duration::from_secs(60));
    b.extra_args = vec!["--no-trackers".into()];
    b.run().unwrap().ensure_success().unwrap();
    spec.verify(&dir.path().join("b")).unwrap();
    let a = a.wait().unwrap();
    a.ensure_success().unwrap();
    spec.verify(&dir.path().join("a")).unwrap();
    drop(seeder);
}
