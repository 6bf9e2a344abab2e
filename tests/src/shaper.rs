//! A userspace TCP path shaper on loopback: WAN latency and bandwidth caps for benchmarks on a
//! kernel without `sch_netem`.
//!
//! Clients connect to [`Shaper::addr`]; for each one the shaper opens its own connection to
//! the target (from the shaper's IP, port chosen by the OS) and relays both ways. Each
//! direction of the path is a bottleneck link followed by a delay line, shared by all of the
//! shaper's connections:
//! - a token bucket (`line::Bucket`) decides how many bytes may be read from the source
//!   socket. It reads in quanta of 20 ms of its rate (16 KiB to 128 KiB), an idle path may
//!   send a quantum or 10 ms of rate at once, and a busy path that the thread served late
//!   catches up (up to 100 ms) instead of losing rate;
//! - what is read waits in the connection-direction's ring buffer (`line::Line`) until it is
//!   due, `read time + one_way_delay + jitter` (never before the chunk before it), and is then
//!   written to the other socket.
//!
//! So the receiver sees the capped rate and the added latency, and the sender feels
//! back-pressure through TCP: the shaper stops reading a direction while its destination
//! socket is full, or while its lines hold `rate x (delay + jitter) + 256 KiB`
//! ([`LINE_SLACK`]; [`MAX_LINE`] for an uncapped direction with a delay, which then carries
//! at most 16 MiB per delay). Limits: [`MAX_CONNS`] connections (more wait in the listen
//! backlog), each line at most its direction's limit, delays and jitter at most
//! [`MAX_DELAY`].
//!
//! A source's end of stream (read returns 0) is passed on once everything before it is
//! delivered: `shutdown(Write)` on the other socket. The pair closes when both directions are
//! shut, and is reset on both sides (SO_LINGER 0) on any error (a reset from either end,
//! EPIPE, a refused connect to the target) or when `drop_after` runs out.
//!
//! One thread runs the shaper (`path::Path`) on edge-triggered epoll with a timerfd for the
//! next due chunk or bucket refill (nanosecond wakes: epoll's own timeout has millisecond
//! steps), so it sleeps until there is work; at most [`STOP_CHECK`] between checks for stop,
//! and dropping the [`Shaper`] wakes it at once through an eventfd. The data path does not
//! allocate: a ring grows a few times (doubling) and is then reused.
//!
//! Cost, measured with [`Shaper::cpu_s`] on the 2-vCPU VM (one connection, 40 ms delay,
//! `shaper_cpu_per_gigabyte`): 0.8-1.0 CPU-s per GB relayed at 100 MB/s on a quiet machine,
//! 1.2-1.5 at a load average of 7 (a plain relay without shaping costs about the same:
//! 1.1); at 5 MB/s 1.4% of a core (2.8 CPU-s/GB), so 60 paths of 5 MB/s take ~0.8 of a core.
//! Nine tenths of it is the kernel's TCP work on loopback, charged to the sender (the
//! peer's receive path and its wake-up): the cost follows the number of reads and writes,
//! not the bytes, hence the large quanta.

mod conn;
mod line;
mod path;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::event::{eventfd, EventfdFlags};
use rustix::time::{timerfd_create, TimerfdClockId, TimerfdFlags};

use path::Path;

/// Connections one shaper relays at once; more wait in the listen backlog.
pub const MAX_CONNS: usize = 256;
/// The longest the shaper's thread sleeps before it checks whether it should stop.
pub const STOP_CHECK: Duration = Duration::from_millis(50);
/// What a direction may hold beyond `rate x (delay + jitter)`.
pub const LINE_SLACK: usize = 256 * 1024;
/// Most bytes a direction may hold, whatever its rate and delay.
pub const MAX_LINE: usize = 16 << 20;
/// Largest `one_way_delay`, `jitter`, and `drop_after` bound accepted.
pub const MAX_DELAY: Duration = Duration::from_secs(3600);
/// Epoll tokens: the listener, the timer, the stop eventfd; connections are `slot * 2 + side`.
const LISTENER: u64 = u64::MAX;
const TIMER: u64 = u64::MAX - 1;
const WAKE: u64 = u64::MAX - 2;

/// How the path behaves; the default is a clean path (no delay, no caps, no drops).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShaperOpts {
    /// One-way latency added to every byte, each direction.
    pub one_way_delay: Duration,
    /// Extra delay per chunk, uniform in 0..=jitter; never reorders the byte stream (a chunk
    /// is due no earlier than the one before it).
    pub jitter: Duration,
    /// Cap of target -> client bytes/s (the seeder's upload). 0 = unlimited.
    pub down_rate: u64,
    /// Cap of client -> target bytes/s. 0 = unlimited.
    pub up_rate: u64,
    /// If set, each relayed connection is reset (both sides, SO_LINGER 0 -> RST) after a
    /// life drawn uniformly from this range: a path that drops mid-transfer. New connections
    /// are still accepted.
    pub drop_after: Option<(Duration, Duration)>,
    /// Seed of the jitter and drop draws.
    pub seed: u64,
}

