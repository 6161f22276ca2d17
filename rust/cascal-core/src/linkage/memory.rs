//! Large working buffers backed by transparent huge pages where the OS allows it.
//!
//! The NN-chain and MST scans read matrix columns: one entry per row, each on a different page.
//! With 4 KiB pages nearly every such read misses the TLB; 2 MiB pages cut the page walks by
//! 512×. On Linux the buffer is marked with `madvise(MADV_HUGEPAGE)` before it is first written
//! (the kernel's default THP mode is often "madvise"); elsewhere this is a plain allocation.

use super::real::Real;

#[cfg(target_os = "linux")]
mod sys {
    use std::ffi::c_void;

    extern "C" {
        fn madvise(addr: *mut c_void, len: usize, advice: i32) -> i32;
    }
    const MADV_HUGEPAGE: i32 = 14;
    const PAGE: usize = 4096;

    /// Ask for huge pages on the page-aligned part of `[ptr, ptr + bytes)`; failures are ignored
    /// (the advice is only a performance hint).
    pub fn advise_huge_pages(ptr: *mut u8, bytes: usize) {
        let start = (ptr as usize).div_ceil(PAGE) * PAGE;
        let end = (ptr as usize + bytes) / PAGE * PAGE;
        if end > start {
            // SAFETY: the range lies inside one live allocation owned by the caller; MADV_HUGEPAGE
            // does not change its contents or validity.
            unsafe {
                madvise(start as *mut c_void, end - start, MADV_HUGEPAGE);
            }
        }
    }
}

/// Buffers smaller than this are not worth the advice.
const HUGE_PAGE_MIN_BYTES: usize = 8 << 20;

/// A copy of `values` in a buffer advised to use huge pages.
pub fn huge_page_copy<S: Real>(values: &[S]) -> Vec<S> {
    let mut buf: Vec<S> = Vec::with_capacity(values.len());
    let bytes = values.len() * std::mem::size_of::<S>();
    #[cfg(target_os = "linux")]
    if bytes >= HUGE_PAGE_MIN_BYTES {
        sys::advise_huge_pages(buf.as_mut_ptr() as *mut u8, bytes);
    }
    let _ = bytes;
    buf.extend_from_slice(values);
    buf
}
