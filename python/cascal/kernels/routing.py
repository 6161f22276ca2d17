"""Batched CASCAL routing of query embeddings, in Rust.

For every query ``x`` (cosine distance ``1 - cos``; the kernel normalises every row itself):

1. subject ``s`` = the nearest subject representative (ties: lower index);
2. for one subject ``t``: the ``min(k_nearest, count)`` nearest centroids of ``t`` (ties: lower
   centroid index) get weights ``softmax(-dist / distance_temp)``; each contributes its model
   distribution ``softmax(centroid_scores[c] / score_temp)`` where NaN scores get probability 0 and
   an all-NaN row is replaced by the global distribution ``G``; ``P_t = sum_c w_c * sharpened_c``.
   With ``subject_temp = 0`` (hard assignment, the default) ``P = P_s``. With ``subject_temp > 0``
   (soft assignment) ``P = sum_t pi_t * P_t`` over every subject, ``pi = softmax(-subject_dist /
   subject_temp)``, so a query between two subjects hedges between their niches;
3. if the distance ``d`` to the nearest centroid of ``s`` exceeds ``fallback_distance``:
   ``alpha = min((d - fallback_distance) / fallback_width, 1)`` and ``P = (1 - alpha) P + alpha G``
   with ``G = softmax(global_scores / score_temp)`` (NaN entries get 0); otherwise ``alpha = 0``;
4. ``ranked`` = the ``top_k`` models by decreasing ``P`` (ties: lower model index).

Optional cost table (cost-aware routing, docs/algorithm.md#cost-aware-routing): when the tables
carry ``centroid_costs`` ``(C, M)`` and ``global_costs`` ``(M,)``, the result also holds
``expected_cost`` ``(n, M)``: the same *linear* mix of the cost rows with the weights of steps 2-3
(centroid weights, subject weights, fallback ``alpha``; a centroid whose scores are all NaN
contributes ``global_costs``), never sharpened. The costs do not change ``probs`` or ``ranked``;
cost-aware routing changes the scores it passes in.

Optional subject weights (``route_batch(..., subject_weights=True)``): ``subject_weights``
``(n, S)``, the weights ``pi`` step 2 mixed the subjects with, as the kernel computed them (so they
agree bit for bit with its routing). Soft assignment: ``softmax(-subject_dist / subject_temp)``
with the subjects below ``2^-52`` of the nearest one's weight at exactly 0 (the kernel skips them);
hard assignment: the one-hot row of the chosen ``subject``. Not asked for, they cost nothing.

The kernel releases the GIL and runs over blocks of queries in parallel: one GEMM per block against
the subject representatives, then (hard) one GEMM per subject against only that subject's centroids
or (soft) one GEMM against all centroids.
float32 input is computed in float32 (distances agree with float64 to ~1e-6), float64 in float64.

The trained model is one :class:`RoutingTables` (shapes and dtypes checked once, when it is made)
and the constants one :class:`RouteParams` (defaults and ranges defined there, nowhere else); the
numpy reference :func:`cascal.reference.route_batch` takes the same two objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from numbers import Integral, Real
from typing import Optional

import numpy as np

from cascal import _core
from cascal.errors import ArgumentTypeError, InvalidParameterError, KernelError

__all__ = ["RouteParams", "RouteResult", "RoutingTables", "route_batch"]


@dataclass(frozen=True)
class RouteResult:
    """Output of :func:`route_batch` for ``n`` queries and ``M`` models.

    Attributes:
        probs: ``(n, M)`` float64 routing distribution; rows sum to 1.
        ranked: ``(n, top_k)`` int64 model indices, best first (ties: lower index).
        subject: ``(n,)`` int64 index of the nearest subject (the most weighted one when soft).
        nearest_distance: ``(n,)`` float64 cosine distance to the nearest centroid of that subject.
        alpha: ``(n,)`` float64 weight of the global distribution in the fallback blend.
        expected_cost: ``(n, M)`` float64 expected cost of every model for every query (the
            linear mix of the cost table), or ``None`` when the tables carry no cost table.
        subject_weights: ``(n, S)`` float64 weight of every subject in every query's mixture
            (rows sum to 1; one-hot of ``subject`` under hard assignment), or ``None`` unless
            :func:`route_batch` was asked for them.
    """

    probs: np.ndarray
    ranked: np.ndarray
    subject: np.ndarray
    nearest_distance: np.ndarray
    alpha: np.ndarray
    expected_cost: Optional[np.ndarray] = None
    subject_weights: Optional[np.ndarray] = None


def _matrix(value: object, name: str, dtype: Optional[np.dtype] = None) -> np.ndarray:
    """``value`` as a C-contiguous 2-D array of ``dtype`` (default: its own float32/float64 dtype,
    float64 for other numbers); no copy when it already is one."""
    arr = np.asarray(value)
    if arr.ndim != 2:
        raise KernelError(f"{name}: expected a 2-D array, got shape {arr.shape}", arg=name)
    if arr.dtype.kind not in "fiu":
        raise KernelError(f"{name}: expected numbers, got dtype {arr.dtype}", arg=name)
    if dtype is None:
        dtype = arr.dtype if arr.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    return np.ascontiguousarray(arr, dtype=dtype)


def _vector(value: object, name: str, length: int, dtype: type) -> np.ndarray:
    arr = np.asarray(value)
    if arr.shape != (length,):
        raise KernelError(f"{name}: expected shape ({length},), got {arr.shape}", arg=name)
    if dtype is np.int64 and arr.dtype.kind not in "iu":
        raise KernelError(f"{name}: expected integers, got dtype {arr.dtype}", arg=name)
    if dtype is np.float64 and arr.dtype.kind not in "fiu":
        raise KernelError(f"{name}: expected numbers, got dtype {arr.dtype}", arg=name)
    return np.ascontiguousarray(arr, dtype=dtype)


def _frozen(arr: np.ndarray, source: object) -> np.ndarray:
    """A read-only array with the values of ``arr`` that shares no memory with ``source``."""
    if np.may_share_memory(arr, np.asarray(source)):
        arr = arr.copy()
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True, eq=False)
class RoutingTables:
    """The trained model :func:`route_batch` routes with, for ``S`` subjects, ``C`` centroids
    (niches) and ``M`` models in ``d`` dimensions.

    Making one checks every shape and dtype and converts the arrays once: the fields hold
    C-contiguous, read-only copies, so a routing call passes them to the kernel as they are. The
    values (finite, non-zero rows, subject indices, every subject owning a centroid) are checked
    by the kernel, which raises :class:`cascal.errors.KernelError` naming the field.

    Attributes:
        subject_reps: ``(S, d)`` subject representatives, float32 or float64 (other numbers
            become float64); any length, the kernel normalises the rows.
        centroids: ``(C, d)`` niche centroids, float32 or float64 (other numbers become float64).
        centroid_subject: ``(C,)`` int64 subject index of each centroid.
        centroid_scores: ``(C, M)`` float64 niche score of each model (NaN = no data).
        global_scores: ``(M,)`` float64 global score of each model (NaN = no data).
        centroid_sizes: optional ``(C,)`` int64 number of training questions of each niche (not
            used for routing; kept so the tables describe the niches completely).
        centroid_costs: optional ``(C, M)`` float64 expected cost of each model in each niche
            (finite; any unit, cascal uses USD per 1,000 queries); given together with
            ``global_costs`` or not at all.
        global_costs: optional ``(M,)`` float64 expected cost of each model over all training
            questions.

    Raises:
        KernelError: naming the field whose shape or dtype is wrong (a ``ValueError``).
    """

    subject_reps: np.ndarray
    centroids: np.ndarray
    centroid_subject: np.ndarray
    centroid_scores: np.ndarray
    global_scores: np.ndarray
    centroid_sizes: Optional[np.ndarray] = None
    centroid_costs: Optional[np.ndarray] = None
    global_costs: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        reps = _matrix(self.subject_reps, "subject_reps")
        cents = _matrix(self.centroids, "centroids")
        d = reps.shape[1]
        if cents.shape[1] != d:
            raise KernelError(
                f"centroids: expected {d} columns like subject_reps, got shape {cents.shape}", arg="centroids"
            )
        n_centroids = cents.shape[0]
        scores = _matrix(self.centroid_scores, "centroid_scores", np.dtype(np.float64))
        if scores.shape[0] != n_centroids:
            raise KernelError(
                f"centroid_scores: expected shape ({n_centroids}, {scores.shape[1]}) (centroids x models), "
                f"got {scores.shape}",
                arg="centroid_scores",
            )
        converted = {
            "subject_reps": reps,
            "centroids": cents,
            "centroid_subject": _vector(self.centroid_subject, "centroid_subject", n_centroids, np.int64),
            "centroid_scores": scores,
            "global_scores": _vector(self.global_scores, "global_scores", scores.shape[1], np.float64),
        }
        if self.centroid_sizes is not None:
            converted["centroid_sizes"] = _vector(self.centroid_sizes, "centroid_sizes", n_centroids, np.int64)
        if (self.centroid_costs is None) != (self.global_costs is None):
            missing = "global_costs" if self.global_costs is None else "centroid_costs"
            raise KernelError(f"{missing}: give centroid_costs and global_costs together, or neither", arg=missing)
        if self.centroid_costs is not None:
            costs = _matrix(self.centroid_costs, "centroid_costs", np.dtype(np.float64))
            if costs.shape != scores.shape:
                raise KernelError(
                    f"centroid_costs: expected shape {scores.shape} like centroid_scores, got {costs.shape}",
                    arg="centroid_costs",
                )
            converted["centroid_costs"] = costs
            converted["global_costs"] = _vector(self.global_costs, "global_costs", scores.shape[1], np.float64)
        for name, arr in converted.items():
            object.__setattr__(self, name, _frozen(arr, getattr(self, name)))

    def __reduce__(self) -> tuple[type, tuple]:
        # pickle and copy through the constructor, so a copy is checked and read-only too
        return (type(self), tuple(getattr(self, f.name) for f in fields(self)))

    @property
    def has_costs(self) -> bool:
        """Whether the tables carry a cost table (``centroid_costs`` and ``global_costs``)."""
        return self.centroid_costs is not None

    @property
    def n_models(self) -> int:
        """``M``, the number of models the tables score."""
        return int(self.global_scores.shape[0])

    @property
    def dim(self) -> int:
        """``d``, the embedding dimension."""
        return int(self.centroids.shape[1])

    def astype(self, dtype: np.dtype) -> "RoutingTables":
        """These tables with ``subject_reps`` and ``centroids`` in ``dtype`` (``self`` when both
        already are): the kernel computes in the dtype of the queries."""
        dtype = np.dtype(dtype)
        if self.subject_reps.dtype == dtype and self.centroids.dtype == dtype:
            return self
        return replace(self, subject_reps=self.subject_reps.astype(dtype), centroids=self.centroids.astype(dtype))


def _int_at_least_1(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise InvalidParameterError(f"{name}: expected an integer >= 1, got {value!r}")
    return int(value)


def _number(value: object, name: str, *, low: Optional[float] = None, low_open: bool = False) -> float:
    """``value`` as a finite float, ``> low`` (``low_open``) or ``>= low``."""
    bound = "" if low is None else f" {'>' if low_open else '>='} {low:g}"
    problem = InvalidParameterError(f"{name}: must be a finite number{bound}, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, Real):
        raise problem
    v = float(value)
    if not math.isfinite(v) or (low is not None and (v <= low if low_open else v < low)):
        raise problem
    return v


@dataclass(frozen=True)
class RouteParams:
    """The constants of :func:`route_batch` (rules in the module docs); the defaults are here only.

    Attributes:
        k_nearest: centroids blended per query (>= 1; fewer if the subject has fewer).
        distance_temp: temperature of the softmax over negative centroid distances (> 0).
        score_temp: temperature sharpening the model scores (> 0).
        fallback_distance: nearest-centroid cosine distance above which the global ranking is
            blended in (finite).
        fallback_width: distance over which the blend weight grows from 0 to 1 (> 0).
        top_k: models listed in ``ranked`` (>= 1, and at most the number of models: checked
            against the tables by the kernel).
        subject_temp: temperature of the soft subject assignment (>= 0; 0 = hard, nearest subject
            only).

    Making one checks and converts every field (Python ``int`` / ``float``).

    Raises:
        InvalidParameterError: naming the field that is out of range (a ``ValueError``).
    """

    k_nearest: int = 3
    distance_temp: float = 0.1
    score_temp: float = 0.1
    fallback_distance: float = 0.5
    fallback_width: float = 0.2
    top_k: int = 3
    subject_temp: float = 0.0

    def __post_init__(self) -> None:
        checked = {
            "k_nearest": _int_at_least_1(self.k_nearest, "k_nearest"),
            "distance_temp": _number(self.distance_temp, "distance_temp", low=0.0, low_open=True),
            "score_temp": _number(self.score_temp, "score_temp", low=0.0, low_open=True),
            "fallback_distance": _number(self.fallback_distance, "fallback_distance"),
            "fallback_width": _number(self.fallback_width, "fallback_width", low=0.0, low_open=True),
            "top_k": _int_at_least_1(self.top_k, "top_k"),
            "subject_temp": _number(self.subject_temp, "subject_temp", low=0.0),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)


def route_batch(
    X: np.ndarray, tables: RoutingTables, params: RouteParams = RouteParams(), *, subject_weights: bool = False
) -> RouteResult:
    """Route ``n`` query embeddings to the ``M`` models of ``tables`` (rules in the module docs).

    Args:
        X: ``(n, d)`` query embeddings, float32 or float64 (other numbers become float64); the
            tables are used in the same dtype.
        tables: the trained model.
        params: the routing constants (default: :class:`RouteParams` defaults).
        subject_weights: also return :attr:`RouteResult.subject_weights` (module docs).

    Raises:
        KernelError: (a ``ValueError``) naming the argument of any invalid input: ``X`` (zero or
            non-finite rows, wrong width), a field of ``tables`` (non-finite values, subjects
            without centroids, ...) or ``top_k`` above the number of models.
        ArgumentTypeError: (a ``TypeError``) ``tables`` or ``params`` is not a
            :class:`RoutingTables` / :class:`RouteParams`.
    """
    if not isinstance(tables, RoutingTables):
        raise ArgumentTypeError(f"tables: expected RoutingTables, got {type(tables).__name__}")
    if not isinstance(params, RouteParams):
        raise ArgumentTypeError(f"params: expected RouteParams, got {type(params).__name__}")
    x = _matrix(X, "X")
    if x.shape[1] != tables.dim:
        raise KernelError(f"X: expected {tables.dim} columns like the tables, got shape {x.shape}", arg="X")
    return RouteResult(*_core.route_batch(x, tables.astype(x.dtype), params, bool(subject_weights)))
