"""The steps of :meth:`CascalRouter.fit <cascal.router.CascalRouter.fit>`, in the order it calls them
(docs/algorithm.md):

1. :func:`score_consensus` — per-question model scores, plurality and agreement from the pool's
   confidence-weighted consensus (``consensus_params`` translates the router's parameters);
   :func:`global_model_scores` — every model's mean score, the global ranking;
2. :func:`find_niches` — per subject, the skill niches (:func:`cascal.router.niches.discover_subject_niches`
   with the config :func:`niche_config` translates) and the subject representative;
3. :func:`routing_tables` — niches flattened in subject order into the kernel's tables;
4. :func:`cascal.router.calibration.routing_constants` — the subject temperature and fallback distance;
5. :func:`with_cost_tables` — with prices, every model's expected cost per niche.

Each step takes its inputs as arguments and returns values; none keeps state. :func:`niches_from_tables`
rebuilds the niches of a loaded router from its tables.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Mapping, Optional

import numpy as np
from threadpoolctl import threadpool_limits

from cascal import _core, kernels
from cascal.data import ResponseMatrix
from cascal.errors import DataError
from cascal.kernels.routing import RoutingTables
from cascal.router.clustering import ClusteringConfig
from cascal.router.costs import QUERIES_PER_UNIT, Prices, cost_tables, input_tokens, question_costs
from cascal.router.geometry import subject_codes, unit_subset
from cascal.router.niches import Niche, NicheConfig, discover_subject_niches
from cascal.vectors import unit_rows

#: Rules of ``subject_representative``: the normalised mean of the subject's training questions, or
#: of its niche centroids (the original rule).
SUBJECT_REPRESENTATIVES = ("questions", "centroids")


@dataclass(frozen=True)
class ConsensusStats:
    """Per-model robust logprob location ``mu`` and scale ``sigma`` (docs/algorithm.md#logprob-statistics), ``(M,)`` each;
    reused to z-score logprobs when breaking vote ties."""

    mu: np.ndarray
    sigma: np.ndarray

    def z_scores(self, logprobs: np.ndarray) -> np.ndarray:
        """``logprobs`` ``(n, M)`` z-scored per model; a model without a finite ``mu`` is centred
        at 0, one without a positive ``sigma`` is not scaled."""
        mu = np.where(np.isfinite(self.mu), self.mu, 0.0)
        sigma = np.where(np.isfinite(self.sigma) & (self.sigma > 0), self.sigma, 1.0)
        return (np.asarray(logprobs, dtype=np.float64) - mu) / sigma


@dataclass(frozen=True)
class Consensus:
    """What step 1 learns from the pool's answers: per-question scores ``(n_q, M)`` float64 (NaN =
    not asked), plurality membership ``(n_q, M)`` bool, agreement ratios ``(n_q,)`` float64, and the
    logprob statistics."""

    scores: np.ndarray
    plurality: np.ndarray
    agreement: np.ndarray
    stats: ConsensusStats


@dataclass(frozen=True)
class SubjectNiches:
    """What step 2 finds: the sorted subjects, each question's index into them ``(n_q,)`` int64,
    the niches of every subject, and the ``(S, d)`` float32 unit subject representatives."""

    subject_names: list[str]
    subject_index: np.ndarray
    niches: dict[str, list[Niche]]
    subject_reps: np.ndarray


def consensus_params(params: Mapping[str, Any]) -> kernels.ConsensusParams:
    """The consensus kernel's constants from a router's parameters (``z_scale``, ``tau``, ``clamp``
    of ``get_params()``): the one place a router builds them."""
    low, high = params["clamp"]
    return kernels.ConsensusParams(z_scale=params["z_scale"], tau=params["tau"], clamp=(low, high))


def score_consensus(responses: ResponseMatrix, params: kernels.ConsensusParams) -> Consensus:
    """Step 1: the pool's consensus on every question (docs/algorithm.md#consensus-scores, Rust kernel)."""
    consensus = kernels.consensus_scores(responses.answers, responses.n_options, responses.logprobs, params)
    return Consensus(
        scores=np.asarray(consensus.scores, dtype=np.float64),
        plurality=np.asarray(consensus.plurality, dtype=bool),
        agreement=np.asarray(consensus.agreement, dtype=np.float64),
        stats=ConsensusStats(
            mu=np.asarray(consensus.mu, dtype=np.float64), sigma=np.asarray(consensus.sigma, dtype=np.float64)
        ),
    )


def global_model_scores(scores: np.ndarray) -> np.ndarray:
    """``(M,)`` column means of ``scores`` ignoring NaN (not asked); 0 for a model never asked."""
    finite = np.isfinite(scores)
    counts = finite.sum(axis=0)
    sums = np.where(finite, scores, 0.0).sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)


def niche_config(params: Mapping[str, Any]) -> NicheConfig:
    """Niche discovery's config from a router's parameters (``get_params()``)."""
    return NicheConfig(
        min_consensus=float(params["min_consensus"]),
        merge_threshold=float(params["merge_threshold"]),
        prune_jaccard=float(params["prune_jaccard"]),
        clustering=ClusteringConfig(
            method=params["clustering"],
            linkage=params["linkage"],
            max_k=int(params["max_niches"]),
            min_cluster_size=int(params["min_niche_size"]),
            min_silhouette=float(params["min_silhouette"]),
            max_points=int(params["max_cluster_points"]),
        ),
    )


