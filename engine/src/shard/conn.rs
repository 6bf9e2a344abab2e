//! One connection inside a shard: connect, the BEP 3 handshake, then the wire reader feeding
//! the peer session, and the send queue (the session's bytes and PIECE messages, see
//! [`super::sendq`]) that the backend owns while a send is in flight.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api::{Alert, AlertSink, TorrentId};
use crate::api::{DisconnectReason, Fault, TransportMode};
use crate::handshake::{Handshake, HANDSHAKE_LEN};
use crate::peer::PeerSession;
use crate::torrent::TorrentShared;
use crate::types::PeerId;
use crate::wire;

use super::backend::{Op, Token};
use super::dial::{after_broken, next_dial, Attempt, Policies, Redial};
use super::sendq::{MsgPool, SendBuf};
use super::transport::{Opened, Transport};
use crate::mse::{EncryptionPolicy, SkeyTable};
use crate::types::InfoHash;

/// Give up on a TCP connect after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Give up on a handshake after this long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// No new upload reads start for a connection with this many bytes queued or in flight to
/// it (a slow reader cannot make us hold its whole request queue in memory).
pub const SEND_HIGH_WATER: usize = 1 << 20;

pub(super) enum Phase {
    Connecting,
    Handshake {
        buf: Vec<u8>,
    },
    Active {
        reader: wire::Reader,
        session: Box<PeerSession>,
    },
}

/// See the module doc.
pub struct Conn {
    pub(super) token: Token,
    pub(super) key: u64,
    pub addr: SocketAddr,
    outgoing: bool,
    pub(super) torrent: Option<Arc<TorrentShared>>,
    pub(super) phase: Phase,
    /// What carries the bytes (plain TCP, ...): received bytes are opened and sends sealed
    /// here, so `phase` sees plaintext.
    pub(super) transport: Transport,
    /// The session's bytes not yet in `pending`.
    pub(super) out: Vec<u8>,
    /// What the next send carries.
    pub(super) pending: SendBuf,
    spare: Vec<u8>,
    sending: bool,
    /// Bytes of the send in flight.
    pub(super) sending_bytes: usize,
    pub(super) failed: Option<DisconnectReason>,
    closed: bool,
    started: Instant,
    peer_id: Option<PeerId>,
    got_data: bool,
    /// The peer was found to have every piece and the torrent's registry told so.
    seed_noted: bool,
    /// Which dial attempt of this address this is (0 = the first); outgoing only.
    attempt: u32,
    /// False once the peer's handshake was refused (wrong torrent, duplicate, banned, full):
    /// dialing it again would be refused again.
    retryable: bool,
    /// The engine's MSE/PE policy.
    policy: EncryptionPolicy,
    /// Outgoing: this attempt opens with the MSE handshake.
    encrypt: bool,
    /// The peer is reached over uTP (the shard's [`super::utp_conns::UtpConns`]), not a TCP
    /// socket.
    pub(super) utp: bool,
    /// The torrent an incoming MSE handshake named (SKEY): the BitTorrent handshake must
    /// agree (an outgoing connection checks against the torrent it dialed for).
    skey: Option<InfoHash>,
}

impl Conn {
    /// A dial of `addr` for `t`; `encrypt`: open with the MSE/PE handshake.
    #[allow(clippy::too_many_arguments)]
    pub fn outgoing(
        token: Token,
        key: u64,
        addr: SocketAddr,
        t: Arc<TorrentShared>,
        attempt: u32,
        now: Instant,
        policy: EncryptionPolicy,
        encrypt: bool,
    ) -> Conn {
        let mut c = Self::new(token, key, addr, Some(t), true, Phase::Connecting, now);
        c.attempt = attempt;
        c.policy = policy;
        c.encrypt = encrypt;
        c
    }

    pub fn incoming(
        token: Token,
        key: u64,
        addr: SocketAddr,
        now: Instant,
        policy: EncryptionPolicy,
    ) -> Conn {
        let phase = Phase::Handshake {
            buf: Vec::with_capacity(HANDSHAKE_LEN),
        };
        let mut c = Self::new(token, key, addr, None, false, phase, now);
        c.policy = policy;
        c.transport = Transport::incoming(policy);
        c
    }

