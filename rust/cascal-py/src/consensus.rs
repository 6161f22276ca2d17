//! Python bindings of the consensus kernels (`cascal_core::consensus`).

use cascal_core::consensus::{self as core, ConsensusOutput, ConsensusParams};
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::array::c_slice;
use crate::attr::attr;
use crate::errors::{arg_error, in_kernel};

/// A read-only C-contiguous logprob matrix in either float width.
enum Logprobs<'py> {
    F32(PyReadonlyArray2<'py, f32>),
    F64(PyReadonlyArray2<'py, f64>),
}

impl<'py> Logprobs<'py> {
    fn extract(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(a) = obj.extract::<PyReadonlyArray2<'py, f32>>() {
            return Ok(Self::F32(a));
        }
        if let Ok(a) = obj.extract::<PyReadonlyArray2<'py, f64>>() {
            return Ok(Self::F64(a));
        }
        Err(arg_error("logprobs", "expected a 2-D float32 or float64 array"))
    }

    fn shape(&self) -> (usize, usize) {
        let s = match self {
            Self::F32(a) => a.shape(),
            Self::F64(a) => a.shape(),
        };
        (s[0], s[1])
    }
}

type ConsensusTuple<'py> = (
    Bound<'py, PyArray2<f32>>,
    Bound<'py, PyArray2<bool>>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<i8>>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<f64>>,
);

/// Read a `cascal.kernels.ConsensusParams` (or any object with its attributes) into the core's
/// parameters; the defaults and the Python-side checks live in that class.
fn read_params(params: &Bound<'_, PyAny>) -> PyResult<ConsensusParams> {
    let (clamp_lo, clamp_hi): (f64, f64) = attr(params, "clamp", "a pair (lo, hi) of numbers")?;
    Ok(ConsensusParams {
        z_scale: attr(params, "z_scale", "a number")?,
        tau: attr(params, "tau", "a number")?,
        clamp_lo,
        clamp_hi,
    })
}

/// Confidence-weighted consensus. Returns `(scores, plurality, agreement, majority, mu, sigma)`;
/// see `cascal.kernels.consensus_scores`. `mu` and `sigma` are both given (training statistics to
/// reuse) or both `None`.
#[pyfunction]
#[pyo3(signature = (answers, n_options, logprobs, params, mu, sigma))]
fn consensus_scores<'py>(
    py: Python<'py>,
    answers: PyReadonlyArray2<'py, i8>,
    n_options: PyReadonlyArray1<'py, i8>,
    logprobs: Option<Bound<'py, PyAny>>,
    params: Bound<'py, PyAny>,
    mu: Option<PyReadonlyArray1<'py, f64>>,
    sigma: Option<PyReadonlyArray1<'py, f64>>,
) -> PyResult<ConsensusTuple<'py>> {
    let params = read_params(&params)?;
    let (n_q, n_m) = (answers.shape()[0], answers.shape()[1]);
    let lp = logprobs.as_ref().map(Logprobs::extract).transpose()?;
    if let Some(lp) = &lp {
        if lp.shape() != (n_q, n_m) {
            return Err(arg_error("logprobs", format!("expected shape ({n_q}, {n_m}) like answers, got {:?}", lp.shape())));
        }
    }
    let ans = c_slice(&answers, "answers")?;
    let opts = c_slice(&n_options, "n_options")?;
    let stats = match (&mu, &sigma) {
        (Some(m), Some(s)) => Some((c_slice(m, "stats")?, c_slice(s, "stats")?)),
        (None, None) => None,
        _ => return Err(arg_error("stats", "give both mu and sigma, or neither")),
    };
    let out: ConsensusOutput = match &lp {
        None => crate::pool::detach(py, || core::consensus_scores::<f64>(ans, opts, None, n_q, n_m, &params, stats)),
        Some(Logprobs::F32(a)) => {
            let s = c_slice(a, "logprobs")?;
            crate::pool::detach(py, || core::consensus_scores(ans, opts, Some(s), n_q, n_m, &params, stats))
        }
        Some(Logprobs::F64(a)) => {
            let s = c_slice(a, "logprobs")?;
            crate::pool::detach(py, || core::consensus_scores(ans, opts, Some(s), n_q, n_m, &params, stats))
        }
    }
    .map_err(in_kernel("consensus_scores"))?;
    let shape_err = |e: numpy::ndarray::ShapeError| PyValueError::new_err(e.to_string());
    Ok((
        Array2::from_shape_vec((n_q, n_m), out.scores).map_err(shape_err)?.into_pyarray(py),
        Array2::from_shape_vec((n_q, n_m), out.plurality).map_err(shape_err)?.into_pyarray(py),
        out.agreement.into_pyarray(py),
        out.majority.into_pyarray(py),
        out.mu.into_pyarray(py),
        out.sigma.into_pyarray(py),
    ))
}

type StatsPair<'py> = (Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>);

/// Per-model robust `(mu, sigma)` of a logprob matrix (median and 1.4826·MAD, NaN ignored).
#[pyfunction]
fn consensus_stats<'py>(
    py: Python<'py>,
    logprobs: Bound<'py, PyAny>,
) -> PyResult<StatsPair<'py>> {
    let lp = Logprobs::extract(&logprobs)?;
    let (n_q, n_m) = lp.shape();
    let (mu, sigma) = match &lp {
        Logprobs::F32(a) => {
            let s = c_slice(a, "logprobs")?;
            crate::pool::detach(py, || core::robust_stats(s, n_q, n_m))
        }
        Logprobs::F64(a) => {
            let s = c_slice(a, "logprobs")?;
            crate::pool::detach(py, || core::robust_stats(s, n_q, n_m))
        }
    }
    .map_err(in_kernel("consensus_stats"))?;
    Ok((mu.into_pyarray(py), sigma.into_pyarray(py)))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(consensus_scores, m)?)?;
    m.add_function(wrap_pyfunction!(consensus_stats, m)?)?;
    Ok(())
}
