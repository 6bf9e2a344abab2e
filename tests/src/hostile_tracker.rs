//! Hostile HTTP trackers for the hardening tests (issue 14 §5), written here on purpose (no real
//! tracker misbehaves on demand): a thread per connection on 127.0.0.1, each answering every
//! announce the same bad way.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use crate::net::LEECHER_IP;

/// How a [`HostileTracker`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackerAttack {
    /// `200 OK` with bytes that are not bencode.
    Garbage,
    /// `200 OK` streaming 100 MB of a bencoded string, with no `Content-Length`.
    Huge,
    /// `302` back to itself, forever.
    RedirectLoop,
    /// Reads the request and never answers.
    Silent,
}

/// The running tracker; stops accepting on drop.
pub struct HostileTracker {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    body_bytes: Arc<AtomicU64>,
}

/// Bytes of reply body the `Huge` tracker offers.
pub const HUGE_BYTES: u64 = 100_000_000;

impl HostileTracker {
    pub fn start(attack: TrackerAttack) -> Result<Self> {
        let listener = TcpListener::bind((LEECHER_IP, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let body_bytes = Arc::new(AtomicU64::new(0));
        let (s, r, b) = (stop.clone(), requests.clone(), body_bytes.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((c, _)) => {
                        let (s, r, b) = (s.clone(), r.clone(), b.clone());
                        std::thread::spawn(move || {
                            let _ = answer(c, addr, attack, &s, &r, &b);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(HostileTracker {
            addr,
            stop,
            requests,
            body_bytes,
        })
    }

    pub fn announce_url(&self) -> String {
        format!("http://{}/announce", self.addr)
    }

    /// Announce requests received (redirects included).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Body bytes the client accepted before it stopped reading (the `Huge` tracker).
    pub fn body_bytes_sent(&self) -> u64 {
        self.body_bytes.load(Ordering::Relaxed)
    }
}

impl Drop for HostileTracker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads a request's head (up to 8 KiB).
fn read_head(c: &mut TcpStream) -> Result<String> {
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = c.read(&mut buf)?;
        anyhow::ensure!(n > 0 && head.len() < 8192, "bad request");
        head.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

fn answer(
    mut c: TcpStream,
    addr: SocketAddr,
    attack: TrackerAttack,
    stop: &AtomicBool,
    requests: &AtomicU64,
    body_bytes: &AtomicU64,
) -> Result<()> {
    let head = read_head(&mut c)?;
    requests.fetch_add(1, Ordering::Relaxed);
    match attack {
        TrackerAttack::Garbage => {
            let body = b"<html>\x00\xff not bencode at all {{{";
            write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            c.write_all(body)?;
        }
        TrackerAttack::Huge => {
            c.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")?;
            let prefix = format!("d14:failure reason{HUGE_BYTES}:");
            c.write_all(prefix.as_bytes())?;
            let chunk = vec![b'x'; 64 * 1024];
            let mut sent = 0u64;
            while sent < HUGE_BYTES && !stop.load(Ordering::Relaxed) {
                let n = chunk.len().min((HUGE_BYTES - sent) as usize);
                if c.write_all(&chunk[..n]).is_err() {
                    break;
                }
                sent += n as u64;
                body_bytes.store(sent, Ordering::Relaxed);
            }
        }
        TrackerAttack::RedirectLoop => {
            // Back to the same path with one more query key, so no cache can end the loop.
            let path = head.split_whitespace().nth(1).unwrap_or("/announce");
            let sep = if path.contains('?') { '&' } else { '?' };
            write!(
                c,
                "HTTP/1.1 302 Found\r\nLocation: http://{addr}{path}{sep}r=1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )?;
        }
        TrackerAttack::Silent => {
            let mut buf = [0u8; 256];
            let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
            while !stop.load(Ordering::Relaxed) {
                match c.read(&mut buf) {
                    Ok(0) => break,
                    _ => continue,
                }
            }
        }
    }
    Ok(())
}
