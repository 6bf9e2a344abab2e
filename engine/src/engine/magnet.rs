//! Adding a torrent from a magnet link (BEP 9): find peers (the link's `x.pe`, its trackers,
//! the DHT), fetch the info dictionary from those that have it (`crate::metadata` decides what
//! to ask whom and checks the result), then add the torrent as if from a .torrent file, under
//! the id the caller already got. Runs on the control thread's runtime with its own short-lived
//! connections; the shards and the data path see only the finished torrent.
//!
//! The fetched metadata is saved as `<resume dir>/<info-hash>.torrent`, so adding the same
//! magnet again (a restart) skips the fetch.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use super::add::{AddTorrent, TorrentSource};
use super::{Alert, EngineError, Inner, TorrentId};
use crate::api::DisconnectReason;
use crate::files::FilePriority;
use crate::magnet::Magnet;
use crate::metadata::{self, MetaEvent, MetadataFetch, MetadataPeer, Progress};
use crate::metainfo::Metainfo;
use crate::tracker::{Announcer, AnnouncerParams, TrackerEvent, TrackerList, Transfer};
use crate::types::InfoHash;

/// Metadata connections open at once per magnet.
pub const MAX_METADATA_CONNECTIONS: usize = 8;
/// Distinct addresses tried per magnet.
const MAX_CANDIDATES: usize = 1000;
/// A peer that has not said it has the metadata within this long is dropped.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// A metadata piece not delivered within this long is asked of someone else.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A magnet whose metadata is being fetched.
pub(crate) struct PendingMagnet {
    pub id: TorrentId,
    pub info_hash: InfoHash,
    task: tokio::task::AbortHandle,
}

impl PendingMagnet {
    pub fn cancel(&self) {
        self.task.abort();
    }
}

/// Where the metadata of `info_hash` is kept between runs.
pub(crate) fn saved_torrent_path(add: &AddTorrent, info_hash: &InfoHash) -> PathBuf {
    let dir = add
        .resume_dir
        .clone()
        .unwrap_or_else(|| add.download_dir.join(".ringtorrent"));
    dir.join(format!("{}.torrent", info_hash.to_hex()))
}

/// The saved metadata for this magnet, if it is there and matches.
fn load_saved(path: &Path, info_hash: &InfoHash) -> Option<Metainfo> {
    let bytes = std::fs::read(path).ok()?;
    let meta = Metainfo::from_bytes(&bytes).ok()?;
    (meta.info_hash == *info_hash).then_some(meta)
}

/// The add that follows the metadata: the magnet's peers, trackers and file selection
/// (BEP 53 `so`, unless the caller chose priorities), and a check of data already there.
fn finish_add(
    mut add: AddTorrent,
    meta: Metainfo,
    magnet: &Magnet,
    peers: Vec<SocketAddr>,
) -> AddTorrent {
    if add.file_priorities.is_empty() && magnet.select_only.is_some() {
        add.file_priorities = (0..meta.info.files.len() as u32)
            .map(|i| {
                if magnet.selects(i) {
                    FilePriority::Normal
                } else {
                    FilePriority::Skip
                }
            })
            .collect();
    }
    add.check_existing |= add.download_dir.join(&meta.info.name).exists();
    for p in peers {
        if !add.peers.contains(&p) {
            add.peers.push(p);
        }
    }
    add.source = TorrentSource::Metainfo(Box::new(meta));
    add
}

