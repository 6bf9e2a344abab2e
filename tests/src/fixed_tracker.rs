//! A tracker that answers every HTTP announce with a fixed list of peers (which the caller may
//! change while it runs). For clients that cannot be told a peer by address (aria2) and for
//! benchmarks that must decide exactly which seeder a leecher sees.
//!
//! Invariants: it listens on 127.0.0.1 only; a request is read up to [`MAX_REQUEST`] bytes with a
//! read timeout, so a stuck client cannot stall it; the thread stops when the guard drops.

use std::io::{Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Result;

use crate::bencode::put_bytes;
use crate::net::LEECHER_IP;

/// Largest announce request read (headers included).
const MAX_REQUEST: usize = 8 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Re-announce interval handed out, in seconds.
const INTERVAL_S: u32 = 5;

/// The running tracker; stops on drop.
pub struct FixedTracker {
    addr: SocketAddr,
    peers: Arc<Mutex<Vec<SocketAddrV4>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    announces: Arc<Mutex<u64>>,
}

impl FixedTracker {
    pub fn start(peers: &[SocketAddrV4]) -> Result<Self> {
        let listener = TcpListener::bind((LEECHER_IP, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let peers = Arc::new(Mutex::new(peers.to_vec()));
        let stop = Arc::new(AtomicBool::new(false));
        let announces = Arc::new(Mutex::new(0));
        let (p, s, a) = (peers.clone(), stop.clone(), announces.clone());
        let thread = std::thread::spawn(move || serve(listener, p, s, a));
        Ok(FixedTracker {
            addr,
            peers,
            stop,
            thread: Some(thread),
            announces,
        })
    }

    pub fn announce_url(&self) -> String {
        format!("http://{}/announce", self.addr)
    }

    /// Replaces the peers handed out from now on.
    pub fn set_peers(&self, peers: &[SocketAddrV4]) {
        if let Ok(mut p) = self.peers.lock() {
            *p = peers.to_vec();
        }
    }

    /// Announces answered so far.
    pub fn announces(&self) -> u64 {
        self.announces.lock().map_or(0, |n| *n)
    }
}

impl Drop for FixedTracker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    listener: TcpListener,
    peers: Arc<Mutex<Vec<SocketAddrV4>>>,
    stop: Arc<AtomicBool>,
    announces: Arc<Mutex<u64>>,
) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((conn, _)) => {
                let list = peers.lock().map(|p| p.clone()).unwrap_or_default();
                let _ = answer(conn, &list, &announces);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Reads one request (bounded), counts it, and answers with `peers`, whatever was asked. The
/// count comes first: a client that has read the answer sees it counted.
fn answer(
    mut conn: TcpStream,
    peers: &[SocketAddrV4],
    announces: &Mutex<u64>,
) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < MAX_REQUEST {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        req.extend_from_slice(&buf[..n]);
    }
    if let Ok(mut n) = announces.lock() {
        *n += 1;
    }
    let body = reply_body(peers);
    let head = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes())?;
    conn.write_all(&body)
}

/// `d8:intervali5e5:peers<compact>e` (BEP 23 compact peer list).
pub fn reply_body(peers: &[SocketAddrV4]) -> Vec<u8> {
    let mut compact = Vec::with_capacity(peers.len() * 6);
    for p in peers {
        compact.extend_from_slice(&p.ip().octets());
        compact.extend_from_slice(&p.port().to_be_bytes());
    }
    let mut out = format!("d8:intervali{INTERVAL_S}e5:peers").into_bytes();
    put_bytes(&mut out, &compact);
    out.push(b'e');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode::{decode, Node};
    use crate::net::http_get;

    #[test]
    fn answers_with_the_current_peers() {
        let a: SocketAddrV4 = "127.0.0.9:4321".parse().unwrap();
        let t = FixedTracker::start(&[a]).unwrap();
        let addr: SocketAddr = t.announce_url()[7..]
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let (code, body) = http_get(addr, "/announce?x=1", IO_TIMEOUT).unwrap();
        assert_eq!(code, 200);
        let root = decode(&body).unwrap();
        let peers = root.get("peers").and_then(Node::as_bytes).unwrap();
        assert_eq!(peers, &[127, 0, 0, 9, 0x10, 0xe1]);
        t.set_peers(&[]);
        let (_, body) = http_get(addr, "/announce", IO_TIMEOUT).unwrap();
        assert_eq!(
            decode(&body).unwrap().get("peers").and_then(Node::as_bytes),
            Some(&[][..])
        );
        assert_eq!(t.announces(), 2);
    }
}
