//! BEP 5 DHT: one node of the mainline DHT for the whole engine, run by the `mainline` crate on
//! a thread of its own, and the per-torrent lookups that feed it peers.
//!
//! - [`DhtNode::start`] returns at once: a helper thread resolves the bootstrap names (and the
//!   nodes saved in the state file), then binds the node's UDP socket. Until then lookups wait;
//!   if it fails, a warning is logged and the engine runs without a DHT.
//! - [`DhtNode::track`] runs on the control runtime (no blocking call there: the node is driven
//!   through `mainline`'s async API): `get_peers` at once, again every [`LOOKUP_INTERVAL`] or
//!   every [`RETRY_INTERVAL`] while nothing was found, each followed by `announce_peer` with our
//!   listen port. Dropping the returned [`DhtTracker`] stops it.
//! - Peers' PORT messages reach the node through the [`DhtLink`] it shares with public
//!   torrents, which also tells their handshakes our port while the node answers queries
//!   (server mode: from the start with [`DhtConfig::server`], else once `mainline` finds the
//!   node reachable). A node that only asks is not advertised: peers could not use it. `mainline` cannot insert a node
//!   into a running table, so the start thread stays on as the node's keeper: while the table
//!   is empty (the bootstrap nodes are gone or unreachable) and peers announced new nodes, it
//!   restarts the node on the same port with those nodes as its bootstrap. Learned nodes are
//!   also saved with the table.
//! - [`DhtNode::save`] writes the routing table's nodes to the state file (temp file + rename),
//!   so the next start bootstraps from them too.
//!
//! BEP 27: private torrents are never tracked (the caller checks; see `control.rs`).

use std::collections::HashSet;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::future::block_on;
use futures_lite::StreamExt as _;
use tokio::sync::watch;

use crate::torrent::DhtLink;
use crate::types::InfoHash;

/// The routers a node bootstraps from when nothing else is given (real users only: tests must
/// always pass their own loopback nodes).
pub const DEFAULT_BOOTSTRAP: [&str; 4] = [
    "router.bittorrent.com:6881",
    "dht.transmissionbt.com:6881",
    "router.utorrent.com:6881",
    "dht.libtorrent.org:25401",
];

/// How often a torrent with peers looks itself up again (and re-announces).
pub const LOOKUP_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// How soon a lookup that found no peer is tried again.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(15);
/// Longest a `get_peers` or `announce_peer` query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);
/// Most distinct peers taken from one lookup.
const MAX_PEERS_PER_LOOKUP: usize = 1000;
/// Most nodes read from or written to the state file, and its largest size read.
const MAX_STATE_NODES: usize = 1000;
const MAX_STATE_BYTES: u64 = 64 << 10;
/// How often the keeper looks at the table, and how long it waits between tries at binding
/// the port again while the replaced node lets go of it.
const KEEP_INTERVAL: Duration = Duration::from_secs(2);
const REBIND_TRIES: u32 = 20;
const REBIND_BACKOFF: Duration = Duration::from_millis(500);
/// Attempts at resolving the bootstrap names before starting without them.
const RESOLVE_ATTEMPTS: u32 = 3;
const RESOLVE_BACKOFF: Duration = Duration::from_secs(5);

/// DHT settings ([`crate::Config::dht`]).
#[derive(Debug, Clone)]
pub struct DhtConfig {
    /// Run a DHT node and look torrents up in it (never private ones).
    pub enabled: bool,
    /// `HOST:PORT` nodes to join the DHT through. Default: [`DEFAULT_BOOTSTRAP`].
    pub bootstrap: Vec<String>,
    /// UDP port of the node; 0 picks any free one.
    pub port: u16,
    /// Answer other nodes' queries from the start. Otherwise (the default) the node only asks
    /// until `mainline` finds it reachable and switches it to answering ("server mode").
    pub server: bool,
    /// Address the node binds to (IPv4 only). `None`: the engine's listen address if it is a
    /// specific one, else all interfaces.
    pub bind_ip: Option<IpAddr>,
    /// Where the routing table is kept between runs: its nodes are added to `bootstrap` at
    /// start and written back at shutdown.
    pub state_file: Option<PathBuf>,
}

