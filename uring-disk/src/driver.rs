//! Drives disk operations, through io_uring or, where that is unavailable, blocking syscalls.
//!
//! The driver owns every [`Op`] from [`Driver::push`] until its completion is handed back by
//! [`Driver::reap`]: the kernel may use an op's buffer and descriptor all that time, and the op
//! keeps both alive. An op never leaves the driver before its completion, even at shutdown.
//!
//! The io_uring backend runs on one thread (SINGLE_ISSUER and DEFER_TASKRUN where the kernel
//! has them) with at most `entries - 1` ops in flight; the last slot is for a read on an
//! eventfd, the [`Waker`], that other threads write to when they queue a command for a
//! sleeping disk thread.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{fence, AtomicBool, Ordering};

use crossbeam_channel::{Receiver, Select};
use io_uring::{opcode, types, IoUring};

use crate::ops::Op;

/// Which backend the disk thread uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// io_uring.
    Uring,
    /// Blocking pwrite/pread/fdatasync on the disk thread.
    Blocking,
}

/// Wakes the disk thread when it sleeps in the ring with nothing to do.
pub(crate) struct Waker {
    efd: OwnedFd,
    sleeping: AtomicBool,
}

impl Waker {
    pub(crate) fn new() -> io::Result<Waker> {
        // SAFETY: plain syscall; a non-negative result is a new descriptor we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh, valid descriptor owned by nothing else.
        let efd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Waker {
            efd,
            sleeping: AtomicBool::new(false),
        })
    }

    /// Call after queueing a command. Writes the eventfd only if the disk thread may be asleep.
    pub(crate) fn wake(&self) {
        // Pairs with the fence in `UringDriver::wait`: either the disk thread sees the command
        // we queued, or we see it sleeping and write the eventfd.
        fence(Ordering::SeqCst);
        if self.sleeping.swap(false, Ordering::SeqCst) {
            self.signal();
        }
    }

    fn signal(&self) {
        let one = 1u64;
        // SAFETY: writes 8 bytes from a live local to an eventfd we own. An error (counter
        // overflow) cannot happen with a reader draining it, and would only delay a wake.
        let _ = unsafe { libc::write(self.efd.as_raw_fd(), (&raw const one).cast(), 8) };
    }
}

/// What the disk thread waits for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitFor {
    /// A completion or a new command.
    Anything,
    /// A completion only (shutting down); returns at once if nothing is in flight.
    Completions,
}

/// Completion user data reserved for the waker's eventfd read.
const WAKE_ID: u64 = u64::MAX;

pub(crate) struct Driver {
    backend: BackendState,
    ops: Vec<Option<Op>>,
    free: Vec<usize>,
    /// Pushed but not yet handed to the kernel (ring full) or run (blocking).
    queued: VecDeque<usize>,
}

enum BackendState {
    Uring(Box<UringState>),
    Blocking { done: Vec<(usize, i32)> },
}

struct UringState {
    ring: IoUring,
    max_in_flight: usize,
    in_flight: usize,
    wake_armed: bool,
    /// Target of the eventfd read; boxed so its address is stable while the read is in flight.
    wake_buf: Box<u64>,
}

impl Driver {
    /// An io_uring driver with `entries` submission slots (at least 2).
    pub(crate) fn uring(entries: u32) -> io::Result<Driver> {
        let entries = entries.max(2);
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(entries)
            .or_else(|_| IoUring::new(entries))?;
        let state = UringState {
            ring,
            max_in_flight: entries as usize - 1,
            in_flight: 0,
            wake_armed: false,
            wake_buf: Box::new(0),
        };
        Ok(Driver::with(BackendState::Uring(Box::new(state))))
    }

    /// The blocking fallback.
    pub(crate) fn blocking() -> Driver {
        Driver::with(BackendState::Blocking { done: Vec::new() })
    }

    fn with(backend: BackendState) -> Driver {
        Driver {
            backend,
            ops: Vec::new(),
            free: Vec::new(),
            queued: VecDeque::new(),
        }
    }

    pub(crate) fn backend(&self) -> Backend {
        match self.backend {
            BackendState::Uring(_) => Backend::Uring,
            BackendState::Blocking { .. } => Backend::Blocking,
        }
    }

    /// True when no op is queued, in flight or waiting to be reaped.
    pub(crate) fn is_idle(&self) -> bool {
        self.free.len() == self.ops.len()
    }

    /// Takes ownership of `op`; it is started by the next [`Driver::wait`].
    pub(crate) fn push(&mut self, op: Op) {
        let id = match self.free.pop() {
            Some(id) => {
                self.ops[id] = Some(op);
                id
            }
            None => {
                self.ops.push(Some(op));
                self.ops.len() - 1
            }
        };
        self.queued.push_back(id);
    }

