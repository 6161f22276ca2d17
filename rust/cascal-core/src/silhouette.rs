//! Choosing how many groups one proficiency set splits into: hierarchical clustering of the set's
//! distance matrix, flat cuts into 2..=max_k groups, and the cut with the best weighted silhouette.
//!
//! This is the whole per-set step of the router's niche discovery in one call, so that it runs
//! without the Python interpreter: the router clusters about a thousand small sets per 100k
//! questions, and as a dozen small calls each, holding the GIL, they would dominate the fit.
//!
//! The weighted silhouette of a partition, averaged over anchor points `i` (each compared with all
//! n points): `a_i` is the weighted mean distance from `i` to the other members of its group,
//! `b_i` the smallest weighted mean distance to another group, `s_i = (b_i − a_i) / max(a_i, b_i)`
//! (0 when `i` is alone in its group, when the partition has a single group, or when both are 0);
//! the result is `Σ w_i s_i / Σ w_i` over anchors.

use crate::alloc::{checked_len, try_vec};
use crate::error::{KResult, KernelError};
use crate::linkage::{fcluster_maxclust_many, linkage_condensed, Method};
use crate::real::Real;

/// Check a square `n × n` distance matrix (finite) and its `weights` (finite, > 0).
fn check_square<T: Real>(distances: &[T], n: usize, weights: &[f64]) -> KResult<()> {
    let len = checked_len("distances", "square distance matrix", &[n, n])?;
    if distances.len() != len {
        return Err(KernelError::new(
            "distances",
            format!(
                "expected an {n} x {n} matrix ({len} values) for {n} weights, got {} values",
                distances.len()
            ),
        ));
    }
    if weights.len() != n {
        return Err(KernelError::new(
            "weights",
            format!("expected {n} weights, got {}", weights.len()),
        ));
    }
    if let Some(i) = weights.iter().position(|w| !(w.is_finite() && *w > 0.0)) {
        return Err(KernelError::new(
            "weights",
            format!("weight {i} is {}; weights must be finite and > 0", weights[i]),
        ));
    }
    if let Some(pos) = distances.iter().position(|d| !d.is_finite()) {
        return Err(KernelError::new(
            "distances",
            format!("NaN or infinity at row {}, column {}", pos / n, pos % n),
        ));
    }
    Ok(())
}

fn check_anchors(anchors: &[usize], n: usize) -> KResult<()> {
    if anchors.is_empty() {
        return Err(KernelError::new("anchors", "at least one anchor point is needed"));
    }
    if let Some(&a) = anchors.iter().find(|&&a| a >= n) {
        return Err(KernelError::new(
            "anchors",
            format!("anchor {a} is out of range for {n} points"),
        ));
    }
    Ok(())
}

/// Weighted silhouettes (module docstring) of several partitions of the same `n` points.
///
/// `distances` is the full row-major `n × n` matrix, `partitions[p]` the labels `0..k_p` of every
/// point (each group non-empty), `weights` the points' positive weights, `anchors` the points the
/// silhouette is averaged over. Sums are accumulated in f64.
pub fn weighted_silhouettes<T: Real>(
    distances: &[T],
    n: usize,
    partitions: &[Vec<i64>],
    weights: &[f64],
    anchors: &[usize],
) -> KResult<Vec<f64>> {
    check_square(distances, n, weights)?;
    check_anchors(anchors, n)?;
    silhouettes_of_checked(distances, n, partitions, weights, anchors)
}

