//! The floating-point element types the linkage kernels store distances in: the same trait as
//! the distance kernels (`f32` or `f64`). All arithmetic of the kernels happens in `f64`; values
//! are only rounded to the storage type when written.

pub use crate::distance::Real;

/// +∞ in the storage type.
#[inline(always)]
pub fn infinity<S: Real>() -> S {
    S::from_f64(f64::INFINITY)
}
