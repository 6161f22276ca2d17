"""The CASCAL router: consensus scores, per-subject skill niches, niche-weighted routing (docs/algorithm.md).

:class:`CascalRouter` is the estimator: it holds the parameters, and its ``fit`` validates them and
the data, calls the steps of :mod:`cascal.router.fitting` and :mod:`cascal.router.calibration` in
order and stores what they return. Routing is the Rust kernel; the budget search is
:mod:`cascal.router.budget`, label calibration and selection :mod:`cascal.router.labels`, the file
:mod:`cascal.router.persistence`.
"""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from numbers import Integral, Real
from os import PathLike, fspath
from typing import Any, ClassVar, Iterable, Mapping, Optional, Union

import numpy as np

from cascal import kernels
from cascal.data import ResponseMatrix
from cascal.errors import InvalidParameterError, KernelError, RouterFileError, UnknownModelError
from cascal.kernels.routing import RouteParams, RoutingTables
from cascal.router import fitting
from cascal.router.base import BaseRouter, Routing, check_fit_inputs, check_pool, embedding_matrix
from cascal.router.budget import (
    cheapest_mean_cost,
    check_budget,
    check_cost_weight,
    smallest_weight_within,
    weighted_tables,
)
from cascal.router.calibration import AUTO, routing_constants
from cascal.router.clustering import CLUSTERING_METHODS, LINKAGE_METHODS
from cascal.router.costs import Prices
from cascal.router.diagnostics import diagnose
from cascal.router.fitting import SUBJECT_REPRESENTATIVES, ConsensusStats
from cascal.router.geometry import row_norms, unit_subset
from cascal.router.label_choice import choose
from cascal.router.labels import (
    UNLABELLED,
    LabelBase,
    LabelFit,
    check_base_labels,
    check_labels,
    make_label_base,
    rows_to_label,
    score_spread,
)
from cascal.router.persistence import RouterRecord, load_record, save_record
from cascal.validation import Interval, Options, Pair
from cascal.vectors import unit_rows

#: Start of the warning :meth:`CascalRouter.fit` gives about models without a usable answer.
FIT_WARNING_SOURCE = "CascalRouter.fit"


