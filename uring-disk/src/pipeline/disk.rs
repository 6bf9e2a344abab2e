//! The disk thread: turns commands into disk operations, drives them, and answers when a
//! piece, read or sync is complete.
//!
//! A job (write of one piece, read, sync) is split into ops (one per file part); the job keeps
//! a count of its ops in flight and its first error, and is answered when the count reaches 0.
//! Short transfers are resubmitted for the rest; an O_DIRECT transfer refused with EINVAL is
//! retried buffered and direct IO is turned off for that file.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use super::plan::{plan_reads, plan_writes};
use super::{Cmd, DiskConfig, DiskEvent, ReadBuf, ReadReply, Shared, Sink, SyncReply, TorrentInfo};
use crate::driver::{Backend, Driver, WaitFor};
use crate::error::{IoOp, StorageError};
use crate::hash::VerifiedPiece;
use crate::layout::Span;
use crate::ops::fsync::FsyncOp;
use crate::ops::read::ReadTarget;
use crate::ops::Op;
use crate::piece::SharedPiece;
use crate::pool::{BufferPool, PooledBuf, ALIGN};
use crate::storage::Storage;

/// Most commands handled between two looks at the completion queue.
const MAX_CMDS_PER_TICK: usize = 256;

struct TorrentState {
    storage: Storage,
    info: Arc<TorrentInfo>,
    sink: Sink,
}

enum Job {
    Write {
        slot: u32,
        piece: u32,
        len: u32,
        verified: Option<VerifiedPiece>,
    },
    Read {
        slot: u32,
        target: Arc<ReadTarget>,
        start: usize,
        len: usize,
        reply: ReadReply,
    },
    Sync {
        slot: u32,
        done: SyncReply,
    },
}

struct JobState {
    job: Job,
    /// Ops in flight.
    remaining: u32,
    error: Option<StorageError>,
}

pub(super) struct DiskThread {
    shared: Arc<Shared>,
    read_pool: Arc<BufferPool>,
    torrents: HashMap<u32, TorrentState>,
    jobs: Vec<Option<JobState>>,
    free_jobs: Vec<usize>,
    removing: Vec<(u32, Sender<()>)>,
}

impl DiskThread {
    pub(super) fn new(shared: Arc<Shared>, config: &DiskConfig) -> DiskThread {
        let read_len = config.max_read_len as usize + ALIGN;
        DiskThread {
            shared,
            read_pool: BufferPool::new(read_len, config.read_buffers),
            torrents: HashMap::new(),
            jobs: Vec::new(),
            free_jobs: Vec::new(),
            removing: Vec::new(),
        }
    }

