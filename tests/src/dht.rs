//! A DHT of its own for a test: libtorrent DHT nodes (`scripts/lt_dht_node.py`, sessions with no
//! torrent), each on its own 127.0.0.x address, that know only each other. Clients under test are
//! given every node as a bootstrap node, so nothing ever reaches the public DHT, and with a
//! handful of nodes every lookup and announce visits all of them.
//!
//! Why libtorrent nodes and not `mainline` ones: `mainline` (6.2 to 8.0) only decodes KRPC
//! messages whose transaction id is 4 bytes, and libtorrent sends 2-byte ones, so libtorrent can
//! never use a `mainline` node (ringtorrent, a `mainline` client, uses libtorrent nodes fine).
//!
//! The test process watches the DHT with a `mainline` client of its own on 127.0.0.229
//! ([`LocalDht::peers`]). Dropping the [`LocalDht`] kills every node.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_lite::future::block_on;
use futures_lite::StreamExt as _;
use ringtorrent::InfoHash;

use crate::proc::{kit_command, Proc};
use crate::{python, script};

/// The nodes' addresses: 127.0.0.230 and up (UDP ports chosen by the OS).
const FIRST_NODE_IP: u8 = 230;
/// Where the test's own watching client binds.
const OBSERVER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 229);
/// Most nodes one test may start.
const MAX_NODES: usize = 20;
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Running DHT nodes on loopback, and a client that watches them.
pub struct LocalDht {
    nodes: Vec<Proc>,
    addrs: Vec<SocketAddr>,
    observer: mainline::async_dht::AsyncDht,
}

impl LocalDht {
    /// Starts `n` libtorrent DHT nodes (the first bootstraps from none, the others from it).
    pub fn start(n: usize) -> Result<LocalDht> {
        crate::require::require(crate::require::Tool::Libtorrent)?;
        if n == 0 || n > MAX_NODES {
            bail!("a local DHT has 1..={MAX_NODES} nodes, not {n}");
        }
        let mut nodes = Vec::new();
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for i in 0..n {
            let ip = Ipv4Addr::new(127, 0, 0, FIRST_NODE_IP + i as u8);
            let mut cmd = kit_command(python());
            cmd.arg(script("lt_dht_node.py"))
                .arg("--listen")
                .arg(format!("{ip}:0"));
            if let Some(first) = addrs.first() {
                cmd.arg("--dht-bootstrap").arg(first.to_string());
            }
            let mut proc = Proc::spawn_fresh(&format!("dht-node-{i}"), cmd)?;
            let line = proc.wait_for_log("READY ", READY_TIMEOUT)?;
            let addr: SocketAddr = line
                .trim()
                .strip_prefix("READY ")
                .and_then(|a| a.parse().ok())
                .with_context(|| format!("bad READY line {line:?}"))?;
            if !addr.ip().is_loopback() {
                bail!("DHT node listens on {addr}, not loopback");
            }
            nodes.push(proc);
            addrs.push(addr);
        }
        let observer = mainline::Dht::builder()
            .bind_address(OBSERVER_IP)
            .port(0)
            .bootstrap(&addrs)
            .build()
            .context("starting the watching DHT client")?
            .as_async();
        Ok(LocalDht {
            nodes,
            addrs,
            observer,
        })
    }

    /// Every node's address: what clients are given as bootstrap nodes.
    pub fn bootstrap(&self) -> Vec<SocketAddr> {
        self.addrs.clone()
    }

    /// The `IP:PORT` strings of [`LocalDht::bootstrap`].
    pub fn bootstrap_strings(&self) -> Vec<String> {
        self.addrs.iter().map(|a| a.to_string()).collect()
    }

    /// Peers announced for `ih`, found by a lookup from the watching client.
    pub fn peers(&self, ih: &InfoHash) -> Result<Vec<SocketAddr>> {
        let id = mainline::Id::from_bytes(ih.0).context("info-hash as a DHT id")?;
        let mut lookup = self.observer.get_peers(id);
        let mut peers: Vec<SocketAddr> = Vec::new();
        block_on(async {
            while let Some(batch) = lookup.next().await {
                peers.extend(batch.into_iter().map(|a: SocketAddrV4| SocketAddr::V4(a)));
            }
        });
        peers.sort();
        peers.dedup();
        Ok(peers)
    }

    /// Waits until a peer on `ip` has announced `ih`; returns its address.
    pub fn wait_for_peer_on(
        &mut self,
        ih: &InfoHash,
        ip: Ipv4Addr,
        timeout: Duration,
    ) -> Result<SocketAddr> {
        let deadline = Instant::now() + timeout;
        loop {
            for node in &mut self.nodes {
                node.check_alive()?;
            }
            let peers = self.peers(ih)?;
            if let Some(p) = peers.iter().find(|p| p.ip() == ip) {
                return Ok(*p);
            }
            if Instant::now() > deadline {
                bail!(
                    "no peer on {ip} announced {ih} to the local DHT within {timeout:?} \
                     (it knows {peers:?})"
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}
