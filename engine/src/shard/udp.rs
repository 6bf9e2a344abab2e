//! The shards' UDP sockets, which carry uTP.
//!
//! Every shard has one UDP socket bound to the engine's listen port (SO_REUSEPORT, like its TCP
//! listener). The kernel picks the socket of an arriving datagram with a small classic-BPF
//! program attached to the group ([`attach_route`]): the shard index is the uTP connection id
//! the datagram carries, modulo the number of shards (for a SYN, the id the connection will
//! use: the SYN's id plus one). A shard gives its outgoing connections receive ids that are
//! its own index modulo the shard count ([`UtpIds`]), so every packet of a connection,
//! whichever side opened it, reaches the shard that owns the connection, with no hand-over
//! between shards.
//!
//! Sending is a plain non-blocking `send_to` per datagram from the shard thread
//! ([`Datagrams::send_all`]); a datagram the socket cannot take now is dropped, as the network
//! would drop it, and uTP resends it.
#![allow(unsafe_code)]

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};

use socket2::{Domain, Socket, Type};

/// Receive buffer of a shard's UDP socket: a burst of full-size uTP packets from many peers
/// must fit while the shard is busy elsewhere.
const SOCKET_RECV_BUFFER: usize = 4 << 20;
const SOCKET_SEND_BUFFER: usize = 2 << 20;

/// Datagrams a shard has to send, with their buffers kept for reuse.
#[derive(Default)]
pub struct Datagrams {
    queue: Vec<(SocketAddr, Vec<u8>)>,
    spare: Vec<Vec<u8>>,
    /// Datagrams the socket refused (full send buffer, unreachable): counted, not retried.
    pub dropped: u64,
}

impl Datagrams {
    /// An empty buffer to fill and [`Datagrams::push`].
    pub fn buffer(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_else(|| Vec::with_capacity(1500))
    }

    pub fn push(&mut self, to: SocketAddr, datagram: Vec<u8>) {
        self.queue.push((to, datagram));
    }

    /// Gives back a buffer that was not sent.
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        buf.clear();
        if self.spare.len() < 1024 {
            self.spare.push(buf);
        }
    }

    /// Takes what is queued (the tests carry datagrams by hand).
    #[cfg(test)]
    pub fn take_queue(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        std::mem::take(&mut self.queue)
    }

    /// Drops everything queued (no socket to send it through).
    pub fn drop_all(&mut self) {
        for (_, buf) in std::mem::take(&mut self.queue) {
            self.dropped += 1;
            self.recycle(buf);
        }
    }

    /// Sends everything queued through `socket`.
    pub fn send_all(&mut self, socket: &UdpSocket) {
        for (to, buf) in std::mem::take(&mut self.queue) {
            loop {
                match socket.send_to(&buf, to) {
                    Ok(_) => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.dropped += 1;
                        tracing::trace!("uTP datagram to {to} not sent: {e}");
                        break;
                    }
                }
            }
            self.recycle(buf);
        }
    }
}

/// Hands out receive ids for outgoing uTP connections that route to shard `index` of `count`
/// (see the module doc).
pub struct UtpIds {
    index: u16,
    count: u16,
    next: u16,
}

impl UtpIds {
    /// `seed` varies the ids between runs (a restarted engine should not reuse its old ids).
    pub fn new(index: usize, count: usize, seed: u16) -> UtpIds {
        let count = count.clamp(1, 1 << 12) as u16;
        let index = (index as u16) % count;
        UtpIds {
            index,
            count,
            next: seed,
        }
    }

    /// The next id whose remainder modulo the shard count is this shard's index.
    pub fn next_id(&mut self) -> u16 {
        loop {
            let id = self.next;
            self.next = self.next.wrapping_add(1);
            if id % self.count == self.index {
                return id;
            }
        }
    }

    /// Whether a connection id routes to this shard (ids of connections the peer opened are
    /// the SYN's id plus one).
    #[cfg(test)]
    pub fn is_ours(&self, recv_id: u16) -> bool {
        recv_id % self.count == self.index
    }
}

/// `n` UDP sockets sharing `addr` (SO_REUSEPORT), non-blocking, with the connection-id route
/// attached when there is more than one. `[::]` is dual-stack.
pub fn shard_sockets(addr: SocketAddr, n: usize) -> io::Result<Vec<OwnedFd>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let s = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
        if addr.is_ipv6() && addr.ip().is_unspecified() {
            s.set_only_v6(false)?;
        }
        let _ = s.set_recv_buffer_size(SOCKET_RECV_BUFFER);
        let _ = s.set_send_buffer_size(SOCKET_SEND_BUFFER);
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        out.push(OwnedFd::from(s));
    }
    if n > 1 {
        if let Some(first) = out.first() {
            attach_route(first, n)?;
        }
    }
    Ok(out)
}

