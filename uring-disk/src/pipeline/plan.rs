//! Planning a piece write or a read: one op per file part. Writes are split so that
//! page-aligned middles go O_DIRECT and unaligned heads and tails go through the page cache;
//! reads (for seeding) always go through the page cache.

use std::sync::Arc;

use crate::driver::Driver;
use crate::error::StorageError;
use crate::layout::Span;
use crate::ops::read::{ReadOp, ReadTarget};
use crate::ops::write::WriteOp;
use crate::ops::{split_aligned, Op};
use crate::piece::SharedPiece;
use crate::storage::Storage;

/// Pushes the writes of a verified piece: per file span (padding skipped), an unaligned head,
/// an O_DIRECT middle and an unaligned tail. Returns the op count and a planning error.
pub(super) fn plan_writes(
    storage: &Storage,
    buf: &Arc<SharedPiece>,
    job: usize,
    driver: &mut Driver,
) -> (u32, Option<StorageError>) {
    let spans = match storage.spans(buf.piece(), 0, buf.piece_len()) {
        Ok(s) => s,
        Err(e) => return (0, Some(e)),
    };
    let mut ops = 0;
    for s in spans.filter(|s| !s.padding) {
        let Some(file) = storage.handle(s.file) else {
            continue;
        };
        let addr = buf.data_ptr() as usize + s.buf_offset as usize;
        for p in split_aligned(addr, s.file_offset, s.len, file.direct().is_some()) {
            let op = WriteOp::new(
                Arc::clone(file),
                p.direct,
                Arc::clone(buf),
                s.buf_offset + p.offset,
                p.len,
                s.file_offset + u64::from(p.offset),
                job,
            );
            match op {
                Some(op) => driver.push(Op::Write(op)),
                None => {
                    return (
                        ops,
                        Some(StorageError::BadLayout("write outside its piece")),
                    )
                }
            }
            ops += 1;
        }
    }
    (ops, None)
}

/// Pushes the reads of `spans` into `target` (data starting at `lead`): one buffered read per
/// file part.
pub(super) fn plan_reads(
    storage: &Storage,
    spans: &[Span],
    target: &Arc<ReadTarget>,
    lead: usize,
    job: usize,
    driver: &mut Driver,
) -> (u32, Option<StorageError>) {
    let mut ops = 0;
    for s in spans.iter().filter(|s| !s.padding) {
        let Some(file) = storage.handle(s.file) else {
            continue;
        };
        let at = lead + s.buf_offset as usize;
        // Reads for seeding go through the page cache (never O_DIRECT): a block asked for is
        // usually cached (just written, or read ahead), and a 16 KiB O_DIRECT read per block
        // costs a device round trip and page pinning. Measured: seeder CPU per GiB 0.70 vs
        // 0.86-1.36 with O_DIRECT, and the download 1.6x faster (4 GiB, 4 seeders).
        for p in split_aligned(target.addr() + at, s.file_offset, s.len, false) {
            let op = ReadOp::new(
                Arc::clone(file),
                p.direct,
                Arc::clone(target),
                (at as u32) + p.offset,
                p.len,
                s.file_offset + u64::from(p.offset),
                job,
            );
            match op {
                Some(op) => driver.push(Op::Read(op)),
                None => {
                    return (
                        ops,
                        Some(StorageError::BadLayout("read outside its buffer")),
                    )
                }
            }
            ops += 1;
        }
    }
    (ops, None)
}
