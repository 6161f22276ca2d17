"""The CASCAL router: consensus scores, per-subject skill niches, niche-weighted routing (docs/algorithm.md)."""

from __future__ import annotations

import copy
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from numbers import Integral, Real
from os import PathLike, fspath
from typing import Any, ClassVar, Mapping, Optional, Union

import numpy as np
from threadpoolctl import threadpool_limits

from cascal import _core, kernels
from cascal.data import ResponseMatrix
from cascal.errors import DataError, InvalidParameterError, KernelError, RouterFileError
from cascal.kernels.routing import RouteParams, RoutingTables
from cascal.router.base import BaseRouter, Routing, check_fit_inputs, embedding_matrix
from cascal.router.clustering import CLUSTERING_METHODS, LINKAGE_METHODS, ClusteringConfig
from cascal.router.costs import QUERIES_PER_UNIT, Prices, cost_tables, input_tokens, question_costs
from cascal.router.diagnostics import diagnose
from cascal.router.labels import (
    UNLABELLED,
    LabelBase,
    LabelFit,
    best_model_probabilities,
    calibrate,
    check_labels,
    disagreement_value,
    nearest_niche,
    select_covering,
)
from cascal.router.niches import Niche, NicheConfig, discover_subject_niches
from cascal.router.persistence import RouterRecord, load_record, save_record
from cascal.validation import Interval, Options, Pair
from cascal.vectors import unit_rows

SUBJECT_REPRESENTATIVES = ("questions", "centroids")
#: Value of ``fallback_distance`` / ``subject_temp`` that asks ``fit`` to calibrate it on the training data.
AUTO = "auto"


@dataclass(frozen=True)
class ConsensusStats:
    """Per-model robust logprob location ``mu`` and scale ``sigma`` (docs/algorithm.md#logprob-statistics), ``(M,)`` each;
    reused to z-score logprobs when breaking vote ties."""

    mu: np.ndarray
    sigma: np.ndarray


