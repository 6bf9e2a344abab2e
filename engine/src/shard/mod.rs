//! Shards: one thread per core, each with its own ring (io_uring, or the epoll fallback), each
//! owning a subset of the peer connections end to end — connect, handshake, receive, send and
//! timers. Shards share only the torrents' [`TorrentShared`] (picker, piece table, counters) and
//! the disk pipeline handle; nothing else crosses threads.
//!
//! A shard's loop: submit queued ops and wait for completions (at most [`TICK`] while
//! transfers run, else until the next deadline or [`idle::IDLE_WAIT`]: see [`idle`]); feed
//! received bytes through each connection's wire reader into its peer session; hand completed
//! pieces to the disk pipeline; top up request pipelines of peers that received data; every
//! [`SLOW_TICK`] run the slower per-peer work (HAVEs, interest, timeouts); flush send buffers.
//!
//! New connections arrive on a per-shard SO_REUSEPORT listener (the kernel spreads them), and
//! outgoing ones are handed out round-robin by the engine.

pub mod backend;
mod conn;
mod dial;
mod flush;
mod handle;
pub mod idle;
pub mod portable;
pub mod sendq;
mod transport;
pub mod udp;
mod upload;
pub mod uring;
mod utp_conns;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::api::AlertSink;
use crate::api::{DisconnectReason, TransportMode};
use crate::torrent::TorrentShared;
use backend::{Backend, Completion, Op, Token};
use conn::Conn;
use idle::{NextWake, ShardCounters};
use upload::{Links, Uploader};
use utp_conns::UtpConns;

use handle::Ready;
pub use handle::{spawn, sync, Command, ShardConfig, ShardHandle, Waker};

/// Longest wait for completions while transfers run (see [`idle`] for the rest).
pub const TICK: Duration = Duration::from_millis(10);
/// Period of the slower per-peer work.
pub const SLOW_TICK: Duration = Duration::from_millis(50);
/// Connections per shard at most (a limit on what the network can make us hold).
pub const MAX_CONNS_PER_SHARD: usize = 1024;

fn make_backend(cfg: &ShardConfig) -> std::io::Result<(Box<dyn Backend>, crate::api::Backend)> {
    use crate::api::Backend as Kind;
    if !cfg.force_portable {
        match uring::probe() {
            Ok(()) => {
                match uring::UringBackend::new(cfg.recv_buffers, cfg.recv_buffer_len, cfg.bind_ip) {
                    Ok(b) => return Ok((Box::new(b), Kind::IoUring)),
                    Err(e) => tracing::warn!(
                        "shard {}: io_uring setup failed ({e}); using epoll",
                        cfg.index
                    ),
                }
            }
            Err(why) => {
                if cfg.index == 0 {
                    tracing::warn!(
                        "io_uring unavailable ({why}); shards use the portable epoll backend"
                    );
                }
            }
        }
    }
    let portable = portable::PortableBackend::new(cfg.recv_buffer_len, cfg.bind_ip)?;
    Ok((Box::new(portable), Kind::Epoll))
}

