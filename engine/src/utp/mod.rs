//! uTP, the uTorrent transport protocol (BEP 29), sans-IO.
//!
//! uTP carries a BitTorrent connection over UDP: an ordered, reliable byte stream with
//! 16-bit sequence numbers, cumulative and selective ACKs, and LEDBAT congestion control,
//! which backs off as soon as the one-way queuing delay it measures rises above a target
//! (100 ms), so bulk transfers leave room for interactive traffic.
//!
//! # How the shard drives a [`Stream`]
//! The module owns no socket, timer or clock: bytes and `Instant`s in, bytes and events out.
//! - Opening: [`Stream::connect`] for a dial (the shard picks `recv_id`), [`Stream::accept`]
//!   for an incoming SYN. Connection ids follow BEP 29: the SYN carries the initiator's
//!   `recv_id`, every later packet carries the id its *receiver* listens on; the initiator
//!   sends with `recv_id + 1`, the acceptor listens on `syn.connection_id + 1`.
//! - Each datagram: [`packet::Packet::parse`], look the stream up by
//!   `(address, header.connection_id)` (= [`Stream::recv_id`]), [`Stream::on_packet`]. In-order
//!   payload comes out through its `deliver` callback, lent straight from the datagram.
//!   Stray packets are answered with [`packet::reset_for`].
//! - Sending: [`Stream::write`] queues bytes (up to [`Stream::send_space`]); after any call,
//!   drain [`Stream::poll_transmit`] until it returns false.
//! - Time: call [`Stream::on_timeout`] once [`Stream::poll_timeout`] has passed, then drain
//!   `poll_transmit` again.
//! - Events: [`Stream::poll_event`] after each call. Once it yields [`Event::Closed`] (or
//!   [`Stream::is_closed`]), drain `poll_transmit` one last time and drop the stream.
//!
//! Timestamps on the wire are `now - epoch` in µs, truncated to u32; `epoch` is given once
//! per stream and should be shared by the shard.
//!
//! # Limits
//! Every buffer is bounded by [`Config`]: the send buffer (acked bytes leave it), the reorder
//! buffer (`max_reorder` packets and `recv_window` bytes), the in-flight packets
//! ([`MAX_IN_FLIGHT`]), SACK bitmasks ([`packet::MAX_SACK_LEN`]) and the extension chain
//! ([`packet::MAX_EXTENSIONS`]). Nothing a peer sends grows past them: beyond, it is dropped.
//!
//! # Invariants
//! - Sequence numbers wrap: every comparison goes through [`seq_lt`] (half the space ahead).
//! - Packets `acked + 1 ..= acked + in_flight.len()` are the unacknowledged ones we sent;
//!   `bytes_in_flight` is the payload of those among them not SACKed and not awaiting a resend.
//! - `reorder[i]` holds packet `ack_nr + 1 + i` if it arrived; `reorder[0]` is always empty.

mod ledbat;
pub mod packet;
mod recv;
mod send;
mod stream;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_sim;

use std::time::Duration;

pub use stream::Stream;

/// Most packets in flight at once (a SACK covers 1024 packets past `ack_nr + 1`).
pub const MAX_IN_FLIGHT: usize = 1024;

/// A stream's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Payload bytes per DATA packet (the datagram is 20 bytes, plus a SACK, more).
    pub max_payload: usize,
    /// Bytes `write` accepted that are not acked yet, at most.
    pub send_buffer: usize,
    /// The receive window we advertise; out-of-order bytes buffered, at most.
    pub recv_window: usize,
    /// Out-of-order packets buffered, at most.
    pub max_reorder: u16,
    /// The LEDBAT target one-way queuing delay.
    pub target_delay_us: u32,
    /// Give up on a SYN after this (the SYN is resent after 1 s, 2 s, 4 s ...).
    pub connect_timeout: Duration,
    /// Nothing from the peer for this long while we wait for acks: `Closed(TimedOut)`. 10 s:
    /// a libtorrent peer gives up on a stream after three resends of one packet and then
    /// stays silent, so waiting longer only delays the redial.
    pub max_idle: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_payload: 1400,
            send_buffer: 1 << 20,
            recv_window: 1 << 20,
            max_reorder: 1024,
            target_delay_us: 100_000,
            connect_timeout: Duration::from_secs(6),
            max_idle: Duration::from_secs(10),
        }
    }
}

/// What happened to a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Outgoing: the SYN was answered. (Incoming streams are connected from `accept`.)
    Connected,
    /// The peer sent FIN and every byte before it has been delivered: the read side is done.
    RemoteClosed,
    /// The stream is over; no more packets will be produced except what `poll_transmit`
    /// still returns (a final RESET). The shard drops it after draining `poll_transmit`.
    Closed(CloseReason),
}

/// Why a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Both sides sent FIN and had it acknowledged (or the peer went away after both FINs).
    Finished,
    /// A RESET, ours ([`Stream::reset`]) or the peer's.
    Reset,
    /// The SYN was never answered within `connect_timeout`.
    ConnectTimedOut,
    /// Nothing from the peer for `max_idle` while we waited for acks.
    TimedOut,
    /// The peer broke the protocol (what it did).
    Protocol(&'static str),
}

/// Counters for stats and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Datagrams produced by `poll_transmit`.
    pub packets_sent: u64,
    /// Datagrams handed to `on_packet` (valid or not).
    pub packets_received: u64,
    /// DATA/FIN/SYN packets sent again (timeout or fast retransmit).
    pub retransmits: u64,
    /// Payload bytes sent, retransmissions included.
    pub bytes_sent: u64,
    /// Payload bytes delivered in order.
    pub bytes_received: u64,
    /// The smoothed round-trip time, µs (0 before the first sample).
    pub rtt_us: u32,
    /// The congestion window, bytes.
    pub cwnd: usize,
}

/// `a` comes before `b` in wrapping 16-bit sequence space (within half the space).
pub fn seq_lt(a: u16, b: u16) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000
}

/// Microseconds since `epoch`, truncated to the 32 bits of a uTP timestamp.
fn micros_since(now: std::time::Instant, epoch: std::time::Instant) -> u32 {
    // Truncation is the wire format: timestamps wrap every ~71 minutes.
    now.saturating_duration_since(epoch).as_micros() as u32
}
