"""Kernel-vs-reference benchmarks printed as a ratio table (``cascal bench`` / ``python -m cascal.bench``).

A benchmark *case* compares one Rust kernel with one or more references on the same generated input
in the same run. Cases live in :mod:`cascal.bench.cases` (one module per kernel family) and register
themselves with :func:`register`. Timings are medians over repeats: the machine is shared and noisy.

:mod:`cascal.bench.gateway_load` is the load benchmark of the ``cascal serve`` gateway
(``cascal serve-bench``), not a kernel case.
"""

from cascal.bench.cases import all_cases
from cascal.bench.registry import Case, register

__all__ = ["Case", "register", "all_cases"]
