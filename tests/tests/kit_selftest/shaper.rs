//! The TCP path shaper against a small target server on real loopback sockets: latency and
//! rate within 5% of what was asked, the stream whole and in order under jitter, half-closes
//! passed on, drops counted, and what it costs in CPU.
//!
//! The target server reads one mode byte per connection: `E` echoes until end of stream;
//! `S` + a u64 length streams that many pattern bytes and closes; `K` reads pattern bytes
//! until end of stream, then replies (count, pattern intact, steady rate it saw) and closes.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rt_testkit::net::{connect_from, seeder_ip, LEECHER_IP};
use rt_testkit::shaper::{Shaper, ShaperOpts};
use rt_testkit::wait_until;

const MS: Duration = Duration::from_millis(1);
const CHUNK: usize = 64 * 1024;

/// Held by the tests that measure time or CPU, so they do not load the 2 cores under each
/// other (the test harness runs two tests at once there).
static TIMING: Mutex<()> = Mutex::new(());

fn timing() -> MutexGuard<'static, ()> {
    TIMING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Byte `i` of the test stream: the stream is the little-endian u64 words 0, 1, 2, ... so any
/// byte lost, repeated or moved shows.
fn pattern_byte(i: u64) -> u8 {
    ((i / 8) >> (8 * (i % 8))) as u8
}

fn fill_pattern(buf: &mut [u8], from: u64) {
    for (k, b) in buf.iter_mut().enumerate() {
        *b = pattern_byte(from + k as u64);
    }
}

/// Where `buf` (stream bytes from offset `from`) first differs from the pattern.
fn pattern_mismatch(buf: &[u8], from: u64) -> Option<u64> {
    (0..buf.len())
        .find(|&k| buf[k] != pattern_byte(from + k as u64))
        .map(|k| from + k as u64)
}

/// The target server; stops accepting when dropped.
struct Target {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Target {
    fn start() -> Target {
        let listener = TcpListener::bind((seeder_ip(), 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                std::thread::spawn(move || serve(conn));
            }
        });
        Target {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One target connection; errors (a reset from the shaper) just end it.
fn serve(mut s: TcpStream) {
    let mut mode = [0u8];
    if s.read_exact(&mut mode).is_err() {
        return;
    }
    let _ = match mode[0] {
        b'E' => echo(&mut s),
        b'S' => stream(&mut s),
        b'K' => sink(&mut s),
        _ => Ok(()),
    };
}

fn echo(s: &mut TcpStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return s.shutdown(Shutdown::Write);
        }
        s.write_all(&buf[..n])?;
    }
}

fn stream(s: &mut TcpStream) -> std::io::Result<()> {
    let mut len = [0u8; 8];
    s.read_exact(&mut len)?;
    let len = u64::from_le_bytes(len);
    let mut buf = vec![0u8; CHUNK];
    let mut sent = 0u64;
    while sent < len {
        let n = (len - sent).min(CHUNK as u64) as usize;
        fill_pattern(&mut buf[..n], sent);
        s.write_all(&buf[..n])?;
        sent += n as u64;
    }
    s.shutdown(Shutdown::Write)
}

/// Reads to end of stream; replies count, 1 if the pattern held, and the rate (bytes/s)
/// from the time an eighth had arrived to the last read.
fn sink(s: &mut TcpStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let (mut got, mut intact) = (0u64, true);
    let mut reads: Vec<(Instant, u64)> = Vec::new();
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        intact &= pattern_mismatch(&buf[..n], got).is_none();
        got += n as u64;
        reads.push((Instant::now(), got));
    }
    let rate = steady_rate(&reads, got / 8).unwrap_or(0.0);
    let mut reply = Vec::new();
    reply.extend_from_slice(&got.to_le_bytes());
    reply.extend_from_slice(&u64::from(intact).to_le_bytes());
    reply.extend_from_slice(&rate.to_le_bytes());
    s.write_all(&reply)
}