    fn new(
        token: Token,
        key: u64,
        addr: SocketAddr,
        torrent: Option<Arc<TorrentShared>>,
        outgoing: bool,
        phase: Phase,
        now: Instant,
    ) -> Conn {
        Conn {
            token,
            key,
            addr,
            outgoing,
            torrent,
            phase,
            transport: Transport::Plain,
            out: Vec::new(),
            pending: SendBuf::default(),
            spare: Vec::new(),
            sending: false,
            sending_bytes: 0,
            failed: None,
            closed: false,
            started: now,
            peer_id: None,
            got_data: false,
            seed_noted: false,
            attempt: 0,
            retryable: true,
            policy: EncryptionPolicy::default(),
            encrypt: false,
            utp: false,
            skey: None,
        }
    }

    pub fn torrent_id(&self) -> Option<u64> {
        self.torrent.as_ref().map(|t| t.id)
    }

    /// The API's view of a handshaken, still open peer (`None` before the handshake).
    pub fn peer_info(&mut self, now: Instant) -> Option<crate::peer::PeerInfo> {
        if self.failed.is_some() || self.closed {
            return None;
        }
        let outgoing = self.outgoing;
        let peer_id = self.peer_id;
        match &mut self.phase {
            Phase::Active { session, .. } => {
                let mut info = session.info(now, outgoing, peer_id.as_ref());
                info.utp = self.utp;
                Some(info)
            }
            _ => None,
        }
    }

    /// Whether the connection is failing or closed (it no longer counts as a link to its
    /// peer: a redial may start beside it).
    pub fn is_closing(&self) -> bool {
        self.failed.is_some()
    }

    /// Marks the connection for closing; the first reason wins.
    pub fn fail(&mut self, reason: DisconnectReason) {
        if self.failed.is_none() {
            self.failed = Some(reason);
        }
    }

    pub fn on_connected(&mut self, result: std::io::Result<()>, now: Instant) -> Option<Op> {
        match result {
            Err(e) => {
                self.fail(DisconnectReason::ConnectFailed(e.kind()));
                None
            }
            Ok(()) => {
                let t = self.torrent.as_ref()?;
                let hs = t.our_handshake().to_bytes();
                if self.encrypt {
                    // Our handshake rides in the MSE handshake (its initial payload).
                    let mut raw = Vec::new();
                    match Transport::initiate(t.info_hash, self.policy, &hs, &mut raw) {
                        Ok(tr) => {
                            self.transport = tr;
                            self.pending.push_bytes(raw);
                        }
                        Err(reason) => {
                            self.fail(reason);
                            return None;
                        }
                    }
                } else {
                    self.out.extend_from_slice(&hs);
                }
                self.phase = Phase::Handshake {
                    buf: Vec::with_capacity(HANDSHAKE_LEN),
                };
                self.started = now;
                Some(Op::Recv { token: self.token })
            }
        }
    }

    /// Bytes from the socket: opened by the transport (decrypted in place, or consumed by
    /// the MSE handshake, whose replies are queued as they are), then read as plaintext.
    /// `skeys`: the torrents an incoming MSE handshake may name.
    pub fn on_data(
        &mut self,
        data: &mut [u8],
        now: Instant,
        torrents: &HashMap<u64, Arc<TorrentShared>>,
        skeys: &SkeyTable,
        alerts: &AlertSink,
    ) {
        if self.failed.is_some() {
            return;
        }
        self.got_data = true;
        let mut raw = Vec::new();
        let opened = self.transport.receive(data, &mut raw, skeys);
        if !raw.is_empty() {
            // Handshake bytes, already in their final form: after anything queued before.
            self.move_out();
            self.pending.push_bytes(raw);
        }
        match opened {
            Err(reason) => {
                self.retryable = false;
                self.fail(reason);
            }
            Ok(Opened::InPlace) => self.on_plain(data, now, torrents, alerts),
            Ok(Opened::Owned { plain, skey }) => {
                if skey.is_some() {
                    self.skey = skey;
                }
                self.on_plain(&plain, now, torrents, alerts)
            }
            Ok(Opened::Nothing) => {}
        }
    }

