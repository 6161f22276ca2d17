//! Distance storage for the NN-chain: the condensed vector (half the memory) or a full square
//! matrix (twice the memory, but every scan and update reads contiguous rows).
//!
//! In the condensed layout the distances of cluster `x` to clusters `i < x` form a column: one
//! scattered read per entry, on every nearest-neighbour scan. The square layout turns those into
//! one contiguous row and leaves one scattered write per entry and merge (the mirror entry).
//! Scattered accesses are prefetched a few clusters ahead; sweeps over many clusters run in
//! parallel chunks.

use rayon::prelude::*;

use super::condensed::{condensed_index, row_start};
use super::method::Method;
use super::nn_chain::Dissimilarities;
use super::real::{infinity, Real};
use crate::alloc::{checked_len, try_vec, try_zeroed};
use crate::error::KResult;
use crate::shared_out::{prefetch, SharedOut};

/// Sweeps over fewer active clusters than this stay on one thread.
const PARALLEL_MIN: usize = 8192;
/// Smallest piece of a parallel sweep.
const CHUNK_MIN: usize = 512;
/// How many clusters ahead scattered accesses are prefetched.
const PREFETCH_DISTANCE: usize = 16;

/// Length of the pieces a parallel sweep over `len` clusters is cut into.
fn chunk_len(len: usize) -> usize {
    CHUNK_MIN.max(len.div_ceil(4 * rayon::current_num_threads()))
}

/// Smallest value and its position, first occurrence; `(+∞, usize::MAX)` if empty or all +∞.
#[inline]
fn first_min<S: Real>(values: impl Iterator<Item = S>) -> (S, usize) {
    let mut best = (infinity::<S>(), usize::MAX);
    for (k, v) in values.enumerate() {
        if v < best.0 {
            best = (v, k);
        }
    }
    best
}

/// `first_min` of `value(id)` over `ids`, in parallel chunks for long lists; returns the position
/// in `ids`.
fn first_min_over<S: Real, F: Fn(&[usize], usize) -> S + Sync>(ids: &[usize], value: F) -> (S, usize) {
    let scan = |chunk: &[usize]| first_min((0..chunk.len()).map(|k| value(chunk, k)));
    if ids.len() < PARALLEL_MIN {
        return scan(ids);
    }
    let chunk = chunk_len(ids.len());
    ids.par_chunks(chunk)
        .enumerate()
        .map(|(c, part)| {
            let (v, k) = scan(part);
            (v, k.saturating_add(c * chunk))
        })
        .reduce(|| (infinity::<S>(), usize::MAX), |a, b| if b.0 < a.0 { b } else { a })
}

/// Run `sweep` over `ids`, in parallel chunks for long lists.
fn for_chunks<F: Fn(&[usize]) + Sync + Send>(ids: &[usize], sweep: F) {
    if ids.len() < PARALLEL_MIN {
        sweep(ids);
    } else {
        ids.par_chunks(chunk_len(ids.len())).for_each(&sweep);
    }
}

/// Condensed storage: entry (i, j), i < j, at `row_start(n, i) + j − i − 1`.
///
/// The distances of cluster `x` to clusters `i < x` form a scattered column, so each cluster
/// caches the minimum of its column (value and lowest index). A merge recomputes the surviving
/// cluster's column minimum during its sweep and adjusts the others from the merged row; a cache
/// whose minimum belonged to the merged clusters is marked stale and rescanned when next needed.
/// The entries (i, x) of a dead cluster `x` are set to +∞ so that row segments can be scanned
/// without a liveness test.
pub struct Condensed<S> {
    dist: Vec<S>,
    n: usize,
    column_min: Vec<S>,
    column_arg: Vec<usize>,
    stale: Vec<bool>,
}

impl<S: Real> Condensed<S> {
    /// Take ownership of the condensed vector of `n` observations and build the column caches
    /// in one contiguous pass.
    ///
    /// Errors: the column caches (O(n)) cannot be allocated.
    pub fn new(dist: Vec<S>, n: usize) -> KResult<Self> {
        let mut column_min = try_vec("data", "column minima", n, infinity::<S>())?;
        let mut column_arg = try_vec("data", "column arg-minima", n, usize::MAX)?;
        for i in 0..n.saturating_sub(1) {
            let start = row_start(n, i);
            for (k, &v) in dist[start..start + (n - i - 1)].iter().enumerate() {
                let j = i + 1 + k;
                if v < column_min[j] {
                    column_min[j] = v;
                    column_arg[j] = i;
                }
            }
        }
        Ok(Self { dist, n, column_min, column_arg, stale: try_zeroed("data", "stale flags", n)? })
    }

