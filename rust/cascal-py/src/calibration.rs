//! Python bindings of the calibration kernel (`cascal_core::calibration`).

use cascal_core::calibration as core;
use numpy::{PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::array::c_slice;
use crate::errors::in_kernel;

/// Mean negative log-likelihood of `labels` under `softmax(-dist / temp)`; see
/// `cascal.kernels.softmax_nll`.
#[pyfunction]
#[pyo3(signature = (dist, labels, temp))]
fn softmax_nll(py: Python<'_>, dist: PyReadonlyArray2<'_, f64>, labels: PyReadonlyArray1<'_, i64>, temp: f64) -> PyResult<f64> {
    let (n, s) = (dist.shape()[0], dist.shape()[1]);
    let ds = c_slice(&dist, "dist")?;
    let ls = c_slice(&labels, "labels")?;
    crate::pool::detach(py, || core::softmax_nll(ds, n, s, ls, temp)).map_err(in_kernel("softmax_nll"))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(softmax_nll, m)?)?;
    Ok(())
}
