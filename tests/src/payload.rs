//! Deterministic payloads: the same spec always yields the same bytes, so a download is checked
//! by regenerating the stream instead of keeping a second copy.
//!
//! Each file's bytes come from a xorshift64* stream seeded by the spec's seed and the file's
//! path, written in 1 MiB chunks. A payload lives under a *save directory* the way a torrent
//! client lays it out: `save/<name>` for a single file, `save/<name>/<path>` for a directory.

use std::fs::{self, File};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use sha1::{Digest, Sha1};

use crate::torrent::TorrentMeta;

const CHUNK: usize = 1 << 20;

/// One file of a directory payload, relative to the payload's top directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    pub path: PathBuf,
    pub len: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    SingleFile { len: u64 },
    Dir { files: Vec<FileSpec> },
}

/// A payload by parameters; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadSpec {
    pub name: String,
    pub seed: u64,
    pub layout: Layout,
}

impl PayloadSpec {
    pub fn single(name: &str, len: u64, seed: u64) -> Self {
        PayloadSpec {
            name: name.into(),
            seed,
            layout: Layout::SingleFile { len },
        }
    }

    pub fn dir(name: &str, files: &[(&str, u64)], seed: u64) -> Self {
        let files = files
            .iter()
            .map(|(p, len)| FileSpec {
                path: PathBuf::from(p),
                len: *len,
            })
            .collect();
        PayloadSpec {
            name: name.into(),
            seed,
            layout: Layout::Dir { files },
        }
    }

    /// The awkward multi-file shape the interop tests use: an empty file, a 1-byte file, files
    /// that end off piece and block boundaries, one larger than 3 pieces, and a nested path.
    pub fn interop_multi(piece_length: u32, seed: u64) -> Self {
        let p = piece_length as u64;
        Self::dir(
            "multi",
            &[
                ("a-empty.bin", 0),
                ("b-one-byte.bin", 1),
                ("c-unaligned.bin", p + 12_345),
                ("d/e-large.bin", 3 * p + 54_321),
                ("d/f-empty-too.bin", 0),
                ("g-tail.bin", 7_777),
            ],
            seed,
        )
    }

    /// `n` files splitting `total` bytes (the last takes the rest); one file means a single-file
    /// payload.
    pub fn split(name: &str, total: u64, n: u32, seed: u64) -> Self {
        if n <= 1 {
            return Self::single(name, total, seed);
        }
        let each = total / n as u64;
        let files: Vec<(String, u64)> = (0..n)
            .map(|i| {
                let len = if i + 1 == n {
                    total - each * (n as u64 - 1)
                } else {
                    each
                };
                (format!("part-{i:04}.bin"), len)
            })
            .collect();
        let refs: Vec<(&str, u64)> = files.iter().map(|(p, l)| (p.as_str(), *l)).collect();
        Self::dir(name, &refs, seed)
    }

    /// Files as (path relative to the save directory, length), in spec order.
    pub fn files(&self) -> Vec<(PathBuf, u64)> {
        match &self.layout {
            Layout::SingleFile { len } => vec![(PathBuf::from(&self.name), *len)],
            Layout::Dir { files } => files
                .iter()
                .map(|f| (Path::new(&self.name).join(&f.path), f.len))
                .collect(),
        }
    }

    pub fn total_len(&self) -> u64 {
        self.files().iter().map(|f| f.1).sum()
    }

    /// The file or top directory a torrent is made from.
    pub fn content_path(&self, save_dir: &Path) -> PathBuf {
        save_dir.join(&self.name)
    }

    /// A short stable name for these parameters (used as the cache directory name).
    pub fn cache_key(&self) -> String {
        let mut h = Sha1::new();
        h.update(format!("{:?}", self).as_bytes());
        let d: [u8; 20] = h.finalize().into();
        format!(
            "{}-{}-{}",
            self.name,
            self.total_len(),
            ringtorrent::types::hex(&d[..6])
        )
    }

    /// Writes the payload under `save_dir`.
    pub fn generate(&self, save_dir: &Path) -> Result<()> {
        let mut buf = vec![0u8; CHUNK];
        for (rel, len) in self.files() {
            let path = save_dir.join(&rel);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            let mut f = File::create(&path).with_context(|| format!("creating {path:?}"))?;
            let mut rng = Stream::for_file(self.seed, &rel);
            let mut left = len;
            while left > 0 {
                let n = left.min(CHUNK as u64) as usize;
                rng.fill(&mut buf[..n]);
                f.write_all(&buf[..n])?;
                left -= n as u64;
            }
        }
        Ok(())
    }