    /// Minimum of column `x` over the active clusters below it (scattered reads).
    fn scan_column(&self, active: &[usize], x: usize) -> (S, usize) {
        let (n, dist) = (self.n, &self.dist);
        let below = &active[..active.partition_point(|&i| i < x)];
        let entry = |i: usize| row_start(n, i) + (x - i - 1);
        let (v, pos) = first_min_over(below, |ids: &[usize], k| {
            if let Some(&ahead) = ids.get(k + PREFETCH_DISTANCE) {
                prefetch(dist, entry(ahead));
            }
            dist[entry(ids[k])]
        });
        (v, if pos == usize::MAX { usize::MAX } else { below[pos] })
    }
}

impl<S: Real> Dissimilarities for Condensed<S> {
    #[inline]
    fn get(&self, i: usize, j: usize) -> f64 {
        self.dist[condensed_index(self.n, i, j)].to_f64()
    }

    fn nearest(&mut self, active: &[usize], x: usize) -> (usize, f64) {
        let n = self.n;
        if self.stale[x] {
            let (v, arg) = self.scan_column(active, x);
            self.column_min[x] = v;
            self.column_arg[x] = arg;
            self.stale[x] = false;
        }
        let (mut best_d, mut best) = (self.column_min[x], self.column_arg[x]);
        // Row part: entries (x, j), j > x, contiguous; dead clusters hold +∞. Column indices are
        // all lower, so the column minimum wins ties.
        let start = row_start(n, x);
        let row = &self.dist[start..start + (n - x - 1)];
        let row_min = row.iter().copied().fold(infinity::<S>(), |m, v| if v < m { v } else { m });
        if row_min < best_d {
            best_d = row_min;
            best = x + 1 + row.iter().position(|&v| v == row_min).expect("minimum is in the row");
        }
        (best, best_d.to_f64())
    }

    fn merge(&mut self, active: &[usize], size: &[usize], method: Method, x: usize, y: usize, d_xy: f64, size_x: usize, size_y: usize) {
        let n = self.n;
        let (start_x, start_y) = (row_start(n, x), row_start(n, y));
        let (fx, fy) = (size_x as f64, size_y as f64);
        let buffer = SharedOut::new(&mut self.dist);
        let entries = |i: usize| {
            let ix = if i < x { row_start(n, i) + (x - i - 1) } else { start_x + (i - x - 1) };
            let iy = if i < y { row_start(n, i) + (y - i - 1) } else { start_y + (i - y - 1) };
            (ix, iy)
        };
        // Sweep the clusters below y (their new distances form column y: track its minimum),
        // then those above y (row y, contiguous).
        let split = active.partition_point(|&i| i < y);
        let sweep = |ids: &[usize]| -> (S, usize) {
            let mut best = (infinity::<S>(), usize::MAX);
            for (k, &i) in ids.iter().enumerate() {
                if let Some(&ahead) = ids.get(k + PREFETCH_DISTANCE) {
                    if ahead != y {
                        let (px, py) = entries(ahead);
                        buffer.prefetch(px);
                        buffer.prefetch(py);
                    }
                }
                if i == y {
                    continue;
                }
                let (ix, iy) = entries(i);
                // SAFETY: the entries (i, x) and (i, y) belong to cluster i alone: each task
                // sweeps its own clusters of `active`, which holds every cluster once and not x
                // (already merged away), and y is skipped just above, so no two clusters share
                // an entry.
                let stored = unsafe {
                    let updated = method.update(buffer.read(ix).to_f64(), buffer.read(iy).to_f64(), d_xy, fx, fy, size[i] as f64);
                    let stored = S::from_f64(updated);
                    buffer.write(iy, stored);
                    if i < x {
                        // Row i is scanned contiguously by `nearest`; the dead x must never win.
                        buffer.write(ix, infinity::<S>());
                    }
                    stored
                };
                if i < y && stored < best.0 {
                    best = (stored, i);
                }
            }
            best
        };
        let below_y = &active[..split];
        let (col_v, col_arg) = if below_y.len() < PARALLEL_MIN {
            sweep(below_y)
        } else {
            below_y
                .par_chunks(chunk_len(below_y.len()))
                .map(sweep)
                .reduce(|| (infinity::<S>(), usize::MAX), |a, b| if b.0 < a.0 { b } else { a })
        };
        self.column_min[y] = col_v;
        self.column_arg[y] = col_arg;
        self.stale[y] = false;
        let above_y = &active[split..];
        for_chunks(above_y, |ids| {
            sweep(ids);
        });
        // Column caches of the clusters above x: x is gone, y changed.
        for &j in &active[active.partition_point(|&i| i <= x)..] {
            if j == y {
                continue;
            }
            let arg = self.column_arg[j];
            if arg == x || arg == y {
                self.stale[j] = true;
            } else if j > y && !self.stale[j] {
                let v = self.dist[start_y + (j - y - 1)];
                if v < self.column_min[j] || (v == self.column_min[j] && y < arg) {
                    self.column_min[j] = v;
                    self.column_arg[j] = y;
                }
            }
        }
    }
}

