//! Nearest-neighbour chain algorithm for the reducible methods (complete, average, weighted,
//! ward), Müllner (2011), section 3.2, working in place on one condensed distance buffer.
//!
//! The chain grows from an active cluster to its nearest neighbour until two clusters are mutual
//! nearest neighbours; those are merged and the distances to the union are written over the
//! row/column of the surviving cluster with the Lance–Williams formula. The merged-away cluster's
//! entries are set to +∞ so that scans of contiguous row segments need no liveness test.
//!
//! Tie-breaking follows scipy: the previous chain element is preferred, otherwise the lowest
//! index with the strictly smallest distance wins, and a merge keeps the larger index alive.

use super::condensed::{condensed_index, row_start};
use super::dendrogram::Merge;
use super::method::Method;
use super::real::Real;

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

/// Nearest active cluster to `x` and its distance. `previous` (the chain element before `x`)
/// wins ties; otherwise the first strictly smallest distance in index order.
fn nearest<S: Real>(dist: &[S], n: usize, active: &[usize], x: usize, previous: Option<usize>) -> (usize, f64) {
    let mut best = usize::MAX;
    let mut best_d = S::INFINITY;
    if let Some(p) = previous {
        best = p;
        best_d = dist[condensed_index(n, x, p)];
    }
    // Column part: active clusters i < x, entry (i, x).
    let below = active.partition_point(|&i| i < x);
    for &i in &active[..below] {
        let v = dist[row_start(n, i) + (x - i - 1)];
        if v < best_d {
            best_d = v;
            best = i;
        }
    }
    // Row part: entries (x, j) for j > x are contiguous; dead clusters hold +∞.
    let start = row_start(n, x);
    let row = &dist[start..start + (n - x - 1)];
    let row_min = row.iter().copied().fold(S::INFINITY, |m, v| if v < m { v } else { m });
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
    for &i in &clusters.active {
        if i == y {
            continue;
        }
        let ix = if i < x { row_start(n, i) + (x - i - 1) } else { start_x + (i - x - 1) };
        let iy = if i < y { row_start(n, i) + (y - i - 1) } else { start_y + (i - y - 1) };
        let size_i = clusters.size[i] as f64;
        let updated = method.update(dist[ix].to_f64(), dist[iy].to_f64(), d_xy, size_x, size_y, size_i);
        dist[iy] = S::from_f64(updated);
        if i < x {
            dist[ix] = S::INFINITY;
        }
    }
}