def subject_representative(X_subject: np.ndarray, niches: list[Niche], rule: str) -> np.ndarray:
    """``(d,)`` unit representative of one subject: the mean of its unit question rows
    ``X_subject`` (``rule="questions"``) or of its niche centroids (``"centroids"``), normalised."""
    pool = X_subject if rule == "questions" else np.asarray([n.centroid for n in niches], dtype=np.float64)
    return unit_rows(pool.mean(axis=0, keepdims=True))[0]


def find_niches(
    X: np.ndarray,
    norms: np.ndarray,
    subjects: np.ndarray,
    consensus: Consensus,
    config: NicheConfig,
    *,
    representative: str,
    random_state: Optional[int],
) -> SubjectNiches:
    """Step 2: every subject's niches and representative (docs/algorithm.md#skill-niches).

    Args:
        X: ``(n_q, d)`` training embeddings as given (float32 or float64, possibly memory-mapped;
            never copied whole): each subject's rows become float64 unit rows ``X[rows] / norms[rows]``
            while that subject is processed.
        norms: ``(n_q,)`` row lengths (:func:`cascal.router.geometry.row_norms`).
        subjects: ``(n_q,)`` subject of every question.
        consensus: step 1's result on the same questions.
        config: niche discovery's parameters (:func:`niche_config`).
        representative: one of :data:`SUBJECT_REPRESENTATIVES`.
        random_state: seed of the k-means starts; each subject draws from its own stream spawned from
            it, so a subject's niches do not depend on the others.

    Subjects are independent, so two threads overlap one subject's Python work with another's
    kernels (which release the GIL); the result does not depend on the thread count. The
    per-subject matrix products are small: a threaded BLAS spends more on waking its threads than
    on them, so BLAS runs single-threaded in here.
    """
    names, codes = subject_codes(np.asarray(subjects))
    streams = np.random.SeedSequence(random_state).spawn(len(names))
    order = np.argsort(codes, kind="stable")  # each subject's rows, ascending
    bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))

    def one_subject(i: int) -> tuple[list[Niche], np.ndarray]:
        rows = order[bounds[i] : bounds[i + 1]]
        X_subject = unit_subset(X, norms, rows)
        found = discover_subject_niches(
            names[i],
            X_subject,
            consensus.scores[rows],
            consensus.plurality[rows],
            consensus.agreement[rows],
            config,
            np.random.default_rng(streams[i]),
        )
        return found, subject_representative(X_subject, found, representative)

    workers = min(_core.num_threads(), len(names))
    with threadpool_limits(limits=1, user_api="blas"):
        if workers > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                found = list(pool.map(one_subject, range(len(names))))
        else:
            found = [one_subject(i) for i in range(len(names))]
    return SubjectNiches(
        subject_names=names,
        subject_index=codes,
        niches={name: f[0] for name, f in zip(names, found)},
        subject_reps=np.asarray([f[1] for f in found], dtype=np.float32),
    )


def routing_tables(found: SubjectNiches, global_scores: np.ndarray, n_models: int) -> RoutingTables:
    """Step 3: the kernel's routing tables, the niches flattened in subject order, with the subject
    representatives and the global scores (docs/algorithm.md#routing)."""
    flat = [(s, n) for s, name in enumerate(found.subject_names) for n in found.niches[name]]
    d = found.subject_reps.shape[1]
    return RoutingTables(
        subject_reps=found.subject_reps,
        centroids=np.asarray([n.centroid for _, n in flat], dtype=np.float32).reshape(-1, d),
        centroid_subject=np.asarray([s for s, _ in flat], dtype=np.int64),
        centroid_scores=np.asarray([n.scores for _, n in flat], dtype=np.float64).reshape(-1, n_models),
        global_scores=global_scores,
        centroid_sizes=np.asarray([n.size for _, n in flat], dtype=np.int64),
    )


def with_cost_tables(
    tables: RoutingTables, X_unit: np.ndarray, responses: ResponseMatrix, prices: Prices, subject_names: list[str]
) -> RoutingTables:
    """Step 5: ``tables`` with every model's expected cost per niche and overall, USD per 1,000 queries
    (docs/algorithm.md#cost-aware-routing), from the tokens each model used on the training questions
    (unit rows ``X_unit``). A model without any known completion tokens costs its mean prompt."""
    costs = question_costs(responses, prices)
    price_in, _ = prices.for_pool(responses.model_names, warn=False)
    prompt_only = float(input_tokens(responses, prices).mean()) * price_in * (QUERIES_PER_UNIT / 1e6)
    subject_index = np.searchsorted(subject_names, np.asarray(responses.subjects))
    centroid_costs, global_costs = cost_tables(
        X_unit, subject_index, tables.centroids, tables.centroid_subject, costs, fallback=prompt_only
    )
    return replace(tables, centroid_costs=centroid_costs, global_costs=global_costs)


def niches_from_tables(tables: RoutingTables, subject_names: list[str]) -> dict[str, list[Niche]]:
    """Every subject's niches as the tables hold them (a loaded router keeps no other copy)."""
    sizes = tables.centroid_sizes
    if sizes is None:  # never for a fitted or loaded router: both tables carry the sizes
        raise DataError("tables: centroid_sizes is required")
    niches: dict[str, list[Niche]] = {s: [] for s in subject_names}
    for c, s in enumerate(tables.centroid_subject):
        subject = subject_names[int(s)]
        niches[subject].append(
            Niche(
                subject=subject,
                centroid=tables.centroids[c],
                size=int(sizes[c]),
                scores=tables.centroid_scores[c],
            )
        )
    return niches