/// [`weighted_silhouettes`] on a matrix, weights and anchors already checked (the partitions are
/// checked here: they are cheap, the matrix is not).
fn silhouettes_of_checked<T: Real>(
    distances: &[T],
    n: usize,
    partitions: &[Vec<i64>],
    weights: &[f64],
    anchors: &[usize],
) -> KResult<Vec<f64>> {
    let mut sizes = Vec::with_capacity(partitions.len());
    for (p, labels) in partitions.iter().enumerate() {
        if labels.len() != n {
            return Err(KernelError::new(
                "partitions",
                format!("partition {p} has {} labels for {n} points", labels.len()),
            ));
        }
        if let Some(&bad) = labels.iter().find(|&&l| l < 0 || l as usize >= n) {
            return Err(KernelError::new(
                "partitions",
                format!("partition {p} has label {bad}; labels are 0..n-1"),
            ));
        }
        sizes.push(labels.iter().max().map_or(0, |&m| m as usize + 1));
    }
    let offsets: Vec<usize> = sizes
        .iter()
        .scan(0, |acc, &k| {
            let start = *acc;
            *acc += k;
            Some(start)
        })
        .collect();
    let total: usize = sizes.iter().sum();
    // group weights of every partition, side by side
    let mut group_weight = try_vec("partitions", "group weights", total, 0.0f64)?;
    for (labels, &off) in partitions.iter().zip(&offsets) {
        for (j, &l) in labels.iter().enumerate() {
            group_weight[off + l as usize] += weights[j];
        }
    }
    let np = partitions.len();
    // Cuts of one hierarchy are nested: every partition then merges groups of the finest one, and
    // one pass over each anchor's row (summing into the finest groups) serves them all.
    let finest = (0..np).max_by_key(|&p| sizes[p]).unwrap_or(0);
    let coarsening = nested_maps(partitions, &sizes, finest);
    // otherwise: the flat column index of point j's group in each partition
    let mut column = Vec::new();
    if coarsening.is_none() {
        column = try_vec("partitions", "group columns", n * np, 0usize)?;
        for (p, (labels, &off)) in partitions.iter().zip(&offsets).enumerate() {
            for (j, &l) in labels.iter().enumerate() {
                column[j * np + p] = off + l as usize;
            }
        }
    }
    let mut sums = try_vec("partitions", "distance sums", total, 0.0f64)?;
    let mut fine_sums = vec![0.0f64; sizes.get(finest).copied().unwrap_or(0)];
    let mut weighted = vec![0.0f64; np];
    let mut anchor_weight = 0.0f64;
    for &i in anchors {
        sums.iter_mut().for_each(|s| *s = 0.0);
        let row = &distances[i * n..(i + 1) * n];
        match &coarsening {
            Some(maps) => {
                fine_sums.iter_mut().for_each(|s| *s = 0.0);
                let fine = &partitions[finest];
                for (j, d) in row.iter().enumerate() {
                    fine_sums[fine[j] as usize] += d.to_f64() * weights[j];
                }
                for (p, map) in maps.iter().enumerate() {
                    for (g, s) in fine_sums.iter().enumerate() {
                        sums[offsets[p] + map[g]] += s;
                    }
                }
            }
            None => {
                for (j, d) in row.iter().enumerate() {
                    let wd = d.to_f64() * weights[j];
                    for c in &column[j * np..(j + 1) * np] {
                        sums[*c] += wd;
                    }
                }
            }
        }
        let w_i = weights[i];
        anchor_weight += w_i;
        for p in 0..np {
            let (off, k) = (offsets[p], sizes[p]);
            let own = off + partitions[p][i] as usize;
            let own_weight = group_weight[own] - w_i;
            if own_weight <= 0.0 {
                continue; // alone in its group: s_i = 0
            }
            let a = sums[own] / own_weight;
            let mut b = f64::INFINITY;
            for g in off..off + k {
                if g != own && group_weight[g] > 0.0 {
                    b = b.min(sums[g] / group_weight[g]);
                }
            }
            let denom = a.max(b);
            if denom > 0.0 && denom.is_finite() {
                weighted[p] += w_i * (b - a) / denom;
            }
        }
    }
    Ok(weighted.into_iter().map(|s| s / anchor_weight).collect())
}

/// For every partition, the group each group of partition `finest` falls in; `None` unless every
/// partition merges whole groups of `finest` (each of its groups is a union of them).
fn nested_maps(partitions: &[Vec<i64>], sizes: &[usize], finest: usize) -> Option<Vec<Vec<usize>>> {
    let fine = partitions.get(finest)?;
    let mut maps = Vec::with_capacity(partitions.len());
    for labels in partitions {
        let mut map = vec![usize::MAX; sizes[finest]];
        for (f, &l) in fine.iter().zip(labels) {
            let slot = &mut map[*f as usize];
            if *slot == usize::MAX {
                *slot = l as usize;
            } else if *slot != l as usize {
                return None;
            }
        }
        if map.contains(&usize::MAX) {
            return None; // an empty group of the finest partition: use the general path
        }
        maps.push(map);
    }
    Some(maps)
}

/// Labels renumbered `0..k` in order of first appearance.
fn relabel_by_first_appearance(labels: &[i32]) -> Vec<i64> {
    // flat cluster labels are 1..=n for n points
    let mut rank = vec![-1i64; labels.len() + 1];
    let mut next = 0;
    labels
        .iter()
        .map(|&l| {
            let slot = &mut rank[l as usize];
            if *slot < 0 {
                *slot = next;
                next += 1;
            }
            *slot
        })
        .collect()
}

