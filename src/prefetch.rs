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
    for i in line_starts(bytes, offset, count) {
        line(&bytes[i]);
    }
}

/// Loads one byte of each of `count` cache lines of `bytes` from `offset` on (those inside
/// `bytes`): independent loads the CPU issues in parallel, so the lines are cached by the time a
/// parser walks them. Unlike [`lines`], the loads are real: they occupy the CPU until they land.
#[inline]
pub fn touch(bytes: &[u8], offset: u64, count: usize) {
    let mut sum = 0u8;
    for i in line_starts(bytes, offset, count) {
        sum = sum.wrapping_add(bytes[i]);
    }
    std::hint::black_box(sum);
}

/// Where in `bytes` each of `count` cache lines from `offset` on starts (64 bytes apart), as far
/// as `bytes` reaches.
fn line_starts(
    bytes: &[u8],
    offset: u64,
    count: usize,
) -> std::iter::StepBy<std::ops::Range<usize>> {
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let end = start
        .saturating_add(count.saturating_mul(64))
        .min(bytes.len());
    (start..end).step_by(64)
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
            touch(&bytes, offset, count);
        }
        line(&bytes[3]);
        touch(&[], 0, 8);
        assert_eq!(bytes, (0..=255).collect::<Vec<u8>>());
    }

    #[test]
    fn the_lines_are_the_first_byte_of_each_64_within_the_slice() {
        let bytes = vec![7u8; 300];
        let offsets =
            |offset, count| -> Vec<usize> { line_starts(&bytes, offset, count).collect() };
        assert_eq!(offsets(0, 8), [0, 64, 128, 192, 256]);
        assert_eq!(offsets(100, 2), [100, 164]);
        assert_eq!(offsets(299, 8), [299]);
        assert!(offsets(300, 8).is_empty());
        assert!(offsets(u64::MAX, 8).is_empty());
        assert!(offsets(0, 0).is_empty());
    }
}
