//! A counting global allocator: live heap bytes, for the load summary and allocation tests.
//!
//! The binary installs [`CountingAllocator`] as its `#[global_allocator]`; [`live_bytes`] then
//! tells how much heap is in use. Cost: two relaxed atomic adds per allocation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Heap bytes currently allocated through [`CountingAllocator`].
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Allocations made so far (never decreases).
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Whether a [`CountingAllocator`] is installed (set on its first allocation).
static INSTALLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Allocations made so far by this thread (a const initialiser and no destructor, so
    /// reading it inside the allocator never allocates).
    static THREAD_ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// The system allocator, counting live bytes and allocations.
pub struct CountingAllocator;

// SAFETY: every method forwards to `System` with the caller's layout unchanged, so `System`'s
// guarantees hold; the counters are plain atomics and never affect the returned memory.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout.size());
        // SAFETY: forwarded with the same layout, per GlobalAlloc's contract for the caller.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout.size());
        // SAFETY: forwarded with the same layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `System` with `layout` (all our allocations forward).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_alloc(new_size);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr`/`layout` come from a previous forwarded allocation.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn count_alloc(size: usize) {
    LIVE.fetch_add(size, Ordering::Relaxed);
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    INSTALLED.store(true, Ordering::Relaxed);
    // `try_with`: the thread's slot may already be gone while the thread exits.
    let _ = THREAD_ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

/// Live heap bytes, or `None` when the counting allocator is not installed in this program.
pub fn live_bytes() -> Option<usize> {
    INSTALLED
        .load(Ordering::Relaxed)
        .then(|| LIVE.load(Ordering::Relaxed))
}

/// Allocations made so far by this program (0 when the counting allocator is not installed).
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Allocations made so far by the calling thread: what a test of one code path counts, blind to
/// what other threads (a test harness's, say) allocate meanwhile.
pub fn thread_allocations() -> u64 {
    THREAD_ALLOCATIONS.with(Cell::get)
}
