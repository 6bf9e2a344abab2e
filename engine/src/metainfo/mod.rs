//! Metainfo (.torrent) files, BEP 3 v1, with BEP 12 `announce-list`, BEP 19 `url-list`,
//! BEP 27 `private` and BEP 47 padding files.
//!
//! Invariants of a parsed [`Metainfo`] (checked once in [`Metainfo::from_bytes`], relied upon
//! everywhere else):
//! - `info_hash` is the SHA-1 of the `info` value's bytes exactly as they were in the file;
//! - `info.pieces.len() == info.lengths.num_pieces()`, and `lengths` agrees with the files:
//!   the total is the sum of file lengths, at most [`MAX_TOTAL_LENGTH`], and the piece length is
//!   1..=[`MAX_PIECE_LENGTH`];
//! - files are in torrent order, `offset` is the sum of the lengths before it;
//! - every path (and the name) passed [`safe_relative_path`]; no two non-padding files have the
//!   same path, and no file's path is a directory of another file.
//!
//! Strictness: everything inside `info` decides what is downloaded and is strict. Fields
//! outside it (trackers, web seeds, comment, ...) are advisory: an entry of the wrong type is
//! skipped, as libtorrent does, never fatal.

pub mod build;
mod parse;
mod path;

pub use path::{check_component, safe_relative_path, PathError, PathProblem};

use std::path::PathBuf;

use crate::bencode::DecodeError;
use crate::types::{InfoHash, Lengths, PieceIndex};

/// Largest metainfo file accepted (a 2^50-byte torrent in 16 MiB pieces needs 1.3 MiB of
/// hashes; this leaves room for enormous file lists).
pub const MAX_METAINFO_LEN: usize = 64 << 20;
/// Largest total content size accepted (1 PiB).
pub const MAX_TOTAL_LENGTH: u64 = 1 << 50;
/// Largest piece length accepted (128 MiB).
pub const MAX_PIECE_LENGTH: u32 = 128 << 20;

/// One file of the torrent, in torrent order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path components below the torrent's root directory (for a single-file torrent: just the
    /// name). Each component is checked: no `..`, `.`, empty, `/`, NUL, or absolute path.
    pub path: Vec<String>,
    /// Length in bytes.
    pub length: u64,
    /// BEP 47 padding file (attr contains `p`): never written to disk, all zeros.
    pub padding: bool,
    /// Byte offset of the file in the torrent's concatenated content.
    pub offset: u64,
}

/// The parsed `info` dictionary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The suggested name: the file name of a single-file torrent, the directory name of a
    /// multi-file one (checked like a path component).
    pub name: String,
    /// Bytes per piece (the last piece may be shorter).
    pub piece_length: u32,
    /// One SHA-1 per piece.
    pub pieces: Vec<[u8; 20]>,
    /// Files in torrent order. A single-file torrent has one entry whose path is `[name]`.
    pub files: Vec<FileEntry>,
    /// True when the torrent had a `files` list (multi-file): content goes below `name/`.
    pub multi_file: bool,
    /// BEP 27 private torrent: peers only from its trackers (no DHT, PEX or LSD).
    pub private: bool,
    /// The torrent's geometry (total length, piece length and count), checked against the
    /// files and the piece hashes.
    pub lengths: Lengths,
}

impl Info {
    /// Expected SHA-1 of a piece.
    pub fn piece_hash(&self, p: PieceIndex) -> &[u8; 20] {
        // INVARIANT: `pieces.len() == lengths.num_pieces()` is checked at parse time and every
        // PieceIndex is parsed against `lengths`.
        &self.pieces[p.idx()]
    }

    /// Where file `file_idx` goes, relative to the download directory: `name/dir/file` for a
    /// multi-file torrent, `name` for a single file. Panics if `file_idx` is out of range.
    pub fn file_path(&self, file_idx: usize) -> PathBuf {
        let f = &self.files[file_idx];
        let mut p = PathBuf::new();
        if self.multi_file {
            p.push(&self.name);
        }
        // Components were checked by `safe_relative_path` at parse time.
        p.extend(&f.path);
        p
    }

    /// The file's path inside the torrent joined with `/` (`dir/sub/file`, no `name/` prefix).
    pub fn display_path(&self, file_idx: usize) -> String {
        self.files[file_idx].path.join("/")
    }
}

