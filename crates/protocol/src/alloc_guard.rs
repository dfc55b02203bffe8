//! A global allocator that keeps hostile length prefixes from aborting the process.
//!
//! kafka-protocol 0.18 decodes an array by calling `Vec::with_capacity(count)` with the count
//! read off the wire, before it has decoded a single element. A 16-byte request can therefore ask
//! for hundreds of gigabytes; the system allocator refuses, and Rust aborts the whole broker.
//! (Upstream knows: kafka-protocol-rs pull requests 152, 161 and 200 bound these counts; none is
//! released yet.)
//!
//! Every binary that decodes untrusted Kafka bytes installs [`GuardedAlloc`]. It passes ordinary
//! allocations to the system allocator and serves very large ones (>= 1 GiB) from anonymous
//! `MAP_NORESERVE` mappings: reserving address space costs nothing until pages are touched, so a
//! bogus capacity is "granted", the decoder hits the end of the frame after a few elements and
//! returns an error, and the mapping is released. A real allocation of that size still works
//! (pages are backed on first touch), exactly as it would with overcommit.
//!
//! Limitation: on a host with `vm.overcommit_memory=2` the kernel refuses even reservations, and
//! such a request would still abort the process.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at or above this size are mapped rather than taken from the system allocator.
pub const MAPPED_THRESHOLD: usize = 1 << 30;
const PAGE: usize = 4096;

pub struct GuardedAlloc;

fn mapped(layout: &Layout) -> bool {
    layout.size() >= MAPPED_THRESHOLD
}

unsafe fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no address hint has no preconditions.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

// SAFETY: every pointer handed out is either from `System` (and returned to it) or from `mmap`
// with the layout's size (page-aligned, which satisfies any alignment up to a page; larger
// alignments go to `System`), and is unmapped with that same size. Which of the two a pointer
// came from is decided by the layout size alone, which callers must pass back unchanged.
unsafe impl GlobalAlloc for GuardedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if mapped(&layout) && layout.align() <= PAGE {
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if mapped(&layout) && layout.align() <= PAGE {
            // Fresh anonymous mappings are zero-filled.
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if mapped(&layout) && layout.align() <= PAGE {
            unsafe {
                libc::munmap(ptr.cast(), layout.size());
            }
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let old_mapped = mapped(&layout) && layout.align() <= PAGE;
        let new_mapped = mapped(&new_layout) && layout.align() <= PAGE;
        if !old_mapped && !new_mapped {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let new_ptr = unsafe { self.alloc(new_layout) };
        if !new_ptr.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new_ptr
    }
}

/// Gives the system allocator's free memory back to the operating system (glibc keeps the peak
/// of a burst, say of large fetch responses, resident otherwise). Cheap when there is nothing to
/// give back; servers call it periodically. A no-op where the C library has no `malloc_trim`.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only returns free pages of glibc's arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_allocations_are_reserved_not_refused() {
        let a = GuardedAlloc;
        // 512 GiB: more than any test machine has, so the system allocator would refuse it.
        let layout = Layout::from_size_align(512 << 30, 8).unwrap();
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            // Touching a page backs it; the rest stays a reservation.
            *p = 42;
            assert_eq!(*p, 42);
            a.dealloc(p, layout);
        }
    }

    #[test]
    fn realloc_across_the_threshold_keeps_contents() {
        let a = GuardedAlloc;
        let small = Layout::from_size_align(64, 8).unwrap();
        unsafe {
            let p = a.alloc(small);
            for i in 0..64 {
                *p.add(i) = i as u8;
            }
            let q = a.realloc(p, small, MAPPED_THRESHOLD + 1);
            assert!(!q.is_null());
            for i in 0..64 {
                assert_eq!(*q.add(i), i as u8);
            }
            let big = Layout::from_size_align(MAPPED_THRESHOLD + 1, 8).unwrap();
            let r = a.realloc(q, big, 32);
            for i in 0..32 {
                assert_eq!(*r.add(i), i as u8);
            }
            a.dealloc(r, Layout::from_size_align(32, 8).unwrap());
        }
    }
}
