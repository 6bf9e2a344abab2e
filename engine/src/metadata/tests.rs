use super::*;
use crate::metainfo::build::TorrentBuilder;
use crate::metainfo::Metainfo;

/// An info dictionary of `n` bytes or a little more (a real one, from the builder, with padding
/// in the name so it spans several 16 KiB pieces).
fn info_bytes(pieces: u32) -> Vec<u8> {
    let piece = 16 * 1024;
    let (_, meta) = TorrentBuilder::single_file("x.bin", u64::from(pieces) * piece as u64, piece)
        .piece_hashes((0..pieces).map(|i| [i as u8; 20]).collect())
        .build()
        .unwrap();
    meta.info_bytes
}

fn pieces_of(bytes: &[u8]) -> Vec<&[u8]> {
    bytes.chunks(ext::METADATA_PIECE_LEN as usize).collect()
}

#[test]
fn two_peers_share_the_pieces_and_the_result_verifies() {
    let info = info_bytes(2000); // 40,000 bytes of hashes: 3 metadata pieces
    let size = info.len() as u32;
    let chunks = pieces_of(&info);
    assert_eq!(chunks.len(), 3);
    let now = Instant::now();
    let mut f = MetadataFetch::new(crate::metainfo::info_hash_of(&info));
    f.peer_ready(1, size);
    f.peer_ready(2, size);
    let a = f.requests(1, now);
    let b = f.requests(2, now);
    assert_eq!(a, vec![0, 1, 2], "the first peer may take every piece");
    assert!(b.is_empty(), "nothing left for the second");
    f.peer_gone(1);
    let b = f.requests(2, now);
    assert_eq!(b, vec![0, 1, 2], "a gone peer's requests go to the other");
    assert_eq!(f.on_data(2, 0, size, chunks[0]), Progress::More);
    assert_eq!(
        f.on_data(1, 1, size, chunks[1]),
        Progress::More,
        "not asked"
    );
    assert_eq!(f.on_data(2, 1, size, chunks[1]), Progress::More);
    assert_eq!(
        f.on_data(2, 2, size, chunks[2]),
        Progress::Done(info.clone())
    );
}

#[test]
fn a_lone_liar_is_banned_and_a_mixed_failure_goes_solo() {
    let info = info_bytes(2000);
    let size = info.len() as u32;
    let chunks = pieces_of(&info);
    let bad: Vec<u8> = vec![0xAB; chunks[1].len()];
    let now = Instant::now();
    let mut f = MetadataFetch::new(crate::metainfo::info_hash_of(&info));
    f.peer_ready(1, size); // honest
    f.peer_ready(2, size); // liar
                           // Split the pieces: piece 1 from the liar.
    assert_eq!(f.requests(2, now).len(), 3);
    f.on_reject(2, 0);
    f.on_reject(2, 2);
    assert_eq!(f.requests(1, now), vec![0, 2]);
    f.on_data(1, 0, size, chunks[0]);
    f.on_data(2, 1, size, &bad);
    let p = f.on_data(1, 2, size, chunks[2]);
    assert_eq!(
        p,
        Progress::HashMismatch { banned: vec![] },
        "two contributors: no proof"
    );
    // Solo: the liar fills a whole attempt alone and is banned.
    assert_eq!(f.requests(2, now), vec![0, 1, 2]);
    assert!(
        f.requests(1, now).is_empty(),
        "solo attempt belongs to one peer"
    );
    f.on_data(2, 0, size, chunks[0]);
    f.on_data(2, 1, size, &bad);
    let p = f.on_data(2, 2, size, chunks[2]);
    assert_eq!(p, Progress::HashMismatch { banned: vec![2] });
    assert!(f.is_banned(2));
    f.peer_ready(2, size);
    assert_eq!(f.ready_peers(), 1, "a banned peer stays out");
    assert_eq!(f.requests(1, now), vec![0, 1, 2]);
    f.on_data(1, 0, size, chunks[0]);
    f.on_data(1, 1, size, chunks[1]);
    assert_eq!(f.on_data(1, 2, size, chunks[2]), Progress::Done(info));
}

#[test]
fn a_wrong_size_waits_and_expired_requests_return() {
    let info = info_bytes(10);
    let size = info.len() as u32;
    let now = Instant::now();
    let mut f = MetadataFetch::new(crate::metainfo::info_hash_of(&info));
    f.peer_ready(1, size);
    f.peer_ready(2, size + 1);
    assert_eq!(f.requests(1, now), vec![0]);
    assert!(f.requests(2, now).is_empty(), "another size waits");
    assert!(f.requests(1, now).is_empty(), "already requested");
    f.expire(now + Duration::from_secs(5), Duration::from_secs(10));
    assert!(f.requests(1, now).is_empty(), "not yet expired");
    f.expire(now + Duration::from_secs(10), Duration::from_secs(10));
    assert_eq!(f.requests(1, now), vec![0], "expired: asked again");
}

