use super::*;

fn ih(b: u8) -> InfoHash {
    InfoHash([b; 20])
}

fn group() -> SocketAddr {
    SocketAddr::V4(LSD_GROUP_V4)
}

#[test]
fn an_announce_round_trips() {
    let a = LsdAnnounce {
        port: 6881,
        info_hashes: vec![ih(1), ih(2)],
        cookie: Some("abc".into()),
    };
    let bytes = a.encode(group());
    assert!(bytes.starts_with(b"BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\n"));
    assert!(bytes.ends_with(b"\r\n\r\n\r\n"));
    assert_eq!(LsdAnnounce::parse(&bytes), Ok(a));
}

#[test]
fn parses_a_hand_made_announce_with_odd_case_and_bad_hashes() {
    let text = format!(
        "BT-SEARCH * HTTP/1.1\r\nhost: x\r\nPORT: 51413\r\ninfohash: {}\r\nInfohash: zz\r\nInfoHash: {}\r\n\r\n\r\n",
        "AB".repeat(20),
        "01".repeat(20)
    );
    let a = LsdAnnounce::parse(text.as_bytes()).unwrap();
    assert_eq!(a.port, 51413);
    assert_eq!(a.info_hashes, vec![InfoHash([0xab; 20]), InfoHash([1; 20])]);
    assert_eq!(a.cookie, None);
}

#[test]
fn bad_datagrams_are_errors() {
    let ok_hash = format!("Infohash: {}\r\n", "01".repeat(20));
    let cases: Vec<(Vec<u8>, LsdError)> = vec![
        (b"GET / HTTP/1.1\r\n\r\n".to_vec(), LsdError::NotAnAnnounce),
        (vec![0xff, 0xfe], LsdError::NotAnAnnounce),
        (
            format!("BT-SEARCH * HTTP/1.1\r\n{ok_hash}\r\n").into_bytes(),
            LsdError::BadPort,
        ),
        (
            format!("BT-SEARCH * HTTP/1.1\r\nPort: 0\r\n{ok_hash}\r\n").into_bytes(),
            LsdError::BadPort,
        ),
        (
            format!("BT-SEARCH * HTTP/1.1\r\nPort: 70000\r\n{ok_hash}\r\n").into_bytes(),
            LsdError::BadPort,
        ),
        (
            b"BT-SEARCH * HTTP/1.1\r\nPort: 1\r\nInfohash: 12\r\n\r\n".to_vec(),
            LsdError::NoInfoHash,
        ),
        (
            format!(
                "BT-SEARCH * HTTP/1.1\r\nPort: 1\r\n{}",
                "X: y\r\n".repeat(MAX_HEADERS + 1)
            )
            .into_bytes(),
            LsdError::TooManyHeaders,
        ),
        (
            vec![b'B'; MAX_LSD_LEN + 1],
            LsdError::TooLarge(MAX_LSD_LEN + 1),
        ),
    ];
    for (bytes, want) in cases {
        assert_eq!(LsdAnnounce::parse(&bytes), Err(want));
    }
}

#[test]
fn at_most_the_limit_of_info_hashes_is_read() {
    let a = LsdAnnounce {
        port: 1,
        info_hashes: (0..MAX_INFOHASHES as u8 + 5).map(ih).collect(),
        cookie: None,
    };
    // encode caps too; build the long one by hand.
    let mut text = String::from("BT-SEARCH * HTTP/1.1\r\nPort: 1\r\n");
    for h in &a.info_hashes {
        text.push_str(&format!("Infohash: {}\r\n", h.to_hex()));
    }
    text.push_str("\r\n");
    let back = LsdAnnounce::parse(text.as_bytes()).unwrap();
    assert_eq!(back.info_hashes.len(), MAX_INFOHASHES);
}

#[test]
fn torrents_are_announced_at_once_then_every_interval() {
    let t0 = Instant::now();
    let mut s = LsdState::new(6881, "me".into());
    s.set_torrents(t0, &[ih(1), ih(2)]);
    let first = s.due(t0);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].info_hashes, vec![ih(1), ih(2)]);
    assert_eq!(first[0].port, 6881);
    assert_eq!(first[0].cookie.as_deref(), Some("me"));
    assert!(s.due(t0 + Duration::from_secs(1)).is_empty());
    s.set_torrents(t0 + Duration::from_secs(2), &[ih(1), ih(3)]);
    let added = s.due(t0 + Duration::from_secs(2));
    assert_eq!(added[0].info_hashes, vec![ih(3)], "only the new torrent");
    let later = s.due(t0 + ANNOUNCE_INTERVAL);
    assert_eq!(later[0].info_hashes, vec![ih(1)], "ih(2) was removed");
}

#[test]
fn many_torrents_are_split_over_datagrams() {
    let t0 = Instant::now();
    let mut s = LsdState::new(1, "c".into());
    let all: Vec<InfoHash> = (0..45).map(ih).collect();
    s.set_torrents(t0, &all);
    let due = s.due(t0);
    assert_eq!(due.len(), 3);
    assert!(due.iter().all(|a| a.info_hashes.len() <= MAX_INFOHASHES));
    assert!(due.iter().all(|a| a.encode(group()).len() <= MAX_LSD_LEN));
}

#[test]
fn heard_announces_name_the_peer_and_our_torrents_once_a_minute() {
    let t0 = Instant::now();
    let mut s = LsdState::new(1, "me".into());
    let theirs = LsdAnnounce {
        port: 7000,
        info_hashes: vec![ih(1), ih(9)],
        cookie: Some("them".into()),
    }
    .encode(group());
    let from: SocketAddr = "127.0.0.5:40000".parse().unwrap();
    let ours = |h: &InfoHash| *h == ih(1);
    assert_eq!(
        s.on_datagram(t0, from, &theirs, ours),
        Some(("127.0.0.5:7000".parse().unwrap(), vec![ih(1)]))
    );
    assert_eq!(
        s.on_datagram(t0 + Duration::from_secs(5), from, &theirs, ours),
        None
    );
    assert!(s
        .on_datagram(t0 + MIN_HEARD_INTERVAL, from, &theirs, ours)
        .is_some());
    // Another client on the same host (same source IP, another port) is heard at once: an
    // announce naming a dead port cannot mute the real peer behind it.
    let second = LsdAnnounce {
        port: 7001,
        info_hashes: vec![ih(1)],
        cookie: Some("neighbour".into()),
    }
    .encode(group());
    assert_eq!(
        s.on_datagram(t0 + Duration::from_secs(5), from, &second, ours),
        Some(("127.0.0.5:7001".parse().unwrap(), vec![ih(1)]))
    );
    // Our own announce, looped back, and one for torrents we lack: nothing.
    let mine = LsdAnnounce {
        port: 1,
        info_hashes: vec![ih(1)],
        cookie: Some("me".into()),
    }
    .encode(group());
    let other: SocketAddr = "127.0.0.6:1".parse().unwrap();
    assert_eq!(s.on_datagram(t0, other, &mine, ours), None);
    assert_eq!(s.on_datagram(t0, other, &theirs, |_| false), None);
    assert_eq!(s.on_datagram(t0, other, b"junk", ours), None);
}
