//! Fallible allocation of data-sized buffers.
//!
//! Every output and every scratch buffer whose size grows with the data is allocated through
//! this module, so that an impossible or unaffordable size becomes a [`KernelError`] instead of
//! the process abort (`memory allocation of N bytes failed`) that `vec![…]` and
//! `Vec::with_capacity` end in:
//!
//! - the element count is computed with checked multiplication ([`checked_len`]); an overflow of
//!   `usize`, or a byte size above `isize::MAX`, is invalid input
//!   ([`ErrorKind::InvalidInput`](crate::error::ErrorKind::InvalidInput));
//! - a byte size above the allocation cap ([`max_alloc_bytes`]) is refused with
//!   [`ErrorKind::OutOfMemory`](crate::error::ErrorKind::OutOfMemory) before anything is allocated;
//! - below the cap the allocation itself is fallible (`Vec::try_reserve_exact`, or
//!   `alloc_zeroed` for zero-filled buffers), and an allocator failure is also `OutOfMemory`.
//!
//! Why a cap: under Linux memory overcommit, a request of a few hundred GB may well *succeed*
//! (the pages are only reserved) and the process is then killed by the OOM killer while filling
//! it, which is no better than an abort. A single buffer larger than the machine's physical
//! memory can never be filled, so the cap defaults to the physical memory (`MemTotal` of
//! `/proc/meminfo`; `isize::MAX` where that cannot be read). The environment variable
//! `CASCAL_MAX_OUTPUT_BYTES` (a byte count, read once per process) overrides it, e.g. to keep a
//! shared machine safe with a lower limit. The cap applies to each buffer separately.

use std::alloc::{alloc_zeroed, Layout};
use std::sync::OnceLock;

use crate::error::{KResult, KernelError};

/// Name of the environment variable that overrides the allocation cap (bytes).
pub const CAP_ENV: &str = "CASCAL_MAX_OUTPUT_BYTES";

/// The largest buffer (bytes) a kernel allocates: `CASCAL_MAX_OUTPUT_BYTES` when set to an
/// integer, otherwise the physical memory, otherwise `isize::MAX`. Read once per process.
pub fn max_alloc_bytes() -> usize {
    static CAP: OnceLock<usize> = OnceLock::new();
    *CAP.get_or_init(|| {
        let from_env = std::env::var(CAP_ENV).ok().and_then(|v| v.trim().parse::<u64>().ok());
        let cap = from_env.or_else(physical_memory).unwrap_or(isize::MAX as u64);
        usize::try_from(cap).unwrap_or(usize::MAX).min(isize::MAX as usize)
    })
}

/// Total physical memory in bytes (`MemTotal` of `/proc/meminfo`), if it can be read.
fn physical_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Product of `factors` (an element count), or invalid input naming `arg` and `what` on
/// overflow of `usize`.
pub fn checked_len(arg: &'static str, what: &str, factors: &[usize]) -> KResult<usize> {
    factors.iter().try_fold(1usize, |acc, &f| acc.checked_mul(f)).ok_or_else(|| {
        let shown: Vec<String> = factors.iter().map(|f| f.to_string()).collect();
        KernelError::new(arg, format!("the {what} would have {} elements, which overflows the address space", shown.join(" × ")))
    })
}

/// Bytes of `len` elements of `T`, checked against `isize::MAX` and `cap`.
pub fn check_bytes_with_cap<T>(arg: &'static str, what: &str, len: usize, cap: usize) -> KResult<usize> {
    let size = std::mem::size_of::<T>().max(1);
    let bytes = len
        .checked_mul(size)
        .filter(|&b| b <= isize::MAX as usize)
        .ok_or_else(|| KernelError::new(arg, format!("the {what} would need {len} × {size} bytes, more than any address space holds")))?;
    if bytes > cap {
        return Err(KernelError::out_of_memory(
            arg,
            bytes,
            format!(
                "cannot allocate the {what}: {len} values need {bytes} bytes, more than the allocation cap of {cap} bytes \
                 (the physical memory unless {CAP_ENV} sets it)"
            ),
        ));
    }
    Ok(bytes)
}