/// Starts fetching a magnet's metadata, or adds it at once if its metadata was saved.
pub(super) fn add_magnet(
    inner: &Arc<Inner>,
    mut add: AddTorrent,
    magnet: Magnet,
) -> Result<TorrentId, EngineError> {
    let ih = magnet.info_hash;
    let dup = lock(&inner.torrents)
        .iter()
        .any(|e| e.shared.info_hash == ih)
        || lock(&inner.magnets).iter().any(|m| m.info_hash == ih);
    if dup {
        return Err(EngineError::Duplicate(ih));
    }
    add.peers.extend(magnet.peers.iter().copied());
    add.trackers.extend(magnet.trackers.iter().cloned());
    let saved = saved_torrent_path(&add, &ih);
    if let Some(meta) = load_saved(&saved, &ih) {
        return super::add::add_torrent(inner, finish_add(add, meta, &magnet, Vec::new()), None);
    }
    let id = TorrentId(
        inner
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
    );
    let weak = Arc::downgrade(inner);
    let task = inner
        .control
        .runtime
        .spawn(run(weak, id, add, magnet, saved));
    lock(&inner.magnets).push(PendingMagnet {
        id,
        info_hash: ih,
        task: task.abort_handle(),
    });
    Ok(id)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the peer connections share.
struct Shared {
    fetch: Mutex<MetadataFetch>,
    done: watch::Sender<Option<Vec<u8>>>,
}

async fn run(weak: Weak<Inner>, id: TorrentId, add: AddTorrent, magnet: Magnet, saved: PathBuf) {
    let Some(inner) = weak.upgrade() else { return };
    let ih = magnet.info_hash;
    let (peer_tx, mut peer_rx) = mpsc::unbounded_channel::<Vec<SocketAddr>>();
    let _ = peer_tx.send(add.peers.clone());
    let announcer = (inner.config.use_trackers && !add.trackers.is_empty())
        .then(|| start_announcer(&inner, id, ih, &add.trackers, peer_tx.clone()));
    let dht = start_dht(&inner, id, ih, peer_tx.clone());
    let our_id = inner.our_id;
    let port = inner.listen_addr.port();
    let alerts = inner.alerts.clone();
    drop(inner);

    let (done_tx, mut done_rx) = watch::channel(None);
    let shared = Arc::new(Shared {
        fetch: Mutex::new(MetadataFetch::new(ih)),
        done: done_tx,
    });
    let (exit_tx, mut exit_rx) =
        mpsc::unbounded_channel::<(SocketAddr, u64, Option<DisconnectReason>)>();
    let mut seen: HashSet<SocketAddr> = HashSet::new();
    let mut queue: Vec<SocketAddr> = Vec::new();
    let mut active = 0usize;
    let mut next_key = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let info = loop {
        while active < MAX_METADATA_CONNECTIONS {
            let Some(addr) = queue.pop() else { break };
            next_key += 1;
            active += 1;
            let (shared, exit) = (shared.clone(), exit_tx.clone());
            let key = next_key;
            tokio::spawn(async move {
                let reason = fetch_from(addr, key, ih, our_id, port, &shared).await.err();
                lock(&shared.fetch).peer_gone(key);
                let _ = exit.send((addr, key, reason));
            });
        }
        tokio::select! {
            Some(peers) = peer_rx.recv() => {
                for p in peers {
                    if p.port() != 0 && seen.len() < MAX_CANDIDATES && seen.insert(p) {
                        queue.push(p);
                    }
                }
            }
            Some((addr, _key, reason)) = exit_rx.recv() => {
                active -= 1;
                if let Some(reason) = reason {
                    tracing::debug!(%addr, %reason, "metadata peer dropped");
                    alerts.send(Alert::PeerDisconnected { id, addr, reason });
                }
            }
            _ = done_rx.changed() => {
                if let Some(info) = done_rx.borrow().clone() {
                    break info;
                }
            }
            _ = tick.tick() => {
                let peers = lock(&shared.fetch).ready_peers();
                alerts.send(Alert::MetadataProgress { id, peers, connecting: active });
            }
        }
    };
    // Every connection ends on `done`; the announcer sends `stopped` when dropped, and the
    // DHT lookups stop (the torrent starts its own unless it turns out to be private).
    drop(announcer);
    drop(dht);
    let tiers: Vec<Vec<String>> = magnet.trackers.iter().map(|t| vec![t.clone()]).collect();
    let bytes = metadata::torrent_file(&info, &tiers);
    let meta = match Metainfo::from_bytes(&bytes) {
        Ok(m) => m,
        Err(e) => {
            alerts.send(Alert::TorrentError {
                id,
                message: format!("the fetched metadata is not a valid torrent: {e}"),
            });
            return;
        }
    };
    if let Err(e) = save(&saved, &bytes) {
        tracing::warn!(path = %saved.display(), error = %e, "cannot save the fetched metadata");
    }
    alerts.send(Alert::MetadataReceived {
        id,
        name: meta.info.name.clone(),
        info_hash: ih,
    });
    let peers: Vec<SocketAddr> = seen.into_iter().collect();
    let add = finish_add(add, meta, &magnet, peers);
    // Adding may hash-check existing data: not on the control thread.
    std::thread::spawn(move || {
        let Some(inner) = weak.upgrade() else { return };
        lock(&inner.magnets).retain(|m| m.id != id);
        if let Err(e) = super::add::add_torrent(&inner, add, Some(id)) {
            inner.alerts.send(Alert::TorrentError {
                id,
                message: e.to_string(),
            });
        }
    });
}

/// Writes the .torrent atomically (temp file, then rename).
fn save(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("torrent.tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// One metadata connection: handshakes, then requests until the fetch is done, the peer is
/// banned, or it fails. `Err` carries why the peer was dropped.
async fn fetch_from(
    addr: SocketAddr,
    key: u64,
    ih: InfoHash,
    our_id: crate::PeerId,
    port: u16,
    shared: &Shared,
) -> Result<(), DisconnectReason> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| DisconnectReason::ConnectTimeout)?
        .map_err(|e| DisconnectReason::ConnectFailed(e.kind()))?;
    let (mut rd, mut wr) = stream.into_split();
    let mut conn = MetadataPeer::new(ih, our_id, Some(port).filter(|&p| p != 0));
    let mut done = shared.done.subscribe();
    let mut buf = vec![0u8; 64 * 1024];
    let mut events = Vec::new();
    let started = Instant::now();
    let mut ready = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        if !conn.out.is_empty() {
            wr.write_all(&conn.out)
                .await
                .map_err(|e| DisconnectReason::SendFailed(e.kind()))?;
            conn.out.clear();
        }
        tokio::select! {
            n = rd.read(&mut buf) => {
                let n = n.map_err(|e| DisconnectReason::RecvFailed(e.kind()))?;
                if n == 0 {
                    return Err(DisconnectReason::Closed);
                }
                conn.feed(&buf[..n], &mut events)?;
            }
            _ = done.changed() => return Ok(()),
            _ = tick.tick() => {
                if !ready && started.elapsed() > READY_TIMEOUT {
                    return Err(DisconnectReason::NoMetadata("nothing offered in time"));
                }
                lock(&shared.fetch).expire(Instant::now(), REQUEST_TIMEOUT);
            }
        }
        let mut f = lock(&shared.fetch);
        for ev in events.drain(..) {
            match ev {
                MetaEvent::Ready { size } => {
                    ready = true;
                    f.peer_ready(key, size);
                }
                MetaEvent::Reject { piece } => f.on_reject(key, piece),
                MetaEvent::Data {
                    piece,
                    total_size,
                    data,
                } => match f.on_data(key, piece, total_size, &data) {
                    Progress::More => {}
                    Progress::Done(info) => {
                        let _ = shared.done.send(Some(info));
                        return Ok(());
                    }
                    Progress::HashMismatch { banned } if banned.contains(&key) => {
                        return Err(DisconnectReason::BadMetadata);
                    }
                    Progress::HashMismatch { .. } => {}
                },
            }
        }
        if f.is_banned(key) {
            return Err(DisconnectReason::BadMetadata);
        }
        for piece in f.requests(key, Instant::now()) {
            conn.request(piece);
        }
    }
}

