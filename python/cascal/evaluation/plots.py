"""PNG figures of an evaluation: accuracy bars, a who-wins-where map and a niche dendrogram.

The bar and heat-map functions take plain rows and arrays (:func:`plot_accuracy_bars`,
:func:`plot_who_wins`), so the demo draws its figures with them too."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.cluster.hierarchy import dendrogram, linkage  # noqa: E402

from cascal.evaluation.results import NO_KEY, FittedExample  # noqa: E402

_KEY_COLORS = {NO_KEY: "#4c72b0", "real": "#55a868", "strong": "#8172b2", "medium": "#ccb974", "weak": "#c44e52"}
_FALLBACK_COLORS = ["#64b5cd", "#dd8452", "#937860", "#da8bc3", "#8c8c8c"]


def _short(model: str) -> str:
    return model[: -len("_5shots")] if model.endswith("_5shots") else model


def _key_label(key: str) -> str:
    """Legend text of an evaluation key source."""
    return "label-free (no key)" if key == NO_KEY else f"key: {key}"


def plot_accuracy(pool: Mapping[str, Any], title: str, path: Path) -> Path:
    """Grouped bars of one evaluated pool (:func:`plot_accuracy_bars` of its ``summary`` rows, error
    bars = std over seeds, the oracle dashed)."""
    oracle = pool["oracle"]["mean"] if "oracle" in pool else None
    return plot_accuracy_bars(pool["summary"], title, path, oracle=oracle)


def plot_accuracy_bars(
    rows: Sequence[Mapping[str, Any]],
    title: str,
    path: Path,
    *,
    oracle: Optional[float] = None,
    key_label: Callable[[str], str] = _key_label,
    ylabel: str = "accuracy on the test split (%)",
) -> Path:
    """Grouped bars: one group per router, one bar per key (the data a router was trained with) in a
    colour per key; top-1 and top-3 vote accuracy side by side.

    Args:
        rows: one dict per (router, key) with ``router``, ``key``, and ``top1`` / ``top3`` as
            ``{"mean": accuracy in [0, 1], "std": spread or None}`` (a std draws an error bar); the
            rows of an evaluation summary have this shape.
        title: the figure title.
        path: the PNG file to write.
        oracle: an accuracy in [0, 1] drawn as a dashed "oracle" line (and the y-axis top), or ``None``.
        key_label: legend text of a key.
        ylabel: the y-axis label.
    """
    routers = list(dict.fromkeys(row["router"] for row in rows))
    keys = list(dict.fromkeys(row["key"] for row in rows))
    colors = {k: _KEY_COLORS.get(k, _FALLBACK_COLORS[i % len(_FALLBACK_COLORS)]) for i, k in enumerate(keys)}
    fig, axes = plt.subplots(1, 2, figsize=(min(18.0, max(9.0, 1.1 * len(routers) * 2)), 5.2), sharey=True)
    lows = []
    for ax, metric, label in zip(axes, ("top1", "top3"), ("top-1 accuracy", "top-3 vote accuracy")):
        for r, router in enumerate(routers):
            group = [row for row in rows if row["router"] == router]
            width = 0.8 / len(group)
            for j, row in enumerate(group):
                mean = 100 * row[metric]["mean"]
                std = 100 * (row[metric].get("std") or 0.0)
                lows.append(mean - std)
                x = r - 0.4 + width * (j + 0.5)
                ax.bar(
                    x,
                    mean,
                    width,
                    yerr=std if std else None,
                    color=colors[row["key"]],
                    capsize=2,
                    label=key_label(row["key"]),
                )
        if oracle is not None:
            ax.axhline(100 * oracle, color="black", linestyle="--", linewidth=1, label="oracle")
        ax.set_xticks(range(len(routers)))
        ax.set_xticklabels(routers, rotation=35, ha="right")
        ax.set_title(label)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel(ylabel)
    top = 100 * oracle + 3 if oracle is not None else 100
    axes[0].set_ylim(max(0.0, min(lows) - 5), min(100.0, top))
    handles, labels = axes[0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    fig.legend(
        unique.values(),
        unique.keys(),
        loc="upper center",
        bbox_to_anchor=(0.5, 0.95),
        ncol=min(6, len(unique)),
        frameon=False,
    )
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_niche_map(pool: Mapping[str, Any], title: str, path: Path, router: Optional[str] = "cascal") -> Path:
    """Subject × model heat maps of one evaluated pool (:func:`plot_who_wins`): every model's test
    accuracy per subject, and the share of each subject's queries ``router`` sends to each model
    first (when that router was run)."""
    models = pool["models"]
    by_cat = pool["model_accuracy_by_category"]
    categories = sorted(next(iter(by_cat.values())))
    accuracy = np.array([[by_cat[m][c] for m in models] for c in categories])
    share_row = next((row for row in pool["summary"] if row["router"] == router), None)
    share, share_title = None, None
    if share_row is not None:
        share = np.array([share_row["first_choice_share"][c] for c in categories])
        key = "" if share_row["key"] == NO_KEY else f", key {share_row['key']}"
        share_title = f"{router}{key}: % of queries routed first"
    return plot_who_wins(categories, models, accuracy, title, path, first_choice_share=share, share_title=share_title)


def plot_who_wins(
    categories: Sequence[str],
    models: Sequence[str],
    accuracy: np.ndarray,
    title: str,
    path: Path,
    *,
    first_choice_share: Optional[np.ndarray] = None,
    share_title: Optional[str] = None,
) -> Path:
    """Category × model heat maps of who wins where: left, every model's accuracy per category (the
    best model of each category boxed in red); right, when given, the share of each category's
    queries a router sends to each model first.

    Args:
        categories: row labels (subjects, or finer groups such as niches).
        models: column labels.
        accuracy: ``(len(categories), len(models))`` accuracies in [0, 1] (NaN = no data).
        title: the figure title.
        path: the PNG file to write.
        first_choice_share: ``(len(categories), len(models))`` shares in [0, 1], or ``None``.
        share_title: title of the share panel.
    """
    accuracy = np.asarray(accuracy, dtype=np.float64)
    panels = 2 if first_choice_share is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(4.5 + 3.2 * panels, 0.42 * len(categories) + 2.6), squeeze=False)
    ax = axes[0, 0]
    image = ax.imshow(100 * accuracy, cmap="viridis", aspect="auto")
    best = np.nanargmax(np.where(np.isnan(accuracy), -np.inf, accuracy), axis=1)
    for i, j in enumerate(best):
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    _annotate(ax, 100 * accuracy)
    _label_axes(ax, categories, models)
    ax.set_title("test accuracy (%) — red box: best model")
    fig.colorbar(image, ax=ax, fraction=0.04)
    if first_choice_share is not None:
        share = np.asarray(first_choice_share, dtype=np.float64)
        ax = axes[0, 1]
        image = ax.imshow(100 * share, cmap="magma", aspect="auto", vmin=0, vmax=100)
        _annotate(ax, 100 * share)
        _label_axes(ax, categories, models, show_rows=False)
        ax.set_title(share_title or "% of queries routed first")
        fig.colorbar(image, ax=ax, fraction=0.04)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _annotate(ax: Any, values: np.ndarray) -> None:
    """Write each cell's value (rounded) on a heat map."""
    if values.size > 600:
        return
    middle = np.nanmean(values)
    for (i, j), v in np.ndenumerate(values):
        if not np.isnan(v):
            ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=6, color="white" if v < middle else "black")


