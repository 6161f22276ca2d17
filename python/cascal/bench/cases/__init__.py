"""Benchmark case modules; each registers its cases with :func:`cascal.bench.register`."""

from __future__ import annotations

import importlib
import pkgutil

from cascal.bench.registry import Case, registered_cases

__all__ = ["all_cases"]


def all_cases() -> list[Case]:
    """Import every case module of this package and return every registered case."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        importlib.import_module(f"{__name__}.{info.name}")
    return registered_cases()
