//! The test binary's global allocator. A binary has one, so the two tests that watch the heap
//! share it: `alloc` counts the allocations its own thread makes, `hygiene` scans the blocks its
//! own thread frees for a canary key's bytes. Both watch the calling thread only, so the tests
//! that run alongside on other threads neither add to the count nor go through the scan.
//!
//! Every block is handed out zeroed, so that each byte of a block has been written before the
//! scan reads it. Reallocation is `GlobalAlloc`'s default (allocate, copy, free): every block left
//! behind by a move passes through `dealloc`, and a reallocation counts as an allocation. Neither
//! the count nor the scan allocates.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

struct Watching;

thread_local! {
    /// The allocations this thread has made.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    /// Whether the blocks this thread frees are scanned for the needles.
    static SCANNING: Cell<bool> = const { Cell::new(false) };
}

/// The byte strings the scan looks for, set once; and how many freed blocks held each.
static NEEDLES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
const MAX_NEEDLES: usize = 8;
static FOUND: [AtomicUsize; MAX_NEEDLES] = [const { AtomicUsize::new(0) }; MAX_NEEDLES];

// SAFETY: every block comes from and returns to `System` with the caller's layout; `dealloc`
// only reads the block (`layout.size()` bytes at `ptr`, which the caller still owns until
// `System.dealloc` returns) before handing it back. The thread-locals are `const`-initialized
// `Cell`s without a destructor: reaching them never allocates, and `try_with` skips a thread
// that is being torn down.
unsafe impl GlobalAlloc for Watching {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if SCANNING.try_with(Cell::get).unwrap_or(false) {
            if let Some(needles) = NEEDLES.get() {
                // SAFETY: `ptr` is a live block of `layout.size()` bytes (see above).
                let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
                for (needle, found) in needles.iter().zip(&FOUND) {
                    if contains(block, needle) {
                        found.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Watching = Watching;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.first().is_some_and(|&first| {
        haystack
            .windows(needle.len())
            .any(|w| w[0] == first && w == needle)
    })
}

/// How many allocations (and reallocations) the calling thread has made.
pub fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

/// Sets what the scan looks for, once for the binary: at most 8 byte strings, none empty.
pub fn set_needles(needles: impl FnOnce() -> Vec<Vec<u8>>) {
    let needles = NEEDLES.get_or_init(needles);
    assert!(needles.len() <= MAX_NEEDLES && needles.iter().all(|n| !n.is_empty()));
}

/// Starts or stops scanning the blocks the calling thread frees.
pub fn scan_frees(on: bool) {
    SCANNING.with(|s| s.set(on));
}

/// How many freed blocks held each needle since the last call, in the order of `set_needles`.
pub fn take_found() -> Vec<usize> {
    let count = NEEDLES.get().map_or(0, Vec::len);
    FOUND[..count]
        .iter()
        .map(|found| found.swap(0, Ordering::SeqCst))
        .collect()
}
