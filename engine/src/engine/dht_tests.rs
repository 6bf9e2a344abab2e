//! Unit tests of `engine/dht.rs`: the state file, the bind address, the bounds.

use super::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn state_round_trips_and_skips_junk() {
    let nodes = [
        addr("127.0.0.5:6881"),
        addr("10.1.2.3:40000"),
        addr("127.0.0.5:6881"),
    ];
    let text = encode_state(&nodes);
    assert_eq!(decode_state(&text), vec![nodes[0], nodes[1]]);
    let junk = "# c\n\nnot an address\n1.2.3.4:0\n1.2.3.4\n 9.9.9.9:1 \n[::1]:7\n";
    assert_eq!(decode_state(junk), vec![addr("9.9.9.9:1"), addr("[::1]:7")]);
    let many: Vec<SocketAddr> = (1..=3000u16)
        .map(|p| SocketAddr::from(([10, 0, 0, 1], p)))
        .collect();
    assert_eq!(decode_state(&encode_state(&many)).len(), MAX_STATE_NODES);
}

#[test]
fn state_file_is_written_whole_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("dht.dat");
    assert!(load_state(&path).is_empty(), "a missing file is no nodes");
    write_atomically(&path, encode_state(&[addr("127.0.0.9:7000")]).as_bytes()).unwrap();
    assert_eq!(load_state(&path), vec![addr("127.0.0.9:7000")]);
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("dht.dat")],
        "temp file left"
    );
}

#[test]
fn binds_ipv4_only() {
    let any = addr("0.0.0.0:0");
    assert_eq!(bind_ipv4(None, any).unwrap(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(
        bind_ipv4(None, addr("127.0.0.3:1")).unwrap(),
        Ipv4Addr::new(127, 0, 0, 3)
    );
    let ip: IpAddr = "127.0.0.4".parse().unwrap();
    assert_eq!(
        bind_ipv4(Some(ip), addr("127.0.0.3:1")).unwrap(),
        Ipv4Addr::new(127, 0, 0, 4)
    );
    assert_eq!(
        bind_ipv4(None, addr("[::]:0")).unwrap(),
        Ipv4Addr::UNSPECIFIED
    );
    assert!(matches!(
        bind_ipv4(None, addr("[::1]:5")),
        Err(DhtError::Ipv6Only(_))
    ));
}

#[test]
fn a_node_that_is_not_running_saves_what_peers_announced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dht.dat");
    let node = DhtNode {
        state: watch::Sender::new(NodeState::Starting),
        state_file: Some(path.clone()),
        link: Arc::new(DhtLink::new()),
    };
    assert_eq!(node.save().unwrap(), 0, "nothing to save");
    assert!(!path.exists(), "an empty save must keep an earlier file");
    node.link().set_port(6881);
    node.link().node_seen(addr("127.0.0.1:5000"), 6881);
    assert_eq!(node.save().unwrap(), 1);
    assert_eq!(load_state(&path), vec![addr("127.0.0.1:6881")]);
    node.stop();
    assert_eq!(
        node.link().port(),
        None,
        "handshakes must stop setting the DHT bit"
    );
}

#[test]
fn disabled_and_default_configs() {
    assert!(!DhtConfig::disabled().enabled);
    assert!(DhtConfig::disabled().bootstrap.is_empty());
    let d = DhtConfig::default();
    assert!(d.enabled && d.bootstrap.len() == 4 && d.port == 0);
    let local = DhtConfig::with_bootstrap(vec!["127.0.0.1:1".into()]);
    assert_eq!(local.bootstrap, vec!["127.0.0.1:1".to_string()]);
    assert!(DhtNode::start(&DhtConfig::disabled(), addr("127.0.0.1:0")).is_none());
}
