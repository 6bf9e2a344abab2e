//! The engine's side of a shard: starting its thread ([`spawn`]), the handle it keeps
//! ([`ShardHandle`]: the command queue, the eventfd that wakes the shard, its counters), the
//! commands, and [`sync`].

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::idle::ShardCounters;
use super::{uring, TICK};
use crate::api::{AlertSink, TransportMode};
use crate::torrent::TorrentShared;

/// Wakes a shard from another thread (commands, disk read replies) through its eventfd.
pub struct Waker(pub(super) std::fs::File);

impl Waker {
    pub fn wake(&self) {
        use std::io::Write;
        // A full counter (EAGAIN) still means a wake-up is pending: nothing to do.
        let _ = (&self.0).write(&1u64.to_ne_bytes());
    }
}

/// Work sent to a shard by the engine.
pub enum Command {
    AddTorrent(Arc<TorrentShared>),
    RemoveTorrent(u64),
    Connect {
        torrent: u64,
        addr: SocketAddr,
    },
    /// Report the torrent's handshaken peers on this shard.
    Peers {
        torrent: u64,
        reply: Sender<Vec<crate::peer::PeerInfo>>,
    },
    /// Answered once every command sent before it has been applied (see
    /// [`sync`]).
    Sync(Sender<()>),
    Shutdown,
}

/// Waits until every shard has applied the commands sent to it so far (at most a second):
/// once `add_torrent` returns, a peer that connects at once finds the torrent on whichever
/// shard takes it (without this, a shard that had not looked at its queue yet refused the
/// peer as asking for an unknown torrent; seen under load in CI).
pub fn sync(shards: &[ShardHandle]) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let sent = shards
        .iter()
        .filter(|s| s.send(Command::Sync(tx.clone())))
        .count();
    let deadline = Instant::now() + Duration::from_secs(1);
    for _ in 0..sent {
        if rx.recv_deadline(deadline).is_err() {
            break;
        }
    }
}

/// How a shard is set up.
pub struct ShardConfig {
    pub index: usize,
    /// How many shards the engine runs (uTP connection ids route by it).
    pub shards: usize,
    pub listener: Option<OwnedFd>,
    /// The shard's UDP socket on the listen port (uTP); `None`: an ephemeral one.
    pub udp: Option<OwnedFd>,
    /// Carriers of outgoing connections.
    pub transports: TransportMode,
    pub recv_buffers: u16,
    pub recv_buffer_len: usize,
    pub force_portable: bool,
    /// Source address of outgoing connections (the listen address unless it is unspecified).
    pub bind_ip: Option<std::net::IpAddr>,
    pub alerts: AlertSink,
    pub disk: Arc<uring_disk::DiskPipeline>,
    /// The engine's global rate limits, shared by every shard and torrent.
    pub global_limits: Arc<crate::ratelimit::RateLimits>,
    /// Regular upload slots per torrent (the choker's).
    pub upload_slots: usize,
    pub zero_copy_uploads: crate::api::ZeroCopyUploads,
    /// MSE/PE policy of every connection.
    pub encryption: crate::mse::EncryptionPolicy,
}

/// The engine's handle to a running shard.
pub struct ShardHandle {
    tx: Sender<Command>,
    /// Wakes the shard when a command is queued (`None`: no eventfd; the shard then never
    /// sleeps longer than [`TICK`]).
    waker: Option<Arc<Waker>>,
    pub thread: Option<JoinHandle<()>>,
    /// The ring driver the shard runs on.
    pub backend: crate::api::Backend,
    /// The shard's loop counters.
    pub counters: Arc<ShardCounters>,
}

impl ShardHandle {
    /// Queues `cmd` for the shard and wakes it; false if the shard is gone.
    pub fn send(&self, cmd: Command) -> bool {
        let sent = self.tx.send(cmd).is_ok();
        if let Some(w) = &self.waker {
            w.wake();
        }
        sent
    }
}

/// What a shard thread reports once its ring is set up (or could not be).
pub(super) type Ready = std::io::Result<crate::api::Backend>;

/// Starts a shard thread; returns once its ring is set up, or the error that stopped it.
pub fn spawn(cfg: ShardConfig) -> std::io::Result<ShardHandle> {
    let index = cfg.index;
    let (tx, rx) = crossbeam_channel::unbounded();
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Ready>(1);
    let eventfd = match uring::new_eventfd().and_then(|fd| Ok((fd.try_clone()?, fd))) {
        Ok((ours, theirs)) => Some((ours, Arc::new(Waker(std::fs::File::from(theirs))))),
        Err(e) => {
            tracing::warn!("shard {index}: no eventfd ({e}); it wakes every {TICK:?}");
            None
        }
    };
    let waker = eventfd.as_ref().map(|(_, w)| w.clone());
    let counters = Arc::new(ShardCounters::default());
    let loop_counters = counters.clone();
    let thread = std::thread::Builder::new()
        .name(format!("rt-shard-{index}"))
        .spawn(move || super::run(cfg, rx, ready_tx, eventfd, loop_counters))?;
    let ready = ready_rx
        .recv()
        .unwrap_or_else(|_| Err(std::io::Error::other("the shard thread ended during setup")));
    match ready {
        Ok(backend) => Ok(ShardHandle {
            tx,
            waker,
            thread: Some(thread),
            backend,
            counters,
        }),
        Err(e) => {
            let _ = thread.join();
            Err(std::io::Error::new(
                e.kind(),
                format!("shard {index}: no ring: {e}"),
            ))
        }
    }
}
