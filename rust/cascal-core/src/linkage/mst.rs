//! Single linkage through Prim's minimum spanning tree (Müllner 2011, section 3.1).
//!
//! O(n²) distance evaluations and O(n) memory besides the distances themselves: from raw vectors
//! the distances are computed on the fly and no condensed matrix is ever built.

use rayon::prelude::*;

use super::dendrogram::Merge;
use crate::alloc::try_with_capacity;
use crate::error::KResult;

/// Below this many unvisited points a step runs on one thread (rayon's overhead dominates).
const PARALLEL_MIN: usize = 4096;

/// A not-yet-connected point and its smallest distance to the tree so far.
#[derive(Clone, Copy)]
struct Frontier {
    point: usize,
    dist: f64,
}

/// Prim's algorithm over `n ≥ 2` points with `distance(x, i)` the distance between points `x` and
/// `i`. Returns the n−1 tree edges as merges in the order they were added. Ties go to the lowest
/// point index, as in scipy.
///
/// Errors: the frontier or the merge list cannot be allocated.
pub fn prim<F>(n: usize, distance: F) -> KResult<Vec<Merge>>
where
    F: Fn(usize, usize) -> f64 + Sync,
{
    let mut frontier: Vec<Frontier> = try_with_capacity("data", "minimum spanning tree frontier", n.saturating_sub(1))?;
    frontier.extend((1..n).map(|point| Frontier { point, dist: f64::INFINITY }));
    let mut merges = try_with_capacity("data", "merge list", n.saturating_sub(1))?;
    let mut x = 0;
    while !frontier.is_empty() {
        let relax = |chunk: &mut [Frontier], offset: usize| -> (f64, usize, usize) {
            let mut best = (f64::INFINITY, usize::MAX, usize::MAX);
            for (k, f) in chunk.iter_mut().enumerate() {
                let d = distance(x, f.point);
                if d < f.dist {
                    f.dist = d;
                }
                if f.dist < best.0 || (f.dist == best.0 && f.point < best.1) {
                    best = (f.dist, f.point, offset + k);
                }
            }
            best
        };
        let (dist, point, position) = if frontier.len() >= PARALLEL_MIN {
            let chunk_len = frontier.len().div_ceil(rayon::current_num_threads() * 4);
            frontier
                .par_chunks_mut(chunk_len)
                .enumerate()
                .map(|(c, chunk)| relax(chunk, c * chunk_len))
                .reduce(
                    || (f64::INFINITY, usize::MAX, usize::MAX),
                    |a, b| if b.0 < a.0 || (b.0 == a.0 && b.1 < a.1) { b } else { a },
                )
        } else {
            relax(&mut frontier, 0)
        };
        merges.push(Merge { a: x, b: point, height: dist });
        // `remove` (not `swap_remove`) keeps the frontier in index order, so the scans walk
        // memory monotonically (columns of a condensed matrix are read top to bottom).
        frontier.remove(position);
        x = point;
    }
    Ok(merges)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_on_a_line() {
        // 0, 1, 3, 7 on a line: the tree edges are the consecutive gaps 1, 2, 4.
        let pos = [0.0f64, 1.0, 3.0, 7.0];
        let merges = prim(4, |a, b| (pos[a] - pos[b]).abs()).unwrap();
        let mut heights: Vec<f64> = merges.iter().map(|m| m.height).collect();
        heights.sort_by(f64::total_cmp);
        assert_eq!(heights, vec![1.0, 2.0, 4.0]);
    }

    #[test]
    fn parallel_path_agrees_with_serial_distances() {
        // Points 0, 1, 2, … on a line with gap i+1 between i and i+1: every edge is forced.
        let n = PARALLEL_MIN + 100;
        let pos: Vec<f64> = (0..n).map(|i| (i * (i + 1) / 2) as f64).collect();
        let merges = prim(n, |a, b| (pos[a] - pos[b]).abs()).unwrap();
        for (k, m) in merges.iter().enumerate() {
            // Prim walks 0 → 1 → 2 → …; edge k joins k and k+1 with length k+1.
            assert_eq!((m.a, m.b, m.height), (k, k + 1, (k + 1) as f64));
        }
    }
}
