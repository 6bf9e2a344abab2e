//! The portable ring driver: the same completions as [`super::uring`], emulated over epoll
//! (through the `polling` crate) and non-blocking sockets. Used when io_uring cannot be set up
//! (ENOSYS, seccomp EPERM, `kernel.io_uring_disabled`) or `RINGTORRENT_NO_URING=1` is set.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use polling::{Event, Events, Poller};
use socket2::{Domain, SockAddr, Socket, Type};

use super::backend::{Backend, Completion, Op, Token};
use super::sendq::{BlockMsg, SendBuf};

/// Keys at and above this value are listeners.
const LISTENER_KEY: usize = 1 << 40;
/// Reads per readable socket per wait, so one fast peer cannot starve the others.
const READS_PER_WAKE: usize = 4;
/// Key of the shard's eventfd.
const WAKE_KEY: usize = (1 << 40) - 1;
/// Key of the shard's UDP socket.
const UDP_KEY: usize = (1 << 40) - 2;
/// Datagrams read per readable wake-up of the UDP socket.
const DATAGRAMS_PER_WAKE: usize = 256;

struct Conn {
    stream: TcpStream,
    connecting: bool,
    recv: bool,
    send: Option<SendBuf>,
}

/// See the module doc.
pub struct PortableBackend {
    poller: Poller,
    events: Events,
    conns: HashMap<Token, Conn>,
    listeners: Vec<TcpListener>,
    pending: Vec<Op>,
    closed: Vec<Token>,
    scratch: Vec<u8>,
    waker: Option<std::fs::File>,
    /// Source address for outgoing connections (on loopback the kernel would otherwise pick
    /// the destination's own address, which peers take for themselves).
    bind_ip: Option<IpAddr>,
    /// The shard's UDP socket (uTP).
    udp: Option<std::net::UdpSocket>,
}

impl PortableBackend {
    pub fn new(recv_buffer_len: usize, bind_ip: Option<IpAddr>) -> io::Result<PortableBackend> {
        Ok(PortableBackend {
            poller: Poller::new()?,
            events: Events::new(),
            conns: HashMap::new(),
            listeners: Vec::new(),
            pending: Vec::new(),
            closed: Vec::new(),
            scratch: vec![0u8; recv_buffer_len],
            waker: None,
            bind_ip,
            udp: None,
        })
    }

    fn interest(c: &Conn, token: Token) -> Event {
        let key = token as usize;
        let writable = c.connecting || c.send.is_some();
        match (c.recv && !c.connecting, writable) {
            (true, true) => Event::all(key),
            (true, false) => Event::readable(key),
            (false, true) => Event::writable(key),
            (false, false) => Event::none(key),
        }
    }

    fn rearm(&self, token: Token) {
        if let Some(c) = self.conns.get(&token) {
            let _ = self.poller.modify(&c.stream, Self::interest(c, token));
        }
    }

    fn add(&mut self, token: Token, stream: TcpStream, connecting: bool) -> io::Result<()> {
        let c = Conn {
            stream,
            connecting,
            recv: false,
            send: None,
        };
        // SAFETY: the stream is removed from the poller (in `close`) before it is dropped.
        unsafe { self.poller.add(&c.stream, Self::interest(&c, token))? };
        self.conns.insert(token, c);
        Ok(())
    }

    fn close(&mut self, token: Token) {
        if let Some(c) = self.conns.remove(&token) {
            let _ = self.poller.delete(&c.stream);
            self.closed.push(token);
        }
    }

