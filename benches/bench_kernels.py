"""pytest-benchmark over the public benchmark registry (:func:`cascal.bench.all_cases`).

Every registered case contributes one benchmark for its Rust kernel and one per numpy/scipy
reference, in one group per case, so pytest-benchmark prints the kernel and its references side by
side (medians). ``cascal bench`` runs the same cases and prints the ratio table; this file is for
pytest-benchmark's tooling (``--benchmark-save``, ``--benchmark-compare``, histograms)::

    pytest benches/bench_kernels.py --benchmark-enable --benchmark-columns=median,min,max
    CASCAL_BENCH_QUICK=1 pytest benches/bench_kernels.py --benchmark-enable     # CI-sized inputs
    pytest benches/bench_kernels.py --benchmark-enable -k route_batch           # one family

A reference with a ``reference_scale`` runs on a slice of the input (it would take minutes on the
whole); its raw time is reported and the scale factor is stored in the benchmark's ``extra_info``.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from cascal.bench import Case, all_cases

QUICK = os.environ.get("CASCAL_BENCH_QUICK", "") not in ("", "0")
CASES = {case.name: case for case in all_cases()}
_STATES: dict[str, Any] = {}


def _state(case: Case) -> Any:
    """The case's input, built once per session (inputs are large)."""
    if case.name not in _STATES:
        _STATES.clear()  # keep one input alive at a time
        _STATES[case.name] = case.setup(QUICK)
    return _STATES[case.name]


def _variants() -> list[Any]:
    params = []
    for case in CASES.values():
        params.append(pytest.param(case.name, "kernel", id=f"{case.name} | kernel"))
        for label in case.references:
            params.append(pytest.param(case.name, label, id=f"{case.name} | {label}"))
    return params


@pytest.mark.parametrize(("case_name", "variant"), _variants())
def test_case(benchmark: Any, case_name: str, variant: str) -> None:
    case = CASES[case_name]
    state = _state(case)
    fn = case.kernel if variant == "kernel" else case.references[variant]
    benchmark.group = case.name
    if variant in case.reference_scale:
        benchmark.extra_info["scale"] = float(case.reference_scale[variant](state))
    if variant in case.targets:
        benchmark.extra_info["target_speedup"] = case.targets[variant]
    rounds = case.quick_repeats if QUICK else case.repeats
    benchmark.pedantic(fn, args=(state,), rounds=rounds, iterations=1, warmup_rounds=1)
