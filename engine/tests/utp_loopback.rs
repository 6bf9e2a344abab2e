//! uTP between two engines on loopback: real UDP sockets, real files, both ring backends. The
//! leecher dials over uTP only, so every byte of the download crossed uTP; the alerts say
//! which carrier each connection used.

use std::net::SocketAddr;

use ringtorrent::{AddTorrent, Alert, Backend, Config, Engine, TorrentSource, TransportMode};

mod common;

const PIECE: u32 = 64 * 1024;

fn config(backend: Backend, ip: [u8; 4], transports: TransportMode) -> Config {
    Config {
        force_portable: backend == Backend::Epoll,
        transports,
        ..common::config(ip)
    }
}

/// A seeder (default transports) and a leecher dialing with `leecher_transports` on
/// `backend`; the download is compared byte for byte. Returns the leecher's alerts.
async fn download(backend: Backend, leecher_transports: TransportMode, size: usize) -> Vec<Alert> {
    let dir = tempfile::tempdir().unwrap();
    let data = common::pseudo_random(size, 0x7e57_0029);
    let bytes = common::single_file_torrent(dir.path(), "payload", &data, PIECE);
    let seeder = Engine::start(config(backend, [127, 0, 0, 2], TransportMode::Both)).unwrap();
    assert_eq!(seeder.backend(), backend, "the seeder's shards");
    let mut add = AddTorrent::new(TorrentSource::Bytes(bytes.clone()), dir.path());
    add.check_existing = true;
    let sid = seeder.add_torrent(add).unwrap();
    assert!(seeder.stats(sid).unwrap().complete);

    let leecher = Engine::start(config(backend, [127, 0, 0, 1], leecher_transports)).unwrap();
    assert_eq!(leecher.backend(), backend, "the leecher's shards");
    let mut alerts = leecher.alerts().unwrap();
    let out = dir.path().join("out");
    let mut add = AddTorrent::new(TorrentSource::Bytes(bytes), &out);
    add.peers = vec![seeder.listen_addr()];
    leecher.add_torrent(add).unwrap();
    let seen = common::wait_complete(&mut alerts, 60).await;
    leecher.shutdown().await.unwrap();
    seeder.shutdown().await.unwrap();
    let got = std::fs::read(out.join("payload")).unwrap();
    assert!(got == data, "the downloaded file differs");
    seen
}

/// Checks that peers connected, every one over uTP if `utp`, else every one over TCP.
fn assert_carriers(alerts: &[Alert], utp: bool) {
    let conns: Vec<(SocketAddr, bool)> = alerts
        .iter()
        .filter_map(|a| match a {
            Alert::PeerConnected { addr, utp, .. } => Some((*addr, *utp)),
            _ => None,
        })
        .collect();
    assert!(!conns.is_empty(), "no peer connected: {alerts:?}");
    assert!(
        conns.iter().all(|(_, u)| *u == utp),
        "wanted uTP {utp}: {conns:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_over_utp_on_io_uring_is_byte_identical() {
    let alerts = download(Backend::IoUring, TransportMode::Utp, 8 << 20).await;
    assert_carriers(&alerts, true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_over_utp_on_epoll_is_byte_identical() {
    let alerts = download(Backend::Epoll, TransportMode::Utp, 4 << 20).await;
    assert_carriers(&alerts, true);
}

/// The default dials TCP first: with a seeder that takes TCP, no uTP connection is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_dials_tcp_first() {
    let alerts = download(Backend::IoUring, TransportMode::Both, 1 << 20).await;
    assert_carriers(&alerts, false);
}
