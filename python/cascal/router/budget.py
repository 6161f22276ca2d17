"""Cost-aware routing at a given weight or within a budget (docs/algorithm.md#the-cost-weight).

A router fitted with prices ranks the models of a niche by ``score - cost_weight x expected cost``:
:func:`weighted_tables` builds those tables (kept in a :class:`WeightedTables` so routing many
batches at one weight builds them once), and :func:`smallest_weight_within` finds the smallest
weight whose mean expected cost on a set of queries meets a budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from numbers import Real
from typing import Callable, Optional

import numpy as np

from cascal.errors import InvalidParameterError
from cascal.kernels.routing import RoutingTables

#: Halvings of the bracket around the weight that meets a budget.
BISECTIONS = 60
#: Growth factor of the bracket's upper end, from 1 until the budget is met.
GROWTH = 4.0
#: Largest upper end tried before a budget is declared below every reachable routing.
LARGEST_WEIGHT = 1e12


def check_cost_weight(value: object) -> float:
    """``value`` as a float when it is a finite number >= 0.

    Raises:
        InvalidParameterError: naming ``cost_weight``.
    """
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)) or value < 0:
        raise InvalidParameterError(f"cost_weight: must be a finite number >= 0, got {value!r}")
    return float(value)


def check_budget(budget: object) -> float:
    """``budget`` (USD per 1,000 queries) as a float when it is a finite number >= 0.

    Raises:
        InvalidParameterError: naming ``budget``.
    """
    if isinstance(budget, bool) or not isinstance(budget, Real) or not math.isfinite(float(budget)) or budget < 0:
        raise InvalidParameterError(f"budget: must be a finite number >= 0 (USD per 1,000 queries), got {budget!r}")
    return float(budget)


@dataclass(frozen=True)
class WeightedTables:
    """The tables routing uses at ``weight``, built from the tables ``base`` (compared by identity:
    a router whose tables were replaced, e.g. calibrated with labels, builds new ones)."""

    weight: float
    base: RoutingTables
    tables: RoutingTables


def weighted_tables(base: RoutingTables, weight: float, cached: Optional[WeightedTables] = None) -> WeightedTables:
    """``base`` with ``weight`` x cost subtracted from every niche and global score; ``cached`` itself
    when it was built from the same ``base`` at the same ``weight``.

    Raises:
        InvalidParameterError: ``base`` carries no expected costs (fitted without prices).
    """
    if base.centroid_costs is None or base.global_costs is None:
        raise InvalidParameterError(
            f"cost_weight: {weight:g} needs expected costs; fit the router with prices "
            "(CascalRouter.fit(..., prices=...) or `cascal train --prices FILE`)"
        )
    if cached is not None and cached.weight == weight and cached.base is base:
        return cached
    tables = replace(
        base,
        centroid_scores=base.centroid_scores - weight * base.centroid_costs,
        global_scores=base.global_scores - weight * base.global_costs,
    )
    return WeightedTables(weight=weight, base=base, tables=tables)


def cheapest_mean_cost(expected_cost: np.ndarray, top_k: int) -> float:
    """Mean over the queries of the ``top_k`` smallest expected costs ``(n, M)`` of each: a lower bound
    of the mean cost of routing ``top_k`` models per query at any weight."""
    return float(np.sort(expected_cost, axis=1)[:, :top_k].sum(axis=1).mean())


def smallest_weight_within(
    budget: float, mean_cost: Callable[[float], float], cheapest: Callable[[], float], n_queries: int
) -> float:
    """The smallest cost weight whose ``mean_cost(weight)`` is at most ``budget``.

    Bisection over the weight: the upper end grows x :data:`GROWTH` from 1 until the budget is met,
    then :data:`BISECTIONS` halvings keep the end that meets it, so the result always meets the
    budget (the mean cost need not fall monotonically with the weight; the bisection only relies on
    its end points). ``0.0`` when ``mean_cost(0)`` already meets it.

    Raises:
        InvalidParameterError: no weight up to :data:`LARGEST_WEIGHT` meets ``budget``; the message
            gives the cheapest mean cost reachable on these ``n_queries`` queries (``cheapest()``).
    """
    if mean_cost(0.0) <= budget:
        return 0.0
    high = 1.0
    while mean_cost(high) > budget:
        if high > LARGEST_WEIGHT:
            lowest = min(mean_cost(high), cheapest())
            raise InvalidParameterError(
                f"budget: {budget:g} USD per 1,000 queries is below the cheapest routing reachable "
                f"({lowest:.6g} on these {n_queries} queries)"
            )
        high *= GROWTH
    low = 0.0 if high == 1.0 else high / GROWTH
    for _ in range(BISECTIONS):
        mid = 0.5 * (low + high)
        if mid in (low, high):
            break
        if mean_cost(mid) <= budget:
            high = mid
        else:
            low = mid
    return high
