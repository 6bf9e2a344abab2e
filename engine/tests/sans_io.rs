//! The sans-IO boundary, checked mechanically (in the manner of TigerBeetle's `tidy`):
//! protocol modules may not import runtimes, rings, sockets, files, the IO side of
//! `uring-disk`, or read the clock, and `unsafe` appears only in the shard ring drivers.
//!
//! Whole files are read; only the bodies of `#[cfg(test)]` items are left out (tests may use
//! the clock and threads). A listed path that does not exist fails the test, so a renamed
//! module cannot drop out of the check unnoticed.

use std::path::{Path, PathBuf};

/// Protocol modules: files, or directories whose every `.rs` file is checked.
const PROTOCOL: &[&str] = &[
    "bencode",
    "metainfo",
    "magnet.rs",
    "wire",
    "handshake.rs",
    "ext.rs",
    "metadata.rs",
    "pex.rs",
    "lsd.rs",
    "peer",
    "picker",
    "choker.rs",
    "api/disconnect.rs",
    "api/settings.rs",
    "api/stats.rs",
    "mse",
    "shard/transport.rs",
    "shard/dial.rs",
    "utp",
    "torrent",
    "torrent.rs",
    "tracker/mod.rs",
    "tracker/http.rs",
    "tracker/udp",
    "tracker/tiers.rs",
    "tracker/schedule.rs",
    "types.rs",
    "resume.rs",
    "files.rs",
    "ratelimit.rs",
];

const FORBIDDEN: &[&str] = &[
    "tokio",
    "io_uring",
    "tokio_uring",
    "std::net::TcpStream",
    "std::net::TcpListener",
    "std::net::UdpSocket",
    "std::fs",
    "std::io::Read",
    "std::io::Write",
    "Instant::now",
    "SystemTime::now",
    "std::thread::spawn",
    "reqwest",
    "polling::",
    "rustix",
    "libc::",
];

/// `uring-disk` items protocol code may name: in-memory buffers and witnesses, and handles it
/// only stores for the runtime. Anything else from `uring_disk` does IO and is forbidden.
const URING_DISK_ALLOWED: &[&str] = &[
    "BlockWriter",
    "BufferPool",
    "SharedPiece",
    "VerifiedPiece",
    "Selection",
    "StorageFile",
    "TorrentSlot",
    "BlockReader",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for e in entries {
            rust_files(&e, out);
        }
    } else if p.extension().is_some_and(|e| e == "rs") {
        out.push(p.to_path_buf());
    }
}

/// The text with the items under each `#[cfg(test)]` removed (a `mod x;` line, or an item up
/// to its matching closing brace), line numbers kept (removed lines become empty).
fn non_test_code(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut keep = vec![true; lines.len()];
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_start().starts_with("#[cfg(test)]") {
            keep[i] = false;
            let mut depth: i64 = 0;
            let mut opened = false;
            let mut j = i + 1;
            while j < lines.len() {
                keep[j] = false;
                for c in lines[j].chars() {
                    match c {
                        '{' => {
                            depth += 1;
                            opened = true;
                        }
                        '}' => depth -= 1,
                        _ => {}
                    }
                }
                let item_ends = if opened {
                    depth <= 0
                } else {
                    lines[j].trim_end().ends_with(';')
                };
                j += 1;
                if item_ends {
                    break;
                }
            }
            i = j;
        } else {
            i += 1;
        }
    }
    lines
        .iter()
        .zip(keep)
        .map(|(l, k)| if k { *l } else { "" })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Files that are modules declared under `#[cfg(test)]` (`#[cfg(test)] mod x;` in `a/b.rs`
/// is `a/b/x.rs` or `a/b/x/mod.rs`; in `a/mod.rs` or `lib.rs` it is `a/x.rs` or `a/x/mod.rs`).
fn test_only_files(all: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for f in all {
        let text = std::fs::read_to_string(f).unwrap();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        let stem = f.file_stem().unwrap().to_string_lossy().to_string();
        let dir = if stem == "mod" || stem == "lib" {
            f.parent().unwrap().to_path_buf()
        } else {
            f.with_extension("")
        };
        for w in lines.windows(2) {
            let Some(name) = w[1].strip_prefix("mod ").and_then(|r| r.strip_suffix(';')) else {
                continue;
            };
            if w[0] == "#[cfg(test)]" {
                out.push(dir.join(format!("{name}.rs")));
                out.push(dir.join(name).join("mod.rs"));
            }
        }
    }
    out
}

fn protocol_files() -> Vec<PathBuf> {
    let mut all = Vec::new();
    rust_files(&src(), &mut all);
    let tests = test_only_files(&all);
    let mut files = Vec::new();
    for m in PROTOCOL {
        let p = src().join(m);
        assert!(p.exists(), "listed protocol module {m} does not exist");
        rust_files(&p, &mut files);
    }
    files.retain(|f| !tests.contains(f));
    files
}

/// Offending lines of `code` (comments skipped).
fn violations(code: &str) -> Vec<(usize, String)> {
    let mut bad = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let l = line.trim_start();
        if l.starts_with("//") {
            continue;
        }
        let forbidden = FORBIDDEN.iter().any(|w| l.contains(w));
        let disk_io = l.contains("uring_disk")
            && !uring_disk_names(l)
                .iter()
                .all(|n| URING_DISK_ALLOWED.contains(&n.as_str()));
        if forbidden || disk_io {
            bad.push((n + 1, l.to_string()));
        }
    }
    bad
}

