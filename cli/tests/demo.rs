//! `ringtorrent demo`, the README's main command, run as a user would (small payload): it
//! must download through the real engine from its own seeder processes, verify the result
//! byte for byte and print its figures, with no warning or error on the way.

use std::process::Command;

#[test]
fn the_demo_downloads_verifies_and_reports_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ringtorrent"))
        .args(["demo", "--size", "24MiB", "--seeders", "2", "--dir"])
        .arg(dir.path())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("verified byte-identical: 24.0 MiB"),
        "no verification line:\n{stdout}"
    );
    assert!(stdout.contains("CPU-s/GiB"), "no CPU figure:\n{stdout}");
    assert!(stdout.contains("received/kept"), "no waste line:\n{stdout}");
    for bad in ["WARN", "ERROR", "warning:", "error:", "panicked"] {
        assert!(
            !stderr.contains(bad) && !stdout.contains(bad),
            "{bad:?} in the demo's output:\n{stdout}\n{stderr}"
        );
    }
    let got = std::fs::metadata(dir.path().join("download/ringtorrent-demo.bin")).unwrap();
    assert_eq!(
        got.len(),
        24 << 20,
        "the downloaded file has the wrong size"
    );
}