def _label_axes(ax: Any, rows: Sequence[str], cols: Sequence[str], show_rows: bool = True) -> None:
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels([_short(c) for c in cols], rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows if show_rows else [""] * len(rows), fontsize=8)


def plot_niche_dendrogram(example: FittedExample, path: Path, subject: Optional[str] = None, sample: int = 40) -> Path:
    """Dendrogram of one subject's niches: the average-linkage (cosine) tree of CASCAL's niche
    centroids of that subject (leaves labelled with size and best model) when the router has at
    least two; otherwise of a sample of the subject's test questions, labelled by first choice."""
    router = example.router
    names = list(router.model_names_)
    centroids = getattr(router, "centroids_", None)
    owners = getattr(router, "centroid_subject_", None)
    subject_names = list(getattr(router, "subject_names_", []))
    if centroids is not None and owners is not None and subject_names:
        counts = np.bincount(np.asarray(owners), minlength=len(subject_names))
        chosen = subject if subject is not None else subject_names[int(np.argmax(counts))]
        rows = np.flatnonzero(np.asarray(owners) == subject_names.index(chosen))
    else:
        chosen, rows = subject, np.array([], dtype=int)
    if len(rows) >= 2:
        points = np.asarray(centroids, dtype=np.float64)[rows]
        scores = np.asarray(router.centroid_scores_)[rows]
        sizes = (
            np.asarray(getattr(router, "centroid_sizes_", np.zeros(len(rows))))[rows]
            if hasattr(router, "centroid_sizes_")
            else np.zeros(len(rows), dtype=int)
        )
        labels = [f"n={int(sizes[i])} · {_short(names[int(np.argmax(scores[i]))])}" for i in range(len(rows))]
        what = f"{example.router_name} niche centroids"
    else:
        test = example.split.test
        if chosen is None:
            values, counts = np.unique(test.subjects, return_counts=True)
            chosen = str(values[np.argmax(counts)])
        in_subject = np.flatnonzero(test.subjects == chosen)
        rng = np.random.default_rng(0)
        pick = np.sort(rng.choice(in_subject, size=min(sample, len(in_subject)), replace=False))
        points = np.asarray(test.embeddings, dtype=np.float64)[pick]
        first = router.route(points, top_k=1).ranked[:, 0]
        labels = [_short(names[j]) for j in first]
        what = f"sample of {len(pick)} test questions, labelled by {example.router_name}'s first choice"
    tree = linkage(points, method="average", metric="cosine")
    fig, ax = plt.subplots(figsize=(9, 0.28 * len(labels) + 2.0))
    dendrogram(tree, labels=labels, orientation="right", ax=ax, color_threshold=0.7 * tree[:, 2].max())
    ax.set_xlabel("cosine distance (average linkage)")
    ax.set_title(f"pool {example.pool}, subject '{chosen}': {what}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


#: Routers whose first choices make the most telling dendrogram labels, best first.
_DENDROGRAM_PREFERENCE = ("cascal", "cascal-gt", "knn", "smoothie-train", "cluster-rank")


def _dendrogram_example(examples: Sequence[FittedExample]) -> Optional[FittedExample]:
    for name in _DENDROGRAM_PREFERENCE:
        for example in examples:
            if example.router_name == name:
                return example
    return examples[0] if examples else None


def write_plots(results: Mapping[str, Any], out_dir: Path, examples: Sequence[FittedExample]) -> dict[str, list[str]]:
    """Every figure of every pool into ``out_dir``; returns pool -> figure file names."""
    figures: dict[str, list[str]] = {}
    for name, pool in results["pools"].items():
        files = []
        stem = name.replace("/", "_")  # lone-strong pools are named lone-strong/<model>/<draw>
        n_seeds = len(results["config"]["seeds"])
        files.append(
            plot_accuracy(
                pool, f"pool {name} · mean ± std over {n_seeds} seed(s)", out_dir / f"{stem}_accuracy.png"
            ).name
        )
        has_cascal = any(row["router"] == "cascal" for row in pool["summary"])
        files.append(
            plot_niche_map(
                pool,
                f"pool {name}: who wins where",
                out_dir / f"{stem}_niche_map.png",
                router="cascal" if has_cascal else None,
            ).name
        )
        pool_examples = [e for e in examples if e.pool == name]
        example = _dendrogram_example(pool_examples)
        if example is not None:
            files.append(plot_niche_dendrogram(example, out_dir / f"{stem}_niche_dendrogram.png").name)
        figures[name] = files
    return figures


def plot_label_budget(groups: Sequence[tuple[str, Sequence[Mapping[str, Any]]]], path: Path) -> Path:
    """Top-1 accuracy against the number of labels, one panel per pool (label-budget summaries of
    :mod:`cascal.evaluation.label_budget`): one line per router × label strategy, error bars = std."""
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.6), squeeze=False)
    styles = {"random": "-", "active": "--"}
    colors = {"cascal+labels": "#4c72b0", "best-single-labels": "#55a868", "knn-labels": "#c44e52"}
    for ax, (name, summary) in zip(axes[0], groups):
        free = [r for r in summary if r["n_labels"] == 0 and r["router"] == "cascal+labels"]
        for strategy in sorted({r["strategy"] for r in summary}):
            for router, color in colors.items():
                rows = [r for r in summary if r["strategy"] == strategy and r["router"] == router and r["n_labels"] > 0]
                if router == "cascal+labels":
                    rows = [r for r in free if r["strategy"] == strategy] + rows
                if not rows:
                    continue
                x = [r["n_labels"] for r in rows]
                y = [100 * r["top1"]["mean"] for r in rows]
                e = [100 * (r["top1"]["std"] or 0.0) for r in rows]
                ax.errorbar(
                    x,
                    y,
                    yerr=e,
                    color=color,
                    linestyle=styles.get(strategy, ":"),
                    marker="o",
                    ms=3,
                    capsize=2,
                    label=f"{router} ({strategy})",
                )
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("labelled training questions")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
