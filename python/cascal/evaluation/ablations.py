"""CASCAL ablations: one part of the method switched off at a time, same seeds and splits
(``cascal evaluate --ablations``; results in docs/ablations.md).

Every variant is :class:`cascal.router.CascalRouter` with a few parameters changed
(:data:`ABLATIONS`); no variant needs code of its own:

- ``full``: the defaults;
- ``subject-only``: no niche step: ``max_niches=1`` and ``merge_threshold=2`` (every seed centroid of a
  subject merges), so each subject is one niche ranking the models by their mean consensus score;
- ``hard-subjects``: ``subject_temp=0``, a query goes to its nearest subject only;
- ``equal-weights``: ``z_scale=1e-9``, every vote weighs 0.5 whatever its logprob. Without logprobs
  (the MMLU-Pro answers carry none) every weight is already 0.5, so this variant *is* ``full`` there;
- ``majority``: plain majority instead of the confidence-weighted posterior: equal weights and
  ``tau=0.01``, so a model scores ~1 where it is in the plurality and ~0 elsewhere (``1/k`` each
  for a ``k``-way tie);
- ``no-tau``: ``tau=1`` (the original method's posterior temperature) instead of 0.25;
- ``global-only``: ``fallback_distance=0`` and ``fallback_width=1e-9``, so every query blends fully
  into the global ranking (one ranking everywhere);
- ``kmeans``: ``clustering="kmeans"`` instead of hierarchical (ward) clustering.

Per pool and seed the split is the harness's (:func:`cascal.evaluation.protocol.make_split`), the
routers are fitted on the training answers with the key blanked out and scored on the test gold
(:func:`cascal.evaluation.harness.evaluate_router`); ``best-consensus`` (the best single model by
mean consensus) and the oracle are reported alongside. Differences to ``full`` are paired per seed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Sequence, Union

import numpy as np
from tqdm.auto import tqdm

from cascal.baselines import BestSingleConsensus
from cascal.data import NO_ANSWER, ResponseMatrix
from cascal.errors import InvalidParameterError
from cascal.evaluation.harness import evaluate_router, gold_of, load_evaluation_data, summarize_runs
from cascal.evaluation.metrics import mean_std, oracle_accuracy
from cascal.evaluation.protocol import ProtocolError, make_split, resolve_pool
from cascal.evaluation.results import to_jsonable
from cascal.router import CascalRouter
from cascal.router.base import BaseRouter

PathLike = Union[str, Path]

#: Name of the reference variant every other one is compared with.
FULL = "full"
#: The label-free baseline reported with the variants.
BEST_CONSENSUS = "best-consensus"


@dataclass(frozen=True)
class Ablation:
    """One CASCAL variant: the :class:`CascalRouter` parameters that differ from the defaults."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def router(self, seed: int) -> CascalRouter:
        """A fresh, unfitted router of this variant for split ``seed``."""
        return CascalRouter(random_state=seed, **dict(self.params))


ABLATIONS: tuple[Ablation, ...] = (
    Ablation(FULL, {}, "CASCAL with its defaults"),
    Ablation("subject-only", {"max_niches": 1, "merge_threshold": 2.0}, "one niche per subject (no niche step)"),
    Ablation("hard-subjects", {"subject_temp": 0.0}, "nearest subject only (no soft subject mix)"),
    Ablation("equal-weights", {"z_scale": 1e-9}, "every vote weighs 0.5 (logprobs ignored)"),
    Ablation("majority", {"z_scale": 1e-9, "tau": 0.01}, "plain majority: score ~1 in the plurality, ~0 outside"),
    Ablation("no-tau", {"tau": 1.0}, "no tau sharpening (tau = 1, the original)"),
    Ablation("global-only", {"fallback_distance": 0.0, "fallback_width": 1e-9}, "one global ranking everywhere"),
    Ablation("kmeans", {"clustering": "kmeans"}, "spherical k-means instead of hierarchical clustering"),
)
ABLATIONS_BY_NAME: dict[str, Ablation] = {a.name: a for a in ABLATIONS}


