//! The completion-based IO contract between a shard and its ring driver.
//!
//! A shard describes socket work as [`Op`]s and receives [`Completion`]s, whatever drives them:
//! [`super::uring::UringBackend`] submits them to the shard's own io_uring, and
//! [`super::portable::PortableBackend`] emulates the same completions over epoll for hosts
//! where io_uring is blocked. The shard loop is written once against this trait.
//!
//! Ownership rule (as in tokio-uring): a buffer handed to the backend in an `Op::Send` belongs
//! to the backend until its `Sent` completion, or until the connection's `Closed` completion if
//! it was closed first; the message of an `Op::ReadFile` until its `FileRead` completion (if
//! the backend is dropped first, buffers of operations still in flight are leaked, never
//! freed under the kernel). Received bytes are lent (mutably) to the completion callback only; the
//! backend recycles the receive buffer when the callback returns.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::time::Duration;

use super::sendq::{BlockMsg, SendBuf};

/// A connection's handle inside one shard. Chosen by the shard; the backend maps it to a socket.
/// A token is reusable only after its `Closed` completion.
pub type Token = u32;

/// Work for the backend.
#[derive(Debug)]
pub enum Op {
    /// Open a TCP socket and connect it to `addr`.
    Connect { token: Token, addr: SocketAddr },
    /// Adopt an accepted socket under `token`.
    Adopt { token: Token, fd: OwnedFd },
    /// Start receiving on the connection; data keeps arriving as `Data` until `RecvEnded`.
    Recv { token: Token },
    /// Send all of `buf`, its segments in order (the backend resubmits partial sends itself).
    Send { token: Token, buf: SendBuf },
    /// Read the `File` parts of a block into `msg`'s block, each at its offset (the shard
    /// fills `Zeros` parts itself); answered by `FileRead` with the same `tag`.
    ReadFile {
        tag: u32,
        parts: Vec<uring_disk::ReadPart>,
        msg: BlockMsg,
    },
    /// Read `len` bytes at `offset` of `file` through its O_DIRECT descriptor into `buf`
    /// (aligned); answered by `PieceRead` with the same `tag`.
    ReadPiece {
        tag: u32,
        file: uring_disk::OpenFile,
        offset: u64,
        len: u32,
        buf: uring_disk::PooledBuf,
    },
    /// Cancel everything outstanding on the connection and close it.
    Close { token: Token },
}

/// What happened.
#[derive(Debug)]
pub enum Completion<'a> {
    /// A listener accepted a connection; the shard adopts it with `Op::Adopt`.
    Accepted { fd: OwnedFd, peer: SocketAddr },
    Connected {
        token: Token,
        result: io::Result<()>,
    },
    /// Bytes received, in stream order; lent mutably so that a transport can decrypt them
    /// where they lie.
    Data { token: Token, data: &'a mut [u8] },
    /// The peer closed the stream (`Ok`) or the socket failed.
    RecvEnded {
        token: Token,
        result: io::Result<()>,
    },
    /// A send finished: the buffer comes back for reuse.
    Sent {
        token: Token,
        buf: SendBuf,
        result: io::Result<()>,
    },
    /// A file read finished: every byte asked for was read (`Ok`), or it failed (an error,
    /// or end of file before the block's end).
    FileRead {
        tag: u32,
        msg: BlockMsg,
        result: io::Result<()>,
    },
    /// A piece read finished: the bytes read (fewer than asked at the end of the file).
    PieceRead {
        tag: u32,
        buf: uring_disk::PooledBuf,
        result: io::Result<usize>,
    },
    /// Every operation on the connection has completed and its socket is closed.
    Closed { token: Token },
    /// The shard's eventfd was signalled (another thread queued work for it).
    Wake,
    /// A datagram arrived on the shard's UDP socket (uTP); lent mutably, like `Data`.
    Datagram {
        from: SocketAddr,
        data: &'a mut [u8],
    },
}

/// A ring driver: io_uring, or the portable epoll fallback.
pub trait Backend {
    /// Starts accepting on a listening socket (bound with SO_REUSEPORT by the engine).
    fn listen(&mut self, listener: OwnedFd) -> io::Result<()>;
    /// Starts receiving datagrams on the shard's UDP socket (each one a `Datagram`
    /// completion); [`Backend::send_datagrams`] sends through it.
    fn listen_udp(&mut self, socket: std::net::UdpSocket) -> io::Result<()>;
    /// Sends the queued datagrams now (before waiting), through the UDP socket.
    fn send_datagrams(&mut self, out: &mut super::udp::Datagrams);
    /// Watches an eventfd: each signal yields a `Wake` completion.
    fn set_waker(&mut self, eventfd: OwnedFd) -> io::Result<()>;
    /// Queues an operation; it is submitted at the next [`Backend::wait`].
    fn push(&mut self, op: Op);
    /// Submits what was pushed, waits up to `timeout` for at least one completion and hands
    /// every available completion to `on`.
    fn wait(&mut self, timeout: Duration, on: &mut dyn FnMut(Completion<'_>)) -> io::Result<()>;
    /// A short name for logs ("io_uring" or "epoll").
    fn name(&self) -> &'static str;
    /// Whether sends take blocks from file mappings by address (`sendmsg`); otherwise they
    /// would go out with `sendfile`, which is only for peers that get zero-copy uploads.
    fn sends_from_mappings(&self) -> bool {
        false
    }
}
