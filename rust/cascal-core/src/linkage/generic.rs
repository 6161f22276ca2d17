//! Müllner's generic algorithm (2011, section 3.1, "generic_linkage") for the reducible methods
//! (complete, average, weighted, ward), in place on one condensed distance buffer.
//!
//! Each cluster `i` keeps a candidate nearest neighbour `nn[i] > i` and a lower bound
//! `mindist[i]` of its distance to every active cluster `j > i`, in a priority queue. The pair at
//! the top is merged once its bound is confirmed by the current distance; a stale bound is
//! refreshed by rescanning row `i`. Row scans are contiguous in the condensed layout; only the
//! Lance–Williams update sweep reads matrix columns. Compared with the nearest-neighbour chain
//! (which reads a column on every scan) this does several times fewer scattered reads.
//!
//! Conventions match scipy's: merging `a < b` keeps `b` alive for the union. The merge *order*
//! can differ from scipy's NN-chain on tied distances; the sorted merge heights do not.

use rayon::prelude::*;

use super::condensed::{condensed_index, row_start};
use super::dendrogram::Merge;
use super::heap::IndexedHeap;
use super::method::Method;
use super::real::{infinity, Real};

/// Sweeps over fewer active clusters than this stay on one thread.
const PARALLEL_MIN: usize = 4096;
/// How many clusters ahead the update sweep prefetches its scattered entries.
const PREFETCH_DISTANCE: usize = 16;

/// Nearest active cluster `j > i` of row `i` and its distance; dead clusters hold +∞ in the row.
#[inline]
fn row_nearest<S: Real>(dist: &[S], n: usize, i: usize) -> (usize, f64) {
    let start = row_start(n, i);
    let row = &dist[start..start + (n - i - 1)];
    let min = row.iter().copied().fold(infinity::<S>(), |m, v| if v < m { v } else { m });
    match row.iter().position(|&v| v == min) {
        Some(k) if min < infinity::<S>() => (i + 1 + k, min.to_f64()),
        _ => (usize::MAX, f64::INFINITY),
    }
}

/// Shared write access to the distance buffer for the parallel update sweep.
#[derive(Clone, Copy)]
struct SharedBuffer<S> {
    ptr: *mut S,
    len: usize,
}

// SAFETY: in the update sweep every active cluster `i` owns its two entries (i, a) and (i, b);
// no two tasks read or write the same entry.
unsafe impl<S: Send> Send for SharedBuffer<S> {}
unsafe impl<S: Send> Sync for SharedBuffer<S> {}

impl<S: Real> SharedBuffer<S> {
    #[inline(always)]
    fn read(&self, k: usize) -> S {
        assert!(k < self.len);
        // SAFETY: in bounds (checked); not written concurrently (see the Sync impl).
        unsafe { *self.ptr.add(k) }
    }
    /// Hint the CPU to start loading entry `k` (no effect on other targets).
    #[inline(always)]
    fn prefetch(&self, k: usize) {
        #[cfg(target_arch = "x86_64")]
        if k < self.len {
            // SAFETY: `k` is in bounds; a prefetch never faults and does not modify memory.
            unsafe {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                _mm_prefetch::<_MM_HINT_T0>(self.ptr.add(k) as *const i8);
            }
        }
    }
    #[inline(always)]
    fn write(&self, k: usize, v: S) {
        assert!(k < self.len);
        // SAFETY: in bounds (checked); the entry belongs to the calling task (see the Sync impl).
        unsafe { *self.ptr.add(k) = v }
    }
}

/// Cluster the condensed buffer `dist` of `n ≥ 2` observations (overwritten) and return the
/// n−1 merges in the order they were found.
pub fn generic_linkage<S: Real>(dist: &mut [S], n: usize, method: Method) -> Vec<Merge> {
    debug_assert!(n >= 2 && dist.len() == n * (n - 1) / 2);
    let mut size = vec![1usize; n];
    let mut active: Vec<usize> = (0..n).collect();
    let initial: Vec<(usize, f64)> = (0..n).into_par_iter().map(|i| row_nearest(dist, n, i)).collect();
    let mut nn: Vec<usize> = initial.iter().map(|p| p.0).collect();
    let mut queue = IndexedHeap::new(initial.iter().map(|p| p.1).collect());
    let mut merges = Vec::with_capacity(n - 1);

    for _ in 0..n - 1 {
        let (a, b, height) = loop {
            let a = queue.top().expect("an active cluster remains");
            let bound = queue.priority(a);
            let b = nn[a];
            debug_assert!(b != usize::MAX && size[b] > 0, "candidate neighbour is active");
            if dist[condensed_index(n, a, b)].to_f64() == bound {
                break (a, b, bound);
            }
            let (j, d) = row_nearest(dist, n, a);
            nn[a] = j;
            queue.set(a, d);
        };
        merges.push(Merge { a, b, height });
        queue.remove(a);
        let (size_a, size_b) = (size[a], size[b]);
        size[a] = 0;
        size[b] = size_a + size_b;
        let pos = active.binary_search(&a).expect("a is active");
        active.remove(pos);

        // Lance–Williams sweep; collect clusters i < b whose neighbour bookkeeping changes.
        let buffer = SharedBuffer { ptr: dist.as_mut_ptr(), len: dist.len() };
        let (start_a, start_b) = (row_start(n, a), row_start(n, b));
        let (fa, fb) = (size_a as f64, size_b as f64);
        let (size_ref, nn_ref, queue_ref) = (&size, &nn, &queue);
        let sweep = |ids: &[usize]| -> Vec<(usize, f64)> {
            let mut changes = Vec::new();
            let entries = |i: usize| {
                let ia = if i < a { row_start(n, i) + (a - i - 1) } else { start_a + (i - a - 1) };
                let ib = if i < b { row_start(n, i) + (b - i - 1) } else { start_b + (i - b - 1) };
                (ia, ib)
            };
            for (k, &i) in ids.iter().enumerate() {
                if let Some(&ahead) = ids.get(k + PREFETCH_DISTANCE) {
                    if ahead != b {
                        let (pa, pb) = entries(ahead);
                        buffer.prefetch(pa);
                        buffer.prefetch(pb);
                    }
                }
                if i == b {
                    continue;
                }
                let (ia, ib) = entries(i);
                let updated = method.update(buffer.read(ia).to_f64(), buffer.read(ib).to_f64(), height, fa, fb, size_ref[i] as f64);
                let stored = S::from_f64(updated);
                buffer.write(ib, stored);
                if i < a {
                    buffer.write(ia, infinity::<S>());
                }
                if i < b && (nn_ref[i] == a || stored.to_f64() < queue_ref.priority(i)) {
                    changes.push((i, stored.to_f64()));
                }
            }
            changes
        };
        let changes: Vec<(usize, f64)> = if active.len() >= PARALLEL_MIN {
            let chunk = active.len().div_ceil(4 * rayon::current_num_threads());
            active.par_chunks(chunk).flat_map_iter(sweep).collect()
        } else {
            sweep(&active)
        };
        for (i, d) in changes {
            // `a` is gone: its followers now point at the union `b`, with their old bound (still a
            // lower bound by reducibility); a smaller distance to `b` tightens the bound.
            nn[i] = if nn[i] == a { b } else { nn[i] };
            if d < queue.priority(i) {
                nn[i] = b;
                queue.set(i, d);
            }
        }
        let (j, d) = row_nearest(dist, n, b);
        nn[b] = j;
        queue.set(b, d);
    }
    merges
}
