//! Runs the built `ringtorrent` binary: `info`, `info --json`, `create`, and each bad input
//! (exit code 1 with one `error:` line, or 2 for usage errors).

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use sha1::{Digest, Sha1};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringtorrent"))
        .args(args)
        .output()
        .expect("the ringtorrent binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs a command that must succeed.
fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(o.status.success(), "{args:?} failed: {}", stderr(&o));
    stdout(&o)
}

fn json(args: &[&str]) -> Value {
    serde_json::from_str(&ok(args)).expect("info --json prints JSON")
}

/// Runs a command that must fail with exit code 1 and exactly one `error:` line containing
/// `needle`.
fn fails(args: &[&str], needle: &str) {
    let o = run(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: not one line: {err}");
    assert!(err.starts_with("error: "), "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
    assert!(o.stdout.is_empty(), "{args:?} printed to stdout");
}

fn usage_error(args: &[&str]) {
    let o = run(args);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"));
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn bstr(b: &[u8]) -> Vec<u8> {
    [format!("{}:", b.len()).as_bytes(), b].concat()
}

/// A two-file torrent written by hand, with two tiers, a web seed and a padding file.
fn fixture() -> (Vec<u8>, Vec<u8>) {
    let pieces: Vec<u8> = (0..40).collect();
    let info = [
        &b"d5:filesl"[..],
        b"d6:lengthi3e4:pathl3:dir5:a.txtee",
        b"d4:attr1:p6:lengthi16381e4:pathl4:.pad5:16381ee",
        b"d6:lengthi7e4:pathl5:b.bineee",
        b"4:name4:root12:piece lengthi16384e6:pieces",
        &bstr(&pieces),
        b"e",
    ]
    .concat();
    let torrent = [
        &b"d8:announce10:http://t/113:announce-listll10:http://t/110:http://t/2el10:http://t/3ee"[..],
        b"7:comment5:hello4:info",
        &info,
        b"8:url-list9:http://w/e",
    ]
    .concat();
    (torrent, info)
}

#[test]
fn info_human_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let (torrent, info) = fixture();
    let path = dir.path().join("f.torrent");
    std::fs::write(&path, &torrent).unwrap();
    let hash: String = Sha1::digest(&info)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();

    let text = ok(&["info", s(&path)]);
    for needle in [
        &hash[..],
        "root",
        "tier 1: http://t/1 http://t/2",
        "tier 2: http://t/3",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    assert!(text.contains("a.txt") && text.contains("b.bin") && text.contains("http://w/"));
    assert!(!text.contains(".pad"), "padding files are hidden:\n{text}");

    let j = json(&["info", "--json", s(&path)]);
    assert_eq!(j["info_hash"], hash.as_str());
    assert_eq!(j["name"], "root");
    assert_eq!(j["total_length"], 3 + 16381 + 7);
    assert_eq!(j["piece_length"], 16384);
    assert_eq!(j["num_pieces"], 2);
    assert_eq!(j["private"], false);
    assert_eq!(j["comment"], "hello");
    assert_eq!(
        j["trackers"],
        serde_json::json!([["http://t/1", "http://t/2"], ["http://t/3"]])
    );
    assert_eq!(j["web_seeds"], serde_json::json!(["http://w/"]));
    let files = j["files"].as_array().unwrap();
    let got: Vec<(&str, u64, bool)> = files
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap(),
                f["length"].as_u64().unwrap(),
                f["padding"] == true,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("dir/a.txt", 3, false),
            (".pad/16381", 16381, true),
            ("b.bin", 7, false)
        ]
    );
}

#[test]
fn info_on_a_magnet() {
    let m = "magnet:?xt=urn:btih:OUJDM5V7GVWAIIVV3OATZVNSCECQCQZ6&dn=My+Name&tr=http%3A%2F%2Ft%2Fa&x.pe=127.0.0.1:6881";
    let j = json(&["info", "--json", m]);
    assert_eq!(j["info_hash"], "75123676bf356c0422b5db813cd5b2110501433e");
    assert_eq!(j["name"], "My Name");
    assert_eq!(j["trackers"], serde_json::json!([["http://t/a"]]));
    assert_eq!(j["peers"], serde_json::json!(["127.0.0.1:6881"]));
    let text = ok(&["info", m]);
    assert!(text.contains("75123676bf356c0422b5db813cd5b2110501433e") && text.contains("My Name"));
}

/// A bencode value (BEP 3), decoded by this test and not by the crate under test.
#[derive(Debug, PartialEq)]
enum Ben {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Ben>),
    Dict(Vec<(Vec<u8>, Ben)>),
}

