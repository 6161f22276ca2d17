//! Conversion of core errors into Python exceptions.

use cascal_core::KernelError;
use pyo3::exceptions::PyValueError;
use pyo3::PyErr;

/// Turn a core validation error into a Python `ValueError` carrying the same message.
pub fn to_py(err: KernelError) -> PyErr {
    PyValueError::new_err(err.to_string())
}
