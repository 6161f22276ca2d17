"""``cascal demo``: the whole pipeline, end to end, on a simulated pool (no language model involved).

* :mod:`cascal.demo.runner`: :func:`run_demo` (generate → answer → embed → filter → train → route → score);
* :mod:`cascal.demo.report`: the demo's table, plots and ``report.md``;
* :mod:`cascal.demo.drift`: the ``--drift`` step (traffic drifts to new subjects; ``cascal coverage`` finds them through a gateway's decision log, ``cascal refresh`` and a reload follow).
"""

from __future__ import annotations

from cascal.demo.results import DemoConfig, DemoResult, RouterScore
from cascal.demo.runner import run_demo

__all__ = ["DemoConfig", "DemoResult", "RouterScore", "run_demo"]