    pub(super) fn run(
        mut self,
        want_uring: bool,
        entries: u32,
        rx: Receiver<Cmd>,
        backend_tx: Sender<Backend>,
    ) {
        let _ = self.shared.disk_thread.set(std::thread::current().id());
        let mut driver = match want_uring.then(|| Driver::uring(entries)) {
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "io_uring setup failed, disk IO uses blocking syscalls");
                Driver::blocking()
            }
            None => Driver::blocking(),
        };
        let _ = backend_tx.send(driver.backend());
        let mut completions = Vec::new();
        let mut shutting = false;
        loop {
            for _ in 0..MAX_CMDS_PER_TICK {
                match rx.try_recv() {
                    Ok(Cmd::Shutdown) => shutting = true,
                    Ok(cmd) => self.handle(cmd, &mut driver),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        shutting = true;
                        break;
                    }
                }
            }
            if shutting && driver.is_idle() && rx.is_empty() {
                break;
            }
            let what = if shutting {
                WaitFor::Completions
            } else {
                WaitFor::Anything
            };
            if let Err(e) = driver.wait(what, &rx, &self.shared.waker) {
                tracing::error!(error = %e, "waiting for disk completions failed");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            driver.reap(&mut completions);
            for (op, res) in completions.drain(..) {
                self.complete(op, res, &mut driver);
            }
        }
        driver.shutdown(&self.shared.waker);
    }

    fn handle(&mut self, cmd: Cmd, driver: &mut Driver) {
        match cmd {
            Cmd::Add {
                slot,
                storage,
                info,
                sink,
            } => {
                self.torrents.insert(
                    slot,
                    TorrentState {
                        storage,
                        info,
                        sink,
                    },
                );
            }
            Cmd::Remove { slot, done } => {
                self.removing.push((slot, done));
                self.check_removals();
            }
            Cmd::Hashed {
                slot,
                buf,
                verified,
            } => self.on_hashed(slot, buf, verified, driver),
            Cmd::Read {
                slot,
                piece,
                offset,
                len,
                reply,
            } => self.on_read(slot, piece, offset, len, reply, driver),
            Cmd::Sync { slot, all, done } => self.on_sync(slot, all, done, driver),
            Cmd::Shutdown => {}
        }
    }

    fn new_job(&mut self, job: Job) -> usize {
        let state = Some(JobState {
            job,
            remaining: 0,
            error: None,
        });
        match self.free_jobs.pop() {
            Some(id) => {
                self.jobs[id] = state;
                id
            }
            None => {
                self.jobs.push(state);
                self.jobs.len() - 1
            }
        }
    }

    /// Records how many ops a new job got (and a planning error); answers it if it has none.
    fn start_job(&mut self, id: usize, ops: u32, error: Option<StorageError>) {
        if let Some(st) = self.jobs[id].as_mut() {
            st.remaining = ops;
            st.error = st.error.take().or(error);
        }
        if ops == 0 {
            self.finish_job(id);
        }
    }

    fn on_hashed(
        &mut self,
        slot: u32,
        buf: Arc<SharedPiece>,
        verified: Option<VerifiedPiece>,
        driver: &mut Driver,
    ) {
        let (piece, len) = (buf.piece(), buf.piece_len());
        if !self.torrents.contains_key(&slot) {
            // Unreachable: a torrent is dropped only when nothing of it is outstanding.
            return self.release_bytes(len);
        }
        if verified.is_none() {
            drop(buf); // back to its pool before the engine hears of it
            self.release_bytes(len);
            if let Some(t) = self.torrents.get(&slot) {
                (t.sink)(DiskEvent::HashFailed { piece });
            }
            return self.answered(slot);
        }
        let job = self.new_job(Job::Write {
            slot,
            piece,
            len,
            verified,
        });
        let (ops, error) = match self.torrents.get(&slot) {
            Some(t) => plan_writes(&t.storage, &buf, job, driver),
            None => (0, Some(StorageError::UnknownTorrent)),
        };
        drop(buf); // the ops hold it now; it returns to its pool when the last one completes
        self.start_job(job, ops, error);
    }

    fn on_read(
        &mut self,
        slot: u32,
        piece: u32,
        offset: u32,
        len: u32,
        reply: ReadReply,
        driver: &mut Driver,
    ) {
        let Some(t) = self.torrents.get(&slot) else {
            return reply(Err(StorageError::UnknownTorrent));
        };
        let spans: Vec<Span> = match t.storage.spans(piece, offset, len) {
            Ok(spans) => spans.collect(),
            Err(e) => {
                reply(Err(e));
                return self.answered(slot);
            }
        };
        // Place the data so the first file's page-aligned parts are page-aligned in memory.
        let lead = spans
            .first()
            .map_or(0, |s| (s.file_offset % ALIGN as u64) as usize);
        let need = lead + len as usize;
        let buf = match self.read_pool.try_take() {
            Some(b) if b.len() >= need => b,
            _ => PooledBuf::new_unpooled(need),
        };
        let mut target = ReadTarget::new(buf);
        for s in spans.iter().filter(|s| s.padding) {
            target.zero(lead + s.buf_offset as usize, s.len as usize);
        }
        let target = Arc::new(target);
        let job = self.new_job(Job::Read {
            slot,
            target: Arc::clone(&target),
            start: lead,
            len: len as usize,
            reply,
        });
        let (ops, error) = match self.torrents.get(&slot) {
            Some(t) => plan_reads(&t.storage, &spans, &target, lead, job, driver),
            None => (0, Some(StorageError::UnknownTorrent)),
        };
        drop(target); // only the job and its ops may hold it, so the job can take it back
        self.start_job(job, ops, error);
    }

    /// Syncs the files written since their last sync (the part file included), or every open
    /// file if `all`. `take_dirty` runs for every file either way, so a failed sync marks its
    /// file dirty again in `complete`.
    fn on_sync(&mut self, slot: u32, all: bool, done: SyncReply, driver: &mut Driver) {
        let Some(t) = self.torrents.get(&slot) else {
            return done(Err(StorageError::UnknownTorrent));
        };
        let files: Vec<_> = t
            .storage
            .open_handles()
            .filter(|h| h.take_dirty() || all)
            .cloned()
            .collect();
        let job = self.new_job(Job::Sync { slot, done });
        let ops = files.len() as u32;
        for file in files {
            driver.push(Op::Fsync(FsyncOp { file, job }));
        }
        self.start_job(job, ops, None);
    }

    fn complete(&mut self, op: Op, res: i32, driver: &mut Driver) {
        let (job, error) = match op {
            Op::Write(mut w) => {
                if res < 0 && w.direct && res == -libc::EINVAL {
                    w.file.disable_direct();
                    w.direct = false;
                    return driver.push(Op::Write(w));
                }
                if res > 0 && (res as u32) < w.len {
                    w.advance(res as u32);
                    return driver.push(Op::Write(w));
                }
                let error = match res {
                    r if r < 0 => Some(StorageError::from_errno(IoOp::Write, &w.file.path, -r)),
                    0 => Some(StorageError::from_io(
                        IoOp::Write,
                        &w.file.path,
                        io::ErrorKind::WriteZero.into(),
                    )),
                    _ => {
                        w.file.mark_dirty();
                        None
                    }
                };
                (w.job, error)
            }
            Op::Read(mut r) => {
                if res < 0 && r.direct && res == -libc::EINVAL {
                    r.file.disable_direct();
                    r.direct = false;
                    return driver.push(Op::Read(r));
                }
                if res > 0 && (res as u32) < r.len {
                    r.advance(res as u32);
                    return driver.push(Op::Read(r));
                }
                let error = match res {
                    e if e < 0 => Some(StorageError::from_errno(IoOp::Read, &r.file.path, -e)),
                    0 => Some(StorageError::ShortFile {
                        path: r.file.path.clone(),
                        expected: r.file_offset + u64::from(r.len),
                        actual: r.file_offset,
                    }),
                    _ => None,
                };
                (r.job, error)
            }
            Op::Fsync(f) => {
                let error = (res < 0).then(|| {
                    f.file.mark_dirty();
                    StorageError::from_errno(IoOp::Sync, &f.file.path, -res)
                });
                (f.job, error)
            }
        };
        // The op (and its references to the buffer) is gone; now count it off its job.
        let Some(st) = self.jobs.get_mut(job).and_then(Option::as_mut) else {
            return;
        };
        st.remaining = st.remaining.saturating_sub(1);
        if st.error.is_none() {
            st.error = error;
        }
        if st.remaining == 0 {
            self.finish_job(job);
        }
    }

    fn finish_job(&mut self, id: usize) {
        let Some(st) = self.jobs.get_mut(id).and_then(Option::take) else {
            return;
        };
        self.free_jobs.push(id);
        match st.job {
            Job::Write {
                slot,
                piece,
                len,
                verified,
            } => {
                let event = match (st.error, verified) {
                    (None, Some(verified)) => DiskEvent::PieceWritten { piece, verified },
                    (Some(error), _) => DiskEvent::WriteFailed { piece, error },
                    (None, None) => DiskEvent::HashFailed { piece },
                };
                self.release_bytes(len);
                if let Some(t) = self.torrents.get(&slot) {
                    (t.sink)(event);
                }
                self.answered(slot);
            }
            Job::Read {
                slot,
                target,
                start,
                len,
                reply,
            } => {
                let result = match (st.error, Arc::into_inner(target)) {
                    (Some(e), _) => Err(e),
                    (None, Some(t)) => Ok(ReadBuf {
                        buf: t.into_buf(),
                        start,
                        len,
                    }),
                    (None, None) => Err(StorageError::BadLayout("read buffer still shared")),
                };
                reply(result);
                self.answered(slot);
            }
            Job::Sync { slot, done } => {
                done(st.error.map_or(Ok(()), Err));
                self.answered(slot);
            }
        }
    }

    /// A piece leaves the queue; done before its event, so the engine never sees a stale count.
    fn release_bytes(&self, len: u32) {
        self.shared
            .queued_bytes
            .fetch_sub(u64::from(len), Ordering::AcqRel);
    }

    fn answered(&mut self, slot: u32) {
        if let Some(t) = self.torrents.get(&slot) {
            t.info.outstanding.fetch_sub(1, Ordering::AcqRel);
        }
        self.check_removals();
    }

    fn check_removals(&mut self) {
        let torrents = &mut self.torrents;
        self.removing.retain(|(slot, done)| {
            let idle = torrents
                .get(slot)
                .is_none_or(|t| t.info.outstanding.load(Ordering::Acquire) == 0);
            if idle {
                torrents.remove(slot);
                let _ = done.send(());
            }
            !idle
        });
    }
}
