//! Where the bytes of a torrent live: files concatenated in order, cut into pieces (BEP 3), with
//! BEP 47 padding files that are never stored and read as zeros.
//!
//! Invariants: `starts[i]` is the offset of file `i` in the concatenation, `starts` is
//! non-decreasing, and `total` is the sum of lengths. The piece count fits in a `u32` and is
//! `ceil(total / piece_length)`. A [`Span`] never crosses a file boundary and never has length 0.

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::StorageError;

/// One file of a torrent, as the engine describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageFile {
    /// Path relative to the download root; no `..`, no root, not empty.
    pub rel_path: PathBuf,
    /// Length in bytes.
    pub length: u64,
    /// A BEP 47 padding file: not created, reads as zeros, writes to it are dropped.
    pub padding: bool,
}

/// A contiguous part of a read or write that falls in one file.
///
/// From [`crate::Storage::spans`], a part that falls in a file that is not selected (not
/// created) is redirected to the torrent's part file: `file` is then the number of files (one
/// past the last index) and `file_offset` the offset in the part file, which is the part's
/// offset in the whole torrent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Index of the file in the torrent's file list (or the part file, see above).
    pub file: usize,
    /// Offset in that file.
    pub file_offset: u64,
    /// Length of this part (never 0).
    pub len: u32,
    /// Offset of this part in the caller's buffer (relative to the start of the request).
    pub buf_offset: u32,
    /// True when the file is a padding file: skipped on write, zeros on read.
    pub padding: bool,
}

/// Lengths and offsets of the files and pieces of one torrent.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    lens: Vec<u64>,
    padding: Vec<bool>,
    starts: Vec<u64>,
    total: u64,
    piece_length: u32,
    piece_count: u32,
}

impl Layout {
    /// Builds the layout; paths are not looked at here.
    pub(crate) fn new(
        files: impl Iterator<Item = (u64, bool)>,
        piece_length: u32,
    ) -> Result<Self, StorageError> {
        if piece_length == 0 {
            return Err(StorageError::BadLayout("piece length is 0"));
        }
        let (mut lens, mut padding, mut starts) = (Vec::new(), Vec::new(), Vec::new());
        let mut total = 0u64;
        for (len, pad) in files {
            starts.push(total);
            lens.push(len);
            padding.push(pad);
            total = total
                .checked_add(len)
                .ok_or(StorageError::BadLayout("total length overflows"))?;
        }
        let piece_count = u32::try_from(total.div_ceil(u64::from(piece_length)))
            .map_err(|_| StorageError::BadLayout("more than 2^32 pieces"))?;
        Ok(Layout {
            lens,
            padding,
            starts,
            total,
            piece_length,
            piece_count,
        })
    }

    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    pub(crate) fn piece_length(&self) -> u32 {
        self.piece_length
    }

    pub(crate) fn piece_count(&self) -> u32 {
        self.piece_count
    }

    pub(crate) fn file_len(&self, file: usize) -> u64 {
        self.lens[file]
    }

    /// Offset of file `file` in the torrent's concatenated content.
    pub(crate) fn file_start(&self, file: usize) -> u64 {
        self.starts[file]
    }

    /// The pieces that file `file` overlaps (empty for an empty file).
    pub(crate) fn file_pieces(&self, file: usize) -> std::ops::Range<u32> {
        let len = self.lens[file];
        if len == 0 {
            return 0..0;
        }
        let plen = u64::from(self.piece_length);
        let first = self.starts[file] / plen;
        let end = (self.starts[file] + len - 1) / plen + 1;
        // INVARIANT: both are at most the piece count, a u32.
        u32::try_from(first).unwrap()..u32::try_from(end).unwrap()
    }

    /// Length of `piece` (the last one may be short), `None` past the end.
    pub(crate) fn piece_len(&self, piece: u32) -> Option<u32> {
        if piece >= self.piece_count {
            return None;
        }
        let start = u64::from(piece) * u64::from(self.piece_length);
        let len = (self.total - start).min(u64::from(self.piece_length));
        // INVARIANT: len <= piece_length, a u32.
        Some(u32::try_from(len).unwrap())
    }

