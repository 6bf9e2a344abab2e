//! A provided-buffer ring: one pre-touched slab of equal buffers lent to the kernel, which
//! picks one per receive completion (see the ownership notes in `uring.rs`).
#![allow(unsafe_code)]

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{types, IoUring};

/// A provided-buffer ring (kernel 5.19+): `count` buffers of `size` bytes.
pub(super) struct BufRing {
    bgid: u16,
    entries: *mut types::BufRingEntry,
    entries_layout: std::alloc::Layout,
    slab: Vec<u8>,
    size: usize,
    count: u16,
    tail: u16,
}

impl BufRing {
    pub(super) fn new(ring: &IoUring, bgid: u16, count: u16, size: usize) -> io::Result<BufRing> {
        assert!(
            count.is_power_of_two(),
            "INVARIANT: buffer ring size is a power of two"
        );
        let layout = std::alloc::Layout::from_size_align(
            count as usize * std::mem::size_of::<types::BufRingEntry>(),
            4096,
        )
        .map_err(|_| io::Error::other("buffer ring layout"))?;
        // SAFETY: the layout has a non-zero size; the pointer is checked for null below.
        let entries = unsafe { std::alloc::alloc_zeroed(layout) } as *mut types::BufRingEntry;
        if entries.is_null() {
            return Err(io::Error::other("out of memory for the buffer ring"));
        }
        // Pre-touch the slab once: first touch of fresh memory is slow on our machines.
        let slab = vec![0x5au8; count as usize * size];
        let mut br = BufRing {
            bgid,
            entries,
            entries_layout: layout,
            slab,
            size,
            count,
            tail: 0,
        };
        // SAFETY: `entries` points to `count` zeroed, page-aligned entries that stay allocated
        // until this BufRing is dropped, which unregisters the group first (see Drop).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(entries as u64, count, bgid, 0)?;
        }
        for bid in 0..count {
            br.push(bid);
        }
        br.publish();
        Ok(br)
    }

    /// Hands buffer `bid` back to the kernel (visible after `publish`).
    pub(super) fn push(&mut self, bid: u16) {
        let idx = (self.tail & (self.count - 1)) as usize;
        let addr = self.slab.as_ptr() as u64 + bid as u64 * self.size as u64;
        // SAFETY: idx < count, so the entry lies inside the allocation; the kernel reads only
        // entries between its head and the published tail, and this one is past the tail.
        let e = unsafe { &mut *self.entries.add(idx) };
        e.set_addr(addr);
        e.set_len(self.size as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    pub(super) fn publish(&self) {
        // SAFETY: the tail field lives inside entry 0 of our allocation and is only written by
        // us; the kernel reads it, so the store must be atomic with release ordering.
        unsafe {
            let tail = types::BufRingEntry::tail(self.entries) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    /// Buffer `bid`'s first `len` bytes, lent mutably (a transport decrypts in place): the
    /// kernel filled it and does not write it again until it is pushed back.
    pub(super) fn get_mut(&mut self, bid: u16, len: usize) -> &mut [u8] {
        let start = bid as usize * self.size;
        &mut self.slab[start..start + len.min(self.size)]
    }
}

impl BufRing {
    /// The buffer group id the kernel knows this ring by.
    pub(super) fn bgid(&self) -> u16 {
        self.bgid
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; the ring that used it is gone or has
        // unregistered the group (UringBackend drops the ring before its BufRing).
        unsafe { std::alloc::dealloc(self.entries as *mut u8, self.entries_layout) };
    }
}