    /// Checks that `save_dir` holds exactly this payload's bytes, file by file.
    pub fn verify(&self, save_dir: &Path) -> Result<()> {
        self.verify_files(save_dir, false)
    }

    /// Like [`PayloadSpec::verify`], but empty files may be missing: Transmission 3.00 never
    /// creates the empty files of a multi-file torrent (shared/INTEROP.md).
    pub fn verify_except_empty(&self, save_dir: &Path) -> Result<()> {
        self.verify_files(save_dir, true)
    }

    fn verify_files(&self, save_dir: &Path, skip_empty: bool) -> Result<()> {
        let mut want = vec![0u8; CHUNK];
        let mut got = vec![0u8; CHUNK];
        for (rel, len) in self.files() {
            if skip_empty && len == 0 {
                continue;
            }
            let path = save_dir.join(&rel);
            let meta = fs::metadata(&path).with_context(|| format!("missing {path:?}"))?;
            ensure!(
                meta.len() == len,
                "{path:?} is {} bytes, want {len}",
                meta.len()
            );
            let mut r = BufReader::with_capacity(CHUNK, File::open(&path)?);
            let mut rng = Stream::for_file(self.seed, &rel);
            let mut off = 0u64;
            while off < len {
                let n = (len - off).min(CHUNK as u64) as usize;
                rng.fill(&mut want[..n]);
                r.read_exact(&mut got[..n])?;
                if want[..n] != got[..n] {
                    let i = want[..n].iter().zip(&got[..n]).position(|(a, b)| a != b);
                    bail!("{path:?} differs at byte {}", off + i.unwrap_or(0) as u64);
                }
                off += n as u64;
            }
        }
        Ok(())
    }
}

/// The payload under `cache_root/<key>/`, generated on first use. Returns the save directory.
/// A `.complete` marker is written last, so an interrupted generation is redone.
pub fn cached(cache_root: &Path, spec: &PayloadSpec) -> Result<PathBuf> {
    let dir = cache_root.join(spec.cache_key());
    let marker = dir.join(".complete");
    if marker.exists() {
        return Ok(dir);
    }
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir_all(&dir)?;
    spec.generate(&dir)?;
    fs::write(&marker, format!("{spec:?}\n"))?;
    Ok(dir)
}

/// Copies every file of a torrent from one save directory to another.
pub fn copy_content(meta: &TorrentMeta, from: &Path, to: &Path) -> Result<()> {
    for (rel, _) in &meta.files {
        let dst = to.join(rel);
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::copy(from.join(rel), &dst).with_context(|| format!("copying {rel:?}"))?;
    }
    Ok(())
}

/// Flips (XOR 0xFF) one byte in the middle of every 16 KiB block of each listed piece of the
/// content under `save_dir`, so those pieces fail their hash and so does any piece that gets even
/// one block from this copy. Returns the corrupted torrent offsets.
pub fn corrupt_pieces(meta: &TorrentMeta, save_dir: &Path, pieces: &[u32]) -> Result<Vec<u64>> {
    let block = ringtorrent::BLOCK_LEN as u64;
    let mut offsets = Vec::new();
    for &p in pieces {
        ensure!(p < meta.num_pieces, "piece {p} out of range");
        let start = p as u64 * meta.piece_length as u64;
        let end = (start + meta.piece_length as u64).min(meta.total_len());
        let mut block_start = start;
        while block_start < end {
            let block_end = (block_start + block).min(end);
            let off = block_start + (block_end - block_start) / 2;
            flip_byte(meta, save_dir, off)?;
            offsets.push(off);
            block_start = block_end;
        }
    }
    Ok(offsets)
}

fn flip_byte(meta: &TorrentMeta, save_dir: &Path, off: u64) -> Result<()> {
    let (rel, in_file) = meta.locate(off).context("offset past the content")?;
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(save_dir.join(rel))?;
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(in_file))?;
    f.read_exact(&mut b)?;
    b[0] ^= 0xff;
    f.seek(SeekFrom::Start(in_file))?;
    f.write_all(&b)?;
    Ok(())
}

/// xorshift64* (Vigna): fast and good enough for test bytes; not for anything secret.
struct Stream(u64);

