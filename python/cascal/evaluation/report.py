"""Markdown tables of an evaluation's results, and the writer of the output folder.

Every table is built from the results dict alone (what ``results.json`` holds), so a report can be
regenerated from a saved run: ``write_report(json.load(open("results.json")), out_dir)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from cascal.evaluation.results import NO_KEY, FittedExample, to_jsonable


def _pct(summary: Mapping[str, Any]) -> str:
    mean, std = summary.get("mean"), summary.get("std")
    if mean is None or mean != mean:
        return "—"
    return f"{100 * mean:.1f} ± {100 * (std or 0.0):.1f}"


def _num(summary: Mapping[str, Any]) -> str:
    mean, std = summary.get("mean"), summary.get("std")
    if mean is None or mean != mean:
        return "—"
    return f"{mean:.2f} ± {(std or 0.0):.2f}"


def _short(model: str) -> str:
    return model[: -len("_5shots")] if model.endswith("_5shots") else model


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _key_label(key: str) -> str:
    return "— (label-free)" if key == NO_KEY else key


def accuracy_table(pool: Mapping[str, Any]) -> str:
    """Top-1 and top-3 vote accuracy (%, mean ± std over seeds) of every router × key source,
    then the oracle row."""
    rows = [[row["router"], _key_label(row["key"]), _pct(row["top1"]), _pct(row["top3"])] for row in pool["summary"]]
    if "oracle" in pool:
        rows.append(["oracle (any pool model right)", "test gold", _pct(pool["oracle"]), _pct(pool["oracle"])])
    return _table(["router", "key", "top-1 acc. (%)", "top-3 vote acc. (%)"], rows)


def kendall_table(pool: Mapping[str, Any]) -> str:
    """Kendall τ-b (mean ± std) between each router's global ranking and the test gold ranking."""
    rows = [[row["router"], _key_label(row["key"]), _num(row["kendall_tau"])] for row in pool["summary"]]
    return _table(["router", "key", "Kendall τ vs gold ranking"], rows)


def category_table(pool: Mapping[str, Any], which: str = "top3") -> str:
    """Per-category accuracy (%, mean over seeds) of every router × key source."""
    summary = pool["summary"]
    if not summary:
        return "(no runs)"
    categories = list(summary[0]["per_category"][which])
    rows = [
        [row["router"], _key_label(row["key"])] + [f"{100 * row['per_category'][which][c]:.1f}" for c in categories]
        for row in summary
    ]
    return _table(["router", "key", *categories], rows)


def pool_table(pool: Mapping[str, Any]) -> str:
    """Test accuracy of every pool model, and how often each simulated key agrees with the gold."""
    rows = [[_short(m), _pct(pool["model_accuracy"][m])] for m in pool["models"]]
    text = _table(["model", "test accuracy (%)"], rows)
    keys = [[name, _pct(acc)] for name, acc in pool["key_accuracy"].items()]
    if keys:
        gens = {k["name"]: k["generator"] or "gold" for k in pool["keys"]}
        keys = [[name, _short(gens.get(name, "")), acc] for name, acc in keys]
        text += "\n\n" + _table(["key", "generator", "key = gold on train split (%)"], keys)
    return text


def write_report(results: Mapping[str, Any], out_dir: Path, figures: Optional[Mapping[str, list[str]]] = None) -> Path:
    """Write ``report.md`` (every table of every pool, with the figures linked) and one
    ``<pool>_<table>.md`` per table; returns the report path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = results["config"]
    parts = [
        "# cascal evaluation",
        "",
        f"cascal {results['cascal_version']} · data `{results.get('data_path')}` · {results.get('created')}",
        f"seeds {cfg['seeds']} · 60/40 split stratified by category · top-3 = plurality vote of the 3 routed models",
        "",
    ]
    for name, pool in results["pools"].items():
        tables = {
            "accuracy": accuracy_table(pool),
            "kendall": kendall_table(pool),
            "categories_top1": category_table(pool, "top1"),
            "categories_top3": category_table(pool, "top3"),
            "pool": pool_table(pool),
        }
        for table_name, text in tables.items():
            (out_dir / f"{name}_{table_name}.md").write_text(text + "\n")
        parts += [
            f"## Pool `{name}`: {', '.join(_short(m) for m in pool['models'])}",
            "",
            "### Accuracy",
            tables["accuracy"],
            "",
            "### Kendall τ of the global model ranking",
            tables["kendall"],
            "",
            "### Per-category top-1 accuracy (%)",
            tables["categories_top1"],
            "",
            "### Per-category top-3 vote accuracy (%)",
            tables["categories_top3"],
            "",
            "### Pool models and key sources",
            tables["pool"],
            "",
        ]
        for figure in (figures or {}).get(name, []):
            parts += [f"![{figure}]({figure})", ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(parts))
    return path


def write_outputs(results: dict[str, Any], out_dir: Path, examples: Optional[Sequence[FittedExample]]) -> None:
    """``results.json``, the PNG plots (when ``examples`` is given) and ``report.md`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    clean = to_jsonable(results)
    (out_dir / "results.json").write_text(json.dumps(clean, indent=1, allow_nan=False))
    figures: dict[str, list[str]] = {}
    if examples is not None:
        from cascal.evaluation.plots import write_plots

        figures = write_plots(clean, out_dir, examples)
    write_report(clean, out_dir, figures)
