//! Upload reads on the shard's ring: a block's file parts read one after another straight
//! into its PIECE message (buffered), and whole pieces read with O_DIRECT. Each read lives in a
//! slab slot of the backend, with its buffer and files, until its last completion; the SQE
//! pointers go through `UringBackend::push_sqe` (SAFETY there).

use std::io;

use io_uring::{opcode, types};

use super::{user_data, UringBackend, KIND_FILE, KIND_PIECE};
use crate::shard::backend::Completion;
use crate::shard::sendq::BlockMsg;

/// An upload read in flight: part `part` of the block, `done` bytes of it read.
pub(super) struct FileRead {
    pub(super) tag: u32,
    pub(super) parts: Vec<uring_disk::ReadPart>,
    pub(super) msg: BlockMsg,
    pub(super) part: usize,
    pub(super) done: u32,
}

/// An O_DIRECT piece read in flight.
pub(super) struct PieceRead {
    pub(super) tag: u32,
    pub(super) file: uring_disk::OpenFile,
    pub(super) offset: u64,
    pub(super) len: u32,
    pub(super) buf: uring_disk::PooledBuf,
}

/// Reads in flight by slot (the id in their user data); freed slots are reused.
pub(super) struct Slab<T> {
    slots: Vec<Option<T>>,
    free: Vec<u32>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Slab<T> {
    fn insert(&mut self, v: T) -> u32 {
        match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(v);
                id
            }
            None => {
                self.slots.push(Some(v));
                (self.slots.len() - 1) as u32
            }
        }
    }

    fn get_mut(&mut self, id: u32) -> Option<&mut T> {
        self.slots.get_mut(id as usize).and_then(|s| s.as_mut())
    }

    fn remove(&mut self, id: u32) -> Option<T> {
        let v = self.slots.get_mut(id as usize).and_then(|s| s.take());
        if v.is_some() {
            self.free.push(id);
        }
        v
    }

    /// Everything still in flight (for Drop, which leaks it).
    pub(super) fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.free.clear();
        self.slots.drain(..).flatten()
    }
}

impl UringBackend {
    pub(super) fn start_file_read(
        &mut self,
        read: FileRead,
        on: &mut dyn FnMut(Completion<'_>),
    ) -> io::Result<()> {
        let id = self.reads.insert(read);
        self.read_next(id, on)
    }

    pub(super) fn start_piece_read(
        &mut self,
        read: PieceRead,
        on: &mut dyn FnMut(Completion<'_>),
    ) -> io::Result<()> {
        let id = self.pieces.insert(read);
        self.piece_submit(id, on)
    }

    /// Submits the read of the current part of upload read `id`, skipping zero parts; when
    /// no part is left, hands the message to the shard and frees the slot.
    fn read_next(&mut self, id: u32, on: &mut dyn FnMut(Completion<'_>)) -> io::Result<()> {
        let Some(r) = self.reads.get_mut(id) else {
            return Ok(());
        };
        while let Some(part) = r.parts.get(r.part) {
            let uring_disk::ReadPart::File {
                file,
                file_offset,
                at,
                len,
            } = part
            else {
                r.part += 1;
                continue;
            };
            let (base, block_len) = r.msg.block_ptr();
            let (at, len, done) = (*at as usize, *len as usize, r.done as usize);
            if at + len > block_len || done >= len {
                return self.finish_read(
                    id,
                    Err(io::Error::other("read part outside its block")),
                    on,
                );
            }
            // The pointer stays inside the message's block (checked above).
            let ptr = base.wrapping_add(at + done);
            let sqe = opcode::Read::new(types::Fd(file.fd()), ptr, (len - done) as u32)
                .offset(file_offset + done as u64)
                .build()
                .user_data(user_data(KIND_FILE, id));
            return self.push_sqe(sqe);
        }
        self.finish_read(id, Ok(()), on)
    }

    fn finish_read(
        &mut self,
        id: u32,
        result: io::Result<()>,
        on: &mut dyn FnMut(Completion<'_>),
    ) -> io::Result<()> {
        if let Some(r) = self.reads.remove(id) {
            on(Completion::FileRead {
                tag: r.tag,
                msg: r.msg,
                result,
            });
        }
        Ok(())
    }

    pub(super) fn handle_file_read(
        &mut self,
        id: u32,
        res: i32,
        on: &mut dyn FnMut(Completion<'_>),
    ) -> io::Result<()> {
        let Some(r) = self.reads.get_mut(id) else {
            return Ok(());
        };
        if res == -libc::EINTR || res == -libc::EAGAIN {
            return self.read_next(id, on);
        }
        if res < 0 {
            return self.finish_read(id, Err(io::Error::from_raw_os_error(-res)), on);
        }
        if res == 0 {
            let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
            return self.finish_read(id, Err(eof), on);
        }
        r.done += res as u32;
        if let Some(uring_disk::ReadPart::File { len, .. }) = r.parts.get(r.part) {
            if r.done >= *len {
                r.part += 1;
                r.done = 0;
            }
        }
        self.read_next(id, on)
    }

    /// Submits (or resubmits) piece read `id`; a file without a usable O_DIRECT descriptor
    /// fails it at once.
    pub(super) fn piece_submit(
        &mut self,
        id: u32,
        on: &mut dyn FnMut(Completion<'_>),
    ) -> io::Result<()> {
        let Some(p) = self.pieces.get_mut(id) else {
            return Ok(());
        };
        let Some(fd) = p.file.direct_fd() else {
            return self.piece_finish(id, Err(io::Error::from_raw_os_error(libc::EINVAL)), on);
        };
        let buf = p.buf.as_mut_slice();
        if (p.len as usize) > buf.len() {
            return self.piece_finish(id, Err(io::Error::other("piece read too long")), on);
        }
        let sqe = opcode::Read::new(types::Fd(fd), buf.as_mut_ptr(), p.len)
            .offset(p.offset)
            .build()
            .user_data(user_data(KIND_PIECE, id));
        self.push_sqe(sqe)
    }

    pub(super) fn piece_finish(
        &mut self,
        id: u32,
        result: io::Result<usize>,
        on: &mut dyn FnMut(Completion<'_>),
    ) -> io::Result<()> {
        if let Some(p) = self.pieces.remove(id) {
            on(Completion::PieceRead {
                tag: p.tag,
                buf: p.buf,
                result,
            });
        }
        Ok(())
    }
}
