"""Cost-accuracy evaluation of cost-aware CASCAL (``cascal evaluate --cost``; docs/algorithm.md#cost-aware-routing).

Per pool and seed (the harness's 60/40 split): CASCAL is fitted label-free on the training split
with the prices; its cost estimates come from the training answers' own token counts. On the test
split every query's **true** cost per model comes from the test split's own token counts
(``ResponseMatrix.cost``; never the router's estimates), and correctness from the real gold.

- Single models are points (mean true cost, top-1 accuracy); their upper convex hull is what
  randomly mixing two single models reaches.
- CASCAL's curve: top-1 routing at every weight of a geometric grid (``0`` plus
  :data:`WEIGHT_DECADES` decades below and above ``1 / max global cost``); each point is (mean true
  cost, accuracy, mean expected cost).
- Budgets: for each fraction ``f`` of :data:`BUDGET_FRACTIONS`, the budget is ``f x`` the mean true
  cost of the most accurate single model (by gold); :meth:`CascalRouter.cost_weight_for` picks the
  weight from the test queries' embeddings and the router's own estimates (no gold, no true
  costs), and the table reports the accuracy and true cost it reaches, next to the best single
  model within the budget and the hull at the budget.
- APGR (after RouteLLM's average performance gap recovered): ``PGR(x) = (A(x) - a_cheap) /
  (a_best - a_cheap)`` where ``A(x)`` is the best accuracy of a curve point whose true cost is at
  most ``x`` times the best model's cost (``a_cheap`` when none is), ``a_cheap`` the accuracy of
  the cheapest single model and ``a_best`` of the most accurate one; APGR is the mean of ``PGR``
  over ``x`` uniform on ``[0, 1]`` (:data:`APGR_POINTS` points). 1 = the best model's accuracy at
  no cost, 0 = no better than the cheapest model.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from cascal.data import NO_ANSWER, ResponseMatrix
from cascal.errors import ProtocolError
from cascal.evaluation.metrics import mean_std
from cascal.evaluation.protocol import make_split
from cascal.router.costs import Prices, question_costs

#: Fractions of the most accurate single model's mean cost the table reports.
BUDGET_FRACTIONS = (0.05, 0.10, 0.25, 0.50)
#: The weight grid spans this many decades either side of ``1 / max global cost``.
WEIGHT_DECADES = 3
#: Points of the weight grid besides 0.
N_WEIGHTS = 48
#: Points of the APGR integral.
APGR_POINTS = 1001

#: Prices used when none are given: 1 USD per million tokens in and out (the curve counts tokens).
TOKEN_PRICES = 1.0


def cost_data(dataset: ResponseMatrix, folder: Optional[Path], prices: Prices) -> tuple[Optional[ResponseMatrix], str]:
    """``dataset`` with completion tokens in ``cost`` and a note on where they came from, or
    ``(None, reason)`` when the data has no token counts (the cost curve is then skipped).

    ``cost.csv`` (tokens) wins; else a folder's ``response_chars.csv`` is read and divided by
    ``prices.chars_per_token``."""
    if dataset.cost is not None:
        return dataset, "completion tokens from cost.csv"
    if folder is not None:
        from dataclasses import replace

        from cascal.io import RESPONSE_CHARS_FILE, load_model_table

        if (folder / RESPONSE_CHARS_FILE).exists():
            chars = load_model_table(folder, dataset)
            tokens = (chars / np.float32(prices.chars_per_token)).astype(np.float32)
            return replace(dataset, cost=tokens), (
                f"completion tokens = {RESPONSE_CHARS_FILE} / {prices.chars_per_token:g} characters per token"
            )
    return None, "the data has no token counts (no cost.csv, no response_chars.csv): cost curve skipped"


def upper_hull(points: np.ndarray) -> np.ndarray:
    """Vertices of the upper-left convex hull of ``(cost, accuracy)`` points, by increasing cost,
    from the cheapest point to the most accurate one."""
    order = np.lexsort((-points[:, 1], points[:, 0]))
    hull: list[np.ndarray] = []
    for p in points[order]:
        if hull and p[1] <= hull[-1][1]:
            continue  # costs more, not more accurate
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) >= 0:  # hull[-1] lies under the chord
                hull.pop()
            else:
                break
        hull.append(p)
    return np.asarray(hull)


def hull_accuracy(hull: np.ndarray, cost: float) -> float:
    """Accuracy of the hull at ``cost`` (NaN below the cheapest point, flat above the last)."""
    if cost < hull[0, 0]:
        return float("nan")
    return float(np.interp(cost, hull[:, 0], hull[:, 1]))


def frontier_accuracy(costs: np.ndarray, accs: np.ndarray, budget: float, floor: float) -> float:
    """Best accuracy among points costing at most ``budget`` (``floor`` when none does)."""
    ok = costs <= budget
    return float(accs[ok].max()) if ok.any() else floor


def apgr(costs: np.ndarray, accs: np.ndarray, best_cost: float, acc_best: float, acc_cheap: float) -> float:
    """Average performance gap recovered (module docs)."""
    if acc_best <= acc_cheap:
        return float("nan")
    xs = np.linspace(0.0, 1.0, APGR_POINTS) * best_cost
    reach = np.array([frontier_accuracy(costs, accs, x, acc_cheap) for x in xs])
    return float(np.mean((reach - acc_cheap) / (acc_best - acc_cheap)))


def evaluate_cost_seed(
    data: ResponseMatrix, pool: Sequence[str], prices: Prices, seed: int, *, n_weights: int = N_WEIGHTS
) -> dict[str, Any]:
    """One seed of the cost evaluation (module docs); plain numbers and lists."""
    from cascal.router import CascalRouter

    split = make_split(data, pool, seed)
    train, test = split.train, split.test
    blank = train.with_gold(np.full(train.n_questions, NO_ANSWER, dtype=np.int8))
    if train.embeddings is None or test.embeddings is None:  # pragma: no cover - make_split checks
        raise ProtocolError("data: no embeddings")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # unpriced / unanswered models: reported once by the caller
        router = CascalRouter(random_state=seed).fit(train.embeddings, blank, prices=prices)
        true_costs = question_costs(test, prices, warn=False)
    true_costs = np.where(np.isfinite(true_costs), true_costs, 0.0)  # not asked: nothing was paid
    correct = test.answers == np.asarray(test.gold)[:, None]
    model_acc = correct.mean(axis=0)
    model_cost = true_costs.mean(axis=0)
    best, cheap = int(np.argmax(model_acc)), int(np.argmin(model_cost))
    X = test.embeddings
    rows = np.arange(test.n_questions)

    def at(weight: float) -> dict[str, float]:
        routing = router.route(X, top_k=1, cost_weight=weight)
        first = routing.ranked[:, 0]
        assert routing.expected_cost is not None
        return {
            "weight": float(weight),
            "accuracy": float(correct[rows, first].mean()),
            "true_cost": float(true_costs[rows, first].mean()),
            "expected_cost": float(routing.expected_cost.mean()),
        }

    assert router.global_costs_ is not None
    scale = 1.0 / max(float(router.global_costs_.max()), 1e-12)
    weights = [0.0, *(scale * np.logspace(-WEIGHT_DECADES, WEIGHT_DECADES, n_weights))]
    curve = [at(w) for w in weights]
    expected = np.array([p["expected_cost"] for p in curve])
    increases = np.diff(expected)
    budgets = []
    for fraction in BUDGET_FRACTIONS:
        budget = fraction * float(model_cost[best])
        entry: dict[str, Any] = {"fraction": fraction, "budget": budget}
        try:
            entry.update(at(router.cost_weight_for(budget, X, top_k=1)))
        except ValueError as exc:  # below the cheapest reachable routing
            entry.update(weight=None, accuracy=None, true_cost=None, expected_cost=None, note=str(exc))
        within = model_cost <= budget
        entry["best_single_within"] = float(model_acc[within].max()) if within.any() else None
        entry["hull"] = hull_accuracy(upper_hull(np.column_stack([model_cost, model_acc])), budget)
        entry["curve_frontier"] = frontier_accuracy(
            np.array([p["true_cost"] for p in curve]), np.array([p["accuracy"] for p in curve]), budget, float("nan")
        )
        budgets.append(entry)
    return {
        "seed": seed,
        "models": {m: {"accuracy": float(model_acc[i]), "true_cost": float(model_cost[i])} for i, m in enumerate(pool)},
        "best_model": pool[best],
        "cheapest_model": pool[cheap],
        "curve": curve,
        "monotone_expected_cost": bool((increases <= 1e-9 * max(expected.max(), 1e-12)).all()),
        "largest_expected_cost_increase": float(max(increases.max(initial=0.0), 0.0)),
        "budgets": budgets,
        "apgr": apgr(
            np.array([p["true_cost"] for p in curve]),
            np.array([p["accuracy"] for p in curve]),
            float(model_cost[best]),
            float(model_acc[best]),
            float(model_acc[cheap]),
        ),
    }


def evaluate_cost(
    data: ResponseMatrix,
    pool: Sequence[str],
    prices: Prices,
    n_seeds: int,
    *,
    note: str = "",
    progress: bool = True,
) -> dict[str, Any]:
    """All seeds of the cost evaluation and their summary (mean ± std over seeds)."""
    runs = []
    for seed in range(n_seeds):
        if progress:
            print(f"cost curve: seed {seed + 1}/{n_seeds}", file=sys.stderr)
        runs.append(evaluate_cost_seed(data, pool, prices, seed))
    summary = []
    for j, fraction in enumerate(BUDGET_FRACTIONS):
        row: dict[str, Any] = {"fraction": fraction}
        for key in ("budget", "accuracy", "true_cost", "expected_cost", "best_single_within", "hull", "curve_frontier"):
            values = [r["budgets"][j][key] for r in runs]
            finite = [float(v) for v in values if v is not None and np.isfinite(v)]
            row[key] = dict(zip(("mean", "std"), mean_std(finite))) if finite else None
        best_acc = [r["models"][r["best_model"]]["accuracy"] for r in runs]
        kept = [
            r["budgets"][j]["accuracy"] / b for r, b in zip(runs, best_acc) if r["budgets"][j]["accuracy"] is not None
        ]
        row["share_of_best_accuracy"] = dict(zip(("mean", "std"), mean_std(kept))) if kept else None
        over = [
            r["budgets"][j]["true_cost"] / r["budgets"][j]["budget"] - 1
            for r in runs
            if r["budgets"][j]["true_cost"] is not None
        ]
        row["true_cost_over_budget"] = dict(zip(("mean", "std"), mean_std(over))) if over else None
        summary.append(row)
    return {
        "note": note,
        "prices": "given" if prices.per_model else f"none: {TOKEN_PRICES:g} USD per million tokens in and out",
        "runs": runs,
        "summary": summary,
        "apgr": dict(zip(("mean", "std"), mean_std([r["apgr"] for r in runs]))),
        "monotone_expected_cost": all(r["monotone_expected_cost"] for r in runs),
        "models": {
            m: {
                "accuracy": float(np.mean([r["models"][m]["accuracy"] for r in runs])),
                "true_cost": float(np.mean([r["models"][m]["true_cost"] for r in runs])),
            }
            for m in pool
        },
    }


def cost_table(result: Mapping[str, Any]) -> str:
    """Markdown table of :func:`evaluate_cost`'s summary."""

    def num(s: Optional[Mapping[str, float]], pct: bool = False, digits: int = 3) -> str:
        if s is None:
            return "–"
        if pct:
            return f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}"
        return f"{s['mean']:.{digits}g} ± {s['std']:.2g}"

    lines = [
        "| budget (share of best model's cost) | budget USD/1k | CASCAL top-1 % | of best model's accuracy % "
        "| true cost USD/1k | expected USD/1k | best single model within % | single-model hull % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["summary"]:
        lines.append(
            f"| {100 * row['fraction']:.0f}% | {num(row['budget'])} | {num(row['accuracy'], True)} "
            f"| {num(row['share_of_best_accuracy'], True)} | {num(row['true_cost'])} | {num(row['expected_cost'])} "
            f"| {num(row['best_single_within'], True)} | {num(row['hull'], True)} |"
        )
    apgr_value = result["apgr"]
    lines.append("")
    lines.append(
        f"APGR {apgr_value['mean']:.3f} ± {apgr_value['std']:.3f}; expected cost monotone in the weight on every "
        f"seed: {result['monotone_expected_cost']}"
    )
    return "\n".join(lines)


def plot_cost_curve(result: Mapping[str, Any], title: str, path: Path) -> Path:
    """CASCAL's cost-accuracy curve (mean over seeds per weight), the single models (points) and
    their upper convex hull; log cost axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    cost = np.mean([[p["true_cost"] for p in r["curve"]] for r in runs], axis=0)
    acc = np.mean([[p["accuracy"] for p in r["curve"]] for r in runs], axis=0)
    models = result["models"]
    points = np.array([[m["true_cost"], m["accuracy"]] for m in models.values()])
    hull = upper_hull(points)
    fig, ax = plt.subplots(figsize=(7.5, 5))
    ax.plot(cost, 100 * acc, "-o", ms=3, color="#4c72b0", label="CASCAL (cost weight sweep)")
    ax.plot(hull[:, 0], 100 * hull[:, 1], "--", color="#8c8c8c", label="single-model convex hull")
    ax.scatter(points[:, 0], 100 * points[:, 1], color="#c44e52", zorder=3, label="single models")
    for name, (x, y) in zip(models, points):
        short = name[: -len("_5shots")] if name.endswith("_5shots") else name
        ax.annotate(short, (x, 100 * y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("mean true cost, USD per 1,000 queries (log)")
    ax.set_ylabel("top-1 accuracy %")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
