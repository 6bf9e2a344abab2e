//! BEP 14 local service discovery on the control runtime: one task per engine that announces
//! our public torrents to the multicast group and hands the peers it hears to the shards'
//! connection queues. `crate::lsd` decides what to send and what to believe.
//!
//! Announces go out on the interface of the listen address when the engine listens on a
//! specific IPv4 address (127.0.0.x in tests: they never leave the host), from a socket bound
//! to that address so that the source address of the datagram is where we accept peers.
//! Otherwise the kernel's default multicast interface is used. Receiving uses a socket bound
//! to the group's port with address and port reuse, so several engines on one host can all
//! listen. IPv6 LSD (ff15::efc0:988f) is not implemented.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::Inner;
use crate::lsd::{LsdState, LSD_GROUP_V4, MAX_LSD_LEN};
use crate::types::InfoHash;

/// How often the torrent list is looked at and due announces sent.
const TICK: Duration = Duration::from_secs(1);

/// Starts LSD for the engine. Failing to set up the sockets logs a warning; the engine runs
/// without LSD.
pub(crate) fn start(inner: &Arc<Inner>) {
    let weak = Arc::downgrade(inner);
    let iface = match inner.listen_addr.ip() {
        IpAddr::V4(ip) if !ip.is_unspecified() => Some(ip),
        _ => None,
    };
    let port = inner.listen_addr.port();
    inner.control.runtime.spawn(async move {
        let sockets = open(iface).and_then(|(r, s)| {
            Ok((
                UdpSocket::from_std(r.into())?,
                UdpSocket::from_std(s.into())?,
            ))
        });
        match sockets {
            Ok((recv, send)) => run(weak, recv, send, port).await,
            Err(e) => tracing::warn!("local service discovery is off: {e}"),
        }
    });
}

/// The receiving socket (the group's port, shared) and the sending one.
fn open(iface: Option<Ipv4Addr>) -> std::io::Result<(Socket, Socket)> {
    let any_iface = iface.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let recv = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    recv.set_reuse_address(true)?;
    recv.set_reuse_port(true)?;
    recv.set_nonblocking(true)?;
    recv.bind(
        &SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::UNSPECIFIED,
            LSD_GROUP_V4.port(),
        ))
        .into(),
    )?;
    recv.join_multicast_v4(LSD_GROUP_V4.ip(), &any_iface)?;
    let send = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    send.set_nonblocking(true)?;
    send.bind(&SocketAddr::V4(SocketAddrV4::new(any_iface, 0)).into())?;
    if iface.is_some() {
        send.set_multicast_if_v4(&any_iface)?;
    }
    send.set_multicast_loop_v4(true)?;
    send.set_multicast_ttl_v4(1)?;
    Ok((recv, send))
}

async fn run(weak: Weak<Inner>, recv: UdpSocket, send: UdpSocket, port: u16) {
    let cookie = format!("{:016x}", rand::random::<u64>());
    let mut state = LsdState::new(port, cookie);
    let group = SocketAddr::V4(LSD_GROUP_V4);
    let mut buf = vec![0u8; MAX_LSD_LEN + 1];
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let Some(inner) = weak.upgrade() else { return };
                let now = Instant::now();
                state.set_torrents(now, &public_torrents(&inner));
                drop(inner);
                for a in state.due(now) {
                    if let Err(e) = send.send_to(&a.encode(group), group).await {
                        tracing::debug!("LSD announce not sent: {e}");
                    }
                }
            }
            r = recv.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                let Some(inner) = weak.upgrade() else { return };
                let ours = public_torrents(&inner);
                let heard = state.on_datagram(Instant::now(), from, &buf[..n], |ih| ours.contains(ih));
                if let Some((peer, hashes)) = heard {
                    connect(&inner, peer, &hashes);
                }
            }
        }
    }
}

/// Info-hashes of the running public torrents (never private ones, BEP 27).
fn public_torrents(inner: &Inner) -> Vec<InfoHash> {
    let torrents = inner.torrents.lock().unwrap_or_else(|e| e.into_inner());
    torrents
        .iter()
        .filter(|e| {
            !e.shared.meta.info.private && !e.paused.load(std::sync::atomic::Ordering::Acquire)
        })
        .map(|e| e.shared.info_hash)
        .collect()
}

fn connect(inner: &Inner, peer: SocketAddr, hashes: &[InfoHash]) {
    let found: Vec<_> = {
        let torrents = inner.torrents.lock().unwrap_or_else(|e| e.into_inner());
        torrents
            .iter()
            .filter(|e| hashes.contains(&e.shared.info_hash))
            .map(|e| {
                e.control.add_known_peers(&[peer]);
                e.shared.clone()
            })
            .collect()
    };
    for t in found {
        tracing::debug!("LSD: {peer} has torrent {}", t.id);
        super::connect_peers(inner, &t, &[peer]);
    }
}
