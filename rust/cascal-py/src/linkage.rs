//! Python bindings of the linkage kernels (`cascal_core::linkage`).
//!
//! Inputs are C-contiguous float32/float64 arrays (the wrappers in `cascal.kernels.linkage`
//! convert anything else); the GIL is released for the work; linkage matrices are float64
//! (n−1)×4 and flat labels int32, as in scipy.

use cascal_core::linkage::{self as core, Method, Metric};
use cascal_core::Real;
use numpy::ndarray::Array2;
use numpy::{Element, IntoPyArray, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::array::c_slice;
use crate::errors::{arg_error, in_kernel, to_py};

/// Row-major (n−1)×4 linkage values into a 2-D numpy array without copying.
fn to_matrix<'py>(py: Python<'py>, z: Vec<f64>) -> PyResult<Bound<'py, PyAny>> {
    let rows = z.len() / 4;
    let arr = Array2::from_shape_vec((rows, 4), z).map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(arr.into_pyarray(py).into_any())
}

fn condensed_t<'py, T: Real + Element>(py: Python<'py>, array: PyReadonlyArray1<'py, T>, method: Method) -> PyResult<Bound<'py, PyAny>> {
    let dist = c_slice(&array, "data")?;
    let z = crate::pool::detach(py, || core::linkage_condensed(dist, method)).map_err(in_kernel("linkage"))?;
    to_matrix(py, z)
}

fn vectors_t<'py, T: Real + Element>(
    py: Python<'py>,
    array: PyReadonlyArray2<'py, T>,
    method: Method,
    metric: Metric,
) -> PyResult<Bound<'py, PyAny>> {
    let (n, d) = (array.shape()[0], array.shape()[1]);
    let data = c_slice(&array, "data")?;
    let z = crate::pool::detach(py, || core::linkage_vectors(data, n, d, method, metric)).map_err(in_kernel("linkage"))?;
    to_matrix(py, z)
}

/// Linkage matrix of a condensed distance vector (1-D float32 or float64, length n(n−1)/2).
#[pyfunction]
fn linkage_condensed<'py>(py: Python<'py>, dist: &Bound<'py, PyAny>, method: &str) -> PyResult<Bound<'py, PyAny>> {
    let method = Method::parse(method).map_err(to_py)?;
    if let Ok(a) = dist.extract::<PyReadonlyArray1<'py, f64>>() {
        condensed_t(py, a, method)
    } else if let Ok(a) = dist.extract::<PyReadonlyArray1<'py, f32>>() {
        condensed_t(py, a, method)
    } else {
        Err(arg_error("data", "expected a 1-D float32 or float64 array"))
    }
}

/// Linkage matrix of the rows of a 2-D float32 or float64 array under `metric`.
#[pyfunction]
fn linkage_vectors<'py>(py: Python<'py>, data: &Bound<'py, PyAny>, method: &str, metric: &str) -> PyResult<Bound<'py, PyAny>> {
    let method = Method::parse(method).map_err(to_py)?;
    let metric = Metric::parse(metric).map_err(to_py)?;
    if let Ok(a) = data.extract::<PyReadonlyArray2<'py, f64>>() {
        vectors_t(py, a, method, metric)
    } else if let Ok(a) = data.extract::<PyReadonlyArray2<'py, f32>>() {
        vectors_t(py, a, method, metric)
    } else {
        Err(arg_error("data", "expected a 2-D float32 or float64 array"))
    }
}

/// Flat cluster labels (int32, from 1) cutting `Z` (float64 (n−1)×4) at cophenetic height `t`.
#[pyfunction]
fn fcluster_distance<'py>(py: Python<'py>, z: PyReadonlyArray2<'py, f64>, t: f64) -> PyResult<Bound<'py, PyAny>> {
    if z.shape()[1] != 4 {
        return Err(arg_error("Z", format!("expected 4 columns, got {}", z.shape()[1])));
    }
    let values = c_slice(&z, "Z")?;
    let labels = crate::pool::detach(py, || core::fcluster_distance(values, t)).map_err(in_kernel("fcluster"))?;
    Ok(labels.into_pyarray(py).into_any())
}

/// At most `k` flat clusters (int32 labels from 1) of `Z` (float64 (n−1)×4).
#[pyfunction]
fn fcluster_maxclust<'py>(py: Python<'py>, z: PyReadonlyArray2<'py, f64>, k: usize) -> PyResult<Bound<'py, PyAny>> {
    if z.shape()[1] != 4 {
        return Err(arg_error("Z", format!("expected 4 columns, got {}", z.shape()[1])));
    }
    let values = c_slice(&z, "Z")?;
    let labels = crate::pool::detach(py, || core::fcluster_maxclust(values, k)).map_err(in_kernel("fcluster"))?;
    Ok(labels.into_pyarray(py).into_any())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(linkage_condensed, m)?)?;
    m.add_function(wrap_pyfunction!(linkage_vectors, m)?)?;
    m.add_function(wrap_pyfunction!(fcluster_distance, m)?)?;
    m.add_function(wrap_pyfunction!(fcluster_maxclust, m)?)?;
    Ok(())
}
