//! The shaper's thread: one epoll set (edge-triggered) for the listener, every relayed
//! socket, the timer and the stop eventfd; one pass over all connections per wake; then a
//! sleep until the next socket event or the earliest thing due (a chunk, a read the bucket
//! allows, a drop), which the timerfd marks to the nanosecond.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::event::Timespec;
use rustix::time::{timerfd_settime, Itimerspec, TimerfdTimerFlags};

use super::conn::{Conn, Dir, PassCtx, Verdict};
use super::line::Bucket;
use super::{
    Counters, ShaperOpts, LINE_SLACK, LISTENER, MAX_CONNS, MAX_LINE, STOP_CHECK, TIMER, WAKE,
};
use crate::rng::SplitMix64;

/// Connections accepted per pass.
const ACCEPT_BATCH: usize = 32;
/// Epoll events taken per wait.
const EVENTS: usize = 64;

/// How a connection pair ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    /// Both directions shut: plain close.
    Quiet,
    /// `drop_after` ran out: reset both sides.
    Dropped,
    /// A side failed: reset both sides.
    Failed,
}

/// The shaper thread's state.
pub(super) struct Path {
    listener: TcpListener,
    listen_ip: Ipv4Addr,
    target: SocketAddr,
    opts: ShaperOpts,
    epoll: OwnedFd,
    timer: OwnedFd,
    /// When the timer is set to fire.
    armed: Option<Instant>,
    /// The listener may hold connections not accepted yet.
    listener_ready: bool,
    /// Connection slots (at most [`MAX_CONNS`]); the epoll token names the slot.
    conns: Vec<Option<Conn>>,
    /// Slot served first in the next pass (rotates: the buckets are shared fairly).
    first: usize,
    up: Dir,
    down: Dir,
    rng: SplitMix64,
    counters: Arc<Counters>,
}

impl Path {
    /// The state of a shaper whose listener, epoll set and timer are ready.
    pub(super) fn new(
        listener: TcpListener,
        listen_ip: Ipv4Addr,
        target: SocketAddr,
        opts: ShaperOpts,
        epoll: OwnedFd,
        timer: OwnedFd,
        counters: Arc<Counters>,
    ) -> Path {
        let now = Instant::now();
        let in_flight = opts.one_way_delay + opts.jitter;
        Path {
            listener,
            listen_ip,
            target,
            opts,
            epoll,
            timer,
            armed: None,
            listener_ready: true,
            conns: Vec::new(),
            first: 0,
            up: direction(opts.up_rate, in_flight, now),
            down: direction(opts.down_rate, in_flight, now),
            rng: SplitMix64::new(opts.seed),
            counters,
        }
    }

