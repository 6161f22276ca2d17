"""Label-free baselines: they see the pool's answers and the query embeddings, never the answer key.

* :class:`RandomRouter` — a random ranking per query.
* :class:`BestSingleConsensus` — one fixed ranking, by each model's mean consensus score (docs/algorithm.md#consensus-scores).
* :class:`SmoothieTrain` — Smoothie-style weak supervision, smoothed over nearest training queries.
"""

from __future__ import annotations

from numbers import Integral
from typing import Any, ClassVar, Optional

import numpy as np

from cascal.baselines._compute import consensus_scores, cosine_neighbors
from cascal.baselines._inputs import column_means
from cascal.data import NOT_ASKED, ResponseMatrix
from cascal.errors import ProtocolError
from cascal.router.base import BaseRouter, check_fit_inputs
from cascal.validation import Interval

#: Queries per block in SmoothieTrain.route_scores (bounds the (block, k, M, M) neighbour tensor).
_ROUTE_CHUNK = 128


class RandomRouter(BaseRouter):
    """Ranks the pool uniformly at random for every query (a floor every router must beat).

    Args:
        random_state: seed of the generator; two routers with the same seed route identically.
    """

    _parameter_constraints: ClassVar[dict[str, Any]] = {
        "random_state": [Interval(Integral, 0, None, closed="left"), None]
    }

    def __init__(self, random_state: Optional[int] = None) -> None:
        self.random_state = random_state

    def fit(self, embeddings: np.ndarray, responses: ResponseMatrix) -> "RandomRouter":
        self.validate_params()
        emb = check_fit_inputs(embeddings, responses)
        self._remember_pool(emb, responses)
        return self

    def route_scores(self, embeddings: np.ndarray) -> np.ndarray:
        emb = self._query_embeddings(embeddings)
        rng = np.random.default_rng(self.random_state)
        return rng.random((emb.shape[0], len(self.model_names_)))


class BestSingleConsensus(BaseRouter):
    """Sends every query to the models with the highest mean consensus score on the training set.

    The consensus score of a model on a question is the posterior probability of its answer under the
    confidence-weighted vote of the whole pool (docs/algorithm.md#consensus-scores, default parameters); the mean over the
    training questions it was asked is a label-free estimate of its accuracy.

    Attributes:
        global_scores_: ``(M,)`` mean consensus score of every model (the routing score of every query).
    """

    def fit(self, embeddings: np.ndarray, responses: ResponseMatrix) -> "BestSingleConsensus":
        self.validate_params()
        emb = check_fit_inputs(embeddings, responses)
        self.global_scores_ = column_means(consensus_scores(responses))
        self._remember_pool(emb, responses)
        return self

    def route_scores(self, embeddings: np.ndarray) -> np.ndarray:
        emb = self._query_embeddings(embeddings)
        return np.broadcast_to(self.global_scores_, (emb.shape[0], len(self.model_names_))).copy()


