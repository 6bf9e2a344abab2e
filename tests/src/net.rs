//! Loopback addresses and ports for test peers.
//!
//! Only 127.0.0.0/8 is ever handed out. Leechers use 127.0.0.1; each seeder gets its own address
//! from 127.0.0.2 upwards (some clients take a peer with their own IP for themselves), and every
//! process gets a port the OS reported free on that address.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::wait::wait_until;

/// The leecher address.
pub const LEECHER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

/// Seeder addresses cycle through 127.0.0.2 ..= 127.0.0.(2 + SEEDER_IPS - 1).
const SEEDER_IPS: u32 = 250;

static NEXT_SEEDER: AtomicU32 = AtomicU32::new(0);

/// A fresh seeder address, 127.0.0.2 and up (cycling after 250).
pub fn seeder_ip() -> Ipv4Addr {
    let n = NEXT_SEEDER.fetch_add(1, Ordering::Relaxed) % SEEDER_IPS;
    Ipv4Addr::new(127, 0, 0, 2 + n as u8)
}

/// A TCP port that was free on `ip` a moment ago. Callers pass it straight to the process that
/// will bind it; a lost race shows up as that process failing to listen.
pub fn free_port(ip: Ipv4Addr) -> Result<u16> {
    assert!(ip.is_loopback(), "test peers live on loopback only");
    let l = TcpListener::bind((ip, 0)).with_context(|| format!("binding {ip}:0"))?;
    Ok(l.local_addr()?.port())
}

/// A port free for both TCP and UDP on `ip` (trackers serve both on one port).
pub fn free_tcp_udp_port(ip: Ipv4Addr) -> Result<u16> {
    for _ in 0..50 {
        let port = free_port(ip)?;
        if UdpSocket::bind((ip, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no port free for both TCP and UDP on {ip}")
}

/// Waits until something accepts TCP connections at `addr`.
pub fn wait_port_open(addr: SocketAddr, timeout: Duration) -> Result<()> {
    wait_until(timeout, &format!("{addr} to accept TCP"), || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    })
}

/// Connects to `addr` from `local` (port chosen by the OS). Without this, Linux picks the
/// destination address as the source for 127.x destinations, and a seeder on 127.0.0.2 sees a
/// connection from its own address (Transmission resets those).
pub fn connect_from(local: Ipv4Addr, addr: SocketAddr, timeout: Duration) -> Result<TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    s.bind(&SocketAddr::from((local, 0)).into())?;
    s.connect_timeout(&addr.into(), timeout)
        .with_context(|| format!("connecting {local} -> {addr}"))?;
    Ok(s.into())
}

/// Largest HTTP response the kit reads (tracker replies are tiny).
const MAX_HTTP_RESPONSE: u64 = 1 << 20;

/// A plain HTTP/1.0 GET on loopback; returns (status code, body).
pub fn http_get(
    addr: SocketAddr,
    path_and_query: &str,
    timeout: Duration,
) -> Result<(u16, Vec<u8>)> {
    http_get_from(None, addr, path_and_query, timeout)
}

/// [`http_get`] from the source address `local` (the OS's choice when `None`): a tracker
/// takes the announcing peer's address from the connection.
pub fn http_get_from(
    local: Option<Ipv4Addr>,
    addr: SocketAddr,
    path_and_query: &str,
    timeout: Duration,
) -> Result<(u16, Vec<u8>)> {
    assert!(addr.ip().is_loopback(), "test traffic stays on loopback");
    let mut s = match local {
        Some(ip) => connect_from(ip, addr, timeout)?,
        None => TcpStream::connect_timeout(&addr, timeout)?,
    };
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    // One write: `write!` on the stream would send the request in several segments.
    let req = format!("GET {path_and_query} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())?;
    let mut buf = Vec::new();
    s.take(MAX_HTTP_RESPONSE).read_to_end(&mut buf)?;
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("HTTP response without a header end")?;
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("bad HTTP status line: {head:?}"))?;
    Ok((code, buf[head_end + 4..].to_vec()))
}

/// Percent-encodes bytes for a query string (every byte but unreserved characters).
pub fn url_encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeder_ips_are_loopback_and_never_the_leecher() {
        for _ in 0..600 {
            let ip = seeder_ip();
            assert!(ip.is_loopback());
            assert_ne!(ip, LEECHER_IP);
            assert!(ip.octets()[3] >= 2);
        }
    }

    #[test]
    fn free_port_binds_on_a_seeder_address() {
        let ip = Ipv4Addr::new(127, 0, 0, 9);
        let port = free_port(ip).unwrap();
        assert_ne!(port, 0);
        TcpListener::bind((ip, port)).unwrap();
    }

    #[test]
    fn connect_from_uses_the_given_source_address() {
        let l = TcpListener::bind((Ipv4Addr::new(127, 0, 0, 7), 0)).unwrap();
        let addr = l.local_addr().unwrap();
        let _c = connect_from(LEECHER_IP, addr, Duration::from_secs(5)).unwrap();
        let (_, peer) = l.accept().unwrap();
        assert_eq!(peer.ip(), std::net::IpAddr::V4(LEECHER_IP));
    }

    #[test]
    fn url_encoding_escapes_binary() {
        assert_eq!(url_encode(b"aZ9-_.~"), "aZ9-_.~");
        assert_eq!(url_encode(&[0, 0xff, b' ', b'%']), "%00%FF%20%25");
    }

    #[test]
    fn http_get_reads_status_and_body() {
        let l = TcpListener::bind((LEECHER_IP, 0)).unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            // Read the whole request first: closing with unread bytes would make the kernel
            // reset the connection under the client (it may write the request in pieces).
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "client closed before the end of its request");
                req.extend_from_slice(&buf[..n]);
            }
            assert!(req.starts_with(b"GET /x?y=1 HTTP/1.0\r\n"));
            s.write_all(b"HTTP/1.0 404 Not Found\r\nA: b\r\n\r\nbody")
                .unwrap();
        });
        let (code, body) = http_get(addr, "/x?y=1", Duration::from_secs(5)).unwrap();
        t.join().unwrap();
        assert_eq!((code, body.as_slice()), (404, &b"body"[..]));
    }
}
