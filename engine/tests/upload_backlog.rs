//! Loopback: a leecher that asks for a lot and does not read is not given our memory. The
//! seeder stops reading blocks for a peer once about 1 MiB is queued or in flight to it
//! (`shard::conn::SEND_HIGH_WATER`), and resumes when the peer reads again. A block the file
//! lost after the check (someone truncated it) is answered with REJECT, never with bytes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ringtorrent::handshake::{Handshake, HANDSHAKE_LEN};
use ringtorrent::wire::{self, Message};
use ringtorrent::{AddTorrent, Engine, PeerId, TorrentSource};

mod common;

const PIECE: u32 = 256 * 1024;
const BLOCK: u32 = 16 * 1024;
/// Requests sent (the queue limit is 2,000): 29.7 MiB asked for.
const REQUESTS: u32 = 1900;

/// Reads one length-prefixed message (the id byte first; empty for a keep-alive).
fn read_msg(s: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    body
}

fn connect_small_window(addr: SocketAddr) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    // A small receive buffer keeps what the kernel can hold for us small, so what the
    // seeder counts as uploaded is mostly what it queued itself.
    sock.set_recv_buffer_size(64 * 1024).unwrap();
    sock.connect(&addr.into()).unwrap();
    sock.into()
}

/// A raw peer of `seeder`'s torrent with a small receive window: handshaken, interested,
/// and unchoked (a new interested peer gets a free slot at once).
fn unchoked_peer(seeder: &Engine, info_hash: ringtorrent::InfoHash, id: &[u8; 20]) -> TcpStream {
    let mut s = connect_small_window(seeder.listen_addr());
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let hs = Handshake::ours(info_hash, PeerId(*id));
    s.write_all(&hs.to_bytes()).unwrap();
    let mut theirs = [0u8; HANDSHAKE_LEN];
    s.read_exact(&mut theirs).unwrap();
    let mut out = Vec::new();
    wire::encode(&Message::Interested, &mut out);
    s.write_all(&out).unwrap();
    while read_msg(&mut s).first() != Some(&1) {}
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leecher_that_stops_reading_does_not_make_the_seeder_queue_its_requests() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::pseudo_random(40 << 20, 0xbac0_1095);
    let bytes = common::single_file_torrent(dir.path(), "big", &data, PIECE);
    let seeder = Engine::start(common::config([127, 0, 0, 7])).unwrap();
    let mut add = AddTorrent::new(TorrentSource::Bytes(bytes.clone()), dir.path());
    add.check_existing = true;
    let id = seeder.add_torrent(add).unwrap();
    let meta = ringtorrent::metainfo::Metainfo::from_bytes(&bytes).unwrap();

    let mut s = unchoked_peer(&seeder, meta.info_hash, b"-XX0001-slowreader00");
    let mut out = Vec::new();
    for i in 0..REQUESTS {
        wire::encode(
            &Message::Request {
                piece: i / (PIECE / BLOCK),
                offset: (i % (PIECE / BLOCK)) * BLOCK,
                len: BLOCK,
            },
            &mut out,
        );
    }
    s.write_all(&out).unwrap();

    // Not reading: the seeder fills the socket, then its queue, then stops reading blocks.
    // `uploaded_bytes` counts blocks read and queued. Wait for it to grow, then to stop:
    // unchanged for STILL (the behaviour under test: the seeder stopped reading), never over
    // the bound on the way.
    const STILL: Duration = Duration::from_secs(1);
    let asked = u64::from(REQUESTS) * u64::from(BLOCK);
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut held, mut since) = (0, Instant::now());
    loop {
        let now = seeder.stats(id).unwrap().uploaded_bytes;
        assert!(
            now < 12 << 20,
            "{now} of {asked} bytes read and queued for a peer that reads nothing"
        );
        if now != held {
            (held, since) = (now, Instant::now());
        } else if held > 0 && since.elapsed() >= STILL {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            if held == 0 {
                "nothing was served at all".to_string()
            } else {
                format!("the seeder kept reading for 30 s ({held} bytes)")
            }
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Reading again, every block arrives, and right.
    let mut got = 0u32;
    let end = Instant::now() + Duration::from_secs(30);
    while got < REQUESTS {
        assert!(Instant::now() < end, "only {got} blocks arrived");
        let m = read_msg(&mut s);
        if m.first() != Some(&7) {
            continue;
        }
        let piece = u32::from_be_bytes(m[1..5].try_into().unwrap());
        let offset = u32::from_be_bytes(m[5..9].try_into().unwrap());
        let at = (piece * PIECE + offset) as usize;
        assert_eq!(
            &m[9..],
            &data[at..at + BLOCK as usize],
            "piece {piece} offset {offset}"
        );
        got += 1;
    }
    seeder.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_the_file_no_longer_has_is_rejected_not_sent() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::pseudo_random(4 * PIECE as usize, 0x7a11_0c07);
    let bytes = common::single_file_torrent(dir.path(), "short", &data, PIECE);
    let seeder = Engine::start(common::config([127, 0, 0, 9])).unwrap();
    let mut add = AddTorrent::new(TorrentSource::Bytes(bytes.clone()), dir.path());
    add.check_existing = true;
    seeder.add_torrent(add).unwrap();
    let meta = ringtorrent::metainfo::Metainfo::from_bytes(&bytes).unwrap();
    // Someone else cuts the file after the check: the last two pieces are gone.
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("short"))
        .unwrap()
        .set_len(2 * u64::from(PIECE))
        .unwrap();

    let mut s = unchoked_peer(&seeder, meta.info_hash, b"-XX0001-truncated000");
    let mut out = Vec::new();
    for (piece, offset) in [(0, 0), (3, PIECE - BLOCK)] {
        wire::encode(
            &Message::Request {
                piece,
                offset,
                len: BLOCK,
            },
            &mut out,
        );
    }
    s.write_all(&out).unwrap();
    // One answer each: the block still on disk, byte-exact; a REJECT for the missing one.
    let (mut piece_ok, mut rejected) = (false, false);
    while !(piece_ok && rejected) {
        let m = read_msg(&mut s);
        match m.first() {
            Some(7) => {
                let piece = u32::from_be_bytes(m[1..5].try_into().unwrap());
                assert_eq!(piece, 0, "bytes sent for a block the file does not have");
                assert_eq!(&m[9..], &data[..BLOCK as usize]);
                piece_ok = true;
            }
            Some(16) => {
                assert_eq!(u32::from_be_bytes(m[1..5].try_into().unwrap()), 3);
                rejected = true;
            }
            _ => {}
        }
    }
    seeder.shutdown().await.unwrap();
}