    fn apply(&mut self, op: Op, on: &mut dyn FnMut(Completion<'_>)) -> io::Result<()> {
        match op {
            Op::Connect { token, addr } => {
                let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
                if let Some(ip) = self.bind_ip.filter(|ip| ip.is_ipv4() == addr.is_ipv4()) {
                    sock.bind(&SocketAddr::new(ip, 0).into())?;
                }
                sock.set_nonblocking(true)?;
                let _ = sock.set_tcp_nodelay(true);
                match sock.connect(&SockAddr::from(addr)) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
                    Err(e) => {
                        // Report through a closed-on-arrival slot so the shard sees one path.
                        on(Completion::Connected {
                            token,
                            result: Err(e),
                        });
                        self.closed.push(token);
                        return Ok(());
                    }
                }
                self.add(token, sock.into(), true)?;
            }
            Op::Adopt { token, fd } => {
                let stream = TcpStream::from(fd);
                stream.set_nonblocking(true)?;
                let _ = stream.set_nodelay(true);
                self.add(token, stream, false)?;
            }
            Op::Recv { token } => {
                if let Some(c) = self.conns.get_mut(&token) {
                    c.recv = true;
                }
                self.rearm(token);
            }
            Op::Send { token, buf } => {
                if let Some(c) = self.conns.get_mut(&token) {
                    if c.send.is_none() {
                        c.send = Some(buf);
                    }
                }
                self.rearm(token);
            }
            Op::ReadFile {
                tag,
                parts,
                mut msg,
            } => {
                let result = read_parts(&parts, &mut msg);
                on(Completion::FileRead { tag, msg, result });
            }
            Op::ReadPiece {
                tag,
                file,
                offset,
                len,
                mut buf,
            } => {
                // Buffered here: the fallback keeps to plain reads.
                let result = match buf.as_mut_slice().get_mut(..len as usize) {
                    Some(dst) => read_full_at(file.file(), dst, offset),
                    None => Err(io::Error::other("piece read too long")),
                };
                on(Completion::PieceRead { tag, buf, result });
            }
            Op::Close { token } => self.close(token),
        }
        Ok(())
    }

    fn on_ready(&mut self, token: Token, ev: Event, on: &mut dyn FnMut(Completion<'_>)) {
        let Some(c) = self.conns.get_mut(&token) else {
            return;
        };
        if c.connecting && (ev.writable || ev.readable) {
            c.connecting = false;
            let result = match c.stream.take_error() {
                Ok(None) => c.stream.peer_addr().map(|_| ()),
                Ok(Some(e)) | Err(e) => Err(e),
            };
            on(Completion::Connected { token, result });
        }
        let Some(c) = self.conns.get_mut(&token) else {
            return;
        };
        if ev.writable && !c.connecting {
            if let Some(buf) = c.send.as_mut() {
                match super::flush::flush_nonblocking(c.stream.as_fd(), buf) {
                    Ok(_) => {}
                    Err(e) => {
                        let buf = c.send.take().unwrap_or_default();
                        on(Completion::Sent {
                            token,
                            buf,
                            result: Err(e),
                        });
                    }
                }
                if let Some(c) = self.conns.get_mut(&token) {
                    if c.send.as_ref().is_some_and(|b| b.is_done()) {
                        let buf = c.send.take().unwrap_or_default();
                        on(Completion::Sent {
                            token,
                            buf,
                            result: Ok(()),
                        });
                    }
                }
            }
        }
        let Some(c) = self.conns.get_mut(&token) else {
            return;
        };
        if ev.readable && c.recv {
            for _ in 0..READS_PER_WAKE {
                match c.stream.read(&mut self.scratch) {
                    Ok(0) => {
                        c.recv = false;
                        on(Completion::RecvEnded {
                            token,
                            result: Ok(()),
                        });
                        break;
                    }
                    Ok(n) => on(Completion::Data {
                        token,
                        data: &mut self.scratch[..n],
                    }),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        c.recv = false;
                        on(Completion::RecvEnded {
                            token,
                            result: Err(e),
                        });
                        break;
                    }
                }
            }
        }
        self.rearm(token);
    }
}

impl Backend for PortableBackend {
    fn listen(&mut self, listener: OwnedFd) -> io::Result<()> {
        let l = TcpListener::from(listener);
        l.set_nonblocking(true)?;
        let key = LISTENER_KEY + self.listeners.len();
        // SAFETY: listeners live as long as the backend and the poller together.
        unsafe { self.poller.add(&l, Event::readable(key))? };
        self.listeners.push(l);
        Ok(())
    }

    fn set_waker(&mut self, eventfd: OwnedFd) -> io::Result<()> {
        let f = std::fs::File::from(eventfd);
        // SAFETY: the eventfd lives in `self.waker` as long as the poller does.
        unsafe { self.poller.add(&f, Event::readable(WAKE_KEY))? };
        self.waker = Some(f);
        Ok(())
    }

