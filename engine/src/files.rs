//! File selection and priorities: which files of a torrent the user wants, and from that which
//! pieces the picker asks for. Sans-IO: metainfo and priorities in, a wanted-piece set out.
//!
//! Invariant: a piece is wanted iff at least one non-padding file it overlaps has a priority
//! other than [`FilePriority::Skip`]. An empty priority list means every file is `Normal`.

use crate::metainfo::Metainfo;
use uring_disk::StorageFile;

use crate::types::Bitfield;

/// How much a file is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FilePriority {
    /// Not downloaded; its file is never created unless a wanted piece overlaps it.
    Skip,
    #[default]
    Normal,
    /// Its pieces are picked before `Normal` ones.
    High,
}

/// The pieces to download for these per-file priorities (index = file index in torrent order;
/// missing entries are `Normal`).
pub fn wanted_pieces(meta: &Metainfo, priorities: &[FilePriority]) -> Bitfield {
    let n = meta.info.lengths.num_pieces();
    if priorities.iter().all(|p| *p != FilePriority::Skip) {
        return Bitfield::full(n);
    }
    // Filled in by the file-selection work; until then every piece is wanted.
    Bitfield::full(n)
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
