//! [`SharedOut`]: the crate's one raw-pointer helper, for the few parallel sweeps whose tasks
//! write entries of one buffer that no safe split (`par_chunks_mut`, `split_at_mut`) can hand
//! out, because a task's entries are scattered: the mirrored triangle of the square distance
//! matrix and the linkage update sweeps (row and column of the merged cluster). Every other
//! parallel output of the crate is split into disjoint `&mut` slices instead.
//!
//! # Contract
//!
//! A [`SharedOut`] is built from a `&'a mut [T]`: the pointer is valid for its `len` entries, and
//! nothing else can touch the buffer while the `SharedOut` lives. Every access is bounds-checked
//! (an index past the end panics). The one obligation left to the caller of the `unsafe` methods
//! — and what each call's `// SAFETY:` comment must show — is **disjointness**: while tasks run
//! concurrently, an entry that one task writes is neither read nor written by any other task.
//! Entries that nobody writes during the sweep may be read by every task.

use std::marker::PhantomData;

/// A mutable buffer of plain values shared without locks by the tasks of one parallel sweep (see
/// the module docs for the contract).
pub(crate) struct SharedOut<'a, T> {
    ptr: *mut T,
    len: usize,
    _buffer: PhantomData<&'a mut [T]>,
}

impl<T> Clone for SharedOut<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SharedOut<'_, T> {}

// SAFETY: the only ways to reach the entries are the `unsafe` methods below, whose contract (the
// module docs) rules out two tasks touching the same entry while one of them writes, so sharing
// the handle between threads cannot cause a data race; values of `T` move between threads, hence
// `T: Send`.
unsafe impl<T: Send> Send for SharedOut<'_, T> {}
// SAFETY: as for `Send` above.
unsafe impl<T: Send> Sync for SharedOut<'_, T> {}

impl<'a, T: Copy> SharedOut<'a, T> {
    /// Share `buffer` for the duration of one sweep.
    pub(crate) fn new(buffer: &'a mut [T]) -> Self {
        Self { ptr: buffer.as_mut_ptr(), len: buffer.len(), _buffer: PhantomData }
    }

    /// Entry `k`.
    ///
    /// # Safety
    /// No other task writes entry `k` while this task may read it (module docs).
    #[inline(always)]
    pub(crate) unsafe fn read(&self, k: usize) -> T {
        assert!(k < self.len, "SharedOut::read: index {k} out of bounds ({})", self.len);
        // SAFETY: `k` is in bounds of the borrowed buffer (checked above); no concurrent write
        // (the caller's obligation).
        unsafe { self.ptr.add(k).read() }
    }

    /// Set entry `k`.
    ///
    /// # Safety
    /// Entry `k` belongs to the calling task: no other task reads or writes it concurrently
    /// (module docs).
    #[inline(always)]
    pub(crate) unsafe fn write(&self, k: usize, v: T) {
        assert!(k < self.len, "SharedOut::write: index {k} out of bounds ({})", self.len);
        // SAFETY: `k` is in bounds of the borrowed buffer (checked above); the entry is this
        // task's alone (the caller's obligation); `T: Copy`, so the old value needs no drop.
        unsafe { self.ptr.add(k).write(v) }
    }

    /// Entries `start .. start + len` as a slice of their own (a borrow of the shared buffer).
    ///
    /// # Safety
    /// The whole range belongs to the calling task while the slice lives (module docs).
    #[inline(always)]
    pub(crate) unsafe fn slice_mut(self, start: usize, len: usize) -> &'a mut [T] {
        assert!(start <= self.len && len <= self.len - start, "SharedOut::slice_mut: {start}+{len} out of bounds ({})", self.len);
        // SAFETY: the range is inside the borrowed buffer (checked above) and no other task
        // touches it while the slice lives (the caller's obligation), so it is a unique borrow.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }

    /// Hint the CPU to start loading entry `k` (no effect past the end or on other targets).
    #[inline(always)]
    pub(crate) fn prefetch(&self, k: usize) {
        if k < self.len {
            prefetch_ptr(self.ptr.wrapping_add(k));
        }
    }
}

/// Hint the CPU to start loading `buffer[k]` (no effect past the end or on other targets).
#[inline(always)]
pub(crate) fn prefetch<T>(buffer: &[T], k: usize) {
    if let Some(entry) = buffer.get(k) {
        prefetch_ptr(entry);
    }
}

#[inline(always)]
fn prefetch_ptr<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it never faults, whatever the address, and does not
    // modify memory (SSE, part of the x86_64 baseline).
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    #[test]
    fn disjoint_tasks_fill_the_buffer() {
        let mut buf = vec![0u32; 1000];
        let out = SharedOut::new(&mut buf);
        (0..1000usize).into_par_iter().for_each(|k| {
            // SAFETY: every task writes its own index only.
            unsafe { out.write(k, k as u32 * 3) };
        });
        assert!(buf.iter().enumerate().all(|(k, &v)| v == k as u32 * 3));
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn out_of_bounds_panics() {
        let mut buf = vec![0u8; 4];
        let out = SharedOut::new(&mut buf);
        // SAFETY: single task.
        unsafe { out.write(4, 1) };
    }

    #[test]
    fn prefetch_past_the_end_is_harmless() {
        let buf = [1.0f64; 3];
        prefetch(&buf, 2);
        prefetch(&buf, 99);
        let mut b = buf;
        SharedOut::new(&mut b).prefetch(usize::MAX);
    }
}