    fn listen_udp(&mut self, socket: std::net::UdpSocket) -> io::Result<()> {
        socket.set_nonblocking(true)?;
        // SAFETY: the socket lives in `self.udp` as long as the poller does.
        unsafe { self.poller.add(&socket, Event::readable(UDP_KEY))? };
        self.udp = Some(socket);
        Ok(())
    }

    fn send_datagrams(&mut self, out: &mut super::udp::Datagrams) {
        match &self.udp {
            Some(u) => out.send_all(u),
            None => out.drop_all(),
        }
    }

    fn push(&mut self, op: Op) {
        self.pending.push(op);
    }

    fn wait(&mut self, timeout: Duration, on: &mut dyn FnMut(Completion<'_>)) -> io::Result<()> {
        for op in std::mem::take(&mut self.pending) {
            self.apply(op, on)?;
        }
        for token in std::mem::take(&mut self.closed) {
            on(Completion::Closed { token });
        }
        // Sends that can go out right away should not wait for a wake-up.
        let timeout = if self
            .conns
            .values()
            .any(|c| c.send.is_some() && !c.connecting)
        {
            Duration::ZERO
        } else {
            timeout
        };
        self.events.clear();
        match self.poller.wait(&mut self.events, Some(timeout)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        let ready: Vec<Event> = self.events.iter().collect();
        for ev in ready {
            if ev.key == WAKE_KEY {
                if let Some(f) = self.waker.as_mut() {
                    let mut b = [0u8; 8];
                    let _ = f.read(&mut b);
                    let _ = self.poller.modify(&*f, Event::readable(WAKE_KEY));
                }
                on(Completion::Wake);
            } else if ev.key == UDP_KEY {
                self.receive_datagrams(on);
            } else if ev.key >= LISTENER_KEY {
                self.accept_all(ev.key - LISTENER_KEY, on);
            } else {
                self.on_ready(ev.key as Token, ev, on);
            }
        }
        // Try pending sends optimistically (level-triggered emulation of "submit now").
        let tokens: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| c.send.is_some() && !c.connecting)
            .map(|(t, _)| *t)
            .collect();
        for t in tokens {
            self.on_ready(t, Event::writable(t as usize), on);
        }
        for token in std::mem::take(&mut self.closed) {
            on(Completion::Closed { token });
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        "epoll"
    }
}

impl PortableBackend {
    fn receive_datagrams(&mut self, on: &mut dyn FnMut(Completion<'_>)) {
        let Some(u) = &self.udp else { return };
        for _ in 0..DATAGRAMS_PER_WAKE {
            match u.recv_from(&mut self.scratch) {
                Ok((n, from)) => on(Completion::Datagram {
                    from: SocketAddr::new(from.ip().to_canonical(), from.port()),
                    data: &mut self.scratch[..n],
                }),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let _ = self.poller.modify(u, Event::readable(UDP_KEY));
    }

    fn accept_all(&mut self, idx: usize, on: &mut dyn FnMut(Completion<'_>)) {
        let Some(l) = self.listeners.get(idx) else {
            return;
        };
        loop {
            match l.accept() {
                Ok((s, peer)) => on(Completion::Accepted {
                    fd: OwnedFd::from(s),
                    peer,
                }),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let _ = self.poller.modify(l, Event::readable(LISTENER_KEY + idx));
    }
}

/// Reads the file parts of an upload block into `msg` with `pread` (the page cache answers
/// most; a miss blocks this shard for one disk read, acceptable in the fallback).
fn read_parts(parts: &[uring_disk::ReadPart], msg: &mut BlockMsg) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let block = msg.block_mut();
    for p in parts {
        let uring_disk::ReadPart::File {
            file,
            file_offset,
            at,
            len,
        } = p
        else {
            continue;
        };
        let (at, len) = (*at as usize, *len as usize);
        let dst = block
            .get_mut(at..at + len)
            .ok_or_else(|| io::Error::other("read part outside its block"))?;
        file.file().read_exact_at(dst, *file_offset)?;
    }
    Ok(())
}

/// Reads until `dst` is full or the file ends; the bytes read.
fn read_full_at(f: &std::fs::File, dst: &mut [u8], offset: u64) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut done = 0;
    while done < dst.len() {
        match f.read_at(&mut dst[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}