class CascalRouter(BaseRouter):
    """Query-only router: routes each question to the models ranked best in its nearest skill niches.

    ``fit`` never reads the answer key (``responses.gold``): model quality is the pool's
    confidence-weighted consensus (docs/algorithm.md#consensus-scores). Per subject, each model's
    proficiency set is clustered into niches, and each niche ranks the models by mean consensus
    score (#skill-niches). A query goes to its nearest subjects (soft, by calibrated weight), then
    to a distance-weighted mix of their nearest niches, blended toward the global ranking when it is
    far from every niche (#routing). docs/algorithm.md#parameters maps each parameter to its step;
    #choices-we-measured holds the measurements behind the defaults that differ from the original
    method.

    Parameters:
        z_scale, clamp: slope and ``(low, high)`` bounds of the logprob-to-vote-weight sigmoid.
        tau: temperature of the consensus softmax (lower than the original 1: measured sharper is better).
        min_consensus: agreement ratio a question needs to enter a proficiency set.
        max_niches: largest number of groups per proficiency set.
        clustering: ``"agglomerative"`` (Rust ``linkage``) or ``"kmeans"`` (spherical, weighted);
            both choose ``k`` by weighted silhouette among cuts whose groups reach ``min_niche_size``.
        linkage: linkage of the agglomerative method (``"ward"``: balanced groups on unit vectors).
        min_niche_size: smallest group of a cut of two or more groups (stops the silhouette from
            preferring one big group plus outliers).
        max_cluster_points: larger proficiency sets are clustered on an evenly spaced subsample of
            this size (bounds the quadratic linkage cost).
        min_silhouette: a proficiency set whose best weighted silhouette is lower stays one group.
        merge_threshold: cosine distance under which centroids of a subject merge.
        prune_jaccard: niches whose top-3 model sets are at least this similar are folded.
        k_nearest, distance_temp, score_temp: niches mixed per query, the temperature of the softmax
            over their distances, and the temperature sharpening each niche's model scores.
        fallback_distance: nearest-niche cosine distance beyond which the global ranking blends in;
            ``"auto"``: the ``fallback_quantile`` quantile of the training questions' own distances
            (a fixed distance means different things for different embedding models).
        fallback_quantile, fallback_width: that quantile, and the distance over which the blend
            grows from 0 to 1.
        top_k: ensemble size :meth:`route` and :meth:`answer` use when none is given.
        subject_representative: ``"questions"`` (normalised mean of the subject's questions) or
            ``"centroids"`` (of its niche centroids, the original rule).
        subject_temp: a query mixes the subjects' rankings by ``softmax(-distance / subject_temp)``;
            ``0`` = nearest subject only (the original); ``"auto"``: the maximum-likelihood
            temperature of the training questions' subjects (calibrated probabilities).
        random_state: seed of the k-means starts (the only randomness); ``None`` = fresh entropy.
        embedding_model: name of the embedding model, saved with the router.
        embedding_sha256: content hash of the embedder's files (``Embedder.content_hash``, the
            static embedder's), saved with the router: route time refuses an embedder with other
            files (:func:`cascal.embedding.resolve_router_embedder`). ``None``: checked by name only.
        cost_weight: each niche ranks models by skill minus ``cost_weight`` x expected cost (USD per
            1,000 queries; docs/algorithm.md#cost-aware-routing); needs ``fit(..., prices=...)``.

    Fitted attributes:
        model_names_, subject_names_ (sorted), embedding_model_ (the parameter, else the name carried
        by ``responses``), fallback_distance_ and subject_temp_ (the values routing uses, calibrated
        when ``"auto"``; set by ``fit``, while the other routing parameters are read at every call),
        tables_ (:class:`cascal.kernels.RoutingTables`, with the read-only views global_scores_,
        subject_reps_, centroids_, centroid_subject_, centroid_scores_, centroid_sizes_,
        centroid_costs_, global_costs_), niches_ (subject -> list of :class:`cascal.router.niches.Niche`),
        stats_ (:class:`ConsensusStats`), diagnostics_ (:class:`cascal.router.diagnostics.Diagnostics`),
        label_fit_ (:class:`cascal.router.labels.LabelFit`, the calibration, after a fit with labels)
        and label_choice_ (:class:`cascal.router.label_choice.LabelChoice`, the candidate whose tables
        routing uses, also in ``diagnostics_.labels``).
    """

    _parameter_constraints: ClassVar[dict[str, Any]] = {
        "z_scale": [Interval(Real, 0, None, closed="neither")],
        "clamp": [Pair(Interval(Real, 0, 1, closed="both"), increasing=True)],
        "tau": [Interval(Real, 0, None, closed="neither")],
        "min_consensus": [Interval(Real, 0, 1, closed="both")],
        "max_niches": [Interval(Integral, 1, None, closed="left")],
        "clustering": [Options(CLUSTERING_METHODS)],
        "linkage": [Options(LINKAGE_METHODS)],
        "min_niche_size": [Interval(Integral, 1, None, closed="left")],
        "max_cluster_points": [Interval(Integral, 2, None, closed="left")],
        "min_silhouette": [Interval(Real, -1, 1, closed="both")],
        "merge_threshold": [Interval(Real, 0, 2, closed="both")],
        "prune_jaccard": [Interval(Real, 0, 1, closed="both")],
        "k_nearest": [Interval(Integral, 1, None, closed="left")],
        "distance_temp": [Interval(Real, 0, None, closed="neither")],
        "score_temp": [Interval(Real, 0, None, closed="neither")],
        "fallback_distance": [Interval(Real, 0, None, closed="left"), AUTO],
        "fallback_quantile": [Interval(Real, 0, 1, closed="both")],
        "fallback_width": [Interval(Real, 0, None, closed="neither")],
        "top_k": [Interval(Integral, 1, None, closed="left")],
        "subject_representative": [Options(SUBJECT_REPRESENTATIVES)],
        "subject_temp": [Interval(Real, 0, None, closed="left"), AUTO],
        "random_state": [Interval(Integral, 0, None, closed="left"), None],
        "embedding_model": [str, None],
        "embedding_sha256": [str, None],
        "cost_weight": [Interval(Real, 0, None, closed="left")],
    }

    #: The routing tables (set by ``fit`` / ``from_record``).
    tables_: RoutingTables

    def __init__(
        self,
        z_scale: float = 1.0,
        clamp: tuple[float, float] = (0.01, 0.99),
        tau: float = 0.25,
        min_consensus: float = 0.5,
        max_niches: int = 5,
        clustering: str = "agglomerative",
        linkage: str = "ward",
        min_niche_size: int = 10,
        max_cluster_points: int = 256,
        min_silhouette: float = 0.05,
        merge_threshold: float = 0.15,
        prune_jaccard: float = 0.95,
        k_nearest: int = 3,
        distance_temp: float = 0.1,
        score_temp: float = 0.1,
        fallback_distance: Union[float, str] = AUTO,
        fallback_quantile: float = 0.99,
        fallback_width: float = 0.2,
        top_k: int = 3,
        subject_representative: str = "questions",
        subject_temp: Union[float, str] = AUTO,
        random_state: Optional[int] = None,
        embedding_model: Optional[str] = None,
        cost_weight: float = 0.0,
        embedding_sha256: Optional[str] = None,
    ) -> None:
        self.z_scale = z_scale
        self.clamp = clamp
        self.tau = tau
        self.min_consensus = min_consensus
        self.max_niches = max_niches
        self.clustering = clustering
        self.linkage = linkage
        self.min_niche_size = min_niche_size
        self.max_cluster_points = max_cluster_points
        self.min_silhouette = min_silhouette
        self.merge_threshold = merge_threshold
        self.prune_jaccard = prune_jaccard
        self.k_nearest = k_nearest
        self.distance_temp = distance_temp
        self.score_temp = score_temp
        self.fallback_distance = fallback_distance
        self.fallback_quantile = fallback_quantile
        self.fallback_width = fallback_width
        self.top_k = top_k
        self.subject_representative = subject_representative
        self.subject_temp = subject_temp
        self.random_state = random_state
        self.embedding_model = embedding_model
        self.cost_weight = cost_weight
        self.embedding_sha256 = embedding_sha256

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        embeddings: np.ndarray,
        responses: ResponseMatrix,
        labels: Optional[np.ndarray] = None,
        *,
        prices: Optional[Union[Prices, Mapping[str, tuple[float, float]]]] = None,
    ) -> "CascalRouter":
        """Learn consensus scores, niches and routing tables from ``responses`` (gold is never read).

        Args:
            embeddings: ``(n_q, d)`` finite question embeddings (rows are L2-normalised here).
            responses: the pool's answers on the same ``n_q`` questions.
            labels: optional ``(n_q,)`` integer answer key of a few questions (``-1`` = unlabelled):
                they calibrate every model's niche and global scores, and the router keeps whichever
                of the label-free, calibrated, best-on-labels and per-subject best-on-labels tables
                scores best on held-out labels (docs/algorithm.md#labels; the choice is in
                ``diagnostics_.labels``); the niches still come from the consensus. ``None`` or all
                ``-1``: label-free.
            prices: list prices of the pool (:class:`cascal.router.costs.Prices`, or a mapping
                model -> ``(input, output)`` USD per million tokens): the router also learns each
                model's expected cost per niche from the tokens it used on these questions
                (docs/algorithm.md#cost-aware-routing). Models without a price are priced 0 (warned).

        Raises:
            ValueError: a parameter is out of range (:class:`~cascal.errors.InvalidParameterError`), or
                the inputs are malformed or misaligned (:class:`~cascal.errors.DataError`).

        Warns:
            NoUsableAnswerWarning: some models have no usable answer; they score 0 on every question.
        """
        self.validate_params()
        params = self.get_params(deep=False)
        X = check_fit_inputs(embeddings, responses, as_float64=False)  # as given: never copied whole
        norms = row_norms(X)
        y = check_labels(labels, responses)
        responses.warn_models_without_answers(FIT_WARNING_SOURCE, stacklevel=2)
        checked_prices = None if prices is None else Prices.coerce(prices)
        if checked_prices is None and float(self.cost_weight) > 0:
            raise InvalidParameterError(
                f"cost_weight: {self.cost_weight!r} needs expected costs; give fit(..., prices=...)"
            )

        scores, plurality, agreement = self._score_questions(responses)
        consensus = fitting.Consensus(scores, plurality, agreement, self.stats_)
        global_scores = fitting.global_model_scores(scores)
        # the trust diagnostic reads the consensus only: it runs beside the niche search, whose
        # threads leave a core idle part of the time
        with ThreadPoolExecutor(max_workers=1) as side:
            trust = side.submit(diagnose, responses, plurality, agreement, global_scores)
            found = fitting.find_niches(
                X,
                norms,
                responses.subjects,
                consensus,
                fitting.niche_config(params),
                representative=self.subject_representative,
                random_state=self.random_state,
            )
            tables = fitting.routing_tables(found, global_scores, responses.n_models)
            constants = routing_constants(
                X,
                norms,
                found.subject_index,
                tables,
                subject_temp=self.subject_temp,
                fallback_distance=self.fallback_distance,
                fallback_quantile=self.fallback_quantile,
            )
            diagnostics = trust.result()
        has_labels = y is not None and bool((y >= 0).any())
        if checked_prices is not None or has_labels:
            # only these optional steps read every training row as a unit row (a float64 copy)
            X = unit_subset(X, norms, np.arange(X.shape[0]))
        if checked_prices is not None:
            tables = fitting.with_cost_tables(tables, X, responses, checked_prices, found.subject_names)

        self.model_names_ = list(responses.model_names)
        self.embedding_model_ = self.embedding_model if self.embedding_model is not None else responses.embedding_model
        self.subject_names_ = found.subject_names
        self.niches_ = found.niches
        self.tables_ = tables
        self.subject_temp_ = constants.subject_temp
        self.fallback_distance_ = constants.fallback_distance
        self.diagnostics_ = diagnostics
        if has_labels:
            assert y is not None
            base = make_label_base(X, responses, scores, self.subject_names_, self.tables_)
            self._set_label_tables(base, y)
        return self

    def _score_questions(self, responses: ResponseMatrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-question model scores ``(n_q, M)`` (NaN = not asked), plurality membership and agreement
        ratios (:func:`cascal.router.fitting.score_consensus`); sets ``stats_``. A subclass may
        score differently (e.g. with an answer key) and reuse everything else."""
        consensus = self._consensus(responses)
        self.stats_ = consensus.stats
        return consensus.scores, consensus.plurality, consensus.agreement

    def _consensus(self, responses: ResponseMatrix) -> fitting.Consensus:
        """The pool's consensus on ``responses`` with this router's consensus parameters."""
        return fitting.score_consensus(responses, fitting.consensus_params(self.get_params(deep=False)))

    # ------------------------------------------------------------------ labels
    def label_base(self, embeddings: np.ndarray, responses: ResponseMatrix) -> LabelBase:
        """What :meth:`with_labels` reuses to calibrate this label-free fit on ``responses``
        (normally the training data): per-question consensus scores, subjects and nearest niches.

        Build it once per training set, then call :meth:`with_labels` for as many label sets as
        needed; ``fit(X, R, labels)`` equals ``fit(X, R).with_labels(labels, label_base(X, R))``.
        """
        self._check_fitted()
        X = unit_rows(check_fit_inputs(embeddings, responses), zero_rows="refuse")
        check_pool(responses, self.model_names_)
        return make_label_base(X, responses, self._consensus(responses).scores, self.subject_names_, self.tables_)

    def with_labels(self, labels: np.ndarray, base: LabelBase) -> "CascalRouter":
        """A copy of this label-free router whose niche and global scores are those ``labels``
        choose (aligned with the rows ``base`` was built from, ``-1`` = unlabelled;
        :func:`cascal.router.label_choice.choose`, the choice in ``diagnostics_.labels``); the
        niches and routing constants are shared. No labelled row: an unchanged copy."""
        self._check_fitted()
        y = check_base_labels(labels, base)
        router = copy.copy(self)
        if (y >= 0).any():
            router._set_label_tables(base, y)
        return router

    def _set_label_tables(self, base: LabelBase, labels: np.ndarray) -> None:
        """Calibrate with ``labels`` and route with the candidate tables the labels score best
        (:func:`cascal.router.label_choice.choose`); the choice goes to ``diagnostics_.labels``."""
        diagnostics = getattr(self, "diagnostics_", None)  # a loaded router has none: trusted
        chosen = choose(base, labels, trusted=diagnostics is None or bool(diagnostics.trustworthy))
        self.label_fit_ = chosen.fit
        self.label_choice_ = chosen.choice
        self.__dict__.pop("_weighted_tables", None)  # built from the label-free tables
        self.tables_ = replace(self.tables_, centroid_scores=chosen.centroid_scores, global_scores=chosen.global_scores)
        if diagnostics is not None:
            self.diagnostics_ = replace(diagnostics, labels=chosen.choice)

    def suggest_labels(
        self, embeddings: np.ndarray, responses: ResponseMatrix, n: int, labels: Optional[np.ndarray] = None
    ) -> np.ndarray:
        """Up to ``n`` rows of ``responses`` worth labelling next, best first, as int64 indices
        (docs/algorithm.md#choosing-questions-to-label; :func:`cascal.router.labels.rows_to_label`).

        The picks are a uniform sample, stratified by subject, of the rows where the models that are
        candidates for the routing decision do not all answer alike. Rows already labelled in ``labels``
        (``(n_q,)``, ``-1`` = unlabelled) are never returned, and the ranking uses the router
        calibrated with them. ``responses`` must have the fitted pool's columns.
        """
        self._check_fitted()
        if isinstance(n, bool) or not isinstance(n, Integral) or n < 0:
            raise InvalidParameterError(f"n: must be a non-negative integer, got {n!r}")
        X = unit_rows(check_fit_inputs(embeddings, responses), zero_rows="refuse")
        check_pool(responses, self.model_names_)
        y = check_labels(labels, responses)
        if y is None:
            y = np.full(responses.n_questions, UNLABELLED, dtype=np.int64)
        router = self.with_labels(y, self.label_base(X, responses)) if (y >= 0).any() else self
        fit = getattr(router, "label_fit_", None)
        return rows_to_label(
            responses,
            router.route_scores(X),
            score_spread(router.tables_.global_scores if fit is None else fit.global_scores, fit),
            y >= 0,
            int(n),
            seed=0 if self.random_state is None else int(self.random_state),
        )

    # ------------------------------------------------------------------ pool changes
    def without_models(self, names: Iterable[str]) -> "CascalRouter":
        """A copy of this fitted router that never routes to the models ``names``, without refitting.

        The models' columns leave every per-model table (niche and global scores, cost tables,
        logprob statistics, label calibration, ``model_names_``); the niches, centroids, subject
        representatives and routing constants are kept as fitted. Each niche's sharpened
        distribution ``softmax(scores / score_temp)`` over the kept models is therefore the
        original one restricted to them and renormalised: their relative order in every niche is
        unchanged. A query's mixture of several niches renormalises each niche separately, so its
        final ranking of the kept models can differ from the original one restricted.

        What it does not redo (docs/operations.md#what-dropping-keeps): the consensus weights,
        the niche scores and the niches themselves came from the full pool's votes; a refit on
        the smaller pool can find other niches. ``diagnostics_`` still describes the full fit.
        Dropping is a table slice (milliseconds); the original router is not changed.

        Raises:
            UnknownModelError: a name is not a model of this router (the message names it and the pool).
            InvalidParameterError: ``names`` would drop every model, or is a single string.
        """
        self._check_fitted()
        if isinstance(names, str):
            raise InvalidParameterError(f"names: expected a list of model names, got the string {names!r}")
        drop = list(dict.fromkeys(names))
        unknown = [n for n in drop if n not in self.model_names_]
        if unknown:
            raise UnknownModelError(f"names: {unknown} not in the router's pool {list(self.model_names_)}")
        keep = np.array([i for i, n in enumerate(self.model_names_) if n not in drop], dtype=np.int64)
        if keep.size == 0:
            raise InvalidParameterError(f"names: dropping {drop} would leave no model to route to")
        router = copy.copy(self)
        router.__dict__.pop("_weighted_tables", None)  # built from the full tables
        tables = self.tables_
        router.tables_ = replace(
            tables,
            centroid_scores=tables.centroid_scores[:, keep],
            global_scores=tables.global_scores[keep],
            centroid_costs=None if tables.centroid_costs is None else tables.centroid_costs[:, keep],
            global_costs=None if tables.global_costs is None else tables.global_costs[keep],
        )
        router.model_names_ = [self.model_names_[i] for i in keep]
        router.stats_ = ConsensusStats(mu=np.asarray(self.stats_.mu)[keep], sigma=np.asarray(self.stats_.sigma)[keep])
        router.niches_ = {
            subject: [replace(n, scores=np.asarray(n.scores)[keep]) for n in niches]
            for subject, niches in self.niches_.items()
        }
        label_fit = getattr(self, "label_fit_", None)
        if label_fit is not None:
            router.label_fit_ = _label_fit_columns(label_fit, keep)
        return router

    # ------------------------------------------------------------------ fitted tables
    # Read-only views of ``tables_`` (the :class:`cascal.kernels.RoutingTables` routing uses).
    @property
    def subject_reps_(self) -> np.ndarray:
        """``(S, d)`` float32 unit subject representatives."""
        return self.tables_.subject_reps

    @property
    def centroids_(self) -> np.ndarray:
        """``(C, d)`` float32 niche centroids."""
        return self.tables_.centroids

    @property
    def centroid_subject_(self) -> np.ndarray:
        """``(C,)`` int64 subject of each centroid, an index into ``subject_names_``."""
        return self.tables_.centroid_subject

    @property
    def centroid_scores_(self) -> np.ndarray:
        """``(C, M)`` float64 mean consensus score of each model in each niche."""
        return self.tables_.centroid_scores

    @property
    def centroid_sizes_(self) -> np.ndarray:
        """``(C,)`` int64 number of training questions of each niche."""
        sizes = self.tables_.centroid_sizes
        if sizes is None:  # never for a fitted or loaded router: both tables carry the sizes
            raise AttributeError("centroid_sizes_: the routing tables carry no niche sizes")
        return sizes

    @property
    def centroid_costs_(self) -> Optional[np.ndarray]:
        """``(C, M)`` float64 expected cost of each model in each niche, USD per 1,000 queries
        (``None`` unless fitted with prices)."""
        return self.tables_.centroid_costs

    @property
    def global_costs_(self) -> Optional[np.ndarray]:
        """``(M,)`` float64 expected cost of each model over all training questions, USD per
        1,000 queries (``None`` unless fitted with prices)."""
        return self.tables_.global_costs

    @property
    def global_scores_(self) -> np.ndarray:
        """``(M,)`` float64 mean consensus score of each model over all training questions."""
        return self.tables_.global_scores

    # ------------------------------------------------------------------ routing
    def route_details(
        self, embeddings: np.ndarray, top_k: Optional[int] = None, cost_weight: Optional[float] = None
    ) -> kernels.RouteResult:
        """The full Rust ``route_batch`` result for ``embeddings``: ``probs`` ``(n, M)``, ``ranked``
        ``(n, top_k)`` (default: the ``top_k`` parameter, capped at the pool size), ``subject``
        (index into ``subject_names_``), ``nearest_distance``, fallback ``alpha`` and
        ``expected_cost`` ``(n, M)`` (USD per 1,000 queries; ``None`` without prices), routed
        with ``cost_weight`` (default: the parameter).

        float32 and float64 embeddings go to the kernel without a copy (it normalises the rows
        itself); other numbers are converted to float64. NaN, infinite and all-zero rows raise
        :class:`cascal.errors.KernelError` (a ``ValueError``) with ``arg == "embeddings"``,
        naming the row.
        """
        self._check_fitted()
        X = embedding_matrix(embeddings, self.tables_.dim)
        params = self.route_params(top_k)
        tables = self.cost_weighted_tables(cost_weight)
        try:
            return kernels.route_batch(X, tables, params)
        except KernelError as exc:
            if exc.arg != "X":
                raise
            # the kernel calls the queries X; this method calls them embeddings
            problem = str(exc).removeprefix(f"{exc.arg}: ")
            raise KernelError(f"embeddings: {problem}", arg="embeddings") from None

    def route_params(self, top_k: Optional[int] = None) -> RouteParams:
        """The kernel constants routing uses: the ``k_nearest``, ``distance_temp``, ``score_temp``
        and ``fallback_width`` parameters, the fitted ``fallback_distance_`` and ``subject_temp_``,
        and ``top_k`` (default: the ``top_k`` parameter, capped at the pool size).

        The parameters are read at every call, so changing one takes effect at the next route.
        """
        self._check_fitted()
        return RouteParams(
            k_nearest=int(self.k_nearest),
            distance_temp=float(self.distance_temp),
            score_temp=float(self.score_temp),
            fallback_distance=float(self.fallback_distance_),
            fallback_width=float(self.fallback_width),
            top_k=self._default_top_k() if top_k is None else top_k,
            subject_temp=float(self.subject_temp_),
        )

    def cost_weighted_tables(self, cost_weight: Optional[float] = None) -> RoutingTables:
        """The tables routing uses at ``cost_weight`` (default: the parameter): ``tables_`` itself
        at 0, else with ``cost_weight`` x cost subtracted from every niche and global score
        (:func:`cascal.router.budget.weighted_tables`, built once per weight and tables).

        Raises:
            InvalidParameterError: ``cost_weight`` is not a finite number >= 0, or is > 0 for a
                router fitted without prices.
        """
        self._check_fitted()
        weight = check_cost_weight(self.cost_weight if cost_weight is None else cost_weight)
        if weight == 0.0:
            return self.tables_
        self._weighted_tables = weighted_tables(self.tables_, weight, getattr(self, "_weighted_tables", None))
        return self._weighted_tables.tables

    def cost_weight_for(self, budget: float, embeddings: np.ndarray, top_k: Optional[int] = None) -> float:
        """The smallest cost weight whose mean expected cost on ``embeddings`` is at most ``budget``
        (:func:`cascal.router.budget.smallest_weight_within`; ``0.0`` when routing on skill alone
        meets it). The cost of a query is :attr:`Routing.expected_cost` with ``top_k`` routed models
        (default: the ``top_k`` parameter): USD per 1,000 queries.

        Raises:
            InvalidParameterError: ``budget`` is not a finite number >= 0, the router was fitted
                without prices, or ``budget`` is below the cheapest mean cost any weight reaches
                (the message gives that cost).
        """
        limit = check_budget(budget)
        self._check_fitted()
        if not self.tables_.has_costs:
            raise InvalidParameterError("budget: the router has no expected costs; fit it with prices=...")
        X = embedding_matrix(embeddings, self.tables_.dim)

        def mean_cost(weight: float) -> float:
            cost = self.route(X, top_k=top_k, cost_weight=weight).expected_cost
            assert cost is not None  # the tables carry costs
            return float(cost.mean())

        def cheapest() -> float:
            k = self._check_top_k(self._default_top_k() if top_k is None else top_k)
            cost = self.route_details(X, top_k=k, cost_weight=0.0).expected_cost
            assert cost is not None
            return cheapest_mean_cost(cost, k)

        return smallest_weight_within(limit, mean_cost, cheapest, len(X))

    def route_scores(self, embeddings: np.ndarray) -> np.ndarray:
        """``(n, M)`` routing distribution over the pool for every query (docs/algorithm.md#routing)."""
        return np.asarray(self.route_details(embeddings).probs, dtype=np.float64)

    def route(
        self, embeddings: np.ndarray, top_k: Optional[int] = None, cost_weight: Optional[float] = None
    ) -> Routing:
        """Rank the pool per query and keep the ``top_k`` best (default: the ``top_k`` parameter,
        capped at the pool size); the ranking comes straight from the kernel (ties: lower index).

        ``cost_weight`` (default: the parameter) trades skill for cost
        (docs/algorithm.md#cost-aware-routing). With prices, ``expected_cost`` is each query's
        expected cost of its routed choice: the sum over the ``top_k`` ranked models (every one
        of them is called for the ensemble answer), USD per 1,000 queries."""
        self._check_fitted()
        k = self._check_top_k(self._default_top_k() if top_k is None else top_k)
        result = self.route_details(embeddings, top_k=k, cost_weight=cost_weight)
        expected = None
        if result.expected_cost is not None:
            expected = np.take_along_axis(result.expected_cost, result.ranked, axis=1).sum(axis=1)
        return Routing(
            ranked=result.ranked, scores=result.probs, model_names=list(self.model_names_), expected_cost=expected
        )

    def answer(self, embeddings: np.ndarray, responses: ResponseMatrix, top_k: Optional[int] = None) -> np.ndarray:
        """Plurality answer of the ``top_k`` routed models (docs/algorithm.md#ensemble-answer; default: the ``top_k``
        parameter, capped at the pool size); all-different votes go to the highest z-scored logprob,
        then the best rank."""
        return super().answer(embeddings, responses, top_k=self._default_top_k() if top_k is None else top_k)

    def _default_top_k(self) -> int:
        self._check_fitted()
        return min(int(self.top_k), len(self.model_names_))

    def fitted_constants(self) -> dict[str, float]:
        """The routing constants in use: ``subject_temp`` and ``fallback_distance`` (calibrated at
        fit when their parameters are ``"auto"``)."""
        self._check_fitted()
        return {"subject_temp": float(self.subject_temp_), "fallback_distance": float(self.fallback_distance_)}

    def tie_break_confidence(self, responses: ResponseMatrix) -> Optional[np.ndarray]:
        """Logprobs z-scored with the training statistics ``stats_`` (:meth:`ConsensusStats.z_scores`),
        or ``None`` when ``responses`` has no logprobs."""
        self._check_fitted()
        return None if responses.logprobs is None else self.stats_.z_scores(responses.logprobs)

    # ------------------------------------------------------------------ persistence
    def save(self, path: Union[str, "PathLike[str]"]) -> None:
        """Write the fitted router to one file (zip of ``.npy`` arrays + JSON manifest; no pickle;
        layout in :mod:`cascal.router.persistence`).

        Raises:
            NotFittedError: the router is not fitted.
            ValueError: a parameter cannot be stored as JSON (e.g. a non-integer ``random_state``).
        """
        save_record(self.to_record(), path)

    @classmethod
    def load(cls, path: Union[str, "PathLike[str]"]) -> "CascalRouter":
        """Read a router written by :meth:`save`; it routes exactly as the saved one did.

        Raises:
            RouterFileError: (a ``ValueError``) the file is missing, corrupt, truncated,
                incomplete, from a newer format version, or holds parameters this class refuses;
                the message starts with the file's path.
        """
        record = load_record(path)
        try:
            return cls.from_record(record)
        except ValueError as exc:
            raise RouterFileError(f"{fspath(path)}: {exc}") from None
        except Exception as exc:  # anything a damaged file provokes is reported as the file's fault
            raise RouterFileError(f"{fspath(path)}: {type(exc).__name__}: {exc}") from None

    def to_record(self) -> RouterRecord:
        """Everything :meth:`from_record` needs to rebuild this fitted router, as plain values."""
        self._check_fitted()
        params = self.get_params(deep=False)
        params["clamp"] = [float(c) for c in params["clamp"]]
        return RouterRecord(
            params=params,
            constants={"fallback_distance": float(self.fallback_distance_), "subject_temp": float(self.subject_temp_)},
            tables=self.tables_,
            model_names=list(self.model_names_),
            subject_names=list(self.subject_names_),
            embedding_model=self.embedding_model_,
            stats_mu=self.stats_.mu,
            stats_sigma=self.stats_.sigma,
        )

    @classmethod
    def from_record(cls, record: RouterRecord) -> "CascalRouter":
        """The fitted router ``record`` describes (see :meth:`to_record`); it routes with the
        record's tables and constants, and its niches are rebuilt from the tables.

        Raises:
            InvalidParameterError: (a ``ValueError``) the parameters are not exactly this class's,
                or one is out of range; the message names them. (The record checked that its
                tables, names, statistics and constants fit together when it was made.)
        """
        known = set(cls().get_params(deep=False))
        unknown, missing = sorted(set(record.params) - known), sorted(known - set(record.params))
        if unknown or missing:
            raise InvalidParameterError(f"params unknown {unknown}, missing {missing}")
        params: dict[str, Any] = dict(record.params)
        if isinstance(params["clamp"], list):
            params["clamp"] = tuple(params["clamp"])
        router = cls(**params)
        try:
            router.validate_params()
        except ValueError as exc:
            raise InvalidParameterError(f"invalid saved parameter: {exc}") from None
        router.fallback_distance_ = float(record.constants["fallback_distance"])
        router.subject_temp_ = float(record.constants["subject_temp"])
        router.model_names_ = list(record.model_names)
        router.embedding_model_ = record.embedding_model
        router.subject_names_ = list(record.subject_names)
        router.tables_ = record.tables
        router.stats_ = ConsensusStats(mu=record.stats_mu, sigma=record.stats_sigma)
        router.niches_ = fitting.niches_from_tables(record.tables, router.subject_names_)
        return router


def _label_fit_columns(fit: LabelFit, keep: np.ndarray) -> LabelFit:
    """``fit`` with only the model columns ``keep`` of its per-model arrays."""
    prior = fit.prior
    return replace(
        fit,
        centroid_scores=fit.centroid_scores[:, keep],
        global_scores=fit.global_scores[keep],
        spread=fit.spread[keep],
        accuracy=fit.accuracy[:, keep],
        prior=replace(
            prior,
            follows=prior.follows[keep],
            accuracy=prior.accuracy[keep],
            consensus_accuracy=prior.consensus_accuracy[keep],
            own_accuracy=prior.own_accuracy[keep],
        ),
    )
