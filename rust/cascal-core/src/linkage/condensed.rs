//! Index arithmetic of condensed distance vectors (scipy's layout).
//!
//! The condensed form of a symmetric n×n distance matrix keeps the strict upper triangle row by
//! row: pairs (0,1), (0,2), …, (0,n−1), (1,2), …, (n−2,n−1). Every index here is a 64-bit
//! `usize`: for n = 100,000 the vector has about 5·10⁹ entries, more than `u32` can address.

use crate::error::{KResult, KernelError};

/// Number of entries of the condensed vector of `n` observations, n(n−1)/2, or an error if it
/// does not fit in `usize`.
pub fn condensed_len(n: usize) -> KResult<usize> {
    if n < 2 {
        return Ok(0);
    }
    let (even, odd) = if n % 2 == 0 { (n / 2, n - 1) } else { ((n - 1) / 2, n) };
    even.checked_mul(odd)
        .ok_or_else(|| KernelError::new("data", format!("{n} observations: the condensed matrix would not fit in memory")))
}

/// Number of observations `n` whose condensed vector has `len` entries, if `len` is a triangular
/// number n(n−1)/2 with n ≥ 2; `None` otherwise.
pub fn observations_from_len(len: usize) -> Option<usize> {
    if len == 0 {
        return None;
    }
    // n = (1 + sqrt(1 + 8 len)) / 2; the float estimate is corrected by the exact check below.
    let estimate = ((1.0 + (1.0 + 8.0 * len as f64).sqrt()) / 2.0).round() as usize;
    (estimate.saturating_sub(2)..=estimate + 2)
        .filter(|&n| n >= 2)
        .find(|&n| condensed_len(n).ok() == Some(len))
}

/// Offset of the first entry of row `i`, i.e. of the pair (i, i+1): n·i − i(i+1)/2.
#[inline(always)]
pub fn row_start(n: usize, i: usize) -> usize {
    // i(i+1) is always even, so the halving is exact; written to avoid overflow of n·i for the
    // sizes that fit in memory (n < 2^32 on 64-bit targets).
    n * i - (i * (i + 1)) / 2
}

/// Position of the pair (i, j), i ≠ j, in the condensed vector of `n` observations.
#[inline(always)]
pub fn condensed_index(n: usize, i: usize, j: usize) -> usize {
    debug_assert!(i != j && i < n && j < n);
    let (lo, hi) = if i < j { (i, j) } else { (j, i) };
    row_start(n, lo) + (hi - lo - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_layout_by_hand() {
        // n = 4: (0,1)=0 (0,2)=1 (0,3)=2 (1,2)=3 (1,3)=4 (2,3)=5
        assert_eq!(condensed_index(4, 0, 1), 0);
        assert_eq!(condensed_index(4, 0, 3), 2);
        assert_eq!(condensed_index(4, 1, 2), 3);
        assert_eq!(condensed_index(4, 3, 1), 4);
        assert_eq!(condensed_index(4, 2, 3), 5);
        assert_eq!(condensed_len(4).unwrap(), 6);
    }

    #[test]
    fn every_pair_gets_a_distinct_consecutive_index() {
        for n in 2..40 {
            let mut expected = 0;
            for i in 0..n {
                for j in i + 1..n {
                    assert_eq!(condensed_index(n, i, j), expected);
                    expected += 1;
                }
            }
            assert_eq!(expected, condensed_len(n).unwrap());
        }
    }

    #[test]
    fn indices_beyond_u32() {
        // n = 100,000: 4,999,950,000 pairs > 2^32 = 4,294,967,296.
        let n = 100_000usize;
        assert_eq!(condensed_len(n).unwrap(), 4_999_950_000);
        // Last pair is the last entry.
        assert_eq!(condensed_index(n, n - 2, n - 1), 4_999_950_000 - 1);
        // Row 99,998 starts after all pairs (i, j) with i < 99,998: total − 1 (one pair left).
        assert_eq!(row_start(n, n - 2), 4_999_950_000 - 1);
        // Pair (70,000, 70,001): rows 0..70,000 hold Σ_{i<70000} (n−1−i) = 70,000·99,999 − 70,000·69,999/2
        // = 6,999,930,000 − 2,449,965,000 = 4,549,965,000 entries.
        assert_eq!(condensed_index(n, 70_000, 70_001), 4_549_965_000);
        assert!(condensed_index(n, 70_000, 70_001) > u32::MAX as usize);
        assert_eq!(observations_from_len(4_999_950_000), Some(n));
    }

    #[test]
    fn observations_from_len_rejects_non_triangular() {
        assert_eq!(observations_from_len(0), None);
        assert_eq!(observations_from_len(1), Some(2));
        assert_eq!(observations_from_len(3), Some(3));
        assert_eq!(observations_from_len(4), None);
        assert_eq!(observations_from_len(6), Some(4));
        assert_eq!(observations_from_len(7), None);
    }
}