def resolve_ablation_pool(spec: str, available: Sequence[str]) -> list[str]:
    """Column names of a pool: what :func:`cascal.evaluation.protocol.resolve_pool` accepts,
    including ``random:K:SEED`` (:func:`cascal.evaluation.protocol.random_pool`)."""
    return resolve_pool(spec, available)


def select_ablations(names: Optional[Sequence[str]]) -> list[Ablation]:
    """The variants asked for (all when ``None``), ``full`` always first."""
    if names is None:
        return list(ABLATIONS)
    unknown = [n for n in names if n not in ABLATIONS_BY_NAME]
    if unknown:
        raise InvalidParameterError(f"ablations: unknown variant(s) {unknown}; known: {', '.join(ABLATIONS_BY_NAME)}")
    return [ABLATIONS_BY_NAME[FULL]] + [ABLATIONS_BY_NAME[n] for n in dict.fromkeys(names) if n != FULL]


def run_ablations(
    data: Union[PathLike, ResponseMatrix],
    *,
    pools: Sequence[str] = ("large",),
    seeds: int = 5,
    variants: Optional[Sequence[str]] = None,
    out_dir: Optional[PathLike] = None,
    progress: bool = True,
    plots: bool = True,
    out_of_range: Literal["error", "unparsable"] = "unparsable",
) -> dict[str, Any]:
    """Fit and score every variant on every pool and seed; return (and with ``out_dir`` write)
    the results.

    Args:
        data: a dataset folder with real gold and embeddings, or a loaded :class:`ResponseMatrix`.
        pools: pool specifications (:func:`resolve_ablation_pool`).
        seeds: number of splits (seeds ``0..seeds-1``), the same for every variant.
        variants: variant names (:data:`ABLATIONS`); ``None`` = all. ``full`` is always run.
        out_dir: when given, write ``results.json``, ``report.md`` and ``ablations.png`` there.
        progress: show a progress bar.
        plots: write the PNG (only with ``out_dir``).
        out_of_range: how a folder's letters beyond their options are read (see ``run_evaluation``).

    Returns:
        ``{"config", "cascal_version", "data_path", "created", "pools": {pool: {...}}}``; each pool
        holds ``models``, ``runs`` (one record per seed × variant, with ``niches``, the number of
        niches fitted), ``summary`` (mean ± std per variant), ``delta`` (per variant, the paired
        difference to ``full`` of top-1 and top-3, mean ± std over seeds) and ``oracle``.
    """
    from cascal import __version__

    if isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)) or seeds < 1:
        raise InvalidParameterError(f"seeds: must be a positive integer, got {seeds!r}")
    if not pools:
        raise InvalidParameterError("pools: give at least one pool")
    chosen = select_ablations(variants)
    dataset, data_path = load_evaluation_data(data, out_of_range)
    unlabelled = int((gold_of(dataset) < 0).sum())
    if unlabelled:
        raise ProtocolError(f"data: {unlabelled} question(s) have no gold answer; the evaluation needs real gold")
    results: dict[str, Any] = {
        "config": {
            "pools": list(pools),
            "seeds": list(range(int(seeds))),
            "variants": {a.name: {"params": dict(a.params), "description": a.description} for a in chosen},
            "train_fraction": 0.6,
        },
        "cascal_version": __version__,
        "data_path": data_path,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "pools": {},
    }
    for spec in pools:
        pool = resolve_ablation_pool(spec, dataset.model_names)
        results["pools"][spec] = ablate_pool(dataset, pool, chosen, int(seeds), progress=progress, label=spec)
    if out_dir is not None:
        write_ablation_outputs(results, Path(out_dir), plots=plots)
    return results


