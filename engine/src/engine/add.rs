//! Adding a torrent: load and check the metainfo, open its storage, register it with the disk
//! pipeline, build its picker and shared state, and hand it to every shard.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use uring_disk::{DiskEvent, Storage, StorageOptions};

use super::persist::ResumeState;
use super::{
    connect_peers, control, persist, Alert, AlertSink, EngineError, Inner, TorrentEntry, TorrentId,
};
use crate::metainfo::Metainfo;
use crate::picker::Picker;
use crate::shard::Command;
use crate::torrent::TorrentShared;

/// Where a torrent's metainfo comes from.
#[derive(Debug, Clone)]
pub enum TorrentSource {
    /// A .torrent file on disk.
    File(PathBuf),
    /// The bytes of a .torrent file.
    Bytes(Vec<u8>),
    /// Already parsed.
    Metainfo(Box<Metainfo>),
    /// A magnet link (BEP 9): the metadata is fetched from peers first (`Alert::
    /// MetadataProgress`, then `Alert::MetadataReceived`), unless it was saved by an earlier
    /// run. Its `x.pe` peers, `tr` trackers and `so` selection are used.
    Magnet(Box<crate::magnet::Magnet>),
}

/// What to add ([`super::Engine::add_torrent`]): build it with [`AddTorrent::new`], then set
/// the fields that differ from the defaults.
#[derive(Debug, Clone)]
pub struct AddTorrent {
    /// The torrent's metainfo, or a magnet link.
    pub source: TorrentSource,
    /// Content goes below this directory (multi-file torrents in `name/`).
    pub download_dir: PathBuf,
    /// Peers to dial right away, in addition to what trackers return.
    pub peers: Vec<SocketAddr>,
    /// Hash-check data already in `download_dir` first (all cores, batched SHA-1) and keep the
    /// pieces that verify: how a seeder starts. Pieces that fail are downloaded, never served.
    pub check_existing: bool,
    /// Per-file priorities in torrent order; empty (or short) means `Normal` for the rest.
    pub file_priorities: Vec<crate::files::FilePriority>,
    /// Hash-check existing data even if a resume file matches it (`--recheck`).
    pub recheck: bool,
    /// Where the resume file goes (`<infohash-hex>.resume`); default
    /// `<download_dir>/.ringtorrent`. A matching one spares the recheck at the next start.
    pub resume_dir: Option<PathBuf>,
    /// Pick pieces in index order (for streaming) instead of rarest first.
    pub sequential: bool,
    /// This torrent's own upload limit in bytes per second (0 = none), under the global one.
    pub upload_rate_limit: u64,
    /// This torrent's own download limit in bytes per second (0 = none), under the global one.
    pub download_rate_limit: u64,
    /// More tracker URLs, each its own tier after the torrent's. They are saved in the resume
    /// file, so a later add of the same torrent announces to them too.
    pub trackers: Vec<String>,
}

impl AddTorrent {
    /// Downloads `source` into `download_dir`, with the defaults: no extra peers or trackers,
    /// no hash check of existing data (beyond what a resume file calls for), every file
    /// `Normal`, rarest-first, no per-torrent rate limits, resume file under
    /// `<download_dir>/.ringtorrent`.
    pub fn new(source: TorrentSource, download_dir: impl Into<PathBuf>) -> Self {
        AddTorrent {
            source,
            download_dir: download_dir.into(),
            peers: Vec::new(),
            check_existing: false,
            recheck: false,
            resume_dir: None,
            file_priorities: Vec::new(),
            sequential: false,
            upload_rate_limit: 0,
            download_rate_limit: 0,
            trackers: Vec::new(),
        }
    }
}

fn load(source: TorrentSource) -> Result<Metainfo, EngineError> {
    Ok(match source {
        TorrentSource::File(path) => {
            let bytes =
                std::fs::read(&path).map_err(|source| EngineError::ReadTorrent { path, source })?;
            Metainfo::from_bytes(&bytes)?
        }
        TorrentSource::Bytes(bytes) => Metainfo::from_bytes(&bytes)?,
        TorrentSource::Metainfo(m) => *m,
        TorrentSource::Magnet(m) => {
            return Err(EngineError::Internal(format!(
                "magnet {} reached the .torrent path",
                m.info_hash.to_hex()
            )))
        }
    })
}

