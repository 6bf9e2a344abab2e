//! Hostile peers for the tests, written here on purpose (a real client will not misbehave on
//! demand): plain TCP on a 127.0.0.x address, speaking just enough of BEP 3/10/9 to lie.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use ringtorrent::InfoHash;

/// How a [`MetadataLiar`] lies.
#[derive(Debug, Clone, Copy)]
pub enum MetadataLie {
    /// Claims the real size and answers every `ut_metadata` request with bytes that do not
    /// hash to the info-hash.
    WrongData { metadata_size: u32 },
    /// Claims an absurd `metadata_size` in its extension handshake.
    HugeSize(u64),
}

/// A peer that accepts connections for one torrent and lies about its metadata. Stops when
/// dropped.
pub struct MetadataLiar {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
}

impl MetadataLiar {
    pub fn start(info_hash: InfoHash, lie: MetadataLie) -> Result<Self> {
        let ip = crate::net::seeder_ip();
        let listener = TcpListener::bind((ip, 0)).context("bind the hostile peer")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let (s, n) = (stop.clone(), served.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let n = n.clone();
                        std::thread::spawn(move || {
                            let _ = serve(conn, info_hash, lie, &n);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(MetadataLiar { addr, stop, served })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Metadata pieces sent (with wrong bytes).
    pub fn pieces_served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for MetadataLiar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn frame(id: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
    f.push(id);
    f.extend_from_slice(payload);
    f
}

fn serve(mut c: TcpStream, ih: InfoHash, lie: MetadataLie, served: &AtomicU64) -> Result<()> {
    c.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut hs = [0u8; 68];
    c.read_exact(&mut hs)?;
    let mut ours = Vec::with_capacity(68);
    ours.push(19u8);
    ours.extend_from_slice(b"BitTorrent protocol");
    ours.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0]);
    ours.extend_from_slice(&ih.0);
    ours.extend_from_slice(b"-XX0001-hostilepeer!");
    c.write_all(&ours)?;
    let size: u64 = match lie {
        MetadataLie::WrongData { metadata_size } => u64::from(metadata_size),
        MetadataLie::HugeSize(n) => n,
    };
    // Extended id 0: {"m": {"ut_metadata": 3}, "metadata_size": size}.
    let ext = format!("d1:md11:ut_metadatai3ee13:metadata_sizei{size}ee");
    let mut hello = vec![0u8];
    hello.extend_from_slice(ext.as_bytes());
    c.write_all(&frame(20, &hello))?;
    loop {
        let mut len = [0u8; 4];
        c.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        anyhow::ensure!(len <= 1 << 20, "frame too long");
        let mut msg = vec![0u8; len];
        c.read_exact(&mut msg)?;
        // A ut_metadata request arrives on the id we chose (3): {"msg_type":0,"piece":N}.
        if len < 2 || msg[0] != 20 || msg[1] != 3 {
            continue;
        }
        let body = String::from_utf8_lossy(&msg[2..]).into_owned();
        let piece: u64 = body
            .split("5:piecei")
            .nth(1)
            .and_then(|r| r.split('e').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let start = piece * 16384;
        let piece_len = size.saturating_sub(start).min(16384);
        // Their ut_metadata id (ringtorrent advertises 1).
        let mut data = vec![1u8];
        data.extend_from_slice(
            format!("d8:msg_typei1e5:piecei{piece}e10:total_sizei{size}ee").as_bytes(),
        );
        data.extend(std::iter::repeat_n(0xA5u8, piece_len as usize));
        c.write_all(&frame(20, &data))?;
        served.fetch_add(1, Ordering::Relaxed);
    }
}
