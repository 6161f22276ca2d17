//! Python bindings of the distance kernels (`cascal_core::distance`).
//!
//! Each function takes C-contiguous float32 or float64 arrays (the Python wrappers in
//! `cascal.kernels.distance` convert anything else), releases the GIL for the work, and returns
//! a new array of the input's dtype.

use cascal_core::distance::{self as core, Metric};
use cascal_core::Real;
use numpy::ndarray::Array2;
use numpy::{Element, IntoPyArray, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::array::c_slice;
use crate::errors::{arg_error, in_kernel, to_py};

/// A read-only C-contiguous 2-D array of `T` borrowed from Python, with its shape.
pub(crate) struct Rows<'py, T: Real + Element> {
    array: PyReadonlyArray2<'py, T>,
    pub n: usize,
    pub d: usize,
}

impl<'py, T: Real + Element> Rows<'py, T> {
    /// Borrow `obj` as a 2-D `T` array; `None` if it has another dtype or dimensionality.
    pub(crate) fn try_borrow(obj: &Bound<'py, PyAny>) -> Option<Self> {
        let array = obj.extract::<PyReadonlyArray2<'py, T>>().ok()?;
        let (n, d) = (array.shape()[0], array.shape()[1]);
        Some(Self { array, n, d })
    }

    /// Borrow `obj` as a 2-D `T` array or fail naming `arg`.
    pub(crate) fn borrow(obj: &Bound<'py, PyAny>, arg: &str) -> PyResult<Self> {
        Self::try_borrow(obj).ok_or_else(|| {
            arg_error(arg, format!("expected a 2-D {} array (the dtype of the first array)", T::NAME))
        })
    }

    /// The values, row-major; fails (naming `arg`) unless the array is C-contiguous.
    pub(crate) fn slice(&self, arg: &str) -> PyResult<&[T]> {
        c_slice(&self.array, arg)
    }
}

/// Is `obj` a float64 array? (Otherwise float32 is tried; anything else is rejected.)
pub(crate) fn is_f64(obj: &Bound<'_, PyAny>, arg: &str) -> PyResult<bool> {
    if obj.extract::<PyReadonlyArray2<'_, f64>>().is_ok() {
        Ok(true)
    } else if obj.extract::<PyReadonlyArray2<'_, f32>>().is_ok() {
        Ok(false)
    } else {
        Err(arg_error(arg, "expected a 2-D float32 or float64 array"))
    }
}

/// `(rows, cols)` vector into a 2-D numpy array without copying.
pub(crate) fn to_2d<'py, T: Element>(py: Python<'py>, v: Vec<T>, rows: usize, cols: usize) -> PyResult<Bound<'py, PyAny>> {
    let arr = Array2::from_shape_vec((rows, cols), v).map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(arr.into_pyarray(py).into_any())
}

fn pdist_t<'py, T: Real + Element>(py: Python<'py>, x: &Bound<'py, PyAny>, metric: Metric) -> PyResult<Bound<'py, PyAny>> {
    let rows = Rows::<T>::borrow(x, "X")?;
    let (n, d) = (rows.n, rows.d);
    let xs = rows.slice("X")?;
    let out = crate::pool::detach(py, || core::pdist(xs, n, d, metric)).map_err(in_kernel("pdist"))?;
    Ok(out.into_pyarray(py).into_any())
}

fn square_t<'py, T: Real + Element>(py: Python<'py>, x: &Bound<'py, PyAny>, metric: Metric) -> PyResult<Bound<'py, PyAny>> {
    let rows = Rows::<T>::borrow(x, "X")?;
    let (n, d) = (rows.n, rows.d);
    let xs = rows.slice("X")?;
    let out = crate::pool::detach(py, || core::pdist_square(xs, n, d, metric)).map_err(in_kernel("pdist_square"))?;
    to_2d(py, out, n, n)
}

fn cdist_t<'py, T: Real + Element>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    y: &Bound<'py, PyAny>,
    metric: Metric,
) -> PyResult<Bound<'py, PyAny>> {
    let (a, b) = (Rows::<T>::borrow(x, "X")?, Rows::<T>::borrow(y, "Y")?);
    if a.d != b.d {
        return Err(arg_error("Y", format!("has {} columns but X has {}", b.d, a.d)));
    }
    let (nx, ny, d) = (a.n, b.n, a.d);
    let (xs, ys) = (a.slice("X")?, b.slice("Y")?);
    let out = crate::pool::detach(py, || core::cdist(xs, nx, ys, ny, d, metric)).map_err(in_kernel("cdist"))?;
    to_2d(py, out, nx, ny)
}

/// Condensed distances of the rows of `X` in scipy's order (`i < j`, row-major).
#[pyfunction]
#[pyo3(signature = (X, metric))]
// reason: `X`, `Y` and `C` are the names Python callers pass these arguments by
#[allow(non_snake_case)]
fn pdist<'py>(py: Python<'py>, X: Bound<'py, PyAny>, metric: &str) -> PyResult<Bound<'py, PyAny>> {
    let metric = Metric::parse(metric).map_err(to_py)?;
    if is_f64(&X, "X")? {
        pdist_t::<f64>(py, &X, metric)
    } else {
        pdist_t::<f32>(py, &X, metric)
    }
}

/// Full symmetric distance matrix of the rows of `X` (zero diagonal).
#[pyfunction]
#[pyo3(signature = (X, metric))]
// reason: `X`, `Y` and `C` are the names Python callers pass these arguments by
#[allow(non_snake_case)]
fn pdist_square<'py>(py: Python<'py>, X: Bound<'py, PyAny>, metric: &str) -> PyResult<Bound<'py, PyAny>> {
    let metric = Metric::parse(metric).map_err(to_py)?;
    if is_f64(&X, "X")? {
        square_t::<f64>(py, &X, metric)
    } else {
        square_t::<f32>(py, &X, metric)
    }
}

/// Distances between every row of `X` and every row of `Y` (same dtype).
#[pyfunction]
#[pyo3(signature = (X, Y, metric))]
// reason: `X`, `Y` and `C` are the names Python callers pass these arguments by
#[allow(non_snake_case)]
fn cdist<'py>(py: Python<'py>, X: Bound<'py, PyAny>, Y: Bound<'py, PyAny>, metric: &str) -> PyResult<Bound<'py, PyAny>> {
    let metric = Metric::parse(metric).map_err(to_py)?;
    if is_f64(&X, "X")? {
        cdist_t::<f64>(py, &X, &Y, metric)
    } else {
        cdist_t::<f32>(py, &X, &Y, metric)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(pdist, m)?)?;
    m.add_function(wrap_pyfunction!(pdist_square, m)?)?;
    m.add_function(wrap_pyfunction!(cdist, m)?)?;
    Ok(())
}
