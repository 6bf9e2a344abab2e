//! `ringtorrent download` file selection on loopback, seeded by a `ringtorrent seed` child:
//! `--show-files`, `--select`/`--select-glob` (only the chosen files appear, byte-identical;
//! bytes of straddled pieces sit in the part file), `--sequential`, and exit code 2 with a
//! clear message for a bad selection.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use rt_testkit::net::{free_port, seeder_ip};
use rt_testkit::rt_seeder::{RtSeedOpts, RtSeeder};
use rt_testkit::torrent::make_torrent_mktorrent;
use rt_testkit::{ringtorrent_bin, Download, PayloadSpec, TorrentMeta};

const PIECE: u32 = 64 * 1024;

/// Files ending off piece boundaries, so chosen files share pieces with unchosen ones.
fn spec() -> PayloadSpec {
    PayloadSpec::dir(
        "sel",
        &[
            ("a.bin", 100_000),
            ("b.iso", 150_000),
            ("c.txt", 5_000),
            ("d/e.iso", 200_000),
            ("f.bin", 70_000),
        ],
        77,
    )
}

struct Fixture {
    _dir: tempfile::TempDir,
    seed_dir: PathBuf,
    dl_dir: PathBuf,
    torrent: PathBuf,
    meta: TorrentMeta,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let seed_dir = dir.path().join("seed");
        let dl_dir = dir.path().join("dl");
        spec().generate(&seed_dir).unwrap();
        let torrent = dir.path().join("sel.torrent");
        let meta = make_torrent_mktorrent(&seed_dir.join("sel"), &torrent, PIECE, None).unwrap();
        Fixture {
            seed_dir,
            dl_dir,
            torrent,
            meta,
            _dir: dir,
        }
    }

    fn index_of(&self, suffix: &str) -> usize {
        self.meta
            .files
            .iter()
            .position(|(p, _)| p.to_string_lossy().ends_with(suffix))
            .unwrap_or_else(|| panic!("no file {suffix}"))
    }

    fn seeder(&self) -> RtSeeder {
        let listen = SocketAddr::from((seeder_ip(), free_port(seeder_ip()).unwrap()));
        RtSeeder::start(&self.torrent, &self.seed_dir, &RtSeedOpts::listen(listen)).unwrap()
    }

    /// The torrent's content, concatenated in torrent order.
    fn content(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for (p, _) in &self.meta.files {
            all.extend(std::fs::read(self.seed_dir.join(p)).unwrap());
        }
        all
    }

    /// (start, end) of each file in the torrent.
    fn ranges(&self) -> Vec<(u64, u64)> {
        let mut at = 0;
        self.meta
            .files
            .iter()
            .map(|(_, len)| {
                at += len;
                (at - len, at)
            })
            .collect()
    }
}

/// Runs `ringtorrent download` with `args` (no peers) and returns (exit code, stdout, stderr).
fn run_cli(fx: &Fixture, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(ringtorrent_bin().unwrap())
        .arg("download")
        .arg(&fx.torrent)
        .arg("-o")
        .arg(&fx.dl_dir)
        .args([
            "--no-trackers",
            "--no-dht",
            "--no-lsd",
            "--listen",
            "127.0.0.1:0",
            "--timeout",
            "20",
        ])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn show_files_lists_index_size_path() {
    let fx = Fixture::new();
    let (code, out, err) = run_cli(&fx, &["--show-files"]);
    assert_eq!(code, 0, "stderr: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), fx.meta.files.len(), "{out}");
    for (i, (line, (path, len))) in lines.iter().zip(&fx.meta.files).enumerate() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[0], i.to_string(), "{line}");
        assert_eq!(cols[1], len.to_string(), "{line}");
        assert_eq!(cols[2], path.to_string_lossy(), "{line}");
    }
    assert!(
        !fx.dl_dir.join("sel").exists(),
        "--show-files downloads nothing"
    );
}