fn run(
    mut cfg: ShardConfig,
    rx: Receiver<Command>,
    ready: std::sync::mpsc::SyncSender<Ready>,
    eventfd: Option<(OwnedFd, Arc<Waker>)>,
    counters: Arc<ShardCounters>,
) {
    let mut backend = match make_backend(&cfg) {
        Ok((b, kind)) => {
            let _ = ready.send(Ok(kind));
            b
        }
        Err(e) => {
            // `spawn` hands the error to `Engine::start`.
            let _ = ready.send(Err(e));
            return;
        }
    };
    if let Some(l) = cfg.listener.take() {
        if let Err(e) = backend.listen(l) {
            tracing::error!("shard {}: listen failed: {e}", cfg.index);
        }
    }
    let waker = eventfd.and_then(|(fd, waker)| match backend.set_waker(fd) {
        Ok(()) => Some(waker),
        Err(e) => {
            tracing::warn!(
                "shard {}: no eventfd wake-ups ({e}); it wakes every {TICK:?}",
                cfg.index
            );
            None
        }
    });
    // Without wake-ups from other threads, commands and disk replies wait for the tick.
    let idle_wait = if waker.is_some() {
        idle::IDLE_WAIT
    } else {
        TICK
    };
    let udp = match cfg.udp.take() {
        Some(fd) => Ok(fd),
        None => udp::ephemeral_socket(
            cfg.bind_ip
                .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
        ),
    };
    if let Err(e) = udp.and_then(|fd| backend.listen_udp(std::net::UdpSocket::from(fd))) {
        tracing::warn!("shard {}: no UDP socket ({e}); uTP is off", cfg.index);
    }
    tracing::debug!("shard {} running on {}", cfg.index, backend.name());
    let start = Instant::now();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ (cfg.index as u64) << 56;
    let mut shard = Shard {
        torrents: HashMap::new(),
        conns: Vec::new(),
        free: Vec::new(),
        live: 0,
        alerts: cfg.alerts.clone(),
        disk: cfg.disk.clone(),
        global_limits: cfg.global_limits.clone(),
        upload_slots: cfg.upload_slots,
        next_key: (cfg.index as u64) << 48,
        ops: Vec::new(),
        last_slow: Instant::now(),
        since_slow: false,
        next: NextWake::default(),
        shutting_down: None,
        up: Uploader::new(
            cfg.disk.clone(),
            (cfg.zero_copy_uploads, cfg.bind_ip),
            backend.sends_from_mappings(),
            waker,
        ),
        encryption: cfg.encryption,
        transports: cfg.transports,
        skeys: crate::mse::SkeyTable::new(),
        redials: Vec::new(),
        utp: UtpConns::new(
            udp::UtpIds::new(cfg.index, cfg.shards, seed as u16),
            start,
            seed,
        ),
    };
    loop {
        shard.commands(&rx);
        if let Some(since) = shard.shutting_down {
            if shard.live == 0 || since.elapsed() > Duration::from_secs(3) {
                break;
            }
        }
        let now = Instant::now();
        // Ops of uTP connections go to their carrier; the rest (and any it hands back) to
        // the ring.
        for op in shard.ops.drain(..) {
            if let Some(op) = shard.utp.op(op, now) {
                backend.push(op);
            }
        }
        shard.utp.transmit(now);
        backend.send_datagrams(&mut shard.utp.out);
        if let Some(at) = shard.utp.next_timeout() {
            shard.next.at(at);
        }
        // Completions the uTP carrier owes are delivered right after the backend's.
        let timeout = if shard.utp.has_owed() {
            Duration::ZERO
        } else {
            shard.next.timeout(now, TICK, idle_wait)
        };
        let res = backend.wait(timeout, &mut |c| shard.completion(c, now));
        counters.count(shard.next.is_busy());
        // What the next wait must respect is worked out afresh from here on.
        shard.next = NextWake::default();
        if let Err(e) = res {
            tracing::error!("shard {}: ring failure: {e}", cfg.index);
            break;
        }
        // A command that woke the wait is applied before the pass's peer work: a pause's
        // `RemoveTorrent` closes its connections as removed, not as stopped by the poll that
        // sees the torrent's `stopped` flag first.
        shard.commands(&rx);
        let now = Instant::now();
        for owed in shard.utp.take_owed() {
            owed.complete(&mut |c| shard.completion(c, now));
        }
        shard.utp.on_timers(now);
        shard.after_batch(now);
    }
    tracing::debug!(
        "shard {}: uTP {:?}, {} datagrams not sent",
        cfg.index,
        shard.utp.counters,
        shard.utp.out.dropped
    );
}

struct Shard {
    torrents: HashMap<u64, Arc<TorrentShared>>,
    conns: Vec<Option<Conn>>,
    free: Vec<Token>,
    live: usize,
    alerts: AlertSink,
    disk: Arc<uring_disk::DiskPipeline>,
    global_limits: Arc<crate::ratelimit::RateLimits>,
    upload_slots: usize,
    next_key: u64,
    ops: Vec<Op>,
    last_slow: Instant,
    /// Something happened since the last slow pass (a completion): one is owed within
    /// [`SLOW_TICK`].
    since_slow: bool,
    /// When the loop must wake up next: cleared after each wait, filled by the commands
    /// applied and by [`Shard::after_batch`].
    next: NextWake,
    shutting_down: Option<Instant>,
    /// Everything that serves the peers' requests.
    up: Uploader,
    /// MSE/PE policy of every connection.
    encryption: crate::mse::EncryptionPolicy,
    /// Carriers of outgoing connections.
    transports: TransportMode,
    /// The torrents an incoming MSE handshake may name (by `HASH('req2', info_hash)`).
    skeys: crate::mse::SkeyTable,
    /// Dials to retry, with when (outgoing connections that failed before the handshake).
    redials: Vec<(Instant, dial::Redial)>,
    /// The connections carried by uTP, and the shard's datagrams.
    utp: UtpConns,
}

impl Shard {
    /// Applies the commands queued so far.
    fn commands(&mut self, rx: &Receiver<Command>) {
        for cmd in rx.try_iter() {
            self.command(cmd, Instant::now());
            // What a command started (a dial, a close) is looked after at the short tick.
            self.next.busy();
        }
    }

