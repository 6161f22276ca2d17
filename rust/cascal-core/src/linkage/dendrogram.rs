//! From the raw merge sequence of a clustering algorithm to scipy's linkage matrix.
//!
//! MST and NN-chain produce merges in an order that is not sorted by height, and name clusters by
//! one of their observations. scipy's convention (also fastcluster's): sort the merges by height
//! (stable), then give the cluster formed at row `k` the id `n + k`; each row lists the ids of the
//! two merged clusters (smaller first), the height and the size of the new cluster.

use crate::alloc::{checked_len, try_with_capacity, try_zeroed};
use crate::error::{KResult, KernelError};

/// One merge found by an algorithm: two clusters, each named by any observation it contains.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Merge {
    pub a: usize,
    pub b: usize,
    pub height: f64,
}

/// Union-find over observations and the clusters formed so far, naming each set by its newest id.
struct ClusterIds {
    parent: Vec<usize>,
    size: Vec<usize>,
    next_id: usize,
}

impl ClusterIds {
    fn new(n: usize) -> KResult<Self> {
        let total = n.checked_mul(2).ok_or_else(|| KernelError::new("data", format!("{n} observations are too many")))? - 1;
        let mut size: Vec<usize> = try_zeroed("data", "cluster sizes", total)?;
        size[..n].fill(1);
        let mut parent: Vec<usize> = try_with_capacity("data", "cluster tree", total)?;
        parent.extend(0..total);
        Ok(Self { parent, size, next_id: n })
    }

    /// Id of the cluster that currently contains `node` (with path halving).
    fn find(&mut self, mut node: usize) -> usize {
        while self.parent[node] != node {
            let grandparent = self.parent[self.parent[node]];
            self.parent[node] = grandparent;
            node = grandparent;
        }
        node
    }

    /// Join the clusters with ids `a` and `b` (both roots) under a new id; return its size.
    fn join(&mut self, a: usize, b: usize) -> usize {
        let id = self.next_id;
        self.next_id += 1;
        self.parent[a] = id;
        self.parent[b] = id;
        self.size[id] = self.size[a] + self.size[b];
        self.size[id]
    }
}

/// Sort `merges` by height (stable) and return the row-major (n−1)×4 linkage matrix.
///
/// `merges` must hold exactly n−1 merges that join n observations into one tree.
///
/// Errors: the matrix or the union-find arrays cannot be allocated.
pub fn to_linkage_matrix(mut merges: Vec<Merge>, n: usize) -> KResult<Vec<f64>> {
    debug_assert_eq!(merges.len() + 1, n);
    merges.sort_by(|x, y| x.height.total_cmp(&y.height));
    let mut ids = ClusterIds::new(n)?;
    let mut z = try_with_capacity("data", "linkage matrix", checked_len("data", "linkage matrix", &[4, merges.len()])?)?;
    for m in &merges {
        let ra = ids.find(m.a);
        let rb = ids.find(m.b);
        debug_assert_ne!(ra, rb, "a merge joins a cluster with itself");
        let size = ids.join(ra, rb);
        z.extend_from_slice(&[ra.min(rb) as f64, ra.max(rb) as f64, m.height, size as f64]);
    }
    Ok(z)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relabels_and_sorts_by_height() {
        // Points 0..4. Algorithm order: {2,3} at 5.0, {0,1} at 1.0, {0,2} (i.e. the two pairs) at 9.0.
        let merges = vec![
            Merge { a: 3, b: 2, height: 5.0 },
            Merge { a: 1, b: 0, height: 1.0 },
            Merge { a: 2, b: 0, height: 9.0 },
        ];
        let z = to_linkage_matrix(merges, 4).unwrap();
        // Sorted: {0,1}@1 -> id 4; {2,3}@5 -> id 5; {4,5}@9 -> id 6 of size 4.
        assert_eq!(z, vec![0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 5.0, 2.0, 4.0, 5.0, 9.0, 4.0]);
    }

    #[test]
    fn equal_heights_keep_algorithm_order() {
        let merges = vec![Merge { a: 2, b: 3, height: 0.0 }, Merge { a: 0, b: 1, height: 0.0 }, Merge { a: 1, b: 3, height: 0.0 }];
        let z = to_linkage_matrix(merges, 4).unwrap();
        assert_eq!(z, vec![2.0, 3.0, 0.0, 2.0, 0.0, 1.0, 0.0, 2.0, 4.0, 5.0, 0.0, 4.0]);
    }
}