/// Bytes of `len` elements of `T`, checked against `isize::MAX` and [`max_alloc_bytes`].
pub fn check_bytes<T>(arg: &'static str, what: &str, len: usize) -> KResult<usize> {
    check_bytes_with_cap::<T>(arg, what, len, max_alloc_bytes())
}

fn refused(arg: &'static str, what: &str, bytes: usize) -> KernelError {
    KernelError::out_of_memory(arg, bytes, format!("cannot allocate the {what}: the allocator refused {bytes} bytes"))
}

/// An empty vector with room for exactly `len` elements, or an error naming `arg` / `what`.
pub fn try_with_capacity<T>(arg: &'static str, what: &str, len: usize) -> KResult<Vec<T>> {
    let bytes = check_bytes::<T>(arg, what, len)?;
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| refused(arg, what, bytes))?;
    Ok(v)
}

/// `len` copies of `value` (like `vec![value; len]`), or an error naming `arg` / `what`.
pub fn try_vec<T: Clone>(arg: &'static str, what: &str, len: usize, value: T) -> KResult<Vec<T>> {
    let mut v = try_with_capacity(arg, what, len)?;
    v.resize(len, value);
    Ok(v)
}

/// Types whose all-zero bit pattern is a valid value (the number zero, `false`).
///
/// # Safety
/// Implement only for types for which every byte being 0 is a valid, initialised value.
pub unsafe trait Zeroable: Copy {}
// SAFETY: all-zero bits are +0.0 (IEEE 754).
unsafe impl Zeroable for f32 {}
// SAFETY: all-zero bits are +0.0 (IEEE 754).
unsafe impl Zeroable for f64 {}
// SAFETY: every bit pattern of an integer is valid; all-zero bits are 0.
unsafe impl Zeroable for i8 {}
// SAFETY: every bit pattern of an integer is valid; all-zero bits are 0.
unsafe impl Zeroable for i32 {}
// SAFETY: every bit pattern of an integer is valid; all-zero bits are 0.
unsafe impl Zeroable for i64 {}
// SAFETY: every bit pattern of an integer is valid; all-zero bits are 0.
unsafe impl Zeroable for u8 {}
// SAFETY: every bit pattern of an integer is valid; all-zero bits are 0.
unsafe impl Zeroable for usize {}
// SAFETY: the byte 0 is `false` (a `bool` is one byte, 0 or 1).
unsafe impl Zeroable for bool {}

/// `len` zeros (like `vec![0; len]`, and like it a zeroed allocation: fresh pages from the
/// operating system are not written), or an error naming `arg` / `what`.
pub fn try_zeroed<T: Zeroable>(arg: &'static str, what: &str, len: usize) -> KResult<Vec<T>> {
    let bytes = check_bytes::<T>(arg, what, len)?;
    if len == 0 || std::mem::size_of::<T>() == 0 {
        return try_vec(arg, what, len, zero_value::<T>());
    }
    let layout = Layout::array::<T>(len).map_err(|_| refused(arg, what, bytes))?;
    // SAFETY: the layout has a non-zero size (len > 0, size_of::<T>() > 0).
    let ptr = unsafe { alloc_zeroed(layout) } as *mut T;
    if ptr.is_null() {
        return Err(refused(arg, what, bytes));
    }
    // SAFETY: `ptr` comes from the global allocator with the layout of `[T; len]` (exactly what
    // `Vec<T>` with capacity `len` uses), and all `len` elements are initialised: zero bits are
    // a valid `T` (`Zeroable`).
    Ok(unsafe { Vec::from_raw_parts(ptr, len, len) })
}

