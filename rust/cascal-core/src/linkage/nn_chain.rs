//! Nearest-neighbour chain algorithm for the reducible methods (complete, average, weighted,
//! ward), Müllner (2011), section 3.2, working in place on one condensed distance buffer.
//!
//! The chain grows from an active cluster to its nearest neighbour until two clusters are mutual
//! nearest neighbours; those are merged and the distances to the union are written over the
//! row/column of the surviving cluster with the Lance–Williams formula. The chain itself is
//! sequential; each nearest-neighbour scan and each update sweep is split over threads when
//! enough clusters are active (the work is bound by memory latency of column reads).
//!
//! Tie-breaking follows scipy: the previous chain element is preferred, otherwise the lowest
//! index with the strictly smallest distance wins, and a merge keeps the larger index alive.

use rayon::prelude::*;

use super::condensed::{condensed_index, row_start};
use super::dendrogram::Merge;
use super::method::Method;
use super::real::{infinity, Real};
use super::shared::SharedBuffer;

/// Scans over fewer active clusters than this stay on one thread.
const PARALLEL_MIN: usize = 2048;
/// Smallest piece of a parallel scan.
const CHUNK_MIN: usize = 512;
/// How many clusters ahead the scattered reads are prefetched.
const PREFETCH_DISTANCE: usize = 16;

/// Length of the pieces a parallel sweep over `len` clusters is cut into.
fn chunk_len(len: usize) -> usize {
    CHUNK_MIN.max(len.div_ceil(4 * rayon::current_num_threads()))
}

/// Active clusters in increasing order with their sizes; sizes of dead clusters are 0.
struct Clusters {
    active: Vec<usize>,
    size: Vec<usize>,
}

/// Run NN-chain on the condensed buffer `dist` of `n ≥ 2` observations (overwritten) and return
/// the n−1 merges in the order they were found.
pub fn nn_chain<S: Real>(dist: &mut [S], n: usize, method: Method) -> Vec<Merge> {
    debug_assert!(n >= 2 && dist.len() == n * (n - 1) / 2);
    let mut clusters = Clusters { active: (0..n).collect(), size: vec![1; n] };
    let mut chain: Vec<usize> = Vec::with_capacity(n);
    let mut merges = Vec::with_capacity(n - 1);

    for _ in 0..n - 1 {
        if chain.is_empty() {
            chain.push(clusters.active[0]);
        }
        let (x, y, height) = loop {
            let x = chain[chain.len() - 1];
            let previous = if chain.len() > 1 { Some(chain[chain.len() - 2]) } else { None };
            let (y, d) = nearest(dist, n, &clusters.active, x, previous);
            if Some(y) == previous {
                break (x, y, d);
            }
            chain.push(y);
        };
        chain.truncate(chain.len() - 2);
        let (x, y) = if x < y { (x, y) } else { (y, x) };
        merges.push(Merge { a: x, b: y, height });
        merge_into(dist, n, &mut clusters, method, x, y, height);
    }
    merges
}

/// Smallest value and its first position in `values` (position `usize::MAX` if all are +∞).
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

/// Nearest active cluster to `x` and its distance. `previous` (the chain element before `x`)
/// wins ties; otherwise the first strictly smallest distance in index order.
fn nearest<S: Real>(dist: &[S], n: usize, active: &[usize], x: usize, previous: Option<usize>) -> (usize, f64) {
    let (mut best, mut best_d) = match previous {
        Some(p) => (p, dist[condensed_index(n, x, p)]),
        None => (usize::MAX, infinity::<S>()),
    };
    // Column part: active clusters i < x, entry (i, x), one read per row.
    let below = &active[..active.partition_point(|&i| i < x)];
    let column = |ids: &[usize]| {
        let entry = |i: usize| row_start(n, i) + (x - i - 1);
        let buffer = SharedBuffer { ptr: dist.as_ptr() as *mut S, len: dist.len() };
        first_min(ids.iter().enumerate().map(|(k, &i)| {
            if let Some(&ahead) = ids.get(k + PREFETCH_DISTANCE) {
                buffer.prefetch(entry(ahead));
            }
            dist[entry(i)]
        }))
    };
    let (col_d, col_pos) = if below.len() >= PARALLEL_MIN {
        let chunk = chunk_len(below.len());
        below
            .par_chunks(chunk)
            .enumerate()
            .map(|(c, ids)| {
                let (v, k) = column(ids);
                (v, k.saturating_add(c * chunk))
            })
            .reduce(|| (infinity::<S>(), usize::MAX), |a, b| if b.0 < a.0 { b } else { a })
    } else {
        column(below)
    };
    if col_d < best_d {
        best_d = col_d;
        best = below[col_pos];
    }
    // Row part: entries (x, j) for j > x are contiguous; dead clusters hold +∞.
    let start = row_start(n, x);
    let row = &dist[start..start + (n - x - 1)];
    let row_min = row.iter().copied().fold(infinity::<S>(), |m, v| if v < m { v } else { m });
    if row_min < best_d {
        let offset = row.iter().position(|&v| v == row_min).expect("minimum is in the row");
        best_d = row_min;
        best = x + 1 + offset;
    }
    debug_assert!(best != usize::MAX, "no active neighbour found");
    (best, best_d.to_f64())
}

/// Merge clusters `x < y`: `y` becomes the union and `x` dies.
///
/// Only the entries (i, x) with i < x are set to +∞: they lie in the contiguous rows that
/// `nearest` scans without a liveness test; the entries (x, j) are only reached through the
/// active list, which no longer contains `x`.
fn merge_into<S: Real>(dist: &mut [S], n: usize, clusters: &mut Clusters, method: Method, x: usize, y: usize, d_xy: f64) {
    let size_x = clusters.size[x];
    let size_y = clusters.size[y];
    clusters.size[x] = 0;
    clusters.size[y] = size_x + size_y;
    let pos = clusters.active.binary_search(&x).expect("x is active");
    clusters.active.remove(pos);
    let (size_x, size_y) = (size_x as f64, size_y as f64);
    let start_x = row_start(n, x);
    let start_y = row_start(n, y);
    let buffer = SharedBuffer { ptr: dist.as_mut_ptr(), len: dist.len() };
    let size = &clusters.size;
    let entries = |i: usize| {
        let ix = if i < x { row_start(n, i) + (x - i - 1) } else { start_x + (i - x - 1) };
        let iy = if i < y { row_start(n, i) + (y - i - 1) } else { start_y + (i - y - 1) };
        (ix, iy)
    };
    let update = |ids: &[usize]| {
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
            let updated = method.update(buffer.read(ix).to_f64(), buffer.read(iy).to_f64(), d_xy, size_x, size_y, size[i] as f64);
            buffer.write(iy, S::from_f64(updated));
            if i < x {
                buffer.write(ix, infinity::<S>());
            }
        }
    };
    let active = &clusters.active;
    if active.len() >= PARALLEL_MIN {
        active.par_chunks(chunk_len(active.len())).for_each(update);
    } else {
        update(active);
    }
}
