"""Kernels keep working in a process forked after they ran (multiprocessing's ``fork`` start
method, pre-forking servers): the child gets its own kernel thread pool instead of waiting forever
on the parent's threads, which a fork does not copy."""

from __future__ import annotations

import multiprocessing
import sys

import numpy as np
import pytest

from cascal import _core, kernels

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no fork() on Windows")

#: generous bound: the child's work takes milliseconds; a hang is what this test detects
CHILD_TIMEOUT_S = 60


def _inputs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    X = rng.standard_normal((6000, 24)).astype(np.float32)  # several row blocks: the pool is used
    return X, X[::100].copy()


def _kernel_results() -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    X, C = _inputs()
    idx, _ = kernels.nearest_centroids(X, C, 2, "cosine")
    condensed = kernels.pdist(X[:800], "cosine")
    labels = np.random.default_rng(1).integers(0, 5, X.shape[0])
    means = kernels.cluster_means(labels, X[:, :6].astype(np.float64), 5)
    return np.asarray(idx), np.asarray(condensed), np.asarray(means), _core.num_threads()


# Python >= 3.12 warns that forking a multi-threaded process may deadlock: that is the situation tested
@pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning")
def test_kernels_run_in_a_child_forked_after_they_ran() -> None:
    parent = _kernel_results()  # the parent's pool now has running threads
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        pending = pool.apply_async(_kernel_results)
        try:
            child = pending.get(timeout=CHILD_TIMEOUT_S)
        except multiprocessing.TimeoutError:
            pool.terminate()
            pytest.fail(f"a kernel call in a forked child did not return within {CHILD_TIMEOUT_S} s")
    for got, want in zip(child[:3], parent[:3]):
        np.testing.assert_array_equal(got, want)
    assert child[3] == parent[3]  # same thread count in the child's own pool
