//! Nearest-neighbour chain algorithm for the reducible methods (complete, average, weighted,
//! ward), Müllner (2011), section 3.2.
//!
//! The chain grows from an active cluster to its nearest neighbour until two clusters are mutual
//! nearest neighbours; those are merged and the distances to the union overwrite the surviving
//! cluster's entries (Lance–Williams). The chain itself is sequential; the distance storage
//! ([`Dissimilarities`]: condensed or square, in [`storage`](super::storage)) splits each scan and
//! each update sweep over threads when enough clusters are active.
//!
//! Tie-breaking follows scipy: the previous chain element is preferred, otherwise the lowest
//! index with the strictly smallest distance wins, and a merge keeps the larger index alive.

use std::cmp::Ordering;

use super::dendrogram::Merge;
use super::method::Method;
use crate::alloc::{try_vec, try_with_capacity};
use crate::error::KResult;

/// Distances between the active clusters, updated in place as clusters merge.
pub trait Dissimilarities {
    /// Distance between active clusters `i ≠ j`.
    fn get(&self, i: usize, j: usize) -> f64;

    /// The active cluster nearest to `x` (excluding `x`): the lowest index among those at the
    /// strictly smallest distance, with that distance. `active` is sorted and contains `x`.
    fn nearest(&mut self, active: &[usize], x: usize) -> (usize, f64);

    /// Merge `x < y` into `y`: for every `i ≠ y` of `active` (sorted, `x` already removed), set
    /// d(i, y) to `method.update(d(i, x), d(i, y), d_xy, size_x, size_y, size[i])`.
    // reason: the arguments are the Lance–Williams update's own inputs; a struct would only rename them
    #[allow(clippy::too_many_arguments)]
    fn merge(&mut self, active: &[usize], size: &[usize], method: Method, x: usize, y: usize, d_xy: f64, size_x: usize, size_y: usize);
}

/// Run NN-chain over `n ≥ 2` observations with distances `dist` (overwritten) and return the
/// n−1 merges in the order they were found.
///
/// Errors: the bookkeeping arrays (O(n)) cannot be allocated.
pub fn nn_chain<D: Dissimilarities>(dist: &mut D, n: usize, method: Method) -> KResult<Vec<Merge>> {
    let mut active: Vec<usize> = try_with_capacity("data", "active cluster list", n)?;
    active.extend(0..n);
    let mut size = try_vec("data", "cluster sizes", n, 1usize)?;
    let mut chain: Vec<usize> = try_with_capacity("data", "nearest-neighbour chain", n)?;
    let mut merges = try_with_capacity("data", "merge list", n.saturating_sub(1))?;

    for _ in 0..n - 1 {
        if chain.is_empty() {
            chain.push(active[0]);
        }
        let (x, y, height) = loop {
            let x = chain[chain.len() - 1];
            let (y, d) = dist.nearest(&active, x);
            if chain.len() > 1 {
                // The previous chain element wins unless something is strictly nearer: then the
                // two are mutual nearest neighbours (a NaN distance is never strictly nearer).
                let previous = chain[chain.len() - 2];
                let d_previous = dist.get(x, previous);
                if d.partial_cmp(&d_previous) != Some(Ordering::Less) {
                    break (x, previous, d_previous);
                }
            }
            chain.push(y);
        };
        chain.truncate(chain.len() - 2);
        let (x, y) = if x < y { (x, y) } else { (y, x) };
        merges.push(Merge { a: x, b: y, height });

        let (size_x, size_y) = (size[x], size[y]);
        size[x] = 0;
        size[y] = size_x + size_y;
        let pos = active.binary_search(&x).expect("x is active");
        active.remove(pos);
        dist.merge(&active, &size, method, x, y, height, size_x, size_y);
    }
    Ok(merges)
}