#[test]
fn bad_selections_exit_2_with_a_message() {
    let fx = Fixture::new();
    for (args, needle) in [
        (vec!["--select", "0,x"], "bad file selection"),
        (vec!["--select", "3-1"], "start is after the end"),
        (vec!["--select", "0,99"], "out of range"),
        (vec!["--select-glob", "*.nothing"], "matches no file"),
    ] {
        let (code, _, err) = run_cli(&fx, &args);
        assert_eq!(code, 2, "{args:?}: stderr {err}");
        assert!(err.contains(needle), "{args:?}: stderr {err}");
        assert!(!fx.dl_dir.join("sel").exists(), "{args:?} created files");
    }
}

#[test]
fn selected_files_only_and_straddled_bytes_in_the_part_file() {
    let fx = Fixture::new();
    let seeder = fx.seeder();
    let chosen = [
        fx.index_of("a.bin"),
        fx.index_of("d/e.iso"),
        fx.index_of("c.txt"),
    ];
    let select = format!("{},{}", chosen[0], chosen[1]);
    let mut d = Download::new(&fx.torrent, &fx.dl_dir)
        .peer(seeder.addr())
        .timeout(Duration::from_secs(60));
    d.extra_args = vec![
        "--select".into(),
        select,
        "--select-glob".into(),
        "*.txt".into(),
    ];
    let out = d.run().unwrap();
    out.ensure_success().unwrap();

    let all = fx.content();
    let ranges = fx.ranges();
    let plen = u64::from(PIECE);
    let wanted = |p: u64| {
        chosen.iter().any(|&i| {
            ranges[i].1 > ranges[i].0 && ranges[i].0 / plen <= p && p <= (ranges[i].1 - 1) / plen
        })
    };
    // Progress and the summary count the selected pieces, not the whole torrent.
    let total = all.len() as u64;
    let wanted_bytes: u64 = (0..total.div_ceil(plen))
        .filter(|&p| wanted(p))
        .map(|p| plen.min(total - p * plen))
        .sum();
    assert!(wanted_bytes < total);
    let summary = format!(
        "complete: 1 torrent(s), {:.1} MiB",
        wanted_bytes as f64 / 1048576.0
    );
    assert!(
        out.stdout.contains(&summary),
        "expected {summary:?} in stdout:\n{}",
        out.stdout
    );
    let part_path = fx
        .dl_dir
        .join(".ringtorrent")
        .join(format!("{}.parts", fx.meta.info_hash.to_hex()));
    let part = std::fs::read(&part_path).expect("part file");
    let mut straddled = 0;
    for (i, (path, _)) in fx.meta.files.iter().enumerate() {
        let on_disk = fx.dl_dir.join(path);
        let (s, e) = ranges[i];
        if chosen.contains(&i) {
            let got = std::fs::read(&on_disk).unwrap();
            assert!(got == all[s as usize..e as usize], "{path:?} differs");
            continue;
        }
        assert!(!on_disk.exists(), "unselected {path:?} was created");
        // Its bytes in wanted pieces are in the part file at their torrent offsets.
        for p in s / plen..e.div_ceil(plen) {
            if wanted(p) {
                let lo = s.max(p * plen) as usize;
                let hi = e.min((p + 1) * plen) as usize;
                assert!(part[lo..hi] == all[lo..hi], "{path:?} bytes of piece {p}");
                straddled += hi - lo;
            }
        }
    }
    assert!(straddled > 0, "the fixture must straddle files");
}

#[test]
fn sequential_download_completes_verified() {
    let fx = Fixture::new();
    let seeder = fx.seeder();
    let mut d = Download::new(&fx.torrent, &fx.dl_dir)
        .peer(seeder.addr())
        .timeout(Duration::from_secs(60));
    d.extra_args = vec!["--sequential".into()];
    d.run().unwrap().ensure_success().unwrap();
    spec().verify(&fx.dl_dir).unwrap();
    let part = format!(".ringtorrent/{}.parts", fx.meta.info_hash.to_hex());
    assert!(
        !fx.dl_dir.join(part).exists(),
        "no part file without a selection"
    );
}