    /// Starts queued ops and waits as `what` says. `rx` is the command channel, watched so
    /// that a new command ends the wait.
    pub(crate) fn wait<T>(
        &mut self,
        what: WaitFor,
        rx: &Receiver<T>,
        waker: &Waker,
    ) -> io::Result<()> {
        match &mut self.backend {
            BackendState::Uring(u) => u.wait(what, &self.ops, &mut self.queued, rx, waker),
            BackendState::Blocking { done } => {
                while let Some(id) = self.queued.pop_front() {
                    // INVARIANT: queued ids always hold an op.
                    let res = self.ops[id].as_ref().map_or(-libc::EIO, Op::run_blocking);
                    done.push((id, res));
                }
                if done.is_empty() && what == WaitFor::Anything {
                    // Nothing in flight: sleep until a command arrives (or the channel closes).
                    let mut sel = Select::new();
                    sel.recv(rx);
                    sel.ready();
                }
                Ok(())
            }
        }
    }

    /// Hands back every completed op with its result (bytes, or a negative errno).
    pub(crate) fn reap(&mut self, out: &mut Vec<(Op, i32)>) {
        let mut take = |id: usize, res: i32| {
            if let Some(op) = self.ops.get_mut(id).and_then(Option::take) {
                self.free.push(id);
                out.push((op, res));
            }
        };
        match &mut self.backend {
            BackendState::Uring(u) => {
                let mut wake_done = false;
                for cqe in u.ring.completion() {
                    if cqe.user_data() == WAKE_ID {
                        wake_done = true;
                        continue;
                    }
                    u.in_flight -= 1;
                    // INVARIANT: user data is an op id (usize) set in `UringState::wait`.
                    take(cqe.user_data() as usize, cqe.result());
                }
                if wake_done {
                    u.wake_armed = false;
                }
            }
            BackendState::Blocking { done } => {
                for (id, res) in done.drain(..) {
                    take(id, res);
                }
            }
        }
    }

    /// Ends the eventfd read so no kernel write into `wake_buf` can outlive the driver.
    /// Called when no other op is in flight.
    pub(crate) fn shutdown(&mut self, waker: &Waker) {
        if let BackendState::Uring(u) = &mut self.backend {
            while u.wake_armed {
                waker.signal();
                if u.ring.submit_and_wait(1).is_err() {
                    break;
                }
                for cqe in u.ring.completion() {
                    if cqe.user_data() == WAKE_ID {
                        u.wake_armed = false;
                    }
                }
            }
            if u.wake_armed {
                // The ring could not be waited on: leak the 8-byte target rather than risk
                // a write into freed memory.
                std::mem::forget(std::mem::replace(&mut u.wake_buf, Box::new(0)));
            }
        }
    }
}

impl UringState {
    fn wait<T>(
        &mut self,
        what: WaitFor,
        ops: &[Option<Op>],
        queued: &mut VecDeque<usize>,
        rx: &Receiver<T>,
        waker: &Waker,
    ) -> io::Result<()> {
        self.fill(ops, queued);
        let block = match what {
            WaitFor::Completions => self.in_flight > 0,
            WaitFor::Anything => {
                self.arm_waker(waker);
                waker.sleeping.store(true, Ordering::SeqCst);
                fence(Ordering::SeqCst);
                rx.is_empty()
            }
        };
        let res = if block {
            self.ring.submit_and_wait(1)
        } else {
            self.submit_and_reap_now()
        };
        waker.sleeping.store(false, Ordering::SeqCst);
        match res {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR | libc::EBUSY | libc::EAGAIN | libc::ETIME)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Submits without sleeping, but still collects finished completions: with DEFER_TASKRUN
    /// they are only posted by an enter that asks for events, so a plain submit under a steady
    /// stream of commands would starve them. A zero timeout asks for events without waiting.
    fn submit_and_reap_now(&mut self) -> io::Result<usize> {
        if !self.ring.params().is_feature_ext_arg() {
            return self.ring.submit();
        }
        let zero = types::Timespec::new();
        let args = types::SubmitArgs::new().timespec(&zero);
        self.ring.submitter().submit_with_args(1, &args)
    }

    /// Moves queued ops into the submission queue while there is room.
    fn fill(&mut self, ops: &[Option<Op>], queued: &mut VecDeque<usize>) {
        while self.in_flight < self.max_in_flight {
            let Some(&id) = queued.front() else { break };
            let Some(op) = ops[id].as_ref() else {
                queued.pop_front();
                continue;
            };
            let entry = op.entry().user_data(id as u64);
            // SAFETY: the op stays in the driver's table (with the fd and buffer it owns) until
            // `reap` sees this completion; the entry points only into memory the op keeps alive.
            if unsafe { self.ring.submission().push(&entry) }.is_err() {
                break;
            }
            queued.pop_front();
            self.in_flight += 1;
        }
    }

    fn arm_waker(&mut self, waker: &Waker) {
        if self.wake_armed {
            return;
        }
        let entry = opcode::Read::new(
            types::Fd(waker.efd.as_raw_fd()),
            (&raw mut *self.wake_buf).cast(),
            8,
        )
        .build()
        .user_data(WAKE_ID);
        // SAFETY: `wake_buf` is boxed (stable address) and kept until the read completes
        // (`shutdown` waits for it); the eventfd lives in the Waker, which outlives the ring.
        if unsafe { self.ring.submission().push(&entry) }.is_ok() {
            self.wake_armed = true;
        }
    }
}
