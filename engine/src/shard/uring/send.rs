//! Sends on the shard's ring. A buffer of bytes in memory goes out as one `IORING_OP_SEND` /
//! `IORING_OP_SENDMSG` (resubmitted for the rest after a partial send). A buffer with blocks
//! in files (cached pieces, see `shard/upload/reads.rs`) is sent by the shard thread itself with
//! non-blocking `sendmsg` and `sendfile` (io_uring has no `sendfile`, and its `splice` always
//! runs on a worker thread); when the socket is full, an `IORING_OP_POLL_ADD` for `POLLOUT` on
//! the ring says when to go on. Pointers in the SQEs go through `UringBackend::push_sqe`
//! (SAFETY there): the buffer, its iovecs and `msghdr` live in the connection slot until the
//! completion.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use io_uring::{opcode, types};

use super::{empty_msghdr, user_data, UringBackend, KIND_SEND, KIND_WRITABLE};
use crate::shard::backend::{Completion, Token};
use crate::shard::flush::{flush_nonblocking, Flushed};
use crate::shard::sendq::SendBuf;

/// A send in flight: the buffer, and the iovecs and header of its current `sendmsg`.
pub(super) struct Sending {
    buf: SendBuf,
    iov: Vec<libc::iovec>,
    hdr: Box<libc::msghdr>,
}

impl UringBackend {
    /// `Op::Send`: starts sending `buf` (dropped if the connection is closing or sending).
    pub(super) fn start_send(
        &mut self,
        token: Token,
        buf: SendBuf,
        on: &mut dyn FnMut(Completion<'_>),
    ) -> io::Result<()> {
        let Some(c) = self.conn(token) else {
            return Ok(());
        };
        if c.closing || c.send.is_some() {
            return Ok(());
        }
        c.send = Some(Sending {
            buf,
            iov: Vec::new(),
            hdr: empty_msghdr(),
        });
        self.send_rest(token, on)
    }

    /// Sends what is left of the connection's buffer.
    fn send_rest(&mut self, token: Token, on: &mut dyn FnMut(Completion<'_>)) -> io::Result<()> {
        let Some(c) = self.conn(token) else {
            return Ok(());
        };
        let fd = types::Fd(c.fd.as_raw_fd());
        let Some(s) = c.send.as_mut() else {
            return Ok(());
        };
        if s.buf.has_files() {
            let flushed = if c.nonblocking {
                Ok(())
            } else {
                rustix::io::ioctl_fionbio(c.fd.as_fd(), true).map_err(io::Error::from)
            }
            .and_then(|()| {
                c.nonblocking = true;
                flush_nonblocking(c.fd.as_fd(), &mut s.buf)
            });
            match flushed {
                Ok(Flushed::WouldBlock) => {
                    c.inflight += 1;
                    let sqe = opcode::PollAdd::new(fd, libc::POLLOUT as u32)
                        .build()
                        .user_data(user_data(KIND_WRITABLE, token));
                    return self.push_sqe(sqe);
                }
                Ok(Flushed::All) => self.finish_send(token, Ok(()), on),
                Err(e) => self.finish_send(token, Err(e), on),
            }
            self.sent_inline = true;
            return Ok(());
        }
        s.iov.clear();
        s.iov.extend(s.buf.unsent_iovecs());
        let sqe = if let [one] = s.iov[..] {
            opcode::Send::new(fd, one.iov_base as *const u8, one.iov_len as u32)
                .flags(libc::MSG_NOSIGNAL)
                .build()
        } else {
            s.hdr.msg_iov = s.iov.as_mut_ptr();
            s.hdr.msg_iovlen = s.iov.len() as _;
            opcode::SendMsg::new(fd, &*s.hdr)
                .flags(libc::MSG_NOSIGNAL as u32)
                .build()
        };
        c.inflight += 1;
        self.push_sqe(sqe.user_data(user_data(KIND_SEND, token)))
    }

    /// The send is over: its buffer goes back to the shard with `result`.
    fn finish_send(
        &mut self,
        token: Token,
        result: io::Result<()>,
        on: &mut dyn FnMut(Completion<'_>),
    ) {
        if let Some(s) = self.conn(token).and_then(|c| c.send.take()) {
            on(Completion::Sent {
                token,
                buf: s.buf,
                result,
            });
        }
    }

    /// A ring send completed (`res` bytes, or an error).
    pub(super) fn handle_sent(
        &mut self,
        id: Token,
        res: i32,
        on: &mut dyn FnMut(Completion<'_>),
    ) -> io::Result<()> {
        if self.op_done(id) {
            return Ok(());
        }
        let Some(s) = self.conn(id).and_then(|c| c.send.as_mut()) else {
            return Ok(());
        };
        if res < 0 {
            self.finish_send(id, Err(io::Error::from_raw_os_error(-res)), on);
            return Ok(());
        }
        s.buf.advance(res as usize);
        if s.buf.is_done() {
            self.finish_send(id, Ok(()), on);
        } else if res == 0 {
            self.finish_send(id, Err(io::ErrorKind::WriteZero.into()), on);
        } else {
            self.send_rest(id, on)?;
        }
        Ok(())
    }

    /// The socket of a `sendfile` flush that filled it is writable again (or failed: the
    /// next flush reports how).
    pub(super) fn handle_writable(
        &mut self,
        id: Token,
        res: i32,
        on: &mut dyn FnMut(Completion<'_>),
    ) -> io::Result<()> {
        if self.op_done(id) {
            return Ok(());
        }
        if res < 0 && res != -libc::EINTR {
            self.finish_send(id, Err(io::Error::from_raw_os_error(-res)), on);
            return Ok(());
        }
        self.send_rest(id, on)
    }
}