    pub(super) fn run(&mut self, stop: &AtomicBool) {
        // Made here: an epoll event holds a pointer-sized union, so it cannot cross threads.
        let mut events = Vec::with_capacity(EVENTS);
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            self.accept(now);
            self.service_all(now);
            let wake_at = self.next_wake(now);
            if let Err(e) = self.wait(wake_at, now, &mut events) {
                eprintln!("shaper {}: epoll failed: {e}; stopping", self.target);
                return;
            }
            for ev in &events {
                self.on_event(ev.data.u64(), ev.flags);
            }
        }
    }

    fn on_event(&mut self, token: u64, flags: EventFlags) {
        match token {
            LISTENER => self.listener_ready = true,
            TIMER | WAKE => {}
            _ => {
                let slot = usize::try_from(token / 2).unwrap_or(usize::MAX);
                if let Some(Some(conn)) = self.conns.get_mut(slot) {
                    conn.on_event(token % 2 == 1, flags);
                }
            }
        }
    }

    /// Sleeps until an event, `wake_at` (by the timer), or at most [`STOP_CHECK`].
    fn wait(
        &mut self,
        wake_at: Option<Instant>,
        now: Instant,
        events: &mut Vec<epoll::Event>,
    ) -> std::io::Result<()> {
        let timeout = match wake_at {
            Some(w) if w <= now => Duration::ZERO,
            Some(w) => {
                if self.armed != Some(w) {
                    let value = (w - now).max(Duration::from_nanos(1));
                    let spec = Itimerspec {
                        it_interval: Timespec::default(),
                        it_value: timespec(value),
                    };
                    timerfd_settime(&self.timer, TimerfdTimerFlags::empty(), &spec)?;
                    self.armed = Some(w);
                }
                STOP_CHECK
            }
            None => STOP_CHECK,
        };
        events.clear();
        let buf = rustix::buffer::spare_capacity(events);
        match epoll::wait(&self.epoll, buf, Some(&timespec(timeout))) {
            Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The earliest time something has to be done without a socket event. A direction that
    /// only waits for tokens reads on a wake planned anyway if that is soon enough.
    fn next_wake(&mut self, now: Instant) -> Option<Instant> {
        let (mut wake, mut up_starved, mut down_starved) = (None, false, false);
        for conn in self.conns.iter().flatten() {
            let (w, up, down) = conn.next_wake(&self.up, &self.down, now);
            wake = wake.into_iter().chain(w).min();
            up_starved |= up;
            down_starved |= down;
        }
        self.up.starved = up_starved;
        self.down.starved = down_starved;
        if self.listener_ready && self.free_slot().is_some() {
            return Some(now);
        }
        for dir in [&self.up, &self.down] {
            if dir.starved {
                wake = Some(dir.bucket.read_window().merge(wake));
            }
        }
        wake
    }

    fn free_slot(&self) -> Option<usize> {
        match self.conns.iter().position(Option::is_none) {
            Some(i) => Some(i),
            None if self.conns.len() < MAX_CONNS => Some(self.conns.len()),
            None => None,
        }
    }

    fn accept(&mut self, now: Instant) {
        for _ in 0..ACCEPT_BATCH {
            if !self.listener_ready {
                return;
            }
            let Some(slot) = self.free_slot() else {
                return; // the backlog holds them until a connection closes
            };
            match self.listener.accept() {
                Ok((client, _)) => {
                    self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = self.open(slot, client, now) {
                        eprintln!("shaper {} -> {}: {e:#}", self.listen_ip, self.target);
                        self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.listener_ready = false,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    eprintln!("shaper {}: accept failed: {e}", self.target);
                    self.listener_ready = false;
                }
            }
        }
    }

    /// Connects upstream for `client` and puts the pair in `slot`; resets `client` if that
    /// fails.
    fn open(&mut self, slot: usize, client: TcpStream, now: Instant) -> Result<()> {
        let (upstream, connecting) = match self.register(slot, &client) {
            Ok(up) => up,
            Err(e) => {
                reset(&client);
                return Err(e);
            }
        };
        let drop_at = self
            .opts
            .drop_after
            .map(|(lo, hi)| now + self.rng.duration_between(lo, hi));
        let conn = Conn::new(client, upstream, connecting, drop_at);
        if slot == self.conns.len() {
            self.conns.push(Some(conn));
        } else {
            self.conns[slot] = Some(conn);
        }
        self.counters.open.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Starts the upstream connection (nonblocking, from the shaper's IP) and registers both
    /// sockets under `slot`'s tokens. Returns the upstream socket and whether its connect is
    /// still under way.
    fn register(&mut self, slot: usize, client: &TcpStream) -> Result<(TcpStream, bool)> {
        use socket2::{Domain, Protocol, Socket, Type};
        client.set_nonblocking(true)?;
        client.set_nodelay(true)?;
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        s.set_nonblocking(true)?;
        s.set_tcp_nodelay(true)?;
        s.bind(&SocketAddr::from((self.listen_ip, 0)).into())?;
        let connecting = match s.connect(&self.target.into()) {
            Ok(()) => false,
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => true,
            Err(e) => return Err(e).with_context(|| format!("connecting to {}", self.target)),
        };
        let upstream = TcpStream::from(s);
        let token = slot as u64 * 2;
        let flags = EventFlags::IN | EventFlags::OUT | EventFlags::ET;
        epoll::add(&self.epoll, client, EventData::new_u64(token), flags)?;
        epoll::add(&self.epoll, &upstream, EventData::new_u64(token + 1), flags)?;
        Ok((upstream, connecting))
    }

    /// One pass over every connection, starting one slot later each time.
    fn service_all(&mut self, now: Instant) {
        self.up.bucket.refill(now, self.up.starved);
        self.down.bucket.refill(now, self.down.starved);
        let n = self.conns.len();
        if n == 0 {
            return;
        }
        self.first = (self.first + 1) % n;
        for k in 0..n {
            let slot = (self.first + k) % n;
            let Some(conn) = self.conns[slot].as_mut() else {
                continue;
            };
            let mut cx = PassCtx {
                now,
                delay: self.opts.one_way_delay,
                jitter: self.opts.jitter,
                rng: &mut self.rng,
                up: &mut self.up,
                down: &mut self.down,
                up_bytes: &self.counters.up_bytes,
                down_bytes: &self.counters.down_bytes,
            };
            match conn.service(&mut cx) {
                Ok(Verdict::Open) => {}
                Ok(Verdict::Done) => self.close(slot, Close::Quiet),
                Ok(Verdict::Drop) => self.close(slot, Close::Dropped),
                Err(_) => self.close(slot, Close::Failed),
            }
        }
    }

    fn close(&mut self, slot: usize, how: Close) {
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::take) else {
            return;
        };
        let (up, down) = conn.buffered();
        self.up.buffered -= up;
        self.down.buffered -= down;
        let c = &self.counters;
        match how {
            Close::Quiet => {}
            Close::Dropped => {
                c.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Close::Failed => {
                c.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        if how != Close::Quiet {
            reset(&conn.client.sock);
            reset(&conn.target.sock);
        }
        c.open.fetch_sub(1, Ordering::Relaxed);
        // Dropping the sockets closes them, which also takes them out of the epoll set.
    }
}

/// Makes the coming close send a RST instead of a FIN.
fn reset(sock: &TcpStream) {
    let _ = socket2::SockRef::from(sock).set_linger(Some(Duration::ZERO));
}

fn timespec(d: Duration) -> Timespec {
    // INVARIANT: the durations here are bounded by MAX_DELAY, far inside a timespec.
    Timespec::try_from(d).expect("a bounded duration fits a timespec")
}

/// A direction of the path: its bucket and how much its lines may hold.
fn direction(rate_bytes_per_s: u64, in_flight: Duration, now: Instant) -> Dir {
    let limit = if rate_bytes_per_s == 0 {
        if in_flight.is_zero() {
            LINE_SLACK
        } else {
            MAX_LINE
        }
    } else {
        let in_flight_bytes = (rate_bytes_per_s as f64 * in_flight.as_secs_f64()) as usize;
        in_flight_bytes.saturating_add(LINE_SLACK).min(MAX_LINE)
    };
    Dir {
        bucket: Bucket::new(rate_bytes_per_s, now),
        limit,
        buffered: 0,
        starved: false,
    }
}
