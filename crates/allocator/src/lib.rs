//! The memory allocator of every shop process: mimalloc, set to give freed memory back to the
//! system at once.
//!
//! Why not glibc's: it keeps what a burst allocated. Each password hash takes 19 MiB; after the
//! first ones glibc raises its mmap threshold and serves the next from per-thread arenas that it
//! never returns, so a flood of 400 sign-ins left the one-process binary at 1.3 GB while idle
//! (55 MB before). mimalloc with immediate purging and arenas committed on demand peaked at
//! 186 MB in the same flood and was back at 66 MB a second later
//! (`shop/tests/journey/memory.rs` keeps it so). The platform crate installs it as the global
//! allocator, so every binary and test that links the platform uses it.

use std::{
    alloc::{GlobalAlloc, Layout},
    sync::atomic::{AtomicBool, Ordering},
};

use mimalloc::MiMalloc;

/// `mi_option_arena_eager_commit` in mimalloc.h (v3): commit arena memory only when used.
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
/// `mi_option_purge_delay` in mimalloc.h (v3): milliseconds before freed memory is returned
/// (10 by default, and then only when the freeing thread allocates again, which an idle
/// blocking-pool thread never does).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// mimalloc, configured before its first allocation in the process.
#[derive(Debug, Clone, Copy)]
pub struct ShopAllocator;

static CONFIGURED: AtomicBool = AtomicBool::new(false);

fn configure() {
    if !CONFIGURED.load(Ordering::Relaxed) && !CONFIGURED.swap(true, Ordering::Relaxed) {
        // SAFETY: setting options is thread-safe in mimalloc and allocates nothing.
        unsafe {
            libmimalloc_sys::mi_option_set(PURGE_DELAY, 0);
            libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0);
        }
    }
}

// SAFETY: every call is forwarded unchanged to mimalloc, a correct global allocator.
unsafe impl GlobalAlloc for ShopAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        configure();
        // SAFETY: the caller's guarantees are passed on.
        unsafe { MiMalloc.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        configure();
        // SAFETY: as above.
        unsafe { MiMalloc.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        unsafe { MiMalloc.realloc(ptr, layout, new_size) }
    }
}