class CascalRouter(BaseRouter):
    """Query-only router: routes each question to the models ranked best in its nearest skill niches.

    ``fit`` never reads the answer key (``responses.gold``): model quality is estimated from the
    confidence-weighted consensus of the pool (docs/algorithm.md#consensus-scores). Per subject, each
    model's proficiency set (questions it answers with the plurality, agreement ``>= min_consensus``)
    is clustered into at most ``max_niches`` groups; group centroids of all models are merged, every
    training question is assigned to its nearest centroid, and each niche ranks the models by mean
    consensus score (docs/algorithm.md#skill-niches). A query goes to its nearest subject (or, soft,
    to every subject by calibrated weight), then to a distance-weighted mix of that subject's
    ``k_nearest`` nearest niches, blended toward the global ranking when it is far from every niche
    (docs/algorithm.md#routing, Rust ``route_batch``).

    Parameters (the original method's defaults unless noted):
        z_scale: slope of the logprob-to-weight sigmoid.
        clamp: ``(low, high)`` bounds of the vote weights.
        tau: temperature of the consensus softmax (default 0.25, not the original 1: measured).
        min_consensus: agreement ratio a question needs to enter a proficiency set.
        max_niches: largest number of groups per proficiency set.
        clustering: ``"agglomerative"`` (hierarchical, Rust ``linkage``) or ``"kmeans"`` (spherical
            weighted k-means). Both choose ``k`` by weighted silhouette among the cuts whose groups
            all hold at least ``min_niche_size`` questions.
        linkage: linkage of the agglomerative method. Default ``"ward"`` (on unit vectors, where
            squared euclidean distance is twice the cosine distance; the original used average).
        min_niche_size: smallest group of a cut with two or more groups (not in the original; it
            stops the silhouette from preferring one big group plus a few outliers).
        max_cluster_points: a larger proficiency set is clustered on an evenly spaced subsample of
            this size (not in the original; bounds the quadratic linkage cost; no measurable accuracy
            change at 256 on MMLU-Pro, fit CPU time -27%).
        min_silhouette: a proficiency set stays one group when its best weighted silhouette is lower.
        merge_threshold: cosine distance under which centroids of a subject merge.
        prune_jaccard: niches whose top-3 model sets are at least this similar are folded.
        k_nearest: niches mixed per query.
        distance_temp: temperature of the softmax over (negative) niche distances.
        score_temp: temperature sharpening each niche's model scores.
        fallback_distance: nearest-niche cosine distance beyond which the global ranking blends in.
            Default ``"auto"`` (not the original fixed 0.5): the ``fallback_quantile`` quantile of the
            training questions' own nearest-niche distances, so only queries farther from every niche
            than nearly all training questions fall back. A fixed cosine distance means different
            things for different embedding models; with MiniLM on MMLU-Pro, 0.5 sent 63% of
            in-distribution test queries partly to the global ranking. A number fixes the threshold.
        fallback_quantile: quantile used by ``fallback_distance="auto"`` (not in the original).
        fallback_width: distance over which the blend weight grows from 0 to 1.
        top_k: ensemble size used by :meth:`route` and :meth:`answer` when none is given.
        subject_representative: ``"questions"`` (default; normalised mean embedding of the subject's
            training questions) or ``"centroids"`` (normalised mean of its niche centroids, the
            original rule).
        subject_temp: soft subject assignment (not in the original, which routes to the nearest
            subject only): a query mixes the niche rankings of every subject, weighted by
            ``softmax(-subject distance / subject_temp)``. ``0`` = hard assignment (the original).
            Default ``"auto"``: the temperature that maximises the likelihood of the training
            questions' own subjects under that softmax, i.e. the subject weights are calibrated
            probabilities (fitted by a bounded 1-D search; ~0.05 with MiniLM on MMLU-Pro).
        random_state: seed of the k-means starts (the only randomness); ``None`` = fresh entropy.
        embedding_model: name of the embedding model, kept for the record (saved with the router).
        cost_weight: cost-aware routing (docs/algorithm.md#cost-aware-routing; not in the original):
            each niche ranks the models by estimated skill minus ``cost_weight`` x expected cost
            (USD per 1,000 queries). Needs a router fitted with ``prices``; ``0`` (default) routes
            on skill alone, exactly as without prices. :meth:`route` takes a per-call value.

    Fitted attributes:
        model_names_, subject_names_ (sorted), embedding_model_ (the parameter, else the name carried
        by ``responses``), fallback_distance_ and subject_temp_ (the values routing uses: the
        parameters, or their calibrated values when ``"auto"``; set by ``fit``, so changing
        ``fallback_distance`` or ``subject_temp`` takes effect at the next fit, while the other
        routing parameters are read at every call), global_scores_ ``(M,)``,
        subject_reps_ ``(S, d)``,
        centroids_ ``(C, d)``, centroid_subject_ ``(C,)`` index into ``subject_names_``,
        centroid_scores_ ``(C, M)``, centroid_sizes_ ``(C,)``, niches_ (subject -> list of
        :class:`cascal.router.niches.Niche`), stats_ (:class:`ConsensusStats`), centroid_costs_
        ``(C, M)`` and global_costs_ ``(M,)`` (expected USD per 1,000 queries; ``None`` unless
        fitted with ``prices``).

    The measurements behind the defaults that differ: docs/algorithm.md#choices-we-measured.
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
            labels: optional ``(n_q,)`` integer answer key of a few questions (``-1`` = unlabelled).
                The niches still come from the consensus; the labels calibrate every model's
                niche and global scores (docs/algorithm.md#labels). ``None`` or all ``-1``: the
                label-free fit, unchanged.
            prices: list prices of the pool (:class:`cascal.router.costs.Prices`, or a mapping
                model -> ``(input, output)`` USD per million tokens). With prices the router also
                learns each model's expected cost per niche from the tokens it used on these
                questions (``responses.cost``, completion tokens; docs/algorithm.md#cost-aware-routing),
                which ``cost_weight`` and :attr:`Routing.expected_cost` use. Models without a price
                are priced 0 (with a warning naming them).

        Raises:
            ValueError: a parameter is out of range, or the inputs are malformed or misaligned
                (:class:`~cascal.errors.InvalidParameterError` / :class:`~cascal.errors.DataError`
                naming ``labels`` and the first bad row for a bad ``labels``).

        Warns:
            UserWarning: some models (or all) have no usable answer (every answer unparsable or
                not asked, :meth:`ResponseMatrix.models_without_answers`); the message names them.
                They score 0 on every question; the router is still fitted.
        """
        self.validate_params()
        X = check_fit_inputs(embeddings, responses, as_float64=False)
        norms = _row_norms(X)
        y = check_labels(labels, responses)
        responses.warn_models_without_answers(FIT_WARNING_SOURCE, stacklevel=2)

        checked_prices = None if prices is None else Prices.coerce(prices)
        if checked_prices is None and float(self.cost_weight) > 0:
            raise InvalidParameterError(
                f"cost_weight: {self.cost_weight!r} needs expected costs; give fit(..., prices=...)"
            )
        scores, plurality, agreement = self._score_questions(responses)
        # the trust diagnostic reads the consensus only (not the niches): it runs beside the niche
        # search, whose threads leave a core idle part of the time, instead of after it
        global_scores = _nan_mean_or_zero(scores)
        with ThreadPoolExecutor(max_workers=1) as side:
            trust = side.submit(diagnose, responses, plurality, agreement, global_scores)
            self._fit_niches(X, responses, scores, plurality, agreement, norms=norms, global_scores=global_scores)
            diagnostics = trust.result()
        has_labels = y is not None and bool((y >= 0).any())
        if checked_prices is not None or has_labels:
            # the cost tables and the label base read every training row as a unit row: only
            # these optional steps hold a float64 copy of the whole matrix
            X = _unit_subset(X, norms, np.arange(X.shape[0]))
        if checked_prices is not None:
            self._fit_costs(X, responses, checked_prices)
        self.diagnostics_ = diagnostics
        if has_labels:
            assert y is not None
            base = self._label_base(X, responses, scores)
            self._set_label_tables(calibrate(base, y))
        return self

    def _fit_costs(self, X: np.ndarray, responses: ResponseMatrix, prices: Prices) -> None:
        """Add the per-niche and global expected cost tables to ``tables_`` (docs/algorithm.md#cost-aware-routing)."""
        costs = question_costs(responses, prices)
        price_in, _ = prices.for_pool(responses.model_names, warn=False)
        # a model without any known completion tokens costs its mean prompt
        prompt_only = float(input_tokens(responses, prices).mean()) * price_in * (QUERIES_PER_UNIT / 1e6)
        subject_index = np.searchsorted(self.subject_names_, np.asarray(responses.subjects))
        tables = self.tables_
        centroid_costs, global_costs = cost_tables(
            X, subject_index, tables.centroids, tables.centroid_subject, costs, fallback=prompt_only
        )
        self.tables_ = replace(tables, centroid_costs=centroid_costs, global_costs=global_costs)

    # ------------------------------------------------------------------ labels
    def label_base(self, embeddings: np.ndarray, responses: ResponseMatrix) -> LabelBase:
        """What :meth:`with_labels` reuses to calibrate this label-free fit on ``responses``
        (normally the training data): per-question consensus scores, subjects and nearest niches.

        Build it once per training set, then call :meth:`with_labels` for as many label sets as
        needed; ``fit(X, R, labels)`` equals ``fit(X, R).with_labels(labels, label_base(X, R))``.
        """
        self._check_fitted()
        X = unit_rows(check_fit_inputs(embeddings, responses), zero_rows="refuse")
        self._check_pool(responses)
        low, high = self.clamp
        params = kernels.ConsensusParams(z_scale=self.z_scale, tau=self.tau, clamp=(low, high))
        consensus = kernels.consensus_scores(responses.answers, responses.n_options, responses.logprobs, params)
        return self._label_base(X, responses, np.asarray(consensus.scores, dtype=np.float64))

    def _label_base(self, X: np.ndarray, responses: ResponseMatrix, scores: np.ndarray) -> LabelBase:
        subject = np.searchsorted(self.subject_names_, np.asarray(responses.subjects))
        known = np.asarray(self.subject_names_)[np.minimum(subject, len(self.subject_names_) - 1)]
        if not (known == np.asarray(responses.subjects)).all():
            raise DataError("responses: has subjects the router was not fitted on")
        tables = self.tables_
        return LabelBase(
            scores=scores,
            answers=np.asarray(responses.answers),
            subject=subject,
            niche=nearest_niche(X, subject, tables.centroids, tables.centroid_subject),
            centroid_subject=tables.centroid_subject,
            centroid_scores=tables.centroid_scores,
            global_scores=tables.global_scores,
        )

    def with_labels(self, labels: np.ndarray, base: LabelBase) -> "CascalRouter":
        """A copy of this label-free router whose niche and global scores are calibrated with
        ``labels`` (aligned with the rows ``base`` was built from, ``-1`` = unlabelled); the
        niches and routing constants are shared. No labelled row: an unchanged copy."""
        self._check_fitted()
        y = np.asarray(labels)
        if y.dtype == bool or y.dtype.kind not in "iu" or y.shape != (base.answers.shape[0],):
            raise InvalidParameterError(
                f"labels: expected an integer array of shape ({base.answers.shape[0]},), got {y.dtype} {y.shape}"
            )
        router = copy.copy(self)
        if (y >= 0).any():
            router._set_label_tables(calibrate(base, y.astype(np.int64)))
        return router

    def _set_label_tables(self, fit: LabelFit) -> None:
        self.label_fit_ = fit
        self.tables_ = replace(self.tables_, centroid_scores=fit.centroid_scores, global_scores=fit.global_scores)

    def suggest_labels(
        self, embeddings: np.ndarray, responses: ResponseMatrix, n: int, labels: Optional[np.ndarray] = None
    ) -> np.ndarray:
        """Rows of ``responses`` worth labelling next, best first (docs/algorithm.md#choosing-questions-to-label).

        A row is worth more when the models that are candidates for the routing decision there
        (its routing distribution, and how likely each model is to be the best overall given
        what is known) answer it differently: its label tells them apart. Rows are spread over
        subjects (a row's value is divided by one plus the number of rows of its subject already
        labelled or taken). Rows already labelled in ``labels`` are never returned; when
        ``labels`` holds labels, the ranking uses the router calibrated with them.

        Args:
            embeddings: ``(n_q, d)`` embeddings of the candidate questions.
            responses: the pool's answers on them (the fitted pool's columns).
            n: how many rows to return at most (fewer when fewer are unlabelled).
            labels: optional ``(n_q,)`` labels already known (``-1`` = unlabelled).

        Returns:
            ``(<= n,)`` int64 row indices.
        """
        self._check_fitted()
        if isinstance(n, bool) or not isinstance(n, Integral) or n < 0:
            raise InvalidParameterError(f"n: must be a non-negative integer, got {n!r}")
        X = unit_rows(check_fit_inputs(embeddings, responses), zero_rows="refuse")
        self._check_pool(responses)
        y = check_labels(labels, responses)
        if y is None:
            y = np.full(responses.n_questions, UNLABELLED, dtype=np.int64)
        router = self
        if (y >= 0).any():
            router = self.with_labels(y, self.label_base(X, responses))
        probs = router.route_scores(X)
        mean, spread = router._score_spread()
        best = best_model_probabilities(mean, spread, seed=0 if self.random_state is None else int(self.random_state))
        value = disagreement_value(responses.answers, 0.5 * probs + 0.5 * best[None, :])
        low, high = self.clamp
        params = kernels.ConsensusParams(z_scale=self.z_scale, tau=self.tau, clamp=(low, high))
        scores = np.asarray(
            kernels.consensus_scores(responses.answers, responses.n_options, responses.logprobs, params).scores
        )
        ease = np.nan_to_num(np.nanmax(np.where(np.isfinite(scores), scores, -np.inf), axis=1), neginf=0.0)
        return select_covering(value, np.asarray(responses.subjects), ease, int(n), y >= 0)

    def _score_spread(self) -> tuple[np.ndarray, np.ndarray]:
        """Global scores and their uncertainty: the posterior standard deviation after labels;
        label-free, the range of the scores between models (the consensus may misrank any model:
        a lone strong model can sit at the bottom of it)."""
        scores = np.nan_to_num(np.asarray(self.tables_.global_scores, dtype=np.float64), nan=0.0)
        fit = getattr(self, "label_fit_", None)
        if fit is None:
            return scores, np.full(scores.shape, float(np.ptp(scores)) + 1e-6)
        return scores, fit.spread

    def _check_pool(self, responses: ResponseMatrix) -> None:
        if list(responses.model_names) != list(self.model_names_):
            raise ValueError(
                f"responses: model columns {responses.model_names} differ from the fitted pool {self.model_names_}"
            )

    def _score_questions(self, responses: ResponseMatrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-question model scores ``(n_q, M)`` (NaN = not asked), plurality membership and
        agreement ratios from the pool's consensus (docs/algorithm.md#consensus-scores, Rust kernel); sets ``stats_``.
        A subclass may score differently (e.g. with an answer key) and reuse everything else."""
        low, high = self.clamp
        params = kernels.ConsensusParams(z_scale=self.z_scale, tau=self.tau, clamp=(low, high))
        consensus = kernels.consensus_scores(responses.answers, responses.n_options, responses.logprobs, params)
        self.stats_ = ConsensusStats(
            mu=np.asarray(consensus.mu, dtype=np.float64), sigma=np.asarray(consensus.sigma, dtype=np.float64)
        )
        return (
            np.asarray(consensus.scores, dtype=np.float64),
            np.asarray(consensus.plurality, dtype=bool),
            np.asarray(consensus.agreement, dtype=np.float64),
        )

    def _fit_niches(
        self,
        X: np.ndarray,
        responses: ResponseMatrix,
        scores: np.ndarray,
        plurality: np.ndarray,
        agreement: np.ndarray,
        norms: Optional[np.ndarray] = None,
        global_scores: Optional[np.ndarray] = None,
    ) -> "CascalRouter":
        """Niches, subject representatives, global ranking and routing tables from the embeddings
        ``X`` and per-question scores (docs/algorithm.md#skill-niches).

        ``X`` is used as given (float32 or float64, possibly memory-mapped; never copied whole): each
        subject's rows become float64 unit rows ``X[rows] / norms[rows]`` while that subject is
        processed. ``norms`` are the row lengths (:func:`_row_norms`; computed when ``None``), and
        ``global_scores`` the per-model means of ``scores`` (:func:`_nan_mean_or_zero`; computed when
        ``None``)."""
        if norms is None:
            norms = _row_norms(X)
        config = self._niche_config()
        names, codes = _subject_codes(np.asarray(responses.subjects))
        self.subject_names_ = names
        # one independent random stream per subject: a subject's niches do not depend on the others
        streams = np.random.SeedSequence(self.random_state).spawn(len(self.subject_names_))
        order = np.argsort(codes, kind="stable")  # each subject's rows, ascending
        bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))

        def one_subject(i: int) -> tuple[list[Niche], np.ndarray]:
            rows = order[bounds[i] : bounds[i + 1]]
            X_subject = _unit_subset(X, norms, rows)
            found = discover_subject_niches(
                self.subject_names_[i],
                X_subject,
                scores[rows],
                plurality[rows],
                agreement[rows],
                config,
                np.random.default_rng(streams[i]),
            )
            return found, self._subject_rep(X_subject, found)

        # subjects are independent (own rows, own random stream): two threads overlap one
        # subject's Python work with the other's kernels (which release the GIL); the results
        # do not depend on the thread count. The per-subject matrix products are small: a threaded
        # BLAS spends more on waking its threads than on them (10x slower on a busy 2-core
        # machine), so BLAS runs single-threaded in here (and in the calibration below).
        workers = min(_core.num_threads(), len(names))
        with threadpool_limits(limits=1, user_api="blas"):
            if workers > 1:
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    found = list(pool.map(one_subject, range(len(names))))
            else:
                found = [one_subject(i) for i in range(len(names))]
        niches = {name: f[0] for name, f in zip(names, found)}
        reps = [f[1] for f in found]

        self.model_names_ = list(responses.model_names)
        self.embedding_model_ = self.embedding_model if self.embedding_model is not None else responses.embedding_model
        self.niches_ = niches
        if global_scores is None:
            global_scores = _nan_mean_or_zero(scores)
        self.tables_ = self._tables_from_niches(np.asarray(reps, dtype=np.float32), global_scores)
        with threadpool_limits(limits=1, user_api="blas"):
            self._calibrate_routing(X, codes, norms)
        return self

    def _calibrate_routing(self, X: np.ndarray, labels: np.ndarray, norms: np.ndarray) -> None:
        """Set ``subject_temp_`` and ``fallback_distance_``: the parameters, or (``"auto"``) their
        values calibrated on the training embeddings ``X`` (rows of lengths ``norms``) and their
        subjects ``labels`` (indices into ``subject_names_``). Both are calibrated on the rows
        :func:`_calibration_rows` picks: every row up to ``CALIBRATION_MAX_ENTRIES / S`` rows."""
        rows = _calibration_rows(X.shape[0], len(self.subject_names_))
        if self.subject_temp == AUTO:
            self.subject_temp_ = fit_subject_temperature(
                X, self.tables_.subject_reps, labels[rows], rows=rows, norms=norms
            )
        else:
            self.subject_temp_ = float(self.subject_temp)
        if self.fallback_distance == AUTO:
            # the nearest-niche distance is the distance to the nearest centroid of the nearest
            # subject: it depends on the tables only, not on the subject temperature (hard
            # assignment computes it with the fewest distances) nor on the other constants
            probe = RouteParams(top_k=1, subject_temp=0.0)
            nearest = np.empty(rows.size)
            for start in range(0, rows.size, ROW_CHUNK):
                block = rows[start : start + ROW_CHUNK]
                chunk = _unit_subset(X, norms, block)
                nearest[start : start + block.size] = kernels.route_batch(chunk, self.tables_, probe).nearest_distance
            self.fallback_distance_ = float(np.quantile(nearest, float(self.fallback_quantile)))
        else:
            self.fallback_distance_ = float(self.fallback_distance)

    def _niche_config(self) -> NicheConfig:
        return NicheConfig(
            min_consensus=float(self.min_consensus),
            merge_threshold=float(self.merge_threshold),
            prune_jaccard=float(self.prune_jaccard),
            clustering=ClusteringConfig(
                method=self.clustering,
                linkage=self.linkage,
                max_k=int(self.max_niches),
                min_cluster_size=int(self.min_niche_size),
                min_silhouette=float(self.min_silhouette),
                max_points=int(self.max_cluster_points),
            ),
        )

    def _subject_rep(self, X_subject: np.ndarray, subject_niches: list[Niche]) -> np.ndarray:
        if self.subject_representative == "questions":
            pool = X_subject
        else:
            pool = np.asarray([n.centroid for n in subject_niches], dtype=np.float64)
        return unit_rows(pool.mean(axis=0, keepdims=True))[0]

    def _tables_from_niches(self, subject_reps: np.ndarray, global_scores: np.ndarray) -> RoutingTables:
        """The routing tables: ``niches_`` flattened in subject order, with the subject
        representatives and global scores."""
        flat = [(s, n) for s, name in enumerate(self.subject_names_) for n in self.niches_[name]]
        d = subject_reps.shape[1]
        return RoutingTables(
            subject_reps=subject_reps,
            centroids=np.asarray([n.centroid for _, n in flat], dtype=np.float32).reshape(-1, d),
            centroid_subject=np.asarray([s for s, _ in flat], dtype=np.int64),
            centroid_scores=np.asarray([n.scores for _, n in flat], dtype=np.float64).reshape(
                -1, len(self.model_names_)
            ),
            global_scores=global_scores,
            centroid_sizes=np.asarray([n.size for _, n in flat], dtype=np.int64),
        )

    # ------------------------------------------------------------------ fitted tables
    # Read-only views of ``tables_`` (the :class:`cascal.kernels.RoutingTables` routing uses).
    @property
    def subject_reps_(self) -> np.ndarray:
        """``(S, d)`` float32 unit subject representatives (``tables_.subject_reps``)."""
        return self.tables_.subject_reps

    @property
    def centroids_(self) -> np.ndarray:
        """``(C, d)`` float32 niche centroids (``tables_.centroids``)."""
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
        at 0, else with ``cost_weight`` x cost subtracted from every niche and global score.

        Raises:
            InvalidParameterError: ``cost_weight`` is not a finite number >= 0, or is > 0 for a
                router fitted without prices.
        """
        self._check_fitted()
        weight = self._check_cost_weight(self.cost_weight if cost_weight is None else cost_weight)
        if weight == 0.0:
            return self.tables_
        base = self.tables_
        if base.centroid_costs is None or base.global_costs is None:
            raise InvalidParameterError(
                f"cost_weight: {weight:g} needs expected costs; fit the router with prices "
                "(CascalRouter.fit(..., prices=...) or `cascal train --prices FILE`)"
            )
        cached = getattr(self, "_weighted_cache", None)
        if cached is not None and cached[0] == weight and cached[1] is base:
            return cached[2]
        tables = replace(
            base,
            centroid_scores=base.centroid_scores - weight * base.centroid_costs,
            global_scores=base.global_scores - weight * base.global_costs,
        )
        self._weighted_cache = (weight, base, tables)
        return tables

    @staticmethod
    def _check_cost_weight(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)) or value < 0:
            raise InvalidParameterError(f"cost_weight: must be a finite number >= 0, got {value!r}")
        return float(value)

    def cost_weight_for(self, budget: float, embeddings: np.ndarray, top_k: Optional[int] = None) -> float:
        """The smallest cost weight whose mean expected cost on ``embeddings`` is at most ``budget``.

        The cost of a query is :attr:`Routing.expected_cost` with ``top_k`` routed models (default:
        the ``top_k`` parameter): USD per 1,000 queries. Bisection over the weight: the upper end
        grows x4 from 1 until the budget is met, then 60 halvings keep the end that meets it, so
        the result always meets the budget on these queries (the mean cost need not fall
        monotonically with the weight; the bisection only relies on its end points).

        Returns:
            ``0.0`` when routing on skill alone already meets the budget, else the weight.

        Raises:
            InvalidParameterError: ``budget`` is not a finite number >= 0, the router was fitted
                without prices, or ``budget`` is below the cheapest mean cost any weight reaches
                (the message gives that cost).
        """
        if isinstance(budget, bool) or not isinstance(budget, Real) or not math.isfinite(float(budget)) or budget < 0:
            raise InvalidParameterError(f"budget: must be a finite number >= 0 (USD per 1,000 queries), got {budget!r}")
        self._check_fitted()
        if not self.tables_.has_costs:
            raise InvalidParameterError("budget: the router has no expected costs; fit it with prices=...")
        X = embedding_matrix(embeddings, self.tables_.dim)

        def mean_cost(weight: float) -> float:
            cost = self.route(X, top_k=top_k, cost_weight=weight).expected_cost
            assert cost is not None  # the tables carry costs
            return float(cost.mean())

        budget = float(budget)
        if mean_cost(0.0) <= budget:
            return 0.0
        high = 1.0
        while mean_cost(high) > budget:
            if high > 1e12:
                cheapest = min(mean_cost(high), self._cheapest_mean_cost(X, top_k))
                raise InvalidParameterError(
                    f"budget: {budget:g} USD per 1,000 queries is below the cheapest routing reachable "
                    f"({cheapest:.6g} on these {len(X)} queries)"
                )
            high *= 4.0
        low = 0.0 if high == 1.0 else high / 4.0
        for _ in range(60):
            mid = 0.5 * (low + high)
            if mid in (low, high):
                break
            if mean_cost(mid) <= budget:
                high = mid
            else:
                low = mid
        return high

    def _cheapest_mean_cost(self, X: np.ndarray, top_k: Optional[int]) -> float:
        """Mean over ``X`` of the ``top_k`` smallest expected costs per query (a lower bound)."""
        k = self._check_top_k(self._default_top_k() if top_k is None else top_k)
        cost = self.route_details(X, top_k=k, cost_weight=0.0).expected_cost
        assert cost is not None
        return float(np.sort(cost, axis=1)[:, :k].sum(axis=1).mean())

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
        """Logprobs z-scored with the training statistics ``stats_`` (NaN where unknown), or
        ``None`` when ``responses`` has no logprobs."""
        self._check_fitted()
        if responses.logprobs is None:
            return None
        mu = np.where(np.isfinite(self.stats_.mu), self.stats_.mu, 0.0)
        sigma = np.where(np.isfinite(self.stats_.sigma) & (self.stats_.sigma > 0), self.stats_.sigma, 1.0)
        return (np.asarray(responses.logprobs, dtype=np.float64) - mu) / sigma

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
        tables = record.tables
        router.fallback_distance_ = float(record.constants["fallback_distance"])
        router.subject_temp_ = float(record.constants["subject_temp"])
        router.model_names_ = list(record.model_names)
        router.embedding_model_ = record.embedding_model
        router.subject_names_ = list(record.subject_names)
        router.tables_ = tables
        router.stats_ = ConsensusStats(mu=record.stats_mu, sigma=record.stats_sigma)
        router.niches_ = {s: [] for s in router.subject_names_}
        for c, s in enumerate(tables.centroid_subject):
            subject = router.subject_names_[int(s)]
            router.niches_[subject].append(
                Niche(
                    subject=subject,
                    centroid=tables.centroids[c],
                    size=int(router.centroid_sizes_[c]),
                    scores=tables.centroid_scores[c],
                )
            )
        return router


# ---------------------------------------------------------------------- helpers
#: Search bounds of :func:`fit_subject_temperature` (cosine-distance units).
SUBJECT_TEMP_BOUNDS = (1e-4, 1.0)


#: Start of the warning :meth:`CascalRouter.fit` gives about models without a usable answer.
FIT_WARNING_SOURCE = "CascalRouter.fit"


def fit_subject_temperature(
    X: np.ndarray,
    subject_reps: np.ndarray,
    labels: np.ndarray,
    *,
    rows: Optional[np.ndarray] = None,
    norms: Optional[np.ndarray] = None,
) -> float:
    """Maximum-likelihood temperature ``T`` of ``P(subject | x) = softmax(-(1 - x·rep) / T)``.

    Args:
        X: ``(n, d)`` training embeddings: unit rows, or rows of lengths ``norms``.
        subject_reps: ``(S, d)`` unit subject representatives.
        labels: index of each used row's subject (``(n,)``, or ``(len(rows),)`` with ``rows``).
        rows: the rows of ``X`` the likelihood is taken over (default: all).
        norms: ``(n,)`` row lengths of ``X``; rows are divided by them (default: ``X`` is unit).

    Returns:
        ``T`` within :data:`SUBJECT_TEMP_BOUNDS` minimising the mean negative log-likelihood of
        ``labels`` (bounded scalar search over ``log T``, each evaluation by the Rust kernel
        :func:`cascal.kernels.softmax_nll`); ``0.0`` (hard assignment, nothing to weigh) when there
        is a single subject.

    The ``(rows, S)`` distance matrix is built block by block in float64; :func:`_calibration_rows`
    bounds its size for :meth:`CascalRouter.fit`.
    """
    from scipy.optimize import minimize_scalar

    if subject_reps.shape[0] < 2:
        return 0.0
    rows = np.arange(X.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
    norms = np.ones(X.shape[0]) if norms is None else norms
    reps = np.asarray(subject_reps, dtype=np.float64)
    dist = np.empty((rows.size, reps.shape[0]))
    for start in range(0, rows.size, ROW_CHUNK):
        block = rows[start : start + ROW_CHUNK]
        np.subtract(1.0, _unit_subset(X, norms, block) @ reps.T, out=dist[start : start + block.size])
    labels = np.ascontiguousarray(labels, dtype=np.int64)

    def nll(log_t: float) -> float:
        return kernels.softmax_nll(dist, labels, float(np.exp(log_t)))

    low, high = np.log(SUBJECT_TEMP_BOUNDS[0]), np.log(SUBJECT_TEMP_BOUNDS[1])
    result = minimize_scalar(nll, bounds=(low, high), method="bounded", options={"xatol": 1e-3})
    return float(np.exp(result.x))


#: Rows per block of the data-sized passes of ``fit`` (normalisation, calibration).
ROW_CHUNK = 2_048
#: Largest ``rows x subjects`` distance matrix the calibration of ``subject_temp_`` holds; beyond it
#: ``subject_temp_`` and ``fallback_distance_`` are calibrated on evenly spaced training rows
#: (:func:`_calibration_rows`).
CALIBRATION_MAX_ENTRIES = 1 << 24


def _calibration_rows(n: int, n_subjects: int) -> np.ndarray:
    """The training rows the subject temperature is fitted on: all ``n`` while ``n x n_subjects``
    stays within :data:`CALIBRATION_MAX_ENTRIES`, else that many evenly spaced rows (at least
    10,000: a one-parameter likelihood needs far fewer)."""
    cap = max(CALIBRATION_MAX_ENTRIES // max(n_subjects, 1), 10_000)
    if n <= cap:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, cap).round().astype(np.int64))


def _row_norms(X: np.ndarray) -> np.ndarray:
    """``(n,)`` float64 row lengths of ``X``, block by block (no copy of ``X``); a row with NaN or
    infinite values, or all zeros (no direction to compare), is refused."""
    norms = np.empty(X.shape[0])
    for start in range(0, X.shape[0], ROW_CHUNK):
        block = np.asarray(X[start : start + ROW_CHUNK], dtype=np.float64)
        if not np.isfinite(block).all():
            raise ValueError("embeddings: contains NaN or infinite values")
        norms[start : start + block.shape[0]] = np.linalg.norm(block, axis=1)
    if (norms == 0).any():
        raise ValueError(f"embeddings: row {int(np.argmin(norms))} is all zeros (no direction to compare)")
    return norms


def _unit_subset(X: np.ndarray, norms: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Float64 unit rows ``X[rows] / norms[rows]`` (a copy of those rows only)."""
    if rows.size and rows[-1] - rows[0] == rows.size - 1 and (rows.size < 2 or bool(np.all(np.diff(rows) == 1))):
        part = X[int(rows[0]) : int(rows[-1]) + 1]  # a run of rows: a slice reads them without fancy indexing
        return np.asarray(part, dtype=np.float64) / norms[int(rows[0]) : int(rows[-1]) + 1, None]
    return np.asarray(X[rows], dtype=np.float64) / norms[rows, None]


def _subject_codes(subjects: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The sorted distinct subjects and every question's index into them."""
    names = sorted(set(subjects.tolist()))
    return names, np.searchsorted(np.asarray(names, dtype=subjects.dtype), subjects).astype(np.int64)


def _nan_mean_or_zero(scores: np.ndarray) -> np.ndarray:
    """Column means ignoring NaN (not asked); 0 for a model that was never asked."""
    finite = np.isfinite(scores)
    counts = finite.sum(axis=0)
    sums = np.where(finite, scores, 0.0).sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
