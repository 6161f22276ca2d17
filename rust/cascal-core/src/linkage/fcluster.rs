//! Flat clusters from a linkage matrix, with scipy's `fcluster` semantics and label numbering.
//!
//! Both criteria cut the tree by the *cophenetic* height of each subtree, i.e. the largest merge
//! height inside it (which equals the row's own height for monotone matrices). `distance` keeps
//! together observations whose cophenetic distance is ≤ t; `maxclust` uses the smallest such
//! threshold giving at most k clusters. Labels run from 1 in scipy's traversal order.

use crate::alloc::{try_vec, try_with_capacity, try_zeroed};
use crate::error::{KResult, KernelError};

/// Validate a row-major linkage matrix `z` (n−1 rows of `[id_a, id_b, height, size]`) and return
/// the number of observations n.
///
/// Checks: at least one row; finite values; ids integral, distinct, in `[0, n + row)` (a cluster
/// is used only after it is formed) and each used once; heights ≥ 0; sizes equal to the sum of
/// the two merged clusters' sizes. Monotone heights are not required.
pub fn validate_linkage_matrix(z: &[f64]) -> KResult<usize> {
    if z.is_empty() || z.len() % 4 != 0 {
        return Err(KernelError::new("Z", format!("expected a non-empty (n-1)×4 matrix, got {} values", z.len())));
    }
    let rows = z.len() / 4;
    let n = rows + 1;
    let mut size: Vec<usize> = try_zeroed("Z", "cluster sizes", 2 * n - 1)?;
    size[..n].fill(1);
    let mut used: Vec<bool> = try_zeroed("Z", "used-cluster flags", 2 * n - 1)?;
    for (k, row) in z.chunks_exact(4).enumerate() {
        if let Some(col) = row.iter().position(|v| !v.is_finite()) {
            return Err(KernelError::new("Z", format!("row {k}, column {col} is NaN or infinite")));
        }
        let mut children = [0usize; 2];
        for (c, &id) in row[..2].iter().enumerate() {
            if id < 0.0 || id.fract() != 0.0 || id >= (n + k) as f64 {
                return Err(KernelError::new(
                    "Z",
                    format!("row {k}: cluster id {id} is not an integer in [0, {}) (ids must exist before they are merged)", n + k),
                ));
            }
            let id = id as usize;
            if used[id] {
                return Err(KernelError::new("Z", format!("row {k}: cluster {id} is merged more than once")));
            }
            used[id] = true;
            children[c] = id;
        }
        if row[2] < 0.0 {
            return Err(KernelError::new("Z", format!("row {k}: negative height {}", row[2])));
        }
        let expected = size[children[0]] + size[children[1]];
        if row[3] != expected as f64 {
            return Err(KernelError::new(
                "Z",
                format!("row {k}: size {} but clusters {} and {} hold {expected} observations", row[3], children[0], children[1]),
            ));
        }
        size[n + k] = expected;
    }
    Ok(n)
}

/// Largest merge height inside the subtree of each row.
fn subtree_max_heights(z: &[f64], n: usize) -> KResult<Vec<f64>> {
    let mut max_height: Vec<f64> = try_zeroed("Z", "subtree heights", n - 1)?;
    for (k, row) in z.chunks_exact(4).enumerate() {
        let mut m = row[2];
        for &child in &row[..2] {
            let child = child as usize;
            if child >= n {
                m = m.max(max_height[child - n]);
            }
        }
        max_height[k] = m;
    }
    Ok(max_height)
}

/// Label observations so that each maximal subtree whose cophenetic height is ≤ `threshold`
/// forms one cluster, numbering clusters in scipy's depth-first order.
fn cut(z: &[f64], n: usize, max_height: &[f64], threshold: f64) -> KResult<Vec<i32>> {
    enum Step {
        Enter(usize),
        Leave(usize),
    }
    let children = |row: usize| [z[4 * row] as usize, z[4 * row + 1] as usize];
    let mut labels: Vec<i32> = try_zeroed("Z", "flat cluster labels", n)?;
    let mut cluster = 0i32;
    let mut leader: Option<usize> = None;
    let mut stack = vec![Step::Enter(n - 2)];
    while let Some(step) = stack.pop() {
        match step {
            Step::Enter(row) => {
                if leader.is_none() && max_height[row] <= threshold {
                    leader = Some(row);
                    cluster += 1;
                }
                stack.push(Step::Leave(row));
                // Internal children are visited left first, so pushed right first.
                for &child in children(row).iter().rev() {
                    if child >= n {
                        stack.push(Step::Enter(child - n));
                    }
                }
            }
            Step::Leave(row) => {
                for &child in &children(row) {
                    if child < n {
                        if leader.is_none() {
                            cluster += 1;
                        }
                        labels[child] = cluster;
                    }
                }
                if leader == Some(row) {
                    leader = None;
                }
            }
        }
    }
    Ok(labels)
}

/// Flat clusters in which every pair of observations has cophenetic distance ≤ `t`.
pub fn fcluster_distance(z: &[f64], t: f64) -> KResult<Vec<i32>> {
    if t.is_nan() {
        return Err(KernelError::new("t", "threshold is NaN"));
    }
    let n = validate_linkage_matrix(z)?;
    let max_height = subtree_max_heights(z, n)?;
    cut(z, n, &max_height, t)
}

/// At most `k` flat clusters, cutting at the smallest cophenetic height that allows it (ties in
/// heights can force fewer clusters). `k ≥ n` gives every observation its own cluster, labelled
/// 1..n in observation order (as scipy does).
pub fn fcluster_maxclust(z: &[f64], k: usize) -> KResult<Vec<i32>> {
    let mut cuts = fcluster_maxclust_many(z, &[k])?;
    Ok(cuts.pop().expect("one cut per k"))
}

/// [`fcluster_maxclust`] for several `ks` of the same tree, validating `z` and sorting its
/// heights once (the router cuts every proficiency set into 2..=max_k groups).
pub fn fcluster_maxclust_many(z: &[f64], ks: &[usize]) -> KResult<Vec<Vec<i32>>> {
    if ks.contains(&0) {
        return Err(KernelError::new("t", "maxclust needs at least 1 cluster, got 0"));
    }
    let n = validate_linkage_matrix(z)?;
    let max_height = subtree_max_heights(z, n)?;
    let mut sorted = try_vec("Z", "sorted subtree heights", max_height.len(), 0.0)?;
    sorted.copy_from_slice(&max_height);
    sorted.sort_by(f64::total_cmp);
    ks.iter()
        .map(|&k| {
            if k >= n {
                let mut labels = try_with_capacity("Z", "flat cluster labels", n)?;
                labels.extend(1..=n as i32);
                Ok(labels)
            } else {
                // n − count(max_height ≤ r) clusters remain at threshold r; we need count ≥ n − k.
                cut(z, n, &max_height, sorted[n - k - 1])
            }
        })
        .collect()
}
