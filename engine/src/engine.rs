//! The public API: [`Engine::start`], [`Engine::add_torrent`], the [`Alert`] stream,
//! [`Engine::stats`] and [`Engine::shutdown`].
//!
//! The handle is `Send + Sync` and can be used from any async runtime or none: shards run on
//! their own threads, the disk pipeline on its own, and trackers and the once-a-second stats
//! tick on a control thread with a private single-threaded tokio runtime.

mod add;
mod control;
mod dht;
mod files;
mod lifecycle;
mod lsd;
mod magnet;
mod manage;
mod persist;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::metainfo::Metainfo;
use crate::shard::{self, Command, ShardHandle};
use crate::torrent::TorrentShared;
use crate::types::PeerId;

pub use crate::api::{
    Alert, AlertSink, Backend, ShardStats, TorrentId, TorrentStats, TransportMode, WasteStats,
    ZeroCopyUploads,
};
pub use crate::mse::EncryptionPolicy;
pub use add::{AddTorrent, TorrentSource};
pub use dht::{DhtConfig, DEFAULT_BOOTSTRAP as DEFAULT_DHT_BOOTSTRAP};
pub use manage::{RemoveData, TorrentSummary};

/// Engine settings. `Config::default()` suits a desktop or server; tests lower the sizes.
#[derive(Debug, Clone)]
pub struct Config {
    /// Shard threads, each with its own ring. Default: the number of cores.
    pub shards: usize,
    /// Where shards accept peers (one SO_REUSEPORT listener per shard). Port 0 picks one.
    /// Default `[::]:0`: dual-stack, falling back to IPv4 where IPv6 is off.
    pub listen: SocketAddr,
    /// SHA-1 threads of the disk pipeline. Default: the number of cores.
    pub hash_threads: usize,
    /// Memory for pieces being downloaded, hashed or written (pre-touched once, reused),
    /// shared by every torrent of the engine with the same piece length (one pool per piece
    /// length). When it is all in use, shards stop requesting new pieces until the disk
    /// catches up.
    pub buffer_pool_bytes: usize,
    /// Provided receive buffers per shard ring (io_uring's buffer ring; the epoll backend
    /// reads into buffers of the same size).
    pub recv_buffers: u16,
    /// Size in bytes of each receive buffer.
    pub recv_buffer_len: usize,
    /// Most handshaken peers per torrent; further connections are closed after the handshake.
    pub max_peers_per_torrent: u32,
    /// Use the epoll backend even where io_uring works (also: `RINGTORRENT_NO_URING=1`).
    pub force_portable: bool,
    /// Our peer id; random Azureus-style by default.
    pub peer_id: Option<PeerId>,
    /// Announce to the torrent's trackers.
    pub use_trackers: bool,
    /// Exchange peers with peers (BEP 11); never on private torrents.
    pub pex: bool,
    /// Local service discovery (BEP 14): announce public torrents to the local network's
    /// multicast group and connect to peers heard there. On the listen address's interface
    /// when it is a specific IPv4 address.
    pub lsd: bool,
    /// Global upload rate limit in bytes per second over all torrents (0 = none). Can be
    /// changed later with [`Engine::set_rate_limits`].
    pub upload_rate_limit: u64,
    /// Global download rate limit in bytes per second over all torrents (0 = none).
    pub download_rate_limit: u64,
    /// Regular upload slots per torrent (BEP 3 choking; one optimistic slot comes on top).
    pub upload_slots: usize,
    /// Which peers get blocks from the page cache with `sendfile` (no read, no copy here).
    pub zero_copy_uploads: ZeroCopyUploads,
    /// BEP 5 DHT. On by default with the public routers as bootstrap; tests must turn it off
    /// or give loopback nodes ([`DhtConfig::disabled`], [`DhtConfig::with_bootstrap`]).
    pub dht: DhtConfig,
    /// MSE/PE (message stream encryption). `Prefer` (the default): incoming connections may
    /// be plain or encrypted, outgoing ones open plain and are redialed with the encrypted
    /// handshake if the peer closes a plain one (plaintext payload is picked when the peer
    /// allows it, so the default costs no RC4). `Require`: RC4 only, both ways. `Disable`:
    /// plain handshakes only.
    pub encryption: EncryptionPolicy,
    /// Carriers of outgoing connections: TCP, uTP (BEP 29), or both (the default: TCP first,
    /// uTP for an address that does not take TCP). Incoming uTP and TCP are always accepted,
    /// uTP on the same port as TCP.
    pub transports: TransportMode,
}

