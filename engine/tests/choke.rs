//! The choker and BEP 6 on loopback: a real ringtorrent seeder and raw peers written here,
//! which watch what the seeder sends them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use ringtorrent::handshake::{Handshake, HANDSHAKE_LEN};
use ringtorrent::metainfo::build::TorrentBuilder;
use ringtorrent::metainfo::Metainfo;
use ringtorrent::peer::{allowed_fast_set, ALLOWED_FAST_K};
use ringtorrent::{AddTorrent, Config, Engine, PeerId, TorrentSource};

const PIECE: u32 = 16 * 1024;
const PIECES: usize = 64;

const UNCHOKE: u8 = 1;
const CHOKE: u8 = 0;
const PIECE_MSG: u8 = 7;
const REJECT: u8 = 16;
const ALLOWED_FAST: u8 = 17;

fn make_content(dir: &Path) -> (Vec<u8>, Metainfo) {
    let size = PIECE as usize * PIECES;
    let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    let path = dir.join("blob");
    std::fs::write(&path, &data).unwrap();
    let hashes = uring_disk::hash_pieces(&[(path, size as u64)], PIECE, 2, &|_| {}).unwrap();
    TorrentBuilder::single_file("blob", size as u64, PIECE)
        .piece_hashes(hashes)
        .build()
        .unwrap()
}

fn start_seeder(dir: &Path, bytes: Vec<u8>, ip: [u8; 4]) -> Engine {
    let cfg = Config {
        shards: 2,
        hash_threads: 2,
        listen: SocketAddr::from((ip, 0)),
        buffer_pool_bytes: 2 << 20,
        recv_buffers: 16,
        use_trackers: false,
        dht: ringtorrent::DhtConfig::disabled(),
        lsd: false,
        ..Config::default()
    };
    let seeder = Engine::start(cfg).unwrap();
    let mut add = AddTorrent::new(TorrentSource::Bytes(bytes), dir);
    add.check_existing = true;
    let id = seeder.add_torrent(add).unwrap();
    assert!(seeder.stats(id).unwrap().complete);
    seeder
}

/// A peer speaking raw BEP 3/6 over a blocking socket with short read timeouts.
struct RawPeer {
    s: TcpStream,
    buf: Vec<u8>,
}

impl RawPeer {
    fn connect(addr: SocketAddr, meta: &Metainfo, n: u8) -> RawPeer {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut id = *b"-XX0001-rawpeer00000";
        id[19] = n;
        s.write_all(&Handshake::ours(meta.info_hash, PeerId(id)).to_bytes())
            .unwrap();
        RawPeer { s, buf: Vec::new() }
    }

    fn send(&mut self, id: u8, payload: &[u8]) {
        let len = (payload.len() as u32 + 1).to_be_bytes();
        self.s
            .write_all(&[&len[..], &[id], payload].concat())
            .unwrap();
    }

    fn request(&mut self, piece: u32, offset: u32, len: u32) {
        let p = [piece.to_be_bytes(), offset.to_be_bytes(), len.to_be_bytes()].concat();
        self.send(6, &p);
    }

    /// The next message (id, payload) arriving before `deadline`; keep-alives are skipped.
    fn next(&mut self, deadline: Instant) -> Option<(u8, Vec<u8>)> {
        let mut chunk = [0u8; 65536];
        loop {
            // The seeder's handshake comes first.
            let skip = HANDSHAKE_LEN;
            if self.buf.len() >= skip + 4 {
                let at = skip;
                let len = u32::from_be_bytes(self.buf[at..at + 4].try_into().unwrap()) as usize;
                if self.buf.len() >= at + 4 + len {
                    let msg: Vec<u8> = self.buf.drain(at..at + 4 + len).collect();
                    if len == 0 {
                        continue;
                    }
                    return Some((msg[4], msg[5..].to_vec()));
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            match self.s.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return None,
            }
        }
    }
}

#[test]
fn at_most_four_regular_and_one_optimistic_slot() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, meta) = make_content(dir.path());
    let seeder = start_seeder(dir.path(), bytes, [127, 0, 0, 11]);
    let addr = seeder.listen_addr();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(7));
    let threads: Vec<_> = (0..7u8)
        .map(|n| {
            let meta = meta.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut p = RawPeer::connect(addr, &meta, n);
                p.send(2, &[]); // INTERESTED
                let deadline = Instant::now() + Duration::from_secs(3);
                let mut unchoked = false;
                while let Some((id, _)) = p.next(deadline) {
                    match id {
                        UNCHOKE => unchoked = true,
                        CHOKE => unchoked = false,
                        _ => {}
                    }
                }
                // Stay connected until every peer has its answer: a peer leaving frees a slot.
                barrier.wait();
                drop(p);
                unchoked
            })
        })
        .collect();
    let unchoked = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .filter(|&u| u)
        .count();
    assert_eq!(unchoked, 5, "4 regular slots + 1 optimistic of 7 peers");
}

#[test]
fn allowed_fast_pieces_are_served_while_choked() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, meta) = make_content(dir.path());
    let seeder = start_seeder(dir.path(), bytes, [127, 0, 0, 12]);
    let mut p = RawPeer::connect(seeder.listen_addr(), &meta, 99);
    // Never interested: never unchoked. The seeder has every piece, so it sends the whole
    // canonical set for our address (BEP 6).
    let expected = allowed_fast_set(
        "127.0.0.1".parse().unwrap(),
        &meta.info_hash,
        PIECES as u32,
        ALLOWED_FAST_K,
    );
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while got.len() < expected.len() {
        let Some((id, payload)) = p.next(deadline) else {
            break;
        };
        assert_ne!(id, UNCHOKE, "an uninterested peer was unchoked");
        if id == ALLOWED_FAST {
            got.push(u32::from_be_bytes(payload[..4].try_into().unwrap()));
        }
    }
    assert_eq!(got, expected);
    let fast_piece = expected[0];
    let other = (0..PIECES as u32).find(|i| !expected.contains(i)).unwrap();
    p.request(other, 0, PIECE);
    p.request(fast_piece, 0, PIECE);
    let (mut rejected, mut served) = (false, false);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(rejected && served) {
        let Some((id, payload)) = p.next(deadline) else {
            break;
        };
        let piece = payload
            .get(..4)
            .map(|b| u32::from_be_bytes(b.try_into().unwrap()));
        match id {
            REJECT => {
                assert_eq!(piece, Some(other), "rejected an allowed-fast request");
                rejected = true;
            }
            PIECE_MSG => {
                assert_eq!(piece, Some(fast_piece), "served a piece while choked");
                assert_eq!(payload.len(), 8 + PIECE as usize);
                let start = fast_piece as usize * PIECE as usize;
                let want: Vec<u8> = (start..start + PIECE as usize)
                    .map(|i| (i * 7 % 251) as u8)
                    .collect();
                assert!(payload[8..] == want[..], "wrong bytes");
                served = true;
            }
            _ => {}
        }
    }
    assert!(rejected, "no REJECT for a request while choked");
    assert!(served, "allowed-fast piece not served while choked");
}
