"""Label-budget curves: accuracy against the number of gold labels (``cascal evaluate --labels``).

Per pool and seed (the harness' 60/40 split), CASCAL is fitted once without labels on the
training answers; every budget ``n`` then draws ``n`` labels **from the training split only**
(``random``: ``draws`` uniform draws, seeded by ``(seed, n, draw)``; ``active``: the router's own
:meth:`~cascal.router.CascalRouter.suggest_labels`, deterministic, one draw) and scores on the test
split's gold:

* ``cascal+labels`` — the label-free fit with the labels
  (:meth:`~cascal.router.CascalRouter.with_labels`, docs/algorithm.md#labels); its run also records
  which candidate router the labels chose (``choice``);
* ``label-free`` — the label-free CASCAL again, so that every budget has the three curves the goal
  compares (CASCAL + labels, label-free, best on labels);
* ``best-single-labels`` — the model with the highest accuracy on the labelled questions (ties:
  column order), top-3 = the vote of the three best;
* ``knn-labels`` — :class:`cascal.baselines.KNNCorrectness` fitted on the labelled questions only.

Budget 0 is the label-free CASCAL (the two label baselines have nothing to fit on). Every record
also carries the regret against the best single model on the test gold. :func:`goal_table` puts the
comparison of the goal in one column: CASCAL + labels minus the better of label-free and best on
labels (means over seeds and draws).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
from tqdm.auto import tqdm

from cascal.baselines import KNNCorrectness
from cascal.data import NO_ANSWER, ResponseMatrix
from cascal.errors import InvalidParameterError
from cascal.evaluation.harness import VOTE_K, embeddings_of, gold_of, load_evaluation_data
from cascal.evaluation.metrics import ensemble_correct, mean_std, model_accuracy
from cascal.evaluation.protocol import expand_pools, make_split
from cascal.evaluation.report import _table
from cascal.evaluation.results import to_jsonable
from cascal.router import CascalRouter

STRATEGIES = ("random", "active")
ROUTERS = ("cascal+labels", "label-free", "best-single-labels", "knn-labels")


def draw_labels(train: ResponseMatrix, n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_train,)`` labels: the gold of ``n`` uniformly drawn training rows, -1 elsewhere."""
    y = np.full(train.n_questions, NO_ANSWER, dtype=np.int64)
    rows = rng.choice(train.n_questions, min(n, train.n_questions), replace=False)
    y[rows] = gold_of(train)[rows]
    return y


def _scores(ranked: np.ndarray, test: ResponseMatrix, confidence: Optional[np.ndarray] = None) -> dict[str, float]:
    gold = gold_of(test)
    return {
        "top1": float(ensemble_correct(ranked[:, :1], test.answers, gold, confidence).mean()),
        "top3": float(ensemble_correct(ranked[:, :VOTE_K], test.answers, gold, confidence).mean()),
    }


def models_by_labels(train: ResponseMatrix, y: np.ndarray) -> np.ndarray:
    """Model indices by their number of correct answers on the labelled rows of ``train`` (``y``:
    answer index per row, ``-1`` = unlabelled), most first; ties keep the pool order. Its first
    entry is the harness' "best single model on the labels"."""
    rows = np.flatnonzero(y >= 0)
    correct = (train.answers[rows] == y[rows][:, None]).sum(axis=0)
    return np.argsort(-correct, kind="stable")


def _best_single(train: ResponseMatrix, y: np.ndarray, test: ResponseMatrix) -> dict[str, float]:
    order = models_by_labels(train, y)[:VOTE_K]
    return _scores(np.broadcast_to(order, (test.n_questions, order.size)), test)


def _knn(train: ResponseMatrix, y: np.ndarray, test: ResponseMatrix) -> dict[str, float]:
    rows = np.flatnonzero(y >= 0)
    labelled = train.subset(rows).with_gold(y[rows].astype(np.int8))
    router = KNNCorrectness().fit(embeddings_of(labelled), labelled)
    return _scores(router.route(embeddings_of(test), top_k=min(VOTE_K, test.n_models)).ranked, test)


