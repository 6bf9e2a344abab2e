//! Adversarial peers for the hardening tests (issue 14 §4), written here on purpose: a real
//! client will not misbehave on demand. Plain blocking TCP on 127.0.0.x, speaking just enough
//! of BEP 3/6/10 to attack in one chosen way.
//!
//! - [`HostilePeer`]: listens; the engine under test dials it and meets one [`Attack`].
//! - [`request_flood`]: dials the engine, waits until it announces a piece, then asks for it
//!   far more often than any peer may queue.
//! - [`Storm`]: opens many connections to the engine at once; half say nothing, half ask for a
//!   torrent it does not have.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ringtorrent::InfoHash;

use crate::torrent::TorrentMeta;

/// What a [`HostilePeer`] does once the engine has dialed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attack {
    /// Answers the handshake for another torrent.
    WrongInfoHash,
    /// After the handshake, a message header claiming 4 GiB - 1 bytes (a PIECE).
    HugeLengthPrefix,
    /// A bitfield three bytes shorter than the piece count calls for.
    BadBitfieldLength,
    /// A HAVE for a piece past the last one.
    HaveOutOfRange,
    /// Says it has everything, never unchokes, and sends PIECE messages nobody asked for.
    UnrequestedPieces,
    /// Says it has everything, unchokes, and answers every request with random bytes.
    CorruptData,
    /// Sends its handshake one byte per second.
    TrickleHandshake,
    /// Accepts the connection and never sends a byte.
    Silent,
    /// After the handshake, an extension message (BEP 10) header claiming 256 MiB.
    HugeExtensionMessage,
    /// An extension handshake claiming 1 TiB of metadata (BEP 9).
    AbsurdMetadataSize,
}

/// The torrent facts an attacker needs.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub info_hash: InfoHash,
    pub num_pieces: u32,
    pub piece_length: u32,
    pub total_len: u64,
}

impl Target {
    pub fn of(meta: &TorrentMeta) -> Self {
        Target {
            info_hash: meta.info_hash,
            num_pieces: meta.num_pieces,
            piece_length: meta.piece_length,
            total_len: meta.total_len(),
        }
    }

    fn bitfield_len(&self) -> usize {
        self.num_pieces.div_ceil(8) as usize
    }

    /// A bitfield with every piece set and the spare bits clear.
    fn full_bitfield(&self) -> Vec<u8> {
        let mut b = vec![0xFFu8; self.bitfield_len()];
        let spare = self.bitfield_len() * 8 - self.num_pieces as usize;
        if let Some(last) = b.last_mut() {
            *last &= 0xFFu8 << spare;
        }
        b
    }

    fn piece_len(&self, piece: u32) -> u32 {
        let start = u64::from(piece) * u64::from(self.piece_length);
        self.total_len
            .saturating_sub(start)
            .min(u64::from(self.piece_length)) as u32
    }
}

/// A listening attacker. Stops accepting when dropped (connections end when the engine closes
/// them).
pub struct HostilePeer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
    served: Arc<AtomicU64>,
}

