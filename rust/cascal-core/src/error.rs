//! The single error type of the core crate.
//!
//! Every kernel validates its input and returns `Err(KernelError)` with a message that names the
//! offending argument; the bindings turn it into a Python exception with the same message: a
//! `ValueError` for invalid input (including sizes that cannot exist, such as an element count
//! that overflows `usize`), a `MemoryError` for an output or scratch buffer that cannot be
//! allocated (see [`crate::alloc`]).

use std::fmt;

/// What kind of failure a [`KernelError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input is invalid (bad value, shape, or a size that overflows `usize` / `isize::MAX`
    /// bytes).
    InvalidInput,
    /// A buffer of `bytes` bytes could not be allocated (it exceeds the allocation cap or the
    /// allocator refused it).
    OutOfMemory { bytes: usize },
}

/// A kernel failure. `arg` is the argument's name as the Python API spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelError {
    pub arg: &'static str,
    pub message: String,
    pub kind: ErrorKind,
}

impl KernelError {
    /// Invalid input to a kernel.
    pub fn new(arg: &'static str, message: impl Into<String>) -> Self {
        Self { arg, message: message.into(), kind: ErrorKind::InvalidInput }
    }

    /// A buffer of `bytes` bytes, sized by argument `arg`, could not be allocated.
    pub fn out_of_memory(arg: &'static str, bytes: usize, message: impl Into<String>) -> Self {
        Self { arg, message: message.into(), kind: ErrorKind::OutOfMemory { bytes } }
    }

    /// Is this an allocation failure (as opposed to invalid input)?
    pub fn is_out_of_memory(&self) -> bool {
        matches!(self.kind, ErrorKind::OutOfMemory { .. })
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
