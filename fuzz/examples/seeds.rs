//! Writes the hand-made seed inputs of every fuzz target into `<corpus dir>/<target>/seed-*`.
//!
//! Usage: `cargo run --manifest-path fuzz/Cargo.toml --example seeds -- fuzz/corpus [FILE...]`
//! where each FILE is a `.torrent` (made by `ringtorrent create`) or a `.resume` file (written
//! by the engine); `fuzz/seeds.sh` makes both and runs this. Protocol messages are built with
//! the engine's own encoders, so every seed is an input the parser accepts.

use std::fs;
use std::path::{Path, PathBuf};

use ringtorrent::bencode::{Dict, Value};
use ringtorrent::ext::{ExtHandshake, MetadataMsg};
use ringtorrent::handshake::Handshake;
use ringtorrent::metainfo::Metainfo;
use ringtorrent::mse::{Established, Step};
use ringtorrent::pex::{PexFlags, PexMessage, PexPeer};
use ringtorrent::types::{InfoHash, PeerId};
use ringtorrent::utp::packet::{self as utp_packet, Header, PacketType};
use ringtorrent::wire::{encode, Message};
use ringtorrent_fuzz::{
    mse_initiator, mse_policy, mse_responder, MSE_INFO_HASH, UTP_ACCEPT_SEQ, UTP_RECV_ID, UTP_SYN,
    UTP_SYN_SEQ,
};

struct Out(PathBuf);

