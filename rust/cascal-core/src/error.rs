//! The single error type of the core crate.
//!
//! Every kernel validates its input and returns `Err(KernelError)` with a message that names the
//! offending argument; the bindings turn it into a Python `ValueError` with the same message.

use std::fmt;

/// Invalid input to a kernel. `arg` is the argument's name as the Python API spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelError {
    pub arg: &'static str,
    pub message: String,
}

impl KernelError {
    pub fn new(arg: &'static str, message: impl Into<String>) -> Self {
        Self { arg, message: message.into() }
    }
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.arg, self.message)
    }
}

impl std::error::Error for KernelError {}

/// Result alias used by every kernel.
pub type KResult<T> = Result<T, KernelError>;
