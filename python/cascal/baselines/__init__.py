"""Baseline routers for the evaluation (docs/algorithm.md#baselines), all :class:`cascal.router.base.BaseRouter` subclasses.

Label-free (never read ``responses.gold``): :class:`RandomRouter`, :class:`BestSingleConsensus`,
:class:`SmoothieTrain`. Query-answer (``uses_answer_key = True``; score the pool against the key they
are given): :class:`KNNCorrectness`, :class:`ClusterRank`, :class:`BestSingleGold`. The oracle is
not a router: :func:`oracle_correct`.
"""

from cascal.baselines.label_free import BestSingleConsensus, RandomRouter, SmoothieTrain
from cascal.baselines.query_answer import ClusterRank, KNNCorrectness
from cascal.baselines.references import BestSingleGold, oracle_correct

__all__ = [
    "RandomRouter",
    "BestSingleConsensus",
    "SmoothieTrain",
    "KNNCorrectness",
    "ClusterRank",
    "BestSingleGold",
    "oracle_correct",
]
