//! A pool of page-aligned buffers, allocated and touched once, reused forever.
//!
//! First touch of fresh memory is slow (page faults and zeroing), so every buffer is written
//! once at creation and then recycled: a [`PooledBuf`] goes back to its pool when dropped.
//! Buffers are aligned to [`ALIGN`] (4096) bytes, so they can be used for O_DIRECT IO.
//!
//! Invariants: the pool owns one allocation of `count * buf_len` bytes; buffer `i` is the
//! region `[i * buf_len, (i + 1) * buf_len)`; an index is either in the free list or held by
//! exactly one [`PooledBuf`], never both; the allocation outlives every `PooledBuf` (each holds
//! an `Arc` to the pool).

use std::alloc::{self, Layout};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, PoisonError};

/// Alignment of every buffer, enough for O_DIRECT on 512-byte and 4 KiB sector devices.
pub const ALIGN: usize = 4096;

/// A fixed set of equally sized, page-aligned buffers.
pub struct BufferPool {
    base: NonNull<u8>,
    /// `None` when the pool holds no bytes (nothing was allocated).
    layout: Option<Layout>,
    buf_len: usize,
    count: usize,
    free: Mutex<Vec<u32>>,
}

// SAFETY: the pool's memory is only reached through `PooledBuf`s, each of which has exclusive
// use of a distinct region; the free list is behind a mutex.
unsafe impl Send for BufferPool {}
// SAFETY: as above; `&BufferPool` only allows taking buffers and reading counters.
unsafe impl Sync for BufferPool {}

/// Why a pool could not be created.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum PoolError {
    /// `buf_len * count` does not fit in memory.
    #[error("pool of {count} buffers of {buf_len} bytes is too large")]
    TooLarge {
        /// Length asked for each buffer.
        buf_len: usize,
        /// Number of buffers.
        count: usize,
    },
}

