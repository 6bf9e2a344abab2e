//! A userspace UDP relay on loopback that loses and reorders datagrams, for uTP (BEP 29) tests
//! over a lossy path.
//!
//! Clients send to [`UdpRelay::addr`]. For each distinct client address the relay opens its
//! own upstream socket on the relay's IP (port chosen by the OS), so the target sees one
//! address per client; what the target sends back to that socket goes to the client from the
//! listening socket. Both directions pass the same impairment: a datagram is dropped with
//! probability `drop_rate`; one that survives is held back for `reorder_delay` with
//! probability `reorder_rate`, so the ones sent after it overtake it.
//!
//! One thread runs the relay with `poll(2)` on nonblocking sockets: it sleeps until a datagram
//! arrives, a held one is due, or (at most [`STOP_CHECK`] later) it is told to stop. It stops
//! on drop. Only loopback addresses are accepted, and the clients it tracks are bounded
//! ([`MAX_CLIENTS`]): datagrams from more clients are dropped.

use std::collections::{HashMap, VecDeque};
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use rustix::event::{poll, PollFd, PollFlags, Timespec};

use crate::rng::SplitMix64;

/// Clients (distinct source addresses) one relay tracks; datagrams from more are dropped.
pub const MAX_CLIENTS: usize = 256;
/// Datagrams held back at once; a datagram that would be held past this is sent at once.
pub const MAX_HELD: usize = 4096;
/// The longest the relay thread sleeps before it checks whether it should stop.
pub const STOP_CHECK: Duration = Duration::from_millis(50);
/// Largest datagram relayed (the largest UDP payload).
const MAX_DATAGRAM: usize = 65_535;
/// Datagrams read from one socket per wake-up, so one busy socket cannot starve the others.
const READ_BATCH: usize = 64;

/// How the relay impairs the path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RelayOpts {
    /// Fraction of datagrams dropped, each direction (0.02 = 2%).
    pub drop_rate: f64,
    /// Fraction of the datagrams not dropped that are held back.
    pub reorder_rate: f64,
    /// How long a held datagram waits (5-20 ms lets a few later ones overtake it).
    pub reorder_delay: Duration,
    /// Seed of the relay's random choices (a run with the same traffic makes the same ones).
    pub seed: u64,
}

impl Default for RelayOpts {
    /// A clean path: nothing dropped or held.
    fn default() -> Self {
        RelayOpts {
            drop_rate: 0.0,
            reorder_rate: 0.0,
            reorder_delay: Duration::from_millis(10),
            seed: 0,
        }
    }
}

impl RelayOpts {
    /// `drop_rate` loss, and 1% of datagrams held back 10 ms. (libtorrent 2.0.8 to itself
    /// moves 4 MiB in ~1.5 s at 2% loss or 1% reordering, but takes ~70 s at 5% reordering,
    /// whatever the delay from 2 to 20 ms.)
    pub fn lossy(drop_rate: f64, seed: u64) -> Self {
        RelayOpts {
            drop_rate,
            reorder_rate: 0.01,
            reorder_delay: Duration::from_millis(10),
            seed,
        }
    }
}

/// What the relay did, both directions added up.
#[derive(Debug, Default)]
struct Counters {
    forwarded: AtomicU64,
    dropped: AtomicU64,
    delayed: AtomicU64,
    send_failed: AtomicU64,
}

/// A running relay; stops (and joins its thread) on drop.
pub struct UdpRelay {
    addr: SocketAddr,
    target: SocketAddr,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpRelay {
    /// Listens on `listen_ip` (a free port) and relays to `target`; both must be loopback.
    pub fn start(listen_ip: IpAddr, target: SocketAddr, opts: RelayOpts) -> Result<UdpRelay> {
        ensure!(
            listen_ip.is_loopback() && target.ip().is_loopback(),
            "the relay stays on loopback: {listen_ip} -> {target}"
        );
        ensure!(
            (0.0..=1.0).contains(&opts.drop_rate) && (0.0..=1.0).contains(&opts.reorder_rate),
            "rates are fractions: {opts:?}"
        );
        let listen = UdpSocket::bind((listen_ip, 0)).with_context(|| format!("{listen_ip}:0"))?;
        listen.set_nonblocking(true)?;
        let addr = listen.local_addr()?;
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut relay = Relay {
            listen,
            listen_ip,
            target,
            opts,
            rng: SplitMix64::new(opts.seed),
            clients: HashMap::new(),
            upstreams: Vec::new(),
            held: VecDeque::new(),
            counters: Arc::clone(&counters),
            buf: vec![0; MAX_DATAGRAM],
        };
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name(format!("udp-relay {addr}"))
                .spawn(move || relay.run(&stop))?
        };
        Ok(UdpRelay {
            addr,
            target,
            counters,
            stop,
            thread: Some(thread),
        })
    }

    /// Where clients send.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the relay sends.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Datagrams passed on (held ones included, once sent), both directions.
    pub fn forwarded(&self) -> u64 {
        self.counters.forwarded.load(Ordering::Relaxed)
    }

    /// Datagrams dropped on purpose, both directions.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Datagrams held back (later ones may have overtaken them), both directions.
    pub fn delayed(&self) -> u64 {
        self.counters.delayed.load(Ordering::Relaxed)
    }

    /// Datagrams the OS would not send (a full socket buffer), or from clients over
    /// [`MAX_CLIENTS`]: lost, but not by the relay's choice.
    pub fn send_failed(&self) -> u64 {
        self.counters.send_failed.load(Ordering::Relaxed)
    }

    /// A one-line summary for test logs.
    pub fn summary(&self) -> String {
        format!(
            "relay {} -> {}: forwarded {}, dropped {}, delayed {}, send failed {}",
            self.addr,
            self.target,
            self.forwarded(),
            self.dropped(),
            self.delayed(),
            self.send_failed()
        )
    }
}

