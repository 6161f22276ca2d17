//! Likelihood of labels under a temperature softmax over distances (the subject-temperature
//! calibration of `CascalRouter.fit`).
//!
//! For rows `dist_i` (`n × S` distances) and labels `y_i`, [`softmax_nll`] returns the mean negative
//! log-likelihood `mean_i −log softmax(−dist_i / T)[y_i]`, computed stably per row as
//! `(dist_iy − min_i) / T + ln Σ_s exp(−(dist_is − min_i) / T)`.
//!
//! Terms with `(dist_is − min_i) / T > SKIP_EXPONENT` are not evaluated: each is below
//! `e^−40 ≈ 4.2e−18` while the sum holds the term `exp(0) = 1` of the nearest entry, so together
//! they change the logarithm by less than `S · 4.2e−18` (below the rounding of the sum itself for
//! any `S` up to a few hundred). This skip is what makes small temperatures cheap.

use rayon::prelude::*;

use crate::error::{KResult, KernelError};

/// Exponent beyond which a softmax term is skipped (module docs).
pub const SKIP_EXPONENT: f64 = 40.0;

/// Rows per rayon task.
const ROW_BLOCK: usize = 2048;

fn row_nll(row: &[f64], label: usize, inv_t: f64) -> f64 {
    let min = row.iter().copied().fold(f64::INFINITY, f64::min);
    let mut total = 0.0;
    for &v in row {
        let x = (v - min) * inv_t;
        if x <= SKIP_EXPONENT {
            total += (-x).exp();
        }
    }
    (row[label] - min) * inv_t + total.ln()
}

/// Mean negative log-likelihood of `labels` under `softmax(−dist / temp)` (module docs).
///
/// `dist` is row-major `n × s`; every value must be finite, every label in `0..s`, `temp` finite
/// and `> 0`, `n >= 1`, `s >= 1`.
pub fn softmax_nll(dist: &[f64], n: usize, s: usize, labels: &[i64], temp: f64) -> KResult<f64> {
    if s == 0 || n == 0 {
        return Err(KernelError::new("dist", format!("expected a non-empty matrix, got {n}x{s}")));
    }
    if dist.len() != n * s {
        return Err(KernelError::new("dist", format!("expected {n}x{s} = {} values, got {}", n * s, dist.len())));
    }
    if labels.len() != n {
        return Err(KernelError::new("labels", format!("expected one label per row ({n}), got {}", labels.len())));
    }
    if !(temp.is_finite() && temp > 0.0) {
        return Err(KernelError::new("temp", format!("must be a finite number > 0, got {temp}")));
    }
    if let Some(i) = labels.iter().position(|&l| l < 0 || l as usize >= s) {
        return Err(KernelError::new("labels", format!("row {i} has label {}; labels are 0..{}", labels[i], s - 1)));
    }
    if let Some(i) = dist.iter().position(|v| !v.is_finite()) {
        return Err(KernelError::new("dist", format!("row {}, column {} is not finite", i / s, i % s)));
    }
    let inv_t = 1.0 / temp;
    // partial sums per block, added in block order: the result does not depend on the thread count
    let partial: Vec<f64> = dist
        .par_chunks(ROW_BLOCK * s)
        .zip(labels.par_chunks(ROW_BLOCK))
        .map(|(rows, ls)| rows.chunks_exact(s).zip(ls).map(|(row, &l)| row_nll(row, l as usize, inv_t)).sum())
        .collect();
    Ok(partial.iter().sum::<f64>() / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_direct_formula() {
        let dist: [f64; 6] = [0.1, 0.3, 0.2, 0.5, 0.0, 0.4];
        let labels = [1i64, 0];
        let t: f64 = 0.2;
        let mut want: f64 = 0.0;
        for (row, &l) in dist.chunks(3).zip(&labels) {
            let z: f64 = row.iter().map(|v| (-v / t).exp()).sum();
            want += -((-row[l as usize] / t).exp() / z).ln();
        }
        want /= 2.0;
        let got = softmax_nll(&dist, 2, 3, &labels, t).unwrap();
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }

    #[test]
    fn far_terms_are_negligible() {
        // the far entry is skipped at T = 0.01 (exponent 100) and contributes e^-100 exactly otherwise
        let got = softmax_nll(&[0.0, 1.0], 1, 2, &[0], 0.01).unwrap();
        assert!(got.abs() < 1e-40);
        let got = softmax_nll(&[0.0, 1.0], 1, 2, &[1], 0.01).unwrap();
        assert!((got - 100.0).abs() < 1e-9);
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(softmax_nll(&[0.0, 1.0], 1, 2, &[2], 0.1).unwrap_err().arg, "labels");
        assert_eq!(softmax_nll(&[0.0, 1.0], 1, 2, &[0], 0.0).unwrap_err().arg, "temp");
        assert_eq!(softmax_nll(&[0.0, f64::NAN], 1, 2, &[0], 0.1).unwrap_err().arg, "dist");
        assert_eq!(softmax_nll(&[], 0, 2, &[], 0.1).unwrap_err().arg, "dist");
    }
}
