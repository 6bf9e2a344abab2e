//! Replays every committed fuzz input through its target, on stable Rust, as a regression test.
//!
//! For each target in `ringtorrent_fuzz::TARGETS`: every file of `corpus/<target>/` (the seeds
//! and what fuzzing grew from them, minimised) and of `regressions/<target>/` (inputs that once
//! crashed a target, kept after the fix). A target whose corpus directory is missing or empty
//! fails, and so does a binary in `fuzz_targets/` that is not in `TARGETS` (or the reverse),
//! so a target can neither lose its corpus nor drift out of this test silently.
//!
//! Run: `cargo test --manifest-path fuzz/Cargo.toml --release`.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use ringtorrent_fuzz::{Target, TARGETS};

/// Most bytes a target's committed corpus may take (the corpus is minimised before commit).
const MAX_CORPUS_BYTES: u64 = 1 << 20;

fn dir(kind: &str, target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(kind)
        .join(target)
}

/// The files of `dir`, sorted; dotfiles (`.gitkeep`) skipped. Empty if `dir` does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    files
}

/// Runs `target` on every file; returns one line per input that panicked.
fn replay(target: Target, files: &[PathBuf]) -> Vec<String> {
    let mut failures = Vec::new();
    for path in files {
        let data = fs::read(path).expect("readable input");
        if panic::catch_unwind(AssertUnwindSafe(|| target(&data))).is_err() {
            failures.push(format!("{} panicked", path.display()));
        }
    }
    failures
}

#[test]
fn every_target_has_a_corpus() {
    let mut problems = Vec::new();
    for &(name, _) in TARGETS {
        let files = inputs(&dir("corpus", name));
        let bytes: u64 = files
            .iter()
            .map(|f| f.metadata().expect("stat").len())
            .sum();
        if files.is_empty() {
            problems.push(format!("corpus/{name}/ is missing or empty"));
        } else if bytes > MAX_CORPUS_BYTES {
            problems.push(format!(
                "corpus/{name}/ is {bytes} bytes, over {MAX_CORPUS_BYTES}: run cargo fuzz cmin"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn corpus_replays() {
    let mut failures = Vec::new();
    for &(name, target) in TARGETS {
        failures.extend(replay(target, &inputs(&dir("corpus", name))));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn regressions_replay() {
    let mut failures = Vec::new();
    for &(name, target) in TARGETS {
        failures.extend(replay(target, &inputs(&dir("regressions", name))));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The names in `TARGETS`, the binaries in `fuzz_targets/` and the directories under
/// `corpus/` and `regressions/` are one set, and each binary calls its own library function.
#[test]
fn targets_match_binaries_and_directories() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<&str> = TARGETS.iter().map(|&(n, _)| n).collect();
    names.sort_unstable();
    let manifest = fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    // Names of the entries of `sub` that are directories (`dirs`) or `.rs` files (`!dirs`).
    let names_in = |sub: &str, dirs: bool| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(root.join(sub))
            .unwrap_or_else(|e| panic!("{sub}/: {e}"))
            .map(|e| e.expect("readable directory entry").path())
            .filter(|p| match dirs {
                true => p.is_dir(),
                false => p.extension().is_some_and(|e| e == "rs"),
            })
            .filter_map(|p| Some(p.file_stem()?.to_string_lossy().into_owned()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        names_in("fuzz_targets", false),
        names,
        "fuzz_targets/*.rs vs TARGETS"
    );
    assert_eq!(
        names_in("corpus", true),
        names,
        "corpus/ directories vs TARGETS"
    );
    for dir in names_in("regressions", true) {
        assert!(
            names.contains(&dir.as_str()),
            "regressions/{dir}/: no such target"
        );
    }
    for name in &names {
        let bin = fs::read_to_string(root.join(format!("fuzz_targets/{name}.rs"))).expect("bin");
        let call = format!("ringtorrent_fuzz::{name}(data)");
        assert!(
            bin.contains(&call),
            "fuzz_targets/{name}.rs does not call {call}"
        );
        let entry = format!("name = \"{name}\"\npath = \"fuzz_targets/{name}.rs\"");
        assert!(
            manifest.contains(&entry),
            "Cargo.toml has no [[bin]] for {name}"
        );
    }
}