/// Bytes/s between the first read that brought the total to `skip` and the last read.
fn steady_rate(reads: &[(Instant, u64)], skip: u64) -> Option<f64> {
    let (t0, b0) = *reads.iter().find(|(_, b)| *b >= skip)?;
    let (t1, b1) = *reads.last()?;
    let secs = (t1 - t0).as_secs_f64();
    (secs > 0.0).then(|| (b1 - b0) as f64 / secs)
}

fn client(shaper: &Shaper) -> TcpStream {
    let c = connect_from(LEECHER_IP, shaper.addr(), Duration::from_secs(5)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.set_nodelay(true).unwrap();
    c
}

/// Asks the target for `len` bytes; reads them to the end. Returns each read's (time, total
/// so far) and when the request went out. Checks the pattern if `check`.
fn fetch(shaper: &Shaper, len: u64, check: bool) -> (Instant, Vec<(Instant, u64)>) {
    let mut c = client(shaper);
    let mut req = vec![b'S'];
    req.extend_from_slice(&len.to_le_bytes());
    let asked = Instant::now();
    c.write_all(&req).unwrap();
    let mut buf = vec![0u8; CHUNK];
    let mut reads = Vec::with_capacity((len / 1024) as usize);
    let mut got = 0u64;
    loop {
        let n = c
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("after {got} bytes: {e}: {}", shaper.summary()));
        if n == 0 {
            break;
        }
        if check {
            assert_eq!(pattern_mismatch(&buf[..n], got), None, "stream corrupted");
        }
        got += n as u64;
        reads.push((Instant::now(), got));
    }
    assert_eq!(got, len, "{}", shaper.summary());
    (asked, reads)
}

fn within(value: f64, want: f64, tolerance: f64) -> bool {
    (value - want).abs() <= want * tolerance
}

/// The acceptance test: a relay of 10 MB/s with 50 ms delay measures within 5% of
/// both.
///
/// Latency: round trips of 8 bytes echoed through both directions (2 x 50 ms). A late
/// wake-up on a loaded machine only ever adds time, so every round trip must be at least
/// 95 ms (a short or missing delay fails however loaded the machine), and the median of 15
/// must be within 5% of 100 ms in one of up to 3 rounds (a burst of load may spoil one).
/// Rate: the client's steady rate over 30 MB from the first megabyte on (past the first
/// delay and the burst), from the times of its reads. Above 10.5 MB/s fails at once; below
/// 9.5 (a thread kept off the CPU loses tokens) gets a second run.
#[test]
fn shaper_rate_and_delay_within_5_percent() {
    let _serial = timing();
    let target = Target::start();
    let opts = ShaperOpts {
        one_way_delay: 50 * MS,
        down_rate: 10_000_000,
        ..Default::default()
    };
    let shaper = Shaper::start(seeder_ip(), target.addr, opts).unwrap();

    let mut c = client(&shaper);
    c.write_all(b"E").unwrap();
    let mut medians = Vec::new();
    for round in 0..3 {
        let rtts = round_trips(&mut c, 15);
        eprintln!("round trips through the shaper, round {round}: {rtts:?}");
        assert!(
            rtts[0] >= 95 * MS,
            "a round trip of {:?}: the delay is missing",
            rtts[0]
        );
        medians.push(rtts[rtts.len() / 2]);
        if within(medians[round].as_secs_f64(), 0.100, 0.05) {
            break;
        }
    }
    assert!(
        medians.iter().any(|m| within(m.as_secs_f64(), 0.100, 0.05)),
        "median round trips {medians:?}, wanted 100 ms +- 5%"
    );

    let mut rates = Vec::new();
    for _ in 0..2 {
        let (asked, reads) = fetch(&shaper, 30_000_000, false);
        let first = reads[0].0 - asked;
        assert!(
            first >= 100 * MS,
            "first byte after {first:?}: faster than 2 delays"
        );
        let rate = steady_rate(&reads, 1_000_000).unwrap();
        eprintln!(
            "first byte after {first:?}, steady rate {:.3} MB/s; {}",
            rate / 1e6,
            shaper.summary()
        );
        assert!(
            rate <= 10.5e6,
            "steady rate {:.3} MB/s, over the cap",
            rate / 1e6
        );
        rates.push(rate / 1e6);
        if rate >= 9.5e6 {
            break;
        }
    }
    assert!(
        rates.iter().any(|r| within(*r, 10.0, 0.05)),
        "steady rates {rates:.3?} MB/s, wanted 10 MB/s +- 5%"
    );
    assert!(shaper.stats().down_bytes >= 30_000_000);
}

