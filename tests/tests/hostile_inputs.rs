//! Hostile torrents, trackers and file systems (issue 14 §5): each is a clear error or a
//! timeout, the download goes on where it can, and nothing is written outside the download
//! directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ringtorrent::{AddTorrent, Alert, Engine, TorrentId, TorrentSource};
use rt_testkit::hostile_tracker::{HostileTracker, TrackerAttack, HUGE_BYTES};
use rt_testkit::libtorrent::{LtSeedOpts, LtSeeder};
use rt_testkit::ringtorrent::ringtorrent_bin;
use rt_testkit::torrent::{write_with_announce, PayloadFixture};
use rt_testkit::PayloadSpec;

fn bstr(b: &[u8]) -> Vec<u8> {
    [format!("{}:", b.len()).into_bytes(), b.to_vec()].concat()
}

/// A file of a multi-file torrent: its path components and length.
type FileEntry<'a> = (&'a [&'a [u8]], u64);

/// A torrent around an info dictionary made of `files` (`None`: single-file of `len`), a piece
/// length and a piece count (hashes of zeros: every case fails before a hash is compared).
fn torrent(name: &[u8], files: Option<&[FileEntry]>, len: u64, plen: u64, n: usize) -> Vec<u8> {
    let mut info = b"d".to_vec();
    match files {
        Some(files) => {
            info.extend_from_slice(b"5:filesl");
            for (path, l) in files {
                info.extend_from_slice(format!("d6:lengthi{l}e4:pathl").as_bytes());
                for c in *path {
                    info.extend_from_slice(&bstr(c));
                }
                info.extend_from_slice(b"ee");
            }
            info.push(b'e');
        }
        None => info.extend_from_slice(format!("6:lengthi{len}e").as_bytes()),
    }
    info.extend_from_slice(b"4:name");
    info.extend_from_slice(&bstr(name));
    info.extend_from_slice(format!("12:piece lengthi{plen}e6:pieces").as_bytes());
    info.extend_from_slice(&bstr(&vec![0u8; n * 20]));
    info.push(b'e');
    [b"d4:info".to_vec(), info, b"e".to_vec()].concat()
}

/// Every path under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p.clone());
            }
            out.push(p.strip_prefix(dir).unwrap().to_path_buf());
        }
    }
    out.sort();
    out
}

/// Runs `ringtorrent download` on `torrent` into `<dir>/out` with at most 4096 open files
/// (util-linux's prlimit, so the open-file budget does not depend on the machine); returns the
/// exit code and stderr.
fn download(dir: &Path, torrent: &Path) -> (Option<i32>, String) {
    let out = Command::new("prlimit")
        .arg("--nofile=4096:4096")
        .arg("--")
        .arg(ringtorrent_bin().unwrap())
        .args(["download", "--no-trackers", "--timeout", "20", "-o"])
        .arg(dir.join("out"))
        .arg(torrent)
        .output()
        .expect("run prlimit (util-linux)");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn hostile_torrents_are_refused_and_nothing_is_written_outside() {
    let z: &[u8] = b"";
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "a file path climbing out",
            torrent(b"t", Some(&[(&[b"..", b"escape"], 10)]), 0, 16384, 1),
            "\"../escape\"",
        ),
        (
            "an absolute file path",
            torrent(b"t", Some(&[(&[z, b"tmp", b"abs"], 10)]), 0, 16384, 1),
            "path",
        ),
        (
            "'..' in the middle of a path",
            torrent(
                b"t",
                Some(&[(&[b"a", b"..", b"..", b"b"], 10)]),
                0,
                16384,
                1,
            ),
            "..",
        ),
        (
            "a name of '..'",
            torrent(b"..", None, 10, 16384, 1),
            "unsafe",
        ),
        (
            "a name with a slash",
            torrent(b"../up", None, 10, 16384, 1),
            "unsafe",
        ),
        (
            "more pieces than the length needs",
            torrent(b"t", None, 40000, 16384, 5),
            "pieces",
        ),
        (
            "fewer pieces than the length needs",
            torrent(b"t", None, 40000, 16384, 2),
            "pieces",
        ),
        (
            "a zero piece length",
            torrent(b"t", None, 10, 0, 1),
            "piece length",
        ),
    ];
    for (what, bytes, needle) in cases {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("t.torrent");
        std::fs::write(&t, &bytes).unwrap();
        let (code, err) = download(dir.path(), &t);
        assert_eq!(code, Some(1), "{what}: {err}");
        assert!(
            err.lines()
                .any(|l| l.starts_with("error: ") && l.contains(needle)),
            "{what}: no error naming {needle:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{what}: {err}");
        let left: Vec<_> = tree(dir.path())
            .into_iter()
            .filter(|p| p != Path::new("t.torrent") && p != Path::new("out"))
            .collect();
        assert!(left.is_empty(), "{what}: written: {left:?}");
    }
}

