//! Python bindings of the batched routing kernel (`cascal_core::routing`).

use cascal_core::routing::{self as core, RouteOutput, RouteParams, RoutingModel};
use cascal_core::Real;
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::errors::to_py;

type RouteTuple<'py> = (
    Bound<'py, PyArray2<f64>>,
    Bound<'py, PyArray2<i64>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<f64>>,
);

fn slice<'a, T: numpy::Element, D: numpy::ndarray::Dimension>(
    arr: &'a numpy::PyReadonlyArray<'_, T, D>,
    name: &str,
) -> PyResult<&'a [T]> {
    arr.as_slice().map_err(|_| PyValueError::new_err(format!("{name}: expected a C-contiguous array")))
}

/// Shape check of a 2-D embedding matrix against the query dimension.
fn check_dim(shape: &[usize], d: usize, name: &str) -> PyResult<()> {
    if shape[1] != d {
        return Err(PyValueError::new_err(format!(
            "{name}: expected {d} columns like X, got shape {shape:?}"
        )));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn route_typed<'py, T: Real + numpy::Element>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    subject_reps: &Bound<'py, PyAny>,
    centroids: &Bound<'py, PyAny>,
    centroid_subject: &[i64],
    centroid_scores: &PyReadonlyArray2<'py, f64>,
    global_scores: &[f64],
    params: &RouteParams,
) -> PyResult<RouteTuple<'py>> {
    let x: PyReadonlyArray2<'py, T> = x.extract()?;
    let reps: PyReadonlyArray2<'py, T> = subject_reps
        .extract()
        .map_err(|_| PyValueError::new_err("subject_reps: expected a 2-D array of the same dtype as X"))?;
    let cents: PyReadonlyArray2<'py, T> = centroids
        .extract()
        .map_err(|_| PyValueError::new_err("centroids: expected a 2-D array of the same dtype as X"))?;
    let (n, d) = (x.shape()[0], x.shape()[1]);
    check_dim(reps.shape(), d, "subject_reps")?;
    check_dim(cents.shape(), d, "centroids")?;
    let n_models = global_scores.len();
    if centroid_scores.shape()[1] != n_models || centroid_scores.shape()[0] != cents.shape()[0] {
        return Err(PyValueError::new_err(format!(
            "centroid_scores: expected shape ({}, {n_models}) (centroids x models), got {:?}",
            cents.shape()[0],
            centroid_scores.shape()
        )));
    }
    let model = RoutingModel {
        subject_reps: slice(&reps, "subject_reps")?,
        centroids: slice(&cents, "centroids")?,
        centroid_subject,
        centroid_scores: slice(centroid_scores, "centroid_scores")?,
        global_scores,
    };
    let xs = slice(&x, "X")?;
    let out: RouteOutput = py.detach(|| core::route_batch(xs, n, d, &model, params)).map_err(to_py)?;
    let shape_err = |e: numpy::ndarray::ShapeError| PyValueError::new_err(e.to_string());
    Ok((
        Array2::from_shape_vec((n, n_models), out.probs).map_err(shape_err)?.into_pyarray(py),
        Array2::from_shape_vec((n, params.top_k), out.ranked).map_err(shape_err)?.into_pyarray(py),
        out.subject.into_pyarray(py),
        out.nearest_distance.into_pyarray(py),
        out.alpha.into_pyarray(py),
    ))
}

/// Batched CASCAL routing (DESIGN §3C). Returns `(probs, ranked, subject, nearest_distance, alpha)`;
/// see `cascal.kernels.route_batch`. `X`, `subject_reps` and `centroids` share one float dtype.
#[pyfunction]
#[pyo3(signature = (x, subject_reps, centroids, centroid_subject, centroid_scores, global_scores, k_nearest=3, distance_temp=0.1, score_temp=0.1, fallback_distance=0.5, fallback_width=0.2, top_k=3, subject_temp=0.0))]
#[allow(clippy::too_many_arguments)]
fn route_batch<'py>(
    py: Python<'py>,
    x: Bound<'py, PyAny>,
    subject_reps: Bound<'py, PyAny>,
    centroids: Bound<'py, PyAny>,
    centroid_subject: PyReadonlyArray1<'py, i64>,
    centroid_scores: PyReadonlyArray2<'py, f64>,
    global_scores: PyReadonlyArray1<'py, f64>,
    k_nearest: usize,
    distance_temp: f64,
    score_temp: f64,
    fallback_distance: f64,
    fallback_width: f64,
    top_k: usize,
    subject_temp: f64,
) -> PyResult<RouteTuple<'py>> {
    let params = RouteParams { k_nearest, distance_temp, score_temp, fallback_distance, fallback_width, top_k, subject_temp };
    let cs = slice(&centroid_subject, "centroid_subject")?;
    let g = slice(&global_scores, "global_scores")?;
    if x.extract::<PyReadonlyArray2<'py, f32>>().is_ok() {
        route_typed::<f32>(py, &x, &subject_reps, &centroids, cs, &centroid_scores, g, &params)
    } else if x.extract::<PyReadonlyArray2<'py, f64>>().is_ok() {
        route_typed::<f64>(py, &x, &subject_reps, &centroids, cs, &centroid_scores, g, &params)
    } else {
        Err(PyValueError::new_err("X: expected a 2-D float32 or float64 array"))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(route_batch, m)?)?;
    Ok(())
}
