//! A global allocator that wipes every block before it is freed, so what a
//! parser's scratch buffer held does not stay behind in freed heap memory.
//!
//! `Secret` and `Zeroizing` wipe the values credshift owns; this covers the
//! copies it does not own: serde_json's scratch `Vec` for strings with
//! escapes, the `String`s inside a parsed `serde_json::Value`, a `Vec`'s
//! old buffer when it grows (a realloc here always moves, and the old block
//! is wiped), a database driver's row buffers, a formatter's temporaries.
//! The binary installs it (`src/main.rs`); the library does not, so the
//! benchmarks and the fuzz targets measure the parsers themselves.
//!
//! The wipe uses `explicit_bzero` where libc has it (the compiler may not
//! drop it as a dead store before `free`), else `write_bytes` followed by
//! a compiler fence and `black_box`, which keeps the stores in practice.
//! What it does not cover: memory the kernel or another library allocates
//! outside Rust's allocator (OpenSSL, libdbus), registers and the stack,
//! and pages swapped out while in use (see README, "What credshift protects
//! against").

use std::alloc::{GlobalAlloc, Layout, System};

/// Large blocks (128 KiB and more) get mappings of their own and go back to
/// the system as soon as they are freed, for the whole run. glibc would
/// raise that threshold each time such a block is freed (up to 32 MiB),
/// after which a whole-file store's buffers (a save's plaintext, a file's
/// bytes, a backup) came from the heap and stayed resident after use: a
/// fifth of a 100,000-item migration's peak RSS (scripts/bench-migrate.sh).
/// The binary calls it first thing (`src/main.rs`).
pub fn return_large_blocks_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of glibc's malloc; it is
    // called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Wipes each block, then hands it to `A` (the system allocator in the
/// binary; a checking one in the tests).
pub struct ZeroOnFree<A = System>(pub A);

/// Overwrite `len` bytes at `ptr` with zeros in a way the optimiser keeps.
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes.
pub unsafe fn wipe(ptr: *mut u8, len: usize) {
    if len == 0 {
        return;
    }
    #[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl")))]
    // SAFETY: the caller guarantees `ptr..ptr+len` is writable.
    unsafe {
        libc::explicit_bzero(ptr.cast(), len);
    }
    #[cfg(not(all(target_os = "linux", any(target_env = "gnu", target_env = "musl"))))]
    {
        // SAFETY: the caller guarantees `ptr..ptr+len` is writable.
        unsafe { std::ptr::write_bytes(ptr, 0, len) };
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        std::hint::black_box(ptr);
    }
}

// SAFETY: every method forwards to `A` with the same layout; `dealloc`
// only writes inside the block it is about to free. `realloc` is the
// trait's default (alloc, copy, dealloc), so the old block is wiped too.
unsafe impl<A: GlobalAlloc> GlobalAlloc for ZeroOnFree<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        unsafe { self.0.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated with `layout`, so `layout.size()`
        // bytes are ours until the `dealloc` below.
        unsafe {
            wipe(ptr, layout.size());
            self.0.dealloc(ptr, layout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records, at each free, whether the block was all zeros.
    struct Checking(Mutex<Vec<bool>>);

    unsafe impl GlobalAlloc for Checking {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            self.0.lock().unwrap().push(block.iter().all(|b| *b == 0));
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[test]
    fn every_freed_block_is_zero_and_realloc_wipes_the_old_one() {
        let a = ZeroOnFree(Checking(Mutex::new(Vec::new())));
        let layout = Layout::from_size_align(64, 8).unwrap();
        unsafe {
            let p = a.alloc(layout);
            std::ptr::write_bytes(p, 0xA5, 64);
            let q = a.realloc(p, layout, 4096);
            assert_eq!(*q.add(63), 0xA5, "realloc keeps the content");
            std::ptr::write_bytes(q, 0x5A, 4096);
            a.dealloc(q, Layout::from_size_align(4096, 8).unwrap());
        }
        let seen = a.0.0.lock().unwrap().clone();
        assert_eq!(seen, vec![true, true], "the old and the final block");
    }

    #[test]
    fn without_the_wrapper_the_check_sees_the_secret() {
        // The checking allocator can fail: a block freed as is is not zero.
        let c = Checking(Mutex::new(Vec::new()));
        let layout = Layout::from_size_align(16, 8).unwrap();
        unsafe {
            let p = c.alloc(layout);
            std::ptr::write_bytes(p, 0x41, 16);
            c.dealloc(p, layout);
        }
        assert_eq!(*c.0.lock().unwrap(), vec![false]);
    }
}
