"""Invalid input to the Rust extension raises cascal.errors.KernelError: a CascalError and a
ValueError whose message starts with the argument's name and whose ``.arg`` is that name, for the
core's own checks, the bindings' checks of dtype, layout and shape, and the Python wrappers' checks
alike; a parameter object of the wrong class is an ArgumentTypeError (a TypeError)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from cascal import _core, kernels
from cascal.errors import ArgumentTypeError, CascalError, KernelError

X = np.array([[0.0, 1.0], [1.0, 0.5], [2.0, 2.0], [3.0, 0.0]])
Z = kernels.linkage(X, method="average", metric="euclidean")
ANSWERS = np.array([[0, 1, 0], [1, 1, 2]], dtype=np.int8)
N_OPTIONS = np.array([4, 4], dtype=np.int8)
PARAMS = kernels.ConsensusParams()

CASES = {
    # the core's checks
    "pdist: NaN row": (lambda: _core.pdist(np.array([[0.0, 1.0], [np.nan, 0.0]]), "euclidean"), "X"),
    "pdist: unknown metric": (lambda: _core.pdist(X, "manhattan"), "metric"),
    "linkage: unknown method": (lambda: _core.linkage_vectors(X, "median-ish", "euclidean"), "method"),
    "fcluster: NaN threshold": (lambda: _core.fcluster_distance(Z, float("nan")), "t"),
    "consensus: tau": (
        lambda: _core.consensus_scores(
            ANSWERS, N_OPTIONS, None, SimpleNamespace(z_scale=1.0, tau=0.0, clamp=(0, 1)), None, None
        ),
        "tau",
    ),
    "cluster_means: labels": (lambda: _core.cluster_means(np.array([0, 1], dtype=np.int64), X, 2), "labels"),
    "nearest_centroids: k": (lambda: _core.nearest_centroids(X, X[:2], 3, "cosine"), "k"),
    # the bindings' checks
    "pdist: Fortran order": (lambda: _core.pdist(np.asfortranarray(X), "euclidean"), "X"),
    "pdist: integer array": (lambda: _core.pdist(X.astype(np.int64), "euclidean"), "X"),
    "cdist: other width": (lambda: _core.cdist(X, np.ones((2, 3)), "cosine"), "Y"),
    "cdist: other dtype": (lambda: _core.cdist(X, X.astype(np.float32), "cosine"), "Y"),
    "linkage: 2-D condensed": (lambda: _core.linkage_condensed(np.ones((2, 2)), "single"), "data"),
    "fcluster: 3 columns": (lambda: _core.fcluster_maxclust(np.ones((3, 3)), 2), "Z"),
    "consensus: logprobs shape": (
        lambda: _core.consensus_scores(ANSWERS, N_OPTIONS, np.zeros((2, 2)), PARAMS, None, None),
        "logprobs",
    ),
    "consensus: mu without sigma": (
        lambda: _core.consensus_scores(ANSWERS, N_OPTIONS, None, PARAMS, np.zeros(3), None),
        "stats",
    ),
    "consensus_stats: integers": (lambda: _core.consensus_stats(np.zeros((2, 2), dtype=np.int64)), "logprobs"),
    "cluster_means: float32 weights": (
        lambda: _core.cluster_means(np.zeros(4, dtype=np.int64), X, 1, np.ones(4, dtype=np.float32)),
        "weights",
    ),
    "nearest_centroids: other width": (lambda: _core.nearest_centroids(X, np.ones((2, 3)), 1, "cosine"), "C"),
    # the public wrappers' own checks, before the kernel is called
    "pdist: 3-D array": (lambda: kernels.pdist(np.ones((2, 2, 2))), "X"),
    "pairwise_distances: other width": (lambda: kernels.pairwise_distances(X, np.ones((2, 3))), "Y"),
    "pairwise_distances: unknown metric": (lambda: kernels.pairwise_distances(X, metric="manhattan"), "metric"),
    "linkage: centroid": (lambda: kernels.linkage(X, method="centroid"), "method"),
    "fcluster: unknown criterion": (lambda: kernels.fcluster(Z, 2, criterion="inconsistent"), "criterion"),
    "fcluster: fractional maxclust": (lambda: kernels.fcluster(Z, 1.5, criterion="maxclust"), "t"),
    "cluster_means: negative count": (lambda: kernels.cluster_means(np.zeros(4, dtype=np.int64), X, -1), "n_clusters"),
    "cluster_means: 2-D labels": (lambda: kernels.cluster_means(np.zeros((4, 1), dtype=np.int64), X, 1), "labels"),
    "consensus_scores: float answers": (
        lambda: kernels.consensus_scores(ANSWERS.astype(float), N_OPTIONS, None, PARAMS),
        "answers",
    ),
    "consensus_scores: one stat": (
        lambda: kernels.consensus_scores(ANSWERS, N_OPTIONS, None, PARAMS, stats=(1,)),
        "stats",
    ),
    "softmax_nll: 1-D dist": (lambda: kernels.softmax_nll(np.ones(3), np.zeros(3, dtype=np.int64), 1.0), "dist"),
    "best_silhouette_cut: max_k": (
        lambda: kernels.best_silhouette_cut(np.zeros((2, 2)), np.ones(2), max_k=-1),
        "max_k",
    ),
    "weighted_silhouettes: float partition": (
        lambda: kernels.weighted_silhouettes(np.zeros((2, 2)), [np.zeros(2)], np.ones(2)),
        "partitions",
    ),
    "route_batch: zero query": (
        lambda: kernels.route_batch(
            np.zeros((1, 2)), kernels.RoutingTables(X[:1], X[:1], [0], [[0.5]], [0.5]), kernels.RouteParams(top_k=1)
        ),
        "X",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_kernel_errors_are_kernel_errors_naming_the_argument(case):
    call, arg = CASES[case]
    with pytest.raises(KernelError) as info:
        call()
    err = info.value
    assert isinstance(err, CascalError) and isinstance(err, ValueError)
    assert err.arg == arg
    assert str(err).startswith((f"{arg}: ", f"{arg}[")) and len(str(err)) > len(arg) + 2  # [: one item of a list


def test_a_wrong_parameter_object_is_an_argument_type_error():
    tables = kernels.RoutingTables(X[:1], X[:1], [0], [[0.5]], [0.5])
    for call, arg in (
        (lambda: kernels.consensus_scores(ANSWERS, N_OPTIONS, None, {"tau": 1.0}), "params"),
        (lambda: kernels.route_batch(X, tables, {"top_k": 1}), "params"),
        (lambda: kernels.route_batch(X, {"dim": 2}), "tables"),
    ):
        with pytest.raises(ArgumentTypeError, match=f"^{arg}: expected ") as info:
            call()
        assert isinstance(info.value, CascalError) and isinstance(info.value, TypeError)


def test_except_value_error_still_catches_them():
    with pytest.raises(ValueError, match=r"^metric: unknown metric"):
        _core.pdist(X, "manhattan")


def test_fortran_order_is_refused_not_misread():
    """numpy calls a Fortran-ordered array contiguous too; read as rows it would be transposed."""
    c_order = _core.pdist(X, "euclidean")
    with pytest.raises(KernelError, match=r"^X: expected a C-contiguous array"):
        _core.pdist(np.asfortranarray(X), "euclidean")
    # a single column is both C- and Fortran-ordered, and fine
    column = X[:, :1].copy(order="F")
    assert np.allclose(_core.pdist(column, "euclidean"), kernels.pdist(column, metric="euclidean"))
    assert np.allclose(c_order, kernels.pdist(np.asfortranarray(X), metric="euclidean"))
