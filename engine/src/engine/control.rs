//! The control thread: a private single-threaded tokio runtime for tracker announces, DHT
//! lookups and the once-a-second stats tick. Nothing on the data path runs here.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use super::dht::DhtTracker;
use super::{Alert, Inner, TorrentId, TorrentStats, WasteStats};
use crate::torrent::{TorrentShared, Waste};
use crate::tracker::{
    Announcer, AnnouncerHandle, AnnouncerParams, TrackerEvent, TrackerList, Transfer,
};

/// The control thread and its runtime.
pub(crate) struct ControlHandle {
    pub runtime: tokio::runtime::Handle,
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl ControlHandle {
    pub fn spawn() -> std::io::Result<ControlHandle> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let runtime = rt.handle().clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("rt-control".into())
            .spawn(move || {
                rt.block_on(async {
                    let _ = rx.await;
                });
                // Tasks still running (announces) are dropped with the runtime, here on our own
                // thread, never inside a caller's async context.
                rt.shutdown_timeout(Duration::from_millis(100));
            })?;
        Ok(ControlHandle {
            runtime,
            stop: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    pub fn shutdown(&self) {
        if let Some(tx) = self.stop.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = h.join();
        }
    }
}

/// Most peer addresses remembered per torrent (to redial on resume).
const MAX_KNOWN_PEERS: usize = 1000;

/// Peer addresses a torrent was given or learned from trackers, oldest first, bounded.
#[derive(Default)]
pub(crate) struct KnownPeers(Mutex<Vec<SocketAddr>>);

impl KnownPeers {
    pub fn add(&self, peers: &[SocketAddr]) {
        let mut known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for p in peers {
            if !known.contains(p) {
                if known.len() >= MAX_KNOWN_PEERS {
                    known.remove(0);
                }
                known.push(*p);
            }
        }
    }

    pub fn get(&self) -> Vec<SocketAddr> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Per-torrent control state: the download rate, the tracker announcer, the DHT lookups and
/// known peers.
pub(crate) struct TorrentControl {
    last_downloaded: AtomicU64,
    rate_bytes_per_s: AtomicU64,
    last_uploaded: AtomicU64,
    up_rate_bytes_per_s: AtomicU64,
    completed_sent: AtomicBool,
    announcer: Mutex<Option<AnnouncerHandle>>,
    dht: Mutex<Option<DhtTracker>>,
    known: Arc<KnownPeers>,
}

impl TorrentControl {
    pub fn start(inner: &Arc<Inner>, t: &Arc<TorrentShared>) -> TorrentControl {
        let known = Arc::new(KnownPeers::default());
        let announcer = (inner.config.use_trackers && !t.trackers().is_empty())
            .then(|| start_announcer(inner, t, known.clone()));
        TorrentControl {
            last_downloaded: AtomicU64::new(0),
            rate_bytes_per_s: AtomicU64::new(0),
            last_uploaded: AtomicU64::new(0),
            up_rate_bytes_per_s: AtomicU64::new(0),
            completed_sent: AtomicBool::new(false),
            announcer: Mutex::new(announcer),
            dht: Mutex::new(start_dht(inner, t, &known)),
            known,
        }
    }

    /// Starts announcing again after [`TorrentControl::take_announcer`] and
    /// [`TorrentControl::take_dht`] (on resume).
    pub fn restart(&self, inner: &Arc<Inner>, t: &Arc<TorrentShared>) {
        let mut a = self.announcer.lock().unwrap_or_else(|e| e.into_inner());
        if a.is_none() && inner.config.use_trackers && !t.trackers().is_empty() {
            *a = Some(start_announcer(inner, t, self.known.clone()));
        }
        let mut d = self.dht.lock().unwrap_or_else(|e| e.into_inner());
        if d.is_none() {
            *d = start_dht(inner, t, &self.known);
        }
    }

    /// Takes the DHT lookups out; dropping them stops them (on pause and shutdown).
    pub fn take_dht(&self) -> Option<DhtTracker> {
        self.dht.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Remembers peers to redial on resume.
    pub fn add_known_peers(&self, peers: &[SocketAddr]) {
        self.known.add(peers);
    }

    pub fn known_peers(&self) -> Vec<SocketAddr> {
        self.known.get()
    }

    /// Takes the announcer out, to stop it with [`stop_announcer`] without holding the
    /// torrent list's lock (the control thread's ticker takes that lock).
    pub fn take_announcer(&self) -> Option<AnnouncerHandle> {
        self.announcer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// The payload rates of the last tick: (download, upload) bytes per second.
    pub fn rates(&self) -> (u64, u64) {
        (
            self.rate_bytes_per_s.load(Ordering::Relaxed),
            self.up_rate_bytes_per_s.load(Ordering::Relaxed),
        )
    }

    /// Asks for a tracker announce now; false if the torrent announces to no tracker
    /// (paused, trackers off, or none).
    pub fn announce_now(&self) -> bool {
        let a = self.announcer.lock().unwrap_or_else(|e| e.into_inner());
        a.as_ref().map(AnnouncerHandle::announce_now).is_some()
    }

    fn tick(&self, t: &TorrentShared, elapsed: Duration) {
        let secs = elapsed.as_secs_f64().max(1e-3);
        let rate = |total: &AtomicU64, last: &AtomicU64, out: &AtomicU64| {
            let now = total.load(Ordering::Relaxed);
            let before = last.swap(now, Ordering::Relaxed);
            out.store(
                (now.saturating_sub(before) as f64 / secs) as u64,
                Ordering::Relaxed,
            );
        };
        let c = &t.counters;
        rate(
            &c.downloaded_bytes,
            &self.last_downloaded,
            &self.rate_bytes_per_s,
        );
        rate(
            &c.uploaded_bytes,
            &self.last_uploaded,
            &self.up_rate_bytes_per_s,
        );
        if t.complete.load(Ordering::Acquire) && !self.completed_sent.swap(true, Ordering::AcqRel) {
            if let Some(a) = self
                .announcer
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
            {
                a.completed();
            }
        }
    }
}

/// Stops an announcer; it sends `stopped` (bounded by a timeout). Must not be called inside
/// an async context nor with the torrent list locked.
pub(crate) fn stop_announcer(handle: Option<AnnouncerHandle>, runtime: &tokio::runtime::Handle) {
    if let Some(h) = handle {
        let task = h.shutdown();
        let _ =
            runtime.block_on(async { tokio::time::timeout(Duration::from_secs(3), task).await });
    }
}

/// Starts looking `t` up in the DHT (BEP 5) and announcing it there, unless the engine has no
/// DHT or the torrent is private (BEP 27: private torrents get peers from their trackers
/// only). Peers found are dialed through the shards, like those from trackers.
fn start_dht(
    inner: &Arc<Inner>,
    t: &Arc<TorrentShared>,
    known: &Arc<KnownPeers>,
) -> Option<DhtTracker> {
    if t.meta.info.private {
        return None;
    }
    let node = inner.dht.as_ref()?;
    let (weak_inner, weak_t) = (Arc::downgrade(inner), Arc::downgrade(t));
    let (known, alerts, id) = (known.clone(), inner.alerts.clone(), TorrentId(t.id));
    let sink = Arc::new(move |peers: Vec<SocketAddr>| {
        alerts.send(Alert::DhtPeers {
            id,
            peers: peers.len(),
        });
        known.add(&peers);
        if let (Some(inner), Some(t)) = (weak_inner.upgrade(), weak_t.upgrade()) {
            if !t.stopped.load(Ordering::Acquire) {
                super::connect_peers(&inner, &t, &peers);
            }
        }
    });
    let port = Some(inner.listen_addr.port());
    Some(node.track(&inner.control.runtime, t.info_hash, port, sink))
}

/// Starts announcing `t` to its trackers; peers they return are dialed through the shards.
fn start_announcer(
    inner: &Arc<Inner>,
    t: &Arc<TorrentShared>,
    known: Arc<KnownPeers>,
) -> AnnouncerHandle {
    let weak_inner = Arc::downgrade(inner);
    let weak_t = Arc::downgrade(t);
    let id = TorrentId(t.id);
    let alerts = inner.alerts.clone();
    let on_event = Arc::new(move |ev: TrackerEvent| match ev {
        TrackerEvent::Reply { url, peers, .. } => {
            alerts.send(Alert::TrackerReply {
                id,
                url,
                peers: peers.len(),
            });
            known.add(&peers);
            if let (Some(inner), Some(t)) = (weak_inner.upgrade(), weak_t.upgrade()) {
                if !t.stopped.load(Ordering::Acquire) {
                    super::connect_peers(&inner, &t, &peers);
                }
            }
        }
        TrackerEvent::Error { url, error } => {
            alerts.send(Alert::TrackerError {
                id,
                url,
                message: error.to_string(),
            });
        }
    });
    let weak_t = Arc::downgrade(t);
    let transfer = Arc::new(move || {
        let Some(t) = weak_t.upgrade() else {
            return Transfer {
                uploaded: 0,
                downloaded: 0,
                left: 0,
            };
        };
        let c = &t.counters;
        Transfer {
            uploaded: c.uploaded_bytes.load(Ordering::Relaxed),
            downloaded: c.downloaded_bytes.load(Ordering::Relaxed),
            // BEP 3's "bytes this client still has to download": of the wanted pieces only
            // (files skipped are not going to be downloaded).
            left: wanted_bytes(&t).1,
        }
    });
    let params = AnnouncerParams::new(
        t.info_hash,
        t.our_id,
        inner.listen_addr.port(),
        transfer,
        on_event,
    );
    let list = TrackerList::new(t.trackers().to_vec(), &mut rand::rng());
    Announcer::spawn(&inner.control.runtime, list, params)
}

/// Bytes of the wanted pieces, and of those not verified yet. One pass over the piece words
/// (16 Ki pieces for a 4 GiB torrent): cheap once a second.
fn wanted_bytes(t: &TorrentShared) -> (u64, u64) {
    let (mut wanted, mut missing) = (0u64, 0u64);
    for p in t.lengths.pieces().filter(|&p| t.picker.is_wanted(p)) {
        let len = u64::from(t.lengths.piece_len(p));
        wanted += len;
        if !t.picker.have(p) {
            missing += len;
        }
    }
    (wanted, missing)
}

/// A stats snapshot from the shared counters; `rates` as [`TorrentControl::rates`].
pub(crate) fn stats_of(t: &TorrentShared, rates: (u64, u64)) -> TorrentStats {
    let c = &t.counters;
    let (wanted, missing) = wanted_bytes(t);
    let wanted_verified = wanted - missing;
    TorrentStats {
        total_bytes: t.lengths.total_length(),
        verified_bytes: c.verified_bytes.load(Ordering::Relaxed),
        wanted_bytes: wanted,
        wanted_verified_bytes: wanted_verified,
        suggests_sent: c.suggests_sent.load(Ordering::Relaxed),
        suggests_received: c.suggests_received.load(Ordering::Relaxed),
        direct_piece_reads: c.direct_piece_reads.load(Ordering::Relaxed),
        page_cache_sends: c.page_cache_sends.load(Ordering::Relaxed),
        mapped_sends: c.mapped_sends.load(Ordering::Relaxed),
        downloaded_bytes: c.downloaded_bytes.load(Ordering::Relaxed),
        uploaded_bytes: c.uploaded_bytes.load(Ordering::Relaxed),
        wasted_bytes: c.wasted_bytes(),
        waste: WasteStats {
            duplicate: c.waste(Waste::Duplicate),
            late: c.waste(Waste::Late),
            unrequested: c.waste(Waste::Unrequested),
            no_buffer: c.waste(Waste::NoBuffer),
            hash_failed: c.waste(Waste::HashFailed),
        },
        download_rate_bytes_per_s: rates.0,
        upload_rate_bytes_per_s: rates.1,
        peers: c.peers.load(Ordering::Relaxed),
        pieces_have: t.picker.num_have(),
        pieces_total: t.lengths.num_pieces(),
        hash_failures: c.hash_failures.load(Ordering::Relaxed),
        complete: t.complete.load(Ordering::Relaxed),
        paused: false,
    }
}

/// Every second: update rates and send a `Stats` alert per torrent.
pub(crate) fn start_ticker(inner: &Arc<Inner>) {
    let weak: Weak<Inner> = Arc::downgrade(inner);
    inner.control.runtime.spawn(async move {
        let period = Duration::from_secs(1);
        let mut interval = tokio::time::interval(period);
        interval.tick().await;
        loop {
            interval.tick().await;
            let Some(inner) = weak.upgrade() else { return };
            let torrents = inner.torrents.lock().unwrap_or_else(|e| e.into_inner());
            for e in torrents.iter() {
                e.control.tick(&e.shared, period);
                let stats = e.stats();
                inner.alerts.send(Alert::Stats {
                    id: TorrentId(e.shared.id),
                    stats,
                });
            }
        }
    });
}
