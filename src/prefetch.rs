//! Software prefetch: asks the CPU to start loading a cache line that a later step reads, so
//! that the memory loads of several requests overlap instead of stalling one after another (a
//! walk over a recording larger than the caches misses on every request). A hint only: what any
//! load returns is unchanged, and where the architecture has no prefetch nothing happens.

/// Starts loading the cache line that holds `value`.
#[inline(always)]
pub fn line<T>(value: &T) {
    at((value as *const T).cast());
}

/// Starts loading `count` cache lines of `bytes` from `offset` on (those inside `bytes`).
#[inline]
pub fn lines(bytes: &[u8], offset: u64, count: usize) {
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let end = start
        .saturating_add(count.saturating_mul(64))
        .min(bytes.len());
    let mut at_line = start;
    while at_line < end {
        at(bytes[at_line..].as_ptr());
        at_line += 64;
    }
}

#[inline(always)]
fn at(ptr: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 neither faults nor changes architectural state, whatever the address
    // (callers pass addresses inside live values anyway); SSE is part of x86_64's baseline.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(ptr.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_past_a_slices_end_are_clamped_not_a_panic() {
        let bytes: Vec<u8> = (0..=255).collect();
        for (offset, count) in [(0, 0), (0, 1), (10, 3), (255, 9), (256, 1), (u64::MAX, 2)] {
            lines(&bytes, offset, count);
        }
        line(&bytes[3]);
        assert_eq!(bytes, (0..=255).collect::<Vec<u8>>());
    }
}
