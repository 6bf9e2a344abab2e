//! A fixed-size bitmap of atomic words, used as an index of pieces in a given state.
//!
//! The bitmaps are hints kept in step with the piece words by one rule (see
//! [`super::Picker`]'s `publish`): a bit may be set while its predicate is false (readers re-check
//! the piece word), but once the picker is quiescent a piece whose predicate holds has its bit set.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

pub(super) struct AtomicBits {
    words: Box<[AtomicU64]>,
    len: usize,
}

impl AtomicBits {
    pub(super) fn new(len: usize) -> Self {
        AtomicBits {
            words: (0..len.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            len,
        }
    }

    pub(super) fn set(&self, i: usize) {
        if let Some(w) = self.words.get(i / 64) {
            w.fetch_or(1 << (i % 64), SeqCst);
        }
    }

    pub(super) fn clear(&self, i: usize) {
        if let Some(w) = self.words.get(i / 64) {
            w.fetch_and(!(1 << (i % 64)), SeqCst);
        }
    }

    pub(super) fn num_words(&self) -> usize {
        self.words.len()
    }

    /// The bits of pieces `64 * wi .. 64 * wi + 64` (bit `i` is piece `64 * wi + i`).
    pub(super) fn load_word(&self, wi: usize) -> u64 {
        self.words.get(wi).map_or(0, |w| w.load(SeqCst))
    }

    /// Calls `f` on every set bit, starting at `start` and wrapping around, until `f` returns
    /// false. Bits changed during the walk may or may not be seen.
    pub(super) fn for_each_from(&self, start: usize, mut f: impl FnMut(usize) -> bool) {
        let n = self.words.len();
        if n == 0 {
            return;
        }
        let start = if start < self.len { start } else { 0 };
        let (sw, sb) = (start / 64, start % 64);
        let high = u64::MAX << sb;
        // The first word from `start`, the other words in order, then the first word's low bits.
        for k in 0..=n {
            let wi = (sw + k) % n;
            let mut w = self.words[wi].load(SeqCst);
            if k == 0 {
                w &= high;
            } else if k == n {
                w &= !high;
            }
            while w != 0 {
                let bit = w.trailing_zeros() as usize;
                w &= w - 1;
                if !f(wi * 64 + bit) {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(b: &AtomicBits, start: usize) -> Vec<usize> {
        let mut v = Vec::new();
        b.for_each_from(start, |i| {
            v.push(i);
            true
        });
        v
    }

    #[test]
    fn walk_wraps_around_once() {
        let b = AtomicBits::new(130);
        for i in [0, 5, 63, 64, 100, 129] {
            b.set(i);
        }
        assert_eq!(collect(&b, 0), vec![0, 5, 63, 64, 100, 129]);
        assert_eq!(collect(&b, 6), vec![63, 64, 100, 129, 0, 5]);
        assert_eq!(collect(&b, 100), vec![100, 129, 0, 5, 63, 64]);
        assert_eq!(
            collect(&b, 9999),
            collect(&b, 0),
            "out-of-range start wraps to 0"
        );
        b.clear(63);
        b.clear(1000);
        assert_eq!(collect(&b, 64), vec![64, 100, 129, 0, 5]);
        let mut first = None;
        b.for_each_from(0, |i| {
            first = Some(i);
            false
        });
        assert_eq!(first, Some(0));
    }

    #[test]
    fn empty_bitmap() {
        let b = AtomicBits::new(0);
        b.set(3);
        assert!(collect(&b, 0).is_empty());
    }
}