    /// Splits `len` bytes at `offset` in `piece` at file boundaries.
    pub(crate) fn spans(
        &self,
        piece: u32,
        offset: u32,
        len: u32,
    ) -> Result<Spans<'_>, StorageError> {
        let out_of_range = || StorageError::OutOfRange { piece, offset, len };
        let piece_len = self.piece_len(piece).ok_or_else(out_of_range)?;
        if u64::from(offset) + u64::from(len) > u64::from(piece_len) {
            return Err(out_of_range());
        }
        let start = u64::from(piece) * u64::from(self.piece_length) + u64::from(offset);
        Ok(self.spans_at(start, len))
    }

    /// Splits the absolute range `[start, start + len)` (inside the torrent) at file boundaries.
    pub(crate) fn spans_at(&self, start: u64, len: u32) -> Spans<'_> {
        let file = self
            .starts
            .partition_point(|&s| s <= start)
            .saturating_sub(1);
        Spans {
            layout: self,
            file,
            pos: start,
            end: start + u64::from(len),
            origin: start,
            parked: None,
        }
    }
}

/// Which files are parked (not created; their bytes go to the part file).
#[derive(Clone, Copy)]
pub(crate) struct Parked<'a> {
    pub(crate) flags: &'a [AtomicBool],
    /// The index standing for the part file (the number of files).
    pub(crate) part_file: usize,
}

/// Iterator over the [`Span`]s of a range; see [`crate::Storage::spans`].
pub struct Spans<'a> {
    layout: &'a Layout,
    file: usize,
    pos: u64,
    end: u64,
    origin: u64,
    parked: Option<Parked<'a>>,
}

impl<'a> Spans<'a> {
    /// Redirects parts in parked files to the part file.
    pub(crate) fn redirect(mut self, parked: Parked<'a>) -> Spans<'a> {
        self.parked = Some(parked);
        self
    }
}

impl Iterator for Spans<'_> {
    type Item = Span;

    fn next(&mut self) -> Option<Span> {
        while self.pos < self.end && self.file < self.layout.lens.len() {
            let f = self.file;
            let file_end = self.layout.starts[f] + self.layout.lens[f];
            if file_end <= self.pos {
                self.file += 1;
                continue;
            }
            let part_end = file_end.min(self.end);
            let mut span = Span {
                file: f,
                file_offset: self.pos - self.layout.starts[f],
                // INVARIANT: spans are built from ranges whose length is a u32.
                len: u32::try_from(part_end - self.pos).unwrap(),
                buf_offset: u32::try_from(self.pos - self.origin).unwrap(),
                padding: self.layout.padding[f],
            };
            if let Some(p) = &self.parked {
                if !span.padding && p.flags.get(f).is_some_and(|x| x.load(Ordering::Acquire)) {
                    span.file = p.part_file;
                    span.file_offset = self.pos;
                }
            }
            self.pos = part_end;
            return Some(span);
        }
        None
    }
}

/// Checks that `path` stays inside the download root: relative, not empty, only plain names.
pub(crate) fn check_rel_path(path: &Path) -> Result<(), StorageError> {
    let bad = |reason| StorageError::BadPath {
        path: path.to_path_buf(),
        reason,
    };
    if path.as_os_str().is_empty() {
        return Err(bad("empty path"));
    }
    for c in path.components() {
        match c {
            Component::Normal(_) => {}
            Component::ParentDir => return Err(bad("contains `..`")),
            Component::CurDir => return Err(bad("contains `.`")),
            Component::RootDir | Component::Prefix(_) => return Err(bad("not relative")),
        }
    }
    Ok(())
}