    fn command(&mut self, cmd: Command, now: Instant) {
        match cmd {
            Command::AddTorrent(t) => {
                t.attach_engine(&self.global_limits, self.upload_slots);
                self.skeys.insert(t.info_hash);
                self.torrents.insert(t.id, t);
            }
            Command::RemoveTorrent(id) => {
                if let Some(t) = self.torrents.remove(&id) {
                    self.skeys.remove(&t.info_hash);
                }
                self.up.forget_torrent(id);
                for c in self.conns.iter_mut().flatten() {
                    if c.torrent_id() == Some(id) {
                        c.fail(DisconnectReason::TorrentRemoved);
                    }
                }
            }
            Command::Connect { torrent, addr } => {
                let first = (
                    self.encryption.dials_encrypted(),
                    self.transports.dials_utp(),
                );
                self.dial(torrent, addr, 0, first, now)
            }
            Command::Peers { torrent, reply } => {
                let peers = self
                    .conns
                    .iter_mut()
                    .flatten()
                    .filter(|c| c.torrent_id() == Some(torrent))
                    .filter_map(|c| c.peer_info(now))
                    .collect();
                // The engine may have stopped waiting: nothing to do then.
                let _ = reply.send(peers);
            }
            Command::Sync(reply) => {
                let _ = reply.send(());
            }
            Command::Shutdown => {
                self.shutting_down = Some(now);
                for c in self.conns.iter_mut().flatten() {
                    c.fail(DisconnectReason::Shutdown);
                }
            }
        }
    }

    /// Opens an outgoing connection (with the MSE handshake if `encrypt`, over uTP if `utp`)
    /// unless one to `addr` for this torrent exists, the shard is full, or the torrent is
    /// gone, stopped or bans the address.
    fn dial(
        &mut self,
        torrent: u64,
        addr: SocketAddr,
        attempt: u32,
        (encrypt, utp): (bool, bool),
        now: Instant,
    ) {
        let Some(t) = self.torrents.get(&torrent).cloned() else {
            return;
        };
        let busy = self
            .conns
            .iter()
            .flatten()
            .any(|c| c.addr == addr && c.torrent_id() == Some(torrent) && !c.is_closing());
        if busy
            || self.live >= MAX_CONNS_PER_SHARD
            || self.shutting_down.is_some()
            || t.is_banned(addr.ip())
            || t.is_stopped()
        {
            return;
        }
        let token = self.alloc();
        self.next_key += 1;
        let mut c = Conn::outgoing(
            token,
            self.next_key,
            addr,
            t,
            attempt,
            now,
            self.encryption,
            encrypt,
        );
        c.utp = utp;
        if utp {
            self.utp.connect(token, addr, now);
        } else {
            self.ops.push(Op::Connect { token, addr });
        }
        self.conns[token as usize] = Some(c);
    }

    /// Dials the addresses whose retry is due.
    fn redial_due(&mut self, now: Instant) {
        if self.redials.is_empty() {
            return;
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.redials)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.redials = later;
        for (_, r) in due {
            self.dial(r.torrent, r.addr, r.attempt, (r.encrypt, r.utp), now);
        }
    }

    fn alloc(&mut self) -> Token {
        self.live += 1;
        if let Some(t) = self.free.pop() {
            return t;
        }
        self.conns.push(None);
        (self.conns.len() - 1) as Token
    }

    fn completion(&mut self, c: Completion<'_>, now: Instant) {
        if !matches!(c, Completion::Wake) {
            self.since_slow = true;
        }
        match c {
            Completion::Accepted { fd, peer } => {
                if self.live >= MAX_CONNS_PER_SHARD || self.shutting_down.is_some() {
                    return; // dropping the fd closes it
                }
                let token = self.alloc();
                self.next_key += 1;
                self.ops.push(Op::Adopt { token, fd });
                self.ops.push(Op::Recv { token });
                // A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d: keep them IPv4,
                // as they are everywhere else (PEX lists, bans, dial dedup).
                let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
                self.conns[token as usize] = Some(Conn::incoming(
                    token,
                    self.next_key,
                    peer,
                    now,
                    self.encryption,
                ));
            }
            Completion::Wake => {}
            Completion::Datagram { from, data } => self.on_datagram(from, data, now),
            Completion::Closed { token } => {
                if let Some(slot) = self.conns.get_mut(token as usize) {
                    if let Some(mut conn) = slot.take() {
                        conn.drain_queued(&mut self.up.msgs);
                        self.free.push(token);
                        self.live -= 1;
                    }
                }
            }
            Completion::Connected { token, result } => {
                let Some(conn) = self.conn_mut(token) else {
                    return;
                };
                if let Some(op) = conn.on_connected(result, now) {
                    self.ops.push(op);
                }
                self.flush_one(token);
            }
            Completion::Data { token, data } => {
                let torrents = &self.torrents;
                let Some(Some(conn)) = self.conns.get_mut(token as usize) else {
                    return;
                };
                conn.on_data(data, now, torrents, &self.skeys, &self.alerts);
                conn.submit_completed(&self.disk);
            }
            Completion::RecvEnded { token, result } => {
                let Some(conn) = self.conn_mut(token) else {
                    return;
                };
                conn.on_recv_ended(result);
            }
            Completion::Sent { token, buf, result } => match self.conns.get_mut(token as usize) {
                Some(Some(conn)) => conn.on_sent(buf, result, &mut self.up.msgs),
                _ => {
                    let _ = buf.recycle(&mut self.up.msgs);
                }
            },
            Completion::FileRead { tag, msg, result } => {
                let (up, mut net) = self.uploader();
                up.local_read_done(&mut net, tag, msg, result);
            }
            Completion::PieceRead { tag, buf, result } => {
                let (up, mut net) = self.uploader();
                up.piece_read_done(&mut net, tag, buf, result);
            }
        }
    }

