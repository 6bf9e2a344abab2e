//! Sending a [`SendBuf`] with plain non-blocking system calls: bytes in memory with one
//! `sendmsg` of up to [`MAX_IOVECS`] slices, blocks in files with `sendfile`. Both drivers use
//! it for buffers with file segments (io_uring has no `sendfile`, and its `splice` always runs
//! on a worker thread); the epoll driver for every buffer.
//!
//! Why `sendfile`: TCP then takes the page cache's pages by reference, so the seeder neither
//! copies the block into a message nor copies the message into freshly allocated socket
//! buffers (on our VMs that second copy, into pages the host has reclaimed, was half of a
//! seeder's CPU). See DESIGN.md, "Anatomy of an upload".

use std::io::{self, IoSlice};
use std::os::fd::BorrowedFd;

use rustix::io::Errno;
use rustix::net::{SendAncillaryBuffer, SendFlags};

use super::sendq::{SendBuf, MAX_IOVECS};

/// How far a flush got.
#[derive(Debug, PartialEq, Eq)]
pub enum Flushed {
    /// Everything in the buffer went out.
    All,
    /// The socket is full; wait until it is writable and flush again.
    WouldBlock,
}

/// Sends as much of `buf` as the socket takes now. `sock` must be non-blocking (`sendfile`
/// has no per-call flag), which the drivers ensure. A file that ends before one of its
/// segments (truncated since the check) is an error: the PIECE header is out already, so the
/// connection cannot go on.
pub fn flush_nonblocking(sock: BorrowedFd<'_>, buf: &mut SendBuf) -> io::Result<Flushed> {
    if !buf.has_files() {
        return send_all(sock, buf);
    }
    // Corked, TCP fills whole segments across blocks and their headers (`sendfile` would
    // push each block alone: TCP_NODELAY is on); uncorking sends the tail.
    let _ = rustix::net::sockopt::set_tcp_cork(sock, true);
    let r = send_all(sock, buf);
    let _ = rustix::net::sockopt::set_tcp_cork(sock, false);
    r
}

fn send_all(sock: BorrowedFd<'_>, buf: &mut SendBuf) -> io::Result<Flushed> {
    while !buf.is_done() {
        let sent = if let Some(run) = buf.file_run() {
            let mut off = run.off;
            match rustix::fs::sendfile(sock, run.file, Some(&mut off), run.len) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the file ends before the block being sent (truncated?)",
                    ))
                }
                other => other,
            }
        } else {
            let mut flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
            if buf.file_follows() {
                flags |= SendFlags::MORE;
            }
            let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
            let mut n = 0;
            for (slot, s) in iov.iter_mut().zip(buf.unsent()) {
                *slot = IoSlice::new(s);
                n += 1;
            }
            rustix::net::sendmsg(sock, &iov[..n], &mut SendAncillaryBuffer::default(), flags)
        };
        match sent {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf.advance(n),
            Err(Errno::AGAIN) => return Ok(Flushed::WouldBlock),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Flushed::All)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        a.set_nonblocking(true).unwrap();
        (a, b)
    }

    fn file_with(bytes: &[u8]) -> uring_disk::OpenFile {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
        let f = uring_disk::OpenFile::open_read_only(&path).unwrap();
        drop(dir);
        f
    }

    #[test]
    fn bytes_and_file_segments_arrive_in_order_even_when_the_socket_fills() {
        stream_through_flush(false);
    }

    #[test]
    fn mapped_segments_go_out_like_file_segments() {
        stream_through_flush(true);
    }

    /// Sends bytes and two ~1 MB blocks of a file (as file or as mapped segments) through a
    /// loopback socket with `flush_nonblocking` and compares what arrives.
    fn stream_through_flush(mapped: bool) {
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i * 7 + i / 4096) as u8)
            .collect();
        let file = file_with(&data);
        let (tx, mut rx) = pair();
        let mut buf = SendBuf::from_bytes(b"head".to_vec());
        let mut want = b"head".to_vec();
        for (i, chunk) in [(5u64, 1_000_000u32), (2_000_000, 999_000)]
            .iter()
            .enumerate()
        {
            if mapped {
                buf.push_mapped(file.clone(), chunk.0, chunk.1);
            } else {
                buf.push_file(file.clone(), chunk.0, chunk.1);
            }
            want.extend_from_slice(&data[chunk.0 as usize..(chunk.0 + chunk.1 as u64) as usize]);
            buf.push_bytes(vec![i as u8; 3]);
            want.extend_from_slice(&[i as u8; 3]);
        }
        assert_eq!(buf.len(), want.len());
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            rx.read_to_end(&mut got).unwrap();
            got
        });
        let mut blocked = 0;
        loop {
            match flush_nonblocking(tx.as_fd(), &mut buf).unwrap() {
                Flushed::All => break,
                Flushed::WouldBlock => {
                    blocked += 1;
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
        }
        drop(tx);
        let got = reader.join().unwrap();
        assert!(
            got == want,
            "the stream differs ({} bytes, want {})",
            got.len(),
            want.len()
        );
        // 2 MB cannot fit a loopback socket's buffer at once with a reader this slow to start:
        // the partial-send path ran (not asserted: it depends on timing), and still in order.
        let _ = blocked;
    }

    #[test]
    fn a_file_shorter_than_its_segment_is_an_error_not_a_hang() {
        let file = file_with(&[1u8; 1000]);
        let (tx, _rx) = pair();
        let mut buf = SendBuf::from_bytes(vec![9; 13]);
        buf.push_file(file, 0, 16384);
        let err = flush_nonblocking(tx.as_fd(), &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(
            buf.remaining(),
            16384 - 1000,
            "the bytes the file had went out"
        );
    }
}