impl Default for DhtConfig {
    fn default() -> Self {
        DhtConfig {
            enabled: true,
            bootstrap: DEFAULT_BOOTSTRAP.iter().map(|s| s.to_string()).collect(),
            port: 0,
            server: false,
            bind_ip: None,
            state_file: None,
        }
    }
}

impl DhtConfig {
    /// No DHT.
    pub fn disabled() -> Self {
        DhtConfig {
            enabled: false,
            bootstrap: Vec::new(),
            ..DhtConfig::default()
        }
    }

    /// A DHT joined only through `bootstrap` (e.g. nodes on loopback).
    pub fn with_bootstrap(bootstrap: Vec<String>) -> Self {
        DhtConfig {
            bootstrap,
            ..DhtConfig::default()
        }
    }
}

/// Why the DHT could not start or save.
#[derive(Debug, thiserror::Error)]
pub enum DhtError {
    #[error("the DHT runs on IPv4 only; cannot bind it to {0}")]
    Ipv6Only(IpAddr),
    #[error("cannot bind the DHT socket to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the DHT thread: {0}")]
    Thread(std::io::Error),
    #[error("DHT state file {path}: {source}")]
    StateFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the DHT is not running")]
    NotRunning,
}

/// Where peers found for a torrent go.
pub(crate) type PeerSink = Arc<dyn Fn(Vec<SocketAddr>) + Send + Sync>;

#[derive(Clone)]
enum NodeState {
    Starting,
    Running {
        dht: mainline::Dht,
        addr: SocketAddrV4,
    },
    /// Failed to start, or stopped at shutdown.
    Off,
}

/// The engine's DHT node.
pub(crate) struct DhtNode {
    state: watch::Sender<NodeState>,
    state_file: Option<PathBuf>,
    /// Shared with public torrents: our port for their handshakes, nodes from PORT messages.
    link: Arc<DhtLink>,
}

/// A torrent's lookups; dropping it stops them.
pub(crate) struct DhtTracker {
    task: tokio::task::AbortHandle,
}

impl Drop for DhtTracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DhtNode {
    /// Starts the node in the background; `None` if the DHT is off or cannot run here (with a
    /// warning). Never blocks on the network.
    pub(crate) fn start(config: &DhtConfig, listen: SocketAddr) -> Option<Arc<DhtNode>> {
        if !config.enabled {
            return None;
        }
        let ip = match bind_ipv4(config.bind_ip, listen) {
            Ok(ip) => ip,
            Err(e) => {
                tracing::warn!("DHT off: {e}");
                return None;
            }
        };
        let node = Arc::new(DhtNode {
            state: watch::Sender::new(NodeState::Starting),
            state_file: config.state_file.clone(),
            link: Arc::new(DhtLink::new()),
        });
        let mut names = config.bootstrap.clone();
        if let Some(path) = &config.state_file {
            names.extend(load_state(path).into_iter().map(|a| a.to_string()));
        }
        let (port, server, starter) = (config.port, config.server, node.clone());
        let spawned = std::thread::Builder::new()
            .name("rt-dht-start".into())
            .spawn(move || starter.run_start(&names, ip, port, server));
        if let Err(e) = spawned {
            tracing::warn!("DHT off: {}", DhtError::Thread(e));
            return None;
        }
        Some(node)
    }

    /// On the start thread: resolve, bind, publish; then keep the node joined.
    fn run_start(&self, names: &[String], ip: Ipv4Addr, port: u16, server: bool) {
        let bootstrap = resolve_all(names, || {
            matches!(*self.state.borrow(), NodeState::Starting)
        });
        let addr = match self.build(ip, port, server, &bootstrap) {
            Ok(addr) => addr,
            Err(e) => {
                tracing::warn!("DHT off: {e}");
                self.state.send_replace(NodeState::Off);
                return;
            }
        };
        tracing::info!(%addr, bootstrap = bootstrap.len(), "DHT node running");
        self.keep(ip, addr.port(), server, &bootstrap);
    }

