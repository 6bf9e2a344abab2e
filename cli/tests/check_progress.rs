//! The hash-check progress of `seed` and `download --recheck`: plain lines on stderr when it
//! is not a terminal, ending with every piece checked; `-q` prints none.

use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringtorrent"))
        .args(args)
        .output()
        .expect("the ringtorrent binary runs")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// 32 MiB of data in 128 pieces of 256 KiB, and its torrent.
fn fixture(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let file = data.join("payload.bin");
    let bytes: Vec<u8> = (0..32u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&file, bytes).unwrap();
    let torrent = dir.join("p.torrent");
    let o = run(&[
        "create",
        s(&file),
        "-o",
        s(&torrent),
        "--piece-length",
        "256KiB",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (torrent, data)
}

fn progress_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| l.starts_with("payload.bin: checked "))
        .map(str::to_string)
        .collect()
}

#[test]
fn seed_and_download_show_check_progress() {
    let dir = tempfile::tempdir().unwrap();
    let (torrent, data) = fixture(dir.path());
    let seed = [
        "seed",
        s(&torrent),
        s(&data),
        "--no-trackers",
        "--no-dht",
        "--no-lsd",
        "--recheck",
        "--seed-time",
        "0",
        "--listen",
        "127.0.0.1:0",
    ];
    let o = run(&seed);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("128/128 pieces verified"));
    let lines = progress_lines(&o);
    assert!(!lines.is_empty(), "no progress lines");
    let last = lines.last().unwrap();
    assert!(last.contains("checked 128/128 pieces ("), "{last}");
    assert!(last.ends_with(" GB/s)"), "{last}");

    let o = run(&[seed.as_slice(), &["-q"]].concat());
    assert!(o.status.success());
    assert!(progress_lines(&o).is_empty(), "-q printed progress");

    let o = run(&[
        "download",
        s(&torrent),
        "-o",
        s(&data),
        "--no-trackers",
        "--no-dht",
        "--no-lsd",
        "--recheck",
        "--listen",
        "127.0.0.1:0",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let lines = progress_lines(&o);
    assert!(
        lines.last().is_some_and(|l| l.contains("checked 128/128")),
        "{err}"
    );
    assert!(
        err.contains("rechecked (recheck asked): 128 pieces verified"),
        "{err}"
    );
}