impl Default for Config {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Config {
            shards: cores,
            listen: SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
            hash_threads: cores,
            buffer_pool_bytes: 96 << 20,
            recv_buffers: 128,
            recv_buffer_len: 64 << 10,
            max_peers_per_torrent: 64,
            force_portable: false,
            peer_id: None,
            use_trackers: true,
            pex: true,
            lsd: true,
            upload_rate_limit: 0,
            download_rate_limit: 0,
            upload_slots: 4,
            zero_copy_uploads: ZeroCopyUploads::default(),
            dht: DhtConfig::default(),
            encryption: EncryptionPolicy::default(),
            transports: TransportMode::default(),
        }
    }
}

/// The engine's errors, by who is at fault.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The .torrent's bytes are not a valid metainfo file.
    #[error("bad torrent: {0}")]
    BadTorrent(#[from] crate::metainfo::MetainfoError),
    /// The .torrent file ([`TorrentSource::File`]) could not be read.
    #[error("cannot read {path}: {source}")]
    ReadTorrent {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The torrent's files (or the disk pipeline) could not be set up.
    #[error("storage: {0}")]
    Storage(#[from] uring_disk::StorageError),
    /// [`Config::listen`] could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The OS refused to start one of the engine's threads.
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
    /// A torrent with this info-hash is already in the engine (or being fetched as a magnet).
    #[error("torrent {0} already added")]
    Duplicate(crate::InfoHash),
    /// The id names no torrent of this engine (never added, or removed).
    #[error("no such torrent {0}")]
    NoSuchTorrent(TorrentId),
    /// A file index past the torrent's file list.
    #[error("no file {file}: the torrent has {files} files")]
    NoSuchFile {
        /// The index asked for.
        file: usize,
        /// How many files the torrent has.
        files: usize,
    },
    /// Something the engine did not expect (a thread gone, a save or delete that failed);
    /// the message says what.
    #[error("internal error: {0}")]
    Internal(String),
    /// The engine stopped before it could answer.
    #[error("engine is shut down")]
    ShutDown,
    /// The shutdown finished, but these torrents' last state is not on disk (their verified
    /// data is; a rerun rechecks what the resume file does not record).
    #[error("saving resume data at shutdown failed: {}", .0.join("; "))]
    ShutdownSave(Vec<String>),
}

pub(crate) struct TorrentEntry {
    pub shared: Arc<TorrentShared>,
    pub control: control::TorrentControl,
    pub files: files::TorrentFiles,
    pub resume: Arc<persist::ResumeState>,
    pub paused: std::sync::atomic::AtomicBool,
}

impl TorrentEntry {
    /// A stats snapshot, with this entry's rates and paused flag.
    pub(crate) fn stats(&self) -> TorrentStats {
        let mut stats = control::stats_of(&self.shared, self.control.rates());
        stats.paused = self.paused.load(Ordering::Acquire);
        stats
    }
}

pub(crate) struct Inner {
    pub config: Config,
    pub our_id: PeerId,
    pub listen_addr: SocketAddr,
    /// What the shards run on (fixed when they start).
    pub backend: Backend,
    pub shards: Mutex<Vec<ShardHandle>>,
    pub disk: Arc<uring_disk::DiskPipeline>,
    /// Piece buffers, one pool per piece length, shared by every torrent with that length
    /// (created and pre-touched by the first; [`Config::buffer_pool_bytes`] each).
    pub pools: Mutex<std::collections::HashMap<usize, Arc<uring_disk::BufferPool>>>,
    /// The engine's rate limits, shared with every shard ([`Engine::set_rate_limits`]).
    pub global_limits: Arc<crate::ratelimit::RateLimits>,
    pub torrents: Mutex<Vec<TorrentEntry>>,
    pub next_id: AtomicU64,
    pub next_shard: AtomicU64,
    pub alerts: AlertSink,
    pub alert_rx: Mutex<Option<mpsc::UnboundedReceiver<Alert>>>,
    pub control: control::ControlHandle,
    /// Magnets whose metadata is being fetched (their ids are reserved).
    pub magnets: Mutex<Vec<magnet::PendingMagnet>>,
    /// The DHT node, if enabled and started (it may still be binding).
    pub dht: Option<Arc<dht::DhtNode>>,
    /// The resume saver thread and its stop channel.
    pub saver: Mutex<Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>>,
}

impl Inner {
    /// The piece-buffer pool for pieces of `piece_len` bytes: shared by the torrents of the
    /// session, so a batch of torrents costs one pool, not one each (at least 8 buffers).
    pub(crate) fn buffer_pool(&self, piece_len: usize) -> Arc<uring_disk::BufferPool> {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools
            .entry(piece_len)
            .or_insert_with(|| {
                let count = (self.config.buffer_pool_bytes / piece_len.max(1)).max(8);
                uring_disk::BufferPool::new(piece_len, count)
            })
            .clone()
    }

    /// Runs `f` on torrent `id`'s entry with the torrent list locked.
    pub(crate) fn with_torrent<R>(
        &self,
        id: TorrentId,
        f: impl FnOnce(&TorrentEntry) -> R,
    ) -> Result<R, EngineError> {
        let torrents = self.torrents.lock().unwrap_or_else(|e| e.into_inner());
        let entry = torrents
            .iter()
            .find(|e| e.shared.id == id.0)
            .ok_or(EngineError::NoSuchTorrent(id))?;
        Ok(f(entry))
    }
}

/// A running engine. Cloning shares it.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// Starts the disk pipeline, the shards and the control thread.
    pub fn start(config: Config) -> Result<Engine, EngineError> {
        raise_open_file_limit();
        let our_id = config.peer_id.unwrap_or_else(PeerId::generate);
        let (tx, rx) = mpsc::unbounded_channel();
        let alerts = AlertSink(tx);
        let disk = Arc::new(uring_disk::DiskPipeline::start(uring_disk::DiskConfig {
            hash_threads: config.hash_threads.max(1),
            ..Default::default()
        })?);
        let listeners = add::listeners(config.listen, config.shards.max(1))?;
        let listen_addr = listeners.1;
        let mut shards = Vec::new();
        let global_limits = Arc::new(crate::ratelimit::RateLimits::new(
            config.upload_rate_limit,
            config.download_rate_limit,
        ));
        let shard_count = listeners.0.len();
        let mut udp = add::udp_sockets(listen_addr, shard_count);
        for (index, listener) in listeners.0.into_iter().enumerate() {
            let cfg = shard::ShardConfig {
                index,
                shards: shard_count,
                listener: Some(listener),
                udp: udp.next(),
                transports: config.transports,
                recv_buffers: config.recv_buffers,
                recv_buffer_len: config.recv_buffer_len,
                force_portable: config.force_portable,
                bind_ip: Some(listen_addr.ip()).filter(|ip| !ip.is_unspecified()),
                alerts: alerts.clone(),
                disk: disk.clone(),
                global_limits: global_limits.clone(),
                upload_slots: config.upload_slots.max(1),
                zero_copy_uploads: config.zero_copy_uploads,
                encryption: config.encryption,
            };
            shards.push(shard::spawn(cfg).map_err(EngineError::Thread)?);
        }
        let backend = if shards.iter().all(|s| s.backend == Backend::IoUring) {
            Backend::IoUring
        } else {
            Backend::Epoll
        };
        let control = control::ControlHandle::spawn().map_err(EngineError::Thread)?;
        // Never fails the start: a DHT that cannot run logs a warning and stays off.
        let dht = dht::DhtNode::start(&config.dht, listen_addr);
        let inner = Arc::new(Inner {
            config,
            our_id,
            listen_addr,
            backend,
            shards: Mutex::new(shards),
            disk,
            pools: Mutex::new(std::collections::HashMap::new()),
            global_limits,
            torrents: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            next_shard: AtomicU64::new(0),
            alerts,
            alert_rx: Mutex::new(Some(rx)),
            control,
            magnets: Mutex::new(Vec::new()),
            dht,
            saver: Mutex::new(None),
        });
        control::start_ticker(&inner);
        if inner.config.lsd {
            lsd::start(&inner);
        }
        let (stop_tx, stop_rx) = std::sync::mpsc::channel();
        let saver = persist::spawn_saver(Arc::downgrade(&inner), RESUME_SAVE_PERIOD, stop_rx)
            .map_err(EngineError::Thread)?;
        *inner.saver.lock().unwrap_or_else(|e| e.into_inner()) = Some((stop_tx, saver));
        Ok(Engine { inner })
    }

    /// The address peers can reach us at (the actual port if 0 was asked for).
    pub fn listen_addr(&self) -> SocketAddr {
        self.inner.listen_addr
    }

    /// The DHT node's UDP address, once it runs (`None` while it starts, or without a DHT).
    pub fn dht_addr(&self) -> Option<SocketAddr> {
        self.inner.dht.as_ref().and_then(|d| d.local_addr())
    }

    /// How many nodes the DHT's routing table holds (0 while the node starts, has not joined,
    /// or without a DHT).
    pub async fn dht_nodes(&self) -> usize {
        match &self.inner.dht {
            Some(d) => d.table_size().await,
            None => 0,
        }
    }

    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        self.inner.our_id
    }

    /// The ring driver the shards run on: [`Backend::IoUring`] only if every shard does.
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// The alert stream. It can be taken once; later calls return `None`.
    pub fn alerts(&self) -> Option<mpsc::UnboundedReceiver<Alert>> {
        self.inner
            .alert_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Adds a torrent and starts downloading it.
    pub fn add_torrent(&self, add: AddTorrent) -> Result<TorrentId, EngineError> {
        add::add_torrent(&self.inner, add, None)
    }

    /// Dials more peers for a torrent.
    pub fn add_peers(&self, id: TorrentId, peers: &[SocketAddr]) -> Result<(), EngineError> {
        self.inner.with_torrent(id, |entry| {
            entry.control.add_known_peers(peers);
            if !entry.paused.load(Ordering::Acquire) {
                connect_peers(&self.inner, &entry.shared, peers);
            }
        })
    }

    /// Pauses a torrent: its connections close (their piece claims return to the picker),
    /// the trackers are told `stopped`, and its resume file is saved. Blocks until saved (call
    /// it from `spawn_blocking` in async code if that matters). Pausing twice is harmless.
    pub fn pause(&self, id: TorrentId) -> Result<(), EngineError> {
        lifecycle::pause(&self.inner, id, None)
    }

    /// Resumes a paused torrent (also one paused by a storage error, once space is freed):
    /// it announces again and redials the peers it knew.
    pub fn resume(&self, id: TorrentId) -> Result<(), EngineError> {
        lifecycle::resume(&self.inner, id)
    }

    /// Saves a torrent's resume file now (durably; see `persist.rs`). Blocks until done.
    pub fn save_resume(&self, id: TorrentId) -> Result<(), EngineError> {
        let (t, st) = torrent_states(&self.inner)
            .into_iter()
            .find(|(t, _)| t.id == id.0)
            .ok_or(EngineError::NoSuchTorrent(id))?;
        st.save(&self.inner, &t)
            .map_err(|e| EngineError::Internal(format!("saving resume data: {e}")))
    }

    /// Progress of one torrent.
    pub fn stats(&self, id: TorrentId) -> Option<TorrentStats> {
        self.inner.with_torrent(id, TorrentEntry::stats).ok()
    }

    /// The tracker tiers the torrent announces to: its own, then those its resume file
    /// remembered, then [`AddTorrent::trackers`] (duplicates and unusable URLs dropped).
    pub fn trackers(&self, id: TorrentId) -> Option<Vec<Vec<String>>> {
        self.inner
            .with_torrent(id, |e| e.shared.trackers().to_vec())
            .ok()
    }

    /// The torrent's metainfo.
    pub fn metainfo(&self, id: TorrentId) -> Option<Arc<Metainfo>> {
        self.inner.with_torrent(id, |e| e.shared.meta.clone()).ok()
    }

    /// A .torrent file for the torrent: its info dictionary byte for byte, with the tracker
    /// tiers it announces to (for a magnet, what `--save-torrent` writes).
    pub fn torrent_file(&self, id: TorrentId) -> Option<Vec<u8>> {
        self.inner
            .with_torrent(id, |e| {
                crate::metadata::torrent_file(&e.shared.meta.info_bytes, e.shared.trackers())
            })
            .ok()
    }

    /// Stops everything: trackers are told `stopped`, queued disk writes finish, peers close.
    pub async fn shutdown(self) -> Result<(), EngineError> {
        let inner = self.inner.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("rt-shutdown".into())
            .spawn(move || {
                let _ = tx.send(shutdown_blocking(&inner));
            })
            .map_err(EngineError::Thread)?;
        let failures = rx.await.map_err(|_| EngineError::ShutDown)?;
        if failures.is_empty() {
            Ok(())
        } else {
            Err(EngineError::ShutdownSave(failures))
        }
    }
}

/// How often torrents that verified pieces save their resume file.
const RESUME_SAVE_PERIOD: std::time::Duration = std::time::Duration::from_secs(3);

/// Every torrent with its resume state, cloned out of the lock.
pub(crate) fn torrent_states(
    inner: &Inner,
) -> Vec<(Arc<TorrentShared>, Arc<persist::ResumeState>)> {
    let t = inner.torrents.lock().unwrap_or_else(|e| e.into_inner());
    t.iter()
        .map(|e| (e.shared.clone(), e.resume.clone()))
        .collect()
}

/// Stops everything; returns what could not be saved or finished (one line per failure).
fn shutdown_blocking(inner: &Inner) -> Vec<String> {
    let mut failures = Vec::new();
    for m in inner
        .magnets
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain(..)
    {
        m.cancel();
    }
    let saver = inner.saver.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some((stop, thread)) = saver {
        drop(stop);
        let _ = thread.join();
    }
    let torrents: Vec<Arc<TorrentShared>> = {
        let t = inner.torrents.lock().unwrap_or_else(|e| e.into_inner());
        t.iter().map(|e| e.shared.clone()).collect()
    };
    for t in &torrents {
        t.stopped.store(true, Ordering::Release);
    }
    let mut shards = std::mem::take(&mut *inner.shards.lock().unwrap_or_else(|e| e.into_inner()));
    for s in &shards {
        s.send(Command::Shutdown);
    }
    for s in shards.iter_mut() {
        if let Some(h) = s.thread.take() {
            let _ = h.join();
        }
    }
    let announcers: Vec<_> = {
        let entries = inner.torrents.lock().unwrap_or_else(|e| e.into_inner());
        entries.iter().map(|e| e.control.take_announcer()).collect()
    };
    for a in announcers {
        control::stop_announcer(a, &inner.control.runtime);
    }
    // Shards are gone, so nothing new is submitted: wait (bounded) for the pieces already
    // queued to be hashed and written, so that the last save records all of them (see
    // persist.rs for why it is durable).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while inner.disk.queued_bytes() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    for (t, st) in torrent_states(inner) {
        if let Err(e) = st.save(inner, &t) {
            tracing::warn!("torrent {}: saving resume data failed: {e}", t.id);
            failures.push(format!("torrent {}: {e}", t.id));
        }
    }
    for t in &torrents {
        if let Err(e) = inner.disk.remove_torrent(t.disk_slot) {
            tracing::warn!("torrent {}: finishing disk writes failed: {e}", t.id);
            failures.push(format!("torrent {}: finishing disk writes: {e}", t.id));
        }
    }
    // Last: nothing the DHT does can delay the saves above.
    stop_dht(inner);
    inner.control.shutdown();
    failures
}

