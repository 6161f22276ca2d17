//! Python bindings of the batched routing kernel (`cascal_core::routing`).
//!
//! `route_batch(x, tables, params, subject_weights=False)` takes a `cascal.kernels.RoutingTables` and a
//! `cascal.kernels.RouteParams` (or any objects with the same attributes); this file reads their
//! attributes, in one place each, into the core's `RoutingModel` and `RouteParams`. The defaults
//! and the Python-side checks live in those classes; the core validates the values again.

use cascal_core::routing::{self as core, CostTable, Outputs, RouteOutput, RouteParams, RoutingModel};
use cascal_core::Real;
use numpy::ndarray::Array2;
use numpy::{Element, IntoPyArray, PyArray1, PyArray2, PyReadonlyArray, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::array::c_slice;
use crate::attr::attr;
use crate::errors::{arg_error, in_kernel};

type RouteTuple<'py> = (
    Bound<'py, PyArray2<f64>>,
    Bound<'py, PyArray2<i64>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<f64>>,
    Option<Bound<'py, PyArray2<f64>>>,
    Option<Bound<'py, PyArray2<f64>>>,
);

/// Attribute `name` of `obj` (a `RoutingTables`) as a read-only array of element `T`, dimension `D`.
fn array_field<'py, T: Element, D: numpy::ndarray::Dimension>(
    obj: &Bound<'py, PyAny>,
    name: &'static str,
    expected: &str,
) -> PyResult<PyReadonlyArray<'py, T, D>> {
    obj.getattr(PyString::intern(obj.py(), name))?
        .extract::<PyReadonlyArray<'py, T, D>>()
        .map_err(|_| arg_error(name, format!("expected {expected}")))
}

/// Read a `RouteParams` object into the core's parameters.
fn read_params(params: &Bound<'_, PyAny>) -> PyResult<RouteParams> {
    Ok(RouteParams {
        k_nearest: attr(params, "k_nearest", "an integer >= 1")?,
        distance_temp: attr(params, "distance_temp", "a number")?,
        score_temp: attr(params, "score_temp", "a number")?,
        fallback_distance: attr(params, "fallback_distance", "a number")?,
        fallback_width: attr(params, "fallback_width", "a number")?,
        top_k: attr(params, "top_k", "an integer >= 1")?,
        subject_temp: attr(params, "subject_temp", "a number")?,
    })
}

/// The arrays of a `RoutingTables` object, borrowed read-only; the matrices in the query dtype `T`.
struct Tables<'py, T: Element> {
    subject_reps: PyReadonlyArray2<'py, T>,
    centroids: PyReadonlyArray2<'py, T>,
    centroid_subject: PyReadonlyArray1<'py, i64>,
    centroid_scores: PyReadonlyArray2<'py, f64>,
    global_scores: PyReadonlyArray1<'py, f64>,
    /// Optional cost table (`centroid_costs`, `global_costs`; both `None` or both arrays).
    costs: Option<CostArrays<'py>>,
}

type CostArrays<'py> = (PyReadonlyArray2<'py, f64>, PyReadonlyArray1<'py, f64>);

/// The optional cost table of `tables`: `None` when `centroid_costs` and `global_costs` are both
/// `None` (or absent).
fn read_costs<'py>(tables: &Bound<'py, PyAny>) -> PyResult<Option<CostArrays<'py>>> {
    let py = tables.py();
    let present = |name: &'static str| -> PyResult<bool> {
        let key = PyString::intern(py, name);
        Ok(tables.hasattr(&key)? && !tables.getattr(&key)?.is_none())
    };
    match (present("centroid_costs")?, present("global_costs")?) {
        (false, false) => Ok(None),
        (true, true) => Ok(Some((
            array_field(tables, "centroid_costs", "a 2-D float64 array")?,
            array_field(tables, "global_costs", "a 1-D float64 array")?,
        ))),
        (true, false) => Err(arg_error("global_costs", "expected a 1-D float64 array with centroid_costs, got None")),
        (false, true) => Err(arg_error("centroid_costs", "expected a 2-D float64 array with global_costs, got None")),
    }
}