impl Out {
    fn put(&self, target: &str, name: &str, data: &[u8]) {
        let dir = self.0.join(target);
        fs::create_dir_all(&dir).expect("create corpus directory");
        fs::write(dir.join(format!("seed-{name}")), data).expect("write seed");
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let out = Out(PathBuf::from(
        args.next().expect("usage: seeds <corpus dir> [FILE...]"),
    ));
    for file in args {
        from_file(&out, Path::new(&file));
    }
    bencode(&out);
    magnet(&out);
    wire(&out);
    handshake(&out);
    ext(&out);
    pex(&out);
    tracker(&out);
    mse(&out);
    utp(&out);
}

/// A .torrent seeds `metainfo` (whole, and its bare info dictionary) and `bencode`; a resume
/// file seeds `resume` and `bencode`.
fn from_file(out: &Out, path: &Path) {
    let data = fs::read(path).expect("read seed file");
    let stem = path
        .file_stem()
        .map_or("file".into(), |s| s.to_string_lossy());
    if path.extension().is_some_and(|e| e == "torrent") {
        let m = Metainfo::from_bytes(&data).expect("a valid .torrent");
        out.put("metainfo", &format!("{stem}.torrent"), &data);
        out.put("metainfo", &format!("{stem}.info"), &m.info_bytes);
        out.put("bencode", &format!("{stem}.torrent"), &data);
    } else {
        out.put("resume", &format!("{stem}.resume"), &data);
        out.put("bencode", &format!("{stem}.resume"), &data);
    }
}

fn bencode(out: &Out) {
    for (name, b) in [
        ("int", &b"i-42e"[..]),
        ("string", b"4:spam"),
        ("list", b"l4:spami0ee"),
        ("dict", b"d3:bar4:spam3:fooi42ee"),
        ("nested", b"d1:ald1:xlee1:bi1ee1:cdee"),
        ("unsorted", b"d1:bi1e1:ai2ee"),
        ("prefix", b"d1:ai1eeTRAILING"),
    ] {
        out.put("bencode", name, b);
    }
}

fn magnet(out: &Out) {
    let hex = "bd6942d595ec8cf7b48d1155ab88775ff8f868c8";
    for (name, uri) in [
        ("hex", format!("magnet:?xt=urn:btih:{hex}")),
        (
            "base32",
            "magnet:?xt=urn:btih:XVUUFVMV5SGPPNENCFK2XCDXL74PQ2GI".into(),
        ),
        (
            "full",
            format!(
                "magnet:?xt=urn:btih:{hex}&dn=multi%20files&tr=http%3A%2F%2F127.0.0.1%3A6969%2F\
                 announce&tr=udp://t.example:80&x.pe=127.0.0.1:6881&x.pe=[::1]:6882&so=0,2,4-6"
            ),
        ),
        (
            "v2",
            format!("MAGNET:?xt=urn:btmh:1220abcd&xt=urn:btih:{hex}&dn=a+b&x.pe=host:1"),
        ),
    ] {
        out.put("magnet", name, uri.as_bytes());
    }
}

/// One frame of each message kind, then a stream of them all; first byte: the chunk size.
fn wire(out: &Out) {
    let block = [0x5a; 64];
    let msgs = [
        Message::KeepAlive,
        Message::Choke,
        Message::Unchoke,
        Message::Interested,
        Message::NotInterested,
        Message::Have { piece: 7 },
        Message::Bitfield(&[0xff; 125]),
        Message::Request {
            piece: 1,
            offset: 16384,
            len: 16384,
        },
        Message::Piece {
            piece: 2,
            offset: 0,
            data: &block,
        },
        Message::Cancel {
            piece: 1,
            offset: 16384,
            len: 16384,
        },
        Message::Port(6881),
        Message::SuggestPiece { piece: 3 },
        Message::HaveAll,
        Message::HaveNone,
        Message::RejectRequest {
            piece: 1,
            offset: 0,
            len: 16384,
        },
        Message::AllowedFast { piece: 4 },
        Message::Extended {
            id: 0,
            payload: b"d1:md11:ut_metadatai1eee",
        },
    ];
    let mut stream = vec![6];
    for (i, m) in msgs.iter().enumerate() {
        let mut f = vec![0];
        encode(m, &mut f);
        stream.extend_from_slice(&f[1..]);
        out.put("wire", &format!("msg-{i:02}"), &f);
    }
    out.put("wire", "stream", &stream);
}

fn handshake(out: &Out) {
    let ours = Handshake::ours(InfoHash([0xab; 20]), PeerId(*b"-RT0100-abcdefghijkl"));
    let mut one = vec![67];
    one.extend_from_slice(&ours.to_bytes());
    out.put("handshake", "whole", &one);
    let mut split = vec![4];
    split.extend_from_slice(&ours.to_bytes());
    encode(&Message::HaveAll, &mut split);
    out.put("handshake", "chunked-then-stream", &split);
}

fn ext(out: &Out) {
    let mut theirs = ExtHandshake::ours(Some(31_235), Some(6881), 250);
    theirs.m.push(("ut_pex".into(), 2));
    theirs.yourip = Some([127, 0, 0, 1].into());
    for (name, h) in [
        ("ours", ExtHandshake::ours(None, None, 500)),
        ("theirs", theirs),
    ] {
        let mut b = Vec::new();
        h.encode(&mut b);
        out.put("ext", &format!("handshake-{name}"), &b);
    }
    let piece = [0x11; 1000];
    for (name, m) in [
        ("request", MetadataMsg::Request { piece: 0 }),
        ("reject", MetadataMsg::Reject { piece: 1 }),
        (
            "data",
            MetadataMsg::Data {
                piece: 1,
                total_size: 17_384,
                data: &piece,
            },
        ),
    ] {
        let mut b = Vec::new();
        m.encode(&mut b);
        out.put("ext", &format!("metadata-{name}"), &b);
    }
}

/// First byte: seconds between two deliveries of the payload that follows.
fn pex(out: &Out) {
    let msg = PexMessage {
        added: vec![
            PexPeer {
                addr: ([127, 0, 0, 2], 6881).into(),
                flags: PexFlags(PexFlags::SEED | PexFlags::REACHABLE),
            },
            PexPeer {
                addr: "[::1]:51413".parse().expect("address"),
                flags: PexFlags(PexFlags::UTP),
            },
        ],
        dropped: vec![([127, 0, 0, 3], 7000).into()],
    };
    let mut b = vec![30];
    msg.encode(&mut b);
    out.put("pex", "both-families", &b);
    let mut empty = vec![90];
    PexMessage::default().encode(&mut empty);
    out.put("pex", "empty", &empty);
}

/// First byte: the mode (0 HTTP reply, 1 UDP response, 0x81 UDP over IPv6, 2/3 the UDP state
/// machine over IPv4/IPv6, fed `[len, flags, datagram]` records).
fn tracker(out: &Out) {
    let peers6 = [[0u8; 15].as_slice(), &[1, 0x1a, 0xe1]].concat();
    let d = Dict::new()
        .with(b"interval", Value::int(1800))
        .with(b"min interval", Value::int(900))
        .with(b"complete", Value::int(5))
        .with(b"incomplete", Value::int(3))
        .with(b"tracker id", Value::bytes(b"abc"))
        .with(b"warning message", Value::bytes(b"be nice"))
        .with(
            b"peers",
            Value::bytes(&[127, 0, 0, 1, 0x1a, 0xe1, 10, 0, 0, 2, 0x1a, 0xe2]),
        )
        .with(b"peers6", Value::bytes(&peers6));
    let peer = Dict::new()
        .with(b"ip", Value::bytes(b"192.168.1.9"))
        .with(b"port", Value::int(6881))
        .with(b"peer id", Value::bytes(b"-XX0000-000000000000"));
    let dicts = Dict::new()
        .with(b"interval", Value::int(60))
        .with(b"peers", Value::list(vec![Value::dict(peer)]));
    let failure = Dict::new().with(b"failure reason", Value::bytes(b"unregistered torrent"));
    for (name, reply) in [("compact", d), ("dict-peers", dicts), ("failure", failure)] {
        out.put(
            "tracker",
            &format!("http-{name}"),
            &[&[0], &Value::dict(reply).encode()[..]].concat(),
        );
    }
    let connect = [
        &0u32.to_be_bytes()[..],
        &[0; 4],
        &0x1122_3344_5566_7788u64.to_be_bytes(),
    ]
    .concat();
    let mut announce = [1u32, 0, 1800, 3, 5].map(u32::to_be_bytes).concat();
    announce.extend_from_slice(&[127, 0, 0, 1, 0x1a, 0xe1]);
    let error = [&3u32.to_be_bytes()[..], &[0; 4], b"go away"].concat();
    out.put("tracker", "udp-v4", &[&[1], &announce[..]].concat());
    let v6 = [&announce[..20], &peers6].concat();
    out.put("tracker", "udp-v6", &[&[0x81], &v6[..]].concat());
    let record = |flags: u8, d: &[u8]| [&[d.len() as u8, flags][..], d].concat();
    let session = [&[2][..], &record(1, &connect), &record(1, &announce)].concat();
    out.put("tracker", "udp-session", &session);
    let timeout = [
        &[3][..],
        &record(2, &[]),
        &record(1, &connect),
        &record(1, &error),
    ]
    .concat();
    out.put("tracker", "udp-timeout-error", &timeout);
}

/// A handshake between the `mse` target's own two sides (their keys are fixed), recorded
/// from each side: `[mode, chunk size]`, then the peer's stream and a first message after it.
/// Garbage streams have no `HASH('req1', S)` or ENCRYPT(VC) within reach.
fn mse(out: &Out) {
    for (name, mode) in [("prefer", 0u8), ("require", 2), ("disable", 4)] {
        let (to_b, to_a) = mse_exchange(mode);
        out.put(
            "mse",
            &format!("responder-{name}"),
            &[&[mode, 63][..], &to_b].concat(),
        );
        out.put(
            "mse",
            &format!("initiator-{name}"),
            &[&[mode | 1, 15][..], &to_a].concat(),
        );
    }
    // Longer than the longest handshake of either role: both sides must have given up.
    let garbage = [0x11; 1300];
    out.put(
        "mse",
        "responder-no-sync",
        &[&[0, 255][..], &garbage].concat(),
    );
    out.put(
        "mse",
        "initiator-no-sync",
        &[&[1, 255][..], &garbage].concat(),
    );
}

/// Runs the handshake in memory; returns what the initiator and the responder sent.
fn mse_exchange(mode: u8) -> (Vec<u8>, Vec<u8>) {
    let policy = mse_policy(mode);
    let (mut a, mut b) = (mse_initiator(policy), mse_responder(policy));
    let (mut to_b, mut to_a) = (Vec::new(), Vec::new());
    a.start(&mut to_b);
    let (mut a_done, mut b_done) = (false, false);
    let (mut a_read, mut b_read) = (0, 0);
    while !(a_done && b_done) {
        if !b_done {
            let input = to_b[b_read..].to_vec();
            b_read = to_b.len();
            if let Step::Done(e) = b
                .on_data(&input, &mut to_a, &[MSE_INFO_HASH][..])
                .expect("B")
            {
                finish(*e, &Message::HaveAll, &mut to_a);
                b_done = true;
            }
        }
        if !a_done {
            let input = to_a[a_read..].to_vec();
            a_read = to_a.len();
            if let Step::Done(e) = a.on_data(&input, &mut to_b).expect("A") {
                finish(*e, &Message::Interested, &mut to_b);
                a_done = true;
            }
        }
    }
    (to_b, to_a)
}

/// Sends `first` after the handshake, encrypted if RC4 was selected.
fn finish(e: Established, first: &Message<'_>, out: &mut Vec<u8>) {
    let mut frame = Vec::new();
    encode(first, &mut frame);
    if let Some(mut c) = e.cipher {
        c.encrypt_in_place(&mut frame);
    }
    out.extend_from_slice(&frame);
}

/// uTP: records `[wait][len u16][datagram]` after a mode byte (see `src/utp.rs`): a dialled
/// stream's handshake and transfer, an accepted stream's, and single packets.
fn utp(out: &Out) {
    let packet = |ty, connection_id, seq_nr, ack_nr, sack: Option<&[u8]>, payload: &[u8]| {
        let h = Header {
            ty,
            connection_id,
            timestamp_us: 5000,
            timestamp_diff_us: 20_000,
            wnd_size: 1 << 20,
            seq_nr,
            ack_nr,
        };
        let mut d = Vec::new();
        utp_packet::encode(&h, sack, payload, &mut d);
        d
    };
    let records = |mode: u8, packets: &[(u8, Vec<u8>)]| {
        let mut v = vec![mode];
        for (wait, d) in packets {
            v.push(*wait);
            v.extend_from_slice(&(d.len() as u16).to_be_bytes());
            v.extend_from_slice(d);
        }
        v
    };
    let (id, syn) = (UTP_RECV_ID, UTP_SYN_SEQ);
    let dialled = [
        (1, packet(PacketType::State, id, 300, syn, None, &[])),
        (3, packet(PacketType::Data, id, 300, syn, None, b"hello")),
        (
            3,
            packet(
                PacketType::Data,
                id,
                302,
                syn + 1,
                Some(&[1, 0, 0, 0]),
                b"later",
            ),
        ),
        (
            0,
            packet(PacketType::Data, id, 301, syn + 2, None, b"between"),
        ),
        (0xff, packet(PacketType::Fin, id, 303, syn + 3, None, &[])),
    ];
    out.put("utp", "dialled", &records(0, &dialled));
    let id = UTP_SYN.connection_id + 1;
    let (peer, ours) = (UTP_SYN.seq_nr, UTP_ACCEPT_SEQ);
    let accepted = [
        (
            1,
            packet(PacketType::Data, id, peer + 1, ours - 1, None, b"request"),
        ),
        (2, packet(PacketType::State, id, peer + 2, ours, None, &[])),
        (
            2,
            packet(
                PacketType::State,
                id,
                peer + 2,
                ours,
                Some(&[3, 0, 0, 0]),
                &[],
            ),
        ),
        (
            0xff,
            packet(PacketType::Fin, id, peer + 2, ours + 1, None, &[]),
        ),
        (9, packet(PacketType::Reset, id, 0, ours + 1, None, &[])),
    ];
    out.put("utp", "accepted", &records(1, &accepted));
    out.put("utp", "syn", &packet(PacketType::Syn, 9, 1, 0, None, &[]));
    out.put(
        "utp",
        "state-sack",
        &packet(PacketType::State, 9, 1, 2, Some(&[0xff; 8]), &[]),
    );
}
