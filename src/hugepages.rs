//! Large random-access tables (the replay index, the per-flow entries) on transparent huge pages
//! where the kernel offers them, so a lookup in a recording of millions of flows costs fewer TLB
//! misses. Advice only: contents never change, and where THP is off nothing happens.

/// Tables smaller than this (two huge pages) are left alone: they gain little and would only
/// take huge pages from the bigger ones.
const WORTH_IT: usize = 4 << 20;

/// A vector of `len` copies of `value` whose buffer was advised for huge pages before it was
/// first written (so the kernel can back it with huge pages at fault time).
pub fn filled_vec<T: Clone>(len: usize, value: T) -> Vec<T> {
    let mut v = Vec::with_capacity(len);
    advise(v.as_ptr(), len);
    v.resize(len, value);
    v
}

/// A copy of `items` in a buffer advised for huge pages (see [`filled_vec`]).
pub fn copied_vec<T: Clone>(items: &[T]) -> Vec<T> {
    let mut v = Vec::with_capacity(items.len());
    advise(v.as_ptr(), items.len());
    v.extend_from_slice(items);
    v
}

/// Advises `len` elements of allocated capacity at `buffer` for huge pages.
fn advise<T>(buffer: *const T, len: usize) {
    let bytes = len * std::mem::size_of::<T>();
    if bytes < WORTH_IT {
        return;
    }
    const HUGE: usize = 2 << 20;
    let start = buffer as usize;
    let aligned = start.next_multiple_of(HUGE);
    let end = (start + bytes) & !(HUGE - 1);
    if end <= aligned {
        return;
    }
    // SAFETY: callers pass a vector's buffer with capacity for `len` elements, so [aligned, end)
    // lies inside that allocation; MADV_HUGEPAGE only changes how the kernel backs those pages,
    // never their contents, and a failure (THP disabled) is harmless, so the result is ignored.
    unsafe {
        libc::madvise(
            aligned as *mut libc::c_void,
            end - aligned,
            libc::MADV_HUGEPAGE,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_hold_exactly_what_was_asked_below_and_above_the_advice_threshold() {
        for len in [0, 1, 1000, (WORTH_IT / 8) * 3 + 5] {
            let filled = filled_vec(len, 7u64);
            assert_eq!(filled.len(), len);
            assert!(filled.iter().all(|&v| v == 7));
            let source: Vec<u64> = (0..len as u64).collect();
            assert_eq!(copied_vec(&source), source);
        }
    }
}