#[test]
fn at_most_max_requests_per_peer() {
    let info = info_bytes(20_000); // 400 KB: 25 pieces
    let mut f = MetadataFetch::new(crate::metainfo::info_hash_of(&info));
    f.peer_ready(7, info.len() as u32);
    let now = Instant::now();
    assert_eq!(f.requests(7, now).len(), MAX_REQUESTS_PER_PEER);
    assert!(f.requests(7, now).is_empty());
}

/// The peer's side of a metadata connection, written with the engine's encoders.
fn peer_bytes(info_hash: InfoHash, ext_handshake: &[u8]) -> Vec<u8> {
    let mut b = Handshake::ours(info_hash, PeerId([9; 20]))
        .to_bytes()
        .to_vec();
    wire::encode(&Message::Bitfield(&[0xff]), &mut b);
    wire::encode(
        &Message::Extended {
            id: 0,
            payload: ext_handshake,
        },
        &mut b,
    );
    b
}

#[test]
fn a_metadata_connection_reads_handshakes_and_data_in_any_chunking() {
    let ih = InfoHash([3; 20]);
    let mut p = MetadataPeer::new(ih, PeerId([1; 20]), Some(6881));
    // Our opening: the 68-byte handshake with the extension bit, then an extension handshake.
    let ours = Handshake::parse(&p.out[..HANDSHAKE_LEN]).unwrap();
    assert!(ours.supports_extensions());
    assert_eq!(ours.info_hash, ih);
    let mut theirs = peer_bytes(ih, b"d1:md11:ut_metadatai3ee13:metadata_sizei20ee");
    let mut data_payload = Vec::new();
    MetadataMsg::Data {
        piece: 0,
        total_size: 20,
        data: &[5; 20],
    }
    .encode(&mut data_payload);
    wire::encode(
        &Message::Extended {
            id: ext::OUR_UT_METADATA_ID,
            payload: &data_payload,
        },
        &mut theirs,
    );
    let mut events = Vec::new();
    for byte in &theirs {
        p.feed(std::slice::from_ref(byte), &mut events).unwrap();
    }
    assert_eq!(
        events,
        vec![
            MetaEvent::Ready { size: 20 },
            MetaEvent::Data {
                piece: 0,
                total_size: 20,
                data: vec![5; 20]
            }
        ]
    );
    // A request goes out on the id the peer chose (3).
    p.out.clear();
    p.request(0);
    let mut sent = Vec::new();
    Reader::with_config(ReaderConfig::default())
        .feed(&p.out, |ev| -> Result<(), ()> {
            if let wire::Event::Msg(Message::Extended { id, payload }) = ev {
                sent.push((
                    id,
                    MetadataMsg::parse(payload).unwrap() == MetadataMsg::Request { piece: 0 },
                ));
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(sent, vec![(3, true)]);
}

#[test]
fn bad_peers_are_refused_with_a_reason() {
    let ih = InfoHash([3; 20]);
    let feed = |bytes: &[u8]| {
        let mut p = MetadataPeer::new(ih, PeerId([1; 20]), None);
        p.feed(bytes, &mut Vec::new())
    };
    let other = peer_bytes(InfoHash([4; 20]), b"de");
    assert_eq!(feed(&other), Err(MetadataPeerError::WrongInfoHash));
    let no_meta = peer_bytes(ih, b"d1:md6:ut_pexi1eee");
    assert_eq!(feed(&no_meta), Err(MetadataPeerError::NoMetadata));
    // 1 GiB of metadata claimed: over the limit.
    let huge = peer_bytes(ih, b"d1:md11:ut_metadatai3ee13:metadata_sizei1073741824ee");
    assert!(matches!(
        feed(&huge),
        Err(MetadataPeerError::Ext(ext::ExtError::MetadataTooLarge(
            1073741824
        )))
    ));
    let mut plain = Handshake::ours(ih, PeerId([9; 20]));
    plain.reserved = [0; 8];
    assert_eq!(
        feed(&plain.to_bytes()),
        Err(MetadataPeerError::NoExtensions)
    );
}

#[test]
fn the_torrent_file_parses_with_the_same_info_hash_and_trackers() {
    let info = info_bytes(3);
    let trackers = [
        "http://127.0.0.1:1/a".to_string(),
        "udp://127.0.0.1:2".to_string(),
    ];
    let tiers: Vec<Vec<String>> = trackers.iter().map(|t| vec![t.clone()]).collect();
    let m = Metainfo::from_bytes(&torrent_file(&info, &tiers)).unwrap();
    assert_eq!(m.info_hash, crate::metainfo::info_hash_of(&info));
    assert_eq!(
        m.trackers,
        vec![vec![trackers[0].clone()], vec![trackers[1].clone()]]
    );
    let bare = Metainfo::from_bytes(&torrent_file(&info, &[])).unwrap();
    assert!(bare.trackers.is_empty());
}