/// The names a line takes from `uring_disk` (`uring_disk::X`, `uring_disk::{X, Y}`).
fn uring_disk_names(line: &str) -> Vec<String> {
    let mut names = Vec::new();
    for part in line.split("uring_disk::").skip(1) {
        let part = part.trim_start();
        let list = match part.strip_prefix('{') {
            Some(rest) => rest.split('}').next().unwrap_or(""),
            None => part,
        };
        for name in list.split(',') {
            let name: String = name
                .trim()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                names.push(name);
            }
            if !part.starts_with('{') {
                break;
            }
        }
    }
    if names.is_empty() {
        // `use uring_disk;` or a bare path: the whole crate.
        names.push("uring_disk".into());
    }
    names
}

#[test]
fn protocol_modules_do_no_io() {
    let files = protocol_files();
    assert!(
        files.len() >= 30,
        "found only {} protocol files",
        files.len()
    );
    let mut bad = Vec::new();
    for f in &files {
        let code = non_test_code(&std::fs::read_to_string(f).unwrap());
        for (n, l) in violations(&code) {
            bad.push(format!("{}:{n}: {l}", f.display()));
        }
    }
    assert!(
        bad.is_empty(),
        "IO in protocol modules:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_check_reads_past_test_modules_and_catches_io() {
    // A test module in the middle of a file hides only itself.
    let text = "use a;\n#[cfg(test)]\nmod tests {\n    fn f() { std::fs::read(\"x\"); }\n}\nfn g() { let _ = std::time::Instant::now(); }\n#[cfg(test)]\nmod more;\nuse uring_disk::{SharedPiece, Storage};\n";
    let code = non_test_code(text);
    let found: Vec<usize> = violations(&code).into_iter().map(|(n, _)| n).collect();
    assert_eq!(found, vec![6, 9], "{code}");
    assert!(violations("use uring_disk::{BufferPool, SharedPiece};").is_empty());
    assert_eq!(
        violations("let s = uring_disk::DiskPipeline::start();").len(),
        1
    );
}

#[test]
fn unsafe_only_in_ring_drivers() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    // The io_uring driver (with its files under `shard/uring/`), the epoll driver, and the
    // shards' UDP sockets (the reuseport route is a raw `setsockopt`).
    let allowed = ["shard/uring.rs", "shard/portable.rs", "shard/udp.rs"];
    for a in allowed {
        assert!(src().join(a).exists(), "allowed file {a} does not exist");
    }
    let allowed_dir = "shard/uring/";
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
        if uses_unsafe && !allowed.contains(&rel.as_str()) && !rel.starts_with(allowed_dir) {
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
