//! Niche kernels: NaN-aware weighted cluster means and nearest-centroid search.
//!
//! - [`cluster_means`]: per cluster and column, the weighted mean of the non-NaN values of the
//!   rows in that cluster (niche scores: docs/algorithm.md#assigning-questions-and-niche-scores).
//! - [`nearest_centroids`]: the `k` nearest centroids of every query row, ascending, ties broken
//!   by the lower centroid index (docs/algorithm.md#assigning-questions-and-niche-scores and
//!   #niche-mixture). Queries are processed in blocks, so the extra memory is bounded by the block
//!   size, never `n × n_centroids`.

use rayon::prelude::*;

use crate::distance::{check_matrix, Geometry, Metric, PairSide, Prepared, Sweep};
use crate::real::Real;
use crate::alloc::{check_bytes, checked_len, try_with_capacity, try_zeroed};
use crate::error::{KResult, KernelError};

/// Weighted means of `values` (`n × m`, row-major, NaN = missing) grouped by `labels`.
///
/// Returns the row-major `n_clusters × m` matrix whose entry `(c, j)` is
/// `Σ w_i v_ij / Σ w_i` over the rows `i` with `labels[i] == c` and `v_ij` not NaN; it is NaN
/// where that sum of weights is 0 (no such row, or all their weights are 0). `weights = None`
/// means every weight is 1. Weights are f64 whatever `T` is; sums are accumulated in f64.
///
/// Errors: `labels` of the wrong length or outside `[0, n_clusters)`; `values` of the wrong length
/// or holding ±infinity; `weights` of the wrong length, negative, NaN or infinite.
pub fn cluster_means<T: Real>(
    labels: &[i64],
    values: &[T],
    n: usize,
    m: usize,
    n_clusters: usize,
    weights: Option<&[f64]>,
) -> KResult<Vec<T>> {
    if labels.len() != n {
        return Err(KernelError::new("labels", format!("has {} entries but values has {n} rows", labels.len())));
    }
    if values.len() != n * m {
        return Err(KernelError::new("values", format!("has {} values, expected {n} x {m}", values.len())));
    }
    if let Some(i) = labels.iter().position(|&l| l < 0 || l as u64 >= n_clusters as u64) {
        return Err(KernelError::new(
            "labels",
            format!("value {} at index {i} is outside [0, n_clusters={n_clusters})", labels[i]),
        ));
    }
    if m > 0 {
        if let Some(r) = values
            .par_chunks(m)
            .position_first(|row| row.iter().any(|v| v.to_f64().is_infinite()))
        {
            return Err(KernelError::new("values", format!("contains infinity at row {r} (NaN marks a missing value)")));
        }
    }
    if let Some(w) = weights {
        if w.len() != n {
            return Err(KernelError::new("weights", format!("has {} entries but values has {n} rows", w.len())));
        }
        if let Some(i) = w.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
            return Err(KernelError::new(
                "weights",
                format!("weight {:?} at index {i} is not a finite non-negative number", w[i]),
            ));
        }
    }
    let cells = checked_len("n_clusters", "cluster means", &[n_clusters, m])?;
    if cells == 0 {
        return Ok(Vec::new());
    }
    let mut result: Vec<T> = try_with_capacity("n_clusters", "cluster means", cells)?;
    // Each worker holds two accumulators of `cells` f64 (made by `vec!` below, as rayon's fold
    // needs an infallible identity): check that they all fit before any of them is made.
    let workers = rayon::current_num_threads().min(n.max(1)).saturating_add(1);
    let accumulators = checked_len("n_clusters", "per-worker sums of the cluster means", &[cells, 2, workers])?;
    check_bytes::<f64>("n_clusters", "per-worker sums of the cluster means", accumulators)?;
    let chunk = (n / (4 * rayon::current_num_threads()).max(1)).max(2048);
    let zero = || (vec![0.0f64; cells], vec![0.0f64; cells]);
    let (sums, wsums) = (0..n.div_ceil(chunk))
        .into_par_iter()
        .fold(zero, |(mut s, mut ws), ci| {
            for i in ci * chunk..((ci + 1) * chunk).min(n) {
                let w = weights.map_or(1.0, |w| w[i]);
                let base = labels[i] as usize * m;
                for (j, v) in values[i * m..(i + 1) * m].iter().enumerate() {
                    let v = v.to_f64();
                    if !v.is_nan() {
                        s[base + j] += w * v;
                        ws[base + j] += w;
                    }
                }
            }
            (s, ws)
        })
        .reduce(zero, |(mut s, mut ws), (s2, ws2)| {
            s.iter_mut().zip(&s2).for_each(|(a, b)| *a += b);
            ws.iter_mut().zip(&ws2).for_each(|(a, b)| *a += b);
            (s, ws)
        });
    result.extend(sums.iter().zip(&wsums).map(|(&s, &w)| T::from_f64(if w > 0.0 { s / w } else { f64::NAN })));
    Ok(result)
}

