//! Hierarchical agglomerative clustering with scipy-compatible output (Müllner 2011).
//!
//! - single linkage: Prim's minimum spanning tree ([`mst`]), directly on vectors without a
//!   distance matrix, or on a condensed matrix;
//! - complete, average, weighted, ward: nearest-neighbour chain ([`nn_chain`]) with
//!   Lance–Williams updates in place, with scipy's tie-breaking (so tied inputs give scipy's
//!   hierarchy, not just a valid one). From vectors the chain runs on the single condensed
//!   buffer that `pdist` returns (memory n(n−1)/2 values of the input type); from a condensed
//!   input it runs on a square working copy ([`storage`]);
//! - then merges are sorted by height and relabelled as scipy does ([`dendrogram`]).
//!
//! The result is scipy's row-major (n−1)×4 linkage matrix `[id_a, id_b, height, size]`.
//! Flat cuts of such a matrix live in [`fcluster`].

pub mod condensed;
pub mod dendrogram;
pub mod fcluster;
pub mod method;
pub mod mst;
pub mod nn_chain;
pub mod real;
pub mod storage;
pub mod vectors;

pub use condensed::{condensed_index, condensed_len, observations_from_len};
pub use fcluster::{fcluster_distance, fcluster_maxclust, fcluster_maxclust_many, validate_linkage_matrix};
pub use method::Method;
pub use crate::distance::Metric;
pub use real::Real;
pub use vectors::{check_vectors, Vectors};

use crate::alloc::try_with_capacity;
use crate::error::{KResult, KernelError};

/// Square working matrices are used up to this size (bytes); larger inputs stay condensed.
const SQUARE_MAX_BYTES: usize = 6 << 30;

/// Linkage of the observations whose pairwise distances are the condensed vector `dist`
/// (length n(n−1)/2, finite, non-negative; not modified). Returns the (n−1)×4 linkage matrix,
/// row-major.
///
/// Single linkage runs Prim directly on `dist`. The other methods copy it into a full square
/// working matrix of the same type (n² values; scans read contiguous rows instead of scattered
/// columns), or into a condensed copy when the square one would exceed 6 GiB or cannot be
/// allocated. Errors: invalid `dist`, or working memory that cannot be allocated.
pub fn linkage_condensed<S: Real>(dist: &[S], method: Method) -> KResult<Vec<f64>> {
    let n = check_condensed(dist)?;
    let merges = match method {
        Method::Single => mst::prim(n, |x, i| dist[condensed_index(n, x, i)].to_f64())?,
        _ => {
            // The square matrix when it is small enough and can be allocated; otherwise (also
            // when the allocation cap refuses it) the condensed copy, half the size.
            let square = if n.saturating_mul(n).saturating_mul(std::mem::size_of::<S>()) <= SQUARE_MAX_BYTES {
                match storage::Square::from_condensed(dist, n) {
                    Ok(square) => Some(square),
                    Err(e) if e.is_out_of_memory() => None,
                    Err(e) => return Err(e),
                }
            } else {
                None
            };
            match square {
                Some(mut square) => nn_chain::nn_chain(&mut square, n, method)?,
                None => {
                    let mut copy = try_with_capacity("data", "working copy of the condensed distances", dist.len())?;
                    copy.extend_from_slice(dist);
                    nn_chain::nn_chain(&mut storage::Condensed::new(copy, n)?, n, method)?
                }
            }
        }
    };
    dendrogram::to_linkage_matrix(merges, n)
}

/// Like [`linkage_condensed`] but consumes `dist` and works in place on it (no copy, condensed
/// layout). `dist` must already be validated (see [`check_condensed`]).
pub fn linkage_condensed_owned<S: Real>(dist: Vec<S>, n: usize, method: Method) -> KResult<Vec<f64>> {
    let merges = match method {
        Method::Single => mst::prim(n, |x, i| dist[condensed_index(n, x, i)].to_f64())?,
        _ => nn_chain::nn_chain(&mut storage::Condensed::new(dist, n)?, n, method)?,
    };
    dendrogram::to_linkage_matrix(merges, n)
}

/// Check that `dist` is a condensed distance vector: triangular length for n ≥ 2, every value
/// finite and non-negative. Returns n.
pub fn check_condensed<S: Real>(dist: &[S]) -> KResult<usize> {
    let n = observations_from_len(dist.len()).ok_or_else(|| {
        KernelError::new(
            "data",
            format!(
                "a 1-D condensed distance vector needs length n(n-1)/2 with n >= 2 observations; got length {}",
                dist.len()
            ),
        )
    })?;
    if let Some(pos) = dist.iter().position(|v| !v.is_finite() || v.to_f64() < 0.0) {
        let what = if dist[pos].is_finite() { "a negative distance" } else { "NaN or infinity" };
        return Err(KernelError::new("data", format!("condensed distances contain {what} at position {pos}")));
    }
    Ok(n)
}

/// Linkage of `n` observation vectors (`data` row-major n×d) under `metric`.
///
/// Single linkage computes distances on the fly in f64 (O(n·d) memory). The other methods build
/// one condensed matrix of type `T` with [`crate::distance::pdist`] and cluster it in place
/// (memory n(n−1)/2 values of `T`). `ward` requires the euclidean metric. Zero vectors under the
/// cosine metric are rejected.
pub fn linkage_vectors<T: Real>(
    data: &[T],
    n: usize,
    d: usize,
    method: Method,
    metric: Metric,
) -> KResult<Vec<f64>> {
    if n < 2 {
        return Err(KernelError::new("data", format!("at least 2 observations are needed, got {n}")));
    }
    if method == Method::Ward && metric != Metric::Euclidean {
        return Err(KernelError::new("metric", "method \"ward\" requires metric \"euclidean\""));
    }
    if method == Method::Single {
        let vectors = Vectors::new(data, n, d, metric)?;
        let merges = mst::prim(n, |x, i| vectors.distance(x, i))?;
        return dendrogram::to_linkage_matrix(merges, n);
    }
    check_vectors(data, n, d, metric)?;
    // The distance kernel names its input "X"; here it is "data".
    let dist: Vec<T> = crate::distance::pdist(data, n, d, metric).map_err(|e| KernelError { arg: "data", ..e })?;
    linkage_condensed_owned(dist, n, method)
}

#[cfg(test)]
mod tests;