impl HostilePeer {
    pub fn start(target: Target, attack: Attack) -> Result<Self> {
        let ip = crate::net::seeder_ip();
        let listener = TcpListener::bind((ip, 0)).context("bind the hostile peer")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let served = Arc::new(AtomicU64::new(0));
        let (s, a, n) = (stop.clone(), accepted.clone(), served.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        a.fetch_add(1, Ordering::Relaxed);
                        let (n, s) = (n.clone(), s.clone());
                        std::thread::spawn(move || {
                            let _ = conn.set_nonblocking(false);
                            let _ = attack_conn(conn, target, attack, &n, &s);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(HostilePeer {
            addr,
            stop,
            accepted,
            served,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections the engine made to it.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Blocks sent (corrupt or unrequested).
    pub fn blocks_sent(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for HostilePeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A BEP 3 frame: length prefix, id, payload.
pub fn frame(id: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
    f.push(id);
    f.extend_from_slice(payload);
    f
}

/// A handshake with the given reserved byte 5 (0x10: extension protocol) and byte 7 (0x04:
/// Fast), and a fresh peer id.
pub fn handshake(ih: &InfoHash, ext: bool, fast: bool) -> Vec<u8> {
    let mut h = Vec::with_capacity(68);
    h.push(19u8);
    h.extend_from_slice(b"BitTorrent protocol");
    h.extend_from_slice(&[
        0,
        0,
        0,
        0,
        0,
        if ext { 0x10 } else { 0 },
        0,
        if fast { 0x04 } else { 0 },
    ]);
    h.extend_from_slice(&ih.0);
    // A peer id of its own per handshake: engines drop a second connection from the same id.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    h.extend_from_slice(format!("-XX0001-{n:012}").as_bytes());
    h
}

/// Reads one frame (`None` for a keep-alive); frames over 1 MiB are an error.
pub fn read_frame(c: &mut TcpStream) -> Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    c.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 {
        return Ok(None);
    }
    anyhow::ensure!(len <= 1 << 20, "frame of {len} bytes");
    let mut msg = vec![0u8; len];
    c.read_exact(&mut msg)?;
    Ok(Some(msg))
}

/// Reads until the engine closes the connection (or the peer is stopped).
fn drain(c: &mut TcpStream, stop: &AtomicBool) {
    let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        match c.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// Random-looking bytes (xorshift; corruption needs no cryptographic randomness).
fn noise(len: usize, seed: &mut u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn attack_conn(
    mut c: TcpStream,
    t: Target,
    attack: Attack,
    served: &AtomicU64,
    stop: &AtomicBool,
) -> Result<()> {
    c.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut theirs = [0u8; 68];
    c.read_exact(&mut theirs)?;
    let ext = matches!(
        attack,
        Attack::HugeExtensionMessage | Attack::AbsurdMetadataSize
    );
    match attack {
        Attack::Silent => {
            drain(&mut c, stop);
            return Ok(());
        }
        Attack::TrickleHandshake => {
            for b in handshake(&t.info_hash, false, false) {
                if stop.load(Ordering::Relaxed) || c.write_all(&[b]).is_err() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            drain(&mut c, stop);
            return Ok(());
        }
        Attack::WrongInfoHash => {
            let mut other = t.info_hash;
            other.0[0] ^= 0xFF;
            c.write_all(&handshake(&other, false, false))?;
            drain(&mut c, stop);
            return Ok(());
        }
        _ => c.write_all(&handshake(&t.info_hash, ext, false))?,
    }
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    match attack {
        Attack::HugeLengthPrefix => {
            let mut m = u32::MAX.to_be_bytes().to_vec();
            m.push(7);
            m.extend_from_slice(&[0u8; 1024]);
            c.write_all(&m)?;
        }
        Attack::BadBitfieldLength => {
            c.write_all(&frame(5, &vec![0xFFu8; t.bitfield_len().saturating_sub(3)]))?;
        }
        Attack::HaveOutOfRange => {
            c.write_all(&frame(4, &(t.num_pieces + 7).to_be_bytes()))?;
        }
        Attack::UnrequestedPieces => {
            c.write_all(&frame(5, &t.full_bitfield()))?;
            // Never unchoked, so the engine asks for nothing: every block is unrequested.
            for i in 0..200u32 {
                let piece = i % t.num_pieces;
                let len = t.piece_len(piece).min(16384);
                let mut m = piece.to_be_bytes().to_vec();
                m.extend_from_slice(&0u32.to_be_bytes());
                m.extend_from_slice(&noise(len as usize, &mut seed));
                if c.write_all(&frame(7, &m)).is_err() {
                    return Ok(());
                }
                served.fetch_add(1, Ordering::Relaxed);
            }
        }
        Attack::CorruptData => {
            c.write_all(&frame(5, &t.full_bitfield()))?;
            c.write_all(&frame(1, &[]))?; // unchoke
            while !stop.load(Ordering::Relaxed) {
                let Some(msg) = read_frame(&mut c)? else {
                    continue;
                };
                if msg[0] != 6 || msg.len() != 13 {
                    continue;
                }
                let len = u32::from_be_bytes([msg[9], msg[10], msg[11], msg[12]]).min(1 << 17);
                let mut m = msg[1..9].to_vec();
                m.extend_from_slice(&noise(len as usize, &mut seed));
                c.write_all(&frame(7, &m))?;
                served.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(());
        }
        Attack::HugeExtensionMessage => {
            let mut m = (256u32 << 20).to_be_bytes().to_vec();
            m.extend_from_slice(&[20, 0]);
            m.extend_from_slice(&[b'd'; 1024]);
            c.write_all(&m)?;
        }
        Attack::AbsurdMetadataSize => {
            let body = format!("d1:md11:ut_metadatai3ee13:metadata_sizei{}ee", 1u64 << 40);
            let mut m = vec![0u8];
            m.extend_from_slice(body.as_bytes());
            c.write_all(&frame(20, &m))?;
        }
        Attack::WrongInfoHash | Attack::Silent | Attack::TrickleHandshake => {}
    }
    drain(&mut c, stop);
    Ok(())
}

/// What [`request_flood`] saw.
#[derive(Debug)]
pub struct FloodReport {
    /// The piece it asked for, which the engine had announced.
    pub piece: u32,
    /// REQUEST messages written before the engine closed the connection.
    pub requests_sent: u64,
    /// The engine closed the connection.
    pub closed: bool,
}

/// Dials the engine at `engine` as a leecher with the Fast extension, waits (up to `wait`) for
/// it to announce a piece (HAVE, or a bitfield with a piece set), then sends `n` requests for
/// blocks of that piece without reading a byte of the answers.
pub fn request_flood(
    engine: SocketAddr,
    t: Target,
    n: u64,
    wait: Duration,
) -> Result<JoinHandle<Result<FloodReport>>> {
    let ip = crate::net::seeder_ip();
    let mut c = crate::net::connect_from(ip, engine, Duration::from_secs(5))?;
    Ok(std::thread::spawn(move || {
        c.set_read_timeout(Some(Duration::from_secs(10)))?;
        c.write_all(&handshake(&t.info_hash, false, true))?;
        let mut theirs = [0u8; 68];
        c.read_exact(&mut theirs)?;
        c.write_all(&frame(2, &[]))?; // interested
        let end = Instant::now() + wait;
        let piece = loop {
            if Instant::now() > end {
                bail!("the engine announced no piece within {wait:?}");
            }
            let Some(msg) = read_frame(&mut c)? else {
                continue;
            };
            match msg[0] {
                4 if msg.len() == 5 => break u32::from_be_bytes([msg[1], msg[2], msg[3], msg[4]]),
                5 => {
                    let bits = &msg[1..];
                    if let Some(i) =
                        (0..bits.len() * 8).find(|i| bits[i / 8] & (0x80 >> (i % 8)) != 0)
                    {
                        break i as u32;
                    }
                }
                _ => {}
            }
        };
        let blocks = t.piece_len(piece).div_ceil(16384).max(1);
        let mut sent = 0;
        let mut closed = false;
        let mut batch = Vec::with_capacity(17 * 256);
        while sent < n {
            batch.clear();
            for _ in 0..256.min(n - sent) {
                let b = (sent % u64::from(blocks)) as u32;
                let len = (t.piece_len(piece) - b * 16384).min(16384);
                let mut m = piece.to_be_bytes().to_vec();
                m.extend_from_slice(&(b * 16384).to_be_bytes());
                m.extend_from_slice(&len.to_be_bytes());
                batch.extend_from_slice(&frame(6, &m));
                sent += 1;
            }
            if c.write_all(&batch).is_err() {
                closed = true;
                break;
            }
        }
        if !closed {
            // The engine closes the connection; everything it sent before is read and dropped.
            c.set_read_timeout(Some(Duration::from_secs(15)))?;
            let mut buf = vec![0u8; 1 << 16];
            closed = loop {
                match c.read(&mut buf) {
                    Ok(0) => break true,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
                    Err(_) => break false,
                }
            };
        }
        Ok(FloodReport {
            piece,
            requests_sent: sent,
            closed,
        })
    }))
}

/// Many connections to one engine, held open until dropped.
pub struct Storm {
    pub conns: Vec<TcpStream>,
    /// Connections that sent a handshake for a torrent the engine does not have.
    pub unknown_torrent: usize,
}

impl Storm {
    /// Opens `n` connections to `engine` from 127.0.0.x addresses (at most 200 per source
    /// address), as fast as they connect; every other one sends a handshake for a random
    /// torrent, the rest stay silent.
    pub fn open(engine: SocketAddr, n: usize) -> Result<Self> {
        let mut conns = Vec::with_capacity(n);
        let mut unknown_torrent = 0;
        for i in 0..n {
            let src = std::net::Ipv4Addr::new(127, 0, 1, 1 + (i / 200) as u8);
            let mut c = crate::net::connect_from(src, engine, Duration::from_secs(5))
                .with_context(|| format!("connection {i} of {n}"))?;
            if i % 2 == 1 {
                let mut ih = InfoHash([0u8; 20]);
                ih.0[..8].copy_from_slice(&(i as u64).to_be_bytes());
                ih.0[19] = 0x5A;
                c.write_all(&handshake(&ih, true, true))?;
                unknown_torrent += 1;
            }
            conns.push(c);
        }
        Ok(Storm {
            conns,
            unknown_torrent,
        })
    }

    /// Connections the engine has closed so far (a read sees end of file or a reset).
    pub fn closed_by_engine(&mut self) -> usize {
        let mut n = 0;
        let mut buf = [0u8; 256];
        for c in &mut self.conns {
            let _ = c.set_nonblocking(true);
            let closed = loop {
                match c.read(&mut buf) {
                    Ok(0) => break true,
                    Ok(_) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
                    Err(_) => break true,
                }
            };
            n += usize::from(closed);
        }
        n
    }
}
