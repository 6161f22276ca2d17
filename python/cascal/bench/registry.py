"""Registry of benchmark cases."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Case:
    """One kernel measured against references on one input.

    Attributes:
        name: short identifier, e.g. ``"pdist cosine f32 n=20000 d=384"``.
        setup: ``setup(quick) -> state``; builds the input once (``quick`` = small sizes for CI).
        kernel: ``kernel(state)``; the Rust kernel call being measured.
        references: label -> ``ref(state)``; the numpy/scipy references.
        targets: label -> minimum speed-up of ``kernel`` over that reference (the
            targets of docs/benchmarks.md).
        repeats: timed repetitions per function (the median is reported).
        quick_repeats: repetitions in quick mode.
        measure_memory: also sample the peak extra RSS of the kernel and of each reference.
        reference_scale: label -> ``scale(state)``; for a reference too slow to run on the whole
            input, the reference callable runs on a slice and its time is multiplied by this factor
            (linear extrapolation, reported as "scaled" in the table).
    """

    name: str
    setup: Callable[[bool], Any]
    kernel: Callable[[Any], Any]
    references: dict[str, Callable[[Any], Any]]
    targets: dict[str, float] = field(default_factory=dict)
    repeats: int = 5
    quick_repeats: int = 3
    measure_memory: bool = False
    reference_scale: dict[str, Callable[[Any], float]] = field(default_factory=dict)


_CASES: list[Case] = []


def register(case: Case) -> Case:
    """Add ``case`` to the registry (called at import time by the case modules)."""
    _CASES.append(case)
    return case


def registered_cases() -> list[Case]:
    """The cases registered so far (:func:`cascal.bench.cases.all_cases` imports every case module first)."""
    return list(_CASES)
