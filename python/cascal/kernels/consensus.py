"""Confidence-weighted consensus voting over a response matrix, in Rust.

:func:`consensus_scores` scores every model on every question by how much the (logprob-weighted)
pool agrees with its answer, without any answer key. Exact rules:

1. Per model, ``mu`` = median and ``sigma`` = 1.4826·MAD of its finite logprobs (NaN ignored); if
   that ``sigma`` is 0 or not finite, the population standard deviation; if that is 0 too, 1. A model
   without any finite logprob gets ``mu = 0, sigma = 1``. ``stats=(mu, sigma)`` reuses training
   statistics instead. ``z = (logprob - mu) / sigma``, and ``z = 0`` where the logprob is NaN.
2. Vote weight ``w = clip(sigmoid(z_scale * z), *clamp)`` (0.5 everywhere without logprobs).
3. Votes ``v_c = sum_m w_m [a_m == c]`` for the question's ``n_options`` classes; answer -1 (no
   letter extracted) and -2 (not asked) cast no vote.
4. Posterior ``p_c = softmax_c(v_c / tau)`` (max-subtracted: no overflow for tiny ``tau``).
5. Score ``s_m = p_{a_m}``; 0 for answer -1, NaN for answer -2.

Plurality and agreement count *models*, not weights: the plurality classes of a question are the
options chosen by the largest number of models (every tied option is a plurality class);
``plurality[q, m]`` is True when model ``m`` chose one of them; ``agreement[q]`` = that largest
count / number of models that gave a valid option (answers -1 and -2 are not in the denominator),
so a two-way tie of 2 + 2 models has agreement 0.5; a question nobody answered has agreement 0 and
no plurality model. ``majority[q]`` is the lowest-index plurality class (-1 if nobody answered);
the full plurality class set is ``{answers[q, m] : plurality[q, m]}``.

The constants ``z_scale``, ``tau`` and ``clamp`` are one :class:`ConsensusParams` (defaults and
ranges defined there, nowhere else); the numpy references in :mod:`cascal.reference` take the same
object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Optional

import numpy as np

from cascal import _core
from cascal.errors import ArgumentTypeError, InvalidParameterError, KernelError

__all__ = ["ConsensusParams", "ConsensusResult", "consensus_scores", "consensus_stats"]

_MAX_OPTIONS = 20


@dataclass(frozen=True)
class ConsensusResult:
    """Output of :func:`consensus_scores`.

    Attributes:
        scores: ``(n_q, n_m)`` float32 consensus score of each model's answer (NaN where not asked).
        plurality: ``(n_q, n_m)`` bool, the model chose a (count-)plurality option.
        agreement: ``(n_q,)`` float64 largest option count / number of models with a valid option.
        majority: ``(n_q,)`` int8 lowest-index plurality option, -1 where no model answered.
        mu: ``(n_m,)`` float64 per-model logprob location used for the z-scores.
        sigma: ``(n_m,)`` float64 per-model logprob scale used for the z-scores.
    """

    scores: np.ndarray
    plurality: np.ndarray
    agreement: np.ndarray
    majority: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray

    @property
    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mu, sigma)``, ready to pass as ``stats=`` when scoring new data."""
        return self.mu, self.sigma


