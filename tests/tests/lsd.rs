//! Local service discovery (BEP 14) on the loopback interface: two ringtorrent engines, each
//! given no peers and no trackers, find each other through the multicast announces alone, also
//! while a liar on the leecher's address floods the group with junk and false announces.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rt_testkit::net::seeder_ip;
use rt_testkit::rt_seeder::{RtSeedOpts, RtSeeder};
use rt_testkit::torrent::PayloadFixture;
use rt_testkit::{Download, PayloadSpec};

fn fixture(seed: u64) -> PayloadFixture {
    let spec = PayloadSpec::single("lsd-payload.bin", 6 << 20, seed);
    PayloadFixture::new(spec, 64 * 1024).unwrap()
}

fn seeder(fx: &PayloadFixture, lsd: bool) -> RtSeeder {
    let listen: SocketAddr = (seeder_ip(), 0).into();
    let mut opts = RtSeedOpts::listen(listen);
    opts.lsd = lsd;
    RtSeeder::start(&fx.torrent, &fx.seed_dir, &opts).unwrap()
}

fn download(fx: &PayloadFixture, lsd: bool, timeout: Duration) -> Download {
    let mut d = Download::new(&fx.torrent, &fx.dl_dir).timeout(timeout);
    d.listen = Some((seeder_ip(), 0).into());
    d.quiet = false;
    d.lsd = lsd;
    d.extra_args.push("--verbose".into());
    d
}

#[test]
fn two_engines_find_each_other_through_lsd() {
    let fx = fixture(181);
    let seeder = seeder(&fx, true);
    let out = download(&fx, true, Duration::from_secs(60)).run().unwrap();
    out.ensure_success().unwrap();
    fx.spec.verify(&fx.dl_dir).unwrap();
    assert!(
        out.stderr
            .contains(&format!("peer {} connected", seeder.addr())),
        "no connection to the seeder:\n{}",
        rt_testkit::proc::tail(&out.stderr, 3000)
    );
}

/// The same pair with LSD off on either side finds nothing: the success above is LSD's.
#[test]
fn without_lsd_on_both_sides_they_do_not_meet() {
    for (seeder_lsd, leecher_lsd) in [(true, false), (false, true)] {
        let fx = fixture(182);
        let _seeder = seeder(&fx, seeder_lsd);
        let mut d = download(&fx, leecher_lsd, Duration::from_secs(8));
        d.extra_args.push("--timeout".into());
        d.extra_args.push("5".into());
        let out = d.run().unwrap();
        assert!(
            !out.success(),
            "downloaded with LSD only on the {} side:\n{}",
            if seeder_lsd { "seeder" } else { "leecher" },
            out.stderr
        );
        assert!(!out.stderr.contains(" connected"), "{}", out.stderr);
    }
}

/// Sends datagrams to the LSD group from `ip` (on loopback: the multicast interface is set to
/// it, so nothing leaves the host) every 100 ms until dropped.
struct Liar {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Liar {
    fn start(ip: Ipv4Addr, datagrams: Vec<Vec<u8>>) -> Liar {
        use socket2::{Domain, Protocol, Socket, Type};
        assert!(ip.is_loopback());
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        s.bind(&SocketAddr::from((ip, 0)).into()).unwrap();
        s.set_multicast_if_v4(&ip).unwrap();
        s.set_multicast_loop_v4(true).unwrap();
        s.set_multicast_ttl_v4(0).unwrap();
        let group = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(239, 192, 152, 143), 6771));
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                for d in &datagrams {
                    let _ = s.send_to(d, &group.into());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Liar {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Liar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An announce as BEP 14 spells it.
fn announce(port: u16, info_hashes: &[String], cookie: &str) -> Vec<u8> {
    let mut s = format!("BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: {port}\r\n");
    for ih in info_hashes {
        s.push_str(&format!("Infohash: {ih}\r\n"));
    }
    s.push_str(&format!("cookie: {cookie}\r\n\r\n\r\n"));
    s.into_bytes()
}

/// Junk, oversized and malformed datagrams, and announces of the torrent from the leecher's
/// own address naming a port where nobody listens, sent before and during the download: the
/// engines drop the junk without harm, and the lie does not mute the leecher's true announce
/// (the seeder hears peers by address and port, not by address alone).
#[test]
fn junk_and_false_announces_do_not_stop_discovery() {
    let fx = fixture(183);
    let ih = fx.meta.info_hash.to_hex();
    let leecher_ip = seeder_ip();
    let dead_port = {
        let l = std::net::TcpListener::bind((leecher_ip, 0)).unwrap();
        l.local_addr().unwrap().port() // closed again when `l` drops
    };
    let mut datagrams = vec![
        b"junk".to_vec(),
        vec![0xff; 1400],
        vec![b'A'; 9000],
        b"BT-SEARCH * HTTP/1.1\r\nPort: 99999\r\nInfohash: zz\r\n\r\n\r\n".to_vec(),
        announce(0, std::slice::from_ref(&ih), "liar"),
        announce(1, &vec![ih.clone(); 500], "liar"),
    ];
    datagrams.push(announce(dead_port, std::slice::from_ref(&ih), "liar"));
    let _liar = Liar::start(leecher_ip, datagrams);
    // The seeder hears the lies first (the leecher is not up yet).
    let seeder = seeder(&fx, true);
    std::thread::sleep(Duration::from_secs(1));

    let mut d = download(&fx, true, Duration::from_secs(30));
    d.listen = Some((leecher_ip, 0).into());
    let out = d.run().unwrap();
    let tail = || rt_testkit::proc::tail(&out.stderr, 3000);
    out.ensure_success()
        .unwrap_or_else(|e| panic!("{e:#}\n{}", tail()));
    fx.spec.verify(&fx.dl_dir).unwrap();
    // The seeder announced before the leecher listened (and re-announces only minutes later),
    // so the download came through the seeder hearing the leecher's true announce among the
    // lies and connecting to it: a connection from the seeder's address but not its listening
    // port.
    let seeder = seeder.addr();
    let from_seeder = out.stderr.lines().any(|l| {
        l.split_once("peer ")
            .and_then(|(_, rest)| rest.strip_suffix(" connected"))
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .is_some_and(|a| a.ip() == seeder.ip() && a.port() != seeder.port())
    });
    assert!(
        from_seeder,
        "the seeder never connected to the leecher:\n{}",
        tail()
    );
}
