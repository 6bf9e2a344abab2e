//! File priorities and sequential mode of a running torrent: [`Engine::set_file_priority`],
//! [`Engine::file_priorities`], [`Engine::set_sequential`].
//!
//! A priority change recomputes the wanted and high flags of the pieces the file overlaps (a
//! piece stays wanted while any file it overlaps is), tells storage to create the file if it
//! was parked (its bytes move out of the part file on the disk thread, see `uring_disk`'s
//! storage docs) and re-evaluates completeness: selecting more makes a complete torrent
//! incomplete again; deselecting the last missing pieces completes it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::{Alert, Engine, EngineError, Inner, TorrentId};
use crate::files::{file_pieces, high_pieces, priority_of, wanted_pieces, FilePriority};
use crate::metainfo::Metainfo;
use crate::picker::Picker;
use crate::torrent::TorrentShared;

/// The file selection of one torrent.
pub(crate) struct TorrentFiles {
    priorities: Mutex<Vec<FilePriority>>,
    selector: uring_disk::FileSelector,
}

impl TorrentFiles {
    pub(crate) fn new(
        meta: &Metainfo,
        priorities: &[FilePriority],
        selector: uring_disk::FileSelector,
    ) -> TorrentFiles {
        let n = meta.info.files.len();
        TorrentFiles {
            priorities: Mutex::new((0..n).map(|i| priority_of(priorities, i)).collect()),
            selector,
        }
    }
}

/// Applies file priorities (high pieces) and sequential mode to a new torrent's picker.
pub(crate) fn configure_picker(
    picker: &Picker,
    meta: &Metainfo,
    priorities: &[FilePriority],
    sequential: bool,
) {
    for p in high_pieces(meta, priorities).iter() {
        picker.set_high(p, true);
    }
    picker.set_sequential(sequential);
}

impl Engine {
    /// Sets the priority of file `file` (index in torrent order) at any time. `Skip` stops
    /// requesting pieces only that file needs (pieces in flight finish; data already on disk
    /// stays); `Normal`/`High` creates the file if it was skipped and downloads it. Errors for
    /// an unknown torrent or file index.
    pub fn set_file_priority(
        &self,
        id: TorrentId,
        file: usize,
        priority: FilePriority,
    ) -> Result<(), EngineError> {
        let torrents = self
            .inner
            .torrents
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let entry = torrents
            .iter()
            .find(|e| e.shared.id == id.0)
            .ok_or(EngineError::NoSuchTorrent(id))?;
        let t = &entry.shared;
        let files = t.meta.info.files.len();
        if file >= files {
            return Err(EngineError::NoSuchFile { file, files });
        }
        let mut prios = entry
            .files
            .priorities
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        prios[file] = priority;
        let wanted = wanted_pieces(&t.meta, &prios);
        let high = high_pieces(&t.meta, &prios);
        for p in file_pieces(&t.meta.info, file) {
            let Ok(p) = t.lengths.piece(p) else { continue };
            t.picker.set_high(p, high.get(p));
            t.picker.set_wanted(p, wanted.get(p));
        }
        drop(prios);
        if priority != FilePriority::Skip && entry.files.selector.select(file)? {
            nudge_disk(&self.inner, t, file);
        }
        update_complete(&self.inner, t, id);
        Ok(())
    }

    /// The priority of every file, in torrent order; `None` for an unknown torrent.
    pub fn file_priorities(&self, id: TorrentId) -> Option<Vec<FilePriority>> {
        self.inner
            .with_torrent(id, |entry| {
                let prios = entry.files.priorities.lock();
                prios.unwrap_or_else(|e| e.into_inner()).clone()
            })
            .ok()
    }

    /// Turns sequential mode (pieces in index order, for streaming) on or off.
    pub fn set_sequential(&self, id: TorrentId, on: bool) -> Result<(), EngineError> {
        self.inner
            .with_torrent(id, |entry| entry.shared.picker.set_sequential(on))
    }
}

/// `complete` follows the picker: every wanted piece verified. Sends `TorrentComplete` when a
/// deselection completed the torrent (the disk sink only sees pieces being verified).
fn update_complete(inner: &Inner, t: &TorrentShared, id: TorrentId) {
    if t.picker.is_complete() {
        if !t.complete.swap(true, Ordering::AcqRel) {
            inner.alerts.send(Alert::TorrentComplete { id });
        }
    } else {
        t.complete.store(false, Ordering::Release);
    }
}

/// A one-byte read of the file's first byte, so the disk thread moves a newly selected file's
/// bytes out of the part file now rather than at its next write (the read itself then goes to
/// the new file). Best effort: if it cannot be sent, the move happens at the next write or
/// when the torrent is removed.
fn nudge_disk(inner: &Arc<Inner>, t: &TorrentShared, file: usize) {
    let plen = u64::from(t.meta.info.piece_length.max(1));
    let start = t.meta.info.files.get(file).map_or(0, |f| f.offset);
    let total = t.lengths.total_length();
    // An empty file at the very end has no byte: read the torrent's last byte instead.
    let at = start.min(total.saturating_sub(1));
    let (piece, offset) = ((at / plen) as u32, (at % plen) as u32);
    if let Err(e) = inner
        .disk
        .read(t.disk_slot, piece, offset, 1, Box::new(|_| {}))
    {
        tracing::debug!(
            "torrent {}: file {file} selected, disk nudge failed: {e}",
            t.id
        );
    }
}
