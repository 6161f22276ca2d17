"""CASCAL against its own parts on the real MMLU-Pro answers, relative checks in one run
(docs/ablations.md). Skipped without $CASCAL_DATA.

Absolute floors let a router with one global ranking pass; these compare variants fitted on the
same split instead. The margins sit below every seed's difference in the recorded 5-seed run
(full minus best-consensus / global-only; docs/ablations.md#per-pool-tables), so a router that loses
its niches or its per-query routing fails them.
"""

from __future__ import annotations

import pytest

from cascal.evaluation.ablations import BEST_CONSENSUS, FULL, run_ablations

pytestmark = pytest.mark.slow

#: (pool, top-1 margin, top-3 margin) in accuracy units
MARGINS = [("large", 0.02, 0.003), ("small", 0.02, 0.01)]


@pytest.fixture(scope="module")
def ablations(data_dir):
    return run_ablations(data_dir, pools=["large", "small"], seeds=1, variants=["global-only"], progress=False)


def score(results, pool, router, metric):
    return next(r for r in results["pools"][pool]["summary"] if r["router"] == router)[metric]["mean"]


@pytest.mark.parametrize(("pool", "top1_margin", "top3_margin"), MARGINS)
def test_cascal_beats_its_global_ranking_and_best_by_consensus(ablations, pool, top1_margin, top3_margin):
    for other in ("global-only", BEST_CONSENSUS):
        assert score(ablations, pool, FULL, "top1") >= score(ablations, pool, other, "top1") + top1_margin, other
        assert score(ablations, pool, FULL, "top3") >= score(ablations, pool, other, "top3") + top3_margin, other


def test_niches_and_subjects_are_fitted(ablations):
    # 14 MMLU-Pro categories; the niche step finds more than one niche in most of them
    # (docs/ablations.md records the niche counts of every pool)
    for pool in ("large", "small"):
        run = next(r for r in ablations["pools"][pool]["runs"] if r["router"] == FULL)
        assert ablations["pools"][pool]["subjects"] == 14
        assert run["niches"] >= 2 * 14
