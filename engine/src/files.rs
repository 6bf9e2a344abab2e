//! File selection and priorities: which files of a torrent the user wants, and from that which
//! pieces the picker asks for and which files storage creates. Sans-IO: metainfo and
//! priorities in, piece sets and a storage selection out.
//!
//! Invariants:
//! - A piece is wanted iff at least one non-padding file it overlaps has a priority other than
//!   [`FilePriority::Skip`]; it is high iff one of them is [`FilePriority::High`]. Empty files
//!   overlap no piece. An empty (or short) priority list means `Normal` for the missing files.
//! - A piece can be wanted and overlap skipped files (it straddles a file boundary): storage
//!   keeps the skipped files' bytes of such pieces in the torrent's part file
//!   ([`part_file_name`]), never in the skipped file, which is not created.

use std::ops::Range;
use std::path::PathBuf;

use crate::metainfo::{Info, Metainfo};
use crate::types::{Bitfield, InfoHash};
use uring_disk::{Selection, StorageFile};

/// How much a file is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FilePriority {
    /// Not downloaded; its file is never created (bytes of it that share a wanted piece go to
    /// the part file).
    Skip,
    /// Downloaded (the default).
    #[default]
    Normal,
    /// Its pieces are picked before `Normal` ones.
    High,
}

/// The priority of file `i` (missing entries are `Normal`).
pub fn priority_of(priorities: &[FilePriority], i: usize) -> FilePriority {
    priorities.get(i).copied().unwrap_or_default()
}

/// The pieces file `i` overlaps; empty for an empty file or an index out of range.
pub fn file_pieces(info: &Info, i: usize) -> Range<u32> {
    let Some(f) = info.files.get(i) else {
        return 0..0;
    };
    if f.length == 0 {
        return 0..0;
    }
    let plen = u64::from(info.piece_length.max(1));
    let first = f.offset / plen;
    let last = (f.offset + f.length - 1) / plen;
    // Offsets are inside the torrent, whose piece count fits a u32 (checked at parse time).
    let clamp = |x: u64| u32::try_from(x).unwrap_or(u32::MAX);
    clamp(first)..clamp(last + 1).min(info.lengths.num_pieces())
}

/// Pieces overlapping a non-padding file whose priority satisfies `pred`.
fn pieces_where(
    info: &Info,
    priorities: &[FilePriority],
    pred: fn(FilePriority) -> bool,
) -> Bitfield {
    let mut out = Bitfield::new(info.lengths.num_pieces());
    for (i, f) in info.files.iter().enumerate() {
        if f.padding || !pred(priority_of(priorities, i)) {
            continue;
        }
        for p in file_pieces(info, i) {
            if let Ok(p) = info.lengths.piece(p) {
                out.set(p);
            }
        }
    }
    out
}

/// The pieces to download for these per-file priorities.
pub fn wanted_pieces(meta: &Metainfo, priorities: &[FilePriority]) -> Bitfield {
    let info = &meta.info;
    if priorities.iter().all(|p| *p != FilePriority::Skip) {
        return Bitfield::full(info.lengths.num_pieces());
    }
    pieces_where(info, priorities, |p| p != FilePriority::Skip)
}

/// The pieces picked first: those overlapping a file of [`FilePriority::High`].
pub fn high_pieces(meta: &Metainfo, priorities: &[FilePriority]) -> Bitfield {
    pieces_where(&meta.info, priorities, |p| p == FilePriority::High)
}

/// The files as storage sees them, in torrent order.
pub fn storage_files(meta: &Metainfo, _priorities: &[FilePriority]) -> Vec<StorageFile> {
    let info = &meta.info;
    (0..info.files.len())
        .map(|i| StorageFile {
            rel_path: info.file_path(i),
            length: info.files[i].length,
            padding: info.files[i].padding,
        })
        .collect()
}

/// Where the part file of a torrent goes, relative to the download directory.
pub fn part_file_name(info_hash: &InfoHash) -> PathBuf {
    PathBuf::from(".ringtorrent").join(format!("{}.parts", info_hash.to_hex()))
}

/// Which files storage creates (every file not skipped) and where the bytes of skipped files
/// that share a wanted piece go.
pub fn storage_selection(meta: &Metainfo, priorities: &[FilePriority]) -> Selection {
    Selection {
        wanted: (0..meta.info.files.len())
            .map(|i| priority_of(priorities, i) != FilePriority::Skip)
            .collect(),
        part_file: part_file_name(&meta.info_hash),
    }
}

/// Parses a file selection like `0,3-5` (0-based indices and inclusive ranges) against a
/// torrent of `files` files: the set of selected indices, in order, without duplicates.
pub fn parse_selection(spec: &str, files: usize) -> Result<Vec<usize>, SelectionError> {
    let mut out = Vec::new();
    for part in spec.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err(SelectionError::Syntax(spec.to_string()));
        }
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (parse_index(a, spec)?, parse_index(b, spec)?),
            None => {
                let i = parse_index(part, spec)?;
                (i, i)
            }
        };
        if lo > hi {
            return Err(SelectionError::Reversed { lo, hi });
        }
        if hi >= files {
            return Err(SelectionError::OutOfRange { index: hi, files });
        }
        out.extend(lo..=hi);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn parse_index(s: &str, spec: &str) -> Result<usize, SelectionError> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SelectionError::Syntax(spec.to_string()));
    }
    s.parse()
        .map_err(|_| SelectionError::Syntax(spec.to_string()))
}

/// A file selection the user typed that does not fit the torrent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    /// Not a comma-separated list of indices and `a-b` ranges (the whole selection).
    #[error("bad file selection {0:?}: expected 0-based indices and ranges like 0,3-5")]
    Syntax(String),
    /// A range `lo-hi` with `lo > hi`.
    #[error("bad file range {lo}-{hi}: the start is after the end")]
    Reversed {
        /// The range's start.
        lo: usize,
        /// The range's end.
        hi: usize,
    },
    /// An index at or past the number of files.
    #[error("file index {index} is out of range: the torrent has {files} files (0 to {last})", last = files.saturating_sub(1))]
    OutOfRange {
        /// The index (or range end) that does not fit.
        index: usize,
        /// How many files the torrent has.
        files: usize,
    },
}

#[cfg(test)]
#[path = "files_tests.rs"]
mod tests;
