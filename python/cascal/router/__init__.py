"""Routers: the CASCAL router, the router interface it shares with the baselines, and its parts.

* :mod:`cascal.router.base`: :class:`BaseRouter` (fit/route/answer interface), :class:`Routing`;
* :mod:`cascal.router.cascal_router`: :class:`CascalRouter`;
* :mod:`cascal.router.niches`: per-subject skill niches (proficiency sets, merging, pruning);
* :mod:`cascal.router.clustering`: clustering of a proficiency set (agglomerative or k-means);
* :mod:`cascal.router.persistence`: the router file (save/load).
"""

from __future__ import annotations

from cascal.router.base import BaseRouter, NotFittedError, Routing
from cascal.router.cascal_router import CascalRouter, ConsensusStats

__all__ = ["BaseRouter", "CascalRouter", "ConsensusStats", "NotFittedError", "Routing"]
