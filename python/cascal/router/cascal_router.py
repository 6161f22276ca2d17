"""The CASCAL router: consensus scores, per-subject skill niches, niche-weighted routing (docs/algorithm.md)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from numbers import Integral, Real
from os import PathLike, fspath
from typing import Any, ClassVar, Optional, Union

import numpy as np

from cascal import kernels
from cascal.data import ResponseMatrix
from cascal.errors import DataError, InvalidParameterError, KernelError, RouterFileError
from cascal.kernels.routing import RouteParams, RoutingTables
from cascal.router.base import BaseRouter, Routing, check_fit_inputs, embedding_matrix
from cascal.router.clustering import CLUSTERING_METHODS, LINKAGE_METHODS, ClusteringConfig, normalize_rows
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
    spread_over_groups,
)
from cascal.router.niches import Niche, NicheConfig, discover_subject_niches
from cascal.router.persistence import RouterRecord, load_record, save_record
from cascal.validation import Interval, Options, Pair

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

    Fitted attributes:
        model_names_, subject_names_ (sorted), embedding_model_ (the parameter, else the name carried
        by ``responses``), fallback_distance_ and subject_temp_ (the values routing uses: the
        parameters, or their calibrated values when ``"auto"``; set by ``fit``, so changing
        ``fallback_distance`` or ``subject_temp`` takes effect at the next fit, while the other
        routing parameters are read at every call), global_scores_ ``(M,)``,
        subject_reps_ ``(S, d)``,
        centroids_ ``(C, d)``, centroid_subject_ ``(C,)`` index into ``subject_names_``,
        centroid_scores_ ``(C, M)``, centroid_sizes_ ``(C,)``, niches_ (subject -> list of
        :class:`cascal.router.niches.Niche`), stats_ (:class:`ConsensusStats`).

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
    }

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

    # ------------------------------------------------------------------ fit
    def fit(
        self, embeddings: np.ndarray, responses: ResponseMatrix, labels: Optional[np.ndarray] = None
    ) -> "CascalRouter":
        """Learn consensus scores, niches and routing tables from ``responses`` (gold is never read).

        Args:
            embeddings: ``(n_q, d)`` finite question embeddings (rows are L2-normalised here).
            responses: the pool's answers on the same ``n_q`` questions.
            labels: optional ``(n_q,)`` integer answer key of a few questions (``-1`` = unlabelled).
                The niches still come from the consensus; the labels calibrate every model's
                niche and global scores (docs/algorithm.md#labels). ``None`` or all ``-1``: the
                label-free fit, unchanged.

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
        X = _unit_rows(check_fit_inputs(embeddings, responses))
        y = check_labels(labels, responses)
        responses.warn_models_without_answers(FIT_WARNING_SOURCE, stacklevel=2)

        scores, plurality, agreement = self._score_questions(responses)
        self._fit_niches(X, responses, scores, plurality, agreement)
        self.diagnostics_ = diagnose(responses, plurality, agreement, self.tables_.global_scores)
        if y is not None and bool((y >= 0).any()):
            base = self._label_base(X, responses, scores)
            self._set_label_tables(calibrate(base, y))
        return self

    # ------------------------------------------------------------------ labels
    #: the routing tables (set by ``fit`` and ``from_record``), declared for the type checker
    tables_: RoutingTables

    def label_base(self, embeddings: np.ndarray, responses: ResponseMatrix) -> LabelBase:
        """What :meth:`with_labels` reuses to calibrate this label-free fit on ``responses``
        (normally the training data): per-question consensus scores, subjects and nearest niches.

        Build it once per training set, then call :meth:`with_labels` for as many label sets as
        needed; ``fit(X, R, labels)`` equals ``fit(X, R).with_labels(labels, label_base(X, R))``.
        """
        self._check_fitted()
        X = _unit_rows(check_fit_inputs(embeddings, responses))
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
        X = _unit_rows(check_fit_inputs(embeddings, responses))
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
        subjects = np.asarray(responses.subjects)
        taken_per_subject = {s: int(c) for s, c in zip(*np.unique(subjects[y >= 0], return_counts=True))}
        return spread_over_groups(value, subjects, int(n), np.flatnonzero(y < 0), taken_per_subject)

    def _score_spread(self) -> tuple[np.ndarray, np.ndarray]:
        """Global scores and their uncertainty: the posterior standard deviation after labels;
        label-free, the spread of the scores between models (the consensus may be that wrong)."""
        scores = np.nan_to_num(np.asarray(self.tables_.global_scores, dtype=np.float64), nan=0.0)
        fit = getattr(self, "label_fit_", None)
        if fit is None:
            return scores, np.full(scores.shape, float(np.std(scores)) + 1e-6)
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
    ) -> "CascalRouter":
        """Niches, subject representatives, global ranking and routing tables from unit embeddings
        ``X`` and per-question scores (docs/algorithm.md#skill-niches)."""
        config = self._niche_config()
        subjects = np.asarray(responses.subjects)
        self.subject_names_ = sorted(set(subjects.tolist()))
        # one independent random stream per subject: a subject's niches do not depend on the others
        streams = np.random.SeedSequence(self.random_state).spawn(len(self.subject_names_))

        def one_subject(i: int) -> list[Niche]:
            rows = np.flatnonzero(subjects == self.subject_names_[i])
            return discover_subject_niches(
                self.subject_names_[i],
                X[rows],
                scores[rows],
                plurality[rows],
                agreement[rows],
                config,
                np.random.default_rng(streams[i]),
            )

        niches = {name: one_subject(i) for i, name in enumerate(self.subject_names_)}
        reps = [self._subject_rep(X[subjects == name], niches[name]) for name in self.subject_names_]

        self.model_names_ = list(responses.model_names)
        self.embedding_model_ = self.embedding_model if self.embedding_model is not None else responses.embedding_model
        self.niches_ = niches
        self.tables_ = self._tables_from_niches(np.asarray(reps, dtype=np.float32), _nan_mean_or_zero(scores))
        self._calibrate_routing(X, subjects)
        return self

    def _calibrate_routing(self, X: np.ndarray, subjects: np.ndarray) -> None:
        """Set ``subject_temp_`` and ``fallback_distance_``: the parameters, or (``"auto"``) their
        values calibrated on the unit training embeddings ``X`` and their subjects."""
        if self.subject_temp == AUTO:
            labels = np.searchsorted(self.subject_names_, subjects)
            self.subject_temp_ = fit_subject_temperature(X, self.tables_.subject_reps, labels)
        else:
            self.subject_temp_ = float(self.subject_temp)
        if self.fallback_distance == AUTO:
            # the nearest-niche distance depends on the tables and the subject assignment only, not
            # on the fallback threshold being calibrated (nor on the other constants)
            probe = RouteParams(top_k=1, subject_temp=self.subject_temp_)
            nearest = kernels.route_batch(X, self.tables_, probe).nearest_distance
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
        return normalize_rows(pool.mean(axis=0, keepdims=True))[0]

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
    def global_scores_(self) -> np.ndarray:
        """``(M,)`` float64 mean consensus score of each model over all training questions."""
        return self.tables_.global_scores

    # ------------------------------------------------------------------ routing
    def route_details(self, embeddings: np.ndarray, top_k: Optional[int] = None) -> kernels.RouteResult:
        """The full Rust ``route_batch`` result for ``embeddings``: ``probs`` ``(n, M)``, ``ranked``
        ``(n, top_k)`` (default: the ``top_k`` parameter, capped at the pool size), ``subject``
        (index into ``subject_names_``), ``nearest_distance`` and fallback ``alpha``.

        float32 and float64 embeddings go to the kernel without a copy (it normalises the rows
        itself); other numbers are converted to float64. NaN, infinite and all-zero rows raise
        :class:`cascal.errors.KernelError` (a ``ValueError``) with ``arg == "embeddings"``,
        naming the row.
        """
        self._check_fitted()
        X = embedding_matrix(embeddings, self.tables_.dim)
        params = self.route_params(top_k)
        try:
            return kernels.route_batch(X, self.tables_, params)
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

    def route_scores(self, embeddings: np.ndarray) -> np.ndarray:
        """``(n, M)`` routing distribution over the pool for every query (docs/algorithm.md#routing)."""
        return np.asarray(self.route_details(embeddings).probs, dtype=np.float64)

    def route(self, embeddings: np.ndarray, top_k: Optional[int] = None) -> Routing:
        """Rank the pool per query and keep the ``top_k`` best (default: the ``top_k`` parameter,
        capped at the pool size); the ranking comes straight from the kernel (ties: lower index)."""
        self._check_fitted()
        k = self._check_top_k(self._default_top_k() if top_k is None else top_k)
        result = self.route_details(embeddings, top_k=k)
        return Routing(ranked=result.ranked, scores=result.probs, model_names=list(self.model_names_))

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
#: (the message starts with the source, then ": ")
NO_USABLE_ANSWER_WARNING = f"{FIT_WARNING_SOURCE}: "


