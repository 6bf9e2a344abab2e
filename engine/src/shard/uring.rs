//! The shard's io_uring driver: multishot accept, connect, multishot recv into a provided
//! buffer ring, and sends, all on one ring owned by the shard thread
//! (`IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN`, so completions are reaped only
//! when the shard asks: no interrupts of its work, no epoll underneath).
//!
//! Buffer ownership: the provided-buffer ring (`BufRing`) owns one pre-touched slab; the kernel
//! picks a buffer per completion, the shard reads it inside the callback, and the buffer goes
//! back to the ring right after. Send buffers (and the iovec array and `msghdr` of a vectored
//! send) live in the connection slot until their completion. A connection slot (and its
//! socket) is freed only when no operation on it is in flight. Upload reads (`Op::ReadFile`,
//! buffered `IORING_OP_READ` straight into the PIECE message after its header) live in the
//! `reads` slab, with their files held open, until their last completion.
//!
//! At about 590 lines this file is over the house limit on purpose: it is the one place where
//! SQE pointers and their owners meet, and keeping every op's submission next to its completion
//! keeps the ownership rules checkable in one read (upload reads, whose slab slots own their
//! buffers the same way, are in `uring/reads.rs`).
#![allow(unsafe_code)]

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use socket2::{Domain, SockAddr, Socket, Type};

use super::backend::{Backend, Completion, Op, Token};
use bufring::BufRing;
use reads::{FileRead, PieceRead, Slab};
use send::Sending;

mod bufring;
mod reads;
mod send;
mod udp;

const KIND_ACCEPT: u64 = 1;
const KIND_CONNECT: u64 = 2;
const KIND_RECV: u64 = 3;
const KIND_SEND: u64 = 4;
const KIND_CANCEL: u64 = 5;
const KIND_WAKE: u64 = 6;
const KIND_FILE: u64 = 7;
const KIND_PIECE: u64 = 8;
const KIND_WRITABLE: u64 = 9;
const KIND_UDP: u64 = 10;

/// Buffer group id of the shard's receive buffer ring.
const BGID: u16 = 7;

/// An empty `msghdr` for a connection's vectored sends.
fn empty_msghdr() -> Box<libc::msghdr> {
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    Box::new(unsafe { std::mem::zeroed() })
}

fn user_data(kind: u64, id: u32) -> u64 {
    (kind << 32) | id as u64
}

/// The io_uring setup a shard uses, tried with the fastest flags first.
pub fn new_ring(entries: u32) -> io::Result<IoUring> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(entries)
        .or_else(|_| IoUring::builder().setup_coop_taskrun().build(entries))
        .or_else(|_| IoUring::new(entries))
}

/// Whether this process may use io_uring at all (ENOSYS, seccomp EPERM, `io_uring_disabled`),
/// or the user forced the fallback with `RINGTORRENT_NO_URING=1`.
pub fn probe() -> Result<(), String> {
    if std::env::var_os("RINGTORRENT_NO_URING").is_some_and(|v| v != "0") {
        return Err("RINGTORRENT_NO_URING is set".into());
    }
    match IoUring::new(4) {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("io_uring_setup failed: {e}")),
    }
}

struct Conn {
    fd: OwnedFd,
    inflight: u32,
    closing: bool,
    /// What is being sent; owned here until the completion.
    send: Option<Sending>,
    /// Set non-blocking (for `sendfile`, see `uring/send.rs`).
    nonblocking: bool,
    /// Kept alive until the connect completion.
    addr: Option<Box<SockAddr>>,
}

/// See the module doc.
pub struct UringBackend {
    // Field order matters: the ring is dropped (closing it) before the buffer ring memory.
    ring: IoUring,
    bufs: BufRing,
    conns: Vec<Option<Conn>>,
    listeners: Vec<OwnedFd>,
    pending: Vec<Op>,
    rearm_accept: Vec<u32>,
    rearm_recv: Vec<Token>,
    closed: Vec<Token>,
    cqes: Vec<(u64, i32, u32)>,
    /// Upload reads in flight, by slab index (the id in their user data).
    reads: Slab<FileRead>,
    /// Piece reads in flight, likewise.
    pieces: Slab<PieceRead>,
    /// A send completed inside `submit_op` (a `sendfile` flush) since the last wait.
    sent_inline: bool,
    /// The shard's eventfd and the 8 bytes its pending read fills.
    waker: Option<(OwnedFd, Box<[u8; 8]>)>,
    /// Source address for outgoing connections (on loopback the kernel would otherwise pick
    /// the destination's own address, which peers take for themselves).
    bind_ip: Option<IpAddr>,
    /// The shard's UDP socket (uTP) and its receive buffers.
    udp: Option<udp::UdpRecv>,
    rearm_udp: bool,
}