impl Ben {
    /// The value of `key` in a dictionary.
    fn get(&self, key: &str) -> Option<&Ben> {
        let Ben::Dict(entries) = self else {
            panic!("not a dictionary: {self:?}")
        };
        entries
            .iter()
            .find(|(k, _)| k == key.as_bytes())
            .map(|(_, v)| v)
    }

    fn int(&self) -> i64 {
        match self {
            Ben::Int(i) => *i,
            other => panic!("not an integer: {other:?}"),
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Ben::Bytes(b) => b,
            other => panic!("not a string: {other:?}"),
        }
    }
}

/// Decodes the value at `b[*at..]` and moves `at` past it; panics on malformed input.
fn ben(b: &[u8], at: &mut usize) -> Ben {
    let upto = |at: usize, end: u8| at + b[at..].iter().position(|&c| c == end).unwrap();
    let number = |r: std::ops::Range<usize>| std::str::from_utf8(&b[r]).unwrap().parse().unwrap();
    match b[*at] {
        b'i' => {
            let end = upto(*at, b'e');
            let v = number(*at + 1..end);
            *at = end + 1;
            Ben::Int(v)
        }
        b'l' | b'd' => {
            let dict = b[*at] == b'd';
            *at += 1;
            let (mut items, mut entries) = (Vec::new(), Vec::new());
            while b[*at] != b'e' {
                if dict {
                    let key = ben(b, at).bytes().to_vec();
                    entries.push((key, ben(b, at)));
                } else {
                    items.push(ben(b, at));
                }
            }
            *at += 1;
            if dict {
                Ben::Dict(entries)
            } else {
                Ben::List(items)
            }
        }
        _ => {
            let colon = upto(*at, b':');
            let len: i64 = number(*at..colon);
            *at = colon + 1 + len as usize;
            Ben::Bytes(b[colon + 1..*at].to_vec())
        }
    }
}

