//! A shard's windows onto stored files, for blocks sent straight from the page cache with one
//! copy (see `uring_disk::MappedRange` and DESIGN.md, "Anatomy of an upload").
//!
//! Files are mapped in aligned windows of [`WINDOW`] bytes, the [`KEEP`] used last kept
//! mapped: a 256 KiB piece's blocks share one window, and what the shard maps stays bounded
//! (mapped pages the kernel touched count in the process's resident size). A window a send
//! still uses lives on in that send until it completes.

use std::rc::Rc;

use uring_disk::{MappedRange, OpenFile};

/// Bytes of one window (a multiple of every page size).
pub const WINDOW: u64 = 2 << 20;
/// Windows kept mapped per shard.
const KEEP: usize = 16;

/// Windows kept mapped, the one used last at the back.
#[derive(Default)]
pub struct MapCache {
    windows: Vec<(u64, Rc<MappedRange>)>,
    /// Windows mapped since the start (for tests and stats).
    pub mapped: u64,
}

impl MapCache {
    /// A window of torrent `torrent`'s `file` covering `[off, off + len)`, mapped now if no
    /// kept window does; `None` if the range crosses a window boundary or mapping fails.
    pub fn window(
        &mut self,
        torrent: u64,
        file: &OpenFile,
        off: u64,
        len: u64,
    ) -> Option<Rc<MappedRange>> {
        let hit = self
            .windows
            .iter()
            .rposition(|(_, w)| w.file().same_file(file) && w.covers(off, len));
        if let Some(i) = hit {
            let entry = self.windows.remove(i);
            let w = Rc::clone(&entry.1);
            self.windows.push(entry);
            return Some(w);
        }
        let start = off - off % WINDOW;
        if off + len > start + WINDOW {
            return None;
        }
        let w = match MappedRange::map(file, start, WINDOW as usize) {
            Ok(w) => Rc::new(w),
            Err(e) => {
                tracing::debug!("mapping {WINDOW} bytes at {start} failed: {e}");
                return None;
            }
        };
        self.mapped += 1;
        if self.windows.len() >= KEEP {
            self.windows.remove(0);
        }
        self.windows.push((torrent, Rc::clone(&w)));
        Some(w)
    }

    /// Unmaps the windows of a removed torrent (sends in flight keep theirs until done).
    pub fn forget_torrent(&mut self, torrent: u64) {
        self.windows.retain(|(t, _)| *t != torrent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(dir: &tempfile::TempDir, name: &str, len: usize) -> OpenFile {
        let path = dir.path().join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&vec![1u8; len])
            .unwrap();
        OpenFile::open_read_only(&path).unwrap()
    }

    #[test]
    fn blocks_of_one_window_share_it_and_at_most_keep_stay_mapped() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(&dir, "a", 40 << 20);
        let g = file(&dir, "b", 1 << 20);
        let h = file(&dir, "c", 40 << 20);
        let mut c = MapCache::default();
        let a = c.window(1, &f, 16384, 16384).unwrap();
        let b = c.window(1, &f, WINDOW - 16384, 16384).unwrap();
        assert!(Rc::ptr_eq(&a, &b), "same window");
        assert_eq!(c.mapped, 1);
        let other = c.window(1, &g, 16384, 16384).unwrap();
        assert!(!Rc::ptr_eq(&a, &other), "another file, another window");
        assert!(
            c.window(1, &f, WINDOW - 100, 200).is_none(),
            "a range across two windows is not mapped"
        );
        for i in 0..KEEP as u64 + 3 {
            c.window(2, &h, i * WINDOW, 16384).unwrap();
        }
        assert_eq!(c.windows.len(), KEEP);
        assert!(Rc::strong_count(&a) == 2, "evicted: held only by this test");
        c.forget_torrent(2);
        assert!(c.windows.is_empty());
    }
}
