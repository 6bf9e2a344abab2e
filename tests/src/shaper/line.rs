//! The parts of the shaper that keep time but do no IO of their own: the token bucket that
//! caps one direction's rate ([`Bucket`]) and the delay line that holds one
//! connection-direction's bytes until they are due ([`Line`]). Time is a parameter
//! (`now: Instant`); the sockets come in as `Read`/`Write`, so unit tests drive both with
//! plain buffers.
//!
//! A line is a ring buffer plus a queue of marks `(due, end)`: the bytes of the stream up to
//! offset `end` may leave at `due`. Offsets count the whole stream (u64), so a mark never
//! needs fixing when the ring wraps or grows. The ring starts small and doubles up to the
//! direction's limit, so a quiet direction (a leecher's requests) costs 64 KiB, not the
//! megabytes a fast one needs to fill its delay.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::time::{Duration, Instant};

/// Largest single read from a source socket. On the 2-vCPU VM a loopback read or write
/// costs tens of microseconds whatever its size (the kernel's TCP work for both ends and the
/// wake-up of the peer are charged to the caller), so the shaper's cost is its number of
/// operations: few, large reads and writes.
pub(super) const READ_CHUNK: usize = 128 * 1024;
/// First size of a line's ring; it doubles as needed up to the direction's limit.
const RING_START: usize = 64 * 1024;
/// Chunks (marks) one line holds; the line reads no more while it is full.
const MAX_MARKS: usize = 8192;
/// A starved reader waits until the bucket holds a quantum: this much time of its rate,
/// within [`MIN_QUANTUM`]..=[`READ_CHUNK`]. So a capped path reads (and delivers) about every
/// 20 ms up to 6.5 MB/s, in 128 KiB chunks above: the receiver sees the rate to within a
/// quantum, and the shaper wakes ~50 times a second, not once per packet. (At 5 MB/s a
/// 10 ms quantum cost 2.3% of a core, 20 ms 1.4%, 40 ms 1.1%.)
const QUANTUM_TIME: Duration = Duration::from_millis(20);
const MIN_QUANTUM: f64 = 16.0 * 1024.0;
/// An idle bucket holds a quantum or this much time of its rate, whichever is more: what an
/// idle path may send at once.
const BURST_TIME: Duration = Duration::from_millis(10);
/// A busy bucket (data waited for tokens at the last pass) holds up to this much time of its
/// rate: the link stayed busy while the thread was kept off the CPU, so what it would have
/// carried meanwhile is owed, not lost (on a loaded 2-core machine a wake can come 10-30 ms
/// late).
const CATCH_UP_TIME: Duration = Duration::from_millis(100);

/// A token bucket in bytes: `rate_bytes_per_s` tokens a second, at most a burst's worth held.
/// Rate 0 means unlimited.
pub(super) struct Bucket {
    rate_bytes_per_s: f64,
    burst: f64,
    catch_up: f64,
    quantum: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket.
    pub(super) fn new(rate_bytes_per_s: u64, now: Instant) -> Bucket {
        let rate = rate_bytes_per_s as f64;
        let quantum = (rate * QUANTUM_TIME.as_secs_f64()).clamp(MIN_QUANTUM, READ_CHUNK as f64);
        let burst = (rate * BURST_TIME.as_secs_f64()).max(quantum);
        Bucket {
            rate_bytes_per_s: rate,
            burst,
            catch_up: (rate * CATCH_UP_TIME.as_secs_f64()).max(burst),
            quantum,
            tokens: burst,
            last: now,
        }
    }

    fn unlimited(&self) -> bool {
        self.rate_bytes_per_s <= 0.0
    }

    /// Adds the tokens earned since the last refill: up to a burst, or up to the catch-up
    /// if the link was `busy` all along (data waited for tokens).
    pub(super) fn refill(&mut self, now: Instant, busy: bool) {
        if self.unlimited() || now <= self.last {
            return;
        }
        let earned = (now - self.last).as_secs_f64() * self.rate_bytes_per_s;
        let cap = if busy { self.catch_up } else { self.burst };
        self.tokens = (self.tokens + earned).min(cap.max(self.tokens));
        self.last = now;
    }

    /// Whole bytes that may be read now (as of the last refill).
    pub(super) fn available(&self) -> usize {
        if self.unlimited() {
            usize::MAX
        } else {
            // Float to int casts floor and saturate (a tiny negative rounding becomes 0).
            self.tokens as usize
        }
    }

