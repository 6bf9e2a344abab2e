//! Bulk downloading from the CLI (issue 16): many torrents from a command line and an `-i`
//! list, at most `-j` at once, per-entry options, `--on-complete` hooks and the `--json` event
//! stream, against libtorrent seeders on loopback.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rt_testkit::libtorrent::{LtSeedOpts, LtSeeder};
use rt_testkit::torrent::PayloadFixture;
use rt_testkit::{Download, PayloadSpec};
use serde_json::Value;

const PIECE: u32 = 256 * 1024;
const TORRENTS: usize = 6;
const MAX_ACTIVE: usize = 2;

/// The JSON stream: every stdout line must be one object with a `type` and a `time`.
fn events(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l:?}\n{stdout}"));
            assert!(
                v["type"].is_string() && v["time"].is_f64(),
                "event without type or time: {l}"
            );
            v
        })
        .collect()
}

/// Most torrents between `added` and `complete` (or `error`) at any point of the stream.
fn most_active(events: &[Value]) -> usize {
    let mut active = HashSet::new();
    let mut most = 0;
    for e in events {
        let ih = e["info_hash"].as_str().unwrap_or_default().to_string();
        match e["type"].as_str() {
            Some("added") => {
                active.insert(ih);
                most = most.max(active.len());
            }
            Some("complete" | "error") => {
                active.remove(&ih);
            }
            _ => {}
        }
    }
    most
}

/// `download FIRST -i LIST -j J --json` into `out`, with every seeder as a peer.
fn batch(
    first: &PayloadFixture,
    out: &Path,
    seeders: &[LtSeeder],
    list: &Path,
    j: usize,
    timeout_s: u64,
) -> Download {
    let mut d = Download::new(&first.torrent, out).timeout(Duration::from_secs(timeout_s));
    for s in seeders {
        d = d.peer(s.addr());
    }
    let list = list.display().to_string();
    d.extra_args.extend([
        "-i".into(),
        list,
        "-j".into(),
        j.to_string(),
        "--json".into(),
    ]);
    d
}

/// Six torrents, one on the command line and five in a list with two broken entries; each
/// seeder is rate-limited so the downloads overlap unless the queue holds them back.
#[test]
fn a_list_of_torrents_downloads_a_few_at_a_time_and_reports_each() {
    let fixtures: Vec<PayloadFixture> = (0..TORRENTS)
        .map(|i| {
            let spec = PayloadSpec::single(&format!("bulk{i}.bin"), 3 << 20, 300 + i as u64);
            PayloadFixture::new(spec, PIECE).unwrap()
        })
        .collect();
    let opts = LtSeedOpts {
        upload_rate_limit_bytes_per_s: 4 << 20,
        ..Default::default()
    };
    let seeders = LtSeeder::start_each(&fixtures, &opts).unwrap();
    let work = tempfile::tempdir().unwrap();
    let out_dir = work.path().join("out");
    let other_dir = work.path().join("other");
    let hooks = work.path().join("hooks.txt");
    let list = work.path().join("list.txt");
    // Line numbers matter: the broken entries are on lines 5 and 6 (option on 7).
    let mut text = String::from("# bulk test\n");
    text += &format!(
        "{}\n  dir={}\n",
        fixtures[1].torrent.display(),
        other_dir.display()
    );
    text += &format!("{}\n", fixtures[2].torrent.display());
    text += &format!("{}\n", work.path().join("nothere.torrent").display());
    text += &format!("{}\n  colour=blue\n", fixtures[3].torrent.display());
    for f in &fixtures[3..] {
        text += &format!("{}\n", f.torrent.display());
    }
    std::fs::write(&list, &text).unwrap();

    let mut d = batch(&fixtures[0], &out_dir, &seeders, &list, MAX_ACTIVE, 80);
    d.extra_args.extend([
        "--on-complete".into(),
        format!(
            "printf '%s %s\\n' \"$RINGTORRENT_INFO_HASH\" \"$RINGTORRENT_PATH\" >> {}",
            hooks.display()
        ),
    ]);
    let out = d.run().unwrap();
    let tail = || {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            out.stdout,
            rt_testkit::proc::tail(&out.stderr, 4000)
        )
    };
    assert_eq!(
        out.status.and_then(|s| s.code()),
        Some(1),
        "two broken entries must fail the run: {}",
        tail()
    );

    // Every good torrent is complete and byte-exact, the one with `dir=` in its own directory.
    let where_ = |i: usize| -> &Path {
        if i == 1 {
            &other_dir
        } else {
            &out_dir
        }
    };
    for (i, f) in fixtures.iter().enumerate() {
        f.spec
            .verify(where_(i))
            .unwrap_or_else(|e| panic!("torrent {i}: {e:#}\n{}", tail()));
    }

    let ev = events(&out.stdout);
    let most = most_active(&ev);
    assert!(
        most <= MAX_ACTIVE,
        "{most} torrents active at once with -j {MAX_ACTIVE}: {}",
        tail()
    );
    assert_eq!(
        most,
        MAX_ACTIVE,
        "the queue never ran two at once: {}",
        tail()
    );
    let of_type = |t: &str| -> Vec<&Value> { ev.iter().filter(|e| e["type"] == t).collect() };
    let completed: HashSet<&str> = of_type("complete")
        .iter()
        .filter_map(|e| e["info_hash"].as_str())
        .collect();
    let expected: HashSet<String> = fixtures.iter().map(|f| f.meta.info_hash.to_hex()).collect();
    assert_eq!(
        completed,
        expected.iter().map(String::as_str).collect(),
        "complete events: {}",
        tail()
    );
    let list_name = list.display().to_string();
    let errors: HashMap<String, String> = of_type("input-error")
        .iter()
        .map(|e| {
            let origin = e["origin"].as_str().unwrap_or_default().to_string();
            (
                origin,
                e["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(errors.len(), 2, "input errors: {errors:?}\n{}", tail());
    let missing = &errors[&format!("{list_name}:5")];
    assert!(missing.contains("cannot read"), "{missing}");
    let bad_option = &errors[&format!("{list_name}:6")];
    assert!(
        bad_option.contains("unknown option \"colour\"") && bad_option.contains("(line 7)"),
        "{bad_option}"
    );
    // The closing table on stderr names the failures.
    assert!(out.stderr.contains("failed: unknown option"), "{}", tail());

    // One hook run per completed torrent, with its hash and path.
    let ran = std::fs::read_to_string(&hooks).unwrap_or_default();
    let mut runs: Vec<(String, PathBuf)> = ran
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(h, p)| (h.to_string(), PathBuf::from(p)))
        .collect();
    runs.sort();
    let mut want: Vec<(String, PathBuf)> = fixtures
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let path = f.spec.content_path(where_(i));
            (f.meta.info_hash.to_hex(), path)
        })
        .collect();
    want.sort();
    assert_eq!(runs, want, "--on-complete runs:\n{ran}\n{}", tail());
}

