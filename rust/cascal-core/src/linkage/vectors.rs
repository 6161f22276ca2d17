//! Observation vectors prepared for distance evaluation: validated, converted to f64 and, for
//! the cosine metric, scaled to unit length once.

use rayon::prelude::*;

use super::condensed::{condensed_len, row_start};
use super::real::Real;
use crate::error::{KResult, KernelError};

/// Distance between observation vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// ‖u − v‖₂.
    Euclidean,
    /// 1 − u·v / (‖u‖‖v‖); zero vectors are rejected (the distance is undefined).
    Cosine,
}

impl Metric {
    /// Parse a metric name as scipy spells it.
    pub fn parse(name: &str) -> KResult<Self> {
        match name {
            "euclidean" => Ok(Self::Euclidean),
            "cosine" => Ok(Self::Cosine),
            other => Err(KernelError::new("metric", format!("unknown metric {other:?}; expected \"cosine\" or \"euclidean\""))),
        }
    }
}

/// n row vectors of dimension d in f64, unit-normalised for cosine.
pub struct Vectors {
    values: Vec<f64>,
    pub n: usize,
    pub d: usize,
    pub metric: Metric,
}

impl Vectors {
    /// Validate `data` (row-major n×d, finite; no zero rows under cosine) and prepare it.
    pub fn new<T: Real>(data: &[T], n: usize, d: usize, metric: Metric) -> KResult<Self> {
        if data.len() != n * d {
            return Err(KernelError::new("data", format!("expected {n}×{d} = {} values, got {}", n * d, data.len())));
        }
        if d == 0 {
            return Err(KernelError::new("data", "vectors have dimension 0"));
        }
        let mut values: Vec<f64> = Vec::with_capacity(n * d);
        for (row, chunk) in data.chunks_exact(d).enumerate() {
            if let Some(col) = chunk.iter().position(|v| !v.is_finite()) {
                return Err(KernelError::new("data", format!("contains NaN or infinity at row {row}, column {col}")));
            }
            values.extend(chunk.iter().map(|v| v.to_f64()));
        }
        if metric == Metric::Cosine {
            for (row, chunk) in values.chunks_exact_mut(d).enumerate() {
                let norm = dot(chunk, chunk).sqrt();
                if norm == 0.0 {
                    return Err(KernelError::new(
                        "data",
                        format!("row {row} is a zero vector: its cosine distance to anything is undefined"),
                    ));
                }
                chunk.iter_mut().for_each(|v| *v /= norm);
            }
        }
        Ok(Self { values, n, d, metric })
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
            // Clamp to [0, 2] like scipy (rounding can push |cos| slightly above 1).
            Metric::Cosine => (1.0 - dot(a, b)).clamp(0.0, 2.0),
        }
    }

    /// All pairwise distances in condensed order, stored as `S` (computed in f64, rows in parallel).
    pub fn condensed<S: Real + Default>(&self) -> KResult<Vec<S>> {
        let len = condensed_len(self.n)?;
        let mut out = vec![S::default(); len];
        // Split the output into rows; rows shrink, so interleave long and short ones for balance.
        let mut rows: Vec<(usize, &mut [S])> = Vec::with_capacity(self.n);
        let mut rest: &mut [S] = &mut out;
        for i in 0..self.n.saturating_sub(1) {
            let (row, tail) = rest.split_at_mut(self.n - i - 1);
            rows.push((i, row));
            rest = tail;
        }
        debug_assert!(rows.iter().all(|(i, r)| r.len() == self.n - i - 1 && row_start(self.n, *i) <= len));
        rows.par_iter_mut().with_min_len(16).for_each(|(i, row)| {
            for (k, slot) in row.iter_mut().enumerate() {
                *slot = S::from_f64(self.distance(*i, *i + 1 + k));
            }
        });
        Ok(out)
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
        // (3,4), (0,0)... cosine rejects zero rows, euclidean does not.
        let data = [3.0f64, 4.0, 0.0, 0.0, 6.0, 8.0];
        let v = Vectors::new(&data, 3, 2, Metric::Euclidean).unwrap();
        assert_eq!(v.condensed::<f64>().unwrap(), vec![5.0, 5.0, 10.0]);
        let err = Vectors::new(&data, 3, 2, Metric::Cosine).err().unwrap();
        assert!(err.message.contains("row 1 is a zero vector"));
        // (1,0), (0,2), (-3,0): cos distances 1, 2, 1.
        let data = [1.0f32, 0.0, 0.0, 2.0, -3.0, 0.0];
        let v = Vectors::new(&data, 3, 2, Metric::Cosine).unwrap();
        assert_eq!(v.condensed::<f32>().unwrap(), vec![1.0, 2.0, 1.0]);
    }

    #[test]
    fn rejects_non_finite() {
        let data = [1.0f64, f64::NAN];
        let err = Vectors::new(&data, 1, 2, Metric::Euclidean).err().unwrap();
        assert_eq!(err.arg, "data");
        assert!(err.message.contains("row 0, column 1"));
    }
}
