//! Pausing and resuming a torrent, by the user or because its storage failed.
//!
//! Pause: the torrent's `stopped` flag is set (shards refuse new connections for it and the
//! picker hands out nothing new), every shard drops it and closes its connections (each
//! closing session returns its piece claims to the picker), the announcer sends `stopped`,
//! DHT lookups stop, and the resume file is saved durably. Pieces already handed to the disk
//! pipeline still complete and are recorded by the next save.
//!
//! Resume: the flag is cleared, the shards get the torrent back, announcing (trackers, DHT)
//! restarts and every peer we knew of is dialed again.
//!
//! Both run on a thread of their own: stopping an announcer blocks on the control runtime,
//! which must not happen inside a caller's async context, and the save waits for the disk.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Alert, EngineError, Inner, TorrentId};
use crate::shard::Command;

/// Runs `f` on a helper thread and waits for it.
fn on_helper_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, EngineError> {
    std::thread::Builder::new()
        .name("rt-lifecycle".into())
        .spawn(f)
        .map_err(EngineError::Thread)?
        .join()
        .map_err(|_| EngineError::Internal("pause/resume thread panicked".into()))
}

/// Pauses torrent `id`; `error` is why, if the engine pauses it itself. Does nothing if it
/// is already paused. Blocks until the resume file is saved (or failed to save).
pub(crate) fn pause(
    inner: &Arc<Inner>,
    id: TorrentId,
    error: Option<String>,
) -> Result<(), EngineError> {
    let inner = inner.clone();
    on_helper_thread(move || stop(&inner, id, error, true))?
}

/// The pause itself, on the caller's thread; `alert`: send [`Alert::TorrentPaused`] (not
/// when the torrent is being removed).
pub(crate) fn stop(
    inner: &Inner,
    id: TorrentId,
    error: Option<String>,
    alert: bool,
) -> Result<(), EngineError> {
    let (t, resume) = {
        let torrents = inner.torrents.lock().unwrap_or_else(|e| e.into_inner());
        let e = torrents
            .iter()
            .find(|e| e.shared.id == id.0)
            .ok_or(EngineError::NoSuchTorrent(id))?;
        if e.paused.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        (e.shared.clone(), e.resume.clone())
    };
    t.stopped.store(true, Ordering::Release);
    for s in inner
        .shards
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
    {
        s.send(Command::RemoveTorrent(t.id));
    }
    let (announcer, dht) = {
        let torrents = inner.torrents.lock().unwrap_or_else(|e| e.into_inner());
        let entry = torrents.iter().find(|e| e.shared.id == id.0);
        (
            entry.and_then(|e| e.control.take_announcer()),
            entry.and_then(|e| e.control.take_dht()),
        )
    };
    // Its DHT lookups stop (announces expire on the DHT nodes by themselves).
    drop(dht);
    super::control::stop_announcer(announcer, &inner.control.runtime);
    if let Err(e) = resume.save(inner, &t) {
        tracing::warn!("torrent {id}: saving resume data on pause failed: {e}");
    }
    if alert {
        inner.alerts.send(Alert::TorrentPaused { id, error });
    }
    Ok(())
}

/// Resumes a paused torrent: back to the shards, announcing, known peers redialed. Does
/// nothing if it is not paused.
pub(crate) fn resume(inner: &Arc<Inner>, id: TorrentId) -> Result<(), EngineError> {
    let inner2 = inner.clone();
    on_helper_thread(move || resume_blocking(&inner2, id))?
}

fn resume_blocking(inner: &Arc<Inner>, id: TorrentId) -> Result<(), EngineError> {
    let (t, peers) = {
        let torrents = inner.torrents.lock().unwrap_or_else(|e| e.into_inner());
        let e = torrents
            .iter()
            .find(|e| e.shared.id == id.0)
            .ok_or(EngineError::NoSuchTorrent(id))?;
        if !e.paused.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        e.shared.stopped.store(false, Ordering::Release);
        e.control.restart(inner, &e.shared);
        (e.shared.clone(), e.control.known_peers())
    };
    for s in inner
        .shards
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
    {
        s.send(Command::AddTorrent(t.clone()));
    }
    crate::shard::sync(&inner.shards.lock().unwrap_or_else(|e| e.into_inner()));
    inner.alerts.send(Alert::TorrentResumed { id });
    super::connect_peers(inner, &t, &peers);
    Ok(())
}

/// Called by the disk sink (on the disk thread) when a write failed: pauses the torrent from
/// a thread of its own, so the disk thread is never blocked on the save's sync.
pub(crate) fn pause_on_error(inner: std::sync::Weak<Inner>, id: TorrentId, message: String) {
    let spawned = std::thread::Builder::new()
        .name("rt-pause".into())
        .spawn(move || {
            if let Some(inner) = inner.upgrade() {
                if let Err(e) = stop(&inner, id, Some(message), true) {
                    tracing::warn!("torrent {id}: pausing after a write error failed: {e}");
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("torrent {id}: cannot start a thread to pause it: {e}");
    }
}
