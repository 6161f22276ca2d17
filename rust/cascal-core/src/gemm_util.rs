//! Safe wrapper over the `gemm` crate for the dot-product blocks of the distance kernels.
//!
//! The distance kernels compute `A · Bᵀ` for row-major blocks of rows; a blocked GEMM reaches an
//! order of magnitude more FLOP/s than hand-written loops. Parallelism lives one level up (rayon
//! over row blocks), so every call here is single-threaded.

use crate::real::Real;
use gemm::Parallelism;

/// `out[i * rb + j] = Σ_k a[i * d + k] · b[j * d + k]` for `i < ra`, `j < rb`.
///
/// `a` holds `ra` rows and `b` holds `rb` rows of length `d`, both row-major; `out` is the
/// row-major `ra × rb` result. Panics if a slice is shorter than its shape (an internal bug, never
/// reachable from validated input).
pub fn dot_block<T: Real>(a: &[T], ra: usize, b: &[T], rb: usize, d: usize, out: &mut [T]) {
    assert!(a.len() >= ra * d, "dot_block: lhs too short");
    assert!(b.len() >= rb * d, "dot_block: rhs too short");
    assert!(out.len() >= ra * rb, "dot_block: output too short");
    if ra == 0 || rb == 0 {
        return;
    }
    if d == 0 {
        out[..ra * rb].fill(T::from_f64(0.0));
        return;
    }
    // SAFETY: the asserts above guarantee every index the GEMM touches is inside its slice:
    // lhs (i, k) at i*d + k, rhs (k, j) at j*d + k, dst (i, j) at i*rb + j.
    unsafe {
        gemm::gemm(
            ra,
            rb,
            d,
            out.as_mut_ptr(),
            1,
            rb as isize,
            false,
            a.as_ptr(),
            1,
            d as isize,
            b.as_ptr(),
            d as isize,
            1,
            T::from_f64(0.0),
            T::from_f64(1.0),
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_naive_product() {
        let (ra, rb, d) = (5, 7, 3);
        let a: Vec<f64> = (0..ra * d).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..rb * d).map(|i| (i as f64 * 0.91).cos()).collect();
        let mut out = vec![0.0; ra * rb];
        dot_block(&a, ra, &b, rb, d, &mut out);
        for i in 0..ra {
            for j in 0..rb {
                let want: f64 = (0..d).map(|k| a[i * d + k] * b[j * d + k]).sum();
                assert!((out[i * rb + j] - want).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn zero_length_rows_give_zero() {
        let mut out = vec![1.0f32; 6];
        dot_block::<f32>(&[], 2, &[], 3, 0, &mut out);
        assert!(out.iter().all(|&v| v == 0.0));
    }
}