/// A whole .torrent file and the raw bytes of its `info` dictionary.
fn decode_torrent(bytes: &[u8]) -> (Ben, &[u8]) {
    assert_eq!(bytes[0], b'd', "a torrent is a dictionary");
    let mut at = 1;
    let mut info = None;
    while bytes[at] != b'e' {
        let key = ben(bytes, &mut at);
        let start = at;
        ben(bytes, &mut at);
        if key.bytes() == b"info" {
            info = Some(&bytes[start..at]);
        }
    }
    let mut at = 0;
    let whole = ben(bytes, &mut at);
    assert_eq!(at, bytes.len(), "bytes after the torrent");
    (whole, info.expect("an info dictionary"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decodes a torrent made by `create` and checks every piece hash against SHA-1 of the
/// content; returns the torrent and the hex SHA-1 of its info dictionary (the info-hash).
fn check_hashes(torrent: &Path, content: &[u8]) -> (Ben, String) {
    let bytes = std::fs::read(torrent).unwrap();
    let (t, info_bytes) = decode_torrent(&bytes);
    let info = t.get("info").unwrap();
    let piece_length = info.get("piece length").unwrap().int() as usize;
    let want: Vec<u8> = content
        .chunks(piece_length)
        .flat_map(|c| Sha1::digest(c).to_vec())
        .collect();
    assert!(
        info.get("pieces").unwrap().bytes() == want,
        "piece hashes differ"
    );
    let info_hash = hex(&Sha1::digest(info_bytes));
    (t, info_hash)
}

#[test]
fn create_directory_and_read_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("share");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    let a: Vec<u8> = (0..70_000u32).map(|i| (i * 7) as u8).collect();
    std::fs::write(root.join("sub/a.bin"), &a).unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    std::fs::write(root.join("one"), b"1").unwrap();
    std::fs::write(root.join("sub.txt"), b"hello").unwrap();
    let out = dir.path().join("out.torrent");
    let o = ok(&[
        "create",
        s(&root),
        "-o",
        s(&out),
        "--piece-length",
        "32KiB",
        "--tracker",
        "http://t/1,http://t/2",
        "--tracker",
        "udp://t/3",
        "--web-seed",
        "http://w/",
        "--private",
        "--comment",
        "hi there",
    ]);
    // mktorrent order: `sub.txt` (0x2e) before `sub/a.bin` (0x2f).
    let content = [&b""[..], b"1", b"hello", &a].concat();
    let (_, info_hash) = check_hashes(&out, &content);
    // The info-hash of the same tree from real tools, which agree: mktorrent 1.1 (`mktorrent
    // -l 15 -p -c "hi there" -w http://w/ -a http://t/1,http://t/2 -a udp://t/3 share`) and
    // libtorrent 2.0.8 (`torrent_info(...).info_hash()` of that file). The same info
    // dictionary byte for byte: files in that order, name, piece length, pieces, private.
    const MKTORRENT_INFO_HASH: &str = "87bfedb25ecc3e810ab207fb655417e58c25965a";
    assert_eq!(info_hash, MKTORRENT_INFO_HASH);
    assert!(o.contains(MKTORRENT_INFO_HASH), "{o}");
    let j = json(&["info", "--json", s(&out)]);
    assert_eq!(j["info_hash"], MKTORRENT_INFO_HASH);
    let paths: Vec<&str> = j["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["empty", "one", "sub.txt", "sub/a.bin"]);
    assert_eq!(j["name"], "share");
    assert_eq!(j["private"], true);
    assert_eq!(j["comment"], "hi there");
    assert_eq!(j["piece_length"], 32768);
    assert_eq!(
        j["trackers"],
        serde_json::json!([["http://t/1", "http://t/2"], ["udp://t/3"]])
    );
    assert_eq!(j["web_seeds"], serde_json::json!(["http://w/"]));
    assert!(j["creation_date"].as_i64().unwrap() > 1_600_000_000);
    assert_eq!(
        j["created_by"].as_str().unwrap().split(' ').next(),
        Some("ringtorrent")
    );
}

#[test]
fn create_single_file_with_default_piece_length() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let file = dir.path().join("data.bin");
    std::fs::write(&file, &data).unwrap();
    let out = dir.path().join("d.torrent");
    ok(&["create", s(&file), "-o", s(&out), "--no-date"]);
    let (t, _) = check_hashes(&out, &data);
    let info = t.get("info").unwrap();
    assert_eq!(info.get("files"), None, "a single-file torrent");
    assert_eq!(info.get("length").unwrap().int(), 3_000_000);
    assert_eq!(info.get("name").unwrap().bytes(), b"data.bin");
    assert_eq!(t.get("creation date"), None);
    // The default (`create --help`): the smallest power of two from 16 KiB to 16 MiB
    // that gives at most 2,000 pieces. 3,000,000 bytes need only 1,500-byte pieces: 16 KiB.
    assert_eq!(info.get("piece length").unwrap().int(), 16_384);
    // Same input, same bytes (--no-date), --force overwrites; without it, a refusal.
    let first = std::fs::read(&out).unwrap();
    fails(&["create", s(&file), "-o", s(&out)], "already exists");
    ok(&["create", s(&file), "-o", s(&out), "--no-date", "--force"]);
    assert_eq!(std::fs::read(&out).unwrap(), first);
}

#[test]
fn default_piece_length_keeps_to_2000_pieces() {
    // 2,000 pieces of 32 KiB exactly; one byte more needs 64 KiB pieces (1,001 of them).
    // Sparse files of zeros: SHA-1 of a whole zero piece, and of the 1-byte tail.
    let dir = tempfile::tempdir().unwrap();
    for (len, want_piece, want_pieces) in
        [(65_536_000u64, 32_768, 2_000), (65_536_001, 65_536, 1_001)]
    {
        let file = dir.path().join(format!("zeros-{len}"));
        std::fs::File::create(&file).unwrap().set_len(len).unwrap();
        let out = dir.path().join(format!("z-{len}.torrent"));
        ok(&["create", s(&file), "-o", s(&out), "--no-date"]);
        let bytes = std::fs::read(&out).unwrap();
        let (t, _) = decode_torrent(&bytes);
        let info = t.get("info").unwrap();
        assert_eq!(
            info.get("piece length").unwrap().int(),
            want_piece,
            "{len} bytes"
        );
        let pieces = info.get("pieces").unwrap().bytes();
        assert_eq!(pieces.len(), 20 * want_pieces, "{len} bytes");
        let whole = Sha1::digest(vec![0u8; want_piece as usize]);
        let tail = Sha1::digest(vec![0u8; (len % want_piece as u64) as usize]);
        for (i, h) in pieces.chunks(20).enumerate() {
            let last_partial = i + 1 == want_pieces && len % want_piece as u64 != 0;
            let want = if last_partial { &tail } else { &whole };
            assert!(h == want.as_slice(), "{len} bytes: piece {i} hash");
        }
    }
}

#[test]
fn bad_torrents_exit_1_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (torrent, _) = fixture();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let truncated = write("t.torrent", &torrent[..torrent.len() / 2]);
    fails(&["info", s(&truncated)], "not a valid torrent");
    let list = write("l.torrent", b"le");
    fails(&["info", "--json", s(&list)], "not a dictionary");
    let evil = String::from_utf8_lossy(&torrent).replace("3:dir5:a.txt", "2:..5:a.txt");
    let evil = write("e.torrent", evil.as_bytes());
    fails(&["info", s(&evil)], "\"../a.txt\"");
    let huge = write("h.torrent", b"d4:info99999999999999:xe");
    fails(&["info", s(&huge)], "99999999999999");
    let deep = write(
        "d.torrent",
        &[vec![b'l'; 10_000], vec![b'e'; 10_000]].concat(),
    );
    fails(&["info", s(&deep)], "nesting");
    fails(
        &["info", s(&dir.path().join("missing.torrent"))],
        "missing.torrent",
    );
    fails(&["info", s(dir.path())], "is a directory");
}

#[test]
fn bad_links_exit_1_with_one_line() {
    fails(&["info", "magnet:?xt=urn:btih:1234"], "bad info-hash");
    fails(&["info", "magnet:?dn=x"], "no BitTorrent info-hash");
    fails(
        &[
            "info",
            "magnet:?xt=urn:btih:OUJDM5V7GVWAIIVV3OATZVNSCECQCQZ1",
        ],
        "bad info-hash",
    );
    fails(
        &["info", "http://example.invalid/x.torrent"],
        "unsupported link",
    );
}

#[test]
fn bad_create_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.torrent");
    fails(
        &["create", s(&dir.path().join("nope")), "-o", s(&out)],
        "nope",
    );
    let empty_dir = dir.path().join("emptydir");
    std::fs::create_dir(&empty_dir).unwrap();
    fails(&["create", s(&empty_dir), "-o", s(&out)], "no files");
    std::fs::write(empty_dir.join("zero"), b"").unwrap();
    fails(&["create", s(&empty_dir), "-o", s(&out)], "holds no data");
    assert!(!out.exists(), "nothing written on failure");
    for pl in ["3", "1000", "8KiB", "256MiB", "lots"] {
        usage_error(&["create", s(&empty_dir), "-o", s(&out), "--piece-length", pl]);
    }
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    usage_error(&[]);
    usage_error(&["info"]);
    usage_error(&["frobnicate"]);
    usage_error(&["create", "x"]);
    usage_error(&["info", "--bogus", "x"]);
    usage_error(&["seed", "x.torrent", "data", "--zero-copy", "sometimes"]);
    usage_error(&["download", "x.torrent", "--zero-copy", ""]);
    for sub in [&["--help"][..], &["info", "--help"], &["create", "--help"]] {
        let o = run(sub);
        assert!(o.status.success(), "{sub:?}");
        assert!(stdout(&o).contains("Usage"), "{sub:?}");
    }
}