/// `n` echoed round trips of 8 bytes each on an echo connection, sorted.
fn round_trips(c: &mut TcpStream, n: u64) -> Vec<Duration> {
    let mut rtts = Vec::new();
    for i in 0..n {
        let t = Instant::now();
        c.write_all(&i.to_le_bytes()).unwrap();
        let mut back = [0u8; 8];
        c.read_exact(&mut back).unwrap();
        rtts.push(t.elapsed());
        assert_eq!(u64::from_le_bytes(back), i);
    }
    rtts.sort();
    rtts
}

/// The client's upload is capped too: the target sees 4 MB/s within 5%.
#[test]
fn shaper_caps_the_up_rate() {
    let _serial = timing();
    let target = Target::start();
    let opts = ShaperOpts {
        one_way_delay: 10 * MS,
        up_rate: 4_000_000,
        ..Default::default()
    };
    let shaper = Shaper::start(seeder_ip(), target.addr, opts).unwrap();
    let (got, intact, rate) = sink_through(&shaper, 6_000_000);
    assert_eq!((got, intact), (6_000_000, true), "{}", shaper.summary());
    eprintln!("the target saw {:.3} MB/s", rate / 1e6);
    assert!(
        within(rate, 4e6, 0.05),
        "upload {:.3} MB/s, wanted 4 MB/s +- 5%",
        rate / 1e6
    );
}

/// Sends `len` pattern bytes to the target's sink, shuts down, and reads its reply (count,
/// pattern intact, rate) and then end of stream.
fn sink_through(shaper: &Shaper, len: u64) -> (u64, bool, f64) {
    let mut c = client(shaper);
    c.write_all(b"K").unwrap();
    let mut buf = vec![0u8; CHUNK];
    let mut sent = 0u64;
    while sent < len {
        let n = (len - sent).min(CHUNK as u64) as usize;
        fill_pattern(&mut buf[..n], sent);
        c.write_all(&buf[..n]).unwrap();
        sent += n as u64;
    }
    c.shutdown(Shutdown::Write).unwrap();
    let mut reply = [0u8; 24];
    c.read_exact(&mut reply).unwrap();
    assert_eq!(
        c.read(&mut buf).unwrap(),
        0,
        "end of stream after the reply"
    );
    let word = |k: usize| u64::from_le_bytes(reply[8 * k..8 * k + 8].try_into().unwrap());
    (word(0), word(1) == 1, f64::from_bits(word(2)))
}

/// 8 MB each way through an echo with 20 ms of jitter per chunk (and rate caps, so there are
/// hundreds of chunks): the echo comes back byte for byte in order.
#[test]
fn shaper_jitter_never_reorders_bytes() {
    let target = Target::start();
    let opts = ShaperOpts {
        one_way_delay: 2 * MS,
        jitter: 20 * MS,
        down_rate: 40_000_000,
        up_rate: 40_000_000,
        seed: 9,
        ..Default::default()
    };
    let shaper = Shaper::start(seeder_ip(), target.addr, opts).unwrap();
    const LEN: u64 = 8 << 20;
    let mut c = client(&shaper);
    c.write_all(b"E").unwrap();
    let mut w = c.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let mut buf = vec![0u8; 10_007]; // odd sizes: chunk edges fall everywhere
        let mut sent = 0u64;
        while sent < LEN {
            let n = (LEN - sent).min(buf.len() as u64) as usize;
            fill_pattern(&mut buf[..n], sent);
            w.write_all(&buf[..n]).unwrap();
            sent += n as u64;
        }
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut back = Vec::with_capacity(LEN as usize);
    c.read_to_end(&mut back).unwrap();
    writer.join().unwrap();
    assert_eq!(back.len() as u64, LEN, "{}", shaper.summary());
    assert_eq!(
        pattern_mismatch(&back, 0),
        None,
        "the echo came back out of order"
    );
    let s = shaper.stats();
    assert_eq!(
        (s.up_bytes, s.down_bytes),
        (LEN + 1, LEN),
        "{}",
        shaper.summary()
    );
}

