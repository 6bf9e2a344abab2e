//! Torrents made by real tools (libtorrent's Python bindings, mktorrent) and read back with the
//! kit's own bencode reader.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use ringtorrent::InfoHash;
use sha1::{Digest, Sha1};

use crate::bencode::{self, Node};
use crate::{python, script};

/// What the tests need to know about a v1 torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorrentMeta {
    pub info_hash: InfoHash,
    pub name: String,
    pub piece_length: u32,
    pub num_pieces: u32,
    /// Files in torrent order, as paths relative to the download directory (`name` for a
    /// single-file torrent, `name/a/b` for a multi-file one), with their lengths.
    pub files: Vec<(PathBuf, u64)>,
    pub announce: Option<String>,
}

impl TorrentMeta {
    pub fn total_len(&self) -> u64 {
        self.files.iter().map(|f| f.1).sum()
    }

    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {path:?}"))?;
        Self::parse(&bytes).with_context(|| format!("parsing {path:?}"))
    }

    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let root = bencode::decode(bytes)?;
        let info = root.get("info").context("no info dict")?;
        let digest: [u8; 20] = Sha1::digest(info.raw).into();
        let name = info
            .get("name")
            .and_then(Node::as_str)
            .context("no name")?
            .to_string();
        ensure!(
            !name.is_empty() && !name.contains('/') && name != ".." && name != ".",
            "unsafe torrent name {name:?}"
        );
        let piece_length = info
            .get("piece length")
            .and_then(Node::as_int)
            .and_then(|n| u32::try_from(n).ok())
            .filter(|&n| n > 0)
            .context("bad piece length")?;
        let pieces = info
            .get("pieces")
            .and_then(Node::as_bytes)
            .context("no pieces")?;
        ensure!(pieces.len() % 20 == 0, "pieces not a multiple of 20 bytes");
        let files = parse_files(info, &name)?;
        let meta = TorrentMeta {
            info_hash: InfoHash(digest),
            num_pieces: (pieces.len() / 20) as u32,
            name,
            piece_length,
            files,
            announce: root
                .get("announce")
                .and_then(Node::as_str)
                .map(str::to_string),
        };
        let expected = meta.total_len().div_ceil(piece_length as u64);
        ensure!(
            expected == meta.num_pieces as u64,
            "{} piece hashes for {} bytes",
            meta.num_pieces,
            meta.total_len()
        );
        Ok(meta)
    }

    /// Which file holds byte `offset` of the torrent's content, and where in that file.
    pub fn locate(&self, mut offset: u64) -> Option<(&Path, u64)> {
        for (path, len) in &self.files {
            if offset < *len {
                return Some((path, offset));
            }
            offset -= len;
        }
        None
    }
}

fn parse_files(info: &Node<'_>, name: &str) -> Result<Vec<(PathBuf, u64)>> {
    let len_of = |n: &Node<'_>| {
        n.get("length")
            .and_then(Node::as_int)
            .and_then(|l| u64::try_from(l).ok())
            .context("bad file length")
    };
    let Some(list) = info.get("files") else {
        return Ok(vec![(PathBuf::from(name), len_of(info)?)]);
    };
    let mut files = Vec::new();
    for f in list.as_list().context("files is not a list")? {
        let mut path = PathBuf::from(name);
        let parts = f
            .get("path")
            .and_then(Node::as_list)
            .context("file without path")?;
        ensure!(!parts.is_empty(), "empty file path");
        for p in parts {
            let p = p.as_str().context("non-UTF-8 path element")?;
            ensure!(
                !p.is_empty() && !p.contains('/') && p != ".." && p != ".",
                "unsafe path element {p:?}"
            );
            path.push(p);
        }
        files.push((path, len_of(f)?));
    }
    Ok(files)
}

/// Makes a torrent of `content` (a file or a directory) with `ringtorrent create`, the
/// project's own builder (its info-hash matches mktorrent's for the same content and
/// fields); returns its metadata. Fixtures use this, so a test that involves no real client
/// needs none installed.
pub fn make_torrent_ringtorrent(
    content: &Path,
    out: &Path,
    piece_length: u32,
    tracker: Option<&str>,
) -> Result<TorrentMeta> {
    let mut cmd = Command::new(crate::ringtorrent::ringtorrent_bin()?);
    cmd.arg("create").arg("--force");
    run_maker(cmd, content, out, piece_length, tracker)
}

/// Runs a torrent maker that takes `<content> -o <out> --piece-length N [--tracker URL]`
/// after the arguments already in `cmd`, and reads the torrent back.
fn run_maker(
    mut cmd: Command,
    content: &Path,
    out: &Path,
    piece_length: u32,
    tracker: Option<&str>,
) -> Result<TorrentMeta> {
    cmd.arg(content)
        .arg("-o")
        .arg(out)
        .arg("--piece-length")
        .arg(piece_length.to_string());
    if let Some(t) = tracker {
        cmd.arg("--tracker").arg(t);
    }
    run_tool(cmd)?;
    TorrentMeta::read(out)
}