    /// The peer ended the stream (`Ok`) or receiving failed.
    pub fn on_recv_ended(&mut self, result: std::io::Result<()>) {
        let reason = match result {
            Ok(()) if self.transport.negotiating() => DisconnectReason::ClosedDuringEncryption,
            Ok(()) => DisconnectReason::Closed,
            Err(e) => DisconnectReason::RecvFailed(e.kind()),
        };
        self.fail(reason);
    }

    /// Plaintext from the peer: the BitTorrent handshake, then messages.
    fn on_plain(
        &mut self,
        data: &[u8],
        now: Instant,
        torrents: &HashMap<u64, Arc<TorrentShared>>,
        alerts: &AlertSink,
    ) {
        if self.failed.is_some() {
            return;
        }
        if let Phase::Handshake { buf } = &mut self.phase {
            let need = HANDSHAKE_LEN - buf.len();
            let take = need.min(data.len());
            buf.extend_from_slice(&data[..take]);
            if buf.len() < HANDSHAKE_LEN {
                return;
            }
            let hs_bytes = std::mem::take(buf);
            if let Err(reason) = self.on_handshake(&hs_bytes, now, torrents, alerts) {
                self.retryable = false;
                self.fail(reason);
                return;
            }
            self.feed(&data[take..], now);
        } else {
            self.feed(data, now);
        }
    }

    fn on_handshake(
        &mut self,
        bytes: &[u8],
        now: Instant,
        torrents: &HashMap<u64, Arc<TorrentShared>>,
        alerts: &AlertSink,
    ) -> Result<(), DisconnectReason> {
        let hs = Handshake::parse(bytes).map_err(DisconnectReason::BadHandshake)?;
        if self.skey.is_some_and(|k| k != hs.info_hash) {
            // The MSE handshake named another torrent than the BitTorrent one.
            return Err(DisconnectReason::WrongInfoHash);
        }
        let t = match &self.torrent {
            Some(t) if t.info_hash == hs.info_hash => t.clone(),
            Some(_) => return Err(DisconnectReason::WrongInfoHash),
            None => {
                let t = torrents
                    .values()
                    .find(|t| t.info_hash == hs.info_hash)
                    .ok_or(DisconnectReason::UnknownTorrent)?
                    .clone();
                self.out.extend_from_slice(&t.our_handshake().to_bytes());
                self.torrent = Some(t.clone());
                t
            }
        };
        if t.is_stopped() {
            return Err(DisconnectReason::TorrentStopped);
        }
        if t.is_banned(self.addr.ip()) {
            return Err(DisconnectReason::Banned);
        }
        if t.counters.peers.load(Ordering::Relaxed) >= t.max_peers {
            return Err(DisconnectReason::PeerLimit);
        }
        if !t.register_peer(hs.peer_id, self.outgoing.then_some(self.addr)) {
            return Err(DisconnectReason::Duplicate);
        }
        self.peer_id = Some(hs.peer_id);
        t.counters.peers.fetch_add(1, Ordering::Relaxed);
        let fast = hs.supports_fast();
        let mut session =
            PeerSession::new(self.key, self.addr, fast, hs.supports_extensions(), &t, now);
        if hs.supports_dht() {
            session.send_dht_port(&t);
        }
        let reader = wire::Reader::new(t.lengths.num_pieces());
        self.phase = Phase::Active {
            reader,
            session: Box::new(session),
        };
        alerts.send(Alert::PeerConnected {
            id: TorrentId(t.id),
            addr: self.addr,
            outgoing: self.outgoing,
            utp: self.utp,
        });
        Ok(())
    }

    fn feed(&mut self, data: &[u8], now: Instant) {
        let (Phase::Active { reader, session }, Some(t)) = (&mut self.phase, &self.torrent) else {
            return;
        };
        if data.is_empty() {
            return;
        }
        let res = reader.feed(data, |ev| session.on_event(ev, now, t));
        self.out.append(&mut session.out);
        if let (Some(addr), Some(id)) = (session.take_listen_addr(), &self.peer_id) {
            t.set_peer_listen_addr(id, addr);
        }
        if let Err(e) = res {
            self.fail(e.into());
        }
    }