fn zero_value<T: Zeroable>() -> T {
    // SAFETY: `Zeroable` guarantees that all-zero bits are a valid `T`.
    unsafe { std::mem::zeroed() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn overflow_is_invalid_input() {
        let err = checked_len("X", "condensed distance matrix", &[usize::MAX / 2, 3]).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert_eq!(err.arg, "X");
        assert!(err.message.contains("overflows"), "{}", err.message);
        assert_eq!(checked_len("X", "m", &[3, 4, 5]).unwrap(), 60);
        assert_eq!(checked_len("X", "m", &[]).unwrap(), 1);
    }

    #[test]
    fn bytes_beyond_isize_are_invalid_input() {
        let err = check_bytes_with_cap::<f64>("n_clusters", "means", usize::MAX / 4, usize::MAX).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        let err = try_vec::<f64>("n_clusters", "means", isize::MAX as usize / 4, 0.0).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
    }

    #[test]
    fn bytes_above_the_cap_are_out_of_memory() {
        let err = check_bytes_with_cap::<f32>("X", "output", 1000, 3999).unwrap_err();
        assert_eq!(err.kind, ErrorKind::OutOfMemory { bytes: 4000 });
        assert!(err.is_out_of_memory());
        assert!(err.message.contains("4000 bytes"), "{}", err.message);
        assert_eq!(check_bytes_with_cap::<f32>("X", "output", 1000, 4000).unwrap(), 4000);
    }

    #[test]
    fn huge_requests_fail_without_aborting() {
        // 2^61 bytes: below isize::MAX, above any physical memory and any allocator's reach.
        let len = 1usize << 58;
        let err = try_vec::<f64>("X", "output", len, 1.0).unwrap_err();
        assert!(matches!(err.kind, ErrorKind::OutOfMemory { bytes } if bytes == 1 << 61));
        assert!(try_zeroed::<f64>("X", "output", len).unwrap_err().is_out_of_memory());
        assert!(try_with_capacity::<u8>("X", "output", 1 << 61).unwrap_err().is_out_of_memory());
    }

    #[test]
    fn the_cap_is_at_most_isize_max() {
        assert!(max_alloc_bytes() <= isize::MAX as usize && max_alloc_bytes() > 0);
    }

    #[test]
    fn kernels_report_impossible_sizes_before_touching_data() {
        use crate::linkage::{mst, nn_chain, storage, Method};
        // cluster_means: n_clusters × m overflows usize, or needs 2^61 bytes
        let err = crate::niche::cluster_means(&[0], &[0.0f64; 4], 1, 4, usize::MAX / 2, None).unwrap_err();
        assert_eq!((err.arg, err.kind), ("n_clusters", ErrorKind::InvalidInput));
        let err = crate::niche::cluster_means(&[0], &[0.0f64], 1, 1, 1 << 58, None).unwrap_err();
        assert_eq!((err.arg, err.kind), ("n_clusters", ErrorKind::OutOfMemory { bytes: 1 << 61 }));
        // linkage: square working matrix n² overflowing, beyond isize::MAX bytes, or over the cap
        let tiny = [1.0f32];
        assert_eq!(storage::Square::from_condensed(&tiny, 1 << 40).err().unwrap().kind, ErrorKind::InvalidInput);
        assert_eq!(storage::Square::from_condensed(&tiny, 1 << 31).err().unwrap().kind, ErrorKind::InvalidInput);
        assert!(storage::Square::from_condensed(&tiny, 1 << 28).err().unwrap().is_out_of_memory());
        // linkage: O(n) bookkeeping of the condensed storage, NN-chain and Prim
        assert!(storage::Condensed::<f64>::new(Vec::new(), 1 << 56).err().unwrap().is_out_of_memory());
        let mut square = storage::Square::from_condensed(&tiny, 2).unwrap();
        assert!(nn_chain::nn_chain(&mut square, 1 << 56, Method::Average).unwrap_err().is_out_of_memory());
        assert!(mst::prim(1 << 56, |_, _| 0.0).unwrap_err().is_out_of_memory());
    }

    #[test]
    fn small_buffers_work() {
        assert_eq!(try_vec("X", "v", 3, 7i32).unwrap(), vec![7, 7, 7]);
        assert_eq!(try_zeroed::<f64>("X", "v", 4).unwrap(), vec![0.0; 4]);
        assert_eq!(try_zeroed::<bool>("X", "v", 2).unwrap(), vec![false; 2]);
        assert!(try_zeroed::<usize>("X", "v", 0).unwrap().is_empty());
        assert_eq!(try_with_capacity::<i64>("X", "v", 5).unwrap().capacity(), 5);
    }
}