def ablate_pool(
    data: ResponseMatrix,
    pool: Sequence[str],
    variants: Sequence[Ablation],
    n_seeds: int,
    *,
    progress: bool = True,
    label: str = "pool",
) -> dict[str, Any]:
    """Every variant (and ``best-consensus``) on every seed of one pool; see :func:`run_ablations`."""
    runs: list[dict[str, Any]] = []
    oracle: list[float] = []
    routers: list[tuple[str, Any]] = [(a.name, a.router) for a in variants]
    routers.append((BEST_CONSENSUS, lambda seed: BestSingleConsensus()))
    bar = tqdm(total=n_seeds * len(routers), desc=f"ablations {label}", unit="fit", disable=not progress, leave=False)
    try:
        for seed in range(n_seeds):
            split = make_split(data, pool, seed)
            oracle.append(oracle_accuracy(split.test.answers, gold_of(split.test)))
            blank = split.train.with_gold(np.full(split.train.n_questions, NO_ANSWER, dtype=np.int8))
            for name, factory in routers:
                router: BaseRouter = factory(seed)
                bar.set_postfix_str(f"seed {seed} {name}")
                record = evaluate_router(router, blank, split)
                record.update(seed=seed, router=name, key="none", niches=_niche_count(router))
                runs.append(record)
                bar.update(1)
    finally:
        bar.close()
    summary = summarize_runs(runs)
    for row in summary:
        counts = [r["niches"] for r in runs if r["router"] == row["router"] and r["niches"] is not None]
        row["niches"] = _summary(counts) if counts else None
    mean, std = mean_std(oracle)
    return {
        "models": list(pool),
        "runs": runs,
        "summary": summary,
        "delta": paired_deltas(runs),
        "oracle": {"mean": mean, "std": std, "per_seed": oracle},
        "subjects": int(np.unique(data.subjects).size),
    }


def _niche_count(router: BaseRouter) -> Optional[int]:
    centroids = getattr(router, "centroids_", None)
    return None if centroids is None else int(centroids.shape[0])


def _summary(values: Sequence[float]) -> dict[str, Any]:
    mean, std = mean_std(values)
    return {"mean": mean, "std": std}