    /// Peer addresses this connection's peer told us about (PEX), for the shard to dial.
    pub fn take_learned(&mut self) -> Option<(u64, Vec<SocketAddr>)> {
        let (Phase::Active { session, .. }, Some(t)) = (&mut self.phase, &self.torrent) else {
            return None;
        };
        let learned = session.take_learned();
        (!learned.is_empty()).then(|| (t.id, learned))
    }

    /// The connection's key (changes never; tells a reused token's new connection apart).
    pub fn key(&self) -> u64 {
        self.key
    }

    /// Moves the session's bytes into the next send, keeping their order with messages.
    pub(super) fn move_out(&mut self) {
        if !self.out.is_empty() {
            let mut bytes = std::mem::replace(&mut self.out, std::mem::take(&mut self.spare));
            self.transport.seal_in_place(&mut bytes);
            self.pending.push_bytes(bytes);
        }
    }

    /// Hands pieces this connection completed to the disk pipeline (hash, then write).
    pub fn submit_completed(&mut self, disk: &uring_disk::DiskPipeline) {
        let (Phase::Active { session, .. }, Some(t)) = (&mut self.phase, &self.torrent) else {
            return;
        };
        for (p, buf) in session.completed.drain(..) {
            if let Err(e) = disk.submit_piece(t.disk_slot, p.get(), buf) {
                // Refused pieces are downloaded again rather than lost in limbo.
                tracing::error!(
                    "torrent {}: piece {p} not accepted by the disk pipeline: {e}",
                    t.id
                );
                t.on_failed(p, false);
            }
        }
    }

    /// A send finished: its messages go back to `pool`, a byte buffer is kept for reuse.
    pub fn on_sent(&mut self, buf: SendBuf, result: std::io::Result<()>, pool: &mut MsgPool) {
        self.sending = false;
        self.sending_bytes = 0;
        if let Err(e) = result {
            self.fail(DisconnectReason::SendFailed(e.kind()));
        }
        if let Some(b) = buf.recycle(pool) {
            if self.spare.capacity() < b.capacity() {
                self.spare = b;
            }
        }
    }

    /// Timers and peer work; `slow` runs the periodic part.
    pub fn tick(&mut self, now: Instant, slow: bool, alerts: &AlertSink) {
        let _ = alerts;
        if self.failed.is_some() {
            return;
        }
        match &mut self.phase {
            Phase::Connecting if now.duration_since(self.started) > CONNECT_TIMEOUT => {
                self.fail(DisconnectReason::ConnectTimeout);
            }
            Phase::Handshake { .. } if now.duration_since(self.started) > HANDSHAKE_TIMEOUT => {
                self.fail(DisconnectReason::HandshakeTimeout);
            }
            Phase::Active { session, .. } => {
                let Some(t) = &self.torrent else { return };
                if slow && !self.seed_noted && session.peer_has.is_full() {
                    if let Some(id) = &self.peer_id {
                        t.set_peer_seed(id);
                    }
                    self.seed_noted = true;
                }
                let res = if slow {
                    session.poll(now, t)
                } else {
                    if self.got_data {
                        session.top_up(now, t);
                    }
                    Ok(())
                };
                self.got_data = false;
                self.out.append(&mut session.out);
                if let Err(e) = res {
                    self.fail(e.into());
                }
            }
            _ => {}
        }
    }

    /// What this connection needs the loop to wake up for (see `idle.rs`): the short tick
    /// while it transfers or closes, its connect or handshake timeout, else nothing (the
    /// idle bound covers its slow-poll work).
    pub fn next_wake(&self, next: &mut super::idle::NextWake) {
        if self.failed.is_some() && !self.closed {
            next.busy();
            return;
        }
        // The timeouts in `tick` fire once strictly past: a millisecond later.
        let past = Duration::from_millis(1);
        match &self.phase {
            Phase::Connecting => next.at(self.started + CONNECT_TIMEOUT + past),
            Phase::Handshake { .. } => next.at(self.started + HANDSHAKE_TIMEOUT + past),
            Phase::Active { session, .. } => {
                if session.needs_tick() || !self.out.is_empty() {
                    next.busy();
                }
            }
        }
    }

