//! The floating-point element type of the kernels: [`Real`], implemented for `f32` and `f64`.
//!
//! Every kernel is generic over it; arithmetic that needs more range or precision widens to `f64`
//! with [`Real::to_f64`] and rounds back with [`Real::from_f64`].

use std::fmt::Debug;

/// Floating-point element type of the kernels (`f32` or `f64`).
pub trait Real:
    Copy
    + crate::alloc::Zeroable
    + Send
    + Sync
    + PartialOrd
    + Debug
    + Default
    + 'static
    + Into<f64>
    + std::ops::Add<Output = Self>
    + std::ops::Mul<Output = Self>
{
    /// 0 in this type.
    const ZERO: Self;
    /// 1 in this type.
    const ONE: Self;
    /// Name used in messages ("float32" / "float64").
    const NAME: &'static str;
    /// Euclidean pairs with `d² < RECOMPUTE_RATIO · (‖a‖² + ‖b‖²)` are recomputed directly.
    const RECOMPUTE_RATIO: f64;
    /// Round an f64 to this type.
    fn from_f64(v: f64) -> Self;
    /// Widen to f64 (exact).
    fn to_f64(self) -> f64;
    /// Neither NaN nor infinite.
    fn is_finite(self) -> bool;
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NAME: &'static str = "float64";
    const RECOMPUTE_RATIO: f64 = 1e-3;
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NAME: &'static str = "float32";
    const RECOMPUTE_RATIO: f64 = 0.5;
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
}