/// One SO_REUSEPORT listener per shard on the same address; returns them and the bound address.
pub(super) fn listeners(
    addr: SocketAddr,
    n: usize,
) -> Result<(Vec<OwnedFd>, SocketAddr), EngineError> {
    match listeners_on(addr, n) {
        // `[::]` where IPv6 is off (no IPv6 module, or disabled): IPv4 on the same port.
        Err(e) if addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) => {
            let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, addr.port()));
            tracing::warn!("cannot listen on {addr} ({e}); listening on {v4} (IPv4 only)");
            listeners_on(v4, n)
        }
        r => r,
    }
}

/// The shards' UDP sockets (uTP) on the listen address, one per shard; none (each shard then
/// takes an ephemeral port for outgoing uTP alone) if the port is taken for UDP.
pub(super) fn udp_sockets(listen: SocketAddr, n: usize) -> std::vec::IntoIter<OwnedFd> {
    match crate::shard::udp::shard_sockets(listen, n) {
        Ok(v) => v.into_iter(),
        Err(e) => {
            tracing::warn!(
                "cannot bind UDP {listen} for uTP ({e}): incoming uTP is off, outgoing uTP \
                 uses an ephemeral port"
            );
            Vec::new().into_iter()
        }
    }
}

/// `n` listeners sharing `addr` (SO_REUSEPORT); `[::]` is dual-stack (IPv4 peers too).
fn listeners_on(addr: SocketAddr, n: usize) -> Result<(Vec<OwnedFd>, SocketAddr), EngineError> {
    let mut out = Vec::with_capacity(n);
    let mut bound = addr;
    for _ in 0..n {
        let err = |source| EngineError::Listen {
            addr: bound,
            source,
        };
        let s = Socket::new(Domain::for_address(bound), Type::STREAM, None).map_err(err)?;
        s.set_reuse_address(true).map_err(err)?;
        s.set_reuse_port(true).map_err(err)?;
        if bound.is_ipv6() && bound.ip().is_unspecified() {
            s.set_only_v6(false).map_err(err)?;
        }
        s.bind(&bound.into()).map_err(err)?;
        s.listen(256).map_err(err)?;
        if bound.port() == 0 {
            if let Some(a) = s.local_addr().ok().and_then(|a| a.as_socket()) {
                bound = a;
            }
        }
        out.push(OwnedFd::from(s));
    }
    Ok((out, bound))
}