def run_label_budget(
    data: Union[str, Path, ResponseMatrix],
    *,
    pools: Sequence[str] = ("large",),
    budgets: Sequence[int] = (0, 10, 20, 50, 100),
    strategies: Sequence[str] = STRATEGIES,
    seeds: int = 5,
    draws: int = 3,
    out_dir: Optional[Union[str, Path]] = None,
    progress: bool = True,
    plots: bool = True,
) -> dict[str, Any]:
    """Label-budget curves on a dataset with real gold (module docstring).

    Returns:
        ``{"config", "pools": {name: {"models", "runs", "summary"}}}``: one run per seed ×
        strategy × budget × draw × router (``top1``, ``top3``, ``regret1`` = best single model on
        the test gold minus ``top1``), summaries as mean ± std over seeds and draws. With
        ``out_dir``: ``results.json``, ``report.md`` and ``label_budget.png``.
    """
    budgets = [int(b) for b in budgets]
    if not budgets or min(budgets) < 0:
        raise InvalidParameterError(f"labels: budgets must be non-negative integers, got {budgets}")
    unknown = sorted(set(strategies) - set(STRATEGIES))
    if unknown or not strategies:
        raise InvalidParameterError(f"label_strategy: choose from {', '.join(STRATEGIES)}, got {list(strategies)}")
    if seeds < 1 or draws < 1:
        raise InvalidParameterError(f"seeds, label_draws: must be positive, got {seeds}, {draws}")
    dataset, data_path = load_evaluation_data(data, "unparsable")
    results: dict[str, Any] = {
        "config": {
            "pools": list(pools),
            "labels": budgets,
            "label_strategies": list(strategies),
            "seeds": list(range(seeds)),
            "label_draws": draws,
            "routers": list(ROUTERS),
        },
        "data_path": data_path,
        "pools": {},
    }
    expanded = expand_pools(pools, dataset)
    bar = tqdm(total=len(expanded) * seeds, desc="label budget", unit="fit", disable=not progress, leave=False)
    try:
        for name, columns in expanded:
            runs = []
            for seed in range(seeds):
                runs.extend(_one_seed(dataset, columns, seed, budgets, list(strategies), draws))
                bar.update(1)
            results["pools"][name] = {"models": columns, "runs": runs, "summary": summarize(runs)}
    finally:
        bar.close()
    if out_dir is not None:
        write_label_budget(results, Path(out_dir), plots=plots)
    return results


def _one_seed(
    data: ResponseMatrix, columns: list[str], seed: int, budgets: list[int], strategies: list[str], draws: int
) -> list[dict[str, Any]]:
    split = make_split(data, columns, seed)
    train, test = split.train, split.test
    blank = train.with_gold(np.full(train.n_questions, NO_ANSWER, dtype=np.int8))
    X = embeddings_of(train)
    router = CascalRouter(random_state=seed).fit(X, blank)
    base = router.label_base(X, blank)
    best_gold = float(model_accuracy(test.answers, gold_of(test)).max())
    runs: list[dict[str, Any]] = []

    def record(strategy: str, n: int, draw: int, name: str, scores: dict[str, float], **extra: Any) -> None:
        runs.append(
            dict(
                seed=seed,
                strategy=strategy,
                n_labels=n,
                draw=draw,
                router=name,
                **scores,
                regret1=best_gold - scores["top1"],
                **extra,
            )
        )

    free = _scores(router.route(embeddings_of(test), top_k=min(VOTE_K, test.n_models)).ranked, test)
    for strategy in strategies:
        for n in budgets:
            if n == 0:
                record(strategy, 0, 0, "cascal+labels", free)
                continue
            for draw in range(draws if strategy == "random" else 1):
                if strategy == "random":
                    y = draw_labels(train, n, np.random.default_rng((seed, n, draw)))
                else:
                    rows = router.suggest_labels(X, blank, n)
                    y = np.full(train.n_questions, NO_ANSWER, dtype=np.int64)
                    y[rows] = gold_of(train)[rows]
                calibrated = router.with_labels(y, base)
                ranked = calibrated.route(embeddings_of(test), top_k=min(VOTE_K, test.n_models)).ranked
                record(strategy, n, draw, "cascal+labels", _scores(ranked, test), choice=_chosen(calibrated))
                record(strategy, n, draw, "label-free", free)
                record(strategy, n, draw, "best-single-labels", _best_single(train, y, test))
                record(strategy, n, draw, "knn-labels", _knn(train, y, test))
    return runs


def _chosen(router: CascalRouter) -> str:
    choice = getattr(router, "label_choice_", None)
    return "label-free" if choice is None else str(choice.chosen)


