"""Records shared by the evaluation harness, its report and its plots.

Kept apart from :mod:`cascal.evaluation.harness` so that the report and the plots read results
without importing the harness (no import cycle).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from cascal.evaluation.protocol import Split
from cascal.router.base import BaseRouter

#: Key label of label-free routers' rows (they never see a key).
NO_KEY = "none"


@dataclass
class FittedExample:
    """A router fitted on one pool's first seed, kept for the plots that need live objects."""

    pool: str
    router_name: str
    router: BaseRouter
    split: Split


def to_jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays turned into Python types and NaN into ``None``."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value