/// Dot-product entries held per query block (bounds the block's memory).
const BLOCK_ELEMENTS: usize = 1 << 20;
/// Largest `k` served by insertion into a sorted list; larger `k` uses selection.
const INSERTION_K: usize = 32;

/// The `k` nearest rows of `c` (`nc × d`) to every row of `x` (`n × d`).
///
/// Returns `(indices, distances)`, both row-major `n × k`: for query `i`, its `k` nearest
/// centroids in ascending distance, ties broken by the lower centroid index. Distances are the
/// ones [`crate::distance::cdist`] defines for `metric`.
///
/// Errors: non-finite or mis-shaped `X` / `C`, `C` without rows, `k` outside `[1, nc]`.
pub fn nearest_centroids<T: Real>(
    x: &[T],
    n: usize,
    c: &[T],
    nc: usize,
    d: usize,
    k: usize,
    metric: Metric,
) -> KResult<(Vec<i64>, Vec<T>)> {
    check_matrix("X", x, n, d)?;
    check_matrix("C", c, nc, d)?;
    if nc == 0 {
        return Err(KernelError::new("C", "must have at least one centroid row"));
    }
    if k == 0 || k > nc {
        return Err(KernelError::new("k", format!("must be between 1 and the number of centroids ({nc}), got {k}")));
    }
    let len = checked_len("k", "nearest-centroid output", &[n, k])?;
    // zeroed, so safe code can hand them out in row blocks (fresh pages: no pass over the memory)
    let mut idx: Vec<i64> = try_zeroed("k", "nearest-centroid indices", len)?;
    let mut dist: Vec<T> = try_zeroed("k", "nearest-centroid distances", len)?;
    if len == 0 {
        return Ok((idx, dist));
    }
    let geom = Geometry::fit(metric, c, &[x, c], d);
    let prepared = Prepared::new(&geom, c, d, "C")?;
    let row_block = (BLOCK_ELEMENTS / nc).clamp(1, 1024);
    let shape = Sweep { row_block, col_tile: nc, upper: false };
    // row block b owns output rows b·row_block .. of both outputs (one tile per block: col_tile = nc)
    let outs: Vec<(&mut [i64], &mut [T])> = idx.chunks_mut(row_block * k).zip(dist.chunks_mut(row_block * k)).collect();
    crate::distance::sweep(&geom, x, &prepared, d, shape, outs, |t, (block_idx, block_dist)| {
        let mut row_dist = vec![0.0f64; nc];
        let mut best: Vec<(f64, usize)> = Vec::with_capacity(nc.min(INSERTION_K.max(k)));
        for ii in 0..t.rows {
            let i = t.r0 + ii;
            let a = PairSide { row: &x[i * d..(i + 1) * d], sq: t.sq[ii], zero: t.zero[ii] };
            geom.finish_row(&t.dots[ii * nc..(ii + 1) * nc], a, 0, &prepared, c, d, &mut row_dist);
            smallest_k(&row_dist, k, &mut best);
            let (row_idx, row_dist_out) = (&mut block_idx[ii * k..(ii + 1) * k], &mut block_dist[ii * k..(ii + 1) * k]);
            for ((oi, od), &(dv, j)) in row_idx.iter_mut().zip(row_dist_out.iter_mut()).zip(&best) {
                *oi = j as i64;
                *od = T::from_f64(dv);
            }
        }
    });
    Ok((idx, dist))
}

