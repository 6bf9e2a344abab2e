//! Interop with torrent tools no one here wrote, started by the tests themselves:
//! - torrents made by libtorrent (v1-only and hybrid v1+v2, which has BEP 47 padding files):
//!   `ringtorrent info --json` agrees with libtorrent on info-hash, pieces and file list;
//! - torrents made by `ringtorrent create` load in libtorrent with the same info-hash, tiers,
//!   web seeds and private flag, and libtorrent's own recheck accepts every piece hash;
//! - `ringtorrent create` gives mktorrent's info-hash for the same content and settings.
//!
//! Needs `mktorrent` and `/usr/bin/python3` with `import libtorrent` (Debian: mktorrent,
//! python3-libtorrent); a missing tool fails the test with a message saying so. Everything
//! stays on loopback: the only URLs in these torrents are 127.0.0.1 ones.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

const PYTHON: &str = "/usr/bin/python3";

/// libtorrent helper: `create SRC OUT PIECE_LEN v1|hybrid`, `describe TORRENT`,
/// `recheck TORRENT SAVE_PATH`. Prints one JSON object.
const LT_SCRIPT: &str = r#"
import json, os, sys, time
import libtorrent as lt

def describe(path):
    ti = lt.torrent_info(path)
    fs = ti.files()
    tiers = {}
    for t in ti.trackers():
        tiers.setdefault(t.tier, []).append(t.url)
    return {
        "info_hash": str(ti.info_hashes().v1),
        "name": ti.name(),
        "num_pieces": ti.num_pieces(),
        "piece_length": ti.piece_length(),
        "total_length": fs.total_size(),
        "private": ti.priv(),
        "trackers": [tiers[k] for k in sorted(tiers)],
        "web_seeds": [w["url"] for w in ti.web_seeds()],
        "files": [{"path": fs.file_path(i).replace(os.sep, "/"), "length": fs.file_size(i),
                   "padding": bool(fs.file_flags(i) & lt.file_storage.flag_pad_file)}
                  for i in range(fs.num_files())],
    }

def create(src, out, piece_len, kind):
    fs = lt.file_storage()
    lt.add_files(fs, src)
    flags = lt.create_torrent.v1_only if kind == "v1" else 0
    t = lt.create_torrent(fs, int(piece_len), flags=flags)
    lt.set_piece_hashes(t, os.path.dirname(os.path.abspath(src)))
    with open(out, "wb") as f:
        f.write(lt.bencode(t.generate()))
    return {"ok": True}