/// Stops every torrent's DHT lookups, saves the routing table (if a state file is set) and
/// stops the node.
fn stop_dht(inner: &Inner) {
    let Some(node) = &inner.dht else { return };
    let trackers: Vec<_> = {
        let entries = inner.torrents.lock().unwrap_or_else(|e| e.into_inner());
        entries.iter().map(|e| e.control.take_dht()).collect()
    };
    drop(trackers);
    match node.save() {
        Ok(n) if n > 0 => tracing::debug!(nodes = n, "DHT state saved"),
        Ok(_) => {}
        Err(e) => tracing::warn!("saving the DHT state failed: {e}"),
    }
    node.stop();
}

/// Hands peer addresses to shards round-robin.
pub(crate) fn connect_peers(inner: &Inner, t: &Arc<TorrentShared>, peers: &[SocketAddr]) {
    let shards = inner.shards.lock().unwrap_or_else(|e| e.into_inner());
    if shards.is_empty() {
        return;
    }
    for &addr in peers {
        let ours = addr.port() == inner.listen_addr.port()
            && (inner.listen_addr.ip().is_unspecified() || addr.ip() == inner.listen_addr.ip());
        if ours || addr.port() == 0 {
            continue;
        }
        let i = inner.next_shard.fetch_add(1, Ordering::Relaxed) as usize % shards.len();
        shards[i].send(Command::Connect {
            torrent: t.id,
            addr,
        });
    }
}

