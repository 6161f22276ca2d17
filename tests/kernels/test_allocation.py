"""Kernels refuse outputs they cannot allocate instead of aborting the interpreter.

Each case runs in a subprocess, so that a regression (the process dying with SIGABRT on
``memory allocation of N bytes failed``, or being killed by the OOM killer) shows up as a failed
test with a negative return code instead of taking pytest down. The subprocess prints the type
and message of the exception it got; the test expects ``MemoryError`` for a buffer larger than
the allocation cap (the physical memory, or ``CASCAL_MAX_OUTPUT_BYTES``) and ``KernelError`` for a
size that overflows the address space. Inputs are small (at most a few tens of MB) and nothing is
filled: the sizes are checked before anything is allocated.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Optional

import pytest

CAP_ENV = "CASCAL_MAX_OUTPUT_BYTES"

RUNNER = """
import sys
import numpy as np
import cascal.kernels as K
from cascal.errors import KernelError
try:
{body}
except (MemoryError, KernelError) as exc:
    print(type(exc).__name__, "|", exc)
    sys.exit(0)
print("no error")
"""


def run_case(body: str, cap: Optional[int] = None) -> tuple[str, str]:
    """Run ``body`` in a fresh interpreter; return (exception type name, message)."""
    env = {k: v for k, v in os.environ.items() if k != CAP_ENV}
    if cap is not None:
        env[CAP_ENV] = str(cap)
    script = RUNNER.format(body=textwrap.indent(textwrap.dedent(body).strip(), "    "))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, f"exit status {proc.returncode} (negative: killed by a signal)\n{proc.stderr}"
    out = proc.stdout.strip()
    assert " | " in out, f"no exception raised: {out!r}\n{proc.stderr}"
    kind, _, message = out.partition(" | ")
    return kind, message


def assert_memory_error(kind: str, message: str, *needles: str) -> None:
    assert kind == "MemoryError", message
    assert "bytes" in message, message
    for needle in needles:
        assert needle in message, message


def test_pdist_of_three_million_rows() -> None:
    # 12 MB input, 4.5e12 float32 distances (18 TB) out
    kind, message = run_case("K.pdist(np.zeros((3_000_000, 1), np.float32), metric='euclidean')")
    assert_memory_error(kind, message, "pdist", "X:", "17999994000000 bytes")


def test_pairwise_distances_square_500k() -> None:
    kind, message = run_case("K.pairwise_distances(np.zeros((500_000, 1), np.float32), metric='euclidean')")
    assert_memory_error(kind, message, "pdist_square", "1000000000000 bytes")


def test_cdist_500k_by_500k() -> None:
    kind, message = run_case(
        """
        x = np.zeros((500_000, 1), np.float32)
        K.pairwise_distances(x, x.copy(), metric='sqeuclidean')
        """
    )
    assert_memory_error(kind, message, "cdist", "1000000000000 bytes")


def test_linkage_of_three_million_vectors() -> None:
    kind, message = run_case(
        "K.linkage(np.arange(3_000_000, dtype=np.float32)[:, None], method='average', metric='euclidean')"
    )
    assert_memory_error(kind, message, "linkage", "data:")


def test_linkage_condensed_working_copy_over_the_cap() -> None:
    # 1000 observations: neither the n² float64 working matrix (8 MB) nor the condensed copy (4 MB)
    # fits under a 1 MB cap
    kind, message = run_case("K.linkage(np.ones(1000 * 999 // 2), method='complete')", cap=1_000_000)
    assert_memory_error(kind, message, "linkage", "working copy of the condensed distances")


def test_linkage_condensed_falls_back_to_the_condensed_copy() -> None:
    """Under a cap that refuses the square working matrix but not the condensed copy, linkage works."""
    env = {k: v for k, v in os.environ.items() if k != CAP_ENV}
    env[CAP_ENV] = "6000000"  # square: 8 MB, condensed copy: 4 MB
    script = (
        "import numpy as np, cascal.kernels as K; print(K.linkage(np.ones(1000 * 999 // 2), method='complete').shape)"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "(999, 4)"


def test_fcluster_over_the_cap() -> None:
    # a caterpillar tree on 100_000 observations, built in numpy (not subject to the cap)
    body = """
        n = 100_000
        z = np.zeros((n - 1, 4))
        z[:, 0] = np.r_[0, np.arange(2, n)]
        z[:, 1] = np.r_[1, np.arange(n, 2 * n - 2)]
        z[:, 2] = np.arange(1, n)
        z[:, 3] = np.arange(2, n + 1)
        K.fcluster(z, 3, criterion='maxclust')
    """
    kind, message = run_case(body, cap=100_000)
    assert_memory_error(kind, message, "fcluster", "Z:")


def test_cluster_means_with_a_trillion_clusters() -> None:
    kind, message = run_case("K.cluster_means(np.zeros(10, np.int64), np.zeros((10, 1)), n_clusters=10**12)")
    assert_memory_error(kind, message, "cluster_means", "n_clusters:", "8000000000000 bytes")


def test_cluster_means_size_overflow_is_a_kernel_error() -> None:
    kind, message = run_case("K.cluster_means(np.zeros(10, np.int64), np.zeros((10, 8)), n_clusters=2**62)")
    assert kind == "KernelError", message
    assert message.startswith("n_clusters:") and "overflows" in message, message


def test_nearest_centroids_with_huge_k() -> None:
    kind, message = run_case(
        """
        x = np.zeros((1_000_000, 1), np.float32)
        c = np.zeros((100_000, 1), np.float32)
        K.nearest_centroids(x, c, k=100_000, metric='euclidean')
        """
    )
    assert_memory_error(kind, message, "nearest_centroids", "k:", "800000000000 bytes")


def test_consensus_scores_over_the_cap() -> None:
    # 1 MB of answers, 4 MB of float32 scores out, 2 MB cap
    body = """
        answers = np.zeros((100_000, 10), np.int8)
        K.consensus_scores(answers, np.full(100_000, 4, np.int8))
    """
    kind, message = run_case(body, cap=2_000_000)
    assert_memory_error(kind, message, "consensus_scores", "consensus scores")


def test_route_batch_over_the_cap() -> None:
    body = """
        tables = K.RoutingTables(
            np.eye(2), np.eye(2), np.array([0, 1]), np.array([[0.2, 0.8], [0.6, 0.4]]), np.array([0.5, 0.5])
        )
        x = np.tile(np.array([[1.0, 0.0]]), (100_000, 1))
        K.route_batch(x, tables, K.RouteParams(top_k=2))
    """
    kind, message = run_case(body, cap=1_000_000)
    assert_memory_error(kind, message, "route_batch")


@pytest.mark.parametrize("cap", ["not-a-number", None])
def test_small_inputs_still_work(cap: Optional[str]) -> None:
    """An unparsable cap is ignored (the physical memory applies); small outputs are unaffected."""
    env = {k: v for k, v in os.environ.items() if k != CAP_ENV}
    if cap is not None:
        env[CAP_ENV] = cap
    script = "import numpy as np, cascal.kernels as K; print(K.pdist(np.eye(4), metric='euclidean').shape)"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "(6,)"
