//! Commands typed into a running `ringtorrent download` session (stdin lines when it is not a
//! terminal; keys `p`/`q` on a terminal map to the same code): `pause` closes the connections
//! and saves the resume file, nothing more arrives while paused, `resume` reconnects and the
//! download completes; `quit` stops gracefully like Ctrl-C. Also: a `--tracker` given once is
//! remembered by the resume file, so the same download continues without it. The seeder is
//! libtorrent, with an upload limit so the download lasts long enough to be interrupted.

use std::time::{Duration, Instant};

use rt_testkit::libtorrent::{LtSeedOpts, LtSeeder};
use rt_testkit::torrent::PayloadFixture;
use rt_testkit::tracker::Opentracker;
use rt_testkit::{wait_until, Download, DownloadOutcome, PayloadSpec, RunningDownload};

const PIECE: u32 = 256 * 1024;

/// Types `quit`: the run must stop like Ctrl-C (exit 130).
fn quit(mut run: RunningDownload) -> DownloadOutcome {
    run.command("quit").unwrap();
    let out = run.wait().unwrap();
    assert_eq!(
        out.status.and_then(|s| s.code()),
        Some(130),
        "{}",
        out.stderr
    );
    out
}

/// Verified-piece lines (`--verbose`) in `stderr`.
fn verified(stderr: &str) -> usize {
    stderr.lines().filter(|l| l.ends_with(" verified")).count()
}

/// Connections opened and not yet closed, by the `--verbose` lines in `stderr`.
fn open_connections(stderr: &str) -> usize {
    let opened = stderr.lines().filter(|l| l.ends_with(" connected")).count();
    let closed = stderr
        .lines()
        .filter(|l| l.contains(" disconnected: "))
        .count();
    opened.saturating_sub(closed)
}

#[test]
fn pause_and_resume_from_the_session_then_quit() {
    // `_dir` keeps the temporary directory alive for the whole test.
    let PayloadFixture {
        dir: _dir,
        spec,
        seed_dir,
        dl_dir,
        torrent,
        ..
    } = PayloadFixture::new(PayloadSpec::single("paused.bin", 24 << 20, 17), PIECE).unwrap();
    let opts = LtSeedOpts {
        upload_rate_limit_bytes_per_s: 4 << 20,
        ..Default::default()
    };
    let seeder = LtSeeder::start(&torrent, &seed_dir, &opts).unwrap();

    let mut d = Download::new(&torrent, &dl_dir)
        .peer(seeder.addr())
        .timeout(Duration::from_secs(90));
    d.quiet = false;
    d.commands = true;
    d.extra_args = vec!["--verbose".into(), "--no-trackers".into()];
    let mut run = d.start().unwrap();
    let stderr = |run: &rt_testkit::RunningDownload| run.proc.stderr();

    wait_until(Duration::from_secs(30), "a first verified piece", || {
        verified(&stderr(&run)) > 0
    })
    .unwrap();
    run.command("pause").unwrap();
    wait_until(Duration::from_secs(20), "the pause to be confirmed", || {
        stderr(&run).contains("paused.bin: paused")
    })
    .unwrap();
    // The pause closes the connections (`--verbose` prints each): no piece completes after
    // that.
    wait_until(Duration::from_secs(20), "the connections to close", || {
        let err = stderr(&run);
        err.contains("disconnected: torrent removed") && open_connections(&err) == 0
    })
    .unwrap();
    // Pieces completed before may still be hashed and written: wait until they are (the count
    // holds still for a second; the engine tells no "queued pieces done" event).
    let mut last = (verified(&stderr(&run)), Instant::now());
    wait_until(Duration::from_secs(20), "pieces to stop landing", || {
        let n = verified(&stderr(&run));
        if n != last.0 {
            last = (n, Instant::now());
        }
        last.1.elapsed() >= Duration::from_secs(1)
    })
    .unwrap();
    let before = last.0;
    // The behaviour under test: 3 s paused, and nothing arrives.
    std::thread::sleep(Duration::from_millis(3000));
    let err = stderr(&run);
    assert_eq!(
        verified(&err),
        before,
        "pieces arrived while paused:\n{err}"
    );
    assert!(
        err.contains("(paused)"),
        "progress lines say paused:\n{err}"
    );
    assert!(
        before < 96,
        "the download finished before the pause took hold"
    );
    let resume_file = dl_dir
        .join(".ringtorrent")
        .read_dir()
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.path().extension().is_some_and(|x| x == "resume"));
    assert!(resume_file, "pausing saves the resume file");

    run.command("resume").unwrap();
    wait_until(
        Duration::from_secs(20),
        "the resume to be confirmed",
        || stderr(&run).contains("paused.bin: resumed"),
    )
    .unwrap();
    wait_until(
        Duration::from_secs(30),
        "more pieces after resuming",
        || verified(&stderr(&run)) > before,
    )
    .unwrap();
    // `quit` stops like Ctrl-C: resume data saved, exit 130, and the same command continues.
    let out = quit(run);
    assert!(out.stderr.contains("saving resume data"), "{}", out.stderr);

    let mut again = Download::new(&torrent, &dl_dir)
        .peer(seeder.addr())
        .timeout(Duration::from_secs(60));
    again.quiet = false;
    again.extra_args = vec!["--no-trackers".into()];
    let out = again.run().unwrap();
    out.ensure_success().unwrap();
    assert!(
        out.stderr.contains("resume data matches the files"),
        "{}",
        out.stderr
    );
    spec.verify(&dl_dir).unwrap();
}

#[test]
fn a_tracker_from_the_command_line_is_remembered_by_the_resume_file() {
    // The torrent names no tracker: only `--tracker` can find the seeder.
    let PayloadFixture {
        dir,
        spec,
        seed_dir,
        dl_dir,
        torrent,
        meta,
    } = PayloadFixture::new(PayloadSpec::single("tracked.bin", 12 << 20, 23), PIECE).unwrap();
    let tracker = Opentracker::start(&[meta.info_hash]).unwrap();
    let url = tracker.announce_url();
    let opts = LtSeedOpts {
        tracker: Some(url.clone()),
        upload_rate_limit_bytes_per_s: 2 << 20,
        ..Default::default()
    };
    let _seeder = LtSeeder::start(&torrent, &seed_dir, &opts).unwrap();
    tracker
        .wait_for_seeders(&meta.info_hash, 1, Duration::from_secs(30))
        .unwrap();

    let mut first = Download::new(&torrent, &dl_dir).timeout(Duration::from_secs(60));
    first.quiet = false;
    first.commands = true;
    first.extra_args = vec!["--verbose".into(), "--tracker".into(), url];
    let run = first.start().unwrap();
    wait_until(
        Duration::from_secs(30),
        "a piece through the tracker",
        || verified(&run.proc.stderr()) > 0,
    )
    .unwrap();
    quit(run);

    // Same command without `--tracker` and without peers: the resume file's tracker it is.
    let mut again = Download::new(&torrent, &dl_dir).timeout(Duration::from_secs(60));
    again.extra_args = vec!["--verbose".into()];
    let out = again.run().unwrap();
    out.ensure_success().unwrap();
    spec.verify(&dl_dir).unwrap();

    // A URL we cannot announce to is refused before anything starts.
    let mut bad = Download::new(&torrent, &dir.path().join("bad"));
    bad.extra_args = vec!["--tracker".into(), "ftp://127.0.0.1/x".into()];
    let out = bad.run().unwrap();
    assert_eq!(out.status.and_then(|s| s.code()), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("invalid tracker"), "{}", out.stderr);
}
