//! Creating metainfo files (BEP 3, with BEP 12 tiers, BEP 19 web seeds, BEP 27 private).
//!
//! Sans-IO: the caller walks the files and hashes the pieces; this module lays them out and
//! encodes canonically. The layout is the one mktorrent and libtorrent write:
//! - a single file: `info` has `length` and `name` (the file name);
//! - a directory: `info` has `files` (each `length` and `path`, in the order given) and `name`
//!   (the directory name). Use [`sort_like_mktorrent`] to order a directory's files as mktorrent
//!   does, so the same content gives the same info-hash;
//! - `private` is only written when set; `announce` is the first tracker, `announce-list` is
//!   written when there is more than one tracker.
//!
//! Invariant: [`TorrentBuilder::build`] parses what it encoded with
//! [`Metainfo::from_bytes`](super::Metainfo::from_bytes) before returning it, so it never
//! produces a torrent this crate would reject.

use super::{Metainfo, MetainfoError};
use crate::bencode::{Dict, Value};

/// One file of a directory torrent: path components below the directory, and length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildFile {
    /// Path components below the torrent's directory (`["sub", "file.txt"]`).
    pub path: Vec<String>,
    /// Length in bytes.
    pub length: u64,
}

/// Orders files by their `/`-joined path, byte by byte, which is mktorrent's order (so
/// `a.txt` sorts before `a/f`, and upper case before lower case).
pub fn sort_like_mktorrent(files: &mut [BuildFile]) {
    files.sort_by(|a, b| mktorrent_cmp(&a.path, &b.path));
}

/// mktorrent's file order: compares the `/`-joined paths byte by byte, without joining them.
pub fn mktorrent_cmp(a: &[String], b: &[String]) -> std::cmp::Ordering {
    fn joined(p: &[String]) -> impl Iterator<Item = u8> + '_ {
        p.iter().enumerate().flat_map(|(i, c)| {
            let sep = (i > 0).then_some(b'/');
            sep.into_iter().chain(c.bytes())
        })
    }
    joined(a).cmp(joined(b))
}

/// Smallest piece length below this: 16 KiB, one block.
pub const MIN_DEFAULT_PIECE_LENGTH: u32 = 16 << 10;
/// Largest default piece length: 16 MiB.
pub const MAX_DEFAULT_PIECE_LENGTH: u32 = 16 << 20;
/// The default aims at no more than this many pieces.
pub const TARGET_MAX_PIECES: u64 = 2000;

/// The piece length `create` uses when none is given: the smallest power of two, between
/// 16 KiB and 16 MiB, that gives at most 2,000 pieces. Above 16 KiB x 2,000 (~31 MiB) and
/// below 16 MiB x 2,000 (~31 GiB) that lands between 1,000 and 2,000 pieces; smaller content
/// gets 16 KiB pieces, larger content 16 MiB pieces.
pub fn default_piece_length(total: u64) -> u32 {
    let wanted = total.div_ceil(TARGET_MAX_PIECES).max(1).next_power_of_two();
    wanted.clamp(
        MIN_DEFAULT_PIECE_LENGTH as u64,
        MAX_DEFAULT_PIECE_LENGTH as u64,
    ) as u32
}

/// Why a torrent could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The number of piece hashes does not match the content's piece count.
    #[error("{given} piece hashes given, the content needs {needed}")]
    PieceCount {
        /// Hashes given with [`TorrentBuilder::piece_hashes`].
        given: usize,
        /// Pieces the content needs ([`TorrentBuilder::num_pieces`]).
        needed: u64,
    },
    /// The encoded torrent does not parse back (e.g. an unsafe or duplicate path, an empty
    /// torrent, a piece length out of range).
    #[error("the content is invalid: {0}")]
    Invalid(#[from] MetainfoError),
}

enum Layout {
    Single { length: u64 },
    Multi { files: Vec<BuildFile> },
}

