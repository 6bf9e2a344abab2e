//! Crash safety and faults of `ringtorrent download`, with real processes and files:
//! - `kill -9` at random moments, 20 times, then the same command again: completes
//!   byte-identical, and no restart loses a piece an earlier run reported verified (so each
//!   restart re-downloads at most what was in flight);
//! - SIGINT / SIGTERM: graceful stop with exit code 130 / 143, and the next run trusts the
//!   resume file (no recheck);
//! - no space (a tmpfs the test mounts) and a read-only directory: exit 1 with a clear
//!   message, verified data kept; after making room, the same command completes;
//! - an I/O error from a file-size limit (RLIMIT_FSIZE, EFBIG): the same, never a kill by
//!   SIGXFSZ.
//!
//! Seeders are `ringtorrent seed` processes (rt-testkit's `RtSeeder`).

use std::collections::HashSet;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rt_testkit::net::{free_port, seeder_ip};
use rt_testkit::ringtorrent::verified_pieces;
use rt_testkit::rt_seeder::{RtSeedOpts, RtSeeder};
use rt_testkit::{ringtorrent_bin, Download, PayloadSpec};

/// A payload, its torrent (made by `ringtorrent create`) and a seeder for it.
struct Swarm {
    dir: tempfile::TempDir,
    spec: PayloadSpec,
    torrent: PathBuf,
    seeder: RtSeeder,
}

fn swarm(spec: PayloadSpec, piece: &str) -> Swarm {
    let dir = tempfile::tempdir().unwrap();
    let seed_dir = dir.path().join("seed");
    spec.generate(&seed_dir).unwrap();
    let torrent = dir.path().join("t.torrent");
    let st = Command::new(ringtorrent_bin().unwrap())
        .args(["create", "--piece-length", piece, "-o"])
        .arg(&torrent)
        .arg(spec.content_path(&seed_dir))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "create failed");
    let ip = seeder_ip();
    let listen = SocketAddr::from((ip, free_port(ip).unwrap()));
    let seeder = RtSeeder::start(&torrent, &seed_dir, &RtSeedOpts::listen(listen)).unwrap();
    Swarm {
        dir,
        spec,
        torrent,
        seeder,
    }
}

/// A `download` child with stdout and stderr in files under the swarm's directory.
struct Run {
    child: Child,
    err: PathBuf,
    out: PathBuf,
}

impl Swarm {
    fn start(&self, out: &Path, n: usize, extra: &[&str]) -> Run {
        let mut d = Download::new(&self.torrent, out).peer(self.seeder.addr());
        d.quiet = false;
        d.extra_args = extra.iter().map(|s| s.to_string()).collect();
        d.extra_args.push("--no-trackers".into());
        let mut cmd = d.command(&ringtorrent_bin().unwrap()).unwrap();
        let err = self.dir.path().join(format!("run{n}.err"));
        let outf = self.dir.path().join(format!("run{n}.out"));
        cmd.stderr(File::create(&err).unwrap())
            .stdout(File::create(&outf).unwrap());
        Run {
            child: cmd.spawn().unwrap(),
            err,
            out: outf,
        }
    }
}

impl Run {
    /// Waits (bounded) for the exit; (exit code, stdout, stderr).
    fn wait(mut self, secs: u64) -> (Option<i32>, String, String) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("download did not exit in {secs} s: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (status.code(), self.stdout(), self.stderr())
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, sig).unwrap();
    }
}

/// The pieces a run started with: from `resume data matches ...: N pieces` or
/// `rechecked (...): N pieces verified`; None if it started from nothing.
fn start_pieces(stderr: &str) -> Option<(bool, u32)> {
    stderr.lines().find_map(|l| {
        let (trusted, count) = if l.contains(": resume data matches the files: ") {
            (true, l.rsplit("files: ").next()?)
        } else if l.contains(": rechecked (") {
            (false, l.rsplit("): ").next()?)
        } else {
            return None;
        };
        Some((trusted, count.split_whitespace().next()?.parse().ok()?))
    })
}

