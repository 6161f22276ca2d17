"""pytest-benchmark: CascalRouter fit and route on the real MMLU-Pro answers (pool large, seed 0).

Target: ``fit`` on the 7.2k-question training split in <= 0.3 s (median); ``route`` of 1M real queries is
timed end to end (no reference: the numpy path is too slow to repeat; docs/benchmarks.md has the
``route_batch`` ratio). The ``reference`` variants
run the same router with every kernel swapped for its numpy/scipy reference, so the speed-up of the
Rust kernels is measured in the same run:

    pytest benches/bench_router.py --benchmark-enable --benchmark-columns=median,min,max
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

import cascal.kernels
import cascal.reference
from cascal.io import load_dataset
from cascal.router import CascalRouter

LARGE_POOL = [
    "gpt-4o-2024-05-13",
    "gemini-1.5-pro-002",
    "gemini-1.5-flash-002",
    "Meta-Llama-3_1-70B-Instruct",
    "jamba-1.5-large",
    "Qwen1.5-110B",
]
KERNELS = (
    "consensus_scores",
    "linkage",
    "fcluster",
    "pairwise_distances",
    "cluster_means",
    "nearest_centroids",
    "route_batch",
)
FIT_BUDGET_S = 0.3


@pytest.fixture(scope="module")
def data_dir() -> Path:
    """The real MMLU-Pro answers named by ``$CASCAL_DATA`` (as in tests/conftest.py)."""
    path = Path(os.environ.get("CASCAL_DATA", ""))
    if not os.environ.get("CASCAL_DATA") or not (path / "predictions.csv").exists():
        pytest.skip(f"real data not found at {path} (set CASCAL_DATA)")
    return path


@pytest.fixture(scope="module")
def split(data_dir):
    data = load_dataset(data_dir, out_of_range="unparsable")
    columns = [next(c for c in data.model_names if c.startswith(name + "_") or c == name) for name in LARGE_POOL]
    data = data.select_models(columns)
    train_rows, test_rows = train_test_split(
        np.arange(data.n_questions), test_size=0.4, stratify=data.subjects, random_state=0
    )
    return data.subset(np.sort(train_rows)), data.subset(np.sort(test_rows))


@pytest.fixture
def reference_kernels(monkeypatch):
    """Swap every kernel the router calls for its numpy/scipy reference."""
    for name in KERNELS:
        monkeypatch.setattr(cascal.kernels, name, getattr(cascal.reference, name))


@pytest.mark.parametrize("clustering", ["agglomerative", "kmeans"])
def test_fit_rust(benchmark, split, clustering):
    train, _ = split
    benchmark.group = f"fit {clustering}"
    router = CascalRouter(clustering=clustering, random_state=0)
    benchmark.pedantic(router.fit, args=(train.embeddings, train), rounds=7, warmup_rounds=1)
    if clustering == "agglomerative":
        assert benchmark.stats.stats.median <= FIT_BUDGET_S


@pytest.mark.parametrize("clustering", ["agglomerative", "kmeans"])
def test_fit_reference(benchmark, split, reference_kernels, clustering):
    train, _ = split
    benchmark.group = f"fit {clustering}"
    router = CascalRouter(clustering=clustering, random_state=0)
    benchmark.pedantic(router.fit, args=(train.embeddings, train), rounds=3, warmup_rounds=0)


def test_route_rust(benchmark, split):
    train, test = split
    benchmark.group = "route test split"
    router = CascalRouter(random_state=0).fit(train.embeddings, train)
    benchmark.pedantic(router.route, args=(test.embeddings,), rounds=7, warmup_rounds=1)


def test_route_reference(benchmark, split, reference_kernels):
    train, test = split
    benchmark.group = "route test split"
    router = CascalRouter(random_state=0).fit(train.embeddings, train)
    benchmark.pedantic(router.route, args=(test.embeddings,), rounds=3, warmup_rounds=0)


MILLION = 1_000_000


@pytest.fixture(scope="module")
def million_queries(split):
    """The test split's real embeddings tiled to 1,000,000 float32 rows."""
    _, test = split
    reps = MILLION // test.n_questions + 1
    return np.ascontiguousarray(np.tile(test.embeddings, (reps, 1))[:MILLION], dtype=np.float32)


@pytest.mark.parametrize("subject_temp", ["auto", 0.0])
def test_route_million_rust(benchmark, split, million_queries, subject_temp):
    """``CascalRouter.route`` end to end (input checks, kernel, Routing) on 1M real queries; the
    default routes with calibrated soft subjects, ``0.0`` with hard subject assignment."""
    train, _ = split
    benchmark.group = "route 1M real queries"
    router = CascalRouter(random_state=0, subject_temp=subject_temp).fit(train.embeddings, train)
    benchmark.pedantic(router.route, args=(million_queries,), rounds=5, warmup_rounds=1)