/// Adds a torrent; `id` is given when a magnet reserved one before its metadata came.
pub(super) fn add_torrent(
    inner: &Arc<Inner>,
    mut add: AddTorrent,
    id: Option<TorrentId>,
) -> Result<TorrentId, EngineError> {
    if let TorrentSource::Magnet(m) = add.source {
        add.source = TorrentSource::Bytes(Vec::new());
        return super::magnet::add_magnet(inner, add, *m);
    }
    let meta = Arc::new(load(add.source)?);
    {
        let torrents = inner.torrents.lock().unwrap_or_else(|e| e.into_inner());
        if torrents
            .iter()
            .any(|e| e.shared.info_hash == meta.info_hash)
        {
            return Err(EngineError::Duplicate(meta.info_hash));
        }
    }
    let info = &meta.info;
    let mut resume = ResumeState::new(&meta, &add.download_dir, add.resume_dir.as_deref());
    // Before storage opens: opening may create or extend files and change their stamps.
    let loaded = resume.load(&meta);
    let files = crate::files::storage_files(&meta, &add.file_priorities);
    let storage = Storage::open_selected(
        &add.download_dir,
        files,
        info.piece_length,
        StorageOptions::default(),
        crate::files::storage_selection(&meta, &add.file_priorities),
    )?;
    let selector = storage.selector();
    let reader = storage.reader();
    resume.reserve_space(&meta);
    let check = (add.check_existing, add.recheck, inner.config.hash_threads);
    // The id is taken before the check so that its progress alerts can name the torrent.
    let id = id.map_or_else(|| inner.next_id.fetch_add(1, Ordering::Relaxed), |i| i.0);
    let reporter = CheckReporter::new(&inner.alerts, TorrentId(id), &meta);
    let progress = |bytes: u64| reporter.add(bytes);
    let (have, start) = persist::initial_have(&storage, &meta, &resume, loaded, check, &progress)?;
    if matches!(start, persist::Start::Rechecked(_)) {
        reporter.finish();
    }
    let verified_bytes: u64 = have.iter().map(|p| info.lengths.piece_len(p) as u64).sum();
    let wanted = crate::files::wanted_pieces(&meta, &add.file_priorities);
    let picker = Picker::new(info.lengths, &have, &wanted)
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    super::files::configure_picker(&picker, &meta, &add.file_priorities, add.sequential);
    let cell: Arc<OnceLock<Weak<TorrentShared>>> = Arc::new(OnceLock::new());
    let sink = disk_sink(
        cell.clone(),
        inner.alerts.clone(),
        TorrentId(id),
        Arc::downgrade(inner),
    );
    let hashes: Arc<[[u8; 20]]> = info.pieces.clone().into();
    let slot = inner.disk.add_torrent(storage, hashes, sink)?;
    let pool = inner.buffer_pool(info.piece_length as usize);
    let shared = Arc::new(TorrentShared::new(
        id,
        meta.clone(),
        inner.our_id,
        picker,
        pool,
        slot,
        inner.config.max_peers_per_torrent,
    ));
    let _ = cell.set(Arc::downgrade(&shared));
    shared.set_reader(reader);
    shared.set_listen_port(inner.listen_addr.port());
    if !inner.config.pex {
        shared.disable_pex();
    }
    if let Some(node) = &inner.dht {
        shared.set_dht(node.link()); // refused for private torrents
    }
    let extra: Vec<Vec<String>> = add.trackers.iter().map(|u| vec![u.clone()]).collect();
    shared.set_trackers(crate::tracker::tiers::merge_tiers(&[
        &meta.trackers,
        &resume.trackers,
        &extra,
    ]));
    shared
        .limits
        .set(add.upload_rate_limit, add.download_rate_limit);
    shared
        .counters
        .verified_bytes
        .store(verified_bytes, Ordering::Relaxed);
    // Complete means every wanted piece is verified (file selection).
    shared
        .complete
        .store(shared.picker.is_complete(), Ordering::Release);
    for s in inner
        .shards
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
    {
        s.send(Command::AddTorrent(shared.clone()));
    }
    crate::shard::sync(&inner.shards.lock().unwrap_or_else(|e| e.into_inner()));
    let control = control::TorrentControl::start(inner, &shared);
    control.add_known_peers(&add.peers);
    inner
        .torrents
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(TorrentEntry {
            shared: shared.clone(),
            control,
            files: super::files::TorrentFiles::new(&meta, &add.file_priorities, selector),
            resume: Arc::new(resume),
            paused: AtomicBool::new(false),
        });
    inner.alerts.send(Alert::TorrentAdded {
        id: TorrentId(id),
        name: meta.info.name.clone(),
        info_hash: meta.info_hash,
    });
    if let Some(a) = start.alert(TorrentId(id), have.count()) {
        inner.alerts.send(a);
    }
    if shared.complete.load(Ordering::Acquire) {
        // Nothing wanted is missing (data checked, or every file skipped): no piece will ever
        // be verified to announce it, so say it now.
        inner
            .alerts
            .send(Alert::TorrentComplete { id: TorrentId(id) });
    }
    connect_peers(inner, &shared, &add.peers);
    Ok(TorrentId(id))
}

/// Turns the hashing threads' byte counts into `CheckProgress` alerts, at most one per
/// [`CHECK_PROGRESS_EVERY`] (a thread that finds another reporting skips its turn).
struct CheckReporter<'a> {
    alerts: &'a AlertSink,
    id: TorrentId,
    piece_length: u64,
    total_pieces: u32,
    total_bytes: u64,
    done_bytes: AtomicU64,
    last: Mutex<Option<Instant>>,
}

/// Least time between two `CheckProgress` alerts of one torrent.
const CHECK_PROGRESS_EVERY: Duration = Duration::from_millis(100);

