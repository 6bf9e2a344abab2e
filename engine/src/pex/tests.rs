use super::*;

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn peer(s: &str, flags: u8) -> PexPeer {
    PexPeer {
        addr: a(s),
        flags: PexFlags(flags),
    }
}

#[test]
fn a_message_round_trips_with_both_families_and_flags() {
    let msg = PexMessage {
        added: vec![
            peer("10.0.0.1:6881", PexFlags::SEED),
            peer("[2001:db8::7]:51413", PexFlags::UTP | PexFlags::REACHABLE),
            peer("10.0.0.2:1", 0),
        ],
        dropped: vec![a("10.0.0.3:7000"), a("[2001:db8::8]:9")],
    };
    let mut out = Vec::new();
    msg.encode(&mut out);
    let back = PexMessage::parse(&out).unwrap();
    // IPv4 entries come first on the wire.
    assert_eq!(back.added, vec![msg.added[0], msg.added[2], msg.added[1]]);
    assert_eq!(back.dropped, msg.dropped);
    assert!(back.added[0].flags.is_seed());
}

#[test]
fn parses_a_hand_made_message() {
    // added: 127.0.0.2:6881 and 0.0.0.0:5 (unusable, left out); one flag byte only.
    let mut p = b"d5:added12:".to_vec();
    p.extend_from_slice(&[127, 0, 0, 2, 0x1a, 0xe1, 0, 0, 0, 0, 0, 5]);
    p.extend_from_slice(b"7:added.f1:");
    p.push(0x02);
    p.extend_from_slice(b"7:dropped6:");
    p.extend_from_slice(&[127, 0, 0, 3, 0, 80]);
    p.push(b'e');
    let m = PexMessage::parse(&p).unwrap();
    assert_eq!(m.added, vec![peer("127.0.0.2:6881", PexFlags::SEED)]);
    assert_eq!(m.dropped, vec![a("127.0.0.3:80")]);
}

#[test]
fn malformed_messages_are_errors() {
    assert_eq!(PexMessage::parse(b"le"), Err(PexError::NotADict));
    assert_eq!(
        PexMessage::parse(b"d5:added5:abcdee"),
        Err(PexError::BadField("added"))
    );
    assert_eq!(
        PexMessage::parse(b"d6:added6i1ee"),
        Err(PexError::BadField("added6"))
    );
    assert!(matches!(
        PexMessage::parse(b"d5:added"),
        Err(PexError::Bencode(_))
    ));
    let big = vec![b'x'; MAX_PEX_LEN + 1];
    assert_eq!(
        PexMessage::parse(&big),
        Err(PexError::TooLarge(MAX_PEX_LEN + 1))
    );
}

#[test]
fn mapped_ipv4_goes_in_the_ipv4_list() {
    let msg = PexMessage {
        added: vec![peer("[::ffff:10.1.2.3]:80", 0)],
        dropped: vec![],
    };
    let mut out = Vec::new();
    msg.encode(&mut out);
    let back = PexMessage::parse(&out).unwrap();
    assert_eq!(back.added, vec![peer("10.1.2.3:80", 0)]);
}

#[test]
fn sends_first_after_the_delay_then_once_a_minute_with_only_changes() {
    let t0 = Instant::now();
    let mut s = PexState::new(t0);
    let me = [a("10.0.0.9:6881")];
    let mut connected = vec![peer("10.0.0.1:1", 0), peer("10.0.0.9:6881", 0)];
    assert_eq!(s.outgoing(t0, &me, &connected), None);
    let first = s.outgoing(t0 + FIRST_DELAY, &me, &connected).unwrap();
    assert_eq!(
        first.added,
        vec![peer("10.0.0.1:1", 0)],
        "never the recipient itself"
    );
    assert!(first.dropped.is_empty());
    connected = vec![peer("10.0.0.2:2", 0)];
    let later = t0 + FIRST_DELAY + SEND_INTERVAL;
    assert_eq!(
        s.outgoing(later - Duration::from_secs(1), &me, &connected),
        None,
        "at most once a minute"
    );
    let second = s.outgoing(later, &me, &connected).unwrap();
    assert_eq!(second.added, vec![peer("10.0.0.2:2", 0)]);
    assert_eq!(second.dropped, vec![a("10.0.0.1:1")]);
    // Nothing changed: nothing sent.
    assert_eq!(s.outgoing(later + SEND_INTERVAL, &me, &connected), None);
}

#[test]
fn the_first_message_goes_out_even_when_empty() {
    let t0 = Instant::now();
    let mut s = PexState::new(t0);
    assert_eq!(
        s.outgoing(t0 + FIRST_DELAY, &[], &[]),
        Some(PexMessage::default())
    );
}

#[test]
fn at_most_fifty_added_per_message() {
    let t0 = Instant::now();
    let mut s = PexState::new(t0);
    let many: Vec<PexPeer> = (1..=120u16)
        .map(|i| peer(&format!("10.0.1.{}:{}", i % 250 + 1, 1000 + i), 0))
        .collect();
    let m1 = s.outgoing(t0 + FIRST_DELAY, &[], &many).unwrap();
    assert_eq!(m1.added.len(), MAX_ADDED);
    let m2 = s
        .outgoing(t0 + FIRST_DELAY + SEND_INTERVAL, &[], &many)
        .unwrap();
    assert_eq!(m2.added.len(), MAX_ADDED);
    assert!(
        m2.added.iter().all(|p| !m1.added.contains(p)),
        "only new peers"
    );
}

#[test]
fn incoming_messages_are_rate_limited_and_capped() {
    let t0 = Instant::now();
    let mut s = PexState::new(t0);
    let many = PexMessage {
        added: (1..=200u16)
            .map(|i| peer(&format!("10.0.2.1:{i}"), 0))
            .collect(),
        dropped: vec![],
    };
    let mut payload = Vec::new();
    many.encode(&mut payload);
    let got = s.incoming(t0, &payload).unwrap().unwrap();
    assert_eq!(got.len(), MAX_ACCEPTED);
    assert_eq!(s.incoming(t0 + Duration::from_secs(10), &payload), Ok(None));
    assert!(s
        .incoming(t0 + MIN_INCOMING_INTERVAL, &payload)
        .unwrap()
        .is_some());
    // A malformed message is an error and does not count as received.
    assert!(s.incoming(t0 + SEND_INTERVAL * 2, b"xx").is_err());
    assert!(s
        .incoming(t0 + SEND_INTERVAL * 2, &payload)
        .unwrap()
        .is_some());
}

#[test]
fn mapped_ipv4_in_added6_is_read_as_ipv4_and_judged_as_one() {
    // Found by the `pex` fuzz target: ::ffff:255.255.255.255 passed as an IPv6 address, then
    // became the IPv4 broadcast address on re-encoding and was dropped.
    let mut p = b"d6:added636:".to_vec();
    let mut mapped = [0u8; 18];
    mapped[10] = 0xff;
    mapped[11] = 0xff;
    mapped[12..16].copy_from_slice(&[10, 0, 0, 1]);
    mapped[16..].copy_from_slice(&[0, 80]);
    p.extend_from_slice(&mapped);
    mapped[12..16].copy_from_slice(&[255; 4]);
    p.extend_from_slice(&mapped);
    p.push(b'e');
    let m = PexMessage::parse(&p).unwrap();
    assert_eq!(m.added, vec![peer("10.0.0.1:80", 0)]);
}
