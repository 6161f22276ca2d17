"""The routers the harness knows by name, as factories ``seed -> BaseRouter``.

Label-free routers are fitted once per split on responses whose key is blanked out; query-answer
routers (``uses_answer_key``) are fitted once per key source. CASCAL and CASCAL-GT are included
when :mod:`cascal.router.cascal_router` is importable. The oracle is not a router: the harness reports it
separately (:data:`ORACLE`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from cascal.baselines import (
    BestSingleConsensus,
    BestSingleGold,
    ClusterRank,
    KNNCorrectness,
    RandomRouter,
    SmoothieTrain,
)
from cascal.errors import InvalidParameterError
from cascal.router.base import BaseRouter

RouterFactory = Callable[[int], BaseRouter]

#: Name of the oracle row (any pool model right on the test question).
ORACLE = "oracle"


@dataclass(frozen=True)
class RouterSpec:
    """A named router: ``factory(seed)`` builds a fresh, unfitted router for one split."""

    name: str
    factory: RouterFactory
    description: str = ""


def _cascal_specs() -> list[RouterSpec]:
    try:
        from cascal.router import CascalRouter
    except ImportError:  # the router module is optional while it is being written
        return []
    from cascal.baselines.cascal_gt import CascalGT

    return [
        RouterSpec("cascal", lambda seed: CascalRouter(random_state=seed), "CASCAL (query-only, consensus niches)"),
        RouterSpec("cascal-gt", lambda seed: CascalGT(random_state=seed), "CASCAL on the key's correctness"),
    ]


def available_routers() -> dict[str, RouterSpec]:
    """Every router the harness can run, by name, in table order (label-free first)."""
    specs = [
        RouterSpec("random", lambda seed: RandomRouter(random_state=seed), "uniformly random ranking"),
        RouterSpec("best-consensus", lambda seed: BestSingleConsensus(), "best single model by mean consensus"),
        RouterSpec(
            "smoothie-train", lambda seed: SmoothieTrain(), "Smoothie triplet estimate over 50 nearest training queries"
        ),
        RouterSpec("knn", lambda seed: KNNCorrectness(), "mean key-correctness of the 20 nearest training queries"),
        RouterSpec(
            "cluster-rank", lambda seed: ClusterRank(random_state=seed), "k-means (64) per-cluster key accuracy"
        ),
        RouterSpec("best-single-gold", lambda seed: BestSingleGold(), "best single model by key accuracy"),
    ]
    cascal = _cascal_specs()
    if cascal:
        specs.insert(3, cascal[0])
        specs.insert(6, cascal[1])
    return {s.name: s for s in specs}


def select_routers(names: list[str] | None) -> tuple[dict[str, RouterSpec], bool]:
    """The requested routers (all when ``names`` is None) and whether the oracle row is wanted.
    Unknown names raise :class:`~cascal.errors.InvalidParameterError` listing the known ones."""
    known = available_routers()
    if names is None:
        return known, True
    unknown = [n for n in names if n not in known and n != ORACLE]
    if unknown:
        raise InvalidParameterError(f"routers: unknown router(s) {unknown}; known: {', '.join([*known, ORACLE])}")
    if len(set(names)) != len(names):
        raise InvalidParameterError(f"routers: router(s) listed twice in {names}")
    return {n: known[n] for n in names if n != ORACLE}, ORACLE in names