impl<'py, T: Real + Element> Tables<'py, T> {
    /// Borrow the arrays of `tables` and check their shapes against each other and the query
    /// dimension `d` (the core only sees flat slices).
    fn read(tables: &Bound<'py, PyAny>, d: usize) -> PyResult<Self> {
        let same_dtype = format!("a 2-D {} array (the dtype of X)", T::NAME);
        let out = Self {
            subject_reps: array_field(tables, "subject_reps", &same_dtype)?,
            centroids: array_field(tables, "centroids", &same_dtype)?,
            centroid_subject: array_field(tables, "centroid_subject", "a 1-D int64 array")?,
            centroid_scores: array_field(tables, "centroid_scores", "a 2-D float64 array")?,
            global_scores: array_field(tables, "global_scores", "a 1-D float64 array")?,
            costs: read_costs(tables)?,
        };
        for (name, shape) in [("subject_reps", out.subject_reps.shape()), ("centroids", out.centroids.shape())] {
            if shape[1] != d {
                return Err(arg_error(name, format!("expected {d} columns like X, got shape {shape:?}")));
            }
        }
        let (n_centroids, n_models) = (out.centroids.shape()[0], out.global_scores.len());
        if out.centroid_scores.shape() != [n_centroids, n_models] {
            return Err(arg_error(
                "centroid_scores",
                format!(
                    "expected shape ({n_centroids}, {n_models}) (centroids x models), got {:?}",
                    out.centroid_scores.shape()
                ),
            ));
        }
        if let Some((centroid_costs, global_costs)) = &out.costs {
            if centroid_costs.shape() != [n_centroids, n_models] {
                return Err(arg_error(
                    "centroid_costs",
                    format!("expected shape ({n_centroids}, {n_models}) (centroids x models), got {:?}", centroid_costs.shape()),
                ));
            }
            if global_costs.len() != n_models {
                return Err(arg_error("global_costs", format!("expected shape ({n_models},), got {:?}", global_costs.shape())));
            }
        }
        Ok(out)
    }

    fn model(&self) -> PyResult<RoutingModel<'_, T>> {
        Ok(RoutingModel {
            subject_reps: c_slice(&self.subject_reps, "subject_reps")?,
            centroids: c_slice(&self.centroids, "centroids")?,
            centroid_subject: c_slice(&self.centroid_subject, "centroid_subject")?,
            centroid_scores: c_slice(&self.centroid_scores, "centroid_scores")?,
            global_scores: c_slice(&self.global_scores, "global_scores")?,
            costs: match &self.costs {
                Some((centroid_costs, global_costs)) => Some(CostTable {
                    centroid_costs: c_slice(centroid_costs, "centroid_costs")?,
                    global_costs: c_slice(global_costs, "global_costs")?,
                }),
                None => None,
            },
        })
    }
}

fn route_typed<'py, T: Real + Element>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, T>,
    tables: &Bound<'py, PyAny>,
    params: &RouteParams,
    outputs: Outputs,
) -> PyResult<RouteTuple<'py>> {
    let (n, d) = (x.shape()[0], x.shape()[1]);
    let tables = Tables::<T>::read(tables, d)?;
    let model = tables.model()?;
    let n_models = model.global_scores.len();
    let n_subjects = model.subject_reps.len() / d.max(1);
    let xs = c_slice(&x, "X")?;
    let route = || core::route_batch_with(xs, n, d, &model, params, outputs);
    // one block runs on this thread (no pool hand-off), without the GIL like the pool's work
    let out: RouteOutput =
        if core::runs_in_one_block(n) { py.detach(route) } else { crate::pool::detach(py, route) }.map_err(in_kernel("route_batch"))?;
    let shape_err = |e: numpy::ndarray::ShapeError| PyValueError::new_err(e.to_string());
    Ok((
        Array2::from_shape_vec((n, n_models), out.probs).map_err(shape_err)?.into_pyarray(py),
        Array2::from_shape_vec((n, params.top_k), out.ranked).map_err(shape_err)?.into_pyarray(py),
        out.subject.into_pyarray(py),
        out.nearest_distance.into_pyarray(py),
        out.alpha.into_pyarray(py),
        match out.expected_cost {
            Some(e) => Some(Array2::from_shape_vec((n, n_models), e).map_err(shape_err)?.into_pyarray(py)),
            None => None,
        },
        match out.subject_weights {
            Some(w) => Some(Array2::from_shape_vec((n, n_subjects), w).map_err(shape_err)?.into_pyarray(py)),
            None => None,
        },
    ))
}

/// Batched CASCAL routing. Returns `(probs, ranked, subject, nearest_distance, alpha,
/// expected_cost, subject_weights)` (`expected_cost` is `None` without a cost table,
/// `subject_weights` `None` unless asked for); see `cascal.kernels.route_batch`.
/// `tables.subject_reps` and `tables.centroids` have `x`'s dtype.
#[pyfunction]
#[pyo3(signature = (x, tables, params, subject_weights = false))]
fn route_batch<'py>(
    py: Python<'py>,
    x: Bound<'py, PyAny>,
    tables: Bound<'py, PyAny>,
    params: Bound<'py, PyAny>,
    subject_weights: bool,
) -> PyResult<RouteTuple<'py>> {
    let params = read_params(&params)?;
    let outputs = Outputs { subject_weights };
    if let Ok(x32) = x.extract::<PyReadonlyArray2<'py, f32>>() {
        route_typed::<f32>(py, x32, &tables, &params, outputs)
    } else if let Ok(x64) = x.extract::<PyReadonlyArray2<'py, f64>>() {
        route_typed::<f64>(py, x64, &tables, &params, outputs)
    } else {
        Err(arg_error("X", "expected a 2-D float32 or float64 array"))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(route_batch, m)?)?;
    Ok(())
}