def fit_subject_temperature(X: np.ndarray, subject_reps: np.ndarray, labels: np.ndarray) -> float:
    """Maximum-likelihood temperature ``T`` of ``P(subject | x) = softmax(-(1 - x·rep) / T)``.

    Args:
        X: ``(n, d)`` unit training embeddings.
        subject_reps: ``(S, d)`` unit subject representatives.
        labels: ``(n,)`` index of each row's subject.

    Returns:
        ``T`` within :data:`SUBJECT_TEMP_BOUNDS` minimising the mean negative log-likelihood of
        ``labels`` (bounded scalar search over ``log T``); ``0.0`` (hard assignment, nothing to
        weigh) when there is a single subject.
    """
    from scipy.optimize import minimize_scalar

    if subject_reps.shape[0] < 2:
        return 0.0
    dist = 1.0 - np.asarray(X, dtype=np.float64) @ np.asarray(subject_reps, dtype=np.float64).T
    gap = dist - dist.min(axis=1, keepdims=True)
    own = gap[np.arange(len(labels)), labels]

    def nll(log_t: float) -> float:
        t = np.exp(log_t)
        return float(np.mean(own / t + np.log(np.exp(-gap / t).sum(axis=1))))

    low, high = np.log(SUBJECT_TEMP_BOUNDS[0]), np.log(SUBJECT_TEMP_BOUNDS[1])
    result = minimize_scalar(nll, bounds=(low, high), method="bounded", options={"xatol": 1e-3})
    return float(np.exp(result.x))


def _unit_rows(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; a zero row has no direction to compare and is refused."""
    norms = np.linalg.norm(X, axis=1)
    if (norms == 0).any():
        raise ValueError(f"embeddings: row {int(np.argmin(norms))} is all zeros (no direction to compare)")
    return X / norms[:, None]


def _nan_mean_or_zero(scores: np.ndarray) -> np.ndarray:
    """Column means ignoring NaN (not asked); 0 for a model that was never asked."""
    finite = np.isfinite(scores)
    counts = finite.sum(axis=0)
    sums = np.where(finite, scores, 0.0).sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