/// Builds a v1 .torrent from a file list and piece hashes.
pub struct TorrentBuilder {
    name: String,
    layout: Layout,
    piece_length: u32,
    pieces: Vec<[u8; 20]>,
    trackers: Vec<Vec<String>>,
    web_seeds: Vec<String>,
    private: bool,
    comment: Option<String>,
    created_by: Option<String>,
    creation_date: Option<i64>,
}

impl TorrentBuilder {
    fn new(name: String, layout: Layout, piece_length: u32) -> Self {
        TorrentBuilder {
            name,
            layout,
            piece_length,
            pieces: Vec::new(),
            trackers: Vec::new(),
            web_seeds: Vec::new(),
            private: false,
            comment: None,
            created_by: None,
            creation_date: None,
        }
    }

    /// A single-file torrent; `name` is the file name.
    pub fn single_file(name: impl Into<String>, length: u64, piece_length: u32) -> Self {
        Self::new(name.into(), Layout::Single { length }, piece_length)
    }

    /// A directory torrent; `name` is the directory name, `files` in torrent order.
    pub fn multi_file(name: impl Into<String>, files: Vec<BuildFile>, piece_length: u32) -> Self {
        Self::new(name.into(), Layout::Multi { files }, piece_length)
    }

    /// Total content length.
    pub fn total_length(&self) -> u64 {
        match &self.layout {
            Layout::Single { length } => *length,
            Layout::Multi { files } => files.iter().map(|f| f.length).sum(),
        }
    }

    /// Number of pieces the content needs (the number of hashes [`Self::build`] expects).
    pub fn num_pieces(&self) -> u64 {
        self.total_length()
            .div_ceil(self.piece_length.max(1) as u64)
    }

    /// The SHA-1 of every piece, in order: [`Self::num_pieces`] of them.
    pub fn piece_hashes(mut self, pieces: Vec<[u8; 20]>) -> Self {
        self.pieces = pieces;
        self
    }
    /// Tracker tiers (BEP 12); empty tiers are dropped.
    pub fn trackers(mut self, tiers: Vec<Vec<String>>) -> Self {
        self.trackers = tiers.into_iter().filter(|t| !t.is_empty()).collect();
        self
    }
    /// Web seeds (BEP 19 `url-list`).
    pub fn web_seeds(mut self, urls: Vec<String>) -> Self {
        self.web_seeds = urls;
        self
    }
    /// BEP 27 private flag.
    pub fn private(mut self, private: bool) -> Self {
        self.private = private;
        self
    }
    /// The `comment` field.
    pub fn comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(comment.into());
        self
    }
    /// The `created by` field (the program that made the torrent).
    pub fn created_by(mut self, created_by: impl Into<String>) -> Self {
        self.created_by = Some(created_by.into());
        self
    }
    /// Seconds since the Unix epoch.
    pub fn creation_date(mut self, secs: i64) -> Self {
        self.creation_date = Some(secs);
        self
    }

    /// The canonical bencoded metainfo, and the same parsed back.
    pub fn build(&self) -> Result<(Vec<u8>, Metainfo), BuildError> {
        if self.pieces.len() as u64 != self.num_pieces() {
            return Err(BuildError::PieceCount {
                given: self.pieces.len(),
                needed: self.num_pieces(),
            });
        }
        let flat: Vec<u8> = self.pieces.concat();
        let info = self.info_dict(&flat);
        let mut root = Dict::new().with(b"info", Value::dict(info));
        let all_trackers: Vec<&String> = self.trackers.iter().flatten().collect();
        if let Some(first) = all_trackers.first() {
            root.insert(b"announce", Value::bytes(first.as_bytes()));
        }
        if all_trackers.len() > 1 {
            root.insert(b"announce-list", str_lists(&self.trackers));
        }
        match self.web_seeds.as_slice() {
            [] => {}
            [one] => root.insert(b"url-list", Value::bytes(one.as_bytes())),
            many => root.insert(b"url-list", str_list(many)),
        }
        if let Some(c) = &self.comment {
            root.insert(b"comment", Value::bytes(c.as_bytes()));
        }
        if let Some(c) = &self.created_by {
            root.insert(b"created by", Value::bytes(c.as_bytes()));
        }
        if let Some(d) = self.creation_date {
            root.insert(b"creation date", Value::int(d));
        }
        let bytes = Value::dict(root).encode();
        let parsed = Metainfo::from_bytes(&bytes)?;
        Ok((bytes, parsed))
    }

    fn info_dict<'a>(&'a self, flat_pieces: &'a [u8]) -> Dict<'a> {
        let mut info = Dict::new()
            .with(b"name", Value::bytes(self.name.as_bytes()))
            .with(b"piece length", Value::int(self.piece_length as i64))
            .with(b"pieces", Value::bytes(flat_pieces));
        if self.private {
            info.insert(b"private", Value::int(1));
        }
        match &self.layout {
            Layout::Single { length } => info.insert(b"length", int_len(*length)),
            Layout::Multi { files } => {
                let list = files
                    .iter()
                    .map(|f| {
                        Value::dict(
                            Dict::new()
                                .with(b"length", int_len(f.length))
                                .with(b"path", str_list(&f.path)),
                        )
                    })
                    .collect();
                info.insert(b"files", Value::list(list));
            }
        }
        info
    }
}