def paired_deltas(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per router, top-1 and top-3 minus ``full``'s on the same seed: mean ± std over seeds, the
    per-seed values, and how many seeds the router beat / lost to ``full``."""
    full = {r["seed"]: r for r in runs if r["router"] == FULL}
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r["router"] for r in runs):
        mine = [r for r in runs if r["router"] == name and r["seed"] in full]
        out[name] = {}
        for metric in ("top1", "top3"):
            diffs = [r[metric] - full[r["seed"]][metric] for r in mine]
            mean, std = mean_std(diffs)
            out[name][metric] = {
                "mean": mean,
                "std": std,
                "per_seed": diffs,
                "wins": sum(d > 0 for d in diffs),
                "losses": sum(d < 0 for d in diffs),
            }
    return out


# ---------------------------------------------------------------------- report
def _pct(summary: Optional[Mapping[str, Any]]) -> str:
    if not summary or summary.get("mean") is None:
        return "—"
    return f"{100 * summary['mean']:.1f} ± {100 * (summary.get('std') or 0.0):.1f}"


def _delta(summary: Mapping[str, Any]) -> str:
    mean = summary.get("mean")
    if mean is None:
        return "—"
    return f"{100 * mean:+.2f} ± {100 * (summary.get('std') or 0.0):.2f} ({summary['wins']}↑ {summary['losses']}↓)"


def ablation_table(pool: Mapping[str, Any]) -> str:
    """One row per variant: top-1, its paired difference to ``full``, top-3 likewise (points, mean
    ± std over seeds, seeds better ↑ / worse ↓), niches fitted, fit seconds; then the oracle."""
    header = [
        "variant",
        "top-1 (%)",
        "Δ top-1 vs full (pts)",
        "top-3 vote (%)",
        "Δ top-3 vs full (pts)",
        "niches",
        "fit s",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in pool["summary"]:
        delta = pool["delta"][row["router"]]
        niches = row.get("niches")
        cells = [
            row["router"],
            _pct(row["top1"]),
            "—" if row["router"] == FULL else _delta(delta["top1"]),
            _pct(row["top3"]),
            "—" if row["router"] == FULL else _delta(delta["top3"]),
            "—" if not niches else f"{niches['mean']:.1f}",
            f"{row['fit_seconds']['mean']:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(f"| oracle (any pool model right) | {_pct(pool['oracle'])} | | {_pct(pool['oracle'])} | | | |")
    return "\n".join(lines)


def delta_matrix(results: Mapping[str, Any], metric: str = "top1") -> str:
    """Variants × pools: mean paired difference to ``full`` (points) of ``metric``."""
    pools = list(results["pools"])
    names = [n for n in results["pools"][pools[0]]["delta"] if n != FULL]
    header = ["variant", *[f"`{p}`" for p in pools]]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for name in names:
        cells = [f"{100 * results['pools'][p]['delta'][name][metric]['mean']:+.2f}" for p in pools]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return "\n".join(lines)


def write_ablation_outputs(results: Mapping[str, Any], out_dir: Path, *, plots: bool = True) -> Path:
    """``results.json``, ``report.md`` (tables per pool and the difference matrices) and, with
    ``plots``, ``ablations.png``; returns the report path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    clean = to_jsonable(results)
    (out_dir / "results.json").write_text(json.dumps(clean, indent=1, allow_nan=False))
    cfg = clean["config"]
    parts = [
        "# cascal ablations",
        "",
        f"cascal {clean['cascal_version']} · data `{clean.get('data_path')}` · {clean.get('created')}",
        f"seeds {cfg['seeds']} · 60/40 split stratified by category · label-free (no key) · "
        "Δ = paired difference to `full` on the same seed",
        "",
        "| variant | parameters | what it removes |",
        "|---|---|---|",
    ]
    for name, variant in cfg["variants"].items():
        params = ", ".join(f"{k}={v!r}" for k, v in variant["params"].items()) or "defaults"
        parts.append(f"| {name} | {params} | {variant['description']} |")
    parts += [
        "",
        "## Δ top-1 vs full (points), every pool",
        delta_matrix(clean, "top1"),
        "",
        "## Δ top-3 vote vs full (points), every pool",
        delta_matrix(clean, "top3"),
        "",
    ]
    for name, pool in clean["pools"].items():
        models = ", ".join(m.removesuffix("_5shots") for m in pool["models"])
        parts += [f"## Pool `{name}`: {models}", "", ablation_table(pool), ""]
    if plots:
        figure = plot_ablations(clean, out_dir / "ablations.png")
        parts += [f"![{figure.name}]({figure.name})", ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(parts))
    return path


def plot_ablations(results: Mapping[str, Any], path: Path) -> Path:
    """Heat maps (variants × pools) of the paired top-1 and top-3 differences to ``full``."""
    from cascal.evaluation.plots import plt

    pools = list(results["pools"])
    names = [n for n in results["pools"][pools[0]]["delta"] if n != FULL]
    fig, axes = plt.subplots(1, 2, figsize=(max(9.0, 2.2 * len(pools) + 4), 0.5 * len(names) + 2.2))
    for ax, metric, title in zip(axes, ("top1", "top3"), ("Δ top-1 vs full (pts)", "Δ top-3 vote vs full (pts)")):
        grid = np.array([[100 * results["pools"][p]["delta"][n][metric]["mean"] for p in pools] for n in names])
        bound = max(1.0, float(np.abs(grid).max()))
        ax.imshow(grid, cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
        for i in range(len(names)):
            for j in range(len(pools)):
                ax.text(j, i, f"{grid[i, j]:+.1f}", ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(pools)), pools, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