/// A shard's own UDP socket on an ephemeral port of `ip` (used when the listen port cannot be
/// bound for UDP: outgoing uTP still works, and replies come back to this shard alone).
pub fn ephemeral_socket(ip: IpAddr) -> io::Result<OwnedFd> {
    let addr = SocketAddr::new(ip, 0);
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
    if addr.is_ipv6() && ip.is_unspecified() {
        s.set_only_v6(false)?;
    }
    let _ = s.set_recv_buffer_size(SOCKET_RECV_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_SEND_BUFFER);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(OwnedFd::from(s))
}

// Classic BPF opcodes (linux/bpf_common.h).
const BPF_LD: u16 = 0x00;
const BPF_ALU: u16 = 0x04;
const BPF_JMP: u16 = 0x05;
const BPF_RET: u16 = 0x06;
const BPF_B: u16 = 0x10;
const BPF_H: u16 = 0x08;
const BPF_ABS: u16 = 0x20;
const BPF_K: u16 = 0x00;
const BPF_A: u16 = 0x10;
const BPF_RSH: u16 = 0x70;
const BPF_ADD: u16 = 0x00;
const BPF_AND: u16 = 0x50;
const BPF_MOD: u16 = 0x90;
const BPF_JEQ: u16 = 0x10;
const BPF_JA: u16 = 0x00;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The reuseport program: socket index = connection id modulo `n` (for a SYN, id + 1). For a
/// UDP socket the program sees the datagram's payload from offset 0; a datagram too short to
/// hold an id makes the loads fail and the kernel picks socket 0.
fn route_program(n: u32) -> [libc::sock_filter; 10] {
    [
        insn(BPF_LD | BPF_B | BPF_ABS, 0, 0, 0), // A = type << 4 | version
        insn(BPF_ALU | BPF_RSH | BPF_K, 0, 0, 4), // A = type
        insn(BPF_JMP | BPF_JEQ | BPF_K, 0, 4, 4), // SYN? else to 7
        insn(BPF_LD | BPF_H | BPF_ABS, 0, 0, 2), // A = connection id
        insn(BPF_ALU | BPF_ADD | BPF_K, 0, 0, 1), // the id the connection will use
        insn(BPF_ALU | BPF_AND | BPF_K, 0, 0, 0xffff),
        insn(BPF_JMP | BPF_JA, 0, 0, 1),          // to 8
        insn(BPF_LD | BPF_H | BPF_ABS, 0, 0, 2),  // A = connection id
        insn(BPF_ALU | BPF_MOD | BPF_K, 0, 0, n), // A = shard index
        insn(BPF_RET | BPF_A, 0, 0, 0),
    ]
}

/// Attaches the connection-id route to the reuseport group of `sock`.
fn attach_route(sock: &OwnedFd, n: usize) -> io::Result<()> {
    let mut prog = route_program(n as u32);
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `prog`, which lives until setsockopt returns (the kernel
    // copies the program); the option length is the size of the struct passed.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn header(ty: u8, id: u16) -> [u8; 20] {
        let mut h = [0u8; 20];
        h[0] = ty << 4 | 1;
        h[2..4].copy_from_slice(&id.to_be_bytes());
        h
    }

    /// Which of the group's sockets received the datagram.
    fn receiver(socks: &[UdpSocket]) -> Option<usize> {
        let mut buf = [0u8; 64];
        for _ in 0..200 {
            for (i, s) in socks.iter().enumerate() {
                if s.recv_from(&mut buf).is_ok() {
                    return Some(i);
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        None
    }

    #[test]
    fn the_kernel_routes_each_datagram_to_the_shard_of_its_connection_id() {
        for n in [2usize, 3] {
            let fds = shard_sockets("127.0.0.1:0".parse().unwrap(), 1).unwrap();
            let port = UdpSocket::from(fds.into_iter().next().unwrap())
                .local_addr()
                .unwrap()
                .port();
            // The first socket was only to find a free port; build the real group on it.
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let socks: Vec<UdpSocket> = shard_sockets(addr, n)
                .unwrap()
                .into_iter()
                .map(UdpSocket::from)
                .collect();
            let client = UdpSocket::bind("127.0.0.1:0").unwrap();
            for id in [0u16, 1, 2, 5, 7, 100, 65534, 65535] {
                // DATA/STATE/FIN carry the receiver's id; a SYN the id minus one.
                client.send_to(&header(0, id), addr).unwrap();
                assert_eq!(
                    receiver(&socks),
                    Some(id as usize % n),
                    "DATA id {id}, n {n}"
                );
                client
                    .send_to(&header(4, id.wrapping_sub(1)), addr)
                    .unwrap();
                assert_eq!(
                    receiver(&socks),
                    Some(id as usize % n),
                    "SYN for id {id}, n {n}"
                );
                let mut ids = UtpIds::new(id as usize % n, n, id);
                let next = ids.next_id();
                assert!(ids.is_ours(next));
            }
        }
    }

    #[test]
    fn outgoing_ids_route_back_to_their_shard() {
        let mut ids = UtpIds::new(1, 3, 65530);
        let got: Vec<u16> = (0..4).map(|_| ids.next_id()).collect();
        assert_eq!(got, [65530, 65533, 1, 4]);
        assert!(got.iter().all(|&i| ids.is_ours(i)));
    }
}
