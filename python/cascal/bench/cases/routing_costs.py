"""Benchmark case of the routing kernel with its optional cost table (cost-aware routing): the
kernel against the same kernel without the table (the table's overhead) and the numpy reference."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from cascal import reference
from cascal.bench.cases.routing import (
    FULL_QUERIES,
    N_CENTROIDS,
    QUICK_QUERIES,
    REFERENCE_SLICE,
    RoutingInput,
    make_input,
)
from cascal.bench.registry import Case, register
from cascal.kernels import RouteParams, route_batch


def _with_costs(quick: bool) -> tuple[RoutingInput, RoutingInput]:
    plain = make_input(QUICK_QUERIES if quick else FULL_QUERIES)
    rng = np.random.default_rng(1)
    n_models = plain.tables.n_models
    tables = replace(
        plain.tables, centroid_costs=rng.random((N_CENTROIDS, n_models)), global_costs=rng.random(n_models)
    )
    return RoutingInput(plain.X, tables), plain


def _kernel(s: tuple[RoutingInput, RoutingInput]):
    return route_batch(s[0].X, s[0].tables, RouteParams())


def _kernel_without_costs(s: tuple[RoutingInput, RoutingInput]):
    return route_batch(s[1].X, s[1].tables, RouteParams())


def _numpy(s: tuple[RoutingInput, RoutingInput]):
    X, tables = s[0].X, s[0].tables
    return [
        reference.route_batch(X[i : i + REFERENCE_SLICE], tables, RouteParams())
        for i in range(0, len(X), REFERENCE_SLICE)
    ]


register(
    Case(
        name=f"route_batch hard subjects + cost table {FULL_QUERIES:,} (quick {QUICK_QUERIES:,})q C={N_CENTROIDS}",
        setup=_with_costs,
        kernel=_kernel,
        references={"same kernel without cost table": _kernel_without_costs, "numpy (50k-row slices)": _numpy},
        targets={"numpy (50k-row slices)": 10.0},
        repeats=3,
        quick_repeats=3,
    )
)