def recheck(path, save_path):
    ses = lt.session({"listen_interfaces": "127.0.0.1:0", "enable_dht": False,
                      "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False})
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(path)
    atp.save_path = save_path
    h = ses.add_torrent(atp)
    deadline = time.time() + 60
    s = h.status()
    while time.time() < deadline and s.state != lt.torrent_status.seeding:
        time.sleep(0.05)
        s = h.status()
    return {"num_pieces": s.num_pieces, "state": str(s.state)}

cmd, args = sys.argv[1], sys.argv[2:]
print(json.dumps({"create": create, "describe": describe, "recheck": recheck}[cmd](*args)))
"#;

fn python(args: &[&str]) -> Value {
    let o = Command::new(PYTHON)
        .arg("-c")
        .arg(LT_SCRIPT)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{PYTHON} cannot run ({e}): install python3"));
    assert!(
        o.status.success(),
        "libtorrent script {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("the libtorrent script prints JSON")
}

fn require_libtorrent() {
    let ok = Command::new(PYTHON)
        .args(["-c", "import libtorrent"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{PYTHON} cannot `import libtorrent`: install python3-libtorrent"
    );
}

fn require_mktorrent() {
    let ok = Command::new("mktorrent").arg("-h").output().is_ok();
    assert!(
        ok,
        "mktorrent is not installed: install the mktorrent package"
    );
}

fn ringtorrent(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_ringtorrent"))
        .args(args)
        .output()
        .expect("the ringtorrent binary runs");
    assert!(
        o.status.success(),
        "ringtorrent {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn info_json(torrent: &Path) -> Value {
    serde_json::from_str(&ringtorrent(&["info", "--json", s(torrent)])).expect("JSON")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// Content used by every test: a single file, and a directory with a 0-byte and a 1-byte
/// file, a hidden file, upper case, and names whose order differs between component-wise
/// and byte-wise sorting (`sub.txt` vs `sub/`).
struct Content {
    _dir: tempfile::TempDir,
    single: PathBuf,
    tree: PathBuf,
}

fn content() -> Content {
    let dir = tempfile::tempdir().unwrap();
    let bytes = |n: u32, seed: u32| -> Vec<u8> {
        (0..n)
            .map(|i| (i.wrapping_mul(31).wrapping_add(seed) >> 3) as u8)
            .collect()
    };
    let single = dir.path().join("single.bin");
    std::fs::write(&single, bytes(200_001, 1)).unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("sub/deeper")).unwrap();
    for (name, data) in [
        ("empty", vec![]),
        ("one", vec![b'1']),
        ("Z", bytes(3000, 2)),
        (".hidden", bytes(10, 3)),
        ("sub.txt", bytes(5, 4)),
        ("sub/data.bin", bytes(100_000, 5)),
        ("sub/deeper/x", bytes(40_000, 6)),
    ] {
        std::fs::write(tree.join(name), data).unwrap();
    }
    Content {
        _dir: dir,
        single,
        tree,
    }
}

/// Our JSON's file list in libtorrent's form: paths prefixed with the name when multi-file.
fn files_as_libtorrent(ours: &Value) -> Value {
    let name = ours["name"].as_str().unwrap();
    let multi = ours["multi_file"] == true;
    let files: Vec<Value> = ours["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let p = f["path"].as_str().unwrap();
            let path = if multi {
                format!("{name}/{p}")
            } else {
                p.to_string()
            };
            json!({ "path": path, "length": f["length"], "padding": f["padding"] })
        })
        .collect();
    Value::Array(files)
}

fn assert_same_torrent(ours: &Value, lt: &Value) {
    for key in [
        "info_hash",
        "name",
        "num_pieces",
        "piece_length",
        "total_length",
        "private",
    ] {
        assert_eq!(ours[key], lt[key], "{key} differs");
    }
    assert_eq!(files_as_libtorrent(ours), lt["files"], "file lists differ");
}

#[test]
fn libtorrent_made_torrents_read_the_same() {
    require_libtorrent();
    let c = content();
    let out = c._dir.path();
    for (src, kind, piece_len) in [
        (&c.single, "v1", "16384"),
        (&c.single, "hybrid", "32768"),
        (&c.tree, "v1", "16384"),
        (&c.tree, "hybrid", "16384"),
    ] {
        let t = out.join(format!("lt-{kind}-{piece_len}.torrent"));
        let _ = std::fs::remove_file(&t);
        python(&["create", s(src), s(&t), piece_len, kind]);
        let lt = python(&["describe", s(&t)]);
        let ours = info_json(&t);
        assert_same_torrent(&ours, &lt);
        if kind == "hybrid" && src == &c.tree {
            let pads = lt["files"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f["padding"] == true);
            assert!(
                pads.count() > 0,
                "hybrid torrents carry BEP 47 padding files"
            );
        }
    }
}

#[test]
fn ringtorrent_torrents_load_in_libtorrent() {
    require_libtorrent();
    let c = content();
    for (i, src) in [&c.single, &c.tree].into_iter().enumerate() {
        let t = c._dir.path().join(format!("rt-{i}.torrent"));
        ringtorrent(&[
            "create",
            s(src),
            "-o",
            s(&t),
            "--piece-length",
            "16KiB",
            "--private",
            "--tracker",
            "http://127.0.0.1:1/a,http://127.0.0.1:1/b",
            "--tracker",
            "udp://127.0.0.1:1",
            "--web-seed",
            "http://127.0.0.1:1/ws/",
        ]);
        let ours = info_json(&t);
        let lt = python(&["describe", s(&t)]);
        assert_same_torrent(&ours, &lt);
        assert_eq!(lt["private"], true);
        // BEP 12: a client shuffles the URLs inside a tier, so compare tiers as sets.
        let mut tiers: Vec<Vec<String>> = serde_json::from_value(lt["trackers"].clone()).unwrap();
        tiers.iter_mut().for_each(|t| t.sort());
        assert_eq!(
            tiers,
            [
                vec!["http://127.0.0.1:1/a", "http://127.0.0.1:1/b"],
                vec!["udp://127.0.0.1:1"]
            ]
        );
        assert_eq!(lt["web_seeds"], json!(["http://127.0.0.1:1/ws/"]));
        // libtorrent hashes the data itself and must accept every piece.
        let save_path = src.parent().unwrap();
        let r = python(&["recheck", s(&t), s(save_path)]);
        assert_eq!(
            r["num_pieces"], ours["num_pieces"],
            "libtorrent recheck: {r}"
        );
    }
}

#[test]
fn create_matches_mktorrent() {
    require_mktorrent();
    let c = content();
    let dir = c._dir.path();
    for (src, log2, private) in [
        // mktorrent's smallest piece length is 2^15.
        (&c.single, 15u32, false),
        (&c.single, 16, true),
        (&c.tree, 15, false),
        (&c.tree, 15, true),
    ] {
        let tag = format!(
            "{}-{log2}-{private}",
            src.file_name().unwrap().to_str().unwrap()
        );
        let mk = dir.join(format!("mk-{tag}.torrent"));
        let mut cmd = Command::new("mktorrent");
        cmd.args([
            "-l",
            &log2.to_string(),
            "-a",
            "http://127.0.0.1:1/announce",
            "-o",
            s(&mk),
        ]);
        if private {
            cmd.arg("-p");
        }
        let o = cmd.arg(s(src)).output().expect("mktorrent runs");
        assert!(
            o.status.success(),
            "mktorrent: {}",
            String::from_utf8_lossy(&o.stderr)
        );

        let rt = dir.join(format!("rt-{tag}.torrent"));
        let pl = (1u32 << log2).to_string();
        let mut args = vec!["create", s(src), "-o", s(&rt), "--piece-length", &pl];
        if private {
            args.push("--private");
        }
        ringtorrent(&args);
        let (mk, rt) = (info_json(&mk), info_json(&rt));
        assert_eq!(mk["files"], rt["files"], "{tag}: file order differs");
        assert_eq!(mk["info_hash"], rt["info_hash"], "{tag}: info-hash differs");
        assert_eq!(rt["private"], private);
    }
}
