//! Reading the attributes of the Python parameter objects (`RouteParams`, `ConsensusParams`).

use pyo3::conversion::FromPyObjectOwned;
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::errors::arg_error;

/// Attribute `name` of `obj` as `V`; a value of another type raises `KernelError` naming `name`
/// and saying what was `expected` (a missing attribute raises Python's `AttributeError`).
pub fn attr<'py, V: FromPyObjectOwned<'py>>(obj: &Bound<'py, PyAny>, name: &'static str, expected: &str) -> PyResult<V> {
    obj.getattr(PyString::intern(obj.py(), name))?.extract::<V>().map_err(|_| arg_error(name, format!("expected {expected}")))
}