/// Twenty torrents, single- and multi-file, four of them as magnet links, from two libtorrent
/// sessions of ten torrents each, with `-j 4`: all complete byte-identical, never more than
/// four at once (from the `--json` events), and four at once at some point.
#[test]
fn twenty_torrents_four_at_a_time() {
    const N: usize = 20;
    const J: usize = 4;
    let fixtures: Vec<PayloadFixture> = (0..N)
        .map(|i| {
            let seed = 500 + i as u64;
            let spec = if i % 3 == 0 {
                let files = [
                    ("a/x.bin", 700_001),
                    ("b.bin", 1 << 20),
                    ("c/d/e.bin", 99_999),
                ];
                PayloadSpec::dir(&format!("multi{i}"), &files, seed)
            } else {
                PayloadSpec::single(&format!("single{i}.bin"), (1 << 20) + 4096 * i as u64, seed)
            };
            PayloadFixture::new(spec, PIECE).unwrap()
        })
        .collect();
    // Each session uploads at 8 MiB/s in all: a torrent takes a few tenths of a second, so
    // without the queue far more than four would overlap.
    let seeders: Vec<LtSeeder> = fixtures
        .chunks(N / 2)
        .map(|half| {
            let opts = LtSeedOpts {
                upload_rate_limit_bytes_per_s: 8 << 20,
                also: half[1..]
                    .iter()
                    .map(|f| (f.torrent.clone(), f.seed_dir.clone()))
                    .collect(),
                ..Default::default()
            };
            LtSeeder::start(&half[0].torrent, &half[0].seed_dir, &opts).unwrap()
        })
        .collect();
    let magnets: Vec<usize> = vec![2, 7, 12, 17];
    let work = tempfile::tempdir().unwrap();
    let out_dir = work.path().join("out");
    let list = work.path().join("twenty.txt");
    let mut text = String::new();
    for (i, f) in fixtures.iter().enumerate().skip(1) {
        if magnets.contains(&i) {
            let ih = f.meta.info_hash.to_hex();
            text += &format!("magnet:?xt=urn:btih:{ih}&dn={}\n", f.spec.name);
        } else {
            text += &format!("{}\n", f.torrent.display());
        }
    }
    std::fs::write(&list, &text).unwrap();

    let d = batch(&fixtures[0], &out_dir, &seeders, &list, J, 120);
    let out = d.run().unwrap();
    let tail = || {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            rt_testkit::proc::tail(&out.stdout, 3000),
            rt_testkit::proc::tail(&out.stderr, 3000)
        )
    };
    out.ensure_success()
        .unwrap_or_else(|e| panic!("{e:#}\n{}", tail()));
    for (i, f) in fixtures.iter().enumerate() {
        f.spec
            .verify(&out_dir)
            .unwrap_or_else(|e| panic!("torrent {i}: {e:#}\n{}", tail()));
    }
    let ev = events(&out.stdout);
    let most = most_active(&ev);
    assert!(most <= J, "{most} active at once with -j {J}\n{}", tail());
    assert_eq!(most, J, "never {J} at once\n{}", tail());
    let completed = ev.iter().filter(|e| e["type"] == "complete").count();
    assert_eq!(completed, N, "{}", tail());
    let metadata = ev.iter().filter(|e| e["type"] == "metadata").count();
    assert_eq!(metadata, magnets.len(), "metadata events\n{}", tail());
}