    /// If the connection failed, releases everything it held and closes the socket (once).
    /// Closes a failed connection. Returns the dial attempt to schedule when an outgoing
    /// connection failed before the handshake completed and the torrent still needs peers.
    pub fn finish_close(
        &mut self,
        alerts: &AlertSink,
        ops: &mut Vec<Op>,
        transports: TransportMode,
    ) -> Option<Redial> {
        if self.closed {
            return None;
        }
        let reason = self.failed.clone()?;
        self.closed = true;
        let redial = match (&self.torrent, &self.phase) {
            (Some(t), Phase::Connecting | Phase::Handshake { .. })
                if self.outgoing
                    && self.retryable
                    && !t.is_stopped()
                    && !t.is_banned(self.addr.ip()) =>
            {
                self.next_dial(t, &reason, transports)
            }
            // An established connection that the network broke (reset, timed out) while we
            // still need pieces is dialed again (`dial::after_broken`), on the same carrier
            // and encryption, as libtorrent does with its peer list (a uTP stream that a lossy
            // path killed is the common case).
            (Some(t), Phase::Active { session, .. })
                if self.outgoing
                    && matches!(
                        reason,
                        DisconnectReason::RecvFailed(_) | DisconnectReason::SendFailed(_)
                    )
                    && !t.is_stopped()
                    && !t.complete.load(Ordering::Acquire) =>
            {
                after_broken(self.attempt, session.downloaded_bytes > 0).map(|(attempt, delay)| {
                    Redial {
                        torrent: t.id,
                        addr: self.addr,
                        attempt,
                        delay,
                        encrypt: self.encrypt,
                        utp: self.utp,
                    }
                })
            }
            _ => None,
        };
        if reason.fault() == Fault::Peer {
            tracing::info!("peer {} closing: {reason}", self.addr);
        } else {
            tracing::debug!("peer {} closing: {reason}", self.addr);
        }
        let id = self.torrent.as_ref().map(|t| TorrentId(t.id));
        match (&self.torrent, &mut self.phase) {
            (Some(t), Phase::Active { session, .. }) => {
                session.on_disconnect(t);
                t.counters.peers.fetch_sub(1, Ordering::Relaxed);
                alerts.send(Alert::PeerDisconnected {
                    id: TorrentId(t.id),
                    addr: self.addr,
                    reason,
                });
            }
            _ => alerts.send(Alert::ConnectionFailed {
                id,
                addr: self.addr,
                outgoing: self.outgoing,
                reason,
            }),
        }
        if let (Some(t), Some(peer_id)) = (&self.torrent, &self.peer_id) {
            t.unregister_peer(peer_id);
        }
        ops.push(Op::Close { token: self.token });
        redial
    }

    /// The dial to try after this outgoing attempt failed before the handshake (the rules
    /// are in [`super::dial::next_dial`]).
    fn next_dial(
        &self,
        t: &TorrentShared,
        reason: &DisconnectReason,
        transports: TransportMode,
    ) -> Option<Redial> {
        let attempt = Attempt {
            attempt: self.attempt,
            encrypt: self.encrypt,
            utp: self.utp,
            connected: matches!(self.phase, Phase::Handshake { .. }),
            reason,
        };
        let policies = Policies {
            encryption: self.policy,
            transports,
        };
        let complete = t.complete.load(Ordering::Acquire);
        let (attempt, delay, encrypt, utp) = next_dial(&attempt, policies, complete)?;
        Some(Redial {
            torrent: t.id,
            addr: self.addr,
            attempt,
            delay,
            encrypt,
            utp,
        })
    }

    /// Starts a send of everything queued, if none is in flight.
    pub fn flush(&mut self, ops: &mut Vec<Op>) {
        if self.sending || self.closed || matches!(self.phase, Phase::Connecting) {
            return;
        }
        self.move_out();
        if self.pending.is_empty() {
            return;
        }
        let buf = std::mem::take(&mut self.pending);
        self.sending_bytes = buf.len();
        ops.push(Op::Send {
            token: self.token,
            buf,
        });
        self.sending = true;
    }

    /// Hands back the messages still queued (a closed connection's), for the pool.
    pub fn drain_queued(&mut self, pool: &mut MsgPool) {
        let _ = std::mem::take(&mut self.pending).recycle(pool);
    }
}