def _finite(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise InvalidParameterError(f"{name}: must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class ConsensusParams:
    """The constants of :func:`consensus_scores` (rules in the module docs); the defaults are here
    only.

    Attributes:
        z_scale: slope of the sigmoid mapping z-scored logprobs to vote weights (finite).
        tau: softmax temperature of the posterior over options (finite, > 0).
        clamp: ``(lo, hi)`` bounds of the vote weight, ``0 <= lo <= hi <= 1``.

    Making one checks and converts every field (Python ``float``, ``clamp`` a tuple).

    Raises:
        InvalidParameterError: naming the field that is out of range (a ``ValueError``).
    """

    z_scale: float = 1.0
    tau: float = 1.0
    clamp: tuple[float, float] = (0.01, 0.99)

    def __post_init__(self) -> None:
        z_scale = _finite(self.z_scale, "z_scale")
        tau = _finite(self.tau, "tau")
        if tau <= 0:
            raise InvalidParameterError(f"tau: must be a finite number > 0, got {self.tau!r}")
        pair = tuple(self.clamp) if isinstance(self.clamp, (tuple, list)) else ()
        if len(pair) != 2:
            raise InvalidParameterError(f"clamp: expected a pair (lo, hi) of numbers, got {self.clamp!r}")
        lo, hi = (_finite(v, "clamp") for v in pair)
        if not 0.0 <= lo <= hi <= 1.0:
            raise InvalidParameterError(f"clamp: must satisfy 0 <= lo <= hi <= 1, got {self.clamp!r}")
        object.__setattr__(self, "z_scale", z_scale)
        object.__setattr__(self, "tau", tau)
        object.__setattr__(self, "clamp", (lo, hi))


def _answers_int8(answers: object) -> np.ndarray:
    arr = np.asarray(answers)
    if arr.ndim != 2:
        raise KernelError(
            f"answers: expected a 2-D (n_questions, n_models) array, got shape {arr.shape}", arg="answers"
        )
    if arr.dtype.kind not in "iu":
        raise KernelError(f"answers: expected integer option codes, got dtype {arr.dtype}", arg="answers")
    if arr.dtype != np.int8 and arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < -2 or hi >= _MAX_OPTIONS:
            bad = np.argwhere((arr < -2) | (arr >= _MAX_OPTIONS))[0]
            raise KernelError(
                f"answers: row {bad[0]}, column {bad[1]} has code {arr[tuple(bad)]}; codes must lie in [-2, {_MAX_OPTIONS - 1}]",
                arg="answers",
            )
    return np.ascontiguousarray(arr, dtype=np.int8)


def _n_options_int8(n_options: object, n_q: int) -> np.ndarray:
    arr = np.asarray(n_options)
    if arr.shape != (n_q,):
        raise KernelError(f"n_options: expected shape ({n_q},), got {arr.shape}", arg="n_options")
    if arr.dtype.kind not in "iu":
        raise KernelError(f"n_options: expected integers, got dtype {arr.dtype}", arg="n_options")
    if arr.size and (arr.min() < 2 or arr.max() > _MAX_OPTIONS):
        q = int(np.flatnonzero((arr < 2) | (arr > _MAX_OPTIONS))[0])
        raise KernelError(
            f"n_options: row {q} has {arr[q]} options; every question needs 2..{_MAX_OPTIONS}", arg="n_options"
        )
    return np.ascontiguousarray(arr, dtype=np.int8)


def _logprobs_float(logprobs: object, shape: tuple[int, int]) -> np.ndarray:
    arr = np.asarray(logprobs)
    if arr.dtype.kind not in "fiu":
        raise KernelError(f"logprobs: expected a float array, got dtype {arr.dtype}", arg="logprobs")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if arr.shape != shape:
        raise KernelError(f"logprobs: expected shape {shape} like answers, got {arr.shape}", arg="logprobs")
    return np.ascontiguousarray(arr)


def _stats_arrays(stats: object, n_m: int) -> tuple[np.ndarray, np.ndarray]:
    pair: tuple[object, ...] = ()
    if isinstance(stats, (tuple, list)):
        pair = tuple(stats)
    if len(pair) != 2:
        raise KernelError("stats: expected a pair (mu, sigma) of per-model arrays", arg="stats")
    out = []
    for name, value in zip(("mu", "sigma"), pair):
        arr = np.ascontiguousarray(value, dtype=np.float64)
        if arr.shape != (n_m,):
            raise KernelError(
                f"stats: {name} must have shape ({n_m},) (one value per model), got {arr.shape}", arg="stats"
            )
        out.append(arr)
    return out[0], out[1]


def consensus_scores(
    answers: np.ndarray,
    n_options: np.ndarray,
    logprobs: Optional[np.ndarray] = None,
    params: ConsensusParams = ConsensusParams(),
    *,
    stats: Optional[tuple[np.ndarray, np.ndarray]] = None,
) -> ConsensusResult:
    """Confidence-weighted consensus scores of every model on every question (module docs).

    Args:
        answers: ``(n_q, n_m)`` integer codes: option index, -1 no answer, -2 not asked.
        n_options: ``(n_q,)`` options per question, 2..20; every answer must be below it.
        logprobs: optional ``(n_q, n_m)`` float32/float64 mean token logprobs, NaN = unknown
            (infinite values are rejected). Without it every vote weighs 0.5.
        params: ``z_scale``, ``tau`` and ``clamp`` (default: :class:`ConsensusParams` defaults).
        stats: ``(mu, sigma)`` per-model logprob statistics to reuse (e.g. ``result.stats`` of the
            training set); computed from ``logprobs`` when omitted.

    Returns:
        A :class:`ConsensusResult`.

    Raises:
        KernelError: (a ``ValueError``) naming the argument (and row/column) of any invalid input.
        ArgumentTypeError: (a ``TypeError``) ``params`` is not a :class:`ConsensusParams`.
    """
    ans = _answers_int8(answers)
    n_q, n_m = ans.shape
    opts = _n_options_int8(n_options, n_q)
    lp = None if logprobs is None else _logprobs_float(logprobs, (n_q, n_m))
    if not isinstance(params, ConsensusParams):
        raise ArgumentTypeError(f"params: expected ConsensusParams, got {type(params).__name__}")
    mu = sigma = None
    if stats is not None:
        mu, sigma = _stats_arrays(stats, n_m)
    scores, plurality, agreement, majority, mu_out, sigma_out = _core.consensus_scores(ans, opts, lp, params, mu, sigma)
    return ConsensusResult(scores, plurality, agreement, majority, mu_out, sigma_out)


def consensus_stats(logprobs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-model robust ``(mu, sigma)`` of an ``(n_q, n_m)`` logprob matrix (step 1 of the module docs).

    NaN entries are ignored; infinite entries raise :class:`~cascal.errors.KernelError`.
    """
    arr = np.asarray(logprobs)
    if arr.ndim != 2:
        raise KernelError(
            f"logprobs: expected a 2-D (n_questions, n_models) array, got shape {arr.shape}", arg="logprobs"
        )
    return _core.consensus_stats(_logprobs_float(arr, arr.shape))
