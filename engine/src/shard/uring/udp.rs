//! The shard's UDP socket on the ring: one multishot `IORING_OP_RECVMSG` into a provided-buffer
//! ring of its own (buffer group [`UDP_BGID`]); each buffer holds one datagram laid out as the
//! kernel's `io_uring_recvmsg_out` header, the sender's address, then the payload. Sends go out
//! from the shard thread with `send_to` (see `shard/udp.rs`).
#![allow(unsafe_code)]

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::bufring::BufRing;
use crate::shard::backend::Completion;

/// Buffer group id of the UDP receive buffers.
pub(super) const UDP_BGID: u16 = 8;
/// Datagrams the kernel can hold for the shard between two waits.
const UDP_BUFFERS: u16 = 512;
/// One datagram with its header and address; uTP packets are at most about 1500 bytes, a
/// longer datagram is dropped (counted in `truncated`).
const UDP_BUFFER_LEN: usize = 2048;
/// `sizeof(struct io_uring_recvmsg_out)`.
const OUT_HEADER: usize = 16;
/// Room for the sender's address: a `sockaddr_in6` holds both families.
const NAME_LEN: usize = std::mem::size_of::<libc::sockaddr_in6>();

pub(super) struct UdpRecv {
    pub(super) socket: UdpSocket,
    bufs: BufRing,
    /// The template the multishot receive was prepared from (name length, no control data).
    msghdr: Box<libc::msghdr>,
    /// Datagrams longer than a buffer (dropped).
    pub(super) truncated: u64,
}

impl UdpRecv {
    pub(super) fn new(ring: &IoUring, socket: UdpSocket) -> io::Result<UdpRecv> {
        let bufs = BufRing::new(ring, UDP_BGID, UDP_BUFFERS, UDP_BUFFER_LEN)?;
        // SAFETY: msghdr is plain data; all-zero is a valid empty header.
        let mut msghdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        msghdr.msg_namelen = NAME_LEN as libc::socklen_t;
        Ok(UdpRecv {
            socket,
            bufs,
            msghdr,
            truncated: 0,
        })
    }

    /// The multishot receive, tagged with `user_data`.
    pub(super) fn sqe(&self, user_data: u64) -> squeue::Entry {
        opcode::RecvMsgMulti::new(
            types::Fd(self.socket.as_raw_fd()),
            &*self.msghdr as *const libc::msghdr,
            self.bufs.bgid(),
        )
        .build()
        .user_data(user_data)
    }

    /// One completion of the receive; true if it ended and must be armed again.
    pub(super) fn handle(
        &mut self,
        res: i32,
        flags: u32,
        on: &mut dyn FnMut(Completion<'_>),
    ) -> bool {
        if let Some(bid) = cqueue::buffer_select(flags) {
            if res > 0 {
                let buf = self.bufs.get_mut(bid, res as usize);
                match split(buf) {
                    Some((from, data)) => on(Completion::Datagram { from, data }),
                    None => self.truncated += 1,
                }
            }
            self.bufs.push(bid);
        }
        if res < 0 && res != -libc::ENOBUFS {
            tracing::debug!("UDP receive ended: {}", io::Error::from_raw_os_error(-res));
        }
        !cqueue::more(flags)
    }

    /// Makes the buffers handed back in this batch visible to the kernel.
    pub(super) fn publish(&self) {
        self.bufs.publish();
    }
}

/// The sender and the payload of one received buffer; `None` if the datagram was cut short or
/// the layout is not what was asked for.
fn split(buf: &mut [u8]) -> Option<(SocketAddr, &mut [u8])> {
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?))
    };
    let (payload_len, out_flags) = (word(8)? as usize, word(12)?);
    if out_flags & libc::MSG_TRUNC as u32 != 0 {
        return None;
    }
    let from = sockaddr(buf.get(OUT_HEADER..OUT_HEADER + NAME_LEN)?)?;
    let start = OUT_HEADER + NAME_LEN;
    let data = buf.get_mut(start..start + payload_len)?;
    Some((from, data))
}

/// A `sockaddr_in` or `sockaddr_in6` as the kernel wrote it; IPv4-mapped addresses come out
/// as IPv4.
fn sockaddr(b: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes(b.get(0..2)?.try_into().ok()?);
    let port = u16::from_be_bytes(b.get(2..4)?.try_into().ok()?);
    let ip = match family as i32 {
        libc::AF_INET => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(b.get(4..8)?).ok()?)),
        libc::AF_INET6 => {
            let v6 = Ipv6Addr::from(<[u8; 16]>::try_from(b.get(8..24)?).ok()?);
            v6.to_canonical()
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_received_buffer_splits_into_sender_and_payload() {
        let mut buf = vec![0u8; OUT_HEADER + NAME_LEN + 5];
        buf[8..12].copy_from_slice(&5u32.to_ne_bytes());
        let name = OUT_HEADER;
        buf[name..name + 2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        buf[name + 2..name + 4].copy_from_slice(&6881u16.to_be_bytes());
        buf[name + 4..name + 8].copy_from_slice(&[127, 0, 0, 3]);
        buf[OUT_HEADER + NAME_LEN..].copy_from_slice(b"hello");
        let (from, data) = split(&mut buf).unwrap();
        assert_eq!(from, "127.0.0.3:6881".parse().unwrap());
        assert_eq!(data, b"hello");
        // A payload longer than what the buffer holds, or a truncated datagram: dropped.
        buf[8..12].copy_from_slice(&6u32.to_ne_bytes());
        assert!(split(&mut buf).is_none());
        buf[8..12].copy_from_slice(&5u32.to_ne_bytes());
        buf[12..16].copy_from_slice(&(libc::MSG_TRUNC as u32).to_ne_bytes());
        assert!(split(&mut buf).is_none());
    }
}