def summarize(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± std over seeds and draws of every (strategy, budget, router)."""
    groups: dict[tuple[str, int, str], list[Mapping[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["strategy"], run["n_labels"], run["router"]), []).append(run)
    out = []
    for (strategy, n, router), group in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        row: dict[str, Any] = {"strategy": strategy, "n_labels": n, "router": router, "n_runs": len(group)}
        for metric in ("top1", "top3", "regret1"):
            mean, std = mean_std([g[metric] for g in group])
            row[metric] = {"mean": mean, "std": std}
        out.append(row)
    return out


def pooled_summary(results: Mapping[str, Any], prefix: str) -> list[dict[str, Any]]:
    """The summary over every pool whose name starts with ``prefix`` (e.g. the 24 ``lone-strong``
    pools), runs pooled."""
    runs = [r for name, pool in results["pools"].items() if name.startswith(prefix) for r in pool["runs"]]
    return summarize(runs)


def budget_table(summary: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table: strategy, labels, router, top-1, top-3, regret (points, mean ± std)."""

    def pct(s: Mapping[str, Any]) -> str:
        return f"{100 * s['mean']:.1f} ± {100 * (s['std'] or 0.0):.1f}"

    rows = [
        [r["strategy"], str(r["n_labels"]), r["router"], pct(r["top1"]), pct(r["top3"]), pct(r["regret1"])]
        for r in summary
    ]
    return _table(["labels drawn", "labels", "router", "top-1 (%)", "top-3 vote (%)", "top-1 regret (pts)"], rows)


def goal_table(summary: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table of the goal: per strategy and budget, top-1 of CASCAL + labels, label-free
    CASCAL and the best single model on the labels, and CASCAL + labels minus the better of the
    other two (points; the goal asks for at least -0.5)."""
    by_key: dict[tuple[str, int], dict[str, float]] = {}
    for r in summary:
        by_key.setdefault((r["strategy"], r["n_labels"]), {})[r["router"]] = 100 * r["top1"]["mean"]
    rows = []
    for (strategy, n), top1 in sorted(by_key.items()):
        if n == 0 or not {"cascal+labels", "label-free", "best-single-labels"} <= set(top1):
            continue
        better = max(top1["label-free"], top1["best-single-labels"])
        rows.append(
            [
                strategy,
                str(n),
                f"{top1['cascal+labels']:.1f}",
                f"{top1['label-free']:.1f}",
                f"{top1['best-single-labels']:.1f}",
                f"{top1['cascal+labels'] - better:+.1f}",
            ]
        )
    return _table(
        ["labels drawn", "labels", "CASCAL + labels", "label-free", "best on labels", "vs the better (pts)"], rows
    )


def choice_counts(runs: Sequence[Mapping[str, Any]]) -> dict[tuple[str, int], dict[str, int]]:
    """Per (strategy, budget): how often CASCAL + labels chose each candidate router."""
    out: dict[tuple[str, int], dict[str, int]] = {}
    for r in runs:
        if "choice" in r:
            counts = out.setdefault((r["strategy"], r["n_labels"]), {})
            counts[r["choice"]] = counts.get(r["choice"], 0) + 1
    return out


def _groups(results: Mapping[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Pools to report: every pool, except that the ``lone-strong/...`` pools are pooled into one."""
    out, seen = [], set()
    for name, pool in results["pools"].items():
        head = name.split("/")[0] if "/" in name else name
        if "/" in name:
            if head not in seen:
                seen.add(head)
                out.append(
                    (
                        f"{head} ({sum(n.startswith(head + '/') for n in results['pools'])} pools)",
                        pooled_summary(results, head + "/"),
                    )
                )
        else:
            out.append((name, pool["summary"]))
    return out


def write_label_budget(results: Mapping[str, Any], out_dir: Path, *, plots: bool = True) -> None:
    """``results.json``, ``report.md`` (one table per pool) and ``label_budget.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(to_jsonable(results), indent=1))
    lines = ["# Label-budget curves", ""]
    for name, summary in _groups(results):
        lines += [f"## {name}", "", goal_table(summary), "", budget_table(summary), ""]
    if plots:
        from cascal.evaluation.plots import plot_label_budget

        plot_label_budget(_groups(results), out_dir / "label_budget.png")
        lines += ["![accuracy against labels](label_budget.png)", ""]
    (out_dir / "report.md").write_text("\n".join(lines))