#[cfg(test)]
mod pool_tests;
/// Raises the soft open-file limit to the hard one, as servers do: every file of a running
/// torrent stays open, and every peer is a socket. Failure leaves the limit as it was.
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        let raised = rustix::process::Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!("cannot raise the open-file limit: {e}");
        }
    }
}

#[cfg(test)]
mod zero_copy_tests {
    use super::ZeroCopyUploads;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_peers_on_other_hosts_get_sendfile_by_default() {
        let d = ZeroCopyUploads::default();
        let own = Some(ip("10.0.0.5"));
        assert!(d.allows(ip("10.0.0.6"), own));
        assert!(d.allows(ip("2001:db8::1"), None));
        assert!(!d.allows(ip("127.0.0.3"), own));
        assert!(!d.allows(ip("::1"), own));
        assert!(!d.allows(ip("::ffff:127.0.0.1"), None), "mapped loopback");
        assert!(!d.allows(ip("10.0.0.5"), own), "our own address");
        assert!(
            !d.allows(ip("::ffff:10.0.0.5"), own),
            "our own address, mapped"
        );
        assert!(ZeroCopyUploads::Always.allows(ip("127.0.0.3"), own));
        assert!(!ZeroCopyUploads::Never.allows(ip("10.0.0.6"), own));
        assert_eq!("always".parse(), Ok(ZeroCopyUploads::Always));
        assert_eq!("remote".parse(), Ok(ZeroCopyUploads::RemotePeers));
        assert!("sometimes".parse::<ZeroCopyUploads>().is_err());
    }
}
