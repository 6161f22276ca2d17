"""Routers: the CASCAL router, the router interface it shares with the baselines, and its parts.

* :mod:`cascal.router.base`: :class:`BaseRouter` (fit/route/answer interface), :class:`Routing`;
* :mod:`cascal.router.cascal_router`: :class:`CascalRouter`, the estimator (parameters, ``fit`` calling
  the steps below in order, routing, labels, budget and file glue);
* :mod:`cascal.router.fitting`: the steps of ``fit`` (consensus, niches, routing tables, cost tables);
* :mod:`cascal.router.calibration`: the calibrated routing constants (subject temperature, fallback);
* :mod:`cascal.router.geometry`: row lengths and unit rows of the training data, block by block;
* :mod:`cascal.router.niches`: per-subject skill niches (proficiency sets, merging, pruning);
* :mod:`cascal.router.clustering`: clustering of a proficiency set (agglomerative or k-means);
* :mod:`cascal.router.costs`: prices, token counts, expected cost tables;
* :mod:`cascal.router.budget`: cost-weighted tables and the budget search;
* :mod:`cascal.router.labels`: calibration with a few labels, choosing questions to label;
* :mod:`cascal.router.diagnostics`: the trust diagnostic of a label-free fit;
* :mod:`cascal.router.persistence`: the router file (save/load).
"""

from __future__ import annotations

from cascal.router.base import BaseRouter, NotFittedError, Routing
from cascal.router.cascal_router import CascalRouter
from cascal.router.fitting import ConsensusStats

__all__ = ["BaseRouter", "CascalRouter", "ConsensusStats", "NotFittedError", "Routing"]