/// A client that sends and shuts down at once still has all of it delivered (through a
/// 20 ms delay), gets the target's reply after its own half-close, then end of stream; the
/// pair then closes cleanly.
#[test]
fn shaper_half_close_delivers_everything() {
    let target = Target::start();
    let opts = ShaperOpts {
        one_way_delay: 20 * MS,
        jitter: 5 * MS,
        up_rate: 50_000_000,
        ..Default::default()
    };
    let shaper = Shaper::start(seeder_ip(), target.addr, opts).unwrap();
    let (got, intact, _) = sink_through(&shaper, 3_000_001);
    assert_eq!((got, intact), (3_000_001, true), "{}", shaper.summary());
    let (_, reads) = fetch(&shaper, 1_000_003, true);
    assert_eq!(reads.last().unwrap().1, 1_000_003);
    wait_until(Duration::from_secs(5), "both pairs closed", || {
        shaper.stats().open == 0
    })
    .unwrap_or_else(|e| panic!("{e:#}: {}", shaper.summary()));
    let s = shaper.stats();
    assert_eq!(
        (s.accepted, s.failed, s.dropped),
        (2, 0, 0),
        "{}",
        shaper.summary()
    );
}

/// With drop_after 300-400 ms, a long download is reset within that time, twice (new
/// connections are still accepted), and the stats count both.
#[test]
fn shaper_drop_after_resets_connections() {
    let target = Target::start();
    let opts = ShaperOpts {
        down_rate: 2_000_000,
        drop_after: Some((300 * MS, 400 * MS)),
        seed: 4,
        ..Default::default()
    };
    let shaper = Shaper::start(seeder_ip(), target.addr, opts).unwrap();
    for round in 1..=2 {
        let mut c = client(&shaper);
        let mut req = vec![b'S'];
        req.extend_from_slice(&(1u64 << 30).to_le_bytes());
        let t = Instant::now();
        c.write_all(&req).unwrap();
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0u64;
        let err = loop {
            assert!(
                t.elapsed() < Duration::from_secs(3),
                "not dropped after {got} bytes: {}",
                shaper.summary()
            );
            match c.read(&mut buf) {
                Ok(0) => panic!("a clean end of stream, not a reset: {}", shaper.summary()),
                Ok(n) => got += n as u64,
                Err(e) => break e,
            }
        };
        let life = t.elapsed();
        eprintln!("round {round}: reset after {life:?} and {got} bytes: {err}");
        assert_eq!(err.kind(), ErrorKind::ConnectionReset);
        assert!(got > 100_000, "the transfer ran before the drop: {got}");
        assert!(
            (250 * MS..1000 * MS).contains(&life),
            "dropped after {life:?}, wanted 300-400 ms"
        );
        let s = shaper.stats();
        assert_eq!(
            (s.accepted, s.dropped),
            (round, round),
            "{}",
            shaper.summary()
        );
    }
    assert_eq!(shaper.stats().open, 0);
}