#[test]
fn a_million_files_is_a_clear_error_before_any_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<Vec<u8>> = (0..1_000_000)
        .map(|i| format!("f{i:07}").into_bytes())
        .collect();
    let paths: Vec<[&[u8]; 1]> = names.iter().map(|n| [n.as_slice()]).collect();
    let files: Vec<FileEntry> = paths.iter().map(|p| (&p[..], 1u64)).collect();
    let bytes = torrent(
        b"many",
        Some(&files),
        0,
        16384,
        1_000_000usize.div_ceil(16384),
    );
    let t = dir.path().join("t.torrent");
    std::fs::write(&t, &bytes).unwrap();
    let (code, err) = download(dir.path(), &t);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("1000000 files to open, over the open-file limit"),
        "{err}"
    );
    let made = tree(dir.path()).len();
    assert!(made <= 3, "{made} paths created");
}

#[test]
fn a_symlink_planted_in_the_download_directory_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let victim = outside.join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::os::unix::fs::symlink(&victim, out.join("t")).unwrap();
    let t = dir.path().join("t.torrent");
    std::fs::write(&t, torrent(b"t", None, 40000, 16384, 3)).unwrap();
    let (code, err) = download(dir.path(), &t);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("symlink"), "{err}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
}

#[test]
fn hostile_trackers_are_clear_errors_and_the_download_goes_on() {
    // (attack, words the tracker error must hold)
    let cases = [
        (TrackerAttack::Garbage, "bencode"),
        (TrackerAttack::Huge, "larger than"),
        (TrackerAttack::RedirectLoop, "redirected too many times"),
        (TrackerAttack::Silent, "did not answer in time"),
    ];
    let engine = Engine::start(rt_testkit::ringtorrent::loopback_config(true)).unwrap();
    let mut rx = engine.alerts().unwrap();
    let mut running = Vec::new();
    for (i, (attack, words)) in cases.into_iter().enumerate() {
        let fx = PayloadFixture::new(
            PayloadSpec::single(&format!("tr{i}.bin"), 2 << 20, 600 + i as u64),
            64 * 1024,
        )
        .unwrap();
        let tracker = HostileTracker::start(attack).unwrap();
        let with = fx.dir.path().join("announce.torrent");
        write_with_announce(&fx.torrent, &with, Some(&tracker.announce_url())).unwrap();
        let seeder = LtSeeder::start(&fx.torrent, &fx.seed_dir, &LtSeedOpts::default()).unwrap();
        let mut a = AddTorrent::new(TorrentSource::File(with), &fx.dl_dir);
        a.peers = vec![seeder.addr()];
        let id = engine.add_torrent(a).unwrap();
        running.push((id, attack, words, fx, tracker, seeder));
    }
    let mut complete: Vec<TorrentId> = Vec::new();
    let mut errors: Vec<(TorrentId, String)> = Vec::new();
    // The silent tracker's announce times out after the engine's 30 s request timeout.
    let end = Instant::now() + Duration::from_secs(75);
    while !running.iter().all(|r| {
        complete.contains(&r.0) && errors.iter().any(|(id, m)| *id == r.0 && m.contains(r.2))
    }) {
        assert!(
            Instant::now() < end,
            "not within 75 s: every torrent complete and every tracker failed; complete \
             {complete:?}, tracker errors {errors:?}"
        );
        match rx.try_recv() {
            Ok(Alert::TorrentComplete { id }) => complete.push(id),
            Ok(Alert::TrackerError { id, message, .. }) => errors.push((id, message)),
            Ok(Alert::TorrentError { message, .. }) => panic!("torrent error: {message}"),
            Ok(_) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    for (id, attack, _, fx, tracker, _) in &running {
        fx.spec.verify(&fx.dl_dir).unwrap();
        assert!(tracker.requests() >= 1, "{attack:?}: never asked");
        if *attack == TrackerAttack::Huge {
            // Abandoned near the 4 MiB reply limit, not read to the end.
            let sent = tracker.body_bytes_sent();
            assert!(sent < 32 << 20, "{sent} of {HUGE_BYTES} bytes taken");
        }
        let msgs: Vec<_> = errors.iter().filter(|e| e.0 == *id).map(|e| &e.1).collect();
        eprintln!("{attack:?}: {msgs:?}");
    }
}
