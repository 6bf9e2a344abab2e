//! Hashing threads: take queued pieces in batches, hash what the piece's stream has not
//! covered yet (see `piece.rs`) from memory, pass the result to the disk thread.

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use super::{Cmd, HashJob, Shared};

/// Most pieces taken from the queue at once.
const HASH_BATCH: usize = 16;

pub(super) fn run(rx: Receiver<HashJob>, tx: Sender<Cmd>, shared: Arc<Shared>) {
    let mut batch = Vec::with_capacity(HASH_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        batch.extend(rx.try_iter().take(HASH_BATCH - 1));
        for job in batch.drain(..) {
            let verified = job.buf.verify(&job.expected);
            let cmd = Cmd::Hashed {
                slot: job.slot,
                buf: job.buf,
                verified,
            };
            if tx.send(cmd).is_err() {
                return;
            }
            shared.waker.wake();
        }
    }
}