/// Three echo clients: accepted and open count them, the byte counters match what went
/// through, closing brings open back to 0. A target that refuses resets the client and
/// counts as failed.
#[test]
fn shaper_stats_count_bytes_and_connections() {
    let target = Target::start();
    let shaper = Shaper::start(seeder_ip(), target.addr, ShaperOpts::default()).unwrap();
    let mut clients: Vec<TcpStream> = (0..3).map(|_| client(&shaper)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let msg = vec![b'x'; 1000 * (i + 1)];
        c.write_all(b"E").unwrap();
        c.write_all(&msg).unwrap();
        let mut back = vec![0u8; msg.len()];
        c.read_exact(&mut back).unwrap();
        assert_eq!(back, msg);
    }
    let s = shaper.stats();
    assert_eq!((s.accepted, s.open), (3, 3), "{}", shaper.summary());
    for c in &mut clients {
        c.shutdown(Shutdown::Write).unwrap();
        assert_eq!(c.read(&mut [0u8; 16]).unwrap(), 0);
    }
    drop(clients);
    wait_until(Duration::from_secs(5), "all pairs closed", || {
        shaper.stats().open == 0
    })
    .unwrap_or_else(|e| panic!("{e:#}: {}", shaper.summary()));
    let s = shaper.stats();
    assert_eq!(
        (s.up_bytes, s.down_bytes),
        (6003, 6000),
        "{}",
        shaper.summary()
    );
    assert_eq!((s.accepted, s.dropped, s.failed), (3, 0, 0));

    let closed = {
        let l = TcpListener::bind((seeder_ip(), 0)).unwrap();
        l.local_addr().unwrap() // nothing listens once `l` is dropped
    };
    let refusing = Shaper::start(seeder_ip(), closed, ShaperOpts::default()).unwrap();
    // The reset can come before connect() has even looked at its socket.
    let kind = match connect_from(LEECHER_IP, refusing.addr(), Duration::from_secs(5)) {
        Err(e) => e.downcast_ref::<std::io::Error>().map(|e| e.kind()),
        Ok(mut c) => {
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            c.read(&mut [0u8; 16]).err().map(|e| e.kind())
        }
    };
    assert_eq!(kind, Some(ErrorKind::ConnectionReset));
    wait_until(Duration::from_secs(5), "the refused pair counted", || {
        refusing.stats().failed == 1
    })
    .unwrap_or_else(|e| panic!("{e:#}: {}", refusing.summary()));
    assert_eq!(refusing.stats().open, 0);
}

#[test]
fn shaper_refuses_addresses_off_loopback_and_bad_options() {
    let lo = "127.0.0.1".parse().unwrap();
    let target: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let far: SocketAddr = "10.0.0.1:9".parse().unwrap();
    let v6: SocketAddr = "[::1]:9".parse().unwrap();
    assert!(Shaper::start(lo, far, ShaperOpts::default()).is_err());
    assert!(Shaper::start("10.0.0.1".parse().unwrap(), target, ShaperOpts::default()).is_err());
    assert!(Shaper::start(lo, v6, ShaperOpts::default()).is_err());
    let backwards = ShaperOpts {
        drop_after: Some((2 * MS, MS)),
        ..Default::default()
    };
    assert!(Shaper::start(lo, target, backwards).is_err());
    assert!(Shaper::start(lo, target, ShaperOpts::default()).is_ok());
}

/// What the shaper's thread costs: 200 MB at 100 MB/s with 40 ms delay on one connection.
/// Prints CPU-s per GB; fails only on a gross regression (a busy loop costs ~10 s/GB here).
#[test]
fn shaper_cpu_per_gigabyte() {
    let _serial = timing();
    let target = Target::start();
    let opts = ShaperOpts {
        one_way_delay: 40 * MS,
        down_rate: 100_000_000,
        ..Default::default()
    };
    let shaper = Shaper::start(seeder_ip(), target.addr, opts).unwrap();
    let cpu0 = shaper.cpu_s().unwrap();
    let (_, reads) = fetch(&shaper, 200_000_000, false);
    let cpu = shaper.cpu_s().unwrap() - cpu0;
    let rate = steady_rate(&reads, 10_000_000).unwrap();
    let per_gb = cpu / 0.2;
    eprintln!(
        "shaper CPU: {cpu:.3} s for 200 MB at {:.1} MB/s = {per_gb:.3} CPU-s/GB",
        rate / 1e6
    );
    assert!(per_gb < 2.0, "{per_gb:.3} CPU-s per GB");
    assert!(rate < 105e6, "over the cap: {:.1} MB/s", rate / 1e6);
}