/// Makes a v1-only torrent of `content` (a file or a directory) with libtorrent; returns its
/// metadata. The torrent carries `tracker` as its announce URL when given.
pub fn make_torrent_libtorrent(
    content: &Path,
    out: &Path,
    piece_length: u32,
    tracker: Option<&str>,
) -> Result<TorrentMeta> {
    crate::require::require(crate::require::Tool::Libtorrent)?;
    let mut cmd = Command::new(python());
    cmd.arg(script("lt_make_torrent.py"));
    run_maker(cmd, content, out, piece_length, tracker)
}

/// Makes a torrent with mktorrent. `piece_length` must be a power of two (mktorrent's `-l`
/// takes the exponent). mktorrent insists on an announce URL; with `tracker: None` the kit
/// gives it a placeholder and removes it afterwards.
pub fn make_torrent_mktorrent(
    content: &Path,
    out: &Path,
    piece_length: u32,
    tracker: Option<&str>,
) -> Result<TorrentMeta> {
    ensure!(
        piece_length.is_power_of_two(),
        "mktorrent needs a power-of-two piece length"
    );
    crate::require::require(crate::require::Tool::Mktorrent)?;
    let _ = std::fs::remove_file(out); // mktorrent refuses to overwrite
    let mut cmd = Command::new("mktorrent");
    cmd.arg("-d")
        .arg("-t2")
        .arg(format!("-l{}", piece_length.trailing_zeros()))
        .arg(format!(
            "-a{}",
            tracker.unwrap_or("http://127.0.0.1:9/placeholder")
        ))
        .arg("-o")
        .arg(out)
        .arg(content);
    run_tool(cmd)?;
    if tracker.is_none() {
        let bytes = bencode::with_announce(&std::fs::read(out)?, None)?;
        std::fs::write(out, bytes)?;
    }
    TorrentMeta::read(out)
}

/// Writes a copy of `torrent` at `out` with its announce URL replaced (same info-hash).
pub fn write_with_announce(torrent: &Path, out: &Path, url: Option<&str>) -> Result<TorrentMeta> {
    let bytes = bencode::with_announce(&std::fs::read(torrent)?, url)?;
    std::fs::write(out, &bytes)?;
    TorrentMeta::parse(&bytes)
}

fn run_tool(mut cmd: Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A generated payload, its torrent (made by libtorrent, no tracker) and an empty download
/// directory, all inside one temporary directory (removed on drop).
pub struct PayloadFixture {
    pub dir: tempfile::TempDir,
    pub spec: crate::PayloadSpec,
    pub seed_dir: PathBuf,
    pub dl_dir: PathBuf,
    pub torrent: PathBuf,
    pub meta: TorrentMeta,
}

impl PayloadFixture {
    pub fn new(spec: crate::PayloadSpec, piece_length: u32) -> Result<PayloadFixture> {
        let dir = tempfile::tempdir()?;
        let seed_dir = dir.path().join("seed");
        let dl_dir = dir.path().join("dl");
        std::fs::create_dir_all(&dl_dir)?;
        spec.generate(&seed_dir)?;
        let torrent = dir.path().join("bare.torrent");
        let meta =
            make_torrent_ringtorrent(&spec.content_path(&seed_dir), &torrent, piece_length, None)?;
        ensure!(
            meta.total_len() == spec.total_len(),
            "torrent length {} but payload {}",
            meta.total_len(),
            spec.total_len()
        );
        Ok(PayloadFixture {
            dir,
            spec,
            seed_dir,
            dl_dir,
            torrent,
            meta,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_multi() -> Vec<u8> {
        let mut info = b"d5:filesl".to_vec();
        info.extend_from_slice(b"d6:lengthi0e4:pathl5:emptyeed6:lengthi5e4:pathl3:sub1:fee");
        info.extend_from_slice(b"e4:name3:top12:piece lengthi4e6:pieces40:");
        info.extend_from_slice(&[7u8; 40]);
        info.push(b'e');
        let mut t = b"d4:info".to_vec();
        t.extend_from_slice(&info);
        t.push(b'e');
        t
    }

    #[test]
    fn reads_multi_file_layout_and_hash() {
        let t = fixture_multi();
        let m = TorrentMeta::parse(&t).unwrap();
        assert_eq!(m.name, "top");
        assert_eq!(m.piece_length, 4);
        assert_eq!(m.num_pieces, 2);
        assert_eq!(
            m.files,
            vec![
                (PathBuf::from("top/empty"), 0),
                (PathBuf::from("top/sub/f"), 5)
            ]
        );
        let info = &t[7..t.len() - 1];
        let want: [u8; 20] = Sha1::digest(info).into();
        assert_eq!(m.info_hash.0, want);
        assert_eq!(m.locate(4), Some((Path::new("top/sub/f"), 4)));
        assert_eq!(m.locate(5), None);
    }

    #[test]
    fn rejects_wrong_piece_count_and_unsafe_paths() {
        let t = fixture_multi();
        let short = String::from_utf8_lossy(&t).replace("6:pieces40:", "6:pieces20:");
        let short = short.replace(&"\u{7}".repeat(40), &"\u{7}".repeat(20));
        assert!(TorrentMeta::parse(short.as_bytes()).is_err());
        let evil = String::from_utf8_lossy(&t).replace("3:sub", "2:..");
        assert!(TorrentMeta::parse(evil.as_bytes()).is_err());
        assert!(TorrentMeta::parse(b"d4:infodee").is_err());
    }
}
