//! Unsynchronised shared access to a distance buffer for parallel sweeps in which every task
//! owns a disjoint set of entries, plus software prefetch.

use super::real::Real;

/// Raw view of a distance buffer shared by the tasks of one parallel sweep. Reads and writes
/// are bounds-checked; disjointness of the tasks' entries is the caller's obligation.
#[derive(Clone, Copy)]
pub struct SharedBuffer<S> {
    pub ptr: *mut S,
    pub len: usize,
}

// SAFETY: users hand each task a disjoint set of entries to read and write (the update sweeps
// give every active cluster `i` its own two entries); no entry is touched by two tasks.
unsafe impl<S: Send> Send for SharedBuffer<S> {}
unsafe impl<S: Send> Sync for SharedBuffer<S> {}

impl<S: Real> SharedBuffer<S> {
    /// Entry `k`.
    #[inline(always)]
    pub fn read(&self, k: usize) -> S {
        assert!(k < self.len);
        // SAFETY: in bounds (checked); not written concurrently (see the Sync impl).
        unsafe { *self.ptr.add(k) }
    }
    /// Hint the CPU to start loading entry `k` (no effect on other targets).
    #[inline(always)]
    pub fn prefetch(&self, k: usize) {
        #[cfg(target_arch = "x86_64")]
        if k < self.len {
            // SAFETY: `k` is in bounds; a prefetch never faults and does not modify memory.
            unsafe {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                _mm_prefetch::<_MM_HINT_T0>(self.ptr.add(k) as *const i8);
            }
        }
    }
    /// Set entry `k` (owned by the calling task).
    #[inline(always)]
    pub fn write(&self, k: usize, v: S) {
        assert!(k < self.len);
        // SAFETY: in bounds (checked); the entry belongs to the calling task (see the Sync impl).
        unsafe { *self.ptr.add(k) = v }
    }
}