/// How [`best_silhouette_cut`] clusters and chooses.
#[derive(Debug, Clone, Copy)]
pub struct CutChoice {
    /// Linkage method; `Ward` runs on `sqrt(2 · distance)`, the euclidean distance of unit
    /// vectors whose cosine distance is `distance`.
    pub method: Method,
    /// Largest number of groups tried (cuts into 2..=max_k groups).
    pub max_k: usize,
    /// Smallest admissible group of a cut.
    pub min_cluster_size: usize,
    /// Below this weighted silhouette the set stays one group.
    pub min_silhouette: f64,
}

/// Group labels `0..k` of `n` points given their `n × n` cosine distance matrix: the cut of the
/// hierarchical clustering into 2..=max_k groups whose every group has at least
/// `min_cluster_size` points and whose weighted silhouette over `anchors` is highest (the smaller
/// k on ties) — or all zeros when no cut is admissible or the best silhouette is below
/// `min_silhouette`. Negative distances (rounding below 0) count as 0; only the upper triangle
/// is read for the clustering, the full rows for the silhouettes.
pub fn best_silhouette_cut<T: Real>(
    distances: &[T],
    n: usize,
    weights: &[f64],
    anchors: &[usize],
    choice: CutChoice,
) -> KResult<Vec<i64>> {
    check_square(distances, n, weights)?;
    check_anchors(anchors, n)?;
    if choice.min_silhouette.is_nan() {
        return Err(KernelError::new("min_silhouette", "is NaN"));
    }
    let one_group = vec![0i64; n];
    let max_k = choice.max_k.min(n / choice.min_cluster_size.max(1));
    if max_k < 2 {
        return Ok(one_group);
    }
    let mut condensed: Vec<T> = Vec::new();
    condensed.try_reserve_exact(n * (n - 1) / 2).map_err(|_| {
        KernelError::out_of_memory(
            "distances",
            n * (n - 1) / 2 * std::mem::size_of::<T>(),
            "condensed distances",
        )
    })?;
    for i in 0..n {
        for d in &distances[i * n + i + 1..(i + 1) * n] {
            let d = if *d > T::ZERO { *d } else { T::ZERO };
            // sqrt in f64 rounded to T is the correctly rounded sqrt in T (f64 has > 2·24 + 2 bits)
            condensed.push(if choice.method == Method::Ward {
                T::from_f64((2.0 * d.to_f64()).sqrt())
            } else {
                d
            });
        }
    }
    let z = linkage_condensed(&condensed, choice.method)?;
    drop(condensed);
    let ks: Vec<usize> = (2..=max_k).collect();
    let mut admissible = Vec::new();
    for cut in fcluster_maxclust_many(&z, &ks)? {
        let labels = relabel_by_first_appearance(&cut);
        let groups = labels.iter().max().map_or(0, |&m| m as usize + 1);
        let mut counts = vec![0usize; groups];
        labels.iter().for_each(|&l| counts[l as usize] += 1);
        // tied merge heights can leave a cut with fewer groups than asked, even one: not a split
        if groups >= 2 && counts.iter().all(|&c| c >= choice.min_cluster_size) {
            admissible.push(labels);
        }
    }
    if admissible.is_empty() {
        return Ok(one_group);
    }
    let scores = silhouettes_of_checked(distances, n, &admissible, weights, anchors)?;
    let mut best = 0;
    for (p, s) in scores.iter().enumerate() {
        if *s > scores[best] {
            best = p;
        }
    }
    if scores[best] >= choice.min_silhouette {
        Ok(admissible.swap_remove(best))
    } else {
        Ok(one_group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unit vectors in two tight bundles around orthogonal axes, and their cosine distances.
    fn two_bundles(per: usize) -> (Vec<f64>, usize) {
        let n = 2 * per;
        let x: Vec<[f64; 3]> = (0..n)
            .map(|i| {
                let t = 0.01 * (i % per) as f64;
                let mut v = if i < per { [1.0, t, 0.0] } else { [0.0, t, 1.0] };
                let norm = v.iter().map(|c| c * c).sum::<f64>().sqrt();
                v.iter_mut().for_each(|c| *c /= norm);
                v
            })
            .collect();
        let mut d = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    d[i * n + j] = 1.0 - x[i].iter().zip(&x[j]).map(|(a, b)| a * b).sum::<f64>();
                }
            }
        }
        (d, n)
    }

    fn choice(max_k: usize, min_cluster_size: usize) -> CutChoice {
        CutChoice {
            method: Method::Ward,
            max_k,
            min_cluster_size,
            min_silhouette: 0.05,
        }
    }

    #[test]
    fn two_bundles_split_into_their_two_groups() {
        let (d, n) = two_bundles(12);
        let anchors: Vec<usize> = (0..n).collect();
        let labels = best_silhouette_cut(&d, n, &vec![1.0; n], &anchors, choice(5, 3)).unwrap();
        assert!(labels[..12].iter().all(|&l| l == 0));
        assert!(labels[12..].iter().all(|&l| l == 1));
    }

    #[test]
    fn a_size_floor_above_half_the_set_keeps_one_group() {
        let (d, n) = two_bundles(12);
        let anchors: Vec<usize> = (0..n).collect();
        let labels = best_silhouette_cut(&d, n, &vec![1.0; n], &anchors, choice(5, 13)).unwrap();
        assert!(labels.iter().all(|&l| l == 0));
    }

    #[test]
    fn silhouette_of_two_points_in_separate_groups_is_zero_and_perfect_split_is_one() {
        // points 0,1 at distance 0, points 2,3 at distance 0, the pairs 1 apart
        let n = 4;
        let mut d = vec![1.0f64; n * n];
        for (i, j) in [(0, 0), (1, 1), (2, 2), (3, 3), (0, 1), (1, 0), (2, 3), (3, 2)] {
            d[i * n + j] = 0.0;
        }
        let anchors = [0, 1, 2, 3];
        let s = weighted_silhouettes(&d, n, &[vec![0, 0, 1, 1], vec![0, 1, 2, 2]], &[1.0; 4], &anchors).unwrap();
        assert_eq!(s[0], 1.0);
        // second partition: points 0 and 1 are alone (s = 0), points 2 and 3 have a = 0, b = 1
        assert_eq!(s[1], 0.5);
    }

    #[test]
    fn nested_and_crossing_partitions_score_alike_by_either_path() {
        // the same two partitions scored together (nested: the fast path) and each alone
        let (d, n) = two_bundles(6);
        let w: Vec<f64> = (0..n).map(|i| 1.0 + (i % 3) as f64).collect();
        let anchors: Vec<usize> = (0..n).collect();
        let fine: Vec<i64> = (0..n as i64).map(|i| i / 3).collect(); // 4 groups of 3
        let coarse: Vec<i64> = (0..n as i64).map(|i| i / 6).collect(); // 2 groups of 6
        let crossing: Vec<i64> = (0..n as i64).map(|i| i % 2).collect();
        let both = weighted_silhouettes(&d, n, &[fine.clone(), coarse.clone()], &w, &anchors).unwrap();
        let with_crossing =
            weighted_silhouettes(&d, n, &[fine.clone(), coarse.clone(), crossing.clone()], &w, &anchors).unwrap();
        for (p, labels) in [fine, coarse, crossing].into_iter().enumerate() {
            let alone = weighted_silhouettes(&d, n, &[labels], &w, &anchors).unwrap()[0];
            if p < 2 {
                assert!((both[p] - alone).abs() < 1e-12);
            }
            assert!((with_crossing[p] - alone).abs() < 1e-12);
        }
    }

    #[test]
    fn bad_inputs_name_the_argument() {
        let (d, n) = two_bundles(4);
        let anchors: Vec<usize> = (0..n).collect();
        let err = best_silhouette_cut(&d[1..], n, &vec![1.0; n], &anchors, choice(3, 2)).unwrap_err();
        assert_eq!(err.arg, "distances");
        let mut w = vec![1.0; n];
        w[3] = 0.0;
        assert_eq!(
            best_silhouette_cut(&d, n, &w, &anchors, choice(3, 2)).unwrap_err().arg,
            "weights"
        );
        assert_eq!(
            best_silhouette_cut(&d, n, &vec![1.0; n], &[n], choice(3, 2))
                .unwrap_err()
                .arg,
            "anchors"
        );
        let mut bad = d.clone();
        bad[5] = f64::NAN;
        assert_eq!(
            best_silhouette_cut(&bad, n, &vec![1.0; n], &anchors, choice(3, 2))
                .unwrap_err()
                .arg,
            "distances"
        );
    }
}
