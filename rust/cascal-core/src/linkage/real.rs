//! The floating-point element types the linkage kernels store distances in: the crate's [`Real`]
//! (`f32` or `f64`), as in every other kernel. All arithmetic of the kernels happens in `f64`; values
//! are only rounded to the storage type when written.

pub use crate::real::Real;

/// +∞ in the storage type.
#[inline(always)]
pub fn infinity<S: Real>() -> S {
    S::from_f64(f64::INFINITY)
}
