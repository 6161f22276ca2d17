"""The evaluation harness behind ``cascal evaluate`` (protocol: docs/algorithm.md#evaluation-protocol).

* :mod:`~cascal.evaluation.protocol` — pools, stratified splits, simulated generator keys;
* :mod:`~cascal.evaluation.metrics` — accuracy, per-category accuracy, Kendall τ, mean ± std;
* :mod:`~cascal.evaluation.routers` — the routers known by name;
* :mod:`~cascal.evaluation.harness` — :func:`run_evaluation`: routers × keys × seeds;
* :mod:`~cascal.evaluation.report` / :mod:`~cascal.evaluation.plots` — markdown tables and PNGs.
"""

from cascal.evaluation.harness import run_evaluation
from cascal.evaluation.protocol import GENERATOR_PRESETS, POOL_PRESETS, ProtocolError

__all__ = ["run_evaluation", "ProtocolError", "POOL_PRESETS", "GENERATOR_PRESETS"]