    /// Builds a node bound to `ip:port` and publishes it (unless the engine stopped meanwhile:
    /// then the node is dropped here and its thread ends).
    fn build(
        &self,
        ip: Ipv4Addr,
        port: u16,
        server: bool,
        bootstrap: &[SocketAddrV4],
    ) -> Result<SocketAddrV4, DhtError> {
        let mut builder = mainline::Dht::builder();
        builder.bind_address(ip).port(port).bootstrap(bootstrap);
        if server {
            builder.server_mode();
        }
        let dht = builder.build().map_err(|source| DhtError::Bind {
            addr: SocketAddr::from((ip, port)),
            source,
        })?;
        let info =
            on_node(|| block_on(dht.clone().as_async().info())).ok_or(DhtError::NotRunning)?;
        let addr = info.local_addr();
        let published = self.state.send_if_modified(|s| match s {
            NodeState::Starting => {
                *s = NodeState::Running { dht, addr };
                true
            }
            _ => false,
        });
        if published && info.server_mode() {
            self.link.set_port(addr.port());
        }
        Ok(addr)
    }

    /// The keeper (see the module documentation): returns when the node stops.
    fn keep(&self, ip: Ipv4Addr, port: u16, server: bool, bootstrap: &[SocketAddrV4]) {
        let mut seen = 0;
        loop {
            std::thread::sleep(KEEP_INTERVAL);
            let dht = match &*self.state.borrow() {
                NodeState::Running { dht, .. } => dht.clone(),
                _ => return,
            };
            // Advertised from when the node answers queries.
            if self.link.port().is_none() {
                match on_node(|| block_on(dht.clone().as_async().info())) {
                    Some(info) if info.server_mode() => self.link.set_port(port),
                    Some(_) => {}
                    None => return,
                }
            }
            let generation = self.link.generation();
            if generation == seen {
                continue;
            }
            seen = generation;
            let table = on_node(|| block_on(dht.clone().as_async().to_bootstrap()));
            if !table.is_some_and(|t| t.is_empty()) {
                continue;
            }
            let mut nodes: Vec<SocketAddrV4> = self
                .link
                .learned()
                .into_iter()
                .filter_map(|a| match a {
                    SocketAddr::V4(v4) => Some(v4),
                    SocketAddr::V6(_) => None,
                })
                .collect();
            nodes.extend_from_slice(bootstrap);
            // Lookups wait while the node is replaced; the old one's thread ends once the
            // last lookup holding it lets go, freeing the port.
            let replacing = self.state.send_if_modified(|s| match s {
                NodeState::Running { .. } => {
                    *s = NodeState::Starting;
                    true
                }
                _ => false,
            });
            drop(dht);
            if !replacing {
                return;
            }
            self.link.set_port(0);
            tracing::info!(
                learned = nodes.len() - bootstrap.len(),
                "DHT table empty: rejoining through nodes peers announced"
            );
            if let Err(e) = self.rebuild(ip, port, server, &nodes) {
                tracing::warn!("DHT off: {e}");
                self.link.set_port(0);
                self.state.send_replace(NodeState::Off);
                return;
            }
        }
    }

