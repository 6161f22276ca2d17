"""The demo's outputs: the accuracy table, ``report.md`` and its two plots (all marked SIMULATED),
drawn with :mod:`cascal.evaluation.plots`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from cascal.data import ResponseMatrix
    from cascal.demo.results import DemoResult, RouterScore

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


#: Routers in the accuracy figure (trained on the raw generated data), then the reference row.
PLOT_ROUTERS = ("CASCAL", "kNN correctness", "best single (consensus)")


def _generator_label(key: str) -> str:
    return "reference (true answers)" if key == "-" else f"{key} generator"


def plot_accuracy(result: "DemoResult", path: Path) -> Path:
    """Grouped bars (:func:`cascal.evaluation.plots.plot_accuracy_bars`): top-1 and top-3 accuracy
    of every router trained on each generator's raw data, the best single model by the true answers
    as a reference, the oracle dashed."""
    from cascal.evaluation.plots import plot_accuracy_bars

    def row(score: "RouterScore", key: str) -> dict[str, Any]:
        return {
            "router": score.router,
            "key": key,
            "top1": {"mean": score.top1, "std": None},
            "top3": {"mean": score.top3, "std": None},
        }

    rows = [row(result.score(r, g, "raw"), g) for r in PLOT_ROUTERS for g in result.config.generators]
    rows.append(row(result.score(REFERENCES[0]), "-"))
    return plot_accuracy_bars(
        rows,
        "Routers trained on generated data — SIMULATED pool",
        path,
        oracle=result.score(REFERENCES[1]).top1,
        key_label=_generator_label,
        ylabel="accuracy on held-out questions (%)",
    )


def plot_niche_map(router: Any, test: "ResponseMatrix", world: Any, path: Path) -> Path:
    """Who wins where, niche by niche (:func:`cascal.evaluation.plots.plot_who_wins`): every pool
    model's accuracy on the test questions of each simulated niche, and the share of them CASCAL
    routes to each model first. Each niche has one specialist, so a good router's right panel
    mirrors the red boxes of the left one."""
    from cascal.evaluation.metrics import model_accuracy
    from cascal.evaluation.plots import plot_who_wins
    from cascal.simulate import SUBJECTS
    from cascal.simulate.catalogue import recognise_niche

    niches = [recognise_niche(q) for q in (test.questions or [])]
    labels = np.array(
        [f"{SUBJECTS[n[0]].key}: {SUBJECTS[n[0]].niches[n[1]].name}" if n else "(no niche)" for n in niches]
    )
    categories = sorted(set(labels.tolist()))
    first = router.route(np.asarray(test.embeddings, dtype=np.float32), top_k=1).ranked[:, 0]
    n_models = len(router.model_names_)
    gold = np.asarray(test.gold)
    accuracy = np.array([model_accuracy(test.answers[labels == c], gold[labels == c]) for c in categories])
    share = np.array([np.bincount(first[labels == c], minlength=n_models) / (labels == c).sum() for c in categories])
    return plot_who_wins(
        categories,
        list(router.model_names_),
        accuracy,
        f"Who wins where, by niche — SIMULATED pool (world seed {world.seed})",
        path,
        first_choice_share=share,
        share_title="CASCAL: % of queries routed first",
    )


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
        lines.append(
            f"- *{ex['question']}* (niche: {ex['niche']}) -> {', '.join(ex['routed_top3'])}; true specialist: {ex['true_specialist']}"
        )
    lines += [
        "",
        "## Plots",
        "",
        f"![accuracy by router]({accuracy_png.name})",
        "",
        f"![niche map]({niche_png.name})",
        "",
        "Niche map: every pool model's accuracy on the test questions of each simulated niche (red box: the",
        "niche's best model) and the share of them CASCAL (first generator, raw data) routes to each model first.",
        "",
        "## Timings (s)",
        "",
        ", ".join(f"{k}: {v}" for k, v in result.timings.items()),
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