/// A whole metainfo file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metainfo {
    /// SHA-1 of the `info` dictionary's bytes as they are in the file.
    pub info_hash: InfoHash,
    /// The parsed `info` dictionary.
    pub info: Info,
    /// Tracker tiers (BEP 12); `announce` alone becomes one tier of one URL.
    pub trackers: Vec<Vec<String>>,
    /// Web seeds (BEP 19).
    pub url_list: Vec<String>,
    /// The `comment` field, if present and text.
    pub comment: Option<String>,
    /// The `created by` field (the program that made it), if present and text.
    pub created_by: Option<String>,
    /// The `creation date` field, seconds since the Unix epoch, if present.
    pub creation_date: Option<i64>,
    /// The raw bytes of the `info` dictionary (for BEP 9 metadata exchange).
    pub info_bytes: Vec<u8>,
}

/// A metainfo file (or `info` dictionary) that cannot be used. Always the file's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetainfoError {
    /// The input is larger than [`MAX_METAINFO_LEN`] (its size in bytes).
    #[error("torrent file is {0} bytes, more than the {MAX_METAINFO_LEN}-byte limit")]
    TooLarge(usize),
    /// The input is not valid bencode.
    #[error("not valid bencode: {0}")]
    Decode(#[from] DecodeError),
    /// The root value is not a dictionary (the type it is).
    #[error("the root value is a {0}, not a dictionary")]
    RootNotDict(&'static str),
    /// A required field is missing (its name).
    #[error("missing field `{0}`")]
    Missing(String),
    /// A field has the wrong bencode type.
    #[error("field `{field}` is a {found}, expected a {expected}")]
    WrongType {
        /// The field's name.
        field: String,
        /// The type it must have.
        expected: &'static str,
        /// The type it has.
        found: &'static str,
    },
    /// A field has the right type but an unusable value (negative length, piece length out
    /// of range, hashes not a multiple of 20 bytes, ...).
    #[error("field `{field}`: {problem}")]
    BadValue {
        /// The field's name.
        field: String,
        /// What is wrong with its value.
        problem: String,
    },
    /// A file path (or the name) that is unsafe to create below the download directory.
    #[error(transparent)]
    Path(#[from] PathError),
    /// Two files with the same path.
    #[error("file path {0:?} appears twice")]
    DuplicatePath(String),
    /// A file's path is also a directory of another file's path.
    #[error("file path {file:?} is also a directory holding {other:?}")]
    FileIsDirectory {
        /// The file's path.
        file: String,
        /// The other file, below it.
        other: String,
    },
    /// A BitTorrent v2-only torrent (BEP 52), which this crate does not support.
    #[error("v2-only torrent (BEP 52, no `pieces`): not supported")]
    V2Only,
}

impl Metainfo {
    /// Parses a whole .torrent file. See the module doc for what is checked.
    pub fn from_bytes(bytes: &[u8]) -> Result<Metainfo, MetainfoError> {
        if bytes.len() > MAX_METAINFO_LEN {
            return Err(MetainfoError::TooLarge(bytes.len()));
        }
        let root = crate::bencode::decode(bytes)?;
        let dict = root
            .as_dict()
            .ok_or(MetainfoError::RootNotDict(root.type_name()))?;
        let info_value = dict
            .get(b"info")
            .ok_or_else(|| MetainfoError::Missing("info".into()))?;
        let info = parse::info(info_value)?;
        let info_bytes = info_value.raw().to_vec();
        Ok(Metainfo {
            info_hash: info_hash_of(&info_bytes),
            info,
            trackers: parse::trackers(dict),
            url_list: parse::url_list(dict),
            comment: parse::text(dict, b"comment"),
            created_by: parse::text(dict, b"created by"),
            creation_date: dict.get(b"creation date").and_then(|v| v.as_int()),
            info_bytes,
        })
    }
}

impl Info {
    /// Parses a bare `info` dictionary (as received through BEP 9 metadata exchange). The
    /// caller checks its SHA-1 against the expected info-hash first.
    pub fn from_bytes(bytes: &[u8]) -> Result<Info, MetainfoError> {
        if bytes.len() > MAX_METAINFO_LEN {
            return Err(MetainfoError::TooLarge(bytes.len()));
        }
        parse::info(&crate::bencode::decode(bytes)?)
    }
}

/// SHA-1 of an `info` dictionary's bytes.
pub fn info_hash_of(info_bytes: &[u8]) -> InfoHash {
    use sha1::{Digest, Sha1};
    InfoHash(Sha1::digest(info_bytes).into())
}

#[cfg(test)]
mod tests;
