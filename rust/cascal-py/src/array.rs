//! Borrowing numpy arrays as row-major slices.

use numpy::ndarray::Dimension;
use numpy::{Element, PyReadonlyArray, PyUntypedArrayMethods};
use pyo3::PyResult;

use crate::errors::arg_error;

/// The values of `arr` in row-major order; fails naming `arg` unless the array is C-contiguous.
///
/// numpy's own `as_slice` also accepts a Fortran-ordered array, whose memory holds the values
/// column by column: read as rows, that would be a silently transposed matrix.
pub fn c_slice<'a, T: Element, D: Dimension>(arr: &'a PyReadonlyArray<'_, T, D>, arg: &str) -> PyResult<&'a [T]> {
    let not_c = || arg_error(arg, "expected a C-contiguous array");
    if arr.len() > 0 && !arr.is_c_contiguous() {
        return Err(not_c());
    }
    arr.as_slice().map_err(|_| not_c())
}
