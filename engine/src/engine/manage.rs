//! Managing a running session from the API: listing torrents, removing one (keeping or
//! deleting its data), its connected peers, rate limits at runtime, announcing on request.
//!
//! Remove: like a pause (the `stopped` flag, every shard drops the torrent and closes its
//! connections, the announcer sends `stopped`, DHT lookups end), then the disk pipeline
//! finishes the pieces already queued and closes the files, and the torrent leaves the list.
//! With [`RemoveData::Keep`] its resume file is saved, so adding it again later needs no
//! recheck; with [`RemoveData::Delete`] its files, part file, resume file and saved
//! metadata are deleted (only paths the torrent names under its download directory). A
//! magnet still fetching its metadata is cancelled.

use std::sync::Arc;
use std::time::Duration;

use super::{Alert, Engine, EngineError, Inner, ShardStats, TorrentId, TorrentStats};
use crate::peer::PeerInfo;
use crate::shard::Command;
use crate::InfoHash;

/// What [`Engine::remove_torrent`] does with the torrent's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveData {
    /// Leave the files (and the resume file, so a later add skips the recheck).
    Keep,
    /// Delete the files, the part file, the resume file and saved metadata.
    Delete,
}

/// One torrent of the session ([`Engine::torrents`]).
#[derive(Debug, Clone)]
pub struct TorrentSummary {
    /// The torrent's id.
    pub id: TorrentId,
    /// Its name from the metainfo.
    pub name: String,
    /// Its info-hash.
    pub info_hash: InfoHash,
    /// Its progress, as [`Engine::stats`] returns it.
    pub stats: TorrentStats,
}

/// How long a removal keeping the data waits for the disk to drain before its last save.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`Engine::peers`] waits for each shard's answer (a command wakes a shard).
const PEERS_TIMEOUT: Duration = Duration::from_secs(2);

impl Engine {
    /// Each shard thread's counters (its loop's wake-ups), in shard order.
    pub fn shard_stats(&self) -> Vec<ShardStats> {
        let shards = self.inner.shards.lock().unwrap_or_else(|e| e.into_inner());
        shards
            .iter()
            .enumerate()
            .map(|(i, s)| s.counters.snapshot(i))
            .collect()
    }

    /// Every torrent of the session in the order added (magnets still fetching their
    /// metadata are not listed: their id has no torrent yet).
    pub fn torrents(&self) -> Vec<TorrentSummary> {
        let torrents = self
            .inner
            .torrents
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        torrents
            .iter()
            .map(|e| {
                let stats = e.stats();
                TorrentSummary {
                    id: TorrentId(e.shared.id),
                    name: e.shared.meta.info.name.clone(),
                    info_hash: e.shared.info_hash,
                    stats,
                }
            })
            .collect()
    }

    /// The torrent's handshaken peers, asked of every shard (blocks up to a few seconds if a
    /// shard is busy: call it from `spawn_blocking` in async code if that matters).
    pub fn peers(&self, id: TorrentId) -> Result<Vec<PeerInfo>, EngineError> {
        let t = self.inner.with_torrent(id, |e| e.shared.id)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let asked = {
            let shards = self.inner.shards.lock().unwrap_or_else(|e| e.into_inner());
            shards
                .iter()
                .filter(|s| {
                    let reply = tx.clone();
                    s.send(Command::Peers { torrent: t, reply })
                })
                .count()
        };
        let mut peers = Vec::new();
        for _ in 0..asked {
            match rx.recv_timeout(PEERS_TIMEOUT) {
                Ok(p) => peers.extend(p),
                Err(_) => return Err(EngineError::Internal("a shard did not answer".into())),
            }
        }
        peers.sort_by_key(|p| p.addr);
        Ok(peers)
    }

    /// Sets the engine's global rate limits in bytes per second (0 = none), at once for
    /// every torrent.
    pub fn set_rate_limits(&self, upload_bytes_per_s: u64, download_bytes_per_s: u64) {
        self.inner
            .global_limits
            .set(upload_bytes_per_s, download_bytes_per_s);
    }