/// Absolute paths of the stored (non-padding) files; `None` for padding files.
pub(crate) fn resolve_paths(
    root: &Path,
    files: &[StorageFile],
) -> Result<Vec<Option<PathBuf>>, StorageError> {
    files
        .iter()
        .map(|f| {
            if f.padding {
                return Ok(None);
            }
            check_rel_path(&f.rel_path)?;
            Ok(Some(root.join(&f.rel_path)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(lens: &[u64], piece_length: u32) -> Layout {
        Layout::new(lens.iter().map(|&l| (l, false)), piece_length).unwrap()
    }

    #[test]
    fn piece_count_and_last_piece() {
        let l = layout(&[10, 0, 1, 5], 4);
        assert_eq!(l.total(), 16);
        assert_eq!(l.piece_count(), 4);
        assert_eq!(l.piece_len(3), Some(4));
        let l = layout(&[10, 1], 4);
        assert_eq!(l.piece_count(), 3);
        assert_eq!(l.piece_len(2), Some(3));
        assert_eq!(l.piece_len(3), None);
    }

    #[test]
    fn spans_cross_three_files_and_skip_empty_ones() {
        // Files: a=3 bytes, b=0, c=1, d=2, e=10; piece length 8.
        let l = layout(&[3, 0, 1, 2, 10], 8);
        let spans: Vec<_> = l.spans(0, 0, 8).unwrap().collect();
        let got: Vec<_> = spans
            .iter()
            .map(|s| (s.file, s.file_offset, s.len, s.buf_offset))
            .collect();
        assert_eq!(
            got,
            vec![(0, 0, 3, 0), (2, 0, 1, 3), (3, 0, 2, 4), (4, 0, 2, 6)]
        );
        let got: Vec<_> = l
            .spans(1, 2, 6)
            .unwrap()
            .map(|s| (s.file, s.file_offset, s.len, s.buf_offset))
            .collect();
        assert_eq!(got, vec![(4, 4, 6, 0)]);
    }

    #[test]
    fn spans_sum_to_request_everywhere() {
        let lens = [1u64, 0, 4095, 4097, 0, 1, 20000];
        let l = layout(&lens, 4096);
        for piece in 0..l.piece_count() {
            let plen = l.piece_len(piece).unwrap();
            for (off, len) in [(0, plen), (1, plen - 1), (plen / 2, plen - plen / 2)] {
                let spans: Vec<_> = l.spans(piece, off, len).unwrap().collect();
                let mut expect_buf = 0;
                for s in &spans {
                    assert!(s.len > 0);
                    assert_eq!(s.buf_offset, expect_buf);
                    assert!(s.file_offset + u64::from(s.len) <= lens[s.file]);
                    expect_buf += s.len;
                }
                assert_eq!(expect_buf, len);
            }
        }
    }

    #[test]
    fn out_of_range_is_an_error() {
        let l = layout(&[10], 4);
        assert!(matches!(
            l.spans(3, 0, 1),
            Err(StorageError::OutOfRange { .. })
        ));
        assert!(matches!(
            l.spans(2, 0, 3),
            Err(StorageError::OutOfRange { .. })
        ));
        assert!(l.spans(2, 2, 0).is_ok());
        assert!(l.spans(u32::MAX, u32::MAX, u32::MAX).is_err());
    }

    #[test]
    fn bad_layouts_are_refused() {
        assert!(Layout::new([(1u64, false)].into_iter(), 0).is_err());
        assert!(Layout::new([(u64::MAX, false), (1, false)].into_iter(), 1).is_err());
        assert!(Layout::new([(1u64 << 40, false)].into_iter(), 1).is_err());
    }

    #[test]
    fn paths_must_stay_inside_root() {
        for bad in ["", "/etc/passwd", "a/../../b", "..", "./a"] {
            assert!(
                matches!(
                    check_rel_path(Path::new(bad)),
                    Err(StorageError::BadPath { .. })
                ),
                "{bad:?} accepted"
            );
        }
        for good in ["a", "a/b/c.txt", "dir with space/x"] {
            check_rel_path(Path::new(good)).unwrap();
        }
    }
}