impl<'a> CheckReporter<'a> {
    fn new(alerts: &'a AlertSink, id: TorrentId, meta: &Metainfo) -> Self {
        let lengths = meta.info.lengths;
        CheckReporter {
            alerts,
            id,
            piece_length: u64::from(meta.info.piece_length).max(1),
            total_pieces: lengths.num_pieces(),
            total_bytes: lengths.total_length(),
            done_bytes: AtomicU64::new(0),
            last: Mutex::new(None),
        }
    }

    fn add(&self, bytes: u64) {
        let done = self.done_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let Ok(mut last) = self.last.try_lock() else {
            return;
        };
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < CHECK_PROGRESS_EVERY) {
            return;
        }
        *last = Some(now);
        self.send(done);
    }

    /// The last alert: every piece checked.
    fn finish(&self) {
        self.send(self.total_bytes);
    }

    fn send(&self, done_bytes: u64) {
        // Only the last piece may be short, so whole pieces done is bytes / piece length
        // until the end.
        let checked = if done_bytes >= self.total_bytes {
            self.total_pieces
        } else {
            u32::try_from(done_bytes / self.piece_length)
                .unwrap_or(u32::MAX)
                .min(self.total_pieces)
        };
        self.alerts.send(Alert::CheckProgress {
            id: self.id,
            checked,
            total: self.total_pieces,
        });
    }
}

/// What the disk pipeline calls (on its own threads) when a piece is written or rejected.
fn disk_sink(
    cell: Arc<OnceLock<Weak<TorrentShared>>>,
    alerts: AlertSink,
    id: TorrentId,
    engine: Weak<Inner>,
) -> Arc<dyn Fn(DiskEvent) + Send + Sync> {
    Arc::new(move |ev: DiskEvent| {
        let Some(t) = cell.get().and_then(Weak::upgrade) else {
            return;
        };
        match ev {
            DiskEvent::PieceWritten { verified, .. } => {
                if let Some(p) = t.on_verified(&verified) {
                    alerts.send(Alert::PieceVerified { id, piece: p.get() });
                }
                if t.picker.is_complete() && !t.complete.swap(true, Ordering::AcqRel) {
                    alerts.send(Alert::TorrentComplete { id });
                }
            }
            DiskEvent::HashFailed { piece } => {
                if let Ok(p) = t.lengths.piece(piece) {
                    t.on_failed(p, true);
                    alerts.send(Alert::HashFailed { id, piece });
                }
            }
            DiskEvent::WriteFailed { piece, error } => {
                if let Ok(p) = t.lengths.piece(piece) {
                    t.on_failed(p, false);
                }
                // Keep verified data, stop asking for more: the torrent pauses (connections
                // closed, resume saved); the user frees space and resumes.
                let message = error.to_string();
                if !t.stopped.swap(true, Ordering::AcqRel) {
                    alerts.send(Alert::TorrentError {
                        id,
                        message: message.clone(),
                    });
                }
                super::lifecycle::pause_on_error(engine.clone(), id, message);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::build::TorrentBuilder;

    #[test]
    fn check_progress_is_rate_limited_and_ends_at_the_total() {
        let piece = 16 * 1024;
        let (_, meta) = TorrentBuilder::single_file("c.bin", 10 * piece as u64 - 100, piece)
            .piece_hashes(vec![[0u8; 20]; 10])
            .build()
            .unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let sink = AlertSink(tx);
        let r = CheckReporter::new(&sink, TorrentId(4), &meta);
        // Many reports within 100 ms: one alert.
        for _ in 0..9 {
            r.add(u64::from(piece));
        }
        r.finish();
        let mut got = Vec::new();
        while let Ok(a) = rx.try_recv() {
            match a {
                Alert::CheckProgress { id, checked, total } => {
                    assert_eq!((id, total), (TorrentId(4), 10));
                    got.push(checked);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(got, vec![1, 10]);
        // The next report after the interval goes out again: the last one is moved back by
        // the interval (rather than sleeping through it).
        *r.last.lock().unwrap() = Instant::now().checked_sub(CHECK_PROGRESS_EVERY);
        r.add(1);
        assert!(matches!(
            rx.try_recv(),
            Ok(Alert::CheckProgress { checked: 9, .. })
        ));
    }
}
