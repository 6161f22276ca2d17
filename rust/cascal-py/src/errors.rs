//! Conversion of core errors into Python exceptions.
//!
//! Invalid input raises `cascal.errors.KernelError` (a `CascalError` and a `ValueError`), with the
//! message `"<arg>: <problem>"` and the argument's name in its `.arg` attribute. The class is
//! defined in Python (it has two bases, which `create_exception!` cannot express) and looked up
//! once per interpreter.

use std::fmt::Display;

use cascal_core::KernelError;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

static KERNEL_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// `cascal.errors.KernelError` for an invalid argument `arg`; the message is `"{arg}: {problem}"`.
///
/// Should `cascal.errors` fail to import (a broken installation), the error is a plain
/// `ValueError` with the same message, caused by the import error.
pub fn arg_error(arg: &str, problem: impl Display) -> PyErr {
    let message = format!("{arg}: {problem}");
    Python::attach(|py| match KERNEL_ERROR.import(py, "cascal.errors", "KernelError") {
        Ok(class) => PyErr::from_type(class.clone(), (message, arg.to_owned())),
        Err(import_error) => {
            let err = PyValueError::new_err(message);
            err.set_cause(py, Some(import_error));
            err
        }
    })
}

/// Turn a core validation error into `cascal.errors.KernelError` naming the same argument.
pub fn to_py(err: KernelError) -> PyErr {
    arg_error(err.arg, err.message)
}
