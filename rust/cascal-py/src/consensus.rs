//! Python bindings of the consensus kernels (`cascal_core::consensus`).

use cascal_core::consensus::{self as core, ConsensusOutput, ConsensusParams};
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::array::c_slice;
use crate::errors::{arg_error, to_py};

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

/// Confidence-weighted consensus (DESIGN §3A). Returns
/// `(scores, plurality, agreement, majority, mu, sigma)`; see `cascal.kernels.consensus_scores`.
#[pyfunction]
#[pyo3(signature = (answers, n_options, logprobs=None, z_scale=1.0, tau=1.0, clamp_lo=0.01, clamp_hi=0.99, mu=None, sigma=None))]
#[allow(clippy::too_many_arguments)]
fn consensus_scores<'py>(
    py: Python<'py>,
    answers: PyReadonlyArray2<'py, i8>,
    n_options: PyReadonlyArray1<'py, i8>,
    logprobs: Option<Bound<'py, PyAny>>,
    z_scale: f64,
    tau: f64,
    clamp_lo: f64,
    clamp_hi: f64,
    mu: Option<PyReadonlyArray1<'py, f64>>,
    sigma: Option<PyReadonlyArray1<'py, f64>>,
) -> PyResult<ConsensusTuple<'py>> {
    let (n_q, n_m) = (answers.shape()[0], answers.shape()[1]);
    let lp = logprobs.as_ref().map(Logprobs::extract).transpose()?;
    if let Some(lp) = &lp {
        if lp.shape() != (n_q, n_m) {
            return Err(arg_error("logprobs", format!("expected shape ({n_q}, {n_m}) like answers, got {:?}", lp.shape())));
        }
    }
    let params = ConsensusParams { z_scale, tau, clamp_lo, clamp_hi };
    let ans = c_slice(&answers, "answers")?;
    let opts = c_slice(&n_options, "n_options")?;
    let stats = match (&mu, &sigma) {
        (Some(m), Some(s)) => Some((c_slice(m, "stats")?, c_slice(s, "stats")?)),
        (None, None) => None,
        _ => return Err(arg_error("stats", "give both mu and sigma, or neither")),
    };
    let out: ConsensusOutput = match &lp {
        None => py.detach(|| core::consensus_scores::<f64>(ans, opts, None, n_q, n_m, &params, stats)),
        Some(Logprobs::F32(a)) => {
            let s = c_slice(a, "logprobs")?;
            py.detach(|| core::consensus_scores(ans, opts, Some(s), n_q, n_m, &params, stats))
        }
        Some(Logprobs::F64(a)) => {
            let s = c_slice(a, "logprobs")?;
            py.detach(|| core::consensus_scores(ans, opts, Some(s), n_q, n_m, &params, stats))
        }
    }
    .map_err(to_py)?;
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
            py.detach(|| core::robust_stats(s, n_q, n_m))
        }
        Logprobs::F64(a) => {
            let s = c_slice(a, "logprobs")?;
            py.detach(|| core::robust_stats(s, n_q, n_m))
        }
    }
    .map_err(to_py)?;
    Ok((mu.into_pyarray(py), sigma.into_pyarray(py)))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(consensus_scores, m)?)?;
    m.add_function(wrap_pyfunction!(consensus_stats, m)?)?;
    Ok(())
}
