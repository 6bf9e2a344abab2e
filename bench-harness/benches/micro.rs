//! Criterion micro-benchmarks of the sans-IO hot paths: bencode decode of an Ubuntu-ISO-sized
//! metainfo (23,000 pieces), metainfo parsing, and the wire codec (decode of a stream of PIECE
//! messages as the shard sees it, and REQUEST encoding), and MSE/PE: one whole handshake (both
//! sides' Diffie-Hellman) and RC4 over 1 MiB (what an encrypted connection pays per byte).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ringtorrent::metainfo::build::TorrentBuilder;
use ringtorrent::metainfo::Metainfo;
use ringtorrent::wire::{self, Event, Message};

fn big_metainfo() -> Vec<u8> {
    let pieces = 23_000u32;
    let piece_len = 256 * 1024;
    let hashes: Vec<[u8; 20]> = (0..pieces).map(|i| [(i % 251) as u8; 20]).collect();
    let total = pieces as u64 * piece_len as u64 - 1234;
    let (bytes, _) = TorrentBuilder::single_file("ubuntu-like.iso", total, piece_len)
        .piece_hashes(hashes)
        .trackers(vec![vec!["https://torrent.example/announce".into()]])
        .build()
        .expect("INVARIANT: the builder accepts its own geometry");
    bytes
}

fn bencode(c: &mut Criterion) {
    let bytes = big_metainfo();
    let mut g = c.benchmark_group("metainfo");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("bencode_decode_23000_pieces", |b| {
        b.iter(|| ringtorrent::bencode::decode(std::hint::black_box(&bytes)).map(|v| v.raw().len()))
    });
    g.bench_function("metainfo_parse_23000_pieces", |b| {
        b.iter(|| Metainfo::from_bytes(std::hint::black_box(&bytes)).map(|m| m.info.pieces.len()))
    });
    g.finish();
}

fn wire_codec(c: &mut Criterion) {
    // 64 PIECE messages of 16 KiB, fed in 64 KiB chunks like the shard's receive buffers.
    let block = vec![7u8; 16 * 1024];
    let mut stream = Vec::new();
    for i in 0..64u32 {
        stream.extend_from_slice(&wire::piece_header(i / 16, (i % 16) * 16384, 16384));
        stream.extend_from_slice(&block);
    }
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("decode_piece_stream_64k_chunks", |b| {
        b.iter_batched(
            || wire::Reader::new(16_384),
            |mut r| {
                let mut sum = 0usize;
                for chunk in stream.chunks(64 * 1024) {
                    r.feed(chunk, |ev| {
                        if let Event::BlockChunk { data, .. } = ev {
                            sum += data.len();
                        }
                        Ok::<(), ()>(())
                    })
                    .expect("INVARIANT: the stream is well formed");
                }
                sum
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Elements(256));
    g.bench_function("encode_256_requests", |b| {
        let mut out = Vec::with_capacity(256 * 17);
        b.iter(|| {
            out.clear();
            for i in 0..256u32 {
                out.extend_from_slice(&wire::request_bytes(i / 16, (i % 16) * 16384, 16384));
            }
            wire::encode(&Message::Interested, &mut out);
            out.len()
        })
    });
    g.finish();
}

/// Both sides of one MSE handshake in memory; the initiator's side when it is done.
fn mse_handshake(policy: ringtorrent::EncryptionPolicy) -> ringtorrent::mse::Established {
    use ringtorrent::mse::{Initiator, Responder, SkeyTable, Step};
    let ih = ringtorrent::InfoHash([9u8; 20]);
    let skeys: SkeyTable = [ih].into_iter().collect();
    let mut rng = rand::rng();
    let mut ini = Initiator::new(ih, policy, &[0x13; 68], &mut rng).expect("68-byte IA");
    let mut resp = Responder::new(policy, &mut rng);
    let (mut to_resp, mut to_ini) = (Vec::new(), Vec::new());
    ini.start(&mut to_resp);
    loop {
        let _ = resp
            .on_data(&std::mem::take(&mut to_resp), &mut to_ini, &skeys)
            .expect("responder");
        if let Step::Done(est) = ini
            .on_data(&std::mem::take(&mut to_ini), &mut to_resp)
            .expect("initiator")
        {
            return *est;
        }
    }
}

fn mse(c: &mut Criterion) {
    let mut g = c.benchmark_group("mse");
    g.bench_function("handshake_both_sides", |b| {
        b.iter(|| mse_handshake(ringtorrent::EncryptionPolicy::Require).crypto)
    });
    let mut cipher = mse_handshake(ringtorrent::EncryptionPolicy::Require)
        .cipher
        .expect("RC4 selected");
    let mut buf = vec![0x5au8; 1 << 20];
    g.throughput(Throughput::Bytes(buf.len() as u64));
    g.bench_function("rc4_decrypt_1MiB_in_place", |b| {
        b.iter(|| cipher.decrypt_in_place(std::hint::black_box(&mut buf)))
    });
    g.finish();
}

criterion_group!(benches, bencode, wire_codec, mse);
criterion_main!(benches);
