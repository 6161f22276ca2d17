//! Observation vectors: validation, and an f64 copy for distances computed on the fly (single
//! linkage through Prim needs each distance once and no matrix at all).

use crate::distance::Metric;
use crate::alloc::try_with_capacity;
use crate::error::{KResult, KernelError};
use crate::real::Real;

/// Check that `data` holds `n × d` finite values with d ≥ 1 and, under cosine, no zero row (its
/// cosine distance is undefined; scipy produces NaN there).
pub fn check_vectors<T: Real>(data: &[T], n: usize, d: usize, metric: Metric) -> KResult<()> {
    if d == 0 {
        return Err(KernelError::new("data", "vectors have dimension 0"));
    }
    if n.checked_mul(d) != Some(data.len()) {
        return Err(KernelError::new("data", format!("expected {n}×{d} values, got {}", data.len())));
    }
    for (row, chunk) in data.chunks_exact(d).enumerate() {
        if let Some(col) = chunk.iter().position(|v| !v.is_finite()) {
            return Err(KernelError::new("data", format!("contains NaN or infinity at row {row}, column {col}")));
        }
        if metric == Metric::Cosine && chunk.iter().all(|v| v.to_f64() == 0.0) {
            return Err(KernelError::new(
                "data",
                format!("row {row} is a zero vector: its cosine distance to anything is undefined"),
            ));
        }
    }
    Ok(())
}

/// n row vectors of dimension d in f64, unit-normalised for cosine.
pub struct Vectors {
    values: Vec<f64>,
    d: usize,
    metric: Metric,
}

impl Vectors {
    /// Validate `data` (see [`check_vectors`]) and prepare it.
    pub fn new<T: Real>(data: &[T], n: usize, d: usize, metric: Metric) -> KResult<Self> {
        check_vectors(data, n, d, metric)?;
        let mut values: Vec<f64> = try_with_capacity("data", "f64 copy of the vectors", data.len())?;
        values.extend(data.iter().map(|v| v.to_f64()));
        if metric == Metric::Cosine {
            for chunk in values.chunks_exact_mut(d) {
                let norm = dot(chunk, chunk).sqrt();
                chunk.iter_mut().for_each(|v| *v /= norm);
            }
        }
        Ok(Self { values, d, metric })
    }

    #[inline(always)]
    fn row(&self, i: usize) -> &[f64] {
        &self.values[i * self.d..(i + 1) * self.d]
    }

    /// Distance between observations `i` and `j`.
    #[inline]
    pub fn distance(&self, i: usize, j: usize) -> f64 {
        let (a, b) = (self.row(i), self.row(j));
        match self.metric {
            Metric::Euclidean => squared_difference(a, b).sqrt(),
            Metric::SqEuclidean => squared_difference(a, b),
            // Clamp to [0, 2] like scipy (rounding can push |cos| slightly above 1).
            Metric::Cosine => (1.0 - dot(a, b)).clamp(0.0, 2.0),
        }
    }
}

#[inline]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut lanes = [0.0f64; 4];
    let mut ca = a.chunks_exact(4);
    let mut cb = b.chunks_exact(4);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..4 {
            lanes[l] += x[l] * y[l];
        }
    }
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]) + tail
}

#[inline]
fn squared_difference(a: &[f64], b: &[f64]) -> f64 {
    let mut lanes = [0.0f64; 4];
    let mut ca = a.chunks_exact(4);
    let mut cb = b.chunks_exact(4);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..4 {
            let diff = x[l] - y[l];
            lanes[l] += diff * diff;
        }
    }
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| (x - y) * (x - y)).sum();
    (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]) + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_by_hand() {
        // (3,4), (0,0), (6,8): euclidean 5, 10, 5; cosine rejects the zero row.
        let data = [3.0f64, 4.0, 0.0, 0.0, 6.0, 8.0];
        let v = Vectors::new(&data, 3, 2, Metric::Euclidean).unwrap();
        assert_eq!((v.distance(0, 1), v.distance(0, 2), v.distance(1, 2)), (5.0, 5.0, 10.0));
        let v = Vectors::new(&data, 3, 2, Metric::SqEuclidean).unwrap();
        assert_eq!(v.distance(0, 2), 25.0);
        let err = Vectors::new(&data, 3, 2, Metric::Cosine).err().unwrap();
        assert!(err.message.contains("row 1 is a zero vector"));
        // (1,0), (0,2), (-3,0): cosine distances 1, 2, 1.
        let data = [1.0f32, 0.0, 0.0, 2.0, -3.0, 0.0];
        let v = Vectors::new(&data, 3, 2, Metric::Cosine).unwrap();
        assert_eq!((v.distance(0, 1), v.distance(0, 2), v.distance(1, 2)), (1.0, 2.0, 1.0));
    }

    #[test]
    fn rejects_non_finite() {
        let data = [1.0f64, f64::NAN];
        let err = Vectors::new(&data, 1, 2, Metric::Euclidean).err().unwrap();
        assert_eq!(err.arg, "data");
        assert!(err.message.contains("row 0, column 1"));
    }
}
