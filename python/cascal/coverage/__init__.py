"""``cascal coverage``: how a router covers the live traffic its gateway logged (docs/coverage.md).

Modules, one purpose each:

- :mod:`~cascal.coverage.analysis` — :func:`analyse_coverage` (reading the log with
  :class:`cascal.io.decision_log.DecisionLogReader`): traffic per subject and niche, the
  share routed mostly by the global fallback, and the clusters of that uncovered traffic
  (:class:`CoverageReport`);
- :mod:`~cascal.coverage.describe` — :func:`describe_clusters`: a generator model names and
  describes each cluster;
- :mod:`~cascal.coverage.outputs` — :func:`write_outputs`: ``coverage.json``, the ``tasks.yaml``
  draft and ``coverage.png``.
"""

from __future__ import annotations

from cascal.coverage.analysis import Cluster, CoverageReport, CoverageSettings, analyse_coverage
from cascal.io.decision_log import DecisionLogReader, file_sha256

__all__ = [
    "Cluster",
    "CoverageReport",
    "CoverageSettings",
    "DecisionLogReader",
    "analyse_coverage",
    "file_sha256",
]