    /// Builds the node again on `port`, waiting for the replaced one to let go of it.
    fn rebuild(
        &self,
        ip: Ipv4Addr,
        port: u16,
        server: bool,
        bootstrap: &[SocketAddrV4],
    ) -> Result<(), DhtError> {
        let mut tries = 0;
        loop {
            if !matches!(*self.state.borrow(), NodeState::Starting) {
                return Ok(());
            }
            match self.build(ip, port, server, bootstrap) {
                Ok(_) => return Ok(()),
                Err(DhtError::Bind { source, .. })
                    if source.kind() == std::io::ErrorKind::AddrInUse && tries < REBIND_TRIES =>
                {
                    tries += 1;
                    std::thread::sleep(REBIND_BACKOFF);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The link public torrents hold to this node ([`crate::torrent::TorrentShared::set_dht`]).
    pub(crate) fn link(&self) -> Arc<DhtLink> {
        self.link.clone()
    }

    /// The node's UDP address once it runs.
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        match &*self.state.borrow() {
            NodeState::Running { addr, .. } => Some(SocketAddr::V4(*addr)),
            _ => None,
        }
    }

    /// The routing table's size (0 unless the node runs).
    pub(crate) async fn table_size(&self) -> usize {
        let dht = match &*self.state.borrow() {
            NodeState::Running { dht, .. } => dht.clone(),
            _ => return 0,
        };
        dht.as_async().to_bootstrap().await.len()
    }

    /// Looks `info_hash` up now and periodically on `runtime`, handing new peers to `sink`,
    /// and announces `announce_port` (our listen port) after each lookup if given.
    pub(crate) fn track(
        &self,
        runtime: &tokio::runtime::Handle,
        info_hash: InfoHash,
        announce_port: Option<u16>,
        sink: PeerSink,
    ) -> DhtTracker {
        let state = self.state.subscribe();
        let task = runtime.spawn(track_loop(state, info_hash, announce_port, sink));
        DhtTracker {
            task: task.abort_handle(),
        }
    }

    /// Writes the routing table's nodes (if the node runs) and the nodes learned from peers to
    /// the state file; returns how many (0 and no write when there are none). Blocks briefly on
    /// the node's thread: not for async contexts.
    pub(crate) fn save(&self) -> Result<usize, DhtError> {
        let Some(path) = &self.state_file else {
            return Ok(0);
        };
        let dht = match &*self.state.borrow() {
            NodeState::Running { dht, .. } => Some(dht.clone()),
            _ => None,
        };
        let table = dht
            .and_then(|dht| on_node(|| block_on(dht.as_async().to_bootstrap())))
            .unwrap_or_default();
        let mut nodes: Vec<SocketAddr> = table.iter().filter_map(|s| s.parse().ok()).collect();
        nodes.extend(self.link.learned());
        if nodes.is_empty() {
            // Offline, or nothing learned: keep the nodes an earlier run saved.
            return Ok(0);
        }
        let text = encode_state(&nodes);
        write_atomically(path, text.as_bytes()).map_err(|source| DhtError::StateFile {
            path: path.clone(),
            source,
        })?;
        Ok(text.lines().filter(|l| !l.starts_with('#')).count())
    }

    /// Stops the node: lookups end, and the node's thread exits once the last lookup lets go.
    pub(crate) fn stop(&self) {
        self.link.set_port(0);
        self.state.send_replace(NodeState::Off);
    }
}

/// Runs a blocking call into the node: `None` if its thread is gone (`mainline` panics on a
/// call to a node whose thread ended; that must not take the caller, e.g. the shutdown, with it).
fn on_node<T>(call: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).ok()
}

/// The IPv4 address to bind: the configured one, else the listen address if specific.
fn bind_ipv4(bind_ip: Option<IpAddr>, listen: SocketAddr) -> Result<Ipv4Addr, DhtError> {
    let ip = bind_ip.or(Some(listen.ip()).filter(|ip| !ip.is_unspecified()));
    match ip.map(|ip| ip.to_canonical()) {
        None => Ok(Ipv4Addr::UNSPECIFIED),
        Some(IpAddr::V4(v4)) => Ok(v4),
        Some(v6) => Err(DhtError::Ipv6Only(v6)),
    }
}

/// Resolves `HOST:PORT` names to IPv4 addresses, trying again a few times while none resolves
/// (no network yet) and `keep_going` says the engine still wants a node.
fn resolve_all(names: &[String], keep_going: impl Fn() -> bool) -> Vec<SocketAddrV4> {
    let mut attempt = 0;
    loop {
        let mut out: Vec<SocketAddrV4> = Vec::new();
        for name in names {
            match name.to_socket_addrs() {
                Ok(addrs) => out.extend(addrs.filter_map(|a| match a {
                    SocketAddr::V4(v4) => Some(v4),
                    SocketAddr::V6(_) => None,
                })),
                Err(e) => tracing::debug!(%name, error = %e, "DHT bootstrap node not resolved"),
            }
        }
        out.dedup();
        attempt += 1;
        if !out.is_empty() || names.is_empty() || attempt >= RESOLVE_ATTEMPTS || !keep_going() {
            if out.is_empty() && !names.is_empty() {
                tracing::warn!(
                    "no DHT bootstrap node could be resolved; the routing table starts empty"
                );
            }
            return out;
        }
        std::thread::sleep(RESOLVE_BACKOFF);
    }
}

/// One torrent's lookups, until aborted or the node stops.
async fn track_loop(
    mut state: watch::Receiver<NodeState>,
    info_hash: InfoHash,
    announce_port: Option<u16>,
    sink: PeerSink,
) {
    // INVARIANT: an info-hash is 20 bytes, the size of a DHT id.
    let Ok(target) = mainline::Id::from_bytes(info_hash.0) else {
        return;
    };
    loop {
        let dht = {
            let Ok(s) = state.wait_for(|s| !matches!(s, NodeState::Starting)).await else {
                return;
            };
            match &*s {
                NodeState::Running { dht, .. } => dht.clone().as_async(),
                _ => return,
            }
        };
        let found = lookup(&dht, target, &sink).await;
        if let Some(port) = announce_port.filter(|&p| p != 0) {
            match tokio::time::timeout(QUERY_TIMEOUT, dht.announce_peer(target, Some(port))).await {
                Ok(Ok(_)) => tracing::debug!(%info_hash, port, "announced to the DHT"),
                Ok(Err(e)) => tracing::debug!(%info_hash, error = %e, "DHT announce failed"),
                Err(_) => tracing::debug!(%info_hash, "DHT announce timed out"),
            }
        }
        drop(dht);
        let wait = if found == 0 {
            RETRY_INTERVAL
        } else {
            LOOKUP_INTERVAL
        };
        tokio::time::sleep(wait).await;
    }
}

/// One `get_peers` lookup; new peers go to `sink` as they arrive. Returns how many were found.
async fn lookup(
    dht: &mainline::async_dht::AsyncDht,
    target: mainline::Id,
    sink: &PeerSink,
) -> usize {
    let mut stream = dht.get_peers(target);
    let mut seen: HashSet<SocketAddr> = HashSet::new();
    let deadline = tokio::time::Instant::now() + QUERY_TIMEOUT;
    while let Ok(Some(batch)) = tokio::time::timeout_at(deadline, stream.next()).await {
        let fresh: Vec<SocketAddr> = batch
            .into_iter()
            .map(SocketAddr::V4)
            .filter(|a| a.port() != 0 && !a.ip().is_unspecified())
            .filter(|a| seen.len() < MAX_PEERS_PER_LOOKUP && seen.insert(*a))
            .collect();
        if !fresh.is_empty() {
            sink(fresh);
        }
    }
    seen.len()
}

/// The state file's text: a comment line, then one `IP:PORT` a line, deduplicated, bounded.
fn encode_state(nodes: &[SocketAddr]) -> String {
    let mut seen = HashSet::new();
    let mut text = String::from("# ringtorrent DHT nodes (BEP 5), one IP:PORT a line\n");
    for n in nodes
        .iter()
        .filter(|n| seen.insert(**n))
        .take(MAX_STATE_NODES)
    {
        text.push_str(&n.to_string());
        text.push('\n');
    }
    text
}

/// Nodes in a state file's text; lines that are not an `IP:PORT` are skipped.
fn decode_state(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.parse::<SocketAddr>().ok())
        .filter(|a| a.port() != 0)
        .take(MAX_STATE_NODES)
        .collect()
}

/// The nodes saved in `path` (none if it is missing or unreadable; at most 64 KiB read).
fn load_state(path: &Path) -> Vec<SocketAddr> {
    use std::io::Read as _;
    let mut text = String::new();
    let read =
        std::fs::File::open(path).and_then(|f| f.take(MAX_STATE_BYTES).read_to_string(&mut text));
    match read {
        Ok(_) => decode_state(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the DHT state file");
            Vec::new()
        }
    }
}

/// Writes `bytes` to a temp file next to `path`, syncs it and renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
#[path = "dht_tests.rs"]
mod tests;
