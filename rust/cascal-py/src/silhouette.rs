//! Python bindings of the per-set cut choice (`cascal_core::silhouette`).
//!
//! Inputs are C-contiguous arrays (the wrappers in `cascal.kernels.silhouette` convert anything
//! else); the GIL is released for the work.

use cascal_core::linkage::Method;
use cascal_core::silhouette::{self as core, CutChoice};
use cascal_core::Real;
use numpy::{Element, IntoPyArray, PyReadonlyArray1};
use pyo3::prelude::*;

use crate::array::c_slice;
use crate::distance::{is_f64, Rows};
use crate::errors::{arg_error, in_kernel, to_py};

/// Anchor indices as `usize` (negative ones are refused, naming `anchors`).
fn anchor_indices(anchors: &[i64]) -> PyResult<Vec<usize>> {
    anchors
        .iter()
        .map(|&a| usize::try_from(a).map_err(|_| arg_error("anchors", format!("anchor {a} is negative"))))
        .collect()
}

/// The square matrix as a row-major slice, refusing a non-square one.
fn square<'a, T: Real + Element>(rows: &'a Rows<'_, T>) -> PyResult<&'a [T]> {
    if rows.n != rows.d {
        return Err(arg_error(
            "distances",
            format!("expected a square matrix, got {} x {}", rows.n, rows.d),
        ));
    }
    rows.slice("distances")
}

fn cut_t<'py, T: Real + Element>(
    py: Python<'py>,
    distances: &Bound<'py, PyAny>,
    weights: &[f64],
    anchors: &[usize],
    choice: CutChoice,
) -> PyResult<Bound<'py, PyAny>> {
    let rows = Rows::<T>::borrow(distances, "distances")?;
    let (n, d) = (rows.n, square(&rows)?);
    let labels = crate::pool::detach(py, || core::best_silhouette_cut(d, n, weights, anchors, choice))
        .map_err(in_kernel("best_silhouette_cut"))?;
    Ok(labels.into_pyarray(py).into_any())
}

/// Labels (int64) of the best flat cut of one set by weighted silhouette; see
/// `cascal.kernels.best_silhouette_cut`.
#[pyfunction]
#[pyo3(signature = (distances, weights, anchors, method, max_k, min_cluster_size, min_silhouette))]
#[allow(clippy::too_many_arguments)]
fn best_silhouette_cut<'py>(
    py: Python<'py>,
    distances: Bound<'py, PyAny>,
    weights: PyReadonlyArray1<'py, f64>,
    anchors: PyReadonlyArray1<'py, i64>,
    method: &str,
    max_k: usize,
    min_cluster_size: usize,
    min_silhouette: f64,
) -> PyResult<Bound<'py, PyAny>> {
    let method = Method::parse(method).map_err(to_py)?;
    let choice = CutChoice {
        method,
        max_k,
        min_cluster_size,
        min_silhouette,
    };
    let w = c_slice(&weights, "weights")?;
    let a = anchor_indices(c_slice(&anchors, "anchors")?)?;
    if is_f64(&distances, "distances")? {
        cut_t::<f64>(py, &distances, w, &a, choice)
    } else {
        cut_t::<f32>(py, &distances, w, &a, choice)
    }
}

fn silhouettes_t<T: Real + Element>(
    py: Python<'_>,
    distances: &Bound<'_, PyAny>,
    partitions: &[Vec<i64>],
    weights: &[f64],
    anchors: &[usize],
) -> PyResult<Vec<f64>> {
    let rows = Rows::<T>::borrow(distances, "distances")?;
    let (n, d) = (rows.n, square(&rows)?);
    crate::pool::detach(py, || core::weighted_silhouettes(d, n, partitions, weights, anchors))
        .map_err(in_kernel("weighted_silhouettes"))
}

/// Weighted silhouettes of several partitions (lists of int64 labels) of the same points; see
/// `cascal.kernels.weighted_silhouettes`.
#[pyfunction]
fn weighted_silhouettes(
    py: Python<'_>,
    distances: Bound<'_, PyAny>,
    partitions: Vec<PyReadonlyArray1<'_, i64>>,
    weights: PyReadonlyArray1<'_, f64>,
    anchors: PyReadonlyArray1<'_, i64>,
) -> PyResult<Vec<f64>> {
    let parts = partitions
        .iter()
        .map(|p| c_slice(p, "partitions").map(<[i64]>::to_vec))
        .collect::<PyResult<Vec<_>>>()?;
    let w = c_slice(&weights, "weights")?;
    let a = anchor_indices(c_slice(&anchors, "anchors")?)?;
    if is_f64(&distances, "distances")? {
        silhouettes_t::<f64>(py, &distances, &parts, w, &a)
    } else {
        silhouettes_t::<f32>(py, &distances, &parts, w, &a)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(best_silhouette_cut, m)?)?;
    m.add_function(wrap_pyfunction!(weighted_silhouettes, m)?)?;
    Ok(())
}