/// What a shaper did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShaperStats {
    /// Bytes delivered to clients.
    pub down_bytes: u64,
    /// Bytes delivered to the target.
    pub up_bytes: u64,
    /// Connections accepted.
    pub accepted: u64,
    /// Connections open now.
    pub open: u64,
    /// Connections reset by `drop_after`.
    pub dropped: u64,
    /// Connections reset because a side failed: a reset from either end, a write to a closed
    /// socket, a refused connect to the target.
    pub failed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    down_bytes: AtomicU64,
    up_bytes: AtomicU64,
    accepted: AtomicU64,
    open: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

/// A running shaper; stops (and joins its thread, closing all its sockets) on drop.
pub struct Shaper {
    addr: SocketAddr,
    target: SocketAddr,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    wake: OwnedFd,
    tid: i32,
    thread: Option<JoinHandle<()>>,
}

impl Shaper {
    /// Listens on listen_ip (a free port chosen by the OS) and relays each accepted TCP
    /// connection to `target` (a fresh upstream connection per client, from `listen_ip`).
    /// Both must be loopback (IPv4).
    pub fn start(listen_ip: Ipv4Addr, target: SocketAddr, opts: ShaperOpts) -> Result<Shaper> {
        ensure!(
            listen_ip.is_loopback() && target.is_ipv4() && target.ip().is_loopback(),
            "the shaper stays on IPv4 loopback: {listen_ip} -> {target}"
        );
        let (lo, hi) = opts.drop_after.unwrap_or_default();
        ensure!(
            opts.one_way_delay <= MAX_DELAY && opts.jitter <= MAX_DELAY && hi <= MAX_DELAY,
            "delays are at most {MAX_DELAY:?}: {opts:?}"
        );
        ensure!(lo <= hi, "drop_after is a range (low, high): {opts:?}");
        let listener =
            TcpListener::bind((listen_ip, 0)).with_context(|| format!("binding {listen_ip}:0"))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let timer = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        let wake = eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)?;
        let interest = EventFlags::IN | EventFlags::ET;
        epoll::add(&epoll, &listener, EventData::new_u64(LISTENER), interest)?;
        epoll::add(&epoll, &timer, EventData::new_u64(TIMER), interest)?;
        epoll::add(&epoll, &wake, EventData::new_u64(WAKE), interest)?;
        let counters = Arc::new(Counters::default());
        let mut path = Path::new(
            listener,
            listen_ip,
            target,
            opts,
            epoll,
            timer,
            Arc::clone(&counters),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let (tid_tx, tid_rx) = mpsc::channel();
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name(format!("shaper {}", addr.port()))
                .spawn(move || {
                    let _ = tid_tx.send(rustix::thread::gettid().as_raw_pid());
                    path.run(&stop);
                })?
        };
        let tid = tid_rx.recv().context("the shaper thread did not start")?;
        Ok(Shaper {
            addr,
            target,
            counters,
            stop,
            wake,
            tid,
            thread: Some(thread),
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the shaper connects.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    pub fn stats(&self) -> ShaperStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ShaperStats {
            down_bytes: get(&c.down_bytes),
            up_bytes: get(&c.up_bytes),
            accepted: get(&c.accepted),
            open: get(&c.open),
            dropped: get(&c.dropped),
            failed: get(&c.failed),
        }
    }

    /// A one-line summary for test logs.
    pub fn summary(&self) -> String {
        let s = self.stats();
        format!(
            "shaper {} -> {}: down {} B, up {} B, accepted {}, open {}, dropped {}, failed {}",
            self.addr,
            self.target,
            s.down_bytes,
            s.up_bytes,
            s.accepted,
            s.open,
            s.dropped,
            s.failed
        )
    }

    /// CPU seconds (user+sys) the shaper's thread has used, from `/proc/self/task/<tid>/stat`.
    pub fn cpu_s(&self) -> Result<f64> {
        let path = format!("/proc/self/task/{}/stat", self.tid);
        let stat = std::fs::read_to_string(&path).with_context(|| path.clone())?;
        let ticks = task_cpu_ticks(&stat).with_context(|| format!("{path}: {stat}"))?;
        Ok(ticks as f64 / rustix::param::clock_ticks_per_second() as f64)
    }
}

impl Drop for Shaper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// utime + stime (fields 14 and 15) of a `/proc/.../stat` line. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted from the last `)`.
fn task_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11); // the rest starts at field 3
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}
