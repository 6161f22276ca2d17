//! Conversion of core errors into Python exceptions.
//!
//! Invalid input raises `cascal.errors.KernelError` (a `CascalError` and a `ValueError`), with the
//! message `"<arg>: <problem>"` and the argument's name in its `.arg` attribute. The class is
//! defined in Python (it has two bases, which `create_exception!` cannot express) and looked up
//! once per interpreter.
//!
//! A buffer that cannot be allocated (core [`ErrorKind::OutOfMemory`]: larger than the allocation
//! cap or refused by the allocator) raises Python's `MemoryError` instead, with the message
//! `"<kernel>: <arg>: cannot allocate the <buffer>: … <bytes> bytes …"`. A size that cannot exist
//! at all (overflowing the address space) is invalid input, hence `KernelError`.

use std::fmt::Display;

use cascal_core::{ErrorKind, KernelError};
use pyo3::exceptions::{PyMemoryError, PyValueError};
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

/// Turn a core error into `cascal.errors.KernelError` naming the same argument, or into
/// `MemoryError` for an allocation failure.
pub fn to_py(err: KernelError) -> PyErr {
    convert(err, None)
}

/// Like [`to_py`], for the errors of kernel `kernel`: a `MemoryError` message starts with the
/// kernel's name (a `KernelError` already names the argument).
pub fn in_kernel(kernel: &'static str) -> impl Fn(KernelError) -> PyErr {
    move |err| convert(err, Some(kernel))
}

fn convert(err: KernelError, kernel: Option<&str>) -> PyErr {
    match (err.kind, kernel) {
        (ErrorKind::OutOfMemory { .. }, Some(kernel)) => PyMemoryError::new_err(format!("{kernel}: {err}")),
        (ErrorKind::OutOfMemory { .. }, None) => PyMemoryError::new_err(err.to_string()),
        (ErrorKind::InvalidInput, _) => arg_error(err.arg, err.message),
    }
}