/// Looks the magnet up in the DHT (BEP 5) now and periodically; peers go to the fetch. Whether the torrent is
/// private (BEP 27) is not known before its metadata: like other clients, a magnet is looked
/// up anyway, and the torrent it becomes is not.
fn start_dht(
    inner: &Arc<Inner>,
    id: TorrentId,
    ih: InfoHash,
    peers: mpsc::UnboundedSender<Vec<SocketAddr>>,
) -> Option<super::dht::DhtTracker> {
    let node = inner.dht.as_ref()?;
    let alerts = inner.alerts.clone();
    let sink = Arc::new(move |got: Vec<SocketAddr>| {
        alerts.send(Alert::DhtPeers {
            id,
            peers: got.len(),
        });
        let _ = peers.send(got);
    });
    // No announce: until the metadata is in, the shards would refuse peers that came for it.
    // The torrent announces itself once it is added.
    Some(node.track(&inner.control.runtime, ih, None, sink))
}

/// Announces the magnet to its trackers (`left` unknown: reported as 1 byte, so trackers count
/// us as a leecher); peers go to the fetch.
fn start_announcer(
    inner: &Arc<Inner>,
    id: TorrentId,
    ih: InfoHash,
    trackers: &[String],
    peers: mpsc::UnboundedSender<Vec<SocketAddr>>,
) -> crate::tracker::AnnouncerHandle {
    let alerts = inner.alerts.clone();
    let on_event = Arc::new(move |ev: TrackerEvent| match ev {
        TrackerEvent::Reply {
            url, peers: got, ..
        } => {
            alerts.send(Alert::TrackerReply {
                id,
                url,
                peers: got.len(),
            });
            let _ = peers.send(got);
        }
        TrackerEvent::Error { url, error } => alerts.send(Alert::TrackerError {
            id,
            url,
            message: error.to_string(),
        }),
    });
    let transfer = Arc::new(|| Transfer {
        uploaded: 0,
        downloaded: 0,
        left: 1,
    });
    let params = AnnouncerParams::new(
        ih,
        inner.our_id,
        inner.listen_addr.port(),
        transfer,
        on_event,
    );
    let tiers: Vec<Vec<String>> = trackers.iter().map(|t| vec![t.clone()]).collect();
    let list = TrackerList::new(tiers, &mut rand::rng());
    Announcer::spawn(&inner.control.runtime, list, params)
}
