"""The demo's outputs: the accuracy table, ``report.md`` and its two plots (all marked SIMULATED)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from cascal.data import ResponseMatrix
    from cascal.demo.results import DemoResult

ROW_ORDER = (
    ("CASCAL", "raw"),
    ("CASCAL", "filtered"),
    ("kNN correctness", "raw"),
    ("kNN correctness", "filtered"),
    ("best single (consensus)", "raw"),
    ("best single (consensus)", "filtered"),
)
REFERENCES = ("best single (true answers)", "oracle (any model right)")


def _rows(result: "DemoResult") -> list[list[str]]:
    """Table rows: router, kind, then top-1/top-3 per generator (percent)."""
    rows = []
    for router, data in ROW_ORDER:
        cells = []
        kind = ""
        for g in result.config.generators:
            s = result.score(router, g, data)
            kind = s.kind
            cells += [f"{100 * s.top1:.1f}", f"{100 * s.top3:.1f}"]
        label = router if data == "raw" else f"{router}, filtered data"
        rows.append([label, kind] + cells)
    for router in REFERENCES:
        s = result.score(router)
        rows.append([router, s.kind] + [f"{100 * s.top1:.1f}", f"{100 * s.top3:.1f}"] * len(result.config.generators))
    return rows


def _header(result: "DemoResult") -> list[str]:
    head = ["router", "kind"]
    for g in result.config.generators:
        head += [f"{g} top-1", f"{g} top-3"]
    return head


def format_table(result: "DemoResult") -> str:
    """The accuracy table as aligned text, with a SIMULATED banner and the generator statistics."""
    head, rows = _header(result), _rows(result)
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    lines = [
        f"SIMULATED pool ({', '.join(_pool_names(result))}): accuracy (%) on {result.test.get('questions', '?')} "
        "held-out questions whose true answers the simulator knows",
        fmt(head),
        fmt(["-" * w for w in widths]),
    ]
    lines += [fmt(r) for r in rows]
    lines.append("")
    for g in result.config.generators:
        st = result.generation[g]
        lines.append(
            f"{g} generator: key right on {100 * st['key_accuracy']:.0f}% of {st['questions']} questions; "
            f"self-answer {100 * st['self_answer']:.0f}%, spread {100 * st['spread']:.0f}%; "
            f"filter kept {st['kept_by_filter']} (key right on {100 * st['key_accuracy_after_filter']:.0f}% of them)"
        )
    return "\n".join(lines)


def _pool_names(result: "DemoResult") -> list[str]:
    from cascal.simulate.world import SimWorld

    return SimWorld(seed=result.config.seed).model_names


def _markdown_table(result: "DemoResult") -> str:
    head, rows = _header(result), _rows(result)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---", "---"] + ["---:"] * (len(head) - 2)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def plot_accuracy(result: "DemoResult", path: Path) -> Path:
    """Grouped bars: top-1 and top-3 accuracy of every router, one group per generator."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    routers = [("CASCAL", "raw"), ("kNN correctness", "raw"), ("best single (consensus)", "raw")]
    gens = list(result.config.generators)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    width = 0.8 / (len(routers) + 2)
    for ax, metric in zip(axes, ("top1", "top3")):
        x = np.arange(len(gens))
        for i, (router, data) in enumerate(routers):
            values = [100 * getattr(result.score(router, g, data), metric) for g in gens]
            ax.bar(x + i * width, values, width, label=router)
        for j, ref in enumerate(REFERENCES):
            value = 100 * getattr(result.score(ref), metric)
            ax.bar(x + (len(routers) + j) * width, [value] * len(gens), width, label=ref, alpha=0.5)
        ax.set_xticks(x + width * (len(routers) + 1) / 2)
        ax.set_xticklabels([f"{g} generator" for g in gens])
        ax.set_title(f"{'top-1' if metric == 'top1' else 'top-3 vote'} accuracy")
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("accuracy on held-out questions (%)")
    axes[1].legend(fontsize=8, loc="lower right")
    fig.suptitle("Routers trained on generated data — SIMULATED pool")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_niche_map(router: Any, test: "ResponseMatrix", world: Any, path: Path) -> Path:
    """One panel per subject: a 2-D PCA of the subject's test questions, coloured by the model CASCAL
    routes each to, with the subject's niche centroids (X) coloured by their best model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    X = np.asarray(test.embeddings, dtype=np.float64)
    C = np.asarray(router.centroids_, dtype=np.float64)
    centroid_subject = np.asarray(router.centroid_subject_)
    first = router.route(X.astype(np.float32), top_k=1).ranked[:, 0]
    best = np.argmax(np.asarray(router.centroid_scores_), axis=1)
    names = list(router.model_names_)
    subjects = list(router.subject_names_)
    cols = min(2, len(subjects))
    rows = (len(subjects) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4.5 * rows), squeeze=False)
    cmap = plt.get_cmap("tab10")
    shown: set[int] = set()
    for ax, (s, subject) in zip(axes.ravel(), enumerate(subjects)):
        sel = np.asarray(test.subjects) == subject
        if sel.sum() < 3:
            ax.set_visible(False)
            continue
        mean = X[sel].mean(axis=0)
        _, _, vt = np.linalg.svd(X[sel] - mean, full_matrices=False)
        px = (X[sel] - mean) @ vt[:2].T
        for m in np.unique(first[sel]):
            pick = first[sel] == m
            label = f"routed to {names[m]}" if m not in shown else None
            shown.add(int(m))
            ax.scatter(px[pick, 0], px[pick, 1], s=14, color=cmap(int(m) % 10), alpha=0.75, label=label)
        for c in np.flatnonzero(centroid_subject == s):
            cx, cy = (C[c] - mean) @ vt[:2].T
            ax.scatter([cx], [cy], marker="X", s=150, color=cmap(int(best[c]) % 10), edgecolor="black", linewidth=1.0)
        ax.set_title(f"{subject}: {int((centroid_subject == s).sum())} niche(s)")
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.ravel()[len(subjects):]:
        ax.set_visible(False)
    fig.legend(loc="lower center", ncol=min(len(names), 6), fontsize=8)
    fig.suptitle("Niche map: test questions by routed model, X = niche centroid (PCA per subject) — SIMULATED pool")
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _summary(result: "DemoResult") -> str:
    """One paragraph comparing CASCAL with the query-answer router across the generators, in numbers."""
    parts = []
    for g in result.config.generators:
        cascal, knn = result.score("CASCAL", g), result.score("kNN correctness", g)
        key = 100 * result.generation[g]["key_accuracy"]
        parts.append(
            f"with the {g} generator (key right on {key:.0f}% of its questions) CASCAL reaches "
            f"{100 * cascal.top1:.1f}% top-1 / {100 * cascal.top3:.1f}% top-3 and kNN correctness "
            f"{100 * knn.top1:.1f}% / {100 * knn.top3:.1f}%"
        )
    oracle = result.score("oracle (any model right)")
    best = result.score("best single (true answers)")
    return (
        "On held-out questions, " + "; ".join(parts) + ". The query-answer router learns from the generator's key, "
        "so its accuracy follows the key's quality; CASCAL never reads the key (it scores the pool by its own "
        f"confidence-weighted consensus), so it does not. References: best single model {100 * best.top1:.1f}%, "
        f"oracle {100 * oracle.top1:.1f}%."
    )


def write_report(result: "DemoResult", out: Path, router: Any, test: "ResponseMatrix", world: Any) -> Path:
    """Write ``report.md`` with the table, generator statistics, example routes and the two plots."""
    accuracy_png = plot_accuracy(result, out / "accuracy.png")
    niche_png = plot_niche_map(router, test, world, out / "niche_map.png")
    cfg = result.config
    lines = [
        "# cascal demo: Routing with Generated Data on a SIMULATED pool",
        "",
        "> Everything below is **simulated**: the generators and the pool models are the seeded simulator of",
        "> `cascal.simulate`, not language models. The pipeline code (generation, answering over HTTP with the",
        "> OpenAI client, embedding, filtering, CASCAL, baselines) is the real one.",
        "",
        f"Setup: {cfg.n_subjects} subjects x 3 niches; {cfg.n_train} generated training questions per subject and "
        f"generator; {result.test.get('questions')} held-out test questions (key = simulator truth, "
        f"verified on {100 * result.test.get('key_matches_truth', 0):.0f}%); pool {', '.join(world.model_names)} "
        f"(each niche has one specialist); world seed {cfg.seed}; embeddings `hashing-256`.",
        "",
        "## What it shows",
        "",
        _summary(result),
        "",
        "## Accuracy on the held-out test set (%)",
        "",
        "top-1 = the first routed model's answer; top-3 = plurality vote of the three routed models.",
        "",
        _markdown_table(result),
        "",
        "## Generators",
        "",
        "| generator | questions | key right | self-answer | spread | kept by filter | key right after filter |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for g in cfg.generators:
        st = result.generation[g]
        lines.append(
            f"| {st['generator']} | {st['questions']} | {100 * st['key_accuracy']:.0f}% | {100 * st['self_answer']:.0f}% | "
            f"{100 * st['spread']:.0f}% | {st['kept_by_filter']} | {100 * st['key_accuracy_after_filter']:.0f}% |"
        )
    lines += [
        "",
        "Self-answer: the key is a plurality answer of the pool; spread: the pool is not unanimous and has a",
        "unique plurality. The filter (`cascal filter`, default rule) keeps the self-answered questions.",
        "",
        "## Example routes (CASCAL, first generator, raw data)",
        "",
    ]
    for ex in result.examples:
        lines.append(f"- *{ex['question']}* (niche: {ex['niche']}) -> {', '.join(ex['routed_top3'])}; true specialist: {ex['true_specialist']}")
    lines += [
        "",
        "## Plots",
        "",
        f"![accuracy by router]({accuracy_png.name})",
        "",
        f"![niche map]({niche_png.name})",
        "",
        "## Timings (s)",
        "",
        ", ".join(f"{k}: {v}" for k, v in result.timings.items()),
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
