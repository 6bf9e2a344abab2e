//! One connection inside a shard: connect, the BEP 3 handshake, then the wire reader feeding
//! the peer session, and the send buffer the backend owns while a send is in flight.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::{Alert, AlertSink, TorrentId};
use crate::handshake::{Handshake, HANDSHAKE_LEN};
use crate::peer::PeerSession;
use crate::torrent::TorrentShared;
use crate::types::PeerId;
use crate::wire;

use super::backend::{Op, Token};

/// Give up on a TCP connect after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Give up on a handshake after this long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

enum Phase {
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
    token: Token,
    key: u64,
    pub addr: SocketAddr,
    outgoing: bool,
    torrent: Option<Arc<TorrentShared>>,
    phase: Phase,
    out: Vec<u8>,
    spare: Vec<u8>,
    sending: bool,
    failed: Option<String>,
    closed: bool,
    started: Instant,
    peer_id: Option<PeerId>,
    got_data: bool,
}

impl Conn {
    pub fn outgoing(
        token: Token,
        key: u64,
        addr: SocketAddr,
        t: Arc<TorrentShared>,
        now: Instant,
    ) -> Conn {
        Self::new(token, key, addr, Some(t), true, Phase::Connecting, now)
    }

    pub fn incoming(token: Token, key: u64, addr: SocketAddr, now: Instant) -> Conn {
        let phase = Phase::Handshake {
            buf: Vec::with_capacity(HANDSHAKE_LEN),
        };
        Self::new(token, key, addr, None, false, phase, now)
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
            out: Vec::new(),
            spare: Vec::new(),
            sending: false,
            failed: None,
            closed: false,
            started: now,
            peer_id: None,
            got_data: false,
        }
    }

    pub fn torrent_id(&self) -> Option<u64> {
        self.torrent.as_ref().map(|t| t.id)
    }

    /// Marks the connection for closing; the first reason wins.
    pub fn fail(&mut self, reason: String) {
        if self.failed.is_none() {
            self.failed = Some(reason);
        }
    }

    pub fn on_connected(&mut self, result: std::io::Result<()>, now: Instant) -> Option<Op> {
        match result {
            Err(e) => {
                self.fail(format!("connect failed: {e}"));
                None
            }
            Ok(()) => {
                let t = self.torrent.as_ref()?;
                self.out
                    .extend_from_slice(&Handshake::ours(t.info_hash, t.our_id).to_bytes());
                self.phase = Phase::Handshake {
                    buf: Vec::with_capacity(HANDSHAKE_LEN),
                };
                self.started = now;
                Some(Op::Recv { token: self.token })
            }
        }
    }

    pub fn on_data(
        &mut self,
        data: &[u8],
        now: Instant,
        torrents: &HashMap<u64, Arc<TorrentShared>>,
        alerts: &AlertSink,
    ) {
        if self.failed.is_some() {
            return;
        }
        self.got_data = true;
        if let Phase::Handshake { buf } = &mut self.phase {
            let need = HANDSHAKE_LEN - buf.len();
            let take = need.min(data.len());
            buf.extend_from_slice(&data[..take]);
            if buf.len() < HANDSHAKE_LEN {
                return;
            }
            let hs_bytes = std::mem::take(buf);
            if let Err(reason) = self.on_handshake(&hs_bytes, now, torrents, alerts) {
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
    ) -> Result<(), String> {
        let hs = Handshake::parse(bytes).map_err(|e| format!("bad handshake: {e}"))?;
        let t = match &self.torrent {
            Some(t) if t.info_hash == hs.info_hash => t.clone(),
            Some(_) => return Err("peer answered with another info-hash".into()),
            None => {
                let t = torrents
                    .values()
                    .find(|t| t.info_hash == hs.info_hash)
                    .ok_or("handshake for a torrent we do not have")?
                    .clone();
                self.out
                    .extend_from_slice(&Handshake::ours(t.info_hash, t.our_id).to_bytes());
                self.torrent = Some(t.clone());
                t
            }
        };
        if t.is_stopped() {
            return Err("torrent stopped".into());
        }
        if t.is_banned(self.addr.ip()) {
            return Err("peer is banned".into());
        }
        if t.counters.peers.load(Ordering::Relaxed) >= t.max_peers {
            return Err("peer limit reached".into());
        }
        if !t.register_peer(hs.peer_id) {
            return Err("connection to ourselves or duplicate peer".into());
        }
        self.peer_id = Some(hs.peer_id);
        t.counters.peers.fetch_add(1, Ordering::Relaxed);
        let fast = hs.supports_fast();
        let session =
            PeerSession::new(self.key, self.addr, fast, hs.supports_extensions(), &t, now);
        let reader = wire::Reader::new(t.lengths.num_pieces());
        self.phase = Phase::Active {
            reader,
            session: Box::new(session),
        };
        alerts.send(Alert::PeerConnected {
            id: TorrentId(t.id),
            addr: self.addr,
            outgoing: self.outgoing,
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
        if let Err(e) = res {
            self.fail(e.to_string());
        }
    }

    /// Starts disk reads for blocks this peer requested (uploads).
    pub fn issue_reads(
        &mut self,
        disk: &uring_disk::DiskPipeline,
        tx: &crossbeam_channel::Sender<super::ReadDone>,
        waker: Option<&Arc<super::Waker>>,
    ) {
        let (Phase::Active { session, .. }, Some(t)) = (&mut self.phase, &self.torrent) else {
            return;
        };
        let mut blocks = Vec::new();
        session.next_reads(&mut blocks);
        for b in blocks {
            let (tx, waker, token, key) = (tx.clone(), waker.cloned(), self.token, self.key);
            let reply = Box::new(move |data| {
                let _ = tx.send(super::ReadDone {
                    token,
                    key,
                    block: b,
                    data,
                });
                if let Some(w) = waker {
                    w.wake();
                }
            });
            if let Err(e) = disk.read(t.disk_slot, b.piece.get(), b.offset, b.len, reply) {
                tracing::warn!("torrent {}: read of {b:?} refused: {e}", t.id);
                session.on_read(b, None, t);
            }
        }
    }

    /// A disk read for this connection came back.
    pub fn on_read_done(&mut self, done: super::ReadDone) {
        if done.key != self.key || self.failed.is_some() {
            return;
        }
        let (Phase::Active { session, .. }, Some(t)) = (&mut self.phase, &self.torrent) else {
            return;
        };
        match &done.data {
            Ok(buf) => session.on_read(done.block, Some(buf.as_slice()), t),
            Err(e) => {
                tracing::warn!("torrent {}: read of {:?} failed: {e}", t.id, done.block);
                session.on_read(done.block, None, t);
            }
        }
        self.out.append(&mut session.out);
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

    pub fn on_sent(&mut self, mut buf: Vec<u8>, result: std::io::Result<()>) {
        self.sending = false;
        if let Err(e) = result {
            self.fail(format!("send failed: {e}"));
        }
        buf.clear();
        self.spare = buf;
    }

    /// Timers and peer work; `slow` runs the periodic part.
    pub fn tick(&mut self, now: Instant, slow: bool, alerts: &AlertSink) {
        let _ = alerts;
        if self.failed.is_some() {
            return;
        }
        match &mut self.phase {
            Phase::Connecting if now.duration_since(self.started) > CONNECT_TIMEOUT => {
                self.fail("connect timed out".into());
            }
            Phase::Handshake { .. } if now.duration_since(self.started) > HANDSHAKE_TIMEOUT => {
                self.fail("handshake timed out".into());
            }
            Phase::Active { session, .. } => {
                let Some(t) = &self.torrent else { return };
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
                    self.fail(e.to_string());
                }
            }
            _ => {}
        }
    }

    /// If the connection failed, releases everything it held and closes the socket (once).
    pub fn finish_close(&mut self, alerts: &AlertSink, ops: &mut Vec<Op>) {
        if self.closed {
            return;
        }
        let Some(reason) = self.failed.clone() else {
            return;
        };
        self.closed = true;
        tracing::debug!("peer {} closing: {reason}", self.addr);
        if let Some(t) = &self.torrent {
            if let Phase::Active { session, .. } = &mut self.phase {
                session.on_disconnect(t);
                t.counters.peers.fetch_sub(1, Ordering::Relaxed);
                alerts.send(Alert::PeerDisconnected {
                    id: TorrentId(t.id),
                    addr: self.addr,
                    reason,
                });
            }
            if let Some(id) = &self.peer_id {
                t.unregister_peer(id);
            }
        }
        ops.push(Op::Close { token: self.token });
    }

    /// Starts a send of everything queued, if none is in flight.
    pub fn flush(&mut self, ops: &mut Vec<Op>) {
        if self.sending
            || self.closed
            || self.out.is_empty()
            || matches!(self.phase, Phase::Connecting)
        {
            return;
        }
        let mut buf = std::mem::take(&mut self.spare);
        std::mem::swap(&mut buf, &mut self.out);
        ops.push(Op::Send {
            token: self.token,
            buf,
        });
        self.sending = true;
    }
}
