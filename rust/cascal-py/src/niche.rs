//! Python bindings of the niche kernels (`cascal_core::niche`).

use cascal_core::distance::Metric;
use cascal_core::niche as core;
use cascal_core::Real;
use numpy::{Element, PyReadonlyArray1};
use pyo3::prelude::*;

use crate::array::c_slice;
use crate::distance::{is_f64, to_2d, Rows};
use crate::errors::{arg_error, in_kernel, to_py};

fn cluster_means_t<'py, T: Real + Element>(
    py: Python<'py>,
    labels: &[i64],
    values: &Bound<'py, PyAny>,
    n_clusters: usize,
    weights: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let vals = Rows::<T>::borrow(values, "values")?;
    let (n, m) = (vals.n, vals.d);
    let vs = vals.slice("values")?;
    let w = weights
        .map(|w| {
            w.extract::<PyReadonlyArray1<'py, f64>>()
                .map_err(|_| arg_error("weights", "expected a 1-D float64 array"))
        })
        .transpose()?;
    let ws = match &w {
        Some(a) => Some(c_slice(a, "weights")?),
        None => None,
    };
    let out = crate::pool::detach(py, || core::cluster_means(labels, vs, n, m, n_clusters, ws)).map_err(in_kernel("cluster_means"))?;
    to_2d(py, out, n_clusters, m)
}

/// NaN-aware weighted means of the rows of `values` per cluster label; see
/// `cascal.kernels.cluster_means`.
#[pyfunction]
#[pyo3(signature = (labels, values, n_clusters, weights=None))]
fn cluster_means<'py>(
    py: Python<'py>,
    labels: PyReadonlyArray1<'py, i64>,
    values: Bound<'py, PyAny>,
    n_clusters: usize,
    weights: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let ls = c_slice(&labels, "labels")?;
    if is_f64(&values, "values")? {
        cluster_means_t::<f64>(py, ls, &values, n_clusters, weights.as_ref())
    } else {
        cluster_means_t::<f32>(py, ls, &values, n_clusters, weights.as_ref())
    }
}

fn nearest_t<'py, T: Real + Element>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    c: &Bound<'py, PyAny>,
    k: usize,
    metric: Metric,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let (a, b) = (Rows::<T>::borrow(x, "X")?, Rows::<T>::borrow(c, "C")?);
    if a.d != b.d {
        return Err(arg_error("C", format!("has {} columns but X has {}", b.d, a.d)));
    }
    let (n, nc, d) = (a.n, b.n, a.d);
    let (xs, cs) = (a.slice("X")?, b.slice("C")?);
    let (idx, dist) = crate::pool::detach(py, || core::nearest_centroids(xs, n, cs, nc, d, k, metric)).map_err(in_kernel("nearest_centroids"))?;
    Ok((to_2d(py, idx, n, k)?, to_2d(py, dist, n, k)?))
}

/// The `k` nearest rows of `C` to every row of `X`: `(indices int64 (n, k), distances (n, k))`.
#[pyfunction]
#[pyo3(signature = (X, C, k, metric))]
// reason: `X`, `Y` and `C` are the names Python callers pass these arguments by
#[allow(non_snake_case)]
fn nearest_centroids<'py>(
    py: Python<'py>,
    X: Bound<'py, PyAny>,
    C: Bound<'py, PyAny>,
    k: usize,
    metric: &str,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let metric = Metric::parse(metric).map_err(to_py)?;
    if is_f64(&X, "X")? {
        nearest_t::<f64>(py, &X, &C, k, metric)
    } else {
        nearest_t::<f32>(py, &X, &C, k, metric)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(cluster_means, m)?)?;
    m.add_function(wrap_pyfunction!(nearest_centroids, m)?)?;
    Ok(())
}
