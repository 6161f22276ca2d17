"""The benchmark runner: medians, ratios, scaled references, and the CLI table."""

from __future__ import annotations

import io
import time

from cascal.bench import Case, all_cases
from cascal.bench.runner import run, run_case


def sleeper(seconds: float):
    return lambda state: time.sleep(seconds)


def test_ratio_is_reference_over_kernel_and_scaling_multiplies_the_reference():
    case = Case(
        name="synthetic",
        setup=lambda quick: {"rows": 1000},
        kernel=sleeper(0.01),
        references={"slow": sleeper(0.04), "sliced": sleeper(0.01)},
        targets={"slow": 2.0},
        reference_scale={"sliced": lambda s: s["rows"] / 100},
        repeats=3,
    )
    row = run_case(case, quick=False)
    slow, sliced = row["refs"]["slow"], row["refs"]["sliced"]
    assert 2.0 < slow["ratio"] < 6.0  # 40 ms / 10 ms, with room for a loaded machine
    assert slow["meets_target"] is True and slow["target"] == 2.0
    assert sliced["scale"] == 10.0
    assert sliced["ref_s"] >= 10 * 0.01  # the 10 ms slice, extrapolated x10
    assert sliced["ratio"] > 5.0
    assert len(row["kernel_times"]) == 3


def test_every_kernel_family_registers_cases_with_targets_from_the_issue():
    names = " ".join(c.name for c in all_cases())
    for kernel in ("consensus", "pdist", "linkage", "nearest_centroids", "route_batch"):
        assert kernel in names, f"no benchmark case for {kernel}"
    targeted = [c for c in all_cases() if c.targets]
    assert len(targeted) >= 5


def test_quick_run_prints_blas_and_a_table():
    out = io.StringIO()
    rows = run(quick=True, match="cluster_means", out=out)
    text = out.getvalue()
    assert "numpy BLAS:" in text and "cascal kernels:" in text
    assert rows and all(r["kernel_s"] > 0 for r in rows)
    assert all(entry["ratio"] > 0 for r in rows for entry in r["refs"].values())