    /// The engine's global rate limits: (upload, download) bytes per second, 0 = none.
    pub fn rate_limits(&self) -> (u64, u64) {
        let l = &self.inner.global_limits;
        (l.upload.rate_bytes_per_s(), l.download.rate_bytes_per_s())
    }

    /// Sets one torrent's rate limits in bytes per second (0 = none); the global ones apply
    /// too.
    pub fn set_torrent_rate_limits(
        &self,
        id: TorrentId,
        upload_bytes_per_s: u64,
        download_bytes_per_s: u64,
    ) -> Result<(), EngineError> {
        self.inner.with_torrent(id, |e| {
            e.shared
                .limits
                .set(upload_bytes_per_s, download_bytes_per_s)
        })
    }

    /// Announces to the torrent's trackers now, whatever their `min interval` asks. An error
    /// for an unknown torrent; `Ok(false)` if it announces to no tracker (paused, trackers
    /// off, or it has none).
    pub fn force_reannounce(&self, id: TorrentId) -> Result<bool, EngineError> {
        self.inner.with_torrent(id, |e| e.control.announce_now())
    }

    /// Removes a torrent from the session (see the module doc); a [`Alert::TorrentRemoved`]
    /// follows. Blocks until its queued writes are done (and, with `Delete`, its files are
    /// gone): call it from `spawn_blocking` in async code if that matters.
    pub fn remove_torrent(&self, id: TorrentId, data: RemoveData) -> Result<(), EngineError> {
        if cancel_magnet(&self.inner, id) {
            self.inner.alerts.send(Alert::TorrentRemoved { id });
            return Ok(());
        }
        let inner = self.inner.clone();
        std::thread::Builder::new()
            .name("rt-remove".into())
            .spawn(move || remove_blocking(&inner, id, data))
            .map_err(EngineError::Thread)?
            .join()
            .map_err(|_| EngineError::Internal("remove thread panicked".into()))?
    }
}

/// Cancels the magnet `id` if it is still fetching metadata.
fn cancel_magnet(inner: &Inner, id: TorrentId) -> bool {
    let mut magnets = inner.magnets.lock().unwrap_or_else(|e| e.into_inner());
    let Some(i) = magnets.iter().position(|m| m.id == id) else {
        return false;
    };
    magnets.remove(i).cancel();
    true
}

fn remove_blocking(inner: &Arc<Inner>, id: TorrentId, data: RemoveData) -> Result<(), EngineError> {
    // Stop it as a pause does (announcer `stopped`, shards drop it, resume file saved).
    super::lifecycle::stop(inner, id, None, false)?;
    let entry = {
        let mut torrents = inner.torrents.lock().unwrap_or_else(|e| e.into_inner());
        let i = torrents
            .iter()
            .position(|e| e.shared.id == id.0)
            .ok_or(EngineError::NoSuchTorrent(id))?;
        torrents.remove(i)
    };
    let t = &entry.shared;
    let result = match data {
        RemoveData::Keep => {
            // Pieces the shards handed over before the pause are still being hashed and
            // written: give them a moment, then record them too (the save syncs the files
            // first, so it must come before the files close). Any that land later are on
            // disk unrecorded; the next add's check finds them.
            let deadline = std::time::Instant::now() + DRAIN_TIMEOUT;
            while inner.disk.queued_bytes() > 0 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if let Err(e) = entry.resume.save(inner, t) {
                tracing::warn!("torrent {id}: saving resume data on remove failed: {e}");
            }
            inner
                .disk
                .remove_torrent(t.disk_slot)
                .map_err(EngineError::from)
        }
        RemoveData::Delete => {
            // Queued pieces are finished (or dropped) and the files closed, then deleted.
            if let Err(e) = inner.disk.remove_torrent(t.disk_slot) {
                tracing::warn!("torrent {id}: closing its files failed: {e}");
            }
            entry
                .resume
                .delete_data(&t.meta)
                .map_err(|e| EngineError::Internal(format!("deleting the torrent's files: {e}")))
        }
    };
    inner.alerts.send(Alert::TorrentRemoved { id });
    result
}
