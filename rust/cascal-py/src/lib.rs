//! `cascal._core`: thin PyO3 bindings over `cascal-core`.
//!
//! Each file registers the functions of one kernel family. Bindings only convert arrays, release
//! the GIL around the core call (running it on the process's kernel thread pool, which survives
//! `fork()`: `pool`) and map errors; all logic lives in `cascal-core`.
//!
//! The only `unsafe` here is the fork-safe pool pointer of `pool` (documented there).

#![deny(clippy::undocumented_unsafe_blocks, unsafe_op_in_unsafe_fn)]

use pyo3::prelude::*;

mod array;
mod attr;
mod calibration;
mod consensus;
mod distance;
mod errors;
mod linkage;
mod niche;
mod pool;
mod routing;
mod silhouette;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(num_threads, m)?)?;
    distance::register(m)?;
    linkage::register(m)?;
    consensus::register(m)?;
    niche::register(m)?;
    routing::register(m)?;
    calibration::register(m)?;
    silhouette::register(m)?;
    Ok(())
}

/// Number of worker threads the kernels use (the process's kernel pool, see `pool`).
#[pyfunction]
fn num_threads() -> usize {
    pool::pool().current_num_threads()
}
