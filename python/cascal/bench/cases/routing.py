"""Benchmark case of the batched routing kernel against its numpy reference."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cascal import reference
from cascal.bench.registry import Case, register
from cascal.kernels import RouteParams, RoutingTables, route_batch

FULL_QUERIES = 1_000_000
QUICK_QUERIES = 50_000
DIM = 384
N_SUBJECTS = 14
N_CENTROIDS = 70
N_MODELS = 12
REFERENCE_SLICE = 50_000  # the reference holds O(rows x centroids) float64: route in slices


@dataclass
class RoutingInput:
    X: np.ndarray
    tables: RoutingTables


def make_input(n_queries: int, seed: int = 0) -> RoutingInput:
    """float32 queries scattered around 70 centroids of 14 subjects (5 each), 12 models."""
    rng = np.random.default_rng(seed)
    reps = rng.standard_normal((N_SUBJECTS, DIM)).astype(np.float32)
    centroid_subject = np.arange(N_CENTROIDS) % N_SUBJECTS
    centroids = reps[centroid_subject] + rng.standard_normal((N_CENTROIDS, DIM)).astype(np.float32)
    X = np.empty((n_queries, DIM), dtype=np.float32)
    for start in range(0, n_queries, 100_000):
        stop = min(start + 100_000, n_queries)
        pick = rng.integers(0, N_CENTROIDS, stop - start)
        X[start:stop] = centroids[pick] + 1.5 * rng.standard_normal((stop - start, DIM), dtype=np.float32)
    scores = rng.random((N_CENTROIDS, N_MODELS))
    return RoutingInput(X, RoutingTables(reps, centroids, centroid_subject, scores, rng.random(N_MODELS)))


#: subject_temp of the soft-assignment case (about what CascalRouter calibrates on MMLU-Pro/MiniLM)
SOFT_SUBJECT_TEMP = 0.05


def _kernel(s: RoutingInput, subject_temp: float = 0.0):
    return route_batch(s.X, s.tables, RouteParams(subject_temp=subject_temp))


def _numpy(s: RoutingInput, subject_temp: float = 0.0):
    params = RouteParams(subject_temp=subject_temp)
    return [
        reference.route_batch(s.X[i : i + REFERENCE_SLICE], s.tables, params)
        for i in range(0, len(s.X), REFERENCE_SLICE)
    ]


def _soft_kernel(s: RoutingInput):
    return _kernel(s, SOFT_SUBJECT_TEMP)


def _soft_numpy(s: RoutingInput):
    return _numpy(s, SOFT_SUBJECT_TEMP)


for label, kernel, ref in (
    ("hard subjects", _kernel, _numpy),
    (f"soft subjects T={SOFT_SUBJECT_TEMP}", _soft_kernel, _soft_numpy),
):
    register(
        Case(
            name=f"route_batch {label} {FULL_QUERIES:,} (quick {QUICK_QUERIES:,})q d={DIM} C={N_CENTROIDS}",
            setup=lambda quick: make_input(QUICK_QUERIES if quick else FULL_QUERIES),
            kernel=kernel,
            references={"numpy (50k-row slices)": ref},
            targets={"numpy (50k-row slices)": 10.0},
            repeats=9,  # single calls spread by 15-60 % on this shared host: a median of 9, not 3
            quick_repeats=3,
        )
    )