    /// A datagram on the shard's UDP socket: payload for a uTP connection, or a SYN that
    /// opens one (adopted like an accepted TCP socket).
    fn on_datagram(&mut self, from: SocketAddr, data: &mut [u8], now: Instant) {
        let accepting = self.live < MAX_CONNS_PER_SHARD && self.shutting_down.is_none();
        let Shard {
            utp,
            conns,
            torrents,
            skeys,
            alerts,
            disk,
            ..
        } = self;
        let incoming = utp.on_datagram(from, data, now, accepting, &mut |token, bytes| {
            if let Some(Some(conn)) = conns.get_mut(token as usize) {
                conn.on_data(bytes, now, torrents, skeys, alerts);
                conn.submit_completed(disk);
            }
        });
        let Some(inc) = incoming else { return };
        let token = self.alloc();
        self.next_key += 1;
        let peer = inc.from;
        self.utp.adopt(token, inc);
        self.ops.push(Op::Recv { token });
        let mut c = Conn::incoming(token, self.next_key, peer, now, self.encryption);
        c.utp = true;
        self.conns[token as usize] = Some(c);
    }

    /// The uploader, and what it borrows from the loop for a call.
    fn uploader(&mut self) -> (&mut Uploader, Links<'_>) {
        let net = Links {
            conns: &mut self.conns,
            ops: &mut self.ops,
            torrents: &self.torrents,
        };
        (&mut self.up, net)
    }

    fn conn_mut(&mut self, token: Token) -> Option<&mut Conn> {
        self.conns.get_mut(token as usize).and_then(|c| c.as_mut())
    }

    fn after_batch(&mut self, now: Instant) {
        let slow = now.duration_since(self.last_slow) >= SLOW_TICK;
        if slow {
            self.last_slow = now;
            self.since_slow = false;
        }
        let (up, mut net) = self.uploader();
        up.drain_replies(&mut net);
        for i in 0..self.conns.len() {
            let Some(conn) = self.conns[i].as_mut() else {
                continue;
            };
            conn.tick(now, slow, &self.alerts);
            let (up, mut net) = self.uploader();
            up.issue_reads(&mut net, i as Token, now);
            let Some(conn) = self.conns[i].as_mut() else {
                continue;
            };
            conn.submit_completed(&self.disk);
            if let Some(r) = conn.finish_close(&self.alerts, &mut self.ops, self.transports) {
                if self.shutting_down.is_none() {
                    self.redials.push((now + r.delay, r));
                }
            }
            let learned = conn.take_learned();
            conn.flush(&mut self.ops);
            conn.next_wake(&mut self.next);
            if let Some((torrent, peers)) = learned {
                let first = (
                    self.encryption.dials_encrypted(),
                    self.transports.dials_utp(),
                );
                for addr in peers {
                    self.dial(torrent, addr, 0, first, now);
                }
            }
        }
        if slow {
            self.redial_due(now);
        }
        self.plan_wake();
    }

    /// What the next wait must not sleep past, beyond what the connections asked for (see
    /// [`idle`]). Slow-tick work is due no sooner than one [`SLOW_TICK`] after the last.
    fn plan_wake(&mut self) {
        let next_slow = self.last_slow + SLOW_TICK;
        if self.since_slow {
            self.next.at(next_slow);
        }
        if let Some(at) = self.redials.iter().map(|(at, _)| *at).min() {
            self.next.at(at.max(next_slow));
        }
        if self.shutting_down.is_some() || self.up.is_busy() {
            self.next.busy();
        }
    }

    fn flush_one(&mut self, token: Token) {
        if let Some(Some(conn)) = self.conns.get_mut(token as usize) {
            conn.flush(&mut self.ops);
        }
    }
}