class SmoothieTrain(BaseRouter):
    """Smoothie-style label-free routing, estimated on the training queries nearest to each query.

    Idea (Guha et al., "Smoothie: Label Free Language Model Routing", NeurIPS 2024): treat every
    model's output embedding ``λ_m`` as the unknown true output ``y`` plus independent Gaussian noise
    of variance ``δ_m``. Then ``E‖λ_i − λ_j‖² = δ_i + δ_j`` for ``i ≠ j``, so any triplet of models
    gives ``δ_i = (d_ij + d_ik − d_jk) / 2`` from observable pairwise distances ``d``; averaging over
    all pairs ``(j, k)`` of the other models gives one estimate per model, and a lower ``δ_m`` means a
    better model. "Train" means the expectations are taken over the ``n_neighbors`` training queries
    nearest (cosine) to the query being routed, which makes the estimate query-specific.

    Our estimator on multiple choice: a model's output is the one-hot vector of its answer, so
    ``‖λ_i − λ_j‖² = 2`` when the two models disagree and ``0`` when they agree. An unparsable
    answer (-1) agrees with nobody (distance 2 to everyone); a not-asked answer (-2) is left out of
    the average. Averaged over the pairs ``(j, k)`` the triplet formula has the closed form
    ``δ_i = ((M − 1)·S_i − T) / (2·C(M − 1, 2))`` with ``S_i = Σ_j d_ij`` and ``T = Σ_{j<k} d_jk``,
    which is what :meth:`route_scores` evaluates. A pair never co-asked among the neighbours uses its
    mean over the whole training set (or 2, maximal disagreement, if never co-asked at all). The
    routing score is ``−δ_m``. Needs a pool of at least 3 models.

    Args:
        n_neighbors: training queries averaged per routed query (capped at the training size).

    Attributes:
        pair_distance_: ``(n_train, M, M)`` float32 squared distances ``d_ij`` per training query
            (NaN where either model was not asked).
        global_distance_: ``(M, M)`` mean of ``pair_distance_`` over the training set.
    """

    _parameter_constraints: ClassVar[dict[str, Any]] = {"n_neighbors": [Interval(Integral, 1, None, closed="left")]}

    def __init__(self, n_neighbors: int = 50) -> None:
        self.n_neighbors = n_neighbors

    def fit(self, embeddings: np.ndarray, responses: ResponseMatrix) -> "SmoothieTrain":
        self.validate_params()
        emb = check_fit_inputs(embeddings, responses)
        if responses.n_models < 3:
            raise ProtocolError(f"responses: SmoothieTrain needs a pool of at least 3 models, got {responses.n_models}")
        self.pair_distance_ = pairwise_squared_distances(responses.answers)
        self.global_distance_ = _nan_mean_axis0(self.pair_distance_, default=2.0)
        self.train_embeddings_ = emb.astype(np.float32)
        self._remember_pool(emb, responses)
        return self

    def route_scores(self, embeddings: np.ndarray) -> np.ndarray:
        emb = self._query_embeddings(embeddings)
        k = min(int(self.n_neighbors), self.train_embeddings_.shape[0])
        neighbors = cosine_neighbors(emb, self.train_embeddings_.astype(np.float64), k)
        out = np.empty((emb.shape[0], len(self.model_names_)))
        for start in range(0, emb.shape[0], _ROUTE_CHUNK):
            local = self.pair_distance_[neighbors[start : start + _ROUTE_CHUNK]]  # (b, k, M, M)
            mean = _nan_mean_axis1(local)
            mean = np.where(np.isnan(mean), self.global_distance_[None], mean)
            out[start : start + _ROUTE_CHUNK] = -triplet_noise_estimates(mean)
        return out


def pairwise_squared_distances(answers: np.ndarray) -> np.ndarray:
    """``(n_q, M, M)`` float32 ``‖λ_i − λ_j‖²`` of the one-hot answers of every model pair:
    0 if both answered the same option, 2 otherwise (an unparsable answer agrees with nobody),
    NaN if either model was not asked; the diagonal is 0 where the model was asked."""
    a = answers.astype(np.int16)
    agree = (a[:, :, None] == a[:, None, :]) & (a[:, :, None] >= 0)
    dist = np.where(agree, 0.0, 2.0).astype(np.float32)
    missing = a == NOT_ASKED
    dist[missing[:, :, None] | missing[:, None, :]] = np.nan
    idx = np.arange(a.shape[1])
    dist[:, idx, idx] = np.where(missing, np.nan, 0.0)
    return dist


def triplet_noise_estimates(distance: np.ndarray) -> np.ndarray:
    """Noise variance ``δ_i`` of every model from expected pairwise squared distances ``(…, M, M)``:
    the mean over pairs ``{j, k}`` of the other models of ``(d_ij + d_ik − d_jk) / 2``."""
    m = distance.shape[-1]
    if m < 3:
        raise ProtocolError(f"distance: the triplet estimate needs at least 3 models, got {m}")
    off = distance.copy()
    idx = np.arange(m)
    off[..., idx, idx] = 0.0
    s = off.sum(axis=-1)  # S_i
    total = off.sum(axis=(-2, -1)) / 2.0  # T: every unordered pair once
    n_pairs = (m - 1) * (m - 2) / 2.0
    return ((m - 1) * s - total[..., None]) / (2.0 * n_pairs)


def _nan_mean_axis0(values: np.ndarray, default: float) -> np.ndarray:
    known = ~np.isnan(values)
    counts = known.sum(axis=0)
    sums = np.where(known, values, 0.0).sum(axis=0, dtype=np.float64)
    return np.where(counts > 0, sums / np.maximum(counts, 1), default)


def _nan_mean_axis1(values: np.ndarray) -> np.ndarray:
    known = ~np.isnan(values)
    counts = known.sum(axis=1)
    sums = np.where(known, values, 0.0).sum(axis=1, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)