/// A non-blocking eventfd for waking a shard from other threads.
pub fn new_eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd has no pointer arguments; a non-negative result is a new descriptor.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl UringBackend {
    /// A ring with `recv_buffers` provided buffers of `recv_buffer_len` bytes.
    pub fn new(
        recv_buffers: u16,
        recv_buffer_len: usize,
        bind_ip: Option<IpAddr>,
    ) -> io::Result<UringBackend> {
        let ring = new_ring(1024)?;
        let bufs = BufRing::new(&ring, BGID, recv_buffers, recv_buffer_len)?;
        Ok(UringBackend {
            ring,
            bufs,
            conns: Vec::new(),
            listeners: Vec::new(),
            pending: Vec::new(),
            rearm_accept: Vec::new(),
            rearm_recv: Vec::new(),
            closed: Vec::new(),
            cqes: Vec::with_capacity(1024),
            reads: Slab::default(),
            pieces: Slab::default(),
            sent_inline: false,
            waker: None,
            bind_ip,
            udp: None,
            rearm_udp: false,
        })
    }

    fn conn(&mut self, token: Token) -> Option<&mut Conn> {
        self.conns.get_mut(token as usize).and_then(|c| c.as_mut())
    }

    fn push_sqe(&mut self, sqe: squeue::Entry) -> io::Result<()> {
        // Connection slots are freed only when their in-flight count is back to zero, read
        // slots at their last completion, and Drop leaks whatever is still in flight.
        // SAFETY: so every pointer in our SQEs (send buffers with their iovecs and msghdr, the
        // file mappings they send from, socket addresses, the buffer ring, read messages)
        // outlives its operation.
        while unsafe { self.ring.submission().push(&sqe) }.is_err() {
            self.ring.submit()?;
        }
        Ok(())
    }

    fn submit_op(&mut self, op: Op, on: &mut dyn FnMut(Completion<'_>)) -> io::Result<()> {
        match op {
            Op::Connect { token, addr } => {
                let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
                if let Some(ip) = self.bind_ip.filter(|ip| ip.is_ipv4() == addr.is_ipv4()) {
                    sock.bind(&SocketAddr::new(ip, 0).into())?;
                }
                let _ = sock.set_tcp_nodelay(true);
                let fd: OwnedFd = sock.into();
                let addr = Box::new(SockAddr::from(addr));
                let sqe = opcode::Connect::new(
                    types::Fd(fd.as_raw_fd()),
                    addr.as_ptr().cast::<libc::sockaddr>(),
                    addr.len(),
                )
                .build()
                .user_data(user_data(KIND_CONNECT, token));
                self.insert(token, fd, Some(addr));
                self.push_sqe(sqe)?;
            }
            Op::Adopt { token, fd } => {
                let _ = socket2::SockRef::from(&fd).set_tcp_nodelay(true);
                self.insert(token, fd, None);
            }
            Op::Recv { token } => self.arm_recv(token)?,
            Op::Send { token, buf } => self.start_send(token, buf, on)?,
            Op::ReadPiece {
                tag,
                file,
                offset,
                len,
                buf,
            } => self.start_piece_read(
                PieceRead {
                    tag,
                    file,
                    offset,
                    len,
                    buf,
                },
                on,
            )?,
            Op::ReadFile { tag, parts, msg } => self.start_file_read(
                FileRead {
                    tag,
                    parts,
                    msg,
                    part: 0,
                    done: 0,
                },
                on,
            )?,
            Op::Close { token } => {
                let Some(c) = self.conn(token) else {
                    return Ok(());
                };
                if c.closing {
                    return Ok(());
                }
                c.closing = true;
                if c.inflight == 0 {
                    self.finish_close(token);
                } else {
                    let raw = c.fd.as_raw_fd();
                    c.inflight += 1;
                    let sqe =
                        opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(raw)).all())
                            .build()
                            .user_data(user_data(KIND_CANCEL, token));
                    self.push_sqe(sqe)?;
                }
            }
        }
        Ok(())
    }

    fn insert(&mut self, token: Token, fd: OwnedFd, addr: Option<Box<SockAddr>>) {
        let i = token as usize;
        if self.conns.len() <= i {
            self.conns.resize_with(i + 1, || None);
        }
        let inflight = addr.is_some() as u32;
        self.conns[i] = Some(Conn {
            fd,
            inflight,
            closing: false,
            send: None,
            nonblocking: false,
            addr,
        });
    }

    fn arm_recv(&mut self, token: Token) -> io::Result<()> {
        let Some(c) = self.conn(token) else {
            return Ok(());
        };
        if c.closing {
            return Ok(());
        }
        c.inflight += 1;
        let sqe = opcode::RecvMulti::new(types::Fd(c.fd.as_raw_fd()), BGID)
            .build()
            .user_data(user_data(KIND_RECV, token));
        self.push_sqe(sqe)
    }

    fn arm_accept(&mut self, idx: u32) -> io::Result<()> {
        let Some(l) = self.listeners.get(idx as usize) else {
            return Ok(());
        };
        let sqe = opcode::AcceptMulti::new(types::Fd(l.as_raw_fd()))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data(KIND_ACCEPT, idx));
        self.push_sqe(sqe)
    }

    fn arm_wake(&mut self) -> io::Result<()> {
        let Some((fd, buf)) = self.waker.as_mut() else {
            return Ok(());
        };
        let sqe = opcode::Read::new(types::Fd(fd.as_raw_fd()), buf.as_mut_ptr(), 8)
            .build()
            .user_data(user_data(KIND_WAKE, 0));
        self.push_sqe(sqe)
    }

    fn finish_close(&mut self, token: Token) {
        if let Some(slot) = self.conns.get_mut(token as usize) {
            // Dropping the slot closes the socket and frees its buffers: nothing is in flight.
            *slot = None;
            self.closed.push(token);
        }
    }

    /// One op on `token` finished; true if the connection is closing (suppress its events).
    fn op_done(&mut self, token: Token) -> bool {
        let Some(c) = self.conn(token) else {
            return true;
        };
        c.inflight = c.inflight.saturating_sub(1);
        if c.closing {
            if c.inflight == 0 {
                self.finish_close(token);
            }
            return true;
        }
        false
    }

    fn handle(
        &mut self,
        ud: u64,
        res: i32,
        flags: u32,
        on: &mut dyn FnMut(Completion<'_>),
    ) -> io::Result<()> {
        let id = ud as u32;
        match ud >> 32 {
            KIND_ACCEPT => {
                if res >= 0 {
                    // SAFETY: a non-negative accept result is a new descriptor we now own.
                    let fd = unsafe { OwnedFd::from_raw_fd(res) };
                    if let Some(peer) = socket2::SockRef::from(&fd)
                        .peer_addr()
                        .ok()
                        .and_then(|a| a.as_socket())
                    {
                        on(Completion::Accepted { fd, peer });
                    }
                }
                if !cqueue::more(flags) {
                    self.rearm_accept.push(id);
                }
            }
            KIND_CONNECT => {
                if let Some(c) = self.conn(id) {
                    c.addr = None;
                }
                if !self.op_done(id) {
                    let result = if res < 0 {
                        Err(io::Error::from_raw_os_error(-res))
                    } else {
                        Ok(())
                    };
                    on(Completion::Connected { token: id, result });
                }
            }
            KIND_RECV => self.handle_recv(id, res, flags, on),
            KIND_SEND => self.handle_sent(id, res, on)?,
            KIND_WRITABLE => self.handle_writable(id, res, on)?,
            KIND_CANCEL => {
                self.op_done(id);
            }
            KIND_WAKE => {
                on(Completion::Wake);
                self.arm_wake()?;
            }
            KIND_FILE => self.handle_file_read(id, res, on)?,
            KIND_UDP => {
                if let Some(u) = self.udp.as_mut() {
                    self.rearm_udp |= u.handle(res, flags, on);
                }
            }
            KIND_PIECE => {
                if res == -libc::EINTR || res == -libc::EAGAIN {
                    self.piece_submit(id, on)?;
                } else if res < 0 {
                    self.piece_finish(id, Err(io::Error::from_raw_os_error(-res)), on)?;
                } else {
                    self.piece_finish(id, Ok(res as usize), on)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn handle_recv(&mut self, id: Token, res: i32, flags: u32, on: &mut dyn FnMut(Completion<'_>)) {
        let more = cqueue::more(flags);
        let closing = self.conn(id).is_none_or(|c| c.closing);
        if let Some(bid) = cqueue::buffer_select(flags) {
            if res > 0 && !closing {
                on(Completion::Data {
                    token: id,
                    data: self.bufs.get_mut(bid, res as usize),
                });
            }
            self.bufs.push(bid);
        }
        if more {
            return;
        }
        if self.op_done(id) {
            return;
        }
        if res == -libc::ENOBUFS || res > 0 {
            // Out of provided buffers (the shard is behind) or the kernel ended the multishot:
            // re-arm after this batch has returned its buffers.
            self.rearm_recv.push(id);
        } else if res == 0 {
            on(Completion::RecvEnded {
                token: id,
                result: Ok(()),
            });
        } else {
            on(Completion::RecvEnded {
                token: id,
                result: Err(io::Error::from_raw_os_error(-res)),
            });
        }
    }
}

impl Backend for UringBackend {
    fn listen(&mut self, listener: OwnedFd) -> io::Result<()> {
        self.listeners.push(listener);
        self.arm_accept(self.listeners.len() as u32 - 1)
    }

    fn set_waker(&mut self, eventfd: OwnedFd) -> io::Result<()> {
        self.waker = Some((eventfd, Box::new([0u8; 8])));
        self.arm_wake()
    }

    fn listen_udp(&mut self, socket: std::net::UdpSocket) -> io::Result<()> {
        let u = udp::UdpRecv::new(&self.ring, socket)?;
        let sqe = u.sqe(user_data(KIND_UDP, 0));
        self.udp = Some(u);
        self.push_sqe(sqe)
    }

    fn send_datagrams(&mut self, out: &mut super::udp::Datagrams) {
        match &self.udp {
            Some(u) => out.send_all(&u.socket),
            None => out.drop_all(),
        }
    }

    fn push(&mut self, op: Op) {
        self.pending.push(op);
    }

    fn wait(&mut self, timeout: Duration, on: &mut dyn FnMut(Completion<'_>)) -> io::Result<()> {
        for token in std::mem::take(&mut self.closed) {
            on(Completion::Closed { token });
        }
        for idx in std::mem::take(&mut self.rearm_accept) {
            self.arm_accept(idx)?;
        }
        for token in std::mem::take(&mut self.rearm_recv) {
            self.arm_recv(token)?;
        }
        if std::mem::take(&mut self.rearm_udp) {
            if let Some(sqe) = self.udp.as_ref().map(|u| u.sqe(user_data(KIND_UDP, 0))) {
                self.push_sqe(sqe)?;
            }
        }
        for op in std::mem::take(&mut self.pending) {
            self.submit_op(op, on)?;
        }
        // A send that finished inline may let the shard send more at once: do not sleep.
        let want = if std::mem::take(&mut self.sent_inline) {
            0
        } else {
            1
        };
        let ts = types::Timespec::from(timeout);
        let args = types::SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(want, &args) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) => {}
            Err(e) => return Err(e),
        }
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.extend(
            self.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        for &(ud, res, flags) in &cqes {
            self.handle(ud, res, flags, on)?;
        }
        cqes.clear();
        self.cqes = cqes;
        self.bufs.publish();
        if let Some(u) = &self.udp {
            u.publish();
        }
        for token in std::mem::take(&mut self.closed) {
            on(Completion::Closed { token });
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        "io_uring"
    }

    fn sends_from_mappings(&self) -> bool {
        true
    }
}

impl Drop for UringBackend {
    fn drop(&mut self) {
        let _ = self.ring.submitter().unregister_buf_ring(BGID);
        if self.udp.is_some() {
            let _ = self.ring.submitter().unregister_buf_ring(udp::UDP_BGID);
        }
        // The kernel may still be working on reads and sends in flight after the ring closes:
        // their buffers (and the files of reads) are leaked rather than freed under it.
        for r in self.reads.drain() {
            std::mem::forget(r);
        }
        for p in self.pieces.drain() {
            std::mem::forget(p);
        }
        for c in self.conns.iter_mut().flatten() {
            if let Some(s) = c.send.take() {
                std::mem::forget(s);
            }
        }
    }
}