impl Drop for UdpRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Which socket a datagram leaves from.
#[derive(Debug, Clone, Copy)]
enum Via {
    /// The listening socket (target to client).
    Listen,
    /// A client's upstream socket (client to target).
    Upstream(usize),
}

/// A datagram held back until `due`.
struct Held {
    due: Instant,
    from: Via,
    to: SocketAddr,
    data: Vec<u8>,
}

/// The relay thread's state.
struct Relay {
    listen: UdpSocket,
    listen_ip: IpAddr,
    target: SocketAddr,
    opts: RelayOpts,
    rng: SplitMix64,
    /// Client address -> index in `upstreams`.
    clients: HashMap<SocketAddr, usize>,
    /// (upstream socket, the client it serves).
    upstreams: Vec<(UdpSocket, SocketAddr)>,
    /// Held datagrams by due time (the delay is fixed, so arrival order is due order).
    held: VecDeque<Held>,
    counters: Arc<Counters>,
    buf: Vec<u8>,
}

impl Relay {
    fn run(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            let ready = match self.wait() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("udp relay: poll failed: {e}; stopping");
                    return;
                }
            };
            self.release_due(Instant::now());
            if ready.first().copied().unwrap_or(false) {
                self.relay_upstream();
            }
            for (i, r) in ready.iter().skip(1).enumerate() {
                if *r {
                    self.relay_downstream(i);
                }
            }
        }
    }

    /// Sleeps until a socket is readable, the first held datagram is due, or [`STOP_CHECK`];
    /// returns which sockets are readable (the listening one first, then the upstreams).
    fn wait(&self) -> std::io::Result<Vec<bool>> {
        let now = Instant::now();
        let sleep = self
            .held
            .front()
            .map_or(STOP_CHECK, |h| h.due.saturating_duration_since(now))
            .min(STOP_CHECK);
        let mut fds = Vec::with_capacity(1 + self.upstreams.len());
        fds.push(PollFd::new(&self.listen, PollFlags::IN));
        fds.extend(
            self.upstreams
                .iter()
                .map(|(s, _)| PollFd::new(s, PollFlags::IN)),
        );
        // INVARIANT: STOP_CHECK fits a timespec.
        let timeout = Timespec::try_from(sleep).expect("a short sleep fits a timespec");
        match poll(&mut fds, Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(fds.iter().map(|f| !f.revents().is_empty()).collect())
    }

    /// Reads what clients sent and passes it upstream.
    fn relay_upstream(&mut self) {
        for _ in 0..READ_BATCH {
            let (n, client) = match self.listen.recv_from(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => continue, // e.g. ECONNREFUSED from an earlier send: not fatal
            };
            let Some(i) = self.upstream_for(client) else {
                self.counters.send_failed.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            self.pass(n, Via::Upstream(i), self.target);
        }
    }

    /// Reads what the target sent to upstream socket `i` and passes it to that socket's client.
    fn relay_downstream(&mut self, i: usize) {
        for _ in 0..READ_BATCH {
            let (n, src) = match self.upstreams[i].0.recv_from(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => continue,
            };
            if src != self.target {
                continue; // not from the target: a relay relays one path
            }
            let client = self.upstreams[i].1;
            self.pass(n, Via::Listen, client);
        }
    }

    /// The upstream socket for `client`, opened on first use; `None` past [`MAX_CLIENTS`].
    fn upstream_for(&mut self, client: SocketAddr) -> Option<usize> {
        if let Some(&i) = self.clients.get(&client) {
            return Some(i);
        }
        if self.upstreams.len() >= MAX_CLIENTS {
            return None;
        }
        let s = UdpSocket::bind((self.listen_ip, 0)).ok()?;
        s.set_nonblocking(true).ok()?;
        self.upstreams.push((s, client));
        let i = self.upstreams.len() - 1;
        self.clients.insert(client, i);
        Some(i)
    }

    /// Drops, holds or sends the `n` bytes in `buf`.
    fn pass(&mut self, n: usize, from: Via, to: SocketAddr) {
        if self.rng.chance(self.opts.drop_rate) {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.held.len() < MAX_HELD && self.rng.chance(self.opts.reorder_rate) {
            self.counters.delayed.fetch_add(1, Ordering::Relaxed);
            self.held.push_back(Held {
                due: Instant::now() + self.opts.reorder_delay,
                from,
                to,
                data: self.buf[..n].to_vec(),
            });
            return;
        }
        let sent = self.socket(from).send_to(&self.buf[..n], to);
        self.count_send(sent);
    }

    /// Sends the held datagrams that are due by `now`.
    fn release_due(&mut self, now: Instant) {
        while self.held.front().is_some_and(|h| h.due <= now) {
            // INVARIANT: front() was just Some.
            let h = self.held.pop_front().expect("a held datagram");
            let sent = self.socket(h.from).send_to(&h.data, h.to);
            self.count_send(sent);
        }
    }

    fn socket(&self, from: Via) -> &UdpSocket {
        match from {
            Via::Listen => &self.listen,
            Via::Upstream(i) => &self.upstreams[i].0,
        }
    }

    fn count_send(&self, sent: std::io::Result<usize>) {
        let c = match sent {
            Ok(_) => &self.counters.forwarded,
            Err(_) => &self.counters.send_failed,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_addresses_off_loopback() {
        let target: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let off: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(UdpRelay::start(off, target, RelayOpts::default()).is_err());
        let far: SocketAddr = "10.0.0.1:9".parse().unwrap();
        assert!(UdpRelay::start("127.0.0.1".parse().unwrap(), far, RelayOpts::default()).is_err());
    }
}
