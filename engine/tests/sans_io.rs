//! The sans-IO boundary, checked mechanically (in the manner of TigerBeetle's `tidy`):
//! protocol modules may not import runtimes, rings, sockets, files or read the clock, and
//! `unsafe` appears only in the shard ring drivers.

use std::path::{Path, PathBuf};

const PROTOCOL: &[&str] = &[
    "bencode",
    "metainfo",
    "magnet",
    "wire",
    "handshake",
    "ext",
    "peer",
    "picker",
    "choker",
    "torrent",
    "tracker/http.rs",
    "tracker/udp.rs",
    "tracker/tiers.rs",
    "types.rs",
    "resume.rs",
    "files.rs",
];

const FORBIDDEN: &[&str] = &[
    "tokio",
    "io_uring",
    "tokio_uring",
    "std::net::TcpStream",
    "std::net::UdpSocket",
    "std::fs",
    "Instant::now",
    "SystemTime::now",
    "std::thread::spawn",
    "reqwest",
    "polling::",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            rust_files(&e.path(), out);
        }
    } else if p.extension().is_some_and(|e| e == "rs") {
        out.push(p.to_path_buf());
    }
}

/// Lines of code outside `#[cfg(test)]` modules (tests may use the clock and threads).
fn non_test_code(text: &str) -> String {
    match text.find("#[cfg(test)]") {
        Some(i) => text[..i].to_string(),
        None => text.to_string(),
    }
}

#[test]
fn protocol_modules_do_no_io() {
    let mut files = Vec::new();
    for m in PROTOCOL {
        let p = src().join(m);
        let candidates = [p.clone(), p.with_extension("rs")];
        for c in candidates {
            if c.exists() {
                rust_files(&c, &mut files);
            }
        }
    }
    assert!(
        files.len() >= 10,
        "found only {} protocol files",
        files.len()
    );
    let mut bad = Vec::new();
    for f in &files {
        // Test-only modules (`tests.rs`, `*_tests.rs`, declared under `#[cfg(test)]`) may
        // read the clock and spawn threads.
        let name = f.file_name().unwrap().to_string_lossy();
        if name == "tests.rs" || name.ends_with("_tests.rs") {
            continue;
        }
        let code = non_test_code(&std::fs::read_to_string(f).unwrap());
        for (n, line) in code.lines().enumerate() {
            let l = line.trim_start();
            if l.starts_with("//") {
                continue;
            }
            for word in FORBIDDEN {
                if l.contains(word) {
                    bad.push(format!("{}:{}: {}", f.display(), n + 1, l));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "IO in protocol modules:\n{}",
        bad.join("\n")
    );
}

#[test]
fn unsafe_only_in_ring_drivers() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let allowed = ["shard/uring.rs", "shard/portable.rs"];
    let mut bad = Vec::new();
    for f in &files {
        let rel = f
            .strip_prefix(src())
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(f).unwrap();
        let uses_unsafe = text.lines().any(|l| {
            let l = l.trim_start();
            !l.starts_with("//")
                && (l.contains("unsafe {") || l.contains("unsafe fn") || l.contains("unsafe impl"))
        });
        if uses_unsafe && !allowed.contains(&rel.as_str()) {
            bad.push(rel);
        }
    }
    assert!(bad.is_empty(), "unsafe outside the ring drivers: {bad:?}");
}

#[test]
fn every_unsafe_block_has_a_safety_line() {
    for rel in ["shard/uring.rs", "shard/portable.rs"] {
        let text = std::fs::read_to_string(src().join(rel)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if l.contains("unsafe {") || l.contains("unsafe impl") {
                let window = &lines[i.saturating_sub(4)..i];
                assert!(
                    window.iter().any(|w| w.contains("SAFETY:")),
                    "{rel}:{}: unsafe without a SAFETY line",
                    i + 1
                );
            }
        }
    }
}
