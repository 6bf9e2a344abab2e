//! One relayed connection: the client's socket, the shaper's own connection to the target,
//! and a [`Line`] each way. [`Conn::service`] moves what the path allows now; the thread in
//! the parent module decides when to call it.
//!
//! Sockets are registered edge-triggered, so each [`Side`] keeps what the last event said
//! (`readable`, `writable`) until a read or write returns `WouldBlock`. Not a short read: the
//! peer's FIN can sit behind the data in the same edge, and a short read that stopped there
//! would wait for an event that never comes. The thread never asks the kernel again about a
//! socket it already knows is ready, and a socket it cannot use yet (no tokens, nothing due)
//! wakes nobody.

use std::io;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustix::event::epoll::EventFlags;

use super::line::{Bucket, Line, READ_CHUNK};
use crate::rng::SplitMix64;

/// Reads from one socket per pass, so one busy connection cannot starve the others.
const READS_PER_PASS: usize = 16;

/// One direction of the whole path (shared by all of a shaper's connections).
pub(super) struct Dir {
    pub(super) bucket: Bucket,
    /// Most bytes all lines of this direction may hold: rate x (delay + jitter) + slack.
    pub(super) limit: usize,
    /// Bytes all lines of this direction hold now.
    pub(super) buffered: usize,
    /// Some connection's data waited for tokens at the last pass.
    pub(super) starved: bool,
}

impl Dir {
    fn room(&self) -> usize {
        self.limit.saturating_sub(self.buffered)
    }
}

/// What every pass needs besides the connection: both directions, the delays, the dice.
pub(super) struct PassCtx<'a> {
    pub(super) now: Instant,
    pub(super) delay: Duration,
    pub(super) jitter: Duration,
    pub(super) rng: &'a mut SplitMix64,
    /// Client to target, target to client.
    pub(super) up: &'a mut Dir,
    pub(super) down: &'a mut Dir,
    pub(super) up_bytes: &'a AtomicU64,
    pub(super) down_bytes: &'a AtomicU64,
}

/// One socket of the pair and what is known of it.
pub(super) struct Side {
    pub(super) sock: TcpStream,
    readable: bool,
    writable: bool,
    /// A nonblocking connect not finished yet (the target side only).
    connecting: bool,
    /// An event said the socket may hold an error (or a connect finished): look.
    check_error: bool,
}

impl Side {
    fn new(sock: TcpStream, connecting: bool) -> Side {
        Side {
            sock,
            readable: true,
            writable: !connecting,
            connecting,
            check_error: false,
        }
    }

    /// Takes in an epoll event for this socket.
    fn on_event(&mut self, flags: EventFlags) {
        if flags.intersects(EventFlags::IN | EventFlags::HUP | EventFlags::ERR) {
            self.readable = true;
        }
        if flags.intersects(EventFlags::OUT | EventFlags::HUP | EventFlags::ERR) {
            self.writable = true;
            if self.connecting {
                self.connecting = false;
                self.check_error = true;
            }
        }
        if flags.contains(EventFlags::ERR) {
            self.check_error = true;
        }
    }

    /// The socket's pending error (a reset, a refused connect), if an event hinted at one.
    fn take_error(&mut self) -> io::Result<()> {
        if std::mem::take(&mut self.check_error) {
            if let Some(e) = self.sock.take_error()? {
                return Err(e);
            }
        }
        Ok(())
    }
}

/// How a pass left a connection.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Open,
    /// Both directions delivered and shut down: close quietly.
    Done,
    /// `drop_after` ran out: reset both sides.
    Drop,
}

/// A relayed connection.
pub(super) struct Conn {
    pub(super) client: Side,
    pub(super) target: Side,
    /// Client to target.
    pub(super) up: Line,
    /// Target to client.
    pub(super) down: Line,
    drop_at: Option<Instant>,
}

impl Conn {
    pub(super) fn new(
        client: TcpStream,
        target: TcpStream,
        connecting: bool,
        drop_at: Option<Instant>,
    ) -> Conn {
        Conn {
            client: Side::new(client, false),
            target: Side::new(target, connecting),
            up: Line::default(),
            down: Line::default(),
            drop_at,
        }
    }

    /// Takes in an epoll event for the client (`target == false`) or target socket.
    pub(super) fn on_event(&mut self, target: bool, flags: EventFlags) {
        let side = if target {
            &mut self.target
        } else {
            &mut self.client
        };
        side.on_event(flags);
    }

