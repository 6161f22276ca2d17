"""Benchmark cases of :meth:`cascal.router.CascalRouter.fit` on synthetic data (docs/benchmarks.md).

The synthetic response matrix has the shape of a large router training set: ``n`` questions in
``n_subjects`` subjects, 384-d unit embeddings (a subject direction, one of five topic directions of
that subject, and noise), 20 models whose accuracy depends on the (subject, topic) pair, 4 options,
float32 logprobs that are higher on right answers. Targets (docs/benchmarks.md): fit 100k x 20
models, 50 subjects <= 2 s; fit 1M x 20, 200 subjects <= 15 s with <= 3 GB peak RSS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from cascal.data import ResponseMatrix

DIM = 384
N_MODELS = 20
N_OPTIONS = 4
TOPICS_PER_SUBJECT = 5
#: rows generated at a time (bounds the float64 noise temporaries)
GENERATION_BLOCK = 65_536


@dataclass
class FitInput:
    """Embeddings ``(n, d)`` float32 and the pool's responses on the same questions."""

    embeddings: np.ndarray
    responses: ResponseMatrix


def make_fit_input(n: int, n_subjects: int, n_models: int = N_MODELS, dim: int = DIM, seed: int = 0) -> FitInput:
    """Synthetic training data of ``n`` questions (module docstring); deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    subject_dirs = rng.standard_normal((n_subjects, dim)).astype(np.float32)
    topic_dirs = rng.standard_normal((n_subjects, TOPICS_PER_SUBJECT, dim)).astype(np.float32)
    # accuracy of every model on every (subject, topic): a model's base skill plus a niche bonus
    base = rng.uniform(0.35, 0.7, n_models)
    bonus = rng.uniform(-0.25, 0.25, (n_subjects, TOPICS_PER_SUBJECT, n_models))
    accuracy = np.clip(base + bonus, 0.05, 0.95)
    subject = np.sort(rng.integers(0, n_subjects, n))
    topic = rng.integers(0, TOPICS_PER_SUBJECT, n)
    X = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, GENERATION_BLOCK):
        stop = min(start + GENERATION_BLOCK, n)
        s, t = subject[start:stop], topic[start:stop]
        block = (
            subject_dirs[s] + 0.8 * topic_dirs[s, t] + 1.2 * rng.standard_normal((stop - start, dim), dtype=np.float32)
        )
        X[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    gold = rng.integers(0, N_OPTIONS, n)
    right = rng.random((n, n_models)) < accuracy[subject, topic]
    wrong = (gold[:, None] + rng.integers(1, N_OPTIONS, (n, n_models))) % N_OPTIONS
    answers = np.where(right, gold[:, None], wrong).astype(np.int8)
    answers[rng.random((n, n_models)) < 0.01] = -1
    logprobs = (np.where(right, -0.3, -0.9) + 0.3 * rng.standard_normal((n, n_models))).astype(np.float32)
    responses = ResponseMatrix(
        answers=answers,
        n_options=np.full(n, N_OPTIONS, dtype=np.int8),
        subjects=np.asarray([f"s{i:03d}" for i in range(n_subjects)])[subject],
        model_names=[f"m{j:02d}" for j in range(n_models)],
        gold=gold.astype(np.int8),
        logprobs=logprobs,
    )
    return FitInput(X, responses)


# ---------------------------------------------------------------------- registered cases
#: kernels :meth:`CascalRouter.fit` calls, swapped for their numpy/scipy references in the reference run
FIT_KERNELS = (
    "consensus_scores",
    "best_silhouette_cut",
    "pairwise_distances",
    "cluster_means",
    "nearest_centroids",
    "route_batch",
    "softmax_nll",
)
#: the reference fit runs on the rows of the first 1/REFERENCE_SUBJECT_SHARE of the subjects
REFERENCE_SUBJECT_SHARE = 10
#: queries of the ``route`` case (quick mode: 50,000) and rows the numpy reference routes
ROUTE_QUERIES = 1_000_000
ROUTE_REFERENCE_ROWS = 50_000


@dataclass
class FitCase:
    data: FitInput
    #: rows of the first subjects (a prefix: the generator sorts rows by subject) and their share
    slice_rows: int
    scale: float


def _fit_setup(n: int, n_subjects: int) -> FitCase:
    data = make_fit_input(n, n_subjects)
    codes = np.searchsorted(np.unique(data.responses.subjects), data.responses.subjects)
    keep = max(n_subjects // REFERENCE_SUBJECT_SHARE, 1)
    rows = int(np.searchsorted(codes, keep))
    return FitCase(data, rows, n / rows)


def _fit_setup_for(full_n: int, quick_n: int, n_subjects: int) -> Callable[[bool], FitCase]:
    return lambda quick: _fit_setup(quick_n if quick else full_n, n_subjects)


def _fit(case: FitCase) -> object:
    from cascal.router import CascalRouter

    return CascalRouter(random_state=0).fit(case.data.embeddings, case.data.responses)


def _fit_reference_kernels(case: FitCase) -> object:
    import cascal.kernels
    import cascal.reference
    from cascal.router import CascalRouter

    rows = np.arange(case.slice_rows)
    saved = {name: getattr(cascal.kernels, name) for name in FIT_KERNELS}
    try:
        for name in FIT_KERNELS:
            setattr(cascal.kernels, name, getattr(cascal.reference, name))
        return CascalRouter(random_state=0).fit(case.data.embeddings[rows], case.data.responses.subset(rows))
    finally:
        for name, fn in saved.items():
            setattr(cascal.kernels, name, fn)


@dataclass
class RouteCase:
    router: object
    queries: np.ndarray


def _route_setup(quick: bool) -> RouteCase:
    from cascal.router import CascalRouter

    train = make_fit_input(20_000 if quick else 100_000, 200)
    router = CascalRouter(random_state=0).fit(train.embeddings, train.responses)
    queries = make_fit_input(50_000 if quick else ROUTE_QUERIES, 200).embeddings  # same world, new questions
    return RouteCase(router, queries)


def _route(case: RouteCase) -> object:
    return case.router.route(case.queries)  # type: ignore[attr-defined]


def _route_reference(case: RouteCase) -> object:
    from cascal import reference

    router = case.router
    params = router.route_params()  # type: ignore[attr-defined]
    return reference.route_batch(case.queries[:ROUTE_REFERENCE_ROWS], router.tables_, params)  # type: ignore[attr-defined]


def _register() -> None:
    from cascal.bench.registry import Case, register

    for full_n, quick_n, n_subjects, repeats in ((100_000, 20_000, 50, 5), (1_000_000, 50_000, 200, 3)):
        register(
            Case(
                name=f"fit {full_n:,} (quick {quick_n:,}) x{N_MODELS} S={n_subjects}",
                setup=_fit_setup_for(full_n, quick_n, n_subjects),
                kernel=_fit,
                references={"reference kernels (1/10 subjects)": _fit_reference_kernels},
                reference_scale={"reference kernels (1/10 subjects)": lambda c: c.scale},
                repeats=repeats,
                quick_repeats=2,
                measure_memory=True,
            )
        )
    register(
        Case(
            name=f"route {ROUTE_QUERIES:,} (quick 50,000)q S=200 soft",
            setup=_route_setup,
            kernel=_route,
            references={"numpy route_batch (50k rows)": _route_reference},
            reference_scale={"numpy route_batch (50k rows)": lambda c: len(c.queries) / ROUTE_REFERENCE_ROWS},
            repeats=5,
            quick_repeats=3,
        )
    )


_register()
