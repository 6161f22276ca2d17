"""What every router shares: the fit/route/answer interface and the top-k ensemble vote.

CASCAL (:mod:`cascal.router.cascal_router`) and every baseline (:mod:`cascal.baselines`) subclass
:class:`BaseRouter`, so the evaluation harness can treat them alike. Parameters follow the
scikit-learn conventions (constructor arguments stored verbatim, ``get_params``/``set_params``,
fitted attributes ending in ``_``).
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral
from typing import Any, ClassVar, Optional

import numpy as np
from sklearn.base import BaseEstimator

from cascal import validation
from cascal.data import ResponseMatrix
from cascal.errors import ArgumentTypeError, DataError, InvalidParameterError, NotFittedError


@dataclass(frozen=True)
class Routing:
    """The outcome of routing ``n`` queries over a pool of ``M`` models.

    Attributes:
        ranked: ``(n, top_k)`` int64 model indices, best first.
        scores: ``(n, M)`` float64 routing scores (higher is better; for CASCAL a distribution).
        model_names: the pool, so ``model_names[ranked[i, 0]]`` is query ``i``'s first choice.
        expected_cost: ``(n,)`` float64 expected cost of each query's routed choice, USD per 1,000
            queries: the sum over the ``top_k`` ranked models (all of them answer an ensemble
            query; with ``top_k=1`` the first choice's cost). ``None`` when the router has no
            prices (docs/algorithm.md#cost-aware-routing).
    """

    ranked: np.ndarray
    scores: np.ndarray
    model_names: list[str]
    expected_cost: Optional[np.ndarray] = None

    def top_models(self, i: int) -> list[str]:
        """Names of the models chosen for query ``i``, best first."""
        return [self.model_names[j] for j in self.ranked[i]]


class BaseRouter(BaseEstimator):
    """Interface of every router.

    Subclasses implement :meth:`fit` (set ``model_names_`` and whatever they learn) and
    :meth:`route_scores` (an ``(n, M)`` score matrix); ranking and answering are shared. Each
    subclass declares what its constructor parameters may be in ``_parameter_constraints``
    (parameter name -> list of constraints of :mod:`cascal.validation`), and ``fit`` starts with
    :meth:`validate_params`.
    """

    #: True for routers that read the answer key (``responses.gold``) during fit.
    uses_answer_key: bool = False

    #: Parameter name -> allowed values (any one constraint of the list), see :mod:`cascal.validation`.
    _parameter_constraints: ClassVar[dict[str, Any]] = {}

    def fit(self, embeddings: np.ndarray, responses: ResponseMatrix) -> "BaseRouter":  # pragma: no cover - abstract
        raise NotImplementedError

    def route_scores(self, embeddings: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """``(n, M)`` scores, higher = better model for that query."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared behaviour
    def validate_params(self) -> None:
        """Check every constructor parameter against the class's ``_parameter_constraints``.

        Raises:
            cascal.errors.InvalidParameterError: (a ``ValueError``) naming the first parameter, in
                constructor order, that is out of range.
        """
        validation.validate_params(self.get_params(deep=False), type(self)._parameter_constraints)

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_names_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet: call fit(embeddings, responses) first")

    def _remember_pool(self, embeddings: np.ndarray, responses: ResponseMatrix) -> None:
        """Record the fitted pool and embedding width (call at the end of ``fit``)."""
        self.model_names_ = list(responses.model_names)
        self.n_features_in_ = int(embeddings.shape[1])

    def _query_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        """Check that the router is fitted and ``embeddings`` has the fitted width; float64 view."""
        self._check_fitted()
        return check_embeddings(embeddings, self.n_features_in_)

    def _check_top_k(self, top_k: object) -> int:
        """``top_k`` as an int in ``1..pool size`` (fitted routers only)."""
        n_models = len(self.model_names_)
        if isinstance(top_k, bool) or not isinstance(top_k, Integral) or not 1 <= int(top_k) <= n_models:
            raise InvalidParameterError(f"top_k: must be between 1 and the pool size {n_models}, got {top_k!r}")
        return int(top_k)

    def route(self, embeddings: np.ndarray, top_k: int = 3) -> Routing:
        """Rank the pool for every query embedding; keep the ``top_k`` best (ties -> lower index)."""
        self._check_fitted()
        top_k = self._check_top_k(top_k)
        scores = np.asarray(self.route_scores(embeddings), dtype=np.float64)
        return Routing(ranked=rank_models(scores, top_k), scores=scores, model_names=list(self.model_names_))

    def answer(self, embeddings: np.ndarray, responses: ResponseMatrix, top_k: int = 3) -> np.ndarray:
        """Answers of the routed ensemble: the plurality of the ``top_k`` chosen models' answers
        (docs/algorithm.md#ensemble-answer). Returns ``(n,)`` int8 option indices, -1 where no chosen model answered."""
        self._check_fitted()
        check_pool(responses, self.model_names_)
        routing = self.route(embeddings, top_k=top_k)
        return ensemble_vote(routing.ranked, responses.answers, self.tie_break_confidence(responses))

    def tie_break_confidence(self, responses: ResponseMatrix) -> Optional[np.ndarray]:
        """``(n, M)`` confidence used to break an all-different vote (higher wins), or ``None`` to fall
        back to the routing order. CASCAL overrides it with z-scored logprobs."""
        return None

    def fitted_constants(self) -> dict[str, float]:
        """Constants ``fit`` chose from the data (name -> value), for reports; none by default."""
        return {}


def check_fit_inputs(embeddings: np.ndarray, responses: ResponseMatrix, *, as_float64: bool = True) -> np.ndarray:
    """Validate the arguments of ``fit`` (every router) and return the embeddings as a float64
    ``(n, d)`` array aligned with ``responses``.

    ``as_float64=False`` returns :func:`embedding_matrix` instead (float32/float64 without a copy,
    e.g. a memory-mapped file) and leaves the values unchecked: the caller checks them block by block."""
    if not isinstance(responses, ResponseMatrix):
        raise ArgumentTypeError(f"responses: expected a ResponseMatrix, got {type(responses).__name__}")
    emb = check_embeddings(embeddings) if as_float64 else embedding_matrix(embeddings)
    if emb.shape[0] != responses.n_questions:
        raise DataError(f"embeddings: {emb.shape[0]} rows but responses has {responses.n_questions} questions")
    if responses.n_questions == 0:
        raise DataError("responses: cannot fit on zero questions")
    if responses.n_models == 0:
        raise DataError("responses: cannot fit on a pool of zero models")
    return emb


def check_pool(responses: ResponseMatrix, model_names: list[str]) -> None:
    """Refuse ``responses`` whose model columns are not the fitted pool ``model_names``, in order.

    Raises:
        DataError: naming both lists.
    """
    if list(responses.model_names) != list(model_names):
        raise DataError(f"responses: model columns {responses.model_names} differ from the fitted pool {model_names}")


def embedding_matrix(embeddings: np.ndarray, n_features: Optional[int] = None) -> np.ndarray:
    """``embeddings`` as a non-empty 2-D float32/float64 array (no copy when it already is one;
    other numbers become float64); ``n_features`` checks the width against the fitted dimension.
    The values are not inspected: see :func:`check_embeddings`."""
    emb = np.asarray(embeddings)
    if emb.ndim != 2:
        raise DataError(f"embeddings: expected a 2-D (n_queries, dim) array, got shape {emb.shape}")
    if emb.dtype.kind not in "fiu":
        raise DataError(f"embeddings: expected a numeric array, got dtype {emb.dtype}")
    if emb.shape[1] == 0:
        raise DataError("embeddings: rows have no dimensions")
    if n_features is not None and emb.shape[1] != n_features:
        raise DataError(f"embeddings: expected {n_features} columns (the fitted dimension), got {emb.shape[1]}")
    if emb.dtype not in (np.float32, np.float64):
        emb = emb.astype(np.float64)
    return emb


def check_embeddings(embeddings: np.ndarray, n_features: Optional[int] = None) -> np.ndarray:
    """A finite, non-empty 2-D float64 view of ``embeddings`` (no copy when already float64);
    ``n_features`` checks the width against the fitted dimension."""
    emb = embedding_matrix(embeddings, n_features).astype(np.float64, copy=False)
    if not np.isfinite(emb).all():
        raise DataError("embeddings: contains NaN or infinite values")
    return emb


def rank_models(scores: np.ndarray, top_k: int) -> np.ndarray:
    """Indices of the ``top_k`` largest scores per row, best first; ties go to the lower index;
    NaN scores rank last."""
    scores = np.where(np.isnan(scores), -np.inf, scores)
    order = np.argsort(-scores, axis=1, kind="stable")
    return order[:, :top_k].astype(np.int64)


def ensemble_vote(ranked: np.ndarray, answers: np.ndarray, confidence: Optional[np.ndarray] = None) -> np.ndarray:
    """Plurality of the answers of the models in ``ranked`` (best first) for every query.

    Unparsable (-1) and not-asked (-2) answers do not vote. Among tied plurality classes the winner
    is the class of the most confident voter (``confidence``, NaN = least confident), then of the
    highest-ranked voter. Returns int8 answers, -1 where no chosen model answered.
    """
    n, k = ranked.shape
    chosen = np.take_along_axis(answers, ranked, axis=1).astype(np.int64)  # (n, k)
    valid = chosen >= 0
    # votes each chosen model's class receives among the k chosen models
    same = (chosen[:, :, None] == chosen[:, None, :]) & valid[:, :, None] & valid[:, None, :]
    support = same.sum(axis=2)  # (n, k)
    support[~valid] = -1
    best = support.max(axis=1, keepdims=True)
    tied = (support == best) & valid
    if confidence is not None:
        conf = np.take_along_axis(np.asarray(confidence, dtype=np.float64), ranked, axis=1)
        conf = np.where(np.isnan(conf), -np.inf, conf)
    else:
        conf = np.zeros((n, k))
    # among tied voters: the most confident, then the best ranked (lowest position)
    position = np.broadcast_to(np.arange(k), (n, k))
    order_conf = np.where(tied, conf, -np.inf)
    top_conf = order_conf.max(axis=1, keepdims=True)
    candidates = tied & (order_conf == top_conf)
    first = np.where(candidates, position, k).min(axis=1)
    out = np.full(n, -1, dtype=np.int8)
    has = first < k
    out[has] = chosen[np.flatnonzero(has), first[has]]
    return out
