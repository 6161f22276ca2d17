//! `exp` written without branches or calls, so that loops over it vectorise.
//!
//! glibc's scalar `exp` (plus its wrapper) was the largest single cost of the consensus kernel and
//! about a tenth of soft routing. These versions use only multiplications, additions and bit
//! operations (no FMA), so every SIMD width computes the same bits as the scalar code.

/// Below this argument [`exp_flush`] returns exactly 0 (`exp(−708)` ≈ 3.3e−308 is the last
/// normal value the polynomial reaches; subnormal results are flushed).
pub const EXP_FLUSH_BELOW: f64 = -708.0;

/// `exp(x)` with relative error below `1e−15` (a few ulp) on `[−708, 709]`. Inputs are clamped to
/// that range, so the result is always finite and positive (below `exp(−708)` it returns
/// `exp(−708)` instead of a value that would underflow).
#[inline(always)]
pub fn exp_vectorisable(x: f64) -> f64 {
    const MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5·2^52: adding it rounds to an integer
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    let x = x.clamp(EXP_FLUSH_BELOW, 709.0);
    let t = x * std::f64::consts::LOG2_E + MAGIC;
    let k = t - MAGIC;
    let r = (x - k * LN2_HI) - k * LN2_LO; // |r| <= ln2/2
    // Taylor series of exp(r) to r^13/13! (truncation error < 2e-16 on |r| <= 0.347), Horner form
    let mut p = 1.0 / 6_227_020_800.0;
    for c in [
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    // 2^k from the integer sitting in the low mantissa bits of t
    let k_bits = t.to_bits().wrapping_sub(MAGIC.to_bits());
    p * f64::from_bits(k_bits.wrapping_add(1023) << 52)
}

/// `exp(x)` as [`exp_vectorisable`] for `x >= EXP_FLUSH_BELOW`, exactly 0 below it (so
/// `exp_flush(−∞) = 0`: a weight that must vanish can be written as an exponent of `−∞`).
/// Arguments are at most 709 (larger ones are clamped).
#[inline(always)]
pub fn exp_flush(x: f64) -> f64 {
    let e = exp_vectorisable(x);
    if x < EXP_FLUSH_BELOW {
        0.0
    } else {
        e
    }
}

#[inline(always)]
fn exp_flush_slice(xs: &mut [f64]) {
    for x in xs.iter_mut() {
        *x = exp_flush(*x);
    }
}

/// [`exp_flush_slice`] compiled for AVX2 (4 doubles per instruction).
///
/// # Safety
/// The CPU must support AVX2 (checked by the caller).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn exp_flush_slice_avx2(xs: &mut [f64]) {
    exp_flush_slice(xs)
}

/// Replace every entry `x` of `xs` by [`exp_flush`]`(x)`, with the widest SIMD the CPU has (the
/// same bits on every path).
pub fn exp_flush_in_place(xs: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { exp_flush_slice_avx2(xs) };
        }
    }
    exp_flush_slice(xs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectorisable_exp_matches_std_exp() {
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let x = -708.0 + 1417.0 * (i as f64) / 200_000.0;
            let rel = (exp_vectorisable(x) - x.exp()).abs() / x.exp();
            worst = worst.max(rel);
        }
        assert!(worst < 1e-15, "worst relative error {worst}");
        assert_eq!(exp_vectorisable(0.0), 1.0);
        assert_eq!(exp_vectorisable(-0.0), 1.0);
        assert_eq!(exp_vectorisable(-1e300), exp_vectorisable(-708.0));
        assert!(exp_vectorisable(1e300).is_finite());
    }

    #[test]
    fn flushed_exp_is_zero_below_the_normal_range_only() {
        assert_eq!(exp_flush(f64::NEG_INFINITY), 0.0);
        assert_eq!(exp_flush(-708.000_000_1), 0.0);
        assert_eq!(exp_flush(-708.0), exp_vectorisable(-708.0));
        assert!(exp_flush(-708.0) > 0.0);
        assert_eq!(exp_flush(-3.25), exp_vectorisable(-3.25));
    }

    #[test]
    fn slice_version_gives_the_scalar_bits_on_every_length() {
        // odd lengths exercise the vector loop's remainder; the dispatch must not change any bit
        for n in [0usize, 1, 3, 4, 5, 7, 8, 13, 42, 1001] {
            let xs: Vec<f64> = (0..n).map(|i| -40.0 * ((i as f64) * 0.618_033_988_7).fract() - if i % 11 == 0 { 800.0 } else { 0.0 }).collect();
            let mut got = xs.clone();
            exp_flush_in_place(&mut got);
            for (g, &x) in got.iter().zip(&xs) {
                assert_eq!(g.to_bits(), exp_flush(x).to_bits(), "x = {x}");
            }
        }
    }
}