impl BufferPool {
    /// Creates `count` buffers of `buf_len` bytes (rounded up to a multiple of [`ALIGN`]),
    /// touching all their memory now.
    ///
    /// # Panics
    /// If the size overflows or the allocation fails; see [`BufferPool::try_new`].
    pub fn new(buf_len: usize, count: usize) -> Arc<BufferPool> {
        match Self::try_new(buf_len, count) {
            Ok(pool) => pool,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`BufferPool::new`], returning an error for sizes that cannot be allocated.
    pub fn try_new(buf_len: usize, count: usize) -> Result<Arc<BufferPool>, PoolError> {
        let too_large = PoolError::TooLarge { buf_len, count };
        let rounded = buf_len
            .max(1)
            .checked_next_multiple_of(ALIGN)
            .ok_or(too_large.clone())?;
        let total = rounded.checked_mul(count).ok_or(too_large.clone())?;
        let count_u32 = u32::try_from(count).map_err(|_| too_large.clone())?;
        let (base, layout) = if total == 0 {
            (NonNull::<u8>::dangling(), None)
        } else {
            let layout = Layout::from_size_align(total, ALIGN).map_err(|_| too_large)?;
            // SAFETY: `layout` has a non-zero size.
            let ptr = unsafe { alloc::alloc(layout) };
            let Some(base) = NonNull::new(ptr) else {
                alloc::handle_alloc_error(layout)
            };
            // SAFETY: `base` points to `total` freshly allocated bytes. Writing them now is
            // the pre-touch: the page faults happen here, once, not on the data path.
            unsafe { base.as_ptr().write_bytes(0, total) };
            (base, Some(layout))
        };
        Ok(Arc::new(BufferPool {
            base,
            layout,
            buf_len: rounded,
            count,
            free: Mutex::new((0..count_u32).rev().collect()),
        }))
    }

    /// Takes a free buffer, or `None` if all are in use.
    pub fn try_take(self: &Arc<Self>) -> Option<PooledBuf> {
        let idx = self.free_list().pop()?;
        // SAFETY: idx < count, so the offset stays inside the allocation.
        let ptr = unsafe { self.base.add(idx as usize * self.buf_len) };
        Some(PooledBuf {
            ptr,
            len: self.buf_len,
            home: Home::Pool {
                pool: Arc::clone(self),
                idx,
            },
        })
    }

    /// Number of buffers currently free.
    pub fn available(&self) -> usize {
        self.free_list().len()
    }

    /// Total bytes of all buffers, free or not.
    pub fn capacity_bytes(&self) -> usize {
        self.buf_len * self.count
    }

    /// Length of each buffer (the requested length rounded up to [`ALIGN`]).
    pub fn buf_len(&self) -> usize {
        self.buf_len
    }

    /// Number of buffers.
    pub fn count(&self) -> usize {
        self.count
    }

    fn free_list(&self) -> std::sync::MutexGuard<'_, Vec<u32>> {
        // A panic while holding the lock cannot leave the Vec inconsistent (push/pop only).
        self.free.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for BufferPool {
    fn drop(&mut self) {
        if let Some(layout) = self.layout {
            // SAFETY: allocated in `try_new` with this layout; no PooledBuf is alive, since
            // each holds an Arc to the pool.
            unsafe { alloc::dealloc(self.base.as_ptr(), layout) };
        }
    }
}

enum Home {
    Pool { pool: Arc<BufferPool>, idx: u32 },
    Owned(Option<Layout>),
}

/// A page-aligned buffer, exclusively owned; returns to its pool on drop.
pub struct PooledBuf {
    ptr: NonNull<u8>,
    len: usize,
    home: Home,
}

// SAFETY: a PooledBuf has exclusive use of its region, like a Box<[u8]>.
unsafe impl Send for PooledBuf {}
// SAFETY: shared access only hands out `&[u8]`.
unsafe impl Sync for PooledBuf {}

impl PooledBuf {
    /// A stand-alone aligned buffer of `len` bytes (rounded up to [`ALIGN`]) that is freed,
    /// not pooled, on drop. For the rare overflow case; the data path uses a pool.
    pub fn new_unpooled(len: usize) -> PooledBuf {
        let rounded = len.max(1).next_multiple_of(ALIGN);
        let layout = match Layout::from_size_align(rounded, ALIGN) {
            Ok(l) => l,
            Err(_) => panic!("buffer of {len} bytes is too large"),
        };
        // SAFETY: non-zero size; zeroed so the contents are initialised bytes.
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(ptr) else {
            alloc::handle_alloc_error(layout)
        };
        PooledBuf {
            ptr,
            len: rounded,
            home: Home::Owned(Some(layout)),
        }
    }

    /// Length in bytes (a multiple of [`ALIGN`]).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false (buffers are at least [`ALIGN`] bytes); present for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole buffer.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr..ptr+len is initialised memory owned exclusively by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The whole buffer, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` guarantees no other reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Raw pointer to the start, for code that writes disjoint parts through `&self`
    /// (`SharedPiece`) or hands the memory to the kernel (reads). Callers uphold exclusivity.
    pub(crate) fn raw(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        match &mut self.home {
            Home::Pool { pool, idx } => pool.free_list().push(*idx),
            Home::Owned(layout) => {
                if let Some(layout) = layout.take() {
                    // SAFETY: allocated in `new_unpooled` with this layout, freed once.
                    unsafe { alloc::dealloc(self.ptr.as_ptr(), layout) };
                }
            }
        }
    }
}

impl std::fmt::Debug for PooledBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBuf").field("len", &self.len).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_distinct_and_recycled() {
        let pool = BufferPool::new(5000, 3);
        assert_eq!(pool.buf_len(), 8192);
        assert_eq!(pool.capacity_bytes(), 3 * 8192);
        let mut bufs: Vec<_> = (0..3).map(|_| pool.try_take().unwrap()).collect();
        assert!(pool.try_take().is_none());
        assert_eq!(pool.available(), 0);
        let mut starts: Vec<usize> = bufs.iter().map(|b| b.raw() as usize).collect();
        assert!(starts.iter().all(|s| s % ALIGN == 0));
        starts.sort();
        starts.dedup();
        assert_eq!(starts.len(), 3);
        bufs[1].as_mut_slice()[8191] = 9;
        bufs.pop();
        assert_eq!(pool.available(), 1);
        let again = pool.try_take().unwrap();
        assert_eq!(again.len(), 8192);
        drop(bufs);
        drop(again);
        assert_eq!(pool.available(), 3);
    }

    #[test]
    fn empty_and_oversized_pools() {
        let pool = BufferPool::new(4096, 0);
        assert!(pool.try_take().is_none());
        assert_eq!(pool.capacity_bytes(), 0);
        assert!(BufferPool::try_new(usize::MAX / 2, 4).is_err());
        assert!(BufferPool::try_new(usize::MAX, 1).is_err());
    }

    #[test]
    fn pool_outlives_its_handle() {
        let pool = BufferPool::new(4096, 1);
        let mut buf = pool.try_take().unwrap();
        drop(pool);
        buf.as_mut_slice().fill(3);
        assert!(buf.as_slice().iter().all(|&b| b == 3));
    }

    #[test]
    fn unpooled_buffers_are_aligned_and_zeroed() {
        let b = PooledBuf::new_unpooled(10);
        assert_eq!(b.len(), ALIGN);
        assert_eq!(b.raw() as usize % ALIGN, 0);
        assert!(b.as_slice().iter().all(|&x| x == 0));
    }
}
