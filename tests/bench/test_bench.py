"""The benchmark runner: medians, ratios, scaled references, and the CLI table."""

from __future__ import annotations

import io
import time

import pytest

from cascal.bench import Case, all_cases
from cascal.bench.runner import run, run_case, select_cases
from cascal.cli import main
from cascal.errors import InvalidParameterError


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


def test_every_kernel_family_registers_cases_and_some_have_speed_up_targets():
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


def test_several_match_texts_select_the_union_in_registration_order():
    names = [c.name for c in all_cases()]
    picked = [c.name for c in select_cases(["route_batch", "cluster_means"])]
    assert picked == [n for n in names if "route_batch" in n or "cluster_means" in n]
    assert any("route_batch" in n for n in picked) and any("cluster_means" in n for n in picked)
    assert [c.name for c in select_cases("cluster_means")] == [n for n in names if "cluster_means" in n]
    assert [c.name for c in select_cases(None)] == names


def test_a_match_without_any_case_is_an_error_listing_the_cases(capsys):
    with pytest.raises(InvalidParameterError, match="no benchmark case name contains 'no-such-kernel'"):
        select_cases("no-such-kernel")
    with pytest.raises(InvalidParameterError, match="expected a text or a list of texts"):
        select_cases([3])  # type: ignore[list-item]
    assert main(["bench", "--quick", "-k", "no-such-kernel", "-k", "nor-this"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: match: no benchmark case name contains 'no-such-kernel' or 'nor-this'")
    assert "route_batch" in err and "\n" not in err.strip()


def test_repeated_k_runs_both_cases_in_one_table(capsys):
    assert main(["bench", "--quick", "-k", "cluster_means", "-k", "best_silhouette_cut"]) == 0
    table = capsys.readouterr().out
    assert "cluster_means" in table and "best_silhouette_cut" in table


def test_chunked_bench_embeddings_are_the_whole_matrix_draw(monkeypatch):
    """make_embeddings draws its noise chunk by chunk (bounded temporaries); the rows must be the
    ones a single whole-matrix draw gives, so the benchmark input did not change."""
    import numpy as np

    from cascal.bench.cases import distance

    monkeypatch.setattr(distance, "MAKE_CHUNK_ROWS", 7)
    rng = np.random.default_rng(4)
    topics = rng.normal(size=(2, 5))
    whole = topics[rng.integers(0, 2, 100)] + 0.7 * rng.normal(size=(100, 5))
    got = distance.make_embeddings(100, d=5, dtype=np.float64, seed=4)
    np.testing.assert_array_equal(got, whole)
    assert got.flags.c_contiguous and distance.make_embeddings(100, d=5, seed=4).dtype == np.float32