    /// Delivers what is due, reads what the buckets and lines allow, delivers what that made
    /// due at once (no delay). An error (a reset, a refused connect, EPIPE) fails the pair.
    pub(super) fn service(&mut self, cx: &mut PassCtx<'_>) -> io::Result<Verdict> {
        if self.drop_at.is_some_and(|t| t <= cx.now) {
            return Ok(Verdict::Drop);
        }
        self.client.take_error()?;
        self.target.take_error()?;
        let Conn {
            client,
            target,
            up,
            down,
            ..
        } = self;
        deliver(up, target, cx.up, cx.now, cx.up_bytes)?;
        deliver(down, client, cx.down, cx.now, cx.down_bytes)?;
        if !blocked(target) {
            let due = cx.now + cx.delay + jitter(cx.rng, cx.jitter);
            read(client, up, cx.up, due)?;
        }
        if !blocked(client) {
            let due = cx.now + cx.delay + jitter(cx.rng, cx.jitter);
            read(target, down, cx.down, due)?;
        }
        deliver(up, target, cx.up, cx.now, cx.up_bytes)?;
        deliver(down, client, cx.down, cx.now, cx.down_bytes)?;
        Ok(if up.shut && down.shut {
            Verdict::Done
        } else {
            Verdict::Open
        })
    }

    /// When this connection next has something to do without a socket event: `now` if it
    /// can read at once, else its first due chunk or its drop time. Also whether each
    /// direction (up, down) waits for tokens (the caller plans that wake from the bucket).
    pub(super) fn next_wake(
        &self,
        up: &Dir,
        down: &Dir,
        now: Instant,
    ) -> (Option<Instant>, bool, bool) {
        let (up_read, up_starved) = read_wake(&self.client, &self.up, &self.target, up, now);
        let (down_read, down_starved) =
            read_wake(&self.target, &self.down, &self.client, down, now);
        let wakes = [
            self.drop_at,
            due_wake(&self.up, &self.target),
            due_wake(&self.down, &self.client),
            up_read,
            down_read,
        ];
        (wakes.into_iter().flatten().min(), up_starved, down_starved)
    }

    /// Bytes both lines hold (given back to the directions when the connection closes).
    pub(super) fn buffered(&self) -> (usize, usize) {
        (self.up.buffered(), self.down.buffered())
    }
}

/// One chunk's jitter, uniform in `0..=max`.
fn jitter(rng: &mut SplitMix64, max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    Duration::from_nanos(rng.up_to(u64::try_from(max.as_nanos()).unwrap_or(u64::MAX)))
}

/// A destination that would block: its direction reads no more until it drains (the
/// back-pressure reaches the sender through TCP), unlike a target still connecting.
fn blocked(dst: &Side) -> bool {
    !dst.writable && !dst.connecting
}

fn due_wake(line: &Line, dst: &Side) -> Option<Instant> {
    if dst.connecting || !dst.writable {
        return None; // an OUT event will come
    }
    line.next_due()
}

/// `(Some(now), false)` if `src` can be read at once, `(None, true)` if only tokens are
/// missing, `(None, false)` if an event or a delivery has to come first.
fn read_wake(
    src: &Side,
    line: &Line,
    dst: &Side,
    dir: &Dir,
    now: Instant,
) -> (Option<Instant>, bool) {
    if !src.readable || line.eof || blocked(dst) || dir.room() == 0 || !line.has_room(dir.limit) {
        return (None, false);
    }
    if dir.bucket.may_read() {
        (Some(now), false)
    } else {
        (None, true)
    }
}

/// Writes `line`'s due bytes to `dst`; once the source ended and all is delivered, shuts
/// down `dst`'s write side (the half-close passes on).
fn deliver(
    line: &mut Line,
    dst: &mut Side,
    dir: &mut Dir,
    now: Instant,
    counter: &AtomicU64,
) -> io::Result<()> {
    if dst.connecting {
        return Ok(());
    }
    if dst.writable {
        let before = line.delivered();
        let blocked = line.deliver(&mut &dst.sock, now);
        let n = line.delivered() - before;
        dir.buffered -= n as usize;
        counter.fetch_add(n, Ordering::Relaxed);
        if blocked? {
            dst.writable = false;
        }
    }
    if line.eof && !line.shut && line.buffered() == 0 {
        dst.sock.shutdown(Shutdown::Write)?;
        line.shut = true;
    }
    Ok(())
}

/// Reads from `src` into `line` as far as the bucket, the direction's limit and the line
/// allow; what is read is due at `due`.
fn read(src: &mut Side, line: &mut Line, dir: &mut Dir, due: Instant) -> io::Result<()> {
    for _ in 0..READS_PER_PASS {
        if !src.readable || line.eof || !dir.bucket.may_read() {
            return Ok(());
        }
        let max = READ_CHUNK.min(dir.room()).min(dir.bucket.available());
        let got = match line.read_from(&mut &src.sock, max, dir.limit, due) {
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                src.readable = false;
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let Some(n) = got else {
            return Ok(()); // no tokens or no room
        };
        dir.bucket.take(n);
        dir.buffered += n;
    }
    Ok(())
}