/// Full symmetric n×n storage, row-major. Dead clusters are skipped through the active list.
pub struct Square<S> {
    pub dist: Vec<S>,
    pub n: usize,
}

impl<S: Real> Square<S> {
    /// Square matrix from a condensed vector, filled tile by tile (both triangles), in parallel.
    ///
    /// Errors: the n² matrix cannot be allocated.
    pub fn from_condensed(condensed: &[S], n: usize) -> KResult<Self> {
        const TILE: usize = 64;
        // A zeroed allocation (fresh pages, no extra pass); the diagonal stays 0 and every other
        // entry is written once below.
        let len = checked_len("data", "square working matrix", &[n, n])?;
        let mut dist: Vec<S> = try_zeroed("data", "square working matrix", len)?;
        let buffer = SharedOut::new(&mut dist);
        // Each task owns row band [i0, i0 + TILE): it writes (i, j) for j > i in its rows and the
        // mirror entries (j, i); every pair is written by exactly one task.
        (0..n.div_ceil(TILE)).into_par_iter().for_each(|band| {
            let i0 = band * TILE;
            let i1 = (i0 + TILE).min(n);
            let mut j0 = i0;
            while j0 < n {
                let j1 = (j0 + TILE).min(n);
                for i in i0..i1 {
                    for j in j0.max(i + 1)..j1 {
                        let v = condensed[row_start(n, i) + (j - i - 1)];
                        // SAFETY: the pair (i, j), i < j, is visited by the task of i's band
                        // only, and (i, j), (j, i) are entries of that pair alone (nothing reads).
                        unsafe {
                            buffer.write(i * n + j, v);
                            buffer.write(j * n + i, v);
                        }
                    }
                }
                j0 = j1;
            }
        });
        Ok(Self { dist, n })
    }
}

impl<S: Real> Dissimilarities for Square<S> {
    #[inline]
    fn get(&self, i: usize, j: usize) -> f64 {
        self.dist[i * self.n + j].to_f64()
    }

    fn nearest(&mut self, active: &[usize], x: usize) -> (usize, f64) {
        let row = &self.dist[x * self.n..(x + 1) * self.n];
        let (d, pos) = first_min_over(active, |ids: &[usize], k| {
            let i = ids[k];
            if i == x {
                infinity::<S>()
            } else {
                row[i]
            }
        });
        if pos == usize::MAX {
            (usize::MAX, f64::INFINITY)
        } else {
            (active[pos], d.to_f64())
        }
    }

    fn merge(&mut self, active: &[usize], size: &[usize], method: Method, x: usize, y: usize, d_xy: f64, size_x: usize, size_y: usize) {
        let n = self.n;
        let (fx, fy) = (size_x as f64, size_y as f64);
        let buffer = SharedOut::new(&mut self.dist);
        for_chunks(active, |ids| {
            for (k, &i) in ids.iter().enumerate() {
                if let Some(&ahead) = ids.get(k + PREFETCH_DISTANCE) {
                    buffer.prefetch(ahead * n + y);
                }
                if i == y {
                    continue;
                }
                // SAFETY: cluster i's task alone writes (y, i) and (i, y), and reads (y, i) and
                // (x, i): `active` holds every cluster once and not x (merged away), y is skipped
                // just above, so no other task writes any of these entries (row x is only read).
                unsafe {
                    let updated = method.update(buffer.read(x * n + i).to_f64(), buffer.read(y * n + i).to_f64(), d_xy, fx, fy, size[i] as f64);
                    let stored = S::from_f64(updated);
                    buffer.write(y * n + i, stored);
                    buffer.write(i * n + y, stored);
                }
            }
        });
    }
}