/// The `k` smallest `(distance, index)` of `row` in ascending order (ties: lower index first).
fn smallest_k(row: &[f64], k: usize, best: &mut Vec<(f64, usize)>) {
    best.clear();
    if k <= INSERTION_K {
        // the first k entries fill the list; afterwards most entries lose against the current
        // k-th distance, which a plain comparison decides (distances are finite and never -0.0,
        // so it agrees with total_cmp)
        let mut worst = f64::INFINITY;
        for (j, &v) in row.iter().enumerate() {
            if best.len() == k {
                // Indices arrive in increasing order, so an equal distance never displaces.
                if v >= worst {
                    continue;
                }
                best.pop();
            }
            let pos = best.partition_point(|&(b, _)| b.total_cmp(&v).is_le());
            best.insert(pos, (v, j));
            if best.len() == k {
                worst = best[k - 1].0;
            }
        }
    } else {
        best.extend(row.iter().enumerate().map(|(j, &v)| (v, j)));
        let order = |a: &(f64, usize), b: &(f64, usize)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
        if k < best.len() {
            best.select_nth_unstable_by(k - 1, order);
            best.truncate(k);
        }
        best.sort_unstable_by(order);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::cdist;
    use crate::distance::tests::Lcg;

    #[test]
    fn cluster_means_weighted_and_nan_aware() {
        // rows: (label, values, weight)
        let labels = [0i64, 1, 0, 0];
        let values = [1.0f64, f64::NAN, 3.0, 4.0, 5.0, 6.0, f64::NAN, f64::NAN];
        let weights = [1.0f64, 2.0, 3.0, 0.5];
        let out = cluster_means(&labels, &values, 4, 2, 3, Some(&weights)).unwrap();
        assert!((out[0] - (1.0 + 15.0) / 4.0).abs() < 1e-15);
        assert!((out[1] - 6.0).abs() < 1e-15);
        assert_eq!(&out[2..4], &[3.0, 4.0]);
        assert!(out[4].is_nan() && out[5].is_nan());
        let unweighted = cluster_means(&labels, &values, 4, 2, 3, None).unwrap();
        assert_eq!(unweighted[0], 3.0);
    }

    #[test]
    fn cluster_means_many_rows_match_serial_sum() {
        let (n, m, nk) = (10_000, 3, 7);
        let mut g = Lcg(9);
        let labels: Vec<i64> = (0..n).map(|_| ((g.next() + 1.0) * 3.5) as i64 % nk).collect();
        let values = g.matrix(n, m);
        let out = cluster_means(&labels, &values, n, m, nk as usize, None).unwrap();
        for c in 0..nk as usize {
            for j in 0..m {
                let sel: Vec<f64> = (0..n).filter(|&i| labels[i] as usize == c).map(|i| values[i * m + j]).collect();
                let want = sel.iter().sum::<f64>() / sel.len() as f64;
                assert!((out[c * m + j] - want).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn cluster_means_rejects_bad_input() {
        let e = cluster_means(&[0, 5], &[1.0f64, 2.0], 2, 1, 3, None).unwrap_err();
        assert_eq!(e.to_string(), "labels: value 5 at index 1 is outside [0, n_clusters=3)");
        let e = cluster_means(&[0, -1], &[1.0f64, 2.0], 2, 1, 3, None).unwrap_err();
        assert_eq!(e.arg, "labels");
        let e = cluster_means(&[0, 1], &[1.0f64, 2.0], 2, 1, 3, Some(&[1.0, -1.0])).unwrap_err();
        assert_eq!(e.arg, "weights");
        let e = cluster_means(&[0, 1], &[1.0f64, 2.0], 2, 1, 3, Some(&[1.0, f64::NAN])).unwrap_err();
        assert_eq!(e.arg, "weights");
        let e = cluster_means(&[0, 1], &[1.0f64, f64::INFINITY], 2, 1, 3, None).unwrap_err();
        assert_eq!(e.to_string(), "values: contains infinity at row 1 (NaN marks a missing value)");
        assert_eq!(cluster_means(&[0], &[1.0f64, 2.0], 2, 1, 3, None).unwrap_err().arg, "labels");
    }

    #[test]
    fn nearest_centroids_match_sorted_cdist() {
        let (n, nc, d) = (500, 40, 6);
        let x = Lcg(10).matrix(n, d);
        let c = Lcg(11).matrix(nc, d);
        for metric in [Metric::Cosine, Metric::Euclidean, Metric::SqEuclidean] {
            let full = cdist(&x, n, &c, nc, d, metric).unwrap();
            for k in [1, 3, 40] {
                let (idx, dist) = nearest_centroids(&x, n, &c, nc, d, k, metric).unwrap();
                for i in 0..n {
                    let mut order: Vec<usize> = (0..nc).collect();
                    order.sort_by(|&a, &b| full[i * nc + a].total_cmp(&full[i * nc + b]).then(a.cmp(&b)));
                    for r in 0..k {
                        let j = idx[i * k + r] as usize;
                        assert!((dist[i * k + r] - full[i * nc + j]).abs() < 1e-12);
                        assert!((dist[i * k + r] - full[i * nc + order[r]]).abs() < 1e-12);
                    }
                }
            }
        }
    }

    #[test]
    fn ties_go_to_the_lower_index() {
        let c = [1.0f64, 0.0, 0.0, 1.0, 1.0, 0.0, 2.0, 0.0];
        let x = [3.0f64, 0.0];
        let (idx, dist) = nearest_centroids(&x, 1, &c, 4, 2, 4, Metric::Cosine).unwrap();
        assert_eq!(idx, vec![0, 2, 3, 1]);
        assert_eq!(dist, vec![0.0, 0.0, 0.0, 1.0]);
        let (idx, _) = smallest_k_owned(&[0.5, 0.1, 0.1, 0.5], 3);
        assert_eq!(idx, vec![1, 2, 0]);
    }

    fn smallest_k_owned(row: &[f64], k: usize) -> (Vec<usize>, Vec<f64>) {
        let mut best = Vec::new();
        smallest_k(row, k, &mut best);
        (best.iter().map(|b| b.1).collect(), best.iter().map(|b| b.0).collect())
    }

    #[test]
    fn selection_path_agrees_with_insertion_path() {
        let mut g = Lcg(12);
        let row: Vec<f64> = (0..200).map(|_| (g.next() * 10.0).round()).collect();
        let (a, _) = smallest_k_owned(&row, INSERTION_K);
        let (b, _) = smallest_k_owned(&row, INSERTION_K + 1);
        assert_eq!(a[..], b[..INSERTION_K]);
    }

    #[test]
    fn nearest_centroids_rejects_bad_k_and_shapes() {
        let c = [1.0f32, 0.0];
        assert_eq!(nearest_centroids(&[1.0f32, 0.0], 1, &c, 1, 2, 2, Metric::Cosine).unwrap_err().arg, "k");
        assert_eq!(nearest_centroids(&[1.0f32, 0.0], 1, &c, 1, 2, 0, Metric::Cosine).unwrap_err().arg, "k");
        assert_eq!(nearest_centroids(&[1.0f32, 0.0], 1, &[], 0, 2, 1, Metric::Cosine).unwrap_err().arg, "C");
        let (i, dd) = nearest_centroids::<f32>(&[], 0, &c, 1, 2, 1, Metric::Cosine).unwrap();
        assert!(i.is_empty() && dd.is_empty());
    }
}
