"""The files ``cascal coverage`` writes into its output folder (docs/coverage.md), and its summary.

- ``coverage.json`` (:data:`REPORT_FILE`): :meth:`CoverageReport.to_dict`;
- ``tasks.yaml`` (:data:`TASKS_FILE`): a draft that ``cascal generate --tasks`` reads, one subject per
  reported cluster (name, description, question count), each preceded by a comment with its size
  and nearest covered subject;
- ``coverage.png`` (:data:`PLOT_FILE`): traffic per subject (covered and uncovered parts)
  and the uncovered clusters by size.

Every file is written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from cascal.coverage.analysis import CoverageReport
from cascal.io.files import PathLike, atomic_path, atomic_write_text

__all__ = ["PLOT_FILE", "REPORT_FILE", "TASKS_FILE", "summary", "tasks_yaml", "write_outputs"]

REPORT_FILE = "coverage.json"
TASKS_FILE = "tasks.yaml"
PLOT_FILE = "coverage.png"


def _scalar(text: str) -> str:
    """``text`` as one double-quoted YAML scalar on one line."""
    return yaml.safe_dump(text, default_style='"', allow_unicode=True, width=1 << 30).strip()


def tasks_yaml(report: CoverageReport, questions: int = 50) -> str:
    """The ``tasks.yaml`` draft of ``report``: one subject per cluster (an empty ``subjects:``
    mapping when no cluster was found)."""
    lines = [
        f"# Draft written by `cascal coverage` from {Path(report.log).name} (router {Path(report.router).name}):",
        "# one subject per cluster of traffic beyond the router's fallback distance (uncovered).",
        "# Review the descriptions, then: cascal generate --tasks tasks.yaml ...",
        f"questions_per_subject: {questions}",
    ]
    if not report.clusters:
        return "\n".join([*lines, "subjects: {}  # no uncovered cluster above the size floor"]) + "\n"
    lines.append("subjects:")
    for c in report.clusters:
        lines.append(
            f"  # {c.size} queries ({c.share:.1%} of routed traffic); nearest covered subject "
            f"{c.nearest_subject} at cosine distance {c.subject_distance:.3f}"
        )
        lines += [f"  {c.name}:", f"    description: {_scalar(c.description)}"]
    return "\n".join(lines) + "\n"


def summary(report: CoverageReport) -> str:
    """A text summary: traffic per subject, the uncovered share and the clusters."""
    routed = max(report.routed, 1)
    width = max([len("subject"), *(len(str(s["subject"])) for s in report.subjects)])
    out = [
        f"{report.lines} decision lines, {report.routed} routed; {report.uncovered} "
        f"({report.uncovered_share:.1%}) uncovered (fallback weight > {report.settings.uncovered_above:g}), "
        f"{report.mostly_fallback} ({report.mostly_fallback_share:.1%}) routed mostly by the global fallback",
        "",
        f"{'subject':<{width}}  {'queries':>8}  {'share':>6}  {'uncovered':>9}  {'mostly':>6}  niches (share each)",
    ]
    for s in report.subjects:
        niches = " ".join(f"{n['count'] / routed:.1%}" for n in s["niches"])
        out.append(
            f"{str(s['subject']):<{width}}  {s['count']:>8d}  {s['share']:>6.1%}  {s['uncovered']:>9d}  "
            f"{s['mostly_fallback']:>6d}  {niches}"
        )
    out.append("")
    if report.clusters:
        out.append(f"uncovered clusters (size floor {report.settings.min_size}, cut {report.cut:.3f}):")
        for c in report.clusters:
            out.append(
                f"  {c.name}: {c.size} queries ({c.share:.1%}), nearest subject {c.nearest_subject} "
                f"at {c.subject_distance:.3f}" + (f"; e.g. {c.examples[0][:80]!r}" if c.examples else "")
            )
    else:
        out.append(f"no uncovered cluster of at least {report.settings.min_size} queries")
    if report.clusters_below_floor:
        out.append(f"  ({report.clusters_below_floor} smaller clusters not reported)")
    out += [f"note: {n}" for n in report.notes]
    return "\n".join(out)


def plot(report: CoverageReport, path: PathLike) -> None:
    """``coverage.png``: traffic per subject (covered / uncovered) and the clusters' sizes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, max(3.0, 0.4 * len(report.subjects) + 1.5)))
    names = [str(s["subject"]) for s in report.subjects]
    covered = [s["count"] - s["uncovered"] for s in report.subjects]
    fallback = [s["uncovered"] for s in report.subjects]
    left.barh(names, covered, color="#4c72b0", label="covered")
    left.barh(names, fallback, left=covered, color="#dd8452", label="uncovered (global fallback blended in)")
    left.invert_yaxis()
    left.set_xlabel("queries")
    left.set_title("traffic per subject")
    left.legend(loc="lower right", fontsize=8)
    if report.clusters:
        labels = [f"{c.name} (→ {c.nearest_subject}, {c.subject_distance:.2f})" for c in report.clusters]
        right.barh(labels, [c.size for c in report.clusters], color="#c44e52")
        right.invert_yaxis()
        right.set_xlabel("queries (estimated)")
    else:
        right.text(0.5, 0.5, "no uncovered cluster\nabove the size floor", ha="center", va="center")
        right.set_axis_off()
    right.set_title("uncovered clusters (nearest subject, distance)")
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write_outputs(report: CoverageReport, out_dir: PathLike, *, questions: int = 50) -> dict[str, Path]:
    """Write the report, the tasks draft and the plot into ``out_dir`` (created); their paths by kind."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"report": folder / REPORT_FILE, "tasks": folder / TASKS_FILE, "plot": folder / PLOT_FILE}
    data = report.to_dict()
    data["files"] = {k: p.name for k, p in paths.items()}
    atomic_write_text(paths["report"], json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(paths["tasks"], tasks_yaml(report, questions))
    plot(report, paths["plot"])
    return paths
