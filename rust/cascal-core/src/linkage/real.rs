//! The floating-point element types the linkage kernels store distances in.

/// A storage type for distances (`f32` or `f64`). All arithmetic of the kernels happens in `f64`;
/// values are only rounded to `Self` when stored.
pub trait Real: Copy + Send + Sync + PartialOrd + 'static {
    const INFINITY: Self;
    fn to_f64(self) -> f64;
    fn from_f64(value: f64) -> Self;
    fn is_finite(self) -> bool;
}

impl Real for f32 {
    const INFINITY: Self = f32::INFINITY;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn from_f64(value: f64) -> Self {
        value as f32
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
}

impl Real for f64 {
    const INFINITY: Self = f64::INFINITY;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_f64(value: f64) -> Self {
        value
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
}
