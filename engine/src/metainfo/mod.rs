//! Metainfo (.torrent) files, BEP 3 v1, with BEP 12 `announce-list`, BEP 19 `url-list`,
//! BEP 27 `private` and BEP 47 padding files.
//!
//! OWNER: helper A (parsing). The struct shapes below are the contract other modules use.

use crate::types::{InfoHash, Lengths, PieceIndex};

/// One file of the torrent, in torrent order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path components below the torrent's root directory (for a single-file torrent: just the
    /// name). Each component is checked: no `..`, `.`, empty, `/`, NUL, or absolute path.
    pub path: Vec<String>,
    pub length: u64,
    /// BEP 47 padding file (attr contains `p`): never written to disk, all zeros.
    pub padding: bool,
    /// Byte offset of the file in the torrent's concatenated content.
    pub offset: u64,
}

/// The parsed `info` dictionary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub name: String,
    pub piece_length: u32,
    /// One SHA-1 per piece.
    pub pieces: Vec<[u8; 20]>,
    /// Files in torrent order. A single-file torrent has one entry whose path is `[name]`.
    pub files: Vec<FileEntry>,
    /// True when the torrent had a `files` list (multi-file): content goes below `name/`.
    pub multi_file: bool,
    pub private: bool,
    pub lengths: Lengths,
}

impl Info {
    /// Expected SHA-1 of a piece.
    pub fn piece_hash(&self, p: PieceIndex) -> &[u8; 20] {
        // INVARIANT: `pieces.len() == lengths.num_pieces()` is checked at parse time and every
        // PieceIndex is parsed against `lengths`.
        &self.pieces[p.idx()]
    }
}

/// A whole metainfo file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metainfo {
    pub info_hash: InfoHash,
    pub info: Info,
    /// Tracker tiers (BEP 12); `announce` alone becomes one tier of one URL.
    pub trackers: Vec<Vec<String>>,
    /// Web seeds (BEP 19).
    pub url_list: Vec<String>,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    pub creation_date: Option<i64>,
    /// The raw bytes of the `info` dictionary (for BEP 9 metadata exchange).
    pub info_bytes: Vec<u8>,
}