/// A length as a bencode integer; one beyond `i64` saturates, and parsing the result back
/// rejects it as beyond the total-length limit.
fn int_len(n: u64) -> Value<'static> {
    Value::int(i64::try_from(n).unwrap_or(i64::MAX))
}

fn str_list(items: &[String]) -> Value<'_> {
    Value::list(items.iter().map(|s| Value::bytes(s.as_bytes())).collect())
}

fn str_lists(items: &[Vec<String>]) -> Value<'_> {
    Value::list(items.iter().map(|l| str_list(l)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bf(path: &[&str], length: u64) -> BuildFile {
        BuildFile {
            path: path.iter().map(|s| s.to_string()).collect(),
            length,
        }
    }

    #[test]
    fn default_piece_length_rule() {
        for total in [
            1u64,
            1 << 20,
            31 << 20,
            100 << 20,
            1 << 30,
            7 << 30,
            30 << 30,
            1 << 40,
        ] {
            let pl = default_piece_length(total);
            assert!(pl.is_power_of_two(), "{total}");
            assert!((MIN_DEFAULT_PIECE_LENGTH..=MAX_DEFAULT_PIECE_LENGTH).contains(&pl));
            let pieces = total.div_ceil(pl as u64);
            let in_range = pl == MIN_DEFAULT_PIECE_LENGTH
                || pl == MAX_DEFAULT_PIECE_LENGTH
                || (TARGET_MAX_PIECES / 2 < pieces && pieces <= TARGET_MAX_PIECES);
            assert!(in_range, "{total}: {pieces} pieces of {pl}");
            // Never more than the target unless the length is already at the maximum.
            assert!(pieces <= TARGET_MAX_PIECES || pl == MAX_DEFAULT_PIECE_LENGTH);
        }
        assert_eq!(default_piece_length(0), MIN_DEFAULT_PIECE_LENGTH);
        assert_eq!(default_piece_length(u64::MAX), MAX_DEFAULT_PIECE_LENGTH);
    }

    #[test]
    fn mktorrent_order_compares_joined_paths() {
        let mut files = vec![
            bf(&["a", "f"], 1),
            bf(&["lnk"], 1),
            bf(&["a.txt"], 1),
            bf(&["B", "h"], 1),
            bf(&[".hidden"], 1),
            bf(&["a.b", "g"], 1),
            bf(&["Z"], 1),
        ];
        sort_like_mktorrent(&mut files);
        let order: Vec<String> = files.iter().map(|f| f.path.join("/")).collect();
        // `.` (0x2e) sorts before `/` (0x2f): `a.txt` comes before `a/f`.
        assert_eq!(
            order,
            [".hidden", "B/h", "Z", "a.b/g", "a.txt", "a/f", "lnk"]
        );
    }

    #[test]
    fn single_file_round_trip() {
        let b = TorrentBuilder::single_file("data.bin", 40_000, 16_384)
            .piece_hashes(vec![[1; 20], [2; 20], [3; 20]])
            .trackers(vec![vec!["http://a.test/ann".into()], vec![]])
            .web_seeds(vec!["http://ws.test/".into()])
            .comment("c")
            .created_by("me")
            .creation_date(1_700_000_000);
        let (bytes, m) = b.build().unwrap();
        assert_eq!(Metainfo::from_bytes(&bytes).unwrap(), m);
        assert_eq!(m.info.name, "data.bin");
        assert!(!m.info.multi_file && !m.info.private);
        assert_eq!(m.info.pieces, vec![[1; 20], [2; 20], [3; 20]]);
        assert_eq!(m.trackers, vec![vec!["http://a.test/ann"]]);
        assert_eq!(m.url_list, vec!["http://ws.test/"]);
        assert_eq!(m.comment.as_deref(), Some("c"));
        assert_eq!(m.created_by.as_deref(), Some("me"));
        assert_eq!(m.creation_date, Some(1_700_000_000));
        // One tracker: no announce-list; canonical encoding re-encodes to itself.
        assert!(!bytes.windows(13).any(|w| w == b"announce-list"));
        assert_eq!(crate::bencode::decode(&bytes).unwrap().encode(), bytes);
    }

    #[test]
    fn multi_file_round_trip_keeps_order_and_tiers() {
        let files = vec![
            bf(&["z"], 1),
            bf(&["a", "empty"], 0),
            bf(&["a", "b"], 16_384),
        ];
        let tiers = vec![
            vec!["http://a/1".to_string(), "http://a/2".to_string()],
            vec!["udp://b/1".to_string()],
        ];
        let (bytes, m) = TorrentBuilder::multi_file("root", files, 16_384)
            .piece_hashes(vec![[9; 20], [8; 20]])
            .trackers(tiers.clone())
            .web_seeds(vec!["http://w/1".into(), "http://w/2".into()])
            .private(true)
            .build()
            .unwrap();
        assert!(m.info.multi_file && m.info.private);
        let paths: Vec<String> = (0..3).map(|i| m.info.display_path(i)).collect();
        assert_eq!(paths, ["z", "a/empty", "a/b"]);
        assert_eq!(m.trackers, tiers);
        assert_eq!(m.url_list, vec!["http://w/1", "http://w/2"]);
        assert_eq!(m.info.lengths.total_length(), 16_385);
        assert_eq!(m.info_hash, super::super::info_hash_of(&m.info_bytes));
        assert!(bytes.windows(13).any(|w| w == b"announce-list"));
    }

    #[test]
    fn bad_builds_are_errors() {
        let wrong_count =
            TorrentBuilder::single_file("x", 40_000, 16_384).piece_hashes(vec![[0; 20]]);
        assert_eq!(
            wrong_count.build().unwrap_err(),
            BuildError::PieceCount {
                given: 1,
                needed: 3
            }
        );
        let traversal = TorrentBuilder::multi_file("r", vec![bf(&["..", "x"], 1)], 16_384)
            .piece_hashes(vec![[0; 20]]);
        assert!(matches!(
            traversal.build(),
            Err(BuildError::Invalid(MetainfoError::Path(_)))
        ));
        let dup = TorrentBuilder::multi_file("r", vec![bf(&["a"], 1), bf(&["a"], 1)], 16_384)
            .piece_hashes(vec![[0; 20]]);
        assert!(matches!(
            dup.build(),
            Err(BuildError::Invalid(MetainfoError::DuplicatePath(_)))
        ));
        let empty = TorrentBuilder::single_file("x", 0, 16_384);
        assert!(matches!(empty.build(), Err(BuildError::Invalid(_))));
        let zero_piece_length = TorrentBuilder::single_file("x", 1, 0).piece_hashes(vec![[0; 20]]);
        let e = zero_piece_length.build().unwrap_err();
        assert!(e.to_string().contains("piece length"), "{e}");
    }
}