impl Stream {
    fn for_file(seed: u64, rel: &Path) -> Self {
        let d: [u8; 20] = Sha1::digest(rel.to_string_lossy().as_bytes()).into();
        let mut path_bits = [0u8; 8];
        path_bits.copy_from_slice(&d[..8]);
        let s = seed ^ u64::from_le_bytes(path_bits);
        // A zero state would stay zero.
        Stream(if s == 0 { 0x9e37_79b9_7f4a_7c15 } else { s })
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let v = self.next().to_le_bytes();
            rest.copy_from_slice(&v[..rest.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_spec_same_bytes_and_seed_matters() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let spec = PayloadSpec::interop_multi(16_384, 7);
        spec.generate(a.path()).unwrap();
        spec.generate(b.path()).unwrap();
        for (rel, len) in spec.files() {
            let x = fs::read(a.path().join(&rel)).unwrap();
            assert_eq!(x.len() as u64, len);
            assert_eq!(x, fs::read(b.path().join(&rel)).unwrap());
        }
        spec.verify(a.path()).unwrap();
        let other = PayloadSpec {
            seed: 8,
            ..spec.clone()
        };
        assert!(other.verify(a.path()).is_err());
    }

    #[test]
    fn verify_finds_a_flipped_byte_and_a_wrong_size() {
        let d = tempfile::tempdir().unwrap();
        let spec = PayloadSpec::single("one.bin", 3 * CHUNK as u64 + 5, 1);
        spec.generate(d.path()).unwrap();
        let path = d.path().join("one.bin");
        let mut bytes = fs::read(&path).unwrap();
        bytes[CHUNK + 10] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let err = spec.verify(d.path()).unwrap_err().to_string();
        assert!(err.contains(&format!("byte {}", CHUNK + 10)), "{err}");
        bytes.pop();
        fs::write(&path, &bytes).unwrap();
        assert!(spec
            .verify(d.path())
            .unwrap_err()
            .to_string()
            .contains("bytes, want"));
    }

    #[test]
    fn corruption_hits_every_block_of_the_listed_pieces_only() {
        let d = tempfile::tempdir().unwrap();
        let spec = PayloadSpec::dir("c", &[("a", 40_000), ("b", 60_000)], 5);
        spec.generate(d.path()).unwrap();
        let meta = TorrentMeta {
            info_hash: ringtorrent::InfoHash([0; 20]),
            name: "c".into(),
            piece_length: 32_768,
            num_pieces: 4,
            files: spec.files(),
            announce: None,
        };
        let before = [
            fs::read(d.path().join("c/a")).unwrap(),
            fs::read(d.path().join("c/b")).unwrap(),
        ]
        .concat();
        let offs = corrupt_pieces(&meta, d.path(), &[1, 3]).unwrap();
        // Piece 1 = [32768, 65536): two blocks; piece 3 = [98304, 100000): one short block.
        assert_eq!(offs, vec![40_960, 57_344, 99_152]);
        let after = [
            fs::read(d.path().join("c/a")).unwrap(),
            fs::read(d.path().join("c/b")).unwrap(),
        ]
        .concat();
        let changed: Vec<u64> = (0..before.len())
            .filter(|&i| before[i] != after[i])
            .map(|i| i as u64)
            .collect();
        assert_eq!(changed, offs);
        assert!(corrupt_pieces(&meta, d.path(), &[4]).is_err());
    }

    #[test]
    fn split_covers_the_total() {
        let s = PayloadSpec::split("s", 1000, 3, 0);
        let lens: Vec<u64> = s.files().iter().map(|f| f.1).collect();
        assert_eq!(lens, vec![333, 333, 334]);
        assert_eq!(
            PayloadSpec::split("s", 10, 1, 0).layout,
            Layout::SingleFile { len: 10 }
        );
    }

    #[test]
    fn cache_reuses_complete_payloads() {
        let root = tempfile::tempdir().unwrap();
        let spec = PayloadSpec::single("c.bin", 1000, 3);
        let dir = cached(root.path(), &spec).unwrap();
        let f = dir.join("c.bin");
        fs::write(&f, b"changed").unwrap();
        assert_eq!(cached(root.path(), &spec).unwrap(), dir);
        assert_eq!(
            fs::read(&f).unwrap(),
            b"changed",
            "a complete cache entry is reused"
        );
        fs::remove_file(dir.join(".complete")).unwrap();
        cached(root.path(), &spec).unwrap();
        spec.verify(&dir).unwrap();
    }
}