    /// Spends `n` tokens (`n <= available()`).
    pub(super) fn take(&mut self, n: usize) {
        if !self.unlimited() {
            self.tokens -= n as f64;
        }
    }

    /// Whether a reader may read now: half a quantum or more is there (so a wake that came
    /// for another reason, a delivery, reads too, but not in slivers).
    pub(super) fn may_read(&self) -> bool {
        self.unlimited() || self.tokens >= self.quantum / 2.0
    }

    /// When a starved reader may be served: from when half a quantum is there, best when a
    /// whole one is, at the latest when one and a half are (a starved bucket is busy and
    /// loses nothing by then, but the receiver would see a lump).
    pub(super) fn read_window(&self) -> ReadWindow {
        ReadWindow {
            earliest: self.time_to(self.quantum / 2.0),
            best: self.time_to(self.quantum),
            latest: self.time_to(self.quantum * 1.5),
        }
    }

    /// When the bucket holds `tokens`.
    fn time_to(&self, tokens: f64) -> Instant {
        if self.unlimited() {
            return self.last;
        }
        let missing = (tokens - self.tokens).max(0.0);
        self.last + Duration::from_secs_f64(missing / self.rate_bytes_per_s)
    }
}

/// When a token-starved direction can next read (see [`Bucket::read_window`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ReadWindow {
    pub(super) earliest: Instant,
    pub(super) best: Instant,
    pub(super) latest: Instant,
}

impl ReadWindow {
    /// The wake to plan, given `planned`, the earliest wake already planned for other work:
    /// that one if the read can ride on it, else the best time for the read. Riding along
    /// halves the wakes of a busy path: reads settle on the delivery wakes.
    pub(super) fn merge(&self, planned: Option<Instant>) -> Instant {
        match planned {
            Some(p) if (self.earliest..=self.latest).contains(&p) => p,
            Some(p) => p.min(self.best),
            None => self.best,
        }
    }
}

/// The bytes up to stream offset `end` may leave at `due`.
#[derive(Debug, Clone, Copy)]
struct Mark {
    due: Instant,
    end: u64,
}

/// One direction of one relayed connection: bytes read from the source, waiting to be due.
#[derive(Default)]
pub(super) struct Line {
    ring: Vec<u8>,
    /// Stream offset of the next byte read from the source (bytes read so far).
    received: u64,
    /// Stream offset of the next byte written to the destination (bytes delivered so far).
    delivered: u64,
    /// Marks in stream order; their dues never decrease.
    marks: VecDeque<Mark>,
    /// The source shut down its write side (a read returned 0).
    pub(super) eof: bool,
    /// Everything was delivered after `eof` and the destination's write side shut down.
    pub(super) shut: bool,
}

impl Line {
    /// Bytes read but not yet delivered.
    pub(super) fn buffered(&self) -> usize {
        // INVARIANT: at most the ring's length (a usize) is ever outstanding.
        usize::try_from(self.received - self.delivered).expect("buffered fits the ring")
    }

    pub(super) fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Whether a read could add bytes, with the ring allowed to grow up to `cap`.
    pub(super) fn has_room(&self, cap: usize) -> bool {
        self.buffered() < cap && self.marks.len() < MAX_MARKS
    }