fn downloaded_bytes(stdout: &str) -> Option<u64> {
    stdout.lines().find_map(|l| {
        l.strip_prefix("downloaded ")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

#[test]
fn kill_9_twenty_times_then_complete() {
    // 64 MiB in 64 KiB pieces; 6 MiB/s so that 20 short runs cannot finish it.
    let s = swarm(PayloadSpec::single("k9.bin", 64 << 20, 9), "64KiB");
    let piece: u64 = 64 << 10;
    let total_pieces = (64u64 << 20) / piece;
    let out = s.dir.path().join("out");
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x6b39);
    let mut known: HashSet<u32> = HashSet::new();
    let started = Instant::now();
    let mut kills = 0;
    let mut n = 0;
    while kills < 20 {
        n += 1;
        assert!(n < 40, "too many runs");
        let mut run = s.start(&out, n, &["--verbose", "--max-download-rate", "6M"]);
        std::thread::sleep(Duration::from_millis(rng.random_range(150..700)));
        let finished = run.child.try_wait().unwrap().is_some();
        if !finished {
            run.child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        let (_, _, err) = run.wait(10);
        if let Some((_, have)) = start_pieces(&err) {
            // Nothing an earlier run reported verified was lost.
            assert!(
                have as usize >= known.len(),
                "run {n} started with {have} pieces, earlier runs verified {}:\n{err}",
                known.len()
            );
        } else {
            // No start line: either nothing existed yet, or the kill landed during the check
            // of existing data (a run after a kill -9 usually rechecks: its files changed after
            // the last resume save). Such a run verified nothing.
            if !known.is_empty() {
                let killed_checking = !finished && err.contains("looking at existing data");
                assert!(
                    killed_checking,
                    "run {n} did not look at existing data:\n{err}"
                );
                assert!(verified_pieces(&err).is_empty(), "{err}");
            }
        }
        known.extend(verified_pieces(&err));
        if finished {
            break;
        }
    }
    eprintln!(
        "{kills} kills in {n} runs; {} pieces verified before the last run",
        known.len()
    );
    assert_eq!(
        kills, 20,
        "the download finished before 20 kills: slow it down"
    );
    let (code, stdout, err) = s.start(&out, 99, &[]).wait(60);
    assert_eq!(code, Some(0), "{err}");
    let (_, have) = start_pieces(&err).expect("the final run looks at existing data");
    assert!(have as usize >= known.len());
    // It downloads what is missing, plus at most the pieces that were in flight (a few per
    // peer; slack of 64 pieces).
    let got = downloaded_bytes(&stdout).expect("a downloaded figure");
    let missing = (total_pieces - u64::from(have)) * piece;
    assert!(
        got >= missing && got <= missing + 64 * piece,
        "downloaded {got}, missing {missing}"
    );
    s.spec.verify(&out).unwrap();
    eprintln!(
        "final run: started with {have} pieces, downloaded {got} bytes; {:?} in all",
        started.elapsed()
    );
}

#[test]
fn sigint_and_sigterm_stop_gracefully_and_resume_without_recheck() {
    let s = swarm(PayloadSpec::single("sig.bin", 32 << 20, 3), "64KiB");
    let out = s.dir.path().join("out");
    for (n, (sig, want)) in [
        (rustix::process::Signal::INT, 130),
        (rustix::process::Signal::TERM, 143),
    ]
    .into_iter()
    .enumerate()
    {
        let run = s.start(&out, n, &["--max-download-rate", "8M"]);
        std::thread::sleep(Duration::from_millis(1200));
        run.signal(sig);
        let (code, _, err) = run.wait(20);
        assert_eq!(code, Some(want), "{err}");
        assert!(err.contains("saving resume data"), "{err}");
        if n > 0 {
            assert!(
                matches!(start_pieces(&err), Some((true, _))),
                "after a graceful stop the resume file is trusted:\n{err}"
            );
        }
    }
    let (code, _, err) = s.start(&out, 5, &[]).wait(60);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        matches!(start_pieces(&err), Some((true, p)) if p > 0),
        "{err}"
    );
    s.spec.verify(&out).unwrap();
    // Complete and stopped cleanly: the next run trusts everything and downloads nothing.
    let (code, stdout, err) = s.start(&out, 6, &[]).wait(30);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(start_pieces(&err), Some((true, 512)), "{err}");
    assert_eq!(downloaded_bytes(&stdout), Some(0));
}

/// Mounts a tmpfs of `size` on `dir` (a new directory) and returns the guard that unmounts
/// it. Fails the test, with mount's reason, where it cannot: CI runs as root, and a test that
/// passed without its small filesystem would have checked nothing.
#[track_caller]
fn mount_tmpfs(dir: &Path, size: &str) -> Unmount {
    std::fs::create_dir_all(dir).unwrap();
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .output();
    match out {
        Ok(o) if o.status.success() => Unmount(dir.to_path_buf()),
        Ok(o) => panic!(
            "cannot mount a {size} tmpfs on {dir:?} ({}: {}); this test needs root \
             (CAP_SYS_ADMIN) to make a small filesystem",
            o.status,
            one_line(&o.stderr)
        ),
        Err(e) => panic!("cannot run mount (util-linux) for a tmpfs on {dir:?}: {e}"),
    }
}

fn one_line(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

struct Unmount(PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn no_space_stops_with_a_clear_error_then_completes_after_growing() {
    // Two 8 MiB files; the first download (of both) is interrupted, then the second file is
    // deleted and the disk filled so that it no longer fits.
    let spec = PayloadSpec::dir("nospc", &[("a.bin", 8 << 20), ("b.bin", 8 << 20)], 5);
    let s = swarm(spec, "64KiB");
    let out = s.dir.path().join("mnt");
    let _guard = mount_tmpfs(&out, "20m");
    let run = s.start(&out, 0, &["--max-download-rate", "8M"]);
    std::thread::sleep(Duration::from_millis(1200));
    run.signal(rustix::process::Signal::INT);
    let (code, _, err) = run.wait(20);
    assert_eq!(code, Some(130), "{err}");
    std::fs::remove_file(out.join("nospc/b.bin")).unwrap();
    std::fs::write(out.join("filler"), vec![1u8; 10 << 20]).unwrap();

    let (code, _, err) = s.start(&out, 1, &[]).wait(30);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no space"), "the error names the cause: {err}");
    // The verified data and the resume file are still there.
    let resume = std::fs::read_dir(out.join(".ringtorrent"))
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.path().extension().is_some_and(|x| x == "resume"));
    assert!(resume, "resume file kept");

    let st = Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    let (code, stdout, err) = s.start(&out, 2, &[]).wait(60);
    assert_eq!(code, Some(0), "{err}");
    s.spec.verify(&out).unwrap();
    // a.bin's pieces verified before the stop were kept, not downloaded again.
    let (_, have) = start_pieces(&err).expect("existing data looked at");
    assert!(have > 0, "{err}");
    let got = downloaded_bytes(&stdout).unwrap();
    assert!(got < 16 << 20, "downloaded {got}: verified data was lost");
}

#[test]
fn read_only_directory_is_a_clear_error() {
    let s = swarm(PayloadSpec::single("ro.bin", 1 << 20, 7), "64KiB");
    let out = s.dir.path().join("ro");
    let _guard = mount_tmpfs(&out, "8m");
    let st = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    let (code, _, err) = s.start(&out, 0, &[]).wait(30);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("error:") && err.contains("Read-only"), "{err}");
    let st = Command::new("mount")
        .args(["-o", "remount,rw"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    let (code, _, err) = s.start(&out, 1, &[]).wait(60);
    assert_eq!(code, Some(0), "{err}");
    s.spec.verify(&out).unwrap();
}

/// The `pieces` bitfield of the single resume file under `out/.ringtorrent`, if one was saved.
fn resume_pieces(out: &Path) -> Option<Vec<u32>> {
    let file = std::fs::read_dir(out.join(".ringtorrent"))
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "resume"))?;
    let bytes = std::fs::read(file).unwrap();
    let root = rt_testkit::bencode::decode(&bytes).unwrap();
    let bits = root.get("pieces").and_then(|v| v.as_bytes()).unwrap();
    Some(
        (0..bits.len() as u32 * 8)
            .filter(|&i| bits[i as usize / 8] & (0x80 >> (i % 8)) != 0)
            .collect(),
    )
}

#[test]
fn disk_full_mid_download_pauses_keeps_verified_data_and_resumes() {
    let piece: u64 = 64 << 10;
    let s = swarm(PayloadSpec::single("full.bin", 16 << 20, 11), "64KiB");
    let out = s.dir.path().join("mnt");
    let _guard = mount_tmpfs(&out, "24m");
    let file = out.join("full.bin");
    let run = s.start(
        &out,
        0,
        &["--sequential", "--verbose", "--max-download-rate", "8M"],
    );
    // Once the file is reserved, give its second half back and fill the disk: writes there
    // fail with ENOSPC while the first half keeps working.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(&file).map_or(0, |m| m.len()) < 16 << 20 {
        assert!(Instant::now() < deadline, "file never reserved");
        std::thread::sleep(Duration::from_millis(5));
    }
    let st = Command::new("fallocate")
        .args(["--punch-hole", "--offset", "8MiB", "--length", "8MiB"])
        .arg(&file)
        .status()
        .unwrap();
    assert!(st.success());
    let filler = out.join("filler");
    let _ = std::fs::write(&filler, vec![1u8; 24 << 20]); // fails part way: disk full
    let (code, _, err) = run.wait(60);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no space"), "the error names the cause: {err}");
    // Every piece the resume file claims is intact on disk. On a loaded host the disk can be
    // full before the first periodic save; then there is no claim and the next run rechecks.
    let claimed = resume_pieces(&out).unwrap_or_default();
    let want = std::fs::read(s.spec.content_path(&s.dir.path().join("seed"))).unwrap();
    let got = std::fs::read(&file).unwrap();
    for &p in &claimed {
        let r = (p as u64 * piece) as usize..((p as u64 + 1) * piece) as usize;
        assert!(
            got[r.clone()] == want[r],
            "piece {p} claimed but not on disk"
        );
    }
    // Free space and run the same command: it continues and completes byte-identical.
    std::fs::remove_file(&filler).unwrap();
    let (code, stdout, err) = s.start(&out, 1, &[]).wait(60);
    assert_eq!(code, Some(0), "{err}");
    let (_, have) = start_pieces(&err).expect("existing data looked at");
    assert!(have as usize >= claimed.len(), "{err}");

    let got = downloaded_bytes(&stdout).unwrap();
    assert!(
        got <= (256 - u64::from(have) + 64) * piece,
        "downloaded {got}"
    );
    s.spec.verify(&out).unwrap();
}

#[test]
fn file_size_limit_is_a_clear_io_error_then_completes_without_it() {
    // RLIMIT_FSIZE of 2 MiB (set by util-linux's prlimit) against a torrent of a 1 MiB and a
    // 6 MiB file: writing or preallocating past the limit fails with EFBIG.
    let spec = PayloadSpec::dir("fsize", &[("a.bin", 1 << 20), ("b.bin", 6 << 20)], 9);
    let s = swarm(spec, "64KiB");
    let out = s.dir.path().join("out");
    let mut d = Download::new(&s.torrent, &out).peer(s.seeder.addr());
    d.quiet = false;
    d.extra_args = vec!["--no-trackers".into()];
    let inner = d.command(&ringtorrent_bin().unwrap()).unwrap();
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--fsize={}", 2 << 20))
        .arg("--")
        .arg(inner.get_program())
        .args(inner.get_args());
    let err_path = s.dir.path().join("fsize.err");
    let out_path = s.dir.path().join("fsize.out");
    cmd.stderr(File::create(&err_path).unwrap())
        .stdout(File::create(&out_path).unwrap());
    let (code, _, err) = Run {
        child: cmd.spawn().unwrap(),
        err: err_path,
        out: out_path,
    }
    .wait(60);
    assert_eq!(code, Some(1), "exit 1, not killed by a signal: {err}");
    assert!(
        err.contains("file too large"),
        "the error names the cause: {err}"
    );
    // Without the limit the same command completes, byte-identical.
    let (code, _, err) = s.start(&out, 1, &[]).wait(60);
    assert_eq!(code, Some(0), "{err}");
    s.spec.verify(&out).unwrap();
}