    /// When the first chunk not yet delivered is due.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.marks.front().map(|m| m.due)
    }

    /// Reads at most `max` bytes from `src` into the ring (grown up to `cap` if need be), due
    /// at `due` or with the chunk before, whichever is later. Returns what `read` returned
    /// (0 = end of stream, and `eof` is set), or `Ok(None)` with no room.
    pub(super) fn read_from(
        &mut self,
        src: &mut impl Read,
        max: usize,
        cap: usize,
        due: Instant,
    ) -> io::Result<Option<usize>> {
        if max == 0 || !self.has_room(cap) {
            return Ok(None);
        }
        self.grow_for(max, cap);
        let len = self.ring.len();
        let free = len - self.buffered();
        let start = self.pos(self.received);
        let offered = max.min(free).min(len - start);
        if offered == 0 {
            return Ok(None);
        }
        let n = src.read(&mut self.ring[start..start + offered])?;
        if n == 0 {
            self.eof = true;
        } else {
            self.commit(n, due);
        }
        Ok(Some(n))
    }

    /// Takes `n` bytes just read into the ring as one chunk due at `due` (no earlier than the
    /// chunk before: jitter never reorders the stream, and a chunk due with the one before
    /// joins its mark).
    fn commit(&mut self, n: usize, due: Instant) {
        self.received += n as u64;
        match self.marks.back_mut() {
            Some(last) if due <= last.due => last.end = self.received,
            _ => self.marks.push_back(Mark {
                due,
                end: self.received,
            }),
        }
    }

    /// Writes the bytes due by `now` to `dst`, oldest first. Returns whether `dst` would block
    /// (it is full: wait until it is writable again).
    pub(super) fn deliver(&mut self, dst: &mut impl Write, now: Instant) -> io::Result<bool> {
        loop {
            let Some(due_end) = self
                .marks
                .iter()
                .take_while(|m| m.due <= now)
                .last()
                .map(|m| m.end)
            else {
                return Ok(false);
            };
            let start = self.pos(self.delivered);
            let len = self.ring.len();
            // INVARIANT: due_end - delivered <= buffered <= the ring's length.
            let want = usize::try_from(due_end - self.delivered).expect("due bytes fit the ring");
            let offered = want.min(len - start);
            let n = match dst.write(&self.ring[start..start + offered]) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Err(ErrorKind::WriteZero.into());
            }
            self.delivered += n as u64;
            while self.marks.front().is_some_and(|m| m.end <= self.delivered) {
                self.marks.pop_front();
            }
        }
    }

    /// Ring index of stream offset `offset`.
    fn pos(&self, offset: u64) -> usize {
        match self.ring.len() {
            0 => 0,
            // INVARIANT: the remainder is below the ring's length, a usize.
            len => usize::try_from(offset % len as u64).expect("a ring index"),
        }
    }

    /// Grows the ring (doubling, at most to `cap`) when `want` more bytes would not fit.
    /// Rare (a handful of times per line), so it may allocate and copy.
    fn grow_for(&mut self, want: usize, cap: usize) {
        let old_len = self.ring.len();
        let need = self.buffered().saturating_add(want);
        if need <= old_len || old_len >= cap {
            return;
        }
        let new_len = need
            .next_power_of_two()
            .max(old_len * 2)
            .max(RING_START)
            .min(cap);
        let mut ring = vec![0u8; new_len];
        let mut off = self.delivered;
        while off < self.received {
            let (from, to) = (self.pos(off), (off % new_len as u64) as usize);
            let left = (self.received - off) as usize;
            let n = left.min(old_len - from).min(new_len - to);
            ring[to..to + n].copy_from_slice(&self.ring[from..from + n]);
            off += n as u64;
        }
        self.ring = ring;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A destination that takes at most `room` bytes, then would block.
    struct Sink {
        got: Vec<u8>,
        room: usize,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.room);
            self.got.extend_from_slice(&buf[..n]);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn pattern(from: usize, n: usize) -> Vec<u8> {
        (from..from + n).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn bytes_leave_when_due_and_not_before() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut line = Line::default();
        let mut src = &pattern(0, 100)[..];
        assert_eq!(
            line.read_from(&mut src, 60, 1 << 20, t0 + ms(50)).unwrap(),
            Some(60)
        );
        line.read_from(&mut src, 60, 1 << 20, t0 + ms(60)).unwrap();
        let mut sink = Sink {
            got: Vec::new(),
            room: usize::MAX,
        };
        assert!(!line.deliver(&mut sink, t0 + ms(49)).unwrap());
        assert!(sink.got.is_empty());
        line.deliver(&mut sink, t0 + ms(55)).unwrap();
        assert_eq!(sink.got, pattern(0, 60));
        assert_eq!(line.next_due(), Some(t0 + ms(60)));
        line.deliver(&mut sink, t0 + ms(60)).unwrap();
        assert_eq!(sink.got, pattern(0, 100));
        assert_eq!((line.buffered(), line.next_due()), (0, None));
        assert_eq!(line.read_from(&mut src, 60, 1 << 20, t0).unwrap(), Some(0));
        assert!(line.eof);
    }

    #[test]
    fn an_earlier_due_waits_for_the_chunk_before() {
        let t0 = Instant::now();
        let mut line = Line::default();
        let data = pattern(0, 30);
        let mut src = &data[..];
        for due_ms in [40, 10, 25] {
            line.read_from(&mut src, 10, 1 << 20, t0 + Duration::from_millis(due_ms))
                .unwrap();
        }
        assert_eq!(line.marks.len(), 1, "later chunks with earlier dues join");
        let mut sink = Sink {
            got: Vec::new(),
            room: usize::MAX,
        };
        line.deliver(&mut sink, t0 + Duration::from_millis(39))
            .unwrap();
        assert!(sink.got.is_empty(), "nothing overtakes the first chunk");
        line.deliver(&mut sink, t0 + Duration::from_millis(40))
            .unwrap();
        assert_eq!(sink.got, data);
    }

    /// Many chunks through a ring that wraps and grows while a slow destination takes a few
    /// bytes at a time: the stream comes out whole and in order, and the ring never passes
    /// its cap.
    #[test]
    fn the_stream_survives_wrapping_and_growth() {
        let t0 = Instant::now();
        let cap = 300_000;
        let total = 3_000_000;
        let data = pattern(0, total);
        let mut src = &data[..];
        let mut line = Line::default();
        let mut sink = Sink {
            got: Vec::new(),
            room: 0,
        };
        let mut step = 0usize;
        while sink.got.len() < total {
            step += 1;
            let max = 1 + (step * 7919) % READ_CHUNK;
            line.read_from(&mut src, max, cap, t0).unwrap();
            assert!(line.ring.len() <= cap && line.buffered() <= cap);
            sink.room = (step * 104_729) % 40_000; // slower than the reads: the ring fills
            line.deliver(&mut sink, t0).unwrap();
        }
        assert!(sink.got == data, "the stream changed on its way");
        assert_eq!(line.ring.len(), cap);
    }

    #[test]
    fn a_full_line_reads_nothing() {
        let t0 = Instant::now();
        let mut line = Line::default();
        let data = pattern(0, 200_000);
        let mut src = &data[..];
        while line
            .read_from(&mut src, READ_CHUNK, 100_000, t0)
            .unwrap()
            .is_some()
        {}
        assert_eq!(line.buffered(), 100_000);
        assert!(!line.has_room(100_000));
    }

    #[test]
    fn the_bucket_pays_out_its_rate() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut b = Bucket::new(1_000_000, t0);
        assert_eq!(
            b.available(),
            20_000,
            "starts with a burst of one quantum (20 ms)"
        );
        b.take(b.available());
        assert_eq!(b.available(), 0);
        assert!(!b.may_read());
        let w = b.read_window();
        assert_eq!(w.earliest - t0, ms(10));
        assert_eq!(w.best - t0, ms(20));
        assert_eq!(w.latest - t0, ms(30));
        b.refill(t0 + ms(3), false);
        assert_eq!(b.available(), 3000);
        b.refill(t0 + ms(11), false);
        assert!(b.may_read());
        b.refill(t0 + Duration::from_secs(5), false);
        assert_eq!(
            b.available(),
            20_000,
            "an idle bucket is capped at the burst"
        );
        b.refill(t0 + Duration::from_secs(6), true);
        assert_eq!(b.available(), 100_000, "a busy link catches up 100 ms");
        b.refill(t0 + Duration::from_secs(7), false);
        assert_eq!(b.available(), 100_000, "an idle refill keeps what is there");
        let fast = Bucket::new(100_000_000, t0);
        assert_eq!(fast.available(), 1_000_000, "10 ms of a fast rate");
        assert_eq!(fast.quantum, READ_CHUNK as f64);
        let slow = Bucket::new(100_000, t0);
        assert_eq!(slow.available(), 16 * 1024, "at least a 16 KiB quantum");
        let free = Bucket::new(0, t0);
        assert_eq!(free.available(), usize::MAX);
        assert!(free.may_read());
    }

    #[test]
    fn a_starved_read_rides_on_a_planned_wake() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let w = ReadWindow {
            earliest: at(5),
            best: at(10),
            latest: at(20),
        };
        assert_eq!(w.merge(None), at(10));
        assert_eq!(w.merge(Some(at(7))), at(7), "rides along");
        assert_eq!(w.merge(Some(at(19))), at(19), "rides along");
        assert_eq!(
            w.merge(Some(at(2))),
            at(2),
            "too early: wake then, look again"
        );
        assert_eq!(
            w.merge(Some(at(25))),
            at(10),
            "too late: tokens would be lost"
        );
    }
}
